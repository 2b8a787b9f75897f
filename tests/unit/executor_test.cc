// The executor's pure core: the call it builds and what it makes of each kind of reply.
#include <gtest/gtest.h>

#include <limits>

#include "common/jcs.h"
#include "common/signing.h"
#include "common/utf8.h"
#include "coordinator/executor/call.h"
#include "coordinator/executor/transition.h"
#include "coordinator/expr/expr.h"

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

// A Transition laid out flat for the assertions below: the fields of its move, and which move
// it is (a field of another move stays empty).
struct Flat {
  std::vector<store::StepRecord> steps;
  std::vector<store::AttemptRecord> attempts;
  std::optional<int> req_version;
  std::optional<std::string> end_status;  // End
  Json output;
  Json error;                         // End or Park
  std::optional<TimePoint> retry_at;  // Retry
  bool parked = false;                // Park
  std::vector<store::NextCall> next;  // Continue
  bool next_only_if_idle = false;
  std::vector<store::NewWait> waits;
  std::optional<std::string> run_status;
};

Flat FlatOf(const store::Transition& t) {
  Flat f{t.steps, t.attempts, t.req_version};
  if (const auto* end = t.end()) {
    f.end_status = end->status;
    f.output = end->output;
    f.error = end->error;
  } else if (const auto* retry = t.retry()) {
    f.retry_at = retry->at;
  } else if (const auto* park = t.park()) {
    f.parked = true;
    f.error = park->error;
  } else if (const auto* next = t.next()) {
    f.next = next->next;
    f.next_only_if_idle = next->next_only_if_idle;
    f.waits = next->waits;
    f.run_status = next->run_status;
  }
  return f;
}

// With checkpointing (the default) a call names its function and its leased queue item, which
// turns the JS SDK's async checkpointing on; the reference parses back to the same item.
TEST(BuildCall, OffersCheckpointingWithTheFunctionAndTheLeasedItem) {
  auto state = MakeState();
  store::QueueItem item{7, "01RUN", "step", 0, "0a1b2c"};
  auto req = BuildCall(state, item, {}, TimePoint());
  ASSERT_TRUE(req.ok()) << req.status().ToString();
  Json body = Json::parse(req->body);
  EXPECT_EQ(body["ctx"]["fn_id"], "app-fn");
  EXPECT_EQ(body["ctx"]["qi_id"], "7.0a1b2c");
  auto back = ParseQueueRef(body["ctx"]["qi_id"].get<std::string>(), "01RUN");
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_EQ(back->id, 7);
  EXPECT_EQ(back->lease_token, "0a1b2c");
  EXPECT_EQ(back->run_id, "01RUN");
  for (const char* bad : {"", "7", "7.", ".ab", "x.ab", "7.zz", "7.ab.cd", "-7.ab",
                          "1234567890123456789.ab", "7.ab\n"}) {
    EXPECT_EQ(ParseQueueRef(bad, "01RUN").status().code(), StatusCode::kInvalidArgument) << bad;
  }
  EXPECT_FALSE(ParseQueueRef("7." + std::string(65, 'a'), "01RUN").ok());
}

