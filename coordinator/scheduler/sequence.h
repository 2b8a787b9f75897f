// Sequence lanes (docs/ordering.md "Sequence lanes"): a lane that orders its runs
// by a number the producer puts in each event rather than by the order events were accepted,
// and an expression that lets an event bypass its lane.
//
// This header holds what intake decides per event — the event's number, or that it bypasses
// its lane — and the lane's sequencing options; the store orders the lane by them
// (store::NewRun::lane_number, coordinator/store/sql/sql_store.cc SelectSequenceHead).
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string_view>

#include <nlohmann/json_fwd.hpp>

#include "common/status.h"
#include "coordinator/expr/expr.h"

namespace funcky::scheduler {

// Sequence numbers are integers from 0 to 2^53 - 1 (JavaScript's Number.MAX_SAFE_INTEGER):
// a larger one does not survive a JavaScript producer unchanged, and n + 1 never overflows.
inline constexpr int64_t kMaxSequenceNumber = (int64_t{1} << 53) - 1;

// How long a lane may wait for a missing number. Below a second the wait is shorter than the
// durable timer's resolution; above a week the missing event is lost, not late.
inline constexpr std::chrono::milliseconds kMinGapTimeout = std::chrono::seconds(1);
inline constexpr std::chrono::milliseconds kMaxGapTimeout = std::chrono::hours(24 * 7);
inline constexpr std::string_view kGapTimeoutBounds = "from 1s to 7d";

// What happens to an event whose number is below its lane's next expected number (a late
// arrival after a gap, or a replayed old version).
enum class StalePolicy {
  kSkip,  // no run; recorded as stale on the event and the lane (the default)
  kRun,   // a run all the same, in the lane after the current head, without a number
};
std::string_view StalePolicyName(StalePolicy policy);  // "skip" | "run"

// `ordering: {key, sequence, gap_timeout, start?, stale?}`, or the same fields on the
// lane's `concurrency: {limit: 1, key, …}` entry.
struct Sequencing {
  std::shared_ptr<const expr::Expression> expression;  // the event's number
  std::chrono::milliseconds gap_timeout{0};            // kMinGapTimeout..kMaxGapTimeout
  // The number a new lane expects first; null: the first number the lane sees.
  std::optional<int64_t> start;
  StalePolicy stale = StalePolicy::kSkip;
};

// The number a sequence expression's value stands for: a JSON integer, a float with no
// fraction, or a string of decimal digits, from 0 to kMaxSequenceNumber. kInvalidArgument
// saying what the value was otherwise (null is "no value": a missing field, or an
// evaluation over its cost limit).
Result<int64_t> SequenceNumber(const nlohmann::json& value);

// What a lane decides for one event, besides its key: the fields store::NewRun is to carry
// (docs/ordering.md "Sequence lanes").
struct LanePlacement {
  bool bypass_lane = false;              // the bypass expression was true: run at once, unordered
  std::optional<int64_t> lane_sequence;  // a sequence lane's number for the event
};

// For an event of a function with a lane: `bypass` (null: none) is evaluated first, and an
// event it matches takes no number; otherwise `sequence` (null: the lane is in acceptance
// order) gives the event's number. kInvalidArgument, naming the expression and what it gave,
// when the lane orders by sequence and the event has no number.
Result<LanePlacement> PlaceInLane(const Sequencing* sequence, const expr::Expression* bypass,
                                  const nlohmann::json& event);

}  // namespace funcky::scheduler
