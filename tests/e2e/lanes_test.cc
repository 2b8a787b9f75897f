// End-to-end tests of lanes and concurrency limits: real coordinators and a C++
// test host on a private PostgreSQL cluster.
#include <algorithm>
#include <chrono>
#include <thread>

#include <gtest/gtest.h>

#include "tests/support/e2e.h"

namespace funcky::testing {
namespace {

using namespace std::chrono_literals;

class LanesTest : public E2eTest {
 protected:
  // The "apply" marks ("<key>:<seq>") the host recorded, in the order it ran them.
  static std::vector<std::string> Applied(const TestHost& host) {
    std::vector<std::string> out;
    for (const Json& r : host.Records()) {
      if (r["kind"] == "apply") out.push_back(r["step"]);
    }
    return out;
  }

  std::string StartRun(const Coordinator& c, const Json& event) {
    auto runs = RunsOfEvent(c.url(), Send(c, event));
    EXPECT_EQ(runs.size(), 1u);
    return runs.empty() ? "" : runs[0];
  }
};

Json Ordered(const std::string& key, int seq, bool fail = false,
             const std::string& name = "test/ordered") {
  return {{"name", name}, {"data", {{"key", key}, {"seq", seq}, {"fail", fail}}}};
}

TEST_F(LanesTest, HeadThatFailsAllRetriesBlocksItsKeyUntilSkipHead) {
  auto c = StartCoordinator();
  TestHost host(c->url(), dir_);
  const std::string a1 = StartRun(*c, Ordered("a", 1, /*fail=*/true));
  const std::string a2 = StartRun(*c, Ordered("a", 2));
  const std::string b1 = StartRun(*c, Ordered("b", 1));
  const std::string b2 = StartRun(*c, Ordered("b", 2));

  // Key b flows while a is blocked.
  EXPECT_EQ(WaitForRunEnd(c->url(), b1)["status"], "completed");
  EXPECT_EQ(WaitForRunEnd(c->url(), b2)["status"], "completed");
  Json head = WaitForRunStatus(c->url(), a1, {"blocked", "completed", "failed"});
  ASSERT_EQ(head["status"], "blocked") << head.dump(2);
  EXPECT_EQ(head["error"]["message"], "cannot apply a:1");

  // Later runs of a stay queued, however long the head is blocked.
  std::this_thread::sleep_for(500ms);
  auto run = Http("GET", c->url() + "/v1/runs/" + a2);
  EXPECT_EQ(run.body["data"]["status"], "queued");
  auto applied = Applied(host);
  EXPECT_EQ(std::count(applied.begin(), applied.end(), "a:1"), 2);  // 2 attempts (1 retry)
  EXPECT_EQ(std::count(applied.begin(), applied.end(), "a:2"), 0);

  auto lanes = Http("GET", c->url() + "/v1/lanes?function=test-ordered");
  ASSERT_EQ(lanes.status, 200) << lanes.raw;
  ASSERT_EQ(lanes.body["data"].size(), 1u) << lanes.raw;  // b is done: only a has runs
  const Json& lane = lanes.body["data"][0];
  EXPECT_EQ(lane["key"], "a");
  EXPECT_EQ(lane["depth"], 2);
  EXPECT_EQ(lane["head"]["run_id"], a1);
  EXPECT_EQ(lane["head"]["status"], "blocked");
  EXPECT_GE(lane["blocked_ms"].get<int64_t>(), 500);
  EXPECT_EQ(Http("GET", c->url() + "/v1/lanes?blocked=true").body["data"].size(), 1u);
  EXPECT_EQ(Http("GET", c->url() + "/v1/lanes?blocked=maybe").status, 400);

  // Naming a run that is not the head skips nothing; naming the head skips it, and the same
  // request again (its answer lost) answers alike and skips nothing more.
  auto wrong = Http("POST", c->url() + "/v1/lanes/test-ordered/a/skip-head?run_id=" + a2);
  EXPECT_EQ(wrong.status, 409) << wrong.raw;
  auto skip = Http("POST", c->url() + "/v1/lanes/test-ordered/a/skip-head?run_id=" + a1);
  ASSERT_EQ(skip.status, 200) << skip.raw;
  EXPECT_EQ(skip.body["data"]["skipped_run_id"], a1);
  auto again = Http("POST", c->url() + "/v1/lanes/test-ordered/a/skip-head?run_id=" + a1);
  ASSERT_EQ(again.status, 200) << again.raw;
  EXPECT_EQ(again.body["data"]["skipped_run_id"], a1);
  EXPECT_EQ(WaitForRunEnd(c->url(), a2)["status"], "completed");
  Json skipped = WaitForRunEnd(c->url(), a1);
  EXPECT_EQ(skipped["status"], "failed");
  EXPECT_EQ(skipped["error"]["name"], "Skipped");
  EXPECT_EQ(skipped["error"]["cause"]["message"], "cannot apply a:1");
  // A blocked head emits nothing; once skipped, its end is announced like any run's.
  JsonReply failed_events;
  WaitFor([&] {
    failed_events = Http("GET", c->url() + "/v1/events?name=inngest/function.failed");
    return !failed_events.body["data"].empty();
  });
  ASSERT_EQ(failed_events.body["data"].size(), 1u) << failed_events.raw;
  EXPECT_EQ(failed_events.body["data"][0]["payload"]["data"]["run_id"], a1);
  EXPECT_EQ(failed_events.body["data"][0]["payload"]["data"]["error"]["name"], "Skipped");

  // Per key, the host applied mutations in the order they were sent.
  applied = Applied(host);
  std::vector<std::string> a_order, b_order;
  for (const auto& m : applied) (m[0] == 'a' ? a_order : b_order).push_back(m);
  EXPECT_EQ(a_order, (std::vector<std::string>{"a:1", "a:1", "a:2"}));
  EXPECT_EQ(b_order, (std::vector<std::string>{"b:1", "b:2"}));

  // Nothing left to skip: 404, and the lane is gone from the list.
  EXPECT_EQ(Http("POST", c->url() + "/v1/lanes/test-ordered/a/skip-head").status, 404);
  EXPECT_EQ(CountRows(*c, "/v1/lanes"), 0);
}

TEST_F(LanesTest, BlockedHeadRetriedByAnOperatorCompletesAndTheLaneMovesOn) {
  auto c = StartCoordinator();
  TestHost host(c->url(), dir_);
  // Fails 3 times: both attempts (1 retry), then once more after retry-head.
  Json first = Ordered("a", 1);
  first["data"]["fail_times"] = 3;
  const std::string a1 = StartRun(*c, first);
  const std::string a2 = StartRun(*c, Ordered("a", 2));
  ASSERT_EQ(WaitForRunStatus(c->url(), a1, {"blocked"})["status"], "blocked");
  EXPECT_EQ(Http("POST", c->url() + "/v1/lanes/test-ordered/nobody/retry-head").status, 404);

  auto retry = Http("POST", c->url() + "/v1/lanes/test-ordered/a/retry-head");
  ASSERT_EQ(retry.status, 200) << retry.raw;
  EXPECT_EQ(retry.body["data"]["retried_run_id"], a1);
  Json done = WaitForRunEnd(c->url(), a1);
  EXPECT_EQ(done["status"], "completed") << done.dump(2);
  EXPECT_EQ(done["output"], "a:1");
  EXPECT_EQ(WaitForRunEnd(c->url(), a2)["status"], "completed");
  EXPECT_EQ(Applied(host), (std::vector<std::string>{"a:1", "a:1", "a:1", "a:1", "a:2"}));
  // Not blocked any more: nothing to retry.
  EXPECT_EQ(Http("POST", c->url() + "/v1/lanes/test-ordered/a/retry-head").status, 404);
}

TEST_F(LanesTest, HeadTimeoutFailsABlockedHeadAndTheLaneMovesOn) {
  auto c = StartCoordinator();
  TestHost host(c->url(), dir_);
  const std::string a1 = StartRun(*c, Ordered("a", 1, true, "test/ordered-timeout"));
  const std::string a2 = StartRun(*c, Ordered("a", 2, false, "test/ordered-timeout"));
  ASSERT_EQ(WaitForRunStatus(c->url(), a1, {"blocked"})["status"], "blocked");
  Json next = WaitForRunEnd(c->url(), a2, 10s);
  EXPECT_EQ(next["status"], "completed");
  Json timed_out = WaitForRunEnd(c->url(), a1);
  EXPECT_EQ(timed_out["status"], "failed");
  EXPECT_EQ(timed_out["error"]["name"], "HeadTimeout");
  // head_timeout is 2 s from when a1 took the lane; a2 cannot have started before.
  EXPECT_GE(timed_out["duration_ms"].get<int64_t>(), 2000);
}

TEST_F(LanesTest, ConcurrencyLimitHoldsAcrossTwoCoordinators) {
  auto c1 = StartCoordinator();
  auto c2 = StartCoordinator();
  TestHost host(c1->url(), dir_);
  std::vector<std::string> runs;
  for (int i = 0; i < 24; ++i) {
    const Coordinator& c = i % 2 ? *c1 : *c2;
    runs.push_back(
        StartRun(c, {{"name", "test/limited"}, {"data", {{"i", i}, {"delay_ms", 400}}}}));
  }
  for (const auto& id : runs) EXPECT_EQ(WaitForRunEnd(c1->url(), id)["status"], "completed");
  int max_in_flight = 0, works = 0;
  for (const Json& r : host.Records()) {
    if (r["kind"] != "in_flight") continue;
    ++works;
    max_in_flight = std::max(max_in_flight, std::stoi(r["step"].get<std::string>()));
  }
  EXPECT_EQ(works, 24);
  EXPECT_EQ(max_in_flight, 3) << "the limit is 3; it must be reached and never passed";
}

}  // namespace
}  // namespace funcky::testing