// A checkpoint holds steps the host ran: recorded as a 206's StepRun, with an attempt that
// lasted as long as the host says; anything else in it is refused, naming it.
TEST(CheckpointRecords, RecordsRanStepsAndRefusesOtherOps) {
  auto ops = ParseOps(
      R"([{"id":"h1","op":"StepRun","name":"first","data":{"v":1},"timing":{"a":1,"b":7000000}},
          {"id":"h2","op":"StepRun","displayName":"second","data":null,"timing":{"b":-1}}])");
  ASSERT_TRUE(ops.ok()) << ops.status().ToString();
  const TimePoint now(std::chrono::seconds(100));
  auto c = CheckpointRecords(*ops, now);
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  ASSERT_EQ(c->steps.size(), 2u);
  EXPECT_EQ(c->steps[0].step_id, "h1");
  EXPECT_EQ(c->steps[0].name, "first");
  EXPECT_EQ(c->steps[0].status, "completed");
  EXPECT_EQ(c->steps[0].memo, Json({{"data", {{"v", 1}}}}));
  EXPECT_EQ(c->steps[1].memo, Json({{"data", nullptr}}));
  ASSERT_EQ(c->attempts.size(), 2u);
  EXPECT_EQ(c->attempts[0].outcome, "completed");
  EXPECT_EQ(c->attempts[0].ended_at_ms, 100'000);
  EXPECT_EQ(c->attempts[0].started_at_ms, 100'000 - 7);
  EXPECT_EQ(c->attempts[1].started_at_ms, 100'000);  // a negative duration is not believed

  for (auto [other, named] :
       {std::pair{R"([{"id":"h1","op":"StepRun"},{"id":"h2","op":"StepError","error":{}}])",
                  "not StepError"},
        std::pair{R"([{"id":"c","op":"RunComplete","data":1}])", "not RunComplete"},
        std::pair{R"([{"id":"p","op":"StepPlanned"}])", "not StepPlanned"}}) {
    auto refused = CheckpointRecords(*ParseOps(other), now);
    ASSERT_EQ(refused.status().code(), StatusCode::kInvalidArgument) << other;
    EXPECT_NE(refused.status().message().find(named), std::string::npos)
        << refused.status().message();
  }
  EXPECT_EQ(CheckpointRecords({}, now).status().code(), StatusCode::kInvalidArgument);
}

// A run whose state passes what a call carries is not called: BuildCall says so, and the
// executor fails the run with StateTooLarge (it was sent on every attempt to a host that
// refused it, and held whole by each call in flight).
TEST(BuildCall, AStateLargerThanACallCarriesIsRefused) {
  auto state = MakeState();
  store::QueueItem item{7, "01RUN", "step", 0, "tok"};
  state.steps.push_back(
      {"h2", 0, "big", "completed", Json{{"data", std::string(kMaxCallBodyBytes - 1024, 'x')}}, 0});
  auto fits = BuildCall(state, item, {}, TimePoint());
  ASSERT_TRUE(fits.ok()) << fits.status().ToString();
  EXPECT_LE(fits->body.size(), kMaxCallBodyBytes);
  state.steps.push_back({"h3", 0, "more", "completed", Json{{"data", std::string(2048, 'y')}}, 0});
  auto refused = BuildCall(state, item, {}, TimePoint());
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.status().code(), StatusCode::kResourceExhausted);
  EXPECT_NE(refused.status().message().find("more than the 33554432 a call carries"),
            std::string::npos)
      << refused.status().message();
}

class TransitionTest : public ::testing::Test {
 protected:
  // The transition of a discovery call ("step"), or of the call of step `step_id`.
  Flat Decide(Result<HttpResponse> reply, int attempt = 0, int retries = 2,
              const std::string& step_id = "step") {
    store::QueueItem item{1, "01RUN", step_id, attempt, "tok"};
    CallOutcome outcome{std::move(reply), TimePoint(std::chrono::seconds(1000)),
                        TimePoint(std::chrono::seconds(1001))};
    return FlatOf(DecideTransition(MakeState(retries), item, outcome, policy_, rng_));
  }
  scheduler::RetryPolicy policy_{{std::chrono::seconds(10), std::chrono::seconds(20)},
                                 std::chrono::milliseconds(0)};
  std::mt19937_64 rng_{1};
};

TEST(BuildCall, ProducesSignedCanonicalRequestWithoutFnId) {
  auto state = MakeState();
  store::QueueItem item{7, "01RUN", "step", 1, "tok"};
  auto req = BuildCall(state, item, {"signkey-test-abcd", /*checkpointing=*/false},
                       TimePoint(std::chrono::seconds(1700000000)));
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
  // Without an integer above 2^53 the standard signature covers the body as sent: no other.
  EXPECT_TRUE(FindHeader(req->headers, signing::kExactSignatureHeader).empty());
  // A planned step is addressed by its hash.
  item.step_id = "h2";
  EXPECT_EQ(BuildCall(state, item, {}, TimePoint())->url,
            "http://127.0.0.1:3000/api?fnId=app-fn&stepId=h2");
  EXPECT_TRUE(
      FindHeader(BuildCall(state, item, {}, TimePoint())->headers, "X-Inngest-Signature").empty());
}

// A run whose state holds an integer above 2^53 gets it with every digit, and the signature
// covers the RFC 8785 form (the integer as a double), which is what the JavaScript SDK
// rebuilds from the body it parsed: signed over the body as sent, every call of such a run
// would be refused by the JavaScript SDK as unsigned.
TEST(BuildCall, SignsTheRfcFormOfABodyWithLargeIntegers) {
  auto state = MakeState();
  state.events[0]["data"] = Json::parse(R"({"id": 12345678901234567890, "small": 7})");
  store::QueueItem item{7, "01RUN", "step", 0, "tok"};
  const int64_t now = 1700000000;
  auto req = BuildCall(state, item, {"signkey-test-abcd", /*checkpointing=*/false},
                       TimePoint(std::chrono::seconds(now)));
  ASSERT_TRUE(req.ok()) << req.status().ToString();
  EXPECT_NE(req->body.find(R"("id":12345678901234567890)"), std::string::npos) << req->body;
  const std::string sig(FindHeader(req->headers, "X-Inngest-Signature"));
  auto rfc = CanonicalJson(Json::parse(req->body), JcsIntegers::kAsDoubles);
  ASSERT_TRUE(rfc.ok());
  EXPECT_NE(rfc->find(R"("id":12345678901234567000)"), std::string::npos) << *rfc;
  EXPECT_TRUE(signing::VerifySignature(sig, *rfc, {"signkey-test-abcd"}, now).ok());
  EXPECT_FALSE(signing::VerifySignature(sig, req->body, {"signkey-test-abcd"}, now).ok());
  // The body as sent, digits and all, is signed in Funcky's own header.
  EXPECT_TRUE(signing::VerifySignature(
                  std::string(FindHeader(req->headers, signing::kExactSignatureHeader)), req->body,
                  {"signkey-test-abcd"}, now)
                  .ok());
  // A memo holding one is signed the same way.
  state.events[0]["data"] = Json::object();
  state.steps[0].memo = Json{{"data", Json::parse("-9007199254740993")}};
  req = BuildCall(state, item, {"signkey-test-abcd", false}, TimePoint(std::chrono::seconds(now)));
  ASSERT_TRUE(req.ok()) << req.status().ToString();
  rfc = CanonicalJson(Json::parse(req->body), JcsIntegers::kAsDoubles);
  ASSERT_TRUE(rfc.ok());
  EXPECT_NE(*rfc, req->body);
  EXPECT_TRUE(signing::VerifySignature(std::string(FindHeader(req->headers, "X-Inngest-Signature")),
                                       *rfc, {"signkey-test-abcd"}, now)
                  .ok());
}

// The body is written piece by piece; it is the canonical form of the whole request as a
// JSON tree would hold it: a batch's events, steps whose ids and memos need escaping or sort
// by UTF-16 code units, a step recorded twice (the later record wins).
TEST(BuildCall, WritesTheCanonicalFormOfTheWholeBody) {
  auto state = MakeState();
  state.run.req_version = 1;
  state.events = {Json{{"name", "demo/go"}, {"data", {{"z", 1.5}, {"a", "\u00e9\n"}}}},
                  Json{{"name", "demo/go"}, {"data", {{"\xee\x80\x80", 1}, {"b", nullptr}}}}};
  state.steps = {{"h1", 0, "first", "completed", Json{{"data", "A"}}, 0},
                 {"\xee\x80\x80", 1, "odd", "completed", Json{{"data", {1, 2}}}, 0},
                 {"\xf0\x9f\x98\x80", 2, "emoji", "completed", Json{{"data", "\"q\""}}, 0},
                 {"h1", 3, "first", "completed", Json{{"data", "again"}}, 0}};
  store::QueueItem item{7, "01RUN", "h2", 2, "0a1b2c"};
  auto req = BuildCall(state, item, {}, TimePoint());
  ASSERT_TRUE(req.ok()) << req.status().ToString();
  Json steps = Json::object();
  Json stack = Json::array();
  for (const auto& step : state.steps) {
    steps[step.step_id] = step.memo;
    stack.push_back(step.step_id);
  }
  Json expected = {{"event", state.events[0]},
                   {"events", state.events},
                   {"steps", steps},
                   {"ctx",
                    {{"run_id", "01RUN"},
                     {"attempt", 2},
                     {"max_attempts", 3},
                     {"disable_immediate_execution", false},
                     {"use_api", false},
                     {"stack", {{"stack", stack}, {"current", 4}}},
                     {"step_id", "h2"},
                     {"env", ""},
                     {"fn_id", "app-fn"},
                     {"qi_id", "7.0a1b2c"}}},
                   {"version", 1},
                   {"use_api", false}};
  EXPECT_EQ(req->body, *CanonicalJson(expected));
  // A value JSON cannot carry fails the call's building, as before.
  state.steps[0].memo = Json{{"data", std::numeric_limits<double>::infinity()}};
  EXPECT_EQ(BuildCall(state, item, {}, TimePoint()).status().code(), StatusCode::kInvalidArgument);
  state.steps.clear();
  state.events.clear();
  EXPECT_EQ(BuildCall(state, item, {}, TimePoint()).status().code(),
            StatusCode::kFailedPrecondition);
}

TEST_F(TransitionTest, OkFromSdkCompletesRun) {
  auto t = Decide(Reply(200, R"({"b":"AB"})"));
  EXPECT_EQ(t.end_status, store::kCompleted);
  EXPECT_EQ(t.output, Json({{"b", "AB"}}));
  EXPECT_EQ(t.req_version, 2);
}

// The request version is recorded when the reply changes it, so a step that changes nothing
// else of the run leaves the run's row alone (the store then only locks it).
TEST_F(TransitionTest, RequestVersionIsRecordedOnlyWhenItChanges) {
  store::RunState state = MakeState();
  store::QueueItem item{1, "01RUN", "step", 0, "tok"};
  auto decide = [&] {
    CallOutcome outcome{Reply(206, R"([{"id":"h2","op":"StepRun","data":1}])"),
                        TimePoint(std::chrono::seconds(1000)),
                        TimePoint(std::chrono::seconds(1001))};
    return DecideTransition(state, item, outcome, policy_, rng_);
  };
  EXPECT_EQ(decide().req_version, 2) << "the run had none";
  state.run.req_version = 2;
  EXPECT_EQ(decide().req_version, std::nullopt);
  state.run.req_version = 1;
  EXPECT_EQ(decide().req_version, 2);

  // Only a version an SDK can be sent back: 0 makes the JS SDK fail every later call.
  state.run.req_version = -1;
  for (const char* version : {"0", "3", "-1", "2x", " 2", "99999999999999999999"}) {
    HttpResponse reply = Reply(206, R"([{"id":"h2","op":"StepRun","data":1}])");
    reply.headers = {{"X-Inngest-SDK", "test:v1"}, {"X-Inngest-Req-Version", version}};
    CallOutcome outcome{reply, TimePoint(std::chrono::seconds(1000)),
                        TimePoint(std::chrono::seconds(1001))};
    auto t = DecideTransition(state, item, outcome, policy_, rng_);
    EXPECT_EQ(t.req_version, std::nullopt) << version;
  }
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

// A reply of several steps (the JS SDK's buffered steps, when their checkpoint failed) asks
// for one discovery call, not one a step: each would replay the run and run its next step.
// Beside planned steps, a sleep or a wait it asks for none: each of those ends in a call that
// asks for one, and one made now would run beside them.
TEST_F(TransitionTest, AReplyAsksForOneDiscoveryAndNoneBesideOtherWork) {
  auto two = Decide(Reply(206, R"([{"id":"a","op":"StepRun","data":1},
                                   {"id":"b","op":"StepRun","data":2},
                                   {"id":"c","op":"StepFailed","error":{"message":"no"}}])"));
  EXPECT_EQ(two.steps.size(), 3u);
  ASSERT_EQ(two.next.size(), 1u);
  EXPECT_EQ(two.next[0].step_id, "step");
  EXPECT_TRUE(two.next_only_if_idle);

  auto planned = Decide(Reply(206, R"([{"id":"a","op":"StepRun","data":1},
                                       {"id":"p","op":"StepPlanned"}])"));
  EXPECT_EQ(planned.steps.size(), 1u);
  ASSERT_EQ(planned.next.size(), 1u);
  EXPECT_EQ(planned.next[0].step_id, "p");

  auto sleep = Decide(Reply(206, R"([{"id":"a","op":"StepRun","data":1},
                                     {"id":"hs","op":"Sleep","name":"1s"}])"));
  ASSERT_EQ(sleep.next.size(), 1u);
  EXPECT_EQ(sleep.next[0].step_id, "hs");
  EXPECT_TRUE(sleep.next[0].resume);

  auto wait = Decide(Reply(206, R"([{"id":"a","op":"DiscoveryRequest"},
      {"id":"hw","op":"WaitForEvent","name":"a/b","opts":{"event":"a/b","timeout":"1h"}}])"));
  EXPECT_TRUE(wait.next.empty());
  EXPECT_EQ(wait.waits.size(), 1u);
}

// A run has at most `step_limit` steps: a reply that would take it past them while it goes on
// (steps it ran, planned steps, a sleep, a wait) fails it with Inngest's overflow error and
// records nothing of the reply but the failed attempt; a step recorded already (a reply that
// repeats it) is not counted twice; a reply that ends the run, or a retry, is applied as usual.
TEST_F(TransitionTest, AReplyThatWouldTakeTheRunPastTheStepLimitFailsIt) {
  store::RunState state = MakeState();  // one step, "h1"
  state.steps.push_back({"h2", 1, "second", "completed", Json{{"data", "B"}}, 0});
  store::QueueItem item{1, "01RUN", "step", 0, "tok"};
  auto decide = [&](const char* body, int64_t limit) {
    CallOutcome outcome{Reply(206, body), TimePoint(std::chrono::seconds(1000)),
                        TimePoint(std::chrono::seconds(1001))};
    return FlatOf(DecideTransition(state, item, outcome, policy_, rng_, limit));
  };
  auto third = decide(R"([{"id":"h3","op":"StepRun","data":3}])", 3);
  EXPECT_FALSE(third.end_status);
  EXPECT_EQ(third.steps.size(), 1u);

  auto past = decide(R"([{"id":"h3","op":"StepRun","data":3},{"id":"h4","op":"StepRun"}])", 3);
  ASSERT_EQ(past.end_status, store::kFailed);
  EXPECT_EQ(past.error["name"], "InngestErrFunctionOverflowed");
  EXPECT_EQ(past.error["message"],
            "The function run exceeded the step limit of 3 steps (the coordinator's "
            "--max-steps-per-run).");
  EXPECT_TRUE(past.steps.empty());
  EXPECT_TRUE(past.next.empty());
  ASSERT_EQ(past.attempts.size(), 1u);
  EXPECT_EQ(past.attempts[0].step_id, "step");
  EXPECT_EQ(past.attempts[0].outcome, "failed");
  EXPECT_EQ(past.attempts[0].error, past.error);

  // "h1" is recorded already: the run would have three steps.
  EXPECT_FALSE(decide(R"([{"id":"h1","op":"StepRun"},{"id":"h3","op":"StepRun"}])", 3).end_status);
  // What a reply asks for counts: planned steps, a sleep, a wait.
  EXPECT_FALSE(decide(R"([{"id":"p1","op":"StepPlanned"}])", 3).end_status);
  EXPECT_EQ(
      decide(R"([{"id":"p1","op":"StepPlanned"},{"id":"p2","op":"StepPlanned"}])", 3).end_status,
      store::kFailed);
  EXPECT_EQ(
      decide(R"([{"id":"h3","op":"StepRun"},{"id":"hs","op":"Sleep","name":"1s"}])", 3).end_status,
      store::kFailed);
  const char* wait =
      R"([{"id":"hw","op":"WaitForEvent","name":"a/b","opts":{"event":"a/b","timeout":"1h"}}])";
  EXPECT_FALSE(decide(wait, 3).waits.empty());
  EXPECT_EQ(decide(wait, 2).end_status, store::kFailed);

  // Ending the run, or retrying the call, is not refused, even past the limit; but steps
  // recorded with a retry count.
  EXPECT_EQ(decide(R"([{"id":"done","op":"RunComplete","data":1}])", 1).end_status,
            store::kCompleted);
  EXPECT_TRUE(
      decide(R"([{"id":"h3","op":"StepError","error":{"message":"x"}}])", 2).retry_at.has_value());
  const char* steps_then_error =
      R"([{"id":"h3","op":"StepRun"},{"id":"h4","op":"StepRun"},{"id":"h5","op":"StepError"}])";
  EXPECT_TRUE(decide(steps_then_error, 4).retry_at.has_value());
  auto retried_past = decide(steps_then_error, 3);
  EXPECT_EQ(retried_past.end_status, store::kFailed);
  EXPECT_FALSE(retried_past.retry_at);
  EXPECT_TRUE(retried_past.steps.empty());
}

// `206 []`: a step's call whose thread has nothing more to do leads to discovery once the
// run has nothing else out; a discovery call that says so is a failed attempt (the run was
// left running with nothing to call it again).
TEST_F(TransitionTest, AnEmptyOpListGoesOnByDiscoveryOrFailsADiscoveryCall) {
  auto step = Decide(Reply(206, "[]"), 0, 2, "p1");
  ASSERT_EQ(step.next.size(), 1u);
  EXPECT_EQ(step.next[0].step_id, "step");
  EXPECT_TRUE(step.next_only_if_idle);
  auto discovery = Decide(Reply(206, "[]"));
  EXPECT_TRUE(discovery.retry_at);
  ASSERT_EQ(discovery.attempts.size(), 1u);
  EXPECT_EQ(discovery.attempts[0].error["name"], "ProtocolError");
  auto last = Decide(Reply(206, "[]"), 2, 2);
  EXPECT_EQ(last.end_status, store::kFailed);
}

// X-Inngest-No-Retry on a StepError: the step fails at once, as a StepFailed does.
TEST_F(TransitionTest, AStepErrorMarkedNoRetryFailsTheStepAtOnce) {
  auto t = Decide(Reply(206, R"([{"id":"h1","op":"StepError","error":{"message":"no"}}])",
                        {{"X-Inngest-No-Retry", "true"}}));
  EXPECT_FALSE(t.retry_at);
  ASSERT_EQ(t.steps.size(), 1u);
  EXPECT_EQ(t.steps[0].status, "failed");
  ASSERT_EQ(t.next.size(), 1u);
  EXPECT_EQ(t.next[0].step_id, "step");
}

TEST_F(TransitionTest, UnsupportedOpFailsRunSayingSo) {
  auto t = Decide(Reply(206, R"([{"id":"a","op":"Gateway"}])"));
  EXPECT_EQ(t.end_status, store::kFailed);
  EXPECT_NE(t.error["message"].get<std::string>().find("Gateway"), std::string::npos);
}

TEST_F(TransitionTest, WaitForSignalRegistersAWaitForItsSignal) {
  auto t = Decide(Reply(206, R"([{"id":"hw","op":"WaitForSignal","name":"order-7",
      "displayName":"approval","opts":{"signal":"order-7","timeout":"1h","conflict":"replace"}}])"));
  EXPECT_EQ(t.run_status, store::kWaiting);
  ASSERT_EQ(t.waits.size(), 1u);
  const store::NewWait& w = t.waits[0];
  EXPECT_EQ(w.step_id, "hw");
  EXPECT_EQ(w.name, "approval");
  EXPECT_EQ(w.kind, store::kWaitSignal);
  EXPECT_EQ(w.signal, "order-7");
  EXPECT_TRUE(w.event_name.empty()) << "no event resumes it";
  EXPECT_TRUE(w.replace_signal);
  EXPECT_EQ(w.expires_at, TimePoint(std::chrono::seconds(1001 + 3600)));
  EXPECT_TRUE(w.timeout_memo.is_null());

  // onConflict "fail", or none, does not take a held signal over; no timeout waits 366 days.
  for (const char* opts : {R"({"signal":"s","conflict":"fail"})", R"({"signal":"s"})"}) {
    auto f = Decide(Reply(
        206, std::string(R"([{"id":"hw","op":"WaitForSignal","name":"s","opts":)") + opts + "}]"));
    ASSERT_EQ(f.waits.size(), 1u) << opts;
    EXPECT_FALSE(f.waits[0].replace_signal) << opts;
    EXPECT_EQ(f.waits[0].expires_at, TimePoint(std::chrono::seconds(1001 + 366 * 24 * 3600)));
  }

  const std::string long_signal(store::kMaxSignalBytes + 1, 's');
  for (const std::string& bad :
       {std::string(R"([{"id":"hw","op":"WaitForSignal","opts":{"signal":""}}])"),
        std::string(R"([{"id":"hw","op":"WaitForSignal","opts":{"signal":"s","conflict":"x"}}])"),
        std::string(R"([{"id":"hw","op":"WaitForSignal","opts":{"signal":"s","timeout":"soon"}}])"),
        R"([{"id":"hw","op":"WaitForSignal","opts":{"signal":")" + long_signal + R"("}}])"}) {
    auto f = Decide(Reply(206, bad));
    EXPECT_EQ(f.end_status, store::kFailed) << bad;
    EXPECT_EQ(f.error["name"], "InvalidStep") << bad;
  }
}

TEST_F(TransitionTest, MalformedOpListIsRetried) {
  auto t = Decide(Reply(206, "[{]"));
  EXPECT_TRUE(t.retry_at);
}

// A million levels of nesting in any reply a host can send is a failed
// attempt with a clear error, retried by policy and failed on the last attempt.
TEST_F(TransitionTest, AMillionLevelsDeepReplyIsAFailedAttemptNotACrash) {
  const size_t depth = 1'000'000;
  std::string objects;
  for (size_t i = 0; i < depth; ++i) objects += "{\"a\":";
  objects += "1" + std::string(depth, '}');
  const std::string arrays = std::string(depth, '[') + std::string(depth, ']');
  for (const std::string& deep : {arrays, objects}) {
    for (const auto& [status, body] : std::vector<std::pair<int, std::string>>{
             {200, deep},
             {206, deep},
             {206, R"([{"id":"h2","op":"StepRun","data":)" + deep + "}]"},
             {500, deep}}) {
      auto t = Decide(Reply(status, body));
      ASSERT_TRUE(t.retry_at) << status;
      EXPECT_FALSE(t.end_status);
      ASSERT_EQ(t.attempts.size(), 1u);
      EXPECT_EQ(t.attempts[0].outcome, "error");
      const std::string message = t.attempts[0].error["message"].get<std::string>();
      EXPECT_LT(message.size(), 2100u);
      if (status != 500) {
        EXPECT_NE(message.find("JSON nested deeper than 128 levels"), std::string::npos) << message;
      }
      auto last = Decide(Reply(status, body), /*attempt=*/2, /*retries=*/2);
      EXPECT_EQ(last.end_status, store::kFailed) << status;
      EXPECT_FALSE(last.retry_at);
    }
  }
}

// A non-JSON error body with NUL and bytes that are not UTF-8 is recorded as text any
// store can hold: dumping the error must not throw, and it holds no \u0000.
TEST_F(TransitionTest, ErrorBodyThatIsNotUtf8OrHoldsNulIsRecordedAsCleanText) {
  const std::string body = std::string("boom\0 \xff\xfe end", 12) + std::string(3000, 'x');
  auto t = Decide(Reply(500, body));
  ASSERT_EQ(t.attempts.size(), 1u);
  std::string dumped;
  ASSERT_NO_THROW(dumped = t.attempts[0].error.dump());
  EXPECT_EQ(dumped.find("\\u0000"), std::string::npos) << dumped.substr(0, 80);
  const std::string message = t.attempts[0].error["message"];
  EXPECT_EQ(message.rfind("host answered HTTP 500: boom \xEF\xBF\xBD", 0), 0u)
      << message.substr(0, 80);
  EXPECT_NE(message.find(" end"), std::string::npos);
  EXPECT_LT(message.size(), 2100u);
}

// A host's error may be as large as its reply, and every retry keeps an attempt: an attempt
// keeps an error past 64 KiB as its name, message and stack, cut; the step's memo keeps it
// whole (the host gets it back), and a small error stays as it was.
TEST_F(TransitionTest, AnAttemptKeepsAHugeErrorCutAndTheStepItsWhole) {
  const std::string big(1 << 20, 'm');
  const Json error = {{"name", "Error"},
                      {"message", big},
                      {"stack", "at f (" + big + ")"},
                      {"data", Json::array({big, big})}};
  const std::string op =
      Json::array({{{"id", "h2"}, {"op", "StepError"}, {"error", error}}}).dump();
  auto retried = Decide(Reply(206, op));
  ASSERT_TRUE(retried.retry_at);
  ASSERT_EQ(retried.attempts.size(), 1u);
  const Json& kept = retried.attempts[0].error;
  EXPECT_LE(kept.dump().size(), 64u * 1024);
  EXPECT_EQ(kept["name"], "Error");
  EXPECT_EQ(kept["message"], std::string(8 * 1024, 'm'));
  EXPECT_EQ(kept["stack"].get<std::string>().size(), 32u * 1024);
  EXPECT_FALSE(kept.contains("data"));
  EXPECT_NE(kept["truncated"].get<std::string>().find("bytes"), std::string::npos);

  auto failed = Decide(Reply(206, op), 2);  // the last attempt: the step fails for good
  ASSERT_EQ(failed.steps.size(), 1u);
  EXPECT_EQ(failed.steps[0].memo, Json({{"error", error}}));
  ASSERT_EQ(failed.attempts.size(), 1u);
  EXPECT_EQ(failed.attempts[0].error, kept);

  // An error that is not an object, past the bound, keeps only the note.
  auto text =
      Decide(Reply(206, Json::array({{{"id", "h2"}, {"op", "StepError"}, {"error", big}}}).dump()));
  ASSERT_EQ(text.attempts.size(), 1u);
  EXPECT_EQ(text.attempts[0].error["message"], "");
  EXPECT_TRUE(text.attempts[0].error.contains("truncated"));

  auto small = Decide(
      Reply(206, R"([{"id":"h2","op":"StepError","error":{"name":"E","message":"x","a":[1]}}])"));
  EXPECT_EQ(small.attempts[0].error, Json({{"name", "E"}, {"message", "x"}, {"a", {1}}}));
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
  // Past what a TimePoint holds when added to now (20000w wrapped into the past): refused.
  EXPECT_NE(scheduler::ParseSchedule("15s,20000w").status().message().find("longer than 366 days"),
            std::string::npos);
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
  // Huge values are clamped before any conversion (seconds × 1000 overflowed, and a date past
  // 2262 the nanoseconds of a TimePoint: undefined behaviour, an abort under the sanitizer).
  EXPECT_EQ(*scheduler::ParseRetryAfter("10000000000000000", now), std::chrono::hours(24));
  EXPECT_EQ(*scheduler::ParseRetryAfter("99999999999999999999999", now), std::chrono::hours(24));
  EXPECT_EQ(*scheduler::ParseRetryAfter("-99999999999999999999999", now), std::chrono::seconds(1));
  EXPECT_EQ(*scheduler::ParseRetryAfter("Fri, 31 Dec 9999 23:59:59 GMT", now),
            std::chrono::hours(24));
  EXPECT_EQ(*scheduler::ParseRetryAfter("Mon, 01 Jan 0001 00:00:00 GMT", now),
            std::chrono::seconds(1));
  // RFC 3339 with its offset: 09:30 at +02:00 is 07:30 UTC (it was read as 09:30 UTC).
  EXPECT_EQ(*scheduler::ParseRetryAfter("2015-10-21T07:29:00Z", now), std::chrono::seconds(60));
  EXPECT_EQ(*scheduler::ParseRetryAfter("2015-10-21T09:30:00+02:00", now),
            std::chrono::seconds(120));
  EXPECT_EQ(*scheduler::ParseRetryAfter("2015-10-21T07:30:00.500Z", now),
            std::chrono::seconds(120));
  EXPECT_FALSE(scheduler::ParseRetryAfter("Wed, 21 Oct 2015 07:29:00 GMT and more", now));
}

// A streamed answer (the JS SDK's `streaming`): 201 and spaces, then the answer as JSON. It is
// read as that answer (its headers win over the 201's), and decided as any other; a stream
// that ended without one is a broken connection, tried again.
TEST_F(TransitionTest, AStreamedAnswerIsReadAsTheAnswerItCarries) {
  const std::string ops = R"([{"id":"h2","op":"StepRun","name":"second","data":"AB"}])";
  HttpResponse streamed = Reply(
      201, "   \n  " +
               Json{{"status", 206},
                    {"headers", {{"X-Inngest-Req-Version", "1"}, {"X-Inngest-No-Retry", "false"}}},
                    {"body", ops},
                    {"version", 1}}
                   .dump());
  ASSERT_TRUE(IsStreamedAnswer(streamed));
  auto answer = UnwrapStreamedAnswer(streamed);
  ASSERT_TRUE(answer.ok()) << answer.status().ToString();
  EXPECT_EQ(answer->status, 206);
  EXPECT_EQ(answer->body, ops);
  EXPECT_EQ(answer->header("X-Inngest-Req-Version"), "1") << "the answer's, not the 201's";
  EXPECT_EQ(answer->header("X-Inngest-SDK"), "test:v1");
  auto t = Decide(*answer);
  ASSERT_EQ(t.steps.size(), 1u);
  EXPECT_EQ(t.steps[0].memo, Json({{"data", "AB"}}));
  EXPECT_EQ(t.req_version, 1);

  EXPECT_FALSE(IsStreamedAnswer(Reply(206, ops)));
  HttpResponse not_sdk = streamed;
  not_sdk.headers.clear();
  EXPECT_FALSE(IsStreamedAnswer(not_sdk)) << "a 201 from something that is not an SDK";
  for (const std::string body : {std::string("      "), std::string("  {\"status\":206,\"bo"),
                                 std::string(" {\"body\":\"[]\"}"), std::string(" [206]"),
                                 std::string(" {\"status\":2006}")}) {
    auto broken = UnwrapStreamedAnswer(Reply(201, body));
    EXPECT_FALSE(broken.ok()) << body;
    EXPECT_EQ(broken.status().code(), StatusCode::kUnavailable) << body;
  }
}

// The JS SDK's time string for a duration of 0 or less (a deadline already passed), or for a
// text it cannot read ("1d2h"), is "": as on Inngest, a sleep then wakes at once, a wait or a
// signal times out at once, and an invoke waits its default time. A `Date` deadline comes as
// RFC 3339: a timeout until then (none once passed). Times below are relative to the call's
// end, 1001 s.
TEST_F(TransitionTest, EmptyTimeStringsAndDateTimeoutsAreReadAsInngestReadsThem) {
  auto sleep = Decide(Reply(206, R"([{"id":"hs","op":"Sleep","name":""}])"));
  EXPECT_FALSE(sleep.end_status) << sleep.error.dump();
  ASSERT_EQ(sleep.next.size(), 1u);
  EXPECT_EQ(sleep.next[0].due, TimePoint(std::chrono::seconds(1001)));

  const auto expires = [&](const std::string& op) -> std::optional<TimePoint> {
    auto t = Decide(Reply(206, "[" + op + "]"));
    EXPECT_FALSE(t.end_status) << op << ": " << t.error.dump();
    if (t.waits.size() != 1) return std::nullopt;
    return t.waits[0].expires_at;
  };
  EXPECT_EQ(expires(R"({"id":"hw","op":"WaitForEvent","opts":{"event":"a/b","timeout":""}})"),
            TimePoint(std::chrono::seconds(1001)));
  EXPECT_EQ(expires(R"({"id":"hg","op":"WaitForSignal","opts":{"signal":"s","timeout":""}})"),
            TimePoint(std::chrono::seconds(1001)));
  EXPECT_EQ(expires(R"({"id":"hi","op":"InvokeFunction","opts":{"function_id":"f","timeout":""}})"),
            TimePoint(std::chrono::seconds(1001) + std::chrono::hours(24 * 366)));

  // Dates: 3600 s after the epoch, and one already passed.
  EXPECT_EQ(expires(R"({"id":"hw","op":"WaitForEvent",
                        "opts":{"event":"a/b","timeout":"1970-01-01T01:00:00.000Z"}})"),
            TimePoint(std::chrono::seconds(3600)));
  EXPECT_EQ(expires(R"({"id":"hg","op":"WaitForSignal",
                        "opts":{"signal":"s","timeout":"1970-01-01T02:00:00+01:00"}})"),
            TimePoint(std::chrono::seconds(3600)));
  EXPECT_EQ(expires(R"({"id":"hi","op":"InvokeFunction",
                        "opts":{"function_id":"f","timeout":"1970-01-01T00:00:01Z"}})"),
            TimePoint(std::chrono::seconds(1001)));
  auto far = Decide(Reply(206, R"([{"id":"hw","op":"WaitForEvent",
                                    "opts":{"event":"a/b","timeout":"9999-01-01T00:00:00Z"}}])"));
  EXPECT_EQ(far.end_status, store::kFailed);
  EXPECT_NE(far.error.dump().find("366 days"), std::string::npos) << far.error.dump();
}

