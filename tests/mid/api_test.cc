// The HTTP API through Router::Handle, without sockets: the real handlers, intake and
// metrics over a SQLite store in a temporary file.
#include <algorithm>
#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <tuple>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "common/clock.h"
#include "common/signing.h"
#include "common/ulid.h"
#include "coordinator/api/api.h"
#include "coordinator/executor/call.h"
#include "coordinator/http/router.h"
#include "coordinator/intake/intake.h"
#include "coordinator/metrics/metrics.h"
#include "tests/mid/harness.h"
#include "tests/support/process.h"
#include "tests/support/status_matchers.h"

namespace funcky::api {
namespace {

using http::Request;
using http::Response;
using store::Json;
using ::testing::HasSubstr;
using testing::IsOk;
using ::testing::Not;

constexpr const char* kToken = "api-token-for-tests";
constexpr const char* kSigningKey = "signkey-test-00112233445566778899aabbccddeeff";

class ApiThroughRouter : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = testing::TempDir("funcky-mid-api-");
    store::FunctionRecord fn;
    fn.id = "app-fn";
    fn.app_id = "app";
    fn.name = "fn";
    fn.config = {{"id", "app-fn"}, {"triggers", Json::array({{{"event", "test/go"}}})}};
    mid::OpenStoreWithApp(dir_ + "/funcky.db", {fn}, store_);
    ASSERT_NE(store_, nullptr);
    intake_ =
        std::make_unique<intake::Intake>(*store_, clock_, std::chrono::milliseconds(0), [] {});
  }

  void TearDown() override {
    if (intake_) intake_->Stop();
    api_.reset();
    intake_.reset();
    store_.reset();
    if (!dir_.empty()) std::filesystem::remove_all(dir_);
  }

  // Builds the API with `options` and registers its routes.
  void Serve(ApiOptions options) {
    api_ = std::make_unique<Api>(std::move(options), ApiStores::Of(*store_), clock_, *intake_,
                                 metrics_);
    api_->Register(router_);
  }

  Response Send(std::string method, std::string target, std::string body = "",
                Headers headers = {}) {
    return router_.Handle(
        Request{std::move(method), std::move(target), std::move(headers), std::move(body), {}});
  }

  static Json BodyOf(const Response& r) { return Json::parse(r.body); }

  // Sends an event that starts a run of app-fn and claims its first call.
  store::QueueItem FirstCall() {
    EXPECT_EQ(Send("POST", "/e/any-key", R"({"name":"test/go"})").status, 200);
    auto claimed = store_->Claim(1, clock_.Now(), std::chrono::seconds(30));
    EXPECT_THAT(claimed, IsOk());
    if (!claimed.ok() || claimed->size() != 1) {
      ADD_FAILURE() << "no first call";
      return {};
    }
    return (*claimed)[0];
  }

  std::string dir_;  // a fresh temporary folder holding the database, removed after the test
  ManualClock clock_;
  std::unique_ptr<store::Store> store_;
  std::unique_ptr<intake::Intake> intake_;
  metrics::Metrics metrics_;
  std::unique_ptr<Api> api_;
  http::Router router_;
};

TEST_F(ApiThroughRouter, ListingRunsOfAFreshStoreGivesAnEmptyList) {
  Serve({});
  Response r = Send("GET", "/v1/runs");
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(BodyOf(r)["data"], Json::array());
  EXPECT_EQ(BodyOf(r)["cursor"], nullptr);
}

// The events of one request get ids in the order they were sent (they share a millisecond:
// a look-back or a sweep takes the first match by id).
TEST_F(ApiThroughRouter, TheEventsOfOneRequestGetIdsInTheirOrder) {
  Serve({});
  for (int request = 0; request < 20; ++request) {
    Json events = Json::array();
    for (int i = 0; i < 50; ++i) events.push_back({{"name", "test/other"}, {"data", {{"i", i}}}});
    Response sent = Send("POST", "/e/any-key", events.dump());
    ASSERT_EQ(sent.status, 200) << sent.body;
    const std::vector<std::string> ids = BodyOf(sent)["ids"];
    ASSERT_EQ(ids.size(), 50u);
    EXPECT_TRUE(std::is_sorted(ids.begin(), ids.end())) << sent.body;
  }
}

