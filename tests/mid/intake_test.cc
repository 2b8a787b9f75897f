// Intake against a real SQLite store (tests/mid/harness.h), without an executor: the test
// plays the executor's part step by step, to put events and waits in an order that a live
// system only reaches under load or after a crash.
#include <thread>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "coordinator/executor/transition.h"
#include "coordinator/intake/intake.h"
#include "tests/mid/harness.h"
#include "tests/support/status_matchers.h"

namespace funcky::mid {
namespace {

using namespace std::chrono_literals;
using testing::IsOk;

class IntakeHarness : public ExecutorHarness {
 protected:
  void SetUp() override {
    ExecutorHarness::SetUp();
    ASSERT_NE(store_, nullptr);
    intake_ = std::make_unique<intake::Intake>(*store_, clock_, 0ms, [] {});
  }

  void TearDown() override {
    if (intake_) intake_->Stop();
    intake_.reset();
    ExecutorHarness::TearDown();
  }

  // The item of `run_id` among those due now, leased to the test.
  store::QueueItem ClaimItemOf(const std::string& run_id) {
    auto claimed = store_->Claim(10, clock_.Now(), 30s);
    EXPECT_THAT(claimed, IsOk());
    if (!claimed.ok()) return {};
    for (const store::QueueItem& item : *claimed) {
      if (item.run_id == run_id) return item;
    }
    ADD_FAILURE() << "no item of run " << run_id << " is due";
    return {};
  }

  std::unique_ptr<intake::Intake> intake_;
};

// The invoke wait a caller run's step "call-it" registers for a run of `function_id`.
store::NewWait InvokeWait(const std::string& caller, const std::string& function_id,
                          TimePoint now) {
  const std::string correlation = executor::CorrelationId(caller, "call-it");
  store::NewWait wait;
  wait.step_id = "call-it";
  wait.name = "call it";
  wait.event_name = executor::kFunctionFinished;
  wait.expression = "async.data.correlation_id == \"" + correlation + "\"";
  wait.kind = store::kWaitInvoke;
  wait.expires_at = now + 1h;
  wait.timeout_memo = {{"error", {{"name", "InngestInvokeTimeoutError"}}}};
  wait.invoke = {
      {"function_id", function_id}, {"data", {{"n", 2}}}, {"correlation_id", correlation}};
  return wait;
}

TEST_F(IntakeHarness, AnInvokeWaitStoredAfterTheInvokedRunsEndWasAnnouncedResumesWithIt) {
  const std::string caller = StartRun(kFunction);
  const store::QueueItem caller_item = ClaimItemOf(caller);
  auto state = store_->LoadRunState(caller);
  ASSERT_THAT(state, IsOk());
  store::NewWait wait = InvokeWait(caller, kFunction, clock_.Now());
  ASSERT_THAT(intake_->StartInvocation(*state, wait), IsOk());

  // The invoked run ends, and its end is announced, before the caller's wait is stored
  // (the caller's transaction is slow, or its call is redone after a crash).
  auto callees = store_->ListRuns({.event_id = "", .limit = 10});
  ASSERT_THAT(callees, IsOk());
  std::string callee;
  for (const store::RunRecord& r : *callees) {
    if (r.id != caller) callee = r.id;
  }
  ASSERT_FALSE(callee.empty());
  store::Transition end;
  end.move = store::Transition::End{store::kCompleted, {{"doubled", 4}}, nullptr};
  ASSERT_THAT(store_->Apply(ClaimItemOf(callee), end, clock_.Now()), IsOk());
  intake_->AnnounceEnd(callee);
  const auto give_up = std::chrono::steady_clock::now() + 10s;
  while (!store_->FindEventById(callee + "-finished").ok()) {
    ASSERT_LT(std::chrono::steady_clock::now(), give_up) << "the end was never announced";
    std::this_thread::sleep_for(10ms);
  }

  clock_.Advance(5s);
  wait.lookback_from = clock_.Now();
  store::Transition waiting;
  waiting.move = store::Transition::Continue{.waits = {wait}, .run_status = store::kWaiting};
  ASSERT_THAT(store_->Apply(caller_item, waiting, clock_.Now()), IsOk());
  intake_->WaitRegistered(*state, wait, UnixMillis(*wait.lookback_from));

  // Resumed at once with the invoked run's result, not at the wait's timeout an hour on.
  auto resumed = store_->Claim(10, clock_.Now(), 30s);
  ASSERT_THAT(resumed, IsOk());
  ASSERT_EQ(resumed->size(), 1u);
  EXPECT_EQ((*resumed)[0].run_id, caller);
  ASSERT_TRUE((*resumed)[0].resume.has_value());
  EXPECT_EQ((*(*resumed)[0].resume)["memo"], store::Json({{"data", {{"doubled", 4}}}}));
}

}  // namespace
}  // namespace funcky::mid
