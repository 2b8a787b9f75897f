// Debounce across processes (docs/flow-control.md "debounce"): a burst of events of a key
// starts one run, with the last event, `period` after it (at most `timeout` after the
// first); the timer is a queue item, so it survives a kill -9; two coordinators on one
// PostgreSQL share one debounce per key; sync refuses bad configs naming the option. The
// functions point at a host that is not there: what counts is which runs exist, with which
// event, and when they were first claimed (`started_at`).
#include <algorithm>
#include <chrono>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "common/duration.h"
#include "tests/support/e2e.h"

namespace funcky::testing {
namespace {

using namespace std::chrono_literals;
using SteadyClock = std::chrono::steady_clock;

const std::string kNoHost = "http://127.0.0.1:1/api";

Json Fn(const std::string& id, Json debounce) {
  return FunctionConfig(id, "doc/edited", kNoHost + "?fnId=" + id, {{"debounce", debounce}});
}

JsonReply RegisterReply(const Coordinator& c, const Json& functions) {
  return Http(
      "POST", c.url() + "/fn/register",
      Json{{"url", kNoHost}, {"appName", "debounce"}, {"sdk", "test:v0"}, {"functions", functions}}
          .dump());
}

void Register(const Coordinator& c, const Json& functions) {
  auto r = RegisterReply(c, functions);
  ASSERT_EQ(r.status, 200) << r.raw;
}

Json Edit(const std::string& doc, int n) {
  return {{"name", "doc/edited"}, {"data", {{"doc", doc}, {"n", n}}}};
}

// The runs of `function_id`, newest first.
Json Runs(const Coordinator& c, const std::string& function_id) {
  auto r = Http("GET", c.url() + "/v1/runs?limit=500&function=" + function_id);
  EXPECT_EQ(r.status, 200) << r.raw;
  return r.body["data"];
}

bool Started(const Json& run) { return run.contains("started_at") && !run["started_at"].is_null(); }

// Polls until `function_id` has `n` runs, all started; returns them (or the last view).
Json WaitForStartedRuns(const Coordinator& c, const std::string& function_id, size_t n,
                        std::chrono::milliseconds timeout = 15s) {
  const auto deadline = SteadyClock::now() + timeout;
  Json runs;
  while (SteadyClock::now() < deadline) {
    runs = Runs(c, function_id);
    bool all = runs.size() == n;
    for (const Json& r : runs) all = all && Started(r);
    if (all) return runs;
    std::this_thread::sleep_for(100ms);
  }
  return runs;
}

std::vector<std::string> SkipsOf(const Coordinator& c, const std::string& event_id) {
  auto r = Http("GET", c.url() + "/v1/events/" + event_id);
  EXPECT_EQ(r.status, 200) << r.raw;
  std::vector<std::string> out;
  for (const Json& s : r.body["data"]["skipped"]) {
    out.push_back(s["function_id"].get<std::string>() + " " + s["reason"].get<std::string>() + " " +
                  s["key"].get<std::string>());
  }
  return out;
}

class DebounceTest : public E2eTest, public ::testing::WithParamInterface<std::string> {
 protected:
  std::string backend() const override { return GetParam(); }
};

TEST_P(DebounceTest, ThreeEventsOneSecondApartStartOneRunWithTheLast) {
  auto c = StartCoordinator();
  Register(*c, Json::array({Fn("quiet", {{"period", "2s"}, {"key", "event.data.doc"}})}));
  std::vector<std::string> ids;
  for (int i = 0; i < 3; ++i) {
    if (i > 0) std::this_thread::sleep_for(1s);
    ids.push_back(Send(*c, Edit("d", i)));
  }
  const std::string other = Send(*c, Edit("other-doc", 0));  // a debounce of its own
  const auto last_sent = SteadyClock::now();
  std::this_thread::sleep_for(1s);
  // 3 s after the first event, 1 s after the last: one run, not started yet.
  Json runs = Runs(*c, "quiet");
  ASSERT_EQ(runs.size(), 2u) << runs.dump();
  for (const Json& r : runs) EXPECT_FALSE(Started(r)) << r.dump();
  runs = WaitForStartedRuns(*c, "quiet", 2);
  ASSERT_EQ(runs.size(), 2u) << runs.dump();
  EXPECT_GE(SteadyClock::now() - last_sent, 1800ms);
  std::vector<std::string> events;
  for (const Json& r : runs) {
    ASSERT_TRUE(Started(r)) << r.dump();
    events.push_back(r["event_id"]);
  }
  std::sort(events.begin(), events.end());
  std::vector<std::string> expected{ids[2], other};
  std::sort(expected.begin(), expected.end());
  EXPECT_EQ(events, expected);
  EXPECT_EQ(SkipsOf(*c, ids[0]), std::vector<std::string>{"quiet debounce d"});
  EXPECT_EQ(SkipsOf(*c, ids[1]), std::vector<std::string>{"quiet debounce d"});
  EXPECT_TRUE(SkipsOf(*c, ids[2]).empty());
}

TEST_P(DebounceTest, TimeoutStartsTheRunWhileEventsKeepComing) {
  auto c = StartCoordinator();
  Register(*c, Json::array({Fn("capped", {{"period", "3s"}, {"timeout", "4s"}})}));
  const auto first = SteadyClock::now();
  std::vector<std::string> ids;
  for (int i = 0; i < 4; ++i) {
    if (i > 0) std::this_thread::sleep_until(first + i * 1s);
    ids.push_back(Send(*c, Edit("d", i)));
  }
  // Without the timeout the run would start 3 s after the last event (6 s after the first);
  // with it, 4 s after the first, when the run was made: told by its own times, not by when
  // this test looks.
  Json runs = WaitForStartedRuns(*c, "capped", 1);
  ASSERT_EQ(runs.size(), 1u) << runs.dump();
  ASSERT_TRUE(Started(runs[0])) << runs[0].dump();
  const int64_t waited_ms = *ParseRfc3339(runs[0]["started_at"].get<std::string>()) -
                            *ParseRfc3339(runs[0]["created_at"].get<std::string>());
  EXPECT_GE(waited_ms, 4000) << runs[0].dump();
  EXPECT_LT(waited_ms, 5500) << runs[0].dump();
  EXPECT_EQ(runs[0]["event_id"], ids[3]);
  // The debounce ended with its run: the next event starts another.
  Send(*c, Edit("d", 4));
  EXPECT_EQ(Runs(*c, "capped").size(), 2u);
}

TEST_P(DebounceTest, Kill9BeforeTheTimerFiresStillGivesExactlyOneRunAfterRestart) {
  auto c = StartCoordinator();
  Register(*c, Json::array({Fn("durable", {{"period", "3s"}})}));
  const std::string e1 = Send(*c, Edit("d", 1));
  std::this_thread::sleep_for(500ms);
  const std::string e2 = Send(*c, Edit("d", 2));
  c->Kill9();  // 0.5 s after the last event: its timer is 2.5 s away
  c->Start();
  Json runs = WaitForStartedRuns(*c, "durable", 1);
  ASSERT_EQ(runs.size(), 1u) << runs.dump();
  EXPECT_TRUE(Started(runs[0])) << runs[0].dump();
  EXPECT_EQ(runs[0]["event_id"], e2);
  std::this_thread::sleep_for(2s);  // nothing else comes due
  EXPECT_EQ(Runs(*c, "durable").size(), 1u);
  EXPECT_EQ(SkipsOf(*c, e1), std::vector<std::string>{"durable debounce "});
}

TEST_P(DebounceTest, SyncRefusesBadDebounceConfigsNamingTheOption) {
  auto c = StartCoordinator();
  const std::vector<std::pair<Json, std::string>> bad = {
      {{{"period", "500ms"}}, "debounce.period"},
      {{{"period", "8d"}}, "debounce.period"},
      {{{"key", "event.data.doc"}}, "debounce needs a "},
      {{{"period", "2s"}, {"timeout", "0s"}}, "debounce.timeout"},
      {{{"period", "2s"}, {"timeout", "8d"}}, "debounce.timeout"},
      {{{"period", "2s"}, {"key", ""}}, "debounce.key"},
      {{{"period", "2s"}, {"key", "event.data.("}}, "debounce.key"},
      {{{"period", "2s"}, {"burst", 3}}, "debounce.burst"},
      {"2s", "debounce must be an object"},
  };
  for (const auto& [config, message] : bad) {
    auto r = RegisterReply(*c, Json::array({Fn("bad", config)}));
    EXPECT_EQ(r.status, 400) << config.dump();
    EXPECT_NE(r.raw.find(message), std::string::npos) << r.raw;
    EXPECT_NE(r.raw.find("bad"), std::string::npos) << r.raw;
  }
  Json laned = Fn("laned", {{"period", "2s"}});
  laned["ordering"] = {{"key", "event.data.doc"}};
  auto r = RegisterReply(*c, Json::array({laned}));
  EXPECT_EQ(r.status, 400);
  EXPECT_NE(r.raw.find("debounce with a lane (ordering)"), std::string::npos) << r.raw;
  EXPECT_NE(r.raw.find("laned"), std::string::npos) << r.raw;
  Json single = Fn("single", {{"period", "2s"}});
  single["singleton"] = {{"mode", "skip"}};
  r = RegisterReply(*c, Json::array({single}));
  EXPECT_EQ(r.status, 400);
  EXPECT_NE(r.raw.find("debounce with singleton"), std::string::npos) << r.raw;
  // The bounds themselves are accepted.
  Register(*c, Json::array({Fn("edges", {{"period", "1s"}, {"timeout", "7d"}})}));
}

INSTANTIATE_TEST_SUITE_P(Stores, DebounceTest, ::testing::Values("postgres", "sqlite"),
                         [](const auto& info) { return info.param; });

// Debounce in a lane (docs/flow-control.md "debounce in a lane"), with the C++ test host's
// debounced-ordered (lane and debounce both keyed by data.key, period 1 s): a burst that
// comes while the lane's head runs collapses into one run behind it, which starts after the
// head ends, with the burst's last event; the lane's runs apply in event order, and another
// key's lane is not held up.
class DebounceLaneTest : public DebounceTest {};

TEST_P(DebounceLaneTest, ABurstBehindTheHeadIsOneRunAndTheLaneNeverReorders) {
  auto c = StartCoordinator();
  TestHost host(c->url(), dir_);
  auto ev = [](const std::string& key, int seq, int hold_ms = 0) {
    return Json{{"name", "test/debounced-ordered"},
                {"data", {{"key", key}, {"seq", seq}, {"hold_ms", hold_ms}}}};
  };
  const std::string a1 = Send(*c, ev("a", 1, 3000));
  auto a1_runs = RunsOfEvent(c->url(), a1);
  ASSERT_EQ(a1_runs.size(), 1u);
  // a:1's run is the head and has started (1 s after its event): a:2 starts a new debounce.
  ASSERT_EQ(WaitForRunStatus(c->url(), a1_runs[0], {"running", "completed", "failed"})["status"],
            "running");
  const std::string a2 = Send(*c, ev("a", 2));
  const std::string b1 = Send(*c, ev("b", 1));  // another lane
  std::this_thread::sleep_for(200ms);
  const std::string a3 = Send(*c, ev("a", 3));
  std::this_thread::sleep_for(200ms);
  const std::string a4 = Send(*c, ev("a", 4));
  auto a4_runs = RunsOfEvent(c->url(), a4);
  ASSERT_EQ(a4_runs.size(), 1u) << "a:4 joined no run";
  Json first = WaitForRunEnd(c->url(), a1_runs[0]);
  Json burst = WaitForRunEnd(c->url(), a4_runs[0]);
  ASSERT_EQ(first["status"], "completed") << first.dump(2);
  ASSERT_EQ(burst["status"], "completed") << burst.dump(2);
  // After the burst ran: a new event of the key is a new run, after it.
  const std::string a5 = Send(*c, ev("a", 5));
  auto a5_runs = RunsOfEvent(c->url(), a5);
  ASSERT_EQ(a5_runs.size(), 1u);
  ASSERT_EQ(WaitForRunEnd(c->url(), a5_runs[0])["status"], "completed");
  auto b1_runs = RunsOfEvent(c->url(), b1);
  ASSERT_EQ(b1_runs.size(), 1u);
  ASSERT_EQ(WaitForRunEnd(c->url(), b1_runs[0])["status"], "completed");

  // What the host applied, in the order it applied it.
  std::vector<std::string> lane_a;
  int64_t b1_applied_ms = 0;
  for (const Json& r : host.Records()) {
    if (r["kind"] != "apply") continue;
    const std::string mark = r["step"];
    if (mark.rfind("a:", 0) == 0) lane_a.push_back(mark);
    if (mark == "b:1") b1_applied_ms = r["t_ms"];
  }
  EXPECT_EQ(lane_a, (std::vector<std::string>{"a:1", "a:4", "a:5"}));
  EXPECT_EQ(SkipsOf(*c, a2), std::vector<std::string>{"test-debounced-ordered debounce a"});
  EXPECT_EQ(SkipsOf(*c, a3), std::vector<std::string>{"test-debounced-ordered debounce a"});
  EXPECT_EQ(burst["event_id"], a4);
  // The burst's run waited for the head to end; b's lane did not wait for a's head.
  EXPECT_GE(*ParseRfc3339(burst["started_at"].get<std::string>()),
            *ParseRfc3339(first["ended_at"].get<std::string>()));
  EXPECT_LT(b1_applied_ms, *ParseRfc3339(first["ended_at"].get<std::string>()));
}

INSTANTIATE_TEST_SUITE_P(Stores, DebounceLaneTest, ::testing::Values("postgres", "sqlite"),
                         [](const auto& info) { return info.param; });

class DebounceTwoCoordinatorsTest : public E2eTest {};

// Events of one key sent alternately to two coordinators on one PostgreSQL join one
// debounce: one run, with the last event.
TEST_F(DebounceTwoCoordinatorsTest, EventsAlternatingBetweenCoordinatorsStartOneRun) {
  auto a = StartCoordinator();
  Register(*a, Json::array({Fn("shared", {{"period", "2s"}, {"key", "event.data.doc"}})}));
  auto b = StartCoordinator();
  std::vector<std::string> ids;
  for (int i = 0; i < 6; ++i) {
    if (i > 0) std::this_thread::sleep_for(300ms);
    ids.push_back(Send(i % 2 ? *b : *a, Edit("d", i)));
  }
  Json runs = WaitForStartedRuns(*a, "shared", 1);
  ASSERT_EQ(runs.size(), 1u) << runs.dump();
  EXPECT_EQ(runs[0]["event_id"], ids.back());
  std::this_thread::sleep_for(1s);
  EXPECT_EQ(Runs(*b, "shared").size(), 1u);
  for (size_t i = 0; i + 1 < ids.size(); ++i) {
    EXPECT_EQ(SkipsOf(*b, ids[i]), std::vector<std::string>{"shared debounce d"}) << i;
  }
}

}  // namespace
}  // namespace funcky::testing