TEST_F(ApiThroughRouter, AnAcceptedEventsRunIsVisibleThroughTheRunsApi) {
  Serve({});
  Response sent = Send("POST", "/e/any-key", R"({"name":"test/go","data":{"n":1}})");
  ASSERT_EQ(sent.status, 200) << sent.body;
  Json ids = BodyOf(sent)["ids"];
  ASSERT_EQ(ids.size(), 1u);

  Response list = Send("GET", "/v1/runs?function=app-fn");
  ASSERT_EQ(list.status, 200) << list.body;
  Json runs = BodyOf(list)["data"];
  ASSERT_EQ(runs.size(), 1u);
  EXPECT_EQ(runs[0]["event_id"], ids[0]);

  const std::string run_id = runs[0]["id"];
  Response got = Send("GET", "/v1/runs/" + run_id);
  ASSERT_EQ(got.status, 200) << got.body;
  Json run = BodyOf(got)["data"];
  EXPECT_EQ(run["status"], store::kQueued);
  EXPECT_EQ(run["function_id"], "app-fn");
  EXPECT_EQ(run["event"]["internal_id"], ids[0]);
  EXPECT_EQ(run["event"]["payload"]["data"], Json({{"n", 1}}));
  EXPECT_EQ(run["steps"], Json::array());
}

// A list names an event whose payload is too long to list, and reading the event gives it.
TEST_F(ApiThroughRouter, AnEventListOmitsALongPayloadThatTheEventsPageGives) {
  Serve({});
  const std::string blob(store::kListedValueChars, 'x');
  Response sent =
      Send("POST", "/e/any-key", Json({{"name", "test/go"}, {"data", {{"blob", blob}}}}).dump());
  ASSERT_EQ(sent.status, 200) << sent.body;
  ASSERT_EQ(Send("POST", "/e/any-key", R"({"name":"test/go","data":{"n":1}})").status, 200);
  const std::string big_id = BodyOf(sent)["ids"][0];

  Json events = BodyOf(Send("GET", "/v1/events"))["data"];
  ASSERT_EQ(events.size(), 2u);
  for (const Json& e : events) {  // (two events of one millisecond have no set order)
    EXPECT_EQ(e["name"], "test/go");
    if (e["internal_id"] == big_id) {
      EXPECT_EQ(e["payload"], nullptr);
      EXPECT_EQ(e["payload_omitted"], true);
    } else {
      EXPECT_EQ(e["payload"]["data"], Json({{"n", 1}}));
      EXPECT_FALSE(e.contains("payload_omitted"));
    }
  }

  Json event = BodyOf(Send("GET", "/v1/events/" + big_id));
  EXPECT_EQ(event["data"]["payload"]["data"]["blob"], blob);
  EXPECT_FALSE(event["data"].contains("payload_omitted"));
}

TEST_F(ApiThroughRouter, AMalformedEventBodyIsA400SayingWhy) {
  Serve({});
  Response r = Send("POST", "/e/any-key", R"({"name":"test/go",)");
  ASSERT_EQ(r.status, 400) << r.body;
  Json body = BodyOf(r);
  EXPECT_EQ(body["status"], 400);
  EXPECT_EQ(body["ids"], Json::array());
  EXPECT_FALSE(body["error"].get<std::string>().empty());
  // Nothing was stored.
  auto events = store_->ListEvents({});
  ASSERT_THAT(events, IsOk());
  EXPECT_TRUE(events->empty());
}

TEST_F(ApiThroughRouter, ABadQueryIsA400WithTheJsonErrorShape) {
  Serve({});
  Response r = Send("GET", "/v1/runs?status=sideways");
  ASSERT_EQ(r.status, 400) << r.body;
  EXPECT_EQ(BodyOf(r)["error"]["code"], "invalid_argument");
  EXPECT_THAT(BodyOf(r)["error"]["message"].get<std::string>(), HasSubstr("status must be"));
  Response missing = Send("GET", "/v1/runs/01NOSUCHRUN");
  EXPECT_EQ(missing.status, 404) << missing.body;
  EXPECT_EQ(BodyOf(missing)["error"]["code"], "not_found");
}