// Valid JSON of the wrong type is refused, not dropped: a wait whose `if` is not a string
// would match the first event of its name; an invoke whose data is not an object would start
// its run with other data than sent.
TEST_F(TransitionTest, AWaitsIfOrAnInvokesDataOfTheWrongTypeFailsTheRun) {
  for (
      const char* op :
      {R"([{"id":"hw","op":"WaitForEvent","opts":{"event":"a/b","if":5}}])",
       R"([{"id":"hw","op":"WaitForEvent","opts":{"event":"a/b","if":{"x":1}}}])",
       R"([{"id":"hi","op":"InvokeFunction","opts":{"function_id":"f","payload":{"data":[1]}}}])",
       R"([{"id":"hi","op":"InvokeFunction","opts":{"function_id":"f","payload":{"data":"x"}}}])"}) {
    auto t = Decide(Reply(206, op));
    EXPECT_EQ(t.end_status, store::kFailed) << op;
    EXPECT_EQ(t.error["name"], "InvalidStep") << op << ": " << t.error.dump();
  }
  auto unset =
      Decide(Reply(206, R"([{"id":"hw","op":"WaitForEvent","opts":{"event":"a/b","if":null}}])"));
  ASSERT_EQ(unset.waits.size(), 1u);
  EXPECT_EQ(unset.waits[0].expression, "");
}

