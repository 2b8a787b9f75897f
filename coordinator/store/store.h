// Storage of apps, functions, events, runs, steps and the work queue.
//
// The Store is a set of role interfaces (docs/architecture.md "Store contracts"); each
// caller takes the narrowest one it needs. Two backends implement them and pass one
// conformance suite (tests/store/store_conformance_test.cc).
//
// Time is always passed in by the caller (read from an injected Clock) and stored as Unix
// milliseconds, so tests can move it by hand and every backend agrees on it.
//
// Thread-safety: every method may be called from many threads at once. Every method blocks
// on I/O: never call one on an io_context thread.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <variant>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/clock.h"
#include "common/status.h"

namespace funcky::store {

using Json = nlohmann::json;

// Run statuses, as stored and as shown in the API.
inline constexpr const char* kQueued = "queued";
inline constexpr const char* kRunning = "running";
inline constexpr const char* kSleeping = "sleeping";
inline constexpr const char* kWaiting = "waiting";
// The head of a lane whose run failed: it keeps its lane (later runs of the key wait) until
// an operator skips it or its head_timeout passes; then it is failed and the lane moves on.
inline constexpr const char* kBlocked = "blocked";
inline constexpr const char* kCompleted = "completed";
inline constexpr const char* kFailed = "failed";
inline constexpr const char* kCancelled = "cancelled";
bool IsTerminalStatus(std::string_view status);

// Whether two event payloads are one event sent twice: equal but for `ts`, which the
// coordinator fills in with the time it received an event that has none.
bool SameEvent(const Json& a, const Json& b);
// kAlreadyExists for an event whose internal id is stored already as another event.
Status EventIdClash(const std::string& internal_id);

struct FunctionRecord {
  std::string id;  // composite: <app>-<fn>
  std::string app_id;
  std::string name;
  Json config;  // the FunctionConfig as synced (docs/protocol.md §2.4)
  // Limits on calls in flight, enforced by Claim across coordinators; 0 = unlimited.
  int concurrency_limit = 0;       // for the whole function
  int key_concurrency_limit = 0;   // per concurrency key of a run
  int key_concurrency_limit2 = 0;  // per second concurrency key of a run
  bool archived = false;
  int64_t updated_at_ms = 0;

