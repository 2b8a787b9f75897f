// The PostgreSQL backend of the one store: a pool of libpq connections, each transaction sent
// in libpq's pipeline mode, advisory locks, error mapping and migrations. Everything else is in
// coordinator/store/sql/sql_store.cc.
//
// Pipelining: a transaction's BEGIN, the statements whose results nobody reads (Tx::Send,
// advisory locks, NOTIFY, the rows of Tx::InsertLater) and its COMMIT are queued on the
// connection and go out with the next statement whose result is wanted, or with the COMMIT:
// one round trip where each took one. The server runs them in order, as sent; the first that
// fails aborts the rest (PostgreSQL skips to the pipeline's sync), and its error is the
// transaction's. A transaction of one flight (sql::Flights::kOne) has no BEGIN and no COMMIT:
// a pipeline's statements up to its sync are one implicit transaction, which the sync commits
// (or rolls back, after a failure).
#include <libpq-fe.h>
#include <poll.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <set>
#include <stdexcept>
#include <thread>
#include <unordered_map>

#include <spdlog/spdlog.h>

#include "coordinator/store/migration.h"
#include "coordinator/store/sql/databases.h"
#include "coordinator/store/sql/sql_store.h"

namespace funcky::store {

namespace {

// Keeps concurrent `funcky migrate` / start-ups from applying the same migration twice.
constexpr int64_t kMigrationLockId = 0x66756e636b79;  // "funcky"

// The SQLSTATE of funcky_require (migration 0022), raised when a Tx::Require finds too few
// rows.
constexpr const char* kUnmetState = "FK001";

// The channel on which coordinators tell each other that work is due (Tx::AnnounceWork).
constexpr const char* kWorkChannel = "funcky_work";

struct ResultDeleter {
  void operator()(PGresult* r) const { PQclear(r); }
};
using PgResult = std::unique_ptr<PGresult, ResultDeleter>;

// What PostgreSQL or libpq reported. `sqlstate` is empty when no statement failed: the
// connection did (then `in_doubt` tells whether a COMMIT had been sent and not answered).
struct PgError : std::runtime_error {
  PgError(const std::string& what, std::string sqlstate, bool in_doubt = false)
      : std::runtime_error(what), sqlstate(std::move(sqlstate)), in_doubt(in_doubt) {}
  std::string sqlstate;
  bool in_doubt;
};

// libpq's message, first line only (the rest is context the log does not need).
std::string FirstLine(const char* message) {
  std::string s = message ? message : "";
  if (auto nl = s.find('\n'); nl != std::string::npos) s.resize(nl);
  return s.empty() ? "unknown error" : s;
}

PgError ErrorOf(const PGresult* r) {
  const char* state = PQresultErrorField(r, PG_DIAG_SQLSTATE);
  return PgError(FirstLine(PQresultErrorMessage(r)), state ? state : "XX000");
}

// A statement as PostgreSQL spells it, and the name it is prepared under on each connection
// (the same on all of them).
struct Prepared {
  std::string text;
  std::string name;
  size_t index = 0;  // dense, for Connection::prepared
};
using Rewriter = std::function<const Prepared&(std::string_view)>;

// The longest interval between two preparations of a connection's statements; the first
// comes PostgresOptions::reprepare_first after it opens, and each later one doubles it.
constexpr std::chrono::seconds kReprepareAtMost{600};

// A pooled connection and which statements it has prepared. Statements are prepared on first
// use, so each distinct text is parsed once per connection and its plan cached by the server.
//
// PostgreSQL keeps a prepared statement's generic plan until the statistics of a table it
// reads change (ANALYZE), not as the table grows. Plans made on a new database's nearly empty
// tables scan them whole (every step for a hashed subplan, runs and queue for a few ids) and
// would stay so until autovacuum's first ANALYZE, a minute or more later.
// So the statements are prepared again at doubling intervals (1 s, 2 s, … 10 min): their
// plans follow the tables' sizes while those grow fast, at the cost of a few plannings.
struct Connection {
  Connection(PGconn* c, std::chrono::steady_clock::duration reprepare_first)
      : c(c),
        reprepare_at(std::chrono::steady_clock::now() + reprepare_first),
        reprepare_after(reprepare_first) {}
  ~Connection() { PQfinish(c); }
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  bool usable() const { return !discard && PQstatus(c) == CONNECTION_OK; }

