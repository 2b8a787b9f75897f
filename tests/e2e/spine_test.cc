// End-to-end tests of the spine: real coordinator and host processes on a real,
// private PostgreSQL cluster, driven over HTTP.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <ctime>
#include <map>
#include <set>
#include <thread>

#include <gtest/gtest.h>

#include "common/jcs.h"
#include "common/signing.h"
#include "tests/support/e2e.h"
#include "tests/support/pg_cluster.h"

namespace funcky::testing {
namespace {

int64_t ParseIsoMillis(const std::string& iso) {
  std::tm tm{};
  const char* rest = strptime(iso.c_str(), "%Y-%m-%dT%H:%M:%S", &tm);
  int ms = rest && *rest == '.' ? std::atoi(rest + 1) : 0;
  return static_cast<int64_t>(timegm(&tm)) * 1000 + ms;
}

class SpineTest : public E2eTest {};

// Tests 1–4 of the spine run on both stores: PostgreSQL (`funcky serve`) and SQLite
// (`funcky dev`).
class SpineOnEachStoreTest : public E2eTest, public ::testing::WithParamInterface<std::string> {
 protected:
  std::string backend() const override { return GetParam(); }
};

// The second call runs the second step and returns: the C++ SDK answers the step and the
// function's end together, recorded together (docs/protocol.md §5.3).
TEST_P(SpineOnEachStoreTest, TwoStepRunCompletesWithTwoCalls) {
  auto c = StartCoordinator();
  TestHost host(c->url(), dir_);
  Json run = RunToEnd(*c, {{"name", "test/two-steps"}, {"data", {{"n", 1}}}});
  const std::string run_id = run["id"];
  ASSERT_EQ(run["status"], "completed") << run.dump(2);
  EXPECT_EQ(run["output"], Json({{"b", "AB"}}));
  ASSERT_EQ(run["steps"].size(), 2u);
  EXPECT_EQ(run["steps"][0]["name"], "first");
  EXPECT_EQ(run["steps"][0]["output"], "A");
  EXPECT_EQ(run["steps"][1]["name"], "second");
  EXPECT_EQ(run["steps"][1]["output"], "AB");
  EXPECT_EQ(run["steps"][1]["attempts"], 1);
  EXPECT_EQ(run["steps"][1]["attempt_log"][0]["outcome"], "completed");
  EXPECT_EQ(host.Count("call", run_id), 2);
  EXPECT_EQ(host.Count("step", run_id), 2);
}

TEST_P(SpineOnEachStoreTest, StepFailingTwiceIsRetriedAndEarlierStepRunsOnce) {
  auto c = StartCoordinator();
  TestHost host(c->url(), dir_);
  Json run = RunToEnd(*c, {{"name", "test/flaky"}, {"data", {{"fail_times", 2}}}});
  const std::string run_id = run["id"];
  ASSERT_EQ(run["status"], "completed") << run.dump(2);
  EXPECT_EQ(run["output"], Json({{"succeeded_on", 3}}));
  ASSERT_EQ(run["steps"].size(), 2u);
  EXPECT_EQ(run["steps"][1]["name"], "flaky");
  EXPECT_EQ(run["steps"][1]["attempts"], 3);
  EXPECT_EQ(run["steps"][1]["attempt_log"][0]["outcome"], "error");
  EXPECT_EQ(run["steps"][1]["attempt_log"][2]["outcome"], "completed");
  EXPECT_EQ(run["steps"][0]["attempts"], 1);
  EXPECT_EQ(host.Count("step", run_id, "before"), 1);
}

TEST_P(SpineOnEachStoreTest, StepFailingAllAttemptsFailsTheRun) {
  auto c = StartCoordinator();
  TestHost host(c->url(), dir_);
  // Default retries: 4, so 5 attempts; failing 10 times exhausts them.
  Json run = RunToEnd(*c, {{"name", "test/flaky"}, {"data", {{"fail_times", 10}}}});
  ASSERT_EQ(run["status"], "failed") << run.dump(2);
  EXPECT_EQ(run["steps"][1]["status"], "failed");
  EXPECT_EQ(run["steps"][1]["attempts"], 5);
  EXPECT_EQ(run["error"]["name"], "StepError");
}

TEST_P(SpineOnEachStoreTest, KillNineMidRunLosesNothingAndRepeatsNoRecordedStep) {
  std::vector<std::string> args = {"--call-timeout", "2s", "--lease", "3s"};
  auto c = StartCoordinator(args);
  TestHost host(c->url(), dir_);
  constexpr int kEvents = 20;
  std::vector<std::string> events;
  for (int i = 0; i < kEvents; ++i) {
    events.push_back(
        Send(*c, {{"name", "test/slow"}, {"data", {{"i", i}, {"steps", 3}, {"delay_ms", 150}}}}));
  }
  // Let some steps be recorded, then crash the coordinator mid-flight.
  ASSERT_TRUE(WaitFor([&] { return host.Count("step") >= 10; }));
  const int64_t killed_at_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                                   std::chrono::system_clock::now().time_since_epoch())
                                   .count();
  c->Kill9();
  c->Start();
  std::vector<std::string> run_ids;
  for (const auto& e : events) {
    auto runs = RunsOfEvent(c->url(), e);
    ASSERT_EQ(runs.size(), 1u);
    run_ids.push_back(runs[0]);
  }
  int completed = 0;
  for (const auto& id : run_ids) {
    Json run = WaitForRunEnd(c->url(), id, std::chrono::seconds(60));
    EXPECT_EQ(run["status"], "completed") << run.dump(2);
    EXPECT_EQ(run["output"], Json({{"sum", 3}}));
    if (run["status"] == "completed") ++completed;
    // No step runs again after its result was recorded: no execution of a step began
    // after the moment the coordinator stored its result.
    for (const auto& step : run["steps"]) {
      const int64_t recorded = ParseIsoMillis(step["ended_at"]);
      for (const auto& r : host.Records()) {
        if (r["kind"] != "step" || r["run_id"] != id || r["step"] != step["name"]) continue;
        EXPECT_LE(r["t_ms"].get<int64_t>(), recorded)
            << "step " << step["name"] << " of run " << id << " ran after it was recorded";
      }
    }
  }
  // The crash really hit work in flight: steps still had to run after it.
  int after_kill = 0;
  for (const auto& r : host.Records()) {
    if (r["kind"] == "step" && r["t_ms"].get<int64_t>() > killed_at_ms) ++after_kill;
  }
  std::printf(
      "kill -9 test: %d/%d runs completed after restart; %d step executions after the "
      "kill\n",
      completed, kEvents, after_kill);
  EXPECT_EQ(completed, kEvents);
  EXPECT_GT(after_kill, 0) << "every run had finished before the kill: the test proved nothing";
}

TEST_P(SpineOnEachStoreTest, SameEventIdSentTwiceIsStoredOnceAndStartsOneRun) {
  auto c = StartCoordinator();
  TestHost host(c->url(), dir_);
  Json event = {{"name", "test/two-steps"}, {"id", "order-42"}, {"data", {{"n", 1}}}};
  std::string first = Send(*c, event);
  std::string second = Send(*c, event);
  EXPECT_EQ(first, second);
  auto runs = RunsOfEvent(c->url(), first);
  ASSERT_EQ(runs.size(), 1u);
  WaitForRunEnd(c->url(), runs[0]);
  EXPECT_EQ(CountRows(*c, "/v1/events?name=test/two-steps"), 1);
  EXPECT_EQ(CountRows(*c, "/v1/runs?function=test-two-steps"), 1);
  EXPECT_EQ(host.Count("call", runs[0]), 2);
}

// The harness: a port taken between the harness picking it and the coordinator binding it
// (another test's server may pick the same one) moves a first start to another port.
// Two coordinators on one database: an event sent to one just after a host synced with the
// other starts the run of the function that sync made, though the first had loaded the
// function set a moment before (its cache predates the sync).
TEST_F(SpineTest, AnEventSentToOneCoordinatorRightAfterASyncOnAnotherStartsItsRun) {
  auto c1 = StartCoordinator();
  auto c2 = StartCoordinator();
  Send(*c1, {{"name", "test/two-steps"}});  // c1 loads the set: no function takes it yet
  TestHost host(c2->url(), dir_);
  Json run = RunToEnd(*c1, {{"name", "test/two-steps"}, {"data", {{"n", 1}}}});
  EXPECT_EQ(run["status"], "completed") << run.dump(2);
  EXPECT_EQ(run["output"], Json({{"b", "AB"}}));
}

TEST_F(SpineTest, ACoordinatorWhosePortWasTakenStartsOnAnother) {
  Coordinator c(db_, {}, dir_);
  const std::string picked = c.url();
  const int port = std::stoi(picked.substr(picked.rfind(':') + 1));
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(static_cast<uint16_t>(port));
  ASSERT_EQ(bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);  // taken
  c.Start();
  close(fd);
  EXPECT_NE(c.url(), picked);
  EXPECT_EQ(Http("GET", c.url() + "/healthz").status, 200);
}

TEST_F(SpineTest, SignedCallsPassAndBadSignaturesAreRejected) {
  const std::string key = "signkey-test-12345678abcdef00";
  auto c = StartCoordinator({"--signing-key", key});
  TestHost host(c->url(), dir_, {"--signing-key", key});
  Json run = RunToEnd(*c, {{"name", "test/two-steps"}});
  ASSERT_EQ(run["status"], "completed") << run.dump(2);

  // Now call the host directly the way the coordinator would, but badly signed.
  auto fns = Http("GET", c->url() + "/v1/functions");
  std::string url;
  for (const auto& f : fns.body["data"]) {
    if (f["id"] == "test-two-steps") url = f["config"]["steps"]["step"]["runtime"]["url"];
  }
  ASSERT_FALSE(url.empty());
  Json body = {{"event", {{"name", "test/two-steps"}, {"data", Json::object()}}},
               {"events", Json::array()},
               {"steps", Json::object()},
               {"ctx", {{"run_id", "forged-run"}, {"attempt", 0}, {"stack", nullptr}}},
               {"version", -1}};
  std::string canonical = *CanonicalJson(body);
  const int64_t now = std::chrono::duration_cast<std::chrono::seconds>(
                          std::chrono::system_clock::now().time_since_epoch())
                          .count();
  struct Case {
    const char* what;
    Headers headers;
  };
  std::vector<Case> cases = {
      {"unsigned", {}},
      {"wrong key",
       {{"X-Inngest-Signature", signing::SignatureHeader(canonical, "signkey-test-00ff", now)}}},
      {"six minutes old",
       {{"X-Inngest-Signature", signing::SignatureHeader(canonical, key, now - 360)}}},
      {"garbage", {{"X-Inngest-Signature", "t=abc&s=zz"}}},
  };
  for (const auto& tc : cases) {
    auto r = Http("POST", url, canonical, tc.headers);
    EXPECT_EQ(r.status, 401) << tc.what << ": " << r.raw;
  }
  EXPECT_EQ(host.Count("step", "forged-run"), 0) << "a rejected call must not run any step";
  // And a correctly signed one is accepted.
  auto ok = Http("POST", url, canonical,
                 {{"X-Inngest-Signature", signing::SignatureHeader(canonical, key, now)}});
  EXPECT_EQ(ok.status, 206) << ok.raw;
}

TEST_F(SpineTest, BadInputGetsJsonErrorsAndStoresNothing) {
  auto c = StartCoordinator({"--max-body-bytes", "1048576"});
  TestHost host(c->url(), dir_);
  const Json functions_before = Http("GET", c->url() + "/v1/functions").body["data"];
  ASSERT_GE(functions_before.size(), 3u);
  struct Case {
    std::string method, path, body;
    int status;
  };
  std::string many = "[";
  for (int i = 0; i < 10000; ++i)
    many += std::string(i ? "," : "") + R"({"name":"test/two-steps"})";
  many += "]";
  std::string deep(100, '[');
  deep += std::string(100, ']');
  std::vector<Case> cases = {
      {"POST", "/e/k", "{not json", 400},
      {"POST", "/e/k", "", 400},
      {"POST", "/e/k", R"({"data":{}})", 400},
      {"POST", "/e/k", R"({"name":""})", 400},
      {"POST", "/e/k", R"({"name":42})", 400},
      {"POST", "/e/k", R"({"name":"x","data":[1]})", 400},
      {"POST", "/e/k", R"({"name":"x","ts":"yesterday"})", 400},
      {"POST", "/e/k", R"({"name":"x","id":7})", 400},
      {"POST", "/e/k", R"({"name":"inngest/function.failed"})", 400},
      {"POST", "/e/k", R"([{"name":"test/two-steps"},{"nope":1}])", 400},
      {"POST", "/e/k", "[]", 400},
      {"POST", "/e/k", deep, 400},
      {"POST", "/e/k", std::string(2 << 20, ' '), 413},
      {"POST", "/e/k", many, 413},
      {"POST", "/v1/events", "{", 400},
      {"POST", "/fn/register", "{", 400},
      {"POST", "/fn/register", R"({"url":"http://x","appName":"a","functions":"no"})", 400},
      {"POST", "/fn/register", R"({"appName":"a","functions":[]})", 400},
      {"POST", "/fn/register",
       R"({"url":"http://127.0.0.1:1/x","appName":"a","functions":[{"id":"f","triggers":[{"event":"e"}],"steps":{}}]})",
       400},
      {"GET", "/v1/runs?limit=0", "", 400},
      {"GET", "/v1/runs?status=bogus", "", 400},
      {"GET", "/v1/runs/nope", "", 404},
      {"GET", "/v1/events/nope", "", 404},
      {"GET", "/no/such/route", "", 404},
      {"DELETE", "/v1/runs", "", 405},
  };
  for (const auto& tc : cases) {
    auto r = Http(tc.method, c->url() + tc.path, tc.body);
    EXPECT_EQ(r.status, tc.status) << tc.method << " " << tc.path << " " << tc.body.substr(0, 80)
                                   << " -> " << r.raw.substr(0, 300);
    ASSERT_TRUE(r.body.is_object()) << tc.path << ": not JSON: " << r.raw.substr(0, 200);
    EXPECT_TRUE(r.body.contains("error")) << r.raw.substr(0, 300);
  }
  EXPECT_EQ(CountRows(*c, "/v1/events"), 0);
  EXPECT_EQ(CountRows(*c, "/v1/runs"), 0);
  // The app the host registered is untouched by the refused registrations.
  EXPECT_EQ(Http("GET", c->url() + "/v1/functions").body["data"], functions_before);
}

TEST_F(SpineTest, TriggerExpressionsFilterEventsAndBadOnesAreRefusedAtSync) {
  auto c = StartCoordinator();
  TestHost host(c->url(), dir_);
  const std::string skipped = Send(*c, {{"name", "test/filtered"}, {"data", {{"n", 1}}}});
  Json run = RunToEnd(*c, {{"name", "test/filtered"}, {"data", {{"n", 2}}}});
  EXPECT_EQ(run["status"], "completed");
  EXPECT_EQ(run["output"], 2);
  auto event = Http("GET", c->url() + "/v1/events/" + skipped);
  ASSERT_EQ(event.status, 200);
  EXPECT_TRUE(event.body["data"]["runs"].empty()) << "n = 1 does not pass event.data.n > 1";

  Json config = {{"id", "bad-filter"},
                 {"name", "bad"},
                 {"triggers", {{{"event", "test/x"}, {"expression", "event.data.n >"}}}},
                 {"steps",
                  {{"step",
                    {{"id", "step"},
                     {"name", "step"},
                     {"runtime", {{"type", "http"}, {"url", "http://127.0.0.1:1/api"}}}}}}}};
  auto r = Http("POST", c->url() + "/fn/register",
                Json{{"url", "http://127.0.0.1:1/api"},
                     {"appName", "bad"},
                     {"sdk", "cpp:v0"},
                     {"functions", {config}}}
                    .dump());
  EXPECT_EQ(r.status, 400);
  EXPECT_EQ(r.body["status"], 400);
  EXPECT_EQ(r.body["error"],
            "function \"bad-filter\": triggers[0].expression: at 15: unexpected end of "
            "expression")
      << r.raw;
}

INSTANTIATE_TEST_SUITE_P(Stores, SpineOnEachStoreTest, ::testing::Values("postgres", "sqlite"),
                         [](const auto& info) { return info.param; });

}  // namespace
}  // namespace funcky::testing
