// The SQLite backend of the Store (coordinator/store/store.h has the contracts; the
// conformance suite in tests/store/ holds both backends to them).
//
// One connection in WAL mode, used by one transaction at a time (BEGIN IMMEDIATE under a
// mutex): SQLite has a single writer anyway, and serializing every transaction gives the
// same guarantees the PostgreSQL store gets from row locks, SKIP LOCKED and advisory locks.
// Several processes may open the same file (busy timeout), but the store is meant for one
// coordinator: `funcky dev`.
#include <sqlite3.h>

#include <algorithm>
#include <map>
#include <mutex>
#include <set>
#include <stdexcept>
#include <tuple>

#include "common/crypto.h"
#include "common/step_id.h"
#include "coordinator/store/claim_rules.h"
#include "coordinator/store/migration.h"
#include "coordinator/store/store.h"

namespace funcky::store {

namespace {

// A failed SQLite call; its result code decides the Status.
struct SqliteError : std::runtime_error {
  SqliteError(int code, const std::string& what) : std::runtime_error(what), code(code) {}
  int code;
};

// A prepared statement from the connection's cache, reset and cleared when it goes away.
class Stmt {
 public:
  explicit Stmt(sqlite3_stmt* s) : s_(s) {}
  ~Stmt() {
    sqlite3_reset(s_);
    sqlite3_clear_bindings(s_);
  }
  Stmt(const Stmt&) = delete;
  Stmt& operator=(const Stmt&) = delete;

  void Bind(int i, std::nullptr_t) { Check(sqlite3_bind_null(s_, i)); }
  void Bind(int i, const std::string& v) {
    Check(sqlite3_bind_text(s_, i, v.data(), static_cast<int>(v.size()), SQLITE_TRANSIENT));
  }
  void Bind(int i, const char* v) {
    if (!v) return Bind(i, nullptr);
    Check(sqlite3_bind_text(s_, i, v, -1, SQLITE_TRANSIENT));
  }
  void Bind(int i, int64_t v) { Check(sqlite3_bind_int64(s_, i, v)); }
  void Bind(int i, int v) { Bind(i, static_cast<int64_t>(v)); }
  void Bind(int i, bool v) { Bind(i, static_cast<int64_t>(v)); }
  void Bind(int i, const Json& v) {
    if (v.is_null()) return Bind(i, nullptr);
    Bind(i, v.dump());
  }
  template <typename T>
  void Bind(int i, const std::optional<T>& v) {
    if (!v) return Bind(i, nullptr);
    Bind(i, *v);
  }

  // Steps once; true when a row is available.
  bool Next() {
    int rc = sqlite3_step(s_);
    if (rc == SQLITE_ROW) return true;
    if (rc == SQLITE_DONE) return false;
    throw SqliteError(rc, sqlite3_errmsg(sqlite3_db_handle(s_)));
  }
  void Run() {
    while (Next()) {
    }
  }

  bool Null(int c) const { return sqlite3_column_type(s_, c) == SQLITE_NULL; }
  int64_t Int(int c) const { return sqlite3_column_int64(s_, c); }
  std::string Text(int c) const {
    const auto* p = reinterpret_cast<const char*>(sqlite3_column_text(s_, c));
    return p ? std::string(p, sqlite3_column_bytes(s_, c)) : std::string();
  }
  Json JsonCol(int c) const {
    if (Null(c)) return nullptr;
    return Json::parse(Text(c), nullptr, /*allow_exceptions=*/false);
  }
  std::optional<int64_t> OptInt(int c) const {
    if (Null(c)) return std::nullopt;
    return Int(c);
  }
  std::optional<std::string> OptText(int c) const {
    if (Null(c)) return std::nullopt;
    return Text(c);
  }

 private:
  void Check(int rc) {
    if (rc != SQLITE_OK) throw SqliteError(rc, sqlite3_errmsg(sqlite3_db_handle(s_)));
  }
  sqlite3_stmt* s_;
};

// The connection, seen by one transaction.
class Tx {
 public:
  Tx(sqlite3* db, std::map<std::string, sqlite3_stmt*>& cache) : db_(db), cache_(cache) {}

  // Prepares `sql` (cached) and binds `args` to ?1, ?2, …
  template <typename... Args>
  std::unique_ptr<Stmt> Query(const std::string& sql, const Args&... args) {
    sqlite3_stmt*& s = cache_[sql];
    if (!s) {
      int rc = sqlite3_prepare_v3(db_, sql.c_str(), -1, SQLITE_PREPARE_PERSISTENT, &s, nullptr);
      if (rc != SQLITE_OK) {
        std::string message = sqlite3_errmsg(db_);
        cache_.erase(sql);
        throw SqliteError(rc, message + " in: " + sql);
      }
    }
    auto stmt = std::make_unique<Stmt>(s);
    int i = 0;
    (stmt->Bind(++i, args), ...);
    return stmt;
  }
  template <typename... Args>
  void Exec(const std::string& sql, const Args&... args) {
    Query(sql, args...)->Run();
  }
  template <typename... Args>
  int64_t Count(const std::string& sql, const Args&... args) {
    auto s = Query(sql, args...);
    return s->Next() ? s->Int(0) : 0;
  }
  int Changes() const { return sqlite3_changes(db_); }