  // Whether an idle connection has still a server at its end, as far as can be told without a
  // round trip: a server that ended the session while it idled (a restart, a failover's
  // fencing, idle_session_timeout, pg_terminate_backend) left an error or the socket's end to
  // read, which the next statement would have taken for its own failure.
  bool AliveWhileIdle() {
    if (!usable()) return false;
    pollfd fd{PQsocket(c), POLLIN, 0};
    if (fd.fd < 0) return false;
    // Nothing is sent to a connection that waits for nothing (pooled connections listen for
    // no notification): what came is most likely the server's goodbye, an error and the
    // socket's end, which libpq may not have seen yet. One that was harmless (a notice) costs
    // a new connection.
    return poll(&fd, 1, 0) == 0;
  }

  // Whether its statements are due to be prepared again; if so, forgets them (the caller
  // deallocates them on the server) and sets when they are due next.
  bool ReprepareDue(std::chrono::steady_clock::time_point now) {
    if (now < reprepare_at) return false;
    reprepare_after =
        std::min<std::chrono::steady_clock::duration>(reprepare_after * 2, kReprepareAtMost);
    reprepare_at = now + reprepare_after;
    prepared.assign(prepared.size(), Prep::kNo);
    return true;
  }

  // A statement's preparation: not sent, sent in the pipeline and not yet confirmed, done.
  enum class Prep : uint8_t { kNo, kSent, kYes };
  PGconn* c;
  std::vector<Prep> prepared;  // by Prepared::index
  std::chrono::steady_clock::time_point reprepare_at;
  std::chrono::steady_clock::duration reprepare_after;
  // Its prepared statements are not what `prepared` says (a failed DEALLOCATE): closed when
  // returned to the pool.
  bool discard = false;
};

// How long connecting may take (TCP, TLS, authentication) when the URL does not say
// (connect_timeout): libpq's default is to wait for the operating system, minutes for a host
// that does not answer, with a pool slot (or the start) blocked meanwhile.
constexpr const char* kConnectTimeoutSeconds = "10";

// `message` with the password of the connection URL `url` masked wherever it appears: libpq's
// errors quote what they could not use of a URL (a host, a port), which a password written
// unencoded runs into. A URL libpq cannot parse at all gives its own message, not libpq's
// (which quotes the part it stopped at).
std::string MaskPassword(std::string message, const std::string& url) {
  char* error = nullptr;
  PQconninfoOption* options = PQconninfoParse(url.c_str(), &error);
  if (!options) {
    PQfreemem(error);
    return "the database URL cannot be parsed (are the user and password percent-encoded?)";
  }
  for (PQconninfoOption* o = options; o->keyword; ++o) {
    if (std::string_view(o->keyword) != "password" || !o->val || !*o->val) continue;
    const std::string password = o->val;
    for (size_t at = message.find(password); at != std::string::npos;
         at = message.find(password, at + 3)) {
      message.replace(at, password.size(), "***");
    }
  }
  PQconninfoFree(options);
  return message;
}

Result<std::unique_ptr<Connection>> Connect(const PostgresOptions& options) {
  // The URL's own settings are applied after the default, so they win.
  const char* const keywords[] = {"connect_timeout", "dbname", nullptr};
  const char* const values[] = {kConnectTimeoutSeconds, options.url.c_str(), nullptr};
  auto conn =
      std::make_unique<Connection>(PQconnectdbParams(keywords, values, /*expand_dbname=*/1),
                                   std::max(options.reprepare_first, std::chrono::milliseconds(1)));
  if (!conn->c || !conn->usable()) {
    return Unavailable(
        "cannot connect to PostgreSQL: " +
        MaskPassword(FirstLine(conn->c ? PQerrorMessage(conn->c) : "out of memory"), options.url));
  }
  // The server's notices (a migration's "already exists, skipping") are for the debug log,
  // not stderr, where libpq would print them.
  PQsetNoticeProcessor(
      conn->c,
      [](void*, const char* message) { spdlog::debug("PostgreSQL: {}", FirstLine(message)); },
      nullptr);
  // The store is written for READ COMMITTED (each decision reads in a statement after the
  // lock it depends on): a database or role whose default is REPEATABLE READ or SERIALIZABLE
  // would turn those reads stale or into conflicts. And without JIT compilation: PostgreSQL
  // compiles a statement whose estimated cost passes jit_above_cost, and a generic plan's
  // estimate over large tables does for statements that touch a handful of rows (the
  // ingest's read of its waits: 20-150 ms compiling, well under one executing). Once per
  // connection.
  PgResult set(
      PQexec(conn->c, "SET default_transaction_isolation = 'read committed'; SET jit = off"));
  if (!set || PQresultStatus(set.get()) != PGRES_COMMAND_OK) {
    return Unavailable("cannot set the isolation level and JIT: " +
                       FirstLine(PQerrorMessage(conn->c)));
  }
  return conn;
}

// The result of a statement run outside pipeline mode; throws PgError for a failed statement
// or connection.
PgResult Checked(PGconn* c, PGresult* raw) {
  PgResult r(raw);
  if (!r || PQstatus(c) != CONNECTION_OK) throw PgError(FirstLine(PQerrorMessage(c)), "");
  const ExecStatusType s = PQresultStatus(r.get());
  if (s != PGRES_COMMAND_OK && s != PGRES_TUPLES_OK) throw ErrorOf(r.get());
  return r;
}

// Runs `sql` outside pipeline mode (the simple protocol: several statements at once, no
// parameters) and returns its last result; throws PgError.
PgResult Run(PGconn* c, const char* sql) { return Checked(c, PQexec(c, sql)); }

// One open transaction, in pipeline mode from Begin until Commit or Rollback returns.
class PostgresTx final : public sql::Tx {
 public:
  PostgresTx(Connection& conn, const Rewriter& rewrite, std::atomic<int64_t>& round_trips)
      : conn_(conn), rewrite_(rewrite), round_trips_(round_trips) {}