TEST_F(ApiThroughRouter, WithATokenV1RefusesRequestsWithoutItButEventIntakeStaysOpen) {
  Serve({.api_token = kToken});
  EXPECT_EQ(Send("GET", "/v1/runs").status, 401);
  EXPECT_EQ(Send("GET", "/v1/runs", "", {{"Authorization", "Bearer wrong"}}).status, 401);
  EXPECT_EQ(
      Send("GET", "/v1/runs", "", {{"Authorization", std::string("Bearer ") + kToken}}).status,
      200);
  EXPECT_EQ(Send("GET", "/metrics").status, 401);
  EXPECT_EQ(Send("POST", "/e/any-key", R"({"name":"test/go"})").status, 200);
}

// On loopback with a token the router answers any Host (a proxy may pass another name), but
// a route whose own key is not set answers only this machine's names: a page whose name
// resolves to 127.0.0.1 (DNS rebinding) registered apps and sent events. With the keys set,
// they hold instead.
TEST_F(ApiThroughRouter, OnLoopbackWithATokenKeylessRoutesAnswerOnlyThisMachinesNames) {
  Serve({.api_token = kToken, .keyless_routes_loopback_only = true});
  const Headers rebound = {{"Host", "rebind.attacker.example:8288"}};
  const std::string event = R"({"name":"test/go"})";
  const std::string app =
      R"({"appName":"evil","url":"http://rebind.attacker.example/api","functions":[]})";
  EXPECT_EQ(Send("POST", "/e/any-key", event, rebound).status, 403);
  EXPECT_EQ(Send("POST", "/v1/events", event, rebound).status, 403);
  EXPECT_EQ(Send("POST", "/fn/register", app, rebound).status, 401);
  EXPECT_EQ(Send("POST", "/v1/signals", R"({"signal":"s"})", rebound).status, 401);
  EXPECT_EQ(Send("POST", "/e/any-key", event, {{"Host", "localhost:8288"}}).status, 200);
  EXPECT_EQ(Send("POST", "/e/any-key", event, {{"Host", "127.0.0.1"}}).status, 200);
  EXPECT_EQ(Send("POST", "/v1/signals", R"({"signal":"s"})", {{"Host", "[::1]:8288"}}).status, 404);
}

// /fn/register's refusals made before its handler (another machine's name, another site, a
// method it does not serve) come in the shape the SDKs read, `status` and `error` as a string:
// the router's own shape made the JS SDK report "Invalid register response schema", a 500.
TEST_F(ApiThroughRouter, RegisterRefusalsComeInTheShapeTheSdksRead) {
  Serve({});
  router_.OnlyLoopbackHosts();
  const std::string app = R"({"appName":"a","url":"http://127.0.0.1:1/api","functions":[]})";
  for (const auto& [method, headers, status] :
       {std::tuple{"POST", Headers{{"Host", "myhost.example:8288"}}, 403},
        std::tuple{"POST", Headers{{"Sec-Fetch-Site", "cross-site"}}, 403},
        std::tuple{"GET", Headers{}, 405}}) {
    Response r = Send(method, "/fn/register", app, headers);
    ASSERT_EQ(r.status, status) << r.body;
    Json body = BodyOf(r);
    EXPECT_EQ(body["status"], status) << r.body;
    ASSERT_TRUE(body["error"].is_string()) << r.body;
    EXPECT_FALSE(body["error"].get<std::string>().empty());
  }
  // Other routes keep the API's shape.
  Response other = Send("GET", "/v1/runs", "", {{"Host", "myhost.example:8288"}});
  EXPECT_EQ(other.status, 403);
  EXPECT_TRUE(BodyOf(other)["error"].is_object()) << other.body;
}

TEST_F(ApiThroughRouter, WithItsKeysSetAKeyedRouteAnswersAnyHost) {
  Serve({.event_keys = {"ek"},
         .signing_key = kSigningKey,
         .api_token = kToken,
         .keyless_routes_loopback_only = true});
  const Headers proxied = {{"Host", "funcky.example.com"}};
  EXPECT_EQ(Send("POST", "/e/ek", R"({"name":"test/go"})", proxied).status, 200);
  Headers signed_proxied = proxied;
  signed_proxied.push_back({"Authorization", "Bearer " + signing::HashedSigningKey(kSigningKey)});
  EXPECT_EQ(Send("POST", "/v1/signals", R"({"signal":"s"})", signed_proxied).status, 404);
}

