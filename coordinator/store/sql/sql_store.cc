#include "coordinator/store/sql/sql_store.h"

#include <algorithm>
#include <iterator>
#include <map>
#include <set>
#include <stdexcept>
#include <utility>

#include "common/crypto.h"
#include "common/step_id.h"
#include "common/ulid.h"
#include "coordinator/expr/expr.h"
#include "coordinator/store/claim_rules.h"
#include "coordinator/store/migration.h"
#include "coordinator/store/sql/flow_store.h"

namespace funcky::store {

namespace {

using sql::AnyRow;
using sql::JsonValue;
using sql::ListValue;
using sql::Row;
using sql::Rows;
using sql::Tx;

// The Status of what a transaction body returned.
Status StatusOf(const Status& s) { return s; }
template <typename T>
Status StatusOf(const Result<T>& r) {
  return r.status();
}

// A run's request version: its row's once set (by the reply that named it when that reply
// recorded no step, and by the run's end), else the one its steps were recorded with.
constexpr const char* kRunColumns =
    "r.id, r.function_id, r.event_id, r.status, r.lane_key, r.output, r.error, "
    "COALESCE(NULLIF(r.req_version, -1), "
    "(SELECT max(s.req_version) FROM steps s WHERE s.run_id = r.id), -1), "
    "r.created_at_ms, r.started_at_ms, r.ended_at_ms, r.concurrency_key, "
    "(SELECT e.name FROM events e WHERE e.internal_id = r.event_id)";
constexpr int kRunColumnCount = 13;

// A list reads a value (a run's output or error, an event's payload) only when it is at most
// kListedValueChars long; a longer one is NULL, and a column after the record's says so. A
// page of 500 runs is then a few tens of MiB at most, not 500 outputs of up to the reply limit.
std::string ListedValue(const std::string& column) {
  return "CASE WHEN length(" + column + "::text) > " + std::to_string(kListedValueChars) +
         " THEN NULL ELSE " + column + " END";
}
std::string ValueOmitted(const std::string& column) {
  return "length(" + column + "::text) > " + std::to_string(kListedValueChars);
}

// kRunColumns for a list, then whether the output and the error were omitted.
const std::string kListedRunColumns =
    "r.id, r.function_id, r.event_id, r.status, r.lane_key, " + ListedValue("r.output") + ", " +
    ListedValue("r.error") + ", " +
    std::string(kRunColumns).substr(std::string_view(kRunColumns).find("COALESCE")) + ", " +
    ValueOmitted("r.output") + ", " + ValueOmitted("r.error");

RunRecord ReadRun(const Row& row) {
  RunRecord r;
  r.id = row.Text(0);
  r.function_id = row.Text(1);
  r.event_id = row.Text(2);
  r.status = row.Text(3);
  r.lane_key = row.OptText(4);
  r.output = row.JsonCol(5);
  r.error = row.JsonCol(6);
  r.req_version = row.Int32(7);
  r.created_at_ms = row.Int(8);
  r.started_at_ms = row.OptInt(9);
  r.ended_at_ms = row.OptInt(10);
  r.concurrency_key = row.OptText(11);
  r.event_name = row.Text(12);
  return r;
}

constexpr const char* kFunctionColumns =
    "f.id, f.app_id, f.name, f.config, f.archived, f.updated_at_ms, f.concurrency_limit, "
    "f.key_concurrency_limit, f.key_concurrency_limit2";
constexpr int kFunctionColumnCount = 9;
// The function set's generation (AppRegistry::FunctionGeneration).
constexpr const char* kFunctionGeneration = "SELECT generation FROM function_generation";
// The advisory lock a transaction that makes runs from the function set takes, shared, before
// it reads the set's generation, and a sync that changes a function's cancel rules takes whole
// before it moves the generation on: a run is either made and committed before the sync reads
// the runs it gives cancel keys (SyncApp), or made from the set the sync leaves. In memory,
// with no write; a sync waiting for it holds later takers back (no starvation).
constexpr std::string_view kFunctionSetLock = "function-set";

// Whether the function set is still of `generation`, under kFunctionSetLock.
bool SameFunctionGeneration(Tx& tx, int64_t generation) {
  tx.LockKey(kFunctionSetLock, /*shared=*/true);
  return tx.Count(kFunctionGeneration) == generation;
}

FunctionRecord ReadFunction(const Row& row, int offset = 0) {
  FunctionRecord f;
  f.id = row.Text(offset);
  f.app_id = row.Text(offset + 1);
  f.name = row.Text(offset + 2);
  f.config = row.JsonCol(offset + 3);
  f.archived = row.Bool(offset + 4);
  f.updated_at_ms = row.Int(offset + 5);
  f.concurrency_limit = row.Int32(offset + 6);
  f.key_concurrency_limit = row.Int32(offset + 7);
  f.key_concurrency_limit2 = row.Int32(offset + 8);
  return f;
}

constexpr const char* kEventColumns = "internal_id, id, name, payload, received_at_ms";

// A step's memo's bytes (kMaxLoadedStepBytes): as recorded with it (its compact JSON), or,
// for a step recorded before the column was (migrations postgres 0034, sqlite 0030), measured.
constexpr const char* kStepBytes = "coalesce(memo_bytes, octet_length(memo::text))";

// The most bytes of payloads a page of events or runs with their events holds (WithinPageBytes).
constexpr int64_t kPageBytes = 8 << 20;

// `query`, whose rows (ordered by `order`, at most its LIMIT) carry the JSON column `payload`,
// cut after the row whose payload brings the page to kPageBytes of payloads: at least its first
// row. A page of events is at most 1,000 rows of up to 512 KiB each: read so, half a gigabyte
// (and several times that parsed) at once; cut, a few megabytes. The rows are the outer
// query's columns `columns`, in `order`.
std::string WithinPageBytes(const std::string& query, std::string_view columns,
                            std::string_view payload, std::string_view order) {
  // The rows before this one's: each payload turned into text once.
  return "SELECT " + std::string(columns) + " FROM (SELECT i.*, coalesce(sum(octet_length(i." +
         std::string(payload) + "::text)) OVER (ORDER BY " + std::string(order) +
         " ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING), 0) AS bytes_before FROM (" + query +
         ") i) p WHERE p.bytes_before < " + std::to_string(kPageBytes) + " ORDER BY " +
         std::string(order);
}
// kEventColumns for a list, then whether the payload was omitted.
const std::string kListedEventColumns = "internal_id, id, name, " + ListedValue("payload") +
                                        ", received_at_ms, " + ValueOmitted("payload");

EventRecord ReadEvent(const Row& row) {
  return {row.Text(0), row.Text(1), row.Text(2), row.JsonCol(3), row.Int(4)};
}

EventRecord ReadListedEvent(const Row& row) {
  EventRecord e = ReadEvent(row);
  e.payload_omitted = row.Bool(5);
  return e;
}

constexpr const char* kStepColumns = "step_id, seq, name, status, memo, created_at_ms";

StepRecord ReadStep(const Row& row, int offset = 0) {
  return {row.Text(offset),     row.Int32(offset + 1),   row.Text(offset + 2),
          row.Text(offset + 3), row.JsonCol(offset + 4), row.Int(offset + 5)};
}

std::vector<StepRecord> ReadSteps(Tx& tx, const std::string& run_id) {
  std::vector<StepRecord> out;
  for (Row row : tx.Query(
           std::string("SELECT ") + kStepColumns + " FROM steps WHERE run_id = $1 ORDER BY seq",
           {run_id})) {
    out.push_back(ReadStep(row));
  }
  return out;
}

// The `if` of the invoke wait that `event` (a run's end) may resume: the one naming its
// data.correlation_id; none for an event without one.
std::optional<std::string> InvokeExpressionOf(const Json& event) {
  const Json* data = event.contains("data") ? &event["data"] : nullptr;
  if (!data || !data->is_object()) return std::nullopt;
  auto c = data->find("correlation_id");
  if (c == data->end() || !c->is_string()) return std::nullopt;
  return InvokeWaitExpression(c->get_ref<const std::string&>());
}

// Whether a wait awaits an event named `name` (SQL text; with `invoke_too`, an invoke's wait,
// named inngest/function.finished, too): one probe (AnyRow). As `EXISTS`, PostgreSQL took a
// name's waits from the table's statistics (half of them, with two names in use) and read the
// whole table when the name had none: the end events' names at every run end, and most
// ingested events' names.
std::string WaitOf(std::string_view name, bool invoke_too) {
  return AnyRow("waits w WHERE w.event_name = " + std::string(name) +
                    (invoke_too ? "" : " AND w.kind <> 'invoke'"),
                "w.created_at_ms");
}

// The query of ReadWaits: waits with their runs' first events, `where` choosing which. The
// event (up to 512 KiB) is read only for an `if` that may look at it: one that never names
// `event` (an invoke wait's never does) is evaluated without it. Each wait's run and event are
// looked up by their primary keys (a scalar subquery; every wait has its run, every run its
// event): joined, PostgreSQL guessed the waits of an ingest's names from the whole table's
// (thousands of keyless ones, when another name has them) and read every event of the table
// into a hash at each ingest of a name that has waits.
std::string WaitsQuery(std::string_view where) {
  return std::string(
             "SELECT w.run_id, w.step_id, w.function_id, w.event_name, w.expression, "
             "w.kind, CASE WHEN w.expression LIKE '%event%' THEN (SELECT e.payload FROM runs r "
             "JOIN events e ON e.internal_id = r.event_id WHERE r.id = w.run_id) END, "
             "w.created_at_ms, w.expires_at_ms, w.lookback_from_ms, w.match_key, "
             "(SELECT r.event_id FROM runs r WHERE r.id = w.run_id) AS run_event_id "
             "FROM waits w WHERE ") +
         std::string(where);
}

constexpr int kWaitColumns = 12;  // WaitsQuery's

std::vector<WaitRecord> WaitsOf(const Rows& rows) {
  std::vector<WaitRecord> out;
  for (Row row : rows) {
    out.push_back({row.Text(0), row.Text(1), row.Text(2), row.Text(3), row.Text(4), row.Text(5),
                   row.JsonCol(6), row.Int(7), row.Int(8), row.OptInt(9), row.OptText(10),
                   row.OptText(11).value_or("")});
  }
  return out;
}

// A wait with its run's first event, `where` choosing which.
std::vector<WaitRecord> ReadWaits(Tx& tx, std::string_view where, sql::Params params) {
  return WaitsOf(tx.Query(WaitsQuery(where), params));
}

// ReadRunStates' first query: runs $1 (a JSON list) with their functions, their event, and
// whether they have events of a batch (run_events) or steps, each of which takes one more.
std::string RunStatesQuery() {
  // The event and the two "has any" are looked up by index for each run: scalar subqueries,
  // "has any" as `(… LIMIT 1) IS NOT NULL`. As a join and EXISTS, PostgreSQL guessing few
  // rows on a young database read the whole events table into a hash, and every step of
  // every run into another, to answer for one run (3 times as long at 200 runs).
  return std::string("SELECT ") + kRunColumns + ", " + kFunctionColumns +
         ", (SELECT ev.payload FROM events ev WHERE ev.internal_id = r.event_id), "
         "(SELECT 1 FROM run_events WHERE run_id = r.id LIMIT 1) IS NOT NULL, "
         "(SELECT 1 FROM steps WHERE run_id = r.id LIMIT 1) IS NOT NULL, "
         "NOT (r.had_waits OR r.had_parallel), "
         // The bytes of the steps of a run whose steps may have been recorded without a call
         // built in between (kMaxLoadedStepBytes): one of waits or calls in parallel.
         "CASE WHEN r.had_waits OR r.had_parallel THEN (SELECT sum(" +
         std::string(kStepBytes) +
         ") FROM steps WHERE run_id = r.id) END "
         "FROM runs r JOIN functions f ON f.id = r.function_id WHERE r.id IN @list($1)";
}

// A row of RunStatesQuery: the state it holds (its run, function and event, not a batch's
// events), and what the state still needs read.
struct RunStateRow {
  RunState state;
  bool batch_events = false;  // a batch's run: its events are in run_events
  bool has_steps = false;
  bool one_at_a_time = false;  // never had a wait or calls in parallel (QueueItem's)
};
RunStateRow RunStateOf(const Row& row) {
  RunStateRow out;
  out.state.run = ReadRun(row);
  out.state.function = ReadFunction(row, kRunColumnCount);
  const int more = kRunColumnCount + kFunctionColumnCount;
  out.batch_events = row.Bool(more + 1);
  out.has_steps = row.Bool(more + 2);
  out.one_at_a_time = row.Bool(more + 3);
  if (!row.Null(more + 4) && row.Int(more + 4) > kMaxLoadedStepBytes) {
    out.state.unloaded_step_bytes = row.Int(more + 4);
    out.has_steps = false;  // not read
  }
  if (!out.batch_events && !row.Null(more)) out.state.events.push_back(row.JsonCol(more));
  return out;
}

// Queues a call of `run_id` due at `due_ms`, claimed as if due `ahead_ms` earlier (a first
// call's priority); the function and concurrency keys are copied from the run so a claim
// can count calls in flight without a join.
void EnqueueCall(Tx& tx, const std::string& run_id, std::string_view step_id, int64_t due_ms,
                 int64_t now_ms, const std::optional<Json>& resume = std::nullopt,
                 int64_t ahead_ms = 0) {
  tx.Send(
      "INSERT INTO queue (run_id, step_id, attempt, visible_at_ms, created_at_ms, function_id, "
      "concurrency_key, concurrency_key2, resume, priority_ms) SELECT $1, $2, 0, $3, $4, "
      "function_id, concurrency_key, concurrency_key2, $5::jsonb, $6 FROM runs WHERE id = $1",
      {run_id, step_id, due_ms, now_ms, resume ? JsonValue(*resume) : sql::Value(nullptr),
       ahead_ms});
}

// The first call of a run given it now is due not before the start `slot` kept on the run
// (runs.throttle_slot_ms: a throttle's slot, a cron jitter's or a debounce's start), so a run
// that waited behind its lane's head keeps its pace and a later run of the key never
// overtakes it; a negative priority makes it due that much later, a positive one orders it
// that much earlier in the claim.
struct FirstCall {
  int64_t due_ms;
  int64_t ahead_ms;  // ordered in the claim as if due this much earlier
};
FirstCall FirstCallOf(std::optional<int64_t> slot, int64_t priority_s, int64_t now_ms) {
  int64_t due_ms = std::max(now_ms, slot.value_or(now_ms));
  if (priority_s < 0) due_ms = std::max(due_ms, now_ms - priority_s * 1000);
  return {due_ms, std::max<int64_t>(priority_s, 0) * 1000};
}

// Queues the first call of a run given it now (FirstCallOf), and returns when it is due.
int64_t EnqueueFirstCall(Tx& tx, const std::string& run_id, std::optional<int64_t> slot,
                         int64_t priority_s, int64_t now_ms) {
  const FirstCall first = FirstCallOf(slot, priority_s, now_ms);
  EnqueueCall(tx, run_id, kDiscoveryStepId, first.due_ms, now_ms, std::nullopt, first.ahead_ms);
  return first.due_ms;
}

// Records `run_id` as the head of lane (function_id, key), locked by the caller, since
// `now_ms`; its head_timeout counts from `due_ms`, when its first call is due. The lane's
// depth changes by `depth_change` in the same update (a head that ended: -1).
void SetLaneHead(Tx& tx, const std::string& function_id, const std::string& key,
                 const std::string& run_id, int64_t now_ms, int64_t due_ms,
                 int64_t depth_change = 0) {
  tx.Send(
      "UPDATE lanes SET head_run_id = $3, head_since_ms = $4, "
      "head_deadline_ms = $5 + head_timeout_ms, gap_since_ms = NULL, depth = depth + $6 "
      "WHERE function_id = $1 AND key = $2",
      {function_id, key, run_id, now_ms, due_ms, depth_change});
}

// Makes `run_id`, whose start slot and priority are `slot` and `priority_s`, the head of lane
// (function_id, key), locked by the caller, and gives it its first call (EnqueueFirstCall);
// its head_timeout counts from when that call is due. The run's priority applies only now: a
// lane's order is never changed by it.
void TakeHead(Tx& tx, const std::string& function_id, const std::string& key,
              const std::string& run_id, std::optional<int64_t> slot, int64_t priority_s,
              int64_t now_ms, int64_t depth_change = 0) {
  const int64_t due_ms = EnqueueFirstCall(tx, run_id, slot, priority_s, now_ms);
  SetLaneHead(tx, function_id, key, run_id, now_ms, due_ms, depth_change);
}

// TakeHead for a run whose slot and priority are read from its row.
void TakeHead(Tx& tx, const std::string& function_id, const std::string& key,
              const std::string& run_id, int64_t now_ms) {
  Rows r = tx.Query("SELECT throttle_slot_ms, priority_s FROM runs WHERE id = $1", {run_id});
  TakeHead(tx, function_id, key, run_id, r.empty() ? std::nullopt : r[0].OptInt(0),
           r.empty() ? 0 : r[0].Int(1), now_ms);
}

// The gap_timeout of a sequence lane whose function no longer orders by numbers, while runs
// of it are left (configs' gap timeouts are 1 s at least): it drains (SelectSequenceHead).
constexpr int64_t kDrainingGapTimeout = 0;

// A sequence lane (locked by the caller) that has no head chooses one (a draining one:
// below):
//   1. an unnumbered run (a replay, or a stale number allowed to run), oldest first;
//   2. else the run numbered seq_next — stepping past numbers whose runs ended while they
//      waited (cancelled: their number is used up, not a gap);
//   3. else, when a later number has waited gap_timeout since it arrived (or at once with
//      `give_up`, an operator's skip-head), the lowest waiting number: the numbers before it
//      are recorded as a gap;
//   4. else nobody: the lane waits, and gap_since_ms says since when (the gap timer that
//      ExpireLaneHeads sweeps).
// Returns the new head, if any.
std::optional<std::string> SelectSequenceHead(Tx& tx, const std::string& function_id,
                                              const std::string& key, int64_t now_ms,
                                              const char* give_up = nullptr) {
  Rows lane =
      tx.Query("SELECT seq_next, seq_gap_timeout_ms FROM lanes WHERE function_id = $1 AND key = $2",
               {function_id, key});
  // Draining (kDrainingGapTimeout): its function no longer orders by numbers. Its numbered
  // runs go first, in number order and waiting for no missing one, then the runs that came
  // unnumbered since, in the order they were accepted: they are not let ahead of runs accepted
  // before them (rule 1 would, for as long as events of the key keep coming).
  const bool draining = !lane.empty() && !lane[0].Null(1) && lane[0].Int(1) == kDrainingGapTimeout;
  if (!draining) {
    Rows unnumbered = tx.Query(
        "SELECT id FROM runs WHERE function_id = $1 AND lane_key = $2 AND status = 'queued' "
        "AND lane_number IS NULL ORDER BY lane_seq LIMIT 1",
        {function_id, key});
    if (!unnumbered.empty()) {
      TakeHead(tx, function_id, key, unnumbered[0].Text(0), now_ms);
      return unnumbered[0].Text(0);
    }
  }
  Rows waiting = tx.Query(
      std::string("SELECT id, lane_number, (SELECT min(created_at_ms) FROM runs w WHERE "
                  "w.function_id = $1 AND w.lane_key = $2 AND w.status = 'queued') FROM runs "
                  "WHERE function_id = $1 AND lane_key = $2 AND status = 'queued' ") +
          (draining ? "ORDER BY lane_number IS NULL, lane_number, lane_seq LIMIT 1"
                    : "AND lane_number IS NOT NULL ORDER BY lane_number LIMIT 1"),
      {function_id, key});
  if (waiting.empty()) {
    tx.Send("UPDATE lanes SET gap_since_ms = NULL WHERE function_id = $1 AND key = $2",
            {function_id, key});
    return std::nullopt;
  }
  const std::string lowest = waiting[0].Text(0);
  if (waiting[0].Null(1)) {  // draining, its numbered runs done
    TakeHead(tx, function_id, key, lowest, now_ms);
    return lowest;
  }
  const int64_t m = waiting[0].Int(1);
  const int64_t waited_since = waiting[0].Int(2);
  int64_t next = lane[0].OptInt(0).value_or(m);
  while (next < m && !tx.Query("SELECT 1 FROM runs WHERE function_id = $1 AND lane_key = $2 "
                               "AND lane_number = $3",
                               {function_id, key, next})
                          .empty()) {
    ++next;  // its run ended before it was head
  }
  if (m > next && !give_up && now_ms < waited_since + lane[0].Int(1)) {
    tx.Send("UPDATE lanes SET seq_next = $3, gap_since_ms = $4 WHERE function_id = $1 AND key = $2",
            {function_id, key, next, waited_since});
    return std::nullopt;
  }
  if (m > next) {
    tx.Send(
        "INSERT INTO lane_gaps (function_id, key, first_number, last_number, waited_since_ms, "
        "recorded_at_ms, reason, resumed_run_id) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        {function_id, key, next, m - 1, waited_since, now_ms, give_up ? give_up : kGapTimeout,
         lowest});
    tx.Send("UPDATE lanes SET gaps_total = gaps_total + 1 WHERE function_id = $1 AND key = $2",
            {function_id, key});
  }
  // Past m, or where an operator set the lane past it (SetLaneNext: a lower number waiting
  // runs, and the numbers set past stay so).
  tx.Send("UPDATE lanes SET seq_next = $3 WHERE function_id = $1 AND key = $2",
          {function_id, key, std::max(next, m + 1)});
  TakeHead(tx, function_id, key, lowest, now_ms);
  return lowest;
}

// What AdvanceLane decides by, sent ahead of it (SendLaneReads) and read with the statements
// around it. Kept in storage shared with the callbacks, which may outlive a failed try.
struct LaneReads {
  std::shared_ptr<std::optional<Rows>> lane = std::make_shared<std::optional<Rows>>();
  std::shared_ptr<std::optional<Rows>> next = std::make_shared<std::optional<Rows>>();
};

// Sends AdvanceLane's reads for the head `run_id` of lane (function_id, key): the lane's row,
// locked while `run_id` is its head, and the queued run after the head. The second runs after
// the lock, so it sees what the lane's last writer committed. Where the lane had moved on
// already, or orders by sequence, its rows go unused.
LaneReads SendLaneReads(Tx& tx, const std::string& function_id, const std::string& key,
                        const std::string& run_id) {
  LaneReads reads;
  tx.QueryLater(
      "SELECT seq_gap_timeout_ms, depth FROM lanes WHERE function_id = $1 AND key = $2 "
      "AND head_run_id = $3 {FOR NO KEY UPDATE}",
      {function_id, key, run_id}, [lane = reads.lane](Rows rows) { *lane = std::move(rows); });
  tx.QueryLater(
      "SELECT id, throttle_slot_ms, priority_s FROM runs WHERE function_id = $1 "
      "AND lane_key = $2 AND lane_seq > (SELECT lane_seq FROM runs WHERE id = $3) "
      "AND status = 'queued' ORDER BY lane_seq LIMIT 1",
      {function_id, key, run_id}, [next = reads.next](Rows rows) { *next = std::move(rows); });
  return reads;
}

// The head run `run_id` of lane (function_id, key) has finished: the next run of the key
// (in acceptance order, or in number order for a sequence lane) becomes the head and gets
// its first call, or the lane is removed when it is empty (a sequence lane's row stays: it
// remembers the next number). The caller holds the run's row lock; this takes the lane's,
// with `sent` when the caller sent the reads already (after the run's lock, with nothing of
// the lane written since). Returns false (and changes nothing) when `run_id` is not the head.
bool AdvanceLane(Tx& tx, const std::string& function_id, const std::string& key,
                 const std::string& run_id, int64_t now_ms, const LaneReads* sent = nullptr) {
  // The row is written once: the next head, or no head, with the ended head's place given up.
  const LaneReads reads = sent ? *sent : SendLaneReads(tx, function_id, key, run_id);
  if (!*reads.lane || !*reads.next) tx.Wait();  // unless they were read by the caller's wait
  if (!*reads.lane || !*reads.next) throw std::logic_error("the lane's reads were not read");
  const Rows& lane = **reads.lane;
  const Rows& next = **reads.next;
  if (lane.empty()) return false;  // skipped or timed out already
  const bool sequenced = !lane[0].Null(0);
  if (!sequenced && !next.empty()) {
    TakeHead(tx, function_id, key, next[0].Text(0), next[0].OptInt(1), next[0].Int(2), now_ms,
             /*depth_change=*/-1);
    return true;
  }
  if (!sequenced && lane[0].Int(1) <= 1) {  // the head was the lane's last run
    tx.Send("DELETE FROM lanes WHERE function_id = $1 AND key = $2", {function_id, key});
    return true;
  }
  // A sequence lane chooses its next head below; a lane whose other runs are not queued waits
  // with none.
  tx.Send(
      "UPDATE lanes SET depth = depth - 1, head_run_id = NULL, head_since_ms = NULL, "
      "head_deadline_ms = NULL WHERE function_id = $1 AND key = $2",
      {function_id, key});
  if (sequenced) SelectSequenceHead(tx, function_id, key, now_ms);
  return true;
}

// The head deadline of a lane row (`lanes`) whose head_timeout becomes `timeout` (SQL): a head
// counting down counts to it from where it counted from; one that had none (and has not ended:
// an ended head holds its lane, with no deadline, for a call in flight) from its start, or,
// while it waits for its first call, from when that call is due now (as SetLaneHead counts
// from its due time; a call held back by a concurrency limit is due later each time it is
// held back, which counts from then), and no earlier than it became head (or was retried);
// none without a head.
std::string HeadDeadlineWith(std::string_view timeout) {
  const std::string t(timeout);
  const std::string due =
      "COALESCE((SELECT r.started_at_ms FROM runs r WHERE r.id = lanes.head_run_id), "
      "(SELECT min(q.visible_at_ms) FROM queue q WHERE q.run_id = lanes.head_run_id), "
      "lanes.head_since_ms)";
  return "CASE WHEN " + t + " IS NULL OR lanes.head_run_id IS NULL THEN NULL " +
         "WHEN lanes.head_deadline_ms IS NOT NULL " +
         "THEN lanes.head_deadline_ms - lanes.head_timeout_ms + " + t + " " +
         "WHEN lanes.head_timeout_ms IS NULL AND EXISTS (SELECT 1 FROM runs r WHERE r.id = "
         "lanes.head_run_id AND " +
         kRunNotEnded + ") THEN (CASE WHEN " + due + " > lanes.head_since_ms THEN " + due +
         " ELSE lanes.head_since_ms END) + " + t + " ELSE lanes.head_deadline_ms END";
}

// Takes (creating it if new) the lane row of each lane in `lanes`: the lock every writer of
// a lane takes first, so lanes are always locked in one order (one statement for up to 64
// lanes, which locks their rows in the order of its rows). Each intake brings the lane's
// options up to date; a new sequence lane expects its `start` first (none: the first seen).
// Options as they were are not written again (the conflict's row is locked all the same).
void LockLanes(Tx& tx, const LaneLocks& lanes) {
  std::vector<sql::Value> rows;
  rows.reserve(lanes.size() * 6);
  for (const auto& [lane, options] : lanes) {
    const std::optional<LaneSequencing>& seq = options.sequencing;
    rows.insert(rows.end(),
                {lane.first, lane.second, options.head_timeout_ms,
                 seq ? sql::Value(seq->gap_timeout.count()) : sql::Value(nullptr),
                 seq ? sql::Value(seq->start) : sql::Value(nullptr), seq && seq->run_stale});
  }
  tx.SendRows(
      "INSERT INTO lanes (function_id, key, head_timeout_ms, seq_gap_timeout_ms, seq_start, "
      "seq_run_stale, seq_next)",
      "($1, $2, $3, $4, $5, $6, $5)", rows,
      "ON CONFLICT (function_id, key) DO UPDATE SET head_timeout_ms = EXCLUDED.head_timeout_ms, "
      // The head's deadline with it (as a sync sets it, SyncApp; an intake on an older
      // function set may set it back).
      "head_deadline_ms = " +
          HeadDeadlineWith("EXCLUDED.head_timeout_ms") +
          ", "
          // A lane whose function stopped ordering by numbers drains as a sequence lane
          // (kDrainingGapTimeout) until its runs are gone: its numbered runs first, in number
          // order, which arrival order (the plain lane's) is not.
          "seq_gap_timeout_ms = CASE WHEN EXCLUDED.seq_gap_timeout_ms IS NULL AND lanes.depth > 0 "
          "AND lanes.seq_gap_timeout_ms IS NOT NULL THEN " +
          std::to_string(kDrainingGapTimeout) +
          " ELSE EXCLUDED.seq_gap_timeout_ms END, "
          "seq_start = EXCLUDED.seq_start, seq_run_stale = EXCLUDED.seq_run_stale, "
          "seq_next = COALESCE(lanes.seq_next, EXCLUDED.seq_start) "
          "WHERE lanes.head_timeout_ms IS DISTINCT FROM EXCLUDED.head_timeout_ms "
          "OR lanes.seq_gap_timeout_ms IS DISTINCT FROM EXCLUDED.seq_gap_timeout_ms "
          "OR lanes.seq_start IS DISTINCT FROM EXCLUDED.seq_start "
          "OR lanes.seq_run_stale IS DISTINCT FROM EXCLUDED.seq_run_stale "
          "OR (lanes.seq_next IS NULL AND EXCLUDED.seq_start IS NOT NULL)");
}

// Records that the event `event_id` started no run of sequence lane (function_id, key).
void RecordLaneOutcome(Tx& tx, const std::string& event_id, const NewRun& run, const char* outcome,
                       const std::optional<std::string>& holder, int64_t now_ms) {
  tx.Send(
      "INSERT INTO lane_outcomes (event_id, function_id, key, number, outcome, run_id, "
      "recorded_at_ms) VALUES ($1, $2, $3, $4, $5, $6, $7)",
      {event_id, run.function_id, *run.lane_key, *run.lane_number, outcome, holder, now_ms});
  tx.Send(std::string("UPDATE lanes SET ") +
              (outcome == std::string_view(kStale) ? "stale_total = stale_total + 1"
                                                   : "duplicates_total = duplicates_total + 1") +
              " WHERE function_id = $1 AND key = $2",
          {run.function_id, *run.lane_key});
}

// Deletes the sequence lanes' history that retention has made unneeded, and returns how many
// rows: the outcomes of the events `event_ids` it has just deleted, and up to `batch` gaps. An
// outcome is read only with its event (LaneOutcomesOf, for GET /v1/events/{id}), so it goes
// with it, found by the event's id (lane_outcomes_event) rather than by looking for outcomes
// whose event is gone, which read every old outcome at each pass. None is recorded on an event
// after its deletion: an ingest records them with the event, and a replay holds its event
// (StartRun). A gap is history, like a finished run, once announced (its funcky/lane.gap event
// is stored; until then it is that event's outbox): it goes when recorded before `horizon_ms`
// (lane_gaps_announced). Ordering needs neither: a lane's row keeps its next number and its
// totals, and those and the runs' numbers tell a number sent again stale or a duplicate
// (DeleteExpired keeps the runs of numbers a lane has not reached).
int64_t DeleteLaneHistory(Tx& tx, const std::vector<std::string>& event_ids, int64_t horizon_ms,
                          int batch) {
  int64_t deleted = 0;
  if (!event_ids.empty()) {
    deleted +=
        tx.Exec("DELETE FROM lane_outcomes WHERE event_id IN @list($1)", {ListValue(event_ids)});
  }
  // SKIP LOCKED: gaps another coordinator's retention is deleting wait for the next pass.
  deleted += tx.Exec(
      "DELETE FROM lane_gaps WHERE id IN (SELECT id FROM lane_gaps WHERE announced "
      "AND recorded_at_ms < $1 LIMIT $2 {FOR UPDATE SKIP LOCKED})",
      {horizon_ms, batch});
  return deleted;
}

// A run of a lane that may start at its ingest (StartedCalls): when its lane is free, it
// becomes the head with its first call leased under `token`, set in `item`.
struct StartedLaneHead {
  std::string token;
  int64_t lease_ms = 0;
  std::optional<QueueItem> item;
};

// Creates `run` for the stored event `event_id`, queued now or behind its lane (locked).
// In a sequence lane, a number that has a run already is a duplicate and one below the
// lane's next number is stale: recorded, and no run (a stale one runs unnumbered when the
// lane says so). Returns whether the run was created (false: its id existed, or no run).
bool CreateRun(Tx& tx, const std::string& event_id, const NewRun& run, int64_t now_ms,
               StartedLaneHead* start_here = nullptr) {
  const bool sequenced = run.lane_key && run.sequencing;
  std::optional<int64_t> number = sequenced ? run.lane_number : std::nullopt;
  if (number) {
    Rows holder = tx.Query(
        "SELECT id FROM runs WHERE function_id = $1 AND lane_key = $2 AND lane_number = $3",
        {run.function_id, *run.lane_key, *number});
    if (!holder.empty()) {
      RecordLaneOutcome(tx, event_id, run, kDuplicate, holder[0].Text(0), now_ms);
      return false;
    }
    Rows lane = tx.Query("SELECT seq_next FROM lanes WHERE function_id = $1 AND key = $2",
                         {run.function_id, *run.lane_key});
    if (lane.empty()) throw std::logic_error("lane of run " + run.run_id + " not locked");
    if (lane[0].Null(0)) {  // the first number this lane sees
      tx.Send("UPDATE lanes SET seq_next = $3 WHERE function_id = $1 AND key = $2",
              {run.function_id, *run.lane_key, *number});
    } else if (*number < lane[0].Int(0)) {
      // A stale number that runs anyway names its run: what it became does not hang on the
      // lane's `stale` policy at the time it is read (a sync may have changed it since).
      RecordLaneOutcome(tx, event_id, run, kStale,
                        run.sequencing->run_stale ? std::optional(run.run_id) : std::nullopt,
                        now_ms);
      if (!run.sequencing->run_stale) return false;
      number.reset();  // runs after the head, without a number
    }
  }
  // A throttled run takes its start slot (flow_store.h); a run id stored already takes none,
  // nor does a run that starts later (an event `ts` in the future, a cron tick's jitter):
  // taken now, its slot would push back the key's runs that come meanwhile; the claim paces
  // it once it is due (PaceStarts). A debounced run's start time is its due time, which
  // events push back: it takes its slot now, as before.
  std::optional<int64_t> slot;
  bool throttled = false;
  if (run.throttle && tx.Query("SELECT 1 FROM runs WHERE id = $1", {run.run_id}).empty()) {
    throttled = true;
    const bool starts_later = run.start_at_ms && *run.start_at_ms > now_ms && !run.debounce;
    if (!starts_later) slot = TakeThrottleSlot(tx, run, now_ms);
  }
  // The throttle too, so the claim paces the first call (PaceStarts).
  std::optional<std::string> throttle_key;
  std::optional<int64_t> throttle_interval_us, throttle_burst;
  if (throttled) {
    throttle_key = run.throttle->key;
    throttle_interval_us =
        run.throttle->period.count() * 1000 / std::max<int64_t>(run.throttle->limit, 1);
    throttle_burst = run.throttle->burst;
  }
  // A start time (cron jitter) is kept in the same column: the first call waits for the later.
  if (run.start_at_ms) slot = std::max(slot.value_or(*run.start_at_ms), *run.start_at_ms);
  // A lane's run takes the next place in it first, so its row is written once with it; in
  // acceptance order the run starts now only if the lane was free, in a sequence lane when it
  // is the one head selection picks.
  std::optional<int64_t> lane_seq;
  bool lane_free = false;
  bool draining = false;
  if (run.lane_key) {
    Rows lane = tx.Query(
        "UPDATE lanes SET next_seq = next_seq + 1, depth = depth + 1 "
        "WHERE function_id = $1 AND key = $2 RETURNING next_seq, head_run_id, seq_gap_timeout_ms",
        {run.function_id, *run.lane_key});
    if (lane.empty()) throw std::logic_error("lane of run " + run.run_id + " not locked");
    lane_seq = lane[0].Int(0);
    lane_free = lane[0].Null(1);
    // A sequence lane whose function no longer orders by numbers: its head is chosen as a
    // sequence lane's (its numbered runs first), not this run at once.
    draining = !sequenced && !lane[0].Null(2);
  }
  // A free lane's head at once, due now: running, its first call leased to the ingesting
  // coordinator.
  const bool start_now =
      lane_free && !sequenced && !draining && start_here && !slot && run.priority_s == 0;
  // timeouts.start counts from when the run may start: its creation, its debounce's due time
  // (DebouncedRun), its event's `ts` in the future; a run started now is due to finish.
  RunDeadlines deadlines = DeadlinesOf(run, std::max(now_ms, run.start_at_ms.value_or(0)));
  if (start_now) {
    deadlines.timeout_at_ms.reset();
    if (deadlines.finish_timeout_ms)
      deadlines.timeout_at_ms = now_ms + *deadlines.finish_timeout_ms;
  }
  if (tx.Exec("INSERT INTO runs (id, function_id, event_id, status, lane_key, concurrency_key, "
              "created_at_ms, lane_number, throttle_slot_ms, throttle_key, throttle_interval_us, "
              "throttle_burst, concurrency_key2, priority_s, lane_seq, started_at_ms, "
              "timeout_at_ms, finish_timeout_ms) "
              "VALUES ($1, $2, $3, $14, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $15, $16, "
              "$17, $18) ON CONFLICT DO NOTHING",
              {run.run_id, run.function_id, event_id, run.lane_key, run.concurrency_key, now_ms,
               number, slot, throttle_key, throttle_interval_us, throttle_burst,
               run.concurrency_key2, run.priority_s, start_now ? kRunning : kQueued, lane_seq,
               start_now ? std::optional<int64_t>(now_ms) : std::nullopt, deadlines.timeout_at_ms,
               deadlines.finish_timeout_ms}) == 0) {
    if (run.lane_key) {  // stored already: its place is given back (the lane is locked)
      tx.Send(
          "UPDATE lanes SET next_seq = next_seq - 1, depth = depth - 1 "
          "WHERE function_id = $1 AND key = $2",
          {run.function_id, *run.lane_key});
    }
    return false;
  }
  if (!run.lane_key) {
    EnqueueFirstCall(tx, run.run_id, slot, run.priority_s, now_ms);
    return true;
  }
  if (!lane_free) return true;  // behind the head
  if (sequenced || draining) {
    SelectSequenceHead(tx, run.function_id, *run.lane_key, now_ms);
  } else if (start_now) {
    Rows item = tx.Query(
        "INSERT INTO queue (run_id, step_id, attempt, visible_at_ms, created_at_ms, function_id, "
        "concurrency_key, concurrency_key2, lease_token, claims) SELECT $1, $2, 0, $3, $4, "
        "function_id, concurrency_key, concurrency_key2, $5, 1 FROM runs WHERE id = $1 "
        "RETURNING id",
        {run.run_id, kDiscoveryStepId, now_ms + start_here->lease_ms, now_ms, start_here->token});
    SetLaneHead(tx, run.function_id, *run.lane_key, run.run_id, now_ms, now_ms);
    start_here->item = QueueItem{.id = item[0].Int(0),
                                 .run_id = run.run_id,
                                 .step_id = std::string(kDiscoveryStepId),
                                 .lease_token = start_here->token,
                                 .one_at_a_time = true};  // a new run
  } else {
    TakeHead(tx, run.function_id, *run.lane_key, run.run_id, slot, run.priority_s, now_ms);
  }
  return true;
}

// Whether `run` has no gate, deadline, start time or batch of its own.
bool Ungated(const NewRun& run) {
  return !run.rate && !run.singleton && !run.timeouts && !run.throttle && !run.debounce &&
         !run.start_at_ms && !run.batch && !run.events_of;
}

// Whether `run` is created by CreatePlainRuns: nothing of it but its row and its first call,
// or, in a lane that orders by acceptance (LaneTail), its row and its place in the lane.
bool IsPlain(const NewRun& run) { return Ungated(run) && !(run.lane_key && run.sequencing); }

// The end of a lane (locked) as an ingest finds it, and what the ingest's plain runs add to
// it: each takes the next place, and the first becomes the head if the lane had none. The
// lane's row is then written once (ExtendLanes).
struct LaneTail {
  std::optional<int64_t> last_seq;  // lanes.next_seq as read: the last place taken
  bool free = false;                // the lane had no head
  int64_t added = 0;                // runs it gained
  std::string head;                 // the run that became its head, if one did
  int64_t head_due_ms = 0;          // when the head's first call is due
};
using LaneTails = std::map<std::pair<std::string, std::string>, LaneTail>;

// Reads the tails of the lanes (locked) that only plain runs of `events` join, into `tails`
// as the results come; a lane that other runs join too is left to CreateRun.
void ReadLaneTailsLater(Tx& tx, const std::vector<NewEvent>& events,
                        const std::shared_ptr<LaneTails>& tails) {
  std::map<std::pair<std::string, std::string>, bool> only_plain;
  for (const NewEvent& ne : events) {
    for (const NewRun& run : ne.runs) {
      if (!run.lane_key) continue;
      auto [it, fresh] = only_plain.try_emplace({run.function_id, *run.lane_key}, true);
      it->second = it->second && IsPlain(run);
    }
  }
  tails->clear();
  std::vector<sql::Value> lanes;
  for (const auto& [lane, plain] : only_plain) {
    if (!plain) continue;
    tails->emplace(lane, LaneTail{});
    lanes.insert(lanes.end(), {lane.first, lane.second});
  }
  // Up to 64 lanes a statement, each found by its key.
  for (const auto& [sql, params] : Tx::RowsStatements(
           "SELECT l.function_id, l.key, l.next_seq, l.head_run_id, l.seq_gap_timeout_ms FROM (",
           "($1, $2)", ") AS v JOIN lanes l ON l.function_id = v.column1 AND l.key = v.column2",
           lanes)) {
    tx.QueryLater(sql, params, [tails](Rows rows) {
      for (size_t i = 0; i < rows.size(); ++i) {
        LaneTail& tail = tails->at({rows[i].Text(0), rows[i].Text(1)});
        tail.last_seq = rows[i].Int(2);
        // A sequence lane without a head (draining, its function no longer ordering by
        // numbers, and waiting for one) is not free: its runs go first (SelectSequenceHead).
        tail.free = rows[i].Null(3) && rows[i].Null(4);
      }
      // A lane without a row was not locked: the ingest fails below.
    });
  }
}

// Writes what an ingest's plain runs added to their lanes (LaneTail): once a lane, in one
// statement for up to 64 lanes. A lane that got a head (it had none) says since when, and
// when its head's call is due.
void ExtendLanes(Tx& tx, const LaneTails& tails, int64_t now_ms) {
  std::vector<sql::Value> rows;
  for (const auto& [lane, tail] : tails) {
    if (tail.added == 0) continue;
    const bool head = !tail.head.empty();
    rows.insert(rows.end(), {lane.first, lane.second, tail.added,
                             head ? sql::Value(tail.head) : sql::Value(nullptr),
                             head ? sql::Value(now_ms) : sql::Value(nullptr),
                             head ? sql::Value(tail.head_due_ms) : sql::Value(nullptr)});
  }
  if (rows.empty()) return;
  // The VALUES' columns are column1, column2, … on both databases.
  tx.SendRows(
      "UPDATE lanes SET next_seq = next_seq + v.column3, depth = depth + v.column3, "
      "head_run_id = COALESCE(v.column4, head_run_id), "
      "head_since_ms = CASE WHEN v.column4 IS NULL THEN head_since_ms ELSE v.column5 END, "
      "head_deadline_ms = CASE WHEN v.column4 IS NULL THEN head_deadline_ms "
      "ELSE v.column6 + head_timeout_ms END, "
      "gap_since_ms = CASE WHEN v.column4 IS NULL THEN gap_since_ms END FROM (",
      "($1, $2, $3::bigint, $4, $5::bigint, $6::bigint)", rows,
      ") AS v WHERE lanes.function_id = v.column1 AND lanes.key = v.column2");
}

// Removes lanes that LockLanes created but no run joined (a sequence lane's row stays). A
// lane whose tail gained plain runs (ExtendLanes wrote their places) is not empty and is not
// looked at.
void DropEmptyLanes(Tx& tx, const LaneLocks& lanes, const LaneTails& tails) {
  for (const auto& [lane, options] : lanes) {
    if (auto tail = tails.find(lane); tail != tails.end() && tail->second.added > 0) continue;
    tx.Send(
        "DELETE FROM lanes WHERE function_id = $1 AND key = $2 AND depth = 0 "
        "AND seq_gap_timeout_ms IS NULL",
        {lane.first, lane.second});
  }
}

// Creates the plain runs (IsPlain) of one ingest, `rows` their parameters, queued now: one
// statement for the runs and one for their first calls, in the order given, sent with what
// follows (nothing here waits for PostgreSQL). A run's id is a new ULID: one that existed
// fails the transaction. Those `here` marks start at once: created running, their first
// calls leased to `start` (StartedCalls); those `behind` marks wait behind their lane's head,
// with no call yet.
std::vector<std::string> CreatePlainRuns(Tx& tx, const std::vector<const NewRun*>& runs,
                                         const std::vector<sql::Value>& rows,
                                         const std::vector<bool>& here,
                                         const std::vector<bool>& behind, int64_t now_ms,
                                         StartedCalls* start) {
  tx.SendRows(
      "INSERT INTO runs (id, function_id, event_id, status, concurrency_key, created_at_ms, "
      "concurrency_key2, priority_s, started_at_ms, lane_key, lane_seq)",
      "($1, $2, $3, $8, $4, $5, $6, $7, $9, $10, $11)", rows);
  const bool any_here = std::find(here.begin(), here.end(), true) != here.end();
  const std::string token = any_here ? crypto::HexEncode(crypto::RandomBytes(12)) : "";
  std::vector<sql::Value> calls;
  std::vector<std::string> started;
  for (size_t i = 0; i < runs.size(); ++i) {
    const NewRun* run = runs[i];
    if (behind[i]) continue;
    if (here[i]) started.push_back(run->run_id);
    const FirstCall first = FirstCallOf(std::nullopt, run->priority_s, now_ms);
    calls.insert(calls.end(),
                 {run->run_id, std::string(kDiscoveryStepId),
                  here[i] ? now_ms + start->lease.count() : first.due_ms, now_ms, run->function_id,
                  run->concurrency_key, run->concurrency_key2, first.ahead_ms,
                  here[i] ? sql::Value(token) : sql::Value(nullptr), here[i] ? 1 : 0});
  }
  if (calls.empty()) return started;
  constexpr std::string_view kInsert =
      "INSERT INTO queue (run_id, step_id, attempt, visible_at_ms, created_at_ms, function_id, "
      "concurrency_key, concurrency_key2, priority_ms, lease_token, claims)";
  constexpr std::string_view kValues = "($1, $2, 0, $3, $4, $5, $6, $7, $8, $9, $10)";
  if (!any_here) {
    tx.SendRows(kInsert, kValues, calls);
    return started;
  }
  // The started items are for the caller: read with the commit.
  for (auto& [sql, chunk] :
       tx.RowsStatements(kInsert, kValues, "RETURNING id, run_id, lease_token", calls)) {
    tx.QueryLater(sql, chunk, [start, token](Rows rows) {
      for (Row row : rows) {
        if (row.Null(2)) continue;
        // A new run: no wait, no call in parallel.
        start->items.push_back(QueueItem{.id = row.Int(0),
                                         .run_id = row.Text(1),
                                         .step_id = std::string(kDiscoveryStepId),
                                         .lease_token = token,
                                         .one_at_a_time = true});
      }
    });
  }
  return started;
}

// What a run may have left besides the call that ends it, as its row (read under the lock)
// says: the default, for callers that did not read it, assumes everything.
struct RunLeftovers {
  bool had_waits = true;     // registered a wait: waits, and their timeout calls
  bool had_parallel = true;  // had calls out in parallel
};

// Deletes the queue items of the ended run `run_id` but those of calls in flight (leased,
// the lease unexpired); returns whether any of those remain. A call in flight may be running
// at its host still: its item stays until the call's outcome comes back (and is dropped: the
// run is not live) or its lease expires (a claim finds the run ended), so that it counts
// against concurrency limits meanwhile, and the run's lane waits for it (HoldLane).
constexpr const char* kDeleteWorkNotInFlight =
    "DELETE FROM queue WHERE run_id = $1 AND NOT (leased AND visible_at_ms > $2)";
bool DropWorkNotInFlight(Tx& tx, const std::string& run_id, int64_t now_ms) {
  tx.Send(kDeleteWorkNotInFlight, {run_id, now_ms});
  return !tx.Query("SELECT 1 FROM queue WHERE run_id = $1 LIMIT 1", {run_id}).empty();
}

// The ended run `run_id`, if it is the head of lane (function_id, key), keeps the lane while
// a call of it is in flight: no later run of the key gets a call while one of the head's may
// still be running at its host. The last of those calls to end moves the lane on (ApplyWork).
// The head's deadline goes: nothing is left to time out. Returns whether it is the head.
bool HoldLane(Tx& tx, const std::string& function_id, const std::string& key,
              const std::string& run_id) {
  return tx.Exec(
             "UPDATE lanes SET head_deadline_ms = NULL WHERE function_id = $1 AND key = $2 AND "
             "head_run_id = $3",
             {function_id, key, run_id}) > 0;
}

// Ends run `run_id` with `status`: its queued calls and waits go (those `left` says it may
// have), and its lane (if any) moves on, unless a call of it is still in flight
// (DropWorkNotInFlight). The caller holds the run's row lock, and has deleted the ending
// call's own item.
void EndRun(Tx& tx, const std::string& run_id, const std::string& function_id,
            const std::optional<std::string>& lane_key, int64_t now_ms, RunLeftovers left = {},
            const LaneReads* lane_reads = nullptr) {
  // Without waits or parallel calls a run has one queued call at a time (each transition
  // replaces the call it records), and the ending call's is gone.
  const bool in_flight =
      (left.had_waits || left.had_parallel) && DropWorkNotInFlight(tx, run_id, now_ms);
  if (left.had_waits) tx.Exec("DELETE FROM waits WHERE run_id = $1", {run_id});
  if (!lane_key) return;
  if (in_flight && HoldLane(tx, function_id, *lane_key, run_id)) return;
  if (!AdvanceLane(tx, function_id, *lane_key, run_id, now_ms, lane_reads)) {
    // Not the head when the reads were made; but the head's end may have been making this
    // run the head meanwhile, uncommitted then (PostgreSQL: AdvanceLane's locking read passed
    // over the row its snapshot showed with the old head). Locked now, the row is the latest.
    Rows head = tx.Query(
        "SELECT head_run_id FROM lanes WHERE function_id = $1 AND key = $2 {FOR NO KEY UPDATE}",
        {function_id, *lane_key});
    if (!head.empty() && !head[0].Null(0) && head[0].Text(0) == run_id) {
      // It is the head: the call the end queued for it goes (this run's delete above did not
      // see it), and the lane moves on from it once no call of it is in flight.
      if (DropWorkNotInFlight(tx, run_id, now_ms)) {
        HoldLane(tx, function_id, *lane_key, run_id);
        return;
      }
      if (!AdvanceLane(tx, function_id, *lane_key, run_id, now_ms)) {
        throw std::logic_error("the lane's head changed under its lock");
      }
      return;
    }
    // Not the head: it leaves the line behind the head.
    Rows lane = tx.Query(
        "UPDATE lanes SET depth = depth - 1 WHERE function_id = $1 AND key = $2 "
        "RETURNING head_run_id, seq_gap_timeout_ms",
        {function_id, *lane_key});
    // A sequence lane waiting for a number may now have nothing to wait for.
    if (!lane.empty() && lane[0].Null(0) && !lane[0].Null(1)) {
      SelectSequenceHead(tx, function_id, *lane_key, now_ms);
    }
  }
}

// Fails the head of lane (function_id, key) with `error` and moves the lane on. Locks in the
// order every other writer uses: the head's queue items, its run, then the lane. With
// `only_if_due_at`, does nothing unless the head's deadline has passed at that time; with
// `only_run`, unless that run is the head (kAborted).
Result<std::string> FailLaneHead(Tx& tx, const std::string& function_id, const std::string& key,
                                 Json error, int64_t now_ms, std::optional<int64_t> only_if_due_at,
                                 const std::string& only_run = "") {
  Rows head = tx.Query("SELECT head_run_id FROM lanes WHERE function_id = $1 AND key = $2",
                       {function_id, key});
  if (head.empty() || head[0].Null(0)) return LaneHasNoHead(function_id, key);
  const std::string run_id = head[0].Text(0);
  if (!only_run.empty() && run_id != only_run) {
    return Aborted("the head of lane \"" + key + "\" changed meanwhile; look again");
  }
  tx.Query("SELECT id FROM queue WHERE run_id = $1 {FOR UPDATE}", {run_id});
  Rows run = tx.Query("SELECT status, error FROM runs WHERE id = $1 {FOR NO KEY UPDATE}", {run_id});
  Rows lane = tx.Query(
      "SELECT head_deadline_ms FROM lanes WHERE function_id = $1 AND key = $2 "
      "AND head_run_id = $3 {FOR UPDATE}",
      {function_id, key, run_id});
  if (!run.empty() && !lane.empty() && IsTerminalStatus(run[0].Text(0))) {
    return Aborted("the head of lane \"" + key + "\", run " + run_id + ", has ended (" +
                   run[0].Text(0) +
                   "); a call of it still in flight holds the lane until it returns");
  }
  if (run.empty() || lane.empty()) {
    return Aborted("the head of lane \"" + key + "\" changed meanwhile; look again");
  }
  if (only_if_due_at && (lane[0].Null(0) || lane[0].Int(0) > *only_if_due_at)) {
    return Aborted("the head of lane \"" + key + "\" is not due");
  }
  Json cause = run[0].JsonCol(1);
  if (!cause.is_null()) error["cause"] = std::move(cause);
  tx.Send(
      "UPDATE runs SET status = 'failed', error = $2::jsonb, ended_at_ms = $3, "
      "started_at_ms = COALESCE(started_at_ms, $3) WHERE id = $1",
      {run_id, JsonValue(error), now_ms});
  EndRun(tx, run_id, function_id, key, now_ms);
  return run_id;
}

}  // namespace

