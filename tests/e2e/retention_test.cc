// --retain: finished runs and the events no kept run refers to are deleted once older than
// the horizon; runs that have not ended, and their events, are kept.
#include <string>

#include <gtest/gtest.h>

#include "tests/support/e2e.h"

namespace funcky::testing {
namespace {

using namespace std::chrono_literals;

class RetentionTest : public E2eTest, public ::testing::WithParamInterface<std::string> {
 protected:
  std::string backend() const override { return GetParam(); }
};

TEST_P(RetentionTest, AFinishedRunAndItsEventGoWhileASleepingRunStays) {
  auto c = StartCoordinator({"--retain", "1s", "--retain-interval", "200ms"});
  TestHost host(c->url(), dir_);

  const std::string sleeping_event =
      Send(*c, {{"name", "test/sleep"}, {"data", {{"sleep_ms", 60000}}}});
  const std::string sleeping = RunsOfEvent(c->url(), sleeping_event)[0];
  ASSERT_EQ(WaitForRunStatus(c->url(), sleeping, {"sleeping"})["status"], "sleeping");

  const std::string done_event = Send(*c, {{"name", "test/two-steps"}});
  const std::string done = RunsOfEvent(c->url(), done_event)[0];
  ASSERT_EQ(WaitForRunEnd(c->url(), done)["status"], "completed");
  ASSERT_EQ(Http("GET", c->url() + "/v1/events/" + done_event).status, 200);

  EXPECT_TRUE(WaitFor(
      [&] {
        return Http("GET", c->url() + "/v1/runs/" + done).status == 404 &&
               Http("GET", c->url() + "/v1/events/" + done_event).status == 404;
      },
      10s))
      << c->Log();
  // The pass logs once it has found nothing more to delete, a moment after the deletes
  // above are visible.
  EXPECT_TRUE(
      WaitFor([&] { return c->Log().find("retention: deleted") != std::string::npos; }, 10s))
      << c->Log();

  // Well past the horizon, the sleeping run, its steps and its event are all there.
  auto kept = Http("GET", c->url() + "/v1/runs/" + sleeping);
  ASSERT_EQ(kept.status, 200) << kept.raw;
  EXPECT_EQ(kept.body["data"]["status"], "sleeping");
  EXPECT_FALSE(kept.body["data"]["steps"].empty()) << kept.raw;
  EXPECT_EQ(Http("GET", c->url() + "/v1/events/" + sleeping_event).status, 200);
}

INSTANTIATE_TEST_SUITE_P(Stores, RetentionTest, ::testing::Values("postgres", "sqlite"),
                         [](const auto& info) { return info.param; });

TEST(RetentionFlags, ABadRetentionStopsTheCoordinatorAtStart) {
  const std::string dir = TempDir("retention-flags");
  int tries = 0;
  for (const std::vector<std::string>& bad :
       {std::vector<std::string>{"--retain", "forever"}, std::vector<std::string>{"--retain", "0s"},
        // Past a century, now less --retain wrapped into the future: every run went.
        std::vector<std::string>{"--retain", "150000d"},
        std::vector<std::string>{"--retain", "30d", "--retain-interval", "soon"}}) {
    std::vector<std::string> argv = {FUNCKY_BIN,      "dev",    "--db",
                                     dir + "/bad.db", "--port", std::to_string(FreePort())};
    argv.insert(argv.end(), bad.begin(), bad.end());
    // A log of its own: Process appends.
    Process p(argv, dir + "/bad" + std::to_string(++tries) + ".log");
    ASSERT_TRUE(WaitFor([&] { return !p.running(); }, 10s)) << bad[1] << ": it started";
    EXPECT_NE(p.Log().find("--retain"), std::string::npos) << p.Log();
  }
}

}  // namespace
}  // namespace funcky::testing