  void Begin(sql::Flights flights) {
    if (PQenterPipelineMode(conn_.c) != 1) throw Lost();
    one_flight_ = flights == sql::Flights::kOne;
    if (!one_flight_) QueueText("BEGIN");
    if (conn_.ReprepareDue(std::chrono::steady_clock::now())) {
      // Not transactional: the statements are gone whatever becomes of the transaction.
      QueueText("DEALLOCATE ALL");
      pending_.back().kind = Pending::Kind::kDeallocate;
    }
  }

  sql::Rows Query(std::string_view sql, sql::Params params) override {
    return RowsOf(Await(sql, params).get());
  }

  int64_t Exec(std::string_view sql, sql::Params params) override {
    PgResult r = Await(sql, params);
    const char* n = PQcmdTuples(r.get());
    return n && *n ? std::stoll(n) : 0;
  }

  void Send(std::string_view sql, sql::Params params) override { QueueStatement(sql, params); }

  void Require(std::string_view sql, sql::Params params, size_t rows,
               std::function<void(sql::Rows)> done) override {
    // The query's rows, after funcky_require has counted them: one row that raises when
    // there are too few (the outer side of the join is always read), joined to them. A
    // statement in WITH runs once however often it is read. The count is part of the text:
    // a few texts, each prepared once.
    std::string wrapped = "WITH required AS (";
    wrapped.append(sql);
    wrapped +=
        ") SELECT required.* FROM (SELECT funcky_require(count(*) >= " + std::to_string(rows) +
        ") FROM required) AS counted LEFT JOIN required ON true";
    QueryLater(wrapped, params, std::move(done));
  }

  void QueryLater(std::string_view sql, sql::Params params,
                  std::function<void(sql::Rows)> done) override {
    QueueStatement(sql, params);
    pending_.back().done = std::move(done);
  }

  void Wait() override {
    if (pending_.empty()) return;
    SendQueued();
    Drain(/*throw_errors=*/true);
  }

  void LockKey(std::string_view key, bool shared) override {
    QueueStatement(shared ? "SELECT pg_advisory_xact_lock_shared(hashtextextended($1, 0))"
                          : "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))",
                   {key});
  }