// A function's step is what the SDKs send: {id, name, runtime: {type: "http", url}, retries:
// {attempts}}. Anything else in it, another runtime (Inngest Connect's "ws") or a second step
// would be ignored, so the sync is refused naming it and stores nothing; unset (null) fields
// are absent, as everywhere in a config.
TEST_F(ApiThroughRouter, ASyncRefusesStepFieldsFunckyDoesNotImplementNamingThem) {
  Serve({});
  auto sync = [&](const Json& step, const Json& more_steps = Json::object()) {
    Json steps = {{"step", step}};
    steps.update(more_steps);
    Json fn = {{"id", "other-fn"},
               {"name", nullptr},
               {"triggers", Json::array({{{"event", "test/other"}}})},
               {"steps", steps}};
    Json app = {
        {"appName", "other"}, {"url", "http://127.0.0.1:9/api"}, {"functions", Json::array({fn})}};
    return Send("POST", "/fn/register", app.dump());
  };
  const Json good = {
      {"id", "step"},
      {"name", "step"},
      {"runtime", {{"type", "http"}, {"url", "http://127.0.0.1:9/api?fnId=other-fn"}}},
      {"retries", {{"attempts", 2}}}};
  auto with = [&](const Json::json_pointer& at, Json value) {
    Json step = good;
    step[at] = std::move(value);
    return step;
  };
  const std::pair<Json, std::string> refused[] = {
      {with(Json::json_pointer("/runtime/type"), "ws"),
       "function \"other-fn\": steps.step.runtime.type \"ws\" is not implemented by Funcky"},
      {with(Json::json_pointer("/runtime/type"), 7),
       "function \"other-fn\": steps.step.runtime.type is not implemented by Funcky"},
      {with(Json::json_pointer("/runtime/headers"), Json::object({{"x", "y"}})),
       "function \"other-fn\": steps.step.runtime.headers is not implemented by Funcky"},
      {with(Json::json_pointer("/timeout"), "5m"),
       "function \"other-fn\": steps.step.timeout is not implemented by Funcky"},
      {with(Json::json_pointer("/retries/backoff"), "1s"),
       "function \"other-fn\": steps.step.retries.backoff is not implemented by Funcky"},
  };
  for (const auto& [step, message] : refused) {
    Response r = sync(step);
    EXPECT_EQ(r.status, 400) << step.dump();
    EXPECT_THAT(BodyOf(r)["error"].get<std::string>(), HasSubstr(message)) << r.body;
  }
  Response two = sync(good, {{"again", good}});
  EXPECT_EQ(two.status, 400);
  EXPECT_THAT(BodyOf(two)["error"].get<std::string>(),
              HasSubstr("steps must be an object with one step"));
  // Nothing of the refused syncs was stored; the good step (with name null) syncs.
  EXPECT_THAT(Send("GET", "/v1/functions").body, Not(HasSubstr("other-fn")));
  Json unset = good;
  unset["runtime"]["type"] = nullptr;
  unset["retries"] = nullptr;
  Response ok = sync(unset);
  EXPECT_EQ(ok.status, 200) << ok.body;
  EXPECT_THAT(Send("GET", "/v1/functions").body, HasSubstr("other-fn"));
}

