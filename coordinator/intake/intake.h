// Event intake: where every event enters, from a sender (POST /e/…), a cron tick, an
// invocation or the end of a run (inngest/function.*). It stores events and starts the runs
// they trigger in one transaction, then resumes the waits they match and cancels the runs
// whose cancel_on they match (docs/protocol.md §3, §8.2, §8.6).
//
// Thread-safety: every method may be called from many threads; all block on the store.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "common/clock.h"
#include "coordinator/executor/executor.h"
#include "coordinator/scheduler/flow.h"
#include "coordinator/store/store.h"

namespace funcky::intake {

using store::Json;

// The active functions, with their flow control compiled once per load.
struct FunctionSet {
  // Of the database's function set when it was loaded (store::AppRegistry::FunctionGeneration):
  // the ingest of events matched against this set checks it is still current.
  int64_t generation = 0;
  std::vector<store::FunctionRecord> functions;
  std::map<std::string, scheduler::FlowControl> flows;  // by function id

  // The active function with this id, or null.
  const store::FunctionRecord* Find(const std::string& id) const;
};

struct IncomingEvent {
  Json payload;             // checked and complete: name, data, user, id, ts
  std::string internal_id;  // a ULID
  // Start only this function, whatever its triggers (an invocation, a cron tick).
  std::optional<std::string> target_function;
  // With target_function: the run's first call is due no earlier than this (Unix ms; a cron
  // tick's jitter).
  std::optional<int64_t> start_at_ms;
};

struct IngestResult {
  std::vector<store::IngestedEvent> stored;  // one per event, in order
  int64_t runs_started = 0;
  // Waits the events matched that could not be resumed (a store failure, logged): the events
  // are stored, and ingesting them again (a resend: duplicates) resumes those waits.
  int waits_not_resumed = 0;
};

class Intake final : public executor::RunEvents {
 public:
  // The most run ends buffered to announce: past it an end is left to the sweep (it is
  // recorded in the store's outbox with the run's end). A cancel_on event that cancels 100,000
  // runs buffered them all, each with its events.
  static constexpr size_t kMaxBufferedEnds = 10000;

  // `on_new_work` is called when runs were started or resumed (wakes executors).
  Intake(store::Store& store, const Clock& clock, std::chrono::milliseconds function_cache_ttl,
         std::function<void()> on_new_work, size_t max_buffered_ends = kMaxBufferedEnds);
  // Stop()s.
  ~Intake() override;
  // Announces the run ends still buffered and stops the background thread. Call it before
  // whatever `on_new_work` wakes is destroyed. Idempotent.
  void Stop();

  // The active functions; reloaded when older than the cache TTL, or at once on `refresh`.
  // An ingest reloads them, whatever their age, when a sync on any coordinator has changed
  // them since (FunctionSet::generation).
  Result<std::shared_ptr<const FunctionSet>> Functions(bool refresh);
  // The active functions, read again at once if `fn_id` is not among those loaded (a sync
  // may have made it since); the caller checks whether it is there now.
  Result<std::shared_ptr<const FunctionSet>> FunctionsWith(const std::string& fn_id);

  // Stores the events and starts their runs (all or nothing), then resumes matching waits
  // and cancels matching runs. kUnavailable when nothing could be stored; kInvalidArgument,
  // storing nothing, when an event yields no number for a function whose lane orders by the
  // producer's sequence (docs/ordering.md "Sequence lanes").
  Result<IngestResult> Ingest(std::vector<IncomingEvent> events);

  // Where an ingest's new runs may start at once, on this coordinator (the executor): their
  // first calls leased in the ingest's transaction, with no claim (store::StartedCalls).
  struct Starter {
    std::function<int(int want)> reserve;  // free call slots taken, up to `want`
    std::function<void(store::StartedCalls, int reserved)> start;  // ends each reserve
    std::chrono::milliseconds lease{0};
  };
  // Set before the first Ingest; unset, every run is queued for a claim.
  void StartRunsWith(Starter starter) { starter_ = std::move(starter); }

  // Counts the run ends announced here (cancels, skipped and timed-out lane heads, runs past
  // their timeouts: the ends no executor's transition made) in `observer`'s RunEnded. The
  // executor counts the ends it makes.
  void CountRunEndsIn(executor::ExecutorObserver* observer) { run_end_counter_ = observer; }

  // Tells executors that work may be due now.
  void Wake() {
    if (on_new_work_) on_new_work_();
  }