// A sleep until a date past 2262, or a wait or invoke timeout longer than a TimePoint holds,
// fails the run saying why (the time wrapped into the past: the sleep woke at once, or the
// coordinator aborted under the sanitizer); a sleep until a date passed wakes at once.
TEST_F(TransitionTest, TimesFromTheHostBeyondWhatATimePointHoldsFailTheRun) {
  for (
      const char* op :
      {R"([{"id":"hs","op":"Sleep","name":"9999-01-01T00:00:00Z"}])",
       R"([{"id":"hs","op":"Sleep","name":"1600000w"}])",
       R"([{"id":"hw","op":"WaitForEvent","name":"a/b","opts":{"event":"a/b","timeout":"16000w"}}])",
       R"([{"id":"hw","op":"WaitForEvent","name":"a/b","opts":{"event":"a/b","lookback":"16000w"}}])",
       R"([{"id":"hi","op":"InvokeFunction","opts":{"function_id":"f","timeout":"1600000w"}}])"}) {
    auto t = Decide(Reply(206, op));
    EXPECT_EQ(t.end_status, store::kFailed) << op;
    EXPECT_NE(t.error.dump().find("366 days"), std::string::npos) << op << ": " << t.error.dump();
  }
  auto past = Decide(Reply(206, R"([{"id":"hs","op":"Sleep","name":"0001-01-01T00:00:00Z"}])"));
  EXPECT_FALSE(past.end_status);
  ASSERT_EQ(past.next.size(), 1u);
  EXPECT_EQ(past.next[0].due, TimePoint(std::chrono::seconds(1001)));
}

