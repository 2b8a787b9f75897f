// The run-end outbox: a run's end is recorded in the transaction that ends it, so a crash
// right after that commit, or a database outage while the end is being announced, loses no
// inngest/function.finished, and a run invoking the ended one resumes with its result at
// once, not at its timeout (an hour here).
#include <cstdio>
#include <thread>

#include <gtest/gtest.h>

#include "tests/support/e2e.h"
#include "tests/support/pg_cluster.h"
#include "tests/support/process.h"

namespace funcky::testing {
namespace {

Json EventsNamed(const Coordinator& c, const std::string& name) {
  return Http("GET", c.url() + "/v1/events?limit=500&name=" + name).body["data"];
}

std::string FirstRunOf(const Coordinator& c, const std::string& event_id) {
  auto runs = RunsOfEvent(c.url(), event_id);
  return runs.empty() ? "" : runs[0];
}

// The callee run a caller run invoked, once it exists.
Json CalleeRun(const Coordinator& c) {
  Json run;
  WaitFor([&] {
    auto r = Http("GET", c.url() + "/v1/runs?function=test-callee");
    if (r.status != 200 || r.body["data"].empty()) return false;
    run = r.body["data"][0];
    return true;
  });
  return run;
}

class RunEndsTest : public E2eTest, public ::testing::WithParamInterface<std::string> {
 protected:
  std::string backend() const override { return GetParam(); }
};

TEST_P(RunEndsTest, ACrashRightAfterARunEndsLosesNoEndAndTheInvokerResumesAtOnce) {
  // A short lease: under load the caller's own wait may not be stored yet when the callee's
  // end commits and the process exits; the caller's call is then redone after its lease,
  // and finds the end already announced.
  Coordinator c(db_, {"--lease", "2s"}, dir_);
  c.SetEnv({"FUNCKY_FAULT_AFTER_END_OF=test-callee"});
  c.Start();
  TestHost host(c.url(), dir_);
  const std::string event =
      Send(c, {{"name", "test/invoke"}, {"data", {{"n", 21}, {"timeout", "1h"}}}});
  // The callee's end commits, then the coordinator exits before announcing it.
  ASSERT_TRUE(WaitFor([&] { return !c.running(); })) << c.Log();
  ASSERT_NE(c.Log().find("fault injection: exiting after the end of run"), std::string::npos)
      << c.Log();

  c.SetEnv({});
  const auto restarted = std::chrono::steady_clock::now();
  c.Start();
  const std::string caller = FirstRunOf(c, event);
  ASSERT_FALSE(caller.empty());
  Json done = WaitForRunEnd(c.url(), caller, std::chrono::seconds(20));
  const auto resumed_after = std::chrono::steady_clock::now() - restarted;
  ASSERT_EQ(done["status"], "completed") << done.dump(2) << c.Log();
  EXPECT_EQ(done["output"]["result"], Json({{"doubled", 42}})) << done.dump(2);
  // At once: the restarted coordinator's first sweep announces the recorded end.
  EXPECT_LT(resumed_after, std::chrono::seconds(10));
  Json callee = CalleeRun(c);
  EXPECT_EQ(callee["status"], "completed");
  int callee_finished = 0;
  for (const Json& e : EventsNamed(c, "inngest/function.finished")) {
    callee_finished += e["payload"]["data"]["run_id"] == callee["id"] ? 1 : 0;
  }
  EXPECT_EQ(callee_finished, 1);
}

TEST_P(RunEndsTest, ACrashRightAfterAWaitIsStoredStillLooksBackAndResumesAtOnce) {
  Coordinator c(db_, {}, dir_);
  c.SetEnv({"FUNCKY_FAULT_AFTER_WAIT_OF=test-waiter"});
  c.Start();
  TestHost host(c.url(), dir_);
  // The run sends its own approval, 100 ms before it reaches a wait with a 2 s look-back:
  // only the look-back can match it. The wait commits, then the coordinator exits before
  // looking back.
  const std::string event = Send(c, {{"name", "test/wait"},
                                     {"data",
                                      {{"order", 7},
                                       {"announce", true},
                                       {"pause_ms", 100},
                                       {"lookback", "2s"},
                                       {"timeout", "1h"}}}});
  ASSERT_TRUE(WaitFor([&] { return !c.running(); })) << c.Log();
  ASSERT_NE(c.Log().find("fault injection: exiting after a wait of run"), std::string::npos)
      << c.Log();

  c.SetEnv({});
  const auto restarted = std::chrono::steady_clock::now();
  c.Start();
  const std::string run = FirstRunOf(c, event);
  ASSERT_FALSE(run.empty());
  Json done = WaitForRunEnd(c.url(), run, std::chrono::seconds(20));
  ASSERT_EQ(done["status"], "completed") << done.dump(2) << c.Log();
  EXPECT_EQ(done["output"]["approval"]["data"]["order"], 7) << done.dump(2);
  // At once, not at the wait's 1 h timeout: the restarted coordinator's sweep does the
  // look-back the crash skipped (once the wait is 2 s old).
  EXPECT_LT(std::chrono::steady_clock::now() - restarted, std::chrono::seconds(10));
}

TEST_P(RunEndsTest, AnEndNothingActsOnIsStoredWithItsEventsAtOnce) {
  Coordinator c(db_, {}, dir_);
  c.Start();
  TestHost host(c.url(), dir_);
  for (int i = 0; i < 3; ++i) {
    const std::string run =
        FirstRunOf(c, Send(c, {{"name", "test/two-steps"}, {"data", {{"i", i}}}}));
    ASSERT_FALSE(run.empty());
    Json done = WaitForRunEnd(c.url(), run, std::chrono::seconds(20));
    ASSERT_EQ(done["status"], "completed") << done.dump(2) << c.Log();
    // Nothing starts, cancels or waits on test-two-steps' end: its event was stored in the
    // transaction that completed the run, so it is there as soon as the run is.
    int finished = 0;
    for (const Json& e : EventsNamed(c, "inngest/function.finished")) {
      if (e["payload"]["data"]["run_id"] == run) {
        ++finished;
        EXPECT_EQ(e["payload"]["data"]["function_id"], "test-two-steps");
        EXPECT_EQ(e["payload"]["data"]["result"], done["output"]);
      }
    }
    EXPECT_EQ(finished, 1) << run;
    if (backend() == "postgres") {  // and through no outbox
      PgConnection db(db_);
      EXPECT_EQ(
          db.Count("SELECT count(*) FROM runs WHERE id = '" + run + "' AND end_events_stored"), 1);
      EXPECT_EQ(db.Count("SELECT count(*) FROM run_ends"), 0);
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Stores, RunEndsTest, ::testing::Values("postgres", "sqlite"),
                         [](const auto& info) { return info.param; });

class RunEndsOutageTest : public E2eTest {};

TEST_F(RunEndsOutageTest, ARunEndAnnouncedDuringADatabaseOutageIsStoredOnceItIsBack) {
  Coordinator c(db_, {}, dir_);
  // Between the commit of the callee's end and its announcement, the test stops PostgreSQL.
  c.SetEnv({"FUNCKY_FAULT_AFTER_END_OF=test-callee", "FUNCKY_FAULT_PAUSE=1500ms"});
  c.Start();
  TestHost host(c.url(), dir_);
  const std::string caller =
      FirstRunOf(c, Send(c, {{"name", "test/invoke"}, {"data", {{"n", 4}, {"timeout", "1h"}}}}));
  ASSERT_FALSE(caller.empty());
  ASSERT_TRUE(WaitFor([&] {
    return c.Log().find("fault injection: pausing") != std::string::npos;
  })) << c.Log();
  SharedPgCluster().Stop();
  // A 20 s outage, well past the announcement's own retries (under a second).
  std::this_thread::sleep_for(std::chrono::seconds(20));
  ASSERT_NE(c.Log().find("the sweep retries them"), std::string::npos) << c.Log();
  SharedPgCluster().Start();
  const auto back = std::chrono::steady_clock::now();
  Json done = WaitForRunEnd(c.url(), caller, std::chrono::seconds(30));
  ASSERT_EQ(done["status"], "completed") << done.dump(2) << c.Log();
  std::printf(
      "after a 20 s outage, the invoking run completed %lld ms after the database was back\n",
      static_cast<long long>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                 std::chrono::steady_clock::now() - back)
                                 .count()));
  EXPECT_EQ(done["output"]["result"], Json({{"doubled", 8}})) << done.dump(2);
  EXPECT_EQ(EventsNamed(c, "inngest/function.finished").size(), 2u);  // callee and caller
  EXPECT_TRUE(c.running());
}

}  // namespace
}  // namespace funcky::testing
