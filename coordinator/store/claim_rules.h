// Rules both store backends apply the same way, kept out of their SQL: which lanes an
// ingest must lock, which claim candidates the concurrency limits admit, and the errors of
// the lane operations. Internal to coordinator/store.
#pragma once

#include <array>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "coordinator/store/store.h"

namespace funcky::store {

// How long a claim hides an item that a concurrency limit held back, so the items behind it
// in the claim order are reached; it is offered again after this.
inline constexpr int64_t kHeldBackMs = 50;
// When an item held back at `now_ms` is offered again: at the next multiple of kHeldBackMs,
// not now + kHeldBackMs, so the items of a limit held by different claims come back together
// and the claim that finds the limit free sees them all, in their order (a run given a
// priority a moment ago would otherwise still be hidden when the limit frees, and an older
// item that came back first would take its turn).
inline int64_t HeldBackUntil(int64_t now_ms) { return (now_ms / kHeldBackMs + 1) * kHeldBackMs; }

// The options a lane row takes from the runs that join it.
struct LaneOptions {
  std::optional<int64_t> head_timeout_ms;
  std::optional<LaneSequencing> sequencing;
};
// The lanes (function id, key) the runs of `events` join, each with its options.
// Sorted, so every ingest locks lanes in one order and two ingests never deadlock.
using LaneLocks = std::map<std::pair<std::string, std::string>, LaneOptions>;
LaneLocks LanesOf(const std::vector<NewEvent>& events);

// A function has at most this many keyed concurrency limits (Inngest's array of two).
inline constexpr int kKeyedLimits = 2;

// A due queue item with what its function's limits need.
struct ClaimCandidate {
  QueueItem item;
  std::string function_id;
  int function_limit = 0;  // 0: none
  // The run's value of each keyed limit (queue.concurrency_key, concurrency_key2) and that
  // limit (functions.key_concurrency_limit, key_concurrency_limit2); 0 or no key: none.
  std::array<std::optional<std::string>, kKeyedLimits> keys;
  std::array<int, kKeyedLimits> key_limits{};
};

// One limit on calls in flight: a function's own (no key), or keyed limit `slot` of the
// function for one value of its key.
struct LimitId {
  std::string function_id;
  int slot = 0;
  std::optional<std::string> key;
  auto operator<=>(const LimitId&) const = default;
};

struct Admission {
  std::vector<QueueItem> claimed;  // by queue id
  std::vector<int64_t> held;       // queue ids a limit held back
};

// Admits candidates in order while every limit they fall under has room, at most `max`
// of them; the candidates after the `max`-th admitted one are neither admitted nor held.
// `in_flight` is called once per distinct limit, in sorted order, and returns the calls in
// flight under it; a backend that needs a lock to count takes it there.
Admission AdmitWithinLimits(std::vector<ClaimCandidate> candidates, size_t max,
                            const std::function<int64_t(const LimitId&)>& in_flight);

// kNotFound: lane (function_id, key) has no head (no unfinished run).
Status LaneHasNoHead(const std::string& function_id, const std::string& key);
// kFailedPrecondition: retry-head on a head whose status is `status`, not blocked.
Status HeadNotBlocked(const std::string& key, const std::string& status);

}  // namespace funcky::store
