// The coordinator's Prometheus metrics (prometheus-cpp's registry and text format): what the
// executor and event intake report, and the queue and lane gauges read from the store when
// /metrics is scraped. Labels are bounded: a function id at most, never a lane key or run id.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
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
  // "unauthenticated" (401) or "failed" (the store could not record it).
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
  // reported stale) and `calls_in_flight`.
  std::string Render(const std::optional<store::QueueStats>& stats, int64_t calls_in_flight);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace funcky::metrics