 private:
  sqlite3* db_;
  std::map<std::string, sqlite3_stmt*>& cache_;
};

// A JSON array of strings, for `IN (SELECT value FROM json_each(?))`.
std::string JsonList(const std::vector<std::string>& items) { return Json(items).dump(); }

constexpr const char* kRunColumns =
    "r.id, r.function_id, r.event_id, r.status, r.lane_key, r.output, r.error, r.req_version, "
    "r.created_at_ms, r.started_at_ms, r.ended_at_ms, r.concurrency_key, "
    "(SELECT e.name FROM events e WHERE e.internal_id = r.event_id)";

RunRecord ReadRun(const Stmt& s) {
  RunRecord r;
  r.id = s.Text(0);
  r.function_id = s.Text(1);
  r.event_id = s.Text(2);
  r.status = s.Text(3);
  r.lane_key = s.OptText(4);
  r.output = s.JsonCol(5);
  r.error = s.JsonCol(6);
  r.req_version = static_cast<int>(s.Int(7));
  r.created_at_ms = s.Int(8);
  r.started_at_ms = s.OptInt(9);
  r.ended_at_ms = s.OptInt(10);
  r.concurrency_key = s.OptText(11);
  r.event_name = s.Text(12);
  return r;
}

constexpr const char* kFunctionColumns =
    "f.id, f.app_id, f.name, f.config, f.archived, f.updated_at_ms, f.concurrency_limit, "
    "f.key_concurrency_limit";

FunctionRecord ReadFunction(const Stmt& s, int offset = 0) {
  FunctionRecord f;
  f.id = s.Text(offset);
  f.app_id = s.Text(offset + 1);
  f.name = s.Text(offset + 2);
  f.config = s.JsonCol(offset + 3);
  f.archived = s.Int(offset + 4) != 0;
  f.updated_at_ms = s.Int(offset + 5);
  f.concurrency_limit = static_cast<int>(s.Int(offset + 6));
  f.key_concurrency_limit = static_cast<int>(s.Int(offset + 7));
  return f;
}

EventRecord ReadEvent(const Stmt& s) {
  return {s.Text(0), s.Text(1), s.Text(2), s.JsonCol(3), s.Int(4)};
}

std::vector<StepRecord> ReadSteps(Tx& tx, const std::string& run_id) {
  std::vector<StepRecord> out;
  auto s = tx.Query(
      "SELECT step_id, seq, name, status, memo, created_at_ms FROM steps WHERE run_id = ?1 "
      "ORDER BY seq",
      run_id);
  while (s->Next()) {
    out.push_back({s->Text(0), static_cast<int>(s->Int(1)), s->Text(2), s->Text(3), s->JsonCol(4),
                   s->Int(5)});
  }
  return out;
}

// The open waits for events named any of `names`, oldest first.
std::vector<WaitRecord> ReadWaits(Tx& tx, const std::vector<std::string>& names) {
  std::vector<WaitRecord> out;
  auto s = tx.Query(
      "SELECT w.run_id, w.step_id, w.function_id, w.event_name, w.expression, w.kind, "
      "e.payload, w.created_at_ms, w.expires_at_ms FROM waits w "
      "JOIN runs r ON r.id = w.run_id JOIN events e ON e.internal_id = r.event_id "
      "WHERE w.event_name IN (SELECT value FROM json_each(?1)) ORDER BY w.created_at_ms "
      "LIMIT 10000",
      JsonList(names));
  while (s->Next()) {
    out.push_back({s->Text(0), s->Text(1), s->Text(2), s->Text(3), s->Text(4), s->Text(5),
                   s->JsonCol(6), s->Int(7), s->Int(8)});
  }
  return out;
}

void EnqueueCall(Tx& tx, const std::string& run_id, const std::string& step_id, int64_t due_ms,
                 int64_t now_ms, const std::optional<Json>& resume = std::nullopt) {
  std::optional<std::string> resume_text;
  if (resume) resume_text = resume->dump();
  tx.Exec(
      "INSERT INTO queue (run_id, step_id, attempt, visible_at_ms, created_at_ms, function_id, "
      "concurrency_key, resume) SELECT ?1, ?2, 0, ?3, ?4, function_id, concurrency_key, ?5 "
      "FROM runs WHERE id = ?1",
      run_id, step_id, due_ms, now_ms, resume_text);
}

// As in the PostgreSQL store: the head `run_id` finished; the next run of the key starts.
// Returns false (and changes nothing) when `run_id` is not the head.
bool AdvanceLane(Tx& tx, const std::string& function_id, const std::string& key,
                 const std::string& run_id, int64_t head_seq, int64_t now_ms) {
  tx.Exec(
      "UPDATE lanes SET depth = depth - 1, head_run_id = NULL, head_since_ms = NULL, "
      "head_deadline_ms = NULL WHERE function_id = ?1 AND key = ?2 AND head_run_id = ?3",
      function_id, key, run_id);
  if (tx.Changes() == 0) return false;  // skipped or timed out already
  std::optional<std::string> next;
  {
    auto s = tx.Query(
        "SELECT id FROM runs WHERE function_id = ?1 AND lane_key = ?2 AND lane_seq > ?3 "
        "AND status = 'queued' ORDER BY lane_seq LIMIT 1",
        function_id, key, head_seq);
    if (s->Next()) next = s->Text(0);
  }
  if (!next) {
    tx.Exec("DELETE FROM lanes WHERE function_id = ?1 AND key = ?2 AND depth <= 0", function_id,
            key);
    return true;
  }
  tx.Exec(
      "UPDATE lanes SET head_run_id = ?3, head_since_ms = ?4, "
      "head_deadline_ms = ?4 + head_timeout_ms WHERE function_id = ?1 AND key = ?2",
      function_id, key, *next, now_ms);
  EnqueueCall(tx, *next, "step", now_ms, now_ms);
  return true;
}

// As in the PostgreSQL store: lane rows are created before runs join them.
void LockLanes(Tx& tx, const LaneLocks& lanes) {
  for (const auto& [lane, timeout] : lanes) {
    tx.Exec(
        "INSERT INTO lanes (function_id, key, head_timeout_ms) VALUES (?1, ?2, ?3) "
        "ON CONFLICT (function_id, key) DO UPDATE SET head_timeout_ms = excluded.head_timeout_ms",
        lane.first, lane.second, timeout);
  }
}

void DropEmptyLanes(Tx& tx, const LaneLocks& lanes) {
  for (const auto& [lane, timeout] : lanes) {
    tx.Exec("DELETE FROM lanes WHERE function_id = ?1 AND key = ?2 AND depth = 0", lane.first,
            lane.second);
  }
}

// Creates `run` for the stored event `event_id`, queued now or behind its lane.
void CreateRun(Tx& tx, const std::string& event_id, const NewRun& run, int64_t now_ms) {
  tx.Exec(
      "INSERT INTO runs (id, function_id, event_id, status, lane_key, concurrency_key, "
      "created_at_ms) VALUES (?1, ?2, ?3, 'queued', ?4, ?5, ?6) ON CONFLICT DO NOTHING",
      run.run_id, run.function_id, event_id, run.lane_key, run.concurrency_key, now_ms);
  if (tx.Changes() == 0) return;
  if (run.lane_key) {
    int64_t seq = 0;
    std::string head;
    {
      auto lane = tx.Query(
          "UPDATE lanes SET next_seq = next_seq + 1, depth = depth + 1, "
          "head_run_id = COALESCE(head_run_id, ?3), "
          "head_since_ms = CASE WHEN head_run_id IS NULL THEN ?4 ELSE head_since_ms END, "
          "head_deadline_ms = CASE WHEN head_run_id IS NULL THEN ?4 + head_timeout_ms "
          "ELSE head_deadline_ms END "
          "WHERE function_id = ?1 AND key = ?2 RETURNING next_seq, head_run_id",
          run.function_id, *run.lane_key, run.run_id, now_ms);
      if (!lane->Next()) throw std::runtime_error("lane row missing");
      seq = lane->Int(0);
      head = lane->Text(1);
      lane->Run();
    }
    tx.Exec("UPDATE runs SET lane_seq = ?2 WHERE id = ?1", run.run_id, seq);
    if (head != run.run_id) return;
  }
  EnqueueCall(tx, run.run_id, "step", now_ms, now_ms);
}

Result<std::string> FailLaneHead(Tx& tx, const std::string& function_id, const std::string& key,
                                 Json error, int64_t now_ms,
                                 std::optional<int64_t> only_if_due_at) {
  std::string run_id;
  std::optional<int64_t> deadline;
  {
    auto s = tx.Query(
        "SELECT head_run_id, head_deadline_ms FROM lanes WHERE function_id = ?1 AND key = ?2",
        function_id, key);
    if (!s->Next() || s->Null(0)) {
      return LaneHasNoHead(function_id, key);
    }
    run_id = s->Text(0);
    deadline = s->OptInt(1);
  }
  if (only_if_due_at && (!deadline || *deadline > *only_if_due_at)) {
    return Aborted("the head of lane \"" + key + "\" is not due");
  }
  std::string status;
  Json cause;
  int64_t seq = 0;
  {
    auto s = tx.Query("SELECT status, error, lane_seq FROM runs WHERE id = ?1", run_id);
    if (!s->Next()) return Aborted("the head of lane \"" + key + "\" is gone");
    status = s->Text(0);
    cause = s->JsonCol(1);
    seq = s->Int(2);
  }
  if (IsTerminalStatus(status)) {
    return Aborted("the head of lane \"" + key + "\" changed meanwhile; look again");
  }
  if (!cause.is_null()) error["cause"] = std::move(cause);
  tx.Exec(
      "UPDATE runs SET status = 'failed', error = ?2, ended_at_ms = ?3, "
      "started_at_ms = COALESCE(started_at_ms, ?3) WHERE id = ?1",
      run_id, error, now_ms);
  tx.Exec("DELETE FROM queue WHERE run_id = ?1", run_id);
  tx.Exec("DELETE FROM waits WHERE run_id = ?1", run_id);
  AdvanceLane(tx, function_id, key, run_id, seq, now_ms);
  return run_id;
}

}  // namespace

class SqliteStore final : public Store {
 public:
  explicit SqliteStore(sqlite3* db) : db_(db) {}
  ~SqliteStore() override {
    for (auto& [sql, stmt] : cache_) sqlite3_finalize(stmt);
    sqlite3_close_v2(db_);
  }

