// The small SQL interface the one store implementation (sql_store.cc) is written against,
// and what each database backend provides: a transaction runner, parameter binding, rows
// and a handful of spelling differences. Internal to coordinator/store.
//
// Statements are written once, in PostgreSQL's spelling, with three conventions that each
// backend turns into its own (see Rewrite):
//   - parameters are $1, $2, … (SQLite: ?1, ?2, …);
//   - casts such as $4::jsonb or $2::text are for PostgreSQL's type inference (SQLite drops
//     them: it stores JSON as text and needs no types);
//   - text in braces is PostgreSQL only: row locks, e.g. "{FOR UPDATE SKIP LOCKED}" (SQLite
//     serializes whole transactions and has no row locks);
//   - @list($N) is the set of strings in the JSON array bound to $N and @ids($N) the same
//     as integers, for "x IN @list($1)" (jsonb_array_elements_text vs json_each); on
//     PostgreSQL "x [NOT] IN @list($1)" becomes "x = ANY (ARRAY(…))" ("<> ALL"), which
//     uses x's index however many elements the planner guesses.
#pragma once

#include <cstdint>
#include <functional>
#include <initializer_list>
#include <iterator>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/status.h"
#include "coordinator/store/store.h"

namespace funcky::store::sql {

using Json = nlohmann::json;

enum class Dialect { kPostgres, kSqlite };

// `sql`, written in the conventions above, as `dialect` spells it.
std::string Rewrite(std::string_view sql, Dialect dialect);

// A bound parameter: NULL, an integer, a boolean or text.
class Value {
 public:
  using Variant = std::variant<std::monostate, int64_t, bool, std::string>;

  Value(std::nullptr_t) {}  // NOLINT: implicit by design, as are the others
  template <typename I>
  requires(std::is_integral_v<I> && !std::is_same_v<I, bool>) Value(I v)
      : v_(static_cast<int64_t>(v)) {}               // NOLINT
  Value(bool v) : v_(v) {}                           // NOLINT
  Value(std::string v) : v_(std::move(v)) {}         // NOLINT
  Value(std::string_view v) : v_(std::string(v)) {}  // NOLINT
  Value(const char* v) {                             // NOLINT: NULL for nullptr
    if (v) v_ = std::string(v);
  }
  template <typename T>
  Value(const std::optional<T>& v)  // NOLINT: NULL when absent
      : v_(v ? Value(*v).v_ : Variant{}) {}

  const Variant& get() const { return v_; }

 private:
  Variant v_;
};

// A JSON parameter: NULL for a null value, else its text.
Value JsonValue(const Json& j);
// A JSON array of strings, for @list / @ids.
Value ListValue(const std::vector<std::string>& items);

// A condition (SQL text) true when `from_where` ("table WHERE …") has a row: the first in
// `order`, one probe of the index that order follows. Not EXISTS: for that PostgreSQL plans a
// sequential scan that stops at the first row it expects soon, from the table's statistics,
// and reads the whole table when no row matches (an outbox whose rows are all newer than a
// sweep's bound, a name without waits).
std::string AnyRow(std::string_view from_where, std::string_view order);

// A column value as the backend returned it: PostgreSQL gives text, SQLite integers or text.
using Cell = std::variant<std::monostate, int64_t, std::string>;

// One row of a result; valid while its Rows lives.
class Row {
 public:
  explicit Row(const Cell* cells) : cells_(cells) {}
  bool Null(int c) const { return std::holds_alternative<std::monostate>(cells_[c]); }
  int64_t Int(int c) const;
  int Int32(int c) const { return static_cast<int>(Int(c)); }
  bool Bool(int c) const;
  std::string Text(int c) const;
  Json JsonCol(int c) const;  // null for SQL NULL or text that is not JSON
  std::optional<int64_t> OptInt(int c) const;
  std::optional<std::string> OptText(int c) const;

 private:
  const Cell* cells_;
};

// A whole result, read into memory.
class Rows {
 public:
  Rows() = default;
  Rows(int columns, std::vector<Cell> cells) : columns_(columns), cells_(std::move(cells)) {}
  size_t size() const { return columns_ ? cells_.size() / columns_ : 0; }
  bool empty() const { return size() == 0; }
  Row operator[](size_t i) const { return Row(cells_.data() + i * columns_); }

