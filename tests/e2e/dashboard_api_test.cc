// The API behind the dashboard: run filters and paging cursors, 404s, bad
// parameters, the token, apps and the in-band sync of an app by URL.
#include <set>
#include <thread>

#include <gtest/gtest.h>

#include "tests/support/e2e.h"

namespace funcky::testing {
namespace {

using namespace std::chrono_literals;

class DashboardApiTest : public E2eTest {
 protected:
  std::string backend() const override { return "sqlite"; }

  std::vector<std::string> Ids(const Coordinator& c, const std::string& query) {
    auto r = Http("GET", c.url() + "/v1/runs?" + query);
    EXPECT_EQ(r.status, 200) << query << ": " << r.raw;
    std::vector<std::string> ids;
    for (const Json& run : r.body["data"]) ids.push_back(run["id"]);
    return ids;
  }
};

class DashboardApiOnEachStoreTest : public DashboardApiTest,
                                    public ::testing::WithParamInterface<std::string> {
 protected:
  std::string backend() const override { return GetParam(); }
};

TEST_P(DashboardApiOnEachStoreTest, RunsFilterByFunctionStatusKeyAndTimeAndPageWithCursors) {
  auto c = StartCoordinator();
  TestHost host(c->url(), dir_);
  std::vector<std::string> two_steps;
  for (int i = 0; i < 5; ++i) {
    two_steps.push_back(RunToEnd(*c, {{"name", "test/two-steps"}, {"data", {{"n", i}}}})["id"]);
  }
  Json failed = RunToEnd(*c, {{"name", "test/fails"}});
  Json keyed = RunToEnd(*c, {{"name", "test/ordered"}, {"data", {{"key", "acme"}, {"seq", 1}}}});
  ASSERT_EQ(keyed["status"], "completed");

  EXPECT_EQ(Ids(*c, "function=test-two-steps").size(), 5u);
  EXPECT_EQ(Ids(*c, "status=failed"), std::vector<std::string>{failed["id"]});
  EXPECT_EQ(Ids(*c, "key=acme"), std::vector<std::string>{keyed["id"]});
  EXPECT_TRUE(Ids(*c, "key=nobody").empty());
  EXPECT_EQ(Ids(*c, "function=test-two-steps&status=failed").size(), 0u);
  auto list = Http("GET", c->url() + "/v1/runs?function=test-two-steps&limit=1");
  EXPECT_EQ(list.body["data"][0]["event_name"], "test/two-steps");

  // Time range: runs created from a run's creation time on, and before it.
  Json third = Http("GET", c->url() + "/v1/runs/" + two_steps[2]).body["data"];
  const std::string at = third["created_at"];
  auto from = Ids(*c, "function=test-two-steps&from=" + at);
  auto to = Ids(*c, "function=test-two-steps&to=" + at);
  EXPECT_EQ(from.size() + to.size(), 5u);
  EXPECT_NE(std::find(from.begin(), from.end(), two_steps[2]), from.end());
  EXPECT_EQ(std::find(to.begin(), to.end(), two_steps[2]), to.end());
  EXPECT_TRUE(Ids(*c, "from=2100-01-01T00:00:00Z").empty());

  // Cursor paging: pages of 2, newest first, disjoint, together all 5, then no cursor.
  std::vector<std::string> seen;
  std::string cursor;
  for (int page = 0; page < 5; ++page) {
    auto r = Http("GET", c->url() + "/v1/runs?function=test-two-steps&limit=2" +
                             (cursor.empty() ? "" : "&cursor=" + cursor));
    ASSERT_EQ(r.status, 200) << r.raw;
    for (const Json& run : r.body["data"]) seen.push_back(run["id"]);
    if (r.body["cursor"].is_null()) break;
    cursor = r.body["cursor"];
  }
  EXPECT_EQ(seen, std::vector<std::string>(two_steps.rbegin(), two_steps.rend()));

  for (const char* bad : {"status=sleepy", "limit=0", "limit=501", "limit=x", "from=yesterday",
                          "to=2026-13-01T00:00:00Z"}) {
    auto r = Http("GET", c->url() + "/v1/runs?" + bad);
    EXPECT_EQ(r.status, 400) << bad << ": " << r.raw;
    EXPECT_EQ(r.body["error"]["code"], "invalid_argument") << bad;
  }
  EXPECT_EQ(Http("GET", c->url() + "/v1/runs/01NOSUCHRUN").status, 404);
  EXPECT_EQ(Http("GET", c->url() + "/v1/events/01NOSUCHEVENT").status, 404);
  EXPECT_EQ(Http("GET", c->url() + "/v1/events?limit=-3").status, 400);
  EXPECT_EQ(Http("GET", c->url() + "/v1/lanes?cursor=garbage").status, 400);
  EXPECT_EQ(Http("GET", c->url() + "/dashboard/nope.js").status, 404);
}

INSTANTIATE_TEST_SUITE_P(Stores, DashboardApiOnEachStoreTest,
                         ::testing::Values("postgres", "sqlite"),
                         [](const auto& info) { return info.param; });

TEST_F(DashboardApiTest, AppsAreListedAndAnAppIsSyncedByItsUrl) {
  auto c = StartCoordinator();
  // The host registers itself first (out of band); the sync button does it in band.
  TestHost host(c->url(), dir_);
  auto apps = Http("GET", c->url() + "/v1/apps");
  ASSERT_EQ(apps.status, 200) << apps.raw;
  ASSERT_EQ(apps.body["data"].size(), 1u);
  EXPECT_EQ(apps.body["data"][0]["id"], "test");
  const std::string url = apps.body["data"][0]["url"];

  auto synced = Http("POST", c->url() + "/v1/apps/sync", Json{{"url", url}}.dump());
  ASSERT_EQ(synced.status, 200) << synced.raw;
  EXPECT_EQ(synced.body["data"]["sync_kind"], "in_band");
  EXPECT_EQ(synced.body["data"]["app_id"], "test");
  EXPECT_GT(synced.body["data"]["functions"].get<int>(), 5);
  EXPECT_EQ(synced.body["data"]["modified"], false);  // the same functions as registered

  EXPECT_EQ(Http("POST", c->url() + "/v1/apps/sync", "{}").status, 400);
  EXPECT_EQ(Http("POST", c->url() + "/v1/apps/sync", "not json").status, 400);
  EXPECT_EQ(Http("POST", c->url() + "/v1/apps/sync", R"({"url":"ftp://x"})").status, 400);
  auto unreachable =
      Http("POST", c->url() + "/v1/apps/sync",
           Json{{"url", "http://127.0.0.1:" + std::to_string(FreePort()) + "/api"}}.dump());
  EXPECT_EQ(unreachable.status, 502) << unreachable.raw;
  EXPECT_NE(unreachable.body["error"]["message"].get<std::string>().find("no valid answer"),
            std::string::npos);
}

// A replay asked again with its Idempotency-Key (the first answer lost) answers with the run
// the first started, and starts no other; a key that is too long, or not printable ASCII, is
// refused by name.
TEST_F(DashboardApiTest, AReplayAskedAgainWithItsIdempotencyKeyStartsOneRun) {
  auto c = StartCoordinator();
  TestHost host(c->url(), dir_);
  Json run = RunToEnd(*c, {{"name", "test/two-steps"}});
  ASSERT_EQ(run["status"], "completed");
  const std::string url = c->url() + "/v1/runs/" + run["id"].get<std::string>() + "/replay";
  auto first = Http("POST", url, "", {{"Idempotency-Key", "replay-7"}});
  ASSERT_EQ(first.status, 201) << first.raw;
  auto again = Http("POST", url, "", {{"Idempotency-Key", "replay-7"}});
  ASSERT_EQ(again.status, 201) << again.raw;
  EXPECT_EQ(again.body["data"]["id"], first.body["data"]["id"]);
  EXPECT_EQ(again.body["data"]["replay_of"], run["id"]);
  auto other = Http("POST", url);  // no key: a replay of its own
  ASSERT_EQ(other.status, 201) << other.raw;
  EXPECT_NE(other.body["data"]["id"], first.body["data"]["id"]);
  EXPECT_EQ(WaitForRunEnd(c->url(), first.body["data"]["id"])["status"], "completed");
  EXPECT_EQ(RunsOfEvent(c->url(), run["event_id"].get<std::string>(), 3).size(), 3u)
      << "the run and two replays";

  for (const std::string& bad : {std::string(256, 'k'), std::string("tab\there")}) {
    auto refused = Http("POST", url, "", {{"Idempotency-Key", bad}});
    EXPECT_EQ(refused.status, 400) << refused.raw;
    EXPECT_NE(refused.raw.find("Idempotency-Key"), std::string::npos) << refused.raw;
  }
}

TEST_F(DashboardApiTest, WithADashboardTokenEveryV1CallNeedsIt) {
  auto c = StartCoordinator({"--dashboard-token", "s3cret"});
  const Headers good = {{"Authorization", "Bearer s3cret"}};
  const Headers bad = {{"Authorization", "Bearer s3cre"}};
  for (const char* path : {"/v1/runs", "/v1/events", "/v1/functions", "/v1/apps", "/v1/lanes"}) {
    auto none = Http("GET", c->url() + path);
    EXPECT_EQ(none.status, 401) << path;
    EXPECT_EQ(none.body["error"]["code"], "unauthenticated") << path;
    EXPECT_FALSE(none.body.contains("data")) << path;
    EXPECT_EQ(Http("GET", c->url() + path, "", bad).status, 401) << path;
    EXPECT_EQ(Http("GET", c->url() + path, "", good).status, 200) << path;
  }
  EXPECT_EQ(Http("POST", c->url() + "/v1/runs/x/cancel").status, 401);
  EXPECT_EQ(Http("POST", c->url() + "/v1/runs/x/replay").status, 401);
  EXPECT_EQ(Http("POST", c->url() + "/v1/apps/sync", R"({"url":"http://h/"})").status, 401);
  // Operators' endpoints too: /metrics and /readyz (a probe sends the token as well).
  for (const char* path : {"/metrics", "/readyz"}) {
    EXPECT_EQ(Http("GET", c->url() + path).status, 401) << path;
    EXPECT_EQ(Http("GET", c->url() + path, "", good).status, 200) << path;
  }
  // Liveness and event intake (by its event key) stay open.
  EXPECT_EQ(Http("GET", c->url() + "/healthz").status, 200);
  EXPECT_EQ(Http("POST", c->url() + "/v1/events", R"({"name":"x/y"})",
                 {{"Authorization", "Bearer any-event-key"}})
                .status,
            200);
  // The page itself holds no data; it asks for the token.
  auto index = Http("GET", c->url() + "/");
  EXPECT_EQ(index.status, 200);
  EXPECT_NE(index.raw.find("/dashboard/app.js"), std::string::npos);
}

TEST_F(DashboardApiTest, ACoordinatorListeningBeyondLoopbackRefusesToStartWithoutAToken) {
  Process open({FUNCKY_BIN, "dev", "--db", dir_ + "/open.db", "--host", "0.0.0.0", "--port",
                std::to_string(FreePort())},
               dir_ + "/open.log");
  ASSERT_TRUE(WaitFor([&] { return !open.running(); }, std::chrono::seconds(10)))
      << "it started without a token";
  EXPECT_NE(open.Log().find("set --dashboard-token"), std::string::npos) << open.Log();
  // (It exits before it binds: the test starts nothing beyond 127.0.0.1.)
}

}  // namespace
}  // namespace funcky::testing
