// ULIDs: 48-bit millisecond time + 80 bits of entropy, 26 characters of Crockford base32.
// Run and event ids are ULIDs, so they sort by creation time.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace funcky {

// A new ULID at `unix_ms` with random entropy.
std::string NewUlid(uint64_t unix_ms);

// `count` new ULIDs at `unix_ms` in increasing order: one random draw, the index added to
// its last 4 bytes (whose top bit is cleared first, so that no sum wraps for a count below
// 2^31). The events of one request then sort as they were sent, also within a millisecond.
std::vector<std::string> NewUlidsInOrder(uint64_t unix_ms, size_t count);

// The ULID with the given time and exactly these 10 bytes of entropy.
std::string MakeUlid(uint64_t unix_ms, std::string_view entropy10);

// The ULID of the `index`-th (1-based) event of a request carrying the SDK header
// `x-inngest-event-id-seed: <unix_ms>,<base64 of 10 bytes>` (docs/protocol.md §3): time = the
// millis, entropy = the bytes with `index` added as a big-endian uint32 to bytes 6..9.
// nullopt when the seed is malformed.
std::optional<std::string> UlidFromSeed(std::string_view seed_header, uint32_t index);

}  // namespace funcky
