// third_party: a stand-in for a SaaS API (Airtable, say) that Funcky's first user replicates
// mutations to. It applies each mutation once per idempotency key, records per tenant the
// order it applied them in, and misbehaves on request: a share of requests get a 500, a
// share are answered only after a long delay (past the coordinator's call timeout).
//
//   POST /mutations {"tenant_id", "seq", "idempotency_key"}  -> 200 {"applied": true|false}
//   GET  /mutations                                          -> {"<tenant>": [seq, ...], ...}
//
// Every mutation applied is also written as a JSON line to --log.
#include <atomic>
#include <fstream>
#include <iostream>
#include <map>
#include <mutex>
#include <random>
#include <set>
#include <thread>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "sdk/server.h"

using Json = nlohmann::json;

int main(int argc, char** argv) {
  CLI::App app{"third_party: a flaky API that records the order of mutations per tenant"};
  funcky::sdk::ServerOptions server_options{.port = 4000, .path = "/mutations", .threads = 32};
  double fail_rate = 0, slow_rate = 0;
  int slow_ms = 3000;
  std::string log_path = "/dev/null";
  app.add_option("--port", server_options.port, "Port to serve on")->capture_default_str();
  app.add_option("--fail-rate", fail_rate, "Share of requests answered 500 (0..1)");
  app.add_option("--slow-rate", slow_rate, "Share of requests answered late (0..1)");
  app.add_option("--slow-ms", slow_ms, "How late a slow answer is")->capture_default_str();
  app.add_option("--log", log_path, "JSON lines of applied mutations");
  CLI11_PARSE(app, argc, argv);

  std::mutex mu;
  std::map<std::string, std::vector<int64_t>> order;  // tenant -> seqs, as applied
  std::set<std::string> seen;                         // idempotency keys applied
  std::ofstream log(log_path, std::ios::app);
  std::mt19937_64 rng(std::random_device{}());

  funcky::sdk::Server server(
      [&](const funcky::sdk::ServeRequest& r) -> funcky::sdk::ServeResponse {
        const funcky::Headers json_type = {{"Content-Type", "application/json"}};
        if (r.method == "GET") {
          std::lock_guard lock(mu);
          return {200, json_type, Json(order).dump()};
        }
        Json m = Json::parse(r.body, nullptr, false);
        if (!m.is_object() || !m.contains("tenant_id") || !m.contains("idempotency_key")) {
          return {400, json_type, R"({"error":"tenant_id and idempotency_key are required"})"};
        }
        double roll;
        {
          std::lock_guard lock(mu);
          roll = std::uniform_real_distribution<double>(0, 1)(rng);
        }
        if (roll < fail_rate) return {500, json_type, R"({"error":"try again later"})"};
        bool slow = roll < fail_rate + slow_rate;
        bool applied = false;
        {
          std::lock_guard lock(mu);
          if (seen.insert(m["idempotency_key"].get<std::string>()).second) {
            applied = true;
            order[m["tenant_id"].get<std::string>()].push_back(m.value("seq", int64_t{-1}));
            log << m.dump() << std::endl;
          }
        }
        // Applied, but the answer comes too late: the caller times out and retries.
        if (slow) std::this_thread::sleep_for(std::chrono::milliseconds(slow_ms));
        return {200, json_type, Json{{"applied", applied}}.dump()};
      },
      server_options);
  if (auto s = server.start(); !s.ok()) {
    std::cerr << "third_party: " << s.message() << std::endl;
    return 1;
  }
  std::cout << "third_party: listening on port " << server.port() << std::endl;
  server.wait_for_signal();
  return 0;
}