SqlStore::SqlStore(std::unique_ptr<sql::Database> db) : db_(std::move(db)) {}

SqlStore::~SqlStore() = default;

template <typename Fn>
auto SqlStore::InTransaction(Fn&& fn) -> decltype(fn(std::declval<sql::Tx&>())) {
  using R = decltype(fn(std::declval<sql::Tx&>()));
  std::optional<R> result;
  Status s = Transact([&](sql::Tx& tx) -> Status {
    result.emplace(fn(tx));  // anew on each run of the body
    return StatusOf(*result);
  });
  if (s.ok()) return std::move(*result);
  return R(std::move(s));
}

Status SqlStore::Transact(const std::function<Status(Tx&)>& body, sql::Flights flights) {
  // A transaction the database undid for another's sake (a deadlock it broke, a
  // serialization failure) wrote nothing, and the other has gone on: it runs again at once, a
  // few times, rather than failing its caller.
  for (int tries = 1;; ++tries) {
    Status s = db_->Transact(body, flights);
    if (tries == kConflictTries || !sql::IsConflict(s)) return s;
  }
}

template <typename Fn>
auto SqlStore::InGroupResult(std::string order, Piece piece, bool alone, Fn&& fn,
                             const TwoPart* two_part, bool* one_flight)
    -> decltype(fn(std::declval<sql::Tx&>())) {
  using R = decltype(fn(std::declval<sql::Tx&>()));
  std::optional<R> result;
  Status s = InGroup(
      std::move(order), piece, alone,
      [&](sql::Tx& tx) -> Status {
        result.emplace(fn(tx));  // anew on each run of the body
        return result->status();
      },
      two_part, one_flight);
  if (s.ok()) return std::move(*result);
  return R(std::move(s));
}