  void PlanByIndex() override {
    // No sequential or bitmap scan and no sort where an index serves, and one (generic) plan
    // a statement: a custom plan, made again at each execution, follows the statistics
    // whether they lag or not, and costs more to make than a claim's reads cost to run.
    QueueStatement(
        "SELECT set_config('enable_seqscan', 'off', true), "
        "set_config('enable_bitmapscan', 'off', true), set_config('enable_sort', 'off', true), "
        "set_config('plan_cache_mode', 'force_generic_plan', true)",
        {});
  }

  void AnnounceWork() override {
    // PostgreSQL delivers it at commit, once per transaction however often it is sent.
    if (!announced_) QueueText((std::string("NOTIFY ") + kWorkChannel).c_str());
    announced_ = true;
  }

  // Sends the COMMIT with whatever is queued and reads every result; throws PgError (with
  // in_doubt when the connection failed after the COMMIT went out).
  void Commit() {
    if (!one_flight_) QueueText("COMMIT");
    commit_sent_ = true;
    Sync();
    Drain(/*throw_errors=*/true);
    End();
  }

  // Rolls back what the body did (it returned an error): what is queued is sent and its
  // results read, then ROLLBACK. Throws PgError when the connection failed.
  void Rollback() {
    if (one_flight_) {
      // Nothing is committed before the sync, which is not sent: the connection is closed
      // instead (only a body that fails after it queued writes comes here).
      conn_.discard = true;
      return;
    }
    QueueText("ROLLBACK");
    Sync();
    Drain(/*throw_errors=*/false);
    End();
  }

  // After a PgError that left the connection up: reads what is still in flight and rolls the
  // transaction back, so the connection can serve the next one. False when that failed (the
  // connection is then of no more use).
  bool Recover() {
    try {
      if (!conn_.usable()) return false;
      // One flight's statements are committed by the sync: unless a failed statement aborted
      // them, the connection is closed instead.
      if (one_flight_ && !aborted_) return false;
      if (PQpipelineStatus(conn_.c) == PQ_PIPELINE_OFF) {
        return PQtransactionStatus(conn_.c) == PQTRANS_IDLE;
      }
      Sync();
      Drain(/*throw_errors=*/false);
      if (PQtransactionStatus(conn_.c) != PQTRANS_IDLE) {
        QueueText("ROLLBACK");
        Sync();
        Drain(/*throw_errors=*/false);
      }
      End();
      return PQtransactionStatus(conn_.c) == PQTRANS_IDLE;
    } catch (const std::exception&) {
      return false;
    }
  }

 private:
  // What a result read from the pipeline answers, in the order sent.
  struct Pending {
    enum class Kind : uint8_t { kStatement, kPrepare, kDeallocate, kSync } kind;
    size_t index = 0;                     // kPrepare: the statement's Prepared::index
    std::function<void(sql::Rows)> done;  // a QueryLater's
  };

  static sql::Rows RowsOf(const PGresult* r) {
    const int rows = PQntuples(r);
    const int columns = PQnfields(r);
    std::vector<sql::Cell> cells;
    cells.reserve(static_cast<size_t>(rows) * columns);
    for (int i = 0; i < rows; ++i) {
      for (int j = 0; j < columns; ++j) {
        if (PQgetisnull(r, i, j)) {
          cells.emplace_back();
        } else {
          cells.emplace_back(std::string(PQgetvalue(r, i, j), PQgetlength(r, i, j)));
        }
      }
    }
    return sql::Rows(columns, std::move(cells));
  }

  PgError Lost() const {
    return PgError("lost the PostgreSQL connection: " + FirstLine(PQerrorMessage(conn_.c)), "",
                   commit_sent_);
  }

  void QueueText(const char* sql) {
    if (PQsendQueryParams(conn_.c, sql, 0, nullptr, nullptr, nullptr, nullptr, 0) != 1) {
      throw Lost();
    }
    pending_.push_back({Pending::Kind::kStatement});
  }

