// Recovery in seconds, on PostgreSQL: a database restart under load, a coordinator killed
// with calls in flight (leases are short and renewed while a call runs), and a coordinator
// stopped with SIGTERM giving its unfinished calls back at once.
#include <signal.h>

#include <algorithm>
#include <cstdio>
#include <map>
#include <thread>

#include <gtest/gtest.h>

#include "tests/support/e2e.h"
#include "tests/support/pg_cluster.h"
#include "tests/support/process.h"

namespace funcky::testing {
namespace {

int64_t NowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

class RecoveryTest : public E2eTest {
 protected:
  // Ids of the runs the events `ids` started.
  std::vector<std::string> RunsOf(const Coordinator& c, const std::vector<std::string>& ids) {
    std::vector<std::string> runs;
    for (const auto& id : ids) {
      auto r = RunsOfEvent(c.url(), id);
      if (!r.empty()) runs.push_back(r[0]);
    }
    return runs;
  }
  int Completed(const Coordinator& c) {
    auto r = Http("GET", c.url() + "/v1/runs?status=completed&limit=200");
    return r.status == 200 ? static_cast<int>(r.body["data"].size()) : -1;
  }
};

TEST_F(RecoveryTest, APostgresRestartUnderLoadDelaysRunsBySecondsNotByTheLease) {
  // A 60 s lease: a run stalled until its lease expired would fail the 10 s bound below.
  auto c = StartCoordinator({"--lease", "60s"});
  TestHost host(c->url(), dir_);
  const Json slow = {{"name", "test/slow"}, {"data", {{"steps", 3}, {"delay_ms", 200}}}};
  std::vector<std::string> events;
  for (int i = 0; i < 30; ++i) events.push_back(Send(*c, slow));
  ASSERT_TRUE(WaitFor([&] { return host.Count("step") >= 10; }));
  SharedPgCluster().Stop();
  SharedPgCluster().Start();
  const auto restarted = std::chrono::steady_clock::now();
  EXPECT_TRUE(WaitFor([&] { return Completed(*c) == 30; }, std::chrono::seconds(10)))
      << "completed: " << Completed(*c) << "\n"
      << c->Log();
  const auto took = std::chrono::steady_clock::now() - restarted;
  std::printf(
      "all 30 runs completed %lld ms after the restart\n",
      static_cast<long long>(std::chrono::duration_cast<std::chrono::milliseconds>(took).count()));
  EXPECT_TRUE(c->running());
}

TEST_F(RecoveryTest, Kill9OfOneOfTwoCoordinatorsResumesItsRunsWithin15Seconds) {
  auto a = StartCoordinator();  // the default lease: 10 s, renewed every third of it
  auto b = StartCoordinator();
  TestHost host(a->url(), dir_);
  const Json slow = {{"name", "test/slow"}, {"data", {{"steps", 4}, {"delay_ms", 1000}}}};
  std::vector<std::string> events;
  for (int i = 0; i < 12; ++i) events.push_back(Send(*a, slow));
  // Both coordinators hold calls; kill one mid-call.
  ASSERT_TRUE(WaitFor([&] { return host.Count("step") >= 14; }));
  a->Kill9();
  const int64_t killed_ms = NowMs();
  ASSERT_TRUE(WaitFor([&] { return Completed(*b) == 12; }, std::chrono::seconds(40)))
      << "completed: " << Completed(*b) << "\n"
      << b->Log();
  // For every run unfinished at the kill, the next step began within 15 s of it.
  std::map<std::string, int64_t> first_after_kill;
  std::map<std::string, int> steps_before_kill;
  for (const Json& r : host.Records()) {
    if (r["kind"] != "step") continue;
    const std::string run = r["run_id"];
    const int64_t t = r["t_ms"];
    if (t < killed_ms) {
      ++steps_before_kill[run];
    } else if (!first_after_kill.count(run)) {
      first_after_kill[run] = t;
    }
  }
  int resumed = 0;
  int64_t slowest_ms = 0;
  for (const auto& [run, t] : first_after_kill) {
    EXPECT_LT(t - killed_ms, 15000) << "run " << run;
    slowest_ms = std::max(slowest_ms, t - killed_ms);
    ++resumed;
  }
  EXPECT_GT(resumed, 0);
  std::printf("after kill -9, every one of %d unfinished runs took its next step within %lld ms\n",
              resumed, static_cast<long long>(slowest_ms));
}

TEST_F(RecoveryTest, SigtermGivesUnfinishedCallsBackToTheOtherCoordinatorAtOnce) {
  // Long leases: only the give-back makes the other coordinator take over within seconds.
  auto a = StartCoordinator({"--lease", "60s", "--drain-timeout", "1s"});
  TestHost host(a->url(), dir_);
  const std::string event =
      Send(*a, {{"name", "test/slow"}, {"data", {{"steps", 1}, {"delay_ms", 6000}}}});
  ASSERT_TRUE(WaitFor([&] { return host.Count("step") == 1; }));  // a's call is running
  auto b = StartCoordinator({"--lease", "60s"});
  const int64_t stopped_ms = NowMs();
  a->Stop(SIGTERM, std::chrono::seconds(10));
  EXPECT_NE(a->Log().find("gave back 1 unfinished call(s)"), std::string::npos) << a->Log();
  // b calls the host again for the step (at least once), within seconds, not 60 s.
  ASSERT_TRUE(WaitFor([&] { return host.Count("step") == 2; }, std::chrono::seconds(10)))
      << b->Log();
  int64_t second_ms = 0;
  for (const Json& r : host.Records()) {
    if (r["kind"] == "step") second_ms = r["t_ms"];
  }
  EXPECT_LT(second_ms - stopped_ms, 5000);
  std::printf("after SIGTERM, the other coordinator redid the unfinished call %lld ms later\n",
              static_cast<long long>(second_ms - stopped_ms));
  auto runs = RunsOfEvent(b->url(), event);
  ASSERT_EQ(runs.size(), 1u);
  EXPECT_EQ(WaitForRunEnd(b->url(), runs[0])["status"], "completed");
}

// While a SIGTERM drain lets a call finish, HTTP stays open: the host's checkpoints and events
// still come in (an event is stored and runs after a restart), /healthz answers, and /readyz
// answers 503 so that a load balancer sends traffic elsewhere. The listener closed at once,
// and a host's checkpoints of the calls being drained failed.
TEST_F(RecoveryTest, DuringTheSigtermDrainHttpStaysOpenAndReadyzSaysStopping) {
  auto c = StartCoordinator({"--drain-timeout", "20s"});
  TestHost host(c->url(), dir_);
  const std::string slow =
      Send(*c, {{"name", "test/slow"}, {"data", {{"steps", 1}, {"delay_ms", 6000}}}});
  ASSERT_TRUE(WaitFor([&] { return host.Count("step") == 1; }));  // the call is running
  std::thread stopper([&] { c->Stop(SIGTERM, std::chrono::seconds(30)); });
  EXPECT_TRUE(WaitFor([&] { return c->Log().find("signal 15: stopping") != std::string::npos; },
                      std::chrono::seconds(10)));
  auto ready = Http("GET", c->url() + "/readyz");
  EXPECT_EQ(ready.status, 503) << ready.raw;
  EXPECT_EQ(ready.body["error"]["message"], "draining: the coordinator is stopping") << ready.raw;
  EXPECT_EQ(Http("GET", c->url() + "/healthz").status, 200);
  auto sent = Http("POST", c->url() + "/e/test",
                   Json{{"name", "test/two-steps"}, {"data", Json::object()}}.dump());
  EXPECT_EQ(sent.status, 200) << sent.raw;
  EXPECT_TRUE(c->running()) << "the call in flight holds the drain";
  stopper.join();
  EXPECT_EQ(c->exit_code(), 0) << c->Log();

  c->Start();
  const auto slow_runs = RunsOfEvent(c->url(), slow);
  ASSERT_EQ(slow_runs.size(), 1u);
  EXPECT_EQ(WaitForRunEnd(c->url(), slow_runs[0])["status"], "completed");
  ASSERT_EQ(sent.body["ids"].size(), 1u) << sent.raw;
  const auto runs = RunsOfEvent(c->url(), sent.body["ids"][0].get<std::string>());
  ASSERT_EQ(runs.size(), 1u) << "the event accepted during the drain was stored";
  EXPECT_EQ(WaitForRunEnd(c->url(), runs[0])["status"], "completed");
}

// A second signal during the drain (^C again) stops waiting for the calls in flight: their
// leases go back at once, and the coordinator exits, well before --drain-timeout.
TEST_F(RecoveryTest, ASecondSignalDuringTheDrainStopsWaitingForTheCalls) {
  auto c = StartCoordinator({"--drain-timeout", "60s"});
  TestHost host(c->url(), dir_);
  Send(*c, {{"name", "test/slow"}, {"data", {{"steps", 1}, {"delay_ms", 30000}}}});
  ASSERT_TRUE(WaitFor([&] { return host.Count("step") == 1; }));  // the call is running
  ASSERT_EQ(kill(c->pid(), SIGTERM), 0);
  ASSERT_TRUE(WaitFor([&] { return c->Log().find("signal 15: stopping") != std::string::npos; },
                      std::chrono::seconds(10)));
  EXPECT_TRUE(c->running()) << "the call in flight holds the drain";
  ASSERT_EQ(kill(c->pid(), SIGINT), 0);
  EXPECT_TRUE(WaitFor([&] { return !c->running(); }, std::chrono::seconds(15))) << c->Log();
  EXPECT_EQ(c->exit_code(), 0) << c->Log();
  EXPECT_NE(c->Log().find("signal 2 again: not waiting for the 1 call(s) in flight"),
            std::string::npos)
      << c->Log();
}

TEST_F(RecoveryTest, SigtermUnderLoadExitsCleanlyAndEveryRunCompletesAfterARestart) {
  auto c = StartCoordinator({"--drain-timeout", "2s"});
  TestHost host(c->url(), dir_);
  const Json slow = {{"name", "test/slow"}, {"data", {{"steps", 3}, {"delay_ms", 300}}}};
  for (int i = 0; i < 20; ++i) Send(*c, slow);
  ASSERT_TRUE(WaitFor([&] { return host.Count("step") >= 5; }));
  c->Stop(SIGTERM, std::chrono::seconds(15));  // SIGKILL only past 15 s
  EXPECT_EQ(c->exit_code(), 0) << c->Log();
  EXPECT_NE(c->Log().find("stopped"), std::string::npos) << c->Log();
  // Run against the sanitizer build too (`make test`): nothing reported on the way down.
  EXPECT_EQ(c->Log().find("Sanitizer"), std::string::npos) << c->Log();
  EXPECT_EQ(c->Log().find("runtime error:"), std::string::npos) << c->Log();
  c->Start();
  EXPECT_TRUE(WaitFor([&] { return Completed(*c) == 20; }, std::chrono::seconds(30))) << c->Log();
}

// A coordinator with --max-in-flight 0 takes events and makes no call: another coordinator
// on the database makes them, woken by its announcement (NOTIFY) rather than by its poll;
// one started with --listen-for-work false is not woken, and finds the work only by its poll.
TEST_F(RecoveryTest, OtherCoordinatorsAreWokenByNotifyUnlessTheyDoNotListen) {
  auto front = StartCoordinator({"--max-in-flight", "0"});
  TestHost host(front->url(), dir_);
  const Json fast = {{"name", "test/slow"}, {"data", {{"steps", 1}, {"delay_ms", 0}}}};
  const std::string parked = Send(*front, fast);
  std::this_thread::sleep_for(std::chrono::milliseconds(1500));
  EXPECT_EQ(host.Count("step"), 0) << "--max-in-flight 0 makes no call\n" << front->Log();

  // Polls only every 60 s: a call within seconds is the notification's doing. Its first look
  // at the queue, at start, takes the parked run.
  auto listening = StartCoordinator({"--poll-interval", "60s"});
  ASSERT_TRUE(WaitFor([&] { return host.Count("step") == 1; }, std::chrono::seconds(10)))
      << listening->Log();
  const int64_t sent_ms = NowMs();
  Send(*front, fast);
  ASSERT_TRUE(WaitFor([&] { return host.Count("step") == 2; }, std::chrono::seconds(10)))
      << listening->Log();
  EXPECT_LT(NowMs() - sent_ms, 5000);
  listening->Stop(SIGTERM, std::chrono::seconds(10));

  // Its first look, at start, takes a run parked for it: seen done, not guessed by a sleep
  // (a first look late on a busy box took the run sent next). Then a second for the looks
  // that follow a claim to find nothing and the executor to wait for its poll.
  Send(*front, fast);
  auto deaf = StartCoordinator({"--poll-interval", "60s", "--listen-for-work", "false"});
  ASSERT_TRUE(WaitFor([&] { return host.Count("step") == 3; }, std::chrono::seconds(10)))
      << deaf->Log();
  std::this_thread::sleep_for(std::chrono::milliseconds(1000));
  Send(*front, fast);
  std::this_thread::sleep_for(std::chrono::milliseconds(3000));
  EXPECT_EQ(host.Count("step"), 3) << "not listening, it waits for its poll\n" << deaf->Log();
  EXPECT_EQ(RunsOfEvent(deaf->url(), parked).size(), 1u);
}

// A negative --max-in-flight is refused with a message naming it, not taken as 0.
TEST_F(RecoveryTest, ANegativeMaxInFlightIsRefused) {
  Process p({FUNCKY_BIN, "dev", "--db", dir_ + "/x.db", "--max-in-flight", "-1"}, dir_ + "/x.log");
  ASSERT_TRUE(WaitFor([&] { return !p.running(); }, std::chrono::seconds(10)));
  EXPECT_NE(p.exit_code(), 0);
  EXPECT_NE(p.Log().find("--max-in-flight"), std::string::npos) << p.Log();
}

// `funcky migrate` brings a new database up to date and, run again, has nothing to do;
// PostgreSQL's notices (the second run's "already exists, skipping") stay out of its output,
// and a database it cannot reach is an error that names it without the URL's password.
TEST_F(RecoveryTest, MigrateTwiceAppliesOnceAndPrintsNoServerNotices) {
  const std::string url = SharedPgCluster().CreateDatabase(CurrentTestSlug());
  for (int i = 0; i < 2; ++i) {
    Process p({FUNCKY_BIN, "migrate", "--db", url}, dir_ + "/migrate" + std::to_string(i) + ".log");
    ASSERT_TRUE(WaitFor([&] { return !p.running(); }, std::chrono::seconds(30)));
    EXPECT_EQ(p.exit_code(), 0) << p.Log();
    EXPECT_EQ(p.Log().find("NOTICE"), std::string::npos) << p.Log();
    EXPECT_NE(p.Log().find("up to date"), std::string::npos) << p.Log();
  }
  Process bad({FUNCKY_BIN, "migrate", "--db", "postgres://postgres:hunter2@127.0.0.1:1/none"},
              dir_ + "/bad.log");
  ASSERT_TRUE(WaitFor([&] { return !bad.running(); }, std::chrono::seconds(30)));
  EXPECT_NE(bad.exit_code(), 0);
  EXPECT_NE(bad.Log().find("cannot connect to PostgreSQL"), std::string::npos) << bad.Log();
  EXPECT_EQ(bad.Log().find("hunter2"), std::string::npos) << "no password in the log";
}

// A newer coordinator migrates the database under a running one: a migration marked as
// breaking earlier versions (schema_migrations.breaks_earlier) stops the running coordinator
// within its schema check's 10 s, as SIGTERM would but with exit code 1 and an error that
// says why, and one started now (serve or migrate) refuses at start, changing nothing.
TEST_F(RecoveryTest, AMigrationThatBreaksThisVersionStopsItAndKeepsItFromStarting) {
  auto c = StartCoordinator();
  PgConnection pg(db_);
  const int64_t known = pg.Count("SELECT max(version) FROM schema_migrations");
  const std::string newer = std::to_string(known + 1);
  pg.Query("INSERT INTO schema_migrations (version, name, breaks_earlier) VALUES (" + newer +
           ", 'from_a_newer_version', true)");
  ASSERT_TRUE(WaitFor([&] { return !c->running(); }, std::chrono::seconds(20))) << c->Log();
  EXPECT_EQ(c->exit_code(), 1) << c->Log();
  const std::string why = "at schema version " + newer + ", this funcky knows up to " +
                          std::to_string(known) + ", and version " + newer +
                          " changes what earlier versions read and write";
  EXPECT_NE(c->Log().find(why), std::string::npos) << c->Log();
  EXPECT_NE(c->Log().find("newer schema: stopping"), std::string::npos) << c->Log();

  // Had a refused start applied anything, it would apply the newest migration it knows again.
  const std::string newest_name = *pg.Query("SELECT name FROM schema_migrations WHERE version = " +
                                            std::to_string(known))[0][0];
  pg.Query("DELETE FROM schema_migrations WHERE version = " + std::to_string(known));
  for (const char* command : {"serve", "migrate"}) {
    std::vector<std::string> args = {FUNCKY_BIN, command, "--db", db_};
    if (std::string(command) == "serve") args.insert(args.end(), {"--port", "0"});
    Process p(args, dir_ + "/" + command + ".log");
    ASSERT_TRUE(WaitFor([&] { return !p.running(); }, std::chrono::seconds(30))) << p.Log();
    EXPECT_EQ(p.exit_code(), 1) << p.Log();
    EXPECT_NE(p.Log().find(why), std::string::npos) << p.Log();
  }
  EXPECT_EQ(
      pg.Count("SELECT count(*) FROM schema_migrations WHERE version = " + std::to_string(known)),
      0)
      << "nothing applied";
  pg.Query("INSERT INTO schema_migrations (version, name) VALUES (" + std::to_string(known) +
           ", '" + newest_name + "')");

  // A newer migration that breaks nothing: a coordinator starts and says so.
  pg.Query("UPDATE schema_migrations SET breaks_earlier = false WHERE version = " + newer);
  auto again = StartCoordinator();
  EXPECT_NE(again->Log().find("newer than this funcky knows"), std::string::npos) << again->Log();
  TestHost host(again->url(), dir_);
  EXPECT_EQ(RunToEnd(*again, {{"name", "test/two-steps"}, {"data", {{"n", 1}}}})["status"],
            "completed");
}

}  // namespace
}  // namespace funcky::testing
