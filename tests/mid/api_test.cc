// The HTTP API through Router::Handle, without sockets: the real handlers, intake and
// metrics over a SQLite store in a temporary file.
#include <filesystem>
#include <memory>
#include <string>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "coordinator/api/api.h"
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

constexpr const char* kToken = "api-token-for-tests";

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

}  // namespace
}  // namespace funcky::api
