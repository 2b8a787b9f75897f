// The executor: claims due queue items under a lease, calls the host, applies the reply.
//
// Runs on the coordinator's io_context; store calls are offloaded to the blocking pool so
// an I/O thread never waits on the database. Several coordinators may run executors on
// one database: claims use the store's leases, and a transition is applied only while its
// lease is held.
#pragma once

#include <atomic>
#include <chrono>
#include <memory>
#include <optional>
#include <string_view>

#include <boost/asio/awaitable.hpp>

#include "common/clock.h"
#include "common/http_client.h"
#include "coordinator/executor/call.h"
#include "coordinator/scheduler/backoff.h"
#include "coordinator/store/store.h"

namespace boost::asio {
class io_context;
class thread_pool;
}  // namespace boost::asio

namespace funcky::executor {

// How calls reach hosts; a fake in tests.
class HostTransport {
 public:
  virtual ~HostTransport() = default;
  virtual boost::asio::awaitable<Result<HttpResponse>> Call(HttpRequest request) = 0;
};

// What the executor asks of event intake when runs wait, invoke and end (implemented by
// intake::Intake; absent in tests of the executor alone). Every method blocks on the store.
class RunEvents {
 public:
  virtual ~RunEvents() = default;
  // Starts the run that `wait` (kind invoke) of the caller's run waits for. Called before
  // the wait is stored and again if the call is redone: it must start the run once.
  // kNotFound when there is no such function; kFailedPrecondition when a gate of the
  // function refused the run (idempotency, rateLimit, singleton skip), or its sequence lane
  // started none (the number a duplicate, or stale without stale: "run"), then and when redone.
  // kUnavailable (and the like) when it is not known whether the run was stored.
  virtual Status StartInvocation(const store::RunState& caller, const store::NewWait& wait) = 0;
  // `wait` of the run in `state` is stored: resume it with an event already received at or
  // after `since_ms` (its look-back), if one matches.
  virtual void WaitRegistered(const store::RunState& state, const store::NewWait& wait,
                              int64_t since_ms) = 0;
  // The run-end events of a run about to end with `status` (inngest/function.finished and,
  // for a failure, inngest/function.failed), when they may be stored with its end
  // (store::Transition::End::events) because nothing acts on them: they start no function,
  // cancel no run, and no run invoked this one. Empty otherwise.
  // `generation`: set to the function set's generation they were judged by
  // (store::Transition::End::functions_generation).
  virtual std::vector<store::EventRecord> EndEventsToStore(const store::RunState& state,
                                                           const std::string& status,
                                                           const store::Json& output,
                                                           const store::Json& error,
                                                           std::optional<int64_t>* generation) = 0;
  // The run ended (its transition is stored) without its events: emit
  // inngest/function.finished and, for a failure, inngest/function.failed.
  virtual void RunEnded(const store::RunState& state, const std::string& status,
                        const store::Json& output, const store::Json& error) = 0;
  // The same for a run the store ended itself (a lane head past its head_timeout).
  virtual void AnnounceEnd(const std::string& run_id) = 0;
};

// What the executor reports as it works, for metrics (implemented by metrics::Metrics).
// Called on the io_context; implementations must be thread-safe and must not block.
class ExecutorObserver {
 public:
  virtual ~ExecutorObserver() = default;
  // A call to a host of `function_id` ended: `outcome` is "ok" (2xx), "error" (another
  // status), "unreachable" (no answer: connection or TLS failure) or "timeout".
  virtual void CallEnded(const std::string& function_id, std::string_view outcome,
                         std::chrono::nanoseconds duration) = 0;
  // The first call of a run started, `since_event` after its run was created.
  virtual void FirstCall(const std::string& function_id, std::chrono::nanoseconds since_event) = 0;
  // A step attempt recorded by a call ended ("completed", "error" or "failed").
  virtual void StepAttempt(const std::string& function_id, std::chrono::nanoseconds duration) = 0;
  // A run ended with `status` (completed, failed, cancelled), or, as a lane head that
  // failed, was parked ("blocked").
  virtual void RunEnded(const std::string& function_id, std::string_view status) = 0;
  // `n` lane heads were failed by their head_timeout.
  virtual void LaneHeadsTimedOut(int64_t n) = 0;
  // A call's outcome was dropped because another coordinator took its lease.
  virtual void LeaseLost() = 0;
};

// Pushes over HttpClient's keep-alive pool.
std::unique_ptr<HostTransport> MakeHttpTransport(HttpClient& client);

struct ExecutorOptions {
  int max_in_flight = 64;  // concurrent host calls per coordinator; 0: it makes none
  int claim_batch = 32;    // items claimed per round trip
  // With fewer than a quarter of a claim's worth of call slots free (the hosts have nearly
  // max_in_flight calls in hand) and calls taking claim_gather_past or longer of late (a mean),
  // the first slot freed waits this long at most for more before they are claimed together;
  // 0: each is claimed at once.
  std::chrono::milliseconds claim_gather{20};
  std::chrono::milliseconds claim_gather_past{100};
  // The longest an idle executor waits before it looks for due work again. It looks sooner
  // when work is known to come: the queue's next due time, Wake (events accepted here), and
  // other coordinators' notifications (Store::WatchForWork, PostgreSQL); so this bounds only
  // how late work is found that nothing announced. While busy it looks every 25 ms at most.
  std::chrono::milliseconds poll_interval{1000};
  std::chrono::milliseconds call_timeout{60'000};
  // Lease on a claimed item, renewed every third of it while the call is in flight: how
  // soon other coordinators take over the calls of one that died.
  std::chrono::milliseconds lease{10'000};
  scheduler::RetryPolicy retry;
  // The most steps a run may have; a reply that would take it past fails it
  // (DecideTransition).
  int64_t step_limit = kDefaultStepLimit;
  CallOptions call;
  uint64_t seed = 0;            // jitter source; 0: from the OS
  RunEvents* events = nullptr;  // not owned; null: waits get no look-back, no events emitted
  ExecutorObserver* observer = nullptr;  // not owned; null: nothing is reported
  // Fault injection for crash and outage tests: right after the transition that ends a run
  // of `fault_after_end_of` commits, before its end is announced, the process exits (code 70)
  // or, with a pause, waits that long. Empty: never.
  std::string fault_after_end_of;
  std::optional<std::chrono::milliseconds> fault_pause;  // absent: exit
  // The same for a transition that registers a wait of a run of `fault_after_wait_of`:
  // the process exits (code 70) before the wait's look-back. Empty: never.
  std::string fault_after_wait_of;
};

class Executor {
 public:
  Executor(boost::asio::io_context& io, boost::asio::thread_pool& blocking,
           store::QueueStore& queue, const Clock& clock, HostTransport& transport,
           ExecutorOptions options);
  ~Executor();

  void Start();
  // Work may be due now (an event was accepted): look at once instead of at the next poll.
  // Thread-safe.
  void Wake();
  // Stops claiming; calls in flight finish (or are reclaimed after their lease).
  void Stop();
  // Gives the leases of calls still unfinished back to other coordinators, after waiting for
  // any claim in progress (whose items it gives back too); the executor claims nothing after.
  // Call it after Stop() and the drain, before exiting. Thread-safe.
  void ReleaseLeases();
  // Call slots in use: calls in flight, and slots taken for a claim or an ingest under way
  // (what a drain waits for).
  int in_flight() const;
  // Calls in flight: in_flight() less the slots taken for a claim or an ingest under way
  // (the funcky_calls_in_flight gauge).
  int calls_in_flight() const;

  // New runs' first calls made at once (an ingest's store::StartedCalls, leased in its
  // transaction): ReserveCalls takes up to `want` free call slots (fewer when busy, none
  // when stopping), StartCalls makes the calls leased with them and frees the rest. Every
  // reservation must be ended by one StartCalls, also after a failed ingest (with none).
  // Thread-safe.
  int ReserveCalls(int want);
  void StartCalls(store::StartedCalls calls, int reserved);
  // The lease the executor's calls hold (renewed while in flight).
  std::chrono::milliseconds lease() const;

 private:
  struct Impl;
  std::shared_ptr<Impl> impl_;
};

}  // namespace funcky::executor
