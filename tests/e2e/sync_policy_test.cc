// What in-band sync (POST /v1/apps/sync) and registration let a caller do to the network
// the coordinator sits in: URLs with control characters are refused before anything is
// sent; every connection failure reads the same, so open and closed ports look alike; an
// answer's body is never echoed; --sync-allow limits the targets.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <memory>
#include <string>
#include <thread>

#include <gtest/gtest.h>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/thread_pool.hpp>

#include "common/clock.h"
#include "common/http_client.h"
#include "common/http_server.h"
#include "common/signing.h"
#include "common/url.h"
#include "tests/support/e2e.h"
#include "tests/support/scripted_server.h"
#include "tests/support/silent_port.h"

namespace funcky::testing {
namespace {

using namespace std::chrono_literals;

// Accepts every connection and closes it at once, without a byte.
class ClosingPort {
 public:
  ClosingPort() {
    thread_ = std::thread([this] {
      while (!stop_) {
        pollfd p{port_.fd(), POLLIN, 0};
        if (poll(&p, 1, 50) == 1) {
          int c = accept(port_.fd(), nullptr, nullptr);
          if (c >= 0) close(c);
        }
      }
    });
  }
  ~ClosingPort() {
    stop_ = true;
    thread_.join();
  }
  int port() const { return port_.port(); }

 private:
  SilentPort port_;
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

// Answers everything with HTTP 500 and a body that must not come back to the caller.
class ChattyHost {
 public:
  static constexpr const char* kSecret = "internal-banner-do-not-echo";
  ChattyHost()
      : server_([](ServerRequest) {
          ServerResponse res;
          res.status = 500;
          res.body = std::string(kSecret) + " version 1.2.3";
          return res;
        }) {}
  std::string url() const { return server_.url(); }

 private:
  ScriptedServer server_;
};

class SyncPolicyTest : public E2eTest {
 protected:
  std::string backend() const override { return "sqlite"; }

  JsonReply Sync(const Coordinator& c, const std::string& url) {
    return Http("POST", c.url() + "/v1/apps/sync", Json{{"url", url}}.dump());
  }

