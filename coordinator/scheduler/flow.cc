#include "coordinator/scheduler/flow.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <set>
#include <string_view>

#include <cstdint>

#include "common/crypto.h"
#include "common/duration.h"

namespace funcky::scheduler {

using Json = nlohmann::json;

namespace {

// An expression of the config over the variables `sees` (the event, as a rule).
Result<std::shared_ptr<const expr::Expression>> KeyExpression(
    const Json& key, const std::string& where,
    std::initializer_list<std::string_view> sees = {"event"}) {
  if (!key.is_string() || key.get_ref<const std::string&>().empty()) {
    return InvalidArgument(where + " must be a non-empty expression string");
  }
  auto compiled = expr::Compile(key.get<std::string>());
  if (!compiled.ok()) return InvalidArgument(where + ": " + compiled.status().message());
  if (Status known = expr::RefuseUnknownVariables(**compiled, sees); !known.ok()) {
    return InvalidArgument(where + ": " + known.message());
  }
  return std::shared_ptr<const expr::Expression>(std::move(*compiled));
}

// The function config keys Funcky reads (`ordering` is its own extension).
const std::set<std::string, std::less<>> kKnownOptions = {
    "id",          "name",     "triggers",    "steps",     "cancel",
    "concurrency", "ordering", "idempotency", "rateLimit", "singleton",
    "timeouts",    "throttle", "debounce",    "priority",  "batchEvents"};

// A limit as the store keeps it (a 32-bit int): anything larger is refused rather than
// wrapped (2147483648 would become "unlimited", 4294967297 would become 1).
constexpr int64_t kMaxLimit = INT32_MAX;

bool IsLimit(const Json& v) { return IsIntegerIn(v, 0, kMaxLimit); }

Result<std::chrono::milliseconds> DurationOption(const Json& v, const std::string& where) {
  if (!v.is_string()) return InvalidArgument(where + " must be a duration string");
  auto d = ParseDuration(v.get<std::string>());
  if (!d.ok()) return InvalidArgument(where + ": " + d.status().message());
  return *d;
}

// The options of a lane besides its key, on `ordering` or on the lane's concurrency entry
// (`where`): head_timeout, bypass, and a producer sequence (sequence.h).
constexpr std::array<std::string_view, 6> kLaneOptions = {"head_timeout", "bypass", "sequence",
                                                          "gap_timeout",  "start",  "stale"};

bool HasOption(const Json& o, std::string_view name) {
  auto it = o.find(name);
  return it != o.end() && !it->is_null();
}

// The first lane option set in `o`, or "".
std::string_view FirstLaneOption(const Json& o) {
  for (std::string_view name : kLaneOptions) {
    if (HasOption(o, name)) return name;
  }
  return {};
}

Status AddLaneOptions(const Json& o, const std::string& where, FlowControl& flow) {
  flow.lane_from = where;
  if (HasOption(o, "head_timeout")) {
    ASSIGN_OR_RETURN(flow.head_timeout, DurationOption(o["head_timeout"], where + ".head_timeout"));
    // Heads are checked once a second; a shorter time (0s) failed every head at once.
    if (*flow.head_timeout < std::chrono::seconds(1)) {
      return InvalidArgument(where + ".head_timeout must be at least 1s");
    }
  }
  if (HasOption(o, "bypass")) {
    ASSIGN_OR_RETURN(flow.bypass, KeyExpression(o["bypass"], where + ".bypass"));
  }
  if (!HasOption(o, "sequence")) {
    for (std::string_view name : {"gap_timeout", "start", "stale"}) {
      if (HasOption(o, name)) {
        return InvalidArgument(where + "." + std::string(name) + " needs " + where +
                               ".sequence: it applies to a lane ordered by the producer's "
                               "numbers");
      }
    }
    return Status::Ok();
  }
  Sequencing seq;
  ASSIGN_OR_RETURN(seq.expression, KeyExpression(o["sequence"], where + ".sequence"));
  const std::string bounds(kGapTimeoutBounds);
  if (!HasOption(o, "gap_timeout")) {
    return InvalidArgument(where + ".sequence needs " + where +
                           ".gap_timeout: how long the lane waits for a missing number, " + bounds);
  }
  ASSIGN_OR_RETURN(seq.gap_timeout, DurationOption(o["gap_timeout"], where + ".gap_timeout"));
  if (seq.gap_timeout < kMinGapTimeout || seq.gap_timeout > kMaxGapTimeout) {
    return InvalidArgument(where + ".gap_timeout must be " + bounds);
  }
  if (HasOption(o, "start")) {
    if (!IsIntegerIn(o["start"], 0, kMaxSequenceNumber)) {
      return InvalidArgument(where + ".start must be an integer from 0 to " +
                             std::to_string(kMaxSequenceNumber));
    }
    seq.start = o["start"].get<int64_t>();
  }
  if (HasOption(o, "stale")) {
    const Json& stale = o["stale"];
    if (stale == "skip") {
      seq.stale = StalePolicy::kSkip;
    } else if (stale == "run") {
      seq.stale = StalePolicy::kRun;
    } else {
      return InvalidArgument(where + ".stale must be \"skip\" or \"run\"");
    }
  }
  flow.sequence = std::move(seq);
  return Status::Ok();
}

Status AddConcurrency(const Json& c, FlowControl& flow) {
  const std::string range = " from 0 to " + std::to_string(kMaxLimit);
  // Every unkeyed limit holds, so the smallest is the one that binds (0 is none).
  auto add_unkeyed = [&flow](int limit) {
    flow.function_limit = flow.function_limit == 0 || limit == 0
                              ? std::max(flow.function_limit, limit)
                              : std::min(flow.function_limit, limit);
  };
  if (c.is_number()) {
    if (!IsLimit(c)) return InvalidArgument("concurrency must be an integer" + range);
    // Among entries too: it set the limit over theirs ([{limit: 2}, 10] ran 10 at once).
    add_unkeyed(static_cast<int>(c.get<int64_t>()));
    return Status::Ok();
  }
  if (!c.is_object() || !c.contains("limit") || !IsLimit(c["limit"])) {
    return InvalidArgument("concurrency needs an integer \"limit\"" + range);
  }
  RETURN_IF_ERROR(OnlyKnownKeys(c, "concurrency",
                                {"limit", "key", "scope", "head_timeout", "bypass", "sequence",
                                 "gap_timeout", "start", "stale"}));
  const int limit = static_cast<int>(c["limit"].get<int64_t>());
  if (auto scope = c.find("scope"); scope != c.end() && !scope->is_null()) {
    if (!scope->is_string() || (*scope != "fn" && *scope != "env" && *scope != "account")) {
      return InvalidArgument("concurrency.scope must be \"fn\", \"env\" or \"account\"");
    }
    if (*scope != "fn") {
      return InvalidArgument("concurrency.scope \"" + scope->get<std::string>() +
                             "\" (a limit shared across functions) is not implemented by " +
                             "Funcky; use scope \"fn\"");
    }
  }
  // Funcky's lane options ride on the lane's entry, where the Inngest SDKs keep them
  // (docs/ordering.md "Sequence lanes"); on any other entry they would mean nothing.
  if (std::string_view option = FirstLaneOption(c);
      !option.empty() && (limit != 1 || !HasOption(c, "key"))) {
    return InvalidArgument("concurrency." + std::string(option) +
                           " needs a lane: an entry {limit: 1, key}");
  }
  if (!c.contains("key")) {
    add_unkeyed(limit);
    return Status::Ok();
  }
  ASSIGN_OR_RETURN(auto key, KeyExpression(c["key"], "concurrency.key"));
  if (limit == 1) {
    if (flow.lane_key) return InvalidArgument("only one lane key per function");
    flow.lane_key = std::move(key);
    flow.lane_key_text = c["key"].get<std::string>();
    RETURN_IF_ERROR(AddLaneOptions(c, "concurrency", flow));
  } else if (!flow.limit_key) {
    flow.key_limit = limit;
    flow.limit_key = std::move(key);
  } else {
    // The array holds at most 2 entries, so this is the second keyed limit; each holds.
    flow.key_limit2 = limit;
    flow.limit_key2 = std::move(key);
  }
  return Status::Ok();
}

// `rateLimit: {limit, period, key?}`.
Result<RateOption> ParseRateLimit(const Json& r) {
  if (!r.is_object()) return InvalidArgument("rateLimit must be an object {limit, period, key?}");
  RETURN_IF_ERROR(OnlyKnownKeys(r, "rateLimit", {"limit", "period", "key"}));
  RateOption rate;
  rate.reason = store::kSkipRateLimit;
  if (!r.contains("limit") || !IsIntegerIn(r["limit"], 1, kMaxLimit)) {
    return InvalidArgument("rateLimit.limit must be an integer from 1 to " +
                           std::to_string(kMaxLimit));
  }
  rate.limit = r["limit"].get<int64_t>();
  if (!HasOption(r, "period")) return InvalidArgument("rateLimit needs a \"period\"");
  ASSIGN_OR_RETURN(rate.period, DurationOption(r["period"], "rateLimit.period"));
  if (rate.period < kMinRatePeriod || rate.period > kMaxRatePeriod) {
    return InvalidArgument("rateLimit.period must be from 1s to 24h");
  }
  if (HasOption(r, "key")) {
    ASSIGN_OR_RETURN(rate.key, KeyExpression(r["key"], "rateLimit.key"));
  }
  return rate;
}

// `singleton: {mode, key?}`.
Result<SingletonOption> ParseSingleton(const Json& o) {
  if (!o.is_object()) return InvalidArgument("singleton must be an object {mode, key?}");
  RETURN_IF_ERROR(OnlyKnownKeys(o, "singleton", {"mode", "key"}));
  SingletonOption singleton;
  auto mode = o.find("mode");
  if (mode == o.end() || (*mode != "skip" && *mode != "cancel")) {
    return InvalidArgument("singleton.mode must be \"skip\" or \"cancel\"");
  }
  singleton.cancel = *mode == "cancel";
  if (HasOption(o, "key")) {
    ASSIGN_OR_RETURN(singleton.key, KeyExpression(o["key"], "singleton.key"));
    singleton.key_text = o["key"].get<std::string>();
  }
  return singleton;
}

// `timeouts: {start?, finish?}`, each a positive duration of at most a year.
Result<store::RunTimeouts> ParseTimeouts(const Json& o) {
  if (!o.is_object()) return InvalidArgument("timeouts must be an object {start?, finish?}");
  RETURN_IF_ERROR(OnlyKnownKeys(o, "timeouts", {"start", "finish"}));
  store::RunTimeouts timeouts;
  for (const char* name : {"start", "finish"}) {
    if (!HasOption(o, name)) continue;
    const std::string where = std::string("timeouts.") + name;
    ASSIGN_OR_RETURN(auto d, DurationOption(o[name], where));
    if (d <= std::chrono::milliseconds(0) || d > std::chrono::hours(24 * 366)) {
      return InvalidArgument(where + " must be more than 0 and at most 366d");
    }
    (std::string_view(name) == "start" ? timeouts.start : timeouts.finish) = d;
  }
  return timeouts;
}

// `throttle: {limit, period, burst?, key?}` (docs/flow-control.md "throttle").
Result<ThrottleOption> ParseThrottle(const Json& o) {
  if (!o.is_object()) {
    return InvalidArgument("throttle must be an object {limit, period, burst?, key?}");
  }
  RETURN_IF_ERROR(OnlyKnownKeys(o, "throttle", {"limit", "period", "burst", "key"}));
  ThrottleOption throttle;
  if (!o.contains("limit") || !IsIntegerIn(o["limit"], 1, kMaxLimit)) {
    return InvalidArgument("throttle.limit must be an integer from 1 to " +
                           std::to_string(kMaxLimit));
  }
  throttle.limit = o["limit"].get<int64_t>();
  if (!HasOption(o, "period")) return InvalidArgument("throttle needs a \"period\"");
  ASSIGN_OR_RETURN(throttle.period, DurationOption(o["period"], "throttle.period"));
  if (throttle.period < kMinThrottlePeriod || throttle.period > kMaxThrottlePeriod) {
    return InvalidArgument("throttle.period must be from 1s to 7d");
  }
  if (HasOption(o, "burst")) {
    if (!IsIntegerIn(o["burst"], 0, kMaxThrottleBurst)) {
      return InvalidArgument("throttle.burst must be an integer from 0 to " +
                             std::to_string(kMaxThrottleBurst));
    }
    throttle.burst = o["burst"].get<int64_t>();
  }
  if (HasOption(o, "key")) {
    ASSIGN_OR_RETURN(throttle.key, KeyExpression(o["key"], "throttle.key"));
  }
  return throttle;
}

// `debounce: {period, key?, timeout?}`, period and timeout each from 1s to 7d.
Result<DebounceOption> ParseDebounce(const Json& o) {
  if (!o.is_object()) {
    return InvalidArgument("debounce must be an object {period, key?, timeout?}");
  }
  RETURN_IF_ERROR(OnlyKnownKeys(o, "debounce", {"period", "key", "timeout"}));
  DebounceOption debounce;
  if (!HasOption(o, "period")) return InvalidArgument("debounce needs a \"period\"");
  ASSIGN_OR_RETURN(debounce.period, DurationOption(o["period"], "debounce.period"));
  if (debounce.period < kMinDebouncePeriod || debounce.period > kMaxDebouncePeriod) {
    return InvalidArgument("debounce.period must be from 1s to 7d");
  }
  if (HasOption(o, "timeout")) {
    ASSIGN_OR_RETURN(debounce.timeout, DurationOption(o["timeout"], "debounce.timeout"));
    if (*debounce.timeout < kMinDebouncePeriod || *debounce.timeout > kMaxDebouncePeriod) {
      return InvalidArgument("debounce.timeout must be from 1s to 7d");
    }
  }
  if (HasOption(o, "key")) {
    ASSIGN_OR_RETURN(debounce.key, KeyExpression(o["key"], "debounce.key"));
    debounce.key_text = o["key"].get<std::string>();
  }
  return debounce;
}

// `priority: {run: "<expr>"}` (docs/flow-control.md "priority").
Result<std::shared_ptr<const expr::Expression>> ParsePriority(const Json& o) {
  if (!o.is_object()) return InvalidArgument("priority must be an object {run}");
  RETURN_IF_ERROR(OnlyKnownKeys(o, "priority", {"run"}));
  if (!HasOption(o, "run")) return InvalidArgument("priority needs \"run\": an expression");
  return KeyExpression(o["run"], "priority.run");
}

// Why an option on a function with a lane needs the lane key, and why bypass and sequence
// lanes are refused with it; each ends a 400 message.
struct LaneRefusals {
  const char* key;
  const char* bypass;
  const char* sequence;
};

// An option (`option`, configured with key expression `key_text`) on a function with a lane
// is kept to the lane key's own expression, without bypass or sequence.
Status CheckKeyedByLane(const FlowControl& flow, const std::string& option,
                        const std::string& key_text, const LaneRefusals& why) {
  if (!flow.lane_key) return Status::Ok();
  const std::string lane = option + " with a lane (" + flow.lane_from + ")";
  if (key_text != flow.lane_key_text) {
    return InvalidArgument(lane + " needs " + option + ".key to be the lane's key expression (\"" +
                           flow.lane_key_text + "\"), so that " + why.key + "; it is " +
                           (key_text.empty() ? std::string("missing") : "\"" + key_text + "\""));
  }
  if (flow.bypass) {
    return InvalidArgument(lane + " and " + flow.lane_from +
                           ".bypass is not implemented by Funcky (" + why.bypass +
                           "); remove one of them");
  }
  if (flow.sequence) {
    return InvalidArgument(lane + " and " + flow.lane_from +
                           ".sequence is not implemented by Funcky (" + why.sequence +
                           "); remove one of them");
  }
  return Status::Ok();
}

// Singleton on a function with a lane: the gate and the lane agree on what "one run of the
// key" is. The gate decides before the run joins the lane, so a skipped event takes no lane
// position; in mode cancel the key's active run (queued, head, or a blocked head: none is
// terminal) is cancelled through the one cancel path, which moves that same lane on, whose
// row IngestEvents locked already (docs/flow-control.md "singleton in a lane").
Status CheckSingletonInLane(const FlowControl& flow) {
  return CheckKeyedByLane(flow, "singleton", flow.singleton->key_text,
                          {"the singleton and the lane hold the same key",
                           "a bypassing run of the key would run beside the lane's",
                           "a skipped or cancelled event would leave a gap in the numbers"});
}

// Debounce on a function with a lane keeps the lane's order only when the burst a run takes
// is one lane key's: the debounce key must be the lane key's expression itself. Then every
// event that joins a run waiting in its lane has that lane's key, and no run of the key is
// created while one is pending, so the events of each run all came after those of the runs
// before it (docs/flow-control.md "debounce in a lane"). A bypass or a sequence lane would
// let a run's event change its place, and is refused.
Status CheckDebounceInLane(const FlowControl& flow) {
  return CheckKeyedByLane(flow, "debounce", flow.debounce->key_text,
                          {"a burst is one lane key's events",
                           "a bypassing event could replace the event of a run in the lane",
                           "a debounced run's number would change with its event"});
}

// `{cron, jitter?}` at config path `where`: the jitter a positive duration shorter than the
// schedule's shortest interval (CronSchedule::ShortestIntervalSeconds), so a tick's run
// starts before the next tick.
Result<CronTrigger> ParseCronTrigger(const Json& t, const std::string& where) {
  auto schedule = CronSchedule::Parse(t["cron"].get<std::string>());
  if (!schedule.ok()) return InvalidArgument(where + ".cron: " + schedule.status().message());
  CronTrigger cron{std::move(*schedule)};
  if (!HasOption(t, "jitter")) return cron;
  ASSIGN_OR_RETURN(cron.jitter, DurationOption(t["jitter"], where + ".jitter"));
  const std::chrono::milliseconds interval =
      std::chrono::seconds(cron.schedule.ShortestIntervalSeconds());
  if (cron.jitter <= std::chrono::milliseconds(0) || cron.jitter >= interval) {
    return InvalidArgument(where + ".jitter must be more than 0 and less than the schedule's " +
                           "shortest interval (" + FormatDuration(interval) + ")");
  }
  return cron;
}

// `batchEvents: {maxSize, timeout, key?, if?}` (docs/flow-control.md "batchEvents").
Result<BatchOption> ParseBatchEvents(const Json& o) {
  if (!o.is_object()) {
    return InvalidArgument("batchEvents must be an object {maxSize, timeout, key?, if?}");
  }
  RETURN_IF_ERROR(OnlyKnownKeys(o, "batchEvents", {"maxSize", "timeout", "key", "if"}));
  BatchOption batch;
  if (!o.contains("maxSize") || !IsIntegerIn(o["maxSize"], kMinBatchSize, kMaxBatchSize)) {
    return InvalidArgument("batchEvents.maxSize must be an integer from " +
                           std::to_string(kMinBatchSize) + " to " + std::to_string(kMaxBatchSize));
  }
  batch.max_size = o["maxSize"].get<int64_t>();
  if (!HasOption(o, "timeout")) return InvalidArgument("batchEvents needs a \"timeout\"");
  ASSIGN_OR_RETURN(batch.timeout, DurationOption(o["timeout"], "batchEvents.timeout"));
  if (batch.timeout < kMinBatchTimeout || batch.timeout > kMaxBatchTimeout) {
    return InvalidArgument("batchEvents.timeout must be from 1s to 60s");
  }
  if (HasOption(o, "key")) {
    ASSIGN_OR_RETURN(batch.key, KeyExpression(o["key"], "batchEvents.key"));
  }
  if (HasOption(o, "if")) {
    ASSIGN_OR_RETURN(batch.condition, KeyExpression(o["if"], "batchEvents.if"));
  }
  return batch;
}

// The option a batch cannot be combined with, or "" when none is set. Inngest's server
// refuses `cancel`, `debounce` and `priority` with it;
// `singleton` would refuse every event after a batch's first (its pending run is active);
// a lane admits runs one event at a time in acceptance order, while each event of a batch
// would want its own place.
std::string BatchConflict(const FlowControl& flow) {
  if (flow.lane_key) return flow.lane_from + " (a lane)";
  if (!flow.cancel.empty()) return "cancel";
  if (flow.debounce) return "debounce";
  if (flow.priority) return "priority";
  if (flow.singleton) return "singleton";
  return {};
}

// The event's `ts` (Unix ms; intake fills it in when the sender did not), else 0.
int64_t EventTs(const Json& event) {
  auto ts = event.find("ts");
  return ts != event.end() && IsIntegerIn(*ts, 0, INT64_MAX) ? ts->get<int64_t>() : 0;
}

// The text of `key` evaluated on the event, or "" without a key expression.
std::string GateKey(const std::shared_ptr<const expr::Expression>& key,
                    const expr::Variables& vars) {
  return key ? expr::Key(key->Evaluate(vars)) : std::string();
}

}  // namespace

bool IsIntegerIn(const Json& v, int64_t lo, int64_t hi) {
  if (v.is_number_unsigned()) {
    const uint64_t u = v.get<uint64_t>();
    return (lo < 0 || u >= static_cast<uint64_t>(lo)) && hi >= 0 && u <= static_cast<uint64_t>(hi);
  }
  return v.is_number_integer() && v.get<int64_t>() >= lo && v.get<int64_t>() <= hi;
}

int64_t PrioritySeconds(const Json& value) {
  constexpr int64_t kMax = kMaxPrioritySeconds;
  if (value.is_number_unsigned()) return std::min<uint64_t>(value.get<uint64_t>(), kMax);
  if (value.is_number_integer()) return std::clamp<int64_t>(value.get<int64_t>(), -kMax, kMax);
  if (!value.is_number_float()) return 0;
  const double d = value.get<double>();
  if (std::isnan(d)) return 0;
  // Clamped as a double first: a huge or infinite value must not overflow the cast.
  return static_cast<int64_t>(std::trunc(std::clamp<double>(d, -kMax, kMax)));
}

Status OnlyKnownKeys(const Json& object, std::string_view where,
                     std::initializer_list<std::string_view> known) {
  for (const auto& [key, value] : object.items()) {
    if (value.is_null()) continue;
    if (std::find(known.begin(), known.end(), key) != known.end()) continue;
    return InvalidArgument(std::string(where) + "." + key +
                           " is not implemented by Funcky; remove it (it would otherwise be "
                           "ignored)");
  }
  return Status::Ok();
}

Result<FlowControl> ParseFlowControl(const Json& config) {
  FlowControl flow;
  if (config.is_object()) {
    for (const auto& [key, value] : config.items()) {
      if (value.is_null() || kKnownOptions.count(key)) continue;
      return InvalidArgument("unknown option \"" + key + "\"; Funcky does not implement it");
    }
  }
  if (auto triggers = config.find("triggers"); triggers != config.end() && triggers->is_array()) {
    for (size_t i = 0; i < triggers->size(); ++i) {
      const Json& t = (*triggers)[i];
      if (!t.is_object()) continue;
      const std::string where = "triggers[" + std::to_string(i) + "]";
      RETURN_IF_ERROR(OnlyKnownKeys(t, where, {"event", "cron", "expression", "jitter"}));
      if (HasOption(t, "cron")) {
        if (!t["cron"].is_string()) return InvalidArgument(where + ".cron must be a string");
        if (HasOption(t, "event") || HasOption(t, "expression")) {
          return InvalidArgument(where +
                                 ": a cron trigger takes no \"event\" or \"expression\"; give "
                                 "each its own trigger");
        }
        ASSIGN_OR_RETURN(auto trigger, ParseCronTrigger(t, where));
        flow.crons.push_back(std::move(trigger));
        continue;
      }
      if (HasOption(t, "jitter")) return InvalidArgument(where + ".jitter needs a cron trigger");
      if (!t.contains("event") || !t["event"].is_string()) continue;
      TriggerFilter filter{t["event"].get<std::string>(), nullptr};
      if (auto e = t.find("expression"); e != t.end() && !e->is_null()) {
        ASSIGN_OR_RETURN(filter.expression, KeyExpression(*e, where + ".expression"));
      }
      flow.triggers.push_back(std::move(filter));
    }
  }
  if (auto cancel = config.find("cancel"); cancel != config.end() && !cancel->is_null()) {
    if (!cancel->is_array()) return InvalidArgument("cancel must be an array");
    // Each event is matched against every function's cancel rules, and each rule that
    // matches pages through the function's runs.
    if (cancel->size() > kMaxCancels) {
      return InvalidArgument("cancel has " + std::to_string(cancel->size()) +
                             " entries; a function has at most " + std::to_string(kMaxCancels));
    }
    for (size_t i = 0; i < cancel->size(); ++i) {
      const Json& c = (*cancel)[i];
      const std::string where = "cancel[" + std::to_string(i) + "]";
      if (!c.is_object() || !c.contains("event") || !c["event"].is_string()) {
        return InvalidArgument(where + " needs an \"event\" name");
      }
      RETURN_IF_ERROR(OnlyKnownKeys(c, where, {"event", "if", "timeout"}));
      CancelOn on{c["event"].get<std::string>(), nullptr, std::chrono::hours(24 * 366)};
      if (auto e = c.find("if"); e != c.end() && !e->is_null()) {
        ASSIGN_OR_RETURN(on.condition, KeyExpression(*e, where + ".if", {"event", "async"}));
        // Of the two as a JSON array: no event name and `if` read as another pair.
        on.id =
            crypto::Sha256Hex(Json::array({on.event, on.condition->source()}).dump()).substr(0, 32);
      }
      if (auto t = c.find("timeout"); t != c.end() && !t->is_null()) {
        auto d =
            t->is_string()
                ? ParseDuration(t->get<std::string>())
                : Result<std::chrono::milliseconds>(InvalidArgument("must be a duration string"));
        if (!d.ok()) return InvalidArgument(where + ".timeout: " + d.status().message());
        // A run older than the timeout is not cancelled: 0s would accept the rule and apply
        // it never.
        if (*d < std::chrono::seconds(1)) {
          return InvalidArgument(where + ".timeout must be at least 1s");
        }
        on.timeout = *d;
      }
      flow.cancel.push_back(std::move(on));
    }
  }
  if (auto o = config.find("ordering"); o != config.end() && !o->is_null()) {
    if (o->is_object() && !HasOption(*o, "key") && HasOption(*o, "sequence")) {
      return InvalidArgument(
          "ordering.sequence needs ordering.key: the numbers are counted per key (e.g. "
          "\"event.data.tenant_id\")");
    }
    if (!o->is_object() || !o->contains("key")) {
      return InvalidArgument("ordering must be an object with a \"key\"");
    }
    RETURN_IF_ERROR(OnlyKnownKeys(
        *o, "ordering",
        {"key", "head_timeout", "bypass", "sequence", "gap_timeout", "start", "stale"}));
    ASSIGN_OR_RETURN(flow.lane_key, KeyExpression((*o)["key"], "ordering.key"));
    flow.lane_key_text = (*o)["key"].get<std::string>();
    RETURN_IF_ERROR(AddLaneOptions(*o, "ordering", flow));
  }
  if (auto c = config.find("concurrency"); c != config.end() && !c->is_null()) {
    if (c->is_array()) {
      if (c->size() > 2) return InvalidArgument("concurrency allows at most 2 entries");
      for (const Json& one : *c) RETURN_IF_ERROR(AddConcurrency(one, flow));
    } else {
      RETURN_IF_ERROR(AddConcurrency(*c, flow));
    }
  }
  if (auto r = config.find("rateLimit"); r != config.end() && !r->is_null()) {
    ASSIGN_OR_RETURN(flow.rate, ParseRateLimit(*r));
  }
  // Inngest's rule: an idempotency key replaces a rate limit (both are checked at sync).
  if (auto i = config.find("idempotency"); i != config.end() && !i->is_null()) {
    ASSIGN_OR_RETURN(auto key, KeyExpression(*i, "idempotency"));
    flow.rate = RateOption{store::kSkipIdempotency, 1, kIdempotencyPeriod, std::move(key)};
  }
  if (auto o = config.find("singleton"); o != config.end() && !o->is_null()) {
    ASSIGN_OR_RETURN(flow.singleton, ParseSingleton(*o));
    RETURN_IF_ERROR(CheckSingletonInLane(flow));
  }
  if (auto t = config.find("timeouts"); t != config.end() && !t->is_null()) {
    ASSIGN_OR_RETURN(store::RunTimeouts timeouts, ParseTimeouts(*t));
    // `{}` sets no deadline: the function's runs are plain ones (they keep the shortcuts of
    // runs without deadlines).
    if (timeouts.start || timeouts.finish) flow.timeouts = timeouts;
  }
  if (auto t = config.find("throttle"); t != config.end() && !t->is_null()) {
    ASSIGN_OR_RETURN(flow.throttle, ParseThrottle(*t));
  }
  if (auto p = config.find("priority"); p != config.end() && !p->is_null()) {
    ASSIGN_OR_RETURN(flow.priority, ParsePriority(*p));
  }
  if (auto d = config.find("debounce"); d != config.end() && !d->is_null()) {
    ASSIGN_OR_RETURN(flow.debounce, ParseDebounce(*d));
    RETURN_IF_ERROR(CheckDebounceInLane(flow));
    if (flow.singleton) {
      return InvalidArgument(
          "debounce with singleton is not implemented by Funcky (a pending debounced run "
          "is active, so singleton would refuse every later event of the burst); remove one "
          "of them");
    }
  }
  if (auto b = config.find("batchEvents"); b != config.end() && !b->is_null()) {
    ASSIGN_OR_RETURN(flow.batch, ParseBatchEvents(*b));
    if (std::string conflict = BatchConflict(flow); !conflict.empty()) {
      return InvalidArgument("batchEvents with " + conflict +
                             " is not implemented by Funcky (Inngest refuses batchEvents with "
                             "cancel, debounce and priority; a lane or a singleton takes one "
                             "event per run); remove one of them");
    }
  }
  if (flow.sequence && !flow.crons.empty()) {
    return InvalidArgument(flow.lane_from +
                           ".sequence: a cron trigger's ticks carry no sequence number; give "
                           "the schedule a function of its own");
  }
  return flow;
}

Result<RunKeys> EvaluateKeys(const FlowControl& flow, const Json& event) {
  RunKeys keys;
  const expr::Variables vars{{"event", &event}};
  if (flow.limit_key) keys.concurrency_key = expr::Key(flow.limit_key->Evaluate(vars));
  if (flow.limit_key2) keys.concurrency_key2 = expr::Key(flow.limit_key2->Evaluate(vars));
  if (flow.priority) keys.priority_s = PrioritySeconds(flow.priority->Evaluate(vars));
  if (flow.rate) {
    keys.rate = store::RateGate{flow.rate->reason, GateKey(flow.rate->key, vars), flow.rate->limit,
                                flow.rate->period};
  }
  if (flow.singleton) {
    keys.singleton =
        store::SingletonGate{GateKey(flow.singleton->key, vars), flow.singleton->cancel};
  }
  keys.timeouts = flow.timeouts;
  if (flow.throttle) {
    keys.throttle = store::ThrottleGate{GateKey(flow.throttle->key, vars), flow.throttle->limit,
                                        flow.throttle->period, flow.throttle->burst};
  }
  if (flow.debounce) {
    keys.debounce = store::DebounceGate{GateKey(flow.debounce->key, vars), flow.debounce->period,
                                        flow.debounce->timeout, EventTs(event)};
  }
  if (flow.batch && (!flow.batch->condition || flow.batch->condition->Matches(vars))) {
    keys.batch =
        store::BatchGate{GateKey(flow.batch->key, vars), flow.batch->max_size, flow.batch->timeout};
  }
  for (const CancelOn& on : flow.cancel) {
    if (!on.condition) continue;  // it cancels every run: a cancelling event reads them all
    const bool twin = std::any_of(keys.cancel_keys.begin(), keys.cancel_keys.end(),
                                  [&](const store::CancelKey& k) { return k.rule == on.id; });
    if (!twin) keys.cancel_keys.push_back({on.id, on.condition->RequiredKey("async", vars)});
  }
  if (!flow.lane_key) return keys;
  ASSIGN_OR_RETURN(
      keys.lane, PlaceInLane(flow.sequence ? &*flow.sequence : nullptr, flow.bypass.get(), event));
  if (!keys.lane.bypass_lane) keys.lane_key = expr::Key(flow.lane_key->Evaluate(vars));
  return keys;
}

}  // namespace funcky::scheduler
