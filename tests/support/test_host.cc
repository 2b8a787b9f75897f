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
//   versioned  on test/versioned: the same, in a sequence lane of data.key numbered by
//                                 data.seq (start 1, gap_timeout 2s); data.unordered
//                                 bypasses the lane
//   filtered   on test/filtered if event.data.n > 1: returns data.n
//   limited    on test/limited:   concurrency 3; step "work" sleeps data.delay_ms and
//                                 records the number of its calls in flight at the host
//   gated      on test/gated:     idempotency event.data.order, timeouts.finish 2s; a
//                                 step.sleep "nap" of data.sleep_ms when it is set, then step
//                                 "work"
//   sleeper    on test/sleep:     step "before", step.sleep "nap" of data.sleep_ms, step
//                                 "after" (records "woke" with the time)
//   waiter     on test/wait:      if data.announce, step.send_event "announce" sends
//                                 test/approved for data.order; step "pause" sleeps
//                                 data.pause_ms; then waits for test/approved of the same
//                                 order (timeout data.timeout, look-back data.lookback)
//   signalled  on test/signalled: step.wait_for_signal "approval" for data.signal (30 s);
//                                 returns what the signal brought, or null
//   signaller  on test/signaller: step.send_signal "send" of data.signal with data.data;
//                                 returns the run it resumed, or null
//   sender     on test/send:      step.send_event "fan" sends data.count test/two-steps
//   caller     on test/invoke:    step.invoke "call" of callee with data; returns its
//                                 result or {"error": message}
//   callee     (invoke only):     returns {"doubled": 2 * data.n}; throws when data.fail
//   fanout     on test/parallel:  step.parallel of "a", "b", "c", then step "join"
//   cancellable on test/cancellable: cancel_on test/cancel of the same data.id; step
//                                 "start", a 30 s sleep, step "after"
//   fails      on test/fails:     fails for good; on_failure runs step "compensate"
//   throttled  on test/throttled: throttle 2 per 2s; step "work" records "work" with data.n
//   throttled-ordered on test/throttled-ordered: as ordered (lane of data.key), with
//                                 throttle 2 per 2s
//   prioritized on test/prioritized: concurrency 1, priority data.priority; step "work"
//                                 records "work" with data.n, then sleeps data.delay_ms
//   prioritized-ordered on test/prioritized-ordered: the same in a lane of data.key (no
//                                 concurrency limit)
//   two-keys   on test/two-keys:  concurrency [{2, data.a}, {3, data.b}]; step "work"
//                                 records "keys_in_flight" as "<calls of its a>:<of its b>"
//                                 running at the host, then sleeps data.delay_ms
//   debounced-ordered on test/debounced-ordered: as ordered (lane of data.key, step
//                                 "apply" records key:seq, then holds data.hold_ms), with
//                                 debounce 1s keyed by data.key
//   ticker     (only with --cron SPEC [--cron-jitter D]): a cron function that records "tick"
#include <atomic>
#include <fstream>
#include <iostream>
#include <map>
#include <mutex>
#include <stdexcept>
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
std::map<std::string, int> g_in_flight_a;   // "two-keys" steps running now, per data.a
std::map<std::string, int> g_in_flight_b;   // and per data.b (both guarded by g_mu)

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
  std::string serve_url;                 // what to register; default: this host's own address
  std::string serve_host = "127.0.0.1";  // the host name of that default URL
  std::string send_on_start;
  std::string cron;
  app.add_option("--cron", cron, "add the cron function \"ticker\" with this schedule");
  std::string cron_jitter;
  app.add_option("--cron-jitter", cron_jitter, "the ticker's jitter (e.g. \"900ms\")");
  app.add_option("--coordinator", client_options.coordinator_url);
  app.add_option("--signing-key", client_options.signing_key);
  app.add_option("--port", server_options.port);
  app.add_option("--log", log_path);
  app.add_option("--serve-url", serve_url, "URL to register (e.g. a recording proxy)");
  app.add_option("--serve-host", serve_host,
                 "host name of the URL registered by default (e.g. localhost; it binds 127.0.0.1)");
  app.add_option("--send-on-start", send_on_start, "JSON event(s) to send once registered");
  app.add_option("--tls-cert", server_options.tls_cert_file, "serve HTTPS with this certificate");
  app.add_option("--tls-key", server_options.tls_key_file, "and this key");
  app.add_option("--coordinator-ca", client_options.ca_file,
                 "CA file trusted for an https:// coordinator");
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
      {.id = "versioned",
       .triggers = {{.event = "test/versioned"}},
       .retries = 1,
       .ordering = funcky::sdk::Ordering{.key = "event.data.key",
                                         .bypass = "event.data.unordered == true",
                                         .sequence = "event.data.seq",
                                         .gap_timeout = "2s",
                                         .start = 1}},
      ordered));
  functions.push_back(funcky::sdk::create_function(
      {.id = "debounced-ordered",
       .triggers = {{.event = "test/debounced-ordered"}},
       .retries = 1,
       .ordering = funcky::sdk::Ordering{.key = "event.data.key"},
       .debounce = funcky::sdk::Debounce{.period = "1s", .key = "event.data.key"}},
      [](Context& ctx) {
        const Json& data = ctx.event["data"];
        const std::string mark =
            data.value("key", std::string()) + ":" + std::to_string(data.value("seq", 0));
        return ctx.step.run("apply", [&] {
          Record("apply", ctx.run_id, mark);
          std::this_thread::sleep_for(std::chrono::milliseconds(data.value("hold_ms", 0)));
          return Json(mark);
        });
      }));
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

  functions.push_back(funcky::sdk::create_function(
      {.id = "gated",
       .triggers = {{.event = "test/gated"}},
       .idempotency = "event.data.order",
       .timeouts = funcky::sdk::Timeouts{.finish = "2s"}},
      [](Context& ctx) {
        if (const int ms = ctx.event["data"].value("sleep_ms", 0); ms > 0) {
          ctx.step.sleep("nap", std::chrono::milliseconds(ms));
        }
        return ctx.step.run("work", [&] {
          Record("step", ctx.run_id, "work");
          return Json("worked");
        });
      }));
  functions.push_back(funcky::sdk::create_function(
      {.id = "sleeper", .triggers = {{.event = "test/sleep"}}}, [](Context& ctx) {
        ctx.step.run("before", [&] {
          Record("step", ctx.run_id, "before");
          return Json(NowMs());
        });
        ctx.step.sleep("nap", std::chrono::milliseconds(ctx.event["data"].value("sleep_ms", 2000)));
        return ctx.step.run("after", [&] {
          Record("woke", ctx.run_id, "after");
          return Json(NowMs());
        });
      }));
  functions.push_back(funcky::sdk::create_function(
      {.id = "waiter", .triggers = {{.event = "test/wait"}}}, [](Context& ctx) {
        const Json& data = ctx.event["data"];
        if (data.value("announce", false)) {
          ctx.step.send_event("announce",
                              {{"name", "test/approved"}, {"data", {{"order", data["order"]}}}});
        }
        ctx.step.run("pause", [&] {
          std::this_thread::sleep_for(std::chrono::milliseconds(data.value("pause_ms", 0)));
          return Json(nullptr);
        });
        auto approval = ctx.step.wait_for_event(
            "approval", {.event = "test/approved",
                         .if_expression = "async.data.order == event.data.order",
                         .timeout = data.value("timeout", std::string("5s")),
                         .lookback = data.value("lookback", std::string())});
        return Json{{"approval", approval ? *approval : Json(nullptr)}};
      }));
  functions.push_back(funcky::sdk::create_function(
      {.id = "signalled", .triggers = {{.event = "test/signalled"}}}, [](Context& ctx) {
        auto got = ctx.step.wait_for_signal(
            "approval",
            {.signal = ctx.event["data"].value("signal", std::string()), .timeout = "30s"});
        return got ? *got : Json(nullptr);
      }));
  functions.push_back(funcky::sdk::create_function(
      {.id = "signaller", .triggers = {{.event = "test/signaller"}}}, [](Context& ctx) {
        auto run = ctx.step.send_signal("send", ctx.event["data"].value("signal", std::string()),
                                        ctx.event["data"].value("data", Json(nullptr)));
        return run ? Json(*run) : Json(nullptr);
      }));
  functions.push_back(funcky::sdk::create_function(
      {.id = "sender", .triggers = {{.event = "test/send"}}}, [](Context& ctx) {
        Json events = Json::array();
        for (int i = 0; i < ctx.event["data"].value("count", 2); ++i) {
          events.push_back({{"name", "test/two-steps"}, {"data", {{"i", i}}}});
        }
        return Json{{"ids", ctx.step.send_event("fan", events)}};
      }));
  functions.push_back(funcky::sdk::create_function(
      {.id = "caller", .triggers = {{.event = "test/invoke"}}}, [](Context& ctx) {
        try {
          Json result = ctx.step.invoke(
              "call", {.function_id = "callee",
                       .data = ctx.event["data"],
                       .timeout = ctx.event["data"].value("timeout", std::string())});
          return Json{{"result", result}};
        } catch (const funcky::sdk::StepError& e) {
          return Json{{"error", e.error()}};
        }
      }));
  functions.push_back(
      funcky::sdk::create_function({.id = "callee", .retries = 0}, [](Context& ctx) -> Json {
        const Json& data = ctx.event["data"];
        if (data.value("fail", false)) throw funcky::sdk::NonRetriableError("callee refused");
        if (data.contains("sleep_ms")) {
          ctx.step.sleep("linger", std::chrono::milliseconds(data["sleep_ms"].get<int>()));
        }
        return Json{{"doubled", 2 * data.value("n", 0)}};
      }));
  functions.push_back(funcky::sdk::create_function(
      {.id = "fanout", .triggers = {{.event = "test/parallel"}}}, [](Context& ctx) {
        auto branch = [&](std::string name) {
          return std::pair<std::string, std::function<Json()>>{name, [&ctx, name] {
                                                                 Record("branch", ctx.run_id, name);
                                                                 return Json(name + "!");
                                                               }};
        };
        std::vector<Json> parts = ctx.step.parallel({branch("a"), branch("b"), branch("c")});
        return ctx.step.run("join", [&] {
          Record("step", ctx.run_id, "join");
          return Json(parts[0].get<std::string>() + parts[1].get<std::string>() +
                      parts[2].get<std::string>());
        });
      }));
  functions.push_back(funcky::sdk::create_function(
      {.id = "cancellable",
       .triggers = {{.event = "test/cancellable"}},
       .cancel_on = {{.event = "test/cancel", .if_expression = "async.data.id == event.data.id"}}},
      [](Context& ctx) {
        ctx.step.run("start", [&] {
          Record("step", ctx.run_id, "start");
          return Json(true);
        });
        ctx.step.sleep("long", std::chrono::seconds(30));
        return ctx.step.run("after", [&] {
          Record("step", ctx.run_id, "after");
          return Json(true);
        });
      }));
  functions.push_back(funcky::sdk::create_function(
      {.id = "fails",
       .triggers = {{.event = "test/fails"}},
       .retries = 0,
       .on_failure =
           [](Context& ctx) {
             return ctx.step.run("compensate", [&] {
               Record("compensate", ctx.run_id, ctx.event["data"]["run_id"]);
               return Json{{"handled", ctx.event["data"]["error"]["message"]},
                           {"original", ctx.event["data"]["event"]["data"]}};
             });
           }},
      [](Context&) -> Json { throw funcky::sdk::NonRetriableError("it broke"); }));
  functions.push_back(funcky::sdk::create_function(
      {.id = "throttled",
       .triggers = {{.event = "test/throttled"}},
       .throttle = funcky::sdk::Throttle{.limit = 2, .period = "2s"}},
      [](Context& ctx) {
        const std::string n = std::to_string(ctx.event["data"].value("n", 0));
        return ctx.step.run("work", [&] {
          Record("work", ctx.run_id, n);
          return Json(n);
        });
      }));
  functions.push_back(
      funcky::sdk::create_function({.id = "throttled-ordered",
                                    .triggers = {{.event = "test/throttled-ordered"}},
                                    .retries = 1,
                                    .ordering = funcky::sdk::Ordering{.key = "event.data.key"},
                                    .throttle = funcky::sdk::Throttle{.limit = 2, .period = "2s"}},
                                   ordered));
  auto prioritized = [](Context& ctx) {
    const Json& data = ctx.event["data"];
    const std::string n = std::to_string(data.value("n", 0));
    return ctx.step.run("work", [&] {
      Record("work", ctx.run_id, n);
      std::this_thread::sleep_for(std::chrono::milliseconds(data.value("delay_ms", 0)));
      return Json(n);
    });
  };
  functions.push_back(funcky::sdk::create_function(
      {.id = "prioritized",
       .triggers = {{.event = "test/prioritized"}},
       .concurrency = {{.limit = 1}},
       .priority = funcky::sdk::Priority{.run = "event.data.priority"}},
      prioritized));
  functions.push_back(funcky::sdk::create_function(
      {.id = "prioritized-ordered",
       .triggers = {{.event = "test/prioritized-ordered"}},
       .ordering = funcky::sdk::Ordering{.key = "event.data.key"},
       .priority = funcky::sdk::Priority{.run = "event.data.priority"}},
      prioritized));
  functions.push_back(funcky::sdk::create_function(
      {.id = "two-keys",
       .triggers = {{.event = "test/two-keys"}},
       .concurrency = {{.limit = 2, .key = "event.data.a"}, {.limit = 3, .key = "event.data.b"}}},
      [](Context& ctx) {
        const Json& data = ctx.event["data"];
        const std::string a = data.value("a", ""), b = data.value("b", "");
        return ctx.step.run("work", [&] {
          std::string counts;
          {
            std::lock_guard lock(g_mu);
            counts = std::to_string(++g_in_flight_a[a]) + ":" + std::to_string(++g_in_flight_b[b]);
          }
          Record("keys_in_flight", ctx.run_id, counts);
          std::this_thread::sleep_for(std::chrono::milliseconds(data.value("delay_ms", 0)));
          std::lock_guard lock(g_mu);
          --g_in_flight_a[a];
          --g_in_flight_b[b];
          return Json(counts);
        });
      }));
  if (!cron.empty()) {
    functions.push_back(funcky::sdk::create_function(
        {.id = "ticker", .triggers = {{.cron = cron, .jitter = cron_jitter}}}, [](Context& ctx) {
          return ctx.step.run("tick", [&] {
            Record("tick", ctx.run_id, ctx.event["data"]["scheduledAt"]);
            return ctx.event["data"]["scheduledAt"];
          });
        }));
  }

  funcky::sdk::Client client(client_options);
  // The serve URL holds the bound port, so the server starts before the handler exists: its
  // threads read the handler through an atomic pointer, set once the handler is whole, and
  // answer 503 until then (a coordinator that knows this host from an earlier start may call
  // it at once; it retries). A call answered so reached no function and is not recorded.
  std::unique_ptr<funcky::sdk::ServeHandler> handler;
  std::atomic<const funcky::sdk::ServeHandler*> ready{nullptr};
  funcky::sdk::Server server(
      [&](const funcky::sdk::ServeRequest& r) -> funcky::sdk::ServeResponse {
        const funcky::sdk::ServeHandler* h = ready.load(std::memory_order_acquire);
        if (!h) return {503, {{"Content-Type", "application/json"}}, R"({"message":"starting"})"};
        if (r.method == "POST") {
          Record("call", std::string(funcky::FindHeader(r.headers, "X-Run-ID")), r.target);
        }
        return h->handle(r);
      },
      server_options);
  if (auto s = server.start(); !s.ok()) {
    std::cerr << s.message() << std::endl;
    return 1;
  }
  const std::string scheme = server_options.tls_cert_file.empty() ? "http" : "https";
  const std::string url =
      serve_url.empty()
          ? scheme + "://" + serve_host + ":" + std::to_string(server.port()) + server_options.path
          : serve_url;
  try {
    handler = std::make_unique<funcky::sdk::ServeHandler>(client, url, std::move(functions));
  } catch (const std::invalid_argument& e) {  // a malformed signing key
    std::cerr << e.what() << std::endl;
    return 1;
  }
  ready.store(handler.get(), std::memory_order_release);
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