  static std::string Message(const JsonReply& r) {
    return r.body["error"].is_object() ? r.body["error"].value("message", "") : "";
  }
};

TEST_F(SyncPolicyTest, EveryConnectionFailureGetsTheSameAnswer) {
  auto c = StartCoordinator();
  SilentPort silent;  // times out (the sync's 10 s deadline)
  ClosingPort closing;
  const int refused = FreePort();
  for (int port : {refused, closing.port(), silent.port()}) {
    const std::string url = "http://127.0.0.1:" + std::to_string(port) + "/api";
    auto r = Sync(*c, url);
    EXPECT_EQ(r.status, 502) << port << ": " << r.raw;
    EXPECT_EQ(r.body["error"]["code"], "bad_gateway") << r.raw;
    EXPECT_EQ(Message(r), "cannot sync the app at " + url + ": no valid answer") << r.raw;
  }
  // The reason is for the operator only.
  EXPECT_NE(c->Log().find("sync of the app at"), std::string::npos) << c->Log();
}

TEST_F(SyncPolicyTest, AnAnswerThatIsNotASyncIsNamedByItsStatusOnly) {
  auto c = StartCoordinator();
  ChattyHost chatty;
  auto r = Sync(*c, chatty.url());
  EXPECT_EQ(r.status, 502) << r.raw;
  EXPECT_EQ(Message(r), "cannot sync the app at " + chatty.url() + ": it answered HTTP 500")
      << r.raw;
  EXPECT_EQ(r.raw.find(ChattyHost::kSecret), std::string::npos) << r.raw;
}

TEST_F(SyncPolicyTest, SyncAllowRefusesTargetsNotListedWithoutConnecting) {
  // Learn the test host's URL, then restart the coordinator with an allow-list naming it.
  auto c = StartCoordinator();
  TestHost host(c->url(), dir_);
  auto apps = Http("GET", c->url() + "/v1/apps");
  ASSERT_EQ(apps.status, 200) << apps.raw;
  ASSERT_EQ(apps.body["data"].size(), 1u) << apps.raw;
  const std::string host_url = apps.body["data"][0]["url"];
  auto parsed = ParseUrl(host_url);
  ASSERT_TRUE(parsed.ok()) << host_url;
  c->Stop();

  SilentPort other;
  const std::string other_url = "http://127.0.0.1:" + std::to_string(other.port()) + "/api";
  const std::string host_port = parsed->host + ":" + std::to_string(parsed->port);
  auto expect_policy = [&](Coordinator& allowed) {
    auto listed = Sync(allowed, host_url);
    ASSERT_EQ(listed.status, 200) << listed.raw;
    EXPECT_EQ(listed.body["data"]["sync_kind"], "in_band");
    EXPECT_EQ(listed.body["data"]["app_id"], "test");

    auto refused = Sync(allowed, other_url);
    EXPECT_EQ(refused.status, 403) << refused.raw;
    EXPECT_EQ(refused.body["error"]["code"], "forbidden") << refused.raw;
    EXPECT_NE(Message(refused).find("not in --sync-allow"), std::string::npos) << refused.raw;
    EXPECT_FALSE(other.Connected()) << "the coordinator connected to a target not listed";
    // The same host on another port is another target.
    auto port_differs = Sync(allowed, "http://" + parsed->host + ":1/api");
    EXPECT_EQ(port_differs.status, 403) << port_differs.raw;
  };

  // From the environment, comma-separated.
  c->SetEnv({"FUNCKY_SYNC_ALLOW=app.example.com," + host_port});
  c->Start();
  expect_policy(*c);
  c->Stop();

  // From repeated flags; a host alone allows every port of it, compared case-insensitively:
  // a closed port of an allowed host is tried (502), not refused (403).
  auto flags = StartCoordinator(
      {"--sync-allow", "app.example.com", "--sync-allow", host_port, "--sync-allow", "LOCALHOST"});
  expect_policy(*flags);
  auto closed = Sync(*flags, "http://localhost:" + std::to_string(FreePort()) + "/api");
  EXPECT_EQ(closed.status, 502) << closed.raw;
}

// An allowed app's sync reply says where its calls go: its url and each step's url are held
// to --sync-allow as the sync's own target is (else the reply would aim calls, and the
// errors recorded for them, at any host); nothing is stored.
TEST_F(SyncPolicyTest, SyncAllowHoldsTheUrlsAnAppsReplySendsCallsTo) {
  SilentPort other;
  const std::string other_url = "http://127.0.0.1:" + std::to_string(other.port()) + "/api";
  std::string app_url;  // set once the app is listening
  ScriptedServer app([&](ServerRequest r) {
    ServerResponse res;
    res.headers = {{"Content-Type", "application/json"}, {"X-Inngest-Sync-Kind", "in_band"}};
    const bool aims_app = r.target.rfind("/app-url", 0) == 0;
    Json reply = {
        {"app_id", "aimed"},
        {"url", aims_app ? other_url : app_url},
        {"functions",
         Json::array({FunctionConfig("aimed-fn", "test/aimed", aims_app ? app_url : other_url)})}};
    res.body = reply.dump();
    return res;
  });
  app_url = app.url("/steps");
  auto parsed = ParseUrl(app_url);
  ASSERT_TRUE(parsed.ok()) << app_url;
  auto c = StartCoordinator({"--sync-allow", parsed->host + ":" + std::to_string(parsed->port)});
  for (const std::string path : {"/app-url", "/steps"}) {
    auto r = Sync(*c, app.url(path));
    EXPECT_EQ(r.status, 403) << path << ": " << r.raw;
    EXPECT_EQ(Message(r), "the app's sync reply sends calls to 127.0.0.1:" +
                              std::to_string(other.port()) + ", which is not in --sync-allow")
        << r.raw;
  }
  EXPECT_FALSE(other.Connected());
  auto apps = Http("GET", c->url() + "/v1/apps");
  ASSERT_EQ(apps.status, 200) << apps.raw;
  EXPECT_EQ(apps.body["data"].size(), 0u) << apps.raw;
}

// With a signing key, an in-band sync reply counts only when the app signed it with that key
// (or the fallback), as the SDKs sign their answers to signed requests: an unsigned reply, or
// one signed with another key, stores nothing. The sync's PUT is itself signed, so it is sent
// only to a target --sync-allow lists: without the list, the sync is refused before any
// connection (a signed PUT sent where the caller says could be passed on to a real app, which
// takes the PUT's `url` as its own).
TEST_F(SyncPolicyTest, WithASigningKeyASyncReplyMustBeSignedWithIt) {
  const std::string key = "signkey-test-0123456789abcdef";
  const std::string fallback = "signkey-test-fedcba9876543210";
  std::atomic<bool> put_signed{true};
  std::atomic<int> requests{0};
  std::string app_url;  // set once the app is listening
  ScriptedServer app([&](ServerRequest r) {
    ++requests;
    const std::vector<std::string> keys = {key};
    if (!signing::VerifySignature(FindHeader(r.headers, "X-Inngest-Signature"), r.body, keys,
                                  UnixSeconds(SystemClock().Now()))
             .ok()) {
      put_signed = false;
    }
    ServerResponse res;
    res.headers = {{"Content-Type", "application/json"}, {"X-Inngest-Sync-Kind", "in_band"}};
    res.body =
        Json{{"app_id", "signed"},
             {"url", app_url},
             {"functions", Json::array({FunctionConfig("signed-fn", "test/signed", app_url)})}}
            .dump();
    const int64_t now = UnixSeconds(SystemClock().Now());
    if (r.target == "/other-key") {
      res.headers.emplace_back("X-Inngest-Signature",
                               signing::SignatureHeader(res.body, "signkey-test-badbad", now));
    } else if (r.target == "/stale") {
      res.headers.emplace_back("X-Inngest-Signature",
                               signing::SignatureHeader(res.body, key, now - 3600));
    } else if (r.target == "/fallback") {
      res.headers.emplace_back("X-Inngest-Signature",
                               signing::SignatureHeader(res.body, fallback, now));
    } else if (r.target != "/unsigned") {
      res.headers.emplace_back("X-Inngest-Signature", signing::SignatureHeader(res.body, key, now));
    }
    return res;
  });
  app_url = app.url("/signed");
  auto parsed = ParseUrl(app_url);
  ASSERT_TRUE(parsed.ok());
  {
    auto unlisted = StartCoordinator({"--signing-key", key});
    auto r = Sync(*unlisted, app_url);
    EXPECT_EQ(r.status, 403) << r.raw;
    EXPECT_NE(Message(r).find("in-band sync with a signing key needs --sync-allow"),
              std::string::npos)
        << r.raw;
    EXPECT_EQ(requests, 0) << "the signed PUT was sent";
  }
  auto c = StartCoordinator({"--signing-key", key, "--signing-key-fallback", fallback,
                             "--sync-allow", parsed->host + ":" + std::to_string(parsed->port)});
  for (const std::string path : {"/unsigned", "/other-key", "/stale"}) {
    auto r = Sync(*c, app.url(path));
    EXPECT_EQ(r.status, 502) << path << ": " << r.raw;
    EXPECT_EQ(Message(r), "cannot sync the app at " + app.url(path) +
                              ": its reply is not signed with the signing key "
                              "(--signing-key or --signing-key-fallback)")
        << r.raw;
  }
  auto apps = Http("GET", c->url() + "/v1/apps");
  ASSERT_EQ(apps.status, 200) << apps.raw;
  EXPECT_EQ(apps.body["data"].size(), 0u) << apps.raw;

  for (const std::string path : {"/signed", "/fallback"}) {
    auto r = Sync(*c, app.url(path));
    ASSERT_EQ(r.status, 200) << path << ": " << r.raw;
    EXPECT_EQ(r.body["data"]["app_id"], "signed") << r.raw;
    EXPECT_EQ(r.body["data"]["sync_kind"], "in_band") << r.raw;
  }
  EXPECT_TRUE(put_signed) << "a sync PUT was not signed with the signing key";
  apps = Http("GET", c->url() + "/v1/apps");
  ASSERT_EQ(apps.status, 200) << apps.raw;
  EXPECT_EQ(apps.body["data"].size(), 1u) << apps.raw;
}

TEST_F(SyncPolicyTest, AMalformedSyncAllowEntryStopsTheCoordinatorAtStart) {
  int tries = 0;
  for (const char* bad : {"http://app.example.com/", "app.example.com:99999", "user@host", ""}) {
    Process p({FUNCKY_BIN, "dev", "--db", dir_ + "/bad.db", "--port", std::to_string(FreePort()),
               "--sync-allow", bad},
              dir_ + "/bad" + std::to_string(++tries) + ".log");  // Process appends
    ASSERT_TRUE(WaitFor([&] { return !p.running(); }, 10s)) << bad << ": it started";
    EXPECT_NE(p.Log().find("--sync-allow"), std::string::npos) << bad << ": " << p.Log();
  }
}

// CR and LF in a URL would end a request line or a header of the coordinator's own request
// to that URL (header or request injection): such URLs are refused before anything is
// stored or sent.
TEST_F(SyncPolicyTest, UrlsWithCrLfAreRefusedAndNothingIsStoredOrSent) {
  auto c = StartCoordinator();
  SilentPort target;
  const std::string base = "http://127.0.0.1:" + std::to_string(target.port());
  const Json functions_before = Http("GET", c->url() + "/v1/functions").body;

  Json fn = {
      {"id", "crlf-fn"},
      {"name", "crlf-fn"},
      {"triggers", {{{"event", "test/crlf"}}}},
      {"steps",
       {{"step",
         {{"id", "step"},
          {"name", "step"},
          {"runtime", {{"type", "http"}, {"url", base + "/api?fnId=x\r\nX-Injected: 1"}}}}}}}};
  auto reg = Http(
      "POST", c->url() + "/fn/register",
      Json{{"url", base + "/api"}, {"appName", "crlf"}, {"sdk", "test:v0"}, {"functions", {fn}}}
          .dump());
  EXPECT_EQ(reg.status, 400) << reg.raw;
  EXPECT_NE(reg.body.value("error", "").find("function \"crlf-fn\""), std::string::npos) << reg.raw;

  // The app's own URL, in a registration whose functions are clean.
  Json clean = fn;
  clean["steps"]["step"]["runtime"]["url"] = base + "/api?fnId=crlf-fn&step=step";
  auto app_url = Http("POST", c->url() + "/fn/register",
                      Json{{"url", base + "/api\r\nX-Injected: 1"},
                           {"appName", "crlf"},
                           {"sdk", "test:v0"},
                           {"functions", {clean}}}
                          .dump());
  EXPECT_EQ(app_url.status, 400) << app_url.raw;
  EXPECT_NE(app_url.raw.find("url"), std::string::npos) << app_url.raw;

  auto sync = Sync(*c, base + "/api\r\nHost: evil");
  EXPECT_EQ(sync.status, 400) << sync.raw;
  EXPECT_EQ(sync.body["error"]["code"], "invalid_argument") << sync.raw;

  EXPECT_FALSE(target.Connected()) << "a request went out";
  EXPECT_EQ(Http("GET", c->url() + "/v1/functions").body, functions_before);
  EXPECT_EQ(CountRows(*c, "/v1/apps"), 0);
}

}  // namespace
}  // namespace funcky::testing
