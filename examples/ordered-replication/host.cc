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
// `replicate-version` does the same for mutations the producer numbers per tenant
// (event.data.version, from 1): its lane runs them in version order whatever order they
// arrive in, waits --gap-timeout for a missing version, then records the gap and goes on.
// With --produce-tenants N the host is also that producer: once registered, it sends
// versions 1..--produce-versions of N tenants shuffled, dropping --drop-rate of them, and
// prints what it dropped; the third party then shows each tenant's versions in order.
//
// For chaos tests it can also fail a share of the calls it gets (--fail-rate: HTTP 500) and
// stall a share past the coordinator's call timeout (--stall-rate, --stall-ms).
#include <algorithm>
#include <atomic>
#include <iostream>
#include <map>
#include <memory>
#include <mutex>
#include <random>
#include <stdexcept>
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
  std::string gap_timeout = "5s";
  int produce_tenants = 0, produce_versions = 10;
  double drop_rate = 0.1;
  app.add_option("--coordinator", client_options.coordinator_url, "Coordinator URL")
      ->capture_default_str();
  app.add_option("--signing-key", client_options.signing_key, "Signing key (empty: dev mode)");
  app.add_option("--port", server_options.port, "Port to serve on")->capture_default_str();
  app.add_option("--third-party", third_party, "Base URL of the third-party API")
      ->capture_default_str();
  app.add_option("--fail-rate", fail_rate, "Share of calls answered 500 (0..1)");
  app.add_option("--stall-rate", stall_rate, "Share of calls stalled (0..1)");
  app.add_option("--stall-ms", stall_ms, "How long a stalled call waits")->capture_default_str();
  app.add_option("--gap-timeout", gap_timeout,
                 "How long replicate-version waits for a missing version")
      ->capture_default_str();
  app.add_option("--produce-tenants", produce_tenants,
                 "Also be the producer: send crm/versioned for this many tenants, shuffled");
  app.add_option("--produce-versions", produce_versions, "Versions per tenant")
      ->capture_default_str();
  app.add_option("--drop-rate", drop_rate, "Share of versions the producer loses (0..1)")
      ->capture_default_str();
  CLI11_PARSE(app, argc, argv);

  // Pushes the mutation of the run's event, numbered `seq`, to the third party.
  auto push = [&](Context& ctx, int64_t seq) {
    const Json& data = ctx.event["data"];
    return ctx.step.run("push", [&] {
      // The run id and step name make a key the third party deduplicates on, so a step
      // that ran but whose result was lost (a timeout) is not applied twice.
      Json body = {{"tenant_id", data.value("tenant_id", "")},
                   {"seq", seq},
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
      // A 200 whose body is not JSON (a proxy's page) is retried, not recorded as the result.
      Json result = Json::parse(reply->body, nullptr, false);
      if (result.is_discarded()) throw std::runtime_error("third party answered 200 without JSON");
      return result;
    });
  };
  auto replicate = funcky::sdk::create_function(
      {.id = "replicate-mutation",
       .triggers = {{.event = "crm/mutation"}},
       .retries = 10,
       .ordering = funcky::sdk::Ordering{.key = "event.data.tenant_id"}},
      [&](Context& ctx) { return push(ctx, ctx.event["data"].value("seq", int64_t{0})); });
  auto replicate_version = funcky::sdk::create_function(
      {.id = "replicate-version",
       .triggers = {{.event = "crm/versioned"}},
       .retries = 10,
       .ordering = funcky::sdk::Ordering{.key = "event.data.tenant_id",
                                         .sequence = "event.data.version",
                                         .gap_timeout = gap_timeout,
                                         .start = 1}},
      [&](Context& ctx) { return push(ctx, ctx.event["data"].value("version", int64_t{0})); });

  std::mutex mu;
  std::mt19937_64 rng(std::random_device{}());
  funcky::sdk::Client client(client_options);
  // The serve URL holds the bound port, so the server starts before the handler exists: its
  // threads read the handler through an atomic pointer, set once the handler is whole, and
  // answer 503 until then (a coordinator that knows this host from an earlier start may call
  // it at once; it retries).
  std::unique_ptr<funcky::sdk::ServeHandler> handler;
  std::atomic<const funcky::sdk::ServeHandler*> ready{nullptr};
  funcky::sdk::Server server(
      [&](const funcky::sdk::ServeRequest& r) -> funcky::sdk::ServeResponse {
        const funcky::sdk::ServeHandler* h = ready.load(std::memory_order_acquire);
        if (!h) return {503, {{"Content-Type", "application/json"}}, R"({"message":"starting"})"};
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
        return h->handle(r);
      },
      server_options);
  if (auto s = server.start(); !s.ok()) {
    std::cerr << "ordered-replication: " << s.message() << std::endl;
    return 1;
  }
  const std::string url = "http://127.0.0.1:" + std::to_string(server.port()) + server_options.path;
  std::vector<funcky::sdk::Function> functions;
  functions.push_back(std::move(replicate));
  functions.push_back(std::move(replicate_version));
  try {
    handler = std::make_unique<funcky::sdk::ServeHandler>(client, url, std::move(functions));
  } catch (const std::invalid_argument& e) {  // a malformed signing key
    std::cerr << "ordered-replication: " << e.what() << std::endl;
    return 1;
  }
  ready.store(handler.get(), std::memory_order_release);
  if (auto s = handler->register_functions(std::chrono::seconds(20)); !s.ok()) {
    std::cerr << "ordered-replication: cannot register: " << s.message() << std::endl;
    return 1;
  }
  std::cout << "ready " << url << std::endl;
  if (produce_tenants > 0) {
    // The producer: every tenant's versions, shuffled together, some lost on the way.
    std::vector<std::pair<int, int>> sends;
    for (int t = 0; t < produce_tenants; ++t) {
      for (int v = 1; v <= produce_versions; ++v) sends.emplace_back(t, v);
    }
    std::mt19937_64 producer_rng(std::random_device{}());  // the server's is busy with chaos
    std::shuffle(sends.begin(), sends.end(), producer_rng);
    std::map<std::string, std::vector<int>> dropped;
    for (const auto& [t, v] : sends) {
      const std::string tenant = "tenant-" + std::to_string(t);
      if (std::uniform_real_distribution<double>(0, 1)(producer_rng) < drop_rate) {
        dropped[tenant].push_back(v);
        continue;
      }
      Json event = {{"name", "crm/versioned"}, {"data", {{"tenant_id", tenant}, {"version", v}}}};
      auto sent = funcky::HttpCall({.method = "POST",
                                    .url = client_options.coordinator_url + "/e/producer",
                                    .headers = {{"Content-Type", "application/json"}},
                                    .body = event.dump()});
      if (!sent.ok() || sent->status != 200) {
        std::cerr << "producer: sending " << tenant << " v" << v << " failed" << std::endl;
      }
    }
    for (auto& [tenant, versions] : dropped) std::sort(versions.begin(), versions.end());
    std::cout << "produced; dropped " << Json(dropped).dump() << std::endl;
  }
  server.wait_for_signal();
  return 0;
}
