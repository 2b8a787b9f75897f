#include "coordinator/scheduler/backoff.h"

#include <algorithm>
#include <charconv>
#include <ctime>
#include <string>

#include "common/duration.h"

namespace funcky::scheduler {

Result<std::vector<std::chrono::milliseconds>> ParseSchedule(std::string_view text) {
  std::vector<std::chrono::milliseconds> out;
  size_t pos = 0;
  while (pos <= text.size()) {
    size_t comma = text.find(',', pos);
    std::string_view part = text.substr(pos, comma == std::string_view::npos ? comma : comma - pos);
    while (!part.empty() && part.front() == ' ') part.remove_prefix(1);
    while (!part.empty() && part.back() == ' ') part.remove_suffix(1);
    auto d = ParseDuration(part);
    if (!d.ok()) return InvalidArgument("bad retry schedule entry \"" + std::string(part) + "\"");
    // Added to a TimePoint (nanoseconds, which overflow past 2262): bounded first.
    if (*d > std::chrono::hours(24 * 366)) {
      return InvalidArgument("retry schedule entry \"" + std::string(part) +
                             "\" is longer than 366 days");
    }
    out.push_back(*d);
    if (comma == std::string_view::npos) break;
    pos = comma + 1;
  }
  if (out.empty()) return InvalidArgument("empty retry schedule");
  return out;
}

std::chrono::milliseconds BackoffDelay(const RetryPolicy& policy, int attempt,
                                       std::mt19937_64& rng) {
  std::chrono::milliseconds base{0};
  if (!policy.schedule.empty()) {
    size_t i = std::min<size_t>(attempt < 0 ? 0 : attempt, policy.schedule.size() - 1);
    base = policy.schedule[i];
  }
  if (policy.max_jitter.count() <= 0) return base;
  std::uniform_int_distribution<int64_t> jitter(0, policy.max_jitter.count());
  return base + std::chrono::milliseconds(jitter(rng));
}

std::optional<std::chrono::milliseconds> ParseRetryAfter(std::string_view value, TimePoint now) {
  using std::chrono::milliseconds;
  if (value.empty()) return std::nullopt;
  const milliseconds lo = std::chrono::seconds(1), hi = std::chrono::hours(24);
  auto clamp = [&](milliseconds d) { return std::clamp(d, lo, hi); };
  // Clamped in seconds before any conversion: a huge number (or a date past 2262) overflowed
  // milliseconds, or the nanoseconds of a TimePoint.
  auto clamp_seconds = [&](int64_t seconds) {
    return clamp(std::chrono::seconds(std::clamp<int64_t>(seconds, 0, 86400)));
  };
  int64_t seconds = 0;
  auto [end, ec] = std::from_chars(value.data(), value.data() + value.size(), seconds);
  if (end == value.data() + value.size() && ec == std::errc::result_out_of_range) {
    return clamp_seconds(value.front() == '-' ? 0 : 86400);
  }
  if (ec == std::errc() && end == value.data() + value.size()) return clamp_seconds(seconds);
  const int64_t now_s =
      std::chrono::duration_cast<std::chrono::seconds>(now.time_since_epoch()).count();
  // RFC 3339, its offset or Z included ("2026-01-01T10:00:00+02:00" is 08:00 UTC).
  if (auto at_ms = ParseRfc3339(value); value.size() >= 10 && at_ms.ok()) {
    return clamp_seconds(*at_ms / 1000 - now_s);
  }
  // HTTP-date (IMF-fixdate), e.g. "Wed, 21 Oct 2015 07:28:00 GMT", and nothing after it.
  std::string text(value);
  std::tm tm{};
  const char* parsed = strptime(text.c_str(), "%a, %d %b %Y %H:%M:%S GMT", &tm);
  if (!parsed || *parsed != '\0') return std::nullopt;
  const int64_t at_s = timegm(&tm);
  // Both within a few hundred billion years: the difference cannot overflow.
  return clamp_seconds(at_s - now_s);
}

}  // namespace funcky::scheduler
