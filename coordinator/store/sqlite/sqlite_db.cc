// The SQLite backend of the one store: one connection in WAL mode, used by one transaction
// at a time (BEGIN IMMEDIATE under a mutex), prepared statements cached, and migrations.
// Everything else is in coordinator/store/sql/sql_store.cc.
//
// SQLite has a single writer anyway; serializing every transaction gives the guarantees the
// PostgreSQL backend gets from row locks, SKIP LOCKED and advisory locks. Several processes
// may open the same file (busy timeout), but the store is meant for one coordinator:
// `funcky dev`.
//
// The write-ahead log is checkpointed (copied into the database file, then synced) by a
// thread of its own on a second connection, when a commit leaves kCheckpointPages in it: by
// default SQLite does that inside the commit that crosses the threshold, which then waits
// for megabytes to be copied and two syncs (every eighth idle run or so, milliseconds each).
#include <sqlite3.h>

#include <condition_variable>
#include <map>
#include <mutex>
#include <set>
#include <stdexcept>
#include <thread>

#include "coordinator/store/migration.h"
#include "coordinator/store/sql/databases.h"
#include "coordinator/store/sql/sql_store.h"

namespace funcky::store {

namespace {

// A failed SQLite call; its result code decides the Status.
struct SqliteError : std::runtime_error {
  SqliteError(int code, const std::string& what) : std::runtime_error(what), code(code) {}
  int code;
};

class SqliteTx final : public sql::Tx {
 public:
  SqliteTx(sqlite3* db, std::map<std::string, sqlite3_stmt*, std::less<>>& cache)
      : db_(db), cache_(cache) {}

  sql::Rows Query(std::string_view sql, sql::Params params) override {
    sqlite3_stmt* s = Prepare(sql, params);
    const int columns = sqlite3_column_count(s);
    std::vector<sql::Cell> cells;
    while (Step(s)) {
      for (int c = 0; c < columns; ++c) {
        switch (sqlite3_column_type(s, c)) {
          case SQLITE_NULL:
            cells.emplace_back();
            break;
          case SQLITE_INTEGER:
            cells.emplace_back(static_cast<int64_t>(sqlite3_column_int64(s, c)));
            break;
          default: {
            const auto* p = reinterpret_cast<const char*>(sqlite3_column_text(s, c));
            cells.emplace_back(std::string(p ? p : "", sqlite3_column_bytes(s, c)));
          }
        }
      }
    }
    Done(s);
    return sql::Rows(columns, std::move(cells));
  }

  int64_t Exec(std::string_view sql, sql::Params params) override {
    sqlite3_stmt* s = Prepare(sql, params);
    while (Step(s)) {
    }
    Done(s);
    return sqlite3_changes(db_);
  }

  void Wait() override {}                           // every statement ran when it was sent
  void LockKey(std::string_view, bool) override {}  // one transaction at a time already

  // Runs `sql` (several statements, no parameters) as it is.
  // Its error keeps SQLite's code: a COMMIT that fails for a full disk or an I/O error (where
  // WAL mode writes a transaction's pages) is trouble that passes, not a bad write.
  void ExecScript(const std::string& sql) {
    char* err = nullptr;
    if (sqlite3_exec(db_, sql.c_str(), nullptr, nullptr, &err) != SQLITE_OK) {
      std::string message = err ? err : "unknown error";
      sqlite3_free(err);
      throw SqliteError(sqlite3_extended_errcode(db_), message);
    }
  }

 private:
  // The cached statement for `sql` (rewritten for SQLite once), with `params` bound.
  sqlite3_stmt* Prepare(std::string_view sql, sql::Params params) {
    auto it = cache_.find(sql);
    if (it == cache_.end()) {
      const std::string text = sql::Rewrite(sql, sql::Dialect::kSqlite);
      sqlite3_stmt* s = nullptr;
      int rc = sqlite3_prepare_v3(db_, text.c_str(), -1, SQLITE_PREPARE_PERSISTENT, &s, nullptr);
      if (rc != SQLITE_OK) throw SqliteError(rc, std::string(sqlite3_errmsg(db_)) + " in: " + text);
      it = cache_.emplace(std::string(sql), s).first;
    }
    sqlite3_stmt* s = it->second;
    int i = 0;
    for (const sql::Value& p : params) {
      ++i;
      const auto& v = p.get();
      int rc;
      if (std::holds_alternative<std::monostate>(v)) {
        rc = sqlite3_bind_null(s, i);
      } else if (const auto* n = std::get_if<int64_t>(&v)) {
        rc = sqlite3_bind_int64(s, i, *n);
      } else if (const auto* b = std::get_if<bool>(&v)) {
        rc = sqlite3_bind_int64(s, i, *b ? 1 : 0);
      } else {
        const std::string& t = std::get<std::string>(v);
        rc = sqlite3_bind_text(s, i, t.data(), static_cast<int>(t.size()), SQLITE_TRANSIENT);
      }
      if (rc != SQLITE_OK) {
        Done(s);
        throw SqliteError(rc, sqlite3_errmsg(db_));
      }
    }
    return s;
  }

