// Time strings of the protocol ("300ms", "2h45m", "1d", "1w"; Go's str2duration syntax).
#pragma once

#include <chrono>
#include <string>
#include <string_view>

#include "common/status.h"

namespace funcky {

// Parses a sequence of <number><unit> with units ns, us, ms, s, m, h, d, w. Fractions are
// allowed ("1.5s"). kInvalidArgument on anything else, including an empty string.
Result<std::chrono::milliseconds> ParseDuration(std::string_view text);

// The shortest form of `d` in the same syntax ("1500ms" -> "1.5s" is not attempted: "1500ms").
std::string FormatDuration(std::chrono::milliseconds d);

}  // namespace funcky
