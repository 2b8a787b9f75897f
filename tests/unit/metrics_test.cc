#include <chrono>

#include <gtest/gtest.h>

#include "coordinator/metrics/metrics.h"

namespace funcky::metrics {
namespace {

using namespace std::chrono_literals;
using SteadyTime = std::chrono::steady_clock::time_point;

// A store whose read of the gauges takes `read_takes` on a clock the test moves, and answers
// what the test last put in `next`.
struct FakeGaugeStore {
  SteadyTime now{};
  std::chrono::milliseconds read_takes{0};
  int reads = 0;
  Result<store::QueueStats> next = store::QueueStats{};

  QueueGauges Gauges() {
    return QueueGauges(
        [this] {
          ++reads;
          now += read_takes;
          return next;
        },
        [this] { return now; });
  }
};

store::QueueStats Stats(int64_t depth, int64_t due, int64_t lag_ms, int64_t blocked,
                        int64_t blocked_ms) {
  store::QueueStats s;
  s.depth = depth;
  s.due = due;
  s.oldest_due_age_ms = lag_ms;
  s.lanes_blocked = blocked;
  s.longest_blocked_ms = blocked_ms;
  return s;
}

// A duration from two clocks that came out negative (a run created on a coordinator whose
// clock runs ahead) is observed as 0: a histogram's sum never goes down.
TEST(Metrics, ANegativeDurationIsObservedAsZero) {
  Metrics metrics;
  metrics.FirstCall("app-fn", -5s);
  metrics.CallEnded("app-fn", "ok", -1ms);
  metrics.StepAttempt("app-fn", 2s);
  metrics.StepAttempt("app-fn", -3s);
  const std::string text = metrics.Render(std::nullopt, 0, 0);
  EXPECT_NE(text.find("funcky_event_to_first_call_seconds_sum{function=\"app-fn\"} 0\n"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("funcky_call_duration_seconds_sum{function=\"app-fn\"} 0\n"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("funcky_step_duration_seconds_sum{function=\"app-fn\"} 2\n"),
            std::string::npos)
      << text;
}

// A read that took 30 ms is reused for 100 × 30 ms, its ages moved on by the time since; then
// the next scrape reads again.
TEST(QueueGauges, AReadIsReusedForAHundredTimesItsCostWithItsAgesMovedOn) {
  FakeGaugeStore store;
  store.read_takes = 30ms;
  store.next = Stats(100'000, 1, 400, 1, 5'000);
  QueueGauges gauges = store.Gauges();
  ASSERT_TRUE(gauges.Get().ok());
  EXPECT_EQ(store.reads, 1);

  store.next = Stats(7, 0, 0, 0, 0);  // what a new read would say
  store.now += 1s;
  auto reused = gauges.Get();
  ASSERT_TRUE(reused.ok());
  EXPECT_EQ(store.reads, 1);
  EXPECT_EQ(reused->depth, 100'000);
  EXPECT_EQ(reused->oldest_due_age_ms, 400 + 1'000);
  EXPECT_EQ(reused->longest_blocked_ms, 5'000 + 1'000);
  EXPECT_EQ(reused->longest_gap_wait_ms, 0) << "no lane waited for a number at the read";

  store.now += 2s - 1ms;  // 2.999 s after the read: still reused
  EXPECT_EQ(gauges.Get()->depth, 100'000);
  EXPECT_EQ(store.reads, 1);
  store.now += 1ms;  // 3 s after the read
  auto fresh = gauges.Get();
  ASSERT_TRUE(fresh.ok());
  EXPECT_EQ(store.reads, 2);
  EXPECT_EQ(fresh->depth, 7);
  EXPECT_EQ(fresh->oldest_due_age_ms, 0);
}

TEST(QueueGauges, ASlowReadIsReusedForTenSecondsAtMost) {
  FakeGaugeStore store;
  store.read_takes = 1s;  // 100 × 1 s would be 100 s
  QueueGauges gauges = store.Gauges();
  ASSERT_TRUE(gauges.Get().ok());
  store.now += QueueGauges::kMaxReuse - 1ms;
  ASSERT_TRUE(gauges.Get().ok());
  EXPECT_EQ(store.reads, 1);
  store.now += 1ms;
  ASSERT_TRUE(gauges.Get().ok());
  EXPECT_EQ(store.reads, 2);
}

TEST(QueueGauges, AnInstantReadIsMadeAgainOnEveryScrape) {
  FakeGaugeStore store;
  QueueGauges gauges = store.Gauges();
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(gauges.Get().ok());
  EXPECT_EQ(store.reads, 3);
}

TEST(QueueGauges, AFailedReadIsReturnedAndNotKept) {
  FakeGaugeStore store;
  store.read_takes = 30ms;
  store.next = Stats(5, 0, 0, 0, 0);
  QueueGauges gauges = store.Gauges();
  ASSERT_TRUE(gauges.Get().ok());
  store.now += 3s;
  store.next = Unavailable("database not reachable");
  EXPECT_EQ(gauges.Get().status().code(), StatusCode::kUnavailable);
  EXPECT_EQ(store.reads, 2);
  // Not the read before the failure either: the next scrape asks the store again.
  store.now += 1ms;
  store.next = Stats(6, 0, 0, 0, 0);
  auto again = gauges.Get();
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(store.reads, 3);
  EXPECT_EQ(again->depth, 6);
}

}  // namespace
}  // namespace funcky::metrics