// A cancel rule whose `if` requires the cancelling event's field to equal the run's keys each
// run by its value as the run is made, and a cancelling event reads the runs of its own values'
// keys (store::CancelCandidates), not every active run of the function. A run made before a
// sync added the rule is cancelled by it too (the sync keyed it for every event of the rule); a
// run whose value is no key (an object) is read for every event and cancelled by none here.
TEST_F(ApiThroughRouter, AKeyedCancelRuleCancelsTheRunsOfTheEventsValueFoundByKey) {
  Serve({});
  auto sync = [&](const Json& cancel) {
    Json fn = {
        {"id", "other-fn"},
        {"triggers", Json::array({{{"event", "test/start"}}})},
        {"steps", {{"step", {{"id", "step"}, {"runtime", {{"url", "http://127.0.0.1:9/api"}}}}}}}};
    if (!cancel.is_null()) fn["cancel"] = cancel;
    Json app = {
        {"appName", "other"}, {"url", "http://127.0.0.1:9/api"}, {"functions", Json::array({fn})}};
    Response r = Send("POST", "/fn/register", app.dump());
    EXPECT_EQ(r.status, 200) << r.body;
  };
  auto send = [&](const std::string& name, Json user) {
    Response r = Send("POST", "/e/any-key",
                      Json{{"name", name}, {"data", {{"user", std::move(user)}}}}.dump());
    EXPECT_EQ(r.status, 200) << r.body;
    clock_.Advance(std::chrono::milliseconds(1));
  };
  // The status of each run of other-fn by its event's data.user.
  auto statuses = [&] {
    std::map<std::string, std::vector<std::string>> out;
    auto runs = store_->ListRuns({.function_id = "other-fn", .limit = 100});
    EXPECT_THAT(runs, IsOk());
    if (!runs.ok()) return out;
    for (const store::RunRecord& run : *runs) {
      auto event = store_->GetEvent(run.event_id);
      EXPECT_THAT(event, IsOk());
      if (event.ok()) out[event->payload["data"]["user"].dump()].push_back(run.status);
    }
    for (auto& [user, list] : out) std::sort(list.begin(), list.end());
    return out;
  };
  sync(nullptr);
  send("test/start", "u1");  // made before the rule
  sync(Json::array({{{"event", "test/stop"}, {"if", "async.data.user == event.data.user"}}}));
  send("test/start", "u1");
  send("test/start", "u2");
  send("test/start", {{"id", "u1"}});
  // A run made without its keys, as only a write around the intake could: the cancelling event
  // does not read it (it would, were every run read).
  store::NewEvent unkeyed;
  unkeyed.event.internal_id = NewUlid(UnixMillis(clock_.Now()));
  unkeyed.event.id = unkeyed.event.internal_id;
  unkeyed.event.name = "test/start";
  unkeyed.event.payload = {{"name", "test/start"}, {"data", {{"user", "unkeyed u1"}}}};
  unkeyed.event.received_at_ms = UnixMillis(clock_.Now());
  unkeyed.runs.push_back({.run_id = NewUlid(UnixMillis(clock_.Now())), .function_id = "other-fn"});
  ASSERT_THAT(store_->IngestEvents({unkeyed}, clock_.Now(), nullptr), IsOk());
  clock_.Advance(std::chrono::milliseconds(1));
  // Its `if` matches it all the same.
  send("test/stop", "unkeyed u1");
  send("test/stop", "u1");
  using List = std::vector<std::string>;
  const std::map<std::string, List> want = {{"\"u1\"", List{store::kCancelled, store::kCancelled}},
                                            {"\"u2\"", List{store::kQueued}},
                                            {R"({"id":"u1"})", List{store::kQueued}},
                                            {"\"unkeyed u1\"", List{store::kQueued}}};
  EXPECT_EQ(statuses(), want);
  send("test/stop", "u2");
  EXPECT_EQ(statuses()["\"u2\""], List{store::kCancelled});
}

