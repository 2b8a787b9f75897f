// What a function's config says about starting and pacing its runs, compiled once:
// - its event triggers, each with its optional `expression` filter (docs/protocol.md §3);
// - a lane key: `ordering: {key, head_timeout?}` (Funcky's extension), or an Inngest
//   `concurrency: {limit: 1, key}` with scope fn — each key is a strict FIFO lane — with
//   the lane's options on either: head_timeout, a producer sequence (sequence, gap_timeout,
//   start, stale; sequence.h) and a bypass expression;
// - admission gates (docs/flow-control.md): `idempotency` (one run per key per 24 h), else
//   `rateLimit {limit, period, key?}`, and `singleton {mode, key?}`;
// - `throttle {limit, period, burst?, key?}`: run starts paced per key (not a gate: every
//   run is created, its first call due at its slot);
// - `debounce {period, key?, timeout?}`: one run per burst of events of a key (with a lane,
//   the key must be the lane key);
// - `batchEvents {maxSize, timeout, key?, if?}`: one run per batch of events of a key;
// - `timeouts {start?, finish?}`: deadlines after which a run is cancelled;
// - a function-wide limit on calls in flight: `concurrency: N` or `{limit: N}`;
// - a per-key limit on calls in flight: `{limit: N, key}` with N > 1 (no order promise),
//   and a second one with its own key (`concurrency: [{limit, key}, {limit, key}]`);
// - `priority {run}`: a run's first call moved ahead (or back) in the claim order;
// - cron triggers (with their `jitter`) and `cancel` (cancel_on) conditions.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/status.h"
#include "coordinator/expr/expr.h"
#include "coordinator/scheduler/cron.h"
#include "coordinator/scheduler/sequence.h"
#include "coordinator/store/store.h"

