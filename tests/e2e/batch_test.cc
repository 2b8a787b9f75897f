// batchEvents across processes (docs/flow-control.md "batchEvents"): events of a key are
// gathered into one run, started when `maxSize` have arrived or `timeout` after the first;
// the host's request carries them all (`events`, in arrival order; `event` the first); an
// event whose `if` is false runs alone; the timer is a queue item, so it survives a kill -9;
// two coordinators on one PostgreSQL put every event in exactly one batch. The host is an
// HTTP server inside the test that records each call's body and completes the run.
#include <algorithm>
#include <chrono>
#include <map>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "common/http_server.h"
#include "tests/support/e2e.h"
#include "tests/support/scripted_server.h"

namespace funcky::testing {
namespace {

using namespace std::chrono_literals;
using SteadyClock = std::chrono::steady_clock;

// Completes every call at once (200 with a JSON result), remembering the first call's body
// of each run.
class RecordingHost {
 public:
  RecordingHost()
      : server_([this](ServerRequest r) {
          ServerResponse res;
          res.headers = {{"Content-Type", "application/json"}, {"X-Inngest-SDK", "batch:v1"}};
          if (r.method != "POST") {
            res.status = 404;
            return res;
          }
          Json body = Json::parse(r.body, nullptr, /*allow_exceptions=*/false);
          if (body.is_object() && body.contains("ctx")) {
            const std::string run_id = body["ctx"].value("run_id", std::string());
            std::lock_guard lock(mu_);
            if (bodies_.emplace(run_id, body).second) {
              first_call_at_[run_id] = SteadyClock::now();
            }
          }
          res.body = R"({"done":true})";
          return res;
        }) {}
  std::string url(const std::string& fn) const { return server_.url("/api?fnId=" + fn); }
  // The first call's body of each run called so far, by run id.
  std::map<std::string, Json> Bodies() const {
    std::lock_guard lock(mu_);
    return bodies_;
  }
  SteadyClock::time_point FirstCallAt(const std::string& run_id) const {
    std::lock_guard lock(mu_);
    return first_call_at_.at(run_id);
  }
  // Waits until `n` runs were called; returns their bodies (or what there is).
  std::map<std::string, Json> WaitForRuns(size_t n, std::chrono::milliseconds timeout = 20s) {
    const auto deadline = SteadyClock::now() + timeout;
    while (SteadyClock::now() < deadline && Bodies().size() < n) {
      std::this_thread::sleep_for(50ms);
    }
    return Bodies();
  }