  // Steps once; true when a row is available.
  bool Step(sqlite3_stmt* s) {
    const int rc = sqlite3_step(s);
    if (rc == SQLITE_ROW) return true;
    if (rc == SQLITE_DONE) return false;
    std::string message = sqlite3_errmsg(db_);
    Done(s);
    throw SqliteError(rc, message);
  }

  static void Done(sqlite3_stmt* s) {
    sqlite3_reset(s);
    sqlite3_clear_bindings(s);
  }

  sqlite3* db_;
  std::map<std::string, sqlite3_stmt*, std::less<>>& cache_;
};

// The write-ahead log's size, in pages, past which it is checkpointed (SQLite's own default).
constexpr int kCheckpointPages = 1000;

class SqliteDatabase final : public sql::Database {
 public:
  // `checkpointer`: a second connection to the same file, for the checkpoints; null to leave
  // them to SQLite (in the commits).
  SqliteDatabase(sqlite3* db, sqlite3* checkpointer) : db_(db), checkpointer_(checkpointer) {
    if (!checkpointer_) return;
    // Replaces the hook of SQLite's automatic checkpoint: commits no longer make one.
    sqlite3_wal_hook(db_, &SqliteDatabase::AfterCommit, this);
    checkpoints_ = std::thread([this] { CheckpointLoop(); });
  }
  ~SqliteDatabase() override {
    if (checkpoints_.joinable()) {
      {
        std::lock_guard lock(checkpoint_mu_);
        stopping_ = true;
      }
      checkpoint_cv_.notify_one();
      checkpoints_.join();
      sqlite3_close_v2(checkpointer_);
    }
    for (auto& [sql, stmt] : cache_) sqlite3_finalize(stmt);
    sqlite3_close_v2(db_);  // the last connection: checkpoints what is left
  }

  // SQLite runs each statement as it is sent: every transaction is of Flights::kOne's kind.
  Status DoTransact(const std::function<Status(sql::Tx&)>& body, sql::Flights) override {
    WaitForRestart();
    std::lock_guard lock(mu_);
    return Locked([&](SqliteTx& tx) {
      Status s = body(tx);
      if (s.ok()) tx.FlushInserts();
      return s;
    });
  }

  int KnownMigration() const override { return SqliteMigrations().back().version; }

  Status Migrate() override {
    std::lock_guard lock(mu_);
    // Some migrations rebuild a table, which SQLite allows only with foreign keys off (a
    // DROP TABLE would cascade); they are checked before the migration commits.
    sqlite3_exec(db_, "PRAGMA foreign_keys = OFF", nullptr, nullptr, nullptr);
    int newest_applied = 0;
    Status s = Locked([&](SqliteTx& tx) -> Status {
      tx.ExecScript(
          "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, "
          "name TEXT NOT NULL, applied_at_ms INTEGER NOT NULL)");
      if (tx.Query("SELECT 1 FROM pragma_table_info('schema_migrations') WHERE name = "
                   "'breaks_earlier'",
                   {})
              .empty()) {
        tx.ExecScript(
            "ALTER TABLE schema_migrations ADD COLUMN breaks_earlier INTEGER NOT NULL DEFAULT 0");
      }
      const std::vector<Migration>& known = SqliteMigrations();
      sql::Rows newest = tx.Query(kAppliedMigrationsQuery, {});
      newest_applied = static_cast<int>(newest[0].Int(0));
      if (Status s = CheckAppliedMigrations(known.back().version, newest_applied,
                                            static_cast<int>(newest[0].Int(1)));
          !s.ok()) {
        return s;
      }
      std::set<int64_t> applied;
      for (sql::Row row : tx.Query("SELECT version FROM schema_migrations", {})) {
        applied.insert(row.Int(0));
      }
      for (const Migration& m : known) {
        if (applied.count(m.version)) {
          // Applied by a version that did not mark it.
          if (m.breaks_earlier) {
            tx.Exec("UPDATE schema_migrations SET breaks_earlier = 1 WHERE version = $1",
                    {m.version});
          }
          continue;
        }
        tx.ExecScript(m.sql);
        tx.Exec(
            "INSERT INTO schema_migrations (version, name, applied_at_ms, breaks_earlier) "
            "VALUES ($1, $2, $3, $4)",
            {m.version, m.name, UnixMillis(SystemClock().Now()), m.breaks_earlier ? 1 : 0});
      }
      sql::Rows broken = tx.Query("PRAGMA foreign_key_check", {});
      if (!broken.empty()) {
        return Internal("migrations left a row of table " + broken[0].Text(0) +
                        " pointing at a missing row of " + broken[0].Text(2));
      }
      return Status::Ok();
    });
    sqlite3_exec(db_, "PRAGMA foreign_keys = ON", nullptr, nullptr, nullptr);
    if (s.ok()) WarnOfNewerMigrations(SqliteMigrations().back().version, newest_applied);
    return s;
  }