  Status Migrate() override {
    // Some migrations rebuild a table, which SQLite allows only with foreign keys off (a
    // DROP TABLE would cascade); they are checked before the migration commits.
    sqlite3_exec(db_, "PRAGMA foreign_keys = OFF", nullptr, nullptr, nullptr);
    Status s = ApplyMigrations();
    sqlite3_exec(db_, "PRAGMA foreign_keys = ON", nullptr, nullptr, nullptr);
    return s;
  }

  Status ApplyMigrations() {
    return InTransaction([&](Tx& tx) -> Status {
      tx.Exec(
          "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, "
          "name TEXT NOT NULL, applied_at_ms INTEGER NOT NULL)");
      std::set<int64_t> applied;
      {
        auto s = tx.Query("SELECT version FROM schema_migrations");
        while (s->Next()) applied.insert(s->Int(0));
      }
      for (const Migration& m : SqliteMigrations()) {
        if (applied.count(m.version)) continue;
        char* err = nullptr;
        if (sqlite3_exec(db_, m.sql.c_str(), nullptr, nullptr, &err) != SQLITE_OK) {
          std::string message = err ? err : "unknown error";
          sqlite3_free(err);
          return Internal("migration " + m.name + ": " + message);
        }
        tx.Exec("INSERT INTO schema_migrations (version, name, applied_at_ms) VALUES (?1, ?2, ?3)",
                m.version, m.name, UnixMillis(SystemClock().Now()));
      }
      if (auto broken = tx.Query("PRAGMA foreign_key_check"); broken->Next()) {
        return Internal("migrations left a row of table " + broken->Text(0) +
                        " pointing at a missing row of " + broken->Text(2));
      }
      return Status::Ok();
    });
  }

  Status Ping() override {
    return InTransaction([&](Tx& tx) -> Status {
      tx.Exec("SELECT 1");
      return Status::Ok();
    });
  }

  Result<SyncResult> SyncApp(const AppSync& sync) override {
    return InTransaction([&](Tx& tx) -> Result<SyncResult> {
      const AppRecord& app = sync.app;
      std::vector<std::string> ids;
      for (const auto& f : sync.functions) ids.push_back(f.id);
      {
        auto foreign = tx.Query(
            "SELECT id, app_id FROM functions WHERE id IN (SELECT value FROM json_each(?1)) "
            "AND app_id <> ?2 LIMIT 1",
            JsonList(ids), app.id);
        if (foreign->Next()) {
          return FailedPrecondition("function \"" + foreign->Text(0) + "\" belongs to app \"" +
                                    foreign->Text(1) + "\"");
        }
      }
      bool modified = true;
      {
        auto existing = tx.Query("SELECT checksum FROM apps WHERE id = ?1", app.id);
        if (existing->Next()) modified = existing->Text(0) != app.checksum;
      }
      tx.Exec(
          "INSERT INTO apps (id, url, sdk, framework, checksum, created_at_ms, synced_at_ms) "
          "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6) ON CONFLICT (id) DO UPDATE SET url = excluded.url, "
          "sdk = excluded.sdk, framework = excluded.framework, checksum = excluded.checksum, "
          "synced_at_ms = excluded.synced_at_ms",
          app.id, app.url, app.sdk, app.framework, app.checksum, app.synced_at_ms);
      if (modified) {
        for (const auto& f : sync.functions) {
          tx.Exec(
              "INSERT INTO functions (id, app_id, name, config, archived, updated_at_ms, "
              "concurrency_limit, key_concurrency_limit) VALUES (?1, ?2, ?3, ?4, 0, ?5, ?6, ?7) "
              "ON CONFLICT (id) DO UPDATE SET name = excluded.name, config = excluded.config, "
              "archived = 0, updated_at_ms = excluded.updated_at_ms, "
              "concurrency_limit = excluded.concurrency_limit, "
              "key_concurrency_limit = excluded.key_concurrency_limit",
              f.id, app.id, f.name, f.config, app.synced_at_ms, f.concurrency_limit,
              f.key_concurrency_limit);
        }
        tx.Exec(
            "UPDATE functions SET archived = 1, updated_at_ms = ?3 WHERE app_id = ?1 AND "
            "archived = 0 AND id NOT IN (SELECT value FROM json_each(?2))",
            app.id, JsonList(ids), app.synced_at_ms);
      }
      return SyncResult{modified};
    });
  }

