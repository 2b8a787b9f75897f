// Intake against a real SQLite store (tests/mid/harness.h), without an executor: the test
// plays the executor's part step by step, to put events and waits in an order that a live
// system only reaches under load or after a crash.
#include <algorithm>
#include <limits>
#include <optional>
#include <set>
#include <thread>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "common/duration.h"
#include "common/ulid.h"
#include "coordinator/executor/transition.h"
#include "coordinator/intake/cron_ticker.h"
#include "coordinator/intake/intake.h"
#include "coordinator/store/sql/databases.h"
#include "tests/mid/harness.h"
#include "tests/support/status_matchers.h"

namespace funcky::mid {
namespace {

using namespace std::chrono_literals;
using testing::IsOk;
using testing::StatusIs;

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

  // Stores, as run `run`'s call does, a wait "paid" for test/paid (or step `step` for
  // `event_name`) with `expression`, looking back from `lookback_from`; returns it.
  store::NewWait WaitForPaid(const std::string& run, TimePoint lookback_from,
                             const std::string& expression = "",
                             const std::string& event_name = "test/paid",
                             const std::string& step = "paid") {
    store::NewWait wait;
    wait.step_id = step;
    wait.name = step;
    wait.event_name = event_name;
    wait.expression = expression;
    if (!expression.empty()) {  // its key, as the executor gives it (the `if` names no `event`)
      wait.match_key =
          (*expr::Compile(expression))->RequiredKey("async", expr::Variables{{"event", nullptr}});
    }
    wait.kind = store::kWaitEvent;
    wait.expires_at = clock_.Now() + 1h;
    wait.timeout_memo = nullptr;
    wait.lookback_from = lookback_from;
    store::Transition waiting;
    waiting.move = store::Transition::Continue{.waits = {wait}, .run_status = store::kWaiting};
    EXPECT_THAT(store_->Apply(ClaimItemOf(run), waiting, clock_.Now()), IsOk());
    return wait;
  }

  // WaitForPaid registered now, with its look-backs behind it (LookbackDone): only events
  // that come after it meet it.
  store::NewWait WaitedForPaid(const std::string& run, const std::string& expression = "") {
    store::NewWait wait = WaitForPaid(run, clock_.Now(), expression);
    EXPECT_THAT(store_->LookbackDone(run, "paid"), IsOk());
    return wait;
  }

  // `count` more waits of run `run` for test/paid with the `if` `expression`, written to the
  // database at once; with `every_other_keyed`, every other one has a key no event has.
  void AddWaits(const std::string& run, int count, const std::string& expression,
                bool every_other_keyed) {
    auto db = store::OpenSqliteDatabase({.path = dir_ + "/funcky.db"});
    ASSERT_THAT(db, IsOk());
    ASSERT_THAT((*db)->Transact([&](store::sql::Tx& tx) {
      tx.Exec(
          "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < $1) "
          "INSERT INTO waits (run_id, step_id, function_id, event_name, expression, kind, "
          "created_at_ms, expires_at_ms, match_key) SELECT $2, 'more-' || i, $3, 'test/paid', "
          "$4, 'event', $5, $6, CASE WHEN $7 AND i % 2 = 0 THEN 'other-' || i END FROM n",
          {count, run, std::string(kFunction), expression, UnixMillis(clock_.Now()),
           UnixMillis(clock_.Now() + 1h), every_other_keyed});
      return Status::Ok();
    }),
                IsOk());
  }

  // The calls due now are one: run `run`'s, its wait resumed by the event whose id is
  // `event_id`.
  void ExpectOnlyResumed(const std::string& run, const std::string& event_id) {
    auto resumed = store_->Claim(10, clock_.Now(), 30s);
    ASSERT_THAT(resumed, IsOk());
    ASSERT_EQ(resumed->size(), 1u);
    EXPECT_EQ((*resumed)[0].run_id, run);
    ASSERT_TRUE((*resumed)[0].resume.has_value());
    EXPECT_EQ((*(*resumed)[0].resume)["memo"]["id"], event_id);
  }

  // Whether the wait outbox is empty within `timeout` of real time (the sweep runs on its own
  // thread, once a second).
  bool ResumesDone(std::chrono::milliseconds timeout) {
    const auto give_up = std::chrono::steady_clock::now() + timeout;
    for (;;) {
      auto pending = store_->PendingResumes(0, 10);
      EXPECT_THAT(pending, IsOk());
      if (!pending.ok()) return false;
      if (pending->empty()) return true;
      if (std::chrono::steady_clock::now() > give_up) return false;
      std::this_thread::sleep_for(20ms);
    }
  }