// A run made as a gated run is (here a deadline: not the ingest's plain path) gets its keys
// too; an event with more keyable fields than an event's keys hold (expr::kMaxIndexKeys) may
// not hold a run's key among them, so it reads every active run, as before keys were, and
// still cancels only what its `if` matches.
TEST_F(ApiThroughRouter, AKeyedCancelRuleFindsGatedRunsAndAWideEventReadsThemAll) {
  Serve({});
  Json fn = {
      {"id", "gated-fn"},
      {"triggers", Json::array({{{"event", "test/start"}}})},
      {"timeouts", {{"finish", "1h"}}},
      {"cancel",
       Json::array({{{"event", "test/stop"}, {"if", "async.data.user == event.data.user"}}})},
      {"steps", {{"step", {{"id", "step"}, {"runtime", {{"url", "http://127.0.0.1:9/api"}}}}}}}};
  Json app = {
      {"appName", "gated"}, {"url", "http://127.0.0.1:9/api"}, {"functions", Json::array({fn})}};
  ASSERT_EQ(Send("POST", "/fn/register", app.dump()).status, 200);
  auto send = [&](const std::string& name, Json data) {
    Response r = Send("POST", "/e/any-key", Json{{"name", name}, {"data", std::move(data)}}.dump());
    EXPECT_EQ(r.status, 200) << r.body;
    clock_.Advance(std::chrono::milliseconds(1));
  };
  auto status_of = [&](const std::string& user) {
    auto runs = store_->ListRuns({.function_id = "gated-fn", .limit = 100});
    EXPECT_THAT(runs, IsOk());
    std::string status = "(none)";
    if (!runs.ok()) return status;
    for (const store::RunRecord& run : *runs) {
      auto event = store_->GetEvent(run.event_id);
      if (event.ok() && event->payload["data"]["user"] == user) status = run.status;
    }
    return status;
  };
  send("test/start", {{"user", "u1"}});
  send("test/start", {{"user", "u2"}});
  send("test/start", {{"user", "u3"}});
  Json wide = {{"user", "u1"}};
  for (int i = 0; i < 300; ++i) wide["f" + std::to_string(i)] = i;
  send("test/stop", wide);
  EXPECT_EQ(status_of("u1"), store::kCancelled);
  EXPECT_EQ(status_of("u2"), store::kQueued);
  send("test/stop", {{"user", "u2"}});
  EXPECT_EQ(status_of("u2"), store::kCancelled);
  EXPECT_EQ(status_of("u3"), store::kQueued);
}

// The routes that take bodies from callers with a key answer a wrong or missing key from the
// request's line and headers (Router::Screen): the server refuses such a large body unread.
TEST_F(ApiThroughRouter, KeyedRoutesRefuseAWrongKeyBeforeTheBody) {
  Serve({.event_keys = {"ek"}, .signing_key = kSigningKey, .api_token = kToken});
  auto screen = [&](std::string target, Headers headers = {}) {
    return router_.Screen(Request{"POST", std::move(target), std::move(headers), "", {}});
  };
  const Headers signed_by = {{"Authorization", "Bearer " + signing::HashedSigningKey(kSigningKey)}};
  const Headers wrong = {{"Authorization", "Bearer signkey-test-00"}};
  EXPECT_EQ(screen("/e/nope")->status, 401);
  EXPECT_FALSE(screen("/e/ek").has_value());
  EXPECT_EQ(screen("/v1/events", wrong)->status, 401);
  EXPECT_FALSE(screen("/v1/events", {{"Authorization", "Bearer ek"}}).has_value());
  EXPECT_EQ(screen("/fn/register", wrong)->status, 401);
  EXPECT_FALSE(screen("/fn/register", signed_by).has_value());
  EXPECT_EQ(screen("/v1/checkpoint/01HF7YAT00G69FV3N5DEXKDCS2/async", wrong)->status, 401);
  EXPECT_FALSE(screen("/v1/checkpoint/01HF7YAT00G69FV3N5DEXKDCS2/async", signed_by).has_value());
  EXPECT_EQ(screen("/v1/signals", wrong)->status, 401);
  EXPECT_FALSE(
      screen("/v1/signals", {{"Authorization", std::string("Bearer ") + kToken}}).has_value());
  // Handle answers the same.
  EXPECT_EQ(Send("POST", "/e/nope", R"({"name":"test/go"})").status, 401);
  EXPECT_EQ(Send("POST", "/fn/register", "{}", wrong).status, 401);
}

TEST_F(ApiThroughRouter, AV1RouteAddedWithoutAuthCodeIsRefusedWithoutTheToken) {
  Serve({.api_token = kToken});
  router_.Add("GET", "/v1/added-later", [](const Request&) {
    return http::JsonResponse(200, {{"ok", true}});
  });
  EXPECT_EQ(Send("GET", "/v1/added-later").status, 401);
  EXPECT_EQ(Send("GET", "/v1/added-later", "", {{"Authorization", std::string("Bearer ") + kToken}})
                .status,
            200);
}

