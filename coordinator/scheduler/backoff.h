// When to retry a failed call (docs/protocol.md §8.1).
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <random>
#include <string_view>
#include <vector>

#include "common/clock.h"
#include "common/status.h"

namespace funcky::scheduler {

struct RetryPolicy {
  // Delay after the n-th failed attempt (0-based); the last entry repeats.
  std::vector<std::chrono::milliseconds> schedule = {
      std::chrono::seconds(15), std::chrono::seconds(30), std::chrono::minutes(1),
      std::chrono::minutes(2),  std::chrono::minutes(5),  std::chrono::minutes(10),
      std::chrono::minutes(20), std::chrono::minutes(40), std::chrono::hours(1),
      std::chrono::hours(2)};
  // A uniformly random extra delay in [0, max_jitter].
  std::chrono::milliseconds max_jitter = std::chrono::seconds(30);
};

// Parses "15s,30s,1m" into a schedule. kInvalidArgument on an empty list or a bad entry.
Result<std::vector<std::chrono::milliseconds>> ParseSchedule(std::string_view text);

// The delay before retrying after failed attempt `attempt` (0-based), jitter included.
// Thread-safe when each thread passes its own `rng`.
std::chrono::milliseconds BackoffDelay(const RetryPolicy& policy, int attempt,
                                       std::mt19937_64& rng);

// A `Retry-After` value: integer seconds or an HTTP date, clamped to [1 s, 24 h].
// nullopt when absent or unparsable.
std::optional<std::chrono::milliseconds> ParseRetryAfter(std::string_view value, TimePoint now);

// Retries the protocol allows: `retries` from the function config, default 4, at most 20.
inline constexpr int kDefaultRetries = 4;
inline constexpr int kMaxRetries = 20;

}  // namespace funcky::scheduler