namespace funcky::scheduler {

struct TriggerFilter {
  std::string event;                                   // name or wildcard pattern
  std::shared_ptr<const expr::Expression> expression;  // null: every event of the name
};

// The most `cancel` entries a function may have (as many as its triggers).
inline constexpr size_t kMaxCancels = 10;

// `cancel: [{event, if?, timeout?}]`: an event that cancels a run of the function.
struct CancelOn {
  std::string event;                                  // name or wildcard pattern
  std::shared_ptr<const expr::Expression> condition;  // over `event` (the run's) and `async`
  std::chrono::milliseconds timeout;                  // after the run started; default 1 year
  // With a condition: the rule as its runs' cancel keys name it (store::CancelKey::rule), a
  // digest of its event and its `if`: the same rule has the same id in every sync.
  std::string id;
};

// `{cron, jitter?}`: a schedule, and how much later than its tick each run may start (each
// tick's run starts at tick + a random delay in [0, jitter]).
struct CronTrigger {
  CronSchedule schedule;
  std::chrono::milliseconds jitter{0};  // 0: at the tick
};

// `idempotency: "<expr>"` (limit 1 per 24 h) or `rateLimit: {limit, period, key?}`.
struct RateOption {
  std::string reason;  // store::kSkipIdempotency or store::kSkipRateLimit
  int64_t limit = 1;
  std::chrono::milliseconds period{0};
  std::shared_ptr<const expr::Expression> key;  // null: one key for the function
};

// `singleton: {mode: "skip"|"cancel", key?}`.
struct SingletonOption {
  bool cancel = false;
  std::shared_ptr<const expr::Expression> key;  // null: one key for the function
  std::string key_text;                         // the key expression as configured; "" without
};

// `throttle: {limit, period, burst?, key?}`: run starts paced per key, excess runs wait.
struct ThrottleOption {
  int64_t limit = 1;
  std::chrono::milliseconds period{0};
  int64_t burst = 0;
  std::shared_ptr<const expr::Expression> key;  // null: one key for the function
};

// Bounds of throttle.period and throttle.burst (Inngest's period bounds).
inline constexpr std::chrono::milliseconds kMinThrottlePeriod{1000};
inline constexpr std::chrono::milliseconds kMaxThrottlePeriod{7LL * 24 * 3600 * 1000};
inline constexpr int64_t kMaxThrottleBurst = 1000000;
// `debounce: {period, key?, timeout?}`: one run per burst of events of a key, with the last
// event, `period` after it (at most `timeout` after the burst's first event).
struct DebounceOption {
  std::chrono::milliseconds period{0};
  std::optional<std::chrono::milliseconds> timeout;
  std::shared_ptr<const expr::Expression> key;  // null: one key for the function
  std::string key_text;                         // the key expression as configured; "" without
};
// Bounds of debounce.period and debounce.timeout (Inngest's).
inline constexpr std::chrono::milliseconds kMinDebouncePeriod{1000};
inline constexpr std::chrono::milliseconds kMaxDebouncePeriod{7 * 24 * 3600 * 1000};

// `priority.run` is clamped to this many seconds either way (Inngest's documented range).
inline constexpr int64_t kMaxPrioritySeconds = 600;
// `batchEvents: {maxSize, timeout, key?, if?}`: the events of a key are gathered into one
// run, started when `maxSize` have arrived or `timeout` after the first (docs/flow-control.md
// "batchEvents"). An event whose `if` is false runs alone.
struct BatchOption {
  int64_t max_size = 0;
  std::chrono::milliseconds timeout{0};
  std::shared_ptr<const expr::Expression> key;        // null: one key for the function
  std::shared_ptr<const expr::Expression> condition;  // `if`; null: every event is batched
};
// Bounds of batchEvents (Inngest's).
inline constexpr int64_t kMinBatchSize = 2;
inline constexpr int64_t kMaxBatchSize = 100;
inline constexpr std::chrono::milliseconds kMinBatchTimeout{1000};
inline constexpr std::chrono::milliseconds kMaxBatchTimeout = store::kMaxBatchTimeout;

// Bounds of rateLimit.period (Inngest's).
inline constexpr std::chrono::milliseconds kMinRatePeriod{1000};
inline constexpr std::chrono::milliseconds kMaxRatePeriod{24 * 3600 * 1000};
// How long an idempotency key holds.
inline constexpr std::chrono::milliseconds kIdempotencyPeriod{24 * 3600 * 1000};

struct FlowControl {
  std::vector<TriggerFilter> triggers;
  std::vector<CronTrigger> crons;
  std::vector<CancelOn> cancel;
  std::shared_ptr<const expr::Expression> lane_key;  // null: no lanes
  std::string lane_key_text;                         // the lane key expression as configured
  // Where the lane was asked for, as config paths in messages name it: "ordering" or
  // "concurrency"; empty without a lane.
  std::string lane_from;
  std::optional<std::chrono::milliseconds> head_timeout;
  std::optional<Sequencing> sequence;              // null: acceptance order
  std::shared_ptr<const expr::Expression> bypass;  // null: every event takes its lane
  int function_limit = 0;                          // 0: unlimited
  int key_limit = 0;                               // 0: unlimited
  std::shared_ptr<const expr::Expression> limit_key;
  // A second keyed limit, held independently of the first; 0 / null: none.
  int key_limit2 = 0;
  std::shared_ptr<const expr::Expression> limit_key2;
  // `priority: {run: "<expr>"}`: null without.
  std::shared_ptr<const expr::Expression> priority;
  std::optional<RateOption> rate;  // idempotency wins over rateLimit when both are set
  std::optional<SingletonOption> singleton;
  std::optional<store::RunTimeouts> timeouts;
  std::optional<ThrottleOption> throttle;
  std::optional<DebounceOption> debounce;
  std::optional<BatchOption> batch;
};

// Whether `v` is an integer (of any JSON number type) in [lo, hi]: what a config number
// must be before it is narrowed.
bool IsIntegerIn(const nlohmann::json& v, int64_t lo, int64_t hi);

// kInvalidArgument naming `where`.key for the first key of `object` not in `known` whose
// value is not null (SDKs send unset options as null): an option Funcky does not implement is
// refused, never accepted and ignored.
Status OnlyKnownKeys(const nlohmann::json& object, std::string_view where,
                     std::initializer_list<std::string_view> known);

// kInvalidArgument naming the option and, for a bad expression, the position in it
// ("triggers[1].expression: at 7: …").
Result<FlowControl> ParseFlowControl(const nlohmann::json& config);

// The keys of one run, evaluated on its triggering event.
struct RunKeys {
  std::optional<std::string> lane_key;  // null: no lane, or the event bypasses it
  std::optional<std::string> concurrency_key;
  std::optional<std::string> concurrency_key2;  // of the second keyed limit
  // `priority.run` evaluated (PrioritySeconds): 0 without `priority`.
  int64_t priority_s = 0;
  LanePlacement lane;  // bypass, and a sequence lane's number
  std::optional<store::RateGate> rate;
  std::optional<store::SingletonGate> singleton;
  std::optional<store::RunTimeouts> timeouts;
  std::optional<store::ThrottleGate> throttle;
  std::optional<store::DebounceGate> debounce;
  std::optional<store::BatchGate> batch;  // null also when the event's `if` is false
  // One for each cancel rule with a condition (store::NewRun::cancel_keys), by CancelOn::id.
  std::vector<store::CancelKey> cancel_keys;
};
// The value of a `priority.run` expression as whole seconds: a number truncated toward zero
// and clamped to ±kMaxPrioritySeconds; anything else (a string, null, an error) is 0.
int64_t PrioritySeconds(const nlohmann::json& value);

// kInvalidArgument when the function's lane orders by sequence and the event yields no
// number (PlaceInLane).
Result<RunKeys> EvaluateKeys(const FlowControl& flow, const nlohmann::json& event);

}  // namespace funcky::scheduler