// Async steps (docs/protocol.md §5.2): the times below are relative to the call's end, 1001 s.
TEST_F(TransitionTest, SleepEnqueuesAResumeItemAtTheWakeTime) {
  auto t = Decide(Reply(206, R"([{"id":"hs","op":"Sleep","name":"2s","displayName":"nap"}])"));
  EXPECT_FALSE(t.end_status);
  EXPECT_EQ(t.run_status, store::kSleeping);
  EXPECT_TRUE(t.steps.empty());  // memoized when it wakes, not before
  ASSERT_EQ(t.next.size(), 1u);
  EXPECT_EQ(t.next[0].step_id, "hs");
  EXPECT_EQ(t.next[0].due, TimePoint(std::chrono::seconds(1003)));
  ASSERT_TRUE(t.next[0].resume);
  EXPECT_EQ(*t.next[0].resume, Json({{"memo", nullptr}, {"name", "nap"}}));

  auto until =
      Decide(Reply(206, R"([{"id":"hs","op":"Sleep","name":"1970-01-01T00:20:00.000Z"}])"));
  ASSERT_EQ(until.next.size(), 1u);
  EXPECT_EQ(until.next[0].due, TimePoint(std::chrono::seconds(1200)));

  auto opts =
      Decide(Reply(206, R"([{"id":"hs","op":"Sleep","name":"nap","opts":{"duration":"1m"}}])"));
  ASSERT_EQ(opts.next.size(), 1u);
  EXPECT_EQ(opts.next[0].due, TimePoint(std::chrono::seconds(1061)));

  for (const char* bad : {R"([{"id":"hs","op":"Sleep","name":"soon"}])",
                          R"([{"id":"hs","op":"Sleep","name":"400d"}])"}) {
    auto t2 = Decide(Reply(206, bad));
    EXPECT_EQ(t2.end_status, store::kFailed) << bad;
    EXPECT_EQ(t2.error["name"], "InvalidSleep") << bad;
  }
}