  // Whether any of the limits above counts its calls in flight.
  bool LimitsCalls() const {
    return concurrency_limit != 0 || key_concurrency_limit != 0 || key_concurrency_limit2 != 0;
  }
};

struct AppRecord {
  std::string id;
  std::string url;
  std::string sdk;
  std::string framework;
  std::string checksum;
  int64_t created_at_ms = 0;
  int64_t synced_at_ms = 0;
};

struct AppSync {
  AppRecord app;  // created_at_ms is kept from the first sync
  std::vector<FunctionRecord> functions;
  // Function id → the scheduler::CancelOn::id of each of its cancel rules with an `if`. A
  // sync that changes a function's `cancel` (its config's, as JSON) gives each active run of
  // it without a key for one of these (made before the rule was) an unset one
  // (CancelKey::key), in its transaction.
  std::map<std::string, std::vector<std::string>> cancel_rules;
  // Function id → the timeouts of its lanes as its config says (none: unset, or no lanes). A
  // sync that changes the app gives them to the lanes each function has, in its transaction
  // (an intake of a key does so for its lane too, which a lane no event comes to would wait
  // for): a head's deadline moves with its head_timeout (it goes with it, and a head that had
  // none counts the new one from its first call's due time, HeadDeadlineWith), and a sequence
  // lane takes the new gap_timeout (one whose function no longer orders by numbers drains
  // while it has runs: kDrainingGapTimeout, SelectSequenceHead).
  struct LaneTimeouts {
    std::optional<int64_t> head_timeout_ms;
    std::optional<int64_t> gap_timeout_ms;
  };
  std::map<std::string, LaneTimeouts> lane_timeouts;
};

struct SyncResult {
  bool modified = false;  // false when the app and its functions are exactly as before
};

// Apps and their functions.
class AppRegistry {
 public:
  virtual ~AppRegistry() = default;
  // Upserts the app and replaces its functions atomically: functions absent from
  // `sync.functions` are archived (kept for run history, never triggered again). A sync
  // that changes them moves the function set's generation on, in the same transaction.
  // kFailedPrecondition if a function id belongs to another app.
  virtual Result<SyncResult> SyncApp(const AppSync& sync) = 0;
  virtual Result<std::vector<AppRecord>> ListApps() = 0;
  // Active (non-archived) functions, ordered by id.
  virtual Result<std::vector<FunctionRecord>> ListFunctions() = 0;
  // The function set's generation: read before ListFunctions, the set is at least that new.
  // IngestEvents and an end's events (Transition::End) check it.
  virtual Result<int64_t> FunctionGeneration() = 0;
  // kNotFound when no function has this id (archived ones are found).
  virtual Result<FunctionRecord> GetFunction(const std::string& id) = 0;
};

// The longest value (a run's output or error, an event's payload, as JSON text, in
// characters) a list (ListRuns, ListEvents) reads; a longer one is null in the list and
// flagged as omitted. Reading one record gives it whole.
constexpr size_t kListedValueChars = 64 * 1024;

struct EventRecord {
  std::string internal_id;  // ULID given by the coordinator
  std::string id;           // the idempotency id (the user's `id`, else the internal id)
  std::string name;
  Json payload;  // {name, data, user, id, ts, v?}
  int64_t received_at_ms = 0;
  bool payload_omitted = false;  // by ListEvents: longer than kListedValueChars
};

// A sequence lane's options (ordering.sequence, docs/ordering.md "Sequence lanes"), copied
// into its lane row by every intake, as the head timeout is.
struct LaneSequencing {
  std::chrono::milliseconds gap_timeout{0};
  std::optional<int64_t> start;  // the number a new lane expects first; null: the first seen
  bool run_stale = false;        // a stale number still runs (unnumbered, after the head)
};

// Why IngestEvents started no run of a function for an event (event_skips).
inline constexpr const char* kSkipIdempotency = "idempotency";
inline constexpr const char* kSkipRateLimit = "rate_limit";
inline constexpr const char* kSkipSingleton = "singleton";
// A debounce that ended without this event: a later one replaced it, or it was older (by
// `ts`) than the event the pending run holds (NewRun::debounce).
inline constexpr const char* kSkipDebounce = "debounce";

// `idempotency` or `rateLimit`: at most `limit` runs of the function per `period` per key,
// paced by GCRA (a burst of `limit`, then one per period/limit). Idempotency is limit 1 per
// 24 h. Counted in the database, so it holds across coordinators.
struct RateGate {
  std::string reason;  // kSkipIdempotency or kSkipRateLimit
  std::string key;     // the key expression's value ("" without a key)
  int64_t limit = 1;
  std::chrono::milliseconds period{0};
};

// `timeouts`: a run not started within `start` of its creation, or not finished within
// `finish` of its start, is cancelled (RunControl::CancelTimedOutRuns).
struct RunTimeouts {
  std::optional<std::chrono::milliseconds> start;
  std::optional<std::chrono::milliseconds> finish;
};

// `throttle`: the starts of the function's runs per key are paced by GCRA with interval
// `period / limit`: a quiet key starts 1 + `burst` runs at once, then one per interval. No
// run is refused: each is created with a start slot (its first call is due then, not
// earlier), taken in ingest order, so runs of a key start in FIFO order. Counted in the
// database, so it holds across coordinators.
struct ThrottleGate {
  std::string key;  // the key expression's value ("" without a key)
  int64_t limit = 1;
  std::chrono::milliseconds period{0};
  int64_t burst = 0;
};
// The gate column of a throttle's GCRA row in flow_rates (beside the rate gates' reasons).
inline constexpr const char* kThrottleGate = "throttle";
// The gate of a throttle's second GCRA row: the first calls claimed (QueueStore::Claim).
inline constexpr const char* kThrottleStartGate = "throttle_start";

// `singleton`: one active run of the function per key.
struct SingletonGate {
  std::string key;      // the key expression's value ("" without a key)
  bool cancel = false;  // mode cancel: the active run is cancelled; skip: the new one is
};

// `debounce`: one run per (function, key) for a burst of events, started `period` after the
// last one (at most `timeout` after the first), with the last event (docs/flow-control.md).
struct DebounceGate {
  std::string key;  // the key expression's value ("" without a key)
  std::chrono::milliseconds period{0};
  std::optional<std::chrono::milliseconds> timeout;
  int64_t event_ts_ms = 0;  // the event's `ts`: an older one does not replace a newer one
};

// `batchEvents`: the events of (function, key) are gathered into one run, started when
// `max_size` have joined it or `timeout` after its first event (docs/flow-control.md).
struct BatchGate {
  std::string key;  // the key expression's value ("" without a key)
  int64_t max_size = 2;
  std::chrono::milliseconds timeout{0};
};
// A batch is started before its events, as JSON, would pass this (Inngest's hard cap).
inline constexpr int64_t kMaxBatchBytes = 10 << 20;
// The longest BatchGate::timeout (Inngest's bound, which sync holds configs to): a batch that
// began longer ago than this is closed.
inline constexpr std::chrono::milliseconds kMaxBatchTimeout{60 * 1000};

struct StartedCalls;

// A run's key for one cancel rule of its function (its `cancel` entry with an `if`), written
// with the run: an event the rule names looks up the runs its keys (expr::IndexKeys) may cancel
// instead of reading every active run of the function.
struct CancelKey {
  std::string rule;  // scheduler::CancelOn::id of the entry
  // expr::Expression::RequiredKey of the `if` over `async` with the run's event known: the key
  // an event must have to cancel the run. Unset when the `if` requires none of it: the run is
  // looked at for every event of the rule.
  std::optional<std::string> key;
};

struct NewRun {
  std::string run_id;  // ULID
  std::string function_id;
  // Set for an ordered function: runs of one key start one after another, in the order
  // IngestEvents stored them (or, with `sequencing`, in the order of their numbers).
  std::optional<std::string> lane_key;
  std::optional<std::chrono::milliseconds> head_timeout;  // of the lane, if any
  std::optional<std::string> concurrency_key;             // for key_concurrency_limit
  std::optional<std::string> concurrency_key2;            // for key_concurrency_limit2
  // `priority.run` in seconds (from -600 to 600): a positive value orders the run's first
  // call as if it had been queued that much earlier; a negative one makes it due that much
  // later. Later calls and retries are not moved. In a lane, it applies when the run
  // becomes head (docs/flow-control.md "priority").
  int64_t priority_s = 0;
  // Set (with lane_key) when the lane orders by the producer's numbers.
  std::optional<LaneSequencing> sequencing;
  // The event's number in a sequence lane. Null with `sequencing`: an unnumbered run (a
  // replay), which runs after the current head, before the numbered runs waiting.
  std::optional<int64_t> lane_number;
  // Admission (IngestEvents only; a replay through StartRun is not gated): a run a gate
  // refuses is not created, and the skip is recorded (EventStore::EventSkips).
  std::optional<RateGate> rate;
  std::optional<SingletonGate> singleton;
  // Deadlines of the run (also for a replay).
  std::optional<RunTimeouts> timeouts;
  // Pacing of the run's start (IngestEvents only; a replay is not throttled).
  std::optional<ThrottleGate> throttle;
  // Debounced (IngestEvents only): the event may join the pending run of its key instead.
  std::optional<DebounceGate> debounce;
  // The run's first call is due no earlier than this (Unix ms): a cron tick's jitter. Kept
  // with the run like a throttle's slot (the later of the two holds), so a run that waits
  // behind its lane's head does not start before it either.
  std::optional<int64_t> start_at_ms;
  // Batched (IngestEvents only): the event may join the open batch (a pending run) of its
  // key instead of starting a run.
  std::optional<BatchGate> batch;
  // A replay (StartRun) of a batch's run: the new run gets that run's events, in order.
  std::optional<std::string> events_of;
  // The ingesting coordinator may make the run's first call itself, at once (IngestEvents'
  // `start`): no limit of the function counts its calls in flight.
  bool may_start_here = false;
  // One for each of the function's cancel rules with an `if` (CancelCandidates). A debounced
  // run's keys are replaced with those of the event that joins it.
  std::vector<CancelKey> cancel_keys;
};

// Why an event started no run of a sequence lane.
inline constexpr const char* kStale = "stale";          // its number was below the next
inline constexpr const char* kDuplicate = "duplicate";  // its number had a run already

struct LaneOutcome {
  std::string event_id;  // internal id
  std::string function_id;
  std::string key;
  int64_t number = 0;
  std::string outcome;  // kStale | kDuplicate
  // A duplicate: the run that has the number; a stale number run all the same (`stale:
  // "run"`): its run, which has no number; unset for a stale number that started no run.
  std::optional<std::string> run_id;
  int64_t recorded_at_ms = 0;
};

// Numbers a sequence lane gave up on (first..last, inclusive).
struct LaneGap {
  int64_t id = 0;
  std::string function_id;
  std::string key;
  int64_t first = 0;
  int64_t last = 0;
  int64_t waited_since_ms = 0;  // when a later number began to wait for them
  int64_t recorded_at_ms = 0;
  std::string reason;                         // kGapTimeout | kGapSkipped
  std::optional<std::string> resumed_run_id;  // the run that went on
};
inline constexpr const char* kGapTimeout = "gap_timeout";
inline constexpr const char* kGapSkipped = "skip_head";

struct NewEvent {
  EventRecord event;
  std::vector<NewRun> runs;  // started only if the event is new
  // It matches a function's cancel_on: a new event is recorded in the cancel outbox
  // (RunControl::PendingCancels) with it.
  bool cancels = false;
};

// The most event waits IngestEvents reads for the caller (the oldest of the events' names):
// the waits of a name past them are resumed by the sweep (WaitStore::PendingResumes).
inline constexpr int kIngestWaits = 10000;

struct IngestedEvent {
  std::string internal_id;  // of the stored event: the existing one for a duplicate
  bool duplicate = false;
  // Functions whose run a gate refused (NewRun::rate, NewRun::singleton).
  std::vector<std::string> skipped;
  // Runs cancelled to admit this event's run (singleton mode cancel): their end is
  // recorded in the run-end outbox like any cancellation's.
  std::vector<std::string> cancelled;
  // Functions whose pending debounced run this event joined (it replaced the run's event):
  // no new run of them (NewRun::debounce).
  std::vector<std::string> debounced;
  // Functions whose open batch this event joined: no new run of them (NewRun::batch).
  std::vector<std::string> batched;
};

// A run an event did not start: which function, and why (kSkip…).
struct EventSkip {
  std::string function_id;
  std::string reason;
  std::string key;
  int64_t at_ms = 0;
};

struct WaitRecord {
  std::string run_id;
  std::string step_id;
  std::string function_id;
  std::string event_name;
  std::string expression;
  std::string kind;
  Json trigger;  // the run's first event, `event` in the expression; null if it names no `event`
  int64_t created_at_ms = 0;
  int64_t expires_at_ms = 0;
  // While its look-back is not done: events received from then on may resume it too.
  std::optional<int64_t> lookback_from_ms;
  std::optional<std::string> match_key;  // NewWait::match_key
  // The internal id of the run's own (first) event, which never resumes the run's waits: a
  // look-back reaching back to it, or an ingest in its millisecond, would find the event that
  // started the run (a function on `order/updated` waiting for the next `order/updated`).
  std::string run_event_id;
};

// What an ingest reads of the waits its events may resume (EventStore::IngestEvents).
struct IngestWaits {
  // The open waits the events may resume: of each event's name, the event waits with an
  // expr::IndexKeys key of the event (up to kIngestWaits) and the oldest kIngestWaits of the
  // others; the invoke waits of their correlation ids. For an event with more keys than
  // expr::kMaxIndexKeys, or when the events have more than kIngestKeys together, the waits
  // with a key of their names are read as those without: the oldest kIngestWaits.
  std::vector<WaitRecord> open;
  // The new events recorded in the wait outbox (WaitStore::PendingResumes), by internal id.
  std::set<std::string> pending;
  // Whether `open` holds every wait the events may resume: not when a read stopped at
  // kIngestWaits (the sweep reads them all).
  bool complete = true;
};
inline constexpr size_t kIngestKeys = 10000;

struct EventFilter {
  std::string name;    // exact; empty = any
  std::string cursor;  // internal id: only events older than it
  int limit = 50;
};

class EventStore {
 public:
  virtual ~EventStore() = default;
  // Stores all events and starts their runs (each with a first queue item due at `now`)
  // in one transaction: all or nothing. An event whose `id` is stored already is not stored
  // again and starts nothing; the result names the stored event. An event whose
  // `internal_id` is stored already (both derived from one X-Inngest-Event-Id-Seed) is a
  // resend only if it is the same event (SameEvent); otherwise kAlreadyExists naming the id,
  // and nothing of the batch is stored. A new event that open waits may resume is recorded in
  // the wait outbox (WaitStore::PendingResumes). With `waits`, also reads in that transaction
  // the open waits the events (duplicates too) may resume (IngestWaits::open), and which new
  // events the outbox recorded (IngestWaits::pending). A run whose
  // gate (NewRun::rate, ::singleton) refuses it is not created and the skip is recorded with the
  // event; the gates are decided in this transaction, in event order, so two coordinators never
  // admit past a gate together. With `start`, leases some new runs' first calls to the caller
  // (StartedCalls). With `functions_generation` (the runs were matched against the function set of
  // that generation), kAborted, storing nothing, when a sync has changed the set since: match the
  // events again.
  virtual Result<std::vector<IngestedEvent>> IngestEvents(
      const std::vector<NewEvent>& events, TimePoint now, IngestWaits* waits,
      StartedCalls* start = nullptr, std::optional<int64_t> functions_generation = {}) = 0;
  // Newest first; a payload longer than kListedValueChars is omitted.
  virtual Result<std::vector<EventRecord>> ListEvents(const EventFilter& filter) = 0;
  // By internal id; kNotFound when none matches.
  virtual Result<EventRecord> GetEvent(const std::string& internal_id) = 0;
  // By the event's own `id` (its idempotency id); kNotFound when none matches.
  virtual Result<EventRecord> FindEventById(const std::string& id) = 0;
  // The runs the stored event did not start (a gate refused them), by function id.
  virtual Result<std::vector<EventSkip>> EventSkips(const std::string& internal_id) = 0;
};

struct RunRecord {
  std::string id;
  std::string function_id;
  std::string event_id;    // internal id of the triggering event
  std::string event_name;  // its name
  // Every event of the run in order, the first being event_id: one but for a batch
  // (batchEvents). Filled by GetRun only (empty from ListRuns).
  std::vector<std::string> event_ids;
  std::string status;
  std::optional<std::string> lane_key;
  std::optional<std::string> concurrency_key;
  Json output;  // null until completed
  Json error;   // null unless failed or cancelled
  // By ListRuns: the output or error is longer than kListedValueChars (and null here).
  bool output_omitted = false;
  bool error_omitted = false;
  int req_version = -1;
  int64_t created_at_ms = 0;
  std::optional<int64_t> started_at_ms;
  std::optional<int64_t> ended_at_ms;
};

struct StepRecord {
  std::string step_id;  // hashed
  int seq = 0;          // position in the run's stack
  std::string name;
  std::string status;  // completed | failed
  Json memo;           // what the host gets back: {"data":…} or {"error":…}
  int64_t created_at_ms = 0;
};

struct AttemptRecord {
  std::string step_id;  // hashed step id, or "step" for a call that failed before any step
  std::string name;
  int attempt = 0;
  std::string outcome;  // completed | error | failed
  Json error;
  int64_t started_at_ms = 0;
  int64_t ended_at_ms = 0;
};

// What Store::Checkpoint recorded.
struct RecordedCheckpoint {
  std::string function_id;              // the run's
  std::vector<AttemptRecord> attempts;  // those it wrote: of the steps it recorded, in order
};

struct RunFilter {
  std::string function_id;
  std::string status;
  std::string event_id;
  std::string key;  // the run's lane key; empty = any
  // Runs created in [created_from_ms, created_to_ms); 0 = unbounded.
  int64_t created_from_ms = 0;
  int64_t created_to_ms = 0;
  std::string cursor;  // run id: only runs older than it
  int limit = 50;
};

class RunReader {
 public:
  virtual ~RunReader() = default;
  virtual Result<RunRecord> GetRun(const std::string& run_id) = 0;
  // Newest first; an output or error longer than kListedValueChars is omitted.
  virtual Result<std::vector<RunRecord>> ListRuns(const RunFilter& filter) = 0;
  // In stack order.
  virtual Result<std::vector<StepRecord>> GetSteps(const std::string& run_id) = 0;
  // In the order they ended.
  virtual Result<std::vector<AttemptRecord>> GetAttempts(const std::string& run_id) = 0;
};

// A unit of work: "call run R with step S now".
struct QueueItem {
  int64_t id = 0;
  std::string run_id;
  std::string step_id;  // "step" for discovery, else a hashed step id
  int attempt = 0;      // 0-based attempt of this item
  std::string lease_token;
  // Set on a resume item (a timer, a wait's timeout or match): no host call; the executor
  // memoizes resume["memo"] under step_id (named resume["name"]) and runs discovery.
  std::optional<Json> resume;
  // Set by the store on a call it leased when, as far as it then knew, the run had never had
  // a wait or calls in parallel (its calls come one at a time): an apply of the call may then
  // be written in one flight to the database. Unset tells nothing; either way is correct.
  bool one_at_a_time = false;
};

// The `resume` of a resume item that memoizes `memo` under a step named `name`.
inline Json Resume(Json memo, std::string_view name) {
  return {{"memo", std::move(memo)}, {"name", name}};
}
// The step that applying a resume item records: its memo under `step_id`, named as it says
// (else by the id), failed when the memo is an error alone ({"error": …}).
inline StepRecord ResumedStep(const std::string& step_id, const Json& resume) {
  Json memo = resume.is_object() ? resume.value("memo", Json(nullptr)) : Json(nullptr);
  std::string name = resume.is_object() ? resume.value("name", step_id) : step_id;
  const bool failed = memo.is_object() && memo.size() == 1 && memo.contains("error");
  return {step_id, 0, std::move(name), failed ? "failed" : "completed", std::move(memo), 0};
}

// Everything needed to build the call request for a run.
// The most bytes of memoized steps (their memos as JSON text) a run's state is read with. A
// call carries at most 32 MiB (executor::kMaxCallBodyBytes, checked as each call is built), but
// steps recorded without a call built in between — calls or waits in parallel, checkpoints
// during one call — could make a run hold far more, which a coordinator would read whole to
// build its next call (gigabytes: enough to stop it). A run past this bound is read without
// its steps (RunState::unloaded_step_bytes), and a checkpoint that would take it past the
// bound is refused. A memo's bytes are those of its compact JSON, recorded with the step
// (PostgreSQL's text of it, which a load reads, has a space after each `,` and `:`: up to half
// as much again for arrays of small numbers).
inline constexpr int64_t kMaxLoadedStepBytes = 64 << 20;

struct RunState {
  RunRecord run;
  FunctionRecord function;
  std::vector<Json> events;       // payloads, first = the trigger
  std::vector<StepRecord> steps;  // stack order
  // Set when the run's steps hold more than kMaxLoadedStepBytes (their bytes): `steps` was not
  // read and is empty. Its calls cannot be built; the executor fails the run.
  int64_t unloaded_step_bytes = 0;
};

// First calls of new runs leased to the ingesting coordinator in the ingest's transaction
// (IngestEvents): it makes them at once, with no claim. Only a run with `may_start_here` is
// started so, at most `max` of them, and only one created with nothing but its row and its
// first call (no lane, gate, deadline, start time or priority), or the run of a free lane
// that becomes its head at once (not a sequence lane's; no deadline, throttle, start time,
// batch or priority); the others are queued as usual.
struct StartedCalls {
  int max = 0;
  std::chrono::milliseconds lease{0};
  std::vector<QueueItem> items;  // leased as a claim leases them, in event order
  std::vector<RunState> states;  // their runs' states, as a claim reads them
};

struct NextCall {
  std::string step_id;
  TimePoint due;
  std::optional<Json> resume;  // a resume item (see QueueItem::resume)
};

// A run waiting for an event (step.wait_for_event) or for an invoked run to finish.
struct NewWait {
  std::string step_id;
  std::string name;        // the step's display name
  std::string event_name;  // e.g. "app/approved", or inngest/function.finished for invoke
  std::string expression;  // the `if` over `event` (the run's first event) and `async`; ""
  std::string kind;        // kWaitEvent or kWaitInvoke
  // The key of an equality the `if` requires of the event (expr::Expression::RequiredKey): an
  // ingest finds the wait by it (expr::IndexKeys of the event). Unset: read for every event of
  // its name.
  std::optional<std::string> match_key;
  TimePoint expires_at;
  Json timeout_memo;  // memoized when nothing matched by expires_at
  // Events received this long before the wait count too (wait look-back).
  std::chrono::milliseconds lookback{0};
  // Where the look-back starts: `lookback` before the executor began storing the wait, so
  // an event received while the wait's transaction was in flight is not missed. Stored
  // with the wait until the look-back is done (WaitStore::LookbackDone). Unset: `lookback`
  // before Apply's `now`.
  std::optional<TimePoint> lookback_from;
  // Not stored; for kWaitInvoke, what to start: {"function_id", "data", "correlation_id"}.
  Json invoke;
  // For kWaitSignal (no event_name): the signal it waits for, which at most one open wait
  // holds. When another holds it: with `replace_signal` this one takes it (the other waits on,
  // unreachable, until its timeout); without, this one is resumed at once with
  // SignalConflictMemo and nothing is registered.
  std::string signal;
  bool replace_signal = false;
};
inline constexpr const char* kWaitEvent = "event";    // memo: the matching event
inline constexpr const char* kWaitInvoke = "invoke";  // memo: {"data"} or {"error"} of the run
// The longest event name, in bytes: intake refuses a longer one, so a wait for one could
// never be met (and PostgreSQL's index of waits by name refuses entries past about 2.7 kB).
inline constexpr size_t kMaxEventNameBytes = 256;

// step.waitForSignal; memo {"data": {"signal", "data"}} (WaitStore::ResolveSignal).
inline constexpr const char* kWaitSignal = "signal";
// The longest signal name, in bytes.
inline constexpr size_t kMaxSignalBytes = 1024;

// The memo of a signal wait registered while another wait holds its signal (without
// replace_signal): the step fails with it, as Inngest's does.
Json SignalConflictMemo(std::string_view signal);

// The `if` of the invoke wait for the run with this correlation id: true of the
// inngest/function.finished event whose data.correlation_id it is, and of no other. The id is
// quoted, so that no id (its step id is the host's) makes it match the ends of other runs.
// The store finds an end's invoke waits by this text (an index), not by evaluating each.
std::string InvokeWaitExpression(std::string_view correlation_id);

struct QueueStats {
  int64_t depth = 0;                  // items in any state
  int64_t due = 0;                    // items visible now: due, or their lease expired
  int64_t oldest_due_age_ms = 0;      // how long the oldest of those has been visible; 0: none
  int64_t lanes_blocked = 0;          // lanes whose head is blocked
  int64_t longest_blocked_ms = 0;     // the longest time a blocked head has held its lane
  int64_t lanes_waiting_for_gap = 0;  // sequence lanes with no head, waiting for a number
  int64_t longest_gap_wait_ms = 0;    // the longest such wait so far
  int64_t lane_gaps = 0;              // gaps recorded (ever; lanes' counters)
  int64_t lane_stale = 0;             // stale numbers recorded
  int64_t lane_duplicates = 0;        // duplicate numbers recorded
};

// The moves of a Transition (at namespace scope, so each is a complete type where the
// variant needs it).
namespace moves {
// The run goes on: calls to enqueue, waits to register. With nothing in it, this thread
// of execution is done (parallel steps: another call carries on).
struct Continue {
  std::vector<NextCall> next;
  // Enqueue a discovery call in `next` only when the run has no other queue item (fan-in
  // of parallel steps); other items of `next` are enqueued regardless.
  bool next_only_if_idle = false;
  // Waits to register; each also enqueues its timeout as a resume item at expires_at.
  std::vector<NewWait> waits;
  std::optional<std::string> run_status;  // running, sleeping or waiting; unchanged if unset
};
// The same item again at `at`, as its next attempt (the call failed; attempts remain).
struct Retry {
  TimePoint at;
};
// A failed lane head keeps its lane, blocked (kBlocked, with `error`) until skip-head,
// retry-head or head_timeout; its queue items are removed.
struct Park {
  Json error;
};
// The run ends: completed (with `output`), failed or cancelled (with `error`).
struct End {
  std::string status;
  Json output;
  Json error;
  // The run's end events (inngest/function.finished, …), to store in the same transaction
  // when nothing has to act on them: then the end skips the run-end outbox. Stored only
  // when no wait of any run awaits an event of their names (that wait is resumed through
  // the outbox); Applied::end_events_stored says which. Empty: the outbox announces the end.
  std::vector<EventRecord> events;
  // The function set's generation `events` were judged by (AppRegistry::FunctionGeneration):
  // they go through the outbox if a sync has changed the set since. Unset: not checked.
  std::optional<int64_t> functions_generation;
};
}  // namespace moves

// What one call changed, applied atomically by Apply: what it recorded, and then exactly one
// move of the run. A move is one alternative of a variant, so a transition that both
// retries and ends (or parks and continues) cannot be written.
struct Transition {
  using Continue = moves::Continue;
  using Retry = moves::Retry;
  using Park = moves::Park;
  using End = moves::End;

