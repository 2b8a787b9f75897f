// Step ids on the wire (docs/protocol.md §6): hex(SHA-1(user id)), and for the n-th repeat of
// the same user id within one run (n >= 1), hex(SHA-1("<id>:<n>")).
#pragma once

#include <string>
#include <string_view>

namespace funcky {

std::string HashStepId(std::string_view user_id, int repeat_index = 0);

// The step id that tells a host "discover and run the next thing".
inline constexpr std::string_view kDiscoveryStepId = "step";

}  // namespace funcky
