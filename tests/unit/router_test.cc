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

// An empty segment between two others is a parameter's value: the lane of the empty key
// (events without the key field) can be skipped; a trailing slash changes nothing.
TEST(Router, AnEmptySegmentIsAnEmptyParameter) {
  Router router;
  router.Add("POST", "/v1/lanes/{function}/{key}/skip-head", [](const Request& r) {
    return JsonResponse(200, {{"key", r.param("key")}});
  });
  router.Add("GET", "/v1/runs", Ok);
  Response empty = router.Handle(Request{"POST", "/v1/lanes/f//skip-head", {}, "", {}});
  EXPECT_EQ(empty.status, 200);
  EXPECT_EQ(empty.body, R"({"key":""})");
  EXPECT_EQ(router.Handle(Get("/v1/runs/")).status, 200);
  EXPECT_EQ(router.Handle(Get("/v1/runs")).status, 200);
  EXPECT_EQ(router.Handle(Get("/")).status, 404);
  EXPECT_EQ(router.Handle(Get("//v1/runs")).status, 404);
}

// Screen answers what Handle would refuse a request with, from its line and headers alone:
// the guards, the route's own refusal, no route; nothing for a request Handle would serve.
TEST(Router, ScreenRefusesWhatHandleWouldWithoutTheBody) {
  Router router;
  router.Protect("/v1", [](const Request& r) -> std::optional<Response> {
    if (r.bearer_token() == "t") return std::nullopt;
    return ErrorResponse(401, "unauthenticated", "token");
  });
  auto keyed = [](const Request& r) -> std::optional<Response> {
    if (r.param("key") == "k") return std::nullopt;
    return ErrorResponse(401, "unauthenticated", "unknown key");
  };
  router.Add("POST", "/e/{key}", Ok, Access::kGuarded, keyed);
  router.Add("POST", "/v1/things", Ok);
  auto post = [](std::string target, Headers headers = {}) {
    return Request{"POST", std::move(target), std::move(headers), "", {}};
  };
  EXPECT_EQ(router.Screen(post("/e/wrong"))->status, 401);
  EXPECT_FALSE(router.Screen(post("/e/k")).has_value());
  EXPECT_EQ(router.Screen(post("/v1/things"))->status, 401);
  EXPECT_FALSE(router.Screen(post("/v1/things", {{"Authorization", "Bearer t"}})).has_value());
  EXPECT_EQ(router.Screen(post("/nowhere"))->status, 404);
  EXPECT_EQ(router.Screen(Get("/e/k"))->status, 405);
  EXPECT_EQ(
      router.Screen(post("/e/k", {{"Origin", "https://evil.example"}, {"Host", "h"}}))->status,
      403);
}

// A browser's request from another site is refused, whatever the route (event intake and
// checkpoints authenticate by other means, and an open coordinator by none); requests from
// the dashboard's own origin, and from clients that are not browsers, are served.
TEST(Router, ABrowsersRequestFromAnotherSiteIsA403) {
  Router router;
  router.Add("POST", "/e/{key}", Ok, Access::kPublic);
  auto post = [&](Headers headers) {
    return router.Handle(Request{"POST", "/e/k", std::move(headers), "{}", {}}).status;
  };
  EXPECT_EQ(post({{"Host", "127.0.0.1:8288"}, {"Sec-Fetch-Site", "cross-site"}}), 403);
  EXPECT_EQ(post({{"Host", "127.0.0.1:8288"}, {"Origin", "https://evil.example"}}), 403);
  EXPECT_EQ(post({{"Host", "127.0.0.1:8288"}, {"Origin", "null"}}), 403);
  EXPECT_EQ(post({{"Host", "127.0.0.1:8288"}, {"Origin", "http://localhost:8288"}}), 403);
  EXPECT_EQ(post({{"Host", "127.0.0.1:8288"},
                  {"Origin", "http://127.0.0.1:8288"},
                  {"Sec-Fetch-Site", "same-origin"}}),
            200);
  EXPECT_EQ(post({{"Host", "[::1]:8288"}, {"Origin", "http://[::1]:8288"}}), 200);
  EXPECT_EQ(post({{"Host", "127.0.0.1:8288"}, {"Sec-Fetch-Site", "same-site"}}), 200);
  // Another server on this machine is another origin, though the same site: its port differs.
  EXPECT_EQ(post({{"Host", "localhost:8288"},
                  {"Origin", "http://localhost:3000"},
                  {"Sec-Fetch-Site", "same-site"}}),
            403);
  EXPECT_EQ(post({{"Host", "localhost:8288"}, {"Origin", "http://localhost"}}), 403);
  EXPECT_EQ(post({{"Host", "[::1]:8288"}, {"Origin", "http://[::1]:9000"}}), 403);
  // Behind a proxy that passes the Host without a port: the origin's default port.
  EXPECT_EQ(post({{"Host", "funcky.example.com"}, {"Origin", "https://funcky.example.com"}}), 200);
  EXPECT_EQ(post({{"Host", "funcky.example.com"}, {"Origin", "https://funcky.example.com:443"}}),
            200);
  EXPECT_EQ(post({{"Host", "funcky.example.com"}, {"Origin", "https://funcky.example.com:8443"}}),
            403);
  // A proxy that drops the port from the Host: the browser's own Sec-Fetch-Site vouches.
  EXPECT_EQ(post({{"Host", "funcky.example.com"},
                  {"Origin", "https://funcky.example.com:8443"},
                  {"Sec-Fetch-Site", "same-origin"}}),
            200);
  EXPECT_EQ(
      post({{"Host", "funcky.example.com:8443"}, {"Origin", "https://funcky.example.com:8443"}}),
      200);
  EXPECT_EQ(post({{"Host", "127.0.0.1:8288"}}), 200);  // curl, an SDK
  EXPECT_EQ(post({}), 200);
}

// On loopback without a token, a Host that is not this machine's name (a rebound DNS name)
// is a 403; this machine's names, with or without a port, are served.
TEST(Router, OnlyLoopbackHostsRefusesOtherNames) {
  Router router;
  router.Add("GET", "/v1/runs", Ok);
  auto get = [&](const char* host) {
    return router.Handle(Get("/v1/runs", {{"Host", host}})).status;
  };
  EXPECT_EQ(get("evil.example:8288"), 200) << "not asked for";
  router.OnlyLoopbackHosts();
  for (const char* host : {"evil.example:8288", "evil.example", "127.0.0.1.evil.example",
                           "128.0.0.1:8288", "127.0.0.1x:1", "0.0.0.0:8288"}) {
    EXPECT_EQ(get(host), 403) << host;
  }
  for (const char* host : {"127.0.0.1:8288", "127.0.0.1", "localhost:8288", "LOCALHOST",
                           "app.localhost:8288", "[::1]:8288", "127.1.2.3:80"}) {
    EXPECT_EQ(get(host), 200) << host;
  }
}

}  // namespace
}  // namespace funcky::http
