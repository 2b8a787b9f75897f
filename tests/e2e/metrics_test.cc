// /metrics after known work: the text parses as Prometheus exposition format (checked with
// the prometheus_client parser), per-function counters and histograms count what ran, the
// queue and lane gauges follow the store, on PostgreSQL and SQLite.
#include <cstdio>
#include <fstream>
#include <sstream>
#include <thread>

#include <gtest/gtest.h>

#include "tests/support/e2e.h"
#include "tests/support/process.h"

namespace funcky::testing {
namespace {

struct Sample {
  std::string name;
  Json labels;
  double value = 0;
};

// Sends test/ordered's event for key "a" that fails: its run blocks lane a. Returns the run's
// id; empty, failing the test, when it did not block.
std::string BlockedHead(const Coordinator& c) {
  const JsonReply sent = Http(
      "POST", c.url() + "/e/test",
      Json{{"name", "test/ordered"}, {"data", {{"key", "a"}, {"seq", 1}, {"fail", true}}}}.dump());
  if (sent.status != 200 || !sent.body["ids"].is_array() || sent.body["ids"].size() != 1) {
    ADD_FAILURE() << sent.raw;
    return "";
  }
  const std::vector<std::string> runs = RunsOfEvent(c.url(), sent.body["ids"][0]);
  if (runs.size() != 1) {
    ADD_FAILURE() << runs.size() << " runs of one event";
    return "";
  }
  const Json run = WaitForRunStatus(c.url(), runs[0], {"blocked", "failed", "completed"});
  if (run["status"] != "blocked") {
    ADD_FAILURE() << "the head did not block: " << run.dump();
    return "";
  }
  return runs[0];
}

class MetricsTest : public E2eTest, public ::testing::WithParamInterface<std::string> {
 protected:
  std::string backend() const override { return GetParam(); }

  // Scrapes /metrics and parses it with prometheus_client; fails the test if it does not parse.
  std::vector<Sample> Scrape(const Coordinator& c) {
    auto r = Http("GET", c.url() + "/metrics");
    EXPECT_EQ(r.status, 200);
    EXPECT_EQ(FindHeader(r.headers, "Content-Type").rfind("text/plain; version=0.0.4", 0), 0u);
    const std::string in = dir_ + "/metrics.txt", out = dir_ + "/metrics.jsonl";
    std::ofstream(in) << r.raw;
    // Debian's python3 (python3-prometheus-client), whatever python3 comes first on PATH.
    const std::string cmd = "/usr/bin/python3 " PARSE_METRICS_PY " < " + in + " > " + out;
    EXPECT_EQ(std::system(cmd.c_str()), 0) << "not Prometheus text:\n" << r.raw;
    std::vector<Sample> samples;
    for (const Json& j : ReadJsonLines(out)) {
      samples.push_back({j["name"], j["labels"], j["value"].get<double>()});
    }
    return samples;
  }

