// The executor's pure core: the call it builds and what it makes of each kind of reply.
#include <gtest/gtest.h>

#include "common/jcs.h"
#include "common/signing.h"
#include "coordinator/executor/call.h"
#include "coordinator/executor/transition.h"

namespace funcky::executor {
namespace {

using store::Json;

store::RunState MakeState(int retries = 2) {
  store::RunState s;
  s.run.id = "01RUN";
  s.run.status = store::kRunning;
  s.function.id = "app-fn";
  s.function.config = {
      {"id", "app-fn"},
      {"steps",
       {{"step",
         {{"runtime", {{"url", "http://127.0.0.1:3000/api?fnId=app-fn&stepId=step"}}},
          {"retries", {{"attempts", retries}}}}}}}};
  s.events = {Json{{"name", "demo/go"}, {"data", {{"x", 1}}}}};
  s.steps = {{"h1", 0, "first", "completed", Json{{"data", "A"}}, 0}};
  return s;
}

HttpResponse Reply(int status, std::string body, Headers extra = {}) {
  HttpResponse r;
  r.status = status;
  r.body = std::move(body);
  r.headers = {{"X-Inngest-SDK", "test:v1"}, {"X-Inngest-Req-Version", "2"}};
  for (auto& h : extra) r.headers.push_back(h);
  return r;
}

class TransitionTest : public ::testing::Test {
 protected:
  store::Transition Decide(Result<HttpResponse> reply, int attempt = 0, int retries = 2) {
    store::QueueItem item{1, "01RUN", "step", attempt, "tok"};
    CallOutcome outcome{std::move(reply), TimePoint(std::chrono::seconds(1000)),
                        TimePoint(std::chrono::seconds(1001))};
    return DecideTransition(MakeState(retries), item, outcome, policy_, rng_);
  }
  scheduler::RetryPolicy policy_{{std::chrono::seconds(10), std::chrono::seconds(20)},
                                 std::chrono::milliseconds(0)};
  std::mt19937_64 rng_{1};
};

TEST(BuildCall, ProducesSignedCanonicalRequestWithoutFnId) {
  auto state = MakeState();
  store::QueueItem item{7, "01RUN", "step", 1, "tok"};
  auto req =
      BuildCall(state, item, {"signkey-test-abcd"}, TimePoint(std::chrono::seconds(1700000000)));
  ASSERT_TRUE(req.ok()) << req.status().ToString();
  EXPECT_EQ(req->url, "http://127.0.0.1:3000/api?fnId=app-fn&stepId=step");
  Json body = Json::parse(req->body);
  EXPECT_EQ(*CanonicalJson(body), req->body);  // sent in its canonical form
  EXPECT_EQ(body["ctx"]["run_id"], "01RUN");
  EXPECT_EQ(body["ctx"]["attempt"], 1);
  EXPECT_EQ(body["ctx"]["max_attempts"], 3);
  EXPECT_EQ(body["ctx"]["stack"]["stack"], Json::array({"h1"}));
  EXPECT_EQ(body["ctx"]["stack"]["current"], 1);
  EXPECT_FALSE(body["ctx"].contains("fn_id"));
  EXPECT_EQ(body["steps"]["h1"], Json({{"data", "A"}}));
  EXPECT_EQ(body["event"]["name"], "demo/go");
  std::string sig(FindHeader(req->headers, "X-Inngest-Signature"));
  EXPECT_TRUE(signing::VerifySignature(sig, req->body, {"signkey-test-abcd"}, 1700000000).ok());
  // A planned step is addressed by its hash.
  item.step_id = "h2";
  EXPECT_EQ(BuildCall(state, item, {}, TimePoint())->url,
            "http://127.0.0.1:3000/api?fnId=app-fn&stepId=h2");
  EXPECT_TRUE(
      FindHeader(BuildCall(state, item, {}, TimePoint())->headers, "X-Inngest-Signature").empty());
}

TEST_F(TransitionTest, OkFromSdkCompletesRun) {
  auto t = Decide(Reply(200, R"({"b":"AB"})"));
  EXPECT_EQ(t.end_status, store::kCompleted);
  EXPECT_EQ(t.output, Json({{"b", "AB"}}));
  EXPECT_EQ(t.req_version, 2);
}

TEST_F(TransitionTest, StepRunIsMemoizedWrappedAndDiscoveryFollows) {
  auto t = Decide(Reply(206, R"([{"id":"h2","op":"StepRun","name":"second","data":"AB"}])"));
  ASSERT_EQ(t.steps.size(), 1u);
  EXPECT_EQ(t.steps[0].step_id, "h2");
  EXPECT_EQ(t.steps[0].memo, Json({{"data", "AB"}}));
  ASSERT_EQ(t.next.size(), 1u);
  EXPECT_EQ(t.next[0].step_id, "step");
  EXPECT_FALSE(t.end_status);
  EXPECT_FALSE(t.retry_at);
}

TEST_F(TransitionTest, StepErrorRetriesSameCallWithBackoffAndRecordsNothingElse) {
  auto t = Decide(
      Reply(206, R"([{"id":"h2","op":"StepError","error":{"name":"Error","message":"x"}}])"));
  ASSERT_TRUE(t.retry_at);
  EXPECT_EQ(*t.retry_at, TimePoint(std::chrono::seconds(1011)));  // ended + 10 s
  EXPECT_TRUE(t.steps.empty());
  EXPECT_TRUE(t.next.empty());
  ASSERT_EQ(t.attempts.size(), 1u);
  EXPECT_EQ(t.attempts[0].outcome, "error");
}

TEST_F(TransitionTest, StepErrorOnLastAttemptBecomesStepFailed) {
  auto t = Decide(Reply(206, R"([{"id":"h2","op":"StepError","error":{"message":"x"}}])"), 2);
  EXPECT_FALSE(t.retry_at);
  ASSERT_EQ(t.steps.size(), 1u);
  EXPECT_EQ(t.steps[0].status, "failed");
  EXPECT_EQ(t.steps[0].memo, Json({{"error", {{"message", "x"}}}}));
  EXPECT_EQ(t.next[0].step_id, "step");
}

TEST_F(TransitionTest, RetryAfterHeaderOverridesBackoff) {
  auto t = Decide(Reply(500, R"({"name":"Error","message":"busy"})",
                        {{"X-Inngest-No-Retry", "false"}, {"Retry-After", "120"}}));
  ASSERT_TRUE(t.retry_at);
  EXPECT_EQ(*t.retry_at, TimePoint(std::chrono::seconds(1121)));
}

TEST_F(TransitionTest, NoRetryFailsRunAtOnce) {
  auto t = Decide(Reply(400, R"({"name":"NonRetriableError","message":"no"})",
                        {{"X-Inngest-No-Retry", "true"}}));
  EXPECT_EQ(t.end_status, store::kFailed);
  EXPECT_EQ(t.error["message"], "no");
}

TEST_F(TransitionTest, ConnectionErrorRetriesThenFailsOnLastAttempt) {
  auto t = Decide(Result<HttpResponse>(Unavailable("refused")), 0);
  EXPECT_TRUE(t.retry_at);
  EXPECT_EQ(t.attempts[0].error["name"], "ConnectionError");
  t = Decide(Result<HttpResponse>(DeadlineExceeded("slow")), 2);
  EXPECT_EQ(t.end_status, store::kFailed);
  EXPECT_EQ(t.error["name"], "TimeoutError");
}

TEST_F(TransitionTest, TwoHundredWithoutSdkHeaderIsAnError) {
  HttpResponse r;
  r.status = 200;
  r.body = "<html>";
  auto t = Decide(std::move(r));
  EXPECT_TRUE(t.retry_at);
  EXPECT_FALSE(t.end_status);
}

TEST_F(TransitionTest, PlannedStepsAreEnqueuedOnce) {
  auto t = Decide(Reply(
      206,
      R"([{"id":"a","op":"StepPlanned"},{"id":"b","op":"StepPlanned"},{"id":"a","op":"StepPlanned"}])"));
  ASSERT_EQ(t.next.size(), 2u);
  EXPECT_EQ(t.next[0].step_id, "a");
  EXPECT_EQ(t.next[1].step_id, "b");
  EXPECT_FALSE(t.next_only_if_idle);
}

TEST_F(TransitionTest, UnsupportedOpFailsRunSayingSo) {
  auto t = Decide(Reply(206, R"([{"id":"a","op":"WaitForSignal"}])"));
  EXPECT_EQ(t.end_status, store::kFailed);
  EXPECT_NE(t.error["message"].get<std::string>().find("WaitForSignal"), std::string::npos);
}

TEST_F(TransitionTest, MalformedOpListIsRetried) {
  auto t = Decide(Reply(206, "[{]"));
  EXPECT_TRUE(t.retry_at);
}

TEST(Backoff, FollowsScheduleRepeatsLastAndAddsBoundedJitter) {
  scheduler::RetryPolicy p{{std::chrono::seconds(1), std::chrono::seconds(5)},
                           std::chrono::seconds(2)};
  std::mt19937_64 rng(42);
  for (int i = 0; i < 100; ++i) {
    auto d0 = scheduler::BackoffDelay(p, 0, rng);
    auto d9 = scheduler::BackoffDelay(p, 9, rng);
    EXPECT_GE(d0, std::chrono::seconds(1));
    EXPECT_LE(d0, std::chrono::seconds(3));
    EXPECT_GE(d9, std::chrono::seconds(5));
    EXPECT_LE(d9, std::chrono::seconds(7));
  }
  auto sched = scheduler::ParseSchedule("15s, 30s,1m");
  ASSERT_TRUE(sched.ok());
  EXPECT_EQ(sched->size(), 3u);
  EXPECT_EQ((*sched)[2], std::chrono::minutes(1));
  EXPECT_FALSE(scheduler::ParseSchedule("15s,,1m").ok());
}

TEST(Backoff, RetryAfterIsSecondsOrDateClampedToOneSecondToOneDay) {
  TimePoint now = std::chrono::system_clock::from_time_t(1445412480);  // 2015-10-21 07:28:00
  EXPECT_EQ(*scheduler::ParseRetryAfter("30", now), std::chrono::seconds(30));
  EXPECT_EQ(*scheduler::ParseRetryAfter("0", now), std::chrono::seconds(1));
  EXPECT_EQ(*scheduler::ParseRetryAfter("999999", now), std::chrono::hours(24));
  EXPECT_EQ(*scheduler::ParseRetryAfter("Wed, 21 Oct 2015 07:29:00 GMT", now),
            std::chrono::seconds(60));
  EXPECT_FALSE(scheduler::ParseRetryAfter("soon", now));
  EXPECT_FALSE(scheduler::ParseRetryAfter("", now));
}

}  // namespace
}  // namespace funcky::executor
