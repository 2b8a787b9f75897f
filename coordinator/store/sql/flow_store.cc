#include "coordinator/store/sql/flow_store.h"

#include <algorithm>
#include <map>
#include <set>
#include <tuple>

#include "common/step_id.h"

namespace funcky::store {

namespace {

using sql::AnyRow;
using sql::JsonValue;
using sql::Row;
using sql::Rows;
using sql::Tx;

constexpr const char* kNoRun = "";  // a singleton row whose key has no run yet

// A gate row: (table, function id, gate, key); the singletons table has no gate column.
using GateRow = std::tuple<std::string, std::string, std::string, std::string>;

int64_t EmissionIntervalUs(const RateGate& gate) {
  return gate.period.count() * 1000 / std::max<int64_t>(gate.limit, 1);
}

// The active run holding the singleton key, or "".
std::string ActiveSingletonRun(Tx& tx, const std::string& function_id, const std::string& key) {
  static const std::string kQuery =
      std::string(
          "SELECT s.run_id FROM singletons s JOIN runs r ON r.id = s.run_id "
          "WHERE s.function_id = $1 AND s.key = $2 AND r.status NOT IN ") +
      kEndedStatuses;
  Rows r = tx.Query(kQuery, {function_id, key});
  return r.empty() ? std::string() : r[0].Text(0);
}

void RecordSkip(Tx& tx, const std::string& event_id, const NewRun& run, const char* reason,
                const std::string& key, int64_t now_ms) {
  tx.Send(
      "INSERT INTO event_skips (event_id, function_id, reason, key, at_ms) "
      "VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
      {event_id, run.function_id, reason, key, now_ms});
}

// The (function, key) rows that the runs of `events` need, by `key_of` (null: none), sorted:
// the one order in which every ingest locks them.
template <typename KeyOf>
std::set<std::pair<std::string, std::string>> KeyRows(const std::vector<NewEvent>& events,
                                                      KeyOf key_of) {
  std::set<std::pair<std::string, std::string>> rows;
  for (const NewEvent& ne : events) {
    for (const NewRun& run : ne.runs) {
      if (const std::string* key = key_of(run)) rows.emplace(run.function_id, *key);
    }
  }
  return rows;
}

// Locks the run's queue items, then its row (the order Apply, Claim and CancelRun use), and
// returns its status, started_at_ms and `columns` while it is unclaimed: queued, never
// started, no item leased (a run waiting behind its lane's head has no item yet). A claim
// that leased an item first has committed by the time these locks are granted (SKIP LOCKED
// claims pass over an item this holds). Empty otherwise.
Rows LockUnclaimedRun(Tx& tx, const std::string& run_id, const std::string& columns) {
  Rows items = tx.Query("SELECT lease_token FROM queue WHERE run_id = $1 {FOR UPDATE}", {run_id});
  Rows r = tx.Query(
      "SELECT status, started_at_ms, " + columns + " FROM runs WHERE id = $1 {FOR NO KEY UPDATE}",
      {run_id});
  bool unclaimed = !r.empty() && r[0].Text(0) == kQueued && r[0].Null(1);
  for (Row item : items) unclaimed = unclaimed && item.Null(0);
  return unclaimed ? r : Rows();
}

}  // namespace

void LockSingletonTargets(Tx& tx, const std::vector<NewEvent>& events) {
  std::set<std::string> targets;
  for (const NewEvent& ne : events) {
    for (const NewRun& run : ne.runs) {
      if (!run.singleton || !run.singleton->cancel || !run.lane_key) continue;
      std::string active = ActiveSingletonRun(tx, run.function_id, run.singleton->key);
      if (!active.empty()) targets.insert(std::move(active));
    }
  }
  for (const std::string& run_id : targets) {
    tx.Query("SELECT id FROM queue WHERE run_id = $1 {FOR UPDATE}", {run_id});
    tx.Query("SELECT id FROM runs WHERE id = $1 {FOR NO KEY UPDATE}", {run_id});
  }
}

void LockGates(Tx& tx, const std::vector<NewEvent>& events) {
  std::set<GateRow> rows;
  for (const NewEvent& ne : events) {
    for (const NewRun& run : ne.runs) {
      if (run.rate) rows.emplace("flow_rates", run.function_id, run.rate->reason, run.rate->key);
      if (run.singleton) rows.emplace("singletons", run.function_id, "", run.singleton->key);
      if (run.throttle)
        rows.emplace("flow_rates", run.function_id, kThrottleGate, run.throttle->key);
    }
  }
  // An upsert that changes nothing still takes the row's lock until the transaction ends.
  for (const auto& [table, function_id, gate, key] : rows) {
    if (table == "flow_rates") {
      tx.Send(
          "INSERT INTO flow_rates (function_id, gate, key, tat_us) VALUES ($1, $2, $3, 0) "
          "ON CONFLICT (function_id, gate, key) DO UPDATE SET tat_us = flow_rates.tat_us",
          {function_id, gate, key});
    } else {
      tx.Send(
          "INSERT INTO singletons (function_id, key, run_id) VALUES ($1, $2, $3) "
          "ON CONFLICT (function_id, key) DO UPDATE SET run_id = singletons.run_id",
          {function_id, key, kNoRun});
    }
  }
}

GateDecision Admit(Tx& tx, const std::string& event_id, const NewRun& run, int64_t now_ms) {
  GateDecision d;
  const int64_t now_us = now_ms * 1000;
  int64_t next_tat_us = 0;
  if (run.rate) {
    // GCRA: a run arriving at `now` conforms while the theoretical arrival time is at most
    // `period - interval` ahead of it (a burst of `limit`), and moves it on by one interval.
    Rows r = tx.Query(
        "SELECT tat_us FROM flow_rates WHERE function_id = $1 AND gate = $2 "
        "AND key = $3",
        {run.function_id, run.rate->reason, run.rate->key});
    const int64_t interval = EmissionIntervalUs(*run.rate);
    const int64_t tat = std::max(r.empty() ? 0 : r[0].Int(0), now_us);
    if (tat - now_us > run.rate->period.count() * 1000 - interval) {
      RecordSkip(tx, event_id, run,
                 run.rate->reason == kSkipIdempotency ? kSkipIdempotency : kSkipRateLimit,
                 run.rate->key, now_ms);
      d.admitted = false;
      return d;
    }
    next_tat_us = tat + interval;
  }
  std::string active;
  if (run.singleton) {
    active = ActiveSingletonRun(tx, run.function_id, run.singleton->key);
    if (!active.empty() && !run.singleton->cancel) {
      RecordSkip(tx, event_id, run, kSkipSingleton, run.singleton->key, now_ms);
      d.admitted = false;
      return d;
    }
  }
  if (run.rate) {
    tx.Send("UPDATE flow_rates SET tat_us = $4 WHERE function_id = $1 AND gate = $2 AND key = $3",
            {run.function_id, run.rate->reason, run.rate->key, next_tat_us});
  }
  if (run.singleton) {
    if (!active.empty()) {
      auto cancelled = CancelRunInTx(
          tx, active,
          {{"name", "Cancelled"},
           {"message", "cancelled by singleton (mode cancel): event " + event_id + " started run " +
                           run.run_id + " of key \"" + run.singleton->key + "\""}},
          now_ms);
      if (cancelled.ok() && *cancelled) d.cancelled.push_back(active);
    }
    tx.Send("UPDATE singletons SET run_id = $3 WHERE function_id = $1 AND key = $2",
            {run.function_id, run.singleton->key, run.run_id});
  }
  return d;
}

std::optional<int64_t> TakeThrottleSlot(Tx& tx, const NewRun& run, int64_t now_ms) {
  if (!run.throttle) return std::nullopt;
  const ThrottleGate& gate = *run.throttle;
  // GCRA with interval T = period / limit and tolerance (burst + 1) * T: a run arriving at
  // `now` conforms from max(now, tat - burst * T) on, and moves tat on to max(tat, now) + T.
  // Each run is admitted at that time, never refused: its first call is due then.
  Rows r =
      tx.Query("SELECT tat_us FROM flow_rates WHERE function_id = $1 AND gate = $2 AND key = $3",
               {run.function_id, kThrottleGate, gate.key});
  // The backlog is bounded: a key's slots go at most 366 days ahead (12,000 runs of a limit
  // of one a week went past what a time point holds, and 15 million past int64). Runs past
  // it take the last slot; the claim still paces them (PaceStarts).
  constexpr int64_t kMaxAheadUs = int64_t{366} * 24 * 3600 * 1'000'000;
  const int64_t now_us = now_ms * 1000;
  const int64_t interval = gate.period.count() * 1000 / std::max<int64_t>(gate.limit, 1);
  const int64_t tat = std::min(std::max(r.empty() ? 0 : r[0].Int(0), now_us), now_us + kMaxAheadUs);
  const int64_t slot_us = std::max(now_us, tat - gate.burst * interval);
  tx.Send(
      "INSERT INTO flow_rates (function_id, gate, key, tat_us) VALUES ($1, $2, $3, $4) "
      "ON CONFLICT (function_id, gate, key) DO UPDATE SET tat_us = EXCLUDED.tat_us",
      {run.function_id, kThrottleGate, gate.key, std::min(tat + interval, now_us + kMaxAheadUs)});
  return (slot_us + 999) / 1000;  // a call is never due before its slot
}

std::vector<std::pair<int64_t, int64_t>> PaceStarts(Tx& tx, std::vector<QueueItem>& claimed,
                                                    int64_t now_ms) {
  if (claimed.empty()) return {};
  // Only a run's first call can be one (no query for claims of later calls).
  auto first_call = [](const QueueItem& item) {
    return item.step_id == kDiscoveryStepId && item.attempt == 0 && !item.resume;
  };
  std::vector<std::string> run_ids;
  for (const QueueItem& item : claimed) {
    if (first_call(item)) run_ids.push_back(item.run_id);
  }
  if (run_ids.empty()) return {};
  // Runs never claimed yet (queued) with a throttle: their first call is among these.
  struct Pace {
    std::string function_id, key;
    int64_t interval_us = 0, burst = 0;
  };
  std::map<std::string, Pace> paced;
  std::set<std::pair<std::string, std::string>> keys;
  for (Row row : tx.Query("SELECT id, function_id, throttle_key, throttle_interval_us, "
                          "throttle_burst FROM runs WHERE id IN @list($1) AND status = 'queued' "
                          "AND throttle_interval_us IS NOT NULL",
                          {sql::ListValue(run_ids)})) {
    paced[row.Text(0)] = {row.Text(1), row.Text(2), row.Int(3), row.Int(4)};
    keys.emplace(row.Text(1), row.Text(2));
  }
  if (paced.empty()) return {};
  for (const auto& [function_id, key] : keys) {  // sorted: one lock order for every claim
    tx.Send(
        "INSERT INTO flow_rates (function_id, gate, key, tat_us) VALUES ($1, $2, $3, 0) "
        "ON CONFLICT (function_id, gate, key) DO UPDATE SET tat_us = flow_rates.tat_us",
        {function_id, kThrottleStartGate, key});
  }
  const int64_t now_us = now_ms * 1000;
  std::vector<QueueItem> kept;
  std::vector<std::pair<int64_t, int64_t>> held;
  for (QueueItem& item : claimed) {
    auto it = paced.find(item.run_id);
    if (it == paced.end() || !first_call(item)) {
      kept.push_back(std::move(item));
      continue;
    }
    const Pace& p = it->second;
    Rows r =
        tx.Query("SELECT tat_us FROM flow_rates WHERE function_id = $1 AND gate = $2 AND key = $3",
                 {p.function_id, kThrottleStartGate, p.key});
    const int64_t tat = std::max(r.empty() ? 0 : r[0].Int(0), now_us);
    const int64_t allowed_us = tat - p.burst * p.interval_us;
    if (allowed_us > now_us) {
      held.emplace_back(item.id, (allowed_us + 999) / 1000);
      continue;
    }
    tx.Send("UPDATE flow_rates SET tat_us = $4 WHERE function_id = $1 AND gate = $2 AND key = $3",
            {p.function_id, kThrottleStartGate, p.key, tat + p.interval_us});
    kept.push_back(std::move(item));
  }
  claimed = std::move(kept);
  return held;
}

RunDeadlines DeadlinesOf(const NewRun& run, int64_t start_from_ms) {
  RunDeadlines out;
  if (!run.timeouts) return out;
  if (run.timeouts->start) out.timeout_at_ms = start_from_ms + run.timeouts->start->count();
  if (run.timeouts->finish) out.finish_timeout_ms = run.timeouts->finish->count();
  return out;
}

void RecordCancelKeys(Tx& tx, const std::string& run_id, const std::vector<CancelKey>& keys,
                      bool replace) {
  if (replace) tx.Send("DELETE FROM run_cancel_keys WHERE run_id = $1", {run_id});
  for (const CancelKey& k : keys) {
    tx.Send(
        "INSERT INTO run_cancel_keys (run_id, function_id, rule, key) "
        "SELECT id, function_id, $2, $3 FROM runs WHERE id = $1 ON CONFLICT DO NOTHING",
        {run_id, k.rule, k.key});
  }
}

namespace {

// Active runs past their deadline (runs.timeout_at_ms), as the partial index runs_timeout
// holds them: its predicate, word for word, so that SQLite uses it too.
const std::string kPastDeadline =
    std::string("timeout_at_ms <= $1 AND timeout_at_ms IS NOT NULL AND status NOT IN ") +
    kEndedStatuses;

}  // namespace

std::vector<std::string> DueTimeouts(Tx& tx, int64_t now_ms, int limit) {
  std::vector<std::string> out;
  for (Row row : tx.Query(std::string("SELECT id FROM runs WHERE ") + kPastDeadline +
                              " ORDER BY timeout_at_ms LIMIT $2",
                          {now_ms, limit})) {
    out.push_back(row.Text(0));
  }
  return out;
}

std::string AnyTimeoutsDue() {
  return AnyRow(std::string("runs WHERE ") + kPastDeadline, "timeout_at_ms");
}

Result<bool> CancelIfTimedOut(Tx& tx, const std::string& run_id, int64_t now_ms) {
  // The order CancelRun locks in: the run's queue items, then its row.
  tx.Query("SELECT id FROM queue WHERE run_id = $1 {FOR UPDATE}", {run_id});
  // By id alone, the deadline checked here: a lookup by id that said runs_timeout's predicate
  // could take that index, when counted empty, for a scan of every deadline due.
  Rows run = tx.Query(
      "SELECT started_at_ms, timeout_at_ms, status FROM runs WHERE id = $1 {FOR NO KEY UPDATE}",
      {run_id});
  if (run.empty() || run[0].Null(1) || run[0].Int(1) > now_ms || IsTerminalStatus(run[0].Text(2))) {
    return false;  // started, finished or ended meanwhile
  }
  const bool started = !run[0].Null(0);
  Json error = {{"name", "Timeout"},
                {"message", started ? "the run did not finish within timeouts.finish of its start"
                                    : "the run did not start within timeouts.start of its "
                                      "creation"}};
  return CancelRunInTx(tx, run_id, error, now_ms);
}

std::vector<EventSkip> ReadSkips(Tx& tx, const std::string& event_id) {
  std::vector<EventSkip> out;
  for (Row row : tx.Query("SELECT function_id, reason, key, at_ms FROM event_skips "
                          "WHERE event_id = $1 ORDER BY function_id",
                          {event_id})) {
    out.push_back({row.Text(0), row.Text(1), row.Text(2), row.Int(3)});
  }
  return out;
}

int64_t DeleteSpentGates(Tx& tx, int64_t horizon_ms) {
  // SKIP LOCKED: a row an ingest holds is deciding a run right now.
  int64_t n = tx.Exec(
      "DELETE FROM flow_rates WHERE (function_id, gate, key) IN (SELECT function_id, gate, key "
      "FROM flow_rates WHERE tat_us < $1 LIMIT 1000 {FOR UPDATE SKIP LOCKED})",
      {horizon_ms * 1000});
  n += tx.Exec(std::string("DELETE FROM singletons WHERE (function_id, key) IN (SELECT "
                           "s.function_id, s.key FROM singletons s WHERE NOT EXISTS (SELECT 1 "
                           "FROM runs r WHERE r.id = s.run_id AND r.status NOT IN ") +
                   kEndedStatuses + ") LIMIT 1000 {FOR UPDATE OF s SKIP LOCKED})",
               {});
  return n;
}

// Debounce: one row per (function, key) naming the pending run, when its debounce began and
// the `ts` of the event it holds.
void LockDebounces(Tx& tx, const std::vector<NewEvent>& events) {
  const auto rows = KeyRows(
      events, [](const NewRun& run) { return run.debounce ? &run.debounce->key : nullptr; });
  for (const auto& [function_id, key] : rows) {
    tx.Send(
        "INSERT INTO debounces (function_id, key, run_id, first_ms, event_ts_ms) "
        "VALUES ($1, $2, $3, 0, 0) ON CONFLICT (function_id, key) DO UPDATE SET "
        "run_id = debounces.run_id",
        {function_id, key, kNoRun});
  }
}

Debounced Debounce(Tx& tx, const std::string& event_id, const NewRun& run, int64_t now_ms) {
  const DebounceGate& gate = *run.debounce;
  Rows row = tx.Query(
      "SELECT run_id, first_ms, event_ts_ms FROM debounces WHERE function_id = $1 AND key = $2",
      {run.function_id, gate.key});
  if (row.empty() || row[0].Text(0).empty()) return Debounced::kNewRun;
  const std::string pending = row[0].Text(0);
  // Pending: queued, never claimed, its (only) first call not leased, or not given yet (it
  // waits behind its lane's head).
  Rows r = LockUnclaimedRun(tx, pending, "event_id, throttle_slot_ms");
  if (r.empty()) return Debounced::kNewRun;
  if (gate.event_ts_ms < row[0].Int(2)) {
    RecordSkip(tx, event_id, run, kSkipDebounce, gate.key, now_ms);
    return Debounced::kLate;
  }
  int64_t due = DebounceDue(run, row[0].Int(1), now_ms);
  // The run's start slot holds its earlier due time (never later than this one) or a
  // throttle's slot, which still holds.
  if (!r[0].Null(3)) due = std::max(due, r[0].Int(3));
  // Nor before the joining event's own start time (an event `ts` in the future).
  if (run.start_at_ms) due = std::max(due, *run.start_at_ms);
  // Its first call, with a negative priority, not before that allows either (FirstCallOf): on
  // the call only, as for a run created so; kept in the start slot, a later join at priority
  // 0 read it back and still waited for it.
  const int64_t call_due = run.priority_s < 0 ? std::max(due, now_ms - run.priority_s * 1000) : due;
  RecordSkip(tx, r[0].Text(2), run, kSkipDebounce, gate.key, now_ms);
  // Its timeouts.start counts from when the debounce is due (DeadlinesOf), if it had one.
  std::optional<int64_t> start_deadline;
  if (run.timeouts && run.timeouts->start) start_deadline = due + run.timeouts->start->count();
  // It runs with the joining event: its concurrency keys and priority are that event's, on the
  // run and on its first call (which copies them from the run when it is given later, behind
  // a lane's head). (Its throttle slot, taken with the first event, stays.)
  tx.Send(
      "UPDATE runs SET event_id = $2, throttle_slot_ms = $3, timeout_at_ms = CASE WHEN "
      "timeout_at_ms IS NOT NULL THEN COALESCE($4::bigint, timeout_at_ms) END, "
      "concurrency_key = $5, concurrency_key2 = $6, priority_s = $7 WHERE id = $1",
      {pending, event_id, due, start_deadline, run.concurrency_key, run.concurrency_key2,
       run.priority_s});
  // Its event is the joining one: a cancel_on event finds it by that one's keys, and by none
  // of the earlier event's (a rule dropped and synced again later finds the run keyed for it).
  RecordCancelKeys(tx, pending, run.cancel_keys, /*replace=*/true);
  tx.Send(
      "UPDATE queue SET visible_at_ms = $2, concurrency_key = $3, concurrency_key2 = $4, "
      "priority_ms = $5 WHERE run_id = $1",
      {pending, call_due, run.concurrency_key, run.concurrency_key2,
       std::max<int64_t>(run.priority_s, 0) * 1000});
  // As the head of its lane (locked: the debounce key is the lane key), its head_timeout
  // counts from its first call's due time, as TakeHead set it.
  if (run.lane_key) {
    tx.Send(
        "UPDATE lanes SET head_deadline_ms = $4 + head_timeout_ms "
        "WHERE function_id = $1 AND key = $2 AND head_run_id = $3",
        {run.function_id, *run.lane_key, pending, call_due});
  }
  tx.Send("UPDATE debounces SET event_ts_ms = $3 WHERE function_id = $1 AND key = $2",
          {run.function_id, gate.key, gate.event_ts_ms});
  return Debounced::kJoined;
}

int64_t DebounceDue(const NewRun& run, int64_t first_ms, int64_t now_ms) {
  const DebounceGate& gate = *run.debounce;
  int64_t due = now_ms + gate.period.count();
  if (gate.timeout) due = std::min(due, first_ms + gate.timeout->count());
  return due;
}

NewRun DebouncedRun(const NewRun& run, int64_t now_ms) {
  const int64_t due = DebounceDue(run, now_ms, now_ms);
  NewRun held = run;
  held.start_at_ms = std::max(run.start_at_ms.value_or(due), due);
  return held;
}

void StartDebounce(Tx& tx, const NewRun& run, int64_t now_ms) {
  const DebounceGate& gate = *run.debounce;
  tx.Send(
      "UPDATE debounces SET run_id = $3, first_ms = $4, event_ts_ms = $5 "
      "WHERE function_id = $1 AND key = $2",
      {run.function_id, gate.key, run.run_id, now_ms, gate.event_ts_ms});
}

int64_t DeleteEndedDebounces(Tx& tx) {
  return tx.Exec(
      "DELETE FROM debounces WHERE (function_id, key) IN (SELECT d.function_id, d.key "
      "FROM debounces d WHERE NOT EXISTS (SELECT 1 FROM runs r WHERE r.id = d.run_id "
      "AND r.status = 'queued' AND r.started_at_ms IS NULL) LIMIT 1000 "
      "{FOR UPDATE OF d SKIP LOCKED})",
      {});
}

// batchEvents: one row per (function, key) naming the open batch's run, when its first event
// arrived, how many events it holds and their size as JSON.
void LockBatches(Tx& tx, const std::vector<NewEvent>& events) {
  const auto rows =
      KeyRows(events, [](const NewRun& run) { return run.batch ? &run.batch->key : nullptr; });
  for (const auto& [function_id, key] : rows) {
    tx.Send(
        "INSERT INTO batches (function_id, key, run_id, first_ms, size, bytes) "
        "VALUES ($1, $2, $3, 0, 0, 0) "
        "ON CONFLICT (function_id, key) DO UPDATE SET run_id = batches.run_id",
        {function_id, key, kNoRun});
  }
}

bool JoinBatch(Tx& tx, const std::string& event_id, int64_t event_bytes, const NewRun& run,
               int64_t now_ms) {
  const BatchGate& gate = *run.batch;
  Rows row = tx.Query(
      "SELECT run_id, first_ms, size, bytes FROM batches WHERE function_id = $1 AND key = $2",
      {run.function_id, gate.key});
  if (row.empty() || row[0].Text(0).empty()) return false;
  // Timed out: its timer (the run's first call) starts it with what it holds, even if a
  // concurrency limit holds that call back.
  if (row[0].Int(1) + gate.timeout.count() <= now_ms) return false;
  const std::string open = row[0].Text(0);
  // Open: its run unclaimed, so an event never joins a run whose events were read for a call.
  Rows r = LockUnclaimedRun(tx, open, "throttle_slot_ms");
  if (r.empty()) return false;
  const int64_t size = row[0].Int(2);
  const int64_t bytes = row[0].Int(3) + event_bytes;
  const bool joins = bytes <= kMaxBatchBytes;
  if (joins) {
    tx.Send("INSERT INTO run_events (run_id, position, event_id) VALUES ($1, $2, $3)",
            {open, size, event_id});
    if (size + 1 < gate.max_size) {
      tx.Send("UPDATE batches SET size = $3, bytes = $4 WHERE function_id = $1 AND key = $2",
              {run.function_id, gate.key, size + 1, bytes});
      return true;
    }
  }
  // Full, or too large to take this event: the run starts now (at its throttle slot if that
  // is later), and the next event of the key opens a new batch. Its timeouts.start counts
  // from now, not from the timer.
  const int64_t due = r[0].Null(2) ? now_ms : std::max(now_ms, r[0].Int(2));
  tx.Send("UPDATE queue SET visible_at_ms = $2 WHERE run_id = $1", {open, due});
  tx.Send(
      "UPDATE runs SET timeout_at_ms = timeout_at_ms - $2 "
      "WHERE id = $1 AND timeout_at_ms IS NOT NULL",
      {open, row[0].Int(1) + gate.timeout.count() - now_ms});
  tx.Send("UPDATE batches SET run_id = $3 WHERE function_id = $1 AND key = $2",
          {run.function_id, gate.key, kNoRun});
  return joins;
}

void StartBatch(Tx& tx, const std::string& event_id, int64_t event_bytes, const NewRun& run,
                int64_t now_ms) {
  const BatchGate& gate = *run.batch;
  const int64_t due = now_ms + gate.timeout.count();
  if (tx.Exec("UPDATE queue SET visible_at_ms = CASE WHEN visible_at_ms > $2 THEN visible_at_ms "
              "ELSE $2 END WHERE run_id = $1 AND lease_token IS NULL",
              {run.run_id, due}) == 0) {
    return;  // no run was created (its id existed)
  }
  tx.Send("INSERT INTO run_events (run_id, position, event_id) VALUES ($1, 0, $2)",
          {run.run_id, event_id});
  // timeouts.start counts from when the batch is started (as in Inngest, where the run is
  // created then): from the timer, or from the event that fills it (JoinBatch).
  tx.Send(
      "UPDATE runs SET timeout_at_ms = timeout_at_ms + $2 "
      "WHERE id = $1 AND timeout_at_ms IS NOT NULL",
      {run.run_id, gate.timeout.count()});
  tx.Send(
      "UPDATE batches SET run_id = $3, first_ms = $4, size = 1, bytes = $5 "
      "WHERE function_id = $1 AND key = $2",
      {run.function_id, gate.key, run.run_id, now_ms, event_bytes});
}

int64_t DeleteClosedBatches(Tx& tx, int64_t horizon_ms) {
  // A row is kept while its run is unclaimed and it may still be open: JoinBatch decides
  // under the row's lock whether it is. One that began the longest batch timeout before the
  // horizon (which is not after now) is closed, however short the retention: a shorter
  // bound deleted open batches, and the key's next event opened a second one beside them.
  return tx.Exec(
      "DELETE FROM batches WHERE (function_id, key) IN (SELECT b.function_id, b.key "
      "FROM batches b WHERE b.first_ms < $1 OR NOT EXISTS (SELECT 1 FROM runs r "
      "WHERE r.id = b.run_id AND r.status = 'queued' AND r.started_at_ms IS NULL) LIMIT 1000 "
      "{FOR UPDATE OF b SKIP LOCKED})",
      {horizon_ms - kMaxBatchTimeout.count()});
}

}  // namespace funcky::store
