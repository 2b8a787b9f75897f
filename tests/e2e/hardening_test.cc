// Hardening, with real processes: untrusted input a coordinator reads (host
// replies, sync replies, event bodies) cannot crash it, and what cannot be stored is
// refused the same way on both stores. Flags it cannot run with stop it at start (exit 2),
// and --help prints no secret an environment variable holds.
//
// A "deep host" here is an HTTP server inside the test that answers every call (and every
// in-band sync) with JSON nested a million levels deep.
#include <atomic>
#include <filesystem>
#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/thread_pool.hpp>

#include "common/http_server.h"
#include "tests/support/deep_json.h"
#include "tests/support/e2e.h"
#include "tests/support/scripted_server.h"

namespace funcky::testing {
namespace {

using namespace std::chrono_literals;
using ::testing::HasSubstr;
using ::testing::Not;

constexpr size_t kMillion = 1'000'000;

// Answers POSTs to /arrays… and /objects… as an SDK would (206 with X-Inngest-SDK) and PUTs
// as an in-band sync, each with a million levels of arrays or objects; counts the POSTs.
class DeepHost {
 public:
  DeepHost()
      : server_([this](ServerRequest r) {
          const bool objects = r.target.rfind("/objects", 0) == 0;
          ServerResponse res;
          res.body = objects ? DeepObjects(kMillion) : DeepArrays(kMillion);
          res.headers = {{"Content-Type", "application/json"}};
          if (r.method == "PUT") {
            res.headers.emplace_back("X-Inngest-Sync-Kind", "in_band");
          } else {
            ++calls_;
            res.status = 206;
            res.headers.emplace_back("X-Inngest-SDK", "deep:v1");
          }
          return res;
        }) {}
  std::string url(const std::string& path) const { return server_.url(path); }
  int calls() const { return calls_; }