  std::vector<StepRecord> steps;        // memoize, in order (each step id at most once)
  std::vector<AttemptRecord> attempts;  // the attempts this call made
  // The run's new request version; unset: unchanged. Stored with `steps` when there are
  // any (the run's row is then not written for it), else, and at an end, in the run's row.
  std::optional<int> req_version;
  std::variant<Continue, Retry, Park, End> move;
  // The run's lane (function id, key), when it is in one, as the caller knows it from the
  // run's state: the store orders row locks by it (unset, it works as well, with more
  // chances of a deadlock to retry).
  std::optional<std::pair<std::string, std::string>> lane;

  const End* end() const { return std::get_if<End>(&move); }
  const Retry* retry() const { return std::get_if<Retry>(&move); }
  const Park* park() const { return std::get_if<Park>(&move); }
  const Continue* next() const { return std::get_if<Continue>(&move); }
};
// Applying the transition of a resume item also removes the item's wait, if any, so the
// wait can no longer be matched.

// The next call of a run that goes on at once, leased to whoever applied the step before it
// (QueueStore::ApplyAndKeep).
struct KeptCall {
  QueueItem item;
  // The run's recorded steps after that apply, when another call of the run may have recorded
  // some meanwhile (it has had calls in parallel, waits, or steps checkpointed during a call):
  // a holder whose view of the run has fewer loads it. Unset for a run that never had any of
  // those: its one call at a time is the holder's, whose view is whole.
  std::optional<int64_t> steps;
};

// What ApplyAndKeep did beyond the transition itself.
struct Applied {
  std::optional<KeptCall> kept;  // the run's next call, leased to the applier
  // The run ended with the events of its End stored in the same transaction: its end is not
  // in the run-end outbox (PendingRunEnds), there is nothing to announce.
  bool end_events_stored = false;
  // The run had ended while the call was in flight (cancelled, its lane head failed, or
  // ended by another of its calls), or is a blocked lane head: nothing of the call was
  // recorded, only its item removed (and the run's lane moved on, when the run had ended and
  // this was the last call of it in flight).
  bool run_ended = false;
};

// The failure of a transaction whose commit was sent but not answered (the connection went):
// it may or may not have been written. A kUnavailable Status, told apart by
// IsCommitOutcomeUnknown.
Status CommitOutcomeUnknown(std::string_view why);
bool IsCommitOutcomeUnknown(const Status& status);

// What Apply answers where ApplyAndKeep sets Applied::run_ended (the call's item was removed
// all the same).
Status RunEndedMeanwhile(const std::string& run_id);
bool IsRunEndedMeanwhile(const Status& status);

class QueueStore {
 public:
  virtual ~QueueStore() = default;
  // Leases up to `max` items visible at `now` (due, or whose lease expired), oldest first,
  // each until now + lease under a fresh lease token; skips items another claimer holds.
  // Runs of claimed items that were queued become running. With `states`, it receives each
  // claimed item's run state, in the items' order, as LoadRunState would read it after the
  // claim (read in the claim's transaction, so the caller need not load it).
  virtual Result<std::vector<QueueItem>> Claim(int max, TimePoint now,
                                               std::chrono::milliseconds lease,
                                               std::vector<RunState>* states = nullptr) = 0;
  virtual Result<RunState> LoadRunState(const std::string& run_id) = 0;
  // Applies `t` if `item` is still leased under its token; kAborted (and nothing written)
  // only when the lease was lost to another claimer; kUnavailable for transient failures
  // (connection lost, deadlock), after which the same call may be retried. When the run
  // ended while the call was in flight, RunEndedMeanwhile: nothing of `t` is recorded, the
  // item is removed.
  virtual Status Apply(const QueueItem& item, const Transition& t, TimePoint now) = 0;
  // Apply, for a run that goes on at once: when `t` continues with exactly one call, due by
  // `now`, and registers no wait, that call is queued already leased (for at least two
  // thirds of `lease` from `now`, else until now + `lease`) and returned, so its holder makes
  // it without a claim (and no other claimer can take it) in Applied::kept: under a fresh
  // token, or under the item's own when the call changes nothing of it (the same step, the
  // first attempt, not a resume). After kUnavailable, an apply whose call might have been
  // kept under the item's own token is refused (kAborted) until the next claim gives the item
  // back. Otherwise, and on any error, as Apply.
  virtual Result<Applied> ApplyAndKeep(const QueueItem& item, const Transition& t, TimePoint now,
                                       std::chrono::milliseconds lease) = 0;
  // Extends the lease of `item`, whose call is in flight, to `until` (the executor's
  // heartbeat, so a lease can be short and a dead coordinator's calls are taken over soon).
  // kAborted when the lease was lost to another claimer.
  virtual Status RenewLease(const QueueItem& item, TimePoint until) = 0;
  // Records steps a host ran within the call of `item`, still in flight, and reported before
  // answering (the JS SDK's async checkpointing, docs/protocol.md §5.6): `steps` and their
  // `attempts` are written only while `item` is leased under its token and its run goes on;
  // a step already recorded keeps its first record, and its attempt is not written again (a
  // checkpoint sent again, after an answer that was lost); each attempt's `attempt` becomes
  // the item's. The item stays leased. kAborted (nothing written) when the lease was lost or
  // the run ended: the call is stale. kResourceExhausted (nothing written) when the run would
  // have more than `step_limit` steps with them, or its steps more than kMaxLoadedStepBytes.
  virtual Result<RecordedCheckpoint> Checkpoint(const QueueItem& item,
                                                const std::vector<StepRecord>& steps,
                                                const std::vector<AttemptRecord>& attempts,
                                                TimePoint now, int64_t step_limit) = 0;
  // Gives up the leases of `items` (a coordinator stopping with calls unfinished, or a call
  // whose handling failed unexpectedly): each is visible to every claimer at `now` (a later
  // time holds it back until then), its attempt unchanged. Items whose lease was lost are
  // left alone.
  virtual Status ReleaseLeases(const std::vector<QueueItem>& items, TimePoint now) = 0;
  // How many items are queued (any state); for metrics and tests.
  virtual Result<int64_t> QueueDepth() = 0;
  // The queue and lane gauges of /metrics at `now`.
  virtual Result<QueueStats> GetQueueStats(TimePoint now) = 0;
  // Fails every lane head whose head_timeout has passed at `now` (recorded in the run as a
  // HeadTimeout error) and moves each lane on. Returns the ids of the runs it failed.
  virtual Result<std::vector<std::string>> ExpireLaneHeads(TimePoint now) = 0;
  // When the queue's earliest item becomes visible (due, or its lease expires), if it holds
  // any: how long an idle executor may wait before claiming again (an item a limit holds back
  // is hidden until a time of its own). A time at or before now means work is visible that
  // the last claim did not take (locked by another claimer). The default, for stores that
  // cannot tell: none known.
  virtual Result<std::optional<TimePoint>> NextVisible() { return std::optional<TimePoint>(); }
};

// Held while a watch for other coordinators' work is wanted (Store::WatchForWork).
class WorkWatch {
 public:
  virtual ~WorkWatch() = default;
};

// A sequence lane's state (docs/ordering.md "Sequence lanes").
struct LaneSequence {
  std::optional<int64_t> next;  // the number expected next; null: none seen yet
  int64_t gap_timeout_ms = 0;
  std::optional<int64_t> gap_since_ms;  // since when a later number waits for `next`
  std::vector<int64_t> waiting;         // the lowest numbers waiting (up to 10)
  int64_t gaps_total = 0;
  int64_t stale_total = 0;
  int64_t duplicates_total = 0;
  std::optional<LaneGap> last_gap;
};

struct LaneRecord {
  std::string function_id;
  std::string key;
  int depth = 0;  // runs not finished, head included
  // Empty when a sequence lane waits for a missing number (head_status "waiting").
  std::string head_run_id;
  std::string head_status;
  int64_t head_since_ms = 0;  // when the head took the lane
  std::optional<int64_t> head_deadline_ms;
  std::optional<LaneSequence> sequence;  // set for a sequence lane
};

struct LaneFilter {
  std::string function_id;  // empty: every function
  bool blocked_only = false;
  // Only lanes after this (function id, key): the last lane of the previous page.
  std::optional<std::pair<std::string, std::string>> after;
  int limit = 100;
};

// Per-key FIFO lanes of ordered functions (docs/ordering.md).
class LaneStore {
 public:
  virtual ~LaneStore() = default;
  // Lanes with runs that are not finished, ordered by function and key.
  virtual Result<std::vector<LaneRecord>> ListLanes(const LaneFilter& filter) = 0;
  // Fails the lane's head run as skipped (its error says so and keeps the previous error as
  // `cause`) and starts the next run of the key. Returns the skipped run's id. A sequence
  // lane with no head that waits for a missing number gives up on it now (a gap recorded
  // with reason kGapSkipped) and returns the id of the run that goes on. kNotFound when the
  // lane has no head and nothing waits. With `expected_head`, only that run is skipped: when
  // it has been skipped already (the same request again, its answer lost) it is returned and
  // nothing changes; when another run is head, or none, kAborted. With `waiting_for` (the
  // missing number the caller saw a sequence lane wait for, with no head), only that gap is
  // given up: when the lane has a head or waits for another number, kAborted (a skip meant
  // for a gap never fails a run that became head meanwhile).
  // `*skipped_before` (if given) says whether expected_head had been skipped already.
  virtual Result<std::string> SkipLaneHead(const std::string& function_id, const std::string& key,
                                           TimePoint now, const std::string& expected_head = "",
                                           std::optional<int64_t> waiting_for = std::nullopt,
                                           bool* skipped_before = nullptr) = 0;
  // The gaps lane (function_id, key) recorded, newest first, but for the announced ones
  // retention deleted (DeleteExpired).
  virtual Result<std::vector<LaneGap>> ListLaneGaps(const std::string& function_id,
                                                    const std::string& key, int limit) = 0;
  // What sequence lanes recorded of the event `internal_id` (stale, duplicate).
  virtual Result<std::vector<LaneOutcome>> LaneOutcomesOf(const std::string& internal_id) = 0;
  // The gap outbox: gaps recorded and not yet announced as funcky/lane.gap, oldest first;
  // and marking them announced.
  virtual Result<std::vector<LaneGap>> PendingLaneGaps(int limit) = 0;
  virtual Status AckLaneGaps(const std::vector<int64_t>& ids) = 0;
  // Gives a blocked head another go (e.g. once the third party is fixed): its failed steps
  // are forgotten, it runs again from its last completed step with fresh attempts, and its
  // head_timeout starts over. Returns its run id; kNotFound when the lane has no head,
  // kFailedPrecondition when the head is not blocked.
  virtual Result<std::string> RetryLaneHead(const std::string& function_id, const std::string& key,
                                            TimePoint now) = 0;
  // Sets the number sequence lane (function_id, key) expects next to `next` (an operator's
  // repair: a producer that sent one wrong, huge number made every real one after it stale).
  // A lane with no head then takes its head as a head's end would (SelectSequenceHead): the
  // run numbered `next`, if it waits, starts now; a lower one waiting, too. With
  // `expected_next`, only when the lane expects that number now (kAborted otherwise, saying
  // what it expects). kNotFound when the key has no sequence lane. Returns the number it
  // expected before.
  struct LaneNextSet {
    std::optional<int64_t> was;       // none: the lane had seen no number
    std::optional<std::string> head;  // the run that became head, if one did
  };
  virtual Result<LaneNextSet> SetLaneNext(const std::string& function_id, const std::string& key,
                                          int64_t next, std::optional<int64_t> expected_next,
                                          TimePoint now) = 0;
};

// Runs waiting for events (step.wait_for_event, step.invoke).
class WaitStore {
 public:
  virtual ~WaitStore() = default;
  // Resumes the waiting step with `memo` at `now`, unless the wait was resumed already
  // (matched, timed out, or the run ended): then false and nothing changes. Whoever holds
  // the wait's timeout item under a lease loses the lease.
  virtual Result<bool> ResolveWait(const std::string& run_id, const std::string& step_id,
                                   const Json& memo, TimePoint now) = 0;
  // Events named `name` that come after (`after_ms`, `after_id`) in (received_at_ms,
  // internal_id) order, oldest first, at most `limit`: a wait's look-back reads from
  // (its start, "") on, page by page, to an empty page (a page holds a few megabytes of
  // payloads at most: one of large events is shorter than `limit` before the last).
  virtual Result<std::vector<EventRecord>> EventsAfter(const std::string& name, int64_t after_ms,
                                                       const std::string& after_id, int limit) = 0;