  void QueueStatement(std::string_view sql, sql::Params params) {
    // libpq takes every parameter as text (or NULL) and lets the server infer its type.
    std::vector<std::string> text;
    text.reserve(params.size());
    std::vector<const char*> values;
    values.reserve(params.size());
    for (const sql::Value& p : params) {
      const auto& v = p.get();
      if (std::holds_alternative<std::monostate>(v)) {
        text.emplace_back();
      } else if (const auto* i = std::get_if<int64_t>(&v)) {
        text.push_back(std::to_string(*i));
      } else if (const auto* b = std::get_if<bool>(&v)) {
        text.push_back(*b ? "true" : "false");
      } else {
        text.push_back(std::get<std::string>(v));
      }
    }
    size_t i = 0;
    for (const sql::Value& p : params) {
      values.push_back(std::holds_alternative<std::monostate>(p.get()) ? nullptr : text[i].c_str());
      ++i;
    }
    const Prepared& statement = rewrite_(sql);
    if (conn_.prepared.size() <= statement.index) {
      conn_.prepared.resize(statement.index + 1, Connection::Prep::kNo);
    }
    if (conn_.prepared[statement.index] == Connection::Prep::kNo) {
      if (PQsendPrepare(conn_.c, statement.name.c_str(), statement.text.c_str(), 0, nullptr) != 1) {
        throw Lost();
      }
      conn_.prepared[statement.index] = Connection::Prep::kSent;
      pending_.push_back({Pending::Kind::kPrepare, statement.index});
    }
    if (PQsendQueryPrepared(conn_.c, statement.name.c_str(), static_cast<int>(values.size()),
                            values.data(), nullptr, nullptr, 0) != 1) {
      throw Lost();
    }
    pending_.push_back({Pending::Kind::kStatement});
  }

  // Queues the statement, sends everything queued and returns the statement's result.
  PgResult Await(std::string_view sql, sql::Params params) {
    QueueStatement(sql, params);
    SendQueued();
    PgResult mine;
    while (!pending_.empty()) {
      const bool last = pending_.size() == 1;
      PgResult r = ReadOne(/*throw_errors=*/true);
      if (last) mine = std::move(r);
    }
    return mine;
  }

  // Sends everything queued and asks PostgreSQL to send its results so far (no sync: the
  // transaction goes on); one wait for them.
  void SendQueued() {
    if (PQsendFlushRequest(conn_.c) != 1 || PQflush(conn_.c) != 0) throw Lost();
    ++round_trips_;
  }

  void Sync() {
    if (PQpipelineSync(conn_.c) != 1) throw Lost();
    pending_.push_back({Pending::Kind::kSync});
    ++round_trips_;
  }

  // Reads every pending result.
  void Drain(bool throw_errors) {
    while (!pending_.empty()) ReadOne(throw_errors);
  }

  // Reads the result of the oldest pending item. A failed statement throws its error when
  // `throw_errors` (the statements after it, up to the sync, come back aborted).
  PgResult ReadOne(bool throw_errors) {
    Pending p = std::move(pending_.front());
    pending_.pop_front();
    PgResult r(PQgetResult(conn_.c));
    if (!r) throw Lost();
    const ExecStatusType status = PQresultStatus(r.get());
    if (p.kind == Pending::Kind::kSync) {
      if (status != PGRES_PIPELINE_SYNC) throw Lost();
      return r;
    }
    // Each statement's results end with a null one.
    if (PgResult end(PQgetResult(conn_.c)); end) throw Lost();
    const bool ok = status == PGRES_COMMAND_OK || status == PGRES_TUPLES_OK;
    if (p.kind == Pending::Kind::kPrepare) {
      conn_.prepared[p.index] = ok ? Connection::Prep::kYes : Connection::Prep::kNo;
    }
    if (!ok && !conn_.usable()) throw Lost();
    if (p.kind == Pending::Kind::kDeallocate && !ok) conn_.discard = true;
    if (status == PGRES_FATAL_ERROR) aborted_ = true;
    if (!ok && throw_errors) {
      // Aborted: skipped after an earlier failure, which was read (and thrown) before.
      if (status == PGRES_FATAL_ERROR) throw ErrorOf(r.get());
      throw PgError("statement skipped after an earlier failure", "XX000");
    }
    if (ok && p.done) p.done(RowsOf(r.get()));
    return r;
  }

  void End() {
    if (PQexitPipelineMode(conn_.c) != 1) throw Lost();
  }

