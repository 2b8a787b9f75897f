// The ordering promise under chaos, with real processes: two
// coordinators on one PostgreSQL database, the ordered-replication example host and its
// flaky third party. Several clients send keys × events in a known per-key order; the host
// fails 20 % of calls with a 500 and stalls 5 % past the call timeout; the third party fails
// 5 % of its requests; one coordinator is killed with SIGKILL midway and restarted.
//
// Afterwards every run must have completed, the third party must have applied each key's
// mutations exactly in the order sent, and no step may have been recorded twice. The counts
// are printed. Bigger runs by hand: FUNCKY_CHAOS_KEYS=1000 FUNCKY_CHAOS_EVENTS=20.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <iostream>
#include <map>
#include <random>
#include <set>
#include <thread>

#include <gtest/gtest.h>

#include "tests/support/e2e.h"
#include "tests/support/pg_cluster.h"

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

  PgConnection db(db_);
  auto count = [&](const std::string& sql) { return db.Count(sql); };

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
                    << count("SELECT count(*) FROM runs WHERE status <> 'completed'") << " of "
                    << count("SELECT count(*) FROM runs") << " runs (" << total
                    << " events sent), after " << seconds << " s";

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

// The same chaos for a sequence lane (replicate-version, ordered by the producer's version,
// start 1): 4 clients send 100 tenants x 20 versions shuffled to 2 coordinators, 10 % of the
// versions are never sent, the host fails 20 % of calls, the third
// party 5 % of its requests, and one coordinator is killed with SIGKILL and restarted. The gap
// timeout (40 s) is longer than the sending takes, so a version that was sent always
// arrives before its lane could give up on it: every gap must be exactly dropped versions.
TEST_F(ChaosTest, SequenceLanesApplyVersionsInOrderAndGiveUpOnlyOnDroppedOnes) {
  const int keys = EnvInt("FUNCKY_CHAOS_KEYS", 100);
  const int versions = EnvInt("FUNCKY_CHAOS_EVENTS", 20);
  // A 5 s call timeout: a hundred lane heads start at once against the host's 32 threads, and
  // this test is about failures and a kill, not stalls (the test above has those).
  const std::vector<std::string> coordinator_args = {"--call-timeout", "5s", "--lease", "4s"};
  auto c1 = StartCoordinator(coordinator_args);
  auto c2 = StartCoordinator(coordinator_args);
  const int third_port = FreePort();
  const std::string third_url = "http://127.0.0.1:" + std::to_string(third_port);
  Process third_party({ORDERED_THIRD_PARTY_BIN, "--port", std::to_string(third_port), "--fail-rate",
                       "0.05", "--log", dir_ + "/applied.jsonl"},
                      dir_ + "/third-party.log");
  Process host({ORDERED_HOST_BIN, "--coordinator", c2->url(), "--port", std::to_string(FreePort()),
                "--third-party", third_url, "--fail-rate", "0.2", "--gap-timeout", "40s"},
               dir_ + "/host.log");
  ASSERT_TRUE(WaitFor([&] { return host.Log().find("ready ") != std::string::npos; }))
      << host.Log();

  // Which versions are lost, decided up front (a fixed seed: the same chaos every run).
  std::mt19937 rng(14);
  std::map<std::string, std::set<int>> dropped;
  std::vector<std::vector<std::pair<std::string, int>>> per_client(4);
  int sent_total = 0;
  for (int k = 0; k < keys; ++k) {
    const std::string tenant = "v" + std::to_string(k);
    for (int v = 1; v <= versions; ++v) {
      if (std::uniform_real_distribution<double>(0, 1)(rng) < 0.1) {
        dropped[tenant].insert(v);
      } else {
        per_client[k % 4].emplace_back(tenant, v);
        ++sent_total;
      }
    }
  }
  for (auto& sends : per_client) std::shuffle(sends.begin(), sends.end(), rng);
  std::atomic<int> send_errors{0};
  std::vector<std::thread> clients;
  for (int client = 0; client < 4; ++client) {
    clients.emplace_back([&, client] {
      const std::string url = (client % 2 ? c1 : c2)->url() + "/e/chaos";
      // In batches of 25 (still in the shuffled order): sending must take well under the gap
      // timeout even on a loaded machine, or a version sent late is rightly given up on.
      Json batch = Json::array();
      for (size_t i = 0; i < per_client[client].size(); ++i) {
        const auto& [tenant, v] = per_client[client][i];
        batch.push_back(
            {{"name", "crm/versioned"}, {"data", {{"tenant_id", tenant}, {"version", v}}}});
        if (batch.size() == 25 || i + 1 == per_client[client].size()) {
          if (Http("POST", url, batch.dump()).status != 200) ++send_errors;
          batch = Json::array();
        }
      }
    });
  }
  const auto sending = std::chrono::steady_clock::now();
  for (auto& t : clients) t.join();
  ASSERT_EQ(send_errors.load(), 0);
  const auto send_time = std::chrono::steady_clock::now() - sending;
  ASSERT_LT(send_time, 30s) << "the test's premise: every version sent arrives before its "
                               "lane could give up on it (gap timeout 40 s)";

  PgConnection db(db_);
  auto count = [&](const std::string& sql) { return db.Count(sql); };
  const auto sent_at = std::chrono::steady_clock::now();
  ASSERT_TRUE(WaitFor(
      [&] {
        return count(
                   "SELECT count(*) FROM runs WHERE status = 'completed' "
                   "AND lane_number IS NOT NULL") >= sent_total / 3;
      },
      120s))
      << count("SELECT count(*) FROM runs WHERE status = 'completed'") << " completed, "
      << count("SELECT count(*) FROM runs WHERE status = 'queued'") << " queued, "
      << count("SELECT count(*) FROM queue") << " queue items, "
      << count("SELECT count(*) FROM lanes WHERE head_run_id IS NULL AND depth > 0")
      << " lanes waiting\n"
      <<
      [&] {
        std::string out;
        for (const auto& row :
             db.Query("SELECT l.key, left(r.error::text, 200), r.status, r.lane_number, "
                      "l.seq_next, l.depth, l.gap_since_ms FROM lanes l LEFT JOIN runs r "
                      "ON r.id = l.head_run_id ORDER BY l.key LIMIT 8")) {
          for (const auto& f : row) out += f.value_or("null") + " ";
          out += "\n";
        }
        return out;
      }()
      << c1->Log().substr(0, 3000);
  std::cout << "a third completed after "
            << std::chrono::duration<double>(std::chrono::steady_clock::now() - sent_at).count()
            << " s\n";
  c1->Kill9();
  std::this_thread::sleep_for(1s);
  c1->Start();

  // Done when every run sent has ended and no lane waits for a number any more.
  const bool done = WaitFor(
      [&] {
        return count(
                   "SELECT count(*) FROM runs r JOIN events e ON e.internal_id = r.event_id "
                   "WHERE e.name = 'crm/versioned' AND r.status NOT IN ('completed', 'failed', "
                   "'cancelled')") == 0 &&
               count(
                   "SELECT count(*) FROM runs r JOIN events e ON e.internal_id = r.event_id "
                   "WHERE e.name = 'crm/versioned'") +
                       count("SELECT count(*) FROM lane_outcomes") ==
                   sent_total;
      },
      std::chrono::seconds(EnvInt("FUNCKY_CHAOS_WAIT_S", 240)));
  ASSERT_TRUE(done) << "runs not ended: "
                    << count("SELECT count(*) FROM runs WHERE status <> 'completed'")
                    << "; runs of versions: "
                    << count(
                           "SELECT count(*) FROM runs r JOIN events e ON e.internal_id = "
                           "r.event_id WHERE e.name = 'crm/versioned'")
                    << ", versions that started none: "
                    << count("SELECT count(*) FROM lane_outcomes")
                    << ", versions sent: " << sent_total << ", events stored: "
                    << count("SELECT count(*) FROM events WHERE name = 'crm/versioned'") << "\n"
                    <<
      [&] {
        std::string out;
        for (const auto& row :
             db.Query("SELECT r.lane_key, r.lane_number, r.status, left(r.error::text, 300), "
                      "l.seq_next, l.depth, l.gap_since_ms, l.head_run_id, "
                      "(SELECT count(*) FROM queue q WHERE q.run_id = l.head_run_id) "
                      "FROM runs r LEFT JOIN lanes l ON l.function_id = r.function_id "
                      "AND l.key = r.lane_key WHERE r.status <> 'completed' "
                      "ORDER BY r.lane_key, r.lane_number LIMIT 12")) {
          for (const auto& f : row) out += f.value_or("null") + " ";
          out += "\n";
        }
        return out;
      }();

  // The recorded gaps: each number in one must be a dropped version of its tenant.
  std::map<std::string, std::set<int>> gap_numbers;
  int gaps = 0;
  for (const auto& row :
       db.Query("SELECT key, first_number, last_number FROM lane_gaps WHERE function_id = "
                "'replication-replicate-version'")) {
    ++gaps;
    for (int64_t n = std::stoll(row[1].value()); n <= std::stoll(row[2].value()); ++n) {
      gap_numbers[row[0].value()].insert(static_cast<int>(n));
    }
  }
  const int64_t stale = count("SELECT count(*) FROM lane_outcomes WHERE outcome = 'stale'");
  const int64_t duplicates =
      count("SELECT count(*) FROM lane_outcomes WHERE outcome = 'duplicate'");
  const int64_t not_completed = count("SELECT count(*) FROM runs WHERE status <> 'completed'");

  auto applied = Http("GET", third_url + "/mutations");
  ASSERT_EQ(applied.status, 200);
  int keys_ok = 0, applied_total = 0, dropped_total = 0;
  std::vector<std::string> problems;
  for (int k = 0; k < keys; ++k) {
    const std::string tenant = "v" + std::to_string(k);
    std::vector<int> got;
    if (applied.body.contains(tenant)) got = applied.body[tenant].get<std::vector<int>>();
    applied_total += static_cast<int>(got.size());
    dropped_total += static_cast<int>(dropped[tenant].size());
    // Every version sent, exactly once and in increasing order (none is stale: each arrived
    // before its lane could give up on it).
    std::vector<int> want;
    for (int v = 1; v <= versions; ++v) {
      if (!dropped[tenant].count(v)) want.push_back(v);
    }
    // A gap is dropped versions only; every dropped version followed by one sent is a gap.
    std::set<int> want_gaps;
    for (int v : dropped[tenant]) {
      if (v < *std::max_element(want.begin(), want.end())) want_gaps.insert(v);
    }
    if (got == want && gap_numbers[tenant] == want_gaps) {
      ++keys_ok;
    } else if (problems.size() < 5) {
      problems.push_back(tenant + ": applied " + Json(got).dump() + ", gaps " +
                         Json(gap_numbers[tenant]).dump() + ", dropped " +
                         Json(dropped[tenant]).dump());
    }
  }
  const int64_t failed_attempts =
      count("SELECT count(*) FROM attempts WHERE outcome <> 'completed'");
  std::cout << "sequence chaos: " << keys << " tenants x " << versions << " versions, "
            << dropped_total << " dropped, " << sent_total << " sent shuffled\n"
            << "  applied: " << applied_total << ", gaps recorded: " << gaps << ", stale: " << stale
            << ", duplicates: " << duplicates << ", failed call attempts: " << failed_attempts
            << "\n"
            << "  tenants exactly right: " << keys_ok << " / " << keys << "\n";
  EXPECT_EQ(keys_ok, keys) << "e.g.\n" << (problems.empty() ? "" : problems[0]);
  EXPECT_EQ(applied_total, sent_total);
  EXPECT_EQ(stale, 0);
  EXPECT_EQ(not_completed, 0) << "runs failed or blocked";
  EXPECT_EQ(duplicates, 0);
  EXPECT_GT(gaps, 0) << "the drops did not happen";
  EXPECT_GT(failed_attempts, sent_total / 10) << "the chaos did not happen";
  third_party.Stop();
  host.Stop();
}

}  // namespace
}  // namespace funcky::testing