  Result<std::vector<AppRecord>> ListApps() override {
    return InTransaction([&](Tx& tx) -> Result<std::vector<AppRecord>> {
      std::vector<AppRecord> out;
      auto s = tx.Query(
          "SELECT id, url, sdk, framework, checksum, created_at_ms, synced_at_ms FROM apps "
          "ORDER BY id");
      while (s->Next()) {
        out.push_back(
            {s->Text(0), s->Text(1), s->Text(2), s->Text(3), s->Text(4), s->Int(5), s->Int(6)});
      }
      return out;
    });
  }

  Result<std::vector<FunctionRecord>> ListFunctions() override {
    return InTransaction([&](Tx& tx) -> Result<std::vector<FunctionRecord>> {
      std::vector<FunctionRecord> out;
      auto s = tx.Query(std::string("SELECT ") + kFunctionColumns +
                        " FROM functions f WHERE f.archived = 0 ORDER BY f.id");
      while (s->Next()) out.push_back(ReadFunction(*s));
      return out;
    });
  }

  Result<FunctionRecord> GetFunction(const std::string& id) override {
    return InTransaction([&](Tx& tx) -> Result<FunctionRecord> {
      auto s = tx.Query(
          std::string("SELECT ") + kFunctionColumns + " FROM functions f WHERE f.id = ?1", id);
      if (!s->Next()) return NotFound("no function \"" + id + "\"");
      return ReadFunction(*s);
    });
  }

  Result<std::vector<IngestedEvent>> IngestEvents(const std::vector<NewEvent>& events,
                                                  TimePoint now,
                                                  std::vector<WaitRecord>* waits) override {
    const int64_t now_ms = UnixMillis(now);
    const LaneLocks lanes = LanesOf(events);
    return InTransaction([&](Tx& tx) -> Result<std::vector<IngestedEvent>> {
      LockLanes(tx, lanes);
      std::vector<IngestedEvent> out;
      out.reserve(events.size());
      for (const NewEvent& ne : events) {
        const EventRecord& e = ne.event;
        tx.Exec(
            "INSERT INTO events (internal_id, id, name, payload, received_at_ms) "
            "VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT DO NOTHING",
            e.internal_id, e.id, e.name, e.payload, now_ms);
        if (tx.Changes() == 0) {
          // The event that holds this internal id (a seed's) first: a clash on it is only a
          // resend when it is the same event.
          auto existing = tx.Query(
              "SELECT internal_id, payload FROM events WHERE id = ?1 OR internal_id = ?2 "
              "ORDER BY (internal_id = ?2) DESC, (id = ?1) DESC LIMIT 1",
              e.id, e.internal_id);
          if (!existing->Next()) return Internal("event conflict without a stored event");
          std::string stored_id = existing->Text(0);
          if (stored_id == e.internal_id && !SameEvent(existing->JsonCol(1), e.payload)) {
            return EventIdClash(e.internal_id);
          }
          out.push_back({std::move(stored_id), true});
          continue;
        }
        for (const NewRun& run : ne.runs) CreateRun(tx, e.internal_id, run, now_ms);
        out.push_back({e.internal_id, false});
      }
      DropEmptyLanes(tx, lanes);  // locked for events that turned out to be duplicates
      if (waits) {
        std::set<std::string> names;
        for (size_t i = 0; i < events.size(); ++i) {
          if (!out[i].duplicate) names.insert(events[i].event.name);
        }
        if (!names.empty()) *waits = ReadWaits(tx, {names.begin(), names.end()});
      }
      return out;
    });
  }

  Result<std::vector<EventRecord>> ListEvents(const EventFilter& filter) override {
    return InTransaction([&](Tx& tx) -> Result<std::vector<EventRecord>> {
      std::vector<EventRecord> out;
      auto s = tx.Query(
          "SELECT internal_id, id, name, payload, received_at_ms FROM events "
          "WHERE (?1 = '' OR name = ?1) AND (?2 = '' OR internal_id < ?2) "
          "ORDER BY internal_id DESC LIMIT ?3",
          filter.name, filter.cursor, filter.limit);
      while (s->Next()) out.push_back(ReadEvent(*s));
      return out;
    });
  }

  Result<EventRecord> GetEvent(const std::string& internal_id) override {
    return InTransaction([&](Tx& tx) -> Result<EventRecord> {
      auto s = tx.Query(
          "SELECT internal_id, id, name, payload, received_at_ms FROM events "
          "WHERE internal_id = ?1",
          internal_id);
      if (!s->Next()) return NotFound("no event \"" + internal_id + "\"");
      return ReadEvent(*s);
    });
  }

  Result<RunRecord> GetRun(const std::string& run_id) override {
    return InTransaction([&](Tx& tx) -> Result<RunRecord> {
      auto s =
          tx.Query(std::string("SELECT ") + kRunColumns + " FROM runs r WHERE r.id = ?1", run_id);
      if (!s->Next()) return NotFound("no run \"" + run_id + "\"");
      return ReadRun(*s);
    });
  }

