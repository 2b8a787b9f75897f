// The PostgreSQL backend of the one store: a pool of libpqxx connections, advisory locks,
// error mapping and migrations. Everything else is in coordinator/store/sql/sql_store.cc.
#include <atomic>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <set>
#include <thread>
#include <unordered_map>

#include <spdlog/spdlog.h>
#include <pqxx/pqxx>

#include "coordinator/store/migration.h"
#include "coordinator/store/sql/databases.h"
#include "coordinator/store/sql/sql_store.h"

namespace funcky::store {

namespace {

// Keeps concurrent `funcky migrate` / start-ups from applying the same migration twice.
constexpr int64_t kMigrationLockId = 0x66756e636b79;  // "funcky"

// The channel on which coordinators tell each other that work is due (Tx::AnnounceWork).
constexpr const char* kWorkChannel = "funcky_work";

// A statement as PostgreSQL spells it, and the name it is prepared under on each connection
// (the same on all of them).
struct Prepared {
  std::string text;
  std::string name;
  size_t index = 0;  // dense, for Connection::prepared
};

// A pooled connection and which statements it has prepared. Statements are prepared on first
// use, so each distinct text is parsed once per connection and its plan cached by the server
// (PostgreSQL replans a cached statement when the tables it reads change).
struct Connection {
  explicit Connection(const std::string& url) : c(url) {}
  pqxx::connection c;
  std::vector<bool> prepared;  // by Prepared::index
};

class PostgresTx final : public sql::Tx {
 public:
  PostgresTx(pqxx::work& w, Connection& conn,
             const std::function<const Prepared&(std::string_view)>& rewrite)
      : w_(w), conn_(conn), rewrite_(rewrite) {}

  sql::Rows Query(std::string_view sql, sql::Params params) override {
    pqxx::result r = Run(sql, params);
    const int columns = static_cast<int>(r.columns());
    std::vector<sql::Cell> cells;
    cells.reserve(r.size() * columns);
    for (const auto& row : r) {
      for (const auto& field : row) {
        if (field.is_null()) {
          cells.emplace_back();
        } else {
          cells.emplace_back(std::string(field.c_str(), field.size()));
        }
      }
    }
    return sql::Rows(columns, std::move(cells));
  }

  int64_t Exec(std::string_view sql, sql::Params params) override {
    return static_cast<int64_t>(Run(sql, params).affected_rows());
  }

  void LockKey(std::string_view key) override {
    w_.exec_params("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))", std::string(key));
  }

  void AnnounceWork() override {
    // PostgreSQL delivers it at commit, once per transaction however often it is sent.
    if (!announced_) w_.exec(std::string("NOTIFY ") + kWorkChannel);
    announced_ = true;
  }

 private:
  pqxx::result Run(std::string_view sql, sql::Params params) {
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
    if (conn_.prepared.size() <= statement.index) conn_.prepared.resize(statement.index + 1);
    if (!conn_.prepared[statement.index]) {
      conn_.c.prepare(statement.name, statement.text);  // sent with its first execution
      conn_.prepared[statement.index] = true;
    }
    return w_.exec_prepared(statement.name, pqxx::prepare::make_dynamic_params(values));
  }

  pqxx::work& w_;
  Connection& conn_;
  const std::function<const Prepared&(std::string_view)>& rewrite_;
  bool announced_ = false;
};

// Listens on kWorkChannel on a connection of its own, on a thread of its own, and calls
// `wake` for each notification; reconnects (and wakes, since notifications may have been
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
  class Receiver final : public pqxx::notification_receiver {
   public:
    Receiver(pqxx::connection_base& c, const std::function<void()>& wake)
        : pqxx::notification_receiver(c, kWorkChannel), wake_(wake) {}
    void operator()(const std::string&, int) override { wake_(); }

   private:
    const std::function<void()>& wake_;
  };

  void Listen() {
    bool lost = false;
    while (!stopping_) {
      try {
        pqxx::connection c(url_);
        Receiver receiver(c, wake_);
        c.get_notifs();  // LISTEN is sent by the receiver; flushes it
        if (lost) {
          spdlog::info("watching for other coordinators' work again");
          wake_();  // notifications sent while the connection was down are lost
        }
        lost = false;
        // Wakes at least every 200 ms to see whether it should stop.
        while (!stopping_) c.await_notification(0, 200'000);
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

  Status Transact(const std::function<Status(sql::Tx&)>& body) override {
    return WithWork([&](pqxx::work& w, Connection& c) {
      PostgresTx tx(w, c, rewrite_);
      Status s = body(tx);
      if (s.ok()) tx.FlushInserts();
      return s;
    });
  }

  std::unique_ptr<WorkWatch> Watch(std::function<void()> wake) override {
    return std::make_unique<PostgresWorkWatch>(options_.url, std::move(wake));
  }

  Status Migrate() override {
    return WithWork([&](pqxx::work& w, Connection&) -> Status {
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

 private:
  // Runs `body` in a transaction on a pooled connection; see Transact.
  Status WithWork(const std::function<Status(pqxx::work&, Connection&)>& body) {
    auto conn = TakeConnection();
    if (!conn.ok()) return conn.status();
    std::unique_ptr<Connection> c = std::move(conn).value();
    auto fail = [&](Status s) {
      ReturnConnection(std::move(c));
      return s;
    };
    try {
      pqxx::work w(c->c);
      Status result = body(w, *c);
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
      const std::string state = e.sqlstate();
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

  Result<std::unique_ptr<Connection>> TakeConnection() {
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
      return std::make_unique<Connection>(options_.url);
    } catch (const std::exception& e) {
      std::lock_guard lock(mu_);
      --open_;
      available_.notify_one();
      return Unavailable(std::string("cannot connect to PostgreSQL: ") + e.what());
    }
  }

  void ReturnConnection(std::unique_ptr<Connection> conn) {
    std::lock_guard lock(mu_);
    if (conn && conn->c.is_open()) {
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
  std::mutex mu_;
  std::condition_variable available_;
  std::vector<std::unique_ptr<Connection>> idle_;  // GUARDED_BY(mu_)
  int open_ = 0;                                   // GUARDED_BY(mu_)

  std::mutex rewrite_mu_;
  std::unordered_map<std::string, Prepared> rewritten_;  // GUARDED_BY(rewrite_mu_)
  const std::function<const Prepared&(std::string_view)> rewrite_ =
      [this](std::string_view sql) -> const Prepared& { return Rewritten(sql); };
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