  // The look-back outbox. Every wait is stored with its look-back pending, in the
  // transaction that registers it; a look-back runs at once after commit, and the sweep's,
  // once the wait is older than its age, is marked done (Intake::LookBack says why twice).
  // Open waits whose look-back is pending, registered before `created_before_ms`, oldest
  // first.
  virtual Result<std::vector<WaitRecord>> PendingLookbacks(int64_t created_before_ms,
                                                           int limit) = 0;
  // The look-back of the wait is done (no event matched). A wait that resumed meanwhile is
  // gone already: nothing to do.
  virtual Status LookbackDone(const std::string& run_id, const std::string& step_id) = 0;

  // The wait outbox. IngestEvents records each new event that open waits may resume (event
  // waits of its name; for a run's end, the invoke wait of its correlation id) in the
  // transaction that stores it. The coordinator that stored it resumes the waits it matches
  // after commit and acknowledges it; an event left (that coordinator stopped in between, or a
  // resume failed) is done by the sweep once older than the sweep age. Events recorded and
  // not acknowledged, received before `received_before_ms`, oldest first.
  virtual Result<std::vector<EventRecord>> PendingResumes(int64_t received_before_ms,
                                                          int limit) = 0;
  // Open waits that `event` may resume and that were registered before it was received
  // (a wait registered since looks back for it itself): event waits of its name in
  // (created_at_ms, run_id, step_id) order from the first after `after` (null: from the
  // first), at most `limit`; with the first page (no `after`), the invoke waits of its
  // correlation id too, not counted in `limit` (one at most in practice).
  virtual Result<std::vector<WaitRecord>> WaitsBefore(const EventRecord& event,
                                                      const WaitRecord* after, int limit) = 0;
  // The waits of `event_ids` were resumed: forget them. Unknown ids are ignored.
  virtual Status AckResumes(const std::vector<std::string>& event_ids) = 0;

