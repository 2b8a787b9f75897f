// The ordering promise under chaos, with real processes: two
// coordinators on one PostgreSQL database, the ordered-replication example host and its
// flaky third party. Several clients send keys × events in a known per-key order; the host
// fails 20 % of calls with a 500 and stalls 5 % past the call timeout; the third party fails
// 5 % of its requests; one coordinator is killed with SIGKILL midway and restarted.
//
// Afterwards every run must have completed, the third party must have applied each key's
// mutations exactly in the order sent, and no step may have been recorded twice. The counts
// are printed. Bigger runs by hand: FUNCKY_CHAOS_KEYS=1000 FUNCKY_CHAOS_EVENTS=20.
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <iostream>
#include <thread>

#include <gtest/gtest.h>
#include <pqxx/pqxx>

#include "tests/support/e2e.h"

namespace funcky::testing {
namespace {

using namespace std::chrono_literals;

int EnvInt(const char* name, int fallback) {
  const char* v = std::getenv(name);
  return v && *v ? std::atoi(v) : fallback;
}

class ChaosTest : public E2eTest {};

TEST_F(ChaosTest, PerKeyOrderHoldsThroughFailuresTimeoutsAndAKill9) {
  const int keys = EnvInt("FUNCKY_CHAOS_KEYS", 200);
  const int events = EnvInt("FUNCKY_CHAOS_EVENTS", 10);
  const int total = keys * events;
  const std::vector<std::string> coordinator_args = {"--call-timeout", "1s", "--lease", "4s"};
  auto c1 = StartCoordinator(coordinator_args);
  auto c2 = StartCoordinator(coordinator_args);

  const int third_port = FreePort();
  const std::string third_url = "http://127.0.0.1:" + std::to_string(third_port);
  Process third_party({ORDERED_THIRD_PARTY_BIN, "--port", std::to_string(third_port), "--fail-rate",
                       "0.05", "--log", dir_ + "/applied.jsonl"},
                      dir_ + "/third-party.log");
  Process host({ORDERED_HOST_BIN, "--coordinator", c2->url(), "--port", std::to_string(FreePort()),
                "--third-party", third_url, "--fail-rate", "0.2", "--stall-rate", "0.05",
                "--stall-ms", "1500"},
               dir_ + "/host.log");
  ASSERT_TRUE(WaitFor([&] { return host.Log().find("ready ") != std::string::npos; }))
      << host.Log();

  // Four clients, each owning a quarter of the keys, send seq 1..events of each key in
  // order, interleaving keys, two of them to each coordinator.
  const auto started = std::chrono::steady_clock::now();
  std::atomic<int> send_errors{0};
  std::vector<std::thread> clients;
  for (int client = 0; client < 4; ++client) {
    clients.emplace_back([&, client] {
      const std::string url = (client % 2 ? c1 : c2)->url() + "/e/chaos";
      for (int seq = 1; seq <= events; ++seq) {
        for (int k = client; k < keys; k += 4) {
          Json e = {{"name", "crm/mutation"},
                    {"data", {{"tenant_id", "t" + std::to_string(k)}, {"seq", seq}}}};
          if (Http("POST", url, e.dump()).status != 200) ++send_errors;
        }
      }
    });
  }
  for (auto& t : clients) t.join();
  ASSERT_EQ(send_errors.load(), 0);

  pqxx::connection db(db_);
  auto count = [&](const std::string& sql) {
    pqxx::nontransaction w(db);
    return w.exec(sql)[0][0].as<int64_t>();
  };

  // Midway: SIGKILL one coordinator, restart it a second later.
  ASSERT_TRUE(WaitFor(
      [&] {
        return count(
                   "SELECT count(*) FROM runs WHERE status = "
                   "'completed'") >= total / 3;
      },
      120s));
  c1->Kill9();
  const int64_t completed_at_kill = count("SELECT count(*) FROM runs WHERE status = 'completed'");
  std::this_thread::sleep_for(1s);
  c1->Start();

  const bool done = WaitFor(
      [&] {
        return count(
                   "SELECT count(*) FROM runs WHERE status IN ('completed', 'failed', "
                   "'blocked')") == total;
      },
      240s);
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  ASSERT_TRUE(done) << "runs not finished: "
                    << count("SELECT count(*) FROM runs WHERE status <> 'completed'");

  const int64_t completed = count("SELECT count(*) FROM runs WHERE status = 'completed'");
  const int64_t steps_recorded = count("SELECT count(*) FROM steps");
  const int64_t runs_with_extra_steps = count(
      "SELECT count(*) FROM (SELECT run_id FROM steps GROUP BY run_id HAVING count(*) <> 1) s");
  const int64_t failed_attempts = count(
      "SELECT count(*) FROM attempts WHERE outcome <> "
      "'completed'");
  // The mutations sent (each run's end adds an inngest/function.finished event too).
  const int64_t events_stored = count("SELECT count(*) FROM events WHERE name = 'crm/mutation'");

  // The third party's view: per tenant, the order in which it applied mutations.
  auto applied = Http("GET", third_url + "/mutations");
  ASSERT_EQ(applied.status, 200);
  int keys_in_order = 0, mutations_applied = 0;
  std::vector<std::string> out_of_order;
  for (int k = 0; k < keys; ++k) {
    const std::string tenant = "t" + std::to_string(k);
    std::vector<int> got;
    if (applied.body.contains(tenant)) got = applied.body[tenant].get<std::vector<int>>();
    mutations_applied += static_cast<int>(got.size());
    std::vector<int> want(events);
    for (int i = 0; i < events; ++i) want[i] = i + 1;
    if (got == want) {
      ++keys_in_order;
    } else if (out_of_order.size() < 5) {
      out_of_order.push_back(tenant + ": " + Json(got).dump());
    }
  }

  std::cout << "chaos: " << keys << " keys x " << events << " events in " << seconds << " s\n"
            << "  events stored:            " << events_stored << " / " << total << "\n"
            << "  runs completed:           " << completed << " / " << total << " ("
            << completed_at_kill << " when coordinator 1 was killed)\n"
            << "  failed call attempts:     " << failed_attempts << " (retried)\n"
            << "  mutations applied:        " << mutations_applied << "\n"
            << "  keys in sent order:       " << keys_in_order << " / " << keys << "\n"
            << "  step results recorded:    " << steps_recorded << " (" << runs_with_extra_steps
            << " runs with other than one)\n";

  EXPECT_EQ(events_stored, total);
  EXPECT_EQ(completed, total);
  EXPECT_EQ(keys_in_order, keys) << "out of order, e.g.:\n"
                                 << (out_of_order.empty() ? "" : out_of_order[0]);
  EXPECT_EQ(mutations_applied, total);
  EXPECT_EQ(steps_recorded, total);
  EXPECT_EQ(runs_with_extra_steps, 0);
  EXPECT_GT(failed_attempts, total / 10) << "the chaos did not happen";
  third_party.Stop();
  host.Stop();
}

}  // namespace
}  // namespace funcky::testing
