// Flow control at admission, in the store's transactions: the gates a new run must pass
// before it is created (store.h NewRun::rate, NewRun::singleton) and the skips recorded when
// one refuses it. Called from sql_store.cc's IngestEvents; internal to coordinator/store.
//
// Lock order: IngestEvents locks the runs a singleton cancel in a lane may end
// (LockSingletonTargets), then its lanes, then LockGates locks every gate row of the batch in
// one sorted order, then Admit may lock an active singleton run (its queue items, then its
// row: the order Apply and CancelRun use). A singleton function may have a lane only when
// singleton.key is the lane key's expression, on a lane with neither bypass nor sequence
// (refused at sync otherwise: scheduler/flow.cc, CheckSingletonInLane); the run a cancel ends
// is then in that same lane, whose row IngestEvents locked already. Without a lane,
// cancelling the run locks no lane.
//
// Throttle (NewRun::throttle): its slot row (gate kThrottleGate) is one of LockGates' rows;
// its start row (gate kThrottleStartGate) is locked only by Claim (PaceStarts), after the
// claim's queue rows and concurrency locks, in sorted order.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "coordinator/store/sql/sql.h"
#include "coordinator/store/store.h"

namespace funcky::store {

// Creates (if missing) and locks the gate rows the runs of `events` check, sorted.
void LockGates(sql::Tx& tx, const std::vector<NewEvent>& events);

// Locks the queue items and row of each run a singleton in a lane (mode cancel) of `events`
// may cancel, before the lanes: the order Apply and CancelRun take (queue items, run, then
// lane), so an event cancelling a head as that head ends does not deadlock with it. Taken
// before the singleton rows are locked: a run that holds the key only after this read is
// locked when it is cancelled, as without a lane.
void LockSingletonTargets(sql::Tx& tx, const std::vector<NewEvent>& events);

struct GateDecision {
  bool admitted = true;
  std::vector<std::string> cancelled;  // runs cancelled to admit it (singleton cancel)
};

// Decides whether `run` of the stored event `event_id` is created at `now_ms`, with its gate
// rows locked by LockGates. Admitted: the gates count it (a rate gate's arrival time moves
// on, the singleton key names it; mode cancel cancels the active run). Refused: nothing of
// the gates changes and the skip is recorded in event_skips.
GateDecision Admit(sql::Tx& tx, const std::string& event_id, const NewRun& run, int64_t now_ms);

// Throttle (NewRun::throttle, docs/flow-control.md "throttle"): the start slot of `run`
// arriving at `now_ms`, in Unix ms, and the key's GCRA row moved on past it; null without a
// throttle. The row is locked by LockGates (upserted here if missing). Slots are taken in
// call order, so runs of one key start in the order they were created.
std::optional<int64_t> TakeThrottleSlot(sql::Tx& tx, const NewRun& run, int64_t now_ms);

// Throttle at claim time: of `claimed` (in claim order), the first calls of throttled runs
// that would start faster than their throttle allows — their slot passed while they were
// held back (no coordinator up, a concurrency limit, a lane head) — are taken out, and
// returned as (queue item id, when it may go). Paced by a second GCRA row per key (gate
// kThrottleStartGate), locked here in sorted order after the claim's queue rows.
std::vector<std::pair<int64_t, int64_t>> PaceStarts(sql::Tx& tx, std::vector<QueueItem>& claimed,
                                                    int64_t now_ms);

// The deadline columns of `run`'s row (NewRun::timeouts), as its creation writes them:
// runs.timeout_at_ms, `timeouts.start` after `start_from_ms` (when the run may start: its
// creation, its debounce's due time as in Inngest, where the run is created then, or its
// event's `ts` in the future), and runs.finish_timeout_ms, from which the claim that starts
// the run sets timeout_at_ms (kStartDeadline). Empty without timeouts.
struct RunDeadlines {
  std::optional<int64_t> timeout_at_ms;
  std::optional<int64_t> finish_timeout_ms;
};
RunDeadlines DeadlinesOf(const NewRun& run, int64_t start_from_ms);

// An ended run's statuses, as SQL: `status NOT IN` them is an active run, in the words of the
// partial index runs_timeout (SQLite uses a partial index only for a condition that has its
// index's terms).
inline constexpr const char* kEndedStatuses = "('completed', 'failed', 'cancelled')";

// Run `r` has not ended, in the words of the partial index runs_active: each end sets
// ended_at_ms with the run's status. Said only by the reads meant for that index (a function's
// active runs); a lookup of a run by id tests its status, which does not let the planner take
// runs_active for it (migration 0037). The status is tested too: the index's rows are those
// the status says are active.
inline const std::string kRunNotEnded =
    std::string("r.ended_at_ms IS NULL AND r.status NOT IN ") + kEndedStatuses;

// The SET clause of the claim's UPDATE of runs starting its first call at $2: a run with
// `timeouts.finish` is due then, its `timeouts.start` spent (read before the same statement
// sets started_at_ms).
inline constexpr const char* kStartDeadline =
    "timeout_at_ms = CASE WHEN started_at_ms IS NULL THEN $2 + finish_timeout_ms "
    "ELSE timeout_at_ms END";

// Records `keys` (NewRun::cancel_keys) as those of the run `run_id`, if it exists, in place of
// any it had with `replace` (a debounced run whose event a later one replaced).
void RecordCancelKeys(sql::Tx& tx, const std::string& run_id, const std::vector<CancelKey>& keys,
                      bool replace = false);

// Up to `limit` runs past a deadline at `now_ms`, earliest deadline first.
std::vector<std::string> DueTimeouts(sql::Tx& tx, int64_t now_ms, int limit);
// A condition that is true when DueTimeouts at $1 (now, in ms) has a run: one probe of the
// index of active runs' deadlines (runs_timeout).
std::string AnyTimeoutsDue();

// Retention's reads: up to $2 finished runs that ended before $1 (Unix ms), and events received
// before $1, that may go, locked SKIP LOCKED, oldest first by their ids, which are ULIDs of
// their creation's or receipt's time: a range of the primary key below $3, the least ULID of
// the horizon's millisecond. Each batch reads the rows it deletes and the few old ones kept
// (active, or ended since the horizon), not every row kept since; no index more to write.
// (An event whose id an SDK seeded with a clock ahead of the coordinator's goes once the
// horizon passes its id's time.)
std::string ExpiredRunsQuery();
std::string ExpiredEventsQuery();

// Cancels run `run_id` (CancelRunInTx) if, locked, it is still past a deadline at `now_ms`.
Result<bool> CancelIfTimedOut(sql::Tx& tx, const std::string& run_id, int64_t now_ms);

// The skips recorded for the event, by function id.
std::vector<EventSkip> ReadSkips(sql::Tx& tx, const std::string& event_id);

// Deletes gate rows that no longer hold anything back at `horizon_ms` (an arrival time
// passed, a singleton whose run ended): each admits like a missing row. Returns how many.
int64_t DeleteSpentGates(sql::Tx& tx, int64_t horizon_ms);

// Debounce (NewRun::debounce, docs/flow-control.md "debounce"). Lock order: after
// LockGates, LockDebounces locks every debounce row of the batch in one sorted order; then
// Debounce locks the pending run's queue items, then its row (the order Apply, Claim and
// CancelRun use). A debounce row is never locked by a claim: a claimed run (its item
// leased, or the run started) simply no longer counts as pending, so the next event of the
// key starts a new debounce.
void LockDebounces(sql::Tx& tx, const std::vector<NewEvent>& events);

enum class Debounced {
  kNewRun,  // no pending run of the key: create the run (DebouncedRun), then StartDebounce
  kJoined,  // the event replaced the pending run's event and pushed its first call back
  kLate,    // older than the event the pending run holds: skipped (recorded)
};
// A run is pending while it is queued, never started, and its first call (if it has one yet:
// a run waiting behind its lane's head has none) is not leased.
Debounced Debounce(sql::Tx& tx, const std::string& event_id, const NewRun& run, int64_t now_ms);

// The debounced `run` as CreateRun must create it: its start held `period` from now (at
// most `timeout`) through NewRun::start_at_ms, so its first call is due then, whether it
// is queued at once or later, when it becomes its lane's head.
NewRun DebouncedRun(const NewRun& run, int64_t now_ms);
// When the debounce of `run`, begun at `first_ms`, is due for an event at `now_ms`.
int64_t DebounceDue(const NewRun& run, int64_t first_ms, int64_t now_ms);

// After CreateRun of a debounced run: the key's row names it as the pending run.
void StartDebounce(sql::Tx& tx, const NewRun& run, int64_t now_ms);

// Deletes up to 1000 debounce rows whose run started, ended or is gone. Returns how many.
int64_t DeleteEndedDebounces(sql::Tx& tx);

// batchEvents (NewRun::batch, docs/flow-control.md "batchEvents"). Lock order: after
// LockDebounces, LockBatches locks every batch row of the request in one sorted order; then
// JoinBatch locks the open batch's run's queue items, then its row (the order Apply, Claim
// and CancelRun use). A batch row is never locked by a claim: a claimed run (its item
// leased, or the run started) simply no longer counts as an open batch, so the next event
// of the key opens a new one. The run is created with the batch's first event, its first
// call due at `timeout` (the timer); so a batch becomes one run exactly once, whether it
// fills up or times out.
void LockBatches(sql::Tx& tx, const std::vector<NewEvent>& events);

// Appends the stored event `event_id` (`event_bytes` as JSON) to the open batch of its key,
// if there is one (not full, not timed out at `now_ms`, its run not claimed): true. When
// that fills the batch, its run's first call is due at once and the batch is closed. An
// event that would take the batch past kMaxBatchBytes starts it without the event. false:
// no open batch; create the run, then StartBatch.
bool JoinBatch(sql::Tx& tx, const std::string& event_id, int64_t event_bytes, const NewRun& run,
               int64_t now_ms);

// After CreateRun of a batched run for `event_id`: the run holds the
// event as its first, its first call is due `timeout` from now (and its timeouts.start
// counts from then), and the key's row names it as the open batch.
void StartBatch(sql::Tx& tx, const std::string& event_id, int64_t event_bytes, const NewRun& run,
                int64_t now_ms);

// Deletes up to 1000 batch rows whose run was claimed or is gone, or whose first event is
// older than `horizon_ms` (every batch times out within 60 s). Returns how many.
int64_t DeleteClosedBatches(sql::Tx& tx, int64_t horizon_ms);

// The one cancel path (CancelRun's transaction body, in sql_store.cc): ends the run as
// cancelled with `error`, drops its queue items and waits and moves its lane on. false
// when it had ended; kNotFound when there is no such run.
Result<bool> CancelRunInTx(sql::Tx& tx, const std::string& run_id, const Json& error,
                           int64_t now_ms);

}  // namespace funcky::store
