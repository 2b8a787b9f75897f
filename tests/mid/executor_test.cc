// The executor's loop in process (tests/mid/harness.h): claim, call, apply, against a real
// SQLite store, with a scripted host and time that moves only when the test moves it.
#include <thread>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "common/step_id.h"
#include "common/ulid.h"
#include "coordinator/executor/call.h"
#include "tests/mid/harness.h"
#include "tests/support/status_matchers.h"

namespace funcky::mid {
namespace {

using namespace std::chrono_literals;
using ::testing::ElementsAre;
using ::testing::IsEmpty;
using testing::IsOk;

constexpr int64_t kAnySteps = 1000;  // a step limit (Checkpoint's) this test does not reach
constexpr const char* kServerError = R"({"name":"Error","message":"the database is down"})";

// A run makes at most options.step_limit steps: one that has them all and asks for another
// fails with Inngest's overflow error (nothing of that reply recorded), an ordinary failure
// (its end announced, retried by nobody); one that completes within them is not touched.
TEST_F(ExecutorHarness, ARunThatWouldPassTheStepLimitFails) {
  options_.step_limit = 3;
  const std::string within = StartRun(kFunction);
  for (const char* step : {"s1", "s2", "s3"}) transport_.Reply(StepRunReply(step, step));
  transport_.Reply(SdkReply(200, R"("done")"));
  StartExecutor();
  ASSERT_TRUE(RunUntil([&] { return Run(within).status == store::kCompleted; }));
  EXPECT_EQ(Steps(within).size(), 3u);

  const std::string looping = StartRun(kFunction);
  for (const char* step : {"s1", "s2", "s3", "s4"}) {
    transport_.Reply(StepRunReply(step, step));
  }
  executor_->Wake();
  ASSERT_TRUE(RunUntil([&] { return Run(looping).status == store::kFailed; }));
  EXPECT_EQ(Run(looping).error["name"], "InngestErrFunctionOverflowed");
  EXPECT_EQ(Steps(looping).size(), 3u) << "the fourth step is not recorded";
  EXPECT_EQ(transport_.calls(), 8) << "four calls of each run, none after the failure";
  ASSERT_TRUE(RunClaimRounds(3));
  EXPECT_EQ(transport_.calls(), 8);
}

// A reply, or a call's state, larger than the executor handles on its I/O thread is decided
// or built on the blocking pool, with the same outcome: the step recorded, the next call
// carrying it, the run's end; a large final error is logged cut, and the run fails with all of
// it.
TEST_F(ExecutorHarness, LargeRepliesAndStatesGoAsSmallOnesDo) {
  const std::string big(400 << 10, 'x');
  const std::string run = StartRun(kFunction);
  transport_.Reply(StepRunReply("big", big));
  transport_.Reply(SdkReply(200, R"("done")"));
  StartExecutor();
  ASSERT_TRUE(RunUntil([&] { return Run(run).status == store::kCompleted; }));
  ASSERT_EQ(Steps(run).size(), 1u);
  ASSERT_EQ(transport_.calls(), 2);
  EXPECT_EQ(transport_.Body(1)["steps"][HashStepId("big")]["data"], big);
  EXPECT_EQ(Run(run).output, "done");

  const std::string fails = StartRun(kFunction);
  const Json error = {{"name", "Error"}, {"message", big}};
  transport_.Reply(SdkReply(400, error.dump(), {{"X-Inngest-No-Retry", "true"}}));
  executor_->Wake();
  ASSERT_TRUE(RunUntil([&] { return Run(fails).status == store::kFailed; }));
  EXPECT_EQ(Run(fails).error["message"], big);
}

// A call's reply is counted against the run as the call found it: steps the host checkpointed
// meanwhile are not in that count. A run that so passed its step limit fails before its next
// call, which is not made.
TEST_F(ExecutorHarness, ARunPastTheStepLimitByCheckpointedStepsFailsBeforeItsNextCall) {
  options_.step_limit = 2;
  const std::string run = StartRun(kFunction);
  transport_.HoldReply(StepRunReply("third", "C"));
  StartExecutor();
  ASSERT_TRUE(RunUntil([&] { return transport_.held() == 1; }));
  auto item = executor::ParseQueueRef(transport_.Body(0)["ctx"]["qi_id"].get<std::string>(), run);
  ASSERT_THAT(item, IsOk());
  const int64_t now = UnixMillis(clock_.Now());
  std::vector<store::StepRecord> steps;
  std::vector<store::AttemptRecord> attempts;
  for (const char* name : {"first", "second"}) {
    steps.push_back({HashStepId(name), 0, name, "completed", {{"data", name}}, 0});
    attempts.push_back({HashStepId(name), name, 0, "completed", nullptr, now, now});
  }
  ASSERT_THAT(store_->Checkpoint(*item, steps, attempts, clock_.Now(), 2), IsOk());
  transport_.Release();
  ASSERT_TRUE(RunUntil([&] { return Run(run).status == store::kFailed; }));
  EXPECT_EQ(Run(run).error["name"], "InngestErrFunctionOverflowed");
  EXPECT_EQ(Steps(run).size(), 3u);
  EXPECT_EQ(transport_.calls(), 1) << "the run was not called again";
  const auto recorded = Attempts(run);
  ASSERT_FALSE(recorded.empty());
  EXPECT_EQ(recorded.back().outcome, "failed") << "the timeline says why";
  EXPECT_EQ(recorded.back().error["name"], "InngestErrFunctionOverflowed");
}

// A run whose steps hold more than a state is read with (store::kMaxLoadedStepBytes: steps
// checkpointed during a call, then the call's own) is read without them and fails before its
// next call, which is not made.
TEST_F(ExecutorHarness, ARunWhoseStepsPassTheLoadBoundFailsWithoutItsStepsRead) {
  const std::string run = StartRun(kFunction);
  transport_.HoldReply(StepRunReply("last", std::string(6 << 20, 'z')));
  StartExecutor();
  ASSERT_TRUE(RunUntil([&] { return transport_.held() == 1; }));
  auto item = executor::ParseQueueRef(transport_.Body(0)["ctx"]["qi_id"].get<std::string>(), run);
  ASSERT_THAT(item, IsOk());
  for (const char* name : {"first", "second"}) {
    const store::StepRecord step{
        HashStepId(name), 0, name, "completed", {{"data", std::string(30 << 20, 'x')}}, 0};
    ASSERT_THAT(store_->Checkpoint(*item, {step}, {}, clock_.Now(), kAnySteps), IsOk());
  }
  transport_.Release();
  ASSERT_TRUE(RunUntil([&] { return Run(run).status == store::kFailed; }));
  EXPECT_EQ(Run(run).error["name"], "StateTooLarge");
  EXPECT_THAT(Run(run).error["message"].get<std::string>(),
              ::testing::HasSubstr("memoized steps are"));
  EXPECT_EQ(transport_.calls(), 1) << "the run was not called again";
  const auto recorded = Attempts(run);
  ASSERT_FALSE(recorded.empty());
  EXPECT_EQ(recorded.back().outcome, "failed") << "the timeline says why";
  EXPECT_EQ(recorded.back().error["name"], "StateTooLarge");
}

TEST_F(ExecutorHarness, AFailedCallIsRetriedOnlyOnceItsBackoffHasPassed) {
  const std::string run = StartRun(kFunction);
  transport_.Reply(SdkReply(500, kServerError));
  StartExecutor();
  ASSERT_TRUE(RunUntil([&] { return Attempts(run).size() == 1; }));
  EXPECT_EQ(Attempts(run)[0].outcome, "error");
  EXPECT_EQ(Attempts(run)[0].error["message"], "the database is down");
  EXPECT_EQ(Run(run).status, store::kRunning);

  // The schedule's first delay is 10 s: a millisecond short of it, nothing is due.
  clock_.Advance(9'999ms);
  ASSERT_TRUE(RunClaimRounds(3));
  EXPECT_EQ(queue_->claimed(), 1);
  EXPECT_EQ(transport_.calls(), 1);

  transport_.Reply(SdkReply(200, R"({"ok":true})"));
  clock_.Advance(1ms);
  ASSERT_TRUE(RunUntil([&] { return transport_.calls() == 2; }));
  EXPECT_EQ(transport_.Body(1)["ctx"]["attempt"], 1);
  ASSERT_TRUE(RunUntil([&] { return Run(run).status == store::kCompleted; }));
}

// What intake does for the executor, as far as an invocation needs: the first start of one
// fails as a database that went away fails it (whether the callee's run was stored is not
// known); the later ones succeed.
class FlakyInvocations final : public executor::RunEvents {
 public:
  std::atomic<int> starts{0};  // called on the executor's blocking pool
  Status StartInvocation(const store::RunState&, const store::NewWait&) override {
    return ++starts == 1 ? Unavailable("the database is away") : Status::Ok();
  }
  void WaitRegistered(const store::RunState&, const store::NewWait&, int64_t) override {}
  std::vector<store::EventRecord> EndEventsToStore(const store::RunState&, const std::string&,
                                                   const Json&, const Json&,
                                                   std::optional<int64_t>*) override {
    return {};
  }
  void RunEnded(const store::RunState&, const std::string&, const Json&, const Json&) override {}
  void AnnounceEnd(const std::string&) override {}
};

// An invocation that may or may not have started (its callee's run perhaps stored) does not
// fail the invoker, which would then go on told its callee never ran: the call is made again
// once its lease expires, and the redone invocation (a duplicate at worst) is waited for.
class InvokingExecutor : public ExecutorHarness {
 protected:
  FlakyInvocations events_;  // a member: it outlives the executor, which TearDown stops
};

TEST_F(InvokingExecutor, AnInvocationThatMayHaveStartedRedoesItsCallRatherThanFailTheInvoker) {
  FlakyInvocations& events = events_;
  options_.events = &events;
  const std::string run = StartRun(kFunction);
  const std::string invoke =
      R"([{"id":"inv","op":"InvokeFunction","name":"call","opts":{"function_id":"app-fn",)"
      R"("payload":{"data":{}}}}])";
  transport_.Reply(SdkReply(206, invoke));
  StartExecutor();
  ASSERT_TRUE(RunUntil([&] { return events.starts == 1; }));
  ASSERT_TRUE(RunClaimRounds(3));
  EXPECT_EQ(transport_.calls(), 1);
  EXPECT_THAT(Steps(run), IsEmpty());
  EXPECT_EQ(Run(run).status, store::kRunning);

  transport_.Reply(SdkReply(206, invoke));
  clock_.Advance(options_.lease + 1s);
  ASSERT_TRUE(RunUntil([&] { return Run(run).status == store::kWaiting; }));
  EXPECT_EQ(transport_.calls(), 2);
  EXPECT_EQ(events.starts, 2);
  EXPECT_THAT(Steps(run), IsEmpty());
}

TEST_F(ExecutorHarness, ACallThatTimesOutIsAFailedAttemptRetriedWithBackoff) {
  const std::string run = StartRun(kFunction);
  transport_.Reply(DeadlineExceeded("no answer within 60000 ms"));
  StartExecutor();
  ASSERT_TRUE(RunUntil([&] { return Attempts(run).size() == 1; }));
  EXPECT_EQ(Attempts(run)[0].error["name"], "TimeoutError");
  // The call said how long the coordinator waits for its answer: a host whose threads are
  // busy past it need not run it.
  ASSERT_EQ(transport_.requests().size(), 1u);
  EXPECT_EQ(FindHeader(transport_.requests()[0].headers, "X-Funcky-Call-Timeout-Ms"),
            std::to_string(options_.call_timeout.count()));

  clock_.Advance(9s);
  ASSERT_TRUE(RunClaimRounds(3));
  EXPECT_EQ(transport_.calls(), 1);
  transport_.Reply(SdkReply(200, "null"));
  clock_.Advance(1s);
  ASSERT_TRUE(RunUntil([&] { return Run(run).status == store::kCompleted; }));
  EXPECT_EQ(transport_.calls(), 2);
}

TEST_F(ExecutorHarness, RetryAfterFromTheHostSetsTheNextAttemptsTime) {
  const std::string run = StartRun(kFunction);
  transport_.Reply(SdkReply(503, kServerError, {{"Retry-After", "120"}}));
  StartExecutor();
  ASSERT_TRUE(RunUntil([&] { return Attempts(run).size() == 1; }));

  // The backoff schedule alone (10 s) would retry now; the host asked for 120 s.
  clock_.Advance(10s);
  ASSERT_TRUE(RunClaimRounds(3));
  clock_.Advance(109'999ms);
  ASSERT_TRUE(RunClaimRounds(3));
  EXPECT_EQ(queue_->claimed(), 1);
  EXPECT_EQ(transport_.calls(), 1);

  transport_.Reply(SdkReply(200, R"({"ok":true})"));
  clock_.Advance(1ms);
  ASSERT_TRUE(RunUntil([&] { return Run(run).status == store::kCompleted; }));
  EXPECT_EQ(transport_.calls(), 2);
}

// An outcome the store refuses for good (kInternal: not the database away, but something in
// what was written, a fault of Funcky's) fails the run, saying so; left to the lease, the call
// was made again at each lease's end, its steps run each time. A lane's head blocks its lane.
TEST_F(ExecutorHarness, AnOutcomeTheStoreRefusesFailsTheRunRatherThanMakeTheCallAgain) {
  StartExecutor();
  std::vector<std::string> runs;
  for (const char* fn : {kFunction, kOrdered}) {
    runs.push_back(fn == kOrdered ? StartRun(fn, "tenant") : StartRun(fn));
    queue_->FailNthCall(FailingQueue::kApply, 1, Internal("database error 22P05: refused"));
    transport_.Reply(StepRunReply("charge", "charged"));
    ASSERT_TRUE(RunUntil([&] {
      return Run(runs.back()).status == (fn == kOrdered ? store::kBlocked : store::kFailed);
    })) << fn;
    EXPECT_EQ(Run(runs.back()).error["name"], "OutcomeNotRecorded") << fn;
    EXPECT_TRUE(Steps(runs.back()).empty()) << fn;
  }
  clock_.Advance(std::chrono::hours(1));  // past every lease and backoff
  ASSERT_TRUE(RunClaimRounds(3));
  EXPECT_EQ(transport_.calls(), 2);
}

TEST_F(ExecutorHarness, ARunEndsWithTheOutputOfItsLastCallAndLeavesNothingQueued) {
  const std::string run = StartRun(kFunction);
  transport_.Reply(StepRunReply("first", "A"));
  transport_.Reply(SdkReply(200, R"({"sum":"A!"})"));
  StartExecutor();
  ASSERT_TRUE(RunUntil([&] { return Run(run).status == store::kCompleted; }));

  EXPECT_EQ(Run(run).output, Json({{"sum", "A!"}}));
  EXPECT_TRUE(Run(run).ended_at_ms);
  auto steps = Steps(run);
  ASSERT_EQ(steps.size(), 1u);
  EXPECT_EQ(steps[0].step_id, HashStepId("first"));
  EXPECT_EQ(steps[0].memo, Json({{"data", "A"}}));
  // The second call carried the memoized step back to the host.
  EXPECT_EQ(transport_.Body(1)["steps"][HashStepId("first")], Json({{"data", "A"}}));
  auto depth = store_->QueueDepth();
  ASSERT_THAT(depth, IsOk());
  EXPECT_EQ(*depth, 0);
  ASSERT_TRUE(RunUntil([&] { return !observer_.run_ends.empty(); }));
  EXPECT_THAT(observer_.run_ends, ElementsAre(store::kCompleted));
}

TEST_F(ExecutorHarness, TheOutcomeOfACallWhoseLeaseWasLostIsNotWritten) {
  const std::string run = StartRun(kFunction);
  transport_.HoldReply(StepRunReply("first", "A"));
  StartExecutor();
  ASSERT_TRUE(RunUntil([&] { return transport_.calls() == 1; }));

  // While the call is in flight, another coordinator, whose clock is past the lease, takes
  // the item over.
  auto taken = store_->Claim(1, clock_.Now() + options_.lease + 1s, 30s);
  ASSERT_THAT(taken, IsOk());
  ASSERT_EQ(taken->size(), 1u);
  transport_.Release();
  ASSERT_TRUE(RunUntil([&] { return observer_.leases_lost == 1; }));
  EXPECT_THAT(Steps(run), IsEmpty());
  EXPECT_THAT(Attempts(run), IsEmpty());

  // The new holder gives the item back unfinished: the call is redone as the same attempt,
  // with nothing of the dropped outcome.
  ASSERT_THAT(store_->ReleaseLeases(*taken, clock_.Now()), IsOk());
  transport_.Reply(StepRunReply("first", "B"));
  transport_.Reply(SdkReply(200, R"({"ok":true})"));
  ASSERT_TRUE(RunUntil([&] { return Run(run).status == store::kCompleted; }));
  EXPECT_EQ(transport_.Body(1)["ctx"]["attempt"], 0);
  EXPECT_EQ(transport_.Body(1)["steps"], Json::object());
  auto steps = Steps(run);
  ASSERT_EQ(steps.size(), 1u);
  EXPECT_EQ(steps[0].memo, Json({{"data", "B"}}));
  EXPECT_EQ(Attempts(run).size(), 1u);
}

TEST_F(ExecutorHarness, TheLeaseOfACallInFlightIsRenewed) {
  options_.lease = 300ms;  // renewed every 100 ms of real time, to the clock's now + 300 ms
  const std::string run = StartRun(kFunction);
  transport_.HoldReply(SdkReply(200, R"({"ok":true})"));
  StartExecutor();
  ASSERT_TRUE(RunUntil([&] { return transport_.calls() == 1; }));

  // Renewed after the clock moved, the lease ends 300 ms after the new now; unrenewed, it
  // would have ended 100 ms before the time another coordinator looks.
  clock_.Advance(200ms);
  const int renewed = queue_->calls(FailingQueue::kRenewLease);
  ASSERT_TRUE(RunUntil([&] { return queue_->calls(FailingQueue::kRenewLease) >= renewed + 2; }));
  auto taken = store_->Claim(1, clock_.Now() + 200ms, 30s);
  ASSERT_THAT(taken, IsOk());
  EXPECT_THAT(*taken, IsEmpty());

  transport_.Release();
  ASSERT_TRUE(RunUntil([&] { return Run(run).status == store::kCompleted; }));
  EXPECT_EQ(observer_.leases_lost, 0);
}

// A call whose lease ran out unrenewed (the database away) may see its item claimed again by
// its own coordinator. When the first call then finishes (its outcome refused), the new
// claim stays held: a drain gives it back at once. The first call forgot it, by item id, and
// other coordinators waited out its lease.
TEST_F(ExecutorHarness, AFinishedCallLeavesItsItemsNewClaimHeld) {
  options_.lease = 300ms;
  const std::string run = StartRun(kFunction);
  transport_.HoldReply(StepRunReply("first", "A"));  // the first call
  transport_.HoldReply(StepRunReply("first", "A"));  // the same item, claimed again
  StartExecutor();
  ASSERT_TRUE(RunUntil([&] { return transport_.calls() == 1; }));
  for (int n = 1; n <= 100; ++n) {
    queue_->FailNthCall(FailingQueue::kRenewLease, n, Unavailable("the database is away"));
  }
  clock_.Advance(1s);  // past the first call's lease, which is not renewed
  executor_->Wake();
  ASSERT_TRUE(RunUntil([&] { return transport_.calls() == 2; }));
  transport_.Release();  // the first call finishes: its outcome is refused
  ASSERT_TRUE(RunUntil([&] { return observer_.leases_lost == 1; }));

  executor_->Stop();
  executor_->ReleaseLeases();
  auto taken = store_->Claim(1, clock_.Now(), 30s);
  ASSERT_THAT(taken, IsOk());
  ASSERT_EQ(taken->size(), 1u) << "the second call's lease was not given back";
  EXPECT_EQ((*taken)[0].run_id, run);
  transport_.Release();
}

TEST_F(ExecutorHarness, ReleasingLeasesGivesAnUnfinishedCallBackAtOnceAsTheSameAttempt) {
  const std::string run = StartRun(kFunction);
  transport_.HoldReply(StepRunReply("first", "A"));
  StartExecutor();
  ASSERT_TRUE(RunUntil([&] { return transport_.calls() == 1; }));

  // A coordinator stopping with the call unfinished.
  executor_->Stop();
  executor_->ReleaseLeases();
  auto taken = store_->Claim(1, clock_.Now(), 30s);
  ASSERT_THAT(taken, IsOk());
  ASSERT_EQ(taken->size(), 1u);
  EXPECT_EQ((*taken)[0].run_id, run);
  EXPECT_EQ((*taken)[0].attempt, 0);

  // The late answer is dropped: the item is someone else's now.
  transport_.Release();
  ASSERT_TRUE(RunUntil([&] { return observer_.leases_lost == 1; }));
  EXPECT_THAT(Steps(run), IsEmpty());
}

TEST_F(ExecutorHarness, ReleasingLeasesGivesAKeptCallInFlightBackAtOnce) {
  const std::string run = StartRun(kFunction);
  transport_.Reply(StepRunReply("first", "A"));
  transport_.HoldReply(StepRunReply("second", "B"));
  StartExecutor();
  // The second call goes on from the first's record, on the item the claim leased.
  ASSERT_TRUE(RunUntil([&] { return transport_.calls() == 2; }));
  ASSERT_EQ(queue_->claimed(), 1);

  executor_->Stop();
  executor_->ReleaseLeases();
  auto taken = store_->Claim(1, clock_.Now(), 30s);
  ASSERT_THAT(taken, IsOk());
  ASSERT_EQ(taken->size(), 1u) << "the kept call is free at once, not after its lease";
  EXPECT_EQ((*taken)[0].run_id, run);
  EXPECT_EQ((*taken)[0].attempt, 0);

  transport_.Release();
  ASSERT_TRUE(RunUntil([&] { return observer_.leases_lost == 1; }));
  ASSERT_EQ(Steps(run).size(), 1u) << "the first step's record stays, the second is dropped";
}

TEST_F(ExecutorHarness, AClaimInProgressWhenTheExecutorStopsGivesItsItemsBackAndCallsNothing) {
  const std::string run = StartRun(kFunction);
  queue_->PauseClaims();
  StartExecutor();
  ASSERT_TRUE(RunUntil([&] { return queue_->calls(FailingQueue::kClaim) == 1; }));

  // The coordinator stops while its claim is on its way to the database; the claim lands
  // while the leases are being given back.
  executor_->Stop();
  std::thread late_claim([&] {
    std::this_thread::sleep_for(50ms);
    queue_->ResumeClaims();
  });
  executor_->ReleaseLeases();
  late_claim.join();
  // Whatever the claim's return leads to on the io_context happens now.
  for (const auto until = std::chrono::steady_clock::now() + 200ms;
       std::chrono::steady_clock::now() < until;) {
    if (io_.stopped()) io_.restart();
    io_.run_for(5ms);
  }

  EXPECT_EQ(queue_->claimed(), 1);  // the paused claim did take the item
  auto taken = store_->Claim(1, clock_.Now(), 30s);
  ASSERT_THAT(taken, IsOk());
  ASSERT_EQ(taken->size(), 1u);  // and it is free again at once, not after its lease
  EXPECT_EQ((*taken)[0].run_id, run);
  EXPECT_EQ((*taken)[0].attempt, 0);
  EXPECT_EQ(transport_.calls(), 0);
  EXPECT_EQ(executor_->in_flight(), 0);
}

TEST_F(ExecutorHarness, ARunGoesOnWithItsNextCallWithoutAClaim) {
  const std::string run = StartRun(kFunction);
  transport_.Reply(StepRunReply("first", "A"));
  transport_.Reply(StepRunReply("second", "B"));
  transport_.Reply(SdkReply(200, R"({"sum":"AB"})"));
  StartExecutor();
  ASSERT_TRUE(RunUntil([&] { return Run(run).status == store::kCompleted; }));

  EXPECT_EQ(transport_.calls(), 3);
  EXPECT_EQ(queue_->claimed(), 1) << "only the run's first call was claimed";
  EXPECT_EQ(queue_->calls(FailingQueue::kLoadRunState), 0)
      << "its state came with the claim, and then from each call's record";
  EXPECT_EQ(Steps(run).size(), 2u);
  EXPECT_EQ(transport_.Body(2)["steps"].size(), 2u);
  EXPECT_EQ(Attempts(run).size(), 2u);
  // The request version the first reply named (2) goes to the calls after it, and is the
  // ended run's.
  EXPECT_EQ(transport_.Body(0)["version"], -1);
  EXPECT_EQ(transport_.Body(1)["version"], 2);
  EXPECT_EQ(transport_.Body(2)["version"], 2);
  EXPECT_EQ(Run(run).req_version, 2);
  EXPECT_EQ(RunRowReqVersion(run), 2) << "written to the run's row by its end";
}

// A host that answers each call of a run without progress (here a discovery with only
// DiscoveryRequest: the run goes on at once, no step recorded, no attempt counted) was called
// in a loop as fast as it answered. After 16 such calls in a row the run's next call waits a
// second; a reply that records a step starts the count again.
TEST_F(ExecutorHarness, CallsInARowThatRecordNothingAreMadeAgainOnlyAfterAPause) {
  const std::string run = StartRun(kFunction);
  const std::string nothing = R"([{"id":"d","op":"DiscoveryRequest"}])";
  for (int i = 0; i < 32; ++i) transport_.Reply(SdkReply(206, nothing));
  StartExecutor();
  ASSERT_TRUE(RunUntil([&] { return transport_.calls() == 16; }));
  ASSERT_TRUE(RunClaimRounds(3));
  EXPECT_EQ(transport_.calls(), 16) << "the 17th call waits for its pause";
  EXPECT_EQ(Run(run).status, store::kRunning);

  clock_.Advance(999ms);
  ASSERT_TRUE(RunClaimRounds(3));
  EXPECT_EQ(transport_.calls(), 16);
  clock_.Advance(1ms);
  ASSERT_TRUE(RunUntil([&] { return transport_.calls() == 32; }));
  ASSERT_TRUE(RunClaimRounds(3));
  EXPECT_EQ(transport_.calls(), 32);

  // Progress resets the count: a step, then 15 more calls without, go on at once.
  transport_.Reply(StepRunReply("first", "A"));
  for (int i = 0; i < 15; ++i) transport_.Reply(SdkReply(206, nothing));
  transport_.Reply(SdkReply(200, R"("done")"));
  clock_.Advance(1s);
  ASSERT_TRUE(RunUntil([&] { return Run(run).status == store::kCompleted; }));
  EXPECT_EQ(transport_.calls(), 49);
  EXPECT_EQ(queue_->claimed(), 3);
  EXPECT_TRUE(Attempts(run).size() == 1u) << "only the step's attempt: no call failed";
}

// A run started at its ingest (store::StartedCalls, as intake does with the executor's
// reservation) is called at once with the state the ingest read: no claim, no load.
// A call carries its leased queue item (ctx.qi_id), by which the host checkpoints the steps
// it runs within the call. When the call's reply then records another step and the run goes
// on in place, the next call carries the checkpointed step too: the executor's view of the
// run lacks it, so it loads the run anew.
TEST_F(ExecutorHarness, StepsCheckpointedDuringACallReachTheRunsNextCall) {
  const std::string run = StartRun(kFunction);
  transport_.HoldReply(StepRunReply("second", "B"));
  StartExecutor();
  ASSERT_TRUE(RunUntil([&] { return transport_.calls() == 1; }));
  const Json ctx = transport_.Body(0)["ctx"];
  EXPECT_EQ(ctx["fn_id"], kFunction);
  auto item = executor::ParseQueueRef(ctx["qi_id"].get<std::string>(), run);
  ASSERT_THAT(item, IsOk());
  // The host ran "first" and checkpointed it (through whichever coordinator) before answering.
  const int64_t now = UnixMillis(clock_.Now());
  ASSERT_THAT(store_->Checkpoint(
                  *item, {{HashStepId("first"), 0, "first", "completed", {{"data", "A"}}, 0}},
                  {{HashStepId("first"), "first", 0, "completed", nullptr, now, now}}, clock_.Now(),
                  kAnySteps),
              IsOk());
  transport_.Reply(SdkReply(200, R"("AB")"));
  transport_.Release();
  ASSERT_TRUE(RunUntil([&] { return Run(run).status == store::kCompleted; }));
  ASSERT_EQ(transport_.calls(), 2);
  EXPECT_EQ(transport_.Body(1)["steps"], Json({{HashStepId("first"), {{"data", "A"}}},
                                               {HashStepId("second"), {{"data", "B"}}}}));
  EXPECT_EQ(transport_.Body(1)["ctx"]["stack"]["stack"],
            Json::array({HashStepId("first"), HashStepId("second")}));
  EXPECT_EQ(queue_->claimed(), 1);  // the second call was made in place
}

TEST_F(ExecutorHarness, ARunStartedAtItsIngestIsCalledWithoutAClaim) {
  transport_.Reply(StepRunReply("first", "A"));
  transport_.Reply(SdkReply(200, R"({"sum":"A"})"));
  StartExecutor();
  const std::string run = StartRunHere(kFunction);
  ASSERT_FALSE(run.empty());
  ASSERT_TRUE(RunUntil([&] { return Run(run).status == store::kCompleted; }));
  EXPECT_EQ(transport_.calls(), 2);
  EXPECT_EQ(transport_.Body(0)["event"]["data"]["n"], 1);
  EXPECT_EQ(queue_->claimed(), 0);
  EXPECT_EQ(queue_->calls(FailingQueue::kLoadRunState), 0);
  ASSERT_TRUE(RunUntil([&] { return executor_->in_flight() == 0; }));
}

// Call slots taken for an ingest (or a claim) under way are slots in use, which a drain waits
// for, but no call: the funcky_calls_in_flight gauge (calls_in_flight) leaves them out.
TEST_F(ExecutorHarness, SlotsTakenForAnIngestUnderWayAreNoCallsInFlight) {
  options_.poll_interval = 1h;  // only a wake claims
  StartExecutor();
  ASSERT_TRUE(RunClaimRounds(1));  // the executor's first look, at its start
  ASSERT_TRUE(RunUntil([&] { return executor_->in_flight() == 0; }));
  const int slots = executor_->ReserveCalls(3);
  ASSERT_EQ(slots, 3);
  EXPECT_EQ(executor_->in_flight(), 3);
  EXPECT_EQ(executor_->calls_in_flight(), 0);
  executor_->StartCalls(store::StartedCalls{}, slots);  // the ingest started none
  EXPECT_EQ(executor_->in_flight(), 0);
  EXPECT_EQ(executor_->calls_in_flight(), 0);
}

// The end of a run outside a lane and any concurrency limit leaves nothing due: no claim
// follows it (before, each run ended with a claim and a look for the next visible item). The
// end of a lane's head does wake a claim, for the lane's next run, long before any poll.
TEST_F(ExecutorHarness, TheEndOfARunNothingWaitsBehindStartsNoClaimAndALanesEndDoes) {
  options_.poll_interval = 1h;  // only a wake claims
  // Fewer call slots than a claim takes: a claim that may fill all of them is not short.
  options_.max_in_flight = 2;
  transport_.Reply(SdkReply(200, R"("alone")"));
  StartExecutor();
  ASSERT_TRUE(RunClaimRounds(1));  // the executor's first look, at its start, which holds
  ASSERT_TRUE(RunUntil([&] { return executor_->in_flight() == 0; }));  // both slots until done
  const int claims = queue_->calls(FailingQueue::kClaim);
  const std::string run = StartRunHere(kFunction);
  ASSERT_FALSE(run.empty());
  ASSERT_TRUE(RunUntil([&] { return executor_->in_flight() == 0; }));
  EXPECT_EQ(Run(run).status, store::kCompleted);
  io_.run_for(100ms);
  EXPECT_EQ(queue_->calls(FailingQueue::kClaim), claims);

  // Two runs of one lane: the head's end, once the executor has gone idle (its call held
  // until then), makes the second due, and the claim it wakes finds it.
  const std::string head = StartRun(kOrdered, "k");
  const std::string second = StartRun(kOrdered, "k");
  transport_.HoldReply(SdkReply(200, R"("head")"));
  transport_.Reply(SdkReply(200, R"("second")"));
  executor_->Wake();  // as the ingest does
  ASSERT_TRUE(RunUntil([&] { return transport_.calls() == 2; }));
  ASSERT_TRUE(RunClaimRounds(1));  // the look after the head's claim finds nothing due
  transport_.Release();
  ASSERT_TRUE(RunUntil([&] { return Run(second).status == store::kCompleted; }));
  EXPECT_EQ(Run(head).status, store::kCompleted);
}

// An executor with 8 call slots and claims of 8 (a quarter of a claim: 2 slots), started with
// `runs` runs queued whose calls the host holds until released: its slots fill. Its calls
// count as slow from 1 ms on (claim_gather_past), and each is held longer than that.
class GatheringExecutor : public ExecutorHarness {
 protected:
  void StartFull(int runs, std::chrono::milliseconds claim_gather,
                 std::chrono::milliseconds claim_gather_past = 1ms) {
    options_.max_in_flight = 8;
    options_.claim_batch = 8;
    options_.claim_gather = claim_gather;
    options_.claim_gather_past = claim_gather_past;
    options_.poll_interval = 1h;
    for (int i = 0; i < runs; ++i) {
      StartRun(kFunction);
      transport_.HoldReply(SdkReply(200, R"("done")"));
    }
    StartExecutor();
    ASSERT_TRUE(RunUntil([&] { return transport_.held() == 8; }));
    io_.run_for(5ms);  // each call held at least this long
  }
  // Releases one held call and expects the slot it frees to be claimed alone (one claim, the
  // ninth call), then lets the 9 runs end.
  void ExpectAFreedSlotClaimedAlone() {
    const int claims = queue_->calls(FailingQueue::kClaim);
    transport_.Release();
    ASSERT_TRUE(RunUntil([&] { return transport_.calls() == 9; }));
    EXPECT_EQ(queue_->calls(FailingQueue::kClaim), claims + 1);
    ReleaseAll(9);
  }
  // Releases the held calls one by one until `runs` runs have ended.
  void ReleaseAll(size_t runs) {
    ASSERT_TRUE(RunUntil([&] {
      if (transport_.held() > 0) transport_.Release();
      return observer_.run_ends.size() == runs;
    }));
  }
};

// A nearly full executor (its host holds nearly max_in_flight calls) claims the slots its
// calls' ends free together: the first slot freed waits up to claim_gather for a quarter of a
// claim's worth. With a slow host, each call's end used to claim one item, a transaction each.
TEST_F(GatheringExecutor, ANearlyFullExecutorClaimsTheSlotsItsCallsFreeTogether) {
  StartFull(12, 1h);  // the test decides when slots free, not the clock
  const int claims = queue_->calls(FailingQueue::kClaim);
  const int claimed = queue_->claimed();
  transport_.Release();  // one slot: too few to claim
  ASSERT_TRUE(RunUntil([&] { return executor_->in_flight() == 7; }));
  io_.run_for(100ms);
  EXPECT_EQ(queue_->calls(FailingQueue::kClaim), claims);
  EXPECT_EQ(transport_.calls(), 8);
  transport_.Release();  // two: claimed together
  ASSERT_TRUE(RunUntil([&] { return transport_.calls() == 10; }));
  EXPECT_EQ(queue_->calls(FailingQueue::kClaim), claims + 1);
  EXPECT_EQ(queue_->claimed(), claimed + 2);
  ReleaseAll(12);
  EXPECT_EQ(transport_.calls(), 12);
}

// Calls quicker than claim_gather_past are not held back: a slot their end frees is claimed
// at once, however few are free.
TEST_F(GatheringExecutor, TheSlotsOfQuickCallsAreClaimedAtOnce) {
  StartFull(9, 1h, /*claim_gather_past=*/1h);  // were it gathered, it would wait an hour
  ExpectAFreedSlotClaimedAlone();
}

// A slot freed while the executor is nearly full is claimed once claim_gather has passed,
// however few are free.
TEST_F(GatheringExecutor, ASlotGatheredIsClaimedOnceClaimGatherHasPassed) {
  StartFull(9, 30ms);
  ExpectAFreedSlotClaimedAlone();
}

// Reservations for runs started at ingest share max_in_flight with claims; the unused part
// is freed by StartCalls, and a stopped executor reserves nothing.
TEST_F(ExecutorHarness, ReservedCallSlotsCountAgainstMaxInFlight) {
  options_.max_in_flight = 2;
  StartExecutor();
  const int two = executor_->ReserveCalls(5);
  EXPECT_EQ(two, 2);
  EXPECT_EQ(executor_->ReserveCalls(1), 0) << "full";
  EXPECT_EQ(executor_->in_flight(), 2);
  executor_->StartCalls({}, two);  // an ingest that started nothing (or failed)
  EXPECT_EQ(executor_->in_flight(), 0);
  const int one = executor_->ReserveCalls(1);
  EXPECT_EQ(one, 1);
  executor_->StartCalls({}, one);
  executor_->Stop();
  EXPECT_EQ(executor_->ReserveCalls(1), 0) << "stopping";
}

TEST_F(ExecutorHarness, AStoppingExecutorGivesBackTheNextCallOfARunInsteadOfMakingIt) {
  const std::string run = StartRun(kFunction);
  transport_.HoldReply(StepRunReply("first", "A"));
  StartExecutor();
  ASSERT_TRUE(RunUntil([&] { return transport_.calls() == 1; }));

  executor_->Stop();
  transport_.Release();  // the step is recorded; the run's next call is due now
  ASSERT_TRUE(RunUntil([&] { return executor_->in_flight() == 0; }));
  EXPECT_EQ(transport_.calls(), 1);
  ASSERT_EQ(Steps(run).size(), 1u);
  // Free for another coordinator at once, not after a lease.
  auto taken = store_->Claim(1, clock_.Now(), 30s);
  ASSERT_THAT(taken, IsOk());
  ASSERT_EQ(taken->size(), 1u);
  EXPECT_EQ((*taken)[0].run_id, run);
  EXPECT_EQ((*taken)[0].step_id, kDiscoveryStepId);
}

TEST_F(ExecutorHarness, AnApplyRefusedForALostLeaseIsDroppedNotRetried) {
  const std::string run = StartRun(kFunction);
  queue_->FailNthCall(FailingQueue::kApply, 1, Aborted("lease lost to another claimer"));
  transport_.Reply(StepRunReply("first", "A"));
  StartExecutor();
  ASSERT_TRUE(RunUntil([&] { return observer_.leases_lost == 1; }));
  // Other claim rounds pass: the dropped outcome is not written again by this executor.
  ASSERT_TRUE(RunClaimRounds(3));
  EXPECT_EQ(queue_->calls(FailingQueue::kApply), 1);
  EXPECT_THAT(Steps(run), IsEmpty());
  EXPECT_THAT(Attempts(run), IsEmpty());
  EXPECT_EQ(transport_.calls(), 1);
}

// A call whose handling throws (no status says why: it may throw again) is given back, not
// made again at once in a loop against the host: it waits 10 s.
TEST_F(ExecutorHarness, ACallWhoseHandlingThrowsIsMadeAgainOnlyAfterAPause) {
  const std::string run = StartRun(kFunction);
  queue_->ThrowOnNthCall(FailingQueue::kApply, 1);
  transport_.Reply(StepRunReply("first", "A"));
  transport_.Reply(StepRunReply("first", "A"));
  transport_.Reply(SdkReply(200, R"({"ok":true})"));
  StartExecutor();
  ASSERT_TRUE(RunUntil([&] { return queue_->calls(FailingQueue::kReleaseLeases) == 1; }));
  ASSERT_TRUE(RunClaimRounds(3));
  EXPECT_EQ(transport_.calls(), 1) << "made again before the pause";
  EXPECT_THAT(Steps(run), IsEmpty());
  clock_.Advance(9s);
  ASSERT_TRUE(RunClaimRounds(2));
  EXPECT_EQ(transport_.calls(), 1) << "made again before the pause";
  clock_.Advance(1s);
  executor_->Wake();
  ASSERT_TRUE(RunUntil([&] { return Run(run).status == store::kCompleted; }));
  EXPECT_EQ(transport_.calls(), 3);
}

// A claim that throws does not end the claim loop (a coordinator that answers its API but
// makes no call): it is logged, and the loop goes on.
TEST_F(ExecutorHarness, AClaimThatThrowsLeavesTheClaimLoopRunning) {
  const std::string run = StartRun(kFunction);
  queue_->ThrowOnNthCall(FailingQueue::kClaim, 1);
  transport_.Reply(SdkReply(200, R"({"ok":true})"));
  StartExecutor();
  ASSERT_TRUE(RunUntil([&] { return Run(run).status == store::kCompleted; }));
  EXPECT_GE(queue_->calls(FailingQueue::kClaim), 2);
  EXPECT_EQ(transport_.calls(), 1);
}

TEST_F(ExecutorHarness, AnApplyFailingTransientlyIsRetriedAndTheOutcomeWrittenOnce) {
  const std::string run = StartRun(kFunction);
  queue_->FailNthCall(FailingQueue::kApply, 1, Unavailable("connection lost"));
  transport_.Reply(StepRunReply("first", "A"));
  transport_.Reply(SdkReply(200, R"({"ok":true})"));
  StartExecutor();
  ASSERT_TRUE(RunUntil([&] { return Run(run).status == store::kCompleted; }));

  // Applied by the same holder, without calling the host again.
  EXPECT_EQ(transport_.calls(), 2);
  EXPECT_EQ(queue_->calls(FailingQueue::kApply), 3);
  EXPECT_EQ(Steps(run).size(), 1u);
  ASSERT_EQ(Attempts(run).size(), 1u);
  EXPECT_EQ(Attempts(run)[0].outcome, "completed");
  EXPECT_EQ(observer_.leases_lost, 0);
}

TEST_F(ExecutorHarness, ALoadFailingTransientlyIsRetriedAndTheRunGoesOn) {
  const std::string run = StartRun(kFunction);
  queue_->WithholdClaimStates();  // the call's state is loaded, not read by the claim
  queue_->FailNthCall(FailingQueue::kLoadRunState, 1, Unavailable("database restarting"));
  transport_.Reply(SdkReply(200, R"({"ok":true})"));
  StartExecutor();
  ASSERT_TRUE(RunUntil([&] { return Run(run).status == store::kCompleted; }));
  EXPECT_EQ(queue_->calls(FailingQueue::kLoadRunState), 2);
  EXPECT_EQ(transport_.calls(), 1);
}

// A blocked lane head's call whose holder died (its lease ran out) is not made again: the
// head waits for an operator, and the call's outcome would be dropped (it was made to the
// host again, a side effect repeated for nothing).
TEST_F(ExecutorHarness, ABlockedHeadsCallWhoseHolderDiedIsNotMadeAgain) {
  const std::string head = StartRun(kOrdered, "k");
  auto first = store_->Claim(1, clock_.Now(), 30s);
  ASSERT_THAT(first, IsOk());
  ASSERT_EQ(first->size(), 1u);
  store::Transition planned;  // two parallel steps
  planned.move = store::Transition::Continue{.next = {{"p1", clock_.Now()}, {"p2", clock_.Now()}}};
  ASSERT_THAT(store_->Apply((*first)[0], planned, clock_.Now()), IsOk());
  auto both = store_->Claim(2, clock_.Now(), 30s);
  ASSERT_THAT(both, IsOk());
  ASSERT_EQ(both->size(), 2u);
  store::Transition park;  // one fails for good: the head is blocked
  park.move = store::Transition::Park{{{"message", "no"}}};
  ASSERT_THAT(store_->Apply((*both)[0], park, clock_.Now()), IsOk());
  ASSERT_EQ(Run(head).status, store::kBlocked);
  clock_.Advance(31s);  // the other call's holder died: its lease ran out
  StartExecutor();
  ASSERT_TRUE(RunUntil([&] { return queue_->calls(FailingQueue::kApply) >= 1; }));
  ASSERT_TRUE(RunClaimRounds(2));
  EXPECT_EQ(transport_.calls(), 0);
  EXPECT_EQ(Run(head).status, store::kBlocked);
  auto left = store_->Claim(10, clock_.Now() + 1h, 30s);
  ASSERT_THAT(left, IsOk());
  EXPECT_TRUE(left->empty()) << "the call's item was not dropped";
}

TEST_F(ExecutorHarness, AnOrderedRunFailingForGoodBlocksItsLaneAndNotOtherLanes) {
  const std::string head = StartRun(kOrdered, "k");
  const std::string next = StartRun(kOrdered, "k");
  transport_.Reply(SdkReply(500, kServerError));  // no retries: the run fails at once
  StartExecutor();
  ASSERT_TRUE(RunUntil([&] { return Run(head).status == store::kBlocked; }));
  EXPECT_EQ(Run(head).error["message"], "the database is down");
  EXPECT_FALSE(Run(head).ended_at_ms);

  // However much time passes, the later run of the key is not claimed.
  clock_.Advance(1h);
  ASSERT_TRUE(RunClaimRounds(3));
  EXPECT_EQ(Run(next).status, store::kQueued);
  EXPECT_EQ(queue_->claimed(), 1);
  EXPECT_EQ(transport_.calls(), 1);
  ASSERT_TRUE(RunUntil([&] { return !observer_.run_ends.empty(); }));
  EXPECT_THAT(observer_.run_ends, ElementsAre(store::kBlocked));

  // A run of another key flows past it.
  const std::string other = StartRun(kOrdered, "other");
  transport_.Reply(SdkReply(200, R"({"ok":true})"));
  ASSERT_TRUE(RunUntil([&] { return Run(other).status == store::kCompleted; }));
  EXPECT_EQ(Run(next).status, store::kQueued);
}

}  // namespace
}  // namespace funcky::mid
