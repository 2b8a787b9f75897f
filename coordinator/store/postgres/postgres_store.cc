#include "coordinator/store/postgres/postgres_store.h"

#include <algorithm>
#include <map>
#include <set>

#include "common/crypto.h"
#include "common/step_id.h"
#include "coordinator/store/claim_rules.h"
#include "coordinator/store/migration.h"

namespace funcky::store {

namespace {

// Keeps concurrent `funcky migrate` / start-ups from applying the same migration twice.
constexpr int64_t kMigrationLockId = 0x66756e636b79;  // "funcky"

std::string ToText(const Json& j) { return j.dump(); }

// A JSON parameter: SQL NULL for a null value.
const char* JsonParam(const Json& j, std::string& storage) {
  if (j.is_null()) return nullptr;
  storage = ToText(j);
  return storage.c_str();
}

// An int parameter: SQL NULL when absent.
template <typename Int>
const char* IntParam(const std::optional<Int>& v, std::string& storage) {
  if (!v) return nullptr;
  storage = std::to_string(*v);
  return storage.c_str();
}

Json JsonField(const pqxx::field& f) {
  if (f.is_null()) return nullptr;
  return Json::parse(f.c_str(), nullptr, /*allow_exceptions=*/false);
}

std::optional<int64_t> OptionalInt(const pqxx::field& f) {
  if (f.is_null()) return std::nullopt;
  return f.as<int64_t>();
}

// A text[] literal; elements are quoted and escaped.
std::string ArrayLiteral(const std::vector<std::string>& items) {
  std::string out = "{";
  for (size_t i = 0; i < items.size(); ++i) {
    if (i) out += ',';
    out += '"';
    for (char c : items[i]) {
      if (c == '"' || c == '\\') out += '\\';
      out += c;
    }
    out += '"';
  }
  out += '}';
  return out;
}

constexpr const char* kRunColumns =
    "r.id, r.function_id, r.event_id, r.status, r.lane_key, r.output, r.error, r.req_version, "
    "r.created_at_ms, r.started_at_ms, r.ended_at_ms, r.concurrency_key, "
    "(SELECT e.name FROM events e WHERE e.internal_id = r.event_id)";

RunRecord ReadRun(const pqxx::row& row) {
  RunRecord r;
  r.id = row[0].as<std::string>();
  r.function_id = row[1].as<std::string>();
  r.event_id = row[2].as<std::string>();
  r.status = row[3].as<std::string>();
  if (!row[4].is_null()) r.lane_key = row[4].as<std::string>();
  r.output = JsonField(row[5]);
  r.error = JsonField(row[6]);
  r.req_version = row[7].as<int>();
  r.created_at_ms = row[8].as<int64_t>();
  r.started_at_ms = OptionalInt(row[9]);
  r.ended_at_ms = OptionalInt(row[10]);
  if (!row[11].is_null()) r.concurrency_key = row[11].as<std::string>();
  if (!row[12].is_null()) r.event_name = row[12].as<std::string>();
  return r;
}

constexpr const char* kFunctionColumns =
    "f.id, f.app_id, f.name, f.config, f.archived, f.updated_at_ms, f.concurrency_limit, "
    "f.key_concurrency_limit";

FunctionRecord ReadFunction(const pqxx::row& row, int offset = 0) {
  FunctionRecord f;
  f.id = row[offset + 0].as<std::string>();
  f.app_id = row[offset + 1].as<std::string>();
  f.name = row[offset + 2].as<std::string>();
  f.config = JsonField(row[offset + 3]);
  f.archived = row[offset + 4].as<bool>();
  f.updated_at_ms = row[offset + 5].as<int64_t>();
  f.concurrency_limit = row[offset + 6].as<int>();
  f.key_concurrency_limit = row[offset + 7].as<int>();
  return f;
}

const char* OptionalText(const std::optional<std::string>& v) { return v ? v->c_str() : nullptr; }

// Queues a call of `run_id` due at `due_ms`; the function and concurrency key are copied
// from the run so a claim can count calls in flight without a join.
void EnqueueCall(pqxx::work& w, const std::string& run_id, const std::string& step_id,
                 int64_t due_ms, int64_t now_ms, const std::optional<Json>& resume = std::nullopt) {
  w.exec_params(
      "INSERT INTO queue (run_id, step_id, attempt, visible_at_ms, created_at_ms, function_id, "
      "concurrency_key, resume) SELECT $1, $2, 0, $3, $4, function_id, concurrency_key, "
      "$5::jsonb FROM runs WHERE id = $1",
      run_id, step_id, due_ms, now_ms, resume ? resume->dump().c_str() : nullptr);
}

// The head run `run_id` of lane (function_id, key) has finished: the next run of the key
// (in acceptance order) becomes the head and gets its first call, or the lane is removed
// when it is empty. The caller holds the run's row lock; this takes the lane's.
// Returns false (and changes nothing) when `run_id` is not the head.
bool AdvanceLane(pqxx::work& w, const std::string& function_id, const std::string& key,
                 const std::string& run_id, int64_t head_seq, int64_t now_ms) {
  auto lane = w.exec_params(
      "UPDATE lanes SET depth = depth - 1, head_run_id = NULL, head_since_ms = NULL, "
      "head_deadline_ms = NULL WHERE function_id = $1 AND key = $2 AND head_run_id = $3",
      function_id, key, run_id);
  if (lane.affected_rows() == 0) return false;  // skipped or timed out already
  auto next = w.exec_params(
      "SELECT id FROM runs WHERE function_id = $1 AND lane_key = $2 AND lane_seq > $3 "
      "AND status = 'queued' ORDER BY lane_seq LIMIT 1",
      function_id, key, head_seq);
  if (next.empty()) {
    w.exec_params("DELETE FROM lanes WHERE function_id = $1 AND key = $2 AND depth <= 0",
                  function_id, key);
    return true;
  }
  const std::string next_id = next[0][0].as<std::string>();
  w.exec_params(
      "UPDATE lanes SET head_run_id = $3, head_since_ms = $4, "
      "head_deadline_ms = $4 + head_timeout_ms WHERE function_id = $1 AND key = $2",
      function_id, key, next_id, now_ms);
  EnqueueCall(w, next_id, "step", now_ms, now_ms);
  return true;
}

// Takes (creating it if new) the lane row of each lane in `lanes`: the lock every writer of
// a lane takes first, so lanes are always locked in one order.
void LockLanes(pqxx::work& w, const LaneLocks& lanes) {
  std::string t;
  for (const auto& [lane, timeout] : lanes) {
    w.exec_params(
        "INSERT INTO lanes (function_id, key, head_timeout_ms) VALUES ($1, $2, $3) "
        "ON CONFLICT (function_id, key) DO UPDATE SET head_timeout_ms = EXCLUDED.head_timeout_ms",
        lane.first, lane.second, IntParam(timeout, t));
  }
}

// Removes lanes that LockLanes created but no run joined.
void DropEmptyLanes(pqxx::work& w, const LaneLocks& lanes) {
  for (const auto& [lane, timeout] : lanes) {
    w.exec_params("DELETE FROM lanes WHERE function_id = $1 AND key = $2 AND depth = 0", lane.first,
                  lane.second);
  }
}

// Creates `run` for the stored event `event_id`, queued now or behind its lane (locked).
void CreateRun(pqxx::work& w, const std::string& event_id, const NewRun& run, int64_t now_ms) {
  auto created = w.exec_params(
      "INSERT INTO runs (id, function_id, event_id, status, lane_key, concurrency_key, "
      "created_at_ms) VALUES ($1, $2, $3, 'queued', $4, $5, $6) "
      "ON CONFLICT DO NOTHING RETURNING id",
      run.run_id, run.function_id, event_id, OptionalText(run.lane_key),
      OptionalText(run.concurrency_key), now_ms);
  if (created.empty()) return;
  if (run.lane_key) {
    // Take the next place in the lane; the run starts now only if the lane was free.
    auto lane = w.exec_params(
        "UPDATE lanes SET next_seq = next_seq + 1, depth = depth + 1, "
        "head_run_id = COALESCE(head_run_id, $3), "
        "head_since_ms = CASE WHEN head_run_id IS NULL THEN $4 ELSE head_since_ms END, "
        "head_deadline_ms = CASE WHEN head_run_id IS NULL THEN $4 + head_timeout_ms "
        "ELSE head_deadline_ms END "
        "WHERE function_id = $1 AND key = $2 RETURNING next_seq, head_run_id",
        run.function_id, *run.lane_key, run.run_id, now_ms);
    w.exec_params("UPDATE runs SET lane_seq = $2 WHERE id = $1", run.run_id,
                  lane[0][0].as<int64_t>());
    if (lane[0][1].as<std::string>() != run.run_id) return;
  }
  EnqueueCall(w, run.run_id, "step", now_ms, now_ms);
}

// The open waits for events named any of `names`, oldest first.
std::vector<WaitRecord> ReadWaits(pqxx::work& w, const std::vector<std::string>& names) {
  std::vector<WaitRecord> out;
  for (const auto& row : w.exec_params(
           "SELECT w.run_id, w.step_id, w.function_id, w.event_name, w.expression, w.kind, "
           "e.payload, w.created_at_ms, w.expires_at_ms FROM waits w "
           "JOIN runs r ON r.id = w.run_id JOIN events e ON e.internal_id = r.event_id "
           "WHERE w.event_name = ANY($1::text[]) ORDER BY w.created_at_ms LIMIT 10000",
           ArrayLiteral(names))) {
    out.push_back({row[0].as<std::string>(), row[1].as<std::string>(), row[2].as<std::string>(),
                   row[3].as<std::string>(), row[4].as<std::string>(), row[5].as<std::string>(),
                   JsonField(row[6]), row[7].as<int64_t>(), row[8].as<int64_t>()});
  }
  return out;
}

EventRecord ReadEvent(const pqxx::row& row) {
  EventRecord e;
  e.internal_id = row[0].as<std::string>();
  e.id = row[1].as<std::string>();
  e.name = row[2].as<std::string>();
  e.payload = JsonField(row[3]);
  e.received_at_ms = row[4].as<int64_t>();
  return e;
}

}  // namespace

PostgresStore::PostgresStore(PostgresOptions options) : options_(std::move(options)) {}

PostgresStore::~PostgresStore() = default;

Result<std::unique_ptr<pqxx::connection>> PostgresStore::TakeConnection() {
  {
    std::unique_lock lock(mu_);
    available_.wait(lock, [&] { return !idle_.empty() || open_ < options_.pool_size; });
    if (!idle_.empty()) {
      auto conn = std::move(idle_.back());
      idle_.pop_back();
      return conn;
    }
    ++open_;  // reserve a slot, connect outside the lock
  }
  try {
    return std::make_unique<pqxx::connection>(options_.url);
  } catch (const std::exception& e) {
    std::lock_guard lock(mu_);
    --open_;
    available_.notify_one();
    return Unavailable(std::string("cannot connect to PostgreSQL: ") + e.what());
  }
}

void PostgresStore::DropIdleConnections() {
  std::vector<std::unique_ptr<pqxx::connection>> stale;
  {
    std::lock_guard lock(mu_);
    open_ -= static_cast<int>(idle_.size());
    stale.swap(idle_);
  }
  available_.notify_all();
}

void PostgresStore::ReturnConnection(std::unique_ptr<pqxx::connection> conn) {
  std::lock_guard lock(mu_);
  if (conn && conn->is_open()) {
    idle_.push_back(std::move(conn));
  } else {
    --open_;
  }
  available_.notify_one();
}

template <typename Fn>
auto PostgresStore::InTransaction(Fn&& fn) -> decltype(fn(std::declval<pqxx::work&>())) {
  using R = decltype(fn(std::declval<pqxx::work&>()));
  auto conn = TakeConnection();
  if (!conn.ok()) return conn.status();
  std::unique_ptr<pqxx::connection> c = std::move(conn).value();
  auto fail = [&](Status s) -> R {
    ReturnConnection(std::move(c));
    return s;
  };
  try {
    pqxx::work w(*c);
    R result = fn(w);  // a Status or a Result<T>: both have ok()
    if (result.ok()) {
      w.commit();
    } else {
      w.abort();
    }
    ReturnConnection(std::move(c));
    return result;
  } catch (const pqxx::broken_connection& e) {
    // The server went away (a restart, a failover): the idle connections are as dead as
    // this one. Dropping them now spares every later transaction one failure each.
    c.reset();
    DropIdleConnections();
    return fail(Unavailable(std::string("lost the PostgreSQL connection: ") + e.what()));
  } catch (const pqxx::in_doubt_error& e) {
    c.reset();
    return fail(Unavailable(std::string("commit outcome unknown: ") + e.what()));
  } catch (const pqxx::sql_error& e) {
    std::string state = e.sqlstate();
    if (state == "40001" || state == "40P01") {
      return fail(Unavailable("transaction conflict (" + state + "), retry"));
    }
    if (state.rfind("08", 0) == 0 || state == "57P01" || state == "57P03") {
      c.reset();
      DropIdleConnections();
      return fail(Unavailable("PostgreSQL unavailable (" + state + ")"));
    }
    return fail(Internal("database error " + state + ": " + e.what()));
  } catch (const std::exception& e) {
    return fail(Internal(std::string("database error: ") + e.what()));
  }
}

Status PostgresStore::Migrate() {
  return InTransaction([&](pqxx::work& w) -> Status {
    w.exec_params("SELECT pg_advisory_xact_lock($1)", kMigrationLockId);
    w.exec(
        "CREATE TABLE IF NOT EXISTS schema_migrations ("
        " version int PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL "
        "DEFAULT now())");
    std::set<int> applied;
    for (const auto& row : w.exec("SELECT version FROM schema_migrations")) {
      applied.insert(row[0].as<int>());
    }
    for (const Migration& m : PostgresMigrations()) {
      if (applied.count(m.version)) continue;
      w.exec(m.sql);
      w.exec_params("INSERT INTO schema_migrations (version, name) VALUES ($1, $2)", m.version,
                    m.name);
    }
    return Status::Ok();
  });
}

Status PostgresStore::Ping() {
  return InTransaction([&](pqxx::work& w) -> Status {
    w.exec("SELECT 1");
    return Status::Ok();
  });
}

Result<SyncResult> PostgresStore::SyncApp(const AppSync& sync) {
  return InTransaction([&](pqxx::work& w) -> Result<SyncResult> {
    const AppRecord& app = sync.app;
    w.exec_params("SELECT pg_advisory_xact_lock(hashtext($1))", "app:" + app.id);
    std::vector<std::string> ids;
    for (const auto& f : sync.functions) ids.push_back(f.id);
    auto foreign = w.exec_params(
        "SELECT id, app_id FROM functions WHERE id = ANY($1::text[]) AND app_id <> $2 LIMIT 1",
        ArrayLiteral(ids), app.id);
    if (!foreign.empty()) {
      return FailedPrecondition("function \"" + foreign[0][0].as<std::string>() +
                                "\" belongs to app \"" + foreign[0][1].as<std::string>() + "\"");
    }
    auto existing = w.exec_params("SELECT checksum FROM apps WHERE id = $1", app.id);
    bool modified = existing.empty() || existing[0][0].as<std::string>() != app.checksum;
    w.exec_params(
        "INSERT INTO apps (id, url, sdk, framework, checksum, created_at_ms, synced_at_ms) "
        "VALUES ($1, $2, $3, $4, $5, $6, $6) ON CONFLICT (id) DO UPDATE SET url = EXCLUDED.url, "
        "sdk = EXCLUDED.sdk, framework = EXCLUDED.framework, checksum = EXCLUDED.checksum, "
        "synced_at_ms = EXCLUDED.synced_at_ms",
        app.id, app.url, app.sdk, app.framework, app.checksum, app.synced_at_ms);
    if (modified) {
      for (const auto& f : sync.functions) {
        w.exec_params(
            "INSERT INTO functions (id, app_id, name, config, archived, updated_at_ms, "
            "concurrency_limit, key_concurrency_limit) "
            "VALUES ($1, $2, $3, $4::jsonb, false, $5, $6, $7) ON CONFLICT (id) DO UPDATE SET "
            "name = EXCLUDED.name, config = EXCLUDED.config, archived = false, "
            "updated_at_ms = EXCLUDED.updated_at_ms, "
            "concurrency_limit = EXCLUDED.concurrency_limit, "
            "key_concurrency_limit = EXCLUDED.key_concurrency_limit",
            f.id, app.id, f.name, ToText(f.config), app.synced_at_ms, f.concurrency_limit,
            f.key_concurrency_limit);
      }
      w.exec_params(
          "UPDATE functions SET archived = true, updated_at_ms = $3 "
          "WHERE app_id = $1 AND NOT archived AND NOT (id = ANY($2::text[]))",
          app.id, ArrayLiteral(ids), app.synced_at_ms);
    }
    return SyncResult{modified};
  });
}

Result<std::vector<AppRecord>> PostgresStore::ListApps() {
  return InTransaction([&](pqxx::work& w) -> Result<std::vector<AppRecord>> {
    std::vector<AppRecord> out;
    for (const auto& row :
         w.exec("SELECT id, url, sdk, framework, checksum, created_at_ms, synced_at_ms FROM apps "
                "ORDER BY id")) {
      AppRecord a;
      a.id = row[0].as<std::string>();
      a.url = row[1].as<std::string>();
      a.sdk = row[2].as<std::string>();
      a.framework = row[3].as<std::string>();
      a.checksum = row[4].as<std::string>();
      a.created_at_ms = row[5].as<int64_t>();
      a.synced_at_ms = row[6].as<int64_t>();
      out.push_back(std::move(a));
    }
    return out;
  });
}

Result<std::vector<FunctionRecord>> PostgresStore::ListFunctions() {
  return InTransaction([&](pqxx::work& w) -> Result<std::vector<FunctionRecord>> {
    std::vector<FunctionRecord> out;
    for (const auto& row : w.exec(std::string("SELECT ") + kFunctionColumns +
                                  " FROM functions f WHERE NOT f.archived ORDER BY f.id")) {
      out.push_back(ReadFunction(row));
    }
    return out;
  });
}

Result<FunctionRecord> PostgresStore::GetFunction(const std::string& id) {
  return InTransaction([&](pqxx::work& w) -> Result<FunctionRecord> {
    auto r = w.exec_params(
        std::string("SELECT ") + kFunctionColumns + " FROM functions f WHERE f.id = $1", id);
    if (r.empty()) return NotFound("no function \"" + id + "\"");
    return ReadFunction(r[0]);
  });
}

Result<std::vector<IngestedEvent>> PostgresStore::IngestEvents(const std::vector<NewEvent>& events,
                                                               TimePoint now,
                                                               std::vector<WaitRecord>* waits) {
  const int64_t now_ms = UnixMillis(now);
  const LaneLocks lanes = LanesOf(events);
  return InTransaction([&](pqxx::work& w) -> Result<std::vector<IngestedEvent>> {
    LockLanes(w, lanes);
    std::vector<IngestedEvent> out;
    out.reserve(events.size());
    for (const NewEvent& ne : events) {
      const EventRecord& e = ne.event;
      auto inserted = w.exec_params(
          "INSERT INTO events (internal_id, id, name, payload, received_at_ms) "
          "VALUES ($1, $2, $3, $4::jsonb, $5) ON CONFLICT DO NOTHING RETURNING internal_id",
          e.internal_id, e.id, e.name, ToText(e.payload), now_ms);
      if (inserted.empty()) {
        // The event that holds this internal id (a seed's) first: a clash on it is only a
        // resend when it is the same event.
        auto existing = w.exec_params(
            "SELECT internal_id, payload FROM events WHERE id = $1 OR internal_id = $2 "
            "ORDER BY (internal_id = $2) DESC, (id = $1) DESC LIMIT 1",
            e.id, e.internal_id);
        if (existing.empty()) return Internal("event conflict without a stored event");
        std::string stored_id = existing[0][0].as<std::string>();
        if (stored_id == e.internal_id && !SameEvent(JsonField(existing[0][1]), e.payload)) {
          return EventIdClash(e.internal_id);
        }
        out.push_back({std::move(stored_id), true});
        continue;
      }
      for (const NewRun& run : ne.runs) CreateRun(w, e.internal_id, run, now_ms);
      out.push_back({e.internal_id, false});
    }
    DropEmptyLanes(w, lanes);  // locked for events that turned out to be duplicates
    if (waits) {
      std::set<std::string> names;
      for (size_t i = 0; i < events.size(); ++i) {
        if (!out[i].duplicate) names.insert(events[i].event.name);
      }
      if (!names.empty()) *waits = ReadWaits(w, {names.begin(), names.end()});
    }
    return out;
  });
}

Result<std::vector<EventRecord>> PostgresStore::ListEvents(const EventFilter& filter) {
  return InTransaction([&](pqxx::work& w) -> Result<std::vector<EventRecord>> {
    std::vector<EventRecord> out;
    for (const auto& row :
         w.exec_params("SELECT internal_id, id, name, payload, received_at_ms FROM events "
                       "WHERE ($1 = '' OR name = $1) AND ($2 = '' OR internal_id < $2) "
                       "ORDER BY internal_id DESC LIMIT $3",
                       filter.name, filter.cursor, filter.limit)) {
      out.push_back(ReadEvent(row));
    }
    return out;
  });
}

Result<EventRecord> PostgresStore::GetEvent(const std::string& internal_id) {
  return InTransaction([&](pqxx::work& w) -> Result<EventRecord> {
    auto r = w.exec_params(
        "SELECT internal_id, id, name, payload, received_at_ms FROM events "
        "WHERE internal_id = $1",
        internal_id);
    if (r.empty()) return NotFound("no event \"" + internal_id + "\"");
    return ReadEvent(r[0]);
  });
}

Result<RunRecord> PostgresStore::GetRun(const std::string& run_id) {
  return InTransaction([&](pqxx::work& w) -> Result<RunRecord> {
    auto r = w.exec_params(std::string("SELECT ") + kRunColumns + " FROM runs r WHERE r.id = $1",
                           run_id);
    if (r.empty()) return NotFound("no run \"" + run_id + "\"");
    return ReadRun(r[0]);
  });
}

Result<std::vector<RunRecord>> PostgresStore::ListRuns(const RunFilter& filter) {
  return InTransaction([&](pqxx::work& w) -> Result<std::vector<RunRecord>> {
    std::vector<RunRecord> out;
    for (const auto& row : w.exec_params(
             std::string("SELECT ") + kRunColumns +
                 " FROM runs r WHERE ($1 = '' OR r.function_id = $1) AND ($2 = '' OR r.status = "
                 "$2) AND ($3 = '' OR r.event_id = $3) AND ($4 = '' OR r.id < $4) "
                 "AND ($6 = '' OR r.lane_key = $6) AND ($7::bigint = 0 OR r.created_at_ms >= $7) "
                 "AND ($8::bigint = 0 OR r.created_at_ms < $8) ORDER BY r.id DESC LIMIT $5",
             filter.function_id, filter.status, filter.event_id, filter.cursor, filter.limit,
             filter.key, filter.created_from_ms, filter.created_to_ms)) {
      out.push_back(ReadRun(row));
    }
    return out;
  });
}

namespace {

std::vector<StepRecord> ReadSteps(pqxx::work& w, const std::string& run_id) {
  std::vector<StepRecord> out;
  for (const auto& row :
       w.exec_params("SELECT step_id, seq, name, status, memo, created_at_ms FROM steps "
                     "WHERE run_id = $1 ORDER BY seq",
                     run_id)) {
    StepRecord s;
    s.step_id = row[0].as<std::string>();
    s.seq = row[1].as<int>();
    s.name = row[2].as<std::string>();
    s.status = row[3].as<std::string>();
    s.memo = JsonField(row[4]);
    s.created_at_ms = row[5].as<int64_t>();
    out.push_back(std::move(s));
  }
  return out;
}

}  // namespace

Result<std::vector<StepRecord>> PostgresStore::GetSteps(const std::string& run_id) {
  return InTransaction(
      [&](pqxx::work& w) -> Result<std::vector<StepRecord>> { return ReadSteps(w, run_id); });
}

Result<std::vector<AttemptRecord>> PostgresStore::GetAttempts(const std::string& run_id) {
  return InTransaction([&](pqxx::work& w) -> Result<std::vector<AttemptRecord>> {
    std::vector<AttemptRecord> out;
    for (const auto& row :
         w.exec_params("SELECT step_id, name, attempt, outcome, error, started_at_ms, ended_at_ms "
                       "FROM attempts WHERE run_id = $1 ORDER BY id",
                       run_id)) {
      AttemptRecord a;
      a.step_id = row[0].as<std::string>();
      a.name = row[1].as<std::string>();
      a.attempt = row[2].as<int>();
      a.outcome = row[3].as<std::string>();
      a.error = JsonField(row[4]);
      a.started_at_ms = row[5].as<int64_t>();
      a.ended_at_ms = row[6].as<int64_t>();
      out.push_back(std::move(a));
    }
    return out;
  });
}

Result<std::vector<QueueItem>> PostgresStore::Claim(int max, TimePoint now,
                                                    std::chrono::milliseconds lease) {
  const int64_t now_ms = UnixMillis(now);
  const std::string token = crypto::HexEncode(crypto::RandomBytes(12));
  return InTransaction([&](pqxx::work& w) -> Result<std::vector<QueueItem>> {
    std::vector<ClaimCandidate> candidates;
    for (const auto& row : w.exec_params(
             "SELECT q.id, q.run_id, q.step_id, q.attempt, q.function_id, q.concurrency_key, "
             "COALESCE(f.concurrency_limit, 0), COALESCE(f.key_concurrency_limit, 0), q.resume "
             "FROM queue q LEFT JOIN functions f ON f.id = q.function_id "
             "WHERE q.visible_at_ms <= $1 ORDER BY q.visible_at_ms, q.id LIMIT $2 "
             "FOR UPDATE OF q SKIP LOCKED",
             now_ms, max)) {
      ClaimCandidate c;
      c.item = {row[0].as<int64_t>(), row[1].as<std::string>(), row[2].as<std::string>(),
                row[3].as<int>(), token};
      c.function_id = row[4].is_null() ? "" : row[4].as<std::string>();
      if (!row[5].is_null()) c.concurrency_key = row[5].as<std::string>();
      c.function_limit = row[6].as<int>();
      c.key_limit = row[7].as<int>();
      if (!row[8].is_null()) c.item.resume = JsonField(row[8]);
      candidates.push_back(std::move(c));
    }
    // Limits hold across coordinators: each limit is counted under an advisory lock (taken
    // in one order), so two claims never admit past it together.
    Admission admitted = AdmitWithinLimits(
        std::move(candidates),
        [&](const std::string& function_id, const std::optional<std::string>& key) {
          const std::string lock = function_id + (key ? "\x1f" + *key : std::string("\x1e"));
          w.exec_params("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))", lock);
          return w
              .exec_params(
                  "SELECT count(*) FROM queue WHERE function_id = $1 AND lease_token IS NOT "
                  "NULL AND visible_at_ms > $3 AND ($2::text IS NULL OR concurrency_key = $2)",
                  function_id, OptionalText(key), now_ms)[0][0]
              .as<int64_t>();
        });
    std::vector<std::string> claimed_ids, held_ids, run_ids;
    for (const QueueItem& item : admitted.claimed) {
      claimed_ids.push_back(std::to_string(item.id));
      run_ids.push_back(item.run_id);
    }
    for (int64_t id : admitted.held) held_ids.push_back(std::to_string(id));
    if (!claimed_ids.empty()) {
      w.exec_params(
          "UPDATE queue SET visible_at_ms = $2, lease_token = $3, claims = claims + 1 "
          "WHERE id = ANY($1::bigint[])",
          ArrayLiteral(claimed_ids), now_ms + lease.count(), token);
      w.exec_params(
          "UPDATE runs SET status = 'running', started_at_ms = COALESCE(started_at_ms, $2) "
          "WHERE id = ANY($1::text[]) AND status = 'queued'",
          ArrayLiteral(run_ids), now_ms);
    }
    if (!held_ids.empty()) {
      w.exec_params("UPDATE queue SET visible_at_ms = $2 WHERE id = ANY($1::bigint[])",
                    ArrayLiteral(held_ids), now_ms + kHeldBackMs);
    }
    return std::move(admitted.claimed);
  });
}

Result<RunState> PostgresStore::LoadRunState(const std::string& run_id) {
  return InTransaction([&](pqxx::work& w) -> Result<RunState> {
    auto r = w.exec_params(std::string("SELECT ") + kRunColumns + ", " + kFunctionColumns +
                               " FROM runs r JOIN functions f ON f.id = r.function_id "
                               "WHERE r.id = $1",
                           run_id);
    if (r.empty()) return NotFound("no run \"" + run_id + "\"");
    RunState state;
    state.run = ReadRun(r[0]);
    state.function = ReadFunction(r[0], 13);
    auto ev =
        w.exec_params("SELECT payload FROM events WHERE internal_id = $1", state.run.event_id);
    for (const auto& row : ev) state.events.push_back(JsonField(row[0]));
    state.steps = ReadSteps(w, run_id);
    return state;
  });
}

Status PostgresStore::Apply(const QueueItem& item, const Transition& t, TimePoint now) {
  const int64_t now_ms = UnixMillis(now);
  return InTransaction([&](pqxx::work& w) -> Status {
    pqxx::result owned;
    if (t.retry_at && !t.end_status) {
      owned = w.exec_params(
          "UPDATE queue SET attempt = attempt + 1, visible_at_ms = $3, lease_token = NULL "
          "WHERE id = $1 AND lease_token = $2 RETURNING id",
          item.id, item.lease_token, UnixMillis(*t.retry_at));
    } else {
      owned = w.exec_params("DELETE FROM queue WHERE id = $1 AND lease_token = $2 RETURNING id",
                            item.id, item.lease_token);
    }
    if (owned.empty()) return Aborted("lease on queue item " + std::to_string(item.id) + " lost");

    auto run = w.exec_params(
        "SELECT status, function_id, lane_key, lane_seq FROM runs WHERE id = $1 FOR UPDATE",
        item.run_id);
    if (run.empty()) return NotFound("no run \"" + item.run_id + "\"");
    const std::string status = run[0][0].as<std::string>();
    if (IsTerminalStatus(status) || status == kBlocked) {
      // Cancelled (or ended by another path) while the call was in flight: drop the work.
      w.exec_params("DELETE FROM queue WHERE run_id = $1", item.run_id);
      return Status::Ok();
    }
    std::string a, b, c;
    if (item.resume) {
      w.exec_params("DELETE FROM waits WHERE run_id = $1 AND step_id = $2", item.run_id,
                    item.step_id);
    }
    for (const StepRecord& step : t.steps) {
      w.exec_params(
          "INSERT INTO steps (run_id, step_id, seq, name, status, memo, created_at_ms) "
          "SELECT $1, $2, COALESCE(MAX(seq) + 1, 0), $3, $4, $5::jsonb, $6 FROM steps "
          "WHERE run_id = $1 ON CONFLICT (run_id, step_id) DO NOTHING",
          item.run_id, step.step_id, step.name, step.status, JsonParam(step.memo, a), now_ms);
    }
    for (const AttemptRecord& at : t.attempts) {
      w.exec_params(
          "INSERT INTO attempts (run_id, step_id, name, attempt, outcome, error, started_at_ms, "
          "ended_at_ms) VALUES ($1, $2, $3, $4, $5, $6::jsonb, $7, $8)",
          item.run_id, at.step_id, at.name, at.attempt, at.outcome, JsonParam(at.error, a),
          at.started_at_ms, at.ended_at_ms);
    }
    if (t.end_status) {
      w.exec_params(
          "UPDATE runs SET status = $2, output = $3::jsonb, error = $4::jsonb, ended_at_ms = $5, "
          "req_version = COALESCE($6, req_version) WHERE id = $1",
          item.run_id, *t.end_status, JsonParam(t.output, a), JsonParam(t.error, b), now_ms,
          IntParam(t.req_version, c));
      w.exec_params("DELETE FROM queue WHERE run_id = $1", item.run_id);
      w.exec_params("DELETE FROM waits WHERE run_id = $1", item.run_id);
      if (!run[0][2].is_null()) {
        AdvanceLane(w, run[0][1].as<std::string>(), run[0][2].as<std::string>(), item.run_id,
                    run[0][3].as<int64_t>(), now_ms);
      }
      return Status::Ok();
    }
    if (t.run_status == kBlocked) {
      w.exec_params(
          "UPDATE runs SET status = $2, error = $3::jsonb, req_version = COALESCE($4, "
          "req_version) WHERE id = $1",
          item.run_id, kBlocked, JsonParam(t.error, b), IntParam(t.req_version, c));
      w.exec_params("DELETE FROM queue WHERE run_id = $1", item.run_id);
      return Status::Ok();
    }
    const bool idle =
        !t.next_only_if_idle ||
        w.exec_params("SELECT 1 FROM queue WHERE run_id = $1 LIMIT 1", item.run_id).empty();
    for (const NextCall& n : t.next) {
      if (!idle && !n.resume && n.step_id == kDiscoveryStepId) continue;
      EnqueueCall(w, item.run_id, n.step_id, UnixMillis(n.due), now_ms, n.resume);
    }
    for (const NewWait& wait : t.waits) {
      auto added = w.exec_params(
          "INSERT INTO waits (run_id, step_id, function_id, event_name, expression, kind, "
          "created_at_ms, expires_at_ms) SELECT id, $2, function_id, $3, $4, $5, $6, $7 "
          "FROM runs WHERE id = $1 ON CONFLICT DO NOTHING",
          item.run_id, wait.step_id, wait.event_name, wait.expression, wait.kind, now_ms,
          UnixMillis(wait.expires_at));
      if (added.affected_rows() == 0) continue;
      EnqueueCall(w, item.run_id, wait.step_id, UnixMillis(wait.expires_at), now_ms,
                  Resume(wait.timeout_memo, wait.name));
    }
    if (t.run_status || t.req_version) {
      w.exec_params(
          "UPDATE runs SET status = COALESCE($2, status), req_version = COALESCE($3, req_version) "
          "WHERE id = $1",
          item.run_id, t.run_status ? t.run_status->c_str() : static_cast<const char*>(nullptr),
          IntParam(t.req_version, c));
    }
    return Status::Ok();
  });
}

Result<int64_t> PostgresStore::QueueDepth() {
  return InTransaction([&](pqxx::work& w) -> Result<int64_t> {
    return w.exec("SELECT count(*) FROM queue")[0][0].as<int64_t>();
  });
}

Result<QueueStats> PostgresStore::GetQueueStats(TimePoint now) {
  const int64_t now_ms = UnixMillis(now);
  return InTransaction([&](pqxx::work& w) -> Result<QueueStats> {
    QueueStats out;
    auto q = w.exec_params(
        "SELECT count(*), count(*) FILTER (WHERE visible_at_ms <= $1), "
        "coalesce($1 - min(visible_at_ms) FILTER (WHERE visible_at_ms <= $1), 0) FROM queue",
        now_ms)[0];
    out.depth = q[0].as<int64_t>();
    out.due = q[1].as<int64_t>();
    out.oldest_due_age_ms = q[2].as<int64_t>();
    auto l = w.exec_params(
        "SELECT count(*), coalesce($1 - min(l.head_since_ms), 0) FROM lanes l "
        "JOIN runs r ON r.id = l.head_run_id WHERE r.status = 'blocked'",
        now_ms)[0];
    out.lanes_blocked = l[0].as<int64_t>();
    out.longest_blocked_ms = l[1].as<int64_t>();
    return out;
  });
}

Status PostgresStore::RenewLease(const QueueItem& item, TimePoint until) {
  return InTransaction([&](pqxx::work& w) -> Status {
    auto r = w.exec_params("UPDATE queue SET visible_at_ms = $3 WHERE id = $1 AND lease_token = $2",
                           item.id, item.lease_token, UnixMillis(until));
    if (r.affected_rows() == 0) return Aborted("the lease of run " + item.run_id + " was lost");
    return Status::Ok();
  });
}

Status PostgresStore::ReleaseLeases(const std::vector<QueueItem>& items, TimePoint now) {
  return InTransaction([&](pqxx::work& w) -> Status {
    for (const QueueItem& item : items) {
      w.exec_params(
          "UPDATE queue SET visible_at_ms = $3, lease_token = NULL "
          "WHERE id = $1 AND lease_token = $2",
          item.id, item.lease_token, UnixMillis(now));
    }
    return Status::Ok();
  });
}

Result<std::vector<std::string>> PostgresStore::PendingRunEnds(int64_t ended_before_ms, int limit) {
  return InTransaction([&](pqxx::work& w) -> Result<std::vector<std::string>> {
    std::vector<std::string> out;
    for (const auto& row : w.exec_params(
             "SELECT run_id FROM run_ends WHERE $1::bigint = 0 OR ended_at_ms < $1::bigint "
             "ORDER BY ended_at_ms, run_id LIMIT $2",
             ended_before_ms, limit)) {
      out.push_back(row[0].as<std::string>());
    }
    return out;
  });
}

Status PostgresStore::AckRunEnds(const std::vector<std::string>& run_ids) {
  if (run_ids.empty()) return Status::Ok();
  return InTransaction([&](pqxx::work& w) -> Status {
    w.exec_params("DELETE FROM run_ends WHERE run_id = ANY($1::text[])", ArrayLiteral(run_ids));
    return Status::Ok();
  });
}

Result<int64_t> PostgresStore::DeleteExpired(TimePoint horizon, int batch) {
  const int64_t horizon_ms = UnixMillis(horizon);
  return InTransaction([&](pqxx::work& w) -> Result<int64_t> {
    // SKIP LOCKED: rows another coordinator is deleting (or a writer holds) wait for the
    // next pass instead of blocking this one. Steps, attempts, queue items and waits go by
    // ON DELETE CASCADE. A run in run_ends has not been announced yet: its end event would
    // be lost.
    auto runs = w.exec_params(
        "DELETE FROM runs WHERE id IN (SELECT r.id FROM runs r "
        "WHERE r.status IN ('completed', 'failed', 'cancelled') AND r.ended_at_ms < $1 "
        "AND NOT EXISTS (SELECT 1 FROM run_ends e WHERE e.run_id = r.id) "
        "LIMIT $2 FOR UPDATE SKIP LOCKED)",
        horizon_ms, batch);
    // Locking the event also skips one a replay is starting a run of right now.
    auto events = w.exec_params(
        "DELETE FROM events WHERE internal_id IN (SELECT e.internal_id FROM events e "
        "WHERE e.received_at_ms < $1 "
        "AND NOT EXISTS (SELECT 1 FROM runs r WHERE r.event_id = e.internal_id) "
        "LIMIT $2 FOR UPDATE SKIP LOCKED)",
        horizon_ms, batch);
    return static_cast<int64_t>(runs.affected_rows() + events.affected_rows());
  });
}

namespace {

// Fails the head of lane (function_id, key) with `error` and moves the lane on. Locks in the
// order every other writer uses: the head's queue items, its run, then the lane. With
// `only_if_due_at`, does nothing unless the head's deadline has passed at that time.
Result<std::string> FailLaneHead(pqxx::work& w, const std::string& function_id,
                                 const std::string& key, Json error, int64_t now_ms,
                                 std::optional<int64_t> only_if_due_at) {
  auto head = w.exec_params(
      "SELECT head_run_id, head_deadline_ms FROM lanes WHERE function_id = $1 AND key = $2",
      function_id, key);
  if (head.empty() || head[0][0].is_null()) {
    return LaneHasNoHead(function_id, key);
  }
  const std::string run_id = head[0][0].as<std::string>();
  w.exec_params("SELECT id FROM queue WHERE run_id = $1 FOR UPDATE", run_id);
  auto run =
      w.exec_params("SELECT status, error, lane_seq FROM runs WHERE id = $1 FOR UPDATE", run_id);
  auto lane = w.exec_params(
      "SELECT head_deadline_ms FROM lanes WHERE function_id = $1 AND key = $2 "
      "AND head_run_id = $3 FOR UPDATE",
      function_id, key, run_id);
  if (run.empty() || lane.empty() || IsTerminalStatus(run[0][0].as<std::string>())) {
    return Aborted("the head of lane \"" + key + "\" changed meanwhile; look again");
  }
  if (only_if_due_at && (lane[0][0].is_null() || lane[0][0].as<int64_t>() > *only_if_due_at)) {
    return Aborted("the head of lane \"" + key + "\" is not due");
  }
  Json cause = JsonField(run[0][1]);
  if (!cause.is_null()) error["cause"] = std::move(cause);
  std::string e;
  w.exec_params(
      "UPDATE runs SET status = 'failed', error = $2::jsonb, ended_at_ms = $3, "
      "started_at_ms = COALESCE(started_at_ms, $3) WHERE id = $1",
      run_id, JsonParam(error, e), now_ms);
  w.exec_params("DELETE FROM queue WHERE run_id = $1", run_id);
  w.exec_params("DELETE FROM waits WHERE run_id = $1", run_id);
  AdvanceLane(w, function_id, key, run_id, run[0][2].as<int64_t>(), now_ms);
  return run_id;
}

}  // namespace

Result<std::string> PostgresStore::SkipLaneHead(const std::string& function_id,
                                                const std::string& key, TimePoint now) {
  return InTransaction([&](pqxx::work& w) -> Result<std::string> {
    return FailLaneHead(w, function_id, key,
                        {{"name", "Skipped"}, {"message", "skipped by an operator (skip-head)"}},
                        UnixMillis(now), std::nullopt);
  });
}

Result<std::string> PostgresStore::RetryLaneHead(const std::string& function_id,
                                                 const std::string& key, TimePoint now) {
  const int64_t now_ms = UnixMillis(now);
  return InTransaction([&](pqxx::work& w) -> Result<std::string> {
    auto head = w.exec_params(
        "SELECT head_run_id FROM lanes WHERE function_id = $1 AND key = $2 FOR UPDATE", function_id,
        key);
    if (head.empty() || head[0][0].is_null()) {
      return LaneHasNoHead(function_id, key);
    }
    const std::string run_id = head[0][0].as<std::string>();
    // A blocked run has no queue items and no call in flight, so nothing else writes it.
    auto run = w.exec_params("SELECT status FROM runs WHERE id = $1", run_id);
    if (run.empty() || run[0][0].as<std::string>() != kBlocked) {
      return HeadNotBlocked(key, run.empty() ? "gone" : run[0][0].as<std::string>());
    }
    w.exec_params("DELETE FROM steps WHERE run_id = $1 AND status = 'failed'", run_id);
    w.exec_params("UPDATE runs SET status = 'running', error = NULL WHERE id = $1", run_id);
    w.exec_params(
        "UPDATE lanes SET head_since_ms = $3, head_deadline_ms = $3 + head_timeout_ms "
        "WHERE function_id = $1 AND key = $2",
        function_id, key, now_ms);
    EnqueueCall(w, run_id, "step", now_ms, now_ms);
    return run_id;
  });
}

Result<std::vector<std::string>> PostgresStore::ExpireLaneHeads(TimePoint now) {
  const int64_t now_ms = UnixMillis(now);
  ASSIGN_OR_RETURN(auto due, InTransaction([&](pqxx::work& w) -> Result<pqxx::result> {
                     return w.exec_params(
                         "SELECT function_id, key, head_timeout_ms FROM lanes "
                         "WHERE head_deadline_ms <= $1 ORDER BY head_deadline_ms LIMIT 100",
                         now_ms);
                   }));
  std::vector<std::string> failed;
  for (const auto& row : due) {
    const std::string function_id = row[0].as<std::string>(), key = row[1].as<std::string>();
    Json error = {{"name", "HeadTimeout"},
                  {"message", "the run held its lane longer than head_timeout (" +
                                  std::to_string(row[2].as<int64_t>()) + " ms)"}};
    auto r = InTransaction([&](pqxx::work& w) -> Result<std::string> {
      return FailLaneHead(w, function_id, key, error, now_ms, now_ms);
    });
    if (r.ok()) {
      failed.push_back(*r);
    } else if (r.status().code() != StatusCode::kAborted &&
               r.status().code() != StatusCode::kNotFound) {
      return r.status();
    }
  }
  return failed;
}

Result<std::vector<LaneRecord>> PostgresStore::ListLanes(const LaneFilter& filter) {
  const std::string after_fn = filter.after ? filter.after->first : "";
  const std::string after_key = filter.after ? filter.after->second : "";
  return InTransaction([&](pqxx::work& w) -> Result<std::vector<LaneRecord>> {
    std::vector<LaneRecord> out;
    for (const auto& row : w.exec_params(
             "SELECT l.function_id, l.key, l.depth, l.head_run_id, r.status, l.head_since_ms, "
             "l.head_deadline_ms FROM lanes l JOIN runs r ON r.id = l.head_run_id "
             "WHERE ($1 = '' OR l.function_id = $1) AND (NOT $2 OR r.status = 'blocked') "
             "AND ($3 = '' OR (l.function_id, l.key) > ($3, $4)) "
             "ORDER BY l.function_id, l.key LIMIT $5",
             filter.function_id, filter.blocked_only, after_fn, after_key, filter.limit)) {
      LaneRecord l;
      l.function_id = row[0].as<std::string>();
      l.key = row[1].as<std::string>();
      l.depth = row[2].as<int>();
      l.head_run_id = row[3].as<std::string>();
      l.head_status = row[4].as<std::string>();
      l.head_since_ms = row[5].as<int64_t>();
      l.head_deadline_ms = OptionalInt(row[6]);
      out.push_back(std::move(l));
    }
    return out;
  });
}

Result<bool> PostgresStore::ResolveWait(const std::string& run_id, const std::string& step_id,
                                        const Json& memo, TimePoint now) {
  return InTransaction([&](pqxx::work& w) -> Result<bool> {
    // Queue row first: the order Apply locks in.
    auto item = w.exec_params(
        "SELECT id FROM queue WHERE run_id = $1 AND step_id = $2 AND resume IS NOT NULL "
        "FOR UPDATE",
        run_id, step_id);
    auto wait =
        w.exec_params("DELETE FROM waits WHERE run_id = $1 AND step_id = $2", run_id, step_id);
    if (wait.affected_rows() == 0 || item.empty()) return false;
    w.exec_params(
        "UPDATE queue SET resume = jsonb_set(resume, '{memo}', $2::jsonb), visible_at_ms = $3, "
        "lease_token = NULL WHERE id = $1",
        item[0][0].as<int64_t>(), memo.dump(), UnixMillis(now));
    return true;
  });
}

Result<std::vector<EventRecord>> PostgresStore::EventsSince(const std::string& name,
                                                            int64_t since_ms, int limit) {
  return InTransaction([&](pqxx::work& w) -> Result<std::vector<EventRecord>> {
    std::vector<EventRecord> out;
    for (const auto& row :
         w.exec_params("SELECT internal_id, id, name, payload, received_at_ms FROM events "
                       "WHERE name = $1 AND received_at_ms >= $2 "
                       "ORDER BY received_at_ms, internal_id LIMIT $3",
                       name, since_ms, limit)) {
      out.push_back(ReadEvent(row));
    }
    return out;
  });
}

Result<bool> PostgresStore::CancelRun(const std::string& run_id, const Json& error, TimePoint now) {
  const int64_t now_ms = UnixMillis(now);
  return InTransaction([&](pqxx::work& w) -> Result<bool> {
    w.exec_params("SELECT id FROM queue WHERE run_id = $1 FOR UPDATE", run_id);
    auto run = w.exec_params(
        "SELECT status, function_id, lane_key, lane_seq FROM runs WHERE id = $1 FOR UPDATE",
        run_id);
    if (run.empty()) return NotFound("no run \"" + run_id + "\"");
    if (IsTerminalStatus(run[0][0].as<std::string>())) return false;
    std::string e;
    w.exec_params(
        "UPDATE runs SET status = 'cancelled', error = $2::jsonb, ended_at_ms = $3 WHERE id = $1",
        run_id, JsonParam(error, e), now_ms);
    w.exec_params("DELETE FROM queue WHERE run_id = $1", run_id);
    w.exec_params("DELETE FROM waits WHERE run_id = $1", run_id);
    if (!run[0][2].is_null()) {
      const std::string fn = run[0][1].as<std::string>(), key = run[0][2].as<std::string>();
      if (!AdvanceLane(w, fn, key, run_id, run[0][3].as<int64_t>(), now_ms)) {
        // Not the head: it leaves the line behind the head.
        w.exec_params("UPDATE lanes SET depth = depth - 1 WHERE function_id = $1 AND key = $2", fn,
                      key);
      }
    }
    return true;
  });
}

Status PostgresStore::StartRun(const std::string& event_internal_id, const NewRun& run,
                               TimePoint now) {
  const LaneLocks lanes = LanesOf({NewEvent{{}, {run}}});
  return InTransaction([&](pqxx::work& w) -> Status {
    if (w.exec_params("SELECT 1 FROM events WHERE internal_id = $1", event_internal_id).empty()) {
      return NotFound("no event \"" + event_internal_id + "\"");
    }
    LockLanes(w, lanes);
    CreateRun(w, event_internal_id, run, UnixMillis(now));
    return Status::Ok();
  });
}

Result<std::vector<ActiveRun>> PostgresStore::ActiveRuns(const std::string& function_id,
                                                         int limit) {
  return InTransaction([&](pqxx::work& w) -> Result<std::vector<ActiveRun>> {
    std::vector<ActiveRun> out;
    for (const auto& row : w.exec_params(
             "SELECT r.id, e.payload, r.created_at_ms FROM runs r "
             "JOIN events e ON e.internal_id = r.event_id WHERE r.function_id = $1 "
             "AND r.status NOT IN ('completed', 'failed', 'cancelled') ORDER BY r.id LIMIT $2",
             function_id, limit)) {
      out.push_back({row[0].as<std::string>(), JsonField(row[1]), row[2].as<int64_t>()});
    }
    return out;
  });
}

Result<std::unique_ptr<Store>> OpenPostgresStore(const PostgresOptions& options) {
  auto store = std::make_unique<PostgresStore>(options);
  RETURN_IF_ERROR(store->Ping());
  return std::unique_ptr<Store>(std::move(store));
}

}  // namespace funcky::store