  // Cancels a run (POST /v1/runs/{id}/cancel, cancel_on): false when it had ended.
  Result<bool> Cancel(const std::string& run_id, const Json& reason);
  // Starts a new run of the run's function for the same event; returns its id. With an
  // `idempotency_key`, a replay of this run with that key made before is not made again: its
  // run's id is returned. kFailedPrecondition when a sync dropped the function (archived).
  Result<std::string> Replay(const std::string& run_id, const std::string& idempotency_key = "");

  // executor::RunEvents
  Status StartInvocation(const store::RunState& caller, const store::NewWait& wait) override;
  void WaitRegistered(const store::RunState& state, const store::NewWait& wait,
                      int64_t since_ms) override;
  // Nothing acts on the events when no function of the set (as Ingest would read it) starts
  // or cancels runs by them and the run was not invoked; the store checks the waits, and
  // that the set's generation (set in `generation`) is still current.
  std::vector<store::EventRecord> EndEventsToStore(const store::RunState& state,
                                                   const std::string& status, const Json& output,
                                                   const Json& error,
                                                   std::optional<int64_t>* generation) override;
  // Buffers the run-end events; a background thread stores them a few milliseconds later,
  // many in one transaction, then acknowledges the run's end in the store's outbox
  // (store::RunControl::PendingRunEnds). Ends recorded but never announced (a crash, a
  // database outage) are found by the same thread's sweep, once a second.
  void RunEnded(const store::RunState& state, const std::string& status, const Json& output,
                const Json& error) override;
  void AnnounceEnd(const std::string& run_id) override;

  // An internal event (inngest/…) ready for Ingest.
  IncomingEvent InternalEvent(const std::string& name, Json data, const std::string& id);
  // Ingests `events`, whose ids are their own (not derived from the request), trying again
  // twice when the store is unavailable: a resend is a duplicate at worst.
  Result<IngestResult> IngestRetrying(const std::vector<IncomingEvent>& events);

