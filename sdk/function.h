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
};

// Strict FIFO per key (Funcky's extension of the function config): runs of one key start in
// the order their events were accepted, each after the one before it has finished.
struct Ordering {
  std::string key;           // an expression over the event, e.g. "event.data.tenant_id"
  std::string head_timeout;  // e.g. "10m": fail a head that holds its lane longer; "" = never
};

// A limit on calls in flight: for the whole function, or per value of `key`.
struct Concurrency {
  int limit = 0;
  std::string key;  // "" = function-wide
};

struct FunctionOptions {
  std::string id;    // unique within the app; the coordinator sees "<app>-<id>"
  std::string name;  // display name; defaults to id
  std::vector<Trigger> triggers;
  std::optional<int> retries;  // retries per step (not attempts); coordinator default 4
  std::optional<Ordering> ordering;
  std::vector<Concurrency> concurrency;  // at most 2
};

// Thrown by a step or a handler: fail now, do not retry.
class NonRetriableError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
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
// handle the failure; uncaught, it fails the run.
class StepError : public std::runtime_error {
 public:
  explicit StepError(Json error)
      : std::runtime_error(error.value("message", std::string("step failed"))),
        error_(std::move(error)) {}
  const Json& error() const { return error_; }

 private:
  Json error_;
};

class Execution;  // one call's replay state; internal

class Step {
 public:
  explicit Step(Execution& execution) : execution_(execution) {}
  // Runs `fn` once for the run (at least once: retried on failure) and returns its
  // memoized result on every replay. Repeated ids get distinct steps (`id`, `id:1`, …).
  Json run(const std::string& id, const std::function<Json()>& fn);

 private:
  Execution& execution_;
};

struct Context {
  const Json& event;   // the triggering event
  const Json& events;  // all events of the run
  std::string run_id;
  int attempt = 0;  // attempt of the current call, 0-based
  Step& step;
};

using Handler = std::function<Json(Context&)>;

class Function {
 public:
  Function(FunctionOptions options, Handler handler)
      : options_(std::move(options)), handler_(std::move(handler)) {}
  const FunctionOptions& options() const { return options_; }
  const Handler& handler() const { return handler_; }
  // The FunctionConfig sent at registration (PROTOCOL.md §2.2).
  Json config(const std::string& app_id, const std::string& serve_url) const;

 private:
  FunctionOptions options_;
  Handler handler_;
};

Function create_function(FunctionOptions options, Handler handler);

}  // namespace funcky::sdk
