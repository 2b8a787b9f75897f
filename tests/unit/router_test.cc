#include "coordinator/http/router.h"

#include <gtest/gtest.h>

namespace funcky::http {
namespace {

Request Get(std::string target, Headers headers = {}) {
  return Request{"GET", std::move(target), std::move(headers), "", {}};
}

std::optional<Response> NeedsToken(const Request& r) {
  if (r.bearer_token() == "t") return std::nullopt;
  return ErrorResponse(401, "unauthenticated", "token");
}

Response Ok(const Request& r) { return JsonResponse(200, {{"id", r.param("id")}}); }

TEST(Router, ARouteAddedUnderAProtectedPrefixWithoutAuthCodeIsRefused) {
  Router router;
  router.Protect("/v1", NeedsToken);
  // Added after Protect, with no authentication of its own.
  router.Add("GET", "/v1/new/{id}", Ok);
  router.Add("GET", "/v1", Ok);
  router.Add("GET", "/v10/x", Ok);  // another prefix, not under /v1
  router.Add("GET", "/open", Ok);
  router.Add("GET", "/v1/intake", Ok, Access::kPublic);

  EXPECT_EQ(router.Handle(Get("/v1/new/a")).status, 401);
  EXPECT_EQ(router.Handle(Get("/v1")).status, 401);
  Response ok = router.Handle(Get("/v1/new/a%2Fb", {{"Authorization", "Bearer t"}}));
  EXPECT_EQ(ok.status, 200);
  EXPECT_NE(ok.body.find("a/b"), std::string::npos) << ok.body;
  EXPECT_EQ(router.Handle(Get("/v10/x")).status, 200);
  EXPECT_EQ(router.Handle(Get("/open")).status, 200);
  EXPECT_EQ(router.Handle(Get("/v1/intake")).status, 200);
  // Unknown paths and methods answer as before.
  EXPECT_EQ(router.Handle(Get("/nope")).status, 404);
  EXPECT_EQ(router.Handle(Request{"POST", "/open", {}, "", {}}).status, 405);
}

TEST(Router, ARouteAddedBeforeProtectIsGuardedToo) {
  Router router;
  router.Add("GET", "/metrics", Ok);
  router.Protect("/metrics", NeedsToken);
  EXPECT_EQ(router.Handle(Get("/metrics")).status, 401);
  EXPECT_EQ(router.Handle(Get("/metrics", {{"Authorization", "Bearer t"}})).status, 200);
}

}  // namespace
}  // namespace funcky::http