  Result<std::vector<RunRecord>> ListRuns(const RunFilter& filter) override {
    return InTransaction([&](Tx& tx) -> Result<std::vector<RunRecord>> {
      std::vector<RunRecord> out;
      auto s = tx.Query(std::string("SELECT ") + kRunColumns +
                            " FROM runs r WHERE (?1 = '' OR r.function_id = ?1) AND (?2 = '' OR "
                            "r.status = ?2) AND (?3 = '' OR r.event_id = ?3) AND (?4 = '' OR "
                            "r.id < ?4) AND (?6 = '' OR r.lane_key = ?6) AND (?7 = 0 OR "
                            "r.created_at_ms >= ?7) AND (?8 = 0 OR r.created_at_ms < ?8) "
                            "ORDER BY r.id DESC LIMIT ?5",
                        filter.function_id, filter.status, filter.event_id, filter.cursor,
                        filter.limit, filter.key, filter.created_from_ms, filter.created_to_ms);
      while (s->Next()) out.push_back(ReadRun(*s));
      return out;
    });
  }

  Result<std::vector<StepRecord>> GetSteps(const std::string& run_id) override {
    return InTransaction(
        [&](Tx& tx) -> Result<std::vector<StepRecord>> { return ReadSteps(tx, run_id); });
  }

  Result<std::vector<AttemptRecord>> GetAttempts(const std::string& run_id) override {
    return InTransaction([&](Tx& tx) -> Result<std::vector<AttemptRecord>> {
      std::vector<AttemptRecord> out;
      auto s = tx.Query(
          "SELECT step_id, name, attempt, outcome, error, started_at_ms, ended_at_ms "
          "FROM attempts WHERE run_id = ?1 ORDER BY id",
          run_id);
      while (s->Next()) {
        out.push_back({s->Text(0), s->Text(1), static_cast<int>(s->Int(2)), s->Text(3),
                       s->JsonCol(4), s->Int(5), s->Int(6)});
      }
      return out;
    });
  }

  Result<std::vector<QueueItem>> Claim(int max, TimePoint now,
                                       std::chrono::milliseconds lease) override {
    const int64_t now_ms = UnixMillis(now);
    const std::string token = crypto::HexEncode(crypto::RandomBytes(12));
    return InTransaction([&](Tx& tx) -> Result<std::vector<QueueItem>> {
      std::vector<ClaimCandidate> candidates;
      {
        auto s = tx.Query(
            "SELECT q.id, q.run_id, q.step_id, q.attempt, q.function_id, q.concurrency_key, "
            "COALESCE(f.concurrency_limit, 0), COALESCE(f.key_concurrency_limit, 0), q.resume "
            "FROM queue q LEFT JOIN functions f ON f.id = q.function_id "
            "WHERE q.visible_at_ms <= ?1 ORDER BY q.visible_at_ms, q.id LIMIT ?2",
            now_ms, max);
        while (s->Next()) {
          ClaimCandidate c;
          c.item = {s->Int(0), s->Text(1), s->Text(2), static_cast<int>(s->Int(3)), token};
          c.function_id = s->Text(4);
          c.concurrency_key = s->OptText(5);
          c.function_limit = static_cast<int>(s->Int(6));
          c.key_limit = static_cast<int>(s->Int(7));
          if (!s->Null(8)) c.item.resume = s->JsonCol(8);
          candidates.push_back(std::move(c));
        }
      }
      // This transaction is the only writer, so counting needs no lock.
      Admission admitted = AdmitWithinLimits(
          std::move(candidates),
          [&](const std::string& function_id, const std::optional<std::string>& key) {
            return tx.Count(
                "SELECT count(*) FROM queue WHERE function_id = ?1 AND lease_token IS NOT NULL "
                "AND visible_at_ms > ?3 AND (?2 IS NULL OR concurrency_key = ?2)",
                function_id, key, now_ms);
          });
      std::vector<std::string> claimed, held, runs;
      for (const QueueItem& item : admitted.claimed) {
        claimed.push_back(std::to_string(item.id));
        runs.push_back(item.run_id);
      }
      for (int64_t id : admitted.held) held.push_back(std::to_string(id));
      if (!claimed.empty()) {
        tx.Exec(
            "UPDATE queue SET visible_at_ms = ?2, lease_token = ?3, claims = claims + 1 "
            "WHERE id IN (SELECT value FROM json_each(?1))",
            JsonList(claimed), now_ms + lease.count(), token);
        tx.Exec(
            "UPDATE runs SET status = 'running', started_at_ms = COALESCE(started_at_ms, ?2) "
            "WHERE id IN (SELECT value FROM json_each(?1)) AND status = 'queued'",
            JsonList(runs), now_ms);
      }
      if (!held.empty()) {
        tx.Exec("UPDATE queue SET visible_at_ms = ?2 WHERE id IN (SELECT value FROM json_each(?1))",
                JsonList(held), now_ms + kHeldBackMs);
      }
      return std::move(admitted.claimed);
    });
  }

  Result<RunState> LoadRunState(const std::string& run_id) override {
    return InTransaction([&](Tx& tx) -> Result<RunState> {
      RunState state;
      {
        auto s = tx.Query(std::string("SELECT ") + kRunColumns + ", " + kFunctionColumns +
                              " FROM runs r JOIN functions f ON f.id = r.function_id "
                              "WHERE r.id = ?1",
                          run_id);
        if (!s->Next()) return NotFound("no run \"" + run_id + "\"");
        state.run = ReadRun(*s);
        state.function = ReadFunction(*s, 13);
      }
      {
        auto s = tx.Query("SELECT payload FROM events WHERE internal_id = ?1", state.run.event_id);
        while (s->Next()) state.events.push_back(s->JsonCol(0));
      }
      state.steps = ReadSteps(tx, run_id);
      return state;
    });
  }

