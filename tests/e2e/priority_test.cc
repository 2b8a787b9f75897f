// `priority` and two keyed concurrency limits across processes (docs/flow-control.md
// "priority", "concurrency"), on both stores. The test host's `prioritized` function has
// `concurrency: 1` and `priority: {run: "event.data.priority"}`; `prioritized-ordered` is the
// same in a lane of data.key; `two-keys` has `concurrency: [{2, data.a}, {3, data.b}]`.
#include <algorithm>
#include <chrono>
#include <functional>
#include <map>
#include <set>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "tests/support/e2e.h"

namespace funcky::testing {
namespace {

using namespace std::chrono_literals;

// The time of the first call the host recorded for each run.
std::map<std::string, int64_t> FirstCalls(const TestHost& host) {
  std::map<std::string, int64_t> first;
  for (const Json& r : host.Records()) {
    if (r["kind"] != "call") continue;
    auto [it, added] = first.emplace(r["run_id"].get<std::string>(), r["t_ms"].get<int64_t>());
    if (!added) it->second = std::min(it->second, r["t_ms"].get<int64_t>());
  }
  return first;
}

// The `step` of each "work" record, in the order the host recorded them.
std::vector<std::string> WorkOrder(const TestHost& host) {
  std::vector<std::string> out;
  for (const Json& r : host.Records()) {
    if (r["kind"] == "work") out.push_back(r["step"]);
  }
  return out;
}

class PriorityTest : public E2eTest, public ::testing::WithParamInterface<std::string> {
 protected:
  std::string backend() const override { return GetParam(); }