TEST_F(TransitionTest, WaitForEventRegistersAWaitWithItsTimeoutAndLookback) {
  auto t = Decide(
      Reply(206,
            R"([{"id":"hw","op":"WaitForEvent","name":"app/approved","displayName":"approval",
           "opts":{"timeout":"1h","if":"async.data.id == event.data.id","lookback":"5s"}}])"));
  EXPECT_EQ(t.run_status, store::kWaiting);
  ASSERT_EQ(t.waits.size(), 1u);
  const store::NewWait& w = t.waits[0];
  EXPECT_EQ(w.step_id, "hw");
  EXPECT_EQ(w.name, "approval");
  EXPECT_EQ(w.event_name, "app/approved");
  EXPECT_EQ(w.expression, "async.data.id == event.data.id");
  EXPECT_EQ(w.kind, store::kWaitEvent);
  EXPECT_EQ(w.expires_at, TimePoint(std::chrono::seconds(1001 + 3600)));
  EXPECT_EQ(w.lookback, std::chrono::seconds(5));
  EXPECT_TRUE(w.timeout_memo.is_null());
  EXPECT_EQ(w.match_key, std::nullopt) << "the run's event has no data.id: null == null holds";

  // An `if` that requires a field of the event to equal the run's event's: the wait keeps
  // that key (the run's event is {"data": {"x": 1}}), by which an ingest finds it.
  auto keyed = Decide(Reply(206, R"([{"id":"hw","op":"WaitForEvent","name":"a/b",
                                      "opts":{"timeout":"1h","if":"event.data.x == async.data.x"}}])"));
  ASSERT_EQ(keyed.waits.size(), 1u);
  EXPECT_EQ(keyed.waits[0].match_key, expr::IndexKey({"data", "x"}, 1));

  // An event name no event may have (intake refuses it) would wait for ever; on PostgreSQL
  // its index entry was refused, an error that read as an outcome not recorded.
  auto long_name = Decide(Reply(206, R"([{"id":"hw","op":"WaitForEvent","opts":{"event":")" +
                                         std::string(257, 'n') + R"("}}])"));
  EXPECT_EQ(long_name.end_status, store::kFailed);
  EXPECT_EQ(long_name.error["name"], "InvalidStep") << long_name.error.dump();

  // A variable the `if` cannot see (a typo) would never be true: refused.
  auto unknown = Decide(Reply(206, R"([{"id":"hw","op":"WaitForEvent","name":"a/b",
                                     "opts":{"if":"evnt.data.x == async.data.x"}}])"));
  EXPECT_EQ(unknown.end_status, store::kFailed);
  EXPECT_NE(unknown.error["message"].get<std::string>().find("unknown variable 'evnt'"),
            std::string::npos)
      << unknown.error.dump();

  auto bad = Decide(Reply(206, R"([{"id":"hw","op":"WaitForEvent","name":"a/b",
                                     "opts":{"timeout":"1h","if":"event.data. =="}}])"));
  EXPECT_EQ(bad.end_status, store::kFailed);
  EXPECT_NE(bad.error["message"].get<std::string>().find("waitForEvent if: at"), std::string::npos)
      << bad.error.dump();

  // A character of several bytes outside a string is named by its first byte's value: the
  // byte quoted alone made the run's error invalid UTF-8, which no store could write (the
  // call was made again and again, its steps run again each time).
  auto accented = Decide(Reply(206, R"([{"id":"hw","op":"WaitForEvent","name":"a/b",
                                         "opts":{"timeout":"1h","if":"event.data.café == 1"}}])"));
  EXPECT_EQ(accented.end_status, store::kFailed);
  const std::string message = accented.error["message"].get<std::string>();
  EXPECT_TRUE(IsUtf8WithoutNul(message)) << message;
  EXPECT_NE(message.find("unexpected byte 0xC3"), std::string::npos) << message;
}