 private:
  // Runs `body` in one BEGIN IMMEDIATE transaction; the caller holds mu_. SQLITE_BUSY
  // (another process holds the file past the busy timeout) is kUnavailable.
  Status Locked(const std::function<Status(SqliteTx&)>& body) {
    SqliteTx tx(db_, cache_);
    try {
      tx.ExecScript("BEGIN IMMEDIATE");
    } catch (const SqliteError& e) {
      return Unavailable(std::string("SQLite is busy: ") + e.what());
    }
    try {
      Status result = body(tx);
      tx.ExecScript(result.ok() ? "COMMIT" : "ROLLBACK");
      return result;
    } catch (const SqliteError& e) {
      sqlite3_exec(db_, "ROLLBACK", nullptr, nullptr, nullptr);
      if ((e.code & 0xff) == SQLITE_BUSY || (e.code & 0xff) == SQLITE_LOCKED) {
        return Unavailable(std::string("SQLite is busy: ") + e.what());
      }
      // Out of disk or memory, or an I/O error: trouble that passes. Any other error is about
      // what was written (kInternal): writing it again fails again.
      const int primary = e.code & 0xff;
      if (primary == SQLITE_FULL || primary == SQLITE_IOERR || primary == SQLITE_NOMEM) {
        return Unavailable(std::string("SQLite error: ") + e.what());
      }
      return Internal(std::string("SQLite error: ") + e.what());
    } catch (const sql::UnmetRequirement&) {
      sqlite3_exec(db_, "ROLLBACK", nullptr, nullptr, nullptr);
      return sql::Unmet();
    } catch (const std::exception& e) {
      sqlite3_exec(db_, "ROLLBACK", nullptr, nullptr, nullptr);
      return Internal(std::string("SQLite error: ") + e.what());
    }
  }

  // sqlite3_wal_hook: called after each commit with the pages now in the log.
  static int AfterCommit(void* self, sqlite3* db, const char*, int pages) {
    if (pages >= kCheckpointPages * 8) {
      // The checkpoints fell behind (commits outpace the thread's copies, or a reader holds
      // the log): this commit's caller copies what it can too, as SQLite's own automatic
      // checkpoint would have long before. PASSIVE: it waits for nobody. A RESTART waited
      // for every reader, up to the busy timeout (5 s) at each commit, with every store call
      // of the coordinator held behind it, while another process kept a read open.
      sqlite3_wal_checkpoint_v2(db, nullptr, SQLITE_CHECKPOINT_PASSIVE, nullptr, nullptr);
    } else if (pages >= kCheckpointPages) {
      auto* d = static_cast<SqliteDatabase*>(self);
      {
        std::lock_guard lock(d->checkpoint_mu_);
        d->checkpoint_due_ = true;
      }
      d->checkpoint_cv_.notify_one();
    }
    return SQLITE_OK;
  }

  // Checkpoints whenever a commit asks, in two passes. PASSIVE copies what was committed when
  // it began, without holding up transactions, which go on meanwhile. But the log starts over
  // only once all of it is copied, which under a stream of commits a passive pass never
  // achieves; so the second pass, between two transactions, copies what came meanwhile (a
  // few pages, or none) and has the next one start the log over (RESTART). Failures (another
  // process holding the file) leave it to the next request.
  void CheckpointLoop() {
    std::unique_lock lock(checkpoint_mu_);
    for (;;) {
      checkpoint_cv_.wait(lock, [this] { return checkpoint_due_ || stopping_; });
      if (stopping_) return;
      checkpoint_due_ = false;
      lock.unlock();
      sqlite3_wal_checkpoint_v2(checkpointer_, nullptr, SQLITE_CHECKPOINT_PASSIVE, nullptr,
                                nullptr);
      lock.lock();
      restart_wanted_ = true;  // transactions not yet begun wait (WaitForRestart)
      lock.unlock();
      {
        std::lock_guard between(mu_);
        sqlite3_wal_checkpoint_v2(checkpointer_, nullptr, SQLITE_CHECKPOINT_RESTART, nullptr,
                                  nullptr);
      }
      lock.lock();
      restart_wanted_ = false;
      restart_cv_.notify_all();
    }
  }