Status SqlStore::Migrate() { return db_->Migrate(); }

Status SqlStore::CheckMigrations() {
  int64_t newest = 0;
  int64_t newest_breaking = 0;
  Status s = db_->Transact([&](sql::Tx& tx) {
    sql::Rows rows = tx.Query(kAppliedMigrationsQuery);
    newest = rows[0].Int(0);
    newest_breaking = rows[0].Int(1);
    return Status::Ok();
  });
  if (!s.ok()) return s;
  return CheckAppliedMigrations(db_->KnownMigration(), static_cast<int>(newest),
                                static_cast<int>(newest_breaking));
}

std::optional<int64_t> SqlStore::RoundTrips() const { return db_->RoundTrips(); }

Status SqlStore::Ping() {
  return InTransaction([&](Tx& tx) -> Status {
    tx.Query("SELECT 1");
    return Status::Ok();
  });
}

Result<SyncResult> SqlStore::SyncApp(const AppSync& sync) {
  return InTransaction([&](Tx& tx) -> Result<SyncResult> {
    const AppRecord& app = sync.app;
    tx.LockKey("app:" + app.id);
    std::vector<std::string> ids;
    for (const auto& f : sync.functions) ids.push_back(f.id);
    // And each of its function ids, in one order: two apps that claim one id at once sync one
    // after the other, so the second sees the first's (its upsert overwrote the first app's
    // config and step URLs, under the first app's id, for good).
    std::vector<std::string> locked = ids;
    std::sort(locked.begin(), locked.end());
    for (const std::string& id : locked) tx.LockKey("function:" + id);
    Rows foreign =
        tx.Query("SELECT id, app_id FROM functions WHERE id IN @list($1) AND app_id <> $2 LIMIT 1",
                 {ListValue(ids), app.id});
    if (!foreign.empty()) {
      return FailedPrecondition("function \"" + foreign[0].Text(0) + "\" belongs to app \"" +
                                foreign[0].Text(1) + "\"");
    }
    Rows existing = tx.Query("SELECT checksum FROM apps WHERE id = $1", {app.id});
    const bool modified = existing.empty() || existing[0].Text(0) != app.checksum;
    // The functions whose cancel rules this sync changes (or adds), as their configs say:
    // their runs may lack keys for a rule (below).
    std::set<std::string> new_rules;
    if (modified && !sync.cancel_rules.empty()) {
      std::vector<std::string> with_rules;
      for (const auto& [id, rules] : sync.cancel_rules) with_rules.push_back(id);
      std::map<std::string, Json> before;
      for (Row row : tx.Query("SELECT id, config FROM functions WHERE id IN @list($1)",
                              {ListValue(with_rules)})) {
        before.emplace(row.Text(0), row.JsonCol(1).value("cancel", Json()));
      }
      for (const FunctionRecord& f : sync.functions) {
        if (!sync.cancel_rules.count(f.id)) continue;
        auto was = before.find(f.id);
        if (was == before.end() || was->second != f.config.value("cancel", Json())) {
          new_rules.insert(f.id);
        }
      }
    }
    if (modified) {
      // The transactions that make runs from the set hold kFunctionSetLock shared while they
      // read its generation: taken whole, those made from the old set have committed before
      // the runs are read for their keys (below), and later ones see the new generation when
      // this commits. Only a sync that reads the runs so waits for them, and holds them back.
      if (!new_rules.empty()) tx.LockKey(kFunctionSetLock);
      tx.Send("UPDATE function_generation SET generation = generation + 1");
    }
    tx.Send(
        "INSERT INTO apps (id, url, sdk, framework, checksum, created_at_ms, synced_at_ms) "
        "VALUES ($1, $2, $3, $4, $5, $6, $6) ON CONFLICT (id) DO UPDATE SET url = EXCLUDED.url, "
        "sdk = EXCLUDED.sdk, framework = EXCLUDED.framework, checksum = EXCLUDED.checksum, "
        "synced_at_ms = EXCLUDED.synced_at_ms",
        {app.id, app.url, app.sdk, app.framework, app.checksum, app.synced_at_ms});
    if (modified) {
      for (const auto& f : sync.functions) {
        tx.Send(
            "INSERT INTO functions (id, app_id, name, config, archived, updated_at_ms, "
            "concurrency_limit, key_concurrency_limit, key_concurrency_limit2) "
            "VALUES ($1, $2, $3, $4::jsonb, false, $5, $6, $7, $8) ON CONFLICT (id) DO UPDATE "
            "SET name = EXCLUDED.name, config = EXCLUDED.config, archived = false, "
            "updated_at_ms = EXCLUDED.updated_at_ms, "
            "concurrency_limit = EXCLUDED.concurrency_limit, "
            "key_concurrency_limit = EXCLUDED.key_concurrency_limit, "
            "key_concurrency_limit2 = EXCLUDED.key_concurrency_limit2",
            {f.id, app.id, f.name, JsonValue(f.config), app.synced_at_ms, f.concurrency_limit,
             f.key_concurrency_limit, f.key_concurrency_limit2});
      }
      tx.Send(
          "UPDATE functions SET archived = true, updated_at_ms = $3 "
          "WHERE app_id = $1 AND NOT archived AND id NOT IN @list($2)",
          {app.id, ListValue(ids), app.synced_at_ms});
      // A run made before one of its function's cancel rules was has no key for it: an unset
      // one, so that the rule's events look at it (CancelCandidates).
      for (const auto& [function_id, rules] : sync.cancel_rules) {
        if (!new_rules.count(function_id)) continue;  // its runs have keys for its rules
        for (const std::string& rule : rules) {
          tx.Send(std::string("INSERT INTO run_cancel_keys (run_id, function_id, rule, key) "
                              "SELECT r.id, r.function_id, $2, NULL FROM runs r WHERE "
                              "r.function_id = $1 AND ") +
                      kRunNotEnded +
                      " AND NOT EXISTS (SELECT 1 FROM run_cancel_keys k WHERE k.run_id = r.id "
                      "AND k.rule IN ($2, '*'))",
                  {function_id, rule});
        }
      }
      // The lanes each function has take its timeouts as configured now (AppSync). Rows
      // whose timeouts are as configured are left alone. A sequence lane of a function that
      // no longer orders by numbers drains while it has runs (kDrainingGapTimeout; a plain
      // lane's row when it has none), as LockLanes makes it.
      const std::string gap_timeout =
          "(CASE WHEN seq_gap_timeout_ms IS NULL THEN NULL WHEN $3::bigint IS NOT NULL THEN "
          "$3::bigint WHEN depth > 0 THEN " +
          std::to_string(kDrainingGapTimeout) + " END)";
      for (const auto& [function_id, t] : sync.lane_timeouts) {
        const sql::Value head = t.head_timeout_ms ? sql::Value(*t.head_timeout_ms) : nullptr;
        const sql::Value gap = t.gap_timeout_ms ? sql::Value(*t.gap_timeout_ms) : nullptr;
        tx.Send("UPDATE lanes SET head_deadline_ms = " + HeadDeadlineWith("$2::bigint") +
                    ", head_timeout_ms = $2::bigint, seq_gap_timeout_ms = " + gap_timeout +
                    " WHERE function_id = $1 AND (head_timeout_ms IS DISTINCT FROM "
                    "$2::bigint OR seq_gap_timeout_ms IS DISTINCT FROM " +
                    gap_timeout + ")",
                {function_id, head, gap});
      }
    }
    return SyncResult{modified};
  });
}

Result<std::vector<AppRecord>> SqlStore::ListApps() {
  return InTransaction([&](Tx& tx) -> Result<std::vector<AppRecord>> {
    std::vector<AppRecord> out;
    for (Row row : tx.Query("SELECT id, url, sdk, framework, checksum, created_at_ms, "
                            "synced_at_ms FROM apps ORDER BY id")) {
      out.push_back({row.Text(0), row.Text(1), row.Text(2), row.Text(3), row.Text(4), row.Int(5),
                     row.Int(6)});
    }
    return out;
  });
}

Result<std::vector<FunctionRecord>> SqlStore::ListFunctions() {
  return InTransaction([&](Tx& tx) -> Result<std::vector<FunctionRecord>> {
    std::vector<FunctionRecord> out;
    for (Row row : tx.Query(std::string("SELECT ") + kFunctionColumns +
                            " FROM functions f WHERE NOT f.archived ORDER BY f.id")) {
      out.push_back(ReadFunction(row));
    }
    return out;
  });
}

Result<int64_t> SqlStore::FunctionGeneration() {
  return InTransaction([&](Tx& tx) -> Result<int64_t> { return tx.Count(kFunctionGeneration); });
}

Result<FunctionRecord> SqlStore::GetFunction(const std::string& id) {
  return InTransaction([&](Tx& tx) -> Result<FunctionRecord> {
    Rows r = tx.Query(
        std::string("SELECT ") + kFunctionColumns + " FROM functions f WHERE f.id = $1", {id});
    if (r.empty()) return NotFound("no function \"" + id + "\"");
    return ReadFunction(r[0]);
  });
}

