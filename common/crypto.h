// Hashes, HMAC, randomness and constant-time comparison (OpenSSL underneath).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace funcky::crypto {

// Lower-case hex of the SHA-1 / SHA-256 digest of `data`.
std::string Sha1Hex(std::string_view data);
std::string Sha256Hex(std::string_view data);
// Raw 32-byte SHA-256 digest.
std::string Sha256(std::string_view data);
// Lower-case hex of HMAC-SHA256(key, message).
std::string HmacSha256Hex(std::string_view key, std::string_view message);

std::string HexEncode(std::string_view bytes);
// Decodes lower- or upper-case hex; nullopt on odd length or a non-hex character.
std::optional<std::string> HexDecode(std::string_view hex);
// Standard base64, padded.
std::string Base64Encode(std::string_view bytes);
// Decodes standard or URL-safe base64, padded or not; nullopt on any other character.
std::optional<std::string> Base64Decode(std::string_view in);

// `n` bytes from OpenSSL's cryptographically secure generator (seeded by the OS); short
// requests are served from a block drawn per thread (and redrawn after a fork).
std::string RandomBytes(size_t n);

// Compares in time that depends only on the lengths, never on where the inputs differ.
bool ConstantTimeEqual(std::string_view a, std::string_view b);
// Whether `presented` is `secret`, in time that depends on neither's contents nor the secret's
// length (their SHA-256 digests are compared): for secrets an operator chose, whose length is
// theirs (event keys, the API token), where ConstantTimeEqual would answer a wrong length at
// once.
bool SecretEqual(std::string_view presented, std::string_view secret);

}  // namespace funcky::crypto
