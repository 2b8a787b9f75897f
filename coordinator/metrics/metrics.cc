#include "coordinator/metrics/metrics.h"

#include <algorithm>
#include <mutex>
#include <sstream>

#include <prometheus/counter.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>
#include <prometheus/text_serializer.h>

namespace funcky::metrics {

namespace prom = prometheus;

namespace {

// A duration observed, at least 0: one from two clocks (a run's creation on another
// coordinator, a host's own times) can come out negative, which would lower a histogram's sum,
// read by rate() as a counter's reset.
double Seconds(std::chrono::nanoseconds d) {
  return std::chrono::duration<double>(std::max(d, std::chrono::nanoseconds(0))).count();
}

// From a millisecond (a local call) to a minute (a call near its timeout).
const prom::Histogram::BucketBoundaries& CallBuckets() {
  static const prom::Histogram::BucketBoundaries kBuckets = {
      0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60};
  return kBuckets;
}

}  // namespace

struct Metrics::Impl {
  prom::Registry registry;

  prom::Family<prom::Counter>& events_accepted = prom::BuildCounter()
                                                     .Name("funcky_events_accepted_total")
                                                     .Help("Events stored.")
                                                     .Register(registry);
  prom::Family<prom::Counter>& events_duplicate =
      prom::BuildCounter()
          .Name("funcky_events_duplicate_total")
          .Help("Events ignored as duplicates of a stored id.")
          .Register(registry);
  prom::Family<prom::Counter>& runs_started = prom::BuildCounter()
                                                  .Name("funcky_runs_started_total")
                                                  .Help("Runs started by events.")
                                                  .Register(registry);
  prom::Family<prom::Counter>& runs_finished =
      prom::BuildCounter()
          .Name("funcky_runs_finished_total")
          .Help(
              "Runs that ended on this coordinator, by function and final status "
              "(completed, failed, cancelled; blocked: a failed lane head parked)")
          .Register(registry);
  prom::Family<prom::Counter>& calls = prom::BuildCounter()
                                           .Name("funcky_calls_total")
                                           .Help(
                                               "Calls pushed to hosts, by function and outcome "
                                               "(ok, error, unreachable, timeout)")
                                           .Register(registry);
  prom::Family<prom::Histogram>& call_duration =
      prom::BuildHistogram()
          .Name("funcky_call_duration_seconds")
          .Help("Duration of calls to hosts, connection included, by function")
          .Register(registry);
  prom::Family<prom::Histogram>& step_duration =
      prom::BuildHistogram()
          .Name("funcky_step_duration_seconds")
          .Help("Duration of step attempts as recorded from the calls that ran them, by function")
          .Register(registry);
  prom::Family<prom::Histogram>& first_call =
      prom::BuildHistogram()
          .Name("funcky_event_to_first_call_seconds")
          .Help("From a run's creation (its event accepted) to its first call, by function")
          .Register(registry);
  prom::Family<prom::Counter>& checkpoints =
      prom::BuildCounter()
          .Name("funcky_checkpoints_total")
          .Help(
              "Hosts' checkpoints of calls in flight, by outcome (recorded, stale, invalid, "
              "unauthenticated, failed)")
          .Register(registry);
  prom::Family<prom::Counter>& leases_lost =
      prom::BuildCounter()
          .Name("funcky_leases_lost_total")
          .Help("Call outcomes dropped because another coordinator took the lease")
          .Register(registry);
  prom::Family<prom::Counter>& heads_timed_out = prom::BuildCounter()
                                                     .Name("funcky_lane_heads_timed_out_total")
                                                     .Help("Lane heads failed by head_timeout")
                                                     .Register(registry);
  prom::Family<prom::Gauge>& queue_depth =
      prom::BuildGauge()
          .Name("funcky_queue_depth")
          .Help("Queue items in any state (due, leased or scheduled), all coordinators")
          .Register(registry);
  prom::Family<prom::Gauge>& queue_due =
      prom::BuildGauge()
          .Name("funcky_queue_due")
          .Help("Queue items due now and not leased, all coordinators")
          .Register(registry);
  prom::Family<prom::Gauge>& queue_lag =
      prom::BuildGauge()
          .Name("funcky_queue_lag_seconds")
          .Help("How long the oldest due queue item has waited to be claimed (0: none due)")
          .Register(registry);
  prom::Family<prom::Gauge>& lanes_blocked =
      prom::BuildGauge()
          .Name("funcky_lanes_blocked")
          .Help("Lanes whose head run failed and blocks the lane")
          .Register(registry);
  prom::Family<prom::Gauge>& longest_blocked =
      prom::BuildGauge()
          .Name("funcky_lane_blocked_longest_seconds")
          .Help("How long the head of the longest-held blocked lane has held it (0: none)")
          .Register(registry);
  prom::Family<prom::Gauge>& lanes_waiting_for_gap =
      prom::BuildGauge()
          .Name("funcky_lanes_waiting_for_gap")
          .Help("Sequence lanes with no head, waiting for a missing number")
          .Register(registry);
  prom::Family<prom::Gauge>& longest_gap_wait =
      prom::BuildGauge()
          .Name("funcky_lane_gap_wait_longest_seconds")
          .Help("How long the longest-waiting sequence lane has waited for a missing number")
          .Register(registry);
  // Read from the lanes' counters at scrape time: every coordinator of a database reports
  // the same totals (sum them with max(), not sum()).
  prom::Family<prom::Gauge>& lane_gaps =
      prom::BuildGauge()
          .Name("funcky_lane_gaps_recorded")
          .Help("Gaps recorded by sequence lanes (missing numbers given up on), all time")
          .Register(registry);
  prom::Family<prom::Gauge>& lane_stale =
      prom::BuildGauge()
          .Name("funcky_lane_stale_recorded")
          .Help("Events of sequence lanes whose number was stale, all time")
          .Register(registry);
  prom::Family<prom::Gauge>& lane_duplicates =
      prom::BuildGauge()
          .Name("funcky_lane_duplicates_recorded")
          .Help("Events of sequence lanes whose number had a run already, all time")
          .Register(registry);
  // This process's own count, read from the database driver at scrape time (PostgreSQL only).
  prom::Family<prom::Counter>& db_round_trips =
      prom::BuildCounter()
          .Name("funcky_db_round_trips_total")
          .Help(
              "Times this coordinator waited for PostgreSQL's answer (statements sent "
              "together are one)")
          .Register(registry);
  int64_t db_round_trips_seen = 0;  // GUARDED_BY(render_mu)
  prom::Family<prom::Gauge>& in_flight = prom::BuildGauge()
                                             .Name("funcky_calls_in_flight")
                                             .Help("Calls to hosts in flight on this coordinator")
                                             .Register(registry);