  Connection& conn_;
  const Rewriter& rewrite_;
  std::atomic<int64_t>& round_trips_;  // the database's count
  std::deque<Pending> pending_;
  bool announced_ = false;
  bool commit_sent_ = false;
  bool one_flight_ = false;  // no BEGIN or COMMIT: the sync commits (sql::Flights::kOne)
  bool aborted_ = false;     // a statement failed: the server undoes the transaction
};

// Listens on kWorkChannel on a connection of its own, on a thread of its own, and calls
// `wake` when notifications arrive; reconnects (and wakes, since notifications may have been
// missed meanwhile) after a lost connection.
class PostgresWorkWatch final : public WorkWatch {
 public:
  PostgresWorkWatch(std::string url, std::function<void()> wake)
      : url_(std::move(url)), wake_(std::move(wake)), thread_([this] { Listen(); }) {}
  ~PostgresWorkWatch() override {
    stopping_ = true;
    thread_.join();
  }

 private:
  void Listen() {
    bool lost = false;
    while (!stopping_) {
      try {
        auto conn = Connect({.url = url_});
        if (!conn.ok()) throw std::runtime_error(conn.status().message());
        PGconn* c = (*conn)->c;
        Run(c, (std::string("LISTEN ") + kWorkChannel).c_str());
        if (lost) {
          spdlog::info("watching for other coordinators' work again");
          wake_();  // notifications sent while the connection was down are lost
        }
        lost = false;
        // Wakes at least every 200 ms to see whether it should stop.
        while (!stopping_) {
          pollfd p{.fd = PQsocket(c), .events = POLLIN, .revents = 0};
          if (poll(&p, 1, 200) < 0 && errno != EINTR) throw std::runtime_error("poll failed");
          if (PQconsumeInput(c) != 1) throw std::runtime_error(FirstLine(PQerrorMessage(c)));
          bool any = false;
          while (PGnotify* n = PQnotifies(c)) {
            PQfreemem(n);
            any = true;
          }
          if (any) wake_();
        }
      } catch (const std::exception& e) {
        if (!lost) {
          spdlog::warn(
              "watching for other coordinators' work failed: {}; polling until it is "
              "back",
              e.what());
        }
        lost = true;
        for (int i = 0; i < 5 && !stopping_; ++i) {
          std::this_thread::sleep_for(std::chrono::milliseconds(200));
        }
      }
    }
  }

  const std::string url_;
  const std::function<void()> wake_;
  std::atomic<bool> stopping_{false};
  std::thread thread_;
};

class PostgresDatabase final : public sql::Database {
 public:
  explicit PostgresDatabase(PostgresOptions options) : options_(std::move(options)) {}

  Status DoTransact(const std::function<Status(sql::Tx&)>& body, sql::Flights flights) override {
    auto conn = TakeConnection();
    if (!conn.ok()) return conn.status();
    std::unique_ptr<Connection> c = std::move(conn).value();
    PostgresTx tx(*c, rewrite_, round_trips_);
    Status result;
    try {
      tx.Begin(flights);
      result = body(tx);
      if (result.ok()) {
        tx.FlushInserts();
        tx.Commit();
      } else {
        tx.Rollback();
      }
    } catch (const PgError& e) {
      // Failing to roll back the body's own error (a lost connection) leaves that error the
      // outcome: nothing was committed either way.
      Status failed = Failed(e, c);
      if (result.ok()) result = std::move(failed);
      if (c && !tx.Recover()) c.reset();
    } catch (const sql::UnmetRequirement&) {
      // Tx::Require's own check (a Require that read its rows at once, as a wrapping Tx's
      // may): the transaction is rolled back like any other the body failed.
      result = sql::Unmet();
      if (!tx.Recover()) c.reset();
    } catch (const std::exception& e) {
      if (result.ok()) result = Internal(std::string("database error: ") + e.what());
      if (!tx.Recover()) c.reset();
    }
    ReturnConnection(std::move(c));
    return result;
  }

  std::unique_ptr<WorkWatch> Watch(std::function<void()> wake) override {
    return std::make_unique<PostgresWorkWatch>(options_.url, std::move(wake));
  }

  std::optional<int64_t> RoundTrips() const override { return round_trips_.load(); }

  int KnownMigration() const override { return PostgresMigrations().back().version; }