  std::string RunOf(const Coordinator& c, const Json& event) {
    const std::string e = Send(c, event);
    auto runs = RunsOfEvent(c.url(), e);
    EXPECT_EQ(runs.size(), 1u) << "event " << e << " started no run";
    return runs.empty() ? "" : runs[0];
  }
};

// Under `concurrency: 1`, a backlog of priority-0 runs waits; a later event with priority
// 600 gets its run's first call before every backlog run that had not started yet. (Each
// backlog run takes 600 ms, so the backlog still waits however slowly a busy machine takes
// the nine POSTs; it failed once at 300 ms with the machine loaded.)
TEST_P(PriorityTest, AHighPriorityRunStartsBeforeTheWaitingBacklog) {
  auto c = StartCoordinator();
  TestHost host(c->url(), dir_);
  std::vector<std::string> backlog;
  for (int n = 0; n < 8; ++n) {
    backlog.push_back(RunOf(*c, {{"name", "test/prioritized"},
                                 {"data", {{"n", n}, {"priority", 0}, {"delay_ms", 600}}}}));
  }
  const std::string vip = RunOf(*c, {{"name", "test/prioritized"},
                                     {"data", {{"n", 99}, {"priority", 600}, {"delay_ms", 300}}}});
  // The backlog runs that had started by the time the boosted event was stored (read just
  // after its POST answered: a claim that raced that commit can show up a moment later, so
  // one more start before vip is tolerated).
  const size_t started_before = FirstCalls(host).size();
  for (const std::string& run : backlog) {
    EXPECT_EQ(WaitForRunEnd(c->url(), run, 60s)["status"], "completed") << run;
  }
  EXPECT_EQ(WaitForRunEnd(c->url(), vip, 60s)["status"], "completed");
  const std::map<std::string, int64_t> first = FirstCalls(host);
  ASSERT_TRUE(first.count(vip));
  size_t ahead_of_vip = 0;
  for (const std::string& run : backlog) {
    ASSERT_TRUE(first.count(run)) << run;
    if (first.at(run) < first.at(vip)) ++ahead_of_vip;
  }
  EXPECT_LE(ahead_of_vip, started_before + 1)
      << "backlog runs that were still waiting started before the high-priority run";
  EXPECT_GE(backlog.size() - ahead_of_vip, 4u)
      << "the backlog should still have been waiting (600 ms a run)";
}

// With a lane, a later run of the key never overtakes, whatever its priority.
TEST_P(PriorityTest, PriorityNeverReordersALane) {
  auto c = StartCoordinator();
  TestHost host(c->url(), dir_);
  std::vector<std::string> runs;
  for (int n = 1; n <= 4; ++n) {
    runs.push_back(RunOf(
        *c,
        {{"name", "test/prioritized-ordered"},
         {"data", {{"n", n}, {"key", "k"}, {"priority", n == 4 ? 600 : 0}, {"delay_ms", 200}}}}));
  }
  for (const std::string& run : runs) {
    EXPECT_EQ(WaitForRunEnd(c->url(), run, 60s)["status"], "completed") << run;
  }
  EXPECT_EQ(WorkOrder(host), (std::vector<std::string>{"1", "2", "3", "4"}));
}

// Sends the 12 events of the two-keys test to `coordinators` in turn (a = i % 3, b = i % 2,
// each step 800 ms) and returns their runs.
std::vector<std::string> SendTwoKeys(
    std::vector<const Coordinator*> coordinators,
    const std::function<std::string(const Coordinator&, const Json&)>& run_of) {
  std::vector<std::string> runs;
  for (int i = 0; i < 12; ++i) {
    runs.push_back(
        run_of(*coordinators[i % coordinators.size()], {{"name", "test/two-keys"},
                                                        {"data",
                                                         {{"a", "a" + std::to_string(i % 3)},
                                                          {"b", "b" + std::to_string(i % 2)},
                                                          {"delay_ms", 800}}}}));
  }
  return runs;
}

// At no time more than 2 steps of one `a` or 3 of one `b` ran at the host; both limits were
// reached, so neither is stricter than asked.
void ExpectTwoKeyedLimitsHeld(const TestHost& host) {
  int max_a = 0, max_b = 0, seen = 0;
  for (const Json& r : host.Records()) {
    if (r["kind"] != "keys_in_flight") continue;
    ++seen;
    const std::string counts = r["step"];
    const size_t colon = counts.find(':');
    ASSERT_NE(colon, std::string::npos) << counts;
    const int a = std::stoi(counts.substr(0, colon)), b = std::stoi(counts.substr(colon + 1));
    EXPECT_LE(a, 2) << "3 steps of one data.a ran at once";
    EXPECT_LE(b, 3) << "4 steps of one data.b ran at once";
    max_a = std::max(max_a, a);
    max_b = std::max(max_b, b);
  }
  EXPECT_GE(seen, 12);
  EXPECT_EQ(max_a, 2);
  EXPECT_EQ(max_b, 3);
}

// `concurrency: [{limit: 2, key: data.a}, {limit: 3, key: data.b}]`, each limit held.
TEST_P(PriorityTest, TwoKeyedLimitsAreEachHeld) {
  auto c = StartCoordinator();
  TestHost host(c->url(), dir_);
  const auto runs =
      SendTwoKeys({c.get()}, [&](const Coordinator& to, const Json& e) { return RunOf(to, e); });
  for (const std::string& run : runs) {
    EXPECT_EQ(WaitForRunEnd(c->url(), run, 90s)["status"], "completed") << run;
  }
  ExpectTwoKeyedLimitsHeld(host);
}

INSTANTIATE_TEST_SUITE_P(Stores, PriorityTest, ::testing::Values("postgres", "sqlite"),
                         [](const auto& info) { return info.param; });

// Two coordinators on one PostgreSQL claim the same function's calls: each keyed limit is
// counted under a lock of its own, so together they never pass either.
class TwoKeyedLimitsTwoCoordinatorsTest : public E2eTest {};

TEST_F(TwoKeyedLimitsTwoCoordinatorsTest, BothLimitsHoldAcrossTwoCoordinators) {
  auto c1 = StartCoordinator();
  auto c2 = StartCoordinator();
  TestHost host(c1->url(), dir_);
  const auto runs = SendTwoKeys({c1.get(), c2.get()}, [&](const Coordinator& to, const Json& e) {
    auto of = RunsOfEvent(to.url(), Send(to, e));
    EXPECT_EQ(of.size(), 1u);
    return of.empty() ? std::string() : of[0];
  });
  for (const std::string& run : runs) {
    EXPECT_EQ(WaitForRunEnd(c1->url(), run, 90s)["status"], "completed") << run;
  }
  ExpectTwoKeyedLimitsHeld(host);
}

}  // namespace
}  // namespace funcky::testing