Result<std::vector<IngestedEvent>> SqlStore::IngestEvents(
    const std::vector<NewEvent>& events, TimePoint now, IngestWaits* waits, StartedCalls* start,
    std::optional<int64_t> functions_generation) {
  const int64_t now_ms = UnixMillis(now);
  const LaneLocks lanes = LanesOf(events);
  // An ingest whose runs are each a row and a first call (no lane, gate, deadline, start time,
  // debounce or batch), and whose events cancel nothing, reads nothing but which events it
  // inserted and the functions' generation. Alone, it goes in one flight (InGroup's one_flight),
  // the commit with it: it requires the generation it was given and every event inserted
  // (Tx::Require), and when either is not so (a sync since, an event stored already), nothing is
  // written and it is made again the usual way, which tells what happened. Not for events with ids
  // of their own (idempotency keys): their resends are duplicates by design, and each such miss
  // would cost a flight and a line in PostgreSQL's log.
  const bool may_fly_once =
      lanes.empty() && std::all_of(events.begin(), events.end(), [](const NewEvent& ne) {
        return ne.event.id == ne.event.internal_id && !ne.cancels &&
               std::all_of(ne.runs.begin(), ne.runs.end(),
                           [](const NewRun& run) { return Ungated(run) && !run.lane_key; });
      });
  bool one_flight = false;  // set by InGroup for the try in one flight
  auto ingest = [&](Tx& tx) -> Result<std::vector<IngestedEvent>> {
    // The function set's generation, read first (a sync committed before this transaction
    // is seen) and sent with the events' insert: no round trip of its own. Shared with the
    // callback, which may outlive this frame if a later statement fails.
    auto generation = std::make_shared<std::optional<int64_t>>();
    if (functions_generation) tx.LockKey(kFunctionSetLock, /*shared=*/true);
    if (functions_generation && one_flight) {
      tx.Require(std::string(kFunctionGeneration) + " WHERE generation = $1",
                 {*functions_generation}, 1, [](Rows) {});
    } else if (functions_generation) {
      tx.QueryLater(kFunctionGeneration, {}, [generation](Rows rows) {
        if (!rows.empty()) *generation = rows[0].Int(0);
      });
    }
    LockSingletonTargets(tx, events);  // before the lanes: the order Apply takes
    LockLanes(tx, lanes);
    // The lanes' ends, read with the events' insert below (shared with the callbacks, which
    // may outlive this frame if a later statement fails).
    auto tails = std::make_shared<LaneTails>();
    ReadLaneTailsLater(tx, events, tails);
    LockGates(tx, events);      // flow control (flow_store.h): after the lanes, in one order
    LockDebounces(tx, events);  // then the debounce rows, in one order
    LockBatches(tx, events);    // then the batch rows, in one order
    std::vector<IngestedEvent> out;
    out.reserve(events.size());
    if (waits) *waits = IngestWaits{};  // filled by this try's statements
    bool queued = false;                // a new run has a call any coordinator may claim
    // The events in as few statements as they fill; those already stored are not inserted.
    constexpr std::string_view kInsertEvents =
        "INSERT INTO events (internal_id, id, name, payload, received_at_ms)";
    constexpr std::string_view kEventRow = "($1, $2, $3, $4::jsonb, $5)";
    constexpr size_t kEventValues = 5;  // kEventRow's
    constexpr std::string_view kInserted = "ON CONFLICT DO NOTHING RETURNING internal_id";
    std::vector<sql::Value> rows;
    rows.reserve(events.size() * kEventValues);
    for (const NewEvent& ne : events) {
      const EventRecord& e = ne.event;
      rows.insert(rows.end(), {e.internal_id, e.id, e.name, JsonValue(e.payload), now_ms});
    }
    std::set<std::string> inserted;
    if (one_flight) {
      for (auto& [sql, chunk] : tx.RowsStatements(kInsertEvents, kEventRow, kInserted, rows)) {
        tx.Require(sql, chunk, chunk.size() / kEventValues, [](Rows) {});  // every one of them
      }
      for (const NewEvent& ne : events) inserted.insert(ne.event.internal_id);
    } else {
      for (Row row : tx.QueryRows(kInsertEvents, kEventRow, kInserted, rows)) {
        inserted.insert(row.Text(0));
      }
    }
    if (functions_generation && !one_flight) {
      // Read by now (results come in the order sent), unless no query went since.
      if (!*generation) *generation = tx.Count(kFunctionGeneration);
      if (**generation != *functions_generation) {
        // The group rolls back what this wrote (a write's failure): nothing is stored.
        return Aborted("the functions changed since the events were matched against them");
      }
    }
    // Runs that nothing else in the request looks at (no lane, gate, deadline or start
    // time): inserted together once every event is through.
    std::vector<const NewRun*> plain;
    std::vector<sql::Value> plain_rows;
    std::vector<bool> plain_here;               // started here (StartedCalls)
    std::vector<bool> plain_behind;             // behind its lane's head
    std::vector<sql::Value> plain_cancel_keys;  // their CancelKeys' rows
    int started_here = 0;
    const std::string lane_token = start ? crypto::HexEncode(crypto::RandomBytes(12)) : "";
    if (start) {  // the body may run twice (InGroup)
      start->items.clear();
      start->states.clear();
    }
    for (const NewEvent& ne : events) {
      const EventRecord& e = ne.event;
      if (!inserted.count(e.internal_id)) {
        // The event that holds this internal id (a seed's) first: a clash on it is only a
        // resend when it is the same event.
        Rows existing = tx.Query(
            "SELECT internal_id, payload FROM events WHERE id = $1 OR internal_id = $2 "
            "ORDER BY (internal_id = $2) DESC, (id = $1) DESC LIMIT 1",
            {e.id, e.internal_id});
        if (existing.empty()) return Internal("event conflict without a stored event");
        std::string stored_id = existing[0].Text(0);
        if (stored_id == e.internal_id && !SameEvent(existing[0].JsonCol(1), e.payload)) {
          return EventIdClash(e.internal_id);
        }
        out.push_back({std::move(stored_id), true});
        continue;
      }
      if (ne.cancels) {
        tx.Send("INSERT INTO pending_cancels (event_id, received_at_ms) VALUES ($1, $2)",
                {e.internal_id, now_ms});
      }
      IngestedEvent stored{e.internal_id, false};
      int64_t event_bytes = -1;  // as JSON, measured once if a batch needs it
      for (const NewRun& run : ne.runs) {
        GateDecision gate = Admit(tx, e.internal_id, run, now_ms);
        stored.cancelled.insert(stored.cancelled.end(), gate.cancelled.begin(),
                                gate.cancelled.end());
        if (!gate.cancelled.empty() && run.lane_key) {
          // A singleton in a lane (its key is the lane key, flow.cc CheckSingletonInLane)
          // cancelled the key's run in this lane, whose row the lock above holds; a lane left
          // empty was deleted by the cancel, so it is taken again for the new run.
          const std::pair<std::string, std::string> lane{run.function_id, *run.lane_key};
          LockLanes(tx, LaneLocks{{lane, lanes.at(lane)}});
        }
        if (!gate.admitted) {
          stored.skipped.push_back(run.function_id);
          continue;
        }
        if (run.debounce) {
          const Debounced debounced = Debounce(tx, e.internal_id, run, now_ms);
          if (debounced == Debounced::kJoined) stored.debounced.push_back(run.function_id);
          if (debounced == Debounced::kLate) stored.skipped.push_back(run.function_id);
          if (debounced != Debounced::kNewRun) continue;
        }
        if (run.batch && event_bytes < 0) {
          event_bytes = static_cast<int64_t>(e.payload.dump().size());
        }
        if (run.batch && JoinBatch(tx, e.internal_id, event_bytes, run, now_ms)) {
          stored.batched.push_back(run.function_id);
          continue;
        }
        // Nothing for another coordinator to claim: its first call leased here, or none yet.
        bool unclaimable = false;
        const auto tail_it =
            run.lane_key ? tails->find({run.function_id, *run.lane_key}) : tails->end();
        if (IsPlain(run) && (!run.lane_key || tail_it != tails->end())) {
          // In a lane, it takes the lane's next place, and is the head if the lane was free.
          LaneTail* tail = nullptr;
          std::optional<int64_t> lane_seq;
          if (run.lane_key) {
            tail = &tail_it->second;
            if (!tail->last_seq) {
              throw std::logic_error("lane of run " + run.run_id + " not locked");
            }
            lane_seq = *tail->last_seq + ++tail->added;
          }
          const bool head = tail && tail->free && tail->head.empty();
          const bool behind = tail && !head;
          const bool here = start && run.may_start_here && run.priority_s == 0 &&
                            started_here < start->max && !behind;
          if (head) {
            tail->head = run.run_id;
            tail->head_due_ms =
                here ? now_ms : FirstCallOf(std::nullopt, run.priority_s, now_ms).due_ms;
          }
          started_here += here ? 1 : 0;
          unclaimable = here || behind;  // a run behind its lane's head has no call yet
          plain.push_back(&run);
          plain_here.push_back(here);
          plain_behind.push_back(behind);
          plain_rows.insert(
              plain_rows.end(),
              {run.run_id, run.function_id, e.internal_id, run.concurrency_key, now_ms,
               run.concurrency_key2, run.priority_s, here ? kRunning : kQueued,
               here ? sql::Value(now_ms) : sql::Value(nullptr), run.lane_key, lane_seq});
          for (const CancelKey& k : run.cancel_keys) {
            plain_cancel_keys.insert(plain_cancel_keys.end(),
                                     {run.run_id, run.function_id, k.rule, k.key});
          }
        } else if (!run.debounce) {
          // A lane's run of a function no limit counts may start here if its lane is free.
          StartedLaneHead head{lane_token, start ? start->lease.count() : 0, std::nullopt};
          const bool may = start && run.may_start_here && run.lane_key && !run.sequencing &&
                           !run.timeouts && !run.batch && started_here < start->max;
          CreateRun(tx, e.internal_id, run, now_ms, may ? &head : nullptr);
          if (head.item) {
            start->items.push_back(std::move(*head.item));
            ++started_here;
            unclaimable = true;
          }
        } else if (CreateRun(tx, e.internal_id, DebouncedRun(run, now_ms), now_ms)) {
          StartDebounce(tx, run, now_ms);
        }
        RecordCancelKeys(tx, run.run_id, run.cancel_keys);
        if (run.batch) StartBatch(tx, e.internal_id, event_bytes, run, now_ms);
        // Work for any coordinator, unless its first call is leased here or not queued yet.
        queued = queued || !unclaimable;
      }
      out.push_back(std::move(stored));
    }
    // The runs started here: lane heads (items already known), then plain runs (their items
    // come with the commit); their states, as a claim reads them, too.
    std::vector<std::string> started;
    if (start) {
      for (const QueueItem& item : start->items) started.push_back(item.run_id);
    }
    if (!plain.empty()) {
      for (std::string& id :
           CreatePlainRuns(tx, plain, plain_rows, plain_here, plain_behind, now_ms, start)) {
        started.push_back(std::move(id));
      }
    }
    if (!plain_cancel_keys.empty()) {
      tx.SendRows("INSERT INTO run_cancel_keys (run_id, function_id, rule, key)",
                  "($1, $2, $3, $4)", plain_cancel_keys);
    }
    ExtendLanes(tx, *tails, now_ms);
    if (start) ReadStartedStatesLater(tx, std::move(started), start);
    DropEmptyLanes(tx, lanes, *tails);  // locked for duplicate events and runs a gate skipped
    if (queued) tx.AnnounceWork();
    std::set<std::string> names;
    std::set<std::string> ends;  // the `if`s of the invoke waits that the events meet
    for (const NewEvent& ne : events) {
      names.insert(ne.event.name);
      if (auto end = InvokeExpressionOf(ne.event.payload)) ends.insert(std::move(*end));
    }
    if (!inserted.empty()) {
      // The wait outbox (WaitStore::PendingResumes): the new events that open waits may
      // resume. Whoever resumes them acknowledges them; a crash before that leaves them to
      // the sweep. An invoke wait marks the events of its name (inngest/function.finished)
      // among those of the request, as one correlation id may be another end's too.
      const std::string pending =
          "INSERT INTO pending_resumes (event_id, received_at_ms) "
          "SELECT e.internal_id, e.received_at_ms FROM events e WHERE e.internal_id IN @list($1) "
          "AND (" +
          WaitOf("e.name", /*invoke_too=*/false) +
          " OR EXISTS (SELECT 1 FROM waits w WHERE w.kind = 'invoke' "
          "AND w.expression IN @list($2) AND w.event_name = e.name))";
      const std::vector<sql::Value> params = {ListValue({inserted.begin(), inserted.end()}),
                                              ListValue({ends.begin(), ends.end()})};
      if (waits) {
        // The caller acknowledges those whose waits it resumed: which they are comes back.
        tx.QueryLater(pending + " RETURNING event_id", params, [waits](Rows rows) {
          for (Row row : rows) waits->pending.insert(row.Text(0));
        });
      } else {
        tx.Send(pending, params);
      }
    }
    if (waits) {
      // A duplicate's too: the caller resumes the waits its first ingest may have left.
      // Read for the caller, not for this body: sent with the commit. Event waits with a key
      // (NewWait::match_key) are found by the keys of the events' fields, up to kIngestWaits;
      // of the others, the oldest kIngestWaits of their names are read (the sweep reads the
      // rest: the caller does not acknowledge the outbox then, IngestWaits::complete). Invoke
      // waits, every one named inngest/function.finished, are found by their `if`'s text (an
      // index): an end meets one wait at most, and the 10,000 oldest left the others waiting
      // out their timeouts.
      auto add = [waits](std::vector<WaitRecord> more) {
        waits->open.insert(waits->open.end(), std::make_move_iterator(more.begin()),
                           std::make_move_iterator(more.end()));
      };
      if (!names.empty()) {
        std::set<std::string> keys;
        std::set<std::string> whole;  // names of events with more keys than are looked for
        std::vector<std::string> some;
        for (const NewEvent& ne : events) {
          if (!expr::IndexKeys(ne.event.payload, &some)) whole.insert(ne.event.name);
          keys.insert(std::make_move_iterator(some.begin()), std::make_move_iterator(some.end()));
        }
        if (keys.size() > kIngestKeys) whole = names;
        std::set<std::string> by_key;  // names whose keyed waits are found by the keys
        std::set_difference(names.begin(), names.end(), whole.begin(), whole.end(),
                            std::inserter(by_key, by_key.end()));
        // One statement of up to three parts, each row with its part's number: the oldest
        // waits without a key; those with a key of the events (each name and key looked up
        // in waits_match: a few microseconds each, nothing more when no wait has a key); and
        // for the names in `whole`, the oldest waits with a key, as without one.
        const std::string limit = " ORDER BY w.created_at_ms LIMIT " + std::to_string(kIngestWaits);
        std::vector<sql::Value> params;
        const auto list = [&params](const std::set<std::string>& items) {
          params.push_back(ListValue({items.begin(), items.end()}));
          return "@list($" + std::to_string(params.size()) + ")";
        };
        std::string query;
        const auto part = [&query](int number, const std::string& select) {
          if (!query.empty()) query += " UNION ALL ";
          query += "SELECT p.*, " + std::to_string(number) + " FROM (" + select + ") p";
        };
        part(1, WaitsQuery("w.event_name IN " + list(names) +
                           " AND w.kind <> 'invoke' AND w.match_key IS NULL" + limit));
        if (!by_key.empty() && !keys.empty()) {
          part(2, WaitsQuery("w.event_name IN " + list(by_key) + " AND w.match_key IN " +
                             list(keys) + " AND w.kind <> 'invoke'" + limit));
        }
        if (!whole.empty()) {
          part(3, WaitsQuery("w.event_name IN " + list(whole) +
                             " AND w.kind <> 'invoke' AND w.match_key IS NOT NULL" + limit));
        }
        tx.QueryLater(query, params, [waits, add](Rows rows) {
          std::map<int64_t, size_t> read;  // rows of each part
          for (Row row : rows) ++read[row.Int(kWaitColumns)];
          for (const auto& [part, count] : read) {
            if (count >= static_cast<size_t>(kIngestWaits)) waits->complete = false;
          }
          add(WaitsOf(rows));
        });
      }
      if (!ends.empty()) {
        tx.QueryLater(WaitsQuery("w.kind = 'invoke' AND w.expression IN @list($1)"),
                      {ListValue({ends.begin(), ends.end()})},
                      [add](Rows rows) { add(WaitsOf(rows)); });
      }
    }
    return out;
  };
  // Concurrent POSTs share a transaction, with the executor's work of the moment (InGroup),
  // unless they lock lanes.
  return InGroupResult("", Piece::kWrite, /*alone=*/!lanes.empty(), ingest, nullptr,
                       may_fly_once ? &one_flight : nullptr);
}

Result<std::vector<EventRecord>> SqlStore::ListEvents(const EventFilter& filter) {
  return InTransaction([&](Tx& tx) -> Result<std::vector<EventRecord>> {
    std::vector<EventRecord> out;
    for (Row row : tx.Query("SELECT " + kListedEventColumns +
                                " FROM events WHERE ($1 = '' OR name = $1) "
                                "AND ($2 = '' OR internal_id < $2) "
                                "ORDER BY internal_id DESC LIMIT $3",
                            {filter.name, filter.cursor, filter.limit})) {
      out.push_back(ReadListedEvent(row));
    }
    return out;
  });
}

Result<EventRecord> SqlStore::GetEvent(const std::string& internal_id) {
  return InTransaction([&](Tx& tx) -> Result<EventRecord> {
    Rows r =
        tx.Query(std::string("SELECT ") + kEventColumns + " FROM events WHERE internal_id = $1",
                 {internal_id});
    if (r.empty()) return NotFound("no event \"" + internal_id + "\"");
    return ReadEvent(r[0]);
  });
}

Result<EventRecord> SqlStore::FindEventById(const std::string& id) {
  return InTransaction([&](Tx& tx) -> Result<EventRecord> {
    Rows r = tx.Query(std::string("SELECT ") + kEventColumns + " FROM events WHERE id = $1", {id});
    if (r.empty()) return NotFound("no event with id \"" + id + "\"");
    return ReadEvent(r[0]);
  });
}

Result<std::vector<EventSkip>> SqlStore::EventSkips(const std::string& internal_id) {
  return InTransaction(
      [&](Tx& tx) -> Result<std::vector<EventSkip>> { return ReadSkips(tx, internal_id); });
}

Result<RunRecord> SqlStore::GetRun(const std::string& run_id) {
  return InTransaction([&](Tx& tx) -> Result<RunRecord> {
    Rows r =
        tx.Query(std::string("SELECT ") + kRunColumns + " FROM runs r WHERE r.id = $1", {run_id});
    if (r.empty()) return NotFound("no run \"" + run_id + "\"");
    RunRecord run = ReadRun(r[0]);
    for (Row row : tx.Query("SELECT event_id FROM run_events WHERE run_id = $1 ORDER BY position",
                            {run_id})) {
      run.event_ids.push_back(row.Text(0));
    }
    if (run.event_ids.empty()) run.event_ids.push_back(run.event_id);
    return run;
  });
}

Result<std::vector<RunRecord>> SqlStore::ListRuns(const RunFilter& filter) {
  return InTransaction([&](Tx& tx) -> Result<std::vector<RunRecord>> {
    std::vector<RunRecord> out;
    for (Row row : tx.Query(
             "SELECT " + kListedRunColumns +
                 " FROM runs r WHERE ($1 = '' OR r.function_id = $1) AND ($2 = '' OR r.status = "
                 "$2) AND ($3 = '' OR r.event_id = $3 OR EXISTS (SELECT 1 FROM run_events re WHERE "
                 "re.run_id = r.id AND re.event_id = $3)) AND ($4 = '' OR r.id < $4) "
                 "AND ($6 = '' OR r.lane_key = $6) AND ($7::bigint = 0 OR r.created_at_ms >= $7) "
                 "AND ($8::bigint = 0 OR r.created_at_ms < $8) ORDER BY r.id DESC LIMIT $5",
             {filter.function_id, filter.status, filter.event_id, filter.cursor, filter.limit,
              filter.key, filter.created_from_ms, filter.created_to_ms})) {
      RunRecord run = ReadRun(row);
      run.output_omitted = row.Bool(kRunColumnCount);
      run.error_omitted = row.Bool(kRunColumnCount + 1);
      out.push_back(std::move(run));
    }
    return out;
  });
}

Result<std::vector<StepRecord>> SqlStore::GetSteps(const std::string& run_id) {
  return InTransaction(
      [&](Tx& tx) -> Result<std::vector<StepRecord>> { return ReadSteps(tx, run_id); });
}

Result<std::vector<AttemptRecord>> SqlStore::GetAttempts(const std::string& run_id) {
  return InTransaction([&](Tx& tx) -> Result<std::vector<AttemptRecord>> {
    std::vector<AttemptRecord> out;
    for (Row row : tx.Query("SELECT step_id, name, attempt, outcome, error, started_at_ms, "
                            "ended_at_ms FROM attempts WHERE run_id = $1 ORDER BY id",
                            {run_id})) {
      out.push_back({row.Text(0), row.Text(1), row.Int32(2), row.Text(3), row.JsonCol(4),
                     row.Int(5), row.Int(6)});
    }
    return out;
  });
}

Result<std::vector<QueueItem>> SqlStore::Claim(int max, TimePoint now,
                                               std::chrono::milliseconds lease,
                                               std::vector<RunState>* states) {
  const int64_t now_ms = UnixMillis(now);
  const std::string token = crypto::HexEncode(crypto::RandomBytes(12));
  std::vector<Doubtful> doubtful;
  {
    std::lock_guard lock(doubtful_mu_);
    doubtful = doubtful_;
  }
  auto claimed = InTransaction([&](Tx& tx) -> Result<std::vector<QueueItem>> {
    if (states) states->clear();
    // The reads of due items below stop at their limit only when they read a claim-order
    // index in its order. Planned at each claim (PostgreSQL's choice for them), they cost
    // several times more to plan than to run, and by statistics that often lag the queue (it
    // empties and fills all the time): statistics that count no row make a tie of every plan,
    // and a bitmap scan and sort of every due item has been seen to win it. Claims alone run
    // those two reads, always after this; the claim's other statements look rows up by id.
    tx.PlanByIndex();
    std::vector<std::string> doubtful_claims;
    for (const Doubtful& d : doubtful) {
      if (d.item_id == 0) {
        doubtful_claims.push_back(d.token);
      } else {
        tx.Send(
            "UPDATE queue SET visible_at_ms = $3, lease_token = NULL "
            "WHERE id = $1 AND lease_token = $2",
            {d.item_id, d.token, now_ms});
      }
    }
    if (!doubtful_claims.empty()) {
      tx.Send(
          "UPDATE queue SET visible_at_ms = $2, lease_token = NULL "
          "WHERE lease_token IN @list($1)",
          {ListValue(doubtful_claims), now_ms});
    }
    // Two sets of candidates, each of up to `max` due items (docs/flow-control.md
    // "priority"): the first in claim order (queue_order: the due time less a first call's
    // priority; the key is never after the due time, so the bound on it lets the index scan
    // stop at `now`), the second in due-time order (queue_visible). Items a full limit held
    // back keep their priority, so they can fill the first set; the second set still reaches
    // every due item the way the claim did before priority (held items are hidden and come
    // back behind it), so a boosted backlog behind a limit never starves other work.
    // Admitted in claim order, at most `max`. Ties go by id, which PostgreSQL's two indexes
    // hold as `id + 0` (migration 0020) so that no lookup of an item by id can take them for
    // the primary key.
    std::map<int64_t, std::pair<int64_t, ClaimCandidate>> by_id;  // id -> (order key, item)
    for (const char* order : {"q.visible_at_ms - q.priority_ms <= $1 AND q.visible_at_ms <= $1 "
                              "ORDER BY q.visible_at_ms - q.priority_ms, q.id{ + 0}",
                              "q.visible_at_ms <= $1 ORDER BY q.visible_at_ms, q.id{ + 0}"}) {
      for (Row row : tx.Query(
               std::string("SELECT q.id, q.run_id, q.step_id, q.attempt, q.function_id, "
                           "q.concurrency_key, COALESCE(f.concurrency_limit, 0), "
                           "COALESCE(f.key_concurrency_limit, 0), q.resume, q.concurrency_key2, "
                           "COALESCE(f.key_concurrency_limit2, 0), "
                           "q.visible_at_ms - q.priority_ms "
                           "FROM queue q LEFT JOIN functions f ON f.id = q.function_id WHERE ") +
                   order + " LIMIT $2 {FOR UPDATE OF q SKIP LOCKED}",
               {now_ms, max})) {
        if (by_id.count(row.Int(0))) continue;
        ClaimCandidate c;
        c.item = {row.Int(0), row.Text(1), row.Text(2), row.Int32(3), token};
        c.function_id = row.Text(4);
        c.keys[0] = row.OptText(5);
        c.function_limit = row.Int32(6);
        c.key_limits[0] = row.Int32(7);
        if (!row.Null(8)) c.item.resume = row.JsonCol(8);
        c.keys[1] = row.OptText(9);
        c.key_limits[1] = row.Int32(10);
        const int64_t order_key = row.Int(11);
        by_id.emplace(c.item.id, std::pair{order_key, std::move(c)});
      }
    }
    // In claim order: order key, then id (by_id iterates by id, and the sort is stable).
    std::vector<std::pair<int64_t, ClaimCandidate>> ordered;
    for (auto& [id, keyed] : by_id) ordered.push_back(std::move(keyed));
    std::stable_sort(ordered.begin(), ordered.end(),
                     [](const auto& a, const auto& b) { return a.first < b.first; });
    std::vector<ClaimCandidate> candidates;
    for (auto& [key, c] : ordered) candidates.push_back(std::move(c));
    // Limits hold across coordinators: each limit is counted under a lock (taken in one
    // order), so two claims never admit past it together.
    Admission admitted = AdmitWithinLimits(
        std::move(candidates), static_cast<size_t>(max), [&](const LimitId& limit) {
          if (!limit.key) {
            tx.LockKey(limit.function_id + "\x1e");
            return tx.Count(
                "SELECT count(*) FROM queue WHERE function_id = $1 AND leased "
                "AND visible_at_ms > $2",
                {limit.function_id, now_ms});
          }
          // Each keyed limit has locks and a column of its own: a value of one key is no
          // value of the other.
          const bool second = limit.slot == 1;
          tx.LockKey(limit.function_id + (second ? "\x1d" : "\x1f") + *limit.key);
          return tx.Count(std::string("SELECT count(*) FROM queue WHERE function_id = $1 AND "
                                      "leased AND visible_at_ms > $3 AND ") +
                              (second ? "concurrency_key2" : "concurrency_key") + " = $2",
                          {limit.function_id, *limit.key, now_ms});
        });
    // Throttled first calls that would start too fast wait (flow_store.h).
    for (const auto& [id, at_ms] : PaceStarts(tx, admitted.claimed, now_ms)) {
      tx.Send("UPDATE queue SET visible_at_ms = $2 WHERE id = $1", {id, at_ms});
    }
    std::vector<std::string> claimed_ids, held_ids, run_ids;
    for (const QueueItem& item : admitted.claimed) {
      claimed_ids.push_back(std::to_string(item.id));
      run_ids.push_back(item.run_id);
    }
    for (int64_t id : admitted.held) held_ids.push_back(std::to_string(id));
    if (!claimed_ids.empty()) {
      tx.Send(
          "UPDATE queue SET visible_at_ms = $2, lease_token = $3, claims = claims + 1 "
          "WHERE id IN @ids($1)",
          {ListValue(claimed_ids), now_ms + lease.count(), token});
      tx.Send(std::string("UPDATE runs SET status = 'running', started_at_ms = "
                          "COALESCE(started_at_ms, $2), ") +
                  kStartDeadline + " WHERE id IN @list($1) AND status = 'queued'",
              {ListValue(run_ids), now_ms});
    }
    if (!held_ids.empty()) {
      tx.Send("UPDATE queue SET visible_at_ms = $2 WHERE id IN @ids($1)",
              {ListValue(held_ids), HeldBackUntil(now_ms)});
    }
    if (states && !run_ids.empty()) {
      // The claimed calls' runs as LoadRunState would read them now, in a few statements
      // for the whole claim.
      // Their rows' flags mark the calls of runs whose calls come one at a time.
      std::set<std::string> one_at_a_time;
      std::map<std::string, RunState> by_run = ReadRunStates(tx, run_ids, &one_at_a_time);
      for (QueueItem& item : admitted.claimed) {
        auto it = by_run.find(item.run_id);
        if (it == by_run.end()) return NotFound("no run \"" + item.run_id + "\"");
        states->push_back(it->second);
        item.one_at_a_time = one_at_a_time.count(item.run_id) > 0;
      }
    }
    return std::move(admitted.claimed);
  });
  std::lock_guard lock(doubtful_mu_);
  if (claimed.ok()) {
    std::erase_if(doubtful_, [&](const Doubtful& d) {
      return std::any_of(doubtful.begin(), doubtful.end(), [&](const Doubtful& given_back) {
        return given_back.token == d.token && given_back.item_id == d.item_id;
      });
    });
  } else if (claimed.status().code() == StatusCode::kUnavailable) {
    // Whether it committed is unknown: its items may be leased to nobody.
    RememberDoubtful({token});
  }
  return claimed;
}

