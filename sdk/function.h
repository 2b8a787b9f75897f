// Functions of the Funcky C++ SDK: create_function and the step tools.
//
//   auto fn = funcky::sdk::create_function(
//       {.id = "two-steps", .triggers = {{.event = "demo/go"}}},
//       [](funcky::sdk::Context& ctx) {
//         auto a = ctx.step.run("first", [] { return nlohmann::json("A"); });
//         auto b = ctx.step.run("second", [&] { return nlohmann::json(a.get<std::string>() + "B");
//         }); return nlohmann::json{{"b", b}};
//       });
//
// A handler is replayed from the top on every call: code outside step.run runs every
// time, code inside runs until it succeeds once and is then memoized by the coordinator.
// The SDK stops a replay by throwing an internal type that is not a std::exception: do not
// catch (...) around step calls without rethrowing.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace funcky::sdk {

using Json = nlohmann::json;

struct Trigger {
  std::string event;       // event name; "app/*" matches every event under app/
  std::string expression;  // optional filter over `event`, e.g. "event.data.amount > 100"
  // Or a schedule instead of an event: "[TZ=Europe/Paris ]<min> <hour> <day> <month> <dow>".
  std::string cron;
  // With `cron`: each tick's run starts up to this much later, at random (e.g. "30s"; less
  // than the schedule's shortest interval); "" = at the tick.
  std::string jitter;
};

// An event that cancels a run of the function: name, and an optional condition over
// `event` (the run's trigger) and `async` (the cancelling event).
struct CancelOn {
  std::string event;
  std::string if_expression;  // e.g. "async.data.order == event.data.order"
  std::string timeout;        // only within this long after the run started; "" = 1 year
  // Inngest's `match`: a field both events must hold equal, e.g. "data.order" for
  // "event.data.order == async.data.order"; with if_expression too, both must hold. Names of
  // letters, digits and _ joined by dots, else create_function throws.
  std::string match;
};

// Inngest's `throttle`: the function's runs start at most `limit` per `period` per value of
// `key`, paced (period / limit apart; `burst` more at once after a quiet spell). Runs over
// the limit wait for their turn, in order; none is dropped.
struct Throttle {
  int limit = 1;
  std::string period;  // e.g. "1m"; from 1s to 7d
  int burst = 0;
  std::string key;  // "" = one throttle for the function
};

// Inngest's `rateLimit`: at most `limit` runs per `period` (1s to 24h) per value of `key`;
// an event past it starts no run (it is recorded as skipped). docs/flow-control.md.
struct RateLimit {
  int limit = 0;       // from 1
  std::string period;  // e.g. "1m"
  std::string key;     // an expression over the event; "" = one key for the function
};

// Inngest's `singleton`: one active run per value of `key`. `mode` "skip": an event of a busy
// key starts no run; "cancel": the active run is cancelled and the new one starts.
struct Singleton {
  std::string mode;  // "skip" or "cancel"; required (the sync refuses another)
  std::string key;   // an expression over the event; "" = one key for the function
};

// Inngest's `timeouts`: a run not started within `start` of when it may start (its creation,
// its debounce's due time, or its event's future `ts`), or not finished within `finish` of its
// start, is cancelled (durations up to 366d; "" = none; neither set: no timeouts sent).
struct Timeouts {
  std::string start;
  std::string finish;
};

struct Context;

// Strict FIFO per key (Funcky's extension of the function config): runs of one key start in
// the order their events were accepted, each after the one before it has finished — or, with
// `sequence`, in the order of a number the producer puts in each event (docs/ordering.md
// "Sequence lanes"; a coordinator that does not enforce it yet refuses it at sync).
struct Ordering {
  std::string key;           // an expression over the event, e.g. "event.data.tenant_id"
  std::string head_timeout;  // e.g. "10m": fail a head that holds its lane longer; "" = never
  // An event for which this expression is true runs at once, outside its lane; "" = none.
  std::string bypass;
  // The event's number in its lane, e.g. "event.data.version"; "" = acceptance order.
  std::string sequence;
  std::string gap_timeout;       // with sequence: how long to wait for a missing number (1s..7d)
  std::optional<int64_t> start;  // with sequence: a new lane's first number; unset = first seen
  std::string stale;  // with sequence: "skip" (default) or "run" for numbers below the next
};

// A limit on calls in flight: for the whole function, or per value of `key`.
struct Concurrency {
  int limit = 0;
  std::string key;  // "" = function-wide
};