  class Iterator {
   public:
    Iterator(const Rows* rows, size_t i) : rows_(rows), i_(i) {}
    Row operator*() const { return (*rows_)[i_]; }
    Iterator& operator++() {
      ++i_;
      return *this;
    }
    bool operator!=(const Iterator& o) const { return i_ != o.i_; }

   private:
    const Rows* rows_;
    size_t i_;
  };
  Iterator begin() const { return {this, 0}; }
  Iterator end() const { return {this, size()}; }
  // Adds the rows of `more`, which has the same columns (or none).
  void Append(Rows more);

 private:
  int columns_ = 0;
  std::vector<Cell> cells_;
};

// The parameters of one statement: a braced list, or a vector for a statement built at run
// time (InsertLater). A view: valid for the call it is passed to.
class Params {
 public:
  Params() = default;
  // The braced list's array lives until the end of the call's full expression, which is
  // all a Params is used for (never stored).
  Params(std::initializer_list<Value> v) : data_(std::data(v)), size_(v.size()) {}  // NOLINT
  Params(const std::vector<Value>& v) : data_(v.data()), size_(v.size()) {}         // NOLINT
  const Value* begin() const { return data_; }
  const Value* end() const { return data_ + size_; }
  size_t size() const { return size_; }

 private:
  const Value* data_ = nullptr;
  size_t size_ = 0;
};

// One open transaction. Errors are thrown (as the backend's own exceptions) and turned into
// a Status by Database::Transact, so store code reads as straight-line SQL.
class Tx {
 public:
  virtual ~Tx() = default;
  virtual Rows Query(std::string_view sql, Params params = {}) = 0;
  // Returns the number of rows the statement changed.
  virtual int64_t Exec(std::string_view sql, Params params = {}) = 0;
  // Runs a statement whose result nobody reads, in order with the others, at the latest when
  // the transaction commits: PostgreSQL sends it with the next statement that returns
  // something (or the COMMIT) in one round trip (pipelining); SQLite runs it at once. Its
  // failure fails the transaction, possibly only at that later statement or the commit, so
  // nothing between may depend on it having succeeded. `params` is copied.
  virtual void Send(std::string_view sql, Params params = {}) { Exec(sql, params); }
  // Runs a query whose rows only the caller of the transaction reads, not its body: `done`
  // gets them at the latest when the transaction commits (PostgreSQL sends it as Send does;
  // SQLite runs it at once). Not called when the transaction fails before the query ran.
  virtual void QueryLater(std::string_view sql, Params params, std::function<void(Rows)> done) {
    done(Query(sql, params));
  }
  // Runs a query that must return at least `rows` rows, which `done` gets as QueryLater's
  // does: when it returns fewer, the statements after it do not run and the transaction fails
  // with Unmet() (nothing of it is written). PostgreSQL sends it as QueryLater does and the
  // server fails the transaction itself, so nothing after it waits for its answer
  // (Flights::kOne); SQLite runs it at once.
  virtual void Require(std::string_view sql, Params params, size_t rows,
                       std::function<void(Rows)> done);
  // Waits for the results of every statement sent so far (QueryLater's `done` has then been
  // called; a failed statement throws): PostgreSQL sends what is queued and waits once,
  // unless nothing is; SQLite has run everything already.
  virtual void Wait() = 0;
  // Holds `key` until the transaction ends: transactions that take the same key run one
  // after another (PostgreSQL advisory locks), but for those that take it `shared`, which run
  // together (and one after another with those that do not). SQLite runs one transaction at a
  // time anyway.
  virtual void LockKey(std::string_view key, bool shared = false) = 0;
  // Plans the transaction's statements from here on for reads by index, in the index's order, and
  // once per statement rather than at each execution: however a table's statistics lag (a queue
  // that was empty when last analyzed and is full now), a statement that an index serves then
  // reads it and stops at its LIMIT, where costs taken from such statistics may favour scanning
  // and sorting every row it matches. A plan is kept for later executions wherever they run, so a
  // statement that must always be read this way runs only after this call. PostgreSQL:
  // transaction-local planner settings; a no-op for SQLite, which plans a statement once, as it
  // prepares it, by its indexes.
  virtual void PlanByIndex() {}
  // Tells the other processes watching the database (Database::Watch) that work is due, when
  // the transaction commits; many calls in one transaction tell them once. A no-op where no
  // other process can watch (SQLite).
  virtual void AnnounceWork() {}

  // The first column of the first row as an integer; 0 when there is no row.
  int64_t Count(std::string_view sql, Params params = {});