void SqlStore::RememberDoubtful(Doubtful d) {
  if (std::any_of(doubtful_.begin(), doubtful_.end(), [&](const Doubtful& known) {
        return known.token == d.token && known.item_id == d.item_id;
      })) {
    return;
  }
  // Bounded, well above what one lost connection can leave (two groups of kMaxGroup applies
  // and a claim): an entry dropped before a claim gave its items back would let a kept call's
  // retry record it twice. A long outage fails transactions before they lease anything.
  if (doubtful_.size() >= kMaxDoubtful) doubtful_.erase(doubtful_.begin());
  doubtful_.push_back(std::move(d));
}

Result<RunState> SqlStore::LoadRunState(const std::string& run_id) {
  // Read in one transaction (one snapshot of the run, its event and its steps), shared with
  // the transitions and other loads of the moment (InGroup).
  return InGroupResult(run_id, Piece::kRead, /*alone=*/false,
                       [&](Tx& tx) { return ReadRunState(tx, run_id); });
}

Result<RunState> SqlStore::ReadRunState(Tx& tx, const std::string& run_id) {
  std::map<std::string, RunState> states = ReadRunStates(tx, {run_id});
  if (states.empty()) return NotFound("no run \"" + run_id + "\"");
  return std::move(states.begin()->second);
}

std::map<std::string, RunState> SqlStore::ReadRunStates(Tx& tx,
                                                        const std::vector<std::string>& run_ids,
                                                        std::set<std::string>* one_at_a_time) {
  // One query for the usual runs (one event, no steps yet: first calls); the events of
  // batches' runs and the steps of runs that have some take one more each.
  std::map<std::string, RunState> out;
  std::vector<std::string> with_steps;
  for (Row row : tx.Query(RunStatesQuery(), {ListValue(run_ids)})) {
    auto [state, batch_events, has_steps, one_by_one] = RunStateOf(row);
    if (one_at_a_time && one_by_one) one_at_a_time->insert(state.run.id);
    if (batch_events) {
      // A batch's run holds its events in run_events, in order.
      for (Row e : tx.Query("SELECT e.payload FROM run_events re JOIN events e "
                            "ON e.internal_id = re.event_id WHERE re.run_id = $1 "
                            "ORDER BY re.position",
                            {state.run.id})) {
        state.events.push_back(e.JsonCol(0));
      }
    }
    if (has_steps) with_steps.push_back(state.run.id);
    std::string id = state.run.id;
    out.emplace(std::move(id), std::move(state));
  }
  if (!with_steps.empty()) {
    for (Row row : tx.Query(std::string("SELECT run_id, ") + kStepColumns +
                                " FROM steps WHERE run_id IN @list($1) ORDER BY run_id, seq",
                            {ListValue(with_steps)})) {
      out.at(row.Text(0)).steps.push_back(ReadStep(row, 1));
    }
  }
  return out;
}

void SqlStore::ReadStartedStatesLater(Tx& tx, std::vector<std::string> run_ids,
                                      StartedCalls* start) {
  if (run_ids.empty()) return;
  // Runs created in this transaction: no steps and no batch's events, so the one query is
  // the whole state. Should one need more, the states are left out and the executor loads
  // each run's state before its call, as for a call without one.
  tx.QueryLater(RunStatesQuery(), {ListValue(run_ids)}, [start](Rows rows) {
    std::map<std::string, RunState> by_run;
    for (Row row : rows) {
      RunStateRow r = RunStateOf(row);
      if (r.batch_events || r.has_steps) return;
      std::string id = r.state.run.id;
      by_run.emplace(std::move(id), std::move(r.state));
    }
    // Read after the items (the statements' results come in the order sent).
    std::vector<RunState> states;
    for (const QueueItem& item : start->items) {
      auto it = by_run.find(item.run_id);
      if (it == by_run.end()) return;
      states.push_back(std::move(it->second));
    }
    start->states = std::move(states);
  });
}

Status SqlStore::Apply(const QueueItem& item, const Transition& t, TimePoint now) {
  auto applied = ApplyInTx(item, t, now, std::nullopt);
  if (applied.ok() && applied->run_ended) return RunEndedMeanwhile(item.run_id);
  return applied.status();
}

Result<Applied> SqlStore::ApplyAndKeep(const QueueItem& item, const Transition& t, TimePoint now,
                                       std::chrono::milliseconds lease) {
  return ApplyInTx(item, t, now, lease);
}

namespace {

// The statuses of a run whose calls' outcomes no longer count: ended (kEndedStatuses), or a
// failed lane head (blocked).
constexpr const char* kRestingStatuses = "('completed', 'failed', 'cancelled', 'blocked')";
// Run $1, while its calls' outcomes still count.
const std::string kLiveRun = std::string(" WHERE id = $1 AND status NOT IN ") + kRestingStatuses;

// The bytes of a text parameter; unset for NULL.
std::optional<int64_t> TextBytes(const sql::Value& v) {
  const auto* text = std::get_if<std::string>(&v.get());
  return text ? std::optional<int64_t>(static_cast<int64_t>(text->size())) : std::nullopt;
}

// Records `steps` (each once: a step already recorded keeps its first record) and `attempts`
// of the run `run_id`, whose row the caller has locked; with `req_version`, the request
// version of the reply that recorded them goes with the steps (kRunColumns reads it there),
// a step recorded already without one (a checkpoint's) taking it too. Nothing here needs a
// result: the statements are sent (Tx::Send), the attempts' rows with the group's
// (Tx::InsertLater). `memos`, when given, are the steps' memos as JsonValue made them (a
// caller that measured them first); else they are made here.
void RecordSteps(Tx& tx, const std::string& run_id, const std::vector<StepRecord>& steps,
                 const std::vector<AttemptRecord>& attempts, int64_t now_ms,
                 std::optional<int> req_version = std::nullopt,
                 std::vector<sql::Value> memos = {}) {
  for (size_t i = 0; i < steps.size(); ++i) {
    const StepRecord& step = steps[i];
    // Dumped once, for the statement and for its bytes (kStepBytes); no memo is SQL's null.
    sql::Value memo = memos.empty() ? JsonValue(step.memo) : std::move(memos[i]);
    const std::optional<int64_t> memo_bytes = TextBytes(memo);
    if (req_version) {
      tx.Send(
          "INSERT INTO steps (run_id, step_id, seq, name, status, memo, created_at_ms, "
          "req_version, memo_bytes) SELECT $1, $2, COALESCE(MAX(seq) + 1, 0), $3, $4, "
          "$5::jsonb, $6, $7, $8 FROM steps WHERE run_id = $1 ON CONFLICT (run_id, step_id) DO "
          "UPDATE SET req_version = excluded.req_version WHERE steps.req_version IS NULL",
          {run_id, step.step_id, step.name, step.status, std::move(memo), now_ms, *req_version,
           memo_bytes});
      continue;
    }
    tx.Send(
        "INSERT INTO steps (run_id, step_id, seq, name, status, memo, created_at_ms, memo_bytes) "
        "SELECT $1, $2, COALESCE(MAX(seq) + 1, 0), $3, $4, $5::jsonb, $6, $7 FROM steps "
        "WHERE run_id = $1 ON CONFLICT (run_id, step_id) DO NOTHING",
        {run_id, step.step_id, step.name, step.status, std::move(memo), now_ms, memo_bytes});
  }
  for (const AttemptRecord& at : attempts) {
    // History nothing reads in the transaction: one statement for a whole group's.
    tx.InsertLater(
        "INSERT INTO attempts (run_id, step_id, name, attempt, outcome, error, started_at_ms, "
        "ended_at_ms)",
        "($1, $2, $3, $4, $5, $6::jsonb, $7, $8)",
        {run_id, at.step_id, at.name, at.attempt, at.outcome, JsonValue(at.error), at.started_at_ms,
         at.ended_at_ms});
  }
}

// Records `t`, the outcome of the call of `item`, in a transaction; with `keep`, leases the
// run's next call to the caller when it can (ApplyAndKeep), under a new lease token or the
// call's (kept_token, below); then `*kept_steps` is what KeptCall::steps says, set once the
// transaction's results are read.
//
// In two parts, so that a group's applies wait for the database once together rather than
// once each (SqlStore::InGroup): Send queues the lease's statement and the run's and reads
// nothing; Finish, once their results have come (Tx::Wait), does the rest. Send may be
// called again (a group that failed runs each piece anew): it starts over.
//
// The lease decides whether anything is written, and its statement comes first. Where it
// can, the check travels with the run's statement in one round trip: the item is given the
// kept call's new lease token, or else locked while it holds the call's (to be deleted by it),
// and the run's statement does nothing unless the item holds that token (`gated`), so a lost
// lease writes nothing there either. (A token is never given to an item twice: once the item
// holds another, it never holds the call's again.) A kept discovery call that waits for the
// run's other calls (next_only_if_idle) is tried that way too: when the run has another call,
// nothing of it applied, and the item is then handled as a call that keeps nothing (a second
// round trip). A retry checks the lease on its own first.
//
// A kept call that would change nothing of its item but its token (the same step, the first
// attempt, no resume: a discovery after a step) keeps the item as it is, token and all, while
// two thirds of a lease remain: the run's statement locks the item in its gate, which also
// asks that much of the lease (and, for a discovery that waits for the run's other calls, that
// the run has none). No statement of the queue's: the item's row is not written. When the gate
// matched nothing, the item is given its new token as above, in a second round trip.
//
// One flight (may_fly_once; SqlStore::InGroup's one_flight): a call kept as it is, and the end of
// a run in no lane, of a run whose calls came one at a time (QueueItem::one_at_a_time), write
// nothing that depends on the run's statement but whether it matched. Run alone, such an apply
// sends that statement as a Tx::Require whose gate also asks that the run still had no wait
// (nor, for a kept call, calls in parallel or checkpointed steps, whose count it would need; nor,
// for an end, a lane), then all it writes, and commits in the same flight. An end deletes all
// of its run's items (a checkpoint may have told of parallel calls since the lease). When the
// gate does not match, nothing was written, and the apply is made again the usual way.
class ApplyWork {
 public:
  ApplyWork(const QueueItem& item, const Transition& t, int64_t now_ms,
            std::optional<std::chrono::milliseconds> keep, std::optional<int64_t>* kept_steps)
      : item_(item),
        t_(t),
        now_ms_(now_ms),
        keep_(keep),
        kept_steps_(kept_steps),
        next_(t.next()),
        end_(t.end()),
        park_(t.park()),
        // Kept: the run's one next call, due now, made by this holder without a claim. It
        // reuses the item (one statement where a delete and an insert were).
        keep_next_(keep && next_ && next_->waits.empty() && next_->next.size() == 1 &&
                   !next_->next[0].resume && UnixMillis(next_->next[0].due) <= now_ms),
        only_if_idle_(keep_next_ && next_->next_only_if_idle &&
                      next_->next[0].step_id == kDiscoveryStepId),
        as_is_(keep_next_ && next_->next[0].step_id == item.step_id && item.attempt == 0 &&
               !item.resume),
        may_fly_once_(item.one_at_a_time && !item.resume &&
                      ((keep_next_ && as_is_) || (end_ && !t.lane))),
        new_token_(keep_next_ ? crypto::HexEncode(crypto::RandomBytes(12)) : std::string()) {}

  // Whether it may go in one flight (above).
  bool may_fly_once() const { return may_fly_once_; }
  // Sets what the run's statement told, after a commit of one flight (Finish did not read it).
  void CompleteOneFlight(Applied& applied) const {
    if (flies_once_ && end_) applied.end_events_stored = !run_->empty() && (*run_)[0].Bool(4);
  }

  // The lease token of the call it may keep, as last sent: a new one, or the call's when the
  // item was kept as it is (kept_as_is); empty when it keeps none.
  const std::string& kept_token() const { return kept_token_; }
  bool kept_as_is() const { return kept_as_is_; }

  // Queues the lease's statement and the run's; with `one_flight` (only if may_fly_once),
  // the run's as a Tx::Require, and Finish then queues the rest without reading anything.
  void Send(Tx& tx, bool one_flight) {
    flies_once_ = one_flight;
    kept_steps_->reset();  // a group that failed may have set it
    // Fresh results each time: a failed group's callbacks may still fill the old ones.
    leased_ = std::make_shared<bool>(false);
    run_ = std::make_shared<Rows>();
    kept_item_.reset();
    owned_ = false;
    gated_ = false;
    locks_in_gate_ = false;
    kept_as_is_ = false;
    if (keep_next_ && as_is_) {
      // The item stays as it is (above); its token is the kept call's.
      kept_token_ = item_.lease_token;
      kept_item_ = QueueItem{item_.id, item_.run_id, item_.step_id, 0, kept_token_};
      gated_ = locks_in_gate_ = kept_as_is_ = true;
    } else if (keep_next_) {
      SendKeptUpdate(tx);
    } else if (t_.retry()) {
      owned_ = tx.Exec(
                   "UPDATE queue SET attempt = attempt + 1, visible_at_ms = $3, "
                   "lease_token = NULL, priority_ms = 0 WHERE id = $1 AND lease_token = $2",
                   {item_.id, item_.lease_token, UnixMillis(t_.retry()->at)}) == 1;
    } else {
      // The run's statement locks the item while it holds the call's lease (rather than
      // giving it a new token: an update of the token writes a new version of the row and of
      // each of its index entries); the item is deleted once that statement has seen it.
      gated_ = locks_in_gate_ = true;
    }
    if (gated_ || owned_) SendRunStatement(tx);
    // The end of a lane's head moves its lane on (EndRun): the lane's reads go now, after the
    // run's lock, rather than in a round trip of their own.
    lane_reads_.reset();
    if (end_ && t_.lane && gated_) {
      lane_reads_ = SendLaneReads(tx, t_.lane->first, t_.lane->second, item_.run_id);
    }
  }

  Result<Applied> Finish(Tx& tx) {
    auto lost = [&] {
      return Aborted("lease on queue item " + std::to_string(item_.id) + " lost");
    };
    if (flies_once_) return FinishOneFlight(tx);
    // Its only kAborted, where nothing was written (Piece::kApply): here, or after a run
    // statement the lost lease kept from writing.
    if (!gated_ && !owned_) return lost();
    if (kept_as_is_ && run_->empty()) {
      // The gate matched nothing: the lease is lost, or has less than two thirds to run, or
      // the run has another call, or is no longer live. The item takes its new token (which
      // tells the lease apart), and the rest goes as for any kept call.
      kept_as_is_ = locks_in_gate_ = false;
      SendKeptUpdate(tx);
      SendRunStatement(tx);
      tx.Wait();
    }
    // The lease's result was read before the run's (results come in the order sent); a gate
    // that locked the item tells it by the run's row, unless the run was not live.
    if (kept_as_is_) {
      owned_ = true;  // the run's row came back: the gate matched
    } else if (locks_in_gate_) {
      owned_ = HeldByGate(tx);
    } else if (gated_) {
      owned_ = *leased_;
    }
    if (!owned_ && only_if_idle_) {
      // The run has another call (or the lease is gone): nothing was written, the run's
      // statement matched nothing. The call keeps nothing; its next call waits for the others.
      kept_item_.reset();
      gated_ = locks_in_gate_ = true;
      SendRunStatement(tx);
      tx.Wait();
      owned_ = HeldByGate(tx);
    }
    if (!owned_) return lost();
    const Rows& run = *run_;
    const std::string& run_id = item_.run_id;
    if (gated_ && !kept_item_) {
      tx.Send("DELETE FROM queue WHERE id = $1 AND lease_token = $2",
              {item_.id, item_.lease_token});
    }
    if (run.empty()) return DropOutcome(tx);
    if (item_.resume) {
      tx.Send("DELETE FROM waits WHERE run_id = $1 AND step_id = $2", {run_id, item_.step_id});
    }
    RecordSteps(tx, run_id, t_.steps, t_.attempts, now_ms_, t_.req_version);
    if (end_) {
      // Its other calls, if it may have any, go after the lock: a parallel call of the run may
      // have queued some since this transaction's first statement.
      // The lane's reads went with the run's statement when the run's lane was known (and is
      // the one its row names).
      const std::optional<std::string> lane_key = run[0].OptText(1);
      const bool reads_fit =
          lane_reads_ && t_.lane && lane_key == t_.lane->second && run[0].Text(0) == t_.lane->first;
      EndRun(tx, run_id, run[0].Text(0), lane_key, now_ms_,
             {.had_waits = run[0].Bool(2), .had_parallel = run[0].Bool(3)},
             reads_fit ? &*lane_reads_ : nullptr);
      if (!run[0].Bool(4)) return Applied();
      for (const EventRecord& e : end_->events) {
        // Nothing reads them in the transaction: one statement for a whole group's. Stored
        // once, as an announcement's would be (their ids derive from the run's).
        tx.InsertLater("INSERT INTO events (internal_id, id, name, payload, received_at_ms)",
                       "($1, $2, $3, $4::jsonb, $5)",
                       {e.internal_id, e.id, e.name, JsonValue(e.payload), now_ms_},
                       "ON CONFLICT DO NOTHING");
      }
      return Applied{.end_events_stored = true};
    }
    if (park_) {
      // What happened before the park stays: a resume item not applied yet whose wait was
      // matched or resolved (marked so by ResolveWaitIn, whatever its due time by this clock),
      // or a timeout or a sleep whose time came, is recorded as its step, as its apply would
      // have (ResumedStep), so that retry-head's replay goes on from it rather than waiting
      // anew for an event that came already. So is one a claim leased (a claim leases due
      // items only): its apply finds the run blocked and is dropped.
      std::vector<StepRecord> resumed;
      for (Row row : tx.Query("SELECT step_id, resume, visible_at_ms <= $2 OR leased FROM queue "
                              "WHERE run_id = $1 AND resume IS NOT NULL ORDER BY id {FOR UPDATE}",
                              {run_id, now_ms_})) {
        const Json resume = row.JsonCol(1);
        if (row.Bool(2) || (resume.is_object() && resume.value("resolved", false))) {
          resumed.push_back(ResumedStep(row.Text(0), resume));
        }
      }
      RecordSteps(tx, run_id, resumed, {}, now_ms_);
      // Otherwise a blocked run waits for nothing: its waits go with their timeout calls. (A
      // wait kept without its timeout call was registered again when retry-head replayed the
      // run, as the insert's conflict, with no timeout call: the head waited for good.) Its
      // other calls in flight stay until they return (DropWorkNotInFlight): they may be
      // running at their hosts, and hold the lane even when the head is then skipped or
      // times out.
      tx.Send(kDeleteWorkNotInFlight, {run_id, now_ms_});
      if (run[0].Bool(2)) tx.Send("DELETE FROM waits WHERE run_id = $1", {run_id});
      return Applied();
    }
    if (!next_) return Applied();  // a retry
    if (kept_item_) {
      kept_item_->one_at_a_time = !run[0].Bool(2) && !run[0].Bool(3);
      // Counted after the run's lock and the inserts, so a step another call of the run
      // recorded is seen; read with the commit (or the next piece's wait). A run that never
      // had another call out at once (had_waits, had_parallel) needs no count.
      if (run[0].Bool(2) || run[0].Bool(3)) {
        tx.QueryLater("SELECT count(*) FROM steps WHERE run_id = $1", {run_id},
                      [kept_steps = kept_steps_](sql::Rows rows) { *kept_steps = rows[0].Int(0); });
      }
      return Applied{KeptCall{*kept_item_, std::nullopt}};
    }
    const bool idle = !next_->next_only_if_idle ||
                      tx.Query("SELECT 1 FROM queue WHERE run_id = $1 LIMIT 1", {run_id}).empty();
    for (const NextCall& n : next_->next) {
      if (!idle && !n.resume && n.step_id == kDiscoveryStepId) continue;
      EnqueueCall(tx, run_id, n.step_id, UnixMillis(n.due), now_ms_, n.resume);
    }
    for (const NewWait& wait : next_->waits) {
      if (wait.kind == kWaitSignal) {
        AddSignalWait(tx, wait);
        continue;
      }
      const int64_t lookback_from =
          wait.lookback_from ? UnixMillis(*wait.lookback_from) : now_ms_ - wait.lookback.count();
      if (tx.Exec("INSERT INTO waits (run_id, step_id, function_id, event_name, expression, "
                  "kind, created_at_ms, expires_at_ms, lookback_from_ms, match_key) SELECT id, "
                  "$2, function_id, $3, $4, $5, $6, $7, $8, $9 FROM runs WHERE id = $1 "
                  "ON CONFLICT DO NOTHING",
                  {run_id, wait.step_id, wait.event_name, wait.expression, wait.kind, now_ms_,
                   UnixMillis(wait.expires_at), lookback_from, wait.match_key}) == 0) {
        continue;
      }
      EnqueueCall(tx, run_id, wait.step_id, UnixMillis(wait.expires_at), now_ms_,
                  Resume(wait.timeout_memo, wait.name));
    }
    return Applied();
  }