 private:
  std::atomic<int> calls_{0};
  ScriptedServer server_;
};

JsonReply Register(const Coordinator& c, const std::string& app_url, const Json& functions) {
  return Http(
      "POST", c.url() + "/fn/register",
      Json{{"url", app_url}, {"appName", "deep"}, {"sdk", "test:v0"}, {"functions", functions}}
          .dump());
}

class HardeningTest : public E2eTest, public ::testing::WithParamInterface<std::string> {
 protected:
  std::string backend() const override { return GetParam(); }
};

// Defect 1: a host answering a call with a million levels of arrays or objects fails that
// attempt with a clear error; the run is retried once (retries: 1) and then fails; the
// coordinator stays up and does not call again.
TEST_P(HardeningTest, HostReplyNestedAMillionDeepFailsTheAttemptsAndTheRunByItsPolicy) {
  auto c = StartCoordinator();
  DeepHost host;
  auto reg = Register(*c, host.url("/arrays"),
                      Json::array({FunctionConfig("deep-arrays", "test/deep-arrays",
                                                  host.url("/arrays?fnId=deep-arrays")),
                                   FunctionConfig("deep-objects", "test/deep-objects",
                                                  host.url("/objects?fnId=deep-objects"))}));
  ASSERT_EQ(reg.status, 200) << reg.raw;
  for (const std::string kind : {"arrays", "objects"}) {
    const int calls_before = host.calls();
    Json run = RunToEnd(*c, {{"name", "test/deep-" + kind}});
    ASSERT_EQ(run["status"], "failed") << kind << ": " << run.dump(2).substr(0, 2000);
    ASSERT_EQ(run["steps"].size(), 1u) << run.dump(2).substr(0, 2000);
    const Json& step = run["steps"][0];
    EXPECT_EQ(step["attempts"], 2) << "the first attempt and one retry";
    EXPECT_EQ(step["attempt_log"].size(), 2u) << step.dump(2).substr(0, 2000);
    for (const Json& attempt : step["attempt_log"]) {
      EXPECT_EQ(attempt["error"]["name"], "ProtocolError");
      EXPECT_EQ(attempt["error"]["message"], "op list: JSON nested deeper than 128 levels");
    }
    EXPECT_EQ(host.calls() - calls_before, 2);
    EXPECT_EQ(Http("GET", c->url() + "/healthz").status, 200);
  }
  // Nothing is called again: the run is over, not looping.
  const int calls = host.calls();
  std::this_thread::sleep_for(500ms);
  EXPECT_EQ(host.calls(), calls);
  EXPECT_EQ(Http("GET", c->url() + "/healthz").status, 200);
}

// A host's error of a megabyte fails the run (stored whole, as the host sent it) but goes to
// the log cut to 2,000 bytes: the log never holds a whole body.
TEST_P(HardeningTest, AMegabyteErrorFromAHostIsLoggedCut) {
  auto c = StartCoordinator();
  const std::string huge(1 << 20, 'x');
  ScriptedServer host([&](ServerRequest) {
    ServerResponse res;
    res.status = 500;
    res.headers = {{"Content-Type", "application/json"},
                   {"X-Inngest-SDK", "test:v1"},
                   {"X-Inngest-No-Retry", "true"}};
    res.body = Json{{"name", "Error"}, {"message", huge}}.dump();
    return res;
  });
  auto reg =
      Register(*c, host.url("/api"),
               Json::array({FunctionConfig("loud", "test/loud", host.url("/api?fnId=loud"))}));
  ASSERT_EQ(reg.status, 200) << reg.raw;
  Json run = RunToEnd(*c, {{"name", "test/loud"}});
  ASSERT_EQ(run["status"], "failed") << run.dump().substr(0, 500);
  EXPECT_EQ(run["error"]["message"].get<std::string>().size(), huge.size());
  // Logged after the run's end is committed, which the answer above may have seen first.
  ASSERT_TRUE(WaitFor([&] { return c->Log().find("failed: {") != std::string::npos; }, 10s))
      << c->Log().substr(0, 2000);
  const std::string log = c->Log();
  const size_t failed = log.find("failed: {");
  const size_t line_end = log.find('\n', failed);
  EXPECT_LT(line_end - failed, 2200u);
  EXPECT_THAT(log.substr(failed, line_end - failed), HasSubstr("bytes)"));
  EXPECT_LT(log.size(), 100'000u);
}

// Defect 2: an app answering an in-band sync with a million levels of nesting gets a 400.
TEST_P(HardeningTest, SyncReplyNestedAMillionDeepIs400) {
  // Large enough for the million objects (6 MB); a larger reply is a 400 for its size.
  auto c = StartCoordinator({"--max-body-bytes", std::to_string(8 << 20)});
  DeepHost host;
  for (const std::string path : {"/arrays", "/objects"}) {
    auto r = Http("POST", c->url() + "/v1/apps/sync", Json{{"url", host.url(path)}}.dump());
    EXPECT_EQ(r.status, 400) << r.raw.substr(0, 300);
    EXPECT_EQ(r.body["error"]["message"], "the app's sync reply: JSON nested deeper than 64 levels")
        << r.raw.substr(0, 300);
  }
  EXPECT_EQ(Http("GET", c->url() + "/healthz").status, 200);
  EXPECT_EQ(CountRows(*c, "/v1/apps"), 0);
}

// A sync reply larger than a request body may be is a 400 for its size.
TEST_P(HardeningTest, SyncReplyLargerThanARequestBodyIs400) {
  auto c = StartCoordinator({"--max-body-bytes", std::to_string(1 << 20)});
  DeepHost host;  // its million objects make 6 MB
  auto r = Http("POST", c->url() + "/v1/apps/sync", Json{{"url", host.url("/objects")}}.dump());
  EXPECT_EQ(r.status, 400) << r.raw.substr(0, 300);
  EXPECT_EQ(r.body["error"]["message"],
            "the app's sync reply is larger than 1048576 bytes (--max-body-bytes)")
      << r.raw.substr(0, 300);
  EXPECT_EQ(CountRows(*c, "/v1/apps"), 0);
}

// A sync reply whose fields have the wrong types, app or function ids longer than an index
// entry should hold, and more triggers than a function may have are 400s naming what is
// wrong; nothing is stored.
TEST_P(HardeningTest, MistypedSyncRepliesAndOverlongIdsAre400) {
  auto c = StartCoordinator();
  ScriptedServer app([](ServerRequest r) {
    ServerResponse res;
    res.headers = {{"Content-Type", "application/json"}, {"X-Inngest-Sync-Kind", "in_band"}};
    res.body = r.target.rfind("/url", 0) == 0 ? R"({"url":5,"app_id":"a","functions":[]})"
                                              : R"({"app_id":null,"functions":[]})";
    return res;
  });
  for (const auto& [path, field] :
       std::vector<std::pair<std::string, std::string>>{{"/url", "url"}, {"/app", "app_id"}}) {
    auto r = Http("POST", c->url() + "/v1/apps/sync", Json{{"url", app.url(path)}}.dump());
    EXPECT_EQ(r.status, 400) << r.raw.substr(0, 300);
    EXPECT_EQ(r.body["error"]["message"], "the app's sync reply: " + field + " must be a string")
        << r.raw.substr(0, 300);
  }
  auto long_fn = Register(
      *c, "http://127.0.0.1:1/api",
      Json::array({FunctionConfig(std::string(300, 'f'), "test/e", "http://127.0.0.1:1/api")}));
  EXPECT_EQ(long_fn.status, 400) << long_fn.raw.substr(0, 300);
  EXPECT_THAT(long_fn.raw, HasSubstr(".id is longer than 256 bytes"));
  Json many_triggers = FunctionConfig("many", "test/e", "http://127.0.0.1:1/api");
  for (int i = 0; i < 10; ++i) many_triggers["triggers"].push_back({{"event", "test/more"}});
  auto too_many = Register(*c, "http://127.0.0.1:1/api", Json::array({many_triggers}));
  EXPECT_EQ(too_many.status, 400) << too_many.raw.substr(0, 300);
  EXPECT_THAT(too_many.raw, HasSubstr("11 triggers; a function has at most 10"));
  // As many cancel rules (each event is matched against them, and each that matches pages
  // through the function's runs), and at most 1000 functions an app.
  Json many_cancels = FunctionConfig("many", "test/e", "http://127.0.0.1:1/api");
  for (int i = 0; i < 11; ++i) many_cancels["cancel"].push_back({{"event", "test/stop"}});
  auto too_many_cancels = Register(*c, "http://127.0.0.1:1/api", Json::array({many_cancels}));
  EXPECT_EQ(too_many_cancels.status, 400) << too_many_cancels.raw.substr(0, 300);
  EXPECT_THAT(too_many_cancels.raw, HasSubstr("cancel has 11 entries; a function has at most 10"));
  Json thousand = Json::array();
  for (int i = 0; i < 1001; ++i) {
    thousand.push_back(
        FunctionConfig("fn-" + std::to_string(i), "test/e", "http://127.0.0.1:1/api"));
  }
  auto too_many_fns = Register(*c, "http://127.0.0.1:1/api", thousand);
  EXPECT_EQ(too_many_fns.status, 400) << too_many_fns.raw.substr(0, 300);
  EXPECT_THAT(too_many_fns.raw, HasSubstr("1001 functions; an app has at most 1000"));
  auto long_app = Http("POST", c->url() + "/fn/register",
                       Json{{"url", "http://127.0.0.1:1/api"},
                            {"appName", std::string(300, 'a')},
                            {"functions", Json::array()}}
                           .dump());
  EXPECT_EQ(long_app.status, 400) << long_app.raw.substr(0, 300);
  EXPECT_THAT(long_app.raw, HasSubstr("appName is longer than 256 bytes"));
  EXPECT_EQ(Http("GET", c->url() + "/healthz").status, 200);
  EXPECT_EQ(CountRows(*c, "/v1/apps"), 0);
  thousand.erase(thousand.size() - 1);
  auto most_fns = Register(*c, "http://127.0.0.1:1/api", thousand);
  EXPECT_EQ(most_fns.status, 200) << most_fns.raw.substr(0, 300);
}

// Request bodies nested a million levels deep, and json_parse() in a filter on a 400 KB
// string of brackets inside an event (defect 3): 400 and no run, never a crash.
TEST_P(HardeningTest, EventsNestedAMillionDeepAre400AndJsonParseOfThemIsNull) {
  auto c = StartCoordinator({"--max-body-bytes", std::to_string(8 << 20)});
  Json filtered = FunctionConfig("parses", "test/parse", "http://127.0.0.1:1/api?fnId=parses");
  filtered["triggers"][0]["expression"] = "json_parse(event.data.s) != null";
  auto reg = Register(*c, "http://127.0.0.1:1/api", Json::array({filtered}));
  ASSERT_EQ(reg.status, 200) << reg.raw;
  for (const std::string& body : {DeepArrays(kMillion), DeepObjects(kMillion)}) {
    auto r = Http("POST", c->url() + "/e/test", body);
    EXPECT_EQ(r.status, 400) << r.raw.substr(0, 300);
    EXPECT_EQ(r.body["error"], "JSON nested deeper than 64 levels") << r.raw.substr(0, 300);
  }
  // Inside an event, json_parse() meets as deep a text as fits in one (512 KB): unbalanced
  // brackets, balanced arrays and objects. It yields null, so the filter starts no run.
  for (const std::string& text :
       {std::string(400'000, '['), DeepArrays(200'000), DeepObjects(50'000)}) {
    const std::string id = Send(*c, {{"name", "test/parse"}, {"data", {{"s", text}}}});
    auto event = Http("GET", c->url() + "/v1/events/" + id);
    ASSERT_EQ(event.status, 200);
    EXPECT_TRUE(event.body["data"]["runs"].empty()) << text.substr(0, 20);
  }
  // The filter itself works: a shallow text parses, and the event starts a run.
  const std::string shallow = Send(*c, {{"name", "test/parse"}, {"data", {{"s", DeepArrays(10)}}}});
  EXPECT_EQ(Http("GET", c->url() + "/v1/events/" + shallow).body["data"]["runs"].size(), 1u);
  EXPECT_EQ(Http("GET", c->url() + "/healthz").status, 200);
}

// Defect 8: one X-Inngest-Event-Id-Seed for two different events is a 409 naming the id;
// the same event sent again is still an idempotent 200.
TEST_P(HardeningTest, SeedClashOfDifferentEventsIs409AndAResendIs200) {
  auto c = StartCoordinator();
  const Headers seed = {{"X-Inngest-Event-Id-Seed", "1700000000000,AAECAwQFBgcICQ=="}};
  const std::string first = Json{{"name", "test/seeded"}, {"data", {{"n", 1}}}}.dump();
  auto stored = Http("POST", c->url() + "/e/test", first, seed);
  ASSERT_EQ(stored.status, 200) << stored.raw;
  const std::string id = stored.body["ids"][0];
  auto resent = Http("POST", c->url() + "/e/test", first, seed);
  EXPECT_EQ(resent.status, 200) << resent.raw;
  EXPECT_EQ(resent.body["ids"][0], id);
  auto clash = Http("POST", c->url() + "/e/test",
                    Json{{"name", "test/seeded"}, {"data", {{"n", 2}}}}.dump(), seed);
  EXPECT_EQ(clash.status, 409) << clash.raw;
  EXPECT_EQ(clash.body["status"], 409);
  EXPECT_EQ(clash.body["code"], "already_exists");
  EXPECT_NE(clash.body["error"].get<std::string>().find(id), std::string::npos) << clash.raw;
  auto events = Http("GET", c->url() + "/v1/events");
  ASSERT_EQ(events.body["data"].size(), 1u);
  EXPECT_EQ(events.body["data"][0]["payload"]["data"]["n"], 1);
}

// Defect 9: \u0000 can never be stored on PostgreSQL, so both stores refuse it with a 400:
// in an event's data or name, and in a function id at sync.
TEST_P(HardeningTest, NulInAnEventOrAFunctionIdIs400OnEveryStore) {
  auto c = StartCoordinator();
  for (const std::string body :
       {R"({"name":"test/nul","data":{"s":"a\u0000b"}})", R"({"name":"test/\u0000"})",
        R"({"name":"test/nul","data":{"k\u0000":1}})",
        R"([{"name":"test/ok"},{"name":"test/nul","data":{"s":"\u0000"}}])"}) {
    auto r = Http("POST", c->url() + "/e/test", body);
    EXPECT_EQ(r.status, 400) << body << " -> " << r.raw;
    EXPECT_EQ(r.body["error"], "JSON string holds \\u0000, which cannot be stored") << r.raw;
  }
  EXPECT_EQ(CountRows(*c, "/v1/events"), 0);
  const std::string reg_body =
      R"({"url":"http://127.0.0.1:1/api","appName":"nul","functions":[{"id":"f\u0000g",
          "triggers":[{"event":"e"}],"steps":{"step":{"runtime":{"url":"http://127.0.0.1:1/api"}}}}]})";
  auto r = Http("POST", c->url() + "/fn/register", reg_body);
  EXPECT_EQ(r.status, 400) << r.raw;
  EXPECT_EQ(r.body["error"], "JSON string holds \\u0000, which cannot be stored") << r.raw;
  EXPECT_EQ(CountRows(*c, "/v1/functions"), 0);
}

// Defect 14: numbers out of range are a 400 with a short message, and the log holds
// neither the body nor the event key from the path.
TEST_P(HardeningTest, NumbersOutOfRangeAre400AndNeitherBodyNorKeyIsLogged) {
  const std::string key = "k3y-that-must-not-be-logged";
  auto c = StartCoordinator({"--event-key", key});
  const std::string digits(100'000, '7');
  for (const std::string& body : {std::string(R"({"name":"test/n","data":{"n":1e400}})"),
                                  R"({"name":"test/n","data":{"n":)" + digits + "}}"}) {
    auto r = Http("POST", c->url() + "/e/" + key, body);
    EXPECT_EQ(r.status, 400) << r.raw.substr(0, 300);
    EXPECT_EQ(r.body["error"], "JSON number out of range") << r.raw.substr(0, 300);
  }
  Json fn = FunctionConfig("f", "e", "http://127.0.0.1:1/api");
  std::string reg =
      Json{{"url", "http://127.0.0.1:1/api"}, {"appName", "n"}, {"functions", Json::array({fn})}}
          .dump();
  reg.replace(reg.find("\"attempts\":1"), 12, "\"attempts\":" + digits);
  auto r = Http("POST", c->url() + "/fn/register", reg);
  EXPECT_EQ(r.status, 400) << r.raw.substr(0, 300);
  EXPECT_EQ(r.body["error"], "JSON number out of range");
  EXPECT_EQ(Http("GET", c->url() + "/healthz").status, 200);
  const std::string log = c->Log();
  EXPECT_EQ(log.find(key), std::string::npos) << log;
  EXPECT_EQ(log.find(digits.substr(0, 100)), std::string::npos);
}

// Defect 15: config numbers out of range are refused at sync naming function and option.
TEST_P(HardeningTest, OptionsFunckyDoesNotImplementAreRefusedAtSyncNotIgnored) {
  auto c = StartCoordinator();
  const std::string url = "http://127.0.0.1:1/api";
  ASSERT_EQ(Register(*c, url, Json::array({FunctionConfig("f", "e", url)})).status, 200);
  const std::vector<std::pair<Json, std::string>> cases = {
      {{{"throttle", {{"limit", 2}, {"period", "8d"}}}},
       "function \"f\": throttle.period must be from 1s to 7d"},
      {{{"throttle", {{"limit", 0}, {"period", "2s"}}}},
       "function \"f\": throttle.limit must be an integer from 1"},
      {{{"throttle", {{"limit", 2}, {"period", "2s"}, {"burst", -1}}}},
       "function \"f\": throttle.burst must be an integer from 0"},
      {{{"throttle", {{"limit", 2}, {"period", "2s"}, {"scope", "fn"}}}},
       "function \"f\": throttle.scope is not implemented by Funcky"},
      {{{"rateLimit", {{"limit", 1}, {"period", "2d"}}}},
       "function \"f\": rateLimit.period must be from 1s to 24h"},
      {{{"idempotency", ""}}, "function \"f\": idempotency must be a non-empty expression"},
      {{{"debounce", {{"period", "8d"}}}}, "function \"f\": debounce.period must be from 1s to 7d"},
      {{{"priority", {{"run", "1"}, {"factor", 2}}}},
       "function \"f\": priority.factor is not implemented by Funcky"},
      {{{"priority", {{"run", ""}}}}, "function \"f\": priority.run must be a non-empty"},
      {{{"batchEvents", {{"maxSize", 101}, {"timeout", "1s"}}}},
       "function \"f\": batchEvents.maxSize must be an integer from 2 to 100"},
      {{{"singleton", {{"mode", "later"}}}}, "function \"f\": singleton.mode must be"},
      {{{"singleton", {{"mode", "skip"}}}, {"ordering", {{"key", "event.data.k"}}}},
       "function \"f\": singleton with a lane (ordering) needs singleton.key to be the lane's "
       "key expression"},
      {{{"timeouts", {{"finish", "soon"}}}}, "function \"f\": timeouts.finish: "},
      {{{"someFutureOption", true}}, "function \"f\": unknown option \"someFutureOption\""},
      {{{"ordering", {{"key", "event.data.k"}, {"sequence", "event.data.v"}}}},
       "function \"f\": ordering.sequence needs ordering.gap_timeout"},
      {{{"concurrency", {{"limit", 2}, {"key", "event.data.k"}, {"scope", "env"}}}},
       "function \"f\": concurrency.scope \"env\""},
  };
  for (const auto& [extra, message] : cases) {
    auto r = Register(*c, url, Json::array({FunctionConfig("f", "e", url, extra)}));
    EXPECT_EQ(r.status, 400) << r.raw;
    EXPECT_EQ(r.body["error"].get<std::string>().rfind(message, 0), 0u) << r.raw;
  }
  // The app is as it was: the first sync's function, without any of the options.
  auto fns = Http("GET", c->url() + "/v1/functions");
  ASSERT_EQ(fns.body["data"].size(), 1u);
  EXPECT_FALSE(fns.body["data"][0]["config"].contains("throttle")) << fns.raw;
}

TEST_P(HardeningTest, ConfigNumbersOutOfRangeAreRefusedAtSync) {
  auto c = StartCoordinator();
  const std::string url = "http://127.0.0.1:1/api";
  const std::vector<std::pair<Json, std::string>> cases = {
      {{{"concurrency", 2147483648}},
       "function \"f\": concurrency must be an integer from 0 to 2147483647"},
      {{{"concurrency", {{"limit", 4294967297}}}},
       "function \"f\": concurrency needs an integer \"limit\" from 0 to 2147483647"},
      {{{"concurrency", {{"limit", 4294967297}, {"key", "event.data.k"}}}},
       "function \"f\": concurrency needs an integer \"limit\" from 0 to 2147483647"},
  };
  for (const auto& [extra, message] : cases) {
    auto r = Register(*c, url, Json::array({FunctionConfig("f", "e", url, extra)}));
    EXPECT_EQ(r.status, 400) << r.raw;
    EXPECT_EQ(r.body["error"], message) << r.raw;
  }
  for (const Json& attempts : {Json(4294967297), Json(-1), Json(21)}) {
    Json fn = FunctionConfig("f", "e", url);
    fn["steps"]["step"]["retries"]["attempts"] = attempts;
    auto r = Register(*c, url, Json::array({fn}));
    EXPECT_EQ(r.status, 400) << r.raw;
    EXPECT_EQ(r.body["error"],
              "function \"f\": steps.step.retries.attempts must be an integer from 0 to 20")
        << r.raw;
  }
  EXPECT_EQ(CountRows(*c, "/v1/functions"), 0);
  auto ok = Register(*c, url,
                     Json::array({FunctionConfig("f", "e", url, {{"concurrency", 2147483647}})}));
  EXPECT_EQ(ok.status, 200) << ok.raw;
}

INSTANTIATE_TEST_SUITE_P(Stores, HardeningTest, ::testing::Values("postgres", "sqlite"),
                         [](const auto& info) { return info.param; });

// Defect 6: a malformed signing key stops the coordinator at start, saying why.
TEST(SigningKeyAtStart, MalformedKeyIsRefused) {
  const std::string dir = TempDir("funcky-e2e-signing-");
  for (const std::string key : {"signkey-prod-", "signkey-prod-not-hex"}) {
    Process p({FUNCKY_BIN, "dev", "--db", dir + "/dev.db", "--port", std::to_string(FreePort()),
               "--signing-key", key},
              dir + "/coordinator-" + std::to_string(key.size()) + ".log");
    ASSERT_TRUE(WaitFor([&] { return !p.running(); }, 10s)) << p.Log();
    EXPECT_NE(p.Log().find("--signing-key: the signing key"), std::string::npos) << p.Log();
    EXPECT_EQ(p.Log().find("listening"), std::string::npos) << p.Log();
  }
}

// Starts `funcky args…` through /usr/bin/env with `env` ("NAME=value", or "-u" and a name to
// unset) and waits up to 10 s for it to exit; its output goes to `log`.
Process RunFunckyToExit(const std::vector<std::string>& env, const std::vector<std::string>& args,
                        const std::string& log) {
  std::vector<std::string> argv = {"/usr/bin/env"};
  argv.insert(argv.end(), env.begin(), env.end());
  argv.push_back(FUNCKY_BIN);
  argv.insert(argv.end(), args.begin(), args.end());
  Process p(argv, log);
  EXPECT_TRUE(WaitFor([&] { return !p.running(); }, 10s)) << "it did not exit: " << p.Log();
  return p;
}

// A value that would hang the coordinator (0 connections, threads or body bytes; a busy
// poll), wrap (-1 as SIZE_MAX) or overflow a deadline is refused with exit 2 and a message
// naming the flag, whether CLI11 or Serve checks it; so is an unknown flag.
TEST(FlagsAtStart, OutOfRangeValuesAreRefusedNamingTheFlag) {
  const std::string dir = TempDir("funcky-e2e-flags-");
  const std::vector<std::pair<std::string, std::string>> bad = {
      {"--db-pool", "0"},
      {"--db-pool", "-1"},
      {"--db-pool", "257"},
      {"--api-threads", "0"},
      {"--max-connections", "0"},
      {"--max-connections", "-1"},
      {"--max-body-bytes", "0"},
      {"--max-body-bytes", "-1"},
      {"--max-body-bytes", std::to_string((16 << 20) + 1)},
      {"--poll-interval", "0s"},
      {"--poll-interval", "25h"},
      {"--call-timeout", "0s"},
      {"--call-timeout", "100us"},
      {"--call-timeout", "25h"},
      {"--lease", "500ms"},
      {"--lease", "2d"},
      {"--drain-timeout", "2d"},
      {"--retry-jitter", "2d"},
      {"--host", "not-an-address.example"},
      {"--retry-schedule", "1s,20000w"},
      {"--max-steps-per-run", "0"},
      {"--max-steps-per-run", "10001"},
      {"--no-such-flag", "1"},
      {"--max-body-bytes-in-flight", "0"},
      {"--max-body-bytes-in-flight", "1000"},
      // Checked without --retain too (it was only with it: dropped, not refused).
      {"--retain-interval", "0s"},
      {"--retain-interval", "soon"},
      // A key anyone has (`--event-key "$KEY"` with KEY unset).
      {"--event-key", ""}};
  int tries = 0;
  for (const auto& [flag, value] : bad) {
    Process p = RunFunckyToExit(
        {}, {"dev", "--db", dir + "/dev.db", "--port", std::to_string(FreePort()), flag, value},
        dir + "/bad" + std::to_string(++tries) + ".log");  // Process appends
    EXPECT_EQ(p.exit_code(), 2) << flag << " " << value << ": " << p.Log();
    EXPECT_THAT(p.Log(), HasSubstr(flag)) << value;
    EXPECT_THAT(p.Log(), Not(HasSubstr("listening"))) << flag << " " << value;
  }
  Process timeout = RunFunckyToExit({},
                                    {"dev", "--db", dir + "/dev.db", "--port",
                                     std::to_string(FreePort()), "--call-timeout", "0s"},
                                    dir + "/timeout.log");
  EXPECT_THAT(timeout.Log(), HasSubstr("--call-timeout must be from 1ms to 24h"));
}

// A --db that is neither a postgres:// URL nor a file's path (a URL of another scheme, a libpq
// keyword string) is refused, unquoted (it may hold a password): it was taken for a SQLite
// file, created and migrated, `migrate` exiting 0. TLS files that cannot be loaded are a usage
// error (2), as any bad flag; they exited 1.
TEST(FlagsAtStart, ADbThatIsNoDatabaseAndUnloadableTlsFilesAreRefused) {
  const std::string dir = TempDir("funcky-e2e-db-");
  int tries = 0;
  // A password that must be percent-encoded and is not: libpq read a host, a port or an escape
  // of it, and quoted that in its error.
  for (const std::string db : {dir + "/postgre://funcky:hunter2@127.0.0.1/db",
                               std::string("postgre://funcky:hunter2@h/db"),
                               std::string("host=127.0.0.1 password=hunter2 dbname=funcky"),
                               std::string("postgres://funcky:hun%ter2@127.0.0.1:1/db"),
                               std::string("postgres://funcky:hun/ter2@127.0.0.1:1/db"),
                               std::string("postgres://funcky:hun@ter2@127.0.0.1:1/db"),
                               std::string("postgres://funcky:a?b%ter2@127.0.0.1:1/db"),
                               std::string("postgres://funcky:a?b@ter2@127.0.0.1:1/db"),
                               std::string("postgres://funcky:a?b/ter2@127.0.0.1:1/db")}) {
    for (const std::string command : {"migrate", "dev"}) {
      std::vector<std::string> args = {command, "--db", db};
      if (command == "dev") args.insert(args.end(), {"--port", std::to_string(FreePort())});
      Process p = RunFunckyToExit({}, args, dir + "/db" + std::to_string(++tries) + ".log");
      EXPECT_EQ(p.exit_code(), 2) << command << " " << db << ": " << p.Log();
      EXPECT_THAT(p.Log(), HasSubstr("--db")) << command;
      EXPECT_THAT(p.Log(), Not(HasSubstr("hunter2"))) << command << ": " << p.Log();
      EXPECT_THAT(p.Log(), Not(HasSubstr("ter2"))) << command << ": " << p.Log();
      EXPECT_THAT(p.Log(), Not(HasSubstr("listening"))) << command;
    }
  }
  EXPECT_FALSE(std::filesystem::exists(dir + "/postgre:")) << "a SQLite file was made of the URL";
  // An '@' in the query, or a '?' in a password (libpq reads the user and password up to the
  // first '@' or '/'), is no reason to refuse: the database is only not there (exit 1).
  for (const std::string db :
       {std::string("postgres://funcky:pw@127.0.0.1:1/db?application_name=a@b"),
        std::string("postgres://funcky:hun?ter2@127.0.0.1:1/db")}) {
    Process p = RunFunckyToExit({}, {"migrate", "--db", db},
                                dir + "/db" + std::to_string(++tries) + ".log");
    EXPECT_EQ(p.exit_code(), 1) << db << ": " << p.Log();
    EXPECT_THAT(p.Log(), Not(HasSubstr("percent-encoded"))) << p.Log();
    EXPECT_THAT(p.Log(), Not(HasSubstr("ter2"))) << p.Log();
  }
  EXPECT_FALSE(std::filesystem::exists("host=127.0.0.1 password=hunter2 dbname=funcky"));
  Process tls =
      RunFunckyToExit({},
                      {"dev", "--db", dir + "/dev.db", "--port", std::to_string(FreePort()),
                       "--tls-cert", dir + "/none.pem", "--tls-key", dir + "/none.key"},
                      dir + "/tls.log");
  EXPECT_EQ(tls.exit_code(), 2) << tls.Log();
  EXPECT_THAT(tls.Log(), HasSubstr("none.pem"));
}

// FUNCKY_EVENT_KEY takes several keys, comma-separated (a rotation off the command line), and
// FUNCKY_SIGNING_KEY_FALLBACK the fallback signing key (which needs the signing key).
TEST(FlagsAtStart, SecretsOfARotationComeFromTheEnvironment) {
  const std::string dir = TempDir("funcky-e2e-env-keys-");
  Process fallback = RunFunckyToExit(
      {"-u", "FUNCKY_SIGNING_KEY", "FUNCKY_SIGNING_KEY_FALLBACK=signkey-test-12345678abcdef00"},
      {"dev", "--db", dir + "/dev.db", "--port", std::to_string(FreePort())},
      dir + "/fallback.log");
  EXPECT_EQ(fallback.exit_code(), 2) << fallback.Log();
  EXPECT_THAT(fallback.Log(), HasSubstr("--signing-key-fallback needs --signing-key"));

  const int port = FreePort();
  Process p({"/usr/bin/env", "FUNCKY_EVENT_KEY=old-key,new-key", FUNCKY_BIN, "dev", "--db",
             dir + "/keys.db", "--port", std::to_string(port)},
            dir + "/keys.log");
  const std::string url = "http://127.0.0.1:" + std::to_string(port);
  ASSERT_TRUE(WaitFor([&] { return Http("GET", url + "/healthz").status == 200; }, 10s)) << p.Log();
  const std::string event = R"({"name":"test/key","data":{}})";
  EXPECT_EQ(Http("POST", url + "/e/old-key", event).status, 200);
  EXPECT_EQ(Http("POST", url + "/e/new-key", event).status, 200);
  EXPECT_EQ(Http("POST", url + "/e/old-key,new-key", event).status, 401);
  EXPECT_EQ(Http("POST", url + "/e/other-key", event).status, 401);
}

// spdlog reads an unknown level name as "off", which silenced every line: the names the help
// lists are accepted and any other stops it with exit 2.
TEST(FlagsAtStart, AnUnknownLogLevelIsRefused) {
  const std::string dir = TempDir("funcky-e2e-log-level-");
  Process p = RunFunckyToExit({},
                              {"dev", "--db", dir + "/dev.db", "--port", std::to_string(FreePort()),
                               "--log-level", "verbose"},
                              dir + "/verbose.log");
  EXPECT_EQ(p.exit_code(), 2) << p.Log();
  EXPECT_THAT(p.Log(), HasSubstr("--log-level must be trace, debug, info, warn, error, critical "
                                 "or off"));
  // Known names get past the level check; the bad --lease behind it is then logged (an error:
  // shown up to level error, not at critical or off).
  for (const std::string level : {"warning", "warn", "error", "critical", "off"}) {
    Process known =
        RunFunckyToExit({},
                        {"dev", "--db", dir + "/dev.db", "--port", std::to_string(FreePort()),
                         "--log-level", level, "--lease", "0s"},
                        dir + "/" + level + ".log");
    EXPECT_EQ(known.exit_code(), 2) << level << ": " << known.Log();
    EXPECT_THAT(known.Log(), Not(HasSubstr("--log-level"))) << level;
    if (level != "critical" && level != "off") {
      EXPECT_THAT(known.Log(), HasSubstr("--lease must be from 1s to 24h")) << level;
    }
  }
}

// Without --signing-key the coordinator is in dev mode and authenticates nothing: a fallback
// key alone would be ignored, so it is refused.
TEST(FlagsAtStart, ASigningKeyFallbackWithoutASigningKeyIsRefused) {
  const std::string dir = TempDir("funcky-e2e-fallback-");
  Process p = RunFunckyToExit({"-u", "FUNCKY_SIGNING_KEY"},
                              {"dev", "--db", dir + "/dev.db", "--port", std::to_string(FreePort()),
                               "--signing-key-fallback", "signkey-test-12345678abcdef00"},
                              dir + "/fallback.log");
  EXPECT_EQ(p.exit_code(), 2) << p.Log();
  EXPECT_THAT(p.Log(), HasSubstr("--signing-key-fallback needs --signing-key"));
  EXPECT_THAT(p.Log(), Not(HasSubstr("listening")));
}

// --help prints no value an environment variable gave a flag that may hold a secret (a
// database URL with a password, the signing key, the dashboard token, an event key), and
// states dev's default database.
TEST(FlagsAtStart, HelpPrintsNoSecretFromTheEnvironment) {
  const std::string dir = TempDir("funcky-e2e-help-");
  const std::vector<std::string> env = {
      "FUNCKY_DB=postgres://funcky:hunter2@127.0.0.1:1/secretdb",
      "FUNCKY_SIGNING_KEY=signkey-test-5ec7e75ec7e7", "FUNCKY_DASHBOARD_TOKEN=token-5ec7e7",
      "FUNCKY_API_TOKEN=token-5ec7e7", "FUNCKY_EVENT_KEY=evkey-5ec7e7"};
  for (const std::string command : {"dev", "serve", "migrate"}) {
    Process p = RunFunckyToExit(env, {command, "--help"}, dir + "/" + command + ".log");
    EXPECT_EQ(p.exit_code(), 0) << command << ": " << p.Log();
    EXPECT_THAT(p.Log(), HasSubstr("--db")) << command;
    EXPECT_THAT(p.Log(), Not(HasSubstr("hunter2"))) << command << ": " << p.Log();
    EXPECT_THAT(p.Log(), Not(HasSubstr("secretdb"))) << command << ": " << p.Log();
    EXPECT_THAT(p.Log(), Not(HasSubstr("5ec7e7"))) << command << ": " << p.Log();
    if (command == "dev") {
      EXPECT_THAT(p.Log(), HasSubstr(".funcky/dev.db"));
    }
  }
}

}  // namespace
}  // namespace funcky::testing