  Status Migrate() override {
    auto conn = TakeConnection();
    if (!conn.ok()) return conn.status();
    std::unique_ptr<Connection> c = std::move(conn).value();
    Status result;
    try {
      Run(c->c, "BEGIN");
      const std::string lock =
          "SELECT pg_advisory_xact_lock(" + std::to_string(kMigrationLockId) + ")";
      Run(c->c, lock.c_str());
      Run(c->c,
          "CREATE TABLE IF NOT EXISTS schema_migrations ("
          " version int PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL "
          "DEFAULT now())");
      // Added by the first version that reads it; altered only then, since the lock an ALTER
      // takes would hold back the other coordinators' schema checks until this commits.
      PgResult has_column = Run(c->c,
                                "SELECT 1 FROM information_schema.columns WHERE table_schema = "
                                "current_schema() AND table_name = 'schema_migrations' AND "
                                "column_name = 'breaks_earlier'");
      if (PQntuples(has_column.get()) == 0) {
        Run(c->c,
            "ALTER TABLE schema_migrations ADD COLUMN breaks_earlier boolean NOT NULL "
            "DEFAULT false");
      }
      const std::vector<Migration>& known = PostgresMigrations();
      PgResult newest = Run(c->c, kAppliedMigrationsQuery);
      const int newest_applied = std::stoi(PQgetvalue(newest.get(), 0, 0));
      Status usable = CheckAppliedMigrations(known.back().version, newest_applied,
                                             std::stoi(PQgetvalue(newest.get(), 0, 1)));
      if (!usable.ok()) {
        Run(c->c, "ROLLBACK");
        ReturnConnection(std::move(c));
        return usable;
      }
      std::set<int> applied;
      PgResult versions = Run(c->c, "SELECT version FROM schema_migrations");
      for (int i = 0; i < PQntuples(versions.get()); ++i) {
        applied.insert(std::stoi(PQgetvalue(versions.get(), i, 0)));
      }
      for (const Migration& m : known) {
        const std::string version = std::to_string(m.version);
        const char* values[] = {version.c_str(), m.name.c_str(),
                                m.breaks_earlier ? "true" : "false"};
        if (applied.count(m.version)) {
          // Applied by a version that did not mark it.
          if (m.breaks_earlier) {
            Checked(c->c, PQexecParams(c->c,
                                       "UPDATE schema_migrations SET breaks_earlier = true "
                                       "WHERE version = $1 AND NOT breaks_earlier",
                                       1, nullptr, values, nullptr, nullptr, 0));
          }
          continue;
        }
        Run(c->c, m.sql.c_str());
        Checked(c->c, PQexecParams(c->c,
                                   "INSERT INTO schema_migrations (version, name, breaks_earlier) "
                                   "VALUES ($1, $2, $3)",
                                   3, nullptr, values, nullptr, nullptr, 0));
      }
      Run(c->c, "COMMIT");
      WarnOfNewerMigrations(known.back().version, newest_applied);
    } catch (const PgError& e) {
      result = Failed(e, c);
      if (c && c->usable()) PQclear(PQexec(c->c, "ROLLBACK"));
    }
    ReturnConnection(std::move(c));
    return result;
  }

 private:
  // The Status of `e`; drops `c` (and the idle connections) where the server went away.
  Status Failed(const PgError& e, std::unique_ptr<Connection>& c) {
    const std::string& state = e.sqlstate;
    if (state.empty()) {
      if (e.in_doubt) {
        // The connection broke with the commit sent: the idle ones are as likely dead (the
        // server went away), and each would otherwise cost a later transaction this doubt.
        c.reset();
        DropIdleConnections();
        return CommitOutcomeUnknown(e.what());
      }
      // The server went away (a restart, a failover): the idle connections are as dead as
      // this one. Dropping them now spares every later transaction one failure each.
      c.reset();
      DropIdleConnections();
      return Unavailable(e.what());
    }
    if (state == "40001" || state == "40P01") {
      return sql::Conflict(state);
    }
    if (state == kUnmetState) return sql::Unmet();
    // The connection is gone or useless: a connection error, the server shutting down or
    // starting, the database dropped, a session or transaction idle past its timeout, or a
    // server in read-only mode (a standby after a failover: reconnecting may reach the new
    // primary).
    if (state.rfind("08", 0) == 0 || state.rfind("57P0", 0) == 0 || state == "25P03" ||
        state == "25006") {
      c.reset();
      DropIdleConnections();
      return Unavailable("PostgreSQL unavailable (" + state + ")");
    }
    // Out of disk, memory or connections, or an I/O error; a statement cancelled (its
    // statement_timeout, or an operator's cancel), a lock not had within lock_timeout, a
    // statement whose completion is unknown: the server's trouble, which passes. Any other
    // error is about what was written (kInternal): writing it again fails again.
    if (state.rfind("53", 0) == 0 || state.rfind("58", 0) == 0 || state == "57014" ||
        state == "55P03" || state == "40003") {
      return Unavailable("PostgreSQL error " + state + ": " + e.what());
    }
    return Internal("database error " + state + ": " + e.what());
  }