// The JS SDK's async checkpoint of a call in flight: authenticated by the signing key (not the
// API token), recorded while the call holds its lease, refused with 409 once it does not (the
// SDK then stops, a stale dispatch), and a malformed one is a 400 that stores nothing.
TEST_F(ApiThroughRouter, ACheckpointRecordsTheStepsOfALeasedCallAndRefusesAStaleOne) {
  Serve({.signing_key = kSigningKey, .api_token = kToken});
  const store::QueueItem call = FirstCall();
  ASSERT_FALSE(call.run_id.empty());
  const std::string url = "/v1/checkpoint/" + call.run_id + "/async";
  const Headers sdk = {{"Authorization", "Bearer " + signing::HashedSigningKey(kSigningKey)}};
  auto body = [&](const store::QueueItem& item, Json steps) {
    return Json{
        {"run_id", item.run_id},   {"fn_id", "app-fn"},         {"qi_id", executor::QueueRef(item)},
        {"request_started_at", 1}, {"steps", std::move(steps)}, {"ts", 2}}
        .dump();
  };
  const Json first = Json::array({{{"id", "h1"}, {"op", "StepRun"}, {"data", "A"}}});
  auto recorded = [&] {
    auto steps = store_->GetSteps(call.run_id);
    EXPECT_THAT(steps, IsOk());
    return steps.ok() ? steps->size() : 0u;
  };

  // Not the signing key (the API token is no substitute): 401.
  EXPECT_EQ(Send("POST", url, body(call, first)).status, 401);
  EXPECT_EQ(
      Send("POST", url, body(call, first), {{"Authorization", std::string("Bearer ") + kToken}})
          .status,
      401);
  // Malformed: 400 with the reason, nothing stored.
  for (const auto& [bad, reason] : std::vector<std::pair<std::string, std::string>>{
           {"[]", "object"},
           {R"({"run_id":"other","qi_id":"1.ab","steps":[]})", "run_id"},
           {Json{{"run_id", call.run_id}, {"steps", first}}.dump(), "qi_id"},
           {Json{{"run_id", call.run_id}, {"qi_id", "x"}, {"steps", first}}.dump(), "qi_id"},
           {body(call, Json::object()), "steps"},
           {body(call, Json::array({{{"id", "h1"}, {"op", "Sleep"}, {"name", "1s"}}})), "Sleep"},
           {body(call, Json::array({{{"id", "h1"}, {"op", "StepRun"}}, {{"op", "StepRun"}}})),
            "id"},
           // a step id longer than an index entry may hold on PostgreSQL
           {body(call, Json::array({{{"id", std::string(3000, 'h')}, {"op", "StepRun"}}})),
            "more than 256"}}) {
    Response r = Send("POST", url, bad, sdk);
    EXPECT_EQ(r.status, 400) << bad << " " << r.body;
    EXPECT_THAT(r.body, HasSubstr(reason)) << bad;
  }
  EXPECT_EQ(Send("POST", "/v1/checkpoint/..%2f/async", body(call, first), sdk).status, 400);
  EXPECT_EQ(recorded(), 0u);

  Response ok = Send("POST", url, body(call, first), sdk);
  ASSERT_EQ(ok.status, 200) << ok.body;
  ASSERT_EQ(recorded(), 1u);
  EXPECT_EQ(store_->GetSteps(call.run_id)->at(0).memo, Json({{"data", "A"}}));
  // Sent again (as the SDK does when an answer is lost): 200, and neither the step nor its
  // attempt is written twice.
  Response resent = Send("POST", url, body(call, first), sdk);
  ASSERT_EQ(resent.status, 200) << resent.body;
  EXPECT_EQ(recorded(), 1u);
  EXPECT_EQ(store_->GetAttempts(call.run_id)->size(), 1u);

  // Another lease token (a call that lost its lease, or a made-up one): 409, nothing stored.
  store::QueueItem stale = call;
  stale.lease_token = "abcdef";
  const Json second = Json::array({{{"id", "h2"}, {"op", "StepRun"}, {"data", "B"}}});
  Response refused = Send("POST", url, body(stale, second), sdk);
  EXPECT_EQ(refused.status, 409) << refused.body;
  EXPECT_EQ(recorded(), 1u);

  // Each answer is counted by its outcome, and the recorded step's duration like a call's.
  const std::string metrics = metrics_.Render(std::nullopt, 0, std::nullopt);
  for (const char* line : {"funcky_checkpoints_total{outcome=\"recorded\"} 2",
                           "funcky_checkpoints_total{outcome=\"stale\"} 1",
                           "funcky_checkpoints_total{outcome=\"invalid\"} 9",
                           "funcky_checkpoints_total{outcome=\"unauthenticated\"} 2",
                           // the recorded step's duration, as for steps a call recorded,
                           // once
                           "funcky_step_duration_seconds_count{function=\"app-fn\"} 1"}) {
    EXPECT_THAT(metrics, HasSubstr(line));
  }
}