  Status Apply(const QueueItem& item, const Transition& t, TimePoint now) override {
    const int64_t now_ms = UnixMillis(now);
    return InTransaction([&](Tx& tx) -> Status {
      if (t.retry_at && !t.end_status) {
        tx.Exec(
            "UPDATE queue SET attempt = attempt + 1, visible_at_ms = ?3, lease_token = NULL "
            "WHERE id = ?1 AND lease_token = ?2",
            item.id, item.lease_token, UnixMillis(*t.retry_at));
      } else {
        tx.Exec("DELETE FROM queue WHERE id = ?1 AND lease_token = ?2", item.id, item.lease_token);
      }
      if (tx.Changes() == 0) {
        return Aborted("lease on queue item " + std::to_string(item.id) + " lost");
      }
      std::string status, function_id;
      std::optional<std::string> lane_key;
      int64_t lane_seq = 0;
      {
        auto s = tx.Query("SELECT status, function_id, lane_key, lane_seq FROM runs WHERE id = ?1",
                          item.run_id);
        if (!s->Next()) return NotFound("no run \"" + item.run_id + "\"");
        status = s->Text(0);
        function_id = s->Text(1);
        lane_key = s->OptText(2);
        lane_seq = s->Int(3);
      }
      if (IsTerminalStatus(status) || status == kBlocked) {
        tx.Exec("DELETE FROM queue WHERE run_id = ?1", item.run_id);
        return Status::Ok();
      }
      if (item.resume) {
        tx.Exec("DELETE FROM waits WHERE run_id = ?1 AND step_id = ?2", item.run_id, item.step_id);
      }
      for (const StepRecord& step : t.steps) {
        tx.Exec(
            "INSERT INTO steps (run_id, step_id, seq, name, status, memo, created_at_ms) "
            "SELECT ?1, ?2, COALESCE(MAX(seq) + 1, 0), ?3, ?4, ?5, ?6 FROM steps "
            "WHERE run_id = ?1 ON CONFLICT (run_id, step_id) DO NOTHING",
            item.run_id, step.step_id, step.name, step.status, step.memo, now_ms);
      }
      for (const AttemptRecord& at : t.attempts) {
        tx.Exec(
            "INSERT INTO attempts (run_id, step_id, name, attempt, outcome, error, "
            "started_at_ms, ended_at_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            item.run_id, at.step_id, at.name, at.attempt, at.outcome, at.error, at.started_at_ms,
            at.ended_at_ms);
      }
      if (t.end_status) {
        tx.Exec(
            "UPDATE runs SET status = ?2, output = ?3, error = ?4, ended_at_ms = ?5, "
            "req_version = COALESCE(?6, req_version) WHERE id = ?1",
            item.run_id, *t.end_status, t.output, t.error, now_ms, t.req_version);
        tx.Exec("DELETE FROM queue WHERE run_id = ?1", item.run_id);
        tx.Exec("DELETE FROM waits WHERE run_id = ?1", item.run_id);
        if (lane_key) AdvanceLane(tx, function_id, *lane_key, item.run_id, lane_seq, now_ms);
        return Status::Ok();
      }
      if (t.run_status == kBlocked) {
        tx.Exec(
            "UPDATE runs SET status = ?2, error = ?3, req_version = COALESCE(?4, req_version) "
            "WHERE id = ?1",
            item.run_id, kBlocked, t.error, t.req_version);
        tx.Exec("DELETE FROM queue WHERE run_id = ?1", item.run_id);
        return Status::Ok();
      }
      const bool idle = !t.next_only_if_idle ||
                        tx.Count("SELECT count(*) FROM queue WHERE run_id = ?1", item.run_id) == 0;
      for (const NextCall& n : t.next) {
        if (!idle && !n.resume && n.step_id == kDiscoveryStepId) continue;
        EnqueueCall(tx, item.run_id, n.step_id, UnixMillis(n.due), now_ms, n.resume);
      }
      for (const NewWait& wait : t.waits) {
        tx.Exec(
            "INSERT INTO waits (run_id, step_id, function_id, event_name, expression, kind, "
            "created_at_ms, expires_at_ms) SELECT id, ?2, function_id, ?3, ?4, ?5, ?6, ?7 "
            "FROM runs WHERE id = ?1 ON CONFLICT DO NOTHING",
            item.run_id, wait.step_id, wait.event_name, wait.expression, wait.kind, now_ms,
            UnixMillis(wait.expires_at));
        if (tx.Changes() == 0) continue;
        EnqueueCall(tx, item.run_id, wait.step_id, UnixMillis(wait.expires_at), now_ms,
                    Resume(wait.timeout_memo, wait.name));
      }
      if (t.run_status || t.req_version) {
        tx.Exec(
            "UPDATE runs SET status = COALESCE(?2, status), req_version = COALESCE(?3, "
            "req_version) WHERE id = ?1",
            item.run_id, t.run_status, t.req_version);
      }
      return Status::Ok();
    });
  }

  Result<int64_t> QueueDepth() override {
    return InTransaction(
        [&](Tx& tx) -> Result<int64_t> { return tx.Count("SELECT count(*) FROM queue"); });
  }

  Status RenewLease(const QueueItem& item, TimePoint until) override {
    return InTransaction([&](Tx& tx) -> Status {
      tx.Exec("UPDATE queue SET visible_at_ms = ?3 WHERE id = ?1 AND lease_token = ?2", item.id,
              item.lease_token, UnixMillis(until));
      if (tx.Changes() == 0) return Aborted("the lease of run " + item.run_id + " was lost");
      return Status::Ok();
    });
  }

  Status ReleaseLeases(const std::vector<QueueItem>& items, TimePoint now) override {
    return InTransaction([&](Tx& tx) -> Status {
      for (const QueueItem& item : items) {
        tx.Exec(
            "UPDATE queue SET visible_at_ms = ?3, lease_token = NULL "
            "WHERE id = ?1 AND lease_token = ?2",
            item.id, item.lease_token, UnixMillis(now));
      }
      return Status::Ok();
    });
  }

  Result<std::vector<std::string>> PendingRunEnds(int64_t ended_before_ms, int limit) override {
    return InTransaction([&](Tx& tx) -> Result<std::vector<std::string>> {
      std::vector<std::string> out;
      auto s = tx.Query(
          "SELECT run_id FROM run_ends WHERE ?1 = 0 OR ended_at_ms < ?1 "
          "ORDER BY ended_at_ms, run_id LIMIT ?2",
          ended_before_ms, limit);
      while (s->Next()) out.push_back(s->Text(0));
      return out;
    });
  }

  Status AckRunEnds(const std::vector<std::string>& run_ids) override {
    if (run_ids.empty()) return Status::Ok();
    return InTransaction([&](Tx& tx) -> Status {
      for (const std::string& id : run_ids) tx.Exec("DELETE FROM run_ends WHERE run_id = ?1", id);
      return Status::Ok();
    });
  }