  // Lets a wanted second pass have the connection after the transaction running now: a
  // stream of transactions would otherwise keep it (a mutex is not fair), and the log grow
  // until a commit checkpoints it all itself.
  void WaitForRestart() {
    if (!checkpointer_) return;
    std::unique_lock lock(checkpoint_mu_);
    restart_cv_.wait(lock, [this] { return !restart_wanted_; });
  }

  std::mutex mu_;
  sqlite3* db_;
  std::map<std::string, sqlite3_stmt*, std::less<>> cache_;  // GUARDED_BY(mu_)
  sqlite3* checkpointer_;
  std::mutex checkpoint_mu_;
  std::condition_variable checkpoint_cv_;
  std::condition_variable restart_cv_;
  bool checkpoint_due_ = false;  // GUARDED_BY(checkpoint_mu_)
  bool restart_wanted_ = false;  // GUARDED_BY(checkpoint_mu_)
  bool stopping_ = false;        // GUARDED_BY(checkpoint_mu_)
  std::thread checkpoints_;
};

// octet_length(x): the bytes of a text or blob, as PostgreSQL's (SQLite has its own from 3.43;
// Debian 12 ships 3.40). NULL for NULL.
void OctetLength(sqlite3_context* ctx, int /*argc*/, sqlite3_value** argv) {
  if (sqlite3_value_type(argv[0]) == SQLITE_NULL) {
    sqlite3_result_null(ctx);
    return;
  }
  sqlite3_result_int64(ctx, sqlite3_value_bytes(argv[0]));
}

// Opens options.path and runs `pragmas` on it; null (and `*error` set) when it cannot.
sqlite3* Open(const SqliteOptions& options, const char* pragmas, std::string* error) {
  sqlite3* db = nullptr;
  int rc =
      sqlite3_open_v2(options.path.c_str(), &db,
                      SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, nullptr);
  if (rc != SQLITE_OK) {
    *error = "cannot open SQLite database " + options.path + ": " +
             (db ? sqlite3_errmsg(db) : sqlite3_errstr(rc));
    sqlite3_close_v2(db);
    return nullptr;
  }
  sqlite3_busy_timeout(db, options.busy_timeout_ms);
  sqlite3_create_function(db, "octet_length", 1, SQLITE_UTF8 | SQLITE_DETERMINISTIC, nullptr,
                          OctetLength, nullptr, nullptr);
  char* err = nullptr;
  if (sqlite3_exec(db, pragmas, nullptr, nullptr, &err) != SQLITE_OK) {
    *error = "cannot set up SQLite database " + options.path + ": " + (err ? err : "unknown error");
    sqlite3_free(err);
    sqlite3_close_v2(db);
    return nullptr;
  }
  return db;
}

}  // namespace

Result<std::unique_ptr<sql::Database>> OpenSqliteDatabase(const SqliteOptions& options) {
  std::string error;
  sqlite3* db = Open(
      options, "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON;",
      &error);
  if (!db) return Unavailable(error);
  // The checkpoints' connection, where the file is in WAL mode (not, e.g., in memory).
  sqlite3* checkpointer = nullptr;
  sqlite3_stmt* mode = nullptr;
  if (sqlite3_prepare_v2(db, "PRAGMA journal_mode", -1, &mode, nullptr) == SQLITE_OK &&
      sqlite3_step(mode) == SQLITE_ROW &&
      std::string_view(reinterpret_cast<const char*>(sqlite3_column_text(mode, 0))) == "wal") {
    checkpointer = Open(options, "PRAGMA synchronous = NORMAL;", &error);
    if (!checkpointer) {
      sqlite3_finalize(mode);
      sqlite3_close_v2(db);
      return Unavailable(error);
    }
    // Never waits for the file: a second pass holds transactions back while it runs, and
    // another process reading the file (a sqlite3 shell) only keeps the log from starting over.
    sqlite3_busy_timeout(checkpointer, 0);
  }
  sqlite3_finalize(mode);
  return std::unique_ptr<sql::Database>(std::make_unique<SqliteDatabase>(db, checkpointer));
}

Result<std::unique_ptr<Store>> OpenSqliteStore(const SqliteOptions& options) {
  ASSIGN_OR_RETURN(auto db, OpenSqliteDatabase(options));
  return std::unique_ptr<Store>(std::make_unique<SqlStore>(std::move(db)));
}

}  // namespace funcky::store