 private:
  // A wait for a signal (NewWait::signal): no event name, no look-back; it holds the signal
  // (waits_signal: one open wait a signal) unless another does and it may not take it over,
  // when its step is resumed at once with SignalConflictMemo.
  void AddSignalWait(Tx& tx, const NewWait& wait) {
    const std::string& run_id = item_.run_id;
    // Which wait holds a signal is decided under this lock (PostgreSQL; SQLite has one
    // writer): two waits replacing each other at once could otherwise both miss the other's
    // row and one of them fail.
    tx.LockKey("signal:" + wait.signal);
    // The step's op reported again (a call made again, or a replay while another branch of
    // the run went on) finds its wait registered, or its step resumed already: nothing to do.
    // (A replace made now would take the signal from the wait itself; a wait registered
    // again for a step that has its memo would hold the signal until the run ends.)
    if (!tx.Query("SELECT 1 FROM waits WHERE run_id = $1 AND step_id = $2 UNION ALL "
                  "SELECT 1 FROM steps WHERE run_id = $1 AND step_id = $2 LIMIT 1",
                  {run_id, wait.step_id})
             .empty()) {
      return;
    }
    if (wait.replace_signal) {
      tx.Send("UPDATE waits SET signal = NULL WHERE signal = $1", {wait.signal});
    }
    if (tx.Exec("INSERT INTO waits (run_id, step_id, function_id, event_name, kind, "
                "created_at_ms, expires_at_ms, signal) SELECT id, $2, function_id, '', $3, $4, "
                "$5, $6 FROM runs WHERE id = $1 ON CONFLICT DO NOTHING",
                {run_id, wait.step_id, kWaitSignal, now_ms_, UnixMillis(wait.expires_at),
                 wait.signal}) == 1) {
      EnqueueCall(tx, run_id, wait.step_id, UnixMillis(wait.expires_at), now_ms_,
                  Resume(wait.timeout_memo, wait.name));
      return;
    }
    // Another run's wait holds the signal. The step's resume item, due now: the run goes on
    // and its step fails (the op reported again before that finds the item there).
    if (tx.Query("SELECT 1 FROM queue WHERE run_id = $1 AND step_id = $2 AND resume IS NOT NULL",
                 {run_id, wait.step_id})
            .empty()) {
      EnqueueCall(tx, run_id, wait.step_id, now_ms_, now_ms_,
                  Resume(SignalConflictMemo(wait.signal), wait.name));
    }
  }

  // The call's run is not live (the run statement matched nothing): ended while the call was
  // in flight, or a blocked lane head's. Nothing of the outcome is recorded; the item goes.
  Result<Applied> DropOutcome(Tx& tx) {
    const std::string& run_id = item_.run_id;
    Rows run = tx.Query(
        "SELECT status, function_id, lane_key FROM runs WHERE id = $1 "
        "{FOR NO KEY UPDATE}",
        {run_id});
    if (run.empty()) return NotFound("no run \"" + run_id + "\"");
    tx.Send("DELETE FROM queue WHERE id = $1", {item_.id});  // a kept call's has a new token
    // Blocked: its head waits for an operator (or its head_timeout), not for this call.
    if (!IsTerminalStatus(run[0].Text(0))) return Applied{.run_ended = true};
    // The last of the ended run's calls in flight moves its lane on (EndRun held it).
    if (!DropWorkNotInFlight(tx, run_id, now_ms_) && !run[0].Null(2) &&
        AdvanceLane(tx, run[0].Text(1), run[0].Text(2), run_id, now_ms_)) {
      tx.AnnounceWork();
    }
    return Applied{.run_ended = true};
  }

  // Finish of one flight: what the apply writes, queued behind the run's statement (a
  // Tx::Require), which stops the transaction unless its gate matched.
  Result<Applied> FinishOneFlight(Tx& tx) {
    const std::string& run_id = item_.run_id;
    if (end_) tx.Send("DELETE FROM queue WHERE run_id = $1", {run_id});
    RecordSteps(tx, run_id, t_.steps, t_.attempts, now_ms_, t_.req_version);
    if (end_) {
      // Stored if the run's statement said so (end_events_stored, read after the commit by
      // CompleteOneFlight), as Finish's InsertLater would.
      for (const EventRecord& e : end_->events) {
        tx.Send(
            "INSERT INTO events (internal_id, id, name, payload, received_at_ms) "
            "SELECT $1, $2, $3, $4::jsonb, $5 WHERE EXISTS (SELECT 1 FROM runs WHERE id = $6 "
            "AND end_events_stored) ON CONFLICT DO NOTHING",
            {e.internal_id, e.id, e.name, JsonValue(e.payload), now_ms_, run_id});
      }
      return Applied();
    }
    kept_item_->one_at_a_time = true;  // the gate asked that the run still be so
    return Applied{KeptCall{*kept_item_, std::nullopt}};
  }

  // Gives the item the kept call's step and new token (kept_item_), leaving its lease as it
  // is while two thirds of a lease remain (its heartbeat renews it a third of a lease in): the
  // update then changes no indexed column and can be HOT in PostgreSQL (migration 0018). Its
  // result goes to leased_.
  void SendKeptUpdate(Tx& tx) {
    kept_token_ = new_token_;
    std::vector<sql::Value> params = {
        item_.id, item_.lease_token, next_->next[0].step_id, now_ms_ + keep_->count(),
        now_ms_,  kept_token_,       LeaseLeftEnoughUntil()};
    if (only_if_idle_) params.emplace_back(item_.run_id);
    tx.QueryLater(
        std::string("UPDATE queue SET step_id = $3, attempt = 0, visible_at_ms = CASE WHEN "
                    "visible_at_ms < $7 THEN $4::bigint ELSE visible_at_ms END, "
                    "created_at_ms = $5, lease_token = $6, claims = 1, resume = NULL, "
                    "priority_ms = 0 WHERE id = $1 AND lease_token = $2") +
            (only_if_idle_ ? " AND NOT EXISTS (SELECT 1 FROM queue o WHERE o.run_id = $8 "
                             "AND o.id <> $1) RETURNING id"
                           : " RETURNING id"),
        params, Mine());
    kept_item_ = QueueItem{item_.id, item_.run_id, next_->next[0].step_id, 0, kept_token_};
    gated_ = true;
  }

  // A kept call's lease runs on from the call's while it lasts until at least this time: two
  // thirds of a lease from now (its heartbeat renews it a third of a lease in).
  int64_t LeaseLeftEnoughUntil() const { return now_ms_ + keep_->count() * 2 / 3; }

  // Sets the lease's result as it is read (shared with the callback, which may outlive a
  // failed try).
  std::function<void(sql::Rows)> Mine() {
    return [leased = leased_](sql::Rows rows) { *leased = !rows.empty(); };
  }

  // Whether the call holds its lease, once the run's statement, whose gate locked the item,
  // has been read: its row says so, unless the run was not live (then the item is looked at).
  bool HeldByGate(Tx& tx) {
    return !run_->empty() ||
           !tx.Query("SELECT id FROM queue WHERE id = $1 AND lease_token = $2 {FOR UPDATE}",
                     {item_.id, item_.lease_token})
                .empty();
  }

  // The run's row, locked by the statement that records its new status (or by a lock alone
  // when nothing of it changes); its result goes to run_ (read by Finish).
  void SendRunStatement(Tx& tx) {
    auto send = [&](std::string sql, std::vector<sql::Value> params, const char* returning) {
      if (gated_) {
        const std::string id = "$" + std::to_string(params.size() + 1);
        const std::string token = "$" + std::to_string(params.size() + 2);
        params.emplace_back(item_.id);
        params.emplace_back(kept_item_ ? kept_token_ : item_.lease_token);
        std::string fresh;
        if (kept_as_is_) {
          fresh = " AND visible_at_ms >= $" + std::to_string(params.size() + 1);
          params.emplace_back(LeaseLeftEnoughUntil());
        }
        sql += " AND EXISTS (SELECT 1 FROM queue WHERE id = " + id + " AND lease_token = " + token +
               fresh + (locks_in_gate_ ? " {FOR UPDATE})" : ")");
        if (kept_as_is_ && only_if_idle_) {
          sql +=
              " AND NOT EXISTS (SELECT 1 FROM queue o WHERE o.run_id = $1 AND o.id <> " + id + ")";
        }
      }
      auto read = [run = run_](sql::Rows rows) { *run = std::move(rows); };
      if (!flies_once_) return tx.QueryLater(sql + returning, params, std::move(read));
      sql += end_ ? " AND NOT had_waits AND lane_key IS NULL"
                  : " AND NOT had_waits AND NOT had_parallel";
      tx.Require(sql + returning, params, 1, std::move(read));
    };
    constexpr const char* kReturning = " RETURNING function_id, lane_key, had_waits, had_parallel";
    const Transition& t = t_;
    const Transition::Continue* next = next_;
    if (end_) {
      // The end's events go with it, unless a run waits for an event of their names: intake
      // resumes that wait as it announces them (the run-end outbox, which the runs_end trigger
      // fills unless end_events_stored); or unless a sync changed the functions since intake
      // found that none acts on them.
      std::set<std::string> names;
      for (const EventRecord& e : end_->events) names.insert(e.name);
      std::vector<sql::Value> params = {
          item_.run_id, end_->status,  JsonValue(end_->output), JsonValue(end_->error),
          now_ms_,      t.req_version, !end_->events.empty(),   end_->functions_generation};
      // No wait of each name (one or two: the end's events), each looked for by an index
      // probe (WaitOf).
      std::string no_wait;
      for (const std::string& name : names) {
        params.push_back(name);
        no_wait += " AND NOT " + WaitOf("$" + std::to_string(params.size()), /*invoke_too=*/true);
      }
      send(std::string("UPDATE runs SET status = $2, output = $3::jsonb, "
                       "error = $4::jsonb, ended_at_ms = $5, "
                       "req_version = COALESCE($6, req_version), "
                       "end_events_stored = ($7") +
               no_wait +
               " AND EXISTS (SELECT 1 FROM function_generation WHERE generation = "
               "COALESCE($8, generation)))" +
               kLiveRun,
           params,
           " RETURNING function_id, lane_key, had_waits, had_parallel, "
           "end_events_stored");
    } else if (park_) {
      send(std::string("UPDATE runs SET status = $2, error = $3::jsonb, "
                       "req_version = COALESCE($4, req_version)") +
               kLiveRun,
           {item_.run_id, kBlocked, JsonValue(park_->error), t.req_version}, kReturning);
    } else if ((!t.req_version || !t.steps.empty()) &&
               (!next || (!next->run_status && next->waits.empty() && next->next.size() <= 1))) {
      // Nothing of the row changes (a step, a retry; a new request version goes with the
      // steps, RecordSteps): locked as the update would, without writing a new version of it
      // and of its index entries.
      send(
          std::string("SELECT function_id, lane_key, had_waits, had_parallel FROM runs") + kLiveRun,
          {item_.run_id}, " {FOR NO KEY UPDATE}");
    } else {
      send(std::string("UPDATE runs SET status = COALESCE($2, status), "
                       "req_version = COALESCE($3, req_version), "
                       "had_waits = (had_waits OR $4), "
                       "had_parallel = (had_parallel OR $5)") +
               kLiveRun,
           {item_.run_id, next ? next->run_status : std::nullopt, t.req_version,
            next && !next->waits.empty(), next && next->next.size() > 1},
           kReturning);
    }
  }

  const QueueItem& item_;
  const Transition& t_;
  const int64_t now_ms_;
  const std::optional<std::chrono::milliseconds> keep_;
  std::optional<int64_t>* const kept_steps_;
  const Transition::Continue* const next_;
  const Transition::End* const end_;
  const Transition::Park* const park_;
  const bool keep_next_;
  const bool only_if_idle_;
  const bool as_is_;             // the kept call may leave the item as it is
  const bool may_fly_once_;      // may_fly_once
  const std::string new_token_;  // the kept call's, when the item takes a new one
  std::string kept_token_;       // the kept call's, as last sent (kept_token)
  // Set by Send (and its results, as they are read).
  std::shared_ptr<bool> leased_;
  std::shared_ptr<Rows> run_;
  std::optional<QueueItem> kept_item_;
  std::optional<LaneReads> lane_reads_;  // an end's in a lane
  bool owned_ = false;
  bool gated_ = false;          // the run's statement checks the lease (token) itself
  bool locks_in_gate_ = false;  // … and locks the item (none of the run's statements did)
  bool kept_as_is_ = false;     // … for a call kept with the item as it is
  bool flies_once_ = false;     // sent in one flight (Send's one_flight)
};

}  // namespace

// A piece of work waiting for a group's transaction (InGroup).
struct SqlStore::GroupWork {
  std::string order;  // rows are locked in this order across a group
  Piece piece;
  bool alone;  // takes a transaction of its own
  const std::function<Status(Tx&)>& body;
  const TwoPart* two_part;       // InGroup's
  bool* one_flight;              // InGroup's
  std::optional<Status> status;  // set by the group that took it, read once `done`
  bool done = false;             // GUARDED_BY(group_mu_)
  // Its submitter waits here: for `done`, or to lead. Shared with the leader that wakes it,
  // which does so after unlocking group_mu_ (a thread woken while it is held only blocks on
  // it again: a second sleep and wake-up a piece), when the submitter may have seen `done`
  // and returned.
  std::shared_ptr<std::condition_variable> cv = std::make_shared<std::condition_variable>();
};

size_t SqlStore::PiecesWaitingForAGroup() {
  std::lock_guard lock(group_mu_);
  return group_queue_.size();
}

bool SqlStore::MayLeadGroup() const {
  return !group_queue_.empty() && group_leaders_ < kGroupLeaders &&
         (group_leaders_ == 0 || group_queue_.size() >= kSecondGroupAt);
}

std::string SqlStore::GroupOrder(const QueueItem& item,
                                 const std::optional<std::pair<std::string, std::string>>& lane) {
  std::string order = item.run_id + "/" + std::to_string(item.id);
  // Before the runs in no lane (ULIDs), by lane: a group's ends then lock their lanes in one
  // order, as an ingest does (LaneLocks). Every piece of a run sorts the same way, so a
  // group's runs are locked in one order too.
  if (lane) order = "\x01" + lane->first + "\x01" + lane->second + "\x01" + order;
  return order;
}

Status SqlStore::InGroup(std::string order, Piece piece, bool alone,
                         const std::function<Status(Tx&)>& body, const TwoPart* two_part,
                         bool* one_flight) {
  if (one_flight) *one_flight = false;
  GroupWork mine{std::move(order), piece, alone, body, two_part, one_flight};
  std::unique_lock lock(group_mu_);
  group_queue_.push_back(&mine);
  // Group commit: whoever finds no group running, or fewer than kGroupLeaders and at least
  // kSecondGroupAt pieces waiting, becomes a leader and runs every piece of work waiting, its
  // own among them, in one transaction. Alone, work is committed at once, as before; under
  // load what arrives while a group commits shares the next transaction. Each submitter
  // waits on its own condition: a group's end wakes its pieces' submitters and the one that
  // leads the next group, not every thread waiting.
  while (!mine.done) {
    if (!MayLeadGroup()) {
      mine.cv->wait(lock);
      continue;
    }
    ++group_leaders_;
    // The first piece waiting alone, or the first kMaxGroup that may share (those that may
    // not wait for a group of their own).
    std::vector<GroupWork*> group;
    if (group_queue_.front()->alone) {
      group.push_back(group_queue_.front());
      group_queue_.erase(group_queue_.begin());
    } else {
      for (auto it = group_queue_.begin(); it != group_queue_.end() && group.size() < kMaxGroup;) {
        if ((*it)->alone) {
          ++it;
          continue;
        }
        group.push_back(*it);
        it = group_queue_.erase(it);
      }
    }
    lock.unlock();
    CommitGroup(group);
    std::vector<std::shared_ptr<std::condition_variable>> wake;  // after unlocking
    wake.reserve(group.size() + 1);
    lock.lock();
    --group_leaders_;
    for (GroupWork* w : group) {
      w->done = true;
      if (w != &mine) wake.push_back(w->cv);
    }
    if (MayLeadGroup()) wake.push_back(group_queue_.front()->cv);  // the next group's leader
    lock.unlock();
    for (const auto& cv : wake) cv->notify_one();
    lock.lock();
  }
  return *mine.status;
}

void SqlStore::CommitGroup(std::vector<GroupWork*>& group) {
  // A piece's work in one go: both parts of a two-part piece, one after the other.
  auto whole = [](GroupWork& w, Tx& tx) {
    if (w.two_part) {
      w.two_part->send(tx);
      tx.Wait();
    }
    return w.body(tx);
  };
  auto alone = [&](GroupWork& w) {
    if (w.one_flight) {
      *w.one_flight = true;
      w.status = Transact(
          [&](Tx& tx) {
            if (w.two_part) w.two_part->send(tx);  // no wait: it reads nothing
            return w.body(tx);
          },
          sql::Flights::kOne);
      *w.one_flight = false;
      if (!sql::IsUnmet(*w.status)) return;
    }
    w.status = Transact([&](Tx& tx) { return whole(w, tx); });
  };
  if (group.size() == 1) return alone(*group[0]);
  // One order for the row locks of every group (two may run at once, on several
  // coordinators too).
  std::sort(group.begin(), group.end(),
            [](const GroupWork* a, const GroupWork* b) { return a->order < b->order; });
  std::vector<Status> statuses;
  Status s = db_->Transact([&](Tx& tx) -> Status {
    statuses.clear();
    // Two-part pieces next to each other, of different runs and lanes (a wave), send their
    // first parts together and wait once for all of them; then each does the rest, in the
    // group's order. A piece of a run or lane already in the wave starts the next one; any
    // other piece runs whole after the wave.
    std::vector<GroupWork*> wave;
    auto settle = [&](GroupWork& w, Status done) -> Status {
      // A failure after a write cannot be undone alone: the whole group rolls back. An apply
      // refused (kAborted: its lease lost, or its run ended; kResourceExhausted: a checkpoint
      // past the step limit) wrote nothing.
      const bool harmless =
          w.piece == Piece::kRead ||
          (w.piece == Piece::kApply &&
           (done.code() == StatusCode::kAborted || done.code() == StatusCode::kResourceExhausted));
      if (!done.ok() && !harmless) return done;
      statuses.push_back(std::move(done));
      return Status::Ok();
    };
    auto finish_wave = [&]() -> Status {
      if (!wave.empty()) tx.Wait();
      for (GroupWork* w : wave) RETURN_IF_ERROR(settle(*w, w->body(tx)));
      wave.clear();
      return Status::Ok();
    };
    for (GroupWork* w : group) {
      const bool together = w->two_part != nullptr;
      const bool joins = together && std::none_of(wave.begin(), wave.end(), [&](GroupWork* o) {
                           const TwoPart& a = *o->two_part;
                           const TwoPart& b = *w->two_part;
                           return a.run == b.run || (a.lane && b.lane && *a.lane == *b.lane);
                         });
      if (!joins) RETURN_IF_ERROR(finish_wave());
      if (together) {
        w->two_part->send(tx);
        wave.push_back(w);
      } else {
        RETURN_IF_ERROR(settle(*w, whole(*w, tx)));
      }
    }
    return finish_wave();
  });
  if (s.ok()) {
    for (size_t i = 0; i < group.size(); ++i) group[i]->status = std::move(statuses[i]);
    return;
  }
  // A commit whose outcome is unknown may have written every piece: made again, a piece would
  // be written twice where the lease does not tell (a call kept with its item as it is, an
  // attempt's row) or tell its caller a false story (an ingest's events as duplicates). Each
  // writer gets that outcome, as alone, and acts on it as it does then (ApplyInTx gives a call
  // it may have kept back at the next claim); reads are made again.
  if (IsCommitOutcomeUnknown(s)) {
    for (GroupWork* w : group) {
      if (w->piece == Piece::kRead) {
        alone(*w);
      } else {
        w->status = s;
      }
    }
    return;
  }
  // Rolled back (one piece failed, a deadlock between groups, a lost connection before the
  // commit): each gets its own transaction, as without grouping, and its own outcome.
  for (GroupWork* w : group) alone(*w);
}

Result<Applied> SqlStore::ApplyInTx(const QueueItem& item, const Transition& t, TimePoint now,
                                    std::optional<std::chrono::milliseconds> keep) {
  {
    // A call whose item was kept as it is by an apply of unknown outcome: that apply may have
    // recorded this very transition (ApplyWork), and the item goes back at the next claim.
    std::lock_guard lock(doubtful_mu_);
    if (std::any_of(doubtful_.begin(), doubtful_.end(),
                    [&](const Doubtful& d) { return d.Covers(item); })) {
      return Aborted("lease on queue item " + std::to_string(item.id) +
                     " lost (its last record's outcome is unknown)");
    }
  }
  std::optional<int64_t> kept_steps;  // set once the transaction's results are read
  ApplyWork work(item, t, UnixMillis(now), keep, &kept_steps);
  // The end of a run in a lane locks its lane in the first part, after the run (ApplyWork),
  // so a group locks rows in its order (GroupOrder) and the second part writes only rows of
  // the run and of its lane. A wave holds one piece of a lane: the reads an end sends see
  // the lane as no other piece of the wave has left it.
  bool one_flight = false;  // set by InGroup for the try in one flight
  const TwoPart two_part{item.run_id, [&](Tx& tx) { work.Send(tx, one_flight); },
                         t.lane ? &*t.lane : nullptr};
  auto applied = InGroupResult(
      GroupOrder(item, t.lane), Piece::kApply, /*alone=*/false,
      [&](Tx& tx) { return work.Finish(tx); }, &two_part,
      work.may_fly_once() ? &one_flight : nullptr);
  if (!work.kept_token().empty() && applied.status().code() == StatusCode::kUnavailable &&
      !(work.kept_as_is() && sql::IsConflict(applied.status()))) {
    // Whether it committed is unknown: a call it kept may be leased to nobody. The next
    // claim gives it back (as a doubtful claim's items). A call kept with its item as it is
    // holds the call's token: the caller's retry with that token is refused (above) rather
    // than applied a second time. (A conflict was rolled back: the retry goes ahead.)
    std::lock_guard lock(doubtful_mu_);
    RememberDoubtful({work.kept_token(), item.id});
  }
  if (applied.ok()) work.CompleteOneFlight(*applied);
  if (applied.ok() && applied->kept) applied->kept->steps = kept_steps;
  return applied;
}

Status SqlStore::RenewLease(const QueueItem& item, TimePoint until) {
  return InTransaction([&](Tx& tx) -> Status {
    if (tx.Exec("UPDATE queue SET visible_at_ms = $3 WHERE id = $1 AND lease_token = $2",
                {item.id, item.lease_token, UnixMillis(until)}) == 0) {
      return Aborted("the lease of run " + item.run_id + " was lost");
    }
    return Status::Ok();
  });
}

