#include "coordinator/executor/transition.h"

#include <algorithm>
#include <charconv>
#include <optional>
#include <set>

#include "common/duration.h"
#include "common/json_parse.h"
#include "common/ops.h"
#include "common/step_id.h"
#include "coordinator/executor/call.h"
#include "coordinator/expr/expr.h"

namespace funcky::executor {

using store::Json;

namespace {

Json ErrorJson(std::string_view name, std::string_view message) {
  return {{"name", name}, {"message", message}};
}

std::string InternalId(std::string_view kind, std::string_view subject) {
  std::string id(kInternalIdPrefix);
  id.append(kind).append(":").append(subject);
  return id;
}

// At most `max` bytes of a reply body as text every store can hold and every log can print:
// bytes that are not UTF-8 become U+FFFD (a strict dump() would throw on them) and NUL is
// dropped (PostgreSQL refuses it), so recording the attempt cannot fail on the store and
// leave the call to be redone forever.
std::string BodyExcerpt(std::string_view body, size_t max) {
  const std::string quoted =
      Json(std::string(body.substr(0, max))).dump(-1, ' ', false, Json::error_handler_t::replace);
  std::string text = Json::parse(quoted).get<std::string>();
  std::erase(text, '\0');
  return text;
}

// An attempt's error as the run's history keeps it: whole while its JSON is at most 64 KiB;
// past that, its name, message and stack, each cut, and what was cut. A host's error may be as
// large as its reply (16 MiB), and every retry keeps an attempt; the step's memo and the run's
// error keep it whole.
constexpr size_t kMaxAttemptErrorBytes = 64 * 1024;

Json AttemptError(Json error) {
  if (error.is_null()) return error;
  const size_t size = error.dump(-1, ' ', false, Json::error_handler_t::replace).size();
  if (size <= kMaxAttemptErrorBytes) return error;
  auto text = [&](const char* key, size_t max) -> std::string {
    if (!error.is_object()) return "";
    auto it = error.find(key);
    if (it == error.end() || !it->is_string()) return "";
    return BodyExcerpt(it->get_ref<const std::string&>(), max);
  };
  Json cut = {{"name", text("name", 256)}, {"message", text("message", 8 * 1024)}};
  if (std::string stack = text("stack", 32 * 1024); !stack.empty()) cut["stack"] = std::move(stack);
  cut["truncated"] = "the error's JSON was " + std::to_string(size) +
                     " bytes; the attempt keeps its name, message and stack, cut";
  return cut;
}

// The error a non-2xx reply carries: the SDK's serialized error when the body is one (and
// within the limits every host reply is held to).
Json ReplyError(const HttpResponse& reply) {
  auto body = ParseUntrustedJson(reply.body, kHostReplyJsonLimits);
  if (body.ok() && body->is_object() && (body->contains("message") || body->contains("name"))) {
    return std::move(*body);
  }
  std::string text = BodyExcerpt(reply.body, 2000);
  return ErrorJson("HostError", "host answered HTTP " + std::to_string(reply.status) +
                                    (text.empty() ? "" : ": " + text));
}

struct Ctx {
  const store::RunState& state;
  const store::QueueItem& item;
  const CallOutcome& outcome;
  const scheduler::RetryPolicy& policy;
  std::mt19937_64& rng;
  int max_attempts;
  store::Transition t;

  int64_t started_ms() const { return UnixMillis(outcome.started); }
  int64_t ended_ms() const { return UnixMillis(outcome.ended); }
  bool last_attempt() const { return item.attempt + 1 >= max_attempts; }

  void Attempt(const std::string& step_id, const std::string& name, std::string outcome_name,
               Json error = nullptr) {
    t.attempts.push_back({step_id, name, item.attempt, std::move(outcome_name),
                          AttemptError(std::move(error)), started_ms(), ended_ms()});
  }

