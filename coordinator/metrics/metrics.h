// The coordinator's Prometheus metrics (prometheus-cpp's registry and text format): what the
// executor and event intake report, and the queue and lane gauges read from the store when
// /metrics is scraped. Labels are bounded: a function id at most, never a lane key or run id.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>

#include "coordinator/executor/executor.h"
#include "coordinator/store/store.h"

namespace funcky::metrics {

// Thread-safe.
class Metrics : public executor::ExecutorObserver {
 public:
  Metrics();
  ~Metrics() override;
  Metrics(const Metrics&) = delete;
  Metrics& operator=(const Metrics&) = delete;

  // Event intake.
  void EventsAccepted(int64_t n);
  void EventsDuplicate(int64_t n);
  void RunsStarted(int64_t n);
  // A host's checkpoint (POST /v1/checkpoint/{run}/async) was answered: `outcome` is
  // "recorded", "stale" (409: the call lost its lease or its run ended), "invalid" (400),
  // "unauthenticated" (401), "step_limit" (422: the run would pass --max-steps-per-run) or
  // "failed" (the store could not record it).
  void CheckpointAnswered(std::string_view outcome);

  // executor::ExecutorObserver
  void CallEnded(const std::string& function_id, std::string_view outcome,
                 std::chrono::nanoseconds duration) override;
  void FirstCall(const std::string& function_id, std::chrono::nanoseconds since_event) override;
  void StepAttempt(const std::string& function_id, std::chrono::nanoseconds duration) override;
  void RunEnded(const std::string& function_id, std::string_view status) override;
  void LaneHeadsTimedOut(int64_t n) override;
  void LeaseLost() override;

  // The exposition text (Prometheus text format 0.0.4) after setting the gauges to `stats`
  // (absent when the store could not be read: the store gauges are then left out, not
  // reported stale), `calls_in_flight` and `db_round_trips` (this process's count so far;
  // none for SQLite).
  std::string Render(const std::optional<store::QueueStats>& stats, int64_t calls_in_flight,
                     std::optional<int64_t> db_round_trips);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// The queue and lane gauges as /metrics reports them. A read of them counts the whole queue,
// so it costs more the more is queued (32 ms beside 100,000 queued runs on the bench's box).
// So that scrapes, however often they come, keep the database busy at most 1/kReuseFactor of
// the time, a read is reused for kReuseFactor times as long as it took (at most kMaxReuse),
// its ages moved on by the time since. A short queue is read afresh on nearly every scrape.
// Thread-safe: concurrent scrapes wait for one read rather than each making its own.
class QueueGauges {
 public:
  static constexpr int kReuseFactor = 100;
  static constexpr std::chrono::milliseconds kMaxReuse{10'000};
  using Read = std::function<Result<store::QueueStats>()>;
  using Now = std::function<std::chrono::steady_clock::time_point()>;

  explicit QueueGauges(Read read, Now now = &std::chrono::steady_clock::now);

  // The last read while it may be reused, else a new one. A failed read is returned and not
  // kept: the next call reads again.
  Result<store::QueueStats> Get();

 private:
  const Read read_;
  const Now now_;
  std::mutex mu_;
  std::optional<store::QueueStats> last_;              // GUARDED_BY(mu_)
  std::chrono::steady_clock::time_point read_at_;      // GUARDED_BY(mu_): when last_ was read
  std::chrono::steady_clock::time_point reuse_until_;  // GUARDED_BY(mu_)
};

}  // namespace funcky::metrics
