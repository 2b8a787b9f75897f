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

// Path parameters and query values go to the stores as text: a target whose parts are not
// UTF-8, or hold a NUL, or that does not parse, is a 400 that does not quote it (a segment
// may be a secret); UTF-8 percent-encoded passes as it is.
TEST(Router, ATargetThatIsNotUtf8OrHoldsANulOrDoesNotParseIsA400) {
  Router router;
  router.Add("GET", "/v1/runs/{id}", Ok);
  router.Add("GET", "/e/{key}", Ok);
  for (const char* target :
       {"/v1/runs/%FF", "/v1/runs/%C3%28", "/v1/runs/abc%00x", "/v1/runs/a?status=%FF",
        "/v1/runs/a?x%00=1", "/v1/runs/a?cursor=%ED%A0%80", "/v1/runs/a?x=%zz", "/v1/runs/a?x=|",
        "/e/secret%FF"}) {
    Response r = router.Handle(Get(target));
    EXPECT_EQ(r.status, 400) << target;
    EXPECT_NE(r.body.find("bad_request"), std::string::npos) << target << ": " << r.body;
    EXPECT_EQ(r.body.find("secret"), std::string::npos) << r.body;
  }
  Response ok = router.Handle(Get("/v1/runs/caf%C3%A9?status=completed"));
  EXPECT_EQ(ok.status, 200);
  EXPECT_NE(ok.body.find("caf\u00e9"), std::string::npos) << ok.body;
}

}  // namespace
}  // namespace funcky::http