Result<RecordedCheckpoint> SqlStore::Checkpoint(const QueueItem& item,
                                                const std::vector<StepRecord>& steps,
                                                const std::vector<AttemptRecord>& attempts,
                                                TimePoint now, int64_t step_limit) {
  const int64_t now_ms = UnixMillis(now);
  std::vector<std::string> ids;
  for (const StepRecord& step : steps) ids.push_back(step.step_id);
  // The run's lane is not known here (a host's request): sorted as a run in none, which for
  // a run in a lane can only cost a deadlock, retried, with a parallel call's apply.
  return InGroupResult(
      GroupOrder(item, std::nullopt), Piece::kApply, /*alone=*/false,
      [&](Tx& tx) -> Result<RecordedCheckpoint> {
        // Locked in ApplyWork's order, the item first: the lease decides, then the
        // run's row, which orders the steps' inserts of its concurrent calls. One statement
        // locks both; when it finds nothing, a look at the item tells why. In the same
        // round trip, once the locks are held (a record made meanwhile is seen: a statement of
        // its own, not a subquery of the locking one, whose snapshot predates the wait), the
        // run's steps, marking those of the checkpoint recorded already: the run rarely has
        // many, and a call carries every one of them anyway.
        Rows run, recorded;
        tx.QueryLater(
            "SELECT r.function_id, r.had_parallel, q.attempt FROM queue q JOIN runs r ON "
            "r.id = q.run_id WHERE q.id = $1 AND q.lease_token = $2 AND q.run_id = $3 AND "
            "r.status NOT IN " +
                std::string(kRestingStatuses) + " {FOR UPDATE OF q FOR NO KEY UPDATE OF r}",
            {item.id, item.lease_token, item.run_id}, [&run](Rows rows) { run = std::move(rows); });
        tx.QueryLater("SELECT step_id, step_id IN @list($2), " + std::string(kStepBytes) +
                          " FROM steps WHERE run_id = $1",
                      {item.run_id, ListValue(ids)},
                      [&recorded](Rows rows) { recorded = std::move(rows); });
        tx.Wait();
        if (run.empty()) {
          if (tx.Query("SELECT 1 FROM queue WHERE id = $1 AND lease_token = $2 AND run_id = $3",
                       {item.id, item.lease_token, item.run_id})
                  .empty()) {
            return Aborted("the call of run " + item.run_id + " no longer holds its lease");
          }
          return Aborted("run " + item.run_id + " has ended");
        }
        // Each step once: not those recorded already, nor one the body repeats.
        std::set<std::string> seen;
        int64_t bytes = 0;  // of the run's steps' memos (kMaxLoadedStepBytes)
        for (Row row : recorded) {
          if (row.Bool(1)) seen.insert(row.Text(0));
          if (!row.Null(2)) bytes += row.Int(2);
        }
        std::vector<StepRecord> fresh;
        std::vector<sql::Value> memos;  // fresh's, measured here and written by RecordSteps
        std::set<std::string> unattempted;
        int64_t fresh_bytes = 0;
        for (const StepRecord& step : steps) {
          if (!seen.insert(step.step_id).second) continue;
          fresh.push_back(step);
          unattempted.insert(step.step_id);
          memos.push_back(JsonValue(step.memo));
          fresh_bytes += TextBytes(memos.back()).value_or(0);
        }
        // Nothing is written yet: CommitGroup's settle takes an apply's kResourceExhausted for
        // a refusal that wrote nothing, as its kAborted.
        if (const auto had = static_cast<int64_t>(recorded.size());
            had + static_cast<int64_t>(fresh.size()) > step_limit) {
          return ResourceExhausted("run " + item.run_id + " has " + std::to_string(had) +
                                   " steps: " + std::to_string(fresh.size()) +
                                   " more would take it past the step limit of " +
                                   std::to_string(step_limit));
        }
        if (!fresh.empty() && bytes + fresh_bytes > kMaxLoadedStepBytes) {
          return ResourceExhausted("run " + item.run_id + "'s steps hold " + std::to_string(bytes) +
                                   " bytes: " + std::to_string(fresh_bytes) +
                                   " more would take them past the " +
                                   std::to_string(kMaxLoadedStepBytes) + " a run's steps may hold");
        }
        if (!run[0].Bool(1)) {
          // Steps recorded beside its call, as a parallel call's would be: the call's kept
          // successor counts the run's steps (KeptCall::steps).
          tx.Send("UPDATE runs SET had_parallel = true WHERE id = $1", {item.run_id});
        }
        RecordedCheckpoint out{run[0].Text(0), {}};
        for (const AttemptRecord& a : attempts) {
          if (unattempted.erase(a.step_id) == 0) continue;
          out.attempts.push_back(a);
          out.attempts.back().attempt = static_cast<int>(run[0].Int(2));
        }
        RecordSteps(tx, item.run_id, fresh, out.attempts, now_ms, std::nullopt, std::move(memos));
        return out;
      });
}

Status SqlStore::ReleaseLeases(const std::vector<QueueItem>& items, TimePoint now) {
  return InTransaction([&](Tx& tx) -> Status {
    for (const QueueItem& item : items) {
      tx.Send(
          "UPDATE queue SET visible_at_ms = $3, lease_token = NULL "
          "WHERE id = $1 AND lease_token = $2",
          {item.id, item.lease_token, UnixMillis(now)});
    }
    if (!items.empty()) tx.AnnounceWork();
    return Status::Ok();
  });
}

Result<std::optional<TimePoint>> SqlStore::NextVisible() {
  return InTransaction([&](Tx& tx) -> Result<std::optional<TimePoint>> {
    Rows r = tx.Query("SELECT min(visible_at_ms) FROM queue");
    if (r.empty() || r[0].Null(0)) return std::optional<TimePoint>();
    return std::optional<TimePoint>(TimePoint(std::chrono::milliseconds(r[0].Int(0))));
  });
}

std::unique_ptr<WorkWatch> SqlStore::WatchForWork(std::function<void()> wake) {
  return db_->Watch(std::move(wake));
}

Result<int64_t> SqlStore::QueueDepth() {
  return InTransaction(
      [&](Tx& tx) -> Result<int64_t> { return tx.Count("SELECT count(*) FROM queue"); });
}

Result<QueueStats> SqlStore::GetQueueStats(TimePoint now) {
  const int64_t now_ms = UnixMillis(now);
  return InTransaction([&](Tx& tx) -> Result<QueueStats> {
    QueueStats out;
    Rows q = tx.Query(
        "SELECT count(*), count(*) FILTER (WHERE visible_at_ms <= $1), "
        "coalesce($1 - min(visible_at_ms) FILTER (WHERE visible_at_ms <= $1), 0) FROM queue",
        {now_ms});
    out.depth = q[0].Int(0);
    out.due = q[0].Int(1);
    out.oldest_due_age_ms = q[0].Int(2);
    Rows l = tx.Query(
        "SELECT count(*), coalesce($1 - min(l.head_since_ms), 0) FROM lanes l "
        "JOIN runs r ON r.id = l.head_run_id WHERE r.status = 'blocked'",
        {now_ms});
    out.lanes_blocked = l[0].Int(0);
    out.longest_blocked_ms = l[0].Int(1);
    Rows g = tx.Query(
        "SELECT count(*) FILTER (WHERE head_run_id IS NULL AND gap_since_ms IS NOT NULL), "
        "coalesce($1 - min(gap_since_ms) FILTER (WHERE head_run_id IS NULL), 0), "
        "coalesce(sum(gaps_total), 0), coalesce(sum(stale_total), 0), "
        "coalesce(sum(duplicates_total), 0) FROM lanes WHERE seq_gap_timeout_ms IS NOT NULL",
        {now_ms});
    out.lanes_waiting_for_gap = g[0].Int(0);
    out.longest_gap_wait_ms = g[0].Int(1);
    out.lane_gaps = g[0].Int(2);
    out.lane_stale = g[0].Int(3);
    out.lane_duplicates = g[0].Int(4);
    return out;
  });
}

namespace {

// The conditions of two sweeps' reads, which DueSweeps asks about too; `p` is the number of
// the parameter that holds the bound (Unix ms).
// Waits `w` whose look-back is pending, created before $p (PendingLookbacks).
std::string LookbackPendingBefore(int p) {
  return "w.lookback_from_ms IS NOT NULL AND w.created_at_ms < $" + std::to_string(p);
}
// `column` before $p, or any value when $p is 0: run ends recorded before a time
// (PendingRunEnds), cancels of events received before one (PendingCancels). One comparison
// with a bound computed once, so that the column's index reads only the rows before it (an
// `OR` of the two cases read every row of an outbox, all of them newer than the bound in a
// backlog, at each sweep tick).
std::string ZeroOrBefore(std::string_view column, int p) {
  const std::string bound = "$" + std::to_string(p) + "::bigint";
  return std::string(column) + " < CASE WHEN " + bound + " = 0 THEN 9223372036854775807 ELSE " +
         bound + " END";
}

}  // namespace

Result<SweepsDue> SqlStore::DueSweeps(int64_t lookbacks_before_ms, int64_t ends_before_ms,
                                      TimePoint now) {
  // Each condition is the one of the sweep's own read (PendingLookbacks, PendingLaneGaps,
  // DueTimeouts, PendingRunEnds, PendingCancels, PendingResumes), or wider: a sweep asked for
  // nothing finds nothing.
  // Each a probe of the index its sweep reads by (AnyRow).
  const std::string sql =
      "SELECT " + AnyRow("waits w WHERE " + LookbackPendingBefore(2), "w.created_at_ms") + ", " +
      AnyRow("lane_gaps WHERE NOT announced", "id") + ", " + AnyTimeoutsDue() + ", " +
      AnyRow("run_ends WHERE " + ZeroOrBefore("ended_at_ms", 3), "ended_at_ms") + ", " +
      AnyRow("pending_cancels c WHERE " + ZeroOrBefore("c.received_at_ms", 3), "c.received_at_ms") +
      ", " +
      AnyRow("pending_resumes p WHERE " + ZeroOrBefore("p.received_at_ms", 3), "p.received_at_ms");
  return InTransaction([&](Tx& tx) -> Result<SweepsDue> {
    Rows rows = tx.Query(sql, {UnixMillis(now), lookbacks_before_ms, ends_before_ms});
    return SweepsDue{.lookbacks = rows[0].Bool(0),
                     .lane_gaps = rows[0].Bool(1),
                     .timeouts = rows[0].Bool(2),
                     .run_ends = rows[0].Bool(3),
                     .cancels = rows[0].Bool(4),
                     .resumes = rows[0].Bool(5)};
  });
}

Result<std::vector<std::string>> SqlStore::PendingRunEnds(int64_t ended_before_ms, int limit) {
  return InTransaction([&](Tx& tx) -> Result<std::vector<std::string>> {
    std::vector<std::string> out;
    for (Row row : tx.Query("SELECT run_id FROM run_ends WHERE " + ZeroOrBefore("ended_at_ms", 1) +
                                " ORDER BY ended_at_ms, run_id LIMIT $2",
                            {ended_before_ms, limit})) {
      out.push_back(row.Text(0));
    }
    return out;
  });
}

Status SqlStore::AckRunEnds(const std::vector<std::string>& run_ids) {
  if (run_ids.empty()) return Status::Ok();
  return InTransaction([&](Tx& tx) -> Status {
    tx.Send("DELETE FROM run_ends WHERE run_id IN @list($1)", {ListValue(run_ids)});
    return Status::Ok();
  });
}

Result<std::vector<EventRecord>> SqlStore::PendingEvents(std::string_view outbox,
                                                         int64_t received_before_ms, int limit) {
  return InTransaction([&](Tx& tx) -> Result<std::vector<EventRecord>> {
    std::vector<EventRecord> out;
    // Each event by its primary key (scalar subqueries; an outbox row's time is its event's):
    // joined, PostgreSQL guessed a tenth of the outbox for the page and hashed every event of
    // the table to find them.
    const std::string by_id = " FROM events e WHERE e.internal_id = o.event_id)";
    for (Row row :
         tx.Query("SELECT o.event_id, (SELECT e.id" + by_id + ", (SELECT e.name" + by_id +
                      ", (SELECT e.payload" + by_id + ", o.received_at_ms FROM " +
                      std::string(outbox) + " o WHERE " + ZeroOrBefore("o.received_at_ms", 1) +
                      " ORDER BY o.received_at_ms, o.event_id LIMIT $2",
                  {received_before_ms, limit})) {
      out.push_back(ReadEvent(row));
    }
    return out;
  });
}

Status SqlStore::AckEvents(std::string_view outbox, const std::vector<std::string>& event_ids) {
  if (event_ids.empty()) return Status::Ok();
  return InTransaction([&](Tx& tx) -> Status {
    tx.Send("DELETE FROM " + std::string(outbox) + " WHERE event_id IN @list($1)",
            {ListValue(event_ids)});
    return Status::Ok();
  });
}

Result<std::vector<EventRecord>> SqlStore::PendingCancels(int64_t received_before_ms, int limit) {
  return PendingEvents("pending_cancels", received_before_ms, limit);
}

Status SqlStore::AckCancels(const std::vector<std::string>& event_ids) {
  return AckEvents("pending_cancels", event_ids);
}

// Retention's reads walk the primary key from its start, in order, and stop at the batch's
// last row. So the other conditions are written for no index to serve them, and the checks of
// other tables as scalar subqueries (a probe of each table's index a row, which no plan turns
// into a join): the status, and an event's time, as expressions (PostgreSQL read every event
// below the horizon by events_name_received, its second column, into a bitmap and sorted them
// at each batch; SQLite read the runs by runs_status, every finished run, newest first), and
// NOT EXISTS of an event's runs became a hash of the whole runs table.
std::string ExpiredRunsQuery() {
  return std::string(
             "SELECT r.id FROM runs r WHERE r.id < $3 AND r.ended_at_ms < $1 "
             "AND coalesce(r.status, '') IN ") +
         kEndedStatuses +
         " AND (SELECT 1 FROM run_ends e WHERE e.run_id = r.id LIMIT 1) IS NULL "
         "AND (SELECT 1 FROM queue q WHERE q.run_id = r.id LIMIT 1) IS NULL "
         "AND (SELECT 1 FROM lanes l WHERE l.function_id = r.function_id "
         "AND l.key = r.lane_key AND l.seq_next <= r.lane_number LIMIT 1) IS NULL "
         "ORDER BY r.id LIMIT $2 {FOR UPDATE SKIP LOCKED}";
}

std::string ExpiredEventsQuery() {
  return "SELECT e.internal_id FROM events e WHERE e.internal_id < $3 "
         "AND e.received_at_ms + 0 < $1 "
         "AND (SELECT 1 FROM runs r WHERE r.event_id = e.internal_id LIMIT 1) IS NULL "
         "AND (SELECT 1 FROM run_events re WHERE re.event_id = e.internal_id LIMIT 1) IS NULL "
         "AND (SELECT 1 FROM pending_cancels c WHERE c.event_id = e.internal_id LIMIT 1) IS NULL "
         "AND (SELECT 1 FROM pending_resumes p WHERE p.event_id = e.internal_id LIMIT 1) IS NULL "
         "ORDER BY e.internal_id LIMIT $2 {FOR UPDATE SKIP LOCKED}";
}

Result<int64_t> SqlStore::DeleteExpired(TimePoint horizon, int batch) {
  const int64_t horizon_ms = UnixMillis(horizon);
  // Run and event ids are ULIDs of their creation's and receipt's time: those before the
  // horizon sort below the least ULID of its millisecond (ExpiredRunsQuery).
  const std::string horizon_id = MakeUlid(static_cast<uint64_t>(horizon_ms), std::string(10, '\0'));
  return InTransaction([&](Tx& tx) -> Result<int64_t> {
    // SKIP LOCKED: rows another coordinator is deleting (or a writer holds) wait for the
    // next pass instead of blocking this one. Steps, attempts and waits go by ON DELETE
    // CASCADE. A run in run_ends has not been announced yet: its end event would be lost. A
    // run with a queue item has a call in flight still (EndRun kept it), which may hold its
    // lane: the call's outcome removes the item and moves the lane on. A run numbered at or
    // past its sequence lane's next number (cancelled while it waited) holds its number
    // until the lane gets there: the lane steps past it, and the number sent again is a
    // duplicate; without the run, the lane waited for it as a gap, and it ran when sent again.
    const int64_t runs = tx.Exec("DELETE FROM runs WHERE id IN (" + ExpiredRunsQuery() + ")",
                                 {horizon_ms, batch, horizon_id});
    // Locking the event also skips one a replay is starting a run of right now. The deleted
    // events' ids are returned for their lane outcomes, which go with them.
    std::vector<std::string> events;
    for (Row row : tx.Query("DELETE FROM events WHERE internal_id IN (" + ExpiredEventsQuery() +
                                ") RETURNING internal_id",
                            {horizon_ms, batch, horizon_id})) {
      events.push_back(row.Text(0));
    }
    // Counted, so that the caller, which stops at a pass that deletes nothing, goes on while
    // old gaps are left: uncounted, a backlog of them went a batch per loop once the runs and
    // events were done.
    const int64_t lane_rows = DeleteLaneHistory(tx, events, horizon_ms, batch);
    DeleteSpentGates(tx, horizon_ms);     // not counted: a pass that deletes only these is done
    DeleteEndedDebounces(tx);             // nor these
    DeleteClosedBatches(tx, horizon_ms);  // nor these
    return runs + static_cast<int64_t>(events.size()) + lane_rows;
  });
}

Result<std::string> SqlStore::SkipLaneHead(const std::string& function_id, const std::string& key,
                                           TimePoint now, const std::string& expected_head,
                                           std::optional<int64_t> waiting_for,
                                           bool* skipped_before) {
  if (skipped_before) *skipped_before = false;
  return InTransaction([&](Tx& tx) -> Result<std::string> {
    // Read first without a lock: a head is failed by FailLaneHead, which locks its queue items,
    // its run and then the lane, the order every writer takes (locking the lane first could
    // deadlock with the head's own call ending). A lane with no head is locked and read again
    // before anything is decided of it.
    const std::string kLane =
        "SELECT head_run_id, seq_gap_timeout_ms, seq_next FROM lanes WHERE function_id = $1 AND "
        "key = $2";
    Rows lane = tx.Query(kLane, {function_id, key});
    if (lane.empty() || lane[0].Null(0))
      lane = tx.Query(kLane + " {FOR UPDATE}", {function_id, key});
    const std::string head = lane.empty() || lane[0].Null(0) ? "" : lane[0].Text(0);
    if (waiting_for && !lane.empty()) {
      // The gap the caller saw, and only it: a run that became head meanwhile (the number
      // came, or the lane gave up on it) is not failed in its place.
      const std::optional<int64_t> next = lane[0].OptInt(2);
      if (!head.empty() || lane[0].Null(1) || next != waiting_for) {
        return Aborted("lane \"" + key + "\" no longer waits for number " +
                       std::to_string(*waiting_for) +
                       (!head.empty() ? " (run " + head + " is its head)"
                        : next        ? " (it waits for " + std::to_string(*next) + ")"
                                      : "") +
                       "; look again");
      }
    }
    if (!expected_head.empty()) {
      // Skipped already (a request sent again after its answer was lost): done, not the next
      // head skipped in its place — nor an error while the skipped head still holds the lane
      // for a call of it in flight.
      // By id alone (the lane compared here): `lane_key = $3` would let the planner take
      // runs_lane, when counted empty, for a scan of the key's whole history.
      Rows run = tx.Query("SELECT status, error, function_id, lane_key FROM runs WHERE id = $1",
                          {expected_head});
      if (!run.empty() && run[0].Text(2) == function_id && run[0].OptText(3) == key &&
          run[0].Text(0) == kFailed &&
          run[0].JsonCol(1).value("name", std::string()) == "Skipped") {
        if (skipped_before) *skipped_before = true;
        return expected_head;
      }
      if (head != expected_head) {
        return Aborted("run " + expected_head + " is not the head of lane \"" + key + "\"" +
                       (head.empty() ? "" : " (run " + head + " is)") + "; look again");
      }
    }
    if (!lane.empty() && lane[0].Null(0) && !lane[0].Null(1)) {
      // A sequence lane waiting for a missing number: give up on it now.
      auto head = SelectSequenceHead(tx, function_id, key, UnixMillis(now), kGapSkipped);
      if (!head) return LaneHasNoHead(function_id, key);
      return *head;
    }
    // The head checked above, and only it.
    return FailLaneHead(tx, function_id, key,
                        {{"name", "Skipped"}, {"message", "skipped by an operator (skip-head)"}},
                        UnixMillis(now), std::nullopt, head);
  });
}

Result<LaneStore::LaneNextSet> SqlStore::SetLaneNext(const std::string& function_id,
                                                     const std::string& key, int64_t next,
                                                     std::optional<int64_t> expected_next,
                                                     TimePoint now) {
  return InTransaction([&](Tx& tx) -> Result<LaneNextSet> {
    Rows lane = tx.Query(
        "SELECT seq_next, seq_gap_timeout_ms, head_run_id FROM lanes WHERE function_id = $1 AND "
        "key = $2 {FOR UPDATE}",
        {function_id, key});
    if (lane.empty() || lane[0].Null(1)) {
      return NotFound("function \"" + function_id + "\" has no sequence lane \"" + key + "\"");
    }
    LaneNextSet out;
    out.was = lane[0].OptInt(0);
    if (expected_next && out.was != expected_next) {
      return Aborted("lane \"" + key + "\" expects " +
                     (out.was ? "number " + std::to_string(*out.was) : "no number yet") + ", not " +
                     std::to_string(*expected_next) + "; look again");
    }
    tx.Send("UPDATE lanes SET seq_next = $3 WHERE function_id = $1 AND key = $2",
            {function_id, key, next});
    if (lane[0].Null(2)) out.head = SelectSequenceHead(tx, function_id, key, UnixMillis(now));
    return out;
  });
}

Result<std::string> SqlStore::RetryLaneHead(const std::string& function_id, const std::string& key,
                                            TimePoint now) {
  const int64_t now_ms = UnixMillis(now);
  return InTransaction([&](Tx& tx) -> Result<std::string> {
    Rows head =
        tx.Query("SELECT head_run_id FROM lanes WHERE function_id = $1 AND key = $2 {FOR UPDATE}",
                 {function_id, key});
    if (head.empty() || head[0].Null(0)) return LaneHasNoHead(function_id, key);
    const std::string run_id = head[0].Text(0);
    // A blocked run has no queue items but those of calls still in flight (its parallel
    // calls when one failed for good), so nothing else writes it; with one in flight, a
    // replay would make that call's step again beside it.
    Rows run = tx.Query("SELECT status FROM runs WHERE id = $1", {run_id});
    if (run.empty() || run[0].Text(0) != kBlocked) {
      return HeadNotBlocked(key, run.empty() ? "gone" : run[0].Text(0));
    }
    // The run's items, locked as they are read, so that no claim takes a stale one between
    // this check and the delete below: is one of them a call in flight?
    bool in_flight = false;
    for (Row item : tx.Query("SELECT leased AND visible_at_ms > $2 FROM queue WHERE run_id = $1 "
                             "{FOR UPDATE}",
                             {run_id, now_ms})) {
      in_flight |= item.Bool(0);
    }
    if (in_flight) {
      return FailedPrecondition("the head of lane \"" + key +
                                "\" has a call still in flight; retry it once that call returns");
    }
    // What is left is stale: a call whose lease expired (its coordinator died) would be
    // claimed and made beside the replay, its step twice at once.
    tx.Send(kDeleteWorkNotInFlight, {run_id, now_ms});
    tx.Send("DELETE FROM steps WHERE run_id = $1 AND status = 'failed'", {run_id});
    tx.Send("UPDATE runs SET status = 'running', error = NULL WHERE id = $1", {run_id});
    tx.Send(
        "UPDATE lanes SET head_since_ms = $3, head_deadline_ms = $3 + head_timeout_ms "
        "WHERE function_id = $1 AND key = $2",
        {function_id, key, now_ms});
    EnqueueCall(tx, run_id, kDiscoveryStepId, now_ms, now_ms);
    return run_id;
  });
}