TEST_F(TransitionTest, InvokeWaitsForTheFinishOfTheRunItStarts) {
  auto t = Decide(Reply(206, R"([{"id":"hi","op":"InvokeFunction","name":"call",
      "opts":{"function_id":"app-callee","payload":{"data":{"n":2}},"timeout":"10s"}}])"));
  EXPECT_EQ(t.run_status, store::kWaiting);
  ASSERT_EQ(t.waits.size(), 1u);
  const store::NewWait& w = t.waits[0];
  EXPECT_EQ(w.kind, store::kWaitInvoke);
  EXPECT_EQ(w.event_name, kFunctionFinished);
  EXPECT_EQ(w.expression, "async.data.correlation_id == \"01RUN.hi\"");
  EXPECT_EQ(w.expires_at, TimePoint(std::chrono::seconds(1011)));
  EXPECT_EQ(w.timeout_memo["error"]["name"], "InngestInvokeTimeoutError");
  EXPECT_EQ(
      w.invoke,
      Json({{"function_id", "app-callee"}, {"data", {{"n", 2}}}, {"correlation_id", "01RUN.hi"}}));

  auto bad = Decide(Reply(206, R"([{"id":"hi","op":"InvokeFunction","opts":{}}])"));
  EXPECT_EQ(bad.end_status, store::kFailed);
}