  // Collect() and the updates of gauges set at scrape time are serialised by this.
  std::mutex render_mu;
};

Metrics::Metrics() : impl_(std::make_unique<Impl>()) {
  // Families without labels show a 0 from the start, so a rate() has a first point.
  impl_->events_accepted.Add({});
  impl_->events_duplicate.Add({});
  impl_->runs_started.Add({});
  impl_->leases_lost.Add({});
  impl_->heads_timed_out.Add({});
  impl_->in_flight.Add({});
}

Metrics::~Metrics() = default;

void Metrics::EventsAccepted(int64_t n) {
  impl_->events_accepted.Add({}).Increment(static_cast<double>(n));
}
void Metrics::EventsDuplicate(int64_t n) {
  impl_->events_duplicate.Add({}).Increment(static_cast<double>(n));
}
void Metrics::RunsStarted(int64_t n) {
  impl_->runs_started.Add({}).Increment(static_cast<double>(n));
}

void Metrics::CheckpointAnswered(std::string_view outcome) {
  impl_->checkpoints.Add({{"outcome", std::string(outcome)}}).Increment();
}

void Metrics::CallEnded(const std::string& function_id, std::string_view outcome,
                        std::chrono::nanoseconds duration) {
  impl_->calls.Add({{"function", function_id}, {"outcome", std::string(outcome)}}).Increment();
  impl_->call_duration.Add({{"function", function_id}}, CallBuckets()).Observe(Seconds(duration));
}

void Metrics::FirstCall(const std::string& function_id, std::chrono::nanoseconds since_event) {
  impl_->first_call.Add({{"function", function_id}}, CallBuckets()).Observe(Seconds(since_event));
}

void Metrics::StepAttempt(const std::string& function_id, std::chrono::nanoseconds duration) {
  impl_->step_duration.Add({{"function", function_id}}, CallBuckets()).Observe(Seconds(duration));
}

void Metrics::RunEnded(const std::string& function_id, std::string_view status) {
  impl_->runs_finished.Add({{"function", function_id}, {"status", std::string(status)}})
      .Increment();
}

void Metrics::LaneHeadsTimedOut(int64_t n) {
  impl_->heads_timed_out.Add({}).Increment(static_cast<double>(n));
}

void Metrics::LeaseLost() { impl_->leases_lost.Add({}).Increment(); }

std::string Metrics::Render(const std::optional<store::QueueStats>& stats, int64_t calls_in_flight,
                            std::optional<int64_t> db_round_trips) {
  std::lock_guard lock(impl_->render_mu);
  impl_->in_flight.Add({}).Set(static_cast<double>(calls_in_flight));
  auto gauge = [](prom::Family<prom::Gauge>& family, bool known, double value) {
    // A gauge the store could not be asked for is removed rather than left at a stale value.
    if (known) {
      family.Add({}).Set(value);
    } else if (family.Has({})) {
      family.Remove(&family.Add({}));
    }
  };
  const bool known = stats.has_value();
  gauge(impl_->queue_depth, known, known ? static_cast<double>(stats->depth) : 0);
  gauge(impl_->queue_due, known, known ? static_cast<double>(stats->due) : 0);
  gauge(impl_->queue_lag, known, known ? stats->oldest_due_age_ms / 1000.0 : 0);
  gauge(impl_->lanes_blocked, known, known ? static_cast<double>(stats->lanes_blocked) : 0);
  gauge(impl_->longest_blocked, known, known ? stats->longest_blocked_ms / 1000.0 : 0);
  gauge(impl_->lanes_waiting_for_gap, known,
        known ? static_cast<double>(stats->lanes_waiting_for_gap) : 0);
  gauge(impl_->longest_gap_wait, known, known ? stats->longest_gap_wait_ms / 1000.0 : 0);
  gauge(impl_->lane_gaps, known, known ? static_cast<double>(stats->lane_gaps) : 0);
  gauge(impl_->lane_stale, known, known ? static_cast<double>(stats->lane_stale) : 0);
  gauge(impl_->lane_duplicates, known, known ? static_cast<double>(stats->lane_duplicates) : 0);
  if (db_round_trips && *db_round_trips > impl_->db_round_trips_seen) {
    impl_->db_round_trips.Add({}).Increment(
        static_cast<double>(*db_round_trips - impl_->db_round_trips_seen));
    impl_->db_round_trips_seen = *db_round_trips;
  }
  std::ostringstream out;
  prom::TextSerializer().Serialize(out, impl_->registry.Collect());
  return out.str();
}

QueueGauges::QueueGauges(Read read, Now now) : read_(std::move(read)), now_(std::move(now)) {}

Result<store::QueueStats> QueueGauges::Get() {
  std::lock_guard lock(mu_);
  const auto start = now_();
  if (last_ && start < reuse_until_) {
    store::QueueStats out = *last_;
    // Whatever was oldest at the read has waited the time since, if it still waits.
    const int64_t since =
        std::chrono::duration_cast<std::chrono::milliseconds>(start - read_at_).count();
    if (out.due > 0) out.oldest_due_age_ms += since;
    if (out.lanes_blocked > 0) out.longest_blocked_ms += since;
    if (out.lanes_waiting_for_gap > 0) out.longest_gap_wait_ms += since;
    return out;
  }
  Result<store::QueueStats> read = read_();
  if (!read.ok()) return read;
  const auto end = now_();
  last_ = *read;
  read_at_ = end;
  reuse_until_ =
      end + std::min<std::chrono::steady_clock::duration>((end - start) * kReuseFactor, kMaxReuse);
  return read;
}

}  // namespace funcky::metrics
