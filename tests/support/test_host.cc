// funcky_test_host: a host built with the C++ SDK for end-to-end tests. It records every
// call and every step execution as a JSON line in --log, so tests can count them.
//
// Functions (app "test"):
//   two-steps  on test/two-steps: step "first" -> "A", step "second" -> "AB"
//   flaky      on test/flaky:     step "before", then step "flaky" that throws until it has
//                                 run data.fail_times times in this run
//   slow       on test/slow:      data.steps steps that each sleep data.delay_ms
//   ordered    on test/ordered:   ordered by data.key, 1 retry; step "apply" records
//                                 "<key>:<seq>" and fails if data.fail is true, or while
//                                 it has run no more than data.fail_times times
//   ordered-timeout on test/ordered-timeout: the same with head_timeout 2s
//   filtered   on test/filtered if event.data.n > 1: returns data.n
//   limited    on test/limited:   concurrency 3; step "work" sleeps data.delay_ms and
//                                 records the number of its calls in flight at the host
#include <atomic>
#include <fstream>
#include <iostream>
#include <map>
#include <mutex>
#include <thread>

#include <CLI/CLI.hpp>

#include "sdk/client.h"
#include "sdk/function.h"
#include "sdk/serve.h"
#include "sdk/server.h"

using funcky::sdk::Context;
using funcky::sdk::Json;

namespace {

std::mutex g_mu;
std::ofstream g_log;
std::map<std::string, int> g_runs_of_step;  // "run/step" -> executions
std::atomic<int> g_in_flight{0};            // "limited" steps running now

int64_t NowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

int Record(const std::string& kind, const std::string& run_id, const std::string& step) {
  std::lock_guard lock(g_mu);
  int n = ++g_runs_of_step[kind + "/" + run_id + "/" + step];
  g_log << Json{{"kind", kind}, {"run_id", run_id}, {"step", step}, {"t_ms", NowMs()}}.dump()
        << std::endl;
  return n;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"funcky_test_host"};
  funcky::sdk::ClientOptions client_options{.app_id = "test"};
  funcky::sdk::ServerOptions server_options;
  std::string log_path = "/dev/null";
  std::string serve_url;  // what to register; default: this host's own address
  std::string send_on_start;
  app.add_option("--coordinator", client_options.coordinator_url);
  app.add_option("--signing-key", client_options.signing_key);
  app.add_option("--port", server_options.port);
  app.add_option("--log", log_path);
  app.add_option("--serve-url", serve_url, "URL to register (e.g. a recording proxy)");
  app.add_option("--send-on-start", send_on_start, "JSON event(s) to send once registered");
  CLI11_PARSE(app, argc, argv);
  g_log.open(log_path, std::ios::app);

  std::vector<funcky::sdk::Function> functions;
  functions.push_back(funcky::sdk::create_function(
      {.id = "two-steps", .triggers = {{.event = "test/two-steps"}}}, [](Context& ctx) {
        Json a = ctx.step.run("first", [&] {
          Record("step", ctx.run_id, "first");
          return Json("A");
        });
        Json b = ctx.step.run("second", [&] {
          Record("step", ctx.run_id, "second");
          return Json(a.get<std::string>() + "B");
        });
        return Json{{"b", b}};
      }));
  functions.push_back(funcky::sdk::create_function(
      {.id = "flaky", .triggers = {{.event = "test/flaky"}}}, [](Context& ctx) {
        ctx.step.run("before", [&] {
          Record("step", ctx.run_id, "before");
          return Json("before-done");
        });
        const int fail_times = ctx.event["data"].value("fail_times", 0);
        Json out = ctx.step.run("flaky", [&] {
          int n = Record("step", ctx.run_id, "flaky");
          if (n <= fail_times) throw std::runtime_error("flaky failure " + std::to_string(n));
          return Json{{"succeeded_on", n}};
        });
        return out;
      }));
  functions.push_back(funcky::sdk::create_function(
      {.id = "slow", .triggers = {{.event = "test/slow"}}}, [](Context& ctx) {
        const int steps = ctx.event["data"].value("steps", 3);
        const int delay = ctx.event["data"].value("delay_ms", 100);
        int64_t sum = 0;
        for (int i = 0; i < steps; ++i) {
          std::string id = "s" + std::to_string(i);
          sum += ctx.step
                     .run(id,
                          [&] {
                            Record("step", ctx.run_id, id);
                            std::this_thread::sleep_for(std::chrono::milliseconds(delay));
                            return Json(i);
                          })
                     .get<int64_t>();
        }
        return Json{{"sum", sum}};
      }));

  auto ordered = [](Context& ctx) {
    const Json& data = ctx.event["data"];
    const std::string mark =
        data.value("key", std::string()) + ":" + std::to_string(data.value("seq", 0));
    return ctx.step.run("apply", [&] {
      const int n = Record("apply", ctx.run_id, mark);
      if (data.value("fail", false) || n <= data.value("fail_times", 0)) {
        throw std::runtime_error("cannot apply " + mark);
      }
      return Json(mark);
    });
  };
  functions.push_back(
      funcky::sdk::create_function({.id = "ordered",
                                    .triggers = {{.event = "test/ordered"}},
                                    .retries = 1,
                                    .ordering = funcky::sdk::Ordering{.key = "event.data.key"}},
                                   ordered));
  functions.push_back(funcky::sdk::create_function(
      {.id = "ordered-timeout",
       .triggers = {{.event = "test/ordered-timeout"}},
       .retries = 1,
       .ordering = funcky::sdk::Ordering{.key = "event.data.key", .head_timeout = "2s"}},
      ordered));
  functions.push_back(funcky::sdk::create_function(
      {.id = "filtered",
       .triggers = {{.event = "test/filtered", .expression = "event.data.n > 1"}}},
      [](Context& ctx) { return ctx.event["data"]["n"]; }));
  functions.push_back(funcky::sdk::create_function(
      {.id = "limited", .triggers = {{.event = "test/limited"}}, .concurrency = {{.limit = 3}}},
      [](Context& ctx) {
        const int delay = ctx.event["data"].value("delay_ms", 100);
        return ctx.step.run("work", [&] {
          Record("in_flight", ctx.run_id, std::to_string(++g_in_flight));
          std::this_thread::sleep_for(std::chrono::milliseconds(delay));
          --g_in_flight;
          return Json("worked");
        });
      }));

  funcky::sdk::Client client(client_options);
  std::unique_ptr<funcky::sdk::ServeHandler> handler;
  funcky::sdk::Server server(
      [&](const funcky::sdk::ServeRequest& r) {
        if (r.method == "POST") {
          Record("call", std::string(funcky::FindHeader(r.headers, "X-Run-ID")), r.target);
        }
        return handler->handle(r);
      },
      server_options);
  if (auto s = server.start(); !s.ok()) {
    std::cerr << s.message() << std::endl;
    return 1;
  }
  const std::string url =
      serve_url.empty() ? "http://127.0.0.1:" + std::to_string(server.port()) + server_options.path
                        : serve_url;
  handler = std::make_unique<funcky::sdk::ServeHandler>(client, url, std::move(functions));
  funcky::Status registered = handler->register_functions(std::chrono::seconds(10));
  if (!registered.ok()) {
    std::cerr << "register: " << registered.ToString() << std::endl;
    return 1;
  }
  if (!send_on_start.empty()) {
    auto ids = client.send(Json::parse(send_on_start));
    if (!ids.ok()) {
      std::cerr << "send: " << ids.status().ToString() << std::endl;
      return 1;
    }
  }
  std::cout << "ready " << url << std::endl;
  server.wait_for_signal();
  return 0;
}