// POST /v1/signals (step.waitForSignal): authenticated by the signing key, as the SDK sends
// it, or by the API token; resumes the run whose wait holds the signal and names it; 404 when
// no wait holds it; a malformed body is a 400 that resumes nothing.
TEST_F(ApiThroughRouter, ASignalResumesTheRunWaitingForItAndNamesIt) {
  Serve({.signing_key = kSigningKey, .api_token = kToken});
  const store::QueueItem call = FirstCall();
  const std::string run_id = call.run_id;
  ASSERT_FALSE(run_id.empty());
  store::NewWait wait;
  wait.step_id = "approval";
  wait.name = "approval";
  wait.kind = store::kWaitSignal;
  wait.signal = "order-7";
  wait.expires_at = clock_.Now() + std::chrono::hours(1);
  store::Transition t;
  t.move = store::Transition::Continue{.waits = {wait}, .run_status = store::kWaiting};
  ASSERT_THAT(store_->Apply(call, t, clock_.Now()), IsOk());
  auto resumed = [&] {
    auto items = store_->Claim(10, clock_.Now(), std::chrono::seconds(30));
    EXPECT_THAT(items, IsOk());
    return items.ok() ? *items : std::vector<store::QueueItem>{};
  };

  const Headers sdk = {{"Authorization", "Bearer " + signing::HashedSigningKey(kSigningKey)}};
  const std::string body = R"({"signal":"order-7","data":{"by":"ada"}})";
  EXPECT_EQ(Send("POST", "/v1/signals", body).status, 401);
  EXPECT_EQ(Send("POST", "/v1/signals", body, {{"Authorization", "Bearer wrong"}}).status, 401);
  for (const auto& [bad, reason] : std::vector<std::pair<std::string, std::string>>{
           {"[]", "object"},
           {"{", "body"},
           {R"({"data":1})", "signal"},
           {R"({"signal":""})", "signal"},
           {R"({"signal":7})", "signal"},
           {Json{{"signal", std::string(store::kMaxSignalBytes + 1, 's')}}.dump(), "longer"}}) {
    Response r = Send("POST", "/v1/signals", bad, sdk);
    EXPECT_EQ(r.status, 400) << bad << " " << r.body;
    EXPECT_THAT(r.body, HasSubstr(reason)) << bad;
  }
  // Its data becomes the step's memo: held to an event's bound (512 KiB).
  Response big =
      Send("POST", "/v1/signals",
           Json{{"signal", "order-7"}, {"data", std::string(600 << 10, 'x')}}.dump(), sdk);
  EXPECT_EQ(big.status, 413) << big.body;
  Response none = Send("POST", "/v1/signals", R"({"signal":"order-8"})", sdk);
  EXPECT_EQ(none.status, 404) << none.body;
  EXPECT_EQ(BodyOf(none)["error"]["code"], "not_found");
  EXPECT_TRUE(resumed().empty()) << "nothing resumed yet";

  Response ok = Send("POST", "/v1/signals", body, sdk);
  ASSERT_EQ(ok.status, 200) << ok.body;
  EXPECT_EQ(BodyOf(ok), Json({{"data", {{"run_id", run_id}}}}));
  auto items = resumed();
  ASSERT_EQ(items.size(), 1u);
  ASSERT_TRUE(items[0].resume);
  EXPECT_EQ((*items[0].resume)["memo"],
            Json({{"data", {{"signal", "order-7"}, {"data", {{"by", "ada"}}}}}}));
  // Resumed once: the same signal again, with the API token this time, reaches no run.
  EXPECT_EQ(Send("POST", "/v1/signals", body, {{"Authorization", std::string("Bearer ") + kToken}})
                .status,
            404);
}

}  // namespace
}  // namespace funcky::api