  std::unique_ptr<intake::Intake> intake_;
};

// App `app` with one function, "<app>-fn", triggered by `event`: a sync's content.
store::AppSync OneFunctionApp(const std::string& app, const std::string& event) {
  store::AppSync sync;
  sync.app = {app, "http://127.0.0.1:1/api", "cpp", "", app + "-1", 0, 0};
  store::FunctionRecord fn;
  fn.id = app + "-fn";
  fn.app_id = app;
  fn.name = fn.id;
  fn.config = {{"id", fn.id},
               {"triggers", {{{"event", event}}}},
               {"steps", {{"step", {{"runtime", {{"url", "http://127.0.0.1:1/api"}}}}}}}};
  sync.functions.push_back(std::move(fn));
  return sync;
}

// App "cancellable": its function starts on test/start, and test/stop cancels its runs.
store::AppSync CancellableApp() {
  store::AppSync sync = OneFunctionApp("cancellable", "test/start");
  sync.functions[0].config["cancel"] = store::Json::array({{{"event", "test/stop"}}});
  return sync;
}

// The invoke wait a caller run's step "call-it" registers for a run of `function_id`.
store::NewWait InvokeWait(const std::string& caller, const std::string& function_id, TimePoint now,
                          const std::string& step_id = "call-it") {
  const std::string correlation = executor::CorrelationId(caller, step_id);
  store::NewWait wait;
  wait.step_id = step_id;
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

// An event as a sender's request brings it (`name`, no data, its `id` and `ts`), received at
// `now_ms`.
intake::IncomingEvent SentEvent(const std::string& name, const std::string& id, int64_t ts,
                                int64_t now_ms, store::Json data = store::Json::object()) {
  return {{{"name", name}, {"data", std::move(data)}, {"id", id}, {"ts", ts}}, NewUlid(now_ms)};
}

// An invocation of a function that a sync (here another coordinator's) dropped after the
// invoker's coordinator last read its functions fails at once, nothing stored: the ingest
// reads the functions anew and finds no function to start. The event was stored with no run,
// and the invoker waited for its timeout, a year by default.
TEST_F(IntakeHarness, AnInvocationOfAFunctionASyncJustDroppedFailsAtOnce) {
  intake::Intake cached(*store_, clock_, std::chrono::seconds(1), [] {});
  store::AppSync sync = OneFunctionApp("gone", "test/gone");
  ASSERT_THAT(store_->SyncApp(sync), IsOk());
  const std::string caller = StartRun(kFunction);
  auto state = store_->LoadRunState(caller);
  ASSERT_THAT(state, IsOk());
  ASSERT_THAT(cached.Functions(/*refresh=*/true), IsOk());  // its cache holds gone-fn
  sync.functions.clear();
  sync.app.checksum = "gone-2";
  ASSERT_THAT(store_->SyncApp(sync), IsOk());
  const store::NewWait wait = InvokeWait(caller, "gone-fn", clock_.Now());
  EXPECT_THAT(cached.StartInvocation(*state, wait), StatusIs(StatusCode::kNotFound));
  EXPECT_FALSE(
      store_->FindEventById(executor::InvokedEventId(executor::CorrelationId(caller, "call-it")))
          .ok())
      << "the invocation's event was stored";
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
  while (!store_->FindEventById(executor::FinishedEventId(callee)).ok()) {
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

// A gate of the callee that refuses the invoked run fails the invocation at once, saying why,
// rather than leaving the invoker waiting for a run that never ends until its timeout; the
// same invocation redone (a duplicate) gets the same answer, and the one admitted stays so.
TEST_F(IntakeHarness, AnInvocationTheCalleesGateRefusesFailsAtOnceAndWhenRedone) {
  const std::vector<std::pair<store::Json, std::string>> gates = {
      {{{"rateLimit", {{"limit", 1}, {"period", "1m"}}}}, "its rateLimit refused the run"},
      {{{"idempotency", "event.data.n"}}, "a run with its idempotency key started within 24 hours"},
      {{{"singleton", {{"mode", "skip"}}}}, "a run of its singleton key is active (mode skip)"}};
  const std::string caller = StartRun(kFunction);
  auto state = store_->LoadRunState(caller);
  ASSERT_THAT(state, IsOk());
  for (size_t g = 0; g < gates.size(); ++g) {
    const std::string app = "gated" + std::to_string(g);
    store::AppSync sync = OneFunctionApp(app, "test/" + app);
    sync.functions[0].config.update(gates[g].first);
    ASSERT_THAT(store_->SyncApp(sync), IsOk());
    const std::string callee = app + "-fn";
    const store::NewWait first = InvokeWait(caller, callee, clock_.Now(), app + "-first");
    const store::NewWait second = InvokeWait(caller, callee, clock_.Now(), app + "-second");
    ASSERT_THAT(intake_->StartInvocation(*state, first), IsOk()) << callee;
    for (int redo = 0; redo < 2; ++redo) {
      Status refused = intake_->StartInvocation(*state, second);
      EXPECT_EQ(refused.code(), StatusCode::kFailedPrecondition)
          << callee << ": " << refused.ToString();
      EXPECT_EQ(refused.message(),
                "function \"" + callee + "\" was not invoked: " + gates[g].second);
    }
    EXPECT_THAT(intake_->StartInvocation(*state, first), IsOk()) << callee << " (redone)";
    auto runs = store_->ListRuns({.function_id = callee, .limit = 10});
    ASSERT_THAT(runs, IsOk());
    EXPECT_EQ(runs->size(), 1u) << callee;
  }
}

// A callee whose lane orders by the producer's numbers starts no run for an invocation whose
// number is a duplicate or stale: the invocation fails at once, saying why, also when redone,
// rather than leaving the invoker waiting until its timeout. With stale: "run" a stale number
// runs, and its invocation goes on.
TEST_F(IntakeHarness, AnInvocationTheCalleesSequenceLaneTurnsAwayFailsAtOnceAndWhenRedone) {
  store::AppSync sync = OneFunctionApp("numbered", "test/numbered");
  sync.functions[0].config["ordering"] = {{"key", "event.data.tenant"},
                                          {"sequence", "event.data.version"},
                                          {"gap_timeout", "30s"},
                                          {"start", 1}};
  ASSERT_THAT(store_->SyncApp(sync), IsOk());
  const std::string caller = StartRun(kFunction);
  auto state = store_->LoadRunState(caller);
  ASSERT_THAT(state, IsOk());
  auto invoke = [&](const std::string& step, int64_t version) {
    store::NewWait wait = InvokeWait(caller, "numbered-fn", clock_.Now(), step);
    wait.invoke["data"] = {{"tenant", "t"}, {"version", version}};
    return intake_->StartInvocation(*state, wait);
  };
  ASSERT_THAT(invoke("first", 1), IsOk());
  auto runs = store_->ListRuns({.function_id = "numbered-fn", .limit = 10});
  ASSERT_THAT(runs, IsOk());
  ASSERT_EQ(runs->size(), 1u);
  const std::string first = (*runs)[0].id;

  struct Refused {
    std::string step;
    int64_t version;
    std::string why;
  };
  const std::vector<Refused> refused = {
      {"again", 1, "its sequence number 1 is a duplicate (run " + first + " has it)"},
      {"stale", 0, "its sequence number 0 is stale (below the next number its lane expects)"}};
  for (const Refused& r : refused) {
    for (int redo = 0; redo < 2; ++redo) {
      Status s = invoke(r.step, r.version);
      EXPECT_EQ(s.code(), StatusCode::kFailedPrecondition) << r.step << ": " << s.ToString();
      EXPECT_EQ(s.message(), "function \"numbered-fn\" was not invoked: " + r.why) << r.step;
    }
  }
  EXPECT_THAT(invoke("first", 1), IsOk()) << "redone";
  runs = store_->ListRuns({.function_id = "numbered-fn", .limit = 10});
  ASSERT_THAT(runs, IsOk());
  EXPECT_EQ(runs->size(), 1u);

  sync.app.checksum = "numbered-2";
  sync.functions[0].config["ordering"]["stale"] = "run";
  ASSERT_THAT(store_->SyncApp(sync), IsOk());
  EXPECT_THAT(invoke("stale-runs", 0), IsOk());
  runs = store_->ListRuns({.function_id = "numbered-fn", .limit = 10});
  ASSERT_THAT(runs, IsOk());
  EXPECT_EQ(runs->size(), 2u);
  // A redone invocation gets what its number became, whatever the policy is now: the stale one
  // refused before stays refused (it has no run to wait for), and the one that ran goes on
  // after a sync turned stale numbers away again.
  EXPECT_EQ(invoke("stale", 0).code(), StatusCode::kFailedPrecondition);
  sync.app.checksum = "numbered-3";
  sync.functions[0].config["ordering"]["stale"] = "skip";
  ASSERT_THAT(store_->SyncApp(sync), IsOk());
  EXPECT_THAT(invoke("stale-runs", 0), IsOk()) << "redone";
  runs = store_->ListRuns({.function_id = "numbered-fn", .limit = 10});
  ASSERT_THAT(runs, IsOk());
  EXPECT_EQ(runs->size(), 2u);
}

// An invocation is not debounced: each invoker's event gets a run of its own, which is what
// the invoker waits for (debounced, a later invocation's event took the pending run and the
// earlier invoker waited until its timeout).
TEST_F(IntakeHarness, InvocationsOfADebouncedFunctionEachGetTheirOwnRun) {
  store::AppSync sync = OneFunctionApp("debounced", "test/debounced");
  sync.functions[0].config["debounce"] = {{"period", "1m"}};
  ASSERT_THAT(store_->SyncApp(sync), IsOk());
  const std::string caller = StartRun(kFunction);
  auto state = store_->LoadRunState(caller);
  ASSERT_THAT(state, IsOk());
  std::set<std::string> events;
  for (const std::string step : {"one", "two"}) {
    ASSERT_THAT(
        intake_->StartInvocation(*state, InvokeWait(caller, "debounced-fn", clock_.Now(), step)),
        IsOk());
    auto invoked =
        store_->FindEventById(executor::InvokedEventId(executor::CorrelationId(caller, step)));
    ASSERT_THAT(invoked, IsOk());
    auto runs = store_->ListRuns({.event_id = invoked->internal_id, .limit = 10});
    ASSERT_THAT(runs, IsOk());
    EXPECT_EQ(runs->size(), 1u) << step;
    events.insert(invoked->internal_id);
    clock_.Advance(1s);
  }
  auto runs = store_->ListRuns({.function_id = "debounced-fn", .limit = 10});
  ASSERT_THAT(runs, IsOk());
  EXPECT_EQ(runs->size(), 2u);
  for (const store::RunRecord& r : *runs) EXPECT_EQ(events.count(r.event_id), 1u) << r.id;
}

// A cancel_on event cancels the runs there were when it came: a run from an earlier request,
// not one its own request starts (before or after it in the request); a run created after it
// is left to a later cancel event.
TEST_F(IntakeHarness, ACancelEventCancelsOnlyTheRunsThereWereWhenItCame) {
  ASSERT_THAT(store_->SyncApp(CancellableApp()), IsOk());
  int sent = 0;
  // Ingests one request of events named `names`; the internal ids of its test/start events.
  auto ingest = [&](const std::vector<std::string>& names) {
    std::vector<intake::IncomingEvent> events;
    for (const std::string& name : names) {
      const int64_t now_ms = UnixMillis(clock_.Now());
      events.push_back(SentEvent(name, name + "-" + std::to_string(++sent), now_ms, now_ms));
    }
    std::vector<std::string> starts;
    auto r = intake_->Ingest(std::move(events));
    EXPECT_THAT(r, IsOk());
    if (!r.ok()) return starts;
    for (size_t i = 0; i < names.size(); ++i) {
      if (names[i] == "test/start") starts.push_back(r->stored[i].internal_id);
    }
    return starts;
  };
  auto status_of = [&](const std::string& event_id) {
    auto runs = store_->ListRuns({.event_id = event_id, .limit = 10});
    EXPECT_THAT(runs, IsOk());
    return runs.ok() && runs->size() == 1 ? (*runs)[0].status : "(no single run)";
  };

  const std::vector<std::string> earlier = ingest({"test/start"});
  clock_.Advance(1ms);
  const std::vector<std::string> same = ingest({"test/start", "test/stop", "test/start"});
  ASSERT_EQ(earlier.size(), 1u);
  ASSERT_EQ(same.size(), 2u);
  EXPECT_EQ(status_of(earlier[0]), store::kCancelled);
  EXPECT_EQ(status_of(same[0]), store::kQueued);
  EXPECT_EQ(status_of(same[1]), store::kQueued);

  clock_.Advance(1ms);
  ingest({"test/stop"});
  EXPECT_EQ(status_of(same[0]), store::kCancelled);
  EXPECT_EQ(status_of(same[1]), store::kCancelled);

  // A run an earlier request created in the very millisecond the cancel event's request comes
  // in (the clock has not moved): cancelled too, as the cancel is received in a later one
  // (Intake::IngestTime). It was not: created_at_ms < received_at_ms failed on equal times.
  const std::vector<std::string> same_ms = ingest({"test/start"});
  ASSERT_EQ(same_ms.size(), 1u);
  ingest({"test/stop"});
  EXPECT_EQ(status_of(same_ms[0]), store::kCancelled);
}

// A coordinator's ingest times never go back, though its clock may (an NTP step): a run whose
// event came after a cancel event's is created no earlier than the cancel was received, so
// the cancel's sweep (runs created before it) does not cancel it.
TEST_F(IntakeHarness, IngestTimesDoNotGoBackWithTheClock) {
  ASSERT_THAT(store_->SyncApp(CancellableApp()), IsOk());
  auto ingest = [&](const std::string& name) {
    const int64_t now_ms = UnixMillis(clock_.Now());
    std::vector<intake::IncomingEvent> events = {SentEvent(name, name, now_ms, now_ms)};
    auto r = intake_->Ingest(std::move(events));
    EXPECT_THAT(r, IsOk());
    return r.ok() && !r->stored.empty() ? r->stored[0].internal_id : std::string();
  };
  const auto stop = store_->GetEvent(ingest("test/stop"));
  ASSERT_THAT(stop, IsOk());
  clock_.Advance(-1000ms);
  const std::string start = ingest("test/start");
  auto runs = store_->ListRuns({.event_id = start, .limit = 10});
  ASSERT_THAT(runs, IsOk());
  ASSERT_EQ(runs->size(), 1u);
  EXPECT_GE((*runs)[0].created_at_ms, stop->received_at_ms);
  auto event = store_->GetEvent(start);
  ASSERT_THAT(event, IsOk());
  EXPECT_GE(event->received_at_ms, stop->received_at_ms);
}

// A cancel_on event cancels every run it matches, however many: more than one page of them.
TEST_F(IntakeHarness, ACancelEventCancelsRunsBeyondOnePage) {
  store::AppSync sync = OneFunctionApp("many", "test/start");
  sync.functions[0].config["cancel"] = store::Json::array({{{"event", "test/stop"}}});
  ASSERT_THAT(store_->SyncApp(sync), IsOk());
  constexpr int kRuns = 1001;  // the page is 1000
  std::vector<intake::IncomingEvent> starts;
  const int64_t now_ms = UnixMillis(clock_.Now());
  for (int i = 0; i < kRuns; ++i) {
    starts.push_back(SentEvent("test/start", "start-" + std::to_string(i), now_ms, now_ms));
  }
  ASSERT_THAT(intake_->Ingest(std::move(starts)), IsOk());
  auto active = store_->ActiveRuns("many-fn", now_ms + 1, "", 2 * kRuns);
  ASSERT_THAT(active, IsOk());
  ASSERT_EQ(active->size(), static_cast<size_t>(kRuns));

  clock_.Advance(1ms);
  std::vector<intake::IncomingEvent> stop;
  stop.push_back({{{"name", "test/stop"},
                   {"data", store::Json::object()},
                   {"id", "stop"},
                   {"ts", UnixMillis(clock_.Now())}},
                  NewUlid(UnixMillis(clock_.Now()))});
  ASSERT_THAT(intake_->Ingest(std::move(stop)), IsOk());
  active = store_->ActiveRuns("many-fn", UnixMillis(clock_.Now()) + 1, "", 2 * kRuns);
  ASSERT_THAT(active, IsOk());
  EXPECT_TRUE(active->empty()) << active->size() << " runs left";
  auto pending = store_->PendingCancels(0, 10);
  ASSERT_THAT(pending, IsOk());
  EXPECT_EQ(pending->size(), 1u) << "acknowledged by the sweep's second pass, not at once";
}

// A cancel_on event stored without its cancels done (the coordinator stopped between the
// commit and the cancels, or the store failed them) is in the cancel outbox: the sweep does
// them as of the event's receipt — the run from before it, not the one created since — and
// acknowledges it.
TEST_F(IntakeHarness, TheSweepDoesTheCancelsOfACancelEventStoredButNotDone) {
  ASSERT_THAT(store_->SyncApp(CancellableApp()), IsOk());
  auto start = [&](const std::string& id) {
    const int64_t now_ms = UnixMillis(clock_.Now());
    std::vector<intake::IncomingEvent> events;
    events.push_back(SentEvent("test/start", id, now_ms, now_ms));
    auto r = intake_->Ingest(std::move(events));
    EXPECT_THAT(r, IsOk());
    return r.ok() ? r->stored[0].internal_id : "";
  };
  auto status_of = [&](const std::string& event_id) {
    auto runs = store_->ListRuns({.event_id = event_id, .limit = 10});
    EXPECT_THAT(runs, IsOk());
    return runs.ok() && runs->size() == 1 ? (*runs)[0].status : "(no single run)";
  };
  const std::string before = start("start-1");
  clock_.Advance(1ms);
  store::NewEvent stop;  // as an ingest that stopped after its commit left it
  stop.event.internal_id = NewUlid(UnixMillis(clock_.Now()));
  stop.event.id = "stop-1";
  stop.event.name = "test/stop";
  stop.event.payload = {{"name", "test/stop"},
                        {"data", store::Json::object()},
                        {"id", "stop-1"},
                        {"ts", UnixMillis(clock_.Now())}};
  stop.event.received_at_ms = UnixMillis(clock_.Now());
  stop.cancels = true;
  ASSERT_THAT(store_->IngestEvents({stop}, clock_.Now(), nullptr), IsOk());
  clock_.Advance(1ms);
  const std::string since = start("start-2");
  EXPECT_EQ(status_of(before), store::kQueued);

  clock_.Advance(3s);  // past the sweep's age: the ingest that stored it is not coming back
  const auto give_up = std::chrono::steady_clock::now() + 10s;
  for (;;) {
    auto pending = store_->PendingCancels(0, 10);
    ASSERT_THAT(pending, IsOk());
    if (status_of(before) == store::kCancelled && pending->empty()) break;
    ASSERT_LT(std::chrono::steady_clock::now(), give_up) << "the sweep did not cancel the run";
    std::this_thread::sleep_for(20ms);
  }
  EXPECT_EQ(status_of(since), store::kQueued);
}

// A run created before a cancel_on event, whose transaction was still in flight when the
// event's ingest read the runs (another coordinator's), is not seen by that read: the sweep
// reads the runs again once the event is 2 s old, cancels it, and only then acknowledges the
// event. The cancels were acknowledged at once, and such a run ran to its end.
TEST_F(IntakeHarness, ARunWhoseCreationRacedACancelEventIsCancelledByTheSweep) {
  ASSERT_THAT(store_->SyncApp(CancellableApp()), IsOk());
  const int64_t created_ms = UnixMillis(clock_.Now());
  clock_.Advance(1ms);
  const int64_t stop_ms = UnixMillis(clock_.Now());
  std::vector<intake::IncomingEvent> stop;
  stop.push_back(SentEvent("test/stop", "stop-1", stop_ms, stop_ms));
  ASSERT_THAT(intake_->Ingest(std::move(stop)), IsOk());
  // Committed now, created (its event received) before the stop: as the racing ingest left it.
  store::NewEvent start;
  start.event.internal_id = NewUlid(created_ms);
  start.event.id = "start-1";
  start.event.name = "test/start";
  start.event.payload = {
      {"name", "test/start"}, {"data", store::Json::object()}, {"id", "start-1"}};
  start.event.received_at_ms = created_ms;
  start.runs.push_back({.run_id = NewUlid(created_ms), .function_id = "cancellable-fn"});
  ASSERT_THAT(
      store_->IngestEvents({start}, TimePoint(std::chrono::milliseconds(created_ms)), nullptr),
      IsOk());
  const std::string start_event = start.event.internal_id;
  auto status = [&] {
    auto runs = store_->ListRuns({.event_id = start_event, .limit = 10});
    return runs.ok() && runs->size() == 1 ? (*runs)[0].status : "(no single run)";
  };
  EXPECT_EQ(status(), store::kQueued);

  clock_.Advance(3s);
  const auto give_up = std::chrono::steady_clock::now() + 10s;
  for (;;) {
    auto pending = store_->PendingCancels(0, 10);
    ASSERT_THAT(pending, IsOk());
    if (status() == store::kCancelled && pending->empty()) break;
    ASSERT_LT(std::chrono::steady_clock::now(), give_up)
        << "the run is " << status() << ", " << pending->size() << " cancel(s) pending";
    std::this_thread::sleep_for(20ms);
  }
}

// An event whose ingest read the waits just before a wait was committed, and which was
// committed itself just after that wait's look-back read the events (two coordinators, or a
// group transaction), is seen by neither: the sweep's look-back, once the wait is 2 s old,
// resumes the wait with it. The first look-back marked it done, and the wait ran to its
// timeout.
TEST_F(IntakeHarness, AnEventCommittedJustAfterAWaitsLookBackIsMatchedByTheSweeps) {
  const std::string run = StartRun(kFunction);
  auto state = store_->LoadRunState(run);
  ASSERT_THAT(state, IsOk());
  const TimePoint registering = clock_.Now();
  const store::NewWait wait = WaitForPaid(run, registering);
  intake_->WaitRegistered(*state, wait, UnixMillis(registering));  // nothing to find yet
  auto none = store_->Claim(10, clock_.Now(), 30s);
  ASSERT_THAT(none, IsOk());
  EXPECT_TRUE(none->empty());

  clock_.Advance(1ms);
  store::NewEvent paid;  // stored by an ingest whose read of the waits came before the wait
  paid.event.internal_id = NewUlid(UnixMillis(clock_.Now()));
  paid.event.id = "pay-1";
  paid.event.name = "test/paid";
  paid.event.payload = {{"name", "test/paid"},
                        {"data", {{"n", 1}}},
                        {"id", "pay-1"},
                        {"ts", UnixMillis(clock_.Now())}};
  paid.event.received_at_ms = UnixMillis(clock_.Now());
  ASSERT_THAT(store_->IngestEvents({paid}, clock_.Now(), nullptr), IsOk());

  clock_.Advance(3s);
  const auto give_up = std::chrono::steady_clock::now() + 10s;
  for (;;) {
    auto resumed = store_->Claim(10, clock_.Now(), 30s);
    ASSERT_THAT(resumed, IsOk());
    if (!resumed->empty()) {
      ASSERT_EQ(resumed->size(), 1u);
      EXPECT_EQ((*resumed)[0].run_id, run);
      ASSERT_TRUE((*resumed)[0].resume.has_value());
      EXPECT_EQ((*(*resumed)[0].resume)["memo"]["id"], "pay-1");
      break;
    }
    ASSERT_LT(std::chrono::steady_clock::now(), give_up) << "the wait was not resumed";
    std::this_thread::sleep_for(20ms);
  }
  auto pending = store_->PendingLookbacks(UnixMillis(clock_.Now()), 10);
  ASSERT_THAT(pending, IsOk());
  EXPECT_TRUE(pending->empty());
}

// An event whose `ts` is in the future schedules its run then, as in Inngest: its first call
// is not due before. A `ts` just ahead of the coordinator's clock (a producer's clock running
// ahead, within 2 s) starts its run now.
TEST_F(IntakeHarness, AnEventTsInTheFutureSchedulesItsRunThen) {
  ASSERT_THAT(store_->SyncApp(OneFunctionApp("scheduled", "test/later")), IsOk());
  const int64_t now_ms = UnixMillis(clock_.Now());
  auto send = [&](const std::string& id, int64_t ts) {
    std::vector<intake::IncomingEvent> events;
    events.push_back(SentEvent("test/later", id, ts, now_ms));
    auto sent = intake_->Ingest(std::move(events));
    EXPECT_THAT(sent, IsOk());
    auto runs =
        store_->ListRuns({.event_id = sent.ok() ? sent->stored[0].internal_id : "", .limit = 10});
    EXPECT_THAT(runs, IsOk());
    return runs.ok() && runs->size() == 1 ? (*runs)[0].id : "";
  };
  const std::string later = send("later", now_ms + 10'000);
  const std::string skewed = send("skewed", now_ms + 2'000);
  auto claim_now = [&] {
    std::vector<std::string> runs;
    auto claimed = store_->Claim(10, clock_.Now(), 30s);
    EXPECT_THAT(claimed, IsOk());
    if (claimed.ok()) {
      for (const store::QueueItem& item : *claimed) runs.push_back(item.run_id);
    }
    return runs;
  };
  EXPECT_THAT(claim_now(), ::testing::ElementsAre(skewed));
  clock_.Advance(9'999ms);
  EXPECT_THAT(claim_now(), ::testing::IsEmpty());
  clock_.Advance(1ms);
  EXPECT_THAT(claim_now(), ::testing::ElementsAre(later));
}

// A scheduled run takes no throttle slot when its event comes: a run of the key that comes
// meanwhile starts at once, not a throttle period later; the scheduled run is paced when due.
TEST_F(IntakeHarness, AScheduledRunTakesNoThrottleSlotFromTheRunsBeforeIt) {
  store::AppSync sync = OneFunctionApp("paced", "test/paced");
  sync.functions[0].config["throttle"] = {{"limit", 1}, {"period", "1m"}};
  ASSERT_THAT(store_->SyncApp(sync), IsOk());
  const int64_t now_ms = UnixMillis(clock_.Now());
  std::vector<intake::IncomingEvent> events;
  events.push_back(SentEvent("test/paced", "tomorrow", now_ms + 24 * 3600 * 1000, now_ms));
  events.push_back(SentEvent("test/paced", "now", now_ms, now_ms));
  auto sent = intake_->Ingest(std::move(events));
  ASSERT_THAT(sent, IsOk());
  auto runs = store_->ListRuns({.event_id = sent->stored[1].internal_id, .limit = 10});
  ASSERT_THAT(runs, IsOk());
  ASSERT_EQ(runs->size(), 1u);
  auto claimed = store_->Claim(10, clock_.Now(), 30s);
  ASSERT_THAT(claimed, IsOk());
  ASSERT_EQ(claimed->size(), 1u) << "the present run was pushed back by the scheduled one";
  EXPECT_EQ((*claimed)[0].run_id, (*runs)[0].id);
}

// A scheduled run's timeouts.start counts from its start time, not from its event's receipt:
// not cancelled before start + 5 s, cancelled then.
TEST_F(IntakeHarness, AScheduledRunsStartTimeoutCountsFromItsStartTime) {
  store::AppSync sync = OneFunctionApp("scheduled", "test/later");
  sync.functions[0].config["timeouts"] = {{"start", "5s"}};
  ASSERT_THAT(store_->SyncApp(sync), IsOk());
  const int64_t now_ms = UnixMillis(clock_.Now());
  std::vector<intake::IncomingEvent> events;
  events.push_back(SentEvent("test/later", "later-1", now_ms + 10'000, now_ms));
  ASSERT_THAT(intake_->Ingest(std::move(events)), IsOk());
  clock_.Advance(14'999ms);
  auto timed_out = store_->CancelTimedOutRuns(clock_.Now(), 10);
  ASSERT_THAT(timed_out, IsOk());
  EXPECT_TRUE(timed_out->empty()) << "timeouts.start counted from the event's receipt";
  clock_.Advance(1ms);
  timed_out = store_->CancelTimedOutRuns(clock_.Now(), 10);
  ASSERT_THAT(timed_out, IsOk());
  EXPECT_EQ(timed_out->size(), 1u);
}

// An event whose first ingest stored it but resumed none of its waits (the coordinator stopped
// between the commit and the resumes) resumes them when it is sent again, as a duplicate: the
// waits open when it was stored, not one registered since (that one looked back for it).
TEST_F(IntakeHarness, AnEventSentAgainResumesTheWaitsItsFirstIngestLeftOpen) {
  const std::string early = StartRun(kFunction);
  WaitForPaid(early, clock_.Now());
  clock_.Advance(1s);
  const store::Json paid = {
      {"name", "test/paid"}, {"data", {{"n", 1}}}, {"id", "pay-1"}, {"ts", 1}};
  store::NewEvent first;
  first.event.internal_id = NewUlid(UnixMillis(clock_.Now()));
  first.event.id = "pay-1";
  first.event.name = "test/paid";
  first.event.payload = paid;
  first.event.received_at_ms = UnixMillis(clock_.Now());
  ASSERT_THAT(store_->IngestEvents({first}, clock_.Now(), nullptr), IsOk());  // no resume
  clock_.Advance(1s);
  const std::string late = StartRun(kFunction);
  WaitForPaid(late, clock_.Now());
  auto none = store_->Claim(10, clock_.Now(), 30s);
  ASSERT_THAT(none, IsOk());
  EXPECT_TRUE(none->empty());

  intake::IncomingEvent again{paid, NewUlid(UnixMillis(clock_.Now()))};
  std::vector<intake::IncomingEvent> events;
  events.push_back(std::move(again));
  auto sent = intake_->Ingest(std::move(events));
  ASSERT_THAT(sent, IsOk());
  ASSERT_EQ(sent->stored.size(), 1u);
  EXPECT_TRUE(sent->stored[0].duplicate);
  EXPECT_EQ(sent->waits_not_resumed, 0);
  // (The late wait is not resumed by an event older than it.)
  ExpectOnlyResumed(early, "pay-1");
}

// A request's events resume the waits of their name in the request's order: the first event
// takes every open wait it matches, and the later ones find them settled (they are not tried
// again, a transaction each, for every later event of the batch).
TEST_F(IntakeHarness, ABatchOfEventsResumesEachWaitOnceWithItsFirstMatch) {
  std::vector<std::string> runs;
  for (int i = 0; i < 3; ++i) {
    runs.push_back(StartRun(kFunction));
    WaitedForPaid(runs.back());
  }
  clock_.Advance(1s);
  std::vector<intake::IncomingEvent> events;
  for (int i = 0; i < 50; ++i) {
    const store::Json paid = {{"name", "test/paid"}, {"id", "pay-" + std::to_string(i)}};
    events.push_back({paid, NewUlid(UnixMillis(clock_.Now()))});
  }
  auto sent = intake_->Ingest(std::move(events));
  ASSERT_THAT(sent, IsOk());
  EXPECT_EQ(sent->stored.size(), 50u);
  EXPECT_EQ(sent->waits_not_resumed, 0);
  auto resumed = store_->Claim(10, clock_.Now(), 30s);
  ASSERT_THAT(resumed, IsOk());
  ASSERT_EQ(resumed->size(), 3u);
  for (const store::QueueItem& item : *resumed) {
    EXPECT_NE(std::find(runs.begin(), runs.end(), item.run_id), runs.end());
    ASSERT_TRUE(item.resume.has_value());
    EXPECT_EQ((*item.resume)["memo"]["id"], "pay-0");
  }
  EXPECT_TRUE(ResumesDone(5s)) << "every event's waits were resumed by its ingest";
}

// An event stored while a wait it matches was open, by an ingest that stopped before resuming
// the wait (a crash between the commit and the resumes): the sweep resumes it from the wait
// outbox once the event is older than the sweep age, and only waits there were before the
// event. The wait was left until the event was sent again, a later event, or its timeout. An
// ingest that resumes its waits itself leaves nothing to the sweep.
TEST_F(IntakeHarness, TheSweepResumesTheWaitsOfAnEventStoredButNotResumed) {
  const std::string early = StartRun(kFunction);
  WaitedForPaid(early);  // its look-backs are behind it
  clock_.Advance(1s);
  store::NewEvent paid;  // as an ingest that stopped after its commit left it
  paid.event.internal_id = NewUlid(UnixMillis(clock_.Now()));
  paid.event.id = "pay-1";
  paid.event.name = "test/paid";
  paid.event.payload = {{"name", "test/paid"}, {"data", {{"n", 1}}}, {"id", "pay-1"}, {"ts", 1}};
  paid.event.received_at_ms = UnixMillis(clock_.Now());
  ASSERT_THAT(store_->IngestEvents({paid}, clock_.Now(), nullptr), IsOk());
  clock_.Advance(1s);
  const std::string late = StartRun(kFunction);
  WaitedForPaid(late);

  clock_.Advance(3s);  // past the sweep's age: the ingest that stored it is not coming back
  ASSERT_TRUE(ResumesDone(10s)) << "the sweep did not resume the wait";
  // (The late wait is not resumed by an event older than it.)
  ExpectOnlyResumed(early, "pay-1");

  // Sent through intake, the event resumes the late wait at once and is acknowledged.
  std::vector<intake::IncomingEvent> events;
  const int64_t now_ms = UnixMillis(clock_.Now());
  events.push_back(SentEvent("test/paid", "pay-2", now_ms, now_ms));
  auto sent = intake_->Ingest(std::move(events));
  ASSERT_THAT(sent, IsOk());
  EXPECT_EQ(sent->waits_not_resumed, 0);
  EXPECT_THAT(*store_->PendingResumes(0, 10), ::testing::IsEmpty());
  ExpectOnlyResumed(late, "pay-2");
}

// An ingest reads the oldest 10,000 event waits without a key of its events' names
// (store::kIngestWaits): a wait without a key past them that the event matches is resumed by
// the sweep, which reads them all page by page; the ingest leaves the event in the outbox for
// it. Such a wait waited out its timeout.
TEST_F(IntakeHarness, AWaitPastTheOldestTenThousandIsResumedByTheSweep) {
  const std::string crowd = StartRun(kFunction);
  WaitedForPaid(crowd, "async.data.n == 99");
  AddWaits(crowd, store::kIngestWaits, "async.data.n == 99", /*every_other_keyed=*/false);
  clock_.Advance(1s);
  const std::string target = StartRun(kFunction);
  EXPECT_FALSE(WaitedForPaid(target, "async.data.n < 2").match_key);
  clock_.Advance(1s);

  std::vector<intake::IncomingEvent> events;
  const int64_t now_ms = UnixMillis(clock_.Now());
  events.push_back(SentEvent("test/paid", "pay-1", now_ms, now_ms, {{"n", 1}}));
  ASSERT_THAT(intake_->Ingest(std::move(events)), IsOk());
  auto none = store_->Claim(10, clock_.Now(), 30s);
  ASSERT_THAT(none, IsOk());
  EXPECT_TRUE(none->empty()) << "the ingest read only the crowd's waits";
  auto pending = store_->PendingResumes(0, 10);
  ASSERT_THAT(pending, IsOk());
  EXPECT_EQ(pending->size(), 1u) << "left to the sweep";

  clock_.Advance(3s);
  ASSERT_TRUE(ResumesDone(20s)) << "the sweep did not resume the wait";
  ExpectOnlyResumed(target, "pay-1");
}

// A wait whose `if` requires a field of the event to equal a value (`async.data.n == 1`) is
// found by the ingest of an event with that value however many waits of the name are open
// (here about 20,000 before it, half with other keys, 9,999 without, which an ingest reads
// all of): resumed at once and the event acknowledged, not left to the sweep. So is an event
// that meets no wait. An ingest read the oldest 10,000 waits and left such a wait to the
// sweep, which read every wait of the name for each event.
TEST_F(IntakeHarness, AWaitWithAKeyPastTenThousandOthersIsResumedByTheIngestAtOnce) {
  intake_->Stop();  // no sweep: the ingest does it all
  const std::string crowd = StartRun(kFunction);
  WaitedForPaid(crowd, "async.data.n > 98");
  AddWaits(crowd, 2 * store::kIngestWaits - 4, "async.data.n > 98", /*every_other_keyed=*/true);
  clock_.Advance(1s);
  const std::string target = StartRun(kFunction);
  EXPECT_TRUE(WaitedForPaid(target, "async.data.n == 1").match_key);
  clock_.Advance(1s);

  std::vector<intake::IncomingEvent> events;
  const int64_t now_ms = UnixMillis(clock_.Now());
  events.push_back(SentEvent("test/paid", "pay-1", now_ms, now_ms, {{"n", 1}}));
  events.push_back(SentEvent("test/paid", "pay-2", now_ms, now_ms, {{"n", 2}}));
  auto sent = intake_->Ingest(std::move(events));
  ASSERT_THAT(sent, IsOk());
  EXPECT_EQ(sent->waits_not_resumed, 0);
  ExpectOnlyResumed(target, "pay-1");
  EXPECT_THAT(*store_->PendingResumes(now_ms + 1, 10), ::testing::IsEmpty())
      << "both events acknowledged: nothing left to the sweep";
}

// An event of a name whose open waits all have keys, none its own, meets no wait the ingest
// reads; it is acknowledged all the same (the outbox recorded it: waits of its name are
// open), not left to the sweep to read every wait of the name again.
TEST_F(IntakeHarness, AnEventThatMeetsNoKeyedWaitIsAcknowledgedByItsIngest) {
  intake_->Stop();  // no sweep
  const std::string run = StartRun(kFunction);
  EXPECT_TRUE(WaitedForPaid(run, "async.data.n == 1").match_key);
  clock_.Advance(1s);
  std::vector<intake::IncomingEvent> events;
  const int64_t now_ms = UnixMillis(clock_.Now());
  events.push_back(SentEvent("test/paid", "pay-2", now_ms, now_ms));  // data.n is not 1
  ASSERT_THAT(intake_->Ingest(std::move(events)), IsOk());
  auto none = store_->Claim(10, clock_.Now(), 30s);
  ASSERT_THAT(none, IsOk());
  EXPECT_TRUE(none->empty());
  EXPECT_THAT(*store_->PendingResumes(now_ms + 1, 10), ::testing::IsEmpty());
}

// An event with more fields than an ingest looks up keys for (256) meets a wait with a key
// it has past them: the waits with keys of its name are read as those without (the oldest
// 10,000), and the wait is resumed at once, the event acknowledged.
TEST_F(IntakeHarness, AnEventWithMoreFieldsThanKeysLookedUpStillMeetsAKeyedWait) {
  intake_->Stop();  // no sweep
  const std::string run = StartRun(kFunction);
  EXPECT_TRUE(WaitedForPaid(run, "async.data.n == 1").match_key);
  clock_.Advance(1s);
  store::Json data = {{"n", 1}};
  for (size_t i = 0; i < expr::kMaxIndexKeys; ++i) data["f" + std::to_string(i)] = "v";
  std::vector<intake::IncomingEvent> events;
  const int64_t now_ms = UnixMillis(clock_.Now());
  events.push_back(SentEvent("test/paid", "pay-1", now_ms, now_ms, data));
  ASSERT_THAT(intake_->Ingest(std::move(events)), IsOk());
  ExpectOnlyResumed(run, "pay-1");
  EXPECT_THAT(*store_->PendingResumes(now_ms + 1, 10), ::testing::IsEmpty());
}

// An event stored by an ingest that stopped before resuming its waits, then another event
// sent with its id (a duplicate, whose keys are not the stored event's): the waits read by
// the duplicate's keys are not all the stored event may resume, so its outbox row stays for
// the sweep, which resumes the wait with a key that the stored event meets. Acknowledged, the
// wait waited out its timeout. (-1 and 2^64 - 1: nlohmann's == holds them equal.)
TEST_F(IntakeHarness, ADuplicateWithOtherFieldsLeavesTheStoredEventsWaitsToTheSweep) {
  const std::string keyed = StartRun(kFunction);
  EXPECT_TRUE(WaitedForPaid(keyed, "async.data.n == -1").match_key);
  const std::string other = StartRun(kFunction);
  EXPECT_FALSE(WaitedForPaid(other, "async.data.n > 5").match_key);
  clock_.Advance(1s);
  store::NewEvent paid;  // as an ingest that stopped after its commit left it
  paid.event.internal_id = NewUlid(UnixMillis(clock_.Now()));
  paid.event.id = "pay-1";
  paid.event.name = "test/paid";
  paid.event.payload = {{"name", "test/paid"}, {"data", {{"n", -1}}}, {"id", "pay-1"}, {"ts", 1}};
  paid.event.received_at_ms = UnixMillis(clock_.Now());
  ASSERT_THAT(store_->IngestEvents({paid}, clock_.Now(), nullptr), IsOk());
  clock_.Advance(1s);

  std::vector<intake::IncomingEvent> events;
  const int64_t now_ms = UnixMillis(clock_.Now());
  events.push_back(
      SentEvent("test/paid", "pay-1", 1, now_ms, {{"n", std::numeric_limits<uint64_t>::max()}}));
  auto sent = intake_->Ingest(std::move(events));
  ASSERT_THAT(sent, IsOk());
  ASSERT_TRUE(sent->stored[0].duplicate);
  EXPECT_EQ(store_->PendingResumes(now_ms + 1, 10)->size(), 1u) << "acknowledged";

  clock_.Advance(3s);
  ASSERT_TRUE(ResumesDone(10s)) << "the sweep did not resume the wait";
  ExpectOnlyResumed(keyed, "pay-1");
}

// A wait's look-back reads the events of its name in its window page by page: a match past
// the first thousand (a busy name; here all in one millisecond, so the pages go on by id)
// resumes it. Only the first page was read.
TEST_F(IntakeHarness, AWaitsLookBackFindsAMatchPastItsFirstPageOfEvents) {
  const int64_t from_ms = UnixMillis(clock_.Now());
  std::vector<intake::IncomingEvent> events;
  for (int i = 0; i < 2500; ++i) {
    store::Json data = {{"order", i == 2345 ? "o-1" : "o-" + std::to_string(i + 2)}};
    events.push_back({{{"name", "test/paid"},
                       {"data", data},
                       {"id", "pay-" + std::to_string(i)},
                       {"ts", from_ms}},
                      // The match's id sorts last of all (a ULID's time comes first).
                      NewUlid(i == 2345 ? from_ms + 1 : from_ms)});
  }
  ASSERT_THAT(intake_->Ingest(std::move(events)), IsOk());
  clock_.Advance(1s);
  const std::string run = StartRun(kFunction);
  auto state = store_->LoadRunState(run);
  ASSERT_THAT(state, IsOk());
  const store::NewWait wait = WaitForPaid(run, TimePoint(std::chrono::milliseconds(from_ms)),
                                          "async.data.order == \"o-1\"");
  intake_->WaitRegistered(*state, wait, from_ms);

  auto resumed = store_->Claim(10, clock_.Now(), 30s);
  ASSERT_THAT(resumed, IsOk());
  ASSERT_EQ(resumed->size(), 1u) << "the match was not found";
  EXPECT_EQ((*resumed)[0].run_id, run);
  ASSERT_TRUE((*resumed)[0].resume.has_value());
  EXPECT_EQ((*(*resumed)[0].resume)["memo"]["data"]["order"], "o-1");
}

// A run's own event never resumes its waits: a function on test/go waiting for the next
// test/go, whose look-back reaches back past its own event (or whose wait came in the
// event's millisecond), waits for the next one, not the one that started it.
TEST_F(IntakeHarness, ARunsOwnEventDoesNotResumeItsWait) {
  const TimePoint before = clock_.Now();
  const std::string run = StartRun(kFunction);
  clock_.Advance(5ms);
  auto state = store_->LoadRunState(run);
  ASSERT_THAT(state, IsOk());
  const store::NewWait wait = WaitForPaid(run, before, "async.data.n == 1", "test/go", "next");
  intake_->WaitRegistered(*state, wait, UnixMillis(before));
  auto resumed = store_->Claim(10, clock_.Now(), 30s);
  ASSERT_THAT(resumed, IsOk());
  EXPECT_TRUE(resumed->empty()) << "resumed by the event that started its run";

  // The next test/go resumes it.
  clock_.Advance(5ms);
  const std::string next = NewUlid(UnixMillis(clock_.Now()));
  ASSERT_THAT(intake_->Ingest({{{{"name", "test/go"},
                                 {"data", {{"n", 1}, {"next", true}}},
                                 {"id", next},
                                 {"ts", UnixMillis(clock_.Now())}},
                                next}}),
              IsOk());
  resumed = store_->Claim(10, clock_.Now(), 30s);
  ASSERT_THAT(resumed, IsOk());
  ASSERT_EQ(resumed->size(), 1u);
  ASSERT_TRUE((*resumed)[0].resume.has_value());
  EXPECT_EQ((*(*resumed)[0].resume)["memo"]["data"]["next"], true);
}

// Past the bound of the run ends buffered to announce, an end is not held in memory (a
// cancel_on event cancelling 100,000 runs buffered each with its events): the sweep announces
// it from the store's outbox.
TEST_F(IntakeHarness, ARunEndPastTheBufferIsLeftToTheSweep) {
  intake_->Stop();  // its sweeps would announce too
  intake_.reset();
  auto end_run = [&] {
    const std::string run = StartRun(kFunction);
    store::Transition end;
    end.move = store::Transition::End{store::kCompleted, {{"ok", true}}, nullptr};
    EXPECT_THAT(store_->Apply(ClaimItemOf(run), end, clock_.Now()), IsOk());
    return run;
  };
  auto announced = [&](const std::string& run) {
    return store_->FindEventById(executor::FinishedEventId(run)).ok();
  };
  auto within = [](std::chrono::milliseconds limit, const std::function<bool()>& done) {
    const auto give_up = std::chrono::steady_clock::now() + limit;
    while (!done() && std::chrono::steady_clock::now() < give_up) {
      std::this_thread::sleep_for(10ms);
    }
    return done();
  };
  const std::string before = end_run();
  intake::Intake bounded(
      *store_, clock_, 0ms, [] {}, /*max_buffered_ends=*/0);
  // Its first sweep, at start, announces every recorded end; later ones, those 2 s old.
  ASSERT_TRUE(within(10s, [&] { return announced(before); }));

  const std::string run = end_run();
  bounded.AnnounceEnd(run);
  std::this_thread::sleep_for(300ms);
  EXPECT_FALSE(announced(run)) << "announced from the buffer";
  clock_.Advance(3s);
  EXPECT_TRUE(within(10s, [&] { return announced(run); })) << "the sweep did not announce it";
  bounded.Stop();
}

// A sender may reuse a run's id as an event's id (an idempotency key made from ctx.runId): the
// run's own end events are still stored, under ids no sender can take.
TEST_F(IntakeHarness, AnEventWithARunsIdDropsNoneOfThatRunsEndEvents) {
  const std::string run = StartRun(kFunction);
  const store::QueueItem item = ClaimItemOf(run);
  std::vector<intake::IncomingEvent> sent;
  for (const std::string& id : {run, run + "-finished", run + "-cancelled"}) {
    sent.push_back({store::Json{{"name", "user/sent"},
                                {"data", store::Json::object()},
                                {"user", store::Json::object()},
                                {"id", id},
                                {"ts", UnixMillis(clock_.Now())}},
                    NewUlid(UnixMillis(clock_.Now())), std::nullopt});
  }
  ASSERT_THAT(intake_->Ingest(std::move(sent)), IsOk());

  store::Transition end;
  end.move =
      store::Transition::End{store::kFailed, nullptr, {{"name", "Error"}, {"message", "no"}}};
  ASSERT_THAT(store_->Apply(item, end, clock_.Now()), IsOk());
  intake_->AnnounceEnd(run);
  const auto give_up = std::chrono::steady_clock::now() + 10s;
  while (!store_->FindEventById(executor::FailedEventId(run)).ok()) {
    ASSERT_LT(std::chrono::steady_clock::now(), give_up) << "the failure was never stored";
    std::this_thread::sleep_for(10ms);
  }
  auto failed = store_->FindEventById(executor::FailedEventId(run));
  ASSERT_THAT(failed, IsOk());
  EXPECT_EQ(failed->name, executor::kFunctionFailed);
  EXPECT_EQ(failed->payload["data"]["run_id"], run);
  auto finished = store_->FindEventById(executor::FinishedEventId(run));
  ASSERT_THAT(finished, IsOk());
  EXPECT_EQ(finished->name, executor::kFunctionFinished);
  // The sender's events are there too, as sent.
  auto own = store_->FindEventById(run);
  ASSERT_THAT(own, IsOk());
  EXPECT_EQ(own->name, "user/sent");
}

// A run's end events may be stored with its end only when nothing acts on them: no function
// they start (other than the run's own), none whose runs they cancel, no invoking run.
TEST_F(IntakeHarness, EndEventsGoWithTheEndOnlyWhenNothingActsOnThem) {
  int syncs = 0;
  auto sync_app = [&](const std::string& app, std::vector<store::Json> configs) {
    store::AppSync sync;
    sync.app = {app, "http://127.0.0.1:1/api", "cpp", "", "sum-" + std::to_string(++syncs), 0, 0};
    for (store::Json& config : configs) {
      store::FunctionRecord fn;
      fn.id = config["id"];
      fn.app_id = app;
      fn.name = fn.id;
      config["steps"] = {{"step", {{"runtime", {{"url", "http://127.0.0.1:1/api"}}}}}};
      fn.config = std::move(config);
      sync.functions.push_back(std::move(fn));
    }
    ASSERT_THAT(store_->SyncApp(sync), IsOk());
    clock_.Advance(1s);  // past the function set's cache (0 ms here)
  };
  auto listeners = [&](std::vector<store::Json> configs) { sync_app("handlers", configs); };
  auto names = [](const std::vector<store::EventRecord>& events) {
    std::vector<std::string> out;
    for (const store::EventRecord& e : events) out.push_back(e.name);
    return out;
  };
  const std::string run = StartRun(kFunction);
  auto state = store_->LoadRunState(run);
  ASSERT_THAT(state, IsOk());
  const store::Json error = {{"name", "Error"}, {"message", "no"}};

  // Nothing listens: the events, as the outbox would store them, judged by the function set
  // of the database's generation.
  std::optional<int64_t> generation;
  auto events = intake_->EndEventsToStore(*state, store::kFailed, nullptr, error, &generation);
  EXPECT_EQ(generation, store_->FunctionGeneration().value());
  EXPECT_THAT(names(events),
              ::testing::ElementsAre("inngest/function.finished", "inngest/function.failed"));
  ASSERT_FALSE(events.empty());
  EXPECT_EQ(events[0].id, executor::FinishedEventId(run));
  EXPECT_EQ(events[1].id, executor::FailedEventId(run));
  EXPECT_EQ(events[0].payload["data"]["run_id"], run);
  EXPECT_EQ(events[0].payload["data"]["error"], error);
  EXPECT_FALSE(events[0].internal_id.empty());

  // A failure handler of another function, and the run's own function triggered by run ends
  // (its end starts no run of it).
  listeners({{{"id", "handlers-other"},
              {"triggers",
               {{{"event", "inngest/function.failed"},
                 {"expression", "event.data.function_id == 'app-other'"}}}}}});
  sync_app("app", {{{"id", kFunction}, {"triggers", {{{"event", "inngest/function.finished"}}}}},
                   {{"id", kOrdered}}});
  EXPECT_EQ(
      names(intake_->EndEventsToStore(*state, store::kFailed, nullptr, error, &generation)).size(),
      2u);

  // A failure handler of this function: a failure's events go through the outbox, a
  // completion's do not (inngest/function.finished starts nothing).
  listeners({{{"id", "handlers-on-failure"},
              {"triggers",
               {{{"event", "inngest/function.failed"},
                 {"expression", "event.data.function_id == 'app-fn'"}}}}}});
  EXPECT_TRUE(
      intake_->EndEventsToStore(*state, store::kFailed, nullptr, error, &generation).empty());
  EXPECT_THAT(names(intake_->EndEventsToStore(*state, store::kCompleted, 1, nullptr, &generation)),
              ::testing::ElementsAre("inngest/function.finished"));

  // Runs that a run's end cancels.
  listeners({{{"id", "handlers-cancelled"},
              {"triggers", {{{"event", "test/start"}}}},
              {"cancel", {{{"event", "inngest/function.finished"}}}}}});
  EXPECT_TRUE(
      intake_->EndEventsToStore(*state, store::kCompleted, 1, nullptr, &generation).empty());

  // An invoked run: its invoker waits for the end.
  listeners({});
  EXPECT_FALSE(
      intake_->EndEventsToStore(*state, store::kCompleted, 1, nullptr, &generation).empty());
  store::RunState invoked = *state;
  invoked.events[0]["data"]["_inngest"] = {{"correlation_id", "caller.call-it"}};
  EXPECT_TRUE(
      intake_->EndEventsToStore(invoked, store::kCompleted, 1, nullptr, &generation).empty());
}

// Two coordinators on one database: one caches the function set (for an hour here), the
// other syncs an app. An event the first accepts after that sync starts the new function's
// run: its ingest finds the set changed, loads it again and matches the event again.
// A sync that no longer lists a function archives it: its trigger starts no run and its runs
// cannot be replayed, but a run it started before goes on to its end (as in Inngest: hosts
// still serving it, as in a rolling deploy, answer its calls); a sync that lists it again
// brings it back.
TEST_F(IntakeHarness, AFunctionASyncDropsStartsNoRunButFinishesTheRunsItHad) {
  ASSERT_THAT(store_->SyncApp(OneFunctionApp("dropped", "test/dropped")), IsOk());
  std::string started;  // the last run an event started
  auto send = [&](const std::string& id) -> int64_t {
    const int64_t now_ms = UnixMillis(clock_.Now());
    std::vector<intake::IncomingEvent> events;
    events.push_back(SentEvent("test/dropped", id, now_ms, now_ms));
    auto sent = intake_->Ingest(std::move(events));
    EXPECT_THAT(sent, IsOk());
    if (!sent.ok()) return -1;
    auto runs = store_->ListRuns({.event_id = sent->stored[0].internal_id, .limit = 10});
    EXPECT_THAT(runs, IsOk());
    if (runs.ok() && !runs->empty()) started = runs->front().id;
    return sent->runs_started;
  };
  ASSERT_EQ(send("before"), 1);
  const std::string before = started;

  store::AppSync without = OneFunctionApp("dropped", "test/dropped");
  without.functions.clear();
  without.app.checksum = "dropped-2";
  ASSERT_THAT(store_->SyncApp(without), IsOk());
  auto fn = store_->GetFunction("dropped-fn");
  ASSERT_THAT(fn, IsOk());
  EXPECT_TRUE(fn->archived);
  EXPECT_EQ(send("after"), 0);

  transport_.Reply(SdkReply(200, R"({"ok":true})"));
  StartExecutor();
  ASSERT_TRUE(RunUntil([&] { return Run(before).status == store::kCompleted; }));
  EXPECT_EQ(transport_.calls(), 1);
  auto replay = intake_->Replay(before);
  EXPECT_EQ(replay.status().code(), StatusCode::kFailedPrecondition) << replay.status().ToString();
  EXPECT_THAT(replay.status().message(), ::testing::HasSubstr("dropped-fn"));

  ASSERT_THAT(store_->SyncApp(OneFunctionApp("dropped", "test/dropped")), IsOk());
  EXPECT_EQ(send("again"), 1);
  EXPECT_THAT(intake_->Replay(before), IsOk());
}

TEST_F(IntakeHarness, AnEventSentAfterASyncOnAnotherCoordinatorStartsTheFunctionsItMade) {
  intake::Intake cached(*store_, clock_, 1h, [] {});
  auto event = [&](const std::string& name) {
    std::vector<intake::IncomingEvent> one;
    one.push_back(cached.InternalEvent(name, store::Json::object(), NewUlid(0)));
    return cached.Ingest(std::move(one));
  };
  auto before = event("test/late");  // loads the set: nothing is triggered by it
  ASSERT_THAT(before, IsOk());
  EXPECT_EQ(before->runs_started, 0);
  auto loaded = cached.Functions(/*refresh=*/false);
  ASSERT_THAT(loaded, IsOk());

  // As the other coordinator's POST /fn/register does:
  ASSERT_THAT(store_->SyncApp(OneFunctionApp("late", "test/late")), IsOk());

  auto after = event("test/late");
  ASSERT_THAT(after, IsOk());
  EXPECT_EQ(after->runs_started, 1);
  ASSERT_EQ(after->stored.size(), 1u);
  auto runs = store_->ListRuns({.event_id = after->stored[0].internal_id, .limit = 10});
  ASSERT_THAT(runs, IsOk());
  ASSERT_EQ(runs->size(), 1u);
  EXPECT_EQ((*runs)[0].function_id, "late-fn");
  // The set was loaded again, though its hour had not passed.
  auto reloaded = cached.Functions(/*refresh=*/false);
  ASSERT_THAT(reloaded, IsOk());
  EXPECT_GT((*reloaded)->generation, (*loaded)->generation);
  EXPECT_NE((*reloaded)->Find("late-fn"), nullptr);
  cached.Stop();
}

// Past its cache's time the function set is read again only when a sync changed it since (its
// generation moved on); otherwise the set loaded is kept, unparsed again.
TEST_F(IntakeHarness, TheFunctionSetIsReadAgainOnlyWhenASyncChangedIt) {
  intake::Intake cached(*store_, clock_, 1s, [] {});
  auto first = cached.Functions(/*refresh=*/false);
  ASSERT_THAT(first, IsOk());
  clock_.Advance(2s);
  auto kept = cached.Functions(/*refresh=*/false);
  ASSERT_THAT(kept, IsOk());
  EXPECT_EQ(kept->get(), first->get());

  ASSERT_THAT(store_->SyncApp(OneFunctionApp("more", "test/more")), IsOk());
  EXPECT_EQ(cached.Functions(/*refresh=*/false)->get(), first->get()) << "within its time";
  clock_.Advance(2s);
  auto reloaded = cached.Functions(/*refresh=*/false);
  ASSERT_THAT(reloaded, IsOk());
  EXPECT_NE(reloaded->get(), first->get());
  EXPECT_GT((*reloaded)->generation, (*first)->generation);
  EXPECT_NE((*reloaded)->Find("more-fn"), nullptr);
  cached.Stop();
}

// Syncs app "app" with one function, app-ticker, whose one trigger is `trigger` (a cron).
void SyncTicker(store::Store& store, const store::Json& trigger) {
  store::FunctionRecord ticker_fn;
  ticker_fn.id = "app-ticker";
  ticker_fn.app_id = "app";
  ticker_fn.name = "ticker";
  ticker_fn.config = {
      {"id", "app-ticker"},
      {"triggers", store::Json::array({trigger})},
      {"steps", {{"step", {{"runtime", {{"url", "http://127.0.0.1:1/api?fnId=app-ticker"}}}}}}}};
  store::AppSync sync;
  sync.app = {"app", "http://127.0.0.1:1/api", "cpp", "", "sum-ticker", 0, 0};
  sync.functions = {ticker_fn};
  EXPECT_THAT(store.SyncApp(sync), IsOk());
}

// A cron trigger with `jitter`: each tick's run has its first call due at a random time in
// [tick, tick + jitter] (kept in the store: the test's clock decides when it is claimable),
// and a second ticker that sees the same tick starts nothing.
TEST_F(IntakeHarness, CronJitterMakesEachTicksRunDueWithinTheJitterAndATickStartsOneRun) {
  SyncTicker(*store_, {{"cron", "* * * * *"}, {"jitter", "30s"}});

  intake::CronTicker ticker(*intake_, clock_, /*seed=*/42);
  intake::CronTicker other_coordinator(*intake_, clock_, /*seed=*/7);
  std::set<int64_t> delays;  // seconds after the tick at which the run's call was claimable
  int64_t now_s = UnixMillis(clock_.Now()) / 1000;
  for (int tick = 0; tick < 8; ++tick) {
    const int64_t tick_s = (now_s / 60 + 1) * 60;
    clock_.Advance(std::chrono::seconds(tick_s - now_s));
    now_s = tick_s;
    auto fired = ticker.FireTicks(tick_s - 1, tick_s);
    ASSERT_THAT(fired, IsOk());
    ASSERT_EQ(*fired, 1) << "tick " << tick;
    auto again = other_coordinator.FireTicks(tick_s - 1, tick_s);
    ASSERT_THAT(again, IsOk());
    EXPECT_EQ(*again, 0) << "tick " << tick;
    std::optional<int64_t> delay;
    for (int64_t s = 0; s <= 31 && !delay; ++s) {
      // Leased for longer than the test, so earlier runs are never claimed again.
      auto claimed = store_->Claim(10, clock_.Now(), 1h);
      ASSERT_THAT(claimed, IsOk());
      if (!claimed->empty()) {
        EXPECT_EQ(claimed->size(), 1u);
        delay = s;
      } else {
        clock_.Advance(1s);
        ++now_s;
      }
    }
    ASSERT_TRUE(delay) << "tick " << tick << ": no call due within 30 s of the tick";
    delays.insert(*delay);
  }
  // Spread out, not all at the tick (the seed makes this exact, not likely).
  EXPECT_GE(delays.size(), 4u);
  EXPECT_GT(*delays.rbegin(), 0);
  EXPECT_LE(*delays.rbegin(), 30);
  // One event per tick, whatever the delay: its id names the function and the tick.
  auto ticks = store_->ListEvents({.name = "inngest/scheduled.timer"});
  ASSERT_THAT(ticks, IsOk());
  EXPECT_EQ(ticks->size(), 8u);
  const int64_t last_tick_s = now_s / 60 * 60;
  auto last = store_->FindEventById("cron:app-ticker:" + FormatRfc3339(last_tick_s * 1000));
  ASSERT_THAT(last, IsOk());
  EXPECT_EQ(last->payload["data"]["scheduledAt"], FormatRfc3339(last_tick_s * 1000));
}

// A coordinator that stalled catches up the ticks of at most the last minute, or of half its
// --retain when that is shorter: a tick's event, which keeps a second coordinator from storing
// the tick again, may be deleted by retention once its run ended and it is --retain old.
TEST_F(IntakeHarness, ACronCatchUpGoesBackAMinuteOrHalfOfRetainWhenThatIsShorter) {
  SyncTicker(*store_, {{"cron", "* * * * *"}});
  const auto stored = [&](int64_t tick_s) {
    return store_->FindEventById("cron:app-ticker:" + FormatRfc3339(tick_s * 1000)).ok();
  };
  int64_t tick_s = UnixMillis(clock_.Now()) / 1000 / 60 * 60;
  // Each case catches up from the second before a minute's tick, `late` seconds after it.
  const auto catch_up = [&](intake::CronTicker& ticker, int64_t late) {
    tick_s += 60;
    clock_.Advance(std::chrono::duration_cast<std::chrono::milliseconds>(
        std::chrono::seconds(tick_s + late) - clock_.Now().time_since_epoch()));
    return ticker.CatchUp(tick_s - 1, tick_s + late);
  };

  intake::CronTicker no_retain(*intake_, clock_, /*seed=*/1);
  EXPECT_EQ(catch_up(no_retain, 59).value(), 1);
  EXPECT_TRUE(stored(tick_s));

  intake::CronTicker retain_10s(*intake_, clock_, /*seed=*/2, 10s);
  EXPECT_EQ(catch_up(retain_10s, 4).value(), 1);
  EXPECT_TRUE(stored(tick_s));
  // Twenty seconds late, under the minute: with --retain 10s the tick's event may be gone.
  EXPECT_EQ(catch_up(retain_10s, 20).value(), 0);
  EXPECT_FALSE(stored(tick_s));
  EXPECT_EQ(catch_up(retain_10s, 5).value(), 0);

  // At least the current second, whatever --retain.
  intake::CronTicker retain_1s(*intake_, clock_, /*seed=*/3, 1s);
  EXPECT_EQ(catch_up(retain_1s, 0).value(), 1);
  EXPECT_TRUE(stored(tick_s));
  EXPECT_EQ(catch_up(retain_1s, 1).value(), 0);
}

// A lane's gap, like a run's end, is the coordinator's own event: a function it cannot start
// (one ordering by a sequence number the gap has not) starts no run, and the gap is stored
// and starts the others. Refused, its announcement failed every second for good, and every
// gap announced after it with it.
TEST_F(IntakeHarness, ALaneGapAFunctionCannotOrderStartsTheOthersRuns) {
  store::AppSync numbered = OneFunctionApp("numbered", executor::kLaneGap);
  numbered.functions[0].config["ordering"] = {
      {"key", "event.data.tenant"}, {"sequence", "event.data.version"}, {"gap_timeout", "30s"}};
  ASSERT_THAT(store_->SyncApp(numbered), IsOk());
  ASSERT_THAT(store_->SyncApp(OneFunctionApp("alert", executor::kLaneGap)), IsOk());
  clock_.Advance(1s);  // past the function set's cache

  auto gap = intake_->Ingest({intake_->InternalEvent(
      executor::kLaneGap, {{"function_id", "other"}, {"key", "k"}, {"first", 2}, {"count", 1}},
      executor::LaneGapEventId(7))});
  ASSERT_THAT(gap, IsOk());
  EXPECT_EQ(gap->runs_started, 1);
  EXPECT_THAT(store_->FindEventById(executor::LaneGapEventId(7)), IsOk());
  auto alerted = store_->ListRuns({.function_id = "alert-fn", .limit = 10});
  ASSERT_THAT(alerted, IsOk());
  EXPECT_EQ(alerted->size(), 1u);
  auto ordered = store_->ListRuns({.function_id = "numbered-fn", .limit = 10});
  ASSERT_THAT(ordered, IsOk());
  EXPECT_TRUE(ordered->empty());
}

}  // namespace
}  // namespace funcky::mid