Result<std::vector<std::string>> SqlStore::ExpireLaneHeads(TimePoint now) {
  const int64_t now_ms = UnixMillis(now);
  // Heads past their head_timeout, and the gap timers: sequence lanes with no head whose
  // missing number has been waited for long enough give up on it. Read together, one round
  // trip (what an idle coordinator does each second); a head failed below starts no gap
  // timer that is due at once (gap timeouts are 1 s at least).
  Rows due, gaps;
  RETURN_IF_ERROR(InTransaction([&](Tx& tx) -> Status {
    tx.QueryLater(
        "SELECT function_id, key, head_timeout_ms FROM lanes "
        "WHERE head_deadline_ms <= $1 ORDER BY head_deadline_ms LIMIT 100",
        {now_ms}, [&](Rows rows) { due = std::move(rows); });
    gaps = tx.Query(
        "SELECT function_id, key FROM lanes WHERE gap_since_ms IS NOT NULL "
        "AND head_run_id IS NULL AND gap_since_ms + seq_gap_timeout_ms <= $1 "
        "ORDER BY gap_since_ms LIMIT 100",
        {now_ms});
    return Status::Ok();
  }));
  // One transaction a lane: a head that changed meanwhile is skipped, not the whole pass.
  std::vector<std::string> failed;
  for (Row row : due) {
    const std::string function_id = row.Text(0), key = row.Text(1);
    Json error = {{"name", "HeadTimeout"},
                  {"message", "the run held its lane longer than head_timeout (" +
                                  std::to_string(row.Int(2)) + " ms)"}};
    auto r = InTransaction([&](Tx& tx) -> Result<std::string> {
      return FailLaneHead(tx, function_id, key, error, now_ms, now_ms);
    });
    if (r.ok()) {
      failed.push_back(*r);
    } else if (r.status().code() != StatusCode::kAborted &&
               r.status().code() != StatusCode::kNotFound) {
      return r.status();
    }
  }
  for (Row row : gaps) {
    const std::string function_id = row.Text(0), key = row.Text(1);
    RETURN_IF_ERROR(InTransaction([&](Tx& tx) -> Status {
      Rows lane =
          tx.Query("SELECT head_run_id FROM lanes WHERE function_id = $1 AND key = $2 {FOR UPDATE}",
                   {function_id, key});
      if (!lane.empty() && lane[0].Null(0)) SelectSequenceHead(tx, function_id, key, now_ms);
      return Status::Ok();
    }));
  }
  return failed;
}

namespace {

constexpr const char* kGapColumns =
    "id, function_id, key, first_number, last_number, waited_since_ms, recorded_at_ms, reason, "
    "resumed_run_id";

// The gaps `where` chooses (a condition, its order and limit).
std::vector<LaneGap> ReadGaps(Tx& tx, std::string_view where, sql::Params params) {
  std::vector<LaneGap> out;
  for (Row row : tx.Query(
           std::string("SELECT ") + kGapColumns + " FROM lane_gaps WHERE " + std::string(where),
           params)) {
    out.push_back({row.Int(0), row.Text(1), row.Text(2), row.Int(3), row.Int(4), row.Int(5),
                   row.Int(6), row.Text(7), row.OptText(8)});
  }
  return out;
}

}  // namespace

Result<std::vector<LaneRecord>> SqlStore::ListLanes(const LaneFilter& filter) {
  const std::string after_fn = filter.after ? filter.after->first : "";
  const std::string after_key = filter.after ? filter.after->second : "";
  return InTransaction([&](Tx& tx) -> Result<std::vector<LaneRecord>> {
    std::vector<LaneRecord> out;
    // Lanes with runs not finished; a sequence lane waiting for a number has no head.
    for (Row row :
         tx.Query("SELECT l.function_id, l.key, l.depth, l.head_run_id, r.status, l.head_since_ms, "
                  "l.head_deadline_ms, l.seq_gap_timeout_ms, l.seq_next, l.gap_since_ms, "
                  "l.gaps_total, l.stale_total, l.duplicates_total "
                  "FROM lanes l LEFT JOIN runs r ON r.id = l.head_run_id "
                  "WHERE l.depth > 0 AND ($1 = '' OR l.function_id = $1) "
                  "AND (NOT $2 OR r.status = 'blocked') "
                  "AND ($3 = '' OR (l.function_id, l.key) > ($3, $4)) "
                  "ORDER BY l.function_id, l.key LIMIT $5",
                  {filter.function_id, filter.blocked_only, after_fn, after_key, filter.limit})) {
      LaneRecord l;
      l.function_id = row.Text(0);
      l.key = row.Text(1);
      l.depth = row.Int32(2);
      l.head_run_id = row.OptText(3).value_or("");
      l.head_status = row.OptText(4).value_or("waiting");
      l.head_since_ms = row.OptInt(5).value_or(row.OptInt(9).value_or(0));
      l.head_deadline_ms = row.OptInt(6);
      if (!row.Null(7)) {
        LaneSequence seq;
        seq.gap_timeout_ms = row.Int(7);
        seq.next = row.OptInt(8);
        seq.gap_since_ms = row.OptInt(9);
        seq.gaps_total = row.Int(10);
        seq.stale_total = row.Int(11);
        seq.duplicates_total = row.Int(12);
        for (Row w : tx.Query("SELECT lane_number FROM runs WHERE function_id = $1 AND "
                              "lane_key = $2 AND status = 'queued' AND lane_number IS NOT NULL "
                              "ORDER BY lane_number LIMIT 10",
                              {l.function_id, l.key})) {
          seq.waiting.push_back(w.Int(0));
        }
        auto last = ReadGaps(tx, "function_id = $1 AND key = $2 ORDER BY id DESC LIMIT 1",
                             {l.function_id, l.key});
        if (!last.empty()) seq.last_gap = std::move(last[0]);
        l.sequence = std::move(seq);
      }
      out.push_back(std::move(l));
    }
    return out;
  });
}

Result<std::vector<LaneGap>> SqlStore::ListLaneGaps(const std::string& function_id,
                                                    const std::string& key, int limit) {
  return InTransaction([&](Tx& tx) -> Result<std::vector<LaneGap>> {
    return ReadGaps(tx, "function_id = $1 AND key = $2 ORDER BY id DESC LIMIT $3",
                    {function_id, key, limit});
  });
}

Result<std::vector<LaneOutcome>> SqlStore::LaneOutcomesOf(const std::string& internal_id) {
  return InTransaction([&](Tx& tx) -> Result<std::vector<LaneOutcome>> {
    std::vector<LaneOutcome> out;
    for (Row row : tx.Query("SELECT event_id, function_id, key, number, outcome, run_id, "
                            "recorded_at_ms FROM lane_outcomes WHERE event_id = $1 "
                            "ORDER BY function_id",
                            {internal_id})) {
      out.push_back({row.Text(0), row.Text(1), row.Text(2), row.Int(3), row.Text(4), row.OptText(5),
                     row.Int(6)});
    }
    return out;
  });
}

Result<std::vector<LaneGap>> SqlStore::PendingLaneGaps(int limit) {
  return InTransaction([&](Tx& tx) -> Result<std::vector<LaneGap>> {
    return ReadGaps(tx, "NOT announced ORDER BY id LIMIT $1", {limit});
  });
}

Status SqlStore::AckLaneGaps(const std::vector<int64_t>& ids) {
  if (ids.empty()) return Status::Ok();
  std::vector<std::string> text;
  for (int64_t id : ids) text.push_back(std::to_string(id));
  return InTransaction([&](Tx& tx) -> Status {
    tx.Send("UPDATE lane_gaps SET announced = true WHERE id IN @ids($1)", {ListValue(text)});
    return Status::Ok();
  });
}

namespace {

// ResolveWait within `tx`; with `signal`, only while the wait still holds it.
bool ResolveWaitIn(Tx& tx, const std::string& run_id, const std::string& step_id, const Json& memo,
                   int64_t now_ms, const std::string* signal = nullptr) {
  // Queue row first: the order Apply locks in.
  Rows item = tx.Query(
      "SELECT id, resume FROM queue WHERE run_id = $1 AND step_id = $2 AND resume IS NOT NULL "
      "{FOR UPDATE}",
      {run_id, step_id});
  const int64_t waits =
      signal ? tx.Exec("DELETE FROM waits WHERE run_id = $1 AND step_id = $2 AND signal = $3",
                       {run_id, step_id, *signal})
             : tx.Exec("DELETE FROM waits WHERE run_id = $1 AND step_id = $2", {run_id, step_id});
  if (waits == 0 || item.empty()) return false;
  Json resume = item[0].JsonCol(1);
  if (!resume.is_object()) resume = Json::object();
  resume["memo"] = memo;
  resume["resolved"] = true;  // whatever its due time says by another clock (a park's)
  tx.Send(
      "UPDATE queue SET resume = $2::jsonb, visible_at_ms = $3, lease_token = NULL "
      "WHERE id = $1",
      {item[0].Int(0), JsonValue(resume), now_ms});
  tx.AnnounceWork();
  return true;
}

}  // namespace

Result<bool> SqlStore::ResolveWait(const std::string& run_id, const std::string& step_id,
                                   const Json& memo, TimePoint now) {
  return InTransaction([&](Tx& tx) -> Result<bool> {
    return ResolveWaitIn(tx, run_id, step_id, memo, UnixMillis(now));
  });
}

Result<std::optional<std::string>> SqlStore::ResolveSignal(const std::string& signal,
                                                           const Json& data, TimePoint now) {
  const Json memo = {{"data", {{"signal", signal}, {"data", data}}}};
  return InTransaction([&](Tx& tx) -> Result<std::optional<std::string>> {
    // Read without a lock (ResolveWaitIn locks the queue row, then the wait, as Apply does),
    // and resumed only if the wait still holds the signal: one that went meanwhile (its run
    // ended, it timed out, another signal resumed it) gives nothing, as a signal sent a
    // moment later would; one that a later wait took the signal from sends it on to that.
    for (int tries = 0; tries < 3; ++tries) {
      Rows wait = tx.Query("SELECT run_id, step_id FROM waits WHERE signal = $1", {signal});
      if (wait.empty()) break;
      const std::string run_id = wait[0].Text(0);
      if (ResolveWaitIn(tx, run_id, wait[0].Text(1), memo, UnixMillis(now), &signal)) {
        return std::optional<std::string>(run_id);
      }
    }
    return std::optional<std::string>();
  });
}

Result<std::vector<EventRecord>> SqlStore::EventsAfter(const std::string& name, int64_t after_ms,
                                                       const std::string& after_id, int limit) {
  return InTransaction([&](Tx& tx) -> Result<std::vector<EventRecord>> {
    std::vector<EventRecord> out;
    for (Row row :
         tx.Query(WithinPageBytes(std::string("SELECT ") + kEventColumns +
                                      " FROM events WHERE name = $1 AND "
                                      "received_at_ms >= $2 AND (received_at_ms > $2 "
                                      "OR internal_id > $3) ORDER BY received_at_ms, "
                                      "internal_id LIMIT $4",
                                  kEventColumns, "payload", "received_at_ms, internal_id"),
                  {name, after_ms, after_id, limit})) {
      out.push_back(ReadEvent(row));
    }
    return out;
  });
}

Result<std::vector<WaitRecord>> SqlStore::PendingLookbacks(int64_t created_before_ms, int limit) {
  return InTransaction([&](Tx& tx) -> Result<std::vector<WaitRecord>> {
    return ReadWaits(tx, LookbackPendingBefore(1) + " ORDER BY w.created_at_ms LIMIT $2",
                     {created_before_ms, limit});
  });
}

Status SqlStore::LookbackDone(const std::string& run_id, const std::string& step_id) {
  return InTransaction([&](Tx& tx) -> Status {
    tx.Send("UPDATE waits SET lookback_from_ms = NULL WHERE run_id = $1 AND step_id = $2",
            {run_id, step_id});
    return Status::Ok();
  });
}

Result<std::vector<EventRecord>> SqlStore::PendingResumes(int64_t received_before_ms, int limit) {
  return PendingEvents("pending_resumes", received_before_ms, limit);
}

Result<std::vector<WaitRecord>> SqlStore::WaitsBefore(const EventRecord& event,
                                                      const WaitRecord* after, int limit) {
  return InTransaction([&](Tx& tx) -> Result<std::vector<WaitRecord>> {
    // Strictly before: a wait registered in the event's millisecond looks back from then on
    // (EventsAfter is inclusive), and one resumed by this event's first pass may have been
    // followed, in that millisecond, by its run's next wait.
    std::vector<WaitRecord> out = ReadWaits(
        tx,
        "w.event_name = $1 AND w.kind <> 'invoke' AND w.created_at_ms < $2 AND "
        "(w.created_at_ms, w.run_id, w.step_id) > ($3, $4, $5) "
        "ORDER BY w.created_at_ms, w.run_id, w.step_id LIMIT $6",
        {event.name, event.received_at_ms, after ? after->created_at_ms : int64_t{-1},
         after ? after->run_id : std::string(), after ? after->step_id : std::string(), limit});
    if (auto end = InvokeExpressionOf(event.payload); end && !after) {
      std::vector<WaitRecord> invoke =
          ReadWaits(tx, "w.kind = 'invoke' AND w.expression = $1 AND w.created_at_ms < $2",
                    {*end, event.received_at_ms});
      out.insert(out.end(), std::make_move_iterator(invoke.begin()),
                 std::make_move_iterator(invoke.end()));
    }
    return out;
  });
}

Status SqlStore::AckResumes(const std::vector<std::string>& event_ids) {
  return AckEvents("pending_resumes", event_ids);
}

Result<bool> CancelRunInTx(Tx& tx, const std::string& run_id, const Json& error, int64_t now_ms) {
  tx.Query("SELECT id FROM queue WHERE run_id = $1 {FOR UPDATE}", {run_id});
  Rows run = tx.Query(
      "SELECT status, function_id, lane_key FROM runs WHERE id = $1 {FOR NO KEY UPDATE}", {run_id});
  if (run.empty()) return NotFound("no run \"" + run_id + "\"");
  if (IsTerminalStatus(run[0].Text(0))) return false;
  tx.Send("UPDATE runs SET status = 'cancelled', error = $2::jsonb, ended_at_ms = $3 WHERE id = $1",
          {run_id, JsonValue(error), now_ms});
  EndRun(tx, run_id, run[0].Text(1), run[0].OptText(2), now_ms);
  tx.AnnounceWork();  // its lane moves on
  return true;
}

Result<bool> SqlStore::CancelRun(const std::string& run_id, const Json& error, TimePoint now) {
  const int64_t now_ms = UnixMillis(now);
  return InTransaction(
      [&](Tx& tx) -> Result<bool> { return CancelRunInTx(tx, run_id, error, now_ms); });
}

namespace {

// The run a replay with `key` started, if one did.
std::optional<std::string> ReplayOfKey(Tx& tx, const ReplayKey& key) {
  Rows used =
      tx.Query("SELECT replay_id FROM replay_keys WHERE run_id = $1 AND idempotency_key = $2",
               {key.run_id, key.key});
  if (used.empty()) return std::nullopt;
  return used[0].Text(0);
}

}  // namespace

Result<std::string> SqlStore::StartRun(const std::string& event_internal_id, const NewRun& replay,
                                       TimePoint now, const ReplayKey* key,
                                       std::optional<int64_t> functions_generation) {
  // An operator's explicit request: in a sequence lane it runs unnumbered, after the head.
  NewRun run = replay;
  run.lane_number.reset();
  const LaneLocks lanes = LanesOf({NewEvent{{}, {run}}});
  // Not gated, but paced: a replay takes a throttle slot like any new run.
  NewRun paced;
  paced.function_id = run.function_id;
  paced.throttle = run.throttle;
  // A start with `key` that another one, in flight, took first: this one's transaction rolls
  // back and it answers with that one's run.
  bool key_taken = false;
  auto started = InTransaction([&](Tx& tx) -> Result<std::string> {
    key_taken = false;
    if (functions_generation && !SameFunctionGeneration(tx, *functions_generation)) {
      return Aborted("the functions changed since the run was made from them");
    }
    if (key) {
      // The replayed run locked as the key row's foreign key would: retention passes it by.
      if (tx.Query("SELECT 1 FROM runs WHERE id = $1 {FOR KEY SHARE}", {key->run_id}).empty()) {
        return NotFound("no run \"" + key->run_id + "\"");
      }
      if (auto used = ReplayOfKey(tx, *key)) return *used;
    }
    // The lock the run's foreign key takes at its insert, taken first: retention skips the
    // event from here on, and one that deleted it before has committed when this returns.
    // (Read without it, an event deleted between this read and the insert failed the insert
    // on the foreign key: a 500 where the API answers a missing event with a 404.)
    if (tx.Query("SELECT 1 FROM events WHERE internal_id = $1 {FOR KEY SHARE}", {event_internal_id})
            .empty()) {
      return NotFound("no event \"" + event_internal_id + "\"");
    }
    // A batch's run likewise keeps its events (run_events) from retention while this copies
    // them: without it, a run deleted meanwhile left the replay with none of them, or failed
    // it on their foreign key.
    if (run.events_of &&
        tx.Query("SELECT 1 FROM runs WHERE id = $1 {FOR KEY SHARE}", {*run.events_of}).empty()) {
      return NotFound("no run \"" + *run.events_of + "\"");
    }
    LockLanes(tx, lanes);
    LockGates(tx, {NewEvent{{}, {paced}}});  // the throttle row only, after the lanes
    CreateRun(tx, event_internal_id, run, UnixMillis(now));
    RecordCancelKeys(tx, run.run_id, run.cancel_keys);
    if (run.events_of) {  // a batch's run: the replay gets all its events
      tx.Send(
          "INSERT INTO run_events (run_id, position, event_id) SELECT $1, position, event_id "
          "FROM run_events WHERE run_id = $2 ON CONFLICT DO NOTHING",
          {run.run_id, *run.events_of});
    }
    if (key && tx.Query("INSERT INTO replay_keys (run_id, idempotency_key, replay_id) VALUES "
                        "($1, $2, $3) ON CONFLICT DO NOTHING RETURNING replay_id",
                        {key->run_id, key->key, run.run_id})
                   .empty()) {
      key_taken = true;
      return Aborted("the idempotency key was taken meanwhile");
    }
    tx.AnnounceWork();
    return run.run_id;
  });
  if (key_taken) {
    return InTransaction([&](Tx& tx) -> Result<std::string> {
      if (auto used = ReplayOfKey(tx, *key)) return *used;
      return Internal("an idempotency key taken and then gone");
    });
  }
  return started;
}

Result<std::vector<std::string>> SqlStore::CancelTimedOutRuns(TimePoint now, int limit) {
  const int64_t now_ms = UnixMillis(now);
  ASSIGN_OR_RETURN(auto due, InTransaction([&](Tx& tx) -> Result<std::vector<std::string>> {
                     return DueTimeouts(tx, now_ms, limit);
                   }));
  // One transaction a run: one that started or ended meanwhile is left alone.
  std::vector<std::string> cancelled;
  for (const std::string& run_id : due) {
    ASSIGN_OR_RETURN(bool ended, InTransaction([&](Tx& tx) -> Result<bool> {
                       return CancelIfTimedOut(tx, run_id, now_ms);
                     }));
    if (ended) cancelled.push_back(run_id);
  }
  return cancelled;
}

Result<std::vector<ActiveRun>> SqlStore::ActiveRuns(const std::string& function_id,
                                                    int64_t before_ms,
                                                    const std::string& after_run_id, int limit) {
  return InTransaction([&](Tx& tx) -> Result<std::vector<ActiveRun>> {
    std::vector<ActiveRun> out;
    for (Row row : tx.Query(
             WithinPageBytes(std::string("SELECT r.id, e.payload, r.created_at_ms FROM runs r "
                                         "JOIN events e ON e.internal_id = r.event_id WHERE "
                                         "r.function_id = $1 AND ") +
                                 kRunNotEnded +
                                 " AND r.created_at_ms < $3 AND e.received_at_ms < $3 AND r.id > "
                                 "$4 ORDER BY r.id LIMIT $2",
                             "id, payload, created_at_ms", "payload", "id"),
             {function_id, limit, before_ms, after_run_id})) {
      out.push_back({row.Text(0), row.JsonCol(1), row.Int(2)});
    }
    return out;
  });
}

Result<std::vector<ActiveRun>> SqlStore::CancelCandidates(
    const std::string& function_id, const std::string& rule, const std::vector<std::string>& keys,
    int64_t before_ms, int64_t created_from_ms, const std::string& after_run_id, int limit) {
  // The keys of the rule's runs with one of the keys, or with none ('*': a run made before the
  // keys were), after the run $4. Read first (MATERIALIZED), and every run and event after them
  // is found by its primary key, one lookup a key (scalar subqueries, which no plan turns into
  // a join; the delete's key rows are joined from `d`, which PostgreSQL takes for a few):
  // PostgreSQL guesses the null keys' rows from the whole table's (those of every function's
  // unkeyed rules), a thousand where there are none, and joined by hash, reading every run or
  // every key of the table to find the one a key names.
  constexpr const char* kKeyed =
      "WITH c AS MATERIALIZED (SELECT run_id, rule FROM run_cancel_keys WHERE function_id = $1 "
      "AND rule = $2 AND key IN @list($3) AND run_id > $4 UNION ALL SELECT run_id, rule FROM "
      "run_cancel_keys WHERE function_id = $1 AND rule IN ($2, '*') AND key IS NULL "
      "AND run_id > $4)";
  const sql::Value key_list = ListValue(keys);
  return InTransaction([&](Tx& tx) -> Result<std::vector<ActiveRun>> {
    if (after_run_id.empty()) {
      // Those of ended runs go as they are come across (their other rules' keys as those
      // rules' events come across them, or with the runs): ended runs are not cancelled. Rows
      // another deletion (another event's, retention's) holds are left to it.
      tx.Send(std::string(kKeyed) +
                  ", d AS MATERIALIZED (SELECT run_id, rule FROM c WHERE (SELECT 1 FROM runs r "
                  "WHERE r.id = c.run_id AND r.status NOT IN " +
                  kEndedStatuses +
                  ") IS NULL) DELETE FROM run_cancel_keys WHERE (run_id, rule) IN "
                  "(SELECT k.run_id, k.rule FROM d JOIN run_cancel_keys k ON k.run_id = d.run_id "
                  "AND k.rule = d.rule {FOR UPDATE OF k SKIP LOCKED})",
              {function_id, rule, key_list, after_run_id});
    }
    // The page's runs first (p, at most $7), then their events' payloads.
    const std::string page =
        std::string(kKeyed) +
        ", p AS MATERIALIZED (SELECT c.run_id AS id FROM c WHERE (SELECT 1 FROM runs r JOIN "
        "events e ON e.internal_id = r.event_id WHERE r.id = c.run_id AND r.status NOT IN " +
        kEndedStatuses +
        " AND r.created_at_ms < $5 AND r.created_at_ms >= $6 "
        "AND e.received_at_ms < $5) IS NOT NULL ORDER BY c.run_id LIMIT $7) "
        "SELECT p.id, (SELECT e.payload FROM runs r JOIN events e ON e.internal_id = r.event_id "
        "WHERE r.id = p.id) AS payload, (SELECT r.created_at_ms FROM runs r WHERE r.id = p.id) AS "
        "created_at_ms FROM p ORDER BY p.id";
    std::vector<ActiveRun> out;
    for (Row row :
         tx.Query(WithinPageBytes(page, "id, payload, created_at_ms", "payload", "id"),
                  {function_id, rule, key_list, after_run_id, before_ms, created_from_ms, limit})) {
      out.push_back({row.Text(0), row.JsonCol(1), row.Int(2)});
    }
    return out;
  });
}

}  // namespace funcky::store
