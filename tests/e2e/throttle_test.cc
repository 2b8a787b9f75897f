// `throttle` across processes (docs/flow-control.md "throttle"): the test host's
// `throttled` functions are paced at 2 starts per 2 s (one a second, no burst). The start of
// a run is the first call the host recorded for it; the bounds are tolerant of polling and
// of a loaded machine, but a run never starts before its slot.
#include <algorithm>
#include <chrono>
#include <map>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "tests/support/e2e.h"

namespace funcky::testing {
namespace {

using namespace std::chrono_literals;

// How much earlier than its slot a start may look: the slot is taken from the coordinator's
// clock at ingest, the first start is measured later (claim polling), so the gaps after it
// can look that much shorter.
constexpr int64_t kEarlyMs = 300;

// The time of the first call the host recorded for each run, sorted.
std::vector<int64_t> Starts(const TestHost& host) {
  std::map<std::string, int64_t> first;
  for (const Json& r : host.Records()) {
    if (r["kind"] != "call") continue;
    const std::string run = r["run_id"];
    const int64_t t = r["t_ms"];
    auto [it, added] = first.emplace(run, t);
    if (!added) it->second = std::min(it->second, t);
  }
  std::vector<int64_t> out;
  for (const auto& [run, t] : first) out.push_back(t);
  std::sort(out.begin(), out.end());
  return out;
}

// One start a second, each no earlier than its slot (i s after the first, less the
// tolerance): so at most 2 in any 2 s. Compared with the first start, not the one before: a
// start that ran late (a loaded machine) does not move the next slot, which would then look
// close to it.
void ExpectPaced(const std::vector<int64_t>& starts, int64_t late_ms = 3000) {
  for (size_t i = 1; i < starts.size(); ++i) {
    const int64_t since_first = starts[i] - starts[0];
    EXPECT_GE(since_first, static_cast<int64_t>(i) * 1000 - kEarlyMs) << "start " << i;
    // Not held back much longer than its slot either (a loaded machine is slow, not 3 s).
    EXPECT_LE(since_first, static_cast<int64_t>(i) * 1000 + late_ms) << "start " << i;
  }
}

class ThrottleTest : public E2eTest, public ::testing::WithParamInterface<std::string> {
 protected:
  std::string backend() const override { return GetParam(); }
};

TEST_P(ThrottleTest, TenEventsAtTwoPerTwoSecondsStartAboutASecondApartAndAllComplete) {
  auto c = StartCoordinator();
  TestHost host(c->url(), dir_);
  std::vector<std::string> events;
  for (int n = 0; n < 10; ++n) {
    events.push_back(Send(*c, {{"name", "test/throttled"}, {"data", {{"n", n}}}}));
  }
  std::vector<std::string> runs;
  for (const std::string& e : events) {
    auto of = RunsOfEvent(c->url(), e);
    ASSERT_EQ(of.size(), 1u) << "event " << e << " started no run";
    runs.push_back(of[0]);
  }
  for (const std::string& run : runs) {
    EXPECT_EQ(WaitForRunEnd(c->url(), run, 40s)["status"], "completed") << run;
  }
  std::set<std::string> worked;
  for (const Json& r : host.Records()) {
    if (r["kind"] == "work") worked.insert(r["step"].get<std::string>());
  }
  EXPECT_EQ(worked.size(), 10u) << "every event's run did its work";
  const std::vector<int64_t> starts = Starts(host);
  ASSERT_EQ(starts.size(), 10u);
  ExpectPaced(starts);
}

// With a lane (ordering by data.key): the lane's order is kept, and the pace too.
TEST_P(ThrottleTest, AThrottledLaneKeepsItsOrder) {
  auto c = StartCoordinator();
  TestHost host(c->url(), dir_);
  std::vector<std::string> runs;
  for (int seq = 1; seq <= 6; ++seq) {
    const std::string key = seq % 3 == 0 ? "b" : "a";
    const std::string e =
        Send(*c, {{"name", "test/throttled-ordered"}, {"data", {{"key", key}, {"seq", seq}}}});
    auto of = RunsOfEvent(c->url(), e);
    ASSERT_EQ(of.size(), 1u);
    runs.push_back(of[0]);
  }
  for (const std::string& run : runs) {
    EXPECT_EQ(WaitForRunEnd(c->url(), run, 40s)["status"], "completed") << run;
  }
  std::vector<std::string> a, b;
  for (const Json& r : host.Records()) {
    if (r["kind"] != "apply") continue;
    const std::string mark = r["step"];
    (mark[0] == 'a' ? a : b).push_back(mark);
  }
  EXPECT_EQ(a, (std::vector<std::string>{"a:1", "a:2", "a:4", "a:5"}));
  EXPECT_EQ(b, (std::vector<std::string>{"b:3", "b:6"}));
  const std::vector<int64_t> starts = Starts(host);
  ASSERT_EQ(starts.size(), 6u);
  ExpectPaced(starts);
}

INSTANTIATE_TEST_SUITE_P(Stores, ThrottleTest, ::testing::Values("postgres", "sqlite"),
                         [](const auto& info) { return info.param; });

class ThrottleTwoCoordinatorsTest : public E2eTest {};

// Two coordinators on one PostgreSQL take the events of one throttle at once: the slots
// come from one row, locked in the ingest's transaction, so the starts never exceed the
// rate between them.
TEST_F(ThrottleTwoCoordinatorsTest, TwoCoordinatorsNeverStartFasterThanTheRate) {
  auto c1 = StartCoordinator();
  auto c2 = StartCoordinator();
  TestHost host(c1->url(), dir_);
  std::vector<std::pair<const Coordinator*, std::string>> events;
  for (int n = 0; n < 10; ++n) {
    const Coordinator* c = n % 2 ? c2.get() : c1.get();
    events.emplace_back(c, Send(*c, {{"name", "test/throttled"}, {"data", {{"n", n}}}}));
  }
  for (const auto& [c, e] : events) {
    auto of = RunsOfEvent(c->url(), e);
    ASSERT_EQ(of.size(), 1u);
    EXPECT_EQ(WaitForRunEnd(c1->url(), of[0], 40s)["status"], "completed") << of[0];
  }
  const std::vector<int64_t> starts = Starts(host);
  ASSERT_EQ(starts.size(), 10u);
  ExpectPaced(starts);
}

// The slots are queue items' due times: a coordinator killed with runs still waiting for
// theirs loses none, and after its restart they start at their slots, each once.
TEST_F(ThrottleTwoCoordinatorsTest, WaitingRunsSurviveAKill9AndStartOnceAtTheirSlots) {
  auto c = StartCoordinator();
  TestHost host(c->url(), dir_);
  std::vector<std::string> runs;
  for (int n = 0; n < 6; ++n) {
    auto of = RunsOfEvent(c->url(), Send(*c, {{"name", "test/throttled"}, {"data", {{"n", n}}}}));
    ASSERT_EQ(of.size(), 1u);
    runs.push_back(of[0]);
  }
  ASSERT_TRUE(WaitFor([&] { return host.Count("work") >= 1; }));
  c->Kill9();
  std::this_thread::sleep_for(1500ms);
  const int64_t restarted_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                                   std::chrono::system_clock::now().time_since_epoch())
                                   .count();
  c->Start();
  for (const std::string& run : runs) {
    EXPECT_EQ(WaitForRunEnd(c->url(), run, 40s)["status"], "completed") << run;
  }
  const std::vector<int64_t> starts = Starts(host);
  ASSERT_EQ(starts.size(), 6u);
  // Paced across the outage too: runs whose slot passed while no coordinator was up are
  // paced again when they are claimed.
  ExpectPaced(starts, /*late_ms=*/15000);
  // A run that first started after the restart was not in flight at the kill: its step ran
  // exactly once. At least one run waited across the kill.
  std::map<std::string, int64_t> first;
  for (const Json& r : host.Records()) {
    if (r["kind"] == "call")
      first.emplace(r["run_id"].get<std::string>(), r["t_ms"].get<int64_t>());
  }
  int after_restart = 0;
  for (const std::string& run : runs) {
    ASSERT_TRUE(first.count(run)) << run << " never started";
    if (first[run] < restarted_ms) continue;
    ++after_restart;
    EXPECT_EQ(host.Count("work", run), 1) << run;
  }
  EXPECT_GE(after_restart, 1);
}

}  // namespace
}  // namespace funcky::testing