  // Resumes the wait that holds `signal` (NewWait::signal) with {"data": {"signal", "data"}}
  // at `now`, as ResolveWait does, and returns its run's id; std::nullopt when no open wait
  // holds it (none registered yet, resumed, timed out, or its run ended).
  virtual Result<std::optional<std::string>> ResolveSignal(const std::string& signal,
                                                           const Json& data, TimePoint now) = 0;
};

struct ActiveRun {
  std::string run_id;
  Json event;  // the run's first event
  int64_t created_at_ms = 0;
};

// Which of intake's background sweeps have something to do (RunControl::DueSweeps).
struct SweepsDue {
  bool lookbacks = false;  // PendingLookbacks(lookbacks_before_ms, …) has waits
  bool lane_gaps = false;  // PendingLaneGaps has gaps
  bool timeouts = false;   // CancelTimedOutRuns has runs past a deadline
  bool run_ends = false;   // PendingRunEnds(ends_before_ms, …) has runs
  bool cancels = false;    // PendingCancels(ends_before_ms, …) has events
  bool resumes = false;    // PendingResumes(ends_before_ms, …) has events
};

// A replay's Idempotency-Key: the request made again with it (its answer lost) gets the run
// the first one started. Scoped to the run replayed; kept as long as both runs are.
struct ReplayKey {
  std::string run_id;  // the run replayed
  std::string key;
};

// Operator and cancel_on actions on runs.
class RunControl {
 public:
  virtual ~RunControl() = default;
  // Ends the run as cancelled with `error`: its queued calls and waits are dropped, a call in
  // flight loses its lease, and its lane (if any) moves on. false when the run had ended
  // already; kNotFound when there is no such run.
  virtual Result<bool> CancelRun(const std::string& run_id, const Json& error, TimePoint now) = 0;
  // Starts `run` for the stored event `event_internal_id` (a replay), as IngestEvents
  // would: queued now, or behind its lane; returns its id. With `key`, the run a start with
  // that key (for that replayed run) started before, if there is one: nothing new is started
  // (ReplayKey). kNotFound when there is no such event, or no run `run.events_of` (or
  // `key->run_id`), also when retention (DeleteExpired) deletes it at the same time. With
  // `functions_generation` (`run` was made from the function set of that generation),
  // kAborted, starting nothing, when a sync has changed the set since (IngestEvents).
  virtual Result<std::string> StartRun(const std::string& event_internal_id, const NewRun& run,
                                       TimePoint now, const ReplayKey* key,
                                       std::optional<int64_t> functions_generation = {}) = 0;
  Status StartRun(const std::string& event_internal_id, const NewRun& run, TimePoint now) {
    return StartRun(event_internal_id, run, now, nullptr).status();
  }
  // Cancels, each in a transaction of its own, up to `limit` runs past a deadline of their
  // `timeouts` at `now`: not started (first claimed) within `start` of their creation, or
  // not finished within `finish` of their start. Each ends as CancelRun ends a run, with a
  // Timeout error; returns their ids. Safe with several coordinators at once.
  virtual Result<std::vector<std::string>> CancelTimedOutRuns(TimePoint now, int limit) = 0;
  // Runs of `function_id` that have not ended and were there before `before_ms`: created
  // before it, for an event received before it (a debounced run whose event a later one
  // replaced belongs to the later event). What a cancel_on event received at `before_ms` may
  // cancel: not the runs of its own request, nor later ones. In run id order, from the first
  // id after `after_run_id` (empty: from the first), `limit` at most: a page, read to an empty
  // one (a page holds a few megabytes of events at most: one of large events is shorter than
  // `limit` before the last).
  virtual Result<std::vector<ActiveRun>> ActiveRuns(const std::string& function_id,
                                                    int64_t before_ms,
                                                    const std::string& after_run_id, int limit) = 0;
  // The runs of ActiveRuns(function_id, before_ms, …) created at `created_from_ms` or later
  // that have a CancelKey for `rule` whose key is one of `keys` or unset: those an event with
  // those expr::IndexKeys (all of them) may cancel by the rule. Paged as ActiveRuns. The keys
  // of ended runs it comes across (for this rule, and unset ones) are deleted; an ended run's
  // keys for other rules stay until those rules' events come across them, or retention.
  virtual Result<std::vector<ActiveRun>> CancelCandidates(
      const std::string& function_id, const std::string& rule, const std::vector<std::string>& keys,
      int64_t before_ms, int64_t created_from_ms, const std::string& after_run_id, int limit) = 0;

