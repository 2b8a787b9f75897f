// Flow control at admission across processes (docs/flow-control.md): idempotency and
// rateLimit skip runs, the skipped events are stored and say why on GET /v1/events/{id},
// and two coordinators on one PostgreSQL start one run per idempotency key between them.
// The functions point at a host that is not there: what counts is which runs exist.
#include <atomic>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "tests/support/e2e.h"

namespace funcky::testing {
namespace {

const std::string kNoHost = "http://127.0.0.1:1/api";

// A function of the app at kNoHost.
Json Fn(const std::string& id, const std::string& event, Json extra) {
  return FunctionConfig(id, event, kNoHost + "?fnId=" + id, std::move(extra));
}

void Register(const Coordinator& c, const Json& functions) {
  auto r =
      Http("POST", c.url() + "/fn/register",
           Json{{"url", kNoHost}, {"appName", "flow"}, {"sdk", "test:v0"}, {"functions", functions}}
               .dump());
  ASSERT_EQ(r.status, 200) << r.raw;
}

// GET /v1/events/{id}'s data.
Json EventView(const Coordinator& c, const std::string& id) {
  auto r = Http("GET", c.url() + "/v1/events/" + id);
  EXPECT_EQ(r.status, 200) << r.raw;
  return r.body["data"];
}

int RunsOf(const Coordinator& c, const std::string& function_id) {
  auto r = Http("GET", c.url() + "/v1/runs?limit=500&function=" + function_id);
  EXPECT_EQ(r.status, 200) << r.raw;
  return static_cast<int>(r.body["data"].size());
}

class FlowControlTest : public E2eTest, public ::testing::WithParamInterface<std::string> {
 protected:
  std::string backend() const override { return GetParam(); }
};

TEST_P(FlowControlTest, IdempotencyAndRateLimitSkipRunsAndTheEventSaysWhy) {
  auto c = StartCoordinator();
  Register(*c, Json::array(
                   {Fn("once", "shop/order",
                       {{"idempotency", "event.data.order"},
                        // replaced by idempotency
                        {"rateLimit", {{"limit", 100}, {"period", "1s"}}}}),
                    Fn("paced", "shop/order", {{"rateLimit", {{"limit", 2}, {"period", "1h"}}}})}));
  std::vector<std::string> ids;
  for (const char* order : {"o-1", "o-1", "o-2", "o-1"}) {
    ids.push_back(Send(*c, {{"name", "shop/order"}, {"data", {{"order", order}}}}));
  }
  std::vector<Json> views;
  for (const std::string& id : ids) views.push_back(EventView(*c, id));
  auto functions_of = [](const Json& view) {
    std::multiset<std::string> out;
    for (const Json& r : view["runs"]) out.insert(r["function_id"].get<std::string>());
    return out;
  };
  auto skips_of = [](const Json& view) {
    std::vector<std::string> out;
    for (const Json& s : view["skipped"]) {
      out.push_back(s["function_id"].get<std::string>() + " " + s["reason"].get<std::string>() +
                    " " + s["key"].get<std::string>());
    }
    return out;
  };
  using Fns = std::multiset<std::string>;
  using Skips = std::vector<std::string>;
  EXPECT_EQ(functions_of(views[0]), (Fns{"once", "paced"}));
  EXPECT_EQ(skips_of(views[0]), Skips{});
  EXPECT_EQ(functions_of(views[1]), (Fns{"paced"}));
  EXPECT_EQ(skips_of(views[1]), (Skips{"once idempotency o-1"}));
  EXPECT_EQ(functions_of(views[2]), (Fns{"once"}));
  EXPECT_EQ(skips_of(views[2]), (Skips{"paced rate_limit "}));
  EXPECT_EQ(functions_of(views[3]), Fns{});
  EXPECT_EQ(skips_of(views[3]), (Skips{"once idempotency o-1", "paced rate_limit "}));
  // The events are stored like any other, and the runs are exactly those.
  EXPECT_EQ(RunsOf(*c, "once"), 2);
  EXPECT_EQ(RunsOf(*c, "paced"), 2);
  EXPECT_EQ(views[3]["name"], "shop/order");
}

INSTANTIATE_TEST_SUITE_P(Stores, FlowControlTest, ::testing::Values("postgres", "sqlite"),
                         [](const auto& info) { return info.param; });

class FlowControlTwoCoordinatorsTest : public E2eTest {};

// Two coordinators on one PostgreSQL take the same key's events at once: the gate is
// decided in the database, so exactly one run starts and every other event records a skip.
TEST_F(FlowControlTwoCoordinatorsTest, RacingCoordinatorsStartOneRunPerIdempotencyKey) {
  auto a = StartCoordinator();
  Register(*a, Json::array({Fn("once", "shop/order", {{"idempotency", "event.data.order"}})}));
  auto b = StartCoordinator();  // loads the function at its first event
  constexpr int kPerCoordinator = 10;
  std::vector<std::string> ids(2 * kPerCoordinator);
  std::vector<std::thread> threads;
  for (int i = 0; i < 2 * kPerCoordinator; ++i) {
    threads.emplace_back([&, i] {
      const Coordinator& c = i % 2 ? *b : *a;
      auto r = Http("POST", c.url() + "/e/test",
                    Json{{"name", "shop/order"}, {"data", {{"order", "same"}}}}.dump());
      if (r.status == 200) ids[i] = r.body["ids"][0];
    });
  }
  for (auto& t : threads) t.join();
  int runs = 0, skips = 0;
  for (const std::string& id : ids) {
    ASSERT_FALSE(id.empty()) << "an event was refused";
    Json view = EventView(*a, id);
    runs += static_cast<int>(view["runs"].size());
    skips += static_cast<int>(view["skipped"].size());
  }
  EXPECT_EQ(runs, 1);
  EXPECT_EQ(skips, 2 * kPerCoordinator - 1);
  EXPECT_EQ(RunsOf(*b, "once"), 1);
}

}  // namespace
}  // namespace funcky::testing