  // The value of the sample `name` with exactly `labels`; -1 when absent.
  static double Value(const std::vector<Sample>& samples, const std::string& name,
                      const Json& labels = Json::object()) {
    for (const auto& s : samples) {
      if (s.name == name && s.labels == labels) return s.value;
    }
    return -1;
  }
};

TEST_P(MetricsTest, CountersHistogramsAndGaugesAfterKnownWork) {
  auto c = StartCoordinator();
  TestHost host(c->url(), dir_);
  const Json fn = {{"function", "test-two-steps"}};
  Json run = RunToEnd(*c, {{"name", "test/two-steps"}});
  ASSERT_EQ(run["status"], "completed");
  // One failed attempt, then success: 3 calls of the flaky function ("before"; "flaky"
  // failing; "flaky" again, answered with the run's end), one a step error.
  Json flaky = RunToEnd(*c, {{"name", "test/flaky"}, {"data", {{"fail_times", 1}}}});
  ASSERT_EQ(flaky["status"], "completed");

  // The run's end is counted, and its call's slot freed, a moment after the end is committed
  // (which the run's status shows): scraped until they are.
  std::vector<Sample> m;
  EXPECT_TRUE(WaitFor(
      [&] {
        m = Scrape(*c);
        return Value(m, "funcky_runs_finished_total",
                     {{"function", "test-flaky"}, {"status", "completed"}}) == 1 &&
               Value(m, "funcky_calls_in_flight") == 0;
      },
      std::chrono::seconds(10)));
  EXPECT_EQ(Value(m, "funcky_events_accepted_total"), 2);
  EXPECT_EQ(Value(m, "funcky_runs_started_total"), 2);
  // Two steps: a call that runs "first", one that runs "second" and returns = 2 calls, all ok.
  EXPECT_EQ(Value(m, "funcky_calls_total", {{"function", "test-two-steps"}, {"outcome", "ok"}}), 2);
  EXPECT_EQ(Value(m, "funcky_calls_total", {{"function", "test-flaky"}, {"outcome", "error"}}),
            -1);  // a step error is a 206 from the SDK: the call itself succeeded
  EXPECT_EQ(Value(m, "funcky_call_duration_seconds_count", fn), 2);
  EXPECT_GT(Value(m, "funcky_call_duration_seconds_sum", fn), 0);
  EXPECT_EQ(Value(m, "funcky_call_duration_seconds_bucket",
                  {{"function", "test-two-steps"}, {"le", "+Inf"}}),
            2);
  EXPECT_EQ(Value(m, "funcky_event_to_first_call_seconds_count", fn), 1);
  EXPECT_EQ(Value(m, "funcky_event_to_first_call_seconds_count", {{"function", "test-flaky"}}), 1);
  // Step attempts as recorded: "first" and "second"; for flaky "before", one failed "flaky"
  // attempt and the one that succeeded.
  EXPECT_EQ(Value(m, "funcky_step_duration_seconds_count", fn), 2);
  EXPECT_EQ(Value(m, "funcky_step_duration_seconds_count", {{"function", "test-flaky"}}), 3);
  EXPECT_EQ(Value(m, "funcky_runs_finished_total",
                  {{"function", "test-two-steps"}, {"status", "completed"}}),
            1);
  EXPECT_EQ(
      Value(m, "funcky_runs_finished_total", {{"function", "test-flaky"}, {"status", "completed"}}),
      1);
  EXPECT_EQ(Value(m, "funcky_queue_depth"), 0);
  EXPECT_EQ(Value(m, "funcky_queue_lag_seconds"), 0);
  EXPECT_EQ(Value(m, "funcky_lanes_blocked"), 0);
  EXPECT_EQ(Value(m, "funcky_calls_in_flight"), 0);
  // Two runs, each at least its ingest and a record of each call, came back from PostgreSQL;
  // SQLite has no round trips to count.
  const double round_trips = Value(m, "funcky_db_round_trips_total");
  if (GetParam() == "postgres") {
    EXPECT_GE(round_trips, 2 + 5);
    // The count is read at each scrape, not with the queue gauges (which a scrape may reuse):
    // the coordinator's sweeps, each second, move it on.
    EXPECT_TRUE(WaitFor([&] {
      return Value(Scrape(*c), "funcky_db_round_trips_total") > round_trips;
    })) << round_trips;
  } else {
    EXPECT_EQ(round_trips, -1);
  }
}

// Ends no executor's transition made are counted too: a run cancelled through the API.
TEST_P(MetricsTest, ACancelledRunIsCountedAsFinished) {
  auto c = StartCoordinator();
  TestHost host(c->url(), dir_);
  const std::string sleeping =
      RunsOfEvent(c->url(), Send(*c, {{"name", "test/sleep"}, {"data", {{"sleep_ms", 60000}}}}))[0];
  ASSERT_EQ(WaitForRunStatus(c->url(), sleeping, {"sleeping"})["status"], "sleeping");
  ASSERT_EQ(Http("POST", c->url() + "/v1/runs/" + sleeping + "/cancel").status, 200);
  EXPECT_TRUE(WaitFor([&] {
    return Value(Scrape(*c), "funcky_runs_finished_total",
                 {{"function", "test-sleeper"}, {"status", "cancelled"}}) == 1;
  })) << Value(Scrape(*c), "funcky_runs_finished_total",
               {{"function", "test-sleeper"}, {"status", "cancelled"}});
}

// A skip-head sent again (its answer lost) skips nothing more, and counts its head's end once.
TEST_P(MetricsTest, ASkipHeadSentAgainCountsTheHeadsEndOnce) {
  auto c = StartCoordinator();
  TestHost host(c->url(), dir_);
  const std::vector<std::string> head = {BlockedHead(*c)};
  ASSERT_FALSE(head[0].empty());
  const std::string skip = c->url() + "/v1/lanes/test-ordered/a/skip-head?run_id=" + head[0];
  ASSERT_EQ(Http("POST", skip).status, 200);
  ASSERT_EQ(Http("POST", skip).status, 200);
  // Both answers come after the end is counted (AnnounceEnd, in the request).
  EXPECT_EQ(Value(Scrape(*c), "funcky_runs_finished_total",
                  {{"function", "test-ordered"}, {"status", "failed"}}),
            1);
}

// Histogram values, not just counts: a step that sleeps 2 s on the host is observed above
// the 1 s bucket, and a run whose first call waits behind it (one call at a time) waited more
// than a second from its event. Lower bounds only: load makes durations longer, never
// shorter. A call to a host that is gone is counted with the outcome "unreachable".
TEST_P(MetricsTest, HistogramsHoldKnownDurationsAndCallsCountTheirOutcome) {
  auto c = StartCoordinator({"--max-in-flight", "1"});
  TestHost host(c->url(), dir_);
  auto slow = RunsOfEvent(
      c->url(), Send(*c, {{"name", "test/slow"}, {"data", {{"steps", 1}, {"delay_ms", 2000}}}}));
  ASSERT_EQ(slow.size(), 1u);
  ASSERT_TRUE(WaitFor([&] { return host.Count("step") == 1; }));
  // Sent while the slow step runs: its first call cannot start before that call ends.
  auto waiting = RunsOfEvent(c->url(), Send(*c, {{"name", "test/two-steps"}}));
  ASSERT_EQ(waiting.size(), 1u);
  ASSERT_EQ(WaitForRunEnd(c->url(), slow[0])["status"], "completed");
  ASSERT_EQ(WaitForRunEnd(c->url(), waiting[0])["status"], "completed");

  auto m = Scrape(*c);
  const Json slow_fn = {{"function", "test-slow"}};
  ASSERT_EQ(Value(m, "funcky_step_duration_seconds_count", slow_fn), 1);
  EXPECT_GE(Value(m, "funcky_step_duration_seconds_sum", slow_fn), 2.0 - 0.002);  // whole ms
  EXPECT_EQ(
      Value(m, "funcky_step_duration_seconds_bucket", {{"function", "test-slow"}, {"le", "1"}}), 0);
  EXPECT_EQ(
      Value(m, "funcky_step_duration_seconds_bucket", {{"function", "test-slow"}, {"le", "+Inf"}}),
      1);
  // The slow run's own first call went out at once; the other's waited for it.
  const Json waiting_fn = {{"function", "test-two-steps"}};
  ASSERT_EQ(Value(m, "funcky_event_to_first_call_seconds_count", waiting_fn), 1);
  EXPECT_GE(Value(m, "funcky_event_to_first_call_seconds_sum", waiting_fn), 1.0);
  EXPECT_EQ(Value(m, "funcky_event_to_first_call_seconds_bucket",
                  {{"function", "test-two-steps"}, {"le", "1"}}),
            0);
  EXPECT_EQ(Value(m, "funcky_event_to_first_call_seconds_bucket",
                  {{"function", "test-two-steps"}, {"le", "+Inf"}}),
            1);
  EXPECT_EQ(Value(m, "funcky_calls_total", {{"function", "test-two-steps"}, {"outcome", "ok"}}), 2);

  // The host goes away: the next run's calls cannot connect.
  host.Stop();
  Send(*c, {{"name", "test/two-steps"}});
  double unreachable = -1;
  EXPECT_TRUE(WaitFor([&] {
    unreachable = Value(Scrape(*c), "funcky_calls_total",
                        {{"function", "test-two-steps"}, {"outcome", "unreachable"}});
    return unreachable >= 1;
  })) << unreachable;
  EXPECT_EQ(
      Value(Scrape(*c), "funcky_calls_total", {{"function", "test-two-steps"}, {"outcome", "ok"}}),
      2);
}

TEST_P(MetricsTest, ABlockedLaneShowsInTheGaugesWithItsAgeGrowing) {
  auto c = StartCoordinator();
  TestHost host(c->url(), dir_);
  const std::vector<std::string> head = {BlockedHead(*c)};
  ASSERT_FALSE(head[0].empty());
  Send(*c, {{"name", "test/ordered"}, {"data", {{"key", "a"}, {"seq", 2}}}});
  std::vector<Sample> first;  // the blocked head is counted a moment after its status shows
  EXPECT_TRUE(WaitFor(
      [&] {
        first = Scrape(*c);
        return Value(first, "funcky_runs_finished_total",
                     {{"function", "test-ordered"}, {"status", "blocked"}}) == 1;
      },
      std::chrono::seconds(10)));
  EXPECT_EQ(Value(first, "funcky_lanes_blocked"), 1);
  const double age1 = Value(first, "funcky_lane_blocked_longest_seconds");
  EXPECT_GE(age1, 0);
  std::this_thread::sleep_for(std::chrono::milliseconds(1200));
  auto second = Scrape(*c);
  EXPECT_EQ(Value(second, "funcky_lanes_blocked"), 1);
  EXPECT_GE(Value(second, "funcky_lane_blocked_longest_seconds"), age1 + 1.0);
  // The blocked head has no queue items; the later run of the key waits in the lane.
  EXPECT_EQ(Value(second, "funcky_queue_depth"), 0);
}

TEST_P(MetricsTest, QueueLagIsTheAgeOfTheOldestDueItem) {
  // One call at a time and a host step that takes 2 s: the second run's first call is due
  // and waits while the first run's call is in flight.
  auto c = StartCoordinator({"--max-in-flight", "1"});
  TestHost host(c->url(), dir_);
  const Json slow = {{"name", "test/slow"}, {"data", {{"steps", 1}, {"delay_ms", 2000}}}};
  Send(*c, slow);
  ASSERT_TRUE(WaitFor([&] { return host.Count("step") == 1; }));
  Send(*c, slow);
  std::this_thread::sleep_for(std::chrono::milliseconds(800));
  auto m = Scrape(*c);
  EXPECT_EQ(Value(m, "funcky_calls_in_flight"), 1);
  EXPECT_EQ(Value(m, "funcky_queue_due"), 1);
  EXPECT_GE(Value(m, "funcky_queue_lag_seconds"), 0.7);
  EXPECT_LT(Value(m, "funcky_queue_lag_seconds"), 2.0);
  EXPECT_EQ(Value(m, "funcky_queue_depth"), 2);  // the leased call and the due one
}

INSTANTIATE_TEST_SUITE_P(Stores, MetricsTest, ::testing::Values("postgres", "sqlite"),
                         [](const auto& info) { return info.param; });

}  // namespace
}  // namespace funcky::testing

