// Sequence lanes end to end (docs/ordering.md "Sequence lanes"): a real coordinator on each
// store and the C++ test host's `versioned` function, ordered by data.key and numbered by
// data.seq (start 1, gap_timeout 2s; data.unordered bypasses the lane).
#include <algorithm>
#include <chrono>
#include <thread>

#include <gtest/gtest.h>

#include "tests/support/e2e.h"

namespace funcky::testing {
namespace {

using namespace std::chrono_literals;

Json Versioned(const std::string& key, int seq) {
  return {{"name", "test/versioned"}, {"data", {{"key", key}, {"seq", seq}}}};
}

class SequenceTest : public E2eTest, public ::testing::WithParamInterface<std::string> {
 protected:
  std::string backend() const override { return GetParam(); }

  // The "apply" marks ("<key>:<seq>") of `key` the host ran, in order.
  static std::vector<std::string> Applied(const TestHost& host, const std::string& key) {
    std::vector<std::string> out;
    for (const Json& r : host.Records()) {
      const std::string mark = r.value("step", "");
      if (r["kind"] == "apply" && mark.rfind(key + ":", 0) == 0) out.push_back(mark);
    }
    return out;
  }
  static Json Event(const Coordinator& c, const std::string& id) {
    return Http("GET", c.url() + "/v1/events/" + id).body["data"];
  }
  static Json Lane(const Coordinator& c, const std::string& key) {
    const JsonReply lanes = Http("GET", c.url() + "/v1/lanes");  // outlives the loop
    for (const Json& l : lanes.body["data"]) {
      if (l["key"] == key) return l;
    }
    return nullptr;
  }
};

TEST_P(SequenceTest, NumbersOneThreeTwoRunOneTwoThreeAndKeysDoNotWait) {
  auto c = StartCoordinator();
  TestHost host(c->url(), dir_);
  Send(*c, Versioned("a", 1));
  Send(*c, Versioned("a", 3));
  Send(*c, Versioned("a", 2));
  Send(*c, Versioned("b", 1));
  ASSERT_TRUE(WaitFor([&] { return Applied(host, "a").size() == 3; })) << c->Log();
  EXPECT_EQ(Applied(host, "a"), (std::vector<std::string>{"a:1", "a:2", "a:3"}));
  ASSERT_TRUE(WaitFor([&] { return Applied(host, "b").size() == 1; }));
}

TEST_P(SequenceTest, AMissingNumberIsGivenUpAfterGapTimeoutRecordedAndALateOneIsStale) {
  auto c = StartCoordinator();
  TestHost host(c->url(), dir_);
  Send(*c, Versioned("g", 1));
  ASSERT_TRUE(WaitFor([&] { return Applied(host, "g").size() == 1; }));
  const auto sent = std::chrono::steady_clock::now();
  Send(*c, Versioned("g", 3));
  // While 3 waits for 2, the lane says so.
  ASSERT_TRUE(WaitFor([&] { return !Lane(*c, "g").is_null(); }, 5s)) << c->Log();
  Json waiting = Lane(*c, "g");
  EXPECT_TRUE(waiting["head"]["run_id"].is_null()) << waiting.dump(2);
  EXPECT_EQ(waiting["head"]["status"], "waiting");
  EXPECT_EQ(waiting["sequence"]["next"], 2);
  EXPECT_EQ(waiting["sequence"]["waiting"], Json::array({3}));
  EXPECT_TRUE(waiting["sequence"]["gives_up_at"].is_string());

  ASSERT_TRUE(WaitFor([&] { return Applied(host, "g").size() == 2; }, 10s)) << c->Log();
  const auto waited = std::chrono::steady_clock::now() - sent;
  EXPECT_EQ(Applied(host, "g")[1], "g:3");
  EXPECT_GE(waited, 2s) << "3 ran before the gap timeout";
  EXPECT_LT(waited, 6s);

  auto gaps = Http("GET", c->url() + "/v1/lanes/test-versioned/g/gaps");
  ASSERT_EQ(gaps.status, 200) << gaps.body.dump();
  ASSERT_EQ(gaps.body["data"].size(), 1u) << gaps.body.dump(2);
  EXPECT_EQ(gaps.body["data"][0]["first"], 2);
  EXPECT_EQ(gaps.body["data"][0]["last"], 2);
  EXPECT_EQ(gaps.body["data"][0]["reason"], "gap_timeout");
  // The gap as an event, for a function to alert or reconcile.
  Json gap_event;
  ASSERT_TRUE(WaitFor([&] {
    const JsonReply events = Http("GET", c->url() + "/v1/events?name=funcky/lane.gap");
    if (events.body["data"].empty()) return false;
    gap_event = events.body["data"][0];
    return true;
  })) << c->Log();
  EXPECT_EQ(gap_event["payload"]["data"]["key"], "g");
  EXPECT_EQ(gap_event["payload"]["data"]["first"], 2);
  EXPECT_EQ(gap_event["payload"]["data"]["count"], 1);
  EXPECT_EQ(gap_event["payload"]["data"]["function_id"], "test-versioned");
  // And in /metrics.
  auto metrics = Http("GET", c->url() + "/metrics");
  EXPECT_NE(metrics.raw.find("funcky_lane_gaps_recorded 1"), std::string::npos) << metrics.raw;

  // 2 arrives late: stale, recorded on the event and the lane, and no run.
  const std::string late = Send(*c, Versioned("g", 2));
  Json event = Event(*c, late);
  EXPECT_TRUE(event["runs"].empty()) << event.dump(2);
  ASSERT_EQ(event["lanes"].size(), 1u) << event.dump(2);
  EXPECT_EQ(event["lanes"][0]["outcome"], "stale");
  EXPECT_EQ(event["lanes"][0]["number"], 2);
  std::this_thread::sleep_for(300ms);
  EXPECT_EQ(Applied(host, "g").size(), 2u);
}

TEST_P(SequenceTest, ADuplicateNumberStartsNoRunAndABypassRunsWhileTheLaneWaits) {
  auto c = StartCoordinator();
  TestHost host(c->url(), dir_);
  Send(*c, Versioned("d", 1));
  const std::string again = Send(*c, Versioned("d", 1));
  Json event = Event(*c, again);
  EXPECT_TRUE(event["runs"].empty()) << event.dump(2);
  ASSERT_EQ(event["lanes"].size(), 1u) << event.dump(2);
  EXPECT_EQ(event["lanes"][0]["outcome"], "duplicate");
  EXPECT_TRUE(event["lanes"][0]["run_id"].is_string());

  // Key w waits for 1; an event that opts out runs at once, unordered and unnumbered.
  Send(*c, Versioned("w", 2));
  Json unordered = Versioned("w", 0);
  unordered["data"].erase("seq");
  unordered["data"]["unordered"] = true;
  Json run = RunToEnd(*c, unordered);
  EXPECT_EQ(run["status"], "completed") << run.dump(2);
  EXPECT_EQ(Applied(host, "w"), std::vector<std::string>{"w:0"});
  EXPECT_EQ(Applied(host, "d").size(), 1u);
}

TEST_P(SequenceTest, SkipHeadOfALaneWaitingForANumberGivesUpOnItAtOnce) {
  auto c = StartCoordinator();
  TestHost host(c->url(), dir_);
  Send(*c, Versioned("s", 2));
  ASSERT_TRUE(WaitFor([&] { return !Lane(*c, "s").is_null(); }, 5s)) << c->Log();
  const std::string skip = c->url() + "/v1/lanes/test-versioned/s/skip-head";
  // waiting_for: only the gap the caller saw (the dashboard sends it for a lane without a head).
  EXPECT_EQ(Http("POST", skip + "?waiting_for=7").status, 409);
  EXPECT_EQ(Http("POST", skip + "?waiting_for=one").status, 400);
  EXPECT_EQ(Http("POST", skip + "?waiting_for=1&run_id=r").status, 400);
  auto skipped = Http("POST", skip + "?waiting_for=1");
  ASSERT_EQ(skipped.status, 200) << skipped.body.dump();
  EXPECT_EQ(skipped.body["data"]["gap_skipped"], true);
  const std::string resumed = skipped.body["data"]["resumed_run_id"];
  // Sent again, it skips nothing: 409 while the resumed run is head, 404 once it has ended.
  const int again = Http("POST", skip + "?waiting_for=1").status;
  EXPECT_TRUE(again == 409 || again == 404) << again;
  ASSERT_TRUE(WaitFor([&] { return Applied(host, "s").size() == 1; }, 5s)) << c->Log();
  ASSERT_TRUE(WaitFor(
      [&] {
        return Http("GET", c->url() + "/v1/runs/" + resumed).body["data"]["status"] == "completed";
      },
      5s))
      << c->Log();
  auto gaps = Http("GET", c->url() + "/v1/lanes/test-versioned/s/gaps").body["data"];
  ASSERT_EQ(gaps.size(), 1u);
  EXPECT_EQ(gaps[0]["reason"], "skip_head");
  EXPECT_EQ(gaps[0]["first"], 1);
}

// A producer that sent one wrong, huge number (a timestamp for a version) made every real
// number after it stale: set-next gives the lane the number it is to expect, and the real
// numbers run again; a number waiting for a gap starts at once when it is the one set.
TEST_P(SequenceTest, SetNextRepairsALaneAWrongHugeNumberMadeStale) {
  auto c = StartCoordinator();
  TestHost host(c->url(), dir_);
  Send(*c, Versioned("h", 1));
  Send(*c, Versioned("h", 1700000000));
  ASSERT_TRUE(WaitFor([&] { return Applied(host, "h").size() == 2; }, 10s)) << c->Log();
  const std::string stale = Send(*c, Versioned("h", 2));
  ASSERT_EQ(Event(*c, stale)["lanes"][0]["outcome"], "stale");

  const std::string set = c->url() + "/v1/lanes/test-versioned/h/set-next";
  EXPECT_EQ(Http("POST", set).status, 400) << "next is required";
  EXPECT_EQ(Http("POST", set + "?next=-1").status, 400);
  EXPECT_EQ(Http("POST", set + "?next=9007199254740992").status, 400);
  EXPECT_EQ(Http("POST", set + "?next=3&was=5").status, 409) << "it expects 1700000001";
  EXPECT_EQ(Http("POST", c->url() + "/v1/lanes/test-versioned/nokey/set-next?next=3").status, 404);
  auto repaired = Http("POST", set + "?next=3&was=1700000001");
  ASSERT_EQ(repaired.status, 200) << repaired.body.dump();
  EXPECT_EQ(repaired.body["data"]["was"], 1700000001);
  EXPECT_EQ(repaired.body["data"]["next"], 3);
  EXPECT_FALSE(repaired.body["data"].contains("resumed_run_id"));
  Send(*c, Versioned("h", 3));
  ASSERT_TRUE(WaitFor([&] { return Applied(host, "h").size() == 3; }, 10s)) << c->Log();
  EXPECT_EQ(Applied(host, "h").back(), "h:3");

  // 6 waits for 4 (gap_timeout 2 s): set to 6, it runs at once.
  Send(*c, Versioned("h", 6));
  ASSERT_TRUE(WaitFor([&] { return !Lane(*c, "h").is_null(); }, 5s)) << c->Log();
  auto resumed = Http("POST", set + "?next=6&was=4");
  ASSERT_EQ(resumed.status, 200) << resumed.body.dump();
  EXPECT_TRUE(resumed.body["data"]["resumed_run_id"].is_string()) << resumed.body.dump();
  ASSERT_TRUE(WaitFor([&] { return Applied(host, "h").size() == 4; }, 10s)) << c->Log();
  EXPECT_EQ(Applied(host, "h").back(), "h:6");
  // The one gap is the wrong number's (2 to 1699999999, given up on after gap_timeout); the
  // numbers set past are no gap.
  auto gaps = Http("GET", c->url() + "/v1/lanes/test-versioned/h/gaps").body["data"];
  ASSERT_EQ(gaps.size(), 1u) << gaps.dump();
  EXPECT_EQ(gaps[0]["first"], 2) << gaps.dump();
}

INSTANTIATE_TEST_SUITE_P(Stores, SequenceTest, ::testing::Values("postgres", "sqlite"),
                         [](const auto& info) { return info.param; });

}  // namespace
}  // namespace funcky::testing