 private:
  // Ingest with the events matched against `set`. On kAborted (the set is no longer
  // current), `events` are as they were given; otherwise they were moved from.
  Result<IngestResult> IngestWith(const FunctionSet& set, std::vector<IncomingEvent>& events);
  // The time of an ingest. One that carries an event some cancelOn rule matches (`cancels`)
  // is received in a millisecond after that of every ingest this coordinator began before it:
  // it waits for the clock's next one (a millisecond at most; past 5 ms, a clock that does not
  // move, it takes the next itself), holding back other ingests' times meanwhile. cancelOn cancels
  // the runs created before its event was received, and the run of a request answered in the same
  // millisecond was not among them.
  TimePoint IngestTime(bool cancels);
  static constexpr int kIngestTries = 3;
  // The waits of a request's events, by event name, and those of them settled already (resumed,
  // or found resumed by another): a request's later events skip them, so that a batch of
  // events costs its events' own waits each, not every wait read for every event.
  struct WaitsByName {
    explicit WaitsByName(const std::vector<store::WaitRecord>& waits);
    std::unordered_map<std::string_view, std::vector<const store::WaitRecord*>> of_name;
    std::unordered_set<const store::WaitRecord*> settled;
  };
  // Resumes the waits among `waits` (open waits read as the event was stored) that `event`
  // matches, skipping those in `*settled` and adding to it those it settles; returns how many
  // it resumed, and counts in `*failed` those it could not.
  int ResolveWaits(const store::EventRecord& event,
                   const std::vector<const store::WaitRecord*>& waits, int* failed,
                   std::unordered_set<const store::WaitRecord*>* settled = nullptr);
  int ResolveWaits(const store::EventRecord& event, const std::vector<store::WaitRecord>& waits,
                   int* failed);
  // ResolveWaits for an event stored already (`internal_id`), sent again as `sent`: of
  // `waits`, those that were open when it was stored. `*all` is false when the stored event
  // is not `sent` (another event with its id): the waits were read by `sent`'s keys.
  int ResolveWaitsOfStored(const std::string& internal_id, const store::Json& sent,
                           const std::vector<const store::WaitRecord*>& waits, int* failed,
                           bool* all, std::unordered_set<const store::WaitRecord*>* settled);
  // Whether an event named `event_name` matches a cancel_on of a function of `set`.
  static bool Cancels(const std::string& event_name, const FunctionSet& set);
  // Cancels the runs whose cancel_on `event` matches, as of its receipt; false when listing
  // or cancelling failed for some (done again, it cancels the rest).
  bool CancelMatchingRuns(const store::EventRecord& event, const FunctionSet& set);
  // The memo a wait of `kind` resumes with when `event` matches it.
  static Json WaitMemo(std::string_view kind, const Json& event);
  // Whether `wait`'s `if` holds for `event`. Event waits' expressions are compiled once and
  // kept (up to 10,000); an invoke wait's is its own (its correlation id), used once: kept,
  // each would push out the others.
  bool WaitMatches(const store::WaitRecord& wait, const Json& event);
  void FlushLoop();
  // The run-end events of a run in `state` that ended with `status`.
  std::vector<IncomingEvent> EndEvents(const store::RunState& state, const std::string& status,
                                       const Json& output, const Json& error);
  struct PendingEnd {
    std::string run_id;
    std::vector<IncomingEvent> events;
  };
  // Stores the events of `ends` and acknowledges them; on failure they stay in the store's
  // outbox for the sweep, and false.
  bool Announce(std::vector<PendingEnd> ends);
  // Announces the recorded ends older than the sweep age (any age when `all`), does the
  // last look-backs of waits older than the sweep age (whatever `all`), the pending cancels
  // of cancel_on events as old and the pending resumes of events as old, announces
  // lane gaps and cancels runs past their timeouts: each only when the store says it has
  // something to do (DueSweeps).
  void Sweep(bool all);
  // Does the last look-backs of waits created before `before` (Unix ms).
  void SweepLookbacks(int64_t before);
  // Stores a funcky/lane.gap event for each gap a sequence lane recorded, then marks them
  // announced (the gap outbox).
  void AnnounceLaneGaps();
  // Cancels the runs past a deadline of their `timeouts` (any coordinator may; once each).
  void SweepTimeouts();
  // Does again the cancels of the cancel_on events stored before `received_before_ms` and
  // not acknowledged (all are, once their ingest has done them; a crash after their commit
  // or a store failure left some undone), and acknowledges those done.
  void SweepCancels(int64_t received_before_ms);
  // Resumes the waits of the events in the wait outbox received before `received_before_ms`
  // (their ingest stopped, or failed, between the commit and the resumes; or their names had
  // more open waits than it read), and acknowledges those done.
  void SweepResumes(int64_t received_before_ms);
  // Resumes the waits registered before `event` was received that it matches, page by page;
  // false when the store failed for some (the sweep does it again).
  bool ResumeWaitsBefore(const store::EventRecord& event, int* resumed);
  // Resumes `wait` with the first event received since its lookback_from_ms that matches;
  // with none, the `last` look-back (the sweep's) marks it done. A wait is looked back at
  // twice: at once, for the events stored while it was being registered, and by the sweep
  // once it is older than the sweep age, for an event whose ingest read the waits before
  // this one was committed and was itself committed after the first look-back's read (on
  // another coordinator, or in a group transaction). false when the store failed (the sweep
  // tries again).
  bool LookBack(const store::WaitRecord& wait, bool last);
  // The inngest/function.finished payload of the run an invoke wait invoked, if that run has
  // ended and its end has been announced.
  Result<std::optional<Json>> FinishedEventOfInvocation(const store::WaitRecord& wait);

  store::Store& store_;
  const Clock& clock_;
  const std::chrono::milliseconds cache_ttl_;
  std::function<void()> on_new_work_;
  std::atomic<executor::ExecutorObserver*> run_end_counter_ = nullptr;
  Starter starter_;

  std::mutex ingest_time_mu_;
  int64_t last_ingest_ms_ = 0;  // GUARDED_BY(ingest_time_mu_): the latest an ingest was given
  std::mutex mu_;
  std::shared_ptr<const FunctionSet> functions_;  // GUARDED_BY(mu_); null until loaded
  TimePoint functions_loaded_at_{};               // GUARDED_BY(mu_)
  // Compiled wait `if` expressions by source (waits are registered per run; expressions
  // repeat).
  std::map<std::string, std::shared_ptr<const expr::Expression>> wait_exprs_;  // GUARDED_BY(mu_)

  std::mutex outbox_mu_;
  std::condition_variable outbox_cv_;
  std::vector<PendingEnd> outbox_;  // GUARDED_BY(outbox_mu_): run ends to announce
  const size_t max_buffered_ends_;
  bool outbox_full_ = false;  // GUARDED_BY(outbox_mu_): said so in the log since it was not
  bool stopping_ = false;     // GUARDED_BY(outbox_mu_)
  std::thread flusher_;
};

}  // namespace funcky::intake