// Inngest's `debounce`: a burst of events of a key runs the function once, with the last
// event, `period` after it (at most `timeout` after the first); docs/flow-control.md.
struct Debounce {
  std::string period;  // e.g. "5s", from 1s to 7d
  // An expression over the event; "" = one key for the function. With `ordering`, it must be
  // ordering.key itself (a burst is then one lane key's events).
  std::string key;
  std::string timeout;  // "" = none; else from 1s to 7d
};

// Inngest's `priority`: `run` is an expression over the event giving whole seconds (-600 to
// 600); a positive value starts the run's first call ahead of work queued in that many
// seconds before it, a negative one delays it (docs/flow-control.md "priority").
struct Priority {
  std::string run;  // e.g. "event.data.boost_seconds"
};

// Inngest's `batchEvents`: the events of a key are gathered into one run, started when
// `max_size` have arrived or `timeout` after the first; the handler gets them all in
// `Context::events` (docs/flow-control.md "batchEvents").
struct BatchEvents {
  int max_size = 0;     // from 2 to 100
  std::string timeout;  // e.g. "5s", from 1s to 60s
  std::string key;      // an expression over the event; "" = one key for the function
  std::string if_;      // `if`: an event for which it is not true runs alone; "" = every event
};

struct FunctionOptions {
  std::string id;    // unique within the app; the coordinator sees "<app>-<id>"
  std::string name;  // display name; defaults to id
  std::vector<Trigger> triggers;
  std::optional<int> retries;  // retries per step (not attempts); coordinator default 4
  std::optional<Ordering> ordering;
  std::vector<Concurrency> concurrency;  // at most 2
  std::vector<CancelOn> cancel_on;
  // Runs when a run of this function fails for good, with the inngest/function.failed event
  // (its data has `error`, and the run's `event`). Registered as "<id>-failure".
  std::function<nlohmann::json(Context&)> on_failure;
  std::optional<Throttle> throttle;
  std::optional<Debounce> debounce;
  std::optional<Priority> priority;
  std::optional<BatchEvents> batch_events;
  // Inngest's `idempotency`: an expression over the event; one run per value for 24 h, later
  // events of the value start none. "" = none. It replaces `rate_limit` when both are set.
  std::string idempotency;
  std::optional<RateLimit> rate_limit;
  std::optional<Singleton> singleton;
  std::optional<Timeouts> timeouts;
};

// Thrown by a step or a handler: fail now, do not retry.
class NonRetriableError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Thrown by the SDK when a function uses it in a way no retry mends: a step inside a step,
// text of an op that is not UTF-8 or holds NUL, a duration it cannot read, a wait without a
// timeout or with a match that is no field path, a wait for a signal without a signal or a
// timeout, send_event or send_signal without a client, invoke data that
// cannot be sent. Not retried (the run or the step fails at once, as for any
// NonRetriableError).
class UsageError : public NonRetriableError {
 public:
  using NonRetriableError::NonRetriableError;
};

// Thrown by a step or a handler: retry, but not before `after`.
class RetryAfterError : public std::runtime_error {
 public:
  RetryAfterError(const std::string& message, std::chrono::seconds after)
      : std::runtime_error(message), after_(after) {}
  std::chrono::seconds after() const { return after_; }

 private:
  std::chrono::seconds after_;
};

// Thrown by step.run when the step failed for good (its error was memoized). Catch it to
// handle the failure; uncaught, it fails the run. `error` may be any JSON (it comes from the
// coordinator's memo): what() is its string `message`, else "step failed".
class StepError : public std::runtime_error {
 public:
  explicit StepError(Json error) : std::runtime_error(MessageOf(error)), error_(std::move(error)) {}
  const Json& error() const { return error_; }

 private:
  static std::string MessageOf(const Json& error) {
    if (error.is_object()) {
      const auto message = error.find("message");
      if (message != error.end() && message->is_string()) return message->get<std::string>();
    }
    return "step failed";
  }

  Json error_;
};

class Execution;  // one call's replay state; internal

struct WaitForEvent {
  std::string event;          // the name to wait for
  std::string if_expression;  // over `event` (this run's trigger) and `async` (the candidate)
  std::string timeout;        // e.g. "1h"; when it passes, the wait returns nullopt
  // Funcky's extension: events received this long before the wait began also count (closes
  // the race between the code that makes the event happen and the wait), e.g. "5s".
  std::string lookback;
  // Inngest's `match`: a field both events must hold equal, e.g. "data.order" for
  // "event.data.order == async.data.order" (a wait the coordinator finds by its key however
  // many are open); with if_expression too, both must hold. Names of letters, digits and _
  // joined by dots, else the step throws UsageError.
  std::string match;
};