namespace funcky::testing {
namespace {

class LogFormatTest : public E2eTest {
 protected:
  std::string backend() const override { return "sqlite"; }
};

// Every line parses as JSON, and lines about a run carry its ids as fields: the executor's
// (a run's end; a step's retry, with its step id), the intake's (a replay) and the lane
// API's (an operator's skip of a blocked head).
TEST_F(LogFormatTest, JsonLogsParseLineByLineAndNameTheRun) {
  auto c = StartCoordinator({"--log-format", "json"});
  TestHost host(c->url(), dir_);
  Json run = RunToEnd(*c, {{"name", "test/two-steps"}});
  ASSERT_EQ(run["status"], "completed");
  Json flaky = RunToEnd(*c, {{"name", "test/flaky"}, {"data", {{"fail_times", 1}}}});
  ASSERT_EQ(flaky["status"], "completed");
  auto replay = Http("POST", c->url() + "/v1/runs/" + run["id"].get<std::string>() + "/replay");
  ASSERT_EQ(replay.status, 201) << replay.raw;
  const std::string replay_id = replay.body["data"]["id"];
  EXPECT_EQ(WaitForRunEnd(c->url(), replay_id)["status"], "completed");
  const std::vector<std::string> head = {BlockedHead(*c)};
  ASSERT_FALSE(head[0].empty());
  ASSERT_EQ(Http("POST", c->url() + "/v1/lanes/test-ordered/a/skip-head").status, 200);
  c->Stop();

  std::istringstream lines(c->Log());
  std::string line;
  int parsed = 0;
  bool completed_line = false, retry_line = false, replay_line = false, skip_line = false;
  while (std::getline(lines, line)) {
    Json j = Json::parse(line, nullptr, false);
    ASSERT_TRUE(j.is_object()) << "not a JSON object: " << line;
    EXPECT_TRUE(j["ts"].is_string() && j["level"].is_string() && j["msg"].is_string()) << line;
    ++parsed;
    const std::string msg = j["msg"];
    const std::string run_id = j.value("run_id", "");
    if (msg.find("completed") != std::string::npos && run_id == run["id"]) {
      completed_line = true;
      EXPECT_EQ(j["function_id"], "test-two-steps") << line;
      EXPECT_EQ(j["level"], "info") << line;
    }
    if (msg.find("retrying") != std::string::npos && run_id == flaky["id"]) {
      retry_line = true;
      EXPECT_EQ(j["function_id"], "test-flaky") << line;
      EXPECT_TRUE(j["step_id"].is_string() && !j["step_id"].get<std::string>().empty()) << line;
    }
    if (msg.find("replays run") != std::string::npos && run_id == replay_id) {
      replay_line = true;
      EXPECT_EQ(j["function_id"], "test-two-steps") << line;
    }
    if (msg.find("by an operator") != std::string::npos && run_id == head[0]) {
      skip_line = true;
      EXPECT_EQ(j["function_id"], "test-ordered") << line;
      EXPECT_EQ(j["level"], "warning") << line;  // spdlog's name
    }
  }
  EXPECT_GE(parsed, 3);
  EXPECT_TRUE(completed_line) << c->Log();
  EXPECT_TRUE(retry_line) << c->Log();
  EXPECT_TRUE(replay_line) << c->Log();
  EXPECT_TRUE(skip_line) << c->Log();
}

// A text line's message has its control characters escaped: a lane key from an event's data
// holding a line break cannot write a line of its own that reads as the coordinator's.
TEST_F(LogFormatTest, TextLinesEscapeTheControlCharactersASenderChose) {
  auto c = StartCoordinator();
  TestHost host(c->url(), dir_);
  const std::string forged = "2026-12-06T10:00:00.000 error FORGED";
  auto head = RunsOfEvent(
      c->url(),
      Send(*c, {{"name", "test/ordered"},
                {"data", {{"key", "k\r\n" + forged + "\x1b[2J"}, {"seq", 1}, {"fail", true}}}}));
  ASSERT_EQ(head.size(), 1u);
  ASSERT_EQ(WaitForRunStatus(c->url(), head[0], {"blocked", "failed", "completed"})["status"],
            "blocked");
  c->Stop();
  const std::string log = c->Log();
  EXPECT_NE(log.find("blocks lane \"k\\r\\n" + forged + "\\x1b[2J\""), std::string::npos) << log;
  std::istringstream lines(log);
  std::string line;
  while (std::getline(lines, line)) {
    EXPECT_NE(line.rfind(forged, 0), 0u) << "a line of the sender's: " << line;
    EXPECT_EQ(line.find('\x1b'), std::string::npos) << line;
  }
}

TEST_F(LogFormatTest, AnUnknownLogFormatIsRefused) {
  Process p({FUNCKY_BIN, "dev", "--db", dir_ + "/x.db", "--log-format", "xml"}, dir_ + "/x.log");
  ASSERT_TRUE(WaitFor([&] { return !p.running(); }, std::chrono::seconds(10)));
  EXPECT_NE(p.Log().find("--log-format must be text or json"), std::string::npos) << p.Log();
}

}  // namespace
}  // namespace funcky::testing