  Result<int64_t> DeleteExpired(TimePoint horizon, int batch) override {
    const int64_t horizon_ms = UnixMillis(horizon);
    return InTransaction([&](Tx& tx) -> Result<int64_t> {
      // Steps, attempts, queue items and waits go by ON DELETE CASCADE. A run in run_ends
      // has not been announced yet: its end event would be lost.
      tx.Exec(
          "DELETE FROM runs WHERE id IN (SELECT r.id FROM runs r "
          "WHERE r.status IN ('completed', 'failed', 'cancelled') AND r.ended_at_ms < ?1 "
          "AND NOT EXISTS (SELECT 1 FROM run_ends e WHERE e.run_id = r.id) LIMIT ?2)",
          horizon_ms, batch);
      int64_t deleted = tx.Changes();
      tx.Exec(
          "DELETE FROM events WHERE internal_id IN (SELECT e.internal_id FROM events e "
          "WHERE e.received_at_ms < ?1 "
          "AND NOT EXISTS (SELECT 1 FROM runs r WHERE r.event_id = e.internal_id) LIMIT ?2)",
          horizon_ms, batch);
      return deleted + tx.Changes();
    });
  }

  Result<QueueStats> GetQueueStats(TimePoint now) override {
    const int64_t now_ms = UnixMillis(now);
    return InTransaction([&](Tx& tx) -> Result<QueueStats> {
      QueueStats out;
      out.depth = tx.Count("SELECT count(*) FROM queue");
      out.due = tx.Count("SELECT count(*) FROM queue WHERE visible_at_ms <= ?1", now_ms);
      out.oldest_due_age_ms = tx.Count(
          "SELECT coalesce(?1 - min(visible_at_ms), 0) FROM queue WHERE visible_at_ms <= ?1",
          now_ms);
      out.lanes_blocked = tx.Count(
          "SELECT count(*) FROM lanes l JOIN runs r ON r.id = l.head_run_id "
          "WHERE r.status = 'blocked'");
      out.longest_blocked_ms = tx.Count(
          "SELECT coalesce(?1 - min(l.head_since_ms), 0) FROM lanes l "
          "JOIN runs r ON r.id = l.head_run_id WHERE r.status = 'blocked'",
          now_ms);
      return out;
    });
  }

  Result<std::vector<std::string>> ExpireLaneHeads(TimePoint now) override {
    const int64_t now_ms = UnixMillis(now);
    return InTransaction([&](Tx& tx) -> Result<std::vector<std::string>> {
      std::vector<std::tuple<std::string, std::string, int64_t>> due;
      {
        auto s = tx.Query(
            "SELECT function_id, key, head_timeout_ms FROM lanes WHERE head_deadline_ms <= ?1 "
            "ORDER BY head_deadline_ms LIMIT 100",
            now_ms);
        while (s->Next()) due.emplace_back(s->Text(0), s->Text(1), s->Int(2));
      }
      std::vector<std::string> failed;
      for (const auto& [function_id, key, timeout_ms] : due) {
        Json error = {{"name", "HeadTimeout"},
                      {"message", "the run held its lane longer than head_timeout (" +
                                      std::to_string(timeout_ms) + " ms)"}};
        auto run_id = FailLaneHead(tx, function_id, key, error, now_ms, now_ms);
        if (run_id.ok()) failed.push_back(*run_id);
      }
      return failed;
    });
  }

  Result<std::vector<LaneRecord>> ListLanes(const LaneFilter& filter) override {
    const std::string after_fn = filter.after ? filter.after->first : "";
    const std::string after_key = filter.after ? filter.after->second : "";
    return InTransaction([&](Tx& tx) -> Result<std::vector<LaneRecord>> {
      std::vector<LaneRecord> out;
      auto s = tx.Query(
          "SELECT l.function_id, l.key, l.depth, l.head_run_id, r.status, l.head_since_ms, "
          "l.head_deadline_ms FROM lanes l JOIN runs r ON r.id = l.head_run_id "
          "WHERE (?1 = '' OR l.function_id = ?1) AND (NOT ?2 OR r.status = 'blocked') "
          "AND (?3 = '' OR (l.function_id, l.key) > (?3, ?4)) "
          "ORDER BY l.function_id, l.key LIMIT ?5",
          filter.function_id, filter.blocked_only, after_fn, after_key, filter.limit);
      while (s->Next()) {
        out.push_back({s->Text(0), s->Text(1), static_cast<int>(s->Int(2)), s->Text(3), s->Text(4),
                       s->Int(5), s->OptInt(6)});
      }
      return out;
    });
  }

  Result<std::string> RetryLaneHead(const std::string& function_id, const std::string& key,
                                    TimePoint now) override {
    const int64_t now_ms = UnixMillis(now);
    return InTransaction([&](Tx& tx) -> Result<std::string> {
      std::string run_id, status;
      {
        auto s = tx.Query(
            "SELECT l.head_run_id, r.status FROM lanes l JOIN runs r ON r.id = l.head_run_id "
            "WHERE l.function_id = ?1 AND l.key = ?2",
            function_id, key);
        if (!s->Next()) {
          return LaneHasNoHead(function_id, key);
        }
        run_id = s->Text(0);
        status = s->Text(1);
      }
      if (status != kBlocked) {
        return HeadNotBlocked(key, status);
      }
      tx.Exec("DELETE FROM steps WHERE run_id = ?1 AND status = 'failed'", run_id);
      tx.Exec("UPDATE runs SET status = 'running', error = NULL WHERE id = ?1", run_id);
      tx.Exec(
          "UPDATE lanes SET head_since_ms = ?3, head_deadline_ms = ?3 + head_timeout_ms "
          "WHERE function_id = ?1 AND key = ?2",
          function_id, key, now_ms);
      EnqueueCall(tx, run_id, "step", now_ms, now_ms);
      return run_id;
    });
  }

  Result<std::string> SkipLaneHead(const std::string& function_id, const std::string& key,
                                   TimePoint now) override {
    return InTransaction([&](Tx& tx) -> Result<std::string> {
      return FailLaneHead(tx, function_id, key,
                          {{"name", "Skipped"}, {"message", "skipped by an operator (skip-head)"}},
                          UnixMillis(now), std::nullopt);
    });
  }