struct WaitForSignal {
  std::string signal;   // the name POST /v1/signals (Client::send_signal) resumes it by
  std::string timeout;  // e.g. "1h"; when it passes, the wait returns nullopt
  // When another run's wait holds the signal: take it over (that wait then only times out),
  // rather than fail this step (StepError "SignalConflictError"), Inngest's onConflict.
  bool replace = false;
};

struct Invoke {
  std::string function_id;  // the function's id in its app
  std::string app_id;       // "" = this app
  Json data = Json::object();
  std::string timeout;  // "" = 1 year
};

class Step {
 public:
  explicit Step(Execution& execution) : execution_(execution) {}
  // Runs `fn` once for the run (at least once: retried on failure) and returns its
  // memoized result on every replay. Repeated ids get distinct steps (`id`, `id:1`, …, each
  // the first such id not used yet in the run). An id must be UTF-8 without NUL, else the
  // step tool throws UsageError. A result the coordinator cannot take (a string
  // that is not UTF-8 or holds NUL, nesting deeper than 126 levels, more than about 16 MiB as
  // JSON) fails the step for good, without running it again.
  Json run(const std::string& id, const std::function<Json()>& fn);
  // Runs several steps as separate calls, in parallel, and returns their results in order
  // once all have been memoized. A step that failed for good throws its StepError here.
  std::vector<Json> parallel(
      const std::vector<std::pair<std::string, std::function<Json()>>>& steps);
  // Pauses the run durably (no compute is held) for `duration` (at least 1 s: a shorter one
  // sleeps 1 s), or until `until`.
  void sleep(const std::string& id, std::chrono::milliseconds duration);
  void sleep_until(const std::string& id, std::chrono::system_clock::time_point until);
  // Pauses until a matching event arrives (returns it) or the timeout passes (nullopt).
  std::optional<Json> wait_for_event(const std::string& id, const WaitForEvent& wait);
  // Pauses until a signal named wait.signal is sent (returns {"signal", "data"}) or the
  // timeout passes (nullopt). Throws StepError when another wait held the signal and
  // wait.replace is false.
  std::optional<Json> wait_for_signal(const std::string& id, const WaitForSignal& wait);
  // Sends a signal with `data` once for the run (Client::send_signal); returns the id of the
  // run it resumed, nullopt when no wait held it.
  std::optional<std::string> send_signal(const std::string& id, const std::string& signal,
                                         const Json& data = Json::object());
  // Sends events (an object or an array) once for the run; returns their ids.
  std::vector<std::string> send_event(const std::string& id, const Json& events);
  // Runs another function with `data` and returns what it returned; throws StepError when
  // it failed or timed out.
  Json invoke(const std::string& id, const Invoke& invoke);

 private:
  Execution& execution_;
};

struct Context {
  // The triggering event: an object whose "data" is an object. Read fields with .value(),
  // .at() or .contains(): `event["data"]["x"]` on this const JSON is undefined behaviour
  // when "x" is missing (nlohmann's const operator[] only asserts).
  const Json& event;
  const Json& events;  // all events of the run
  std::string run_id;
  int attempt = 0;  // attempt of the current call, 0-based
  Step& step;
};

// A function's code. What it returns is the run's output, held to the limits a coordinator
// holds a reply to (as a step's result is, but alone in its reply: 16 MiB as JSON, 128
// levels); an output past them fails the run for good with a NonRetriableError saying why.
using Handler = std::function<Json(Context&)>;

class Function {
 public:
  // std::invalid_argument for a cancel_on `match` that is not a field path ("data.id").
  Function(FunctionOptions options, Handler handler);
  const FunctionOptions& options() const { return options_; }
  const Handler& handler() const { return handler_; }
  // The FunctionConfigs sent at registration (docs/protocol.md §2.4): the function's, then its
  // on_failure handler's, if any.
  std::vector<Json> configs(const std::string& app_id, const std::string& serve_url) const;

 private:
  FunctionOptions options_;
  Handler handler_;
};

// std::invalid_argument as Function's constructor.
Function create_function(FunctionOptions options, Handler handler);

}  // namespace funcky::sdk