  // The run's move while it goes on; every op of a reply adds to it until one ends the
  // reply with another move.
  store::Transition::Continue& next() { return std::get<store::Transition::Continue>(t.move); }

  void Fail(Json error) {
    t.move = store::Transition::End{store::kFailed, nullptr, std::move(error)};
  }

  void Complete(Json output) {
    t.move = store::Transition::End{store::kCompleted, std::move(output), nullptr};
  }

  // A failed attempt of the whole call: retry it after backoff, or fail the run.
  void RetryOrFail(const std::string& step_id, const std::string& name, Json error,
                   std::optional<std::chrono::milliseconds> retry_after) {
    if (last_attempt()) {
      Attempt(step_id, name, "failed", error);
      Fail(std::move(error));
      return;
    }
    Attempt(step_id, name, "error", std::move(error));
    auto delay = retry_after ? *retry_after : scheduler::BackoffDelay(policy, item.attempt, rng);
    t.move = store::Transition::Retry{outcome.ended + delay};
  }

  // Asks for one discovery call (however many ops of the reply ask): two would each replay
  // the run and run its next step.
  void Discover() {
    for (const store::NextCall& n : next().next) {
      if (n.step_id == kDiscoveryStepId && !n.resume) return;
    }
    next().next.push_back({std::string(kDiscoveryStepId), outcome.ended});
    // With parallel steps in flight, discovery waits until the last of them is done.
    next().next_only_if_idle = true;
  }

  // A run that does not end with the reply but would have more than `step_limit` steps after
  // it fails instead, nothing of the reply recorded but the call's failed attempt.
  void FailPastStepLimit(int64_t step_limit) {
    if (t.end()) return;
    // Counted exactly, by id, only when the sum of the counts is past the limit.
    size_t most = state.steps.size() + t.steps.size();
    if (const store::Transition::Continue* next = t.next()) {
      most += next->next.size() + next->waits.size();
    }
    if (most <= static_cast<size_t>(step_limit) || StepsAfter(state, t) <= step_limit) return;
    Json error = StepLimitError(step_limit);
    t.steps.clear();
    t.attempts.clear();
    Attempt(item.step_id, item.step_id, "failed", error);
    Fail(std::move(error));
  }