// The step id is the host's. Quoted into the wait's expression, a quote in it would make the
// wait match the end of any run, and resume it with that run's result (another app's, say).
TEST_F(TransitionTest, AnInvokeStepIdCannotWidenItsWait) {
  const std::string id = R"(x" || true || ")";
  auto t = Decide(Reply(
      206, Json::array(
               {{{"id", id}, {"op", "InvokeFunction"}, {"opts", {{"function_id", "app-callee"}}}}})
               .dump()));
  ASSERT_EQ(t.waits.size(), 1u);
  const std::string correlation = CorrelationId("01RUN", id);
  EXPECT_EQ(t.waits[0].invoke["correlation_id"], correlation);
  auto wait = expr::Compile(t.waits[0].expression);
  ASSERT_TRUE(wait.ok()) << wait.status().ToString();
  const Json own = {{"data", {{"correlation_id", correlation}}}};
  const Json other = {{"data", {{"correlation_id", "01OTHER.s"}}}};
  EXPECT_TRUE((*wait)->Matches(expr::Variables{{"async", &own}}));
  EXPECT_FALSE((*wait)->Matches(expr::Variables{{"async", &other}}));
  const Json backslash = {{"data", {{"correlation_id", "01RUN.a\\"}}}};
  auto t2 = Decide(Reply(206, R"([{"id":"a\\","op":"InvokeFunction",
                                   "opts":{"function_id":"app-callee"}}])"));
  ASSERT_EQ(t2.waits.size(), 1u);
  auto wait2 = expr::Compile(t2.waits[0].expression);
  ASSERT_TRUE(wait2.ok()) << wait2.status().ToString();
  EXPECT_TRUE((*wait2)->Matches(expr::Variables{{"async", &backslash}}));
}

// The coordinator's own event ids are under the prefix senders may not use.
TEST(InternalEventIds, AreUnderTheCoordinatorsPrefix) {
  EXPECT_EQ(FinishedEventId("01RUN"), "funcky:finished:01RUN");
  EXPECT_EQ(FailedEventId("01RUN"), "funcky:failed:01RUN");
  EXPECT_EQ(CancelledEventId("01RUN"), "funcky:cancelled:01RUN");
  EXPECT_EQ(InvokedEventId(CorrelationId("01RUN", "s")), "funcky:invoked:01RUN.s");
  for (const std::string& id :
       {FinishedEventId("r"), FailedEventId("r"), CancelledEventId("r"), InvokedEventId("r.s")}) {
    EXPECT_TRUE(id.starts_with(kInternalIdPrefix)) << id;
  }
}

TEST_F(TransitionTest, PlannedStepsAndASleepAreEnqueuedTogether) {
  auto t = Decide(Reply(206, R"([{"id":"p1","op":"StepPlanned"},{"id":"p2","op":"StepPlanned"},
                                 {"id":"hs","op":"Sleep","name":"1s"}])"));
  ASSERT_EQ(t.next.size(), 3u);
  EXPECT_EQ(t.next[0].step_id, "p1");
  EXPECT_FALSE(t.next[0].resume);
  EXPECT_EQ(t.next[2].step_id, "hs");
  EXPECT_TRUE(t.next[2].resume);
  EXPECT_FALSE(t.next_only_if_idle);
}

TEST(ResumeTransition, MemoizesTheMemoAndRediscoversOnceIdle) {
  store::QueueItem item{
      1, "01RUN", "hw",
      0, "tok",   Json{{"memo", {{"name", "a/b"}, {"data", Json::object()}}}, {"name", "w"}}};
  auto t = FlatOf(ResumeTransition(item, TimePoint(std::chrono::seconds(5))));
  ASSERT_EQ(t.steps.size(), 1u);
  EXPECT_EQ(t.steps[0].step_id, "hw");
  EXPECT_EQ(t.steps[0].name, "w");
  EXPECT_EQ(t.steps[0].status, "completed");
  EXPECT_EQ(t.steps[0].memo["name"], "a/b");
  ASSERT_EQ(t.next.size(), 1u);
  EXPECT_EQ(t.next[0].step_id, "step");
  EXPECT_TRUE(t.next_only_if_idle);
  EXPECT_EQ(t.run_status, store::kRunning);

  item.resume = Json{{"memo", {{"error", {{"name", "InngestInvokeTimeoutError"}}}}}};
  EXPECT_EQ(ResumeTransition(item, TimePoint{}).steps[0].status, "failed");
}

}  // namespace
}  // namespace funcky::executor
