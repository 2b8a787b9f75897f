// hello: the smallest Funcky host. One function, two steps.
//
//   hello --coordinator http://127.0.0.1:8288 --port 3000
//   curl -XPOST http://127.0.0.1:8288/e/dev -d '{"name":"demo/hello","data":{"name":"Ada"}}'
#include <atomic>
#include <iostream>
#include <memory>
#include <stdexcept>

#include <CLI/CLI.hpp>

#include "sdk/client.h"
#include "sdk/function.h"
#include "sdk/serve.h"
#include "sdk/server.h"

using funcky::sdk::Context;
using funcky::sdk::Json;

int main(int argc, char** argv) {
  CLI::App app{"hello: an example Funcky host with one two-step function"};
  funcky::sdk::ClientOptions client_options{.app_id = "hello"};
  funcky::sdk::ServerOptions server_options;
  std::string public_host = "127.0.0.1";
  app.add_option("--coordinator", client_options.coordinator_url, "Coordinator URL")
      ->capture_default_str();
  app.add_option("--signing-key", client_options.signing_key,
                 "Signing key shared with the coordinator (empty: dev mode)");
  app.add_option("--port", server_options.port, "Port to serve on")->capture_default_str();
  app.add_option("--address", server_options.address, "Address to listen on")
      ->capture_default_str();
  app.add_option("--public-host", public_host, "Host name the coordinator reaches us at")
      ->capture_default_str();
  CLI11_PARSE(app, argc, argv);

  funcky::sdk::Client client(client_options);
  auto greet = funcky::sdk::create_function(
      {.id = "greet", .name = "Greet", .triggers = {{.event = "demo/hello"}}}, [](Context& ctx) {
        std::string name = ctx.event["data"].value("name", std::string("world"));
        Json greeting = ctx.step.run("compose", [&] { return Json("Hello, " + name); });
        Json shout = ctx.step.run("shout", [&] {
          std::string s = greeting.get<std::string>();
          for (char& c : s) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
          return Json(s + "!");
        });
        return Json{{"greeting", greeting}, {"shout", shout}};
      });

  // The serve URL contains the port (--port 0 picks one), so the server starts before the
  // handler exists. Its threads may take a call meanwhile (a coordinator that knows this
  // host from an earlier start): they read the handler through an atomic pointer, set once
  // the handler is whole, and answer 503 until then, which the coordinator retries.
  std::unique_ptr<funcky::sdk::ServeHandler> handler;
  std::atomic<const funcky::sdk::ServeHandler*> ready{nullptr};
  funcky::sdk::Server server(
      [&](const funcky::sdk::ServeRequest& r) -> funcky::sdk::ServeResponse {
        const funcky::sdk::ServeHandler* h = ready.load(std::memory_order_acquire);
        if (!h) return {503, {{"Content-Type", "application/json"}}, R"({"message":"starting"})"};
        return h->handle(r);
      },
      server_options);
  if (auto s = server.start(); !s.ok()) {
    std::cerr << "hello: " << s.message() << "\n";
    return 1;
  }
  const std::string serve_url =
      "http://" + public_host + ":" + std::to_string(server.port()) + server_options.path;
  try {
    handler = std::make_unique<funcky::sdk::ServeHandler>(client, serve_url,
                                                          std::vector{std::move(greet)});
  } catch (const std::invalid_argument& e) {  // a malformed signing key
    std::cerr << "hello: " << e.what() << "\n";
    return 1;
  }
  ready.store(handler.get(), std::memory_order_release);
  // The coordinator may start after us: keep trying to register for a while.
  funcky::Status registered = handler->register_functions(std::chrono::seconds(20));
  if (!registered.ok()) {
    std::cerr << "hello: cannot register with " << client_options.coordinator_url << ": "
              << registered.message() << "\n";
    return 1;
  }
  std::cout << "hello: serving " << serve_url << ", registered with "
            << client_options.coordinator_url << std::endl;
  server.wait_for_signal();
  return 0;
}
