// timed_host: the hello example's shape (one function, two steps: two calls a run) for
// bench/side_by_side.py's idle latencies. Prints one line per call it receives, the wall-clock
// time of its arrival in nanoseconds (CLOCK_REALTIME, the clock of Python's time.time_ns()),
// so the driver can time event accepted -> first call at the host without polling.
//
//   timed_host --coordinator http://127.0.0.1:8288 --port 0
#include <atomic>
#include <chrono>
#include <cstdio>
#include <iostream>
#include <memory>
#include <mutex>

#include <CLI/CLI.hpp>

#include "sdk/client.h"
#include "sdk/function.h"
#include "sdk/serve.h"
#include "sdk/server.h"

namespace sdk = funcky::sdk;

int main(int argc, char** argv) {
  CLI::App app{"timed_host: a two-step Funcky host that prints when each call arrives"};
  sdk::ClientOptions client_options{.app_id = "bench-timed"};
  sdk::ServerOptions server_options{.port = 0, .threads = 2};
  app.add_option("--coordinator", client_options.coordinator_url)->required();
  app.add_option("--port", server_options.port, "Port to serve on (0: any free port)");
  CLI11_PARSE(app, argc, argv);

  sdk::Client client(client_options);
  auto two_steps = sdk::create_function(
      {.id = "two-steps", .triggers = {{.event = "bench/timed"}}}, [](sdk::Context& ctx) {
        sdk::Json a = ctx.step.run("first", [] { return sdk::Json("A"); });
        sdk::Json b = ctx.step.run("second", [&] { return sdk::Json(a.get<std::string>() + "B"); });
        return sdk::Json{{"b", b}};
      });

  std::mutex out;
  // The serve URL holds the bound port, so the server starts before the handler exists: its
  // threads read the handler through an atomic pointer, set once the handler is whole, and
  // answer 503 until then (a coordinator that knows this host from an earlier start may call
  // it at once; it retries). A call answered so is not printed: it reached no function.
  std::unique_ptr<sdk::ServeHandler> handler;
  std::atomic<const sdk::ServeHandler*> ready{nullptr};
  sdk::Server server(
      [&](const sdk::ServeRequest& r) -> sdk::ServeResponse {
        const sdk::ServeHandler* h = ready.load(std::memory_order_acquire);
        if (!h) return {503, {{"Content-Type", "application/json"}}, R"({"message":"starting"})"};
        if (r.method == "POST") {
          auto now = std::chrono::system_clock::now().time_since_epoch();
          std::lock_guard lock(out);
          std::printf("call %lld\n",
                      static_cast<long long>(
                          std::chrono::duration_cast<std::chrono::nanoseconds>(now).count()));
          std::fflush(stdout);
        }
        return h->handle(r);
      },
      server_options);
  if (auto s = server.start(); !s.ok()) {
    std::cerr << "timed_host: " << s.message() << "\n";
    return 1;
  }
  handler = std::make_unique<sdk::ServeHandler>(
      client, "http://127.0.0.1:" + std::to_string(server.port()) + server_options.path,
      std::vector{std::move(two_steps)});
  ready.store(handler.get(), std::memory_order_release);
  if (auto s = handler->register_functions(std::chrono::seconds(20)); !s.ok()) {
    std::cerr << "timed_host: cannot register: " << s.message() << "\n";
    return 1;
  }
  std::printf("registered\n");
  std::fflush(stdout);
  server.wait_for_signal();
  return 0;
}
