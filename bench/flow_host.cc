// flow_host: the hello example's shape (two steps: two calls a run) with flow control, for
// bench/side_by_side.py's lanes and backlog phases. Three functions of app "bench-flow":
//
//   ordered    (event bench/ordered):   a lane per event.data.k (strict FIFO per key)
//   unordered  (event bench/unordered): the same function without a lane
//   throttled  (event bench/backlog):   one run started a week (throttle limit 1, period 7d),
//                                       so all but the first of its runs stay queued
//
// Events carry {"k": key, "n": the event's place among its key's events, from 0}. The host
// keeps its own record of each key's runs: a run of `ordered` that starts (its first step
// runs) before the run of the key's previous event has returned is out of order. At SIGTERM
// it prints one line per function: "<fn>: ended <runs> out_of_order <count>".
//
//   flow_host --coordinator http://127.0.0.1:8288 --port 0
#include <cstdio>
#include <iostream>
#include <map>
#include <mutex>
#include <string>

#include <CLI/CLI.hpp>

#include "sdk/client.h"
#include "sdk/function.h"
#include "sdk/serve.h"
#include "sdk/server.h"

namespace sdk = funcky::sdk;

namespace {

// Starts and ends of one function's runs, per key, in the order the host saw them.
class Record {
 public:
  explicit Record(std::string name) : name_(std::move(name)) {}

  // The run of event `n` of `key` starts: the run of event n - 1 must have returned (a step
  // retried starts the same n again, which is fine).
  void Start(const std::string& key, int n) {
    std::lock_guard lock(mu_);
    Key& k = keys_[key];
    if (n != k.started && n != k.ended + 1) {
      if (out_of_order_++ < 10) {
        std::fprintf(stderr, "%s: key %s event %d started after event %d returned\n", name_.c_str(),
                     key.c_str(), n, k.ended);
      }
    }
    k.started = n;
  }

  void End(const std::string& key, int n) {
    std::lock_guard lock(mu_);
    keys_[key].ended = n;
    ++ended_;
  }

  void Print() {
    std::lock_guard lock(mu_);
    std::printf("%s: ended %lld out_of_order %lld\n", name_.c_str(), static_cast<long long>(ended_),
                static_cast<long long>(out_of_order_));
    std::fflush(stdout);
  }

 private:
  struct Key {
    int started = -1;
    int ended = -1;
  };
  std::string name_;
  std::mutex mu_;
  std::map<std::string, Key> keys_;
  int64_t ended_ = 0;
  int64_t out_of_order_ = 0;
};

// Two steps, as hello's greet; records the run's start (first step) and return.
sdk::Function TwoSteps(sdk::FunctionOptions options, Record& record) {
  return sdk::create_function(std::move(options), [&record](sdk::Context& ctx) {
    const std::string key = ctx.event["data"].value("k", std::string());
    const int n = ctx.event["data"].value("n", -1);
    sdk::Json a = ctx.step.run("first", [&] {
      record.Start(key, n);
      return sdk::Json("A");
    });
    sdk::Json b = ctx.step.run("second", [&] { return sdk::Json(a.get<std::string>() + "B"); });
    record.End(key, n);
    return sdk::Json{{"b", b}};
  });
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"flow_host: two-step Funcky functions with a lane, without, and throttled"};
  sdk::ClientOptions client_options{.app_id = "bench-flow"};
  sdk::ServerOptions server_options{.port = 0};
  app.add_option("--coordinator", client_options.coordinator_url)->required();
  app.add_option("--port", server_options.port, "Port to serve on (0: any free port)");
  CLI11_PARSE(app, argc, argv);

  Record ordered("ordered"), unordered("unordered"), throttled("throttled");
  std::vector<sdk::Function> functions;
  functions.push_back(TwoSteps({.id = "ordered",
                                .triggers = {{.event = "bench/ordered"}},
                                .ordering = sdk::Ordering{.key = "event.data.k"}},
                               ordered));
  functions.push_back(
      TwoSteps({.id = "unordered", .triggers = {{.event = "bench/unordered"}}}, unordered));
  functions.push_back(TwoSteps({.id = "throttled",
                                .triggers = {{.event = "bench/backlog"}},
                                .throttle = sdk::Throttle{.limit = 1, .period = "7d"}},
                               throttled));

  sdk::Client client(client_options);
  std::unique_ptr<sdk::ServeHandler> handler;
  sdk::Server server([&](const sdk::ServeRequest& r) { return handler->handle(r); },
                     server_options);
  if (auto s = server.start(); !s.ok()) {
    std::cerr << "flow_host: " << s.message() << "\n";
    return 1;
  }
  handler = std::make_unique<sdk::ServeHandler>(
      client, "http://127.0.0.1:" + std::to_string(server.port()) + server_options.path,
      std::move(functions));
  if (auto s = handler->register_functions(std::chrono::seconds(20)); !s.ok()) {
    std::cerr << "flow_host: cannot register: " << s.message() << "\n";
    return 1;
  }
  std::printf("registered\n");
  std::fflush(stdout);
  server.wait_for_signal();
  for (Record* r : {&ordered, &unordered, &throttled}) r->Print();
  return 0;
}