  // Statements with a VALUES list of up to 64 rows each, for many rows at once: `head` goes
  // before the list ("INSERT INTO t (a, b)", or "UPDATE t SET a = v.column2 FROM (" — a
  // VALUES list's columns are column1, column2, … on both databases), `row` spells one row,
  // "($1, $2::jsonb)", its parameters numbered from 1, `params` holds the rows' parameters
  // one row after another, and `tail` follows the list ("ON CONFLICT DO NOTHING RETURNING
  // a", ") AS v WHERE t.id = v.column1"). Returns what the statements returned, in order.
  Rows QueryRows(std::string_view head, std::string_view row, std::string_view tail,
                 const std::vector<Value>& params);
  // QueryRows for statements whose results nobody reads: they are sent (Send).
  void SendRows(std::string_view head, std::string_view row, const std::vector<Value>& params,
                std::string_view tail = "");
  // Inserts a row before the transaction commits, as SendRows does, with the other rows of
  // the same `insert` (and `tail`, which returns nothing) whatever transaction work (a
  // group's pieces) they came from: for rows nothing reads back before the commit.
  void InsertLater(std::string_view insert, std::string_view row, std::vector<Value> params,
                   std::string_view tail = "");
  // Sends what InsertLater holds (Send); backends call it before they commit.
  void FlushInserts();

  // QueryRows' statements: each with its parameters.
  static std::vector<std::pair<std::string, std::vector<Value>>> RowsStatements(
      std::string_view head, std::string_view row, std::string_view tail,
      const std::vector<Value>& params);

 private:
  struct Later {
    std::string insert, row, tail;
    std::vector<Value> params;  // the rows' parameters, one row after another
  };
  std::vector<Later> later_;
};

// The failure of a transaction the database undid to let another one go on (a deadlock it
// broke, or a serialization failure): nothing of it was written, and running it again at
// once is the remedy. A kUnavailable Status, told apart from the others by IsConflict.
Status Conflict(std::string_view sqlstate);
bool IsConflict(const Status& s);

// The failure of a transaction whose Tx::Require found too few rows: nothing of it was
// written. A kFailedPrecondition Status, told apart from the others by IsUnmet.
Status Unmet();
bool IsUnmet(const Status& s);
// What Tx::Require throws where it reads its rows at once (SQLite): the backend turns it
// into Unmet().
struct UnmetRequirement : std::runtime_error {
  UnmetRequirement() : std::runtime_error("a required row was not found") {}
};

// How a transaction goes to the database.
enum class Flights {
  // BEGIN, the body's statements as it waits for their results, COMMIT.
  kAsNeeded,
  // For a body that waits for nothing (Send, QueryLater, Require, InsertLater; no Query,
  // Exec or Wait): PostgreSQL gets it all at once, the commit with it, and answers once (a
  // pipeline without BEGIN is one implicit transaction, committed at its sync). A body that
  // waits anyway still runs in one transaction. SQLite, in the process, has no flights: the
  // same as kAsNeeded there.
  kOne,
};

// A database: where transactions run.
class Database {
 public:
  virtual ~Database() = default;
  // Runs `body` in one transaction, commits when it returns OK and rolls back otherwise
  // (returning its Status). Database failures become a Status: kUnavailable for what is
  // worth retrying (a lost connection, a commit whose outcome is unknown, a conflict with
  // another transaction (Conflict) or a busy database), kInternal for the rest.
  Status Transact(const std::function<Status(Tx&)>& body, Flights flights = Flights::kAsNeeded) {
    return DoTransact(body, flights);
  }
  // Applies pending schema migrations (idempotent; safe with several processes at once).
  virtual Status Migrate() = 0;
  // The newest migration this binary has for the database.
  virtual int KnownMigration() const = 0;
  // How often this process has waited for the database's answer since it opened it (a
  // pipeline of statements is one wait); none where there is nothing to wait for (SQLite
  // runs in the process).
  virtual std::optional<int64_t> RoundTrips() const { return std::nullopt; }
  // Calls `wake` after each committed transaction of another process that called
  // Tx::AnnounceWork (Store::WatchForWork). Null where that cannot be watched.
  virtual std::unique_ptr<WorkWatch> Watch(std::function<void()> wake) {
    (void)wake;
    return nullptr;
  }

 private:
  // Transact's work, by each database (virtual apart, so that the default argument is not
  // the caller's static type's).
  virtual Status DoTransact(const std::function<Status(Tx&)>& body, Flights flights) = 0;
};

}  // namespace funcky::store::sql