  Result<std::unique_ptr<Connection>> TakeConnection() {
    // Idle connections whose session the server ended meanwhile, closed once unlocked.
    std::vector<std::unique_ptr<Connection>> ended;
    {
      std::unique_lock lock(mu_);
      available_.wait(lock, [&] { return !idle_.empty() || open_ < options_.pool_size; });
      while (!idle_.empty()) {
        auto conn = std::move(idle_.back());
        idle_.pop_back();
        if (conn->AliveWhileIdle()) return conn;
        ended.push_back(std::move(conn));
        --open_;
      }
      ++open_;                                      // reserve a slot, connect outside the lock
      if (!ended.empty()) available_.notify_all();  // slots the others may connect in
    }
    if (!ended.empty()) {
      spdlog::info("PostgreSQL had ended {} idle pooled connection(s); connecting anew",
                   ended.size());
    }
    auto conn = Connect(options_);
    if (!conn.ok()) {
      std::lock_guard lock(mu_);
      --open_;
      available_.notify_one();
    }
    return conn;
  }

  void ReturnConnection(std::unique_ptr<Connection> conn) {
    std::lock_guard lock(mu_);
    if (conn && conn->usable()) {
      idle_.push_back(std::move(conn));
    } else {
      --open_;
    }
    available_.notify_one();
  }

  // Closes every idle connection (after one was found broken).
  void DropIdleConnections() {
    std::vector<std::unique_ptr<Connection>> stale;
    {
      std::lock_guard lock(mu_);
      open_ -= static_cast<int>(idle_.size());
      stale.swap(idle_);
    }
    available_.notify_all();
  }

  // The statement as PostgreSQL spells it, rewritten and named once per distinct text.
  const Prepared& Rewritten(std::string_view sql) {
    std::lock_guard lock(rewrite_mu_);
    auto it = rewritten_.find(std::string(sql));
    if (it == rewritten_.end()) {
      const size_t index = rewritten_.size();
      it = rewritten_
               .emplace(std::string(sql),
                        Prepared{.text = sql::Rewrite(sql, sql::Dialect::kPostgres),
                                 .name = "funcky_" + std::to_string(index),
                                 .index = index})
               .first;
    }
    return it->second;  // nodes of an unordered_map stay put
  }

  PostgresOptions options_;
  std::atomic<int64_t> round_trips_{0};  // of transactions (Transact), not of Migrate
  std::mutex mu_;
  std::condition_variable available_;
  std::vector<std::unique_ptr<Connection>> idle_;  // GUARDED_BY(mu_)
  int open_ = 0;                                   // GUARDED_BY(mu_)

  std::mutex rewrite_mu_;
  std::unordered_map<std::string, Prepared> rewritten_;  // GUARDED_BY(rewrite_mu_)
  const Rewriter rewrite_ = [this](std::string_view sql) -> const Prepared& {
    return Rewritten(sql);
  };
};

}  // namespace

std::unique_ptr<sql::Database> NewPostgresDatabase(const PostgresOptions& options) {
  return std::make_unique<PostgresDatabase>(options);
}

Result<std::unique_ptr<Store>> OpenPostgresStore(const PostgresOptions& options) {
  auto store = std::make_unique<SqlStore>(NewPostgresDatabase(options));
  RETURN_IF_ERROR(store->Ping());
  return std::unique_ptr<Store>(std::move(store));
}

}  // namespace funcky::store
