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
  // Without the timeout the run would start 3 s after the last event (6 s); with it, 4 s
  // after the first.
  std::this_thread::sleep_until(first + 3500ms);
  Json runs = Runs(*c, "capped");
  ASSERT_EQ(runs.size(), 1u) << runs.dump();
  EXPECT_FALSE(Started(runs[0])) << runs[0].dump();
  std::this_thread::sleep_until(first + 5200ms);
  runs = Runs(*c, "capped");
  ASSERT_EQ(runs.size(), 1u) << runs.dump();
  EXPECT_TRUE(Started(runs[0])) << runs[0].dump();
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