  Result<bool> ResolveWait(const std::string& run_id, const std::string& step_id, const Json& memo,
                           TimePoint now) override {
    return InTransaction([&](Tx& tx) -> Result<bool> {
      tx.Exec("DELETE FROM waits WHERE run_id = ?1 AND step_id = ?2", run_id, step_id);
      if (tx.Changes() == 0) return false;
      tx.Exec(
          "UPDATE queue SET resume = json_set(resume, '$.memo', json(?3)), visible_at_ms = ?4, "
          "lease_token = NULL WHERE run_id = ?1 AND step_id = ?2 AND resume IS NOT NULL",
          run_id, step_id, memo.dump(), UnixMillis(now));
      return tx.Changes() > 0;
    });
  }

  Result<std::vector<EventRecord>> EventsSince(const std::string& name, int64_t since_ms,
                                               int limit) override {
    return InTransaction([&](Tx& tx) -> Result<std::vector<EventRecord>> {
      std::vector<EventRecord> out;
      auto s = tx.Query(
          "SELECT internal_id, id, name, payload, received_at_ms FROM events "
          "WHERE name = ?1 AND received_at_ms >= ?2 ORDER BY received_at_ms, internal_id "
          "LIMIT ?3",
          name, since_ms, limit);
      while (s->Next()) out.push_back(ReadEvent(*s));
      return out;
    });
  }

  Result<bool> CancelRun(const std::string& run_id, const Json& error, TimePoint now) override {
    const int64_t now_ms = UnixMillis(now);
    return InTransaction([&](Tx& tx) -> Result<bool> {
      std::string status, function_id;
      std::optional<std::string> lane_key;
      int64_t lane_seq = 0;
      {
        auto s = tx.Query("SELECT status, function_id, lane_key, lane_seq FROM runs WHERE id = ?1",
                          run_id);
        if (!s->Next()) return NotFound("no run \"" + run_id + "\"");
        status = s->Text(0);
        function_id = s->Text(1);
        lane_key = s->OptText(2);
        lane_seq = s->Int(3);
      }
      if (IsTerminalStatus(status)) return false;
      tx.Exec("UPDATE runs SET status = 'cancelled', error = ?2, ended_at_ms = ?3 WHERE id = ?1",
              run_id, error, now_ms);
      tx.Exec("DELETE FROM queue WHERE run_id = ?1", run_id);
      tx.Exec("DELETE FROM waits WHERE run_id = ?1", run_id);
      if (lane_key && !AdvanceLane(tx, function_id, *lane_key, run_id, lane_seq, now_ms)) {
        tx.Exec("UPDATE lanes SET depth = depth - 1 WHERE function_id = ?1 AND key = ?2",
                function_id, *lane_key);
      }
      return true;
    });
  }

  Status StartRun(const std::string& event_internal_id, const NewRun& run, TimePoint now) override {
    const LaneLocks lanes = LanesOf({NewEvent{{}, {run}}});
    return InTransaction([&](Tx& tx) -> Status {
      if (tx.Count("SELECT count(*) FROM events WHERE internal_id = ?1", event_internal_id) == 0) {
        return NotFound("no event \"" + event_internal_id + "\"");
      }
      LockLanes(tx, lanes);
      CreateRun(tx, event_internal_id, run, UnixMillis(now));
      return Status::Ok();
    });
  }

  Result<std::vector<ActiveRun>> ActiveRuns(const std::string& function_id, int limit) override {
    return InTransaction([&](Tx& tx) -> Result<std::vector<ActiveRun>> {
      std::vector<ActiveRun> out;
      auto s = tx.Query(
          "SELECT r.id, e.payload, r.created_at_ms FROM runs r "
          "JOIN events e ON e.internal_id = r.event_id WHERE r.function_id = ?1 "
          "AND r.status NOT IN ('completed', 'failed', 'cancelled') ORDER BY r.id LIMIT ?2",
          function_id, limit);
      while (s->Next()) out.push_back({s->Text(0), s->JsonCol(1), s->Int(2)});
      return out;
    });
  }

 private:
  // Runs `fn(Tx&)` in one BEGIN IMMEDIATE transaction and commits when it returns OK.
  // SQLITE_BUSY (another process holds the file past the busy timeout) is kUnavailable.
  template <typename Fn>
  auto InTransaction(Fn&& fn) -> decltype(fn(std::declval<Tx&>())) {
    using R = decltype(fn(std::declval<Tx&>()));
    std::lock_guard lock(mu_);
    Tx tx(db_, cache_);
    try {
      tx.Exec("BEGIN IMMEDIATE");
    } catch (const SqliteError& e) {
      return R(Unavailable(std::string("SQLite is busy: ") + e.what()));
    }
    try {
      R result = fn(tx);
      tx.Exec(result.ok() ? "COMMIT" : "ROLLBACK");
      return result;
    } catch (const SqliteError& e) {
      sqlite3_exec(db_, "ROLLBACK", nullptr, nullptr, nullptr);
      if (e.code == SQLITE_BUSY || e.code == SQLITE_LOCKED) {
        return R(Unavailable(std::string("SQLite is busy: ") + e.what()));
      }
      return R(Internal(std::string("SQLite error: ") + e.what()));
    } catch (const std::exception& e) {
      sqlite3_exec(db_, "ROLLBACK", nullptr, nullptr, nullptr);
      return R(Internal(std::string("SQLite error: ") + e.what()));
    }
  }

  std::mutex mu_;
  sqlite3* db_;
  std::map<std::string, sqlite3_stmt*> cache_;  // GUARDED_BY(mu_)
};

Result<std::unique_ptr<Store>> OpenSqliteStore(const SqliteOptions& options) {
  sqlite3* db = nullptr;
  int rc =
      sqlite3_open_v2(options.path.c_str(), &db,
                      SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, nullptr);
  if (rc != SQLITE_OK) {
    std::string message = db ? sqlite3_errmsg(db) : sqlite3_errstr(rc);
    sqlite3_close_v2(db);
    return Unavailable("cannot open SQLite database " + options.path + ": " + message);
  }
  sqlite3_busy_timeout(db, options.busy_timeout_ms);
  const char* pragmas =
      "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON;";
  char* err = nullptr;
  if (sqlite3_exec(db, pragmas, nullptr, nullptr, &err) != SQLITE_OK) {
    std::string message = err ? err : "unknown error";
    sqlite3_free(err);
    sqlite3_close_v2(db);
    return Unavailable("cannot set up SQLite database " + options.path + ": " + message);
  }
  return std::unique_ptr<Store>(std::make_unique<SqliteStore>(db));
}

}  // namespace funcky::store
