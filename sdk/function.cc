#include "sdk/function.h"

#include <algorithm>
#include <cctype>
#include <stdexcept>
#include <string_view>

#include "common/duration.h"
#include "common/json_parse.h"
#include "common/step_id.h"
#include "common/url.h"
#include "common/utf8.h"
#include "sdk/client.h"
#include "sdk/execution.h"

namespace funcky::sdk {

namespace {

// Why `match` is not a field path both events can hold ("data.id": names of letters, digits
// and `_`, joined by dots), or "" when it is one (or empty). Pasted into an expression, other
// text would make one that never holds ("event.data.id", "data.user-id") or always does.
std::string MatchProblem(const std::string& match) {
  if (match.empty()) return "";
  std::string_view rest = match;
  for (bool first = true;; first = false) {
    const size_t dot = rest.find('.');
    const std::string_view name = rest.substr(0, dot);
    const bool identifier = !name.empty() && !std::isdigit(static_cast<unsigned char>(name[0])) &&
                            std::all_of(name.begin(), name.end(), [](char c) {
                              return std::isalnum(static_cast<unsigned char>(c)) != 0 || c == '_';
                            });
    if (!identifier || (first && (name == "event" || name == "async"))) {
      return "match \"" + match +
             "\" must be a field path of both events, e.g. \"data.id\" (names of letters, "
             "digits and _, joined by dots, without event. or async.)";
    }
    if (dot == std::string_view::npos) return "";
    rest.remove_prefix(dot + 1);
  }
}

// The `if` of a cancel_on or a wait with `match` (as the npm SDK writes it: "event.<match> ==
// async.<match>") and `if_expression`: both when both are set, neither dropped.
std::string MatchCondition(const std::string& match, const std::string& if_expression) {
  if (match.empty()) return if_expression;
  std::string condition = "event." + match + " == async." + match;
  if (!if_expression.empty()) condition += " && (" + if_expression + ")";
  return condition;
}

Json StepConfig(const std::string& id, const std::string& serve_url, std::optional<int> retries) {
  Json step = {{"id", "step"},
               {"name", "step"},
               {"runtime",
                {{"type", "http"},
                 {"url", SetQueryParam(SetQueryParam(serve_url, "fnId", id), "stepId", "step")}}}};
  if (retries) step["retries"] = {{"attempts", *retries}};
  return {{"step", step}};
}

}  // namespace

std::vector<Json> Function::configs(const std::string& app_id, const std::string& serve_url) const {
  const std::string id = app_id + "-" + options_.id;
  const std::string name = options_.name.empty() ? options_.id : options_.name;
  Json triggers = Json::array();
  for (const auto& t : options_.triggers) {
    // Every field given is sent: a trigger with both a cron and an event is refused by the
    // sync, naming it, rather than one of them dropped here.
    Json trigger = Json::object();
    if (!t.cron.empty()) trigger["cron"] = t.cron;
    if (!t.jitter.empty()) trigger["jitter"] = t.jitter;
    if (t.cron.empty() || !t.event.empty()) trigger["event"] = t.event;
    if (!t.expression.empty()) trigger["expression"] = t.expression;
    triggers.push_back(std::move(trigger));
  }
  Json config = {{"id", id},
                 {"name", name},
                 {"triggers", triggers},
                 {"steps", StepConfig(id, serve_url, options_.retries)}};
  if (options_.ordering) {
    const Ordering& o = *options_.ordering;
    Json ordering = {{"key", o.key}};
    for (const auto& [name, value] : {std::pair{"head_timeout", &o.head_timeout},
                                      {"bypass", &o.bypass},
                                      {"sequence", &o.sequence},
                                      {"gap_timeout", &o.gap_timeout},
                                      {"stale", &o.stale}}) {
      if (!value->empty()) ordering[name] = *value;
    }
    if (o.start) ordering["start"] = *o.start;
    config["ordering"] = std::move(ordering);
  }
  if (!options_.concurrency.empty()) {
    Json limits = Json::array();
    for (const Concurrency& c : options_.concurrency) {
      Json one = {{"limit", c.limit}};
      if (!c.key.empty()) one["key"] = c.key;
      limits.push_back(std::move(one));
    }
    config["concurrency"] = std::move(limits);
  }
  if (!options_.cancel_on.empty()) {
    Json cancel = Json::array();
    for (const CancelOn& c : options_.cancel_on) {
      Json one = {{"event", c.event}};
      if (std::string condition = MatchCondition(c.match, c.if_expression); !condition.empty()) {
        one["if"] = std::move(condition);
      }
      if (!c.timeout.empty()) one["timeout"] = c.timeout;
      cancel.push_back(std::move(one));
    }
    config["cancel"] = std::move(cancel);
  }
  if (options_.throttle) {
    const Throttle& t = *options_.throttle;
    Json throttle = {{"limit", t.limit}, {"period", t.period}};
    if (t.burst != 0) throttle["burst"] = t.burst;
    if (!t.key.empty()) throttle["key"] = t.key;
    config["throttle"] = std::move(throttle);
  }
  if (options_.debounce) {
    const Debounce& d = *options_.debounce;
    Json debounce = {{"period", d.period}};
    if (!d.key.empty()) debounce["key"] = d.key;
    if (!d.timeout.empty()) debounce["timeout"] = d.timeout;
    config["debounce"] = std::move(debounce);
  }
  if (options_.priority) config["priority"] = {{"run", options_.priority->run}};
  if (options_.batch_events) {
    const BatchEvents& b = *options_.batch_events;
    Json batch = {{"maxSize", b.max_size}, {"timeout", b.timeout}};
    if (!b.key.empty()) batch["key"] = b.key;
    if (!b.if_.empty()) batch["if"] = b.if_;
    config["batchEvents"] = std::move(batch);
  }
  if (!options_.idempotency.empty()) config["idempotency"] = options_.idempotency;
  if (options_.rate_limit) {
    const RateLimit& r = *options_.rate_limit;
    Json rate = {{"limit", r.limit}, {"period", r.period}};
    if (!r.key.empty()) rate["key"] = r.key;
    config["rateLimit"] = std::move(rate);
  }
  if (options_.singleton) {
    Json singleton = {{"mode", options_.singleton->mode}};
    if (!options_.singleton->key.empty()) singleton["key"] = options_.singleton->key;
    config["singleton"] = std::move(singleton);
  }
  if (options_.timeouts &&
      !(options_.timeouts->start.empty() && options_.timeouts->finish.empty())) {
    Json timeouts = Json::object();
    if (!options_.timeouts->start.empty()) timeouts["start"] = options_.timeouts->start;
    if (!options_.timeouts->finish.empty()) timeouts["finish"] = options_.timeouts->finish;
    config["timeouts"] = std::move(timeouts);
  }
  std::vector<Json> out = {std::move(config)};
  if (options_.on_failure) {
    const std::string failure_id = id + "-failure";
    out.push_back({{"id", failure_id},
                   {"name", name + " (failure)"},
                   {"triggers",
                    {{{"event", "inngest/function.failed"},
                      {"expression", "event.data.function_id == '" + id + "'"}}}},
                   {"steps", StepConfig(failure_id, serve_url, 1)}});
  }
  return out;
}

Function::Function(FunctionOptions options, Handler handler)
    : options_(std::move(options)), handler_(std::move(handler)) {
  for (const CancelOn& c : options_.cancel_on) {
    if (std::string problem = MatchProblem(c.match); !problem.empty()) {
      throw std::invalid_argument("function \"" + options_.id + "\": cancel_on's " + problem);
    }
  }
}

Function create_function(FunctionOptions options, Handler handler) {
  return Function(std::move(options), std::move(handler));
}

namespace {

// Text a step tool puts in an op: the reply that carries the op must be JSON a coordinator
// takes, so text that is not UTF-8 or holds NUL fails the function here, before any op is
// made (the reply could not be written, or would be refused call after call). The text is
// not quoted.
void CheckOpText(const std::string& text, const char* what) {
  if (!IsUtf8WithoutNul(text)) {
    throw UsageError(std::string(what) + " must be UTF-8 text without NUL");
  }
}

// The op of the next step named `id`. An id used before in this execution gets the first
// "id:n" (n = 1, 2, …) that is not used yet either, as the JS SDK picks it: counting the uses
// of each id alone gave the steps "x:1", "x", "x" the ids "x:1", "x" and "x:1" again.
Op NextOp(Execution& x, const std::string& id, OpCode code) {
  if (x.running_step) {
    throw UsageError("step \"" + id + "\" is used inside step \"" + *x.running_step +
                     "\": steps do not nest");
  }
  CheckOpText(id, "a step id");
  int index = 0;
  if (x.used_ids.contains(id)) {
    int& next = x.next_index[id];
    index = std::max(next, 1);
    while (x.used_ids.contains(id + ":" + std::to_string(index))) ++index;
    next = index + 1;
    x.used_ids.insert(id + ":" + std::to_string(index));
  } else {
    x.used_ids.insert(id);
  }
  Op op;
  op.id = HashStepId(id, index);
  op.code = code;
  op.name = id;
  op.display_name = id;
  op.opts = Json::object();
  op.userland = {{"id", id}};
  if (index > 0) op.userland["index"] = index;
  return op;
}

const Json* Memo(const Execution& x, const std::string& hash) {
  auto it = x.memo.find(hash);
  return it == x.memo.end() ? nullptr : &it.value();
}

// A memoized value as the step returns it (docs/protocol.md §5.5).
Json Unwrap(const Json& v) {
  if (v.is_object() && v.size() == 1 && v.contains("data")) return v["data"];
  if (v.is_object() && v.size() == 1 && v.contains("error")) throw StepError(v["error"]);
  return v;
}

// Replaying towards a planned step that must come later: a step not memoized before it
// means the coordinator's state does not match this function's code.
void CheckReachable(const Execution& x, const std::string& hash) {
  if (x.target_step != kDiscoveryStepId && x.target_step != hash) {
    throw StepNotFound{x.target_step};
  }
}

// Reports an async step (sleep, wait, invoke) to the coordinator: the call ends here.
[[noreturn]] void Report(const Execution& x, Op op) {
  x.EndIfRan();
  CheckReachable(x, op.id);
  throw Interrupt{{std::move(op)}, false};
}

// Ends the call with the failure of step `op`, the exception being handled (called from a
// catch block); an exception that is no step's failure goes on up.
[[noreturn]] void EndWithFailure(const Execution& x, Op op) {
  try {
    throw;
  } catch (const NonRetriableError& e) {
    op.error = SerializeError("NonRetriableError", e.what());
    op.code = OpCode::kStepFailed;
  } catch (const RetryAfterError& e) {
    op.error = SerializeError("RetryAfterError", e.what());
    op.code = x.last_attempt() ? OpCode::kStepFailed : OpCode::kStepError;
    if (op.code == OpCode::kStepError) throw Interrupt{{op}, false, e.after()};
  } catch (const std::exception& e) {
    op.error = SerializeError("Error", e.what());
    op.code = x.last_attempt() ? OpCode::kStepFailed : OpCode::kStepError;
  }
  if (op.code == OpCode::kStepFailed) {
    op.data = {{"__serialized", true},
               {"name", op.error["name"]},
               {"message", op.error["message"]},
               {"stack", ""}};
  }
  throw Interrupt{{op}, op.code == OpCode::kStepFailed};
}

// Runs `fn` as step `op` in this call: its StepRun when it succeeds, else the call ends with
// its failure. The result is the value a replay reads from the step's memo: it is made
// through JSON text (NaN becomes null, as it would be stored). A result the reply cannot
// carry, or a coordinator would refuse in it, fails the step for good: retried, the step's
// function would run again, side effects and all, only to give the same result.
Op Run(Execution& x, Op op, const std::function<Json()>& fn) {
  try {
    x.running_step = &op.name;
    Json result = fn();
    x.running_step = nullptr;
    // The reply is `[{…, "data": <result>, …}]`: the result is two levels in, and the rest
    // is the op without its data (its "null" aside).
    const size_t wrapping = Json::array({OpToJson(op)}).dump().size() - 4;
    op.data = AsReplied(result, "the step's result", 2, wrapping);
  } catch (...) {
    x.running_step = nullptr;
    EndWithFailure(x, std::move(op));
  }
  op.code = OpCode::kStepRun;
  return op;
}

// Runs `fn` as step `op` in this call and ends the call with its outcome.
[[noreturn]] void RunNow(Execution& x, Op op, const std::function<Json()>& fn) {
  throw Interrupt{{Run(x, std::move(op), fn)}, false};
}

// Runs `fn` as step `op` in this call; when it succeeds, the function goes on with its result
// (Execution::ran), else the call ends with its failure.
Json RunAndGoOn(Execution& x, Op op, const std::function<Json()>& fn) {
  x.ran = Run(x, std::move(op), fn);
  return x.ran->data;  // what a replay returns from the step's memo ({"data": …})
}

std::string TimeOption(std::string text, const char* what) {
  if (text.empty()) return text;
  if (!ParseDuration(text).ok()) {
    throw UsageError(std::string(what) + " \"" + text + "\" is not a duration");
  }
  return text;
}

}  // namespace

// Not file-local: the serve handler holds a function's end to it too (sdk/execution.h).
Json AsReplied(const Json& data, const std::string& what, int depth, size_t wrapping_bytes) {
  std::string text;
  try {
    text = data.dump();
  } catch (const Json::type_error& e) {  // 316: a string that is not UTF-8
    throw NonRetriableError(what + " cannot be sent as JSON: " + e.what());
  }
  JsonLimits limits = kHostReplyJsonLimits;
  limits.max_depth -= depth;
  limits.max_bytes = wrapping_bytes < limits.max_bytes ? limits.max_bytes - wrapping_bytes : 0;
  if (depth > 0) limits.max_values -= 64;  // the op and the reply's array around the value
  auto parsed = ParseUntrustedJson(text, limits);
  if (!parsed.ok()) {
    throw NonRetriableError(
        what + " is not JSON a coordinator takes in a reply: " + parsed.status().message());
  }
  return std::move(*parsed);
}

void Execution::EndIfRan() const {
  if (ran) throw Interrupt{{*ran}, false};
}

Json Step::run(const std::string& id, const std::function<Json()>& fn) {
  Execution& x = execution_;
  Op op = NextOp(x, id, OpCode::kStepPlanned);
  if (const Json* memo = Memo(x, op.id)) return Unwrap(*memo);
  x.EndIfRan();
  CheckReachable(x, op.id);
  const bool discovery = x.target_step == kDiscoveryStepId;
  if (discovery && x.disable_immediate_execution) {
    throw Interrupt{{op}, false};  // planned; the coordinator calls back for it
  }
  if (discovery) return RunAndGoOn(x, std::move(op), fn);
  // A step the coordinator asked for by id (a planned or parallel one) ends its call: the
  // run's other calls may record steps meanwhile, which this replay would not see.
  RunNow(x, std::move(op), fn);
}

std::vector<Json> Step::parallel(
    const std::vector<std::pair<std::string, std::function<Json()>>>& steps) {
  Execution& x = execution_;
  std::vector<Op> pending;
  std::vector<const std::function<Json()>*> pending_fns;
  std::vector<std::string> hashes;
  for (const auto& [id, fn] : steps) {
    Op op = NextOp(x, id, OpCode::kStepPlanned);
    hashes.push_back(op.id);
    if (Memo(x, op.id)) continue;
    if (x.target_step == op.id) RunNow(x, std::move(op), fn);
    pending.push_back(std::move(op));
    pending_fns.push_back(&fn);
  }
  if (!pending.empty()) {
    x.EndIfRan();
    if (x.target_step != kDiscoveryStepId) throw StepNotFound{x.target_step};
    if (pending.size() == 1 && !x.disable_immediate_execution) {
      RunNow(x, std::move(pending[0]), *pending_fns[0]);
    }
    throw Interrupt{std::move(pending), false};  // each runs as its own call
  }
  std::vector<Json> results;
  for (const std::string& hash : hashes) results.push_back(Unwrap(*Memo(x, hash)));
  return results;
}

void Step::sleep(const std::string& id, std::chrono::milliseconds duration) {
  Execution& x = execution_;
  Op op = NextOp(x, id, OpCode::kSleep);
  if (Memo(x, op.id)) return;
  op.name = FormatDuration(std::max(duration, std::chrono::milliseconds(1000)));
  Report(x, std::move(op));
}

void Step::sleep_until(const std::string& id, std::chrono::system_clock::time_point until) {
  Execution& x = execution_;
  Op op = NextOp(x, id, OpCode::kSleep);
  if (Memo(x, op.id)) return;
  op.name = FormatRfc3339(
      std::chrono::duration_cast<std::chrono::milliseconds>(until.time_since_epoch()).count());
  Report(x, std::move(op));
}

std::optional<Json> Step::wait_for_event(const std::string& id, const WaitForEvent& wait) {
  Execution& x = execution_;
  Op op = NextOp(x, id, OpCode::kWaitForEvent);
  if (const Json* memo = Memo(x, op.id)) {
    if (memo->is_null()) return std::nullopt;
    return *memo;
  }
  if (wait.timeout.empty()) throw UsageError("wait_for_event needs a timeout");
  CheckOpText(wait.event, "wait_for_event's event");
  CheckOpText(wait.if_expression, "wait_for_event's if_expression");
  if (std::string problem = MatchProblem(wait.match); !problem.empty()) {
    throw UsageError("wait_for_event's " + problem);
  }
  op.name = wait.event;
  op.opts = {{"event", wait.event}, {"timeout", TimeOption(wait.timeout, "timeout")}};
  if (std::string condition = MatchCondition(wait.match, wait.if_expression); !condition.empty()) {
    op.opts["if"] = std::move(condition);
  }
  if (!wait.lookback.empty()) op.opts["lookback"] = TimeOption(wait.lookback, "lookback");
  Report(x, std::move(op));
}

std::optional<Json> Step::wait_for_signal(const std::string& id, const WaitForSignal& wait) {
  Execution& x = execution_;
  Op op = NextOp(x, id, OpCode::kWaitForSignal);
  if (const Json* memo = Memo(x, op.id)) {
    if (memo->is_null()) return std::nullopt;
    return Unwrap(*memo);  // {"data": {"signal", "data"}}, or the conflict's StepError
  }
  if (wait.signal.empty()) throw UsageError("wait_for_signal needs a signal");
  if (wait.timeout.empty()) throw UsageError("wait_for_signal needs a timeout");
  CheckOpText(wait.signal, "wait_for_signal's signal");
  op.name = wait.signal;
  op.opts = {{"signal", wait.signal},
             {"timeout", TimeOption(wait.timeout, "timeout")},
             {"conflict", wait.replace ? "replace" : "fail"}};
  Report(x, std::move(op));
}

std::optional<std::string> Step::send_signal(const std::string& id, const std::string& signal,
                                             const Json& data) {
  const Client* client = execution_.client;
  Json result = run(id, [&]() -> Json {
    if (!client) throw UsageError("send_signal needs a client");
    auto run_id = client->send_signal(signal, data);
    if (!run_id.ok()) {
      throw std::runtime_error("sending the signal failed: " + run_id.status().message());
    }
    return {{"run_id", run_id->has_value() ? Json(**run_id) : Json(nullptr)}};
  });
  const auto run_id = result.find("run_id");
  if (run_id == result.end() || !run_id->is_string()) return std::nullopt;
  return run_id->get<std::string>();
}

std::vector<std::string> Step::send_event(const std::string& id, const Json& events) {
  const Client* client = execution_.client;
  Json result = run(id, [&]() -> Json {
    if (!client) throw UsageError("send_event needs a client");
    auto ids = client->send(events);
    if (!ids.ok()) throw std::runtime_error("sending events failed: " + ids.status().message());
    return {{"ids", *ids}};
  });
  return result.value("ids", std::vector<std::string>{});
}

Json Step::invoke(const std::string& id, const Invoke& invoke) {
  Execution& x = execution_;
  Op op = NextOp(x, id, OpCode::kInvokeFunction);
  if (const Json* memo = Memo(x, op.id)) return Unwrap(*memo);
  const std::string app =
      invoke.app_id.empty() && x.client ? x.client->options().app_id : invoke.app_id;
  CheckOpText(app, "invoke's app_id");
  CheckOpText(invoke.function_id, "invoke's function_id");
  // The data goes in the reply as [{"opts": {"payload": {"data": …}}}]: four levels in.
  const Json data = AsReplied(invoke.data, "invoke's data", 4, 0);  // or a NonRetriableError
  op.opts = {{"function_id", app + "-" + invoke.function_id}, {"payload", {{"data", data}}}};
  if (!invoke.timeout.empty()) op.opts["timeout"] = TimeOption(invoke.timeout, "timeout");
  Report(x, std::move(op));
}

}  // namespace funcky::sdk