  // The run-end outbox. Every transaction that ends a run (completed, failed, cancelled)
  // also records the run here; the end is announced after commit and then acknowledged.
  // Runs whose end is recorded and not acknowledged, that ended before `ended_before_ms`
  // (0: any time), oldest first.
  virtual Result<std::vector<std::string>> PendingRunEnds(int64_t ended_before_ms, int limit) = 0;
  // The ends of `run_ids` were announced: forget them. Unknown ids are ignored.
  virtual Status AckRunEnds(const std::vector<std::string>& run_ids) = 0;

  // The cancel_on outbox. IngestEvents records each new event marked NewEvent::cancels in
  // the transaction that stores it; the runs it cancels are cancelled after commit, and
  // again by the sweep once it is older than the sweep age (a run whose creation raced it),
  // which then acknowledges it. Events recorded and not acknowledged, received before
  // `received_before_ms` (0: any time), oldest first.
  virtual Result<std::vector<EventRecord>> PendingCancels(int64_t received_before_ms,
                                                          int limit) = 0;
  // The runs `event_ids` cancel were cancelled: forget them. Unknown ids are ignored.
  virtual Status AckCancels(const std::vector<std::string>& event_ids) = 0;

  // Whether each of the sweeps above has something to do at `now`, in one statement: an idle
  // coordinator's sweep is one short transaction rather than one for each kind.
  virtual Result<SweepsDue> DueSweeps(int64_t lookbacks_before_ms, int64_t ends_before_ms,
                                      TimePoint now) = 0;
};

// Deletion of old history (--retain). Idempotent: several coordinators may run it at once.
class Retention {
 public:
  virtual ~Retention() = default;
  // Deletes, in one transaction, up to `batch` finished runs (completed, failed, cancelled)
  // that ended before `horizon`, with their steps, attempts, queue items and waits, and up
  // to `batch` events received before `horizon` that no remaining run refers to. A run
  // that has not ended, or whose end is not yet announced (PendingRunEnds), is never
  // deleted, nor is the event of a run that is kept, nor one whose cancels or resumes are
  // pending (PendingCancels, PendingResumes), nor a run whose number its sequence lane has not
  // reached (one cancelled while it waited). With them go the lane outcomes of the deleted events
  // (LaneOutcomesOf) and up to `batch` announced lane gaps recorded before `horizon`
  // (ListLaneGaps); a lane's next number and totals stay. Returns how many runs, events, lane
  // outcomes and lane gaps it deleted: call again until it returns 0.
  virtual Result<int64_t> DeleteExpired(TimePoint horizon, int batch) = 0;
};

// Whether the database answers.
class Health {
 public:
  virtual ~Health() = default;
  // Cheap round trip to the database, for /readyz.
  virtual Status Ping() = 0;
  // How often this process has waited for the database's answer (sql::Database::RoundTrips);
  // none for SQLite.
  virtual std::optional<int64_t> RoundTrips() const = 0;
};

class Store : public AppRegistry,
              public EventStore,
              public RunReader,
              public QueueStore,
              public LaneStore,
              public WaitStore,
              public RunControl,
              public Retention,
              public Health {
 public:
  // Applies pending migrations (idempotent; safe with several coordinators at once).
  // kFailedPrecondition, applying none, when the database has a migration this version does
  // not know that breaks earlier versions (a newer coordinator applied it).
  virtual Status Migrate() = 0;
  // Whether this coordinator may go on with the database: kFailedPrecondition once a
  // migration it does not know that breaks earlier versions has been applied (by a newer
  // coordinator, since this one started); the database's own failures otherwise.
  virtual Status CheckMigrations() = 0;
  // Calls `wake`, on a thread of its own, whenever another process may have made work due
  // now (it accepted events, resumed waits, gave leases back), until the returned watch is
  // destroyed; once more after a lost connection to the database is back. Null when the
  // database cannot tell (SQLite): other processes' work is then found by polling only.
  virtual std::unique_ptr<WorkWatch> WatchForWork(std::function<void()> wake) {
    (void)wake;
    return nullptr;
  }
};

struct PostgresOptions {
  std::string url;  // postgres://user@host:port/db
  int pool_size = 16;
  // A connection's statements are prepared again this long after it opens, and then at
  // doubling intervals up to ten minutes, so their plans follow the tables' growth
  // (postgres_db.cc).
  std::chrono::milliseconds reprepare_first{1000};
};

// Opens a pool of connections. kUnavailable when the database cannot be reached.
Result<std::unique_ptr<Store>> OpenPostgresStore(const PostgresOptions& options);

struct SqliteOptions {
  std::string path;  // a file, created if missing
  int busy_timeout_ms = 5000;
};

// Opens (or creates) a SQLite database in WAL mode. For one coordinator (`funcky dev`);
// kUnavailable when the file cannot be opened.
Result<std::unique_ptr<Store>> OpenSqliteStore(const SqliteOptions& options);

}  // namespace funcky::store