  // A reply that also planned steps, a sleep or a wait needs no discovery of its own: each of
  // those ends in a call whose apply asks for one (once the run has nothing else out). Made
  // now, it would run beside them: the discovery's replay would run a planned step again.
  void DropDiscoveryBesideOtherWork() {
    auto* move = std::get_if<store::Transition::Continue>(&t.move);
    if (!move) return;
    auto& next = move->next;
    const bool other_work =
        !move->waits.empty() || std::any_of(next.begin(), next.end(), [](const store::NextCall& n) {
          return n.step_id != kDiscoveryStepId;
        });
    if (!other_work) return;
    std::erase_if(
        next, [](const store::NextCall& n) { return n.step_id == kDiscoveryStepId && !n.resume; });
  }
};

// The record of a step the host ran (a StepRun, or a legacy Step whose data may be wrapped).
store::StepRecord RanStep(const Op& op) {
  Json memo = op.data;
  bool wrapped = op.code == OpCode::kStep && memo.is_object() &&
                 (memo.contains("data") || memo.contains("error"));
  if (!wrapped) memo = Json{{"data", op.data}};
  return {op.id, 0, op.DisplayName(), "completed", std::move(memo), 0};
}

// A step's time option: a string of opts[key], else the op's name (docs/protocol.md §10).
std::string OpText(const Op& op, const char* key) {
  if (op.opts.is_object()) {
    if (auto v = op.opts.find(key); v != op.opts.end() && v->is_string())
      return v->get<std::string>();
  }
  return op.name;
}

// The longest sleep, and the longest timeout or look-back of a wait or an invoke.
constexpr std::chrono::milliseconds kMaxWait = std::chrono::hours(24 * 366);

// When a Sleep op wakes: its duration after `now`, or an absolute date (≥ 10 characters
// that parse as RFC 3339). At most 366 days ahead. An empty duration wakes at once, as on
// Inngest: the JS SDK's time string for a duration of 0 or less (a deadline already passed),
// or for a text it cannot read, is "".
Result<TimePoint> WakeTime(const Op& op, TimePoint now) {
  const std::string text = OpText(op, "duration");
  if (text.empty()) return now;
  // In Unix milliseconds until checked: a TimePoint (nanoseconds) overflows past 2262, which
  // a date or a duration from the host can name.
  const int64_t now_ms = UnixMillis(now);
  int64_t wake_ms;
  if (auto at = ParseRfc3339(text); text.size() >= 10 && at.ok()) {
    wake_ms = std::max(*at, now_ms);  // a date passed wakes at once
  } else {
    auto d = ParseDuration(text);
    if (!d.ok()) return InvalidArgument("sleep \"" + text + "\": " + d.status().message());
    wake_ms = now_ms + d->count();  // durations are at most 1e15 ms
  }
  if (wake_ms - now_ms > kMaxWait.count()) {
    return InvalidArgument("sleep \"" + text + "\" is longer than 366 days");
  }
  return TimePoint(std::chrono::milliseconds(wake_ms));
}

// An optional duration option: `fallback` when absent or null, `if_empty` when "" (the JS
// SDK's time string for a duration of 0 or less, or for a text it cannot read). With `now`
// (a timeout), a date (≥ 10 characters that parse as RFC 3339, as the JS SDK sends a `Date`
// deadline) is the time from `now` until then, none once it has passed.
Result<std::chrono::milliseconds> DurationOpt(const Op& op, const char* key,
                                              std::chrono::milliseconds fallback,
                                              std::chrono::milliseconds if_empty,
                                              std::optional<TimePoint> now = std::nullopt) {
  if (!op.opts.is_object() || !op.opts.contains(key) || op.opts[key].is_null()) return fallback;
  if (!op.opts[key].is_string())
    return InvalidArgument(std::string(key) + " must be a time string");
  const std::string& text = op.opts[key].get_ref<const std::string&>();
  if (text.empty()) return if_empty;
  Result<std::chrono::milliseconds> d = InvalidArgument("not a date");
  if (auto at = ParseRfc3339(text); now && text.size() >= 10 && at.ok()) {
    // Both in Unix milliseconds of years 0000–9999: the difference cannot overflow.
    d = std::chrono::milliseconds(std::max<int64_t>(*at - UnixMillis(*now), 0));
  } else {
    d = ParseDuration(text);
  }
  if (!d.ok()) return InvalidArgument(std::string(key) + ": " + d.status().message());
  // Added to a TimePoint (nanoseconds, which overflow past 2262): bounded first.
  if (*d > kMaxWait) return InvalidArgument(std::string(key) + " is longer than 366 days");
  return *d;
}

constexpr std::chrono::milliseconds kDefaultWaitTimeout = kMaxWait;

// The run's first event: `event` in a wait's `if`.
const Json& TriggerOf(const store::RunState& state) {
  static const Json kNone;
  return state.events.empty() ? kNone : state.events.front();
}

// The wait of a WaitForEvent op of a run whose first event is `trigger`.
Result<store::NewWait> EventWait(const Op& op, const Json& trigger, TimePoint now) {
  store::NewWait w;
  w.step_id = op.id;
  w.name = op.DisplayName();
  w.event_name = OpText(op, "event");
  if (w.event_name.empty()) return InvalidArgument("waitForEvent needs an event name");
  if (w.event_name.size() > store::kMaxEventNameBytes) {
    return InvalidArgument("waitForEvent's event name is longer than " +
                           std::to_string(store::kMaxEventNameBytes) + " bytes");
  }
  // An empty timeout times out at once (Inngest: the JS SDK sends "" for a negative one).
  ASSIGN_OR_RETURN(auto timeout, DurationOpt(op, "timeout", kDefaultWaitTimeout,
                                             std::chrono::milliseconds(0), now));
  ASSIGN_OR_RETURN(w.lookback, DurationOpt(op, "lookback", std::chrono::milliseconds(0),
                                           std::chrono::milliseconds(0)));
  if (op.opts.is_object() && op.opts.contains("if") && !op.opts["if"].is_null() &&
      !op.opts["if"].is_string()) {
    // Dropped, the wait would match the first event of its name.
    return InvalidArgument("waitForEvent if must be a string");
  }
  if (op.opts.is_object() && op.opts.contains("if") && op.opts["if"].is_string()) {
    w.expression = op.opts["if"].get<std::string>();
    auto compiled = expr::Compile(w.expression);
    if (!compiled.ok()) return InvalidArgument("waitForEvent if: " + compiled.status().message());
    if (Status known = expr::RefuseUnknownVariables(**compiled, {"event", "async"}); !known.ok()) {
      return InvalidArgument("waitForEvent if: " + known.message());
    }
    w.match_key = (*compiled)->RequiredKey("async", expr::Variables{{"event", &trigger}});
  }
  w.kind = store::kWaitEvent;
  w.expires_at = now + timeout;
  return w;
}

// The wait of an InvokeFunction op: for the inngest/function.finished of the invoked run.
Result<store::NewWait> InvokeWait(const Op& op, const std::string& run_id, TimePoint now) {
  if (!op.opts.is_object() || !op.opts.contains("function_id") ||
      !op.opts["function_id"].is_string()) {
    return InvalidArgument("invoke needs opts.function_id");
  }
  store::NewWait w;
  w.step_id = op.id;
  w.name = op.DisplayName();
  w.event_name = kFunctionFinished;
  const std::string correlation = CorrelationId(run_id, op.id);
  w.expression = store::InvokeWaitExpression(correlation);
  w.kind = store::kWaitInvoke;
  // An empty timeout is the default, as on Inngest.
  ASSIGN_OR_RETURN(auto timeout,
                   DurationOpt(op, "timeout", kDefaultWaitTimeout, kDefaultWaitTimeout, now));
  w.expires_at = now + timeout;
  w.timeout_memo = {{"error",
                     {{"name", "InngestInvokeTimeoutError"},
                      {"message", "Timed out waiting for invoked function to complete"}}}};
  Json data = Json::object();
  if (auto p = op.opts.find("payload"); p != op.opts.end() && p->is_object()) {
    if (auto d = p->find("data"); d != p->end() && !d->is_null()) {
      // Dropped, the invoked run would start with other data than its invoker sent.
      if (!d->is_object()) return InvalidArgument("invoke's payload.data must be an object");
      data = *d;
    }
  }
  w.invoke = {{"function_id", op.opts["function_id"]},
              {"data", std::move(data)},
              {"correlation_id", correlation}};
  return w;
}

// The wait of a WaitForSignal op: for POST /v1/signals with its opts.signal.
Result<store::NewWait> SignalWait(const Op& op, TimePoint now) {
  store::NewWait w;
  w.step_id = op.id;
  w.name = op.DisplayName();
  w.kind = store::kWaitSignal;
  w.signal = OpText(op, "signal");
  if (w.signal.empty()) return InvalidArgument("waitForSignal needs a signal");
  if (w.signal.size() > store::kMaxSignalBytes) {
    return InvalidArgument("waitForSignal's signal is longer than " +
                           std::to_string(store::kMaxSignalBytes) + " bytes");
  }
  // Absent: "fail", as on Inngest.
  if (auto c = op.opts.is_object() ? op.opts.find("conflict") : op.opts.end();
      op.opts.is_object() && c != op.opts.end() && !c->is_null()) {
    if (*c != "fail" && *c != "replace") {
      return InvalidArgument("waitForSignal's onConflict must be \"replace\" or \"fail\"");
    }
    w.replace_signal = *c == "replace";
  }
  ASSIGN_OR_RETURN(auto timeout, DurationOpt(op, "timeout", kDefaultWaitTimeout,
                                             std::chrono::milliseconds(0), now));
  w.expires_at = now + timeout;
  return w;
}

std::optional<std::chrono::milliseconds> RetryAfter(const HttpResponse& reply, TimePoint now) {
  return scheduler::ParseRetryAfter(reply.header("Retry-After"), now);
}

}  // namespace

store::Transition DecideTransition(const store::RunState& state, const store::QueueItem& item,
                                   const CallOutcome& outcome, const scheduler::RetryPolicy& policy,
                                   std::mt19937_64& rng, int64_t step_limit) {
  Ctx c{state, item, outcome, policy, rng, FunctionRetries(state.function.config) + 1, {}};
  const std::string call_step = item.step_id;

  if (!outcome.reply.ok()) {
    const Status& s = outcome.reply.status();
    c.RetryOrFail(
        call_step, call_step,
        ErrorJson(s.code() == StatusCode::kDeadlineExceeded ? "TimeoutError" : "ConnectionError",
                  s.message()),
        std::nullopt);
    return std::move(c.t);
  }
  const HttpResponse& reply = *outcome.reply;
  if (auto v = reply.header("X-Inngest-Req-Version"); !v.empty()) {
    // Recorded when it changes (the run's first reply, as a rule): a step that changes
    // nothing else of the run's row then writes no new version of it. Only the versions an
    // SDK can be sent back (1, 2): another (0 makes the JS SDK fail every call) is ignored.
    int version = 0;
    auto [end, ec] = std::from_chars(v.data(), v.data() + v.size(), version);
    if (ec == std::errc() && end == v.data() + v.size() && (version == 1 || version == 2) &&
        version != c.state.run.req_version) {
      c.t.req_version = version;
    }
  }
  const bool from_sdk = !reply.header("X-Inngest-SDK").empty();
  const bool no_retry = reply.header("X-Inngest-No-Retry") == "true";

  if (reply.status == 200 && from_sdk) {
    auto output = reply.body.empty() ? Result<Json>(Json(nullptr))
                                     : ParseUntrustedJson(reply.body, kHostReplyJsonLimits);
    if (!output.ok()) {
      c.RetryOrFail(
          call_step, call_step,
          ErrorJson("ProtocolError", "host answered 200 with a body that is not usable JSON: " +
                                         output.status().message()),
          std::nullopt);
      return std::move(c.t);
    }
    if (call_step != kDiscoveryStepId) c.Attempt(call_step, call_step, "completed");
    c.Complete(std::move(*output));
    return std::move(c.t);
  }

  if (reply.status == 206 && from_sdk) {
    auto ops = ParseOps(reply.body);
    if (!ops.ok()) {
      c.RetryOrFail(call_step, call_step, ErrorJson("ProtocolError", ops.status().message()),
                    std::nullopt);
      return std::move(c.t);
    }
    if (ops->empty()) {
      // A step's call whose thread of execution has nothing more to do: the run goes on by
      // discovery, once nothing else of it is out (its other branches ask for one as they
      // end). A discovery call has no other thread: nothing would ever call the run again.
      if (call_step == kDiscoveryStepId) {
        c.RetryOrFail(call_step, call_step,
                      ErrorJson("ProtocolError", "the host answered a discovery call with no op"),
                      std::nullopt);
      } else {
        c.Discover();
      }
      return std::move(c.t);
    }
    std::set<std::string> planned;
    for (const Op& op : *ops) {
      const std::string name = op.DisplayName();
      switch (op.code) {
        case OpCode::kStepRun:
        case OpCode::kStep: {
          c.t.steps.push_back(RanStep(op));
          c.Attempt(op.id, name, "completed");
          c.Discover();
          break;
        }
        case OpCode::kStepError:
          // X-Inngest-No-Retry: the step's error is final, as a StepFailed says.
          if (!c.last_attempt() && !no_retry) {
            // The whole call is retried; nothing else is applied but the steps before it.
            c.RetryOrFail(op.id, name, op.error, RetryAfter(reply, outcome.ended));
            c.FailPastStepLimit(step_limit);
            return std::move(c.t);
          }
          [[fallthrough]];
        case OpCode::kStepFailed: {
          Json error = op.error.is_null() ? ErrorJson("Error", "step failed") : op.error;
          c.t.steps.push_back({op.id, 0, name, "failed", Json{{"error", error}}, 0});
          c.Attempt(op.id, name, "failed", error);
          c.Discover();
          break;
        }
        case OpCode::kStepPlanned:
          if (planned.insert(op.id).second) c.next().next.push_back({op.id, outcome.ended});
          break;
        case OpCode::kRunComplete:
          c.Complete(op.data);
          return std::move(c.t);
        case OpCode::kDiscoveryRequest:
          c.Discover();
          break;
        case OpCode::kSleep: {
          auto wake = WakeTime(op, outcome.ended);
          if (!wake.ok()) {
            c.Fail(ErrorJson("InvalidSleep", wake.status().message()));
            return std::move(c.t);
          }
          c.next().next.push_back({op.id, *wake, store::Resume(nullptr, name)});
          c.next().run_status = store::kSleeping;
          break;
        }
        case OpCode::kWaitForEvent:
        case OpCode::kWaitForSignal:
        case OpCode::kInvokeFunction: {
          auto wait =
              op.code == OpCode::kWaitForEvent    ? EventWait(op, TriggerOf(state), outcome.ended)
              : op.code == OpCode::kWaitForSignal ? SignalWait(op, outcome.ended)
                                                  : InvokeWait(op, state.run.id, outcome.ended);
          if (!wait.ok()) {
            c.Fail(ErrorJson("InvalidStep", wait.status().message()));
            return std::move(c.t);
          }
          c.next().waits.push_back(std::move(*wait));
          c.next().run_status = store::kWaiting;
          break;
        }
        default:
          c.Fail(ErrorJson("UnsupportedOp", "this coordinator does not implement the " +
                                                std::string(OpCodeName(op.code)) + " op"));
          return std::move(c.t);
      }
    }
    // Planned steps run as their own calls; a discovery asked for by a step of this reply
    // waits (next_only_if_idle, set by Discover) until all of them are memoized.
    c.DropDiscoveryBesideOtherWork();
    c.FailPastStepLimit(step_limit);
    return std::move(c.t);
  }

  Json error =
      from_sdk || reply.status >= 300
          ? ReplyError(reply)
          : ErrorJson("ProtocolError", "host answered HTTP " + std::to_string(reply.status) +
                                           " without X-Inngest-SDK: is the URL an SDK "
                                           "serve endpoint?");
  if (no_retry) {
    c.Attempt(call_step, call_step, "failed", error);
    c.Fail(std::move(error));
    return std::move(c.t);
  }
  c.RetryOrFail(call_step, call_step, std::move(error), RetryAfter(reply, outcome.ended));
  return std::move(c.t);
}

int64_t StepsAfter(const store::RunState& state, const store::Transition& t) {
  std::set<std::string_view> ids;
  for (const store::StepRecord& s : state.steps) ids.insert(s.step_id);
  for (const store::StepRecord& s : t.steps) ids.insert(s.step_id);
  if (const store::Transition::Continue* next = t.next()) {
    for (const store::NextCall& n : next->next) {
      if (n.step_id != kDiscoveryStepId) ids.insert(n.step_id);
    }
    for (const store::NewWait& w : next->waits) ids.insert(w.step_id);
  }
  return static_cast<int64_t>(ids.size());
}

Json StepLimitError(int64_t step_limit) {
  return {{"name", "InngestErrFunctionOverflowed"},
          {"message", "The function run exceeded the step limit of " + std::to_string(step_limit) +
                          " steps (the coordinator's --max-steps-per-run)."}};
}

bool IsStreamedAnswer(const HttpResponse& reply) {
  return reply.status == 201 && !reply.header("X-Inngest-SDK").empty();
}

Result<HttpResponse> UnwrapStreamedAnswer(HttpResponse reply) {
  const size_t start = reply.body.find_first_not_of(" \t\r\n");
  if (start == std::string::npos) {
    return Unavailable("the host's streamed answer ended before its answer");
  }
  auto parsed =
      ParseUntrustedJson(std::string_view(reply.body).substr(start), kHostReplyJsonLimits);
  if (!parsed.ok()) {
    return Unavailable("the host's streamed answer is not usable JSON: " +
                       parsed.status().message());
  }
  const Json& answer = *parsed;
  const auto status = answer.is_object() ? answer.find("status") : answer.end();
  if (status == answer.end() || !status->is_number_integer() || *status < 100 || *status > 599) {
    return Unavailable("the host's streamed answer has no status");
  }
  HttpResponse out;
  out.status = status->get<int>();
  if (auto body = answer.find("body"); body != answer.end() && body->is_string()) {
    out.body = body->get<std::string>();
  } else if (body != answer.end() && !body->is_null()) {
    out.body = body->dump();  // as an SDK that sent it unencoded meant it
  }
  if (auto headers = answer.find("headers"); headers != answer.end() && headers->is_object()) {
    for (const auto& [name, value] : headers->items()) {
      if (value.is_string()) out.headers.emplace_back(name, value.get<std::string>());
    }
  }
  for (auto& header : reply.headers) out.headers.push_back(std::move(header));
  return out;
}

Result<Checkpointed> CheckpointRecords(const std::vector<Op>& ops, TimePoint now) {
  if (ops.empty()) return InvalidArgument("a checkpoint needs at least one step");
  Checkpointed c;
  const int64_t now_ms = UnixMillis(now);
  for (const Op& op : ops) {
    if (op.code != OpCode::kStepRun && op.code != OpCode::kStep) {
      return InvalidArgument("a checkpoint may only hold steps that ran (StepRun), not " +
                             std::string(OpCodeName(op.code)));
    }
    c.steps.push_back(RanStep(op));
    const int64_t took = op.HostDuration().value_or(std::chrono::milliseconds(0)).count();
    c.attempts.push_back({op.id, op.DisplayName(), 0, "completed", nullptr, now_ms - took, now_ms});
  }
  return c;
}

store::Transition ResumeTransition(const store::QueueItem& item, TimePoint now) {
  store::Transition t;
  t.steps.push_back(store::ResumedStep(item.step_id, *item.resume));
  t.move = store::Transition::Continue{.next = {{std::string(kDiscoveryStepId), now}},
                                       .next_only_if_idle = true,
                                       .run_status = store::kRunning};
  return t;
}

std::string CorrelationId(const std::string& run_id, const std::string& step_id) {
  return run_id + "." + step_id;
}

std::string FinishedEventId(std::string_view run_id) { return InternalId("finished", run_id); }
std::string FailedEventId(std::string_view run_id) { return InternalId("failed", run_id); }
std::string CancelledEventId(std::string_view run_id) { return InternalId("cancelled", run_id); }
std::string InvokedEventId(std::string_view correlation_id) {
  return InternalId("invoked", correlation_id);
}
std::string CronTickEventId(std::string_view function_id, std::string_view at) {
  std::string id(kCronTickIdPrefix);
  id.append(function_id).append(":").append(at);
  return id;
}
std::string LaneGapEventId(int64_t gap_id) {
  return std::string(kLaneGapIdPrefix) + std::to_string(gap_id);
}

}  // namespace funcky::executor
