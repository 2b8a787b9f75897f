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

// An RFC 3339 time ("2030-01-01T00:00:00.000Z", "2030-01-01T01:00:00+01:00") as Unix
// milliseconds. kInvalidArgument on anything else.
Result<int64_t> ParseRfc3339(std::string_view text);
// Unix milliseconds as RFC 3339 in UTC with milliseconds: "2030-01-01T00:00:00.000Z".
std::string FormatRfc3339(int64_t unix_ms);
// The civil (proleptic Gregorian) date `days` after 1970-01-01.
void CivilFromDays(int64_t days, int64_t& year, int64_t& month, int64_t& day);

}  // namespace funcky
