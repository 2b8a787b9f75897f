// ordered-replication: Funcky's first user's case. Mutations of a tenant's records must
// reach a third-party API in the order they happened, with retries, from serverless-style
// HTTP compute. The function `replicate-mutation` is ordered by event.data.tenant_id: each
// tenant is a FIFO lane, so a mutation is never applied before an earlier one of its tenant,
// even when that one is retrying. Tenants do not wait for each other.
//
//   ordered-replication-host --coordinator http://127.0.0.1:8288 --third-party
//   http://127.0.0.1:4000
//   curl -XPOST http://127.0.0.1:8288/e/dev -d
//     '{"name":"crm/mutation","data":{"tenant_id":"acme","seq":1,"fields":{"name":"Ada"}}}'
//
// For chaos tests it can also fail a share of the calls it gets (--fail-rate: HTTP 500) and
// stall a share past the coordinator's call timeout (--stall-rate, --stall-ms).
#include <iostream>
#include <mutex>
#include <random>
#include <thread>

#include <CLI/CLI.hpp>

#include "common/http_client.h"
#include "sdk/client.h"
#include "sdk/function.h"
#include "sdk/serve.h"
#include "sdk/server.h"

using funcky::sdk::Context;
using funcky::sdk::Json;

int main(int argc, char** argv) {
  CLI::App app{"ordered-replication: replicate mutations to a third party, in order per tenant"};
  funcky::sdk::ClientOptions client_options{.app_id = "replication"};
  funcky::sdk::ServerOptions server_options{.port = 3001, .threads = 32};
  std::string third_party = "http://127.0.0.1:4000";
  double fail_rate = 0, stall_rate = 0;
  int stall_ms = 3000;
  app.add_option("--coordinator", client_options.coordinator_url, "Coordinator URL")
      ->capture_default_str();
  app.add_option("--signing-key", client_options.signing_key, "Signing key (empty: dev mode)");
  app.add_option("--port", server_options.port, "Port to serve on")->capture_default_str();
  app.add_option("--third-party", third_party, "Base URL of the third-party API")
      ->capture_default_str();
  app.add_option("--fail-rate", fail_rate, "Share of calls answered 500 (0..1)");
  app.add_option("--stall-rate", stall_rate, "Share of calls stalled (0..1)");
  app.add_option("--stall-ms", stall_ms, "How long a stalled call waits")->capture_default_str();
  CLI11_PARSE(app, argc, argv);

  auto replicate = funcky::sdk::create_function(
      {.id = "replicate-mutation",
       .triggers = {{.event = "crm/mutation"}},
       .retries = 10,
       .ordering = funcky::sdk::Ordering{.key = "event.data.tenant_id"}},
      [&](Context& ctx) {
        const Json& data = ctx.event["data"];
        return ctx.step.run("push", [&] {
          // The run id and step name make a key the third party deduplicates on, so a step
          // that ran but whose result was lost (a timeout) is not applied twice.
          Json body = {{"tenant_id", data.value("tenant_id", "")},
                       {"seq", data.value("seq", int64_t{0})},
                       {"fields", data.value("fields", Json::object())},
                       {"idempotency_key", ctx.run_id + ":push"}};
          auto reply = funcky::HttpCall({.method = "POST",
                                         .url = third_party + "/mutations",
                                         .headers = {{"Content-Type", "application/json"}},
                                         .body = body.dump(),
                                         .timeout = std::chrono::seconds(30)});
          if (!reply.ok()) throw std::runtime_error("third party: " + reply.status().message());
          if (reply->status != 200) {
            throw std::runtime_error("third party answered " + std::to_string(reply->status));
          }
          return Json::parse(reply->body, nullptr, false);
        });
      });

  std::mutex mu;
  std::mt19937_64 rng(std::random_device{}());
  funcky::sdk::Client client(client_options);
  std::unique_ptr<funcky::sdk::ServeHandler> handler;
  funcky::sdk::Server server(
      [&](const funcky::sdk::ServeRequest& r) -> funcky::sdk::ServeResponse {
        if (r.method == "POST" && (fail_rate > 0 || stall_rate > 0)) {
          double roll;
          {
            std::lock_guard lock(mu);
            roll = std::uniform_real_distribution<double>(0, 1)(rng);
          }
          if (roll < fail_rate) {
            return {500, {{"Content-Type", "application/json"}}, R"({"error":"chaos"})"};
          }
          if (roll < fail_rate + stall_rate) {
            std::this_thread::sleep_for(std::chrono::milliseconds(stall_ms));
          }
        }
        return handler->handle(r);
      },
      server_options);
  if (auto s = server.start(); !s.ok()) {
    std::cerr << "ordered-replication: " << s.message() << std::endl;
    return 1;
  }
  const std::string url = "http://127.0.0.1:" + std::to_string(server.port()) + server_options.path;
  handler =
      std::make_unique<funcky::sdk::ServeHandler>(client, url, std::vector{std::move(replicate)});
  if (auto s = handler->register_functions(std::chrono::seconds(20)); !s.ok()) {
    std::cerr << "ordered-replication: cannot register: " << s.message() << std::endl;
    return 1;
  }
  std::cout << "ready " << url << std::endl;
  server.wait_for_signal();
  return 0;
}