 private:
  mutable std::mutex mu_;
  std::map<std::string, Json> bodies_;                            // GUARDED_BY(mu_)
  std::map<std::string, SteadyClock::time_point> first_call_at_;  // GUARDED_BY(mu_)
  ScriptedServer server_;
};

Json Fn(const RecordingHost& host, const std::string& id, Json batch, Json extra = {}) {
  Json options = extra.is_object() ? extra : Json::object();
  options["batchEvents"] = std::move(batch);
  return FunctionConfig(id, "log/api.call", host.url(id), options);
}

JsonReply RegisterReply(const Coordinator& c, const std::string& url, const Json& functions) {
  return Http("POST", c.url() + "/fn/register",
              Json{{"url", url}, {"appName", "batch"}, {"sdk", "test:v0"}, {"functions", functions}}
                  .dump());
}

void Register(const Coordinator& c, const std::string& url, const Json& functions) {
  auto r = RegisterReply(c, url, functions);
  ASSERT_EQ(r.status, 200) << r.raw;
}

Json Call(const std::string& user, int n, bool batch = true) {
  return {{"name", "log/api.call"}, {"data", {{"user", user}, {"n", n}, {"batch", batch}}}};
}

// data.n of each event of a call body.
std::vector<int> Numbers(const Json& body) {
  std::vector<int> out;
  for (const Json& e : body["events"]) out.push_back(e["data"]["n"].get<int>());
  return out;
}

class BatchTest : public E2eTest, public ::testing::WithParamInterface<std::string> {
 protected:
  std::string backend() const override { return GetParam(); }
  RecordingHost host_;
};

TEST_P(BatchTest, FiveEventsWithMaxSizeFiveStartOneRunWithAllOfThemInOrder) {
  auto c = StartCoordinator();
  Register(*c, host_.url("five"),
           Json::array({Fn(host_, "five", {{"maxSize", 5}, {"timeout", "60s"}})}));
  std::vector<std::string> ids;
  for (int i = 0; i < 5; ++i) {
    if (i == 4) {
      std::this_thread::sleep_for(500ms);
      EXPECT_TRUE(host_.Bodies().empty()) << "a batch of 4 of 5 started";
    }
    ids.push_back(Send(*c, Call("u", i)));
  }
  auto bodies = host_.WaitForRuns(1, 10s);  // full: at once, not after 60 s
  ASSERT_EQ(bodies.size(), 1u);
  const auto& [run_id, body] = *bodies.begin();
  ASSERT_EQ(body["events"].size(), 5u) << body.dump();
  EXPECT_EQ(Numbers(body), (std::vector<int>{0, 1, 2, 3, 4}));
  EXPECT_EQ(body["event"], body["events"][0]);
  Json run = WaitForRunEnd(c->url(), run_id);
  EXPECT_EQ(run["status"], "completed") << run.dump();
  EXPECT_EQ(run["event_id"], ids[0]);
  EXPECT_EQ(run["event_ids"], Json(ids));
  // Every event of the batch lists the run.
  auto of_last = Http("GET", c->url() + "/v1/events/" + ids[4]);
  ASSERT_EQ(of_last.status, 200) << of_last.raw;
  ASSERT_EQ(of_last.body["data"]["runs"].size(), 1u) << of_last.raw;
  EXPECT_EQ(of_last.body["data"]["runs"][0]["id"], run_id);
  // The run's end event carries them too: `event` the first, `events` all.
  Json finished;
  for (int tries = 0; tries < 50 && finished.is_null(); ++tries) {
    auto r = Http("GET", c->url() + "/v1/events?name=inngest/function.finished");
    ASSERT_EQ(r.status, 200) << r.raw;
    if (!r.body["data"].empty()) finished = r.body["data"][0]["payload"];
    if (finished.is_null()) std::this_thread::sleep_for(100ms);
  }
  ASSERT_FALSE(finished.is_null());
  EXPECT_EQ(finished["data"]["run_id"], run_id);
  ASSERT_EQ(finished["data"]["events"].size(), 5u) << finished.dump();
  EXPECT_EQ(finished["data"]["event"]["data"]["n"], 0);
  EXPECT_EQ(finished["data"]["events"][4]["data"]["n"], 4);
  EXPECT_EQ(c->Log().find("ERROR"), std::string::npos) << c->Log();
}

TEST_P(BatchTest, TimeoutStartsTheRunWithTheTwoEventsItHolds) {
  auto c = StartCoordinator();
  Register(*c, host_.url("slow"),
           Json::array({Fn(host_, "slow", {{"maxSize", 10}, {"timeout", "2s"}})}));
  const auto first = SteadyClock::now();
  Send(*c, Call("u", 0));
  std::this_thread::sleep_for(500ms);
  Send(*c, Call("u", 1));
  std::this_thread::sleep_until(first + 1500ms);
  EXPECT_TRUE(host_.Bodies().empty());
  auto bodies = host_.WaitForRuns(1, 10s);
  ASSERT_EQ(bodies.size(), 1u);
  const std::string run_id = bodies.begin()->first;      // a copy: `bodies` is replaced below
  EXPECT_GE(host_.FirstCallAt(run_id) - first, 1900ms);  // 2 s after the first event
  EXPECT_EQ(Numbers(bodies.begin()->second), (std::vector<int>{0, 1}));
  // The batch closed with its run: the next event opens another.
  Send(*c, Call("u", 2));
  bodies = host_.WaitForRuns(2, 10s);
  ASSERT_EQ(bodies.size(), 2u);
  bodies.erase(run_id);
  EXPECT_EQ(Numbers(bodies.begin()->second), std::vector<int>{2});
}

TEST_P(BatchTest, AnEventWhoseIfIsFalseRunsAloneAtOnceAndKeysBatchApart) {
  auto c = StartCoordinator();
  Register(*c, host_.url("cond"),
           Json::array({Fn(host_, "cond",
                           {{"maxSize", 2},
                            {"timeout", "60s"},
                            {"key", "event.data.user"},
                            {"if", "event.data.batch == true"}})}));
  Send(*c, Call("a", 0));
  Send(*c, Call("b", 1));
  Send(*c, Call("a", 2, /*batch=*/false));  // alone, at once
  auto bodies = host_.WaitForRuns(1, 10s);
  ASSERT_EQ(bodies.size(), 1u);
  EXPECT_EQ(Numbers(bodies.begin()->second), std::vector<int>{2});
  Send(*c, Call("b", 3));  // fills b's batch, not a's
  Send(*c, Call("a", 4));  // fills a's
  bodies = host_.WaitForRuns(3, 10s);
  ASSERT_EQ(bodies.size(), 3u);
  std::set<std::vector<int>> batches;
  for (const auto& [run_id, body] : bodies) batches.insert(Numbers(body));
  EXPECT_EQ(batches, (std::set<std::vector<int>>{{2}, {1, 3}, {0, 4}}));
}

TEST_P(BatchTest, Kill9BeforeTheTimerFiresStillGivesExactlyOneRunAfterRestart) {
  auto c = StartCoordinator();
  Register(*c, host_.url("durable"),
           Json::array({Fn(host_, "durable", {{"maxSize", 10}, {"timeout", "3s"}})}));
  Send(*c, Call("u", 0));
  Send(*c, Call("u", 1));
  c->Kill9();  // its timer is about 3 s away
  c->Start();
  auto bodies = host_.WaitForRuns(1, 15s);
  ASSERT_EQ(bodies.size(), 1u);
  EXPECT_EQ(Numbers(bodies.begin()->second), (std::vector<int>{0, 1}));
  std::this_thread::sleep_for(2s);  // nothing else comes due
  EXPECT_EQ(host_.Bodies().size(), 1u);
}

TEST_P(BatchTest, SyncRefusesBadBatchConfigsAndCombinationsNamingTheOption) {
  auto c = StartCoordinator();
  const std::string url = host_.url("bad");
  const std::vector<std::pair<Json, std::string>> bad = {
      {Fn(host_, "bad", {{"maxSize", 1}, {"timeout", "1s"}}),
       "batchEvents.maxSize must be an integer from 2 to 100"},
      {Fn(host_, "bad", {{"maxSize", 101}, {"timeout", "1s"}}), "batchEvents.maxSize"},
      {Fn(host_, "bad", {{"maxSize", 5}, {"timeout", "61s"}}),
       "batchEvents.timeout must be from 1s to 60s"},
      {Fn(host_, "bad", {{"maxSize", 5}}), "batchEvents needs a \\\"timeout\\\""},
      {Fn(host_, "bad", {{"maxSize", 5}, {"timeout", "1s"}, {"size", 3}}),
       "batchEvents.size is not implemented"},
      {Fn(host_, "bad", {{"maxSize", 5}, {"timeout", "1s"}},
          {{"cancel", Json::array({{{"event", "x/cancel"}}})}}),
       "batchEvents with cancel"},
      {Fn(host_, "bad", {{"maxSize", 5}, {"timeout", "1s"}}, {{"debounce", {{"period", "1s"}}}}),
       "batchEvents with debounce"},
      {Fn(host_, "bad", {{"maxSize", 5}, {"timeout", "1s"}}, {{"singleton", {{"mode", "skip"}}}}),
       "batchEvents with singleton"},
      {Fn(host_, "bad", {{"maxSize", 5}, {"timeout", "1s"}},
          {{"ordering", {{"key", "event.data.user"}}}}),
       "batchEvents with ordering (a lane)"},
      {Fn(host_, "bad", {{"maxSize", 5}, {"timeout", "1s"}},
          {{"concurrency", {{"limit", 1}, {"key", "event.data.user"}}}}),
       "batchEvents with concurrency (a lane)"},
  };
  for (const auto& [config, message] : bad) {
    auto r = RegisterReply(*c, url, Json::array({config}));
    EXPECT_EQ(r.status, 400) << config.dump();
    EXPECT_NE(r.raw.find(message), std::string::npos) << r.raw;
    EXPECT_NE(r.raw.find("bad"), std::string::npos) << r.raw;
  }
  // The bounds themselves are accepted, and so are the gates Inngest accepts with a batch.
  Register(*c, url,
           Json::array({Fn(host_, "edges", {{"maxSize", 100}, {"timeout", "60s"}},
                           {{"idempotency", "event.data.n"}, {"rateLimit", nullptr}}),
                        Fn(host_, "small", {{"maxSize", 2}, {"timeout", "1s"}})}));
}

INSTANTIATE_TEST_SUITE_P(Stores, BatchTest, ::testing::Values("postgres", "sqlite"),
                         [](const auto& info) { return info.param; });

class BatchTwoCoordinatorsTest : public E2eTest {
 protected:
  RecordingHost host_;
};

// Events of one key sent at once, from several threads, to two coordinators on one
// PostgreSQL: every event is in exactly one run, and no run holds more than maxSize.
TEST_F(BatchTwoCoordinatorsTest, ConcurrentPostsPutEveryEventInExactlyOneBatch) {
  auto a = StartCoordinator();
  Register(*a, host_.url("shared"),
           Json::array({Fn(host_, "shared", {{"maxSize", 4}, {"timeout", "2s"}})}));
  auto b = StartCoordinator();
  constexpr int kThreads = 4;
  constexpr int kEach = 10;
  std::vector<std::thread> senders;
  for (int t = 0; t < kThreads; ++t) {
    senders.emplace_back([&, t] {
      for (int i = 0; i < kEach; ++i) {
        const Coordinator& to = (t + i) % 2 ? *b : *a;
        auto r = Http("POST", to.url() + "/e/test", Call("u", t * kEach + i).dump());
        EXPECT_EQ(r.status, 200) << r.raw;
      }
    });
  }
  for (std::thread& s : senders) s.join();
  // At least kThreads * kEach / 4 runs; wait for the timers of partial batches too.
  host_.WaitForRuns(kThreads * kEach / 4, 20s);
  // Until every event has been in a call (a partial batch starts on a 2 s timer, then a claim):
  // a count of distinct events, so that one in two batches would show below.
  WaitFor(
      [&] {
        std::set<int> seen;
        for (const auto& [run_id, body] : host_.Bodies()) {
          for (int n : Numbers(body)) seen.insert(n);
        }
        return seen.size() == static_cast<size_t>(kThreads * kEach);
      },
      20s);
  std::this_thread::sleep_for(1s);  // a duplicate batch would have come by now
  std::map<int, int> runs_of;
  for (const auto& [run_id, body] : host_.Bodies()) {
    EXPECT_LE(body["events"].size(), 4u) << body.dump();
    EXPECT_EQ(body["event"], body["events"][0]);
    for (int n : Numbers(body)) ++runs_of[n];
  }
  ASSERT_EQ(runs_of.size(), static_cast<size_t>(kThreads * kEach));
  for (const auto& [n, count] : runs_of) EXPECT_EQ(count, 1) << "event " << n;
}

}  // namespace
}  // namespace funcky::testing
