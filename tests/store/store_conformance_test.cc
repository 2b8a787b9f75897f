// The contracts every Store backend keeps (coordinator/store/store.h), run against each
// backend through one parameterized suite (docs/architecture.md "Store contracts").
// Backends are real: PostgreSQL is a private cluster started by the test binary, SQLite a
// file in a temporary folder.
//
// Contracts covered here: claim order is acceptance order; an expired lease is reclaimed and
// the old holder's Apply is refused; a lane head blocks later runs of its key (through
// retries and while blocked) and other keys are not blocked; skip-head and head_timeout
// move a lane on, retry-head runs a blocked head again; concurrency limits hold back calls in
// flight, per function and per key; a wait resumes once (by a match or by its timeout, never
// both) and its timeout is a durable timer; cancelling a run drops its work and moves its
// lane on; a replayed event starts another run, and is not found when retention deletes
// the event meanwhile; retention deletes only old finished runs and the old events no
// remaining run refers to, with their lane outcomes and old announced lane gaps, never what
// a sequence lane's order needs.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <filesystem>
#include <functional>
#include <latch>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>
#include <sqlite3.h>

#include "common/step_id.h"

#include "common/clock.h"
#include "common/ulid.h"
#include "coordinator/expr/expr.h"
#include "coordinator/store/sql/databases.h"
#include "coordinator/store/sql/flow_store.h"
#include "coordinator/store/sql/sql_store.h"
#include "coordinator/store/store.h"
#include "tests/support/pg_cluster.h"
#include "tests/support/process.h"
#include "tests/support/silent_port.h"
#include "tests/support/status_matchers.h"

namespace funcky::store {
namespace {

using namespace std::chrono_literals;
using ::testing::HasSubstr;
using testing::IsOk;
using testing::StatusIs;

// A step limit no test here reaches (Checkpoint's).
constexpr int64_t kAnySteps = 1000;

// A step a host ran and checkpointed, and its attempt, which ended at `now_ms` after 5 ms.
StepRecord RanStep(const char* id, int value) {
  return StepRecord{id, 0, std::string("step ") + id, "completed", {{"data", value}}, 0};
}
AttemptRecord RanAttempt(const char* id, int64_t now_ms) {
  return AttemptRecord{id, id, 0, "completed", nullptr, now_ms - 5, now_ms};
}

// A transaction that notes the lanes whose rows its statements lock (an upsert or update of
// a lane row, or a locking read of it), in order, and counts its writes of lane rows, and
// passes everything on.
class LaneRecordingTx final : public sql::Tx {
 public:
  explicit LaneRecordingTx(sql::Tx& tx) : tx_(tx) {}
  sql::Rows Query(std::string_view sql, sql::Params params) override {
    Note(sql, params);
    return tx_.Query(sql, params);
  }
  int64_t Exec(std::string_view sql, sql::Params params) override {
    Note(sql, params);
    return tx_.Exec(sql, params);
  }
  void Send(std::string_view sql, sql::Params params) override {
    Note(sql, params);
    tx_.Send(sql, params);
  }
  void QueryLater(std::string_view sql, sql::Params params,
                  std::function<void(sql::Rows)> done) override {
    Note(sql, params);
    tx_.QueryLater(sql, params, std::move(done));
  }
  void Require(std::string_view sql, sql::Params params, size_t rows,
               std::function<void(sql::Rows)> done) override {
    Note(sql, params);
    tx_.Require(sql, params, rows, std::move(done));
  }
  void Wait() override { tx_.Wait(); }
  void LockKey(std::string_view key, bool shared) override { tx_.LockKey(key, shared); }
  void AnnounceWork() override { tx_.AnnounceWork(); }

  std::vector<std::string> lanes;  // "function/key", in the order first locked
  int lane_writes = 0;             // statements that write a lane's row

 private:
  void Note(std::string_view sql, const sql::Params& params) {
    if (sql.starts_with("INSERT INTO lanes") || sql.starts_with("UPDATE lanes") ||
        sql.starts_with("DELETE FROM lanes")) {
      ++lane_writes;
    }
    const bool locking_read = sql.starts_with("SELECT") &&
                              sql.find(" FROM lanes ") != std::string_view::npos &&
                              sql.find("{FOR ") != std::string_view::npos;
    if (!sql.starts_with("INSERT INTO lanes") && !sql.starts_with("UPDATE lanes") &&
        !locking_read) {
      return;
    }
    // A statement of several rows (Tx::SendRows: "VALUES (…), (…)") names a lane a row, its
    // function and key first, and locks them in the order of its rows.
    const size_t rows = ValuesRows(sql);
    const size_t width = params.size() / rows;
    for (size_t row = 0; row < rows; ++row) {
      const auto* fn = std::get_if<std::string>(&params.begin()[row * width].get());
      const auto* key = std::get_if<std::string>(&params.begin()[row * width + 1].get());
      if (!fn || !key) return;
      // Its first statement on a lane takes the row's lock; later ones find it held.
      const std::string lane = *fn + "/" + *key;
      if (std::find(lanes.begin(), lanes.end(), lane) == lanes.end()) lanes.push_back(lane);
    }
  }
  // The rows of `sql`'s VALUES list: the parenthesized groups at its top level, up to the
  // first text that is not one or the parenthesis that closes the list (string literals
  // skipped); 1 without a VALUES list.
  static size_t ValuesRows(std::string_view sql) {
    const size_t values = sql.find(" VALUES ");
    if (values == std::string_view::npos) return 1;
    size_t rows = 0;
    int depth = 0;
    for (size_t i = values + 8; i < sql.size(); ++i) {
      const char c = sql[i];
      if (c == '\'') {
        i = sql.find('\'', i + 1);
        if (i == std::string_view::npos) break;
      } else if (c == '(') {
        if (depth++ == 0) ++rows;
      } else if (c == ')') {
        if (depth-- == 0) break;  // closes what the list stands in: "FROM (VALUES …)"
      } else if (depth == 0 && c != ',' && c != ' ') {
        break;
      }
    }
    return std::max<size_t>(rows, 1);
  }

  sql::Tx& tx_;
};

// A database whose next transaction can be made to fail: `fail_next_commit` commits it and
// then reports its outcome unknown, as when the connection drops during COMMIT; each of the
// next `conflicts` transactions runs and is rolled back as the victim of a deadlock. With
// `hold_next`, the next transaction waits until Release (`held` says when it waits); with
// `pause_next_before_commit`, the next runs its body and waits until Release before its
// commit (`paused` says when it waits), holding its locks; with
// `record_lanes`, each committed transaction's lane locks are kept in `lanes_locked` and its
// count of writes of lane rows in `lane_writes`.
class FaultyDatabase final : public sql::Database {
 public:
  explicit FaultyDatabase(std::unique_ptr<sql::Database> db) : db_(std::move(db)) {}
  Status DoTransact(const std::function<Status(sql::Tx&)>& body, sql::Flights flights) override {
    if (pause_next_before_commit.exchange(false)) {
      return db_->Transact(
          [&](sql::Tx& tx) {
            Status s = body(tx);
            paused = true;
            std::unique_lock lock(mu_);
            released_cv_.wait(lock, [&] { return released_; });
            return s;
          },
          flights);
    }
    if (hold_next.exchange(false)) {
      std::unique_lock lock(mu_);
      held = true;
      released_cv_.wait(lock, [&] { return released_; });
    }
    if (record_lanes) {
      std::vector<std::string> lanes;
      int writes = 0;
      Status s = db_->Transact(
          [&](sql::Tx& tx) {
            LaneRecordingTx recording(tx);
            Status done = body(recording);
            if (done.ok()) recording.FlushInserts();  // rows the body held for the commit
            lanes = recording.lanes;
            writes = recording.lane_writes;
            return done;
          },
          flights);
      if (s.ok()) {
        std::lock_guard lock(mu_);
        lanes_locked.push_back(std::move(lanes));
        lane_writes.push_back(writes);
      }
      return s;
    }
    if (conflicts > 0) {
      --conflicts;
      return db_->Transact(
          [&](sql::Tx& tx) {
            (void)body(tx);
            return sql::Conflict("40P01");
          },
          flights);
    }
    Status s = db_->Transact(body, flights);
    if (s.ok() && fail_next_commit.exchange(false)) {
      ++commits_failed;
      return CommitOutcomeUnknown("injected");
    }
    return s;
  }
  Status Migrate() override { return db_->Migrate(); }
  int KnownMigration() const override { return db_->KnownMigration(); }
  std::optional<int64_t> RoundTrips() const override { return db_->RoundTrips(); }
  std::unique_ptr<WorkWatch> Watch(std::function<void()> wake) override {
    return db_->Watch(std::move(wake));
  }
  void Release() {
    std::lock_guard lock(mu_);
    released_ = true;
    released_cv_.notify_all();
  }
  std::vector<std::vector<std::string>> LanesLocked() {
    std::lock_guard lock(mu_);
    return lanes_locked;
  }
  std::vector<int> LaneWrites() {
    std::lock_guard lock(mu_);
    return lane_writes;
  }

  std::atomic<bool> fail_next_commit = false;
  std::atomic<int> commits_failed = 0;  // by fail_next_commit
  std::atomic<int> conflicts = 0;
  std::atomic<bool> hold_next = false;
  std::atomic<bool> held = false;
  std::atomic<bool> pause_next_before_commit = false;
  std::atomic<bool> paused = false;
  std::atomic<bool> record_lanes = false;

 private:
  std::unique_ptr<sql::Database> db_;
  std::mutex mu_;
  std::condition_variable released_cv_;
  bool released_ = false;                              // GUARDED_BY(mu_)
  std::vector<std::vector<std::string>> lanes_locked;  // GUARDED_BY(mu_)
  std::vector<int> lane_writes;                        // GUARDED_BY(mu_)
};

struct Backend {
  std::string name;
  // Opens a fresh, empty database for test `test_name`.
  std::function<std::unique_ptr<sql::Database>(const std::string& test_name)> open;
};

void PrintTo(const Backend& backend, std::ostream* os) { *os << backend.name; }

class StoreConformance : public ::testing::TestWithParam<Backend> {
 protected:
  void SetUp() override {
    auto db = GetParam().open(testing::CurrentTestSlug());
    ASSERT_TRUE(db);
    auto faulty = std::make_unique<FaultyDatabase>(std::move(db));
    db_ = faulty.get();
    store_ = std::make_unique<SqlStore>(std::move(faulty));
    ASSERT_THAT(store_->Migrate(), IsOk());
    ASSERT_THAT(store_->SyncApp(AppOfTheTests("sum")), IsOk());
  }

  // After every test, whatever it did: a run has ended exactly when its end time is set, which
  // the index of active runs relies on (runs_active, `ended_at_ms IS NULL`; migration 0037).
  void TearDown() override {
    if (!store_ || ::testing::Test::HasFatalFailure()) return;
    int64_t wrong = -1;
    EXPECT_THAT(db_->Transact([&](sql::Tx& tx) {
      wrong = tx.Count(std::string("SELECT count(*) FROM runs WHERE (status IN ") + kEndedStatuses +
                       ") <> (ended_at_ms IS NOT NULL)");
      return Status::Ok();
    }),
                IsOk());
    EXPECT_EQ(wrong, 0) << "runs whose status and ended_at_ms disagree";
  }

  // The app every test has, synced with `checksum`.
  static AppSync AppOfTheTests(const std::string& checksum) {
    AppSync sync;
    sync.app = {"app", "http://127.0.0.1:1/api", "cpp", "", checksum, 0, 0};
    sync.functions = {Fn("app-plain"),       Fn("app-ordered"), Fn("app-limited", 2),
                      Fn("app-keyed", 0, 2), Fn("app-one", 1),  Fn("app-two-keys", 0, 2, 3)};
    return sync;
  }

  // The app with `rules` (rule ids) as app-plain's cancel rules: its config's `cancel` names
  // them (the store reads no more of a rule than that it changed).
  static AppSync AppWithCancelRules(const std::string& checksum, std::vector<std::string> rules) {
    AppSync sync = AppOfTheTests(checksum);
    for (const std::string& rule : rules) {
      sync.functions[0].config["cancel"].push_back({{"event", "test/stop"}, {"if", rule}});
    }
    sync.cancel_rules["app-plain"] = std::move(rules);
    return sync;
  }

  // The ids of CancelCandidates of app-plain (one page of up to 10).
  std::vector<std::string> CandidateIds(const std::string& rule,
                                        const std::vector<std::string>& keys, int64_t before_ms,
                                        int64_t created_from_ms = 0) {
    std::vector<std::string> out;
    auto runs =
        store_->CancelCandidates("app-plain", rule, keys, before_ms, created_from_ms, "", 10);
    EXPECT_THAT(runs, IsOk());
    if (runs.ok()) {
      for (const ActiveRun& r : *runs) out.push_back(r.run_id);
    }
    return out;
  }

  static FunctionRecord Fn(std::string id, int limit = 0, int key_limit = 0, int key_limit2 = 0) {
    FunctionRecord f;
    f.id = std::move(id);
    f.app_id = "app";
    f.name = f.id;
    f.config = {{"id", f.id}};
    f.concurrency_limit = limit;
    f.key_concurrency_limit = key_limit;
    f.key_concurrency_limit2 = key_limit2;
    return f;
  }

  // A new event named `name` that starts no run yet.
  NewEvent Event(const std::string& name) {
    NewEvent ne;
    ne.event.internal_id = NewUlid(UnixMillis(clock_.Now()));
    ne.event.id = ne.event.internal_id;
    ne.event.name = name;
    ne.event.payload = {{"name", name}, {"data", Json::object()}};
    ne.event.received_at_ms = UnixMillis(clock_.Now());
    return ne;
  }

  // `count` waits of run `run` for `event_name` of `kind` with the `if` `expression`, registered
  // now and expiring in an hour, written to the database in one statement; with
  // `every_other_keyed`, every other one has a key no event has.
  void AddFillerWaits(const std::string& run, int64_t count, const std::string& event_name,
                      const std::string& expression, const std::string& kind,
                      bool every_other_keyed) {
    ASSERT_THAT(db_->Transact([&](sql::Tx& tx) {
      tx.Exec(
          "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < $1) "
          "INSERT INTO waits (run_id, step_id, function_id, event_name, expression, kind, "
          "created_at_ms, expires_at_ms, match_key) SELECT $2, 'f' || i, 'app-plain', $3, $4, "
          "$5, $6, $7, CASE WHEN $8 AND i % 2 = 0 THEN 'other-' || i END FROM n",
          {count, run, event_name, expression, kind, UnixMillis(clock_.Now()),
           UnixMillis(clock_.Now() + 1h), every_other_keyed});
      return Status::Ok();
    }),
                IsOk());
  }

  // Ingests one event that starts one run of `function_id`; returns the run id.
  std::string Start(const std::string& function_id, std::optional<std::string> lane_key = {},
                    std::optional<std::chrono::milliseconds> head_timeout = {},
                    std::optional<std::string> concurrency_key = {}) {
    NewEvent ne = Event("test/e");
    NewRun run{NewUlid(UnixMillis(clock_.Now())), function_id, lane_key, head_timeout,
               concurrency_key};
    ne.runs.push_back(run);
    EXPECT_THAT(store_->IngestEvents({ne}, clock_.Now(), nullptr), IsOk());
    return run.run_id;
  }

  // Starts a run of "app-plain", ends it and announces its end (nothing keeps it from
  // retention then); returns its event's internal id.
  std::string EndedRunsEvent() {
    const std::string run = Start("app-plain");
    auto items = Claim();
    EXPECT_EQ(items.size(), 1u);
    if (items.size() != 1) return "";
    EXPECT_THAT(End(items[0]), IsOk());
    auto ends = store_->PendingRunEnds(0, 100);
    EXPECT_THAT(ends, IsOk());
    if (ends.ok()) {
      EXPECT_THAT(store_->AckRunEnds(*ends), IsOk());
    }
    auto ended = store_->GetRun(run);
    EXPECT_THAT(ended, IsOk());
    return ended.ok() ? ended->event_id : "";
  }

  // Ingests one event that starts one run of "app-plain" here (StartedCalls); returns the
  // run's first call, leased to the caller.
  QueueItem StartHere() {
    NewEvent ne = Event("test/e");
    NewRun run{NewUlid(UnixMillis(clock_.Now())), "app-plain"};
    run.may_start_here = true;
    ne.runs.push_back(run);
    StartedCalls start{.max = 1, .lease = 30s};
    EXPECT_THAT(store_->IngestEvents({ne}, clock_.Now(), nullptr, &start), IsOk());
    EXPECT_EQ(start.items.size(), 1u);
    return start.items.empty() ? QueueItem{} : start.items[0];
  }

  // A call that recorded step `id` (one attempt) and goes on with the run's discovery, due
  // now, once the run's other calls are done: what the executor makes of a step's reply.
  Transition StepDone(const std::string& id) {
    Transition t;
    t.steps.push_back({id, 0, id, "completed", {{"data", id}}});
    const int64_t now = UnixMillis(clock_.Now());
    t.attempts.push_back({id, id, 0, "completed", nullptr, now - 5, now});
    t.move = Transition::Continue{.next = {NextCall{std::string(kDiscoveryStepId), clock_.Now()}},
                                  .next_only_if_idle = true};
    return t;
  }

  // How often `fn` made the store wait for PostgreSQL (0 on SQLite).
  int64_t RoundTripsOf(const std::function<void()>& fn) {
    const std::optional<int64_t> before = store_->RoundTrips();
    fn();
    return before ? *store_->RoundTrips() - *before : 0;
  }

  std::vector<QueueItem> Claim(int max = 100) {
    auto r = store_->Claim(max, clock_.Now(), 30s);
    EXPECT_THAT(r, IsOk());
    return r.ok() ? *r : std::vector<QueueItem>{};
  }

  std::vector<std::string> ClaimedRuns(int max = 100) {
    std::vector<std::string> runs;
    for (const auto& item : Claim(max)) runs.push_back(item.run_id);
    return runs;
  }

  // Gives every `every`-th of `items`, from the first, a lease token nobody holds, as if its
  // lease had been lost; returns their runs.
  static std::set<std::string> LoseLeases(std::vector<QueueItem>& items, size_t every) {
    std::set<std::string> runs;
    for (size_t i = 0; i < items.size(); i += every) {
      items[i].lease_token = "someone-else";
      runs.insert(items[i].run_id);
    }
    return runs;
  }

  // A call that recorded step "s1" and goes on with the run's discovery call, due now.
  Transition StepThenDiscovery() {
    Transition t;
    t.steps.push_back({"s1", 0, "first", "completed", {{"data", 1}}});
    t.move = Transition::Continue{.next = {NextCall{std::string(kDiscoveryStepId), clock_.Now()}}};
    return t;
  }

  // A call (a parallel branch's) that recorded step `id` and goes on with the run's discovery
  // call once the run's other calls are done (fan-in).
  Transition BranchDone(const std::string& id) {
    Transition t;
    t.steps.push_back({id, 0, id, "completed", {{"data", id}}});
    t.move = Transition::Continue{.next = {NextCall{std::string(kDiscoveryStepId), clock_.Now()}},
                                  .next_only_if_idle = true};
    return t;
  }

  // Records step "s1" of `*item`'s call and makes the run's next call in place
  // (ApplyAndKeep): `*item` becomes that kept call.
  void KeepInPlace(QueueItem* item) {
    auto held = store_->ApplyAndKeep(*item, StepThenDiscovery(), clock_.Now(), 30s);
    ASSERT_THAT(held, IsOk());
    ASSERT_TRUE(held->kept.has_value());
    *item = held->kept->item;
  }

  Status End(const QueueItem& item, const char* status = kCompleted) {
    Transition t;
    t.move = Transition::End{status, "done", nullptr};
    return store_->Apply(item, t, clock_.Now());
  }

  // DueSweeps at the fixture's clock.
  SweepsDue Due(int64_t lookbacks_before_ms, int64_t ends_before_ms = 0) {
    auto due = store_->DueSweeps(lookbacks_before_ms, ends_before_ms, clock_.Now());
    EXPECT_THAT(due, IsOk());
    return due.ok() ? *due : SweepsDue{};
  }

  Status Retry(const QueueItem& item, std::chrono::milliseconds after) {
    Transition t;
    t.move = Transition::Retry{clock_.Now() + after};
    return store_->Apply(item, t, clock_.Now());
  }

  Status Block(const QueueItem& item) {
    Transition t;
    t.move = Transition::Park{{{"name", "Error"}, {"message", "third party said no"}}};
    return store_->Apply(item, t, clock_.Now());
  }

  // The open waits that ingesting a new event named `name` reports.
  std::vector<WaitRecord> WaitsSeenBy(const std::string& name) {
    IngestWaits waits;
    EXPECT_THAT(store_->IngestEvents({Event(name)}, clock_.Now(), &waits), IsOk());
    return waits.open;
  }

  // Ingests an event numbered `number` for sequence lane `key` of app-ordered; returns the
  // event's internal id (whether a run started is the store's decision).
  std::string Numbered(const std::string& key, int64_t number, LaneSequencing seq) {
    NewEvent ne = Event("test/e");
    NewRun run{NewUlid(UnixMillis(clock_.Now())), "app-ordered", key};
    run.sequencing = seq;
    run.lane_number = number;
    ne.runs.push_back(run);
    EXPECT_THAT(store_->IngestEvents({ne}, clock_.Now(), nullptr), IsOk());
    return ne.event.internal_id;
  }
  // The lane numbers of the runs claimed now (each claimed item's run).
  std::vector<int64_t> ClaimedNumbers(std::vector<QueueItem>* items = nullptr) {
    std::vector<int64_t> numbers;
    std::vector<QueueItem> claimed = Claim();
    for (const QueueItem& item : claimed) {
      auto event = store_->GetEvent(store_->GetRun(item.run_id)->event_id);
      numbers.push_back(number_of_.at(event->internal_id));
    }
    if (items) *items = std::move(claimed);
    return numbers;
  }
  // The lane number of a claimed item's run (sent by Send).
  int64_t ClaimedNumberOf(const QueueItem& item) {
    auto event = store_->GetEvent(store_->GetRun(item.run_id)->event_id);
    return number_of_.at(event->internal_id);
  }
  // As Numbered, remembering the number of the event for ClaimedNumbers.
  std::string Send(const std::string& key, int64_t number, LaneSequencing seq) {
    std::string id = Numbered(key, number, seq);
    number_of_[id] = number;
    return id;
  }
  std::map<std::string, int64_t> number_of_;
  std::vector<LaneRecord> Lanes() {
    auto lanes = store_->ListLanes({});
    EXPECT_THAT(lanes, IsOk());
    return lanes.ok() ? *lanes : std::vector<LaneRecord>{};
  }

  std::string RunStatus(const std::string& run_id) {
    auto r = store_->GetRun(run_id);
    EXPECT_THAT(r, IsOk());
    return r.ok() ? r->status : "";
  }

  ManualClock clock_;
  std::unique_ptr<Store> store_;
  FaultyDatabase* db_ = nullptr;  // owned by store_
};

using Runs = std::vector<std::string>;

TEST_P(StoreConformance, ClaimOrderIsAcceptanceOrder) {
  Runs started;
  for (int i = 0; i < 5; ++i) started.push_back(Start("app-plain"));
  EXPECT_EQ(ClaimedRuns(), started);

  // In a lane, each run starts when the one before it ends, in the order they were accepted.
  Runs lane;
  for (int i = 0; i < 4; ++i) lane.push_back(Start("app-ordered", "tenant-1"));
  for (const std::string& expected : lane) {
    auto items = Claim();
    ASSERT_EQ(items.size(), 1u);
    EXPECT_EQ(items[0].run_id, expected);
    ASSERT_TRUE(End(items[0]).ok());
  }
  EXPECT_TRUE(Claim().empty());
}

TEST_P(StoreConformance, ExpiredLeaseIsReclaimed) {
  const std::string run = Start("app-plain");
  auto first = store_->Claim(10, clock_.Now(), 1000ms);
  ASSERT_TRUE(first.ok());
  ASSERT_EQ(first->size(), 1u);
  clock_.Advance(999ms);
  EXPECT_TRUE(Claim().empty()) << "claimed while the lease still held";
  clock_.Advance(2ms);
  auto again = Claim();
  ASSERT_EQ(again.size(), 1u);
  EXPECT_EQ(again[0].id, (*first)[0].id);
  EXPECT_NE(again[0].lease_token, (*first)[0].lease_token);
  // The first holder comes back too late: nothing it says is applied.
  EXPECT_THAT(End((*first)[0]), StatusIs(StatusCode::kAborted));
  EXPECT_EQ(RunStatus(run), kRunning);
  EXPECT_THAT(End(again[0]), IsOk());
  EXPECT_EQ(RunStatus(run), kCompleted);
}

TEST_P(StoreConformance, AClaimWhoseCommitOutcomeIsUnknownGivesItsItemsBackAtTheNextClaim) {
  const std::string run = Start("app-plain");
  db_->fail_next_commit = true;
  auto lost = store_->Claim(10, clock_.Now(), 60s);
  ASSERT_THAT(lost, StatusIs(StatusCode::kUnavailable));
  // The claim did commit: its item is leased under a token nobody holds. The next claim
  // gives it back and takes it, rather than leaving it for the 60 s lease.
  auto again = Claim();
  ASSERT_EQ(again.size(), 1u);
  EXPECT_EQ(again[0].run_id, run);
  EXPECT_THAT(End(again[0]), IsOk());
  EXPECT_EQ(RunStatus(run), kCompleted);
  EXPECT_TRUE(Claim().empty());
}

// A transaction the database undid for another's sake (a deadlock's victim) is run again:
// its caller sees it fail only when every one of its tries does, and then nothing of it is
// stored.
TEST_P(StoreConformance, ATransactionThatLosesAConflictIsRunAgain) {
  db_->conflicts = 2;
  const std::string run = Start("app-plain");
  EXPECT_EQ(db_->conflicts, 0);
  EXPECT_EQ(RunStatus(run), kQueued);
  auto items = Claim();
  ASSERT_EQ(items.size(), 1u);
  db_->conflicts = 1;
  EXPECT_THAT(End(items[0]), IsOk());
  EXPECT_EQ(RunStatus(run), kCompleted);

  db_->conflicts = 3;
  NewEvent ne = Event("test/e");
  ne.runs.push_back(NewRun{NewUlid(UnixMillis(clock_.Now())), "app-plain"});
  auto refused = store_->IngestEvents({ne}, clock_.Now(), nullptr);
  EXPECT_TRUE(sql::IsConflict(refused.status())) << refused.status().ToString();
  EXPECT_THAT(store_->GetEvent(ne.event.internal_id), StatusIs(StatusCode::kNotFound));
  EXPECT_THAT(store_->GetRun(ne.runs[0].run_id), StatusIs(StatusCode::kNotFound));
  EXPECT_FALSE(sql::IsConflict(Unavailable("commit outcome unknown: connection lost")));

  // Outside the group commit as well: a claim, a cancel (an API request that should not
  // answer 503 for it).
  const std::string other = Start("app-plain");
  db_->conflicts = 2;
  items = Claim();
  EXPECT_EQ(db_->conflicts, 0);
  ASSERT_EQ(items.size(), 1u);
  EXPECT_EQ(items[0].run_id, other);
  db_->conflicts = 2;
  auto cancelled = store_->CancelRun(other, {{"message", "stop"}}, clock_.Now());
  ASSERT_THAT(cancelled, IsOk());
  EXPECT_TRUE(*cancelled);
  EXPECT_EQ(RunStatus(other), kCancelled);
  const std::string kept = Start("app-plain");
  db_->conflicts = 3;
  auto not_cancelled = store_->CancelRun(kept, {{"message", "stop"}}, clock_.Now());
  EXPECT_TRUE(sql::IsConflict(not_cancelled.status())) << not_cancelled.status().ToString();
  EXPECT_EQ(RunStatus(kept), kQueued);
}

TEST_P(StoreConformance, LaneHeadBlocksLaterRunOfSameKey) {
  const std::string head = Start("app-ordered", "tenant-1");
  const std::string later = Start("app-ordered", "tenant-1");
  auto items = Claim();
  ASSERT_EQ(items.size(), 1u);
  EXPECT_EQ(items[0].run_id, head);

  // Retrying and in backoff: the head keeps its lane.
  ASSERT_TRUE(Retry(items[0], 100ms).ok());
  EXPECT_TRUE(Claim().empty());
  clock_.Advance(100ms);
  items = Claim();
  ASSERT_EQ(items.size(), 1u);
  EXPECT_EQ(items[0].run_id, head);

  // Failed for good: blocked, and still the head.
  ASSERT_TRUE(Block(items[0]).ok());
  clock_.Advance(1h);
  EXPECT_TRUE(Claim().empty());
  EXPECT_EQ(RunStatus(head), kBlocked);
  EXPECT_EQ(RunStatus(later), kQueued);
  auto lanes = store_->ListLanes({.function_id = "app-ordered"});
  ASSERT_TRUE(lanes.ok());
  ASSERT_EQ(lanes->size(), 1u);
  EXPECT_EQ((*lanes)[0].key, "tenant-1");
  EXPECT_EQ((*lanes)[0].depth, 2);
  EXPECT_EQ((*lanes)[0].head_run_id, head);
  EXPECT_EQ((*lanes)[0].head_status, kBlocked);

  // skip-head fails it as skipped, keeping why it failed, and the next run starts.
  auto skipped = store_->SkipLaneHead("app-ordered", "tenant-1", clock_.Now());
  ASSERT_TRUE(skipped.ok()) << skipped.status().ToString();
  EXPECT_EQ(*skipped, head);
  auto run = store_->GetRun(head);
  ASSERT_TRUE(run.ok());
  EXPECT_EQ(run->status, kFailed);
  EXPECT_EQ(run->error["name"], "Skipped");
  EXPECT_EQ(run->error["cause"]["message"], "third party said no");
  EXPECT_EQ(ClaimedRuns(), Runs{later});
}

// skip-head naming the head it means skips only that run: sent again (its answer lost), it
// answers the same and skips nothing more; naming a run that is not the head, it is refused.
TEST_P(StoreConformance, SkipHeadNamingItsRunSkipsThatRunOnly) {
  const std::string head = Start("app-ordered", "k");
  const std::string next = Start("app-ordered", "k");
  auto items = Claim();
  ASSERT_EQ(items.size(), 1u);
  ASSERT_TRUE(Block(items[0]).ok());
  EXPECT_EQ(store_->SkipLaneHead("app-ordered", "k", clock_.Now(), next).status().code(),
            StatusCode::kAborted);
  EXPECT_EQ(RunStatus(head), kBlocked);
  auto skipped = store_->SkipLaneHead("app-ordered", "k", clock_.Now(), head);
  ASSERT_THAT(skipped, IsOk());
  EXPECT_EQ(*skipped, head);
  EXPECT_EQ(RunStatus(head), kFailed);
  auto again = store_->SkipLaneHead("app-ordered", "k", clock_.Now(), head);
  ASSERT_THAT(again, IsOk());
  EXPECT_EQ(*again, head);
  EXPECT_EQ(RunStatus(next), kQueued) << "the next head was skipped in its place";
  EXPECT_EQ(ClaimedRuns(), Runs{next});
  EXPECT_EQ(RunStatus(next), kRunning);
}

TEST_P(StoreConformance, RetryHeadRunsTheBlockedHeadAgainWithoutItsFailedSteps) {
  const std::string head = Start("app-ordered", "t");
  const std::string later = Start("app-ordered", "t");
  auto items = Claim();
  ASSERT_EQ(items.size(), 1u);
  // The call memoized a failed step, then the run failed: blocked.
  Transition failed;
  failed.steps.push_back({"s1", 0, "push", "failed", {{"error", {{"message", "no"}}}}, 0});
  failed.move = Transition::Park{{{"message", "no"}}};
  ASSERT_TRUE(store_->Apply(items[0], failed, clock_.Now()).ok());
  EXPECT_EQ(store_->RetryLaneHead("app-ordered", "nobody", clock_.Now()).status().code(),
            StatusCode::kNotFound);

  auto retried = store_->RetryLaneHead("app-ordered", "t", clock_.Now());
  ASSERT_TRUE(retried.ok()) << retried.status().ToString();
  EXPECT_EQ(*retried, head);
  EXPECT_EQ(RunStatus(head), kRunning);
  auto steps = store_->GetSteps(head);
  ASSERT_TRUE(steps.ok());
  EXPECT_TRUE(steps->empty()) << "the failed step is forgotten, so it runs again";
  // Running again, not blocked: a second retry is refused, and the lane still waits for it.
  EXPECT_EQ(store_->RetryLaneHead("app-ordered", "t", clock_.Now()).status().code(),
            StatusCode::kFailedPrecondition);
  items = Claim();
  ASSERT_EQ(items.size(), 1u);
  EXPECT_EQ(items[0].run_id, head);
  EXPECT_EQ(items[0].step_id, "step");
  ASSERT_TRUE(End(items[0]).ok());
  EXPECT_EQ(ClaimedRuns(), Runs{later});
}

TEST_P(StoreConformance, OtherKeysNotBlocked) {
  const std::string a1 = Start("app-ordered", "a");
  Start("app-ordered", "a");
  const std::string b1 = Start("app-ordered", "b");
  const std::string plain = Start("app-plain");
  auto items = Claim();
  ASSERT_EQ(items.size(), 3u);
  EXPECT_EQ((Runs{items[0].run_id, items[1].run_id, items[2].run_id}), (Runs{a1, b1, plain}));
  ASSERT_TRUE(Block(items[0]).ok());
  // Lane a is blocked; a later run of b starts at once.
  const std::string b2 = Start("app-ordered", "b");
  ASSERT_TRUE(End(items[1]).ok());
  EXPECT_EQ(ClaimedRuns(), Runs{b2});
}

TEST_P(StoreConformance, HeadTimeoutFailsTheHeadAndMovesTheLaneOn) {
  const std::string head = Start("app-ordered", "t", 10s);
  const std::string next = Start("app-ordered", "t", 10s);
  auto items = Claim();
  ASSERT_EQ(items.size(), 1u);
  ASSERT_THAT(Retry(items[0], 60s), IsOk());  // retrying, with no call in flight
  clock_.Advance(9s);
  auto expired = store_->ExpireLaneHeads(clock_.Now());
  ASSERT_TRUE(expired.ok());
  EXPECT_TRUE(expired->empty());
  clock_.Advance(2s);
  expired = store_->ExpireLaneHeads(clock_.Now());
  ASSERT_TRUE(expired.ok()) << expired.status().ToString();
  EXPECT_EQ(*expired, Runs{head});
  auto run = store_->GetRun(head);
  ASSERT_TRUE(run.ok());
  EXPECT_EQ(run->status, kFailed);
  EXPECT_EQ(run->error["name"], "HeadTimeout");
  EXPECT_EQ(ClaimedRuns(), Runs{next});
}

// A head that times out while its call is in flight (the host may be running it still)
// keeps its lane until the call comes back: no later run of the key gets a call meanwhile.
TEST_P(StoreConformance, AHeadThatTimesOutWithACallInFlightHoldsTheLaneUntilTheCallReturns) {
  const std::string head = Start("app-ordered", "t", 10s);
  const std::string next = Start("app-ordered", "t", 10s);
  auto items = Claim();
  ASSERT_EQ(items.size(), 1u);
  clock_.Advance(11s);
  auto expired = store_->ExpireLaneHeads(clock_.Now());
  ASSERT_THAT(expired, IsOk());
  EXPECT_EQ(*expired, Runs{head});
  EXPECT_EQ(RunStatus(head), kFailed);
  EXPECT_TRUE(Claim().empty());
  EXPECT_TRUE(store_->ExpireLaneHeads(clock_.Now())->empty()) << "nothing left to time out";
  EXPECT_TRUE(IsRunEndedMeanwhile(End(items[0])));
  EXPECT_EQ(RunStatus(head), kFailed) << "the late outcome changes nothing";
  EXPECT_EQ(ClaimedRuns(), Runs{next});
}

TEST_P(StoreConformance, ListLanesPagesInFunctionAndKeyOrder) {
  for (const char* key : {"c", "a", "b"}) Start("app-ordered", key);
  auto first = store_->ListLanes({.limit = 2});
  ASSERT_TRUE(first.ok()) << first.status().ToString();
  ASSERT_EQ(first->size(), 2u);
  EXPECT_EQ((*first)[0].key, "a");
  EXPECT_EQ((*first)[1].key, "b");
  auto rest = store_->ListLanes(
      {.after = std::make_pair(std::string("app-ordered"), std::string("b")), .limit = 2});
  ASSERT_TRUE(rest.ok());
  ASSERT_EQ(rest->size(), 1u);
  EXPECT_EQ((*rest)[0].key, "c");
  EXPECT_EQ((*rest)[0].depth, 1);
}

TEST_P(StoreConformance, SkipHeadOfAnEmptyLaneIsNotFound) {
  EXPECT_THAT(store_->SkipLaneHead("app-ordered", "nobody", clock_.Now()),
              StatusIs(StatusCode::kNotFound));
}

TEST_P(StoreConformance, FunctionConcurrencyLimitHoldsBackCallsInFlight) {
  for (int i = 0; i < 5; ++i) Start("app-limited");
  auto items = Claim();
  ASSERT_EQ(items.size(), 2u);  // concurrency_limit 2
  clock_.Advance(1s);           // held-back items are offered again, still over the limit
  EXPECT_TRUE(Claim().empty());
  ASSERT_TRUE(End(items[0]).ok());
  clock_.Advance(100ms);  // held-back items are hidden for a moment, so others are reached
  EXPECT_EQ(Claim().size(), 1u);
  // A retry in backoff is not in flight.
  ASSERT_TRUE(Retry(items[1], 10s).ok());
  clock_.Advance(1s);
  EXPECT_EQ(Claim().size(), 1u);
}

// A lane head one of whose parallel calls fails for good is blocked; its other call, still
// in flight, keeps its item: a retry-head waits for it (a replay would make its step again
// beside it), and a skip-head holds the lane until it returns.
TEST_P(StoreConformance, ABlockedHeadsOtherCallInFlightHoldsItsLaneThroughASkip) {
  const std::string head = Start("app-ordered", "k");
  const std::string next = Start("app-ordered", "k");
  auto first = Claim();
  ASSERT_EQ(first.size(), 1u);
  Transition fan_out;
  fan_out.move =
      Transition::Continue{.next = {NextCall{"b1", clock_.Now()}, NextCall{"b2", clock_.Now()}}};
  ASSERT_THAT(store_->Apply(first[0], fan_out, clock_.Now()), IsOk());
  auto branches = Claim();
  ASSERT_EQ(branches.size(), 2u);
  ASSERT_THAT(Block(branches[0]), IsOk());
  EXPECT_EQ(RunStatus(head), kBlocked);
  auto retried = store_->RetryLaneHead("app-ordered", "k", clock_.Now());
  EXPECT_EQ(retried.status().code(), StatusCode::kFailedPrecondition);
  EXPECT_THAT(retried.status().message(), ::testing::HasSubstr("in flight"));
  ASSERT_THAT(store_->SkipLaneHead("app-ordered", "k", clock_.Now(), head), IsOk());
  EXPECT_EQ(RunStatus(head), kFailed);
  // Sent again (its answer lost) while the skipped head still holds the lane: done already.
  auto again = store_->SkipLaneHead("app-ordered", "k", clock_.Now(), head);
  ASSERT_THAT(again, IsOk());
  EXPECT_EQ(*again, head);
  EXPECT_TRUE(Claim().empty()) << "the other call may still be running at its host";
  EXPECT_TRUE(IsRunEndedMeanwhile(End(branches[1])));
  EXPECT_EQ(ClaimedRuns(), Runs{next});
  again = store_->SkipLaneHead("app-ordered", "k", clock_.Now(), head);  // and once it let go
  ASSERT_THAT(again, IsOk());
  EXPECT_EQ(*again, head);
  EXPECT_EQ(RunStatus(next), kRunning) << "the next head is not skipped in its place";
  EXPECT_FALSE(store_->SkipLaneHead("app-ordered", "other", clock_.Now(), head).ok())
      << "skipped from another lane: not this one's";
}

// Retention keeps an ended run while a call of it is in flight: deleted, it took the call's
// item with it, and its lane, held for that call, was never moved on.
TEST_P(StoreConformance, RetentionKeepsAnEndedHeadWhoseCallIsInFlight) {
  const std::string head = Start("app-ordered", "k");
  const std::string next = Start("app-ordered", "k");
  auto items = Claim();
  ASSERT_EQ(items.size(), 1u);
  ASSERT_THAT(store_->CancelRun(head, {{"name", "Cancelled"}}, clock_.Now()), IsOk());
  ASSERT_THAT(store_->AckRunEnds({head}), IsOk());
  clock_.Advance(5s);
  ASSERT_THAT(store_->DeleteExpired(clock_.Now() - 1s, 500), IsOk());
  EXPECT_THAT(store_->GetRun(head), IsOk());
  EXPECT_TRUE(IsRunEndedMeanwhile(End(items[0])));
  EXPECT_EQ(ClaimedRuns(), Runs{next});
}

// A cancelled run's call in flight may still be running at its host: it counts against the
// function's limit until its outcome comes back.
TEST_P(StoreConformance, ACancelledRunsCallInFlightCountsAgainstTheLimitUntilItReturns) {
  for (int i = 0; i < 3; ++i) Start("app-limited");
  auto items = Claim();
  ASSERT_EQ(items.size(), 2u);  // concurrency_limit 2
  ASSERT_THAT(store_->CancelRun(items[0].run_id, {{"name", "Cancelled"}}, clock_.Now()), IsOk());
  clock_.Advance(1s);
  EXPECT_TRUE(Claim().empty());
  EXPECT_TRUE(IsRunEndedMeanwhile(End(items[0])));
  clock_.Advance(100ms);
  EXPECT_EQ(Claim().size(), 1u);
}

// The holder of a cancelled head's call died: the call's lease expires, a claim finds the run
// ended (the executor makes no call for it) and the lane moves on.
TEST_P(StoreConformance, ACancelledHeadsCallWhoseHolderDiedFreesTheLaneWhenItsLeaseExpires) {
  const std::string head = Start("app-ordered", "k");
  const std::string next = Start("app-ordered", "k");
  ASSERT_EQ(ClaimedRuns(), Runs{head});
  ASSERT_THAT(store_->CancelRun(head, {{"name", "Cancelled"}}, clock_.Now()), IsOk());
  clock_.Advance(29s);
  EXPECT_TRUE(Claim().empty());
  clock_.Advance(2s);  // the lease (30 s) expired
  auto again = Claim();
  ASSERT_EQ(again.size(), 1u);
  EXPECT_EQ(again[0].run_id, head);
  EXPECT_TRUE(IsRunEndedMeanwhile(store_->Apply(again[0], Transition{}, clock_.Now())));
  EXPECT_EQ(RunStatus(head), kCancelled);
  EXPECT_EQ(ClaimedRuns(), Runs{next});
}

TEST_P(StoreConformance, KeyConcurrencyLimitIsPerKey) {
  for (int i = 0; i < 3; ++i) {
    Start("app-keyed", std::nullopt, std::nullopt, "a");
    Start("app-keyed", std::nullopt, std::nullopt, "b");
  }
  auto items = Claim();
  ASSERT_EQ(items.size(), 4u);  // 2 of a, 2 of b
  clock_.Advance(1s);
  EXPECT_TRUE(Claim().empty());
}

TEST_P(StoreConformance, DuplicateEventStartsNothingAndLeavesNoLane) {
  NewEvent ne;
  ne.event.internal_id = NewUlid(UnixMillis(clock_.Now()));
  ne.event.id = "same-id";
  ne.event.name = "test/e";
  ne.event.payload = {{"name", "test/e"}};
  ne.runs.push_back({NewUlid(UnixMillis(clock_.Now())), "app-ordered", "k"});
  ASSERT_TRUE(store_->IngestEvents({ne}, clock_.Now(), nullptr).ok());
  ne.event.internal_id = NewUlid(UnixMillis(clock_.Now()) + 1);
  ne.runs[0].run_id = NewUlid(UnixMillis(clock_.Now()) + 1);
  auto again = store_->IngestEvents({ne}, clock_.Now(), nullptr);
  ASSERT_TRUE(again.ok());
  EXPECT_TRUE((*again)[0].duplicate);
  auto items = Claim();
  ASSERT_EQ(items.size(), 1u);
  ASSERT_TRUE(End(items[0]).ok());
  auto lanes = store_->ListLanes({});
  ASSERT_TRUE(lanes.ok());
  EXPECT_TRUE(lanes->empty());
}

// A request of many events is stored in statements of many rows: every event once (a resend
// of a stored one and the same id twice in the request are duplicates), runs with and
// without a lane interleaved, claimed in acceptance order across the statements.
TEST_P(StoreConformance, AManyEventRequestStoresEachEventOnceAndStartsRunsInOrder) {
  NewEvent earlier = Event("test/e");
  earlier.event.id = "sent-before";
  ASSERT_THAT(store_->IngestEvents({earlier}, clock_.Now(), nullptr), IsOk());

  std::vector<NewEvent> request;
  Runs plain, ordered;
  for (int i = 0; i < 150; ++i) {
    NewEvent ne = Event("test/e");
    if (i == 40) ne.event.id = "sent-before";
    if (i == 70 || i == 90) ne.event.id = "twice-in-request";
    const bool in_lane = i % 10 == 3;
    NewRun run{NewUlid(UnixMillis(clock_.Now())), in_lane ? "app-ordered" : "app-plain"};
    if (in_lane) run.lane_key = "k" + std::to_string(i);
    ne.runs.push_back(run);
    if (i != 40 && i != 90) (in_lane ? ordered : plain).push_back(run.run_id);
    request.push_back(std::move(ne));
  }
  auto stored = store_->IngestEvents(request, clock_.Now(), nullptr);
  ASSERT_THAT(stored, IsOk());
  ASSERT_EQ(stored->size(), 150u);
  for (int i = 0; i < 150; ++i) {
    EXPECT_EQ((*stored)[i].duplicate, i == 40 || i == 90) << i;
  }
  EXPECT_EQ((*stored)[90].internal_id, request[70].event.internal_id);

  std::vector<QueueItem> items;
  for (int pass = 0; pass < 10 && items.size() < plain.size() + ordered.size(); ++pass) {
    auto claimed = store_->Claim(100, clock_.Now(), 30s);
    ASSERT_THAT(claimed, IsOk());
    items.insert(items.end(), claimed->begin(), claimed->end());
  }
  Runs claimed_plain, claimed_ordered;
  for (const QueueItem& item : items) {
    const std::string function = store_->GetRun(item.run_id)->function_id;
    (function == "app-plain" ? claimed_plain : claimed_ordered).push_back(item.run_id);
  }
  EXPECT_EQ(claimed_plain, plain);
  EXPECT_EQ(claimed_ordered, ordered);
  EXPECT_EQ(RunStatus(plain.back()), kRunning);
}

// One internal id (derived from one X-Inngest-Event-Id-Seed) for two
// different events is refused, the batch with it stored not at all; the same event sent
// again (its `ts` filled in anew) is a duplicate.
TEST_P(StoreConformance, SeedClashOfDifferentEventsIsRefusedAndAResendIsADuplicate) {
  const std::string seeded = UlidFromSeed("1700000000000,AAECAwQFBgcICQ==", 1).value();
  NewEvent first;
  first.event.internal_id = seeded;
  first.event.id = seeded;
  first.event.name = "test/e";
  first.event.payload = {{"name", "test/e"}, {"data", {{"n", 1}}}, {"id", seeded}, {"ts", 1}};
  first.runs.push_back({NewUlid(UnixMillis(clock_.Now())), "app-plain"});
  auto stored = store_->IngestEvents({first}, clock_.Now(), nullptr);
  ASSERT_TRUE(stored.ok()) << stored.status().ToString();
  EXPECT_FALSE((*stored)[0].duplicate);

  NewEvent resend = first;
  resend.event.payload["ts"] = 2;
  resend.runs[0].run_id = NewUlid(UnixMillis(clock_.Now()) + 1);
  auto again = store_->IngestEvents({resend}, clock_.Now(), nullptr);
  ASSERT_TRUE(again.ok()) << again.status().ToString();
  EXPECT_TRUE((*again)[0].duplicate);
  EXPECT_EQ((*again)[0].internal_id, seeded);

  NewEvent other_new = Event("test/other");
  NewEvent clash = first;
  clash.event.payload["data"]["n"] = 2;
  clash.runs[0].run_id = NewUlid(UnixMillis(clock_.Now()) + 2);
  auto refused = store_->IngestEvents({other_new, clash}, clock_.Now(), nullptr);
  EXPECT_THAT(refused, StatusIs(StatusCode::kAlreadyExists, HasSubstr(seeded)));
  EXPECT_THAT(store_->GetEvent(other_new.event.internal_id), StatusIs(StatusCode::kNotFound))
      << "nothing of a refused batch is stored";
  auto events = store_->ListEvents({});
  ASSERT_TRUE(events.ok());
  ASSERT_EQ(events->size(), 1u);
  EXPECT_EQ((*events)[0].payload["data"]["n"], 1);
  EXPECT_EQ(ClaimedRuns().size(), 1u) << "only the first event started a run";
}

// A run that goes on at once gets its next call leased to the applier: no other claimer
// takes it, it carries a working lease, and its outcome applies like a claimed item's.
// A call due later, a second call or a wait are queued as by Apply.
TEST_P(StoreConformance, ApplyAndKeepLeasesTheRunsOneNextCallDueNowToTheApplier) {
  const std::string run = Start("app-plain");
  auto items = Claim();
  ASSERT_EQ(items.size(), 1u);
  const Transition step = StepThenDiscovery();
  auto kept = store_->ApplyAndKeep(items[0], step, clock_.Now(), 30s);
  ASSERT_THAT(kept, IsOk());
  ASSERT_TRUE(kept->kept.has_value());
  EXPECT_EQ(kept->kept->item.run_id, run);
  EXPECT_EQ(kept->kept->item.step_id, kDiscoveryStepId);
  EXPECT_EQ(kept->kept->item.attempt, 0);
  EXPECT_EQ(kept->kept->steps, std::nullopt) << "one call at a time: the applier's view is whole";
  EXPECT_TRUE(Claim().empty()) << "leased to the applier";
  EXPECT_THAT(store_->RenewLease(kept->kept->item, clock_.Now() + 30s), IsOk());
  EXPECT_THAT(End(kept->kept->item), IsOk());
  EXPECT_EQ(store_->GetRun(run)->status, kCompleted);

  // Not kept: a call due later is queued unleased.
  Start("app-plain");
  items = Claim();
  ASSERT_EQ(items.size(), 1u);
  Transition later;
  later.move =
      Transition::Continue{.next = {NextCall{std::string(kDiscoveryStepId), clock_.Now() + 5s}}};
  kept = store_->ApplyAndKeep(items[0], later, clock_.Now(), 30s);
  ASSERT_THAT(kept, IsOk());
  EXPECT_FALSE(kept->kept.has_value());
  clock_.Advance(5s);
  EXPECT_EQ(Claim().size(), 1u);

  // A lease lost before the record: nothing written, nothing kept.
  const std::string lost = Start("app-plain");
  items = Claim();
  ASSERT_EQ(items.size(), 1u);
  QueueItem stale = items[0];
  stale.lease_token = "someone-else";
  EXPECT_THAT(store_->ApplyAndKeep(stale, step, clock_.Now(), 30s), StatusIs(StatusCode::kAborted));
  EXPECT_TRUE(store_->GetSteps(lost)->empty());
}

// A kept call's lease runs on from its call's while two thirds of a lease remain, and is a
// whole lease from the keep otherwise: a kept call starts with two thirds of a lease at least,
// and its heartbeat renews the lease a third of a lease in.
TEST_P(StoreConformance, AKeptCallsLeaseRunsOnWhileTwoThirdsOfALeaseRemain) {
  Start("app-plain");
  auto items = Claim();  // leased for 30 s: until 30 s from now
  ASSERT_EQ(items.size(), 1u);
  clock_.Advance(5s);  // 25 s of the lease remain
  auto kept = store_->ApplyAndKeep(items[0], StepThenDiscovery(), clock_.Now(), 30s);
  ASSERT_THAT(kept, IsOk());
  ASSERT_TRUE(kept->kept.has_value());
  clock_.Advance(24s);  // 1 s of the claim's lease remains
  EXPECT_TRUE(Claim().empty()) << "the kept call's lease holds";
  clock_.Advance(2s);
  items = Claim();
  ASSERT_EQ(items.size(), 1u) << "the claim's lease, which the keep left as it was, is over";
  EXPECT_EQ(items[0].id, kept->kept->item.id);

  clock_.Advance(15s);  // 15 s of the new claim's lease remain: fewer than two thirds
  Transition step = StepThenDiscovery();
  step.steps[0].step_id = step.steps[0].name = "s2";
  kept = store_->ApplyAndKeep(items[0], step, clock_.Now(), 30s);
  ASSERT_THAT(kept, IsOk());
  ASSERT_TRUE(kept->kept.has_value());
  clock_.Advance(16s);  // the claim's lease is over; the keep's has 14 s to go
  EXPECT_TRUE(Claim().empty()) << "the keep renewed the lease to 30 s from itself";
  clock_.Advance(15s);
  EXPECT_EQ(Claim().size(), 1u);
}

// A claim can bring its calls' run states, read in its transaction: what LoadRunState reads
// after it, for a first call and for a later call of a run with steps.
TEST_P(StoreConformance, AClaimsRunStatesAreWhatALoadReads) {
  const std::string later = Start("app-plain");
  auto items = Claim();
  ASSERT_EQ(items.size(), 1u);
  const Transition step = StepThenDiscovery();
  ASSERT_THAT(store_->Apply(items[0], step, clock_.Now()), IsOk());
  const std::string first = Start("app-plain");

  std::vector<RunState> states;
  auto claimed = store_->Claim(10, clock_.Now(), 30s, &states);
  ASSERT_THAT(claimed, IsOk());
  ASSERT_EQ(claimed->size(), 2u);
  ASSERT_EQ(states.size(), 2u);
  for (size_t i = 0; i < 2; ++i) {
    auto loaded = store_->LoadRunState((*claimed)[i].run_id);
    ASSERT_THAT(loaded, IsOk());
    EXPECT_EQ(states[i].run.id, (*claimed)[i].run_id);
    EXPECT_EQ(states[i].run.status, kRunning);
    EXPECT_EQ(states[i].run.status, loaded->run.status);
    EXPECT_EQ(states[i].run.event_name, loaded->run.event_name);
    EXPECT_EQ(states[i].function.id, "app-plain");
    EXPECT_EQ(states[i].events, loaded->events);
    ASSERT_EQ(states[i].events.size(), 1u);
    ASSERT_EQ(states[i].steps.size(), loaded->steps.size());
    for (size_t s = 0; s < states[i].steps.size(); ++s) {
      EXPECT_EQ(states[i].steps[s].step_id, loaded->steps[s].step_id);
      EXPECT_EQ(states[i].steps[s].memo, loaded->steps[s].memo);
    }
  }
  EXPECT_EQ(states[0].run.id == later ? states[0].steps.size() : states[1].steps.size(), 1u);
  EXPECT_TRUE((states[0].run.id == first ? states[0] : states[1]).steps.empty());
}

// A kept call takes the applied item's place. Fan-in: the discovery call after a parallel
// step is neither kept nor queued while another call of the run is out, and the one that ends
// last keeps it, counting the other's step; a step recorded again (a call redone) counts once;
// a cancelled run keeps nothing.
TEST_P(StoreConformance, ApplyAndKeepWaitsForTheRunsOtherCallsAndCountsTheirSteps) {
  const std::string run = Start("app-plain");
  auto items = Claim();
  ASSERT_EQ(items.size(), 1u);
  Transition plan;
  plan.move =
      Transition::Continue{.next = {NextCall{"a", clock_.Now()}, NextCall{"b", clock_.Now()}}};
  ASSERT_THAT(store_->Apply(items[0], plan, clock_.Now()), IsOk());
  items = Claim();
  ASSERT_EQ(items.size(), 2u);
  const bool a_first = items[0].step_id == "a";
  const QueueItem a = items[a_first ? 0 : 1], b = items[a_first ? 1 : 0];
  auto kept = store_->ApplyAndKeep(a, BranchDone("a"), clock_.Now(), 30s);
  ASSERT_THAT(kept, IsOk());
  EXPECT_FALSE(kept->kept.has_value()) << "b is still out";
  EXPECT_TRUE(Claim().empty()) << "nothing queued: discovery waits for b";

  kept = store_->ApplyAndKeep(b, BranchDone("b"), clock_.Now(), 30s);
  ASSERT_THAT(kept, IsOk());
  ASSERT_TRUE(kept->kept.has_value());
  EXPECT_EQ(kept->kept->item.step_id, kDiscoveryStepId);
  EXPECT_EQ(kept->kept->steps, 2) << "a's step counts";

  kept = store_->ApplyAndKeep(kept->kept->item, BranchDone("b"), clock_.Now(), 30s);
  ASSERT_THAT(kept, IsOk());
  ASSERT_TRUE(kept->kept.has_value());
  EXPECT_EQ(kept->kept->steps, 2) << "b recorded again counts once";
  EXPECT_EQ(store_->GetSteps(run)->size(), 2u);

  ASSERT_THAT(store_->CancelRun(run, {{"name", "Cancelled"}}, clock_.Now()), IsOk());
  auto after = store_->ApplyAndKeep(kept->kept->item, BranchDone("c"), clock_.Now(), 30s);
  EXPECT_FALSE(after.ok() && after->kept.has_value()) << "a cancelled run keeps nothing";
  clock_.Advance(60s);
  EXPECT_TRUE(Claim().empty());
  EXPECT_EQ(RunStatus(run), kCancelled);
  EXPECT_EQ(store_->GetSteps(run)->size(), 2u);
}

// The end of a run deletes its other queued calls: a parallel branch's (a branch that sleeps,
// whichever way the ending call was applied) and a wait's timeout; a run that never had
// either leaves nothing queued either.
TEST_P(StoreConformance, ARunThatEndsLeavesNoQueuedCallBehind) {
  for (const bool kept : {false, true}) {
    const std::string run = Start("app-plain");
    auto items = Claim();
    ASSERT_EQ(items.size(), 1u);
    Transition plan;
    plan.move = Transition::Continue{
        .next = {NextCall{"a", clock_.Now()}, NextCall{"sleeper", clock_.Now() + 10s}}};
    ASSERT_THAT(store_->Apply(items[0], plan, clock_.Now()), IsOk());
    items = Claim();
    ASSERT_EQ(items.size(), 1u);
    ASSERT_EQ(items[0].step_id, "a");
    QueueItem last = items[0];
    if (kept) {
      ASSERT_NO_FATAL_FAILURE(KeepInPlace(&last));
    }
    ASSERT_THAT(End(last), IsOk());
    EXPECT_EQ(RunStatus(run), kCompleted);
    EXPECT_EQ(*store_->NextVisible(), std::nullopt) << (kept ? "kept" : "claimed");
    clock_.Advance(20s);
    EXPECT_TRUE(Claim().empty()) << (kept ? "kept" : "claimed");
  }
  // A sequential run: two steps in place, then its end.
  const std::string run = Start("app-plain");
  auto items = Claim();
  ASSERT_EQ(items.size(), 1u);
  QueueItem last = items[0];
  ASSERT_NO_FATAL_FAILURE(KeepInPlace(&last));
  ASSERT_THAT(End(last), IsOk());
  EXPECT_EQ(RunStatus(run), kCompleted);
  EXPECT_EQ(*store_->NextVisible(), std::nullopt);
}

// The calls of a run whose calls come one at a time (QueueItem::one_at_a_time: a new run's first
// call started at its ingest, and a call kept by an apply that found the run so) are applied
// in one flight, each alone: a step that keeps the run's next call, and the run's end with its
// end event. A claim that reads its calls' states marks them by their runs' rows; one that
// does not leaves them unmarked: such a call is applied the usual way (on PostgreSQL the run's
// statement, then the rest with the commit), and marks the call it keeps.
TEST_P(StoreConformance, TheCallsOfARunWhoseCallsComeOneAtATimeAreAppliedInOneFlight) {
  const bool pg = GetParam().name == "postgres";
  const std::string run = Start("app-plain");
  auto items = Claim();
  ASSERT_EQ(items.size(), 1u);
  QueueItem call = items[0];
  EXPECT_FALSE(call.one_at_a_time) << "claimed without its state";
  auto keep = [&](const std::string& step) {
    auto applied = store_->ApplyAndKeep(call, StepDone(step), clock_.Now(), 30s);
    ASSERT_THAT(applied, IsOk());
    ASSERT_TRUE(applied->kept.has_value());
    EXPECT_FALSE(applied->kept->steps.has_value()) << "no other call of the run recorded any";
    call = applied->kept->item;
  };
  int64_t trips = RoundTripsOf([&] { keep("a"); });
  if (pg) {
    EXPECT_EQ(trips, 2);
  }
  EXPECT_TRUE(call.one_at_a_time) << "the run's row said so";
  trips = RoundTripsOf([&] { keep("b"); });
  if (pg) {
    EXPECT_EQ(trips, 1);
  }
  EXPECT_TRUE(call.one_at_a_time);

  NewEvent finished = Event("inngest/function.finished");
  Transition end;
  end.move = Transition::End{kCompleted, "done", nullptr, {finished.event}};
  trips = RoundTripsOf([&] {
    auto applied = store_->ApplyAndKeep(call, end, clock_.Now(), 30s);
    ASSERT_THAT(applied, IsOk());
    EXPECT_FALSE(applied->kept.has_value());
    EXPECT_TRUE(applied->end_events_stored);
  });
  if (pg) {
    EXPECT_EQ(trips, 1);
  }
  EXPECT_EQ(RunStatus(run), kCompleted);
  auto steps = store_->GetSteps(run);
  ASSERT_THAT(steps, IsOk());
  ASSERT_EQ(steps->size(), 2u);
  EXPECT_EQ((*steps)[0].step_id, "a");
  EXPECT_EQ((*steps)[1].step_id, "b");
  EXPECT_EQ((*steps)[1].seq, 1);
  auto attempts = store_->GetAttempts(run);
  ASSERT_THAT(attempts, IsOk());
  EXPECT_EQ(attempts->size(), 2u);
  EXPECT_THAT(store_->GetEvent(finished.event.internal_id), IsOk()) << "stored with the end";
  EXPECT_EQ(*store_->NextVisible(), std::nullopt) << "no call of the run left";

  // Claimed with their states: a run whose calls came one at a time, and one that had calls in
  // parallel.
  const std::string plain = Start("app-plain");
  const std::string branched = Start("app-plain");
  std::vector<RunState> states;
  auto claimed = store_->Claim(10, clock_.Now(), 30s, &states);
  ASSERT_THAT(claimed, IsOk());
  ASSERT_EQ(claimed->size(), 2u);
  for (const QueueItem& item : *claimed) {
    if (item.run_id != branched) continue;
    Transition fan_out;
    fan_out.move =
        Transition::Continue{.next = {NextCall{"b1", clock_.Now()}, NextCall{"b2", clock_.Now()}}};
    ASSERT_THAT(store_->Apply(item, fan_out, clock_.Now()), IsOk());
  }
  clock_.Advance(1s);
  claimed = store_->Claim(10, clock_.Now(), 30s, &states);
  ASSERT_THAT(claimed, IsOk());
  ASSERT_EQ(claimed->size(), 2u) << "the branches";
  for (const QueueItem& item : *claimed) {
    EXPECT_EQ(item.run_id, branched);
    EXPECT_FALSE(item.one_at_a_time) << "its calls came in parallel";
  }
  clock_.Advance(31s);  // every lease expired
  claimed = store_->Claim(10, clock_.Now(), 30s, &states);
  ASSERT_THAT(claimed, IsOk());
  ASSERT_EQ(claimed->size(), 3u);
  bool branch_ended = false;
  for (const QueueItem& item : *claimed) {
    EXPECT_EQ(item.one_at_a_time, item.run_id == plain) << item.run_id;
    if (item.run_id != plain) {
      // The first branch ends the run; the other, in flight meanwhile, records nothing.
      if (!branch_ended) {
        ASSERT_THAT(End(item), IsOk());
      } else {
        EXPECT_TRUE(IsRunEndedMeanwhile(End(item)));
      }
      branch_ended = true;
      continue;
    }
    call = item;
    trips = RoundTripsOf([&] { keep("a"); });
    if (pg) {
      EXPECT_EQ(trips, 1);
    }
    ASSERT_THAT(End(call), IsOk());
  }
  EXPECT_EQ(RunStatus(plain), kCompleted);
  EXPECT_EQ(RunStatus(branched), kCompleted);
  ASSERT_THAT(store_->AckRunEnds({plain, branched}), IsOk());  // ended without events

  // A run started at its ingest: its first call comes one at a time already.
  QueueItem first = StartHere();
  EXPECT_TRUE(first.one_at_a_time);
  call = first;
  trips = RoundTripsOf([&] { keep("a"); });
  if (pg) {
    EXPECT_EQ(trips, 1);
  }
  trips = RoundTripsOf([&] { ASSERT_THAT(End(call), IsOk()); });
  if (pg) {
    EXPECT_EQ(trips, 1);
  }
  EXPECT_EQ(RunStatus(first.run_id), kCompleted);
  EXPECT_EQ(*store_->NextVisible(), std::nullopt);

  // An end whose event a run waits for leaves it to the run-end outbox, in one flight too.
  const std::string waiter = Start("app-plain");
  items = Claim();
  ASSERT_EQ(items.size(), 1u);
  NewWait wait;
  wait.step_id = wait.name = "w";
  wait.event_name = finished.event.name;
  wait.kind = kWaitEvent;
  wait.expires_at = clock_.Now() + 1h;
  Transition waiting;
  waiting.move = Transition::Continue{.waits = {wait}, .run_status = kWaiting};
  ASSERT_THAT(store_->Apply(items[0], waiting, clock_.Now()), IsOk());
  call = StartHere();
  finished = Event("inngest/function.finished");
  end.move = Transition::End{kCompleted, "done", nullptr, {finished.event}};
  trips = RoundTripsOf([&] {
    auto applied = store_->ApplyAndKeep(call, end, clock_.Now(), 30s);
    ASSERT_THAT(applied, IsOk());
    EXPECT_FALSE(applied->end_events_stored);
  });
  if (pg) {
    EXPECT_EQ(trips, 1);
  }
  EXPECT_EQ(RunStatus(call.run_id), kCompleted);
  EXPECT_THAT(store_->GetEvent(finished.event.internal_id), StatusIs(StatusCode::kNotFound));
  auto ends = store_->PendingRunEnds(0, 10);
  ASSERT_THAT(ends, IsOk());
  EXPECT_EQ(std::set<std::string>(ends->begin(), ends->end()),
            (std::set<std::string>{first.run_id, call.run_id}))
      << "the run that ended without events, and this one; not the one that stored its event";
}

// An ingest whose runs are each a row and a first call goes in one flight when alone, the first
// call it starts here with it, unless an event has an id of its own (an idempotency key, whose
// resends are duplicates). One that finds its event stored already, or the functions changed
// since it matched the event against them, writes nothing there and is made again the usual
// way, which tells so.
TEST_P(StoreConformance, AnIngestOfPlainRunsGoesInOneFlight) {
  const bool pg = GetParam().name == "postgres";
  auto generation = store_->FunctionGeneration();
  ASSERT_THAT(generation, IsOk());
  NewEvent ne = Event("test/e");
  NewRun run{NewUlid(UnixMillis(clock_.Now())), "app-plain"};
  run.may_start_here = true;
  ne.runs.push_back(run);
  StartedCalls start{.max = 1, .lease = 30s};
  const int64_t trips = RoundTripsOf([&] {
    auto stored = store_->IngestEvents({ne}, clock_.Now(), nullptr, &start, *generation);
    ASSERT_THAT(stored, IsOk());
    ASSERT_EQ(stored->size(), 1u);
    EXPECT_FALSE((*stored)[0].duplicate);
  });
  if (pg) {
    EXPECT_EQ(trips, 1);
  }
  ASSERT_EQ(start.items.size(), 1u);
  EXPECT_EQ(start.items[0].run_id, run.run_id);
  ASSERT_EQ(start.states.size(), 1u) << "its state, read with the commit";
  EXPECT_EQ(start.states[0].run.status, kRunning);
  EXPECT_EQ(RunStatus(run.run_id), kRunning);

  // The same event again (a resend, as the run-end outbox may make): a duplicate, nothing
  // started.
  NewEvent again = ne;
  again.runs[0].run_id = NewUlid(UnixMillis(clock_.Now()) + 1);
  auto stored = store_->IngestEvents({again}, clock_.Now(), nullptr, &start, *generation);
  ASSERT_THAT(stored, IsOk());
  EXPECT_TRUE((*stored)[0].duplicate);
  EXPECT_TRUE(start.items.empty());
  EXPECT_THAT(store_->GetRun(again.runs[0].run_id), StatusIs(StatusCode::kNotFound));

  // An event with an id of its own goes the usual way.
  NewEvent keyed = Event("test/e");
  keyed.event.id = "once";
  keyed.runs.push_back({NewUlid(UnixMillis(clock_.Now()) + 3), "app-plain"});
  const int64_t keyed_trips = RoundTripsOf([&] {
    ASSERT_THAT(store_->IngestEvents({keyed}, clock_.Now(), nullptr, nullptr, *generation), IsOk());
  });
  if (pg) {
    EXPECT_EQ(keyed_trips, 2) << "the events' insert, then the rest with the commit";
  }
  EXPECT_EQ(RunStatus(keyed.runs[0].run_id), kQueued);

  // Matched against the functions before a sync: nothing stored.
  NewEvent stale = Event("test/e");
  stale.runs.push_back({NewUlid(UnixMillis(clock_.Now()) + 2), "app-plain"});
  EXPECT_THAT(store_->IngestEvents({stale}, clock_.Now(), nullptr, nullptr, *generation - 1),
              StatusIs(StatusCode::kAborted));
  EXPECT_THAT(store_->GetEvent(stale.event.internal_id), StatusIs(StatusCode::kNotFound));
  EXPECT_THAT(store_->GetRun(stale.runs[0].run_id), StatusIs(StatusCode::kNotFound));
}

// An apply tried in one flight whose run's statement does not match writes nothing and is
// made again the usual way: a call that checkpointed steps keeps the next call all the same,
// which counts the run's steps (KeptCall::steps); the end of a run whose call checkpointed
// ends it; a call whose lease was lost writes nothing at all.
TEST_P(StoreConformance, AnApplyInOneFlightWhoseRunStatementDoesNotMatchIsMadeTheUsualWay) {
  const StepRecord checkpointed{"c", 0, "c", "completed", {{"data", "c"}}, 0};
  QueueItem call = StartHere();
  ASSERT_TRUE(call.one_at_a_time);
  ASSERT_THAT(store_->Checkpoint(call, {checkpointed}, {}, clock_.Now(), kAnySteps), IsOk());
  auto applied = store_->ApplyAndKeep(call, StepDone("a"), clock_.Now(), 30s);
  ASSERT_THAT(applied, IsOk());
  ASSERT_TRUE(applied->kept.has_value());
  EXPECT_EQ(applied->kept->steps, std::optional<int64_t>(2)) << "the checkpoint's and its own";
  EXPECT_FALSE(applied->kept->item.one_at_a_time) << "the run had steps beside its call";
  ASSERT_THAT(End(applied->kept->item), IsOk());
  EXPECT_EQ(RunStatus(call.run_id), kCompleted);

  QueueItem ending = StartHere();
  ASSERT_THAT(store_->Checkpoint(ending, {checkpointed}, {}, clock_.Now(), kAnySteps), IsOk());
  ASSERT_THAT(End(ending), IsOk());
  EXPECT_EQ(RunStatus(ending.run_id), kCompleted);
  EXPECT_EQ(*store_->NextVisible(), std::nullopt) << "no call of either run left";

  QueueItem lost = StartHere();
  ASSERT_TRUE(lost.one_at_a_time);
  lost.lease_token = "someone-else";
  EXPECT_THAT(store_->ApplyAndKeep(lost, StepDone("a"), clock_.Now(), 30s),
              StatusIs(StatusCode::kAborted));
  EXPECT_THAT(End(lost), StatusIs(StatusCode::kAborted));
  auto steps = store_->GetSteps(lost.run_id);
  ASSERT_THAT(steps, IsOk());
  EXPECT_TRUE(steps->empty());
  EXPECT_EQ(RunStatus(lost.run_id), kRunning);
}

// A host's checkpoint records the steps it ran within a call still in flight: only while the
// call holds its lease, each step once (the first record wins), with the call's attempt; the
// call stays leased and its reply is applied as usual after. A stale call's checkpoint (its
// lease taken over, or its run ended) writes nothing.
TEST_P(StoreConformance, ACheckpointRecordsStepsWhileItsCallHoldsTheLease) {
  const std::string run = Start("app-plain");
  auto items = Claim();
  ASSERT_EQ(items.size(), 1u);
  QueueItem call = items[0];
  auto step = RanStep;
  auto attempt = [&](const char* id) { return RanAttempt(id, UnixMillis(clock_.Now())); };
  const auto before = store_->RoundTrips();
  auto first = store_->Checkpoint(call, {step("a", 1)}, {attempt("a")}, clock_.Now(), kAnySteps);
  ASSERT_THAT(first, IsOk());
  EXPECT_EQ(first->function_id, "app-plain");
  ASSERT_EQ(first->attempts.size(), 1u);
  EXPECT_EQ(first->attempts[0].step_id, "a");
  if (GetParam().name == "postgres") {
    ASSERT_TRUE(before.has_value());
    EXPECT_EQ(*store_->RoundTrips() - *before, 2)
        << "the item's and the run's locks in one statement, then the rest with the commit";
  }
  clock_.Advance(1s);
  // "a" again (a checkpoint sent again, its answer lost) keeps its first record and is not
  // attempted twice; nor is a step that one body holds twice.
  auto again =
      store_->Checkpoint(call, {step("a", 9), step("b", 2), step("b", 3)},
                         {attempt("a"), attempt("b"), attempt("b")}, clock_.Now(), kAnySteps);
  ASSERT_THAT(again, IsOk());
  ASSERT_EQ(again->attempts.size(), 1u);
  EXPECT_EQ(again->attempts[0].step_id, "b");
  auto attempted = store_->GetAttempts(run);
  ASSERT_THAT(attempted, IsOk());
  ASSERT_EQ(attempted->size(), 2u);
  EXPECT_EQ((*attempted)[0].step_id, "a");
  EXPECT_EQ((*attempted)[1].step_id, "b");
  auto steps = store_->GetSteps(run);
  ASSERT_THAT(steps, IsOk());
  ASSERT_EQ(steps->size(), 2u);
  EXPECT_EQ((*steps)[0].step_id, "a");
  EXPECT_EQ((*steps)[0].memo, Json({{"data", 1}}));
  EXPECT_EQ((*steps)[1].step_id, "b");
  EXPECT_EQ((*steps)[1].seq, 1);
  auto state = store_->LoadRunState(run);
  ASSERT_THAT(state, IsOk());
  EXPECT_EQ(state->steps.size(), 2u);
  // Still leased: no claimer gets it, and the call's reply applies with its lease.
  EXPECT_TRUE(Claim().empty());
  ASSERT_THAT(End(call), IsOk());
  EXPECT_EQ(RunStatus(run), kCompleted);
  // Its run ended: refused.
  EXPECT_EQ(store_->Checkpoint(call, {step("c", 3)}, {attempt("c")}, clock_.Now(), kAnySteps)
                .status()
                .code(),
            StatusCode::kAborted);

  // A retried call's checkpoint records the attempt it is.
  const std::string retried = Start("app-plain");
  items = Claim();
  ASSERT_EQ(items.size(), 1u);
  ASSERT_THAT(Retry(items[0], 1s), IsOk());
  clock_.Advance(2s);
  items = Claim();
  ASSERT_EQ(items.size(), 1u);
  ASSERT_EQ(items[0].attempt, 1);
  ASSERT_THAT(store_->Checkpoint(items[0], {step("a", 1)}, {attempt("a")}, clock_.Now(), kAnySteps),
              IsOk());
  auto attempts = store_->GetAttempts(retried);
  ASSERT_THAT(attempts, IsOk());
  ASSERT_EQ(attempts->size(), 1u);
  EXPECT_EQ((*attempts)[0].attempt, 1);
  EXPECT_EQ((*attempts)[0].ended_at_ms - (*attempts)[0].started_at_ms, 5);

  // Its lease expired and another claimer took the call: the first holder's checkpoint (and
  // one under a made-up token, or naming another run) is refused and writes nothing.
  QueueItem stale = items[0];
  clock_.Advance(31s);
  items = Claim();
  ASSERT_EQ(items.size(), 1u);
  EXPECT_EQ(store_->Checkpoint(stale, {step("z", 0)}, {attempt("z")}, clock_.Now(), kAnySteps)
                .status()
                .code(),
            StatusCode::kAborted);
  QueueItem forged = items[0];
  forged.lease_token = "00";
  EXPECT_EQ(store_->Checkpoint(forged, {step("z", 0)}, {attempt("z")}, clock_.Now(), kAnySteps)
                .status()
                .code(),
            StatusCode::kAborted);
  QueueItem elsewhere = items[0];
  elsewhere.run_id = run;
  EXPECT_EQ(store_->Checkpoint(elsewhere, {step("z", 0)}, {attempt("z")}, clock_.Now(), kAnySteps)
                .status()
                .code(),
            StatusCode::kAborted);
  steps = store_->GetSteps(retried);
  ASSERT_THAT(steps, IsOk());
  ASSERT_EQ(steps->size(), 1u);
  EXPECT_EQ((*steps)[0].step_id, "a");
  attempts = store_->GetAttempts(retried);
  ASSERT_THAT(attempts, IsOk());
  EXPECT_EQ(attempts->size(), 1u);
  ASSERT_THAT(store_->Checkpoint(items[0], {step("b", 2)}, {attempt("b")}, clock_.Now(), kAnySteps),
              IsOk());
}

// A checkpoint that would take its run past the step limit is refused and writes nothing; a
// step recorded already, or one the body repeats, is not counted again. The call keeps its
// lease.
TEST_P(StoreConformance, ACheckpointPastTheStepLimitWritesNothing) {
  const std::string run = Start("app-plain");
  auto items = Claim();
  ASSERT_EQ(items.size(), 1u);
  const QueueItem call = items[0];
  const int64_t now = UnixMillis(clock_.Now());
  ASSERT_THAT(store_->Checkpoint(call, {RanStep("a", 1), RanStep("b", 2)},
                                 {RanAttempt("a", now), RanAttempt("b", now)}, clock_.Now(), 3),
              IsOk());
  // "a" again and "c" twice: the run has three steps, the limit.
  ASSERT_THAT(store_->Checkpoint(call, {RanStep("a", 1), RanStep("c", 3), RanStep("c", 3)},
                                 {RanAttempt("a", now), RanAttempt("c", now)}, clock_.Now(), 3),
              IsOk());
  auto refused = store_->Checkpoint(call, {RanStep("a", 1), RanStep("d", 4)},
                                    {RanAttempt("a", now), RanAttempt("d", now)}, clock_.Now(), 3);
  EXPECT_THAT(refused, StatusIs(StatusCode::kResourceExhausted, HasSubstr("step limit of 3")));
  auto steps = store_->GetSteps(run);
  ASSERT_THAT(steps, IsOk());
  EXPECT_EQ(steps->size(), 3u);
  auto attempts = store_->GetAttempts(run);
  ASSERT_THAT(attempts, IsOk());
  EXPECT_EQ(attempts->size(), 3u);
  // A limit one higher takes it.
  ASSERT_THAT(store_->Checkpoint(call, {RanStep("d", 4)}, {RanAttempt("d", now)}, clock_.Now(), 4),
              IsOk());
  EXPECT_TRUE(Claim().empty()) << "the call is still leased";
  ASSERT_THAT(End(call), IsOk());
  EXPECT_EQ(RunStatus(run), kCompleted);
}

// A run's steps hold at most kMaxLoadedStepBytes as a checkpoint records them: one that would
// take them past it writes nothing. A run whose steps hold more all the same (steps recorded
// beside its calls, here written directly) is read without them, saying how many bytes they
// hold: a coordinator never reads gigabytes of a run to find it cannot call it.
TEST_P(StoreConformance, ARunsStepsPastTheLoadBoundAreRefusedByACheckpointAndNotRead) {
  const std::string run = Start("app-plain");
  auto items = Claim();
  ASSERT_EQ(items.size(), 1u);
  const QueueItem call = items[0];
  auto big = [](const char* id, size_t bytes) {
    return StepRecord{id, 0, id, "completed", Json{{"data", std::string(bytes, 'x')}}, 0};
  };
  constexpr size_t kMiB = 1 << 20;
  ASSERT_THAT(store_->Checkpoint(call, {big("a", 30 * kMiB)}, {}, clock_.Now(), 100), IsOk());
  ASSERT_THAT(store_->Checkpoint(call, {big("b", 30 * kMiB)}, {}, clock_.Now(), 100), IsOk());
  EXPECT_THAT(store_->Checkpoint(call, {big("c", 5 * kMiB)}, {}, clock_.Now(), 100),
              StatusIs(StatusCode::kResourceExhausted, HasSubstr("a run's steps may hold")));
  ASSERT_THAT(store_->Checkpoint(call, {big("d", 1024)}, {}, clock_.Now(), 100), IsOk());
  auto state = store_->LoadRunState(run);
  ASSERT_THAT(state, IsOk());
  EXPECT_EQ(state->steps.size(), 3u);
  EXPECT_EQ(state->unloaded_step_bytes, 0);

  // The bound sums the bytes recorded with each step (its memo's compact JSON), not the
  // memos: told that "d" holds 4 MiB, a checkpoint of 1 KiB more is refused.
  int64_t d_bytes = 0;
  ASSERT_THAT(db_->Transact([&](sql::Tx& tx) {
    d_bytes = tx.Count("SELECT memo_bytes FROM steps WHERE run_id = $1 AND step_id = 'd'", {run});
    tx.Exec("UPDATE steps SET memo_bytes = $2 WHERE run_id = $1 AND step_id = 'd'",
            {run, int64_t{4 * kMiB}});
    return Status::Ok();
  }),
              IsOk());
  EXPECT_EQ(d_bytes, static_cast<int64_t>(big("d", 1024).memo.dump().size()));
  EXPECT_THAT(store_->Checkpoint(call, {big("f", 1024)}, {}, clock_.Now(), 100),
              StatusIs(StatusCode::kResourceExhausted, HasSubstr("a run's steps may hold")));
  state = store_->LoadRunState(run);  // and the load's sum, with "d" told to hold 4 MiB
  ASSERT_THAT(state, IsOk());
  EXPECT_TRUE(state->steps.empty());
  EXPECT_GT(state->unloaded_step_bytes, kMaxLoadedStepBytes);
  ASSERT_THAT(db_->Transact([&](sql::Tx& tx) {
    tx.Exec("UPDATE steps SET memo_bytes = $2 WHERE run_id = $1 AND step_id = 'd'", {run, d_bytes});
    return Status::Ok();
  }),
              IsOk());

  // A step recorded without its bytes (before they were recorded, migration 0034) is measured.
  const std::string more = Json{{"data", std::string(5 * kMiB, 'y')}}.dump();
  ASSERT_THAT(db_->Transact([&](sql::Tx& tx) {
    tx.Exec(
        "INSERT INTO steps (run_id, step_id, seq, name, status, memo, created_at_ms) "
        "VALUES ($1, 'e', 9, 'e', 'completed', $2::jsonb, 0)",
        {run, more});
    return Status::Ok();
  }),
              IsOk());
  state = store_->LoadRunState(run);
  ASSERT_THAT(state, IsOk());
  EXPECT_TRUE(state->steps.empty());
  EXPECT_GT(state->unloaded_step_bytes, kMaxLoadedStepBytes);
  EXPECT_LT(state->unloaded_step_bytes, kMaxLoadedStepBytes + 2 * int64_t{kMiB});
  EXPECT_EQ(state->events.size(), 1u) << "the rest of the state is read";
  EXPECT_EQ(state->run.id, run);
}

// An ingest may lease new runs' first calls to its caller (StartedCalls): at most `max`, only
// runs created with nothing but a row and a first call (or a free lane's, below) that may
// start there, each running
// with its state as a claim reads it; the others are queued for claims. A started call is
// applied with its lease like a claimed one, and is claimable again once its lease expired.
TEST_P(StoreConformance, AnIngestStartsSomeFirstCallsAtOnce) {
  NewEvent ne = Event("test/e");
  auto run = [&](bool here, bool with_deadline = false) {
    NewRun r{NewUlid(UnixMillis(clock_.Now())), "app-plain"};
    r.may_start_here = here;
    if (with_deadline) r.timeouts = RunTimeouts{.start = 1h};
    ne.runs.push_back(r);
    return r.run_id;
  };
  const std::string with_deadline = run(true, true);
  const std::string not_allowed = run(false);
  const std::string started = run(true);
  const std::string beyond_max = run(true);
  StartedCalls start{.max = 1, .lease = 30s};
  ASSERT_THAT(store_->IngestEvents({ne}, clock_.Now(), nullptr, &start), IsOk());
  ASSERT_EQ(start.items.size(), 1u) << "at most max, and not the run with a deadline";
  ASSERT_EQ(start.states.size(), 1u);
  EXPECT_EQ(start.items[0].run_id, started);
  EXPECT_EQ(start.items[0].step_id, kDiscoveryStepId);
  EXPECT_FALSE(start.items[0].lease_token.empty());
  EXPECT_EQ(start.states[0].run.id, started);
  EXPECT_EQ(start.states[0].run.status, kRunning);
  EXPECT_EQ(start.states[0].function.id, "app-plain");
  ASSERT_EQ(start.states[0].events.size(), 1u);
  EXPECT_EQ(start.states[0].events[0]["name"], "test/e");
  EXPECT_TRUE(start.states[0].steps.empty());

  std::set<std::string> claimed;
  for (const QueueItem& item : Claim()) claimed.insert(item.run_id);
  EXPECT_EQ(claimed, (std::set<std::string>{not_allowed, with_deadline, beyond_max}));

  clock_.Advance(31s);  // the started call's lease expired: it is anyone's again
  auto again = Claim();
  ASSERT_EQ(again.size(), 4u) << "the three claimed ones' leases (30 s) expired too";
  EXPECT_THAT(End(start.items[0]), StatusIs(StatusCode::kAborted)) << "its lease is gone";
  for (const QueueItem& item : again) {
    if (item.run_id == started) {
      EXPECT_THAT(End(item), IsOk());
    }
  }
  EXPECT_EQ(RunStatus(started), kCompleted);

  // Applied with its lease: the run goes on as after a claim.
  const QueueItem second = StartHere();
  auto held = store_->ApplyAndKeep(second, StepThenDiscovery(), clock_.Now(), 30s);
  ASSERT_THAT(held, IsOk());
  ASSERT_TRUE(held->kept.has_value());
  ASSERT_THAT(End(held->kept->item), IsOk());
  EXPECT_EQ(RunStatus(second.run_id), kCompleted);
  EXPECT_EQ(store_->GetSteps(second.run_id)->size(), 1u);
}

// A lane's run may start at its ingest too, when its lane is free: it becomes the head with its
// first call leased to the caller; a later run of the key waits behind it as usual, and a
// sequence lane's run always goes through a claim.
TEST_P(StoreConformance, AnIngestStartsAFreeLanesRunAtOnce) {
  auto send = [&](const std::string& key, std::optional<LaneSequencing> seq = std::nullopt) {
    NewEvent ne = Event("test/e");
    NewRun r{NewUlid(UnixMillis(clock_.Now())), "app-ordered", key};
    r.may_start_here = true;
    r.sequencing = seq;
    if (seq) r.lane_number = 1;
    ne.runs.push_back(r);
    StartedCalls start{.max = 4, .lease = 30s};
    EXPECT_THAT(store_->IngestEvents({ne}, clock_.Now(), nullptr, &start), IsOk());
    return std::pair{r.run_id, start};
  };
  auto [head, started] = send("k");
  ASSERT_EQ(started.items.size(), 1u);
  EXPECT_EQ(started.items[0].run_id, head);
  ASSERT_EQ(started.states.size(), 1u);
  EXPECT_EQ(started.states[0].run.lane_key, "k");
  EXPECT_EQ(RunStatus(head), kRunning);
  auto [second, behind] = send("k");
  EXPECT_TRUE(behind.items.empty()) << "its lane has a head";
  EXPECT_TRUE(Claim().empty()) << "the head is leased, the second waits behind it";
  ASSERT_THAT(End(started.items[0]), IsOk());
  auto next = Claim();
  ASSERT_EQ(next.size(), 1u);
  EXPECT_EQ(next[0].run_id, second);

  auto [numbered, sequenced] = send("s", LaneSequencing{});
  EXPECT_TRUE(sequenced.items.empty()) << "a sequence lane's head is chosen by a claim";
  auto claimed = Claim();
  ASSERT_EQ(claimed.size(), 1u);
  EXPECT_EQ(claimed[0].run_id, numbered);
}

// Runs `apply(i)` for i in [0, n) on threads of their own while a load's transaction is
// held, so that they wait for its group and then share the next one (InGroup); returns
// their results and how often the store waited for the database for that group.
template <typename Apply>
std::pair<std::vector<Result<Applied>>, std::optional<int64_t>> InOneGroup(
    Store& store, FaultyDatabase& db, const std::string& run_to_load, int n, Apply apply) {
  // What the held load's transaction itself waits.
  const auto before_load = store.RoundTrips();
  EXPECT_THAT(store.LoadRunState(run_to_load), IsOk());
  const auto load_trips = store.RoundTrips();
  db.hold_next = true;
  std::thread holder([&] { EXPECT_THAT(store.LoadRunState(run_to_load), IsOk()); });
  while (!db.held) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  const auto before = store.RoundTrips();
  std::vector<Result<Applied>> applied(n, Unavailable("not run"));
  std::vector<std::thread> threads;
  for (int i = 0; i < n; ++i) threads.emplace_back([&, i] { applied[i] = apply(i); });
  // All wait for the held group, each with its one piece.
  auto& sql_store = dynamic_cast<SqlStore&>(store);
  while (sql_store.PiecesWaitingForAGroup() < static_cast<size_t>(n)) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  db.Release();
  holder.join();
  for (std::thread& t : threads) t.join();
  std::optional<int64_t> trips;
  if (before && load_trips) {
    trips = (*store.RoundTrips() - *before) - (*load_trips - *before_load);
  }
  return {std::move(applied), trips};
}

// The applies of a group's transaction send their first statements (the run's, whose gate
// checks the lease) together and wait for the database once for all of them, not once each:
// four applies then wait three times with their commit on PostgreSQL, where they waited five
// times: the first parts together, the item of the one whose lease was lost tried once more
// (its run's statement matched nothing: the item takes a new token, which tells a lost lease
// apart), then the rest with the commit. Each still has its own outcome: three record their
// steps and keep their runs' next calls on their items as they are, one whose lease was lost
// writes nothing.
TEST_P(StoreConformance, AGroupsAppliesOfDifferentRunsWaitForTheDatabaseOnceTogether) {
  std::vector<std::string> runs;
  for (int i = 0; i < 4; ++i) runs.push_back(Start("app-plain"));
  const std::string loaded = Start("app-one");
  auto items = Claim();
  ASSERT_EQ(items.size(), 5u);
  std::erase_if(items, [&](const QueueItem& item) { return item.run_id == loaded; });
  ASSERT_EQ(items.size(), 4u);
  items[2].lease_token = "someone-else";  // lost
  auto [applied, trips] = InOneGroup(*store_, *db_, loaded, 4, [&](int i) {
    return store_->ApplyAndKeep(items[i], StepThenDiscovery(), clock_.Now(), 30s);
  });
  for (int i = 0; i < 4; ++i) {
    SCOPED_TRACE(i);
    if (i == 2) {
      EXPECT_THAT(applied[i], StatusIs(StatusCode::kAborted));
      EXPECT_TRUE(store_->GetSteps(items[i].run_id)->empty());
      continue;
    }
    ASSERT_THAT(applied[i], IsOk());
    ASSERT_TRUE(applied[i]->kept.has_value());
    EXPECT_EQ(applied[i]->kept->item.step_id, kDiscoveryStepId);
    EXPECT_EQ(applied[i]->kept->item.lease_token, items[i].lease_token);
    EXPECT_EQ(store_->GetSteps(items[i].run_id)->size(), 1u);
    EXPECT_THAT(store_->RenewLease(applied[i]->kept->item, clock_.Now() + 30s), IsOk());
  }
  if (GetParam().name == "postgres") {
    ASSERT_TRUE(trips.has_value());
    EXPECT_EQ(*trips, 3) << "the first parts together, the lost lease's item once more, then "
                            "the rest with the commit";
  }
  clock_.Advance(60s);  // the leases expire: the kept calls, the lost lease's item and the
  EXPECT_EQ(Claim().size(), 5u);  // loaded run's come back
}

// A checkpoint refused for the step limit writes nothing, so the applies that share its
// group's transaction commit with it: the group is not rolled back, each of its pieces made
// again in a transaction of its own (on PostgreSQL that took 11 waits for the database, where
// the group takes 3 or 4).
TEST_P(StoreConformance, ACheckpointPastTheStepLimitInAGroupLetsTheOthersCommitWithIt) {
  for (int i = 0; i < 4; ++i) Start("app-plain");
  const std::string loaded = Start("app-one");
  auto items = Claim();
  ASSERT_EQ(items.size(), 5u);
  std::erase_if(items, [&](const QueueItem& item) { return item.run_id == loaded; });
  ASSERT_EQ(items.size(), 4u);
  auto [applied, trips] = InOneGroup(*store_, *db_, loaded, 4, [&](int i) -> Result<Applied> {
    if (i < 3) return store_->ApplyAndKeep(items[i], StepThenDiscovery(), clock_.Now(), 30s);
    const int64_t now = UnixMillis(clock_.Now());
    auto refused =
        store_->Checkpoint(items[i], {RanStep("a", 1), RanStep("b", 2)},
                           {RanAttempt("a", now), RanAttempt("b", now)}, clock_.Now(), 1);
    if (!refused.ok()) return refused.status();
    return Applied{};
  });
  EXPECT_THAT(applied[3], StatusIs(StatusCode::kResourceExhausted));
  EXPECT_TRUE(store_->GetSteps(items[3].run_id)->empty());
  for (int i = 0; i < 3; ++i) {
    SCOPED_TRACE(i);
    ASSERT_THAT(applied[i], IsOk());
    EXPECT_EQ(store_->GetSteps(items[i].run_id)->size(), 1u);
  }
  if (GetParam().name == "postgres") {
    ASSERT_TRUE(trips.has_value());
    EXPECT_LE(*trips, 4) << "the applies' first parts (in one wave, or two when the "
                            "checkpoint's run sorts between theirs), the checkpoint's reads, the "
                            "rest with the commit";
  }
}

// The ends of lanes' heads in one group lock their lanes and read their next runs with their
// first statements, and wait for the database once together with the group's other applies
// (a step of another lane's head among them): twice with the commit on PostgreSQL, where
// each end waited twice more, and once more for the end whose lease was lost (its run's
// statement, which checks the lease, matched nothing: it looks at its item to say why).
// Each lane moves on alone: a head whose lease was lost keeps its lane, the others hand
// theirs to their next runs.
TEST_P(StoreConformance, AGroupsEndsOfLaneHeadsWaitForTheDatabaseOnceTogether) {
  std::vector<std::string> heads, behind;
  for (int i = 0; i < 4; ++i) {
    const std::string key = "lane-" + std::to_string(i);
    heads.push_back(Start("app-ordered", key));
    behind.push_back(Start("app-ordered", key));
  }
  const std::string loaded = Start("app-one");
  auto items = Claim();
  ASSERT_EQ(items.size(), 5u) << "four heads and the loaded run";
  std::erase_if(items, [&](const QueueItem& item) { return item.run_id == loaded; });
  std::sort(items.begin(), items.end(), [&](const QueueItem& a, const QueueItem& b) {
    return std::find(heads.begin(), heads.end(), a.run_id) <
           std::find(heads.begin(), heads.end(), b.run_id);
  });
  ASSERT_EQ(items[0].run_id, heads[0]);
  items[1].lease_token = "someone-else";  // lost
  auto [applied, trips] = InOneGroup(*store_, *db_, loaded, 4, [&](int i) {
    Transition t = i == 3 ? StepThenDiscovery() : Transition{};
    if (i != 3) t.move = Transition::End{kCompleted, "done", nullptr};
    t.lane = {{"app-ordered", "lane-" + std::to_string(i)}};  // as the executor sets it
    return store_->ApplyAndKeep(items[i], t, clock_.Now(), 30s);
  });
  EXPECT_THAT(applied[0], IsOk());
  EXPECT_THAT(applied[1], StatusIs(StatusCode::kAborted));
  EXPECT_THAT(applied[2], IsOk());
  ASSERT_THAT(applied[3], IsOk());
  EXPECT_TRUE(applied[3]->kept.has_value()) << "the stepped head keeps its next call";
  if (GetParam().name == "postgres") {
    ASSERT_TRUE(trips.has_value());
    EXPECT_EQ(*trips, 3) << "the first parts (the ends' lane reads too); the lost lease's "
                            "look at its item, as its run's statement matched nothing; then "
                            "the rest with the commit";
  }
  EXPECT_EQ(RunStatus(heads[0]), kCompleted);
  EXPECT_EQ(RunStatus(heads[1]), kRunning) << "its lease was lost: nothing written";
  EXPECT_EQ(RunStatus(heads[2]), kCompleted);
  EXPECT_EQ(RunStatus(heads[3]), kRunning) << "a step: it goes on";
  std::set<std::string> next;
  for (const QueueItem& item : Claim()) next.insert(item.run_id);
  EXPECT_EQ(next, (std::set<std::string>{behind[0], behind[2]}))
      << "the next runs of the lanes whose heads ended, and nothing else";
}

// The runs of one ingest in lanes that order by acceptance take their places from the lanes'
// rows, read with the events' insert: in the events' order, the first in a free lane is its
// head (started here while the caller takes more), the others wait behind their lanes'
// heads. However many runs, the ingest waits for PostgreSQL twice: the events' insert and the
// commit.
TEST_P(StoreConformance, AnIngestPlacesItsLaneRunsWithTheEventsInsert) {
  const std::string busy_head = Start("app-ordered", "busy");
  const auto before = store_->RoundTrips();
  std::vector<NewEvent> events;
  std::vector<std::string> runs;
  for (const char* key : {"a", "b", "a", "busy", "b", "a"}) {
    NewEvent ne = Event("test/e");
    NewRun r{NewUlid(UnixMillis(clock_.Now())), "app-ordered", std::string(key)};
    r.may_start_here = true;
    ne.runs.push_back(r);
    runs.push_back(r.run_id);
    events.push_back(std::move(ne));
  }
  StartedCalls started{.max = 1, .lease = 30s};
  ASSERT_THAT(store_->IngestEvents(events, clock_.Now(), nullptr, &started), IsOk());
  if (GetParam().name == "postgres") {
    ASSERT_TRUE(before.has_value());
    EXPECT_EQ(*store_->RoundTrips() - *before, 2);
  }
  ASSERT_EQ(started.items.size(), 1u) << "the caller takes one";
  EXPECT_EQ(started.items[0].run_id, runs[0]) << "lane a's head";
  ASSERT_EQ(started.states.size(), 1u);
  EXPECT_EQ(RunStatus(runs[0]), kRunning);
  // Lane b's head has its first call queued; everything else waits behind a head.
  auto claimed = Claim();
  std::set<std::string> ids;
  for (const QueueItem& item : claimed) ids.insert(item.run_id);
  EXPECT_EQ(ids, (std::set<std::string>{busy_head, runs[1]}));
  // Each lane hands on in the events' order.
  auto end_and_claim = [&](const QueueItem& item) {
    EXPECT_THAT(End(item), IsOk());
    return Claim();
  };
  auto item_of = [&](const std::vector<QueueItem>& items, const std::string& run) {
    for (const QueueItem& item : items) {
      if (item.run_id == run) return item;
    }
    ADD_FAILURE() << "no item of run " << run;
    return QueueItem{};
  };
  auto next = end_and_claim(started.items[0]);
  ASSERT_EQ(next.size(), 1u);
  EXPECT_EQ(next[0].run_id, runs[2]);
  next = end_and_claim(next[0]);
  ASSERT_EQ(next.size(), 1u);
  EXPECT_EQ(next[0].run_id, runs[5]);
  next = end_and_claim(item_of(claimed, runs[1]));
  ASSERT_EQ(next.size(), 1u);
  EXPECT_EQ(next[0].run_id, runs[4]);
  next = end_and_claim(item_of(claimed, busy_head));
  ASSERT_EQ(next.size(), 1u);
  EXPECT_EQ(next[0].run_id, runs[3]);
}

// Two calls of one run in one group: the second is applied after the first, as if in
// transactions of their own. Fan-in: the one applied first finds the other still out and
// keeps nothing; the other keeps the discovery call and counts both steps.
TEST_P(StoreConformance, TwoCallsOfOneRunInOneGroupAreAppliedOneAfterTheOther) {
  const std::string other = Start("app-plain");
  const std::string run = Start("app-plain");
  const std::string loaded = Start("app-one");
  auto items = Claim();
  ASSERT_EQ(items.size(), 3u);
  QueueItem other_item;
  for (const QueueItem& item : items) {
    if (item.run_id == other) other_item = item;
    if (item.run_id != run) continue;
    Transition plan;
    plan.move =
        Transition::Continue{.next = {NextCall{"a", clock_.Now()}, NextCall{"b", clock_.Now()}}};
    ASSERT_THAT(store_->Apply(item, plan, clock_.Now()), IsOk());
  }
  auto branches = Claim();
  ASSERT_EQ(branches.size(), 2u);
  items = {other_item, branches[0], branches[1]};
  auto [applied, trips] = InOneGroup(*store_, *db_, loaded, 3, [&](int i) {
    return store_->ApplyAndKeep(items[i], BranchDone(i == 0 ? "s1" : items[i].step_id),
                                clock_.Now(), 30s);
  });
  for (const auto& a : applied) ASSERT_THAT(a, IsOk());
  EXPECT_TRUE(applied[0]->kept.has_value()) << "the other run goes on";
  EXPECT_NE(applied[1]->kept.has_value(), applied[2]->kept.has_value())
      << "one branch keeps the discovery call";
  const auto& kept = applied[1]->kept ? applied[1]->kept : applied[2]->kept;
  ASSERT_TRUE(kept.has_value());
  EXPECT_EQ(kept->item.step_id, kDiscoveryStepId);
  EXPECT_EQ(kept->steps, 2) << "the other branch's step counts";
  EXPECT_EQ(store_->GetSteps(run)->size(), 2u);
  EXPECT_TRUE(Claim().empty()) << "the discovery call is leased, not queued as well";
}

// An apply that might have kept a call, and whose commit outcome is unknown, gives that call
// back at the next claim instead of leaving it leased to nobody for a whole lease.
TEST_P(StoreConformance, ACallKeptByAnApplyWhoseCommitOutcomeIsUnknownComesBackAtTheNextClaim) {
  const std::string run = Start("app-plain");
  auto items = Claim();
  ASSERT_EQ(items.size(), 1u);
  Transition t = StepThenDiscovery();
  t.attempts.push_back({"s1", "first", 0, "completed", nullptr, 1, 2});
  db_->fail_next_commit = true;
  EXPECT_THAT(store_->ApplyAndKeep(items[0], t, clock_.Now(), 30s),
              StatusIs(StatusCode::kUnavailable));
  EXPECT_EQ(store_->GetSteps(run)->size(), 1u) << "it did commit";
  // The kept call kept its item as it was, under the call's token: the holder's retry of the
  // same record is refused rather than recorded twice.
  EXPECT_THAT(store_->ApplyAndKeep(items[0], t, clock_.Now(), 30s), StatusIs(StatusCode::kAborted));
  EXPECT_EQ(store_->GetAttempts(run)->size(), 1u);
  auto again = Claim();
  ASSERT_EQ(again.size(), 1u);
  EXPECT_EQ(again[0].run_id, run);
  EXPECT_EQ(again[0].step_id, kDiscoveryStepId);
  EXPECT_THAT(End(again[0]), IsOk());
  EXPECT_EQ(RunStatus(run), kCompleted);
}

// A group of applies whose commit outcome is unknown is not made again piece by piece: it may
// have been written, and a call kept with its item as it is would be recorded twice (its
// attempt's row twice). Each apply is told the outcome is unknown, and its call comes back at
// the next claim.
TEST_P(StoreConformance, AGroupWhoseCommitOutcomeIsUnknownIsNotMadeAgainPieceByPiece) {
  constexpr int kRuns = 24;
  std::vector<std::string> runs;
  for (int i = 0; i < kRuns; ++i) runs.push_back(Start("app-plain"));
  std::vector<QueueItem> items = Claim();
  ASSERT_EQ(items.size(), static_cast<size_t>(kRuns));
  Transition step = StepThenDiscovery();
  step.attempts.push_back({"s1", "first", 0, "completed", nullptr, 1, 2});
  std::vector<Result<Applied>> applied(kRuns, Unavailable("not run"));
  // The first apply's transaction waits; the others queue behind it until enough wait for a
  // second group, whose commit is then the one whose outcome is unknown.
  db_->hold_next = true;
  std::vector<std::thread> threads;
  threads.emplace_back(
      [&] { applied[0] = store_->ApplyAndKeep(items[0], step, clock_.Now(), 30s); });
  while (!db_->held) std::this_thread::sleep_for(1ms);
  db_->fail_next_commit = true;
  for (int i = 1; i < kRuns; ++i) {
    threads.emplace_back(
        [&, i] { applied[i] = store_->ApplyAndKeep(items[i], step, clock_.Now(), 30s); });
  }
  while (db_->commits_failed == 0) std::this_thread::sleep_for(1ms);
  db_->Release();
  for (std::thread& t : threads) t.join();
  int unknown = 0;
  for (int i = 0; i < kRuns; ++i) {
    const std::string& run = items[i].run_id;
    EXPECT_EQ(store_->GetAttempts(run)->size(), 1u) << run;
    EXPECT_EQ(store_->GetSteps(run)->size(), 1u) << run;
    if (applied[i].ok()) continue;
    EXPECT_TRUE(IsCommitOutcomeUnknown(applied[i].status())) << applied[i].status().ToString();
    ++unknown;
    // Its holder's retry is refused rather than recorded again.
    EXPECT_THAT(store_->ApplyAndKeep(items[i], step, clock_.Now(), 30s),
                StatusIs(StatusCode::kAborted));
  }
  EXPECT_GE(unknown, 2) << "a group's pieces";
  EXPECT_EQ(Claim().size(), static_cast<size_t>(unknown)) << "their calls come back";
}

// The calls a claim leased together share its lease token: an apply of one of them whose
// commit outcome is unknown gives back only its own call. (It gave back every item under the
// token: the others, in flight at their hosts, were claimed and made again beside them, and
// their own outcomes were refused.)
TEST_P(StoreConformance, AnApplyWhoseOutcomeIsUnknownGivesBackOnlyItsOwnCallOfTheClaim) {
  const std::string first = Start("app-plain");
  const std::string second = Start("app-plain");
  auto items = Claim();
  ASSERT_EQ(items.size(), 2u);
  ASSERT_EQ(items[0].lease_token, items[1].lease_token);
  const QueueItem& doubtful = items[0].run_id == first ? items[0] : items[1];
  const QueueItem& other = items[0].run_id == first ? items[1] : items[0];
  db_->fail_next_commit = true;
  EXPECT_THAT(store_->ApplyAndKeep(doubtful, StepThenDiscovery(), clock_.Now(), 30s),
              StatusIs(StatusCode::kUnavailable));
  auto again = Claim();
  ASSERT_EQ(again.size(), 1u) << "the other call is still in flight";
  EXPECT_EQ(again[0].run_id, first);
  EXPECT_THAT(End(other), IsOk());
  EXPECT_EQ(RunStatus(second), kCompleted);
  EXPECT_THAT(End(again[0]), IsOk());
  EXPECT_EQ(RunStatus(first), kCompleted);
}

// An apply that kept its call with the item as it is and lost a conflict every time was
// rolled back: its holder's retry goes ahead (nothing to give back).
TEST_P(StoreConformance, AKeptApplyThatLostItsConflictsIsRetriedByItsHolder) {
  const std::string run = Start("app-plain");
  auto items = Claim();
  ASSERT_EQ(items.size(), 1u);
  db_->conflicts = 3;
  auto refused = store_->ApplyAndKeep(items[0], StepThenDiscovery(), clock_.Now(), 30s);
  EXPECT_TRUE(sql::IsConflict(refused.status())) << refused.status().ToString();
  EXPECT_TRUE(store_->GetSteps(run)->empty());
  auto kept = store_->ApplyAndKeep(items[0], StepThenDiscovery(), clock_.Now(), 30s);
  ASSERT_THAT(kept, IsOk());
  ASSERT_TRUE(kept->kept.has_value());
  EXPECT_EQ(store_->GetSteps(run)->size(), 1u);
  EXPECT_TRUE(Claim().empty()) << "the kept call is still its holder's";
  EXPECT_THAT(End(kept->kept->item), IsOk());
  EXPECT_EQ(RunStatus(run), kCompleted);
}

// The request version a reply names is the run's from then on, whether it went with the
// reply's steps or into the run's row: as a claim, a load and the API read the run, and also
// when the step was checkpointed (without one) before the reply recorded it again.
TEST_P(StoreConformance, ARunsRequestVersionIsReadAsTheReplyThatRecordedAStepNamedIt) {
  const std::string run = Start("app-plain");
  auto items = Claim();
  ASSERT_EQ(items.size(), 1u);
  EXPECT_EQ(store_->GetRun(run)->req_version, -1);
  ASSERT_THAT(store_->Checkpoint(items[0], {{"s1", 0, "first", "completed", {{"data", 1}}}}, {},
                                 clock_.Now(), kAnySteps),
              IsOk());
  Transition t = StepThenDiscovery();  // records s1 again, naming version 2
  t.req_version = 2;
  auto kept = store_->ApplyAndKeep(items[0], t, clock_.Now(), 30s);
  ASSERT_THAT(kept, IsOk());
  ASSERT_TRUE(kept->kept.has_value());
  EXPECT_EQ(store_->GetRun(run)->req_version, 2);
  EXPECT_EQ(store_->LoadRunState(run)->run.req_version, 2);
  auto steps = store_->GetSteps(run);
  ASSERT_EQ(steps->size(), 1u);
  EXPECT_EQ((*steps)[0].memo, Json({{"data", 1}})) << "the step keeps its first record";

  // Given back and claimed again: the claim reads the version too.
  ASSERT_THAT(store_->ReleaseLeases({kept->kept->item}, clock_.Now()), IsOk());
  std::vector<RunState> states;
  auto again = store_->Claim(10, clock_.Now(), 30s, &states);
  ASSERT_THAT(again, IsOk());
  ASSERT_EQ(states.size(), 1u);
  EXPECT_EQ(states[0].run.req_version, 2);

  Transition end;  // an end naming it, as the executor's ends do
  end.req_version = 2;
  end.move = Transition::End{kCompleted, {{"ok", true}}, nullptr};
  ASSERT_THAT(store_->Apply((*again)[0], end, clock_.Now()), IsOk());
  EXPECT_EQ(store_->GetRun(run)->req_version, 2);
}

// Ends of many runs at once share transactions too: an end whose lease is lost (checked with
// the run's update, in one round trip on PostgreSQL) ends nothing and leaves the item to its
// holder; the others end.
TEST_P(StoreConformance, ConcurrentEndsWithALostLeaseEndNothing) {
  constexpr int kRuns = 40;
  for (int i = 0; i < kRuns; ++i) Start("app-plain");
  std::vector<QueueItem> items = Claim();
  ASSERT_EQ(items.size(), static_cast<size_t>(kRuns));
  const std::set<std::string> stale = LoseLeases(items, 4);
  std::vector<Status> ended(kRuns);
  std::vector<std::thread> threads;
  for (int i = 0; i < kRuns; ++i) threads.emplace_back([&, i] { ended[i] = End(items[i]); });
  for (std::thread& t : threads) t.join();
  for (int i = 0; i < kRuns; ++i) {
    const std::string& run = items[i].run_id;
    if (stale.count(run)) {
      EXPECT_THAT(ended[i], StatusIs(StatusCode::kAborted)) << run;
      EXPECT_EQ(RunStatus(run), kRunning) << run;
    } else {
      EXPECT_THAT(ended[i], IsOk()) << run;
      EXPECT_EQ(RunStatus(run), kCompleted) << run;
    }
  }
  EXPECT_TRUE(Claim().empty()) << "the stale ends' items are still leased to their holders";
  clock_.Advance(31s);
  EXPECT_EQ(Claim().size(), stale.size()) << "and come back when that lease expires";
}

// Transitions and loads of many calls at once share transactions (group commit); each still
// gets its own outcome: a lost lease is refused alone, without undoing the others.
TEST_P(StoreConformance, ConcurrentTransitionsAndLoadsEachGetTheirOwnOutcome) {
  constexpr int kRuns = 40;
  std::vector<std::string> runs;
  for (int i = 0; i < kRuns; ++i) runs.push_back(Start("app-plain"));
  std::vector<QueueItem> items = Claim();
  ASSERT_EQ(items.size(), static_cast<size_t>(kRuns));
  const std::set<std::string> stale = LoseLeases(items, 8);
  const Transition step = StepThenDiscovery();
  std::vector<Result<Applied>> applied(kRuns, Unavailable("not run"));
  std::vector<Result<RunState>> loaded(kRuns, Unavailable("not run"));
  std::vector<std::thread> threads;
  for (int i = 0; i < kRuns; ++i) {
    threads.emplace_back(
        [&, i] { applied[i] = store_->ApplyAndKeep(items[i], step, clock_.Now(), 30s); });
    threads.emplace_back([&, i] { loaded[i] = store_->LoadRunState(items[i].run_id); });
  }
  for (std::thread& t : threads) t.join();
  for (int i = 0; i < kRuns; ++i) {
    const std::string& run = items[i].run_id;
    ASSERT_THAT(loaded[i], IsOk());
    EXPECT_EQ(loaded[i]->run.id, run);
    auto steps = store_->GetSteps(run);
    ASSERT_THAT(steps, IsOk());
    if (stale.count(run)) {
      EXPECT_THAT(applied[i], StatusIs(StatusCode::kAborted)) << run;
      EXPECT_TRUE(steps->empty()) << run;
      continue;
    }
    ASSERT_THAT(applied[i], IsOk()) << run;
    ASSERT_TRUE(applied[i]->kept.has_value()) << run;
    EXPECT_EQ(applied[i]->kept->item.run_id, run);
    EXPECT_EQ(applied[i]->kept->steps, std::nullopt);
    ASSERT_EQ(steps->size(), 1u) << run;
    EXPECT_EQ((*steps)[0].step_id, "s1");
  }
  // The stale items are still leased to their real holder; the kept calls to the appliers.
  EXPECT_TRUE(Claim().empty());
}

// An idle executor waits until the queue's next item becomes visible: NextVisible tells when.
TEST_P(StoreConformance, NextVisibleIsWhenTheEarliestItemBecomesVisible) {
  EXPECT_EQ(*store_->NextVisible(), std::nullopt) << "an empty queue";
  Start("app-plain");
  EXPECT_EQ(*store_->NextVisible(), clock_.Now()) << "due now";
  auto items = Claim();
  ASSERT_EQ(items.size(), 1u);
  EXPECT_EQ(*store_->NextVisible(), clock_.Now() + 30s) << "its lease expires";
  ASSERT_THAT(Retry(items[0], 7s), IsOk());
  EXPECT_EQ(*store_->NextVisible(), clock_.Now() + 7s) << "its retry is due";
}

// Coordinators on one PostgreSQL tell each other of the work they make due (NOTIFY); SQLite,
// which has no other coordinator, offers no watch.
TEST_P(StoreConformance, RunsCreatedByAnotherConnectionWakeTheWatch) {
  std::atomic<int> wakes = 0;
  std::unique_ptr<WorkWatch> watch = store_->WatchForWork([&] { ++wakes; });
  if (GetParam().name == "sqlite") {
    EXPECT_EQ(watch, nullptr);
    return;
  }
  ASSERT_NE(watch, nullptr);
  // The watch connects on a thread of its own: an event sent before it listens wakes nothing,
  // so send until one does (each creates a run, on a pooled connection, not the watch's).
  for (int i = 0; i < 20 && wakes == 0; ++i) {
    Start("app-plain");
    for (int j = 0; j < 50 && wakes == 0; ++j) std::this_thread::sleep_for(10ms);
  }
  EXPECT_GT(wakes.load(), 0);
  watch.reset();  // stops and joins its thread
  const int seen = wakes;
  Start("app-plain");
  std::this_thread::sleep_for(300ms);
  EXPECT_EQ(wakes.load(), seen) << "no wake after the watch is gone";
}

// An event is found by its internal id with GetEvent, and by its own id with FindEventById,
// never the one for the other.
TEST_P(StoreConformance, AnEventIsFoundByEitherItsInternalIdOrItsOwnId) {
  NewEvent e = Event("test/e");
  e.event.id = "orders-42-created";
  e.event.payload["id"] = e.event.id;
  ASSERT_THAT(store_->IngestEvents({e}, clock_.Now(), nullptr), IsOk());

  auto by_id = store_->FindEventById("orders-42-created");
  ASSERT_THAT(by_id, IsOk());
  EXPECT_EQ(by_id->internal_id, e.event.internal_id);
  auto by_internal = store_->GetEvent(e.event.internal_id);
  ASSERT_THAT(by_internal, IsOk());
  EXPECT_EQ(by_internal->id, "orders-42-created");
  EXPECT_THAT(store_->FindEventById(e.event.internal_id), StatusIs(StatusCode::kNotFound));
  EXPECT_THAT(store_->GetEvent("orders-42-created"), StatusIs(StatusCode::kNotFound));
}

std::unique_ptr<sql::Database> OpenPostgres(const std::string& test_name) {
  std::string url = testing::SharedPgCluster().CreateDatabase("store_" + test_name);
  return NewPostgresDatabase({.url = url, .pool_size = 4});
}

// A PostgreSQL URL of `port`, a server that hangs, with `query` after it.
std::string SilentDatabaseUrl(const testing::SilentPort& port, const std::string& query = "") {
  return "postgresql://funcky@127.0.0.1:" + std::to_string(port.port()) + "/funcky" + query;
}

// How a transaction on `url` fails, and after how long.
std::pair<Status, std::chrono::steady_clock::duration> FailToConnect(const std::string& url) {
  auto db = NewPostgresDatabase({.url = url, .pool_size = 1});
  const auto start = std::chrono::steady_clock::now();
  Status s = db->Transact([](sql::Tx&) { return Status::Ok(); });
  return {s, std::chrono::steady_clock::now() - start};
}

// Connecting to a server that does not answer gives up after the URL's connect_timeout...
TEST(PostgresDatabase, ConnectingGivesUpAfterTheUrlsConnectTimeout) {
  testing::SilentPort silent;
  auto [status, took] = FailToConnect(SilentDatabaseUrl(silent, "?connect_timeout=1"));
  EXPECT_EQ(status.code(), StatusCode::kUnavailable) << status.ToString();
  EXPECT_GE(took, 900ms);
  EXPECT_LT(took, 5s) << "the URL's 1 s, not the default";
}

// ... and after ten seconds when it gives none, not after the operating system's minutes.
TEST(PostgresDatabase, ConnectingGivesUpAfterTenSecondsByDefault) {
  testing::SilentPort silent;
  auto [status, took] = FailToConnect(SilentDatabaseUrl(silent));
  EXPECT_EQ(status.code(), StatusCode::kUnavailable) << status.ToString();
  EXPECT_GE(took, 9s);
  EXPECT_LT(took, 30s);
}

// Two transactions that lock two rows in opposite orders deadlock; the one PostgreSQL undoes
// fails as a conflict (sql::IsConflict), the other commits.
TEST(PostgresDatabase, ADeadlocksVictimFailsAsAConflict) {
  const std::string url = testing::SharedPgCluster().CreateDatabase("store_deadlock");
  testing::PgConnection(url).Query(
      "CREATE TABLE pair (id int PRIMARY KEY, n int); INSERT INTO pair VALUES (1, 0), (2, 0)");
  auto db = NewPostgresDatabase({.url = url, .pool_size = 2});
  std::latch both_hold_one(2);
  auto lock_both = [&](int first, int second) {
    return db->Transact([&](sql::Tx& tx) {
      tx.Exec("UPDATE pair SET n = n + 1 WHERE id = $1", {int64_t{first}});
      both_hold_one.arrive_and_wait();
      tx.Exec("UPDATE pair SET n = n + 1 WHERE id = $1", {int64_t{second}});
      return Status::Ok();
    });
  };
  Status a, b;
  std::thread one([&] { a = lock_both(1, 2); });
  std::thread two([&] { b = lock_both(2, 1); });
  one.join();
  two.join();
  EXPECT_NE(a.ok(), b.ok()) << a.ToString() << " / " << b.ToString();
  EXPECT_TRUE(sql::IsConflict(a.ok() ? b : a)) << (a.ok() ? b : a).ToString();
  EXPECT_EQ(testing::PgConnection(url).Count("SELECT sum(n) FROM pair"), 2);
}

// Errors that pass (the server's, not what was written) fail a transaction as kUnavailable,
// which the executor tries again, never as kInternal, which it takes for an outcome it cannot
// record and fails the run (or blocks its lane) for: a statement past its statement_timeout,
// a lock not had within lock_timeout, a server in read-only mode (a standby after a
// failover). A data error stays kInternal.
TEST(PostgresDatabase, TimeoutsAndAReadOnlyServerAreTroubleThatPasses) {
  const std::string url = testing::SharedPgCluster().CreateDatabase("store_transient");
  testing::PgConnection(url).Query("CREATE TABLE t (id int PRIMARY KEY)");
  auto db = NewPostgresDatabase({.url = url, .pool_size = 2});
  auto fails = [&](const std::string& setting, const std::string& statement) {
    return db->Transact([&](sql::Tx& tx) {
      tx.Exec(setting, {});
      tx.Exec(statement, {});
      return Status::Ok();
    });
  };
  EXPECT_THAT(fails("SET LOCAL statement_timeout = 50", "SELECT pg_sleep(2)"),
              StatusIs(StatusCode::kUnavailable));
  EXPECT_THAT(fails("SET LOCAL transaction_read_only = on", "INSERT INTO t VALUES (1)"),
              StatusIs(StatusCode::kUnavailable));
  {
    testing::PgConnection holder(url);
    holder.Query("BEGIN; LOCK TABLE t IN ACCESS EXCLUSIVE MODE");
    EXPECT_THAT(fails("SET LOCAL lock_timeout = 50", "INSERT INTO t VALUES (2)"),
                StatusIs(StatusCode::kUnavailable));
    holder.Query("ROLLBACK");
  }
  EXPECT_THAT(fails("SELECT 1", "INSERT INTO t VALUES (1), (1)"), StatusIs(StatusCode::kInternal));
  // And the database serves the next transaction.
  EXPECT_THAT(fails("SELECT 1", "INSERT INTO t VALUES (3)"), IsOk());
}

// A pooled connection whose session the server ended while it idled (a restart, a failover's
// fencing, idle_session_timeout, pg_terminate_backend) is let go before use: the next
// transaction connects anew and succeeds, where it failed on the server's goodbye (and a
// commit sent on it was an unknown outcome).
TEST(PostgresDatabase, AnIdleConnectionWhoseSessionEndedIsNotUsed) {
  const std::string url = testing::SharedPgCluster().CreateDatabase("store_ended_idle");
  auto db = NewPostgresDatabase({.url = url, .pool_size = 2});
  auto backend = [&](int64_t* pid) {
    return db->Transact([&](sql::Tx& tx) {
      *pid = tx.Count("SELECT pg_backend_pid()");
      return Status::Ok();
    });
  };
  int64_t first = 0;
  ASSERT_THAT(backend(&first), IsOk());
  testing::PgConnection admin(url);
  admin.Query("SELECT pg_terminate_backend(" + std::to_string(first) + ")");
  for (int i = 0; i < 200 && admin.Count("SELECT count(*) FROM pg_stat_activity WHERE pid = " +
                                         std::to_string(first)) > 0;
       ++i) {
    std::this_thread::sleep_for(10ms);
  }
  int64_t second = 0;
  EXPECT_THAT(backend(&second), IsOk());
  EXPECT_NE(second, first);
}

// PostgreSQL parses each distinct statement once per connection: it is prepared on its first
// use and executed by name after, also after a transaction that failed on it, and its
// parameters (NULL included) reach it as they did unprepared.
TEST(PostgresDatabase, PreparesEachStatementOncePerConnection) {
  auto db = NewPostgresDatabase(
      {.url = testing::SharedPgCluster().CreateDatabase("store_prepared"), .pool_size = 1});
  constexpr std::string_view kSum = "SELECT 10 / $1::bigint, COALESCE($2::text, 'null')";
  auto sum = [&](sql::Params params, std::string* out) {
    return db->Transact([&](sql::Tx& tx) {
      sql::Rows rows = tx.Query(kSum, params);
      *out = std::to_string(rows[0].Int(0)) + " " + rows[0].Text(1);
      return Status::Ok();
    });
  };
  std::string out;
  ASSERT_THAT(sum({int64_t{2}, std::string("a")}, &out), IsOk());
  EXPECT_EQ(out, "5 a");
  EXPECT_FALSE(sum({int64_t{0}, std::string("b")}, &out).ok()) << "division by zero";
  ASSERT_THAT(sum({int64_t{5}, nullptr}, &out), IsOk());
  EXPECT_EQ(out, "2 null");

  int64_t prepared = -1;
  std::vector<std::string> texts;
  ASSERT_THAT(db->Transact([&](sql::Tx& tx) {
    for (sql::Row row : tx.Query("SELECT statement FROM pg_prepared_statements", {}))
      texts.push_back(row.Text(0));
    prepared = std::count_if(texts.begin(), texts.end(), [&](const std::string& t) {
      return t.find("10 / $1::bigint") != std::string::npos;
    });
    return Status::Ok();
  }),
              IsOk());
  EXPECT_EQ(prepared, 1) << "the one connection prepared the statement once; it has "
                         << texts.size() << " prepared statements";
}

// Statements sent with Tx::Send (PostgreSQL pipelines them with the next statement whose
// result is wanted, or the COMMIT) run in order before it, as does a Tx::QueryLater, whose
// rows its caller has when the transaction returns; one that fails fails its
// transaction, even when that shows only at the commit, and nothing of that transaction
// stays. The connection then serves the next transaction, statements it had not yet
// prepared included. Returns the backend's connection ids seen, one per transaction (SQLite:
// none).
std::set<int64_t> CheckSentStatements(sql::Database& db, bool postgres) {
  std::set<int64_t> connections;
  std::string later;
  auto seen = [&](sql::Tx& tx) {
    if (postgres) connections.insert(tx.Count("SELECT pg_backend_pid()"));
  };
  auto count = [&](int64_t* n) {
    return db.Transact([&](sql::Tx& tx) {
      seen(tx);
      *n = tx.Count("SELECT count(*) FROM sent");
      return Status::Ok();
    });
  };
  EXPECT_THAT(db.Transact([&](sql::Tx& tx) {
    tx.Send("CREATE TABLE sent (x bigint PRIMARY KEY)");
    tx.Send("INSERT INTO sent (x) VALUES ($1)", {1});
    tx.Send("INSERT INTO sent (x) VALUES ($1)", {2});
    EXPECT_EQ(tx.Count("SELECT count(*) FROM sent"), 2) << "sent before the query, in order";
    tx.Send("INSERT INTO sent (x) VALUES ($1)", {3});
    tx.QueryLater("SELECT count(*), max(x) FROM sent", {}, [&](sql::Rows rows) {
      later = std::to_string(rows[0].Int(0)) + " " + std::to_string(rows[0].Int(1));
    });
    return Status::Ok();
  }),
              IsOk());
  EXPECT_EQ(later, "3 3") << "a later query's rows reach its caller by the commit";
  int64_t n = 0;
  EXPECT_THAT(count(&n), IsOk());
  EXPECT_EQ(n, 3) << "the last sent statement went with the commit";

  // Fails at the commit: the body returned OK.
  Status s = db.Transact([&](sql::Tx& tx) {
    seen(tx);
    tx.Send("INSERT INTO sent (x) VALUES ($1)", {4});
    tx.Send("INSERT INTO sent (x) VALUES ($1)", {1});  // a duplicate
    tx.InsertLater("INSERT INTO sent (x)", "($1)", {5});
    return Status::Ok();
  });
  EXPECT_THAT(s, StatusIs(StatusCode::kInternal));
  EXPECT_THAT(count(&n), IsOk());
  EXPECT_EQ(n, 3) << "4 and 5 rolled back with the duplicate";

  // Fails at the next query, whose statement this connection had not prepared yet (its
  // preparation is skipped with it): the next transaction prepares and runs it.
  constexpr std::string_view kFresh = "SELECT count(*) + $1::bigint FROM sent";
  s = db.Transact([&](sql::Tx& tx) {
    seen(tx);
    tx.Send("INSERT INTO sent (x) VALUES ($1)", {6});
    tx.Send("INSERT INTO sent (x) VALUES ($1)", {2});  // a duplicate
    tx.Count(kFresh, {100});
    ADD_FAILURE() << "the query after the failed statement returned";
    return Status::Ok();
  });
  EXPECT_THAT(s, StatusIs(StatusCode::kInternal));
  EXPECT_THAT(s.message(), HasSubstr(postgres ? "23505" : "UNIQUE"))
      << "the duplicate's error, not the skipped query's";
  EXPECT_THAT(db.Transact([&](sql::Tx& tx) {
    seen(tx);
    EXPECT_EQ(tx.Count(kFresh, {100}), 103);
    return Status::Ok();
  }),
              IsOk());

  // The body's own error rolls back what it sent.
  s = db.Transact([&](sql::Tx& tx) {
    seen(tx);
    tx.Send("INSERT INTO sent (x) VALUES ($1)", {7});
    return Aborted("changed its mind");
  });
  EXPECT_THAT(s, StatusIs(StatusCode::kAborted));
  EXPECT_THAT(count(&n), IsOk());
  EXPECT_EQ(n, 3);
  return connections;
}

// A transaction of one flight (sql::Flights::kOne) commits what it sent behind a Tx::Require
// that found a row, whose rows reach the caller by the commit; PostgreSQL answers it once. One
// whose Require finds no row writes nothing, sent before it or after, and fails with Unmet
// (sql::IsUnmet), as does a transaction of the usual kind; one whose body fails after sending
// writes nothing either. The database serves the next transaction after each.
void CheckRequire(sql::Database& db) {
  ASSERT_THAT(db.Migrate(), IsOk());  // funcky_require, on PostgreSQL
  ASSERT_THAT(db.Transact([&](sql::Tx& tx) {
    tx.Send("CREATE TABLE required (x bigint PRIMARY KEY)");
    tx.Send("INSERT INTO required (x) VALUES ($1)", {1});
    return Status::Ok();
  }),
              IsOk());
  auto values = [&] {
    std::vector<int64_t> out;
    EXPECT_THAT(db.Transact([&](sql::Tx& tx) {
      for (sql::Row row : tx.Query("SELECT x FROM required ORDER BY x")) out.push_back(row.Int(0));
      return Status::Ok();
    }),
                IsOk());
    return out;
  };
  // Inserts `value` before and after requiring the row `required`.
  auto insert_around = [&](int64_t required, int64_t value, sql::Flights flights,
                           std::vector<int64_t>* seen) {
    return db.Transact(
        [&](sql::Tx& tx) {
          tx.Send("INSERT INTO required (x) VALUES ($1)", {value});
          tx.Require("SELECT x FROM required WHERE x = $1 {FOR UPDATE}", {required}, 1,
                     [seen](sql::Rows rows) {
                       for (sql::Row row : rows) seen->push_back(row.Int(0));
                     });
          tx.Send("INSERT INTO required (x) VALUES ($1)", {value + 1});
          return Status::Ok();
        },
        flights);
  };
  std::vector<int64_t> seen;
  const std::optional<int64_t> before = db.RoundTrips();
  EXPECT_THAT(insert_around(1, 10, sql::Flights::kOne, &seen), IsOk());
  if (before) {
    EXPECT_EQ(*db.RoundTrips() - *before, 1) << "everything with the commit";
  }
  EXPECT_EQ(seen, std::vector<int64_t>{1}) << "the required row";
  EXPECT_EQ(values(), (std::vector<int64_t>{1, 10, 11}));
  // At least as many rows as required.
  for (const size_t rows : {3, 4}) {
    Status s = db.Transact(
        [&](sql::Tx& tx) {
          tx.Require("SELECT x FROM required WHERE x < 100", {}, rows, [](sql::Rows) {});
          tx.Send("INSERT INTO required (x) VALUES ($1)", {static_cast<int64_t>(rows) * 100});
          return Status::Ok();
        },
        sql::Flights::kOne);
    if (rows == 3) {
      EXPECT_THAT(s, IsOk());
    } else {
      EXPECT_TRUE(sql::IsUnmet(s)) << s.ToString();
    }
  }
  EXPECT_EQ(values(), (std::vector<int64_t>{1, 10, 11, 300}));
  ASSERT_THAT(db.Transact([&](sql::Tx& tx) {
    tx.Send("DELETE FROM required WHERE x = $1", {300});
    return Status::Ok();
  }),
              IsOk());

  for (const sql::Flights flights : {sql::Flights::kOne, sql::Flights::kAsNeeded}) {
    seen.clear();
    Status s = insert_around(2, 20, flights, &seen);
    EXPECT_TRUE(sql::IsUnmet(s)) << s.ToString();
    EXPECT_TRUE(seen.empty());
    EXPECT_EQ(values(), (std::vector<int64_t>{1, 10, 11})) << "nothing of it, before or after";
  }

  Status s = db.Transact(
      [&](sql::Tx& tx) {
        tx.Send("INSERT INTO required (x) VALUES ($1)", {30});
        return Aborted("changed its mind");
      },
      sql::Flights::kOne);
  EXPECT_THAT(s, StatusIs(StatusCode::kAborted));
  EXPECT_EQ(values(), (std::vector<int64_t>{1, 10, 11})) << "a failed body's sends roll back";

  s = db.Transact(
      [&](sql::Tx& tx) {
        tx.Send("INSERT INTO required (x) VALUES ($1)", {40});
        tx.Send("INSERT INTO required (x) VALUES ($1)", {1});  // a duplicate
        return Status::Ok();
      },
      sql::Flights::kOne);
  EXPECT_THAT(s, StatusIs(StatusCode::kInternal));
  EXPECT_FALSE(sql::IsUnmet(s));
  EXPECT_EQ(values(), (std::vector<int64_t>{1, 10, 11})) << "a failed statement's flight too";
}

TEST(PostgresDatabase, OneFlightCommitsBehindARequireThatFoundItsRowAndNothingElse) {
  auto db = NewPostgresDatabase(
      {.url = testing::SharedPgCluster().CreateDatabase("store_require"), .pool_size = 1});
  CheckRequire(*db);
}

TEST(SqliteDatabase, OneFlightCommitsBehindARequireThatFoundItsRowAndNothingElse) {
  auto db = OpenSqliteDatabase({.path = testing::TempDir("funcky-require-") + "/require.db"});
  ASSERT_THAT(db, IsOk());
  CheckRequire(**db);
}

TEST(PostgresDatabase, SentStatementsRunInOrderAndFailTheirTransactionWherePipelined) {
  auto db = NewPostgresDatabase(
      {.url = testing::SharedPgCluster().CreateDatabase("store_sent"), .pool_size = 1});
  const std::set<int64_t> connections = CheckSentStatements(*db, /*postgres=*/true);
  EXPECT_EQ(connections.size(), 1u) << "the one connection recovered from each failure";
}

// A transaction waits for PostgreSQL once per statement whose result it reads and once for
// its commit: its BEGIN and the statements it sends travel with those (pipelining).
TEST(PostgresDatabase, ATransactionWaitsOncePerResultItReadsAndOnceToCommit) {
  auto db = NewPostgresDatabase(
      {.url = testing::SharedPgCluster().CreateDatabase("store_round_trips"), .pool_size = 1});
  ASSERT_THAT(db->Transact([](sql::Tx& tx) {
    tx.Send("CREATE TABLE trips (x bigint)");
    return Status::Ok();
  }),
              IsOk());
  auto trips = [&](const std::function<void(sql::Tx&)>& body) {
    const int64_t before = db->RoundTrips().value_or(-100);
    EXPECT_THAT(db->Transact([&](sql::Tx& tx) {
      body(tx);
      return Status::Ok();
    }),
                IsOk());
    return db->RoundTrips().value_or(-100) - before;
  };
  EXPECT_EQ(trips([](sql::Tx& tx) {
              for (int i = 0; i < 5; ++i) tx.Send("INSERT INTO trips (x) VALUES ($1)", {i});
              tx.LockKey("k");
              tx.AnnounceWork();
              tx.InsertLater("INSERT INTO trips (x)", "($1)", {9});
            }),
            1)
      << "everything with the commit";
  EXPECT_EQ(trips([](sql::Tx& tx) {
              tx.Send("INSERT INTO trips (x) VALUES ($1)", {6});
              EXPECT_EQ(tx.Count("SELECT count(*) FROM trips"), 7);
              tx.Send("INSERT INTO trips (x) VALUES ($1)", {7});
              EXPECT_EQ(tx.Exec("DELETE FROM trips WHERE x = $1", {9}), 1);
              tx.QueryLater("SELECT 1", {}, [](sql::Rows) {});
            }),
            3)
      << "the count, the delete, the commit";
  EXPECT_EQ(trips([](sql::Tx& tx) {
              tx.Send("INSERT INTO trips (x) VALUES ($1)", {8});
              std::vector<int64_t> seen;
              tx.QueryLater("SELECT count(*) FROM trips", {},
                            [&](sql::Rows rows) { seen.push_back(rows[0].Int(0)); });
              tx.QueryLater("SELECT max(x) FROM trips", {},
                            [&](sql::Rows rows) { seen.push_back(rows[0].Int(0)); });
              tx.Wait();
              EXPECT_EQ(seen, (std::vector<int64_t>{8, 8})) << "both results are in, in order";
              tx.Wait();
            }),
            2)
      << "one wait for both queries, none for nothing pending, the commit";
}

// The store's transactions run READ COMMITTED, what it is written for, and its statements are
// never JIT-compiled, whatever the database's defaults: under SERIALIZABLE its lock-then-read
// steps would read stale rows or fail with serialization conflicts, and a generic plan's
// estimate over large tables passes jit_above_cost for statements that touch a few rows, which
// then cost tens of milliseconds of compiling each.
TEST(PostgresDatabase, ConnectionsAreReadCommittedWithoutJitWhateverTheDatabasesDefaults) {
  const std::string url = testing::SharedPgCluster().CreateDatabase("store_isolation");
  testing::PgConnection(url).Query(
      "DO $$ BEGIN EXECUTE format('ALTER DATABASE %I SET default_transaction_isolation = "
      "''serializable''', current_database()); EXECUTE format('ALTER DATABASE %I SET jit = on', "
      "current_database()); END $$");
  const auto defaults = testing::PgConnection(url).Query(
      "SELECT current_setting('default_transaction_isolation'), current_setting('jit')");
  ASSERT_EQ(defaults[0][0], "serializable") << "a new connection gets the database's default";
  ASSERT_EQ(defaults[0][1], "on") << "a new connection gets the database's default";
  auto db = NewPostgresDatabase({.url = url, .pool_size = 1});
  std::string level, jit;
  EXPECT_THAT(db->Transact([&](sql::Tx& tx) {
    sql::Rows got =
        tx.Query("SELECT current_setting('transaction_isolation'), current_setting('jit')");
    level = got[0].Text(0);
    jit = got[0].Text(1);
    return Status::Ok();
  }),
              IsOk());
  EXPECT_EQ(level, "read committed");
  EXPECT_EQ(jit, "off");
}

// A connection's statements are prepared again a while after it opens, and again at doubling
// intervals, so their generic plans follow the tables' growth; they go on working across it.
TEST(PostgresDatabase, StatementsArePreparedAgainAtDoublingIntervals) {
  auto db =
      NewPostgresDatabase({.url = testing::SharedPgCluster().CreateDatabase("store_reprepare"),
                           .pool_size = 1,
                           .reprepare_first = 1s});
  // The statements prepared on the one connection, read by the last of `sends` + 1 of them.
  auto prepared = [&](std::vector<std::string> sends) {
    int64_t n = -1;
    EXPECT_THAT(db->Transact([&](sql::Tx& tx) {
      for (const std::string& sql : sends) tx.Send(sql);
      n = tx.Count("SELECT count(*) FROM pg_prepared_statements");
      return Status::Ok();
    }),
                IsOk());
    return n;
  };
  // Each time is bracketed by clock readings on either side of the call that sets it (the
  // connection opens in the first call), so a slow call moves the checks, not their outcome.
  const auto before_open = std::chrono::steady_clock::now();
  EXPECT_EQ(prepared({"SELECT 1", "SELECT 2"}), 3);
  const auto opened = std::chrono::steady_clock::now();
  EXPECT_EQ(prepared({"SELECT 1"}), 3) << "each prepared once";
  ASSERT_LT(std::chrono::steady_clock::now() - before_open, 1s) << "a second for two calls";
  std::this_thread::sleep_until(opened + 1200ms);
  const auto first = std::chrono::steady_clock::now();
  EXPECT_EQ(prepared({}), 1) << "the three deallocated a second in, the count prepared again";
  const auto reprepared = std::chrono::steady_clock::now();
  EXPECT_EQ(prepared({"SELECT 1"}), 2);
  std::this_thread::sleep_until(first + 1s);  // past the first interval, not the second
  EXPECT_EQ(prepared({}), 2) << "the next time is two seconds after the first";
  std::this_thread::sleep_until(reprepared + 2200ms);
  EXPECT_EQ(prepared({}), 1);
}

// A store on a new PostgreSQL database of its own (one connection) with one function,
// app-plain, and a way to start its runs.
struct PostgresStoreOfOneFunction {
  explicit PostgresStoreOfOneFunction(const std::string& name)
      : url(testing::SharedPgCluster().CreateDatabase(name)) {
    auto db = NewPostgresDatabase({.url = url, .pool_size = 1, .reprepare_first = 1h});
    raw = db.get();
    store = std::make_unique<SqlStore>(std::move(db));
    EXPECT_THAT(store->Migrate(), IsOk());
    AppSync sync;
    sync.app = {"app", "http://127.0.0.1:1/api", "cpp", "", "sum", 0, 0};
    FunctionRecord fn;
    fn.id = fn.name = "app-plain";
    fn.app_id = "app";
    fn.config = {{"id", fn.id}};
    sync.functions = {fn};
    EXPECT_THAT(store->SyncApp(sync), IsOk());
  }
  // Starts `runs` runs of app-plain, an event each, in lane `lane_key` if given.
  void Start(int runs, std::optional<std::string> lane_key = std::nullopt) {
    Start(runs, [&](int, NewEvent& ne) { ne.runs[0].lane_key = lane_key; });
  }
  // Starts `runs` runs of app-plain, an event each (test/e, no data), the i-th as `shape(i, …)`
  // makes it; returns their ids.
  std::vector<std::string> Start(int runs, const std::function<void(int, NewEvent&)>& shape) {
    std::vector<NewEvent> events;
    std::vector<std::string> ids;
    for (int i = 0; i < runs; ++i) {
      NewEvent ne;
      ne.event.internal_id = NewUlid(UnixMillis(clock.Now()));
      ne.event.id = ne.event.internal_id;
      ne.event.name = "test/e";
      ne.event.payload = {{"name", "test/e"}, {"data", Json::object()}};
      ne.event.received_at_ms = UnixMillis(clock.Now());
      ne.runs.push_back({NewUlid(UnixMillis(clock.Now())), "app-plain"});
      shape(i, ne);
      ids.push_back(ne.runs[0].run_id);
      events.push_back(std::move(ne));
    }
    EXPECT_THAT(store->IngestEvents(events, clock.Now(), nullptr), IsOk());
    return ids;
  }
  // Claims `n` calls, every one of which must be there.
  std::vector<QueueItem> Claim(int n) {
    auto claimed = store->Claim(n, clock.Now(), 30s);
    EXPECT_THAT(claimed, IsOk());
    if (!claimed.ok()) return {};
    EXPECT_EQ(claimed->size(), static_cast<size_t>(n));
    return *std::move(claimed);
  }
  // Records step `id` of `item`'s run (with the run's request version `req_version`, if
  // given) by its call's transition, keeping the call for the run's next one: `item` becomes
  // the kept call's item.
  void Step(QueueItem& item, const std::string& id, std::optional<int> req_version = {}) {
    Transition t;
    t.steps.push_back({id, 0, id, "completed", {{"data", 1}}});
    t.req_version = req_version;
    t.move = Transition::Continue{.next = {NextCall{std::string(kDiscoveryStepId), clock.Now()}}};
    auto kept = store->ApplyAndKeep(item, t, clock.Now(), 30s);
    ASSERT_THAT(kept, IsOk());
    ASSERT_TRUE(kept->kept.has_value());
    item = kept->kept->item;
  }
  // Ends each of `items`' runs, completed, by its call's transition.
  void Complete(const std::vector<QueueItem>& items) {
    Transition end;
    end.move = Transition::End{kCompleted, "done", nullptr};
    for (const QueueItem& item : items) {
      ASSERT_THAT(store->Apply(item, end, clock.Now()), IsOk());
    }
  }
  // Runs `runs` runs to their end, then ANALYZEs the emptied queue: statistics that count
  // no row in its pages. No autovacuum for the queue: its vacuum would truncate the emptied
  // table, a state of its own.
  void AnalyzeAnEmptiedQueue(int runs) {
    testing::PgConnection check(url);
    check.Query("ALTER TABLE queue SET (autovacuum_enabled = false)");
    Start(runs);
    ASSERT_NO_FATAL_FAILURE(Complete(Claim(runs)));
    ASSERT_EQ(check.Count("SELECT count(*) FROM queue"), 0);
    check.Query("ANALYZE queue");
    ASSERT_GT(check.Count("SELECT relpages FROM pg_class WHERE relname = 'queue'"), 0);
    ASSERT_EQ(check.Count("SELECT reltuples::bigint FROM pg_class WHERE relname = 'queue'"), 0);
  }
  // The plan of each of the store's prepared statements `where` picks (a condition on
  // pg_prepared_statements), in the generic plan a long-lived connection uses, executed with
  // `first` for $1 and '0' for the other parameters.
  std::vector<std::string> GenericPlans(std::string_view where, std::string_view first) {
    std::vector<std::string> plans;
    EXPECT_THAT(raw->Transact([&](sql::Tx& tx) {
      plans.clear();
      tx.Send("SET LOCAL plan_cache_mode = force_generic_plan");
      for (sql::Row row : tx.Query("SELECT name, cardinality(parameter_types) FROM "
                                   "pg_prepared_statements WHERE " +
                                   std::string(where))) {
        std::string call = "EXPLAIN EXECUTE " + row.Text(0) + "(" + std::string(first);
        for (int64_t i = 1; i < row.Int(1); ++i) call += ", '0'";
        std::string& plan = plans.emplace_back();
        for (sql::Row line : tx.Query(call + ")")) plan += line.Text(0) + "\n";
      }
      return Status::Ok();
    }),
                IsOk());
    return plans;
  }
  SystemClock clock;
  std::string url;
  sql::Database* raw = nullptr;  // the store's
  std::unique_ptr<SqlStore> store;
};

// Retention reads the finished runs and the events it may delete oldest first, by a range of
// their primary keys (ULIDs of their times) below the horizon's: before, each batch of 500 read
// every finished run kept since, newest first, and the last pass of a round the whole events
// table.
TEST(PostgresStore, RetentionReadsTheOldestRowsByARangeOfTheirIds) {
  PostgresStoreOfOneFunction pg("store_retention_plan");
  pg.Start(2000);
  ASSERT_NO_FATAL_FAILURE(pg.Complete(pg.Claim(2000)));
  testing::PgConnection check(pg.url);
  check.Query("ANALYZE");
  auto deleted = pg.store->DeleteExpired(pg.clock.Now() - 1h, 500);
  ASSERT_THAT(deleted, IsOk());
  EXPECT_EQ(*deleted, 0);
  for (const auto& [statement, index] :
       {std::pair{"DELETE FROM runs WHERE id IN (SELECT r.id FROM runs r WHERE r.id < $3%",
                  "Index Cond: (id < $3)"},
        std::pair{"DELETE FROM events WHERE internal_id IN (SELECT e.internal_id%",
                  "Index Cond: (internal_id < $3)"}}) {
    const std::vector<std::string> plans =
        pg.GenericPlans("statement LIKE '" + std::string(statement) + "'", "0");
    ASSERT_EQ(plans.size(), 1u) << statement;
    EXPECT_THAT(plans[0], HasSubstr(index)) << plans[0];
    EXPECT_THAT(plans[0], Not(HasSubstr("Seq Scan on runs"))) << plans[0];
    EXPECT_THAT(plans[0], Not(HasSubstr("Seq Scan on events"))) << plans[0];
  }
}

// After an idle spell (every run ended, then ANALYZE: the partial indexes of active runs
// counted empty) a burst of runs is claimed, stepped, ended and cancelled past its deadline by
// probes of the runs' primary key. A lookup by id whose condition implied a partial index's
// predicate let the planner take that index, counted empty, and read it whole at each lookup
// (runs_active before migration 0037: 3.7 ms a claim beside 20,000 queued runs, 0.5 ms a
// step; runs_timeout, a timed-out run's cancel), or `runs_status`, had it held queued runs.
// Checked on every prepared statement of those over runs, in the generic plan a long-lived
// connection uses.
TEST(PostgresStore, RunsAreLookedUpByIdAfterAnIdleSpell) {
  PostgresStoreOfOneFunction pg("store_idle_spell_plan");
  testing::PgConnection check(pg.url);
  check.Query("ALTER TABLE runs SET (autovacuum_enabled = false)");  // the idle spell's ANALYZE
  pg.Start(500);
  ASSERT_NO_FATAL_FAILURE(pg.Complete(pg.Claim(500)));
  check.Query("ANALYZE");
  pg.Start(3000);
  pg.Start(12, [](int, NewEvent& ne) { ne.runs[0].timeouts = RunTimeouts{.start = 1s}; });
  for (int i = 0; i < 6; ++i) {  // past the custom plans of a prepared statement's first five
    std::vector<QueueItem> items = pg.Claim(5);
    for (QueueItem& item : items) ASSERT_NO_FATAL_FAILURE(pg.Step(item, "s"));
    ASSERT_NO_FATAL_FAILURE(pg.Complete(items));
    auto cancelled = pg.store->CancelTimedOutRuns(pg.clock.Now() + 2s, 2);
    ASSERT_THAT(cancelled, IsOk());
    EXPECT_EQ(cancelled->size(), 2u);
  }
  const std::string args = R"('["a", "b"]')";
  for (const char* statement : {"UPDATE runs SET status = ''running''%",  // the claim's
                                "SELECT function_id, lane_key, had_waits, had_parallel FROM "
                                "runs WHERE id%",                        // a step's
                                "UPDATE runs SET status = $2, output%",  // the end's
                                "SELECT started_at_ms%FROM runs%"}) {    // a timed-out cancel's
    const std::vector<std::string> plan =
        pg.GenericPlans("statement LIKE '" + std::string(statement) + "'", args);
    ASSERT_EQ(plan.size(), 1u) << statement << ": prepared";
    EXPECT_NE(plan[0].find("runs_pkey"), std::string::npos) << plan[0];
  }
  // Every statement over runs but the read of deadlines due (DueTimeouts), which is meant to
  // read runs_timeout.
  const std::vector<std::string> plans = pg.GenericPlans(
      "statement ~ '(FROM|UPDATE) runs' AND statement NOT LIKE 'SELECT id FROM runs WHERE "
      "timeout_at_ms%'",
      args);
  for (const std::string& plan : plans) {
    for (const char* partial : {"runs_active", "runs_timeout", "runs_status", "runs_lane"}) {
      EXPECT_EQ(plan.find(partial), std::string::npos) << partial << "\n" << plan;
    }
  }
}

// A lane's next head is read from the key's queued runs (runs_lane_queued), not by stepping
// over its finished ones: through runs_lane, a key with 200,000 finished runs after the head
// (an earlier burst's, its lane_seq restarted) cost a scan of them under the lane's lock at
// every head's end. Checked on the end's prepared read, in the generic plan it gets.
TEST(PostgresStore, ALanesNextHeadIsReadFromItsQueuedRunsNotItsHistory) {
  PostgresStoreOfOneFunction pg("store_lane_next_plan");
  pg.Start(2000);  // other runs: a table no scan reads whole cheaply
  ASSERT_NO_FATAL_FAILURE(pg.Complete(pg.Claim(2000)));
  pg.Start(30, "tenant");
  for (int i = 0; i < 20; ++i) ASSERT_NO_FATAL_FAILURE(pg.Complete(pg.Claim(1)));
  testing::PgConnection(pg.url).Query("ANALYZE");
  ASSERT_NO_FATAL_FAILURE(pg.Complete(pg.Claim(1)));
  const std::vector<std::string> plans = pg.GenericPlans(
      "statement LIKE 'SELECT id, throttle_slot_ms, priority_s FROM runs WHERE function_id%'",
      "'app-plain'");
  ASSERT_EQ(plans.size(), 1u) << "the read of the run after the head, prepared";
  EXPECT_NE(plans[0].find("runs_lane_queued"), std::string::npos) << plans[0];
  EXPECT_EQ(plans[0].find("runs_active"), std::string::npos) << plans[0];
}

// An item is looked up by its primary key even when the queue's statistics say it is empty
// (an ANALYZE saw it so), as they do for a while after a quiet spell: with no row counted,
// every index that held `id` cost the planner the same, and lookups by id read queue_order
// whole until the next ANALYZE (migration 0020). Checked on the end's prepared statements,
// in the generic plans they get after the ANALYZE.
TEST(PostgresStore, AnItemIsLookedUpByItsKeyWhenTheQueueLooksEmpty) {
  PostgresStoreOfOneFunction pg("store_queue_analyzed_empty");
  ASSERT_NO_FATAL_FAILURE(pg.AnalyzeAnEmptiedQueue(2000));

  const std::vector<std::string> deletes =
      pg.GenericPlans("statement LIKE 'DELETE FROM queue WHERE id = $1 AND lease_token%'", "0");
  ASSERT_EQ(deletes.size(), 1u) << "the end's delete of its item, prepared";
  EXPECT_NE(deletes[0].find("Index Scan using queue_pkey"), std::string::npos) << deletes[0];
  const std::vector<std::string> ends =
      pg.GenericPlans("statement LIKE 'UPDATE runs SET status = $2, output%'", "'x'");
  ASSERT_EQ(ends.size(), 1u) << "the end's statement, which locks its item, prepared";
  EXPECT_NE(ends[0].find("queue_pkey"), std::string::npos) << ends[0];
  EXPECT_EQ(ends[0].find("queue_order"), std::string::npos) << ends[0];
}

// A claim reads the due items in claim order by index and stops at its limit when the
// queue's statistics say it is empty (an ANALYZE saw it so, as one does after a quiet spell)
// and it is not, with one plan for its two reads rather than one each claim (PostgreSQL made
// a custom plan at each, by those statistics): checked on the claim's own prepared
// statements, whose generic plan is then the one plan they have had.
TEST(PostgresStore, AClaimReadsTheQueueInClaimOrderWhenItLooksEmpty) {
  PostgresStoreOfOneFunction pg("store_claim_queue_analyzed_empty");
  ASSERT_NO_FATAL_FAILURE(pg.AnalyzeAnEmptiedQueue(500));
  pg.Start(2000);
  for (int i = 0; i < 8; ++i) pg.Claim(10);

  int64_t custom_plans = -1;
  ASSERT_THAT(pg.raw->Transact([&](sql::Tx& tx) {
    custom_plans = tx.Count(
        "SELECT sum(custom_plans) FROM pg_prepared_statements WHERE statement LIKE "
        "'SELECT q.id, q.run_id%'");
    return Status::Ok();
  }),
              IsOk());
  EXPECT_EQ(custom_plans, 0) << "the reads of due items are planned once, not at each claim";
  const std::vector<std::string> reads =
      pg.GenericPlans("statement LIKE 'SELECT q.id, q.run_id%'", "0");
  ASSERT_EQ(reads.size(), 2u) << "the claim's two reads of due items, prepared";
  for (const std::string& plan : reads) {
    EXPECT_TRUE(plan.find("Index Scan using queue_order") != std::string::npos ||
                plan.find("Index Scan using queue_visible") != std::string::npos)
        << plan;
    EXPECT_EQ(plan.find("Sort"), std::string::npos) << plan;
    EXPECT_EQ(plan.find("Bitmap"), std::string::npos) << plan;
    EXPECT_EQ(plan.find("Seq Scan on queue"), std::string::npos) << plan;
  }
}

// A run's state is read with index lookups of its event, its batch's events and its steps,
// however young the database: as a join and EXISTS, before any statistics, PostgreSQL read
// the whole events table and every run's steps into hashes to answer for one run.
TEST(PostgresStore, ARunsStateIsReadByIndexOnAYoungDatabase) {
  PostgresStoreOfOneFunction pg("store_state_plan");
  // 300 runs with a step each; no ANALYZE.
  pg.Start(300);
  const std::vector<QueueItem> claimed = pg.Claim(300);
  ASSERT_EQ(claimed.size(), 300u);
  Transition step;
  step.steps.push_back({"s1", 0, "first", "completed", {{"data", 1}}});
  step.move =
      Transition::Continue{.next = {NextCall{std::string(kDiscoveryStepId), pg.clock.Now()}}};
  for (const QueueItem& item : claimed) {
    ASSERT_THAT(pg.store->Apply(item, step, pg.clock.Now()), IsOk());
  }
  const std::string run_id = claimed[0].run_id;
  auto state = pg.store->LoadRunState(run_id);
  ASSERT_THAT(state, IsOk());
  ASSERT_EQ(state->steps.size(), 1u);
  ASSERT_EQ(state->events.size(), 1u);

  const std::vector<std::string> plans =
      pg.GenericPlans("statement LIKE 'SELECT r.id, r.function_id%FROM runs r JOIN functions%'",
                      "'[\"" + run_id + "\"]'");
  EXPECT_EQ(plans.size(), 1u) << "the run-state read, prepared";
  for (const std::string& plan : plans) {
    EXPECT_EQ(plan.find("Seq Scan on events"), std::string::npos) << plan;
    EXPECT_EQ(plan.find("Seq Scan on steps"), std::string::npos) << plan;
    EXPECT_EQ(plan.find("hashed SubPlan"), std::string::npos) << plan;
    EXPECT_NE(plan.find("steps_pkey"), std::string::npos) << plan;
  }
}

// A cancelling event finds the runs of its keys by the key's index entries and each run, event
// and key row after them by its primary key, young database or analyzed: beside runs keyed with
// null (another rule's, which needs no key), PostgreSQL guessed a thousand null-keyed rows for
// any rule, joined the keys with every run (or every key) of the table by hash or merge, and,
// before statistics, read all of the function's keys with the event's a filter.
TEST(PostgresStore, ACancelEventReadsItsKeysRunsByIndex) {
  PostgresStoreOfOneFunction pg("store_cancel_plan");
  const std::vector<std::string> started = pg.Start(2000, [](int i, NewEvent& ne) {
    ne.event.payload["data"] = {{"user", i}};
    ne.runs[0].cancel_keys = {{"keyed", "u" + std::to_string(i)}, {"unkeyed", std::nullopt}};
  });
  const int64_t now_ms = UnixMillis(pg.clock.Now()) + 1;
  auto candidates = [&] {
    for (int i = 0; i < 6; ++i) {  // past the custom plans of a prepared statement's first five
      auto runs =
          pg.store->CancelCandidates("app-plain", "keyed", {"u7", "test/e"}, now_ms, 0, "", 1000);
      ASSERT_THAT(runs, IsOk());
      ASSERT_EQ(runs->size(), 1u);
      EXPECT_EQ((*runs)[0].run_id, started[7]);
    }
  };
  auto expect_by_index = [&](const char* when) {
    const std::vector<std::string> plans = pg.GenericPlans(
        "statement LIKE 'WITH c AS MATERIALIZED (SELECT run_id%"
        "run_cancel_keys%' OR statement LIKE 'SELECT id, payload, created_at_ms "
        "FROM (SELECT i.*%run_cancel_keys%'",
        "'app-plain'");
    ASSERT_EQ(plans.size(), 2u) << when << ": the page's read and the ended runs' keys' delete";
    for (const std::string& plan : plans) {
      EXPECT_EQ(plan.find("Seq Scan"), std::string::npos) << when << "\n" << plan;
      EXPECT_EQ(plan.find("Hash Join"), std::string::npos) << when << "\n" << plan;
      EXPECT_EQ(plan.find("Merge Join"), std::string::npos) << when << "\n" << plan;
      EXPECT_NE(plan.find("Index Cond: ((key = ANY"), std::string::npos) << when << "\n" << plan;
      EXPECT_NE(plan.find("Index Cond: ((key IS NULL)"), std::string::npos) << when << "\n" << plan;
    }
  };
  ASSERT_NO_FATAL_FAILURE(candidates());
  expect_by_index("young");
  testing::PgConnection(pg.url).Query("ANALYZE");
  ASSERT_NO_FATAL_FAILURE(candidates());
  expect_by_index("analyzed");
}

// An ingest reads the waits of its events' names (keyed by the events' fields, and the oldest
// without a key) and each one's run and event by their primary keys, however many waits
// another name has: joined, PostgreSQL guessed thousands of keyless waits for any name from
// the table's and hashed every event of the table at each ingest of a name with waits. The
// looks for whether a name has any wait (an ingest's, a run end's) are index probes.
TEST(PostgresStore, AnIngestReadsItsNamesWaitsByIndex) {
  PostgresStoreOfOneFunction pg("store_waits_plan");
  pg.Start(2000);
  testing::PgConnection check(pg.url);
  // Half the runs wait for order/paid with a key each; the other half for other/x, keyless.
  check.Query(
      "INSERT INTO waits (run_id, step_id, function_id, event_name, expression, kind, "
      "created_at_ms, expires_at_ms, match_key) SELECT id, 'w', function_id, CASE WHEN n % 2 = 0 "
      "THEN 'order/paid' ELSE 'other/x' END, 'event.data.n == async.data.n', 'event', "
      "created_at_ms, created_at_ms + 86400000, CASE WHEN n % 2 = 0 THEN 'k' || n END FROM "
      "(SELECT id, function_id, created_at_ms, row_number() OVER (ORDER BY id) AS n FROM runs) r");
  check.Query("ANALYZE");
  // Each ingest's own keys (expr::IndexKeys) name one wait of the first run's: it is read.
  const std::string run_id = check.Query("SELECT min(id) FROM runs")[0][0].value();
  for (int i = 0; i < 6; ++i) {  // past the custom plans of a prepared statement's first five
    NewEvent ne;
    ne.event.internal_id = NewUlid(UnixMillis(pg.clock.Now()));
    ne.event.id = ne.event.internal_id;
    ne.event.name = "order/paid";
    ne.event.payload = {{"name", "order/paid"}, {"data", {{"n", 10000 + i}}}};
    ne.event.received_at_ms = UnixMillis(pg.clock.Now());
    std::vector<std::string> keys;
    ASSERT_TRUE(expr::IndexKeys(ne.event.payload, &keys));
    const std::string key = expr::IndexKey({"data", "n"}, Json(10000 + i)).value();
    ASSERT_NE(std::find(keys.begin(), keys.end(), key), keys.end());
    check.Query(
        "INSERT INTO waits (run_id, step_id, function_id, event_name, expression, kind, "
        "created_at_ms, expires_at_ms, match_key) VALUES ('" +
        run_id + "', 'k" + std::to_string(i) +
        "', 'app-plain', 'order/paid', 'true', 'event', 0, 86400000, '" + key + "')");
    IngestWaits waits;
    ASSERT_THAT(pg.store->IngestEvents({ne}, pg.clock.Now(), &waits), IsOk());
    ASSERT_EQ(waits.open.size(), 1u) << "the wait of its key, and no other";
    EXPECT_EQ(waits.open[0].step_id, "k" + std::to_string(i));
  }
  const std::vector<std::string> plans = pg.GenericPlans(
      "statement LIKE 'SELECT p.*, 1 FROM (SELECT w.run_id%'", "'[\"order/paid\"]'");
  ASSERT_EQ(plans.size(), 1u) << "the ingest's read of its waits, prepared";
  EXPECT_EQ(plans[0].find("Seq Scan"), std::string::npos) << plans[0];
  EXPECT_EQ(plans[0].find("Hash Join"), std::string::npos) << plans[0];
  EXPECT_EQ(plans[0].find("Merge Join"), std::string::npos) << plans[0];
  EXPECT_NE(plans[0].find("events_pkey"), std::string::npos) << plans[0];

  // Whether the events' names have waits (the wait outbox), and, at a run's end, whether its
  // end events' name has any (inngest/function.finished: none here), are index probes, not a
  // scan of every wait that stops at the first of the name (a name with none: all of them).
  const std::vector<std::string> pending =
      pg.GenericPlans("statement LIKE 'INSERT INTO pending_resumes%'", "'[]'");
  ASSERT_EQ(pending.size(), 2u) << "the ingest's look for its names' waits, prepared (with "
                                   "the resumes' caller, and without)";
  for (const std::string& plan : pending) {
    EXPECT_EQ(plan.find("Seq Scan"), std::string::npos) << plan;
    EXPECT_NE(plan.find("waits_event_only"), std::string::npos) << plan;
  }
  for (const QueueItem& item : pg.Claim(6)) {
    Transition::End end{kCompleted, {{"ok", true}}, nullptr};
    EventRecord e;
    e.internal_id = NewUlid(UnixMillis(pg.clock.Now()));
    e.id = "funcky:finished:" + item.run_id;
    e.name = "inngest/function.finished";
    e.payload = {{"name", e.name}, {"id", e.id}, {"data", {{"run_id", item.run_id}}}};
    end.events.push_back(std::move(e));
    Transition t;
    t.move = std::move(end);
    auto applied = pg.store->ApplyAndKeep(item, t, pg.clock.Now(), 30s);
    ASSERT_THAT(applied, IsOk());
    EXPECT_TRUE(applied->end_events_stored) << "no wait awaits inngest/function.finished";
  }
  const std::vector<std::string> ends = pg.GenericPlans(
      "statement LIKE 'UPDATE runs SET status = $2, output%end_events_stored%'", "'x'");
  ASSERT_EQ(ends.size(), 1u) << "the end's statement with its events, prepared";
  EXPECT_EQ(ends[0].find("Seq Scan on waits"), std::string::npos) << ends[0];
  EXPECT_NE(ends[0].find("using waits_event on"), std::string::npos) << ends[0];
}

// Whether any run is past a `timeouts` deadline, and which, are probes of the index of active
// runs' deadlines (runs_timeout), however many runs have one: a join of every deadline row
// with its run was read at each sweep tick of every coordinator (15-28 ms a tick beside
// 10,000 running runs with timeouts.finish), and held ended runs' rows until a sweep forgot
// them.
TEST(PostgresStore, TimeoutsDueAreAnIndexProbe) {
  PostgresStoreOfOneFunction pg("store_timeouts_plan");
  pg.Start(2000);  // ended, without timeouts
  ASSERT_NO_FATAL_FAILURE(pg.Complete(pg.Claim(2000)));
  pg.Start(2000, [](int, NewEvent& ne) {  // running, to finish within a minute of their start
    ne.runs[0].timeouts = RunTimeouts{std::nullopt, 60s};
  });
  const TimePoint before = pg.clock.Now();
  const std::vector<QueueItem> timed = pg.Claim(2000);
  const TimePoint after = pg.clock.Now();
  ASSERT_NO_FATAL_FAILURE(pg.Complete({timed.begin(), timed.begin() + 1000}));
  testing::PgConnection(pg.url).Query("ANALYZE");
  auto due = [&](TimePoint at) {
    auto sweeps = pg.store->DueSweeps(0, 0, at);
    EXPECT_THAT(sweeps, IsOk());
    return sweeps.ok() && sweeps->timeouts;
  };
  EXPECT_FALSE(due(before + 60s - 1ms)) << "no run is past its deadline yet";
  auto none = pg.store->CancelTimedOutRuns(before + 60s - 1ms, 10);
  ASSERT_THAT(none, IsOk());
  EXPECT_TRUE(none->empty());
  EXPECT_TRUE(due(after + 60s)) << "the running ones are past it";
  auto cancelled = pg.store->CancelTimedOutRuns(after + 60s, 10);
  ASSERT_THAT(cancelled, IsOk());
  ASSERT_EQ(cancelled->size(), 10u);
  for (const std::string& run_id : *cancelled) {
    EXPECT_EQ(pg.store->GetRun(run_id)->status, kCancelled) << run_id;
    EXPECT_NE(std::find_if(timed.begin() + 1000, timed.end(),
                           [&](const QueueItem& item) { return item.run_id == run_id; }),
              timed.end())
        << "a run still running: " << run_id;
  }

  const std::vector<std::string> plans = pg.GenericPlans(
      "statement LIKE 'SELECT ((SELECT 1 FROM waits w%' OR statement LIKE "
      "'SELECT id FROM runs WHERE timeout_at_ms%'",
      "0");
  ASSERT_EQ(plans.size(), 2u) << "the sweeps' first read and the timeouts' read, prepared";
  for (const std::string& plan : plans) {
    EXPECT_EQ(plan.find("Seq Scan on runs"), std::string::npos) << plan;
    EXPECT_EQ(plan.find("Sort Key: runs.timeout_at_ms"), std::string::npos) << plan;
    EXPECT_EQ(plan.find("Sort Key: timeout_at_ms"), std::string::npos) << plan;
    EXPECT_NE(plan.find("using runs_timeout on runs"), std::string::npos) << plan;
  }
}

// The sweeps' looks for work (DueSweeps) and the outboxes' reads take the rows older than the
// sweep's bound by index, however many newer ones there are, and an outbox's events by their
// primary key: as EXISTS, and with the bound an `OR` (0: any age), PostgreSQL filtered every
// row of a table at each sweep tick of every coordinator when none was old enough (7.7 ms
// beside 100,000 new events in an outbox), and joined, it hashed every event of the table.
TEST(PostgresStore, TheSweepsLookForWorkByIndex) {
  PostgresStoreOfOneFunction pg("store_sweeps_plan");
  pg.Start(2000);
  ASSERT_NO_FATAL_FAILURE(pg.Complete(pg.Claim(1000)));  // their ends not announced yet
  testing::PgConnection check(pg.url);
  for (const char* outbox : {"pending_resumes", "pending_cancels"}) {
    check.Query(std::string("INSERT INTO ") + outbox +
                " (event_id, received_at_ms) SELECT internal_id, received_at_ms FROM events");
  }
  // The queued runs' waits, their look-backs pending; gaps announced already.
  check.Query(
      "INSERT INTO waits (run_id, step_id, function_id, event_name, expression, kind, "
      "created_at_ms, expires_at_ms, lookback_from_ms) SELECT id, 'w', function_id, 'x/y', "
      "'true', 'event', created_at_ms, created_at_ms + 86400000, created_at_ms FROM runs "
      "WHERE status = 'queued'");
  check.Query(
      "INSERT INTO lane_gaps (function_id, key, first_number, last_number, waited_since_ms, "
      "recorded_at_ms, reason, announced) SELECT 'app-plain', 'k' || n, 1, 1, 0, 0, 'timeout', "
      "true FROM generate_series(1, 2000) n");
  check.Query("ANALYZE");
  const int64_t first_ms = check.Count("SELECT min(received_at_ms) FROM events");
  for (int i = 0; i < 6; ++i) {  // past the custom plans of a prepared statement's first five
    auto none = pg.store->PendingResumes(first_ms, 100);
    ASSERT_THAT(none, IsOk());
    EXPECT_TRUE(none->empty()) << "none received before the first";
    auto any = pg.store->PendingResumes(0, 100);
    ASSERT_THAT(any, IsOk());
    EXPECT_EQ(any->size(), 100u) << "0: any age";
    auto sweeps = pg.store->DueSweeps(first_ms, first_ms, pg.clock.Now());
    ASSERT_THAT(sweeps, IsOk());
    EXPECT_FALSE(sweeps->lookbacks || sweeps->lane_gaps || sweeps->timeouts || sweeps->run_ends ||
                 sweeps->cancels || sweeps->resumes);
    sweeps = pg.store->DueSweeps(UnixMillis(pg.clock.Now() + 1s), 0, pg.clock.Now() + 1s);
    ASSERT_THAT(sweeps, IsOk());
    EXPECT_TRUE(sweeps->lookbacks && sweeps->run_ends && sweeps->cancels && sweeps->resumes);
    EXPECT_FALSE(sweeps->lane_gaps || sweeps->timeouts);
  }
  const std::vector<std::string> reads =
      pg.GenericPlans("statement LIKE 'SELECT o.event_id, (SELECT e.id%pending_resumes%'",
                      std::to_string(first_ms));
  ASSERT_EQ(reads.size(), 1u) << "the sweep's read of the wait outbox, prepared";
  EXPECT_NE(reads[0].find("Index Cond: (received_at_ms < CASE"), std::string::npos) << reads[0];
  EXPECT_NE(reads[0].find("events_pkey"), std::string::npos) << reads[0];
  EXPECT_EQ(reads[0].find("Seq Scan"), std::string::npos) << reads[0];
  EXPECT_EQ(reads[0].find("Hash"), std::string::npos) << reads[0];
  const std::vector<std::string> due =
      pg.GenericPlans("statement LIKE 'SELECT ((SELECT 1 FROM waits w%'", std::to_string(first_ms));
  ASSERT_EQ(due.size(), 1u) << "the sweeps' look for work, prepared";
  for (const char* index : {"waits_lookback", "lane_gaps_pending", "runs_timeout", "run_ends_ended",
                            "pending_cancels_received", "pending_resumes_received"}) {
    EXPECT_NE(due[0].find(index), std::string::npos) << index << "\n" << due[0];
  }
  EXPECT_EQ(due[0].find("Seq Scan"), std::string::npos) << due[0];
}

// A cancel_on rule without a condition reads the function's runs that have not ended a page at
// a time by the index of active runs, and each one's event by its primary key, young database
// or analyzed: by the runs' primary key, the function and status a filter, each page read
// every run of the table after the last page's, ended or another function's.
TEST(PostgresStore, ActiveRunsAreReadByIndex) {
  PostgresStoreOfOneFunction pg("store_active_plan");
  pg.Start(3000);
  const std::vector<QueueItem> claimed = pg.Claim(3000);
  ASSERT_NO_FATAL_FAILURE(pg.Complete({claimed.begin(), claimed.begin() + 2000}));
  std::set<std::string> running;
  for (auto it = claimed.begin() + 2000; it != claimed.end(); ++it) running.insert(it->run_id);
  auto read = [&](const char* when) {
    for (int i = 0; i < 6; ++i) {  // past the custom plans of a prepared statement's first five
      auto page = pg.store->ActiveRuns("app-plain", UnixMillis(pg.clock.Now()) + 1, "", 100);
      ASSERT_THAT(page, IsOk());
      ASSERT_EQ(page->size(), 100u) << when;
      for (const ActiveRun& run : *page) EXPECT_EQ(running.count(run.run_id), 1u) << run.run_id;
      EXPECT_EQ(page->front().run_id, *running.begin()) << "from the first, in id order";
    }
    const std::vector<std::string> plans = pg.GenericPlans(
        "statement LIKE 'SELECT id, payload, created_at_ms FROM (SELECT i.*%FROM runs r%' AND "
        "statement NOT LIKE '%run_cancel_keys%'",
        "'app-plain'");
    ASSERT_EQ(plans.size(), 1u) << when << ": the read of active runs, prepared";
    EXPECT_EQ(plans[0].find("Seq Scan"), std::string::npos) << when << "\n" << plans[0];
    EXPECT_EQ(plans[0].find("Hash Join"), std::string::npos) << when << "\n" << plans[0];
    EXPECT_EQ(plans[0].find("Merge Join"), std::string::npos) << when << "\n" << plans[0];
    EXPECT_NE(plans[0].find("runs_active"), std::string::npos) << when << "\n" << plans[0];
  };
  ASSERT_NO_FATAL_FAILURE(read("young"));
  testing::PgConnection(pg.url).Query("ANALYZE");
  ASSERT_NO_FATAL_FAILURE(read("analyzed"));
}

// A call that records a step and changes nothing else of its run (status, waits, parallel
// calls) locks the run's row without writing a new version of it, also when it names the
// run's request version (kept with its step); a call that names one and records no step
// writes one.
TEST(PostgresStore, AStepThatChangesNothingElseOfItsRunLeavesItsRowAsItIs) {
  PostgresStoreOfOneFunction pg("store_step_row");
  pg.Start(1);
  auto claimed = pg.store->Claim(1, pg.clock.Now(), 30s);
  ASSERT_THAT(claimed, IsOk());
  ASSERT_EQ(claimed->size(), 1u);
  QueueItem item = (*claimed)[0];
  testing::PgConnection check(pg.url);
  auto row_version = [&] {
    return *check.Query("SELECT ctid::text FROM runs WHERE id = '" + item.run_id + "'")[0][0];
  };
  const std::string claimed_version = row_version();
  auto step = [&](const std::string& id, std::optional<int> req_version) {
    ASSERT_NO_FATAL_FAILURE(pg.Step(item, id, req_version));
  };
  step("s1", std::nullopt);
  EXPECT_EQ(row_version(), claimed_version);
  step("s2", 3);
  EXPECT_EQ(row_version(), claimed_version);
  auto run = pg.store->GetRun(item.run_id);
  ASSERT_THAT(run, IsOk());
  EXPECT_EQ(run->req_version, 3);
  EXPECT_EQ(run->status, kRunning);
  EXPECT_EQ(pg.store->GetSteps(item.run_id)->size(), 2u);

  Transition t;  // a version and no step: the run's row
  t.req_version = 4;
  t.move = Transition::Continue{.next = {NextCall{std::string(kDiscoveryStepId), pg.clock.Now()}}};
  ASSERT_THAT(pg.store->ApplyAndKeep(item, t, pg.clock.Now(), 30s), IsOk());
  EXPECT_NE(row_version(), claimed_version);
  EXPECT_EQ(pg.store->GetRun(item.run_id)->req_version, 4);
}

// A call kept in place that changes its item (here a discovery after a retried call: its
// attempt goes back to 0) takes a new lease token but stays leased, and its lease runs on:
// the update of its queue item changes no indexed column and is HOT (a heap-only tuple: no
// new entry in any of the queue's indexes). Read off the item's page (pageinspect).
TEST(PostgresStore, AKeptCallsUpdateOfItsQueueItemIsHeapOnly) {
  PostgresStoreOfOneFunction pg("store_keep_hot");
  pg.Start(1);
  QueueItem item = pg.Claim(1)[0];
  Transition retry;
  retry.move = Transition::Retry{pg.clock.Now()};
  ASSERT_THAT(pg.store->Apply(item, retry, pg.clock.Now()), IsOk());
  item = pg.Claim(1)[0];
  ASSERT_EQ(item.attempt, 1);
  testing::PgConnection check(pg.url);
  check.Query("CREATE EXTENSION IF NOT EXISTS pageinspect");
  auto heap_only = [&] {  // HEAP_ONLY_TUPLE, 0x8000 of t_infomask2, of the item's version
    auto rows = check.Query(
        "SELECT (h.t_infomask2 & 32768) <> 0 FROM queue q, "
        "heap_page_items(get_raw_page('queue', (q.ctid::text::point)[0]::int)) h "
        "WHERE q.id = " +
        std::to_string(item.id) + " AND h.lp = (q.ctid::text::point)[1]::int");
    return rows.size() == 1 && rows[0][0] == "t";
  };
  EXPECT_FALSE(heap_only()) << "the claim leased the item: a version with new index entries";
  Transition t;
  t.steps.push_back({"s1", 0, "s1", "completed", {{"data", 1}}});
  t.move = Transition::Continue{.next = {NextCall{std::string(kDiscoveryStepId), pg.clock.Now()}}};
  auto kept = pg.store->ApplyAndKeep(item, t, pg.clock.Now(), 30s);
  ASSERT_THAT(kept, IsOk());
  ASSERT_TRUE(kept->kept.has_value());
  EXPECT_EQ(kept->kept->item.attempt, 0);
  EXPECT_NE(kept->kept->item.lease_token, item.lease_token);
  EXPECT_TRUE(heap_only()) << "after keeping the call";
}

// A call kept in place that changes nothing of its item but would change its token (a
// discovery after a step, the first attempt, while two thirds of the lease remain) keeps the
// item as it is, token and all: no new version of its row (its xmin and place stay). Once
// less than two thirds remain, the item takes a new token and its lease runs on.
TEST(PostgresStore, AKeptCallThatChangesNothingOfItsItemLeavesItsRowAsItIs) {
  PostgresStoreOfOneFunction pg("store_keep_as_is");
  pg.Start(1);
  QueueItem item = pg.Claim(1)[0];  // a discovery, leased for 30 s
  testing::PgConnection check(pg.url);
  auto row = [&] {
    auto rows = check.Query(
        "SELECT xmin::text || ' ' || ctid::text, visible_at_ms FROM queue "
        "WHERE id = " +
        std::to_string(item.id));
    return std::make_pair(*rows.at(0)[0], std::stoll(*rows.at(0)[1]));
  };
  const std::string claimed_version = row().first;
  auto step = [&](const std::string& id, TimePoint now) {
    Transition t;
    t.steps.push_back({id, 0, id, "completed", {{"data", 1}}});
    t.move = Transition::Continue{.next = {NextCall{std::string(kDiscoveryStepId), now}},
                                  .next_only_if_idle = true};
    return pg.store->ApplyAndKeep(item, t, now, 30s);
  };
  for (const std::string id : {"s1", "s2"}) {
    auto kept = step(id, pg.clock.Now());
    ASSERT_THAT(kept, IsOk());
    ASSERT_TRUE(kept->kept.has_value());
    EXPECT_EQ(kept->kept->item.lease_token, item.lease_token) << id;
    EXPECT_EQ(kept->kept->item.step_id, kDiscoveryStepId);
    item = kept->kept->item;
    EXPECT_EQ(row().first, claimed_version) << "after keeping the call that follows " << id;
  }
  const TimePoint renewed_at = pg.clock.Now();
  EXPECT_THAT(pg.store->RenewLease(item, renewed_at + 30s), IsOk());
  const auto [renewed_version, renewed_until] = row();
  EXPECT_EQ(renewed_until, UnixMillis(renewed_at + 30s));

  const TimePoint later = renewed_at + 11s;  // 19 s of 30 left: less than two thirds
  auto kept = step("s3", later);
  ASSERT_THAT(kept, IsOk());
  ASSERT_TRUE(kept->kept.has_value());
  EXPECT_NE(kept->kept->item.lease_token, item.lease_token);
  const auto [kept_version, kept_until] = row();
  EXPECT_NE(kept_version, renewed_version);
  EXPECT_EQ(kept_until, UnixMillis(later + 30s)) << "the lease runs on";
  EXPECT_EQ(pg.store->GetSteps(item.run_id)->size(), 3u);
  EXPECT_THAT(pg.store->RenewLease(item, later + 30s), StatusIs(StatusCode::kAborted))
      << "the old token no longer holds the item";
}

// A call's end locks the call's queue item, while it holds the lease, in the statement that
// ends its run: the lease check there (an InitPlan that locks the item) runs before the
// run's row is read and locked, in the order every writer locks a run's rows (its items,
// then the run). The item's lock has no statement of its own.
TEST(PostgresStore, AnEndLocksItsItemInTheStatementThatEndsItsRun) {
  PostgresStoreOfOneFunction pg("store_end_lock");
  pg.Start(1);
  const QueueItem item = pg.Claim(1)[0];
  ASSERT_NO_FATAL_FAILURE(pg.Complete({item}));
  EXPECT_EQ(pg.store->GetRun(item.run_id)->status, kCompleted);

  const std::vector<std::string> plans =
      pg.GenericPlans("statement LIKE 'UPDATE runs SET status = $2, output%'", "'x'");
  ASSERT_EQ(plans.size(), 1u) << "the end's statement, prepared";
  const std::string& plan = plans[0];
  const size_t lock = plan.find("LockRows");
  const size_t item_scan = plan.find("queue_pkey");
  const size_t run_scan = plan.find("runs_pkey");
  ASSERT_NE(lock, std::string::npos) << plan;
  ASSERT_NE(item_scan, std::string::npos) << plan;
  ASSERT_NE(run_scan, std::string::npos) << plan;
  EXPECT_LT(lock, item_scan) << "the item's rows are locked as they are found\n" << plan;
  EXPECT_LT(item_scan, run_scan) << plan;
  EXPECT_NE(plan.find("One-Time Filter"), std::string::npos)
      << "the lease is checked before the run's row is read\n"
      << plan;
  EXPECT_TRUE(pg.GenericPlans("statement LIKE 'SELECT id FROM queue WHERE id = $1%'", "0").empty())
      << "no statement of its own locked the item";
}

// Every intake into a lane locks the lane's row; one that brings the options the lane has
// already writes the row only for the run's place in it (one version, not two).
TEST(PostgresStore, AnIntakeIntoALaneWritesTheLanesRowOnceForItsRun) {
  PostgresStoreOfOneFunction pg("store_lane_intake");
  testing::PgConnection check(pg.url);
  check.Query("CREATE EXTENSION IF NOT EXISTS pageinspect");
  auto versions = [&] {  // of lane rows, live or dead, on the table's one page
    return check.Count(
        "SELECT count(*) FROM heap_page_items(get_raw_page('lanes', 0)) WHERE lp_flags = 1");
  };
  pg.Start(1, "k");  // the lane's first run: the row, its place and its head
  const int64_t before = versions();
  pg.Start(1, "k");
  EXPECT_EQ(versions() - before, 1) << "the second run's place; the lock wrote nothing";
  pg.Start(1, "k");
  EXPECT_EQ(versions() - before, 2);
}

TEST(SqliteDatabase, SentStatementsRunInOrderAndFailTheirTransaction) {
  auto db = OpenSqliteDatabase({.path = testing::TempDir("funcky-sent-") + "/sent.db"});
  ASSERT_THAT(db, IsOk());
  CheckSentStatements(**db, /*postgres=*/false);
}

// The write-ahead log is copied into the database file once it holds 1,000 pages without a
// checkpoint being asked for (the database's own thread does it, sqlite_db.cc), stays bounded
// under a stream of commits, and the data is whole when the file is opened again.
TEST(SqliteDatabase, TheLogIsCheckpointedAndStaysBounded) {
  const std::string path = testing::TempDir("funcky-wal-") + "/wal.db";
  constexpr int64_t kPage = 4096;
  const std::string value(3000, 'x');  // a row a page
  auto db = OpenSqliteDatabase({.path = path});
  ASSERT_THAT(db, IsOk());
  int64_t rows = 0;
  auto commit = [&](int n) {
    return (*db)->Transact([&](sql::Tx& tx) {
      for (int i = 0; i < n; ++i) tx.Exec("INSERT INTO t (v) VALUES ($1)", {value});
      rows += n;
      return Status::Ok();
    });
  };
  ASSERT_THAT((*db)->Transact([](sql::Tx& tx) {
    tx.Exec("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT NOT NULL)");
    return Status::Ok();
  }),
              IsOk());
  for (int i = 0; i < 15; ++i) ASSERT_THAT(commit(100), IsOk());  // 1,500 pages
  // Until the checkpoint, the rows are in the log only.
  const auto deadline = std::chrono::steady_clock::now() + 20s;
  while (std::filesystem::file_size(path) < 1000 * kPage &&
         std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(10ms);
  }
  EXPECT_GE(std::filesystem::file_size(path), 1000 * kPage);

  // 10,000 pages more, a commit a millisecond: copied and started over again and again, the
  // log never reaches 6,000 pages (about 2,000 here, 4,500 at most with two busy loops
  // beside back-to-back commits; all 10,000 when it never starts over).
  for (int i = 0; i < 100; ++i) {
    ASSERT_THAT(commit(100), IsOk());
    std::this_thread::sleep_for(1ms);
  }
  EXPECT_LT(std::filesystem::file_size(path + "-wal"), 6000 * (kPage + 24));
  db->reset();

  auto again = OpenSqliteDatabase({.path = path});
  ASSERT_THAT(again, IsOk());
  ASSERT_THAT((*again)->Transact([&](sql::Tx& tx) {
    EXPECT_EQ(tx.Count("SELECT count(*) FROM t"), rows);
    return Status::Ok();
  }),
              IsOk());
}

// Another process reading the database (a shell in a transaction, a backup tool) keeps the log
// from starting over. A commit past 8,000 pages in it copies what it can and waits for no
// reader: it waited for the reader up to the busy timeout, at every commit, and every store
// call of the coordinator behind it.
TEST(SqliteDatabase, ACommitPastTheLogsBoundWaitsForNoReader) {
  const std::string path = testing::TempDir("funcky-wal-reader-") + "/wal.db";
  auto db = OpenSqliteDatabase({.path = path, .busy_timeout_ms = 30'000});
  ASSERT_THAT(db, IsOk());
  ASSERT_THAT((*db)->Transact([](sql::Tx& tx) {
    tx.Exec("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT NOT NULL)");
    return Status::Ok();
  }),
              IsOk());
  sqlite3* reader = nullptr;
  ASSERT_EQ(sqlite3_open(path.c_str(), &reader), SQLITE_OK);
  ASSERT_EQ(sqlite3_exec(reader, "BEGIN; SELECT count(*) FROM t;", nullptr, nullptr, nullptr),
            SQLITE_OK);
  const std::string value(3000, 'x');  // a row a page
  const auto start = std::chrono::steady_clock::now();
  for (int i = 0; i < 83; ++i) {  // 8,300 pages: the last commits are past 8,000
    ASSERT_THAT((*db)->Transact([&](sql::Tx& tx) {
      for (int j = 0; j < 100; ++j) tx.Exec("INSERT INTO t (v) VALUES ($1)", {value});
      return Status::Ok();
    }),
                IsOk());
  }
  const auto took = std::chrono::steady_clock::now() - start;
  sqlite3_exec(reader, "COMMIT", nullptr, nullptr, nullptr);
  sqlite3_close(reader);
  EXPECT_GE(std::filesystem::file_size(path + "-wal"), int64_t{8000} * 4096)
      << "not past the bound";
  EXPECT_LT(took, 20s) << "the commits past 8,000 pages waited for the reader (30 s each)";
}

// SQLite uses a partial index only when the query's condition holds the index's terms as
// written: the sweep's looks for timeouts and lane gaps, and the read of a function's active
// runs, each by the partial index made for it.
TEST(SqliteStore, PartialIndexesServeTheQueriesTheyWereMadeFor) {
  auto db = OpenSqliteDatabase({.path = testing::TempDir("funcky-partial-") + "/partial.db"});
  ASSERT_THAT(db, IsOk());
  sql::Database* raw = db->get();
  SqlStore store(std::move(*db));
  ASSERT_THAT(store.Migrate(), IsOk());
  auto plan = [&](const std::string& query, std::vector<sql::Value> params) {
    std::string out;
    EXPECT_THAT(raw->Transact([&](sql::Tx& tx) {
      for (sql::Row row : tx.Query("EXPLAIN QUERY PLAN " + query, params)) {
        out += row.Text(3) + "\n";
      }
      return Status::Ok();
    }),
                IsOk());
    return out;
  };
  std::string p = plan("SELECT " + AnyTimeoutsDue(), {int64_t{1}});
  EXPECT_NE(p.find("INDEX runs_timeout"), std::string::npos) << p;
  p = plan("SELECT " + sql::AnyRow("lane_gaps WHERE NOT announced", "id"), {});
  EXPECT_NE(p.find("INDEX lane_gaps_pending"), std::string::npos) << p;
  // ActiveRuns' condition on runs, as it spells it.
  p = plan("SELECT r.id FROM runs r WHERE r.function_id = $1 AND " + kRunNotEnded +
               " AND r.id > $2 ORDER BY r.id LIMIT 10",
           {std::string("f"), std::string("")});
  EXPECT_NE(p.find("INDEX runs_active"), std::string::npos) << p;
  // Retention's reads, oldest first, by a range of the primary key.
  p = plan(ExpiredRunsQuery(), {int64_t{1}, int64_t{10}, std::string("01ARZ3NDEK")});
  EXPECT_NE(p.find("(id<?)"), std::string::npos) << p;
  EXPECT_EQ(p.find("runs_status"), std::string::npos) << p;
  p = plan(ExpiredEventsQuery(), {int64_t{1}, int64_t{10}, std::string("01ARZ3NDEK")});
  EXPECT_NE(p.find("(internal_id<?)"), std::string::npos) << p;
}

std::unique_ptr<sql::Database> OpenSqlite(const std::string& test_name) {
  static const std::string dir = testing::TempDir("funcky-store-sqlite-");
  auto db = OpenSqliteDatabase({.path = dir + "/" + test_name + ".db"});
  EXPECT_TRUE(db.ok()) << db.status().ToString();
  return db.ok() ? std::move(*db) : nullptr;
}

// Registers a wait on the run's discovery item; returns the wait.
NewWait Wait(const std::string& step_id, TimePoint expires_at) {
  NewWait w;
  w.step_id = step_id;
  w.name = "approval";
  w.event_name = "test/approved";
  w.expression = "async.data.ok == true";
  w.kind = kWaitEvent;
  w.expires_at = expires_at;
  return w;
}

TEST_P(StoreConformance, WaitResumesOnceByMatchOrByTimeoutNeverBoth) {
  const std::string run = Start("app-plain");
  auto items = Claim();
  ASSERT_EQ(items.size(), 1u);
  Transition t;
  t.move = Transition::Continue{.waits = {Wait("hw", clock_.Now() + 10s)}, .run_status = kWaiting};
  ASSERT_TRUE(store_->Apply(items[0], t, clock_.Now()).ok());
  EXPECT_EQ(RunStatus(run), kWaiting);
  EXPECT_TRUE(Claim().empty());  // the timeout item is not due

  auto waits = WaitsSeenBy("test/approved");
  ASSERT_EQ(waits.size(), 1u);
  EXPECT_EQ(waits[0].run_id, run);
  EXPECT_EQ(waits[0].expression, "async.data.ok == true");
  EXPECT_TRUE(waits[0].trigger.is_null());  // its `if` names no `event`: the run's is not read
  EXPECT_TRUE(WaitsSeenBy("test/other").empty());

  Json event = {{"name", "test/approved"}, {"data", {{"ok", true}}}};
  EXPECT_TRUE(*store_->ResolveWait(run, "hw", event, clock_.Now()));
  EXPECT_FALSE(*store_->ResolveWait(run, "hw", event, clock_.Now()));  // once
  EXPECT_TRUE(WaitsSeenBy("test/approved").empty());
  auto resumed = Claim();  // due now, with the event as its memo
  ASSERT_EQ(resumed.size(), 1u);
  EXPECT_EQ(resumed[0].step_id, "hw");
  ASSERT_TRUE(resumed[0].resume);
  EXPECT_EQ((*resumed[0].resume)["memo"], event);
  EXPECT_EQ((*resumed[0].resume)["name"], "approval");
}

// A wait for `signal` (step.waitForSignal), taking it over from another wait or not.
NewWait SignalWait(const std::string& signal, TimePoint expires_at, bool replace = false) {
  NewWait w;
  w.step_id = "sig";
  w.name = "approval";
  w.kind = kWaitSignal;
  w.signal = signal;
  w.replace_signal = replace;
  w.expires_at = expires_at;
  return w;
}

TEST_P(StoreConformance, ASignalResumesItsWaitOnceAndNoEventDoes) {
  const std::string run = Start("app-plain");
  auto items = Claim();
  ASSERT_EQ(items.size(), 1u);
  Transition t;
  t.move = Transition::Continue{.waits = {SignalWait("order-7", clock_.Now() + 10s)},
                                .run_status = kWaiting};
  ASSERT_THAT(store_->Apply(items[0], t, clock_.Now()), IsOk());
  EXPECT_EQ(RunStatus(run), kWaiting);
  EXPECT_TRUE(Claim().empty());  // the timeout item is not due
  // No event of any name resumes it, and it has no look-back.
  EXPECT_TRUE(WaitsSeenBy("order-7").empty());
  EXPECT_TRUE(WaitsSeenBy("test/e").empty());
  EXPECT_TRUE(store_->PendingLookbacks(UnixMillis(clock_.Now()) + 1, 10)->empty());

  auto other = store_->ResolveSignal("order-8", Json{{"by", "ada"}}, clock_.Now());
  ASSERT_THAT(other, IsOk());
  EXPECT_FALSE(other->has_value());
  auto resumed = store_->ResolveSignal("order-7", Json{{"by", "ada"}}, clock_.Now());
  ASSERT_THAT(resumed, IsOk());
  EXPECT_EQ(resumed->value_or(""), run);
  auto again = store_->ResolveSignal("order-7", Json{{"by", "bob"}}, clock_.Now());
  ASSERT_THAT(again, IsOk());
  EXPECT_FALSE(again->has_value()) << "once";
  items = Claim();  // due now, with the signal and its data as the step's memo
  ASSERT_EQ(items.size(), 1u);
  EXPECT_EQ(items[0].step_id, "sig");
  ASSERT_TRUE(items[0].resume);
  EXPECT_EQ((*items[0].resume)["memo"],
            (Json{{"data", {{"signal", "order-7"}, {"data", {{"by", "ada"}}}}}}));
}

// A signal wait's op reported again (a replay while another branch of the run went on) keeps
// its signal, also with "replace" (which took the signal from the wait itself), and once
// resumed registers nothing (a wait for a step that has its memo held the signal until the
// run ended).
TEST_P(StoreConformance, ASignalWaitReportedAgainKeepsItsSignalAndOnceResumedComesNotBack) {
  const std::string run = Start("app-plain");
  auto items = Claim();
  ASSERT_EQ(items.size(), 1u);
  const NewWait wait = SignalWait("again", clock_.Now() + 10s, /*replace=*/true);
  Transition fan;
  fan.move = Transition::Continue{.next = {NextCall{"b", clock_.Now()}}, .waits = {wait}};
  ASSERT_THAT(store_->Apply(items[0], fan, clock_.Now()), IsOk());
  items = Claim();
  ASSERT_EQ(items.size(), 1u);
  ASSERT_EQ(items[0].step_id, "b");
  Transition reported_again;  // branch b's replay reports the wait again, and one more call
  reported_again.move =
      Transition::Continue{.next = {NextCall{"c", clock_.Now()}}, .waits = {wait}};
  ASSERT_THAT(store_->Apply(items[0], reported_again, clock_.Now()), IsOk());
  auto resumed = store_->ResolveSignal("again", 1, clock_.Now());
  ASSERT_THAT(resumed, IsOk());
  EXPECT_EQ(resumed->value_or(""), run) << "the wait kept its signal";

  // The resume applied (its step recorded), then c's stale replay reports the wait again.
  QueueItem resume_item, c_item;
  for (const QueueItem& item : Claim()) (item.step_id == "sig" ? resume_item : c_item) = item;
  ASSERT_EQ(resume_item.step_id, "sig");
  ASSERT_EQ(c_item.step_id, "c");
  Transition recorded;
  recorded.steps.push_back({"sig", 0, "approval", "completed", (*resume_item.resume)["memo"]});
  recorded.move = Transition::Continue{
      .next = {NextCall{std::string(kDiscoveryStepId), clock_.Now()}}, .next_only_if_idle = true};
  ASSERT_THAT(store_->Apply(resume_item, recorded, clock_.Now()), IsOk());
  Transition stale;
  stale.move = Transition::Continue{.waits = {wait}};
  ASSERT_THAT(store_->Apply(c_item, stale, clock_.Now()), IsOk());
  auto after = store_->ResolveSignal("again", 2, clock_.Now());
  ASSERT_THAT(after, IsOk());
  EXPECT_FALSE(after->has_value()) << "no wait came back for the resumed step";
}

// At most one open wait holds a signal: a later one without onConflict "replace" fails its
// step at once (its resume item due now with SignalConflictMemo); with it, it takes the
// signal and the earlier one waits on for its timeout. A run's end frees its signal.
TEST_P(StoreConformance, ASignalHeldByAnotherWaitFailsTheStepOrIsTakenOver) {
  auto waiting = [&](const NewWait& wait) {
    const std::string run = Start("app-plain");
    auto items = Claim();
    EXPECT_EQ(items.size(), 1u);
    if (items.size() != 1) return run;
    Transition t;
    t.move = Transition::Continue{.waits = {wait}, .run_status = kWaiting};
    EXPECT_THAT(store_->Apply(items[0], t, clock_.Now()), IsOk());
    return run;
  };
  const TimePoint later = clock_.Now() + 10s;
  const std::string holder = waiting(SignalWait("held", later));
  const std::string refused = waiting(SignalWait("held", later));
  auto items = Claim();
  ASSERT_EQ(items.size(), 1u) << "the refused wait's step is due now";
  EXPECT_EQ(items[0].run_id, refused);
  ASSERT_TRUE(items[0].resume);
  EXPECT_EQ((*items[0].resume)["memo"], SignalConflictMemo("held"));
  auto to_holder = store_->ResolveSignal("held", 1, clock_.Now());
  ASSERT_THAT(to_holder, IsOk());
  EXPECT_EQ(to_holder->value_or(""), holder);
  ASSERT_EQ(Claim().size(), 1u);

  const std::string earlier = waiting(SignalWait("moved", later, true));
  const std::string taker = waiting(SignalWait("moved", later, true));
  EXPECT_TRUE(Claim().empty()) << "neither step is due";
  auto to_taker = store_->ResolveSignal("moved", 2, clock_.Now());
  ASSERT_THAT(to_taker, IsOk());
  EXPECT_EQ(to_taker->value_or(""), taker);
  items = Claim();
  ASSERT_EQ(items.size(), 1u);
  EXPECT_EQ(items[0].run_id, taker);
  EXPECT_EQ(RunStatus(earlier), kWaiting) << "the earlier wait waits on for its timeout";
  auto to_nobody = store_->ResolveSignal("moved", 3, clock_.Now());
  ASSERT_THAT(to_nobody, IsOk());
  EXPECT_FALSE(to_nobody->has_value());

  const std::string ended = waiting(SignalWait("freed", later));
  ASSERT_THAT(store_->CancelRun(ended, {{"name", "Cancelled"}}, clock_.Now()), IsOk());
  auto freed = store_->ResolveSignal("freed", 4, clock_.Now());
  ASSERT_THAT(freed, IsOk());
  EXPECT_FALSE(freed->has_value()) << "a cancelled run's wait is gone";
  const std::string next = waiting(SignalWait("freed", later));
  auto to_next = store_->ResolveSignal("freed", 5, clock_.Now());
  ASSERT_THAT(to_next, IsOk());
  EXPECT_EQ(to_next->value_or(""), next) << "the signal was free for a new wait";
}

// A head blocked while another of its calls was out, whose coordinator then died: once that
// call's lease has expired, retry-head replays the run from its discovery alone. (The stale
// item stayed, and was claimed and called beside the replay: its step ran twice at once,
// with its old attempt number.)
TEST_P(StoreConformance, ARetriedHeadLeavesNoStaleCallOfItsOwn) {
  const std::string head = Start("app-ordered", "k");
  auto items = Claim();
  ASSERT_EQ(items.size(), 1u);
  Transition fan;
  fan.move =
      Transition::Continue{.next = {NextCall{"a", clock_.Now()}, NextCall{"b", clock_.Now()}}};
  ASSERT_THAT(store_->Apply(items[0], fan, clock_.Now()), IsOk());
  items = Claim();
  ASSERT_EQ(items.size(), 2u);
  const QueueItem& failing = items[0].step_id == "a" ? items[0] : items[1];
  ASSERT_THAT(Block(failing), IsOk());
  EXPECT_EQ(RunStatus(head), kBlocked);
  clock_.Advance(31s);  // the other call's lease (30 s) has expired: its coordinator died

  ASSERT_THAT(store_->RetryLaneHead("app-ordered", "k", clock_.Now()), IsOk());
  items = Claim();
  ASSERT_EQ(items.size(), 1u) << "the replay's discovery alone";
  EXPECT_EQ(items[0].step_id, kDiscoveryStepId);
}

// A head blocked while one of its branches waits for an event: a blocked run waits for
// nothing, and retry-head's replay registers the wait again, with its timeout call. (The wait
// outlived the block without its timeout call; registered again, it conflicted and queued
// none: a matching event resumed nothing, and the head held its lane until head_timeout.)
TEST_P(StoreConformance, ARetriedHeadsWaitIsRegisteredAgainWithItsTimeout) {
  const std::string head = Start("app-ordered", "w");
  auto items = Claim();
  ASSERT_EQ(items.size(), 1u);
  auto waiting = [&] {
    Transition t;
    t.move = Transition::Continue{.next = {NextCall{"push", clock_.Now()}},
                                  .waits = {Wait("hw", clock_.Now() + 10s)}};
    return t;
  };
  ASSERT_THAT(store_->Apply(items[0], waiting(), clock_.Now()), IsOk());
  items = Claim();
  ASSERT_EQ(items.size(), 1u);
  ASSERT_EQ(items[0].step_id, "push");
  ASSERT_THAT(Block(items[0]), IsOk());
  EXPECT_EQ(RunStatus(head), kBlocked);
  EXPECT_TRUE(WaitsSeenBy("test/approved").empty()) << "a blocked run waits for nothing";

  ASSERT_THAT(store_->RetryLaneHead("app-ordered", "w", clock_.Now()), IsOk());
  items = Claim();
  ASSERT_EQ(items.size(), 1u);
  ASSERT_THAT(store_->Apply(items[0], waiting(), clock_.Now()), IsOk());  // the replay
  ASSERT_EQ(WaitsSeenBy("test/approved").size(), 1u);
  Json event = {{"name", "test/approved"}, {"data", {{"ok", true}}}};
  EXPECT_TRUE(*store_->ResolveWait(head, "hw", event, clock_.Now()));
  bool resumed = false;
  for (const QueueItem& item : Claim()) {
    if (item.step_id == "hw" && item.resume) resumed = (*item.resume)["memo"] == event;
  }
  EXPECT_TRUE(resumed) << "the event resumes the wait";
}

// A head that fails for good after one of its waits was matched, before the match was applied
// (claimed or not yet), keeps the match: the wait's step is recorded with the event, so
// retry-head's replay goes on from it (it does not wait anew for an event that came already).
// A sleep whose time had not come goes, as the head's waits do: the replay sleeps again.
TEST_P(StoreConformance, AHeadBlockedAfterItsWaitMatchedKeepsTheMatch) {
  for (const int variant : {0, 1, 2}) {
    const bool claimed = variant == 1;
    const bool ahead = variant == 2;  // matched on a coordinator whose clock is ahead
    SCOPED_TRACE(claimed ? "the match claimed, its apply after the park"
                         : (ahead ? "the match made by a clock 5 s ahead" : "the match unclaimed"));
    const std::string key = "w" + std::to_string(variant);
    const std::string head = Start("app-ordered", key);
    auto items = Claim();
    ASSERT_EQ(items.size(), 1u);
    Transition t;
    t.move =
        Transition::Continue{.next = {NextCall{"push", clock_.Now()},
                                      NextCall{"nap", clock_.Now() + 1h, Resume(nullptr, "nap")}},
                             .waits = {Wait("hw", clock_.Now() + 10s)}};
    ASSERT_THAT(store_->Apply(items[0], t, clock_.Now()), IsOk());
    items = Claim();
    ASSERT_EQ(items.size(), 1u);
    ASSERT_EQ(items[0].step_id, "push");
    const Json event = {{"name", "test/approved"}, {"data", {{"ok", true}}}};
    ASSERT_TRUE(*store_->ResolveWait(head, "hw", event, clock_.Now() + (ahead ? 5s : 0s)));
    std::vector<QueueItem> resume;
    if (claimed) {
      resume = Claim();
      ASSERT_EQ(resume.size(), 1u);
      ASSERT_EQ(resume[0].step_id, "hw");
    }
    ASSERT_THAT(Block(items[0]), IsOk());
    EXPECT_EQ(RunStatus(head), kBlocked);
    EXPECT_TRUE(Claim().empty()) << "a blocked run has no work";
    if (claimed) {  // the match's apply, as the executor makes it, finds the run blocked
      Transition applied;
      applied.steps.push_back(ResumedStep("hw", *resume[0].resume));
      applied.move =
          Transition::Continue{.next = {NextCall{std::string(kDiscoveryStepId), clock_.Now()}},
                               .next_only_if_idle = true,
                               .run_status = kRunning};
      EXPECT_TRUE(IsRunEndedMeanwhile(store_->Apply(resume[0], applied, clock_.Now())));
      EXPECT_EQ(RunStatus(head), kBlocked);
    }

    auto state = store_->LoadRunState(head);
    ASSERT_THAT(state, IsOk());
    std::map<std::string, StepRecord> steps;
    for (const StepRecord& step : state->steps) steps[step.step_id] = step;
    ASSERT_EQ(steps.count("hw"), 1u) << "the match, recorded as the wait's step";
    EXPECT_EQ(steps["hw"].memo, event);
    EXPECT_EQ(steps["hw"].status, "completed");
    EXPECT_EQ(steps["hw"].name, "approval") << "the wait's name";
    EXPECT_EQ(steps.count("nap"), 0u) << "a sleep not due is not recorded";

    ASSERT_THAT(store_->RetryLaneHead("app-ordered", key, clock_.Now()), IsOk());
    items = Claim();
    ASSERT_EQ(items.size(), 1u);
    state = store_->LoadRunState(head);
    ASSERT_THAT(state, IsOk());
    EXPECT_TRUE(std::any_of(state->steps.begin(), state->steps.end(), [&](const StepRecord& s) {
      return s.step_id == "hw" && s.memo == event;
    })) << "the replay finds the match";
  }
}

// A run that ends while one of its branches still waits (another branch returned) leaves no
// wait behind, however its calls were applied.
TEST_P(StoreConformance, ARunThatEndsWhileWaitingLeavesNoWaitBehind) {
  for (const bool kept : {false, true}) {
    const std::string run = Start("app-plain");
    auto items = Claim();
    ASSERT_EQ(items.size(), 1u);
    Transition t;
    t.move = Transition::Continue{.next = {NextCall{"other-branch", clock_.Now()}},
                                  .waits = {Wait("hw", clock_.Now() + 10s)}};
    ASSERT_THAT(store_->Apply(items[0], t, clock_.Now()), IsOk());
    ASSERT_EQ(WaitsSeenBy("test/approved").size(), 1u);
    items = Claim();
    ASSERT_EQ(items.size(), 1u);
    QueueItem last = items[0];
    if (kept) {  // one more call made in place before the end
      ASSERT_NO_FATAL_FAILURE(KeepInPlace(&last));
    }
    ASSERT_THAT(End(last), IsOk());
    EXPECT_EQ(RunStatus(run), kCompleted);
    EXPECT_TRUE(WaitsSeenBy("test/approved").empty()) << (kept ? "kept" : "claimed");
    clock_.Advance(20s);
    EXPECT_TRUE(Claim().empty()) << "nor its timeout";
  }
}

// A sync that changes functions moves the function set's generation on; an ingest of events
// matched against an older generation stores nothing (kAborted), whatever else it would do.
TEST_P(StoreConformance, AnIngestMatchedAgainstAnOlderFunctionSetStoresNothing) {
  auto generation = store_->FunctionGeneration();
  ASSERT_THAT(generation, IsOk());
  const int64_t before = *generation;
  AppSync sync;
  sync.app = {"other", "http://127.0.0.1:1/api", "cpp", "", "v1", 0, 0};
  sync.functions = {Fn("other-new")};
  ASSERT_THAT(store_->SyncApp(sync), IsOk());
  generation = store_->FunctionGeneration();
  ASSERT_THAT(generation, IsOk());
  EXPECT_GT(*generation, before);
  const int64_t now = *generation;

  // The same app again, unchanged (its checksum): the set is what it was.
  ASSERT_THAT(store_->SyncApp(sync), IsOk());
  generation = store_->FunctionGeneration();
  ASSERT_THAT(generation, IsOk());
  EXPECT_EQ(*generation, now);

  NewEvent ne = Event("test/e");
  ne.runs.push_back({NewUlid(UnixMillis(clock_.Now())), "app-ordered", std::string("k")});
  EXPECT_THAT(store_->IngestEvents({ne}, clock_.Now(), nullptr, nullptr, before),
              StatusIs(StatusCode::kAborted));
  EXPECT_THAT(store_->GetEvent(ne.event.internal_id), StatusIs(StatusCode::kNotFound));
  EXPECT_THAT(store_->GetRun(ne.runs[0].run_id), StatusIs(StatusCode::kNotFound));
  EXPECT_EQ(Claim().size(), 0u);

  auto stored = store_->IngestEvents({ne}, clock_.Now(), nullptr, nullptr, now);
  ASSERT_THAT(stored, IsOk());
  ASSERT_EQ(stored->size(), 1u);
  EXPECT_FALSE((*stored)[0].duplicate);
  EXPECT_EQ(ClaimedRuns(), std::vector<std::string>{ne.runs[0].run_id});
}

// An end that brings its events (End::events) stores them in its own transaction and leaves
// nothing in the run-end outbox, unless a run waits for an event of their names: then it
// stores none of them and records the end for the outbox, whose announcement resumes that
// wait, or unless a sync changed the functions since intake judged the events. An end without
// events is always the outbox's.
TEST_P(StoreConformance, AnEndStoresItsEventsWithItUnlessARunWaitsForOne) {
  auto end_with_events = [&](const QueueItem& item, const std::string& run,
                             std::optional<int64_t> generation = {}) {
    Transition t;
    Transition::End end{kCompleted, {{"ok", true}}, nullptr};
    end.functions_generation = generation;
    EventRecord e;
    e.internal_id = NewUlid(UnixMillis(clock_.Now()));
    e.id = "funcky:finished:" + run;
    e.name = "inngest/function.finished";
    e.payload = {{"name", e.name}, {"id", e.id}, {"data", {{"run_id", run}}}};
    end.events.push_back(std::move(e));
    t.move = std::move(end);
    return store_->ApplyAndKeep(item, t, clock_.Now(), 30s);
  };
  auto pending_ends = [&] {
    auto ends = store_->PendingRunEnds(0, 10);
    EXPECT_THAT(ends, IsOk());
    return ends.ok() ? *ends : std::vector<std::string>{"(failed)"};
  };
  auto generation = store_->FunctionGeneration();
  ASSERT_THAT(generation, IsOk());
  // Nothing waits: stored with the end, nothing to announce.
  const std::string quiet = Start("app-plain");
  auto items = Claim();
  ASSERT_EQ(items.size(), 1u);
  auto applied = end_with_events(items[0], quiet, *generation);
  ASSERT_THAT(applied, IsOk());
  EXPECT_TRUE(applied->end_events_stored);
  EXPECT_FALSE(applied->kept.has_value());
  EXPECT_EQ(RunStatus(quiet), kCompleted);
  auto stored = store_->FindEventById("funcky:finished:" + quiet);
  ASSERT_THAT(stored, IsOk());
  EXPECT_EQ(stored->payload["data"]["run_id"], quiet);
  EXPECT_EQ(stored->received_at_ms, UnixMillis(clock_.Now()));
  EXPECT_EQ(pending_ends(), std::vector<std::string>{});

  // A run waits for inngest/function.finished: the end goes through the outbox.
  const std::string waiter = Start("app-plain");
  const std::string ending = Start("app-plain");
  items = Claim();
  ASSERT_EQ(items.size(), 2u);
  const QueueItem& waiter_item = items[0].run_id == waiter ? items[0] : items[1];
  const QueueItem& ending_item = items[0].run_id == waiter ? items[1] : items[0];
  NewWait finished = Wait("hw", clock_.Now() + 1h);
  finished.event_name = "inngest/function.finished";
  Transition waiting;
  waiting.move = Transition::Continue{.waits = {finished}, .run_status = kWaiting};
  ASSERT_THAT(store_->Apply(waiter_item, waiting, clock_.Now()), IsOk());
  applied = end_with_events(ending_item, ending);
  ASSERT_THAT(applied, IsOk());
  EXPECT_FALSE(applied->end_events_stored);
  EXPECT_EQ(RunStatus(ending), kCompleted);
  EXPECT_THAT(store_->FindEventById("funcky:finished:" + ending), StatusIs(StatusCode::kNotFound));
  EXPECT_EQ(pending_ends(), std::vector<std::string>{ending});
  ASSERT_THAT(store_->AckRunEnds({ending}), IsOk());

  // Without events, as every end but the executor's: the outbox's.
  const std::string plain = Start("app-plain");
  items = Claim();
  ASSERT_EQ(items.size(), 1u);
  Transition t;
  t.move = Transition::End{kCompleted, "done", nullptr};
  applied = store_->ApplyAndKeep(items[0], t, clock_.Now(), 30s);
  ASSERT_THAT(applied, IsOk());
  EXPECT_FALSE(applied->end_events_stored);
  EXPECT_EQ(pending_ends(), std::vector<std::string>{plain});
  ASSERT_THAT(store_->AckRunEnds({plain}), IsOk());

  // Judged by the function set before a sync changed it (a function the sync made may start
  // by them): the end goes through the outbox, whose ingest matches them against the new set.
  // (The waiter goes first: nothing else holds the events back.)
  auto cancelled = store_->CancelRun(waiter, {{"name", "Cancelled"}}, clock_.Now());
  ASSERT_THAT(cancelled, IsOk());
  ASSERT_TRUE(*cancelled);
  ASSERT_THAT(store_->AckRunEnds({waiter}), IsOk());
  AppSync sync;
  sync.app = {"listener", "http://127.0.0.1:1/api", "cpp", "", "v1", 0, 0};
  sync.functions = {Fn("listener-on-finished")};
  ASSERT_THAT(store_->SyncApp(sync), IsOk());
  const std::string stale = Start("app-plain");
  items = Claim();
  ASSERT_EQ(items.size(), 1u);
  applied = end_with_events(items[0], stale, *generation);
  ASSERT_THAT(applied, IsOk());
  EXPECT_FALSE(applied->end_events_stored);
  EXPECT_EQ(RunStatus(stale), kCompleted);
  EXPECT_THAT(store_->FindEventById("funcky:finished:" + stale), StatusIs(StatusCode::kNotFound));
  EXPECT_EQ(pending_ends(), std::vector<std::string>{stale});
  ASSERT_THAT(store_->AckRunEnds({stale}), IsOk());
  // Judged by the set as it is now: stored with the end.
  generation = store_->FunctionGeneration();
  ASSERT_THAT(generation, IsOk());
  const std::string current = Start("app-plain");
  items = Claim();
  ASSERT_EQ(items.size(), 1u);
  applied = end_with_events(items[0], current, *generation);
  ASSERT_THAT(applied, IsOk());
  EXPECT_TRUE(applied->end_events_stored);
  EXPECT_THAT(store_->FindEventById("funcky:finished:" + current), IsOk());
  EXPECT_EQ(pending_ends(), std::vector<std::string>{});
}

// The migration internal_event_ids moves the ids of the coordinator's events stored before it
// under "funcky:" (an end announced again after an upgrade, or an invocation made again, then
// finds its event and stores nothing twice). A sender's event keeps its id, and so does the
// coordinator's whose new id a sender's event holds already.
TEST_P(StoreConformance, TheCoordinatorsEventIdsStoredBeforeMoveUnderItsPrefix) {
  const std::vector<std::pair<std::string, std::string>> before = {
      {"01R1-finished", "inngest/function.finished"},
      {"01R1", "inngest/function.failed"},
      {"01R2-finished", "inngest/function.finished"},
      {"01R2-cancelled", "inngest/function.cancelled"},
      {"01R3.s1", "inngest/function.invoked"},
      {"01R4", "user/sent"},
      {"01R5-finished", "user/sent"},
      {"01R6", "inngest/function.failed"},
      {"funcky:failed:01R6", "user/sent"},
  };
  ASSERT_THAT(db_->Transact([&](sql::Tx& tx) {
    for (const auto& [id, name] : before) {
      tx.Exec(
          "INSERT INTO events (internal_id, id, name, payload, received_at_ms) "
          "VALUES ($1, $2, $3, $4::jsonb, $5)",
          {NewUlid(UnixMillis(clock_.Now())), id, name, std::string("{}"), int64_t{0}});
    }
    tx.Exec("DELETE FROM schema_migrations WHERE name LIKE '%_internal_event_ids'");
    return Status::Ok();
  }),
              IsOk());
  ASSERT_THAT(store_->Migrate(), IsOk());

  const std::vector<std::pair<std::string, std::string>> after = {
      {"funcky:finished:01R1", "inngest/function.finished"},
      {"funcky:failed:01R1", "inngest/function.failed"},
      {"funcky:finished:01R2", "inngest/function.finished"},
      {"funcky:cancelled:01R2", "inngest/function.cancelled"},
      {"funcky:invoked:01R3.s1", "inngest/function.invoked"},
      {"01R4", "user/sent"},
      {"01R5-finished", "user/sent"},
      {"01R6", "inngest/function.failed"},
      {"funcky:failed:01R6", "user/sent"},
  };
  for (const auto& [id, name] : after) {
    auto e = store_->FindEventById(id);
    ASSERT_THAT(e, IsOk()) << id;
    EXPECT_EQ(e->name, name) << id;
  }
  for (const std::string id :
       {"01R1-finished", "01R1", "01R2-finished", "01R2-cancelled", "01R3.s1"}) {
    EXPECT_THAT(store_->FindEventById(id), StatusIs(StatusCode::kNotFound)) << id;
  }
}

TEST_P(StoreConformance, AWaitIsStoredWithItsLookBackPendingUntilDone) {
  const std::string run = Start("app-plain");
  const std::string other = Start("app-plain");
  auto items = Claim();
  ASSERT_EQ(items.size(), 2u);
  NewWait looking = Wait("hw", clock_.Now() + 10s);
  looking.lookback = 5s;
  looking.lookback_from = clock_.Now() - 5s;
  looking.expression = "async.data.ok == true && event.name == \"test/e\"";  // reads the run's
  Transition t;
  t.move = Transition::Continue{.waits = {looking}, .run_status = kWaiting};
  ASSERT_THAT(store_->Apply(items[0].run_id == run ? items[0] : items[1], t, clock_.Now()), IsOk());
  t.move = Transition::Continue{.waits = {Wait("hw", clock_.Now() + 10s)}};
  ASSERT_THAT(store_->Apply(items[0].run_id == run ? items[1] : items[0], t, clock_.Now()), IsOk());

  // Both are pending (a wait without a look-back still looks back at its own registration),
  // oldest first, and only those registered before the bound.
  EXPECT_TRUE(store_->PendingLookbacks(UnixMillis(clock_.Now()), 10)->empty());
  EXPECT_FALSE(Due(UnixMillis(clock_.Now())).lookbacks);
  EXPECT_TRUE(Due(UnixMillis(clock_.Now()) + 1).lookbacks);
  auto pending = store_->PendingLookbacks(UnixMillis(clock_.Now()) + 1, 10);
  ASSERT_THAT(pending, IsOk());
  ASSERT_EQ(pending->size(), 2u);
  const WaitRecord& mine = (*pending)[0].run_id == run ? (*pending)[0] : (*pending)[1];
  EXPECT_EQ(mine.lookback_from_ms, UnixMillis(clock_.Now() - 5s));
  EXPECT_EQ(mine.trigger["name"], "test/e");

  EXPECT_THAT(store_->LookbackDone(run, "hw"), IsOk());
  // A wait resumed meanwhile is gone from the outbox with its row.
  EXPECT_TRUE(*store_->ResolveWait(other, "hw", Json{{"ok", true}}, clock_.Now()));
  EXPECT_TRUE(store_->PendingLookbacks(UnixMillis(clock_.Now()) + 1, 10)->empty());
  EXPECT_THAT(store_->LookbackDone(other, "hw"), IsOk());
  EXPECT_FALSE(Due(UnixMillis(clock_.Now()) + 1).lookbacks);
}

TEST_P(StoreConformance, AWaitMatchedWhileItsTimeoutIsClaimedTakesTheLease) {
  const std::string run = Start("app-plain");
  auto items = Claim();
  Transition t;
  t.move = Transition::Continue{.waits = {Wait("hw", clock_.Now() + 1s)}};
  ASSERT_TRUE(store_->Apply(items[0], t, clock_.Now()).ok());
  clock_.Advance(2s);
  auto timeout = Claim();
  ASSERT_EQ(timeout.size(), 1u);
  ASSERT_TRUE(timeout[0].resume);
  EXPECT_TRUE((*timeout[0].resume)["memo"].is_null());
  // An event matches before the timeout's transition is applied: the event wins.
  EXPECT_TRUE(*store_->ResolveWait(run, "hw", Json{{"ok", 1}}, clock_.Now()));
  Transition timed_out;
  timed_out.steps.push_back({"hw", 0, "approval", kCompleted, nullptr, 0});
  EXPECT_EQ(store_->Apply(timeout[0], timed_out, clock_.Now()).code(), StatusCode::kAborted);
  auto matched = Claim();
  ASSERT_EQ(matched.size(), 1u);
  EXPECT_EQ((*matched[0].resume)["memo"], Json({{"ok", 1}}));
}

TEST_P(StoreConformance, TimerItemsComeDueAtTheirTimeAndNotBefore) {
  const std::string run = Start("app-plain");
  auto items = Claim();
  Transition t;
  t.move = Transition::Continue{
      .next = {{"hs", clock_.Now() + 2s, Json{{"memo", nullptr}, {"name", "nap"}}}},
      .run_status = kSleeping};
  ASSERT_TRUE(store_->Apply(items[0], t, clock_.Now()).ok());
  EXPECT_EQ(RunStatus(run), kSleeping);
  clock_.Advance(1999ms);
  EXPECT_TRUE(Claim().empty());
  clock_.Advance(1ms);
  auto due = Claim();
  ASSERT_EQ(due.size(), 1u);
  EXPECT_EQ(due[0].step_id, "hs");
  ASSERT_TRUE(due[0].resume);
}

// Sequence lanes (docs/ordering.md "Sequence lanes").
const LaneSequencing kFromOne{.gap_timeout = 2s, .start = 1};

TEST_P(StoreConformance, ASequenceLaneRunsInNumberOrderNotArrivalOrder) {
  Send("t1", 1, kFromOne);
  Send("t1", 3, kFromOne);
  Send("t1", 2, kFromOne);
  Send("t2", 1, kFromOne);  // another key does not wait for t1
  std::vector<QueueItem> items;
  EXPECT_EQ(ClaimedNumbers(&items), (std::vector<int64_t>{1, 1}));
  for (const QueueItem& item : items) ASSERT_THAT(End(item), IsOk());
  EXPECT_EQ(ClaimedNumbers(&items), std::vector<int64_t>{2}) << "3 arrived first, 2 is next";
  ASSERT_THAT(End(items[0]), IsOk());
  EXPECT_EQ(ClaimedNumbers(&items), std::vector<int64_t>{3});
  ASSERT_THAT(End(items[0]), IsOk());
  EXPECT_TRUE(Claim().empty());
  EXPECT_TRUE(Lanes().empty()) << "an idle lane is not listed";
  // A number that had a run is a duplicate, however long ago it ran.
  const std::string again = Send("t1", 2, kFromOne);
  EXPECT_TRUE(Claim().empty());
  EXPECT_EQ(store_->LaneOutcomesOf(again)->at(0).outcome, kDuplicate);
  // The idle lane's row remembers the next number: 5 waits for 4.
  Send("t1", 5, kFromOne);
  EXPECT_TRUE(Claim().empty());
  Send("t1", 4, kFromOne);
  EXPECT_EQ(ClaimedNumbers(), std::vector<int64_t>{4});
}

// A sync that changes a function's lane timeouts gives them to the lanes it has, without
// waiting for an event of their keys: a blocked head whose head_timeout was removed keeps its
// lane; one given a head_timeout counts it from when it became head; a head counting down
// counts to the new one; a sequence lane waiting for a number waits the new gap_timeout.
TEST_P(StoreConformance, ASyncGivesItsLaneTimeoutsToTheLanesTheFunctionHas) {
  int syncs = 0;
  auto sync = [&](std::optional<std::chrono::milliseconds> head,
                  std::optional<std::chrono::milliseconds> gap) {
    AppSync app = AppOfTheTests("lane-timeouts-" + std::to_string(++syncs));
    app.lane_timeouts["app-ordered"] = {head ? std::optional<int64_t>(head->count()) : std::nullopt,
                                        gap ? std::optional<int64_t>(gap->count()) : std::nullopt};
    ASSERT_THAT(store_->SyncApp(app), IsOk());
  };
  const std::string head = Start("app-ordered", "t", 10s);
  Start("app-ordered", "t", 10s);
  auto items = Claim();
  ASSERT_EQ(items.size(), 1u);
  ASSERT_THAT(Block(items[0]), IsOk());  // the third party is down: the head blocks its lane

  sync(std::nullopt, std::nullopt);  // head_timeout removed while it is blocked
  clock_.Advance(11s);
  ASSERT_THAT(store_->ExpireLaneHeads(clock_.Now()), IsOk());
  EXPECT_EQ(RunStatus(head), kBlocked) << "failed by the head_timeout the sync removed";

  sync(20s, std::nullopt);  // given one again: 20 s from when it became head, 11 s ago
  clock_.Advance(8s);
  EXPECT_TRUE(store_->ExpireLaneHeads(clock_.Now())->empty());
  sync(30s, std::nullopt);  // counting down: now to 30 s from then
  clock_.Advance(2s);       // 21 s
  EXPECT_TRUE(store_->ExpireLaneHeads(clock_.Now())->empty());
  clock_.Advance(9s);  // 30 s
  EXPECT_EQ(*store_->ExpireLaneHeads(clock_.Now()), Runs{head});
  auto next = Claim();
  ASSERT_EQ(next.size(), 1u);
  ASSERT_THAT(End(next[0]), IsOk());

  // A sequence lane waiting for 2 (its timer started at 3's arrival) waits the new 10 s.
  Send("s", 1, kFromOne);
  std::vector<QueueItem> numbered;
  ASSERT_EQ(ClaimedNumbers(&numbered), std::vector<int64_t>{1});
  Send("s", 3, kFromOne);
  ASSERT_THAT(End(numbered[0]), IsOk());
  sync(std::nullopt, 10s);
  clock_.Advance(5s);
  ASSERT_THAT(store_->ExpireLaneHeads(clock_.Now()), IsOk());
  EXPECT_TRUE(ClaimedNumbers().empty()) << "given up after the gap_timeout of before (2 s)";
  clock_.Advance(5s);
  ASSERT_THAT(store_->ExpireLaneHeads(clock_.Now()), IsOk());
  EXPECT_EQ(ClaimedNumbers(), std::vector<int64_t>{3});
}

// A function that stops ordering by numbers (a sync drops `sequence`) drains its sequence
// lanes: their numbered runs first, in number order and waiting for no missing number, then
// the runs that came unnumbered since, in the order accepted. A new unnumbered run neither
// takes a lane that waits for a number at once nor goes ahead of numbered runs accepted
// before it (however many more come). (Such runs went first, as a sequence lane's unnumbered
// runs do, so numbered runs waited for as long as events of the key kept coming; and one took
// a lane that waited for a number at once.)
TEST_P(StoreConformance, ALaneWhoseFunctionStopsOrderingByNumbersDrainsItsNumberedRunsFirst) {
  // The run of a claimed item: its id, or "#n" for the run of numbered event n.
  const auto who = [&](const QueueItem& item) {
    auto run = store_->GetRun(item.run_id);
    EXPECT_THAT(run, IsOk());
    auto numbered = number_of_.find(run.ok() ? run->event_id : "");
    return numbered != number_of_.end() ? "#" + std::to_string(numbered->second) : item.run_id;
  };
  const auto next_run = [&] {
    auto items = Claim();
    EXPECT_LE(items.size(), 1u);
    if (items.empty()) return std::string("(none)");
    const std::string run = who(items[0]);
    EXPECT_THAT(End(items[0]), IsOk());
    return run;
  };
  Send("d", 1, kFromOne);
  auto head = Claim();
  ASSERT_EQ(head.size(), 1u);
  Send("d", 3, kFromOne);  // 2 is missing
  // The function no longer numbers: its runs join the lane unnumbered.
  const std::string p1 = Start("app-ordered", "d");
  const std::string p2 = Start("app-ordered", "d");
  ASSERT_THAT(End(head[0]), IsOk());
  EXPECT_EQ(next_run(), "#3") << "numbered, accepted first: not waiting for 2, nor passed";
  const std::string p3 = Start("app-ordered", "d");
  EXPECT_EQ(next_run(), p1);
  EXPECT_EQ(next_run(), p2);
  EXPECT_EQ(next_run(), p3);
  EXPECT_EQ(next_run(), "(none)");

  // A lane that waits for a number, with no head: an unnumbered run waits behind its numbered
  // ones; the lane, draining, gives up on the number at its next look (the gap sweep).
  Send("e", 1, kFromOne);
  EXPECT_EQ(next_run(), "#1");
  Send("e", 3, kFromOne);
  const std::string q = Start("app-ordered", "e");
  EXPECT_EQ(next_run(), "(none)") << "the new run took the lane ahead of 3";
  ASSERT_THAT(store_->ExpireLaneHeads(clock_.Now()), IsOk());
  EXPECT_EQ(next_run(), "#3");
  EXPECT_EQ(next_run(), q);
}

// Set past numbers that wait, a lane runs the lower ones and keeps the number set: the numbers
// set past are no gap, and the next number after the lower ones runs at once.
TEST_P(StoreConformance, SetNextPastWaitingNumbersKeepsTheNumberSet) {
  Send("n", 1, kFromOne);
  std::vector<QueueItem> first;
  EXPECT_EQ(ClaimedNumbers(&first), std::vector<int64_t>{1});
  Send("n", 6, kFromOne);
  Send("n", 9, kFromOne);
  auto set = store_->SetLaneNext("app-ordered", "n", 9, std::nullopt, clock_.Now());
  ASSERT_THAT(set, IsOk());
  EXPECT_EQ(set->was, 2);
  EXPECT_FALSE(set->head) << "the lane has a head";
  // The head (1) ends: 6, lower than the number set, runs; then 9, at once.
  ASSERT_THAT(End(first[0]), IsOk());
  std::vector<QueueItem> next;
  EXPECT_EQ(ClaimedNumbers(&next), std::vector<int64_t>{6});
  ASSERT_THAT(End(next[0]), IsOk());
  EXPECT_EQ(ClaimedNumbers(&next), std::vector<int64_t>{9}) << "it waited for 7 and 8";
  auto gaps = store_->ListLaneGaps("app-ordered", "n", 10);
  ASSERT_THAT(gaps, IsOk());
  EXPECT_TRUE(gaps->empty());
}

// An intake that gives a lane a head_timeout it had none of gives its live head a deadline too,
// counted from its start (it kept none, and never timed out).
TEST_P(StoreConformance, AHeadTimeoutAnIntakeAddsGivesTheLiveHeadADeadline) {
  const std::string head = Start("app-ordered", "h");
  auto items = Claim();
  ASSERT_EQ(items.size(), 1u);
  ASSERT_THAT(Block(items[0]), IsOk());
  Start("app-ordered", "h", 10s);
  clock_.Advance(9s);
  EXPECT_TRUE(store_->ExpireLaneHeads(clock_.Now())->empty());
  clock_.Advance(2s);
  EXPECT_EQ(*store_->ExpireLaneHeads(clock_.Now()), Runs{head});
}

TEST_P(StoreConformance, AMissingNumberIsWaitedForThenRecordedAsAGap) {
  Send("t", 1, kFromOne);
  std::vector<QueueItem> items;
  ASSERT_EQ(ClaimedNumbers(&items), std::vector<int64_t>{1});
  clock_.Advance(500ms);
  Send("t", 3, kFromOne);  // waits for 2 from now on
  ASSERT_THAT(End(items[0]), IsOk());
  EXPECT_TRUE(Claim().empty());
  auto lanes = Lanes();
  ASSERT_EQ(lanes.size(), 1u);
  EXPECT_EQ(lanes[0].head_status, "waiting");
  ASSERT_TRUE(lanes[0].sequence);
  EXPECT_EQ(lanes[0].sequence->next, 2);
  EXPECT_EQ(lanes[0].sequence->waiting, std::vector<int64_t>{3});
  EXPECT_EQ(lanes[0].sequence->gap_since_ms, UnixMillis(clock_.Now()));

  clock_.Advance(1999ms);
  ASSERT_THAT(store_->ExpireLaneHeads(clock_.Now()), IsOk());
  EXPECT_TRUE(Claim().empty()) << "given up before gap_timeout";
  EXPECT_EQ(store_->GetQueueStats(clock_.Now())->lanes_waiting_for_gap, 1);
  clock_.Advance(1ms);
  ASSERT_THAT(store_->ExpireLaneHeads(clock_.Now()), IsOk());
  EXPECT_EQ(ClaimedNumbers(&items), std::vector<int64_t>{3});

  auto gaps = store_->ListLaneGaps("app-ordered", "t", 10);
  ASSERT_THAT(gaps, IsOk());
  ASSERT_EQ(gaps->size(), 1u);
  EXPECT_EQ((*gaps)[0].first, 2);
  EXPECT_EQ((*gaps)[0].last, 2);
  EXPECT_EQ((*gaps)[0].reason, kGapTimeout);
  EXPECT_EQ((*gaps)[0].resumed_run_id, items[0].run_id);
  EXPECT_EQ((*gaps)[0].recorded_at_ms - (*gaps)[0].waited_since_ms, 2000);
  // The gap outbox: pending until acknowledged.
  auto pending = store_->PendingLaneGaps(10);
  ASSERT_EQ(pending->size(), 1u);
  EXPECT_TRUE(Due(UnixMillis(clock_.Now())).lane_gaps);
  ASSERT_THAT(store_->AckLaneGaps({(*pending)[0].id}), IsOk());
  EXPECT_TRUE(store_->PendingLaneGaps(10)->empty());
  EXPECT_FALSE(Due(UnixMillis(clock_.Now())).lane_gaps);
  auto stats = store_->GetQueueStats(clock_.Now());
  EXPECT_EQ(stats->lane_gaps, 1);
  EXPECT_EQ(stats->lanes_waiting_for_gap, 0);

  // 2 arrives after all: stale, no run, recorded on the event and the lane.
  const std::string late = Send("t", 2, kFromOne);
  ASSERT_THAT(End(items[0]), IsOk());
  EXPECT_TRUE(Claim().empty());
  auto outcomes = store_->LaneOutcomesOf(late);
  ASSERT_EQ(outcomes->size(), 1u);
  EXPECT_EQ((*outcomes)[0].outcome, kStale);
  EXPECT_EQ((*outcomes)[0].number, 2);
  EXPECT_EQ(store_->GetQueueStats(clock_.Now())->lane_stale, 1);
}

TEST_P(StoreConformance, WithoutAStartALaneBeginsAtTheFirstNumberItSees) {
  const LaneSequencing first_seen{.gap_timeout = 2s};
  Send("t", 5, first_seen);
  const std::string four = Send("t", 4, first_seen);
  EXPECT_EQ(ClaimedNumbers(), std::vector<int64_t>{5});
  EXPECT_EQ(store_->LaneOutcomesOf(four)->at(0).outcome, kStale);
  // With start: 1, a lane's first event 2 waits for 1.
  Send("u", 2, kFromOne);
  EXPECT_TRUE(Claim().empty());
  Send("u", 1, kFromOne);
  EXPECT_EQ(ClaimedNumbers(), std::vector<int64_t>{1});
}

TEST_P(StoreConformance, ADuplicateNumberStartsNoRunAndNamesTheRunThatHasIt) {
  Send("t", 1, kFromOne);
  std::vector<QueueItem> items;
  ASSERT_EQ(ClaimedNumbers(&items), std::vector<int64_t>{1});
  const std::string twice = Send("t", 1, kFromOne);
  auto outcomes = store_->LaneOutcomesOf(twice);
  ASSERT_EQ(outcomes->size(), 1u);
  EXPECT_EQ((*outcomes)[0].outcome, kDuplicate);
  EXPECT_EQ((*outcomes)[0].run_id, items[0].run_id);
  ASSERT_THAT(End(items[0]), IsOk());
  EXPECT_TRUE(Claim().empty());
  EXPECT_EQ(store_->GetQueueStats(clock_.Now())->lane_duplicates, 1);
}

TEST_P(StoreConformance, AStaleNumberRunsAfterTheHeadWhenTheLaneSaysSo) {
  LaneSequencing run_stale = kFromOne;
  run_stale.run_stale = true;
  Send("t", 2, run_stale);
  ASSERT_THAT(store_->SkipLaneHead("app-ordered", "t", clock_.Now()), IsOk());  // gap {1}
  std::vector<QueueItem> items;
  ASSERT_EQ(ClaimedNumbers(&items), std::vector<int64_t>{2});
  const std::string late = Send("t", 1, run_stale);  // stale: runs after 2, without a number
  Send("t", 3, run_stale);
  EXPECT_TRUE(Claim().empty());
  ASSERT_THAT(End(items[0]), IsOk());
  EXPECT_EQ(ClaimedNumbers(&items), std::vector<int64_t>{1}) << "the stale one first";
  EXPECT_EQ(store_->LaneOutcomesOf(late)->at(0).outcome, kStale);
  ASSERT_THAT(End(items[0]), IsOk());
  EXPECT_EQ(ClaimedNumbers(), std::vector<int64_t>{3});
}

// With waiting_for (the number the caller saw the lane wait for), a skip gives up only that
// gap: sent again after the lane moved on (its answer lost, a double click, a page older
// than the lane), it fails no run that became head meanwhile.
TEST_P(StoreConformance, SkipHeadWaitingForANumberGivesUpOnlyThatGap) {
  Send("t", 2, kFromOne);
  EXPECT_TRUE(Claim().empty());
  EXPECT_THAT(store_->SkipLaneHead("app-ordered", "t", clock_.Now(), "", 3),
              StatusIs(StatusCode::kAborted));
  auto resumed = store_->SkipLaneHead("app-ordered", "t", clock_.Now(), "", 1);
  ASSERT_THAT(resumed, IsOk());
  auto again = store_->SkipLaneHead("app-ordered", "t", clock_.Now(), "", 1);
  EXPECT_THAT(again, StatusIs(StatusCode::kAborted));
  EXPECT_NE(again.status().message().find(*resumed), std::string::npos) << again.status().message();
  std::vector<QueueItem> items;
  EXPECT_EQ(ClaimedNumbers(&items), std::vector<int64_t>{2});
  EXPECT_EQ(items[0].run_id, *resumed);
  EXPECT_EQ(store_->GetRun(*resumed)->status, kRunning);
  ASSERT_EQ(store_->ListLaneGaps("app-ordered", "t", 10)->size(), 1u);
  // A lane that has no row at all has nothing to skip.
  EXPECT_THAT(store_->SkipLaneHead("app-ordered", "nobody", clock_.Now(), "", 1),
              StatusIs(StatusCode::kNotFound));
}

TEST_P(StoreConformance, SkipHeadOfALaneWaitingForANumberGivesUpOnItAtOnce) {
  Send("t", 2, kFromOne);
  EXPECT_TRUE(Claim().empty());
  auto resumed = store_->SkipLaneHead("app-ordered", "t", clock_.Now());
  ASSERT_THAT(resumed, IsOk());
  std::vector<QueueItem> items;
  EXPECT_EQ(ClaimedNumbers(&items), std::vector<int64_t>{2});
  EXPECT_EQ(items[0].run_id, *resumed);
  auto gaps = store_->ListLaneGaps("app-ordered", "t", 10);
  ASSERT_EQ(gaps->size(), 1u);
  EXPECT_EQ((*gaps)[0].first, 1);
  EXPECT_EQ((*gaps)[0].reason, kGapSkipped);
  // A skipped head's number is used up: the lane goes on with the next, once the skipped
  // head's call in flight has come back.
  Send("t", 3, kFromOne);
  ASSERT_THAT(store_->SkipLaneHead("app-ordered", "t", clock_.Now()), IsOk());
  EXPECT_TRUE(ClaimedNumbers().empty());
  EXPECT_TRUE(IsRunEndedMeanwhile(End(items[0])));
  EXPECT_EQ(ClaimedNumbers(), std::vector<int64_t>{3});
  EXPECT_EQ(store_->ListLaneGaps("app-ordered", "t", 10)->size(), 1u);
}

TEST_P(StoreConformance, ACancelledWaitingNumberIsUsedUpWithoutAGap) {
  Send("t", 1, kFromOne);
  const std::string two = Send("t", 2, kFromOne);
  Send("t", 3, kFromOne);
  std::vector<QueueItem> items;
  ASSERT_EQ(ClaimedNumbers(&items), std::vector<int64_t>{1});
  auto runs = store_->ListRuns({.event_id = two});
  ASSERT_EQ(runs->size(), 1u);
  ASSERT_THAT(store_->CancelRun((*runs)[0].id, {{"name", "Cancelled"}}, clock_.Now()), IsOk());
  ASSERT_THAT(End(items[0]), IsOk());
  EXPECT_EQ(ClaimedNumbers(), std::vector<int64_t>{3});
  EXPECT_TRUE(store_->ListLaneGaps("app-ordered", "t", 10)->empty());
}

TEST_P(StoreConformance, CancellingDropsTheWorkAndMovesTheLaneOn) {
  const std::string head = Start("app-ordered", "k");
  const std::string second = Start("app-ordered", "k");
  const std::string third = Start("app-ordered", "k");
  auto items = Claim();
  ASSERT_EQ(items.size(), 1u);
  EXPECT_EQ(items[0].run_id, head);

  // A queued run behind the head leaves the line; the head goes on.
  EXPECT_TRUE(*store_->CancelRun(second, {{"name", "Cancelled"}}, clock_.Now()));
  EXPECT_EQ(RunStatus(second), kCancelled);
  // The head, with a call in flight: the call may still be running at the host, so the lane
  // waits for it (skip-head says so) and moves to the third run once its outcome comes back,
  // which records nothing.
  EXPECT_TRUE(*store_->CancelRun(head, {{"name", "Cancelled"}}, clock_.Now()));
  EXPECT_FALSE(*store_->CancelRun(head, {{"name", "Cancelled"}}, clock_.Now()));  // ended
  EXPECT_TRUE(Claim().empty());
  auto skip = store_->SkipLaneHead("app-ordered", "k", clock_.Now());
  EXPECT_EQ(skip.status().code(), StatusCode::kAborted);
  EXPECT_THAT(skip.status().message(), ::testing::HasSubstr("still in flight"));
  EXPECT_TRUE(IsRunEndedMeanwhile(End(items[0])));
  EXPECT_EQ(RunStatus(head), kCancelled);
  EXPECT_EQ(ClaimedRuns(), Runs{third});
  auto lanes = store_->ListLanes({});
  ASSERT_TRUE(lanes.ok());
  ASSERT_EQ(lanes->size(), 1u);
  EXPECT_EQ((*lanes)[0].depth, 1);
  EXPECT_EQ((*lanes)[0].head_run_id, third);
  EXPECT_EQ(store_->CancelRun("01NOSUCHRUN", {}, clock_.Now()).status().code(),
            StatusCode::kNotFound);
}

// A string the coordinator built that is not UTF-8 (a byte cut out of a character) is written
// with U+FFFD for its bad bytes: the write threw, so the transition holding it was never
// recorded and its call was made again at each lease's end.
TEST_P(StoreConformance, AStringThatIsNotUtf8IsWrittenWithReplacementCharacters) {
  const std::string run = Start("app-plain");
  auto items = Claim();
  ASSERT_EQ(items.size(), 1u);
  Transition t;
  t.move = Transition::End{kFailed, nullptr, {{"message", "unexpected '\xC3'"}}};
  ASSERT_THAT(store_->Apply(items[0], t, clock_.Now()), IsOk());
  auto got = store_->GetRun(run);
  ASSERT_THAT(got, IsOk());
  EXPECT_EQ(got->status, kFailed);
  EXPECT_EQ(got->error["message"], "unexpected '\xEF\xBF\xBD'");
}

// A list reads an output, error or payload only up to kListedValueChars: a longer one is null
// and flagged there, and whole when the record is read alone.
TEST_P(StoreConformance, ListsOmitLongValuesThatReadingOneRecordGivesWhole) {
  const std::string long_text(kListedValueChars, 'x');  // its JSON text is 2 characters longer
  const std::string exact(kListedValueChars - 2, 'y');  // its JSON text is just the limit

  NewEvent big = Event("test/e");
  big.event.payload["data"] = {{"blob", long_text}};
  big.runs.push_back({NewUlid(UnixMillis(clock_.Now())), "app-plain"});
  const std::string long_run = big.runs[0].run_id;
  ASSERT_THAT(store_->IngestEvents({big}, clock_.Now(), nullptr), IsOk());
  const std::string exact_run = Start("app-plain");
  const std::string failed_run = Start("app-plain");
  const std::string short_run = Start("app-plain");
  for (const QueueItem& item : Claim()) {
    Transition t;
    if (item.run_id == long_run) t.move = Transition::End{kCompleted, long_text, nullptr};
    if (item.run_id == exact_run) t.move = Transition::End{kCompleted, exact, nullptr};
    if (item.run_id == failed_run) {
      t.move = Transition::End{kFailed, nullptr, {{"message", long_text}}};
    }
    if (item.run_id == short_run) t.move = Transition::End{kCompleted, "done", nullptr};
    ASSERT_THAT(store_->Apply(item, t, clock_.Now()), IsOk());
  }

  auto runs = store_->ListRuns({});
  ASSERT_THAT(runs, IsOk());
  ASSERT_EQ(runs->size(), 4u);
  std::map<std::string, RunRecord> listed;
  for (RunRecord& r : *runs) listed[r.id] = std::move(r);
  EXPECT_TRUE(listed[long_run].output.is_null());
  EXPECT_TRUE(listed[long_run].output_omitted);
  EXPECT_FALSE(listed[long_run].error_omitted);
  EXPECT_EQ(listed[exact_run].output, exact);
  EXPECT_FALSE(listed[exact_run].output_omitted);
  EXPECT_TRUE(listed[failed_run].error.is_null());
  EXPECT_TRUE(listed[failed_run].error_omitted);
  EXPECT_FALSE(listed[failed_run].output_omitted);  // null, not omitted
  EXPECT_EQ(listed[short_run].output, "done");
  EXPECT_FALSE(listed[short_run].output_omitted);
  EXPECT_EQ(listed[long_run].status, kCompleted);  // the rest of the record is whole
  EXPECT_EQ(listed[long_run].event_name, "test/e");

  auto run = store_->GetRun(long_run);
  ASSERT_THAT(run, IsOk());
  EXPECT_EQ(run->output, long_text);
  EXPECT_FALSE(run->output_omitted);
  EXPECT_EQ(store_->GetRun(failed_run)->error["message"], long_text);

  auto events = store_->ListEvents({});
  ASSERT_THAT(events, IsOk());
  ASSERT_EQ(events->size(), 4u);
  for (const EventRecord& e : *events) {
    const bool is_big = e.internal_id == big.event.internal_id;
    EXPECT_EQ(e.payload_omitted, is_big) << e.internal_id;
    EXPECT_EQ(e.payload.is_null(), is_big) << e.internal_id;
    EXPECT_EQ(e.name, "test/e");
  }
  auto event = store_->GetEvent(big.event.internal_id);
  ASSERT_THAT(event, IsOk());
  EXPECT_EQ(event->payload["data"]["blob"], long_text);
  EXPECT_FALSE(event->payload_omitted);
}

// A replay with an Idempotency-Key starts its run once: made again with the key (its answer
// lost), it answers with that run. The key is the replayed run's: another run's replay with
// the same key is its own; another key starts another run. The key goes with the run it
// started (retention).
TEST_P(StoreConformance, AReplayWithAnIdempotencyKeyStartsItsRunOnce) {
  const std::string first = Start("app-plain");
  const std::string second = Start("app-plain");
  for (QueueItem& item : Claim()) ASSERT_THAT(End(item), IsOk());
  auto replay_of = [&](const std::string& run_id, const std::string& key) {
    auto run = store_->GetRun(run_id);
    EXPECT_THAT(run, IsOk());
    NewRun replay{NewUlid(UnixMillis(clock_.Now())), "app-plain"};
    const ReplayKey k{run_id, key};
    return store_->StartRun(run->event_id, replay, clock_.Now(), key.empty() ? nullptr : &k);
  };
  auto once = replay_of(first, "k-1");
  ASSERT_THAT(once, IsOk());
  auto again = replay_of(first, "k-1");
  ASSERT_THAT(again, IsOk());
  EXPECT_EQ(*again, *once) << "the same key: the run it started";
  auto other_key = replay_of(first, "k-2");
  ASSERT_THAT(other_key, IsOk());
  EXPECT_NE(*other_key, *once);
  auto other_run = replay_of(second, "k-1");
  ASSERT_THAT(other_run, IsOk());
  EXPECT_NE(*other_run, *once);
  auto no_key = replay_of(first, "");
  ASSERT_THAT(no_key, IsOk());
  const Runs claimed = ClaimedRuns();
  EXPECT_EQ(std::set<std::string>(claimed.begin(), claimed.end()),
            (std::set<std::string>{*once, *other_key, *other_run, *no_key}));
  EXPECT_EQ(claimed.size(), 4u);
  const ReplayKey unknown{"01NOSUCHRUN", "k"};
  EXPECT_EQ(
      store_
          ->StartRun(store_->GetRun(first)->event_id,
                     NewRun{NewUlid(UnixMillis(clock_.Now())), "app-plain"}, clock_.Now(), &unknown)
          .status()
          .code(),
      StatusCode::kNotFound);
}

// Two replays with one key at once (the request made again before the first has answered):
// the second waits for the first's commit and answers with its run; one run is started.
TEST_P(StoreConformance, TwoReplaysWithOneKeyAtOnceStartOneRun) {
  const std::string event_id = EndedRunsEvent();
  const std::string replayed = (*store_->ListRuns({.event_id = event_id, .limit = 1}))[0].id;
  const ReplayKey key{replayed, "at-once"};
  NewRun a{NewUlid(UnixMillis(clock_.Now())), "app-plain"};
  NewRun b{NewUlid(UnixMillis(clock_.Now())), "app-plain"};
  db_->pause_next_before_commit = true;
  Result<std::string> first = Unavailable("not run");
  std::thread one([&] { first = store_->StartRun(event_id, a, clock_.Now(), &key); });
  while (!db_->paused) std::this_thread::sleep_for(1ms);
  Result<std::string> second = Unavailable("not run");
  std::thread two([&] { second = store_->StartRun(event_id, b, clock_.Now(), &key); });
  // The second reaches the key's row (PostgreSQL) or the database's lock (SQLite) meanwhile.
  std::this_thread::sleep_for(300ms);
  db_->Release();
  one.join();
  two.join();
  ASSERT_THAT(first, IsOk());
  ASSERT_THAT(second, IsOk());
  EXPECT_EQ(*first, a.run_id);
  EXPECT_EQ(*second, a.run_id);
  EXPECT_EQ(store_->GetRun(b.run_id).status().code(), StatusCode::kNotFound);
  EXPECT_EQ(ClaimedRuns(), Runs{a.run_id});
}

TEST_P(StoreConformance, AReplayIsAnotherRunOfTheSameEvent) {
  const std::string first = Start("app-plain");
  auto items = Claim();
  ASSERT_TRUE(End(items[0]).ok());
  auto run = store_->GetRun(first);
  ASSERT_TRUE(run.ok());
  NewRun replay{NewUlid(UnixMillis(clock_.Now())), "app-plain"};
  ASSERT_TRUE(store_->StartRun(run->event_id, replay, clock_.Now()).ok());
  EXPECT_EQ(ClaimedRuns(), Runs{replay.run_id});
  RunFilter filter;
  filter.event_id = run->event_id;
  EXPECT_EQ(store_->ListRuns(filter)->size(), 2u);
  EXPECT_EQ(store_->StartRun("01NOSUCHEVENT", replay, clock_.Now()).code(), StatusCode::kNotFound);
  const int64_t now_ms = UnixMillis(clock_.Now());
  auto active = store_->ActiveRuns("app-plain", now_ms + 1, "", 10);
  ASSERT_TRUE(active.ok());
  ASSERT_EQ(active->size(), 1u);  // the first run ended
  EXPECT_EQ((*active)[0].run_id, replay.run_id);
  EXPECT_EQ((*active)[0].event["name"], "test/e");
  // Not there before it was made (a cancel_on event received then does not touch it).
  active = store_->ActiveRuns("app-plain", now_ms, "", 10);
  ASSERT_TRUE(active.ok());
  EXPECT_TRUE(active->empty());
}

// The cancel_on outbox: a new event marked `cancels` is recorded with it, a duplicate adds
// nothing, DueSweeps says so once it is older than the bound, retention keeps the event while
// its cancels are pending, and an acknowledgement forgets it.
TEST_P(StoreConformance, ACancelEventIsInTheCancelOutboxUntilAcknowledged) {
  NewEvent stop = Event("test/stop");
  stop.cancels = true;
  NewEvent plain = Event("test/plain");
  const int64_t stored_ms = UnixMillis(clock_.Now());
  ASSERT_THAT(store_->IngestEvents({stop, plain}, clock_.Now(), nullptr), IsOk());
  NewEvent again = stop;
  again.event.internal_id = NewUlid(stored_ms);  // a resend: the same id, a new internal id
  auto resent = store_->IngestEvents({again}, clock_.Now(), nullptr);
  ASSERT_THAT(resent, IsOk());
  EXPECT_TRUE((*resent)[0].duplicate);

  auto pending = store_->PendingCancels(0, 10);
  ASSERT_THAT(pending, IsOk());
  ASSERT_EQ(pending->size(), 1u);
  EXPECT_EQ((*pending)[0].internal_id, stop.event.internal_id);
  EXPECT_EQ((*pending)[0].name, "test/stop");
  EXPECT_EQ((*pending)[0].payload, stop.event.payload);
  EXPECT_EQ((*pending)[0].received_at_ms, stored_ms);
  EXPECT_THAT(*store_->PendingCancels(stored_ms, 10), ::testing::IsEmpty());
  auto due = store_->DueSweeps(0, stored_ms, clock_.Now());
  ASSERT_THAT(due, IsOk());
  EXPECT_FALSE(due->cancels);
  due = store_->DueSweeps(0, stored_ms + 1, clock_.Now());
  ASSERT_THAT(due, IsOk());
  EXPECT_TRUE(due->cancels);

  // Retention keeps the pending event, takes the other.
  clock_.Advance(std::chrono::hours(2));
  ASSERT_THAT(store_->DeleteExpired(clock_.Now() - std::chrono::hours(1), 100), IsOk());
  EXPECT_THAT(store_->GetEvent(stop.event.internal_id), IsOk());
  EXPECT_EQ(store_->GetEvent(plain.event.internal_id).status().code(), StatusCode::kNotFound);

  ASSERT_THAT(store_->AckCancels({stop.event.internal_id, "01UNKNOWN"}), IsOk());
  EXPECT_THAT(*store_->PendingCancels(0, 10), ::testing::IsEmpty());
  EXPECT_FALSE(store_->DueSweeps(0, 0, clock_.Now())->cancels);
  ASSERT_THAT(store_->DeleteExpired(clock_.Now() - std::chrono::hours(1), 100), IsOk());
  EXPECT_EQ(store_->GetEvent(stop.event.internal_id).status().code(), StatusCode::kNotFound);
}

// The wait outbox: a new event that open waits may resume (event waits of its name; an end,
// the invoke wait of its correlation id) is recorded with it, one nothing waits for is not;
// WaitsBefore reads the waits registered before the event, page by page; DueSweeps says so
// once it is older than the bound; retention keeps the event while it is pending; an
// acknowledgement forgets it.
TEST_P(StoreConformance, AnEventWaitsMayResumeIsInTheWaitOutboxUntilAcknowledged) {
  std::vector<std::string> waiting;
  for (int i = 0; i < 3; ++i) waiting.push_back(Start("app-plain"));
  const std::string invoker = Start("app-plain");
  std::map<std::string, QueueItem> items;
  for (QueueItem& item : Claim()) items[item.run_id] = item;
  ASSERT_EQ(items.size(), 4u);
  for (const std::string& run : waiting) {
    Transition t;
    t.move = Transition::Continue{.waits = {Wait("hw", clock_.Now() + 1h)}, .run_status = kWaiting};
    ASSERT_THAT(store_->Apply(items[run], t, clock_.Now()), IsOk());
    clock_.Advance(1ms);
  }
  NewWait invoke = Wait("call", clock_.Now() + 1h);
  invoke.event_name = "inngest/function.finished";
  invoke.expression = InvokeWaitExpression(invoker + ".call");
  invoke.kind = kWaitInvoke;
  Transition t;
  t.move = Transition::Continue{.waits = {invoke}, .run_status = kWaiting};
  ASSERT_THAT(store_->Apply(items[invoker], t, clock_.Now()), IsOk());
  clock_.Advance(1ms);

  NewEvent approved = Event("test/approved");
  NewEvent other = Event("test/other");  // nothing waits for it
  const int64_t stored_ms = UnixMillis(clock_.Now());
  ASSERT_THAT(store_->IngestEvents({approved, other}, clock_.Now(), nullptr), IsOk());
  NewEvent end = Event("inngest/function.finished");
  end.event.payload["data"] = {{"correlation_id", invoker + ".call"}};
  NewEvent unrelated_end = Event("inngest/function.finished");
  unrelated_end.event.payload["data"] = {{"correlation_id", "nobody.call"}};
  NewEvent failed = Event("inngest/function.failed");  // the end's second event: no wait's
  failed.event.payload["data"] = end.event.payload["data"];
  ASSERT_THAT(store_->IngestEvents({end, failed}, clock_.Now(), nullptr), IsOk());
  ASSERT_THAT(store_->IngestEvents({unrelated_end}, clock_.Now(), nullptr), IsOk());
  // A wait registered after the event: not the event's to resume (it looks back itself).
  clock_.Advance(1ms);
  const std::string later = Start("app-plain");
  for (QueueItem& item : Claim()) {
    if (item.run_id != later) continue;
    Transition w;
    w.move = Transition::Continue{.waits = {Wait("hw", clock_.Now() + 1h)}, .run_status = kWaiting};
    ASSERT_THAT(store_->Apply(item, w, clock_.Now()), IsOk());
  }
  // A resend adds nothing.
  NewEvent again = approved;
  again.event.internal_id = NewUlid(stored_ms);
  ASSERT_THAT(store_->IngestEvents({again}, clock_.Now(), nullptr), IsOk());

  auto pending = store_->PendingResumes(stored_ms + 1, 10);
  ASSERT_THAT(pending, IsOk());
  std::map<std::string, EventRecord> by_id;  // received in one millisecond: in id order
  for (const EventRecord& e : *pending) by_id[e.internal_id] = e;
  ASSERT_EQ(by_id.size(), 2u);
  ASSERT_EQ(by_id.count(approved.event.internal_id), 1u);
  ASSERT_EQ(by_id.count(end.event.internal_id), 1u);
  const EventRecord& event = by_id[approved.event.internal_id];
  EXPECT_EQ(event.payload, approved.event.payload);
  EXPECT_EQ(event.received_at_ms, stored_ms);
  EXPECT_THAT(*store_->PendingResumes(stored_ms, 10), ::testing::IsEmpty());
  EXPECT_FALSE(store_->DueSweeps(0, stored_ms, clock_.Now())->resumes);
  EXPECT_TRUE(store_->DueSweeps(0, stored_ms + 1, clock_.Now())->resumes);

  // The waits before it, a page of two and then the rest; the end's invoke wait alone.
  auto first = store_->WaitsBefore(event, nullptr, 2);
  ASSERT_THAT(first, IsOk());
  ASSERT_EQ(first->size(), 2u);
  auto rest = store_->WaitsBefore(event, &first->back(), 2);
  ASSERT_THAT(rest, IsOk());
  ASSERT_EQ(rest->size(), 1u);
  EXPECT_EQ((std::vector<std::string>{(*first)[0].run_id, (*first)[1].run_id, (*rest)[0].run_id}),
            waiting);
  EXPECT_EQ((*first)[0].step_id, "hw");
  EXPECT_EQ((*first)[0].expression, "async.data.ok == true");
  EXPECT_THAT(*store_->WaitsBefore(event, &rest->back(), 2), ::testing::IsEmpty());
  auto invoked = store_->WaitsBefore(by_id[end.event.internal_id], nullptr, 10);
  ASSERT_THAT(invoked, IsOk());
  ASSERT_EQ(invoked->size(), 1u);
  EXPECT_EQ((*invoked)[0].run_id, invoker);
  EXPECT_EQ((*invoked)[0].kind, kWaitInvoke);

  // Retention keeps the pending events, takes the other.
  for (const std::string& run : waiting)
    ASSERT_THAT(store_->CancelRun(run, nullptr, clock_.Now()), IsOk());
  clock_.Advance(2h);
  ASSERT_THAT(store_->DeleteExpired(clock_.Now() - 1h, 100), IsOk());
  EXPECT_THAT(store_->GetEvent(approved.event.internal_id), IsOk());
  EXPECT_EQ(store_->GetEvent(other.event.internal_id).status().code(), StatusCode::kNotFound);

  ASSERT_THAT(store_->AckResumes({approved.event.internal_id, end.event.internal_id, "01UNKNOWN"}),
              IsOk());
  EXPECT_THAT(*store_->PendingResumes(0, 10), ::testing::IsEmpty());
  EXPECT_FALSE(store_->DueSweeps(0, 0, clock_.Now())->resumes);
  ASSERT_THAT(store_->DeleteExpired(clock_.Now() - 1h, 100), IsOk());
  EXPECT_EQ(store_->GetEvent(approved.event.internal_id).status().code(), StatusCode::kNotFound);
}

// ActiveRuns(before_ms) holds the runs there were before that time: created before it, for an
// event received before it.
TEST_P(StoreConformance, ActiveRunsAreThoseCreatedForEventsReceivedBeforeTheBound) {
  const std::string first = Start("app-plain");
  const int64_t first_ms = UnixMillis(clock_.Now());
  clock_.Advance(std::chrono::milliseconds(5));
  const std::string second = Start("app-plain");
  const int64_t second_ms = UnixMillis(clock_.Now());
  auto ids = [&](int64_t before_ms) {
    std::vector<std::string> out;
    auto active = store_->ActiveRuns("app-plain", before_ms, "", 10);
    EXPECT_TRUE(active.ok()) << active.status().ToString();
    if (active.ok()) {
      for (const ActiveRun& r : *active) out.push_back(r.run_id);
    }
    return out;
  };
  EXPECT_THAT(ids(first_ms), ::testing::IsEmpty());
  EXPECT_THAT(ids(first_ms + 1), ::testing::ElementsAre(first));
  EXPECT_THAT(ids(second_ms), ::testing::ElementsAre(first));
  EXPECT_THAT(ids(second_ms + 1), ::testing::ElementsAre(first, second));
  // Page by page, in run id order.
  const std::string third = Start("app-plain");
  const int64_t later_ms = UnixMillis(clock_.Now()) + 1;
  std::vector<std::string> all = {first, second, third};
  std::sort(all.begin(), all.end());
  auto page = store_->ActiveRuns("app-plain", later_ms, "", 2);
  ASSERT_THAT(page, IsOk());
  ASSERT_EQ(page->size(), 2u);
  EXPECT_EQ((*page)[0].run_id, all[0]);
  EXPECT_EQ((*page)[1].run_id, all[1]);
  page = store_->ActiveRuns("app-plain", later_ms, (*page)[1].run_id, 2);
  ASSERT_THAT(page, IsOk());
  ASSERT_EQ(page->size(), 1u);
  EXPECT_EQ((*page)[0].run_id, all[2]);
}

// Pages of events, and of runs with their events (a wait's look-back, a cancel_on event's runs),
// hold a few megabytes of payloads: 30 events of 400 KiB come in pages shorter than asked for,
// in order, to an empty page; small ones come as many as asked for.
TEST_P(StoreConformance, PagesOfEventsAndOfRunsAreBoundedByTheirPayloadsBytes) {
  std::vector<std::string> events, runs;
  for (int i = 0; i < 30; ++i) {
    NewEvent ne = Event("test/large");
    ne.event.payload["data"] = {{"blob", std::string(400 << 10, 'a' + i % 26)}};
    ne.runs.push_back({.run_id = NewUlid(UnixMillis(clock_.Now())), .function_id = "app-plain"});
    ASSERT_THAT(store_->IngestEvents({ne}, clock_.Now(), nullptr), IsOk());
    events.push_back(ne.event.internal_id);
    runs.push_back(ne.runs[0].run_id);
    clock_.Advance(1ms);
  }
  std::sort(runs.begin(), runs.end());
  const int64_t now_ms = UnixMillis(clock_.Now());
  std::vector<std::string> read;
  size_t largest = 0;
  for (int64_t after_ms = 0;;) {
    const std::string after_id = read.empty() ? "" : read.back();
    auto page = store_->EventsAfter("test/large", after_ms, after_id, 1000);
    ASSERT_THAT(page, IsOk());
    if (page->empty()) break;
    largest = std::max(largest, page->size());
    for (const EventRecord& e : *page) read.push_back(e.internal_id);
    after_ms = page->back().received_at_ms;
  }
  EXPECT_EQ(read, events);
  EXPECT_GT(largest, 1u);
  EXPECT_LT(largest, 30u) << "one page held them all";
  read.clear();
  largest = 0;
  for (std::string after;;) {
    auto page = store_->ActiveRuns("app-plain", now_ms, after, 1000);
    ASSERT_THAT(page, IsOk());
    if (page->empty()) break;
    largest = std::max(largest, page->size());
    for (const ActiveRun& r : *page) read.push_back(r.run_id);
    after = page->back().run_id;
  }
  EXPECT_EQ(read, runs);
  EXPECT_GT(largest, 1u);
  EXPECT_LT(largest, 30u) << "one page held them all";
  // Small payloads: the page is the rows asked for.
  for (int i = 0; i < 5; ++i) Start("app-plain");
  clock_.Advance(1ms);
  auto small = store_->ActiveRuns("app-plain", UnixMillis(clock_.Now()), runs.back(), 3);
  ASSERT_THAT(small, IsOk());
  EXPECT_EQ(small->size(), 3u);
}

// A run's cancel keys (NewRun::cancel_keys), written with it (a plain run, one made as a gated
// run is, a replay): CancelCandidates finds the runs of the function and rule whose key is one
// of the event's or unset, made before the bound and not before `created_from_ms`, page by
// page; not an ended run, whose keys it deletes. A replay made from a function set a sync has
// changed since is refused and makes nothing.
TEST_P(StoreConformance, CancelCandidatesAreTheRunsWithOneOfTheEventsKeysOrNone) {
  auto start = [&](const std::string& fn, std::vector<CancelKey> keys, bool gated = false) {
    NewEvent ne = Event("test/e");
    NewRun run{NewUlid(UnixMillis(clock_.Now())), fn};
    run.cancel_keys = std::move(keys);
    if (gated) run.timeouts = RunTimeouts{.finish = 1h};
    ne.runs.push_back(run);
    EXPECT_THAT(store_->IngestEvents({ne}, clock_.Now(), nullptr), IsOk());
    clock_.Advance(1ms);
    return run.run_id;
  };
  auto keys_of = [&](const std::string& run_id) {
    int64_t n = -1;
    EXPECT_THAT(db_->Transact([&](sql::Tx& tx) {
      n = tx.Count("SELECT count(*) FROM run_cancel_keys WHERE run_id = $1", {run_id});
      return Status::Ok();
    }),
                IsOk());
    return n;
  };
  const std::string ended = start("app-plain", {{"r1", "k=a"}, {"r2", "k=z"}});
  auto items = Claim();
  ASSERT_EQ(items.size(), 1u);
  ASSERT_THAT(End(items[0]), IsOk());
  const std::string a = start("app-plain", {{"r1", "k=a"}});
  const std::string b = start("app-plain", {{"r1", "k=b"}, {"r2", "k=a"}}, /*gated=*/true);
  const std::string none = start("app-plain", {{"r1", std::nullopt}});
  const std::string other_rule = start("app-plain", {{"r2", "k=a"}});
  start("app-ordered", {{"r1", "k=a"}});  // another function's
  const std::string keyless = start("app-plain", {});
  auto a_run = store_->GetRun(a);
  ASSERT_THAT(a_run, IsOk());
  const NewRun replay{.run_id = NewUlid(UnixMillis(clock_.Now())),
                      .function_id = "app-plain",
                      .cancel_keys = {{"r1", "k=b"}}};
  auto generation = store_->FunctionGeneration();
  ASSERT_THAT(generation, IsOk());
  EXPECT_EQ(store_->StartRun(a_run->event_id, replay, clock_.Now(), nullptr, *generation - 1)
                .status()
                .code(),
            StatusCode::kAborted);
  EXPECT_EQ(store_->GetRun(replay.run_id).status().code(), StatusCode::kNotFound);
  ASSERT_THAT(store_->StartRun(a_run->event_id, replay, clock_.Now(), nullptr, *generation),
              IsOk());
  clock_.Advance(1ms);
  const int64_t now_ms = UnixMillis(clock_.Now());

  auto sorted = [](std::vector<std::string> ids) {
    std::sort(ids.begin(), ids.end());
    return ids;
  };
  EXPECT_EQ(CandidateIds("r1", {"k=a"}, now_ms), sorted({a, none}));
  EXPECT_EQ(CandidateIds("r1", {"k=b"}, now_ms), sorted({b, none, replay.run_id}));
  EXPECT_EQ(CandidateIds("r1", {"k=a", "k=b", "k=c"}, now_ms), sorted({a, b, none, replay.run_id}));
  EXPECT_EQ(CandidateIds("r1", {}, now_ms), std::vector<std::string>{none});
  EXPECT_EQ(CandidateIds("r2", {"k=a"}, now_ms), sorted({b, other_rule}));
  EXPECT_THAT(CandidateIds("r3", {"k=a"}, now_ms), ::testing::IsEmpty());
  // The bounds: made before `before_ms`, not before `created_from_ms`.
  auto b_run = store_->GetRun(b);
  ASSERT_THAT(b_run, IsOk());
  EXPECT_EQ(CandidateIds("r1", {"k=a", "k=b"}, b_run->created_at_ms), std::vector<std::string>{a});
  EXPECT_EQ(CandidateIds("r1", {"k=a", "k=b"}, now_ms, b_run->created_at_ms),
            sorted({b, none, replay.run_id}));
  // Page by page, in run id order.
  const std::vector<std::string> all = sorted({a, b, none, replay.run_id});
  auto page = store_->CancelCandidates("app-plain", "r1", {"k=a", "k=b"}, now_ms, 0, "", 3);
  ASSERT_THAT(page, IsOk());
  ASSERT_EQ(page->size(), 3u);
  EXPECT_EQ((*page)[2].run_id, all[2]);
  EXPECT_EQ((*page)[0].event["name"], "test/e");
  page =
      store_->CancelCandidates("app-plain", "r1", {"k=a", "k=b"}, now_ms, 0, (*page)[2].run_id, 3);
  ASSERT_THAT(page, IsOk());
  ASSERT_EQ(page->size(), 1u);
  EXPECT_EQ((*page)[0].run_id, all[3]);
  // The ended run is not among them, and its key for each rule went as that rule's events
  // came across it.
  EXPECT_EQ(keys_of(ended), 1) << "its r2 key, which no r2 event has come across";
  EXPECT_THAT(CandidateIds("r2", {"k=z"}, now_ms), ::testing::IsEmpty());
  EXPECT_EQ(keys_of(ended), 0);
  EXPECT_EQ(keys_of(b), 2);
  EXPECT_EQ(keys_of(keyless), 0);
}

// A sync that changes the functions gives each active run made before one of their cancel rules
// was (no key for it) an unset key for that rule, so that the rule's events look at it; a run
// keyed for the rule keeps its key, an ended run gets none, and a later sync adds nothing again.
TEST_P(StoreConformance, ASyncGivesTheRunsMadeBeforeACancelRuleAnUnsetKeyForIt) {
  auto start = [&](std::vector<CancelKey> keys) {
    NewEvent ne = Event("test/e");
    NewRun run{NewUlid(UnixMillis(clock_.Now())), "app-plain"};
    run.cancel_keys = std::move(keys);
    ne.runs.push_back(run);
    EXPECT_THAT(store_->IngestEvents({ne}, clock_.Now(), nullptr), IsOk());
    clock_.Advance(1ms);
    return run.run_id;
  };
  start({});  // ended before the sync
  auto items = Claim();
  ASSERT_EQ(items.size(), 1u);
  ASSERT_THAT(End(items[0]), IsOk());
  const std::string before = start({});
  const std::string keyed = start({{"r1", "k=a"}});
  const int64_t now_ms = UnixMillis(clock_.Now());
  auto found = [&](const std::string& rule, const std::string& key) {
    return CandidateIds(rule, {key}, now_ms);
  };
  ASSERT_THAT(found("r1", "k=b"), ::testing::IsEmpty());
  AppSync sync = AppWithCancelRules("sum-2", {"r1", "r2"});
  ASSERT_THAT(store_->SyncApp(sync), IsOk());
  EXPECT_EQ(found("r1", "k=b"), std::vector<std::string>{before});
  EXPECT_EQ(found("r1", "k=a"), (std::vector<std::string>{before, keyed}));
  EXPECT_EQ(found("r2", "k=b"), (std::vector<std::string>{before, keyed}));
  EXPECT_THAT(found("r3", "k=b"), ::testing::IsEmpty());
  int64_t rows = 0;
  auto count = [&] {
    EXPECT_THAT(db_->Transact([&](sql::Tx& tx) {
      rows = tx.Count("SELECT count(*) FROM run_cancel_keys");
      return Status::Ok();
    }),
                IsOk());
    return rows;
  };
  EXPECT_EQ(count(), 4) << "before: r1 and r2; keyed: r1 as it was, r2; the ended run none";
  // A sync that leaves the rules as they were reads no runs (a run without keys, as only a
  // write around the intake makes, stays so); one that changes them keys every run again.
  const std::string unkeyed = start({});
  sync.app.checksum = "sum-3";
  ASSERT_THAT(store_->SyncApp(sync), IsOk());
  EXPECT_EQ(count(), 4);
  ASSERT_THAT(store_->SyncApp(AppWithCancelRules("sum-4", {"r1", "r2", "r3"})), IsOk());
  EXPECT_EQ(count(), 9) << "r3 for the three active runs, r1 and r2 for the one without keys";
  std::vector<std::string> all = {before, keyed, unkeyed};
  std::sort(all.begin(), all.end());
  EXPECT_EQ(CandidateIds("r3", {"k=b"}, UnixMillis(clock_.Now())), all);
}

// An ingest made from the function set before a sync that adds a cancel rule, in flight when
// the sync comes, holds the sync back until it commits (PostgreSQL: an advisory lock the ingest
// holds shared, the sync whole; SQLite: the database): the sync then gives its run the unset
// key. Without the lock the sync committed meanwhile, the run came after it with no key, and
// the rule's events never read it.
TEST_P(StoreConformance, ASyncAddingACancelRuleWaitsForAnIngestInFlightAndKeysItsRun) {
  auto generation = store_->FunctionGeneration();
  ASSERT_THAT(generation, IsOk());
  NewEvent ne = Event("test/e");
  ne.event.id = "its-own-id";  // an ingest in several round trips, not one flight
  ne.runs.push_back({.run_id = NewUlid(UnixMillis(clock_.Now())), .function_id = "app-plain"});
  db_->pause_next_before_commit = true;
  Result<std::vector<IngestedEvent>> ingested = Unavailable("not run");
  std::thread ingest(
      [&] { ingested = store_->IngestEvents({ne}, clock_.Now(), nullptr, nullptr, *generation); });
  while (!db_->paused) std::this_thread::sleep_for(1ms);
  const AppSync sync = AppWithCancelRules("sum-2", {"r1"});
  std::atomic<bool> synced = false;
  Result<SyncResult> result = Unavailable("not run");
  std::thread syncing([&] {
    result = store_->SyncApp(sync);
    synced = true;
  });
  std::this_thread::sleep_for(300ms);
  EXPECT_FALSE(synced) << "the sync did not wait for the ingest in flight";
  db_->Release();
  ingest.join();
  syncing.join();
  ASSERT_THAT(ingested, IsOk());
  ASSERT_THAT(result, IsOk());
  clock_.Advance(1ms);
  EXPECT_EQ(CandidateIds("r1", {"k=x"}, UnixMillis(clock_.Now())),
            std::vector<std::string>{ne.runs[0].run_id});
}

// A run whose debounce a later event joins is that event's run: its cancel keys are the later
// event's.
TEST_P(StoreConformance, ADebouncedRunsCancelKeysAreThoseOfItsLastEvent) {
  auto send = [&](std::vector<CancelKey> keys) {
    NewEvent ne = Event("test/debounce");
    ne.event.payload["ts"] = UnixMillis(clock_.Now());
    NewRun run{NewUlid(UnixMillis(clock_.Now())), "app-plain"};
    run.debounce = DebounceGate{"d", 60s, std::nullopt, UnixMillis(clock_.Now())};
    run.cancel_keys = std::move(keys);
    ne.runs.push_back(run);
    EXPECT_THAT(store_->IngestEvents({ne}, clock_.Now(), nullptr), IsOk());
    clock_.Advance(1s);
    return run.run_id;
  };
  const std::string run = send({{"r1", "k=first"}});
  send({{"r1", "k=second"}});  // joins it
  int64_t now_ms = UnixMillis(clock_.Now());
  EXPECT_THAT(CandidateIds("r1", {"k=first"}, now_ms), ::testing::IsEmpty());
  EXPECT_EQ(CandidateIds("r1", {"k=second"}, now_ms), std::vector<std::string>{run});
  // One made when its function had no keyed rule (a sync dropped it) joins it: the run keeps
  // no key of the earlier event's, so that a sync bringing the rule back keys it anew.
  send({});
  now_ms = UnixMillis(clock_.Now());
  EXPECT_THAT(CandidateIds("r1", {"k=second"}, now_ms), ::testing::IsEmpty());
}

// Runs made before cancel keys were (the migration that adds them) are looked at by every
// rule of their function: a key '*' each, for the active ones only.
TEST_P(StoreConformance, TheCancelKeysMigrationKeysTheActiveRunsForEveryRule) {
  Start("app-plain");  // ended before the migration
  auto items = Claim();
  ASSERT_EQ(items.size(), 1u);
  ASSERT_THAT(End(items[0]), IsOk());
  const std::string active = Start("app-plain");
  ASSERT_THAT(db_->Transact([&](sql::Tx& tx) {
    tx.Exec("DROP TABLE run_cancel_keys");
    tx.Exec(
        "DELETE FROM schema_migrations WHERE name LIKE '%_run_cancel_keys' OR name LIKE "
        "'%_cancel_keys_by_key'");  // its index, made again after the table
    return Status::Ok();
  }),
              IsOk());
  ASSERT_THAT(store_->Migrate(), IsOk());
  int64_t rows = 0;
  ASSERT_THAT(db_->Transact([&](sql::Tx& tx) {
    rows = tx.Count("SELECT count(*) FROM run_cancel_keys WHERE rule = '*' AND key IS NULL");
    return Status::Ok();
  }),
              IsOk());
  EXPECT_EQ(rows, 1) << "the active run's, not the ended one's";
  clock_.Advance(1ms);
  for (const std::string rule : {"r1", "r2"}) {
    EXPECT_EQ(CandidateIds(rule, {"k=a"}, UnixMillis(clock_.Now())),
              std::vector<std::string>{active})
        << rule;
  }
}

TEST_P(StoreConformance, RetentionDeletesOnlyOldFinishedRunsAndEventsNoRunNeeds) {
  // Old: a finished run (with a step and an attempt), a running run, a finished run whose
  // end is not announced yet, and an event that started nothing.
  const std::string old_done = Start("app-plain");
  const std::string old_running = Start("app-plain");
  const std::string old_unannounced = Start("app-plain");
  NewEvent lone = Event("test/lone");
  ASSERT_TRUE(store_->IngestEvents({lone}, clock_.Now(), nullptr).ok());
  for (const QueueItem& item : Claim()) {
    if (item.run_id == old_running) continue;
    Transition t;
    t.move = Transition::End{kCompleted, nullptr, nullptr};
    t.steps.push_back({"s1", 0, "first", "completed", {{"data", 1}}, UnixMillis(clock_.Now())});
    t.attempts.push_back({"s1", "first", 0, "completed", nullptr, UnixMillis(clock_.Now()),
                          UnixMillis(clock_.Now())});
    ASSERT_TRUE(store_->Apply(item, t, clock_.Now()).ok());
  }
  // Recent: a finished run and an event that started nothing.
  clock_.Advance(1h);
  const std::string recent_done = Start("app-plain");
  NewEvent recent_lone = Event("test/lone");
  ASSERT_TRUE(store_->IngestEvents({recent_lone}, clock_.Now(), nullptr).ok());
  for (const QueueItem& item : Claim()) {
    // The running run's lease expired meanwhile: it is claimed again, and goes on.
    if (item.run_id == recent_done) {
      ASSERT_TRUE(End(item).ok());
    }
  }
  auto pending = store_->PendingRunEnds(0, 100);
  ASSERT_TRUE(pending.ok());
  std::vector<std::string> announced;
  for (const std::string& id : *pending) {
    if (id != old_unannounced) announced.push_back(id);
  }
  ASSERT_EQ(announced.size(), 2u);
  ASSERT_TRUE(store_->AckRunEnds(announced).ok());

  auto event_of = [&](const std::string& run_id) { return store_->GetRun(run_id)->event_id; };
  const std::string old_done_event = event_of(old_done);
  std::map<std::string, std::string> kept = {{old_running, event_of(old_running)},
                                             {old_unannounced, event_of(old_unannounced)},
                                             {recent_done, event_of(recent_done)}};

  // Batches of one: the old finished run and the two old events nothing needs.
  int64_t deleted = 0;
  for (int pass = 0; pass < 10; ++pass) {
    auto n = store_->DeleteExpired(clock_.Now() - 30min, /*batch=*/1);
    ASSERT_TRUE(n.ok()) << n.status().ToString();
    EXPECT_LE(*n, 2);
    if (*n == 0) break;
    deleted += *n;
  }
  EXPECT_EQ(deleted, 3);
  EXPECT_EQ(store_->GetRun(old_done).status().code(), StatusCode::kNotFound);
  EXPECT_EQ(store_->GetEvent(old_done_event).status().code(), StatusCode::kNotFound);
  EXPECT_EQ(store_->GetEvent(lone.event.internal_id).status().code(), StatusCode::kNotFound);
  auto steps = store_->GetSteps(old_done);
  EXPECT_TRUE(!steps.ok() || steps->empty());
  for (const auto& [run_id, event_id] : kept) {
    EXPECT_TRUE(store_->GetRun(run_id).ok()) << run_id;
    EXPECT_TRUE(store_->GetEvent(event_id).ok()) << event_id;
  }
  EXPECT_TRUE(store_->GetEvent(recent_lone.event.internal_id).ok());
  EXPECT_EQ(RunStatus(old_running), kRunning);
  EXPECT_EQ(*store_->DeleteExpired(clock_.Now() - 30min, 500), 0);
}

// Retention takes a sequence lane's history with what it deletes: the outcomes of the events
// it deletes, and the gaps announced before its horizon. The lane's next number stays, so an
// old number sent again is still refused (stale, its run being gone), and so does a gap whose
// funcky/lane.gap event is not stored yet. (Outcomes and gaps were kept for good.)
TEST_P(StoreConformance, RetentionDeletesOldLaneOutcomesAndGapsButNotTheNextNumber) {
  // Old: 1 runs; 3 waits for 2, given up (gap {2}, announced); 2 then is stale and 3 sent
  // again a duplicate; 5 waits for 4, given up (gap {4}, not announced).
  std::vector<QueueItem> items;
  Send("t", 1, kFromOne);
  ASSERT_EQ(ClaimedNumbers(&items), std::vector<int64_t>{1});
  ASSERT_THAT(End(items[0]), IsOk());
  Send("t", 3, kFromOne);
  ASSERT_THAT(store_->SkipLaneHead("app-ordered", "t", clock_.Now()), IsOk());
  ASSERT_EQ(ClaimedNumbers(&items), std::vector<int64_t>{3});
  const std::string three = items[0].run_id;
  ASSERT_THAT(End(items[0]), IsOk());
  const std::string stale = Send("t", 2, kFromOne);
  const std::string duplicate = Send("t", 3, kFromOne);
  ASSERT_EQ(store_->LaneOutcomesOf(stale)->size(), 1u);
  ASSERT_EQ(store_->LaneOutcomesOf(duplicate)->size(), 1u);
  Send("t", 5, kFromOne);
  ASSERT_THAT(store_->SkipLaneHead("app-ordered", "t", clock_.Now()), IsOk());
  ASSERT_EQ(ClaimedNumbers(&items), std::vector<int64_t>{5});
  ASSERT_THAT(End(items[0]), IsOk());
  auto pending = store_->PendingLaneGaps(10);
  ASSERT_THAT(pending, IsOk());
  ASSERT_EQ(pending->size(), 2u);
  ASSERT_EQ((*pending)[0].first, 2);
  ASSERT_THAT(store_->AckLaneGaps({(*pending)[0].id}), IsOk());
  auto ends = store_->PendingRunEnds(0, 100);
  ASSERT_THAT(ends, IsOk());
  ASSERT_THAT(store_->AckRunEnds(*ends), IsOk());

  // Recent: 2 sent again (stale), and 7 waiting for 6, given up (gap {6}, announced).
  clock_.Advance(1h);
  const std::string recent_stale = Send("t", 2, kFromOne);
  Send("t", 7, kFromOne);
  ASSERT_THAT(store_->SkipLaneHead("app-ordered", "t", clock_.Now()), IsOk());
  ASSERT_EQ(ClaimedNumbers(&items), std::vector<int64_t>{7});
  ASSERT_THAT(End(items[0]), IsOk());
  pending = store_->PendingLaneGaps(10);
  ASSERT_THAT(pending, IsOk());
  ASSERT_EQ(pending->size(), 2u);
  ASSERT_EQ(pending->back().first, 6);
  ASSERT_THAT(store_->AckLaneGaps({pending->back().id}), IsOk());

  for (int pass = 0; pass < 10; ++pass) {
    auto n = store_->DeleteExpired(clock_.Now() - 30min, 500);
    ASSERT_THAT(n, IsOk());
    if (*n == 0) break;
  }
  EXPECT_EQ(store_->GetRun(three).status().code(), StatusCode::kNotFound);
  EXPECT_EQ(store_->GetEvent(stale).status().code(), StatusCode::kNotFound);
  EXPECT_EQ(store_->GetEvent(duplicate).status().code(), StatusCode::kNotFound);
  EXPECT_TRUE(store_->LaneOutcomesOf(stale)->empty());
  EXPECT_TRUE(store_->LaneOutcomesOf(duplicate)->empty());
  auto kept = store_->LaneOutcomesOf(recent_stale);
  ASSERT_THAT(kept, IsOk());
  ASSERT_EQ(kept->size(), 1u);
  EXPECT_EQ((*kept)[0].outcome, kStale);
  auto gaps = store_->ListLaneGaps("app-ordered", "t", 10);
  ASSERT_THAT(gaps, IsOk());
  std::vector<int64_t> firsts;
  for (const LaneGap& gap : *gaps) firsts.push_back(gap.first);
  EXPECT_EQ(firsts, (std::vector<int64_t>{6, 4})) << "the old announced gap {2} is gone";
  pending = store_->PendingLaneGaps(10);
  ASSERT_THAT(pending, IsOk());
  ASSERT_EQ(pending->size(), 1u);
  EXPECT_EQ((*pending)[0].first, 4);

  // The lane's row still knows what comes next: 3 again, whose run and outcomes are gone, is
  // stale and starts nothing; 8 runs.
  const std::string three_again = Send("t", 3, kFromOne);
  auto again = store_->LaneOutcomesOf(three_again);
  ASSERT_THAT(again, IsOk());
  ASSERT_EQ(again->size(), 1u);
  EXPECT_EQ((*again)[0].outcome, kStale);
  EXPECT_TRUE(Claim().empty());
  Send("t", 8, kFromOne);
  EXPECT_EQ(ClaimedNumbers(), std::vector<int64_t>{8});
  auto stats = store_->GetQueueStats(clock_.Now());
  ASSERT_THAT(stats, IsOk());
  EXPECT_EQ(stats->lane_gaps, 3) << "the totals count what retention deleted";
  EXPECT_EQ(stats->lane_stale, 3);
  EXPECT_EQ(stats->lane_duplicates, 1);
}

// Retention counts the lane outcomes and gaps it deletes, so that its caller, which stops at a
// pass that deletes nothing, goes on until none is left; gaps go a batch at a time, as runs
// and events do. (They were not counted: past the first 1000 gaps, the rest went only in passes
// that deleted runs or events.)
TEST_P(StoreConformance, RetentionCountsTheLaneHistoryItDeletesUntilNoneIsLeft) {
  // Kept: the runs of 1 and 3 (ended, their ends not announced) and of 5 (queued), with their
  // events. To delete: the gaps {2} and {4}, announced, and 1 and 3 sent again (duplicates),
  // each event with one outcome.
  std::vector<QueueItem> items;
  Send("t", 1, kFromOne);
  ASSERT_EQ(ClaimedNumbers(&items), std::vector<int64_t>{1});
  ASSERT_THAT(End(items[0]), IsOk());
  Send("t", 3, kFromOne);
  ASSERT_THAT(store_->SkipLaneHead("app-ordered", "t", clock_.Now()), IsOk());
  ASSERT_EQ(ClaimedNumbers(&items), std::vector<int64_t>{3});
  ASSERT_THAT(End(items[0]), IsOk());
  Send("t", 5, kFromOne);
  ASSERT_THAT(store_->SkipLaneHead("app-ordered", "t", clock_.Now()), IsOk());
  const std::string one_again = Send("t", 1, kFromOne);
  const std::string three_again = Send("t", 3, kFromOne);
  ASSERT_EQ(store_->LaneOutcomesOf(one_again)->size(), 1u);
  ASSERT_EQ(store_->LaneOutcomesOf(three_again)->size(), 1u);
  auto pending = store_->PendingLaneGaps(10);
  ASSERT_THAT(pending, IsOk());
  ASSERT_EQ(pending->size(), 2u);
  ASSERT_THAT(store_->AckLaneGaps({(*pending)[0].id, (*pending)[1].id}), IsOk());
  clock_.Advance(1h);

  // Batches of one: each pass deletes an event with its outcome, and a gap.
  std::vector<int64_t> passes;
  for (int pass = 0; pass < 10; ++pass) {
    auto n = store_->DeleteExpired(clock_.Now() - 30min, /*batch=*/1);
    ASSERT_THAT(n, IsOk());
    passes.push_back(*n);
    if (*n == 0) break;
  }
  EXPECT_EQ(passes, (std::vector<int64_t>{3, 3, 0}));
  EXPECT_EQ(store_->GetEvent(one_again).status().code(), StatusCode::kNotFound);
  EXPECT_EQ(store_->GetEvent(three_again).status().code(), StatusCode::kNotFound);
  EXPECT_TRUE(store_->LaneOutcomesOf(one_again)->empty());
  EXPECT_TRUE(store_->LaneOutcomesOf(three_again)->empty());
  EXPECT_TRUE(store_->ListLaneGaps("app-ordered", "t", 10)->empty());
}

// A run's end finds the invoke wait for it among any number of others: by its `if`'s text,
// not among the oldest 10,000 waits of inngest/function.finished (an invoker past them missed
// its callee's end and waited out its timeout). An event wait's `if` that never names `event`
// is evaluated without the run's event, which is then not read.
// An event wait with a key (NewWait::match_key) is found by an ingest of an event with that
// key (expr::IndexKeys) however many waits of the name are open: here past 10,000 waits
// without a key, the most an ingest reads of those (store::kIngestWaits), and 10,000 with
// other keys. An event the outbox records is reported pending though it met no wait.
TEST_P(StoreConformance, AnIngestFindsAWaitByItsKeyPastTenThousandOthers) {
  const std::string fillers = Start("app-plain");
  AddFillerWaits(fillers, 2 * kIngestWaits, "test/approved", "async.data.ok == true", "event",
                 /*every_other_keyed=*/true);
  clock_.Advance(1s);
  const std::string target = Start("app-plain");
  NewWait wait = Wait("hw", clock_.Now() + 1h);
  wait.expression = "async.data.id == 't-1'";
  wait.match_key = expr::IndexKey({"data", "id"}, "t-1");
  for (QueueItem& item : Claim()) {
    if (item.run_id != target) continue;
    Transition t;
    t.move = Transition::Continue{.waits = {wait}, .run_status = kWaiting};
    ASSERT_THAT(store_->Apply(item, t, clock_.Now()), IsOk());
  }
  clock_.Advance(1s);

  const auto ingest = [&](const Json& data, IngestWaits* found) {
    NewEvent e = Event("test/approved");
    e.event.payload["data"] = data;
    EXPECT_THAT(store_->IngestEvents({e}, clock_.Now(), found), IsOk());
    return e.event.internal_id;
  };
  IngestWaits found;
  const std::string meets = ingest({{"id", "t-1"}, {"more", "x"}}, &found);
  const auto keyed = [](const std::vector<WaitRecord>& waits) {
    std::vector<std::string> out;
    for (const WaitRecord& w : waits) {
      if (w.match_key) out.push_back(w.run_id + "/" + w.step_id + "=" + *w.match_key);
    }
    return out;
  };
  EXPECT_THAT(keyed(found.open), ::testing::ElementsAre(target + "/hw=" + *wait.match_key));
  EXPECT_EQ(found.open.size(), static_cast<size_t>(kIngestWaits) + 1)
      << "the oldest 10,000 without a key, and the one with the event's key";
  EXPECT_EQ(found.pending, std::set<std::string>{meets});
  EXPECT_FALSE(found.complete) << "10,000 waits without a key read: there may be more";

  IngestWaits none;
  const std::string misses = ingest({{"id", "t-2"}}, &none);
  EXPECT_THAT(keyed(none.open), ::testing::IsEmpty());
  EXPECT_EQ(none.pending, std::set<std::string>{misses}) << "recorded, to be acknowledged";

  IngestWaits other;
  NewEvent unwaited = Event("test/other");
  unwaited.event.payload["data"] = {{"id", "t-1"}};
  ASSERT_THAT(store_->IngestEvents({unwaited}, clock_.Now(), &other), IsOk());
  EXPECT_TRUE(other.open.empty()) << "the key is another name's";
  EXPECT_TRUE(other.pending.empty());
  EXPECT_TRUE(other.complete);

  // An event with more keys than are looked for: the waits with keys of its name are read
  // as those without, the oldest 10,000 (the target is past them).
  NewEvent wide = Event("test/approved");
  wide.event.payload["data"] = {{"id", "t-1"}};
  for (size_t i = 0; i < expr::kMaxIndexKeys; ++i) {
    wide.event.payload["data"]["a" + std::to_string(i)] = i;  // before "id"
  }
  IngestWaits by_name;
  ASSERT_THAT(store_->IngestEvents({wide}, clock_.Now(), &by_name), IsOk());
  EXPECT_EQ(keyed(by_name.open).size(), static_cast<size_t>(kIngestWaits));
  EXPECT_FALSE(by_name.complete);
  NewEvent wide_other = Event("test/other");
  wide_other.event.payload["data"] = wide.event.payload["data"];
  ASSERT_THAT(store_->IngestEvents({wide_other}, clock_.Now(), &by_name), IsOk());
  EXPECT_TRUE(by_name.open.empty());
  EXPECT_TRUE(by_name.complete) << "no wait of its name";
}

TEST_P(StoreConformance, AnEndFindsItsInvokeWaitPastTenThousandOthers) {
  const std::string fillers = Start("app-plain");
  AddFillerWaits(fillers, 10000, "inngest/function.finished",
                 "async.data.correlation_id == \"other\"", "invoke", /*every_other_keyed=*/false);
  clock_.Advance(1s);
  const std::string invoker = Start("app-plain");
  NewWait wait;
  wait.step_id = "call";
  wait.name = "call";
  wait.event_name = "inngest/function.finished";
  wait.expression = InvokeWaitExpression(invoker + ".call");
  wait.kind = kWaitInvoke;
  wait.expires_at = clock_.Now() + 1h;
  NewWait plain = wait;
  plain.step_id = "plain";
  plain.expression = "async.data.n == 1";
  plain.kind = kWaitEvent;
  for (QueueItem& item : Claim()) {
    if (item.run_id != invoker) continue;
    Transition t;
    t.move = Transition::Continue{.waits = {wait, plain}, .run_status = kWaiting};
    ASSERT_THAT(store_->Apply(item, t, clock_.Now()), IsOk());
  }
  NewEvent end = Event("inngest/function.finished");
  end.event.payload["data"] = {{"correlation_id", invoker + ".call"}, {"n", 1}};
  IngestWaits found;
  ASSERT_THAT(store_->IngestEvents({end}, clock_.Now(), &found), IsOk());
  const std::vector<WaitRecord>& waits = found.open;
  std::set<std::string> seen;
  for (const WaitRecord& w : waits) {
    if (w.run_id != invoker) continue;
    seen.insert(w.step_id);
    EXPECT_TRUE(w.trigger.is_null()) << w.step_id << ": its if never looks at the run's event";
  }
  EXPECT_EQ(seen, (std::set<std::string>{"call", "plain"}));
  EXPECT_LT(waits.size(), 100u) << "the other invoke waits are not read";
}

// The migration lane_history deletes the outcomes of the events retention deleted before it,
// which retention no longer looks for (it deletes an event's outcomes with the event, by its
// id); the outcomes of kept events stay.
TEST_P(StoreConformance, TheLaneHistoryMigrationDeletesTheOutcomesOfEventsDeletedBefore) {
  Send("t", 1, kFromOne);
  const std::string kept = Send("t", 1, kFromOne);  // a duplicate
  ASSERT_EQ(store_->LaneOutcomesOf(kept)->size(), 1u);
  const std::string deleted = NewUlid(UnixMillis(clock_.Now()));
  ASSERT_THAT(db_->Transact([&](sql::Tx& tx) {
    tx.Exec(
        "INSERT INTO lane_outcomes (event_id, function_id, key, number, outcome, run_id, "
        "recorded_at_ms) VALUES ($1, 'app-ordered', 't', 0, $2, NULL, $3)",
        {deleted, kStale, UnixMillis(clock_.Now())});
    tx.Exec("DELETE FROM schema_migrations WHERE name LIKE '%_lane_history'");
    return Status::Ok();
  }),
              IsOk());
  ASSERT_EQ(store_->LaneOutcomesOf(deleted)->size(), 1u);
  ASSERT_THAT(store_->Migrate(), IsOk());
  EXPECT_TRUE(store_->LaneOutcomesOf(deleted)->empty());
  EXPECT_EQ(store_->LaneOutcomesOf(kept)->size(), 1u);
}

// A run cancelled while it waited in a sequence lane keeps its number used up through
// retention until the lane gets there: the lane steps past it without a gap, and the number
// sent again is a duplicate naming it. (Retention deleted it with the other old runs: the lane
// then waited gap_timeout for that number, and the number sent again ran.)
TEST_P(StoreConformance, RetentionKeepsACancelledRunWhoseNumberItsLaneHasNotReached) {
  auto expire = [&] {
    for (int pass = 0; pass < 10; ++pass) {
      auto n = store_->DeleteExpired(clock_.Now() - 30min, 500);
      ASSERT_THAT(n, IsOk());
      if (*n == 0) break;
    }
  };
  auto ack_ends = [&] {
    auto ends = store_->PendingRunEnds(0, 100);
    ASSERT_THAT(ends, IsOk());
    ASSERT_THAT(store_->AckRunEnds(*ends), IsOk());
  };
  Send("t", 1, kFromOne);
  std::vector<QueueItem> items;
  ASSERT_EQ(ClaimedNumbers(&items), std::vector<int64_t>{1});
  const std::string one = items[0].run_id;
  const std::string two_event = Send("t", 2, kFromOne);
  auto runs = store_->ListRuns({.event_id = two_event});
  ASSERT_THAT(runs, IsOk());
  ASSERT_EQ(runs->size(), 1u);
  const std::string two = (*runs)[0].id;
  ASSERT_THAT(store_->CancelRun(two, {{"name", "Cancelled"}}, clock_.Now()), IsOk());
  ASSERT_THAT(End(items[0]), IsOk());  // the lane, idle, expects 2 next
  ack_ends();
  clock_.Advance(1h);
  expire();
  EXPECT_EQ(store_->GetRun(one).status().code(), StatusCode::kNotFound) << "the lane is past 1";
  EXPECT_EQ(RunStatus(two), kCancelled) << "the lane is not past 2";

  const std::string two_again = Send("t", 2, kFromOne);
  auto outcomes = store_->LaneOutcomesOf(two_again);
  ASSERT_THAT(outcomes, IsOk());
  ASSERT_EQ(outcomes->size(), 1u);
  EXPECT_EQ((*outcomes)[0].outcome, kDuplicate);
  EXPECT_EQ((*outcomes)[0].run_id, two);
  Send("t", 3, kFromOne);
  ASSERT_EQ(ClaimedNumbers(&items), std::vector<int64_t>{3}) << "at once, past 2";
  ASSERT_THAT(End(items[0]), IsOk());
  EXPECT_TRUE(store_->ListLaneGaps("app-ordered", "t", 10)->empty());

  // Once the lane is past it, the cancelled run goes like any other.
  ack_ends();
  clock_.Advance(1h);
  expire();
  EXPECT_EQ(store_->GetRun(two).status().code(), StatusCode::kNotFound);
}

// A replay of an old event that retention is deleting waits for it and is kNotFound (the API's
// 404). (The replay checked the event without locking it: on PostgreSQL an event deleted
// between that check and the run's insert failed the insert on its foreign key, a 500.)
TEST_P(StoreConformance, AReplayOfAnEventRetentionIsDeletingIsNotFound) {
  const std::string event_id = EndedRunsEvent();
  clock_.Advance(1h);

  db_->pause_next_before_commit = true;
  Result<int64_t> expired = Unavailable("not run");
  std::thread retention([&] { expired = store_->DeleteExpired(clock_.Now() - 30min, 500); });
  while (!db_->paused) std::this_thread::sleep_for(1ms);
  NewRun replay{NewUlid(UnixMillis(clock_.Now())), "app-plain"};
  Status started = Unavailable("not run");
  std::thread start([&] { started = store_->StartRun(event_id, replay, clock_.Now()); });
  // The replay reaches the event's lock (PostgreSQL) or the database's (SQLite) meanwhile.
  std::this_thread::sleep_for(300ms);
  db_->Release();
  retention.join();
  start.join();
  ASSERT_THAT(expired, IsOk());
  EXPECT_EQ(*expired, 2) << "the run and its event";
  EXPECT_EQ(started.code(), StatusCode::kNotFound) << started.ToString();
  EXPECT_EQ(store_->GetRun(replay.run_id).status().code(), StatusCode::kNotFound);
  EXPECT_EQ(store_->GetEvent(event_id).status().code(), StatusCode::kNotFound);
}

// Retention passes over the event of a replay in progress, and the replay starts its run.
TEST_P(StoreConformance, RetentionPassesOverTheEventOfAReplayInProgress) {
  const std::string event_id = EndedRunsEvent();
  clock_.Advance(1h);

  db_->pause_next_before_commit = true;
  NewRun replay{NewUlid(UnixMillis(clock_.Now())), "app-plain"};
  Status started = Unavailable("not run");
  std::thread start([&] { started = store_->StartRun(event_id, replay, clock_.Now()); });
  while (!db_->paused) std::this_thread::sleep_for(1ms);
  Result<int64_t> expired = Unavailable("not run");
  std::thread retention([&] { expired = store_->DeleteExpired(clock_.Now() - 30min, 500); });
  // Retention passes the locked event (PostgreSQL) or waits for the database (SQLite).
  std::this_thread::sleep_for(300ms);
  db_->Release();
  start.join();
  retention.join();
  ASSERT_THAT(started, IsOk());
  ASSERT_THAT(expired, IsOk());
  EXPECT_EQ(*expired, 1) << "the old run, not its event";
  EXPECT_THAT(store_->GetEvent(event_id), IsOk());
  EXPECT_EQ(ClaimedRuns(), Runs{replay.run_id});
}

// Flow control at admission (coordinator/store/sql/flow_store.h): an event whose run a gate
// refuses is stored, starts no run of that function, and the skip is recorded with it.
class Gated {
 public:
  static NewRun Rate(const std::string& function_id, TimePoint now, const char* reason,
                     std::string key, int64_t limit, std::chrono::milliseconds period) {
    NewRun run{NewUlid(UnixMillis(now)), function_id};
    run.rate = RateGate{reason, std::move(key), limit, period};
    return run;
  }
  static NewRun Singleton(const std::string& function_id, TimePoint now, std::string key,
                          bool cancel) {
    NewRun run{NewUlid(UnixMillis(now)), function_id};
    run.singleton = SingletonGate{std::move(key), cancel};
    return run;
  }
};

TEST_P(StoreConformance, IdempotencyStartsOneRunPerKeyFor24HoursAndRecordsTheSkips) {
  auto ingest = [&](std::vector<NewEvent> events) {
    auto r = store_->IngestEvents(events, clock_.Now(), nullptr);
    EXPECT_THAT(r, IsOk());
    return r.ok() ? *r : std::vector<IngestedEvent>{};
  };
  auto idem = [&](const std::string& key) {
    NewEvent ne = Event("test/order");
    ne.runs.push_back(Gated::Rate("app-plain", clock_.Now(), kSkipIdempotency, key, 1, 24h));
    // Another function without a gate is started by every event.
    ne.runs.push_back(NewRun{NewUlid(UnixMillis(clock_.Now())), "app-limited"});
    return ne;
  };
  NewEvent first = idem("o-1");
  auto r1 = ingest({first});
  ASSERT_EQ(r1.size(), 1u);
  EXPECT_TRUE(r1[0].skipped.empty());
  // The same key, twice in one batch and once more later: no run of the gated function.
  clock_.Advance(1h);
  NewEvent again = idem("o-1"), again2 = idem("o-1"), other = idem("o-2");
  NewEvent lone = idem("o-1");
  lone.runs.pop_back();  // only the gated function: no run will refer to this event
  auto r2 = ingest({again, other, again2, lone});
  ASSERT_EQ(r2.size(), 4u);
  EXPECT_EQ(r2[0].skipped, Runs{"app-plain"});
  EXPECT_TRUE(r2[1].skipped.empty());
  EXPECT_EQ(r2[2].skipped, Runs{"app-plain"});
  EXPECT_EQ(r2[3].skipped, Runs{"app-plain"});
  EXPECT_THAT(store_->GetRun(again.runs[0].run_id), StatusIs(StatusCode::kNotFound));
  EXPECT_EQ(RunStatus(again.runs[1].run_id), kQueued);  // the ungated function ran
  EXPECT_EQ(RunStatus(other.runs[0].run_id), kQueued);
  EXPECT_EQ(RunStatus(first.runs[0].run_id), kQueued);
  // The skipped event is stored and says why.
  EXPECT_THAT(store_->GetEvent(again.event.internal_id), IsOk());
  auto skips = store_->EventSkips(again.event.internal_id);
  ASSERT_THAT(skips, IsOk());
  ASSERT_EQ(skips->size(), 1u);
  EXPECT_EQ((*skips)[0].function_id, "app-plain");
  EXPECT_EQ((*skips)[0].reason, kSkipIdempotency);
  EXPECT_EQ((*skips)[0].key, "o-1");
  EXPECT_EQ((*skips)[0].at_ms, UnixMillis(clock_.Now()));
  EXPECT_TRUE(store_->EventSkips(first.event.internal_id)->empty());
  // A duplicate event (same id) is neither a run nor a skip.
  NewEvent dup = again;
  dup.event.internal_id = NewUlid(UnixMillis(clock_.Now()));
  auto r3 = ingest({dup});
  ASSERT_EQ(r3.size(), 1u);
  EXPECT_TRUE(r3[0].duplicate);
  EXPECT_TRUE(r3[0].skipped.empty());
  // 24 h after the first run the key admits again; the next one within 24 h is skipped.
  clock_.Advance(23h);
  auto r4 = ingest({idem("o-1")});
  EXPECT_TRUE(r4[0].skipped.empty());
  auto r5 = ingest({idem("o-1")});
  EXPECT_EQ(r5[0].skipped, Runs{"app-plain"});
  // Retention deletes spent gates and old skipped events with their skips; a key whose
  // gate is still holding stays held.
  clock_.Advance(1h);
  EXPECT_THAT(store_->DeleteExpired(clock_.Now() - 30min, 500), IsOk());
  EXPECT_THAT(store_->GetEvent(lone.event.internal_id), StatusIs(StatusCode::kNotFound));
  EXPECT_TRUE(store_->EventSkips(lone.event.internal_id)->empty());
  EXPECT_EQ(store_->EventSkips(again.event.internal_id)->size(), 1u);  // its event is kept
  EXPECT_EQ(ingest({idem("o-1")})[0].skipped, Runs{"app-plain"});
  EXPECT_TRUE(ingest({idem("o-2")})[0].skipped.empty());  // o-2's day is over
}

TEST_P(StoreConformance, RateLimitAdmitsItsLimitPerPeriodPerKeyAndRecovers) {
  auto send = [&](const std::string& key) {
    NewEvent ne = Event("test/hit");
    ne.runs.push_back(Gated::Rate("app-plain", clock_.Now(), kSkipRateLimit, key, 2, 10s));
    auto r = store_->IngestEvents({ne}, clock_.Now(), nullptr);
    EXPECT_THAT(r, IsOk());
    return r.ok() && (*r)[0].skipped.empty();
  };
  // A burst of `limit`, then nothing until an interval (period / limit) has passed.
  EXPECT_TRUE(send("a"));
  EXPECT_TRUE(send("a"));
  EXPECT_FALSE(send("a"));
  EXPECT_TRUE(send("b"));  // keys are counted apart
  clock_.Advance(4999ms);
  EXPECT_FALSE(send("a"));
  clock_.Advance(1ms);
  EXPECT_TRUE(send("a"));
  EXPECT_FALSE(send("a"));
  // A quiet full period restores the whole burst, and no more.
  clock_.Advance(10s);
  EXPECT_TRUE(send("a"));
  EXPECT_TRUE(send("a"));
  EXPECT_FALSE(send("a"));
  RunFilter filter;
  filter.function_id = "app-plain";
  EXPECT_EQ(store_->ListRuns(filter)->size(), 6u);
  auto skipped = store_->ListEvents({});
  ASSERT_THAT(skipped, IsOk());
  EXPECT_EQ(skipped->size(), 10u);  // every event is stored
  int skips = 0;
  for (const EventRecord& e : *skipped) {
    auto event_skips = store_->EventSkips(e.internal_id);
    ASSERT_THAT(event_skips, IsOk());
    for (const EventSkip& s : *event_skips) {
      EXPECT_EQ(s.reason, kSkipRateLimit);
      EXPECT_EQ(s.key, "a");
      ++skips;
    }
  }
  EXPECT_EQ(skips, 4);
}

TEST_P(StoreConformance, RacingIngestsOfOneIdempotencyKeyStartExactlyOneRun) {
  constexpr int kThreads = 8;
  std::vector<NewEvent> events;
  for (int i = 0; i < kThreads; ++i) {
    NewEvent ne = Event("test/race");
    ne.runs.push_back(Gated::Rate("app-plain", clock_.Now(), kSkipIdempotency, "k", 1, 24h));
    events.push_back(std::move(ne));
  }
  std::atomic<int> admitted = 0, failed = 0;
  std::vector<std::thread> threads;
  for (int i = 0; i < kThreads; ++i) {
    threads.emplace_back([&, i] {
      for (int tries = 0; tries < 20; ++tries) {  // a deadlock victim may retry
        auto r = store_->IngestEvents({events[i]}, clock_.Now(), nullptr);
        if (!r.ok() && r.status().code() == StatusCode::kUnavailable) continue;
        if (!r.ok()) break;
        if ((*r)[0].skipped.empty()) ++admitted;
        return;
      }
      ++failed;
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(failed, 0);
  EXPECT_EQ(admitted, 1);
  RunFilter filter;
  filter.function_id = "app-plain";
  EXPECT_EQ(store_->ListRuns(filter)->size(), 1u);
}

TEST_P(StoreConformance, SingletonSkipAdmitsOneActiveRunPerKey) {
  auto send = [&](const std::string& key) {
    NewEvent ne = Event("test/single");
    ne.runs.push_back(Gated::Singleton("app-plain", clock_.Now(), key, /*cancel=*/false));
    auto r = store_->IngestEvents({ne}, clock_.Now(), nullptr);
    EXPECT_THAT(r, IsOk());
    if (r.ok() && !(*r)[0].skipped.empty()) {
      auto skips = store_->EventSkips(ne.event.internal_id);
      EXPECT_EQ((*skips)[0].reason, kSkipSingleton);
      EXPECT_EQ((*skips)[0].key, key);
      return std::string();
    }
    return ne.runs[0].run_id;
  };
  const std::string a1 = send("a");
  ASSERT_FALSE(a1.empty());
  EXPECT_EQ(send("a"), "");  // queued counts as active
  const std::string b1 = send("b");
  EXPECT_FALSE(b1.empty());
  auto items = Claim();
  ASSERT_EQ(items.size(), 2u);
  EXPECT_EQ(send("a"), "");  // running
  for (const QueueItem& item : items) {
    if (item.run_id == a1) {
      ASSERT_THAT(End(item), IsOk());
    }
  }
  // Once the run of the key ended, the key admits one new run again.
  const std::string a2 = send("a");
  EXPECT_FALSE(a2.empty());
  EXPECT_EQ(send("a"), "");
  // A cancelled run frees its key too.
  ASSERT_TRUE(*store_->CancelRun(a2, {{"name", "Cancelled"}}, clock_.Now()));
  EXPECT_FALSE(send("a").empty());
}

TEST_P(StoreConformance, SingletonCancelCancelsTheActiveRunOfTheKeyAndStartsTheNewOne) {
  auto send = [&](const std::string& key, std::vector<std::string>* cancelled) {
    NewEvent ne = Event("test/single");
    ne.runs.push_back(Gated::Singleton("app-plain", clock_.Now(), key, /*cancel=*/true));
    auto r = store_->IngestEvents({ne}, clock_.Now(), nullptr);
    EXPECT_THAT(r, IsOk());
    EXPECT_TRUE((*r)[0].skipped.empty());
    *cancelled = (*r)[0].cancelled;
    return ne.runs[0].run_id;
  };
  std::vector<std::string> cancelled;
  const std::string first = send("a", &cancelled);
  EXPECT_TRUE(cancelled.empty());
  auto items = Claim();
  ASSERT_EQ(items.size(), 1u);  // the first run's call is in flight
  const std::string b = send("b", &cancelled);
  EXPECT_TRUE(cancelled.empty());
  const std::string second = send("a", &cancelled);
  EXPECT_EQ(cancelled, Runs{first});
  EXPECT_EQ(RunStatus(first), kCancelled);
  EXPECT_EQ(RunStatus(b), kQueued);
  // Through the one cancel path: its call's outcome is dropped, and its end is in the run-end
  // outbox.
  EXPECT_TRUE(IsRunEndedMeanwhile(End(items[0])));
  auto ends = store_->PendingRunEnds(0, 10);
  ASSERT_THAT(ends, IsOk());
  EXPECT_EQ(*ends, Runs{first});
  auto run = store_->GetRun(first);
  EXPECT_THAT(run->error["message"].get<std::string>(), HasSubstr("singleton"));
  auto claimed = ClaimedRuns();
  std::sort(claimed.begin(), claimed.end());
  Runs expected{b, second};
  std::sort(expected.begin(), expected.end());
  EXPECT_EQ(claimed, expected);
  // A queued run is cancelled the same way.
  const std::string third = send("a", &cancelled);
  EXPECT_EQ(cancelled, Runs{second});
  EXPECT_EQ(RunStatus(third), kQueued);
}

// Singleton in a lane (sync requires singleton.key to be the lane key): the gate decides
// before the run joins its lane, so a skipped event takes no place in it.
std::string SendSingletonInLane(Store& store, NewEvent ne, const std::string& key, bool cancel,
                                TimePoint now, IngestedEvent* result) {
  NewRun run = Gated::Singleton("app-ordered", now, key, cancel);
  run.lane_key = key;
  ne.runs.push_back(run);
  auto r = store.IngestEvents({ne}, now, nullptr);
  EXPECT_THAT(r, IsOk());
  if (r.ok()) *result = (*r)[0];
  return run.run_id;
}

TEST_P(StoreConformance, SingletonSkipInALaneTakesNoLanePosition) {
  IngestedEvent got;
  const std::string head =
      SendSingletonInLane(*store_, Event("test/ordered"), "k", false, clock_.Now(), &got);
  EXPECT_TRUE(got.skipped.empty());
  auto items = Claim();
  ASSERT_EQ(items.size(), 1u);
  EXPECT_EQ(items[0].run_id, head);
  const std::string other =
      SendSingletonInLane(*store_, Event("test/ordered"), "j", false, clock_.Now(), &got);
  EXPECT_TRUE(got.skipped.empty());
  const std::string refused =
      SendSingletonInLane(*store_, Event("test/ordered"), "k", false, clock_.Now(), &got);
  EXPECT_EQ(got.skipped, std::vector<std::string>{"app-ordered"});
  EXPECT_EQ(store_->GetRun(refused).status().code(), StatusCode::kNotFound);
  auto lanes = store_->ListLanes({.function_id = "app-ordered"});
  ASSERT_THAT(lanes, IsOk());
  ASSERT_EQ(lanes->size(), 2u);
  for (const LaneRecord& lane : *lanes) {
    EXPECT_EQ(lane.depth, 1) << lane.key;  // the skipped event took no place behind the head
    EXPECT_EQ(lane.head_run_id, lane.key == "k" ? head : other);
  }
  ASSERT_THAT(End(items[0]), IsOk());
  // Once the key's run ended, a new event of the key starts a run, the lane's head.
  const std::string next =
      SendSingletonInLane(*store_, Event("test/ordered"), "k", false, clock_.Now(), &got);
  EXPECT_TRUE(got.skipped.empty());
  auto claimed = ClaimedRuns();
  std::sort(claimed.begin(), claimed.end());
  Runs expected{other, next};
  std::sort(expected.begin(), expected.end());
  EXPECT_EQ(claimed, expected);
}

TEST_P(StoreConformance, SingletonCancelInALaneCancelsTheHeadAndTheNewRunTakesTheLane) {
  IngestedEvent got;
  const std::string head =
      SendSingletonInLane(*store_, Event("test/ordered"), "k", true, clock_.Now(), &got);
  auto items = Claim();
  ASSERT_EQ(items.size(), 1u);  // the head's call is in flight
  const std::string other =
      SendSingletonInLane(*store_, Event("test/ordered"), "j", true, clock_.Now(), &got);
  EXPECT_TRUE(got.cancelled.empty());
  const std::string next =
      SendSingletonInLane(*store_, Event("test/ordered"), "k", true, clock_.Now(), &got);
  EXPECT_TRUE(got.skipped.empty());
  EXPECT_EQ(got.cancelled, Runs{head});
  EXPECT_EQ(RunStatus(head), kCancelled);
  EXPECT_TRUE(IsRunEndedMeanwhile(End(items[0])));
  auto ends = store_->PendingRunEnds(0, 10);
  ASSERT_THAT(ends, IsOk());
  EXPECT_EQ(*ends, Runs{head});
  auto lanes = store_->ListLanes({.function_id = "app-ordered"});
  ASSERT_THAT(lanes, IsOk());
  ASSERT_EQ(lanes->size(), 2u);
  for (const LaneRecord& lane : *lanes) {
    EXPECT_EQ(lane.depth, 1) << lane.key;
    EXPECT_EQ(lane.head_run_id, lane.key == "k" ? next : other);  // "j" untouched
  }
  auto claimed = ClaimedRuns();
  std::sort(claimed.begin(), claimed.end());
  Runs expected{other, next};
  std::sort(expected.begin(), expected.end());
  EXPECT_EQ(claimed, expected);
  EXPECT_EQ(RunStatus(other), kRunning);
}

// Cancelling the run behind a lane's head while the head ends: the end makes that run the
// head and queues its first call (which refers to the run's row), the cancel locks the run
// and then the lane. The cancel's lock lets rows that refer to the run be written
// (FOR NO KEY UPDATE), so neither waits on the other in a cycle (on PostgreSQL a deadlock
// would fail one of them as kUnavailable).
TEST_P(StoreConformance, CancellingTheRunBehindAnEndingHeadNeverDeadlocks) {
  for (int round = 0; round < 30; ++round) {
    const std::string key = "race-" + std::to_string(round);
    const std::string head = Start("app-ordered", key);
    const std::string next = Start("app-ordered", key);
    auto items = Claim();
    ASSERT_EQ(items.size(), 1u);
    ASSERT_EQ(items[0].run_id, head);
    Status ended = Unavailable("not run");
    Result<bool> cancelled = Unavailable("not run");
    std::thread end([&] { ended = End(items[0]); });
    std::thread cancel([&] {
      cancelled = store_->CancelRun(next, {{"name", "Cancelled"}}, clock_.Now());
    });
    end.join();
    cancel.join();
    ASSERT_THAT(ended, IsOk()) << round;
    ASSERT_THAT(cancelled, IsOk()) << round;
    EXPECT_TRUE(*cancelled) << round;
    EXPECT_EQ(RunStatus(head), kCompleted) << round;
    EXPECT_EQ(RunStatus(next), kCancelled) << round;
    // Whichever went first, the lane is left without work: the cancelled run's call, if the
    // end queued one, comes to nothing.
    for (const QueueItem& item : Claim()) EXPECT_TRUE(IsRunEndedMeanwhile(End(item)));
    EXPECT_TRUE(Claim().empty()) << round;
  }
}

// Two apps claim one function id at once: the second waits for the first's sync and is
// refused, and the function stays the first app's, with its config. (On PostgreSQL the second
// saw no owner before the first committed, and its upsert then overwrote the first app's
// config and step URL under the first app's id; its next sync, unchanged, never repaired it.)
TEST_P(StoreConformance, TwoAppsClaimingOneFunctionIdAtOnceSyncOneAfterTheOther) {
  auto claim = [&](const std::string& app) {
    AppSync sync;
    sync.app = {app, "http://127.0.0.1:1/" + app, "cpp", "", "sum-" + app, 0, 0};
    FunctionRecord fn = Fn("contested");
    fn.app_id = app;
    fn.config["steps"] = {{"step", {{"runtime", {{"url", "http://127.0.0.1:1/" + app}}}}}};
    sync.functions = {fn};
    return store_->SyncApp(sync);
  };
  db_->pause_next_before_commit = true;
  Result<SyncResult> first = Unavailable("not run");
  std::thread one([&] { first = claim("first"); });
  while (!db_->paused) std::this_thread::sleep_for(1ms);
  Result<SyncResult> second = Unavailable("not run");
  std::thread two([&] { second = claim("second"); });
  std::this_thread::sleep_for(300ms);  // the second reaches the function's lock meanwhile
  db_->Release();
  one.join();
  two.join();
  ASSERT_THAT(first, IsOk());
  EXPECT_EQ(second.status().code(), StatusCode::kFailedPrecondition) << second.status().ToString();
  auto fn = store_->GetFunction("contested");
  ASSERT_THAT(fn, IsOk());
  EXPECT_EQ(fn->app_id, "first");
  EXPECT_EQ(fn->config["steps"]["step"]["runtime"]["url"], "http://127.0.0.1:1/first");
}

// The run behind an ending head is cancelled while the end, which makes it the head, has not
// committed: the cancel waits for the end and then moves the lane on from it. (On PostgreSQL
// the cancel's read of the lane passed over the row its snapshot showed with the old head; it
// took its run for one behind the head, and the lane's head stayed a cancelled run for good:
// the run behind it never started, and skip-head refused a head that had ended.)
TEST_P(StoreConformance, ARunCancelledAsItBecomesTheHeadMovesTheLaneOn) {
  const std::string key = "cancel-as-head";
  const std::string head = Start("app-ordered", key);
  const std::string next = Start("app-ordered", key);
  const std::string third = Start("app-ordered", key);
  auto items = Claim();
  ASSERT_EQ(items.size(), 1u);
  ASSERT_EQ(items[0].run_id, head);
  db_->pause_next_before_commit = true;
  Status ended = Unavailable("not run");
  std::thread end([&] { ended = End(items[0]); });
  while (!db_->paused) std::this_thread::sleep_for(1ms);
  Result<bool> cancelled = Unavailable("not run");
  std::thread cancel([&] {
    cancelled = store_->CancelRun(next, {{"name", "Cancelled"}}, clock_.Now());
  });
  // The cancel reaches the lane's lock (PostgreSQL) or the database's (SQLite) meanwhile.
  std::this_thread::sleep_for(300ms);
  db_->Release();
  end.join();
  cancel.join();
  ASSERT_THAT(ended, IsOk());
  ASSERT_THAT(cancelled, IsOk());
  EXPECT_TRUE(*cancelled);
  EXPECT_EQ(RunStatus(head), kCompleted);
  EXPECT_EQ(RunStatus(next), kCancelled);
  // The third run is the head: its first call is due, and nothing of the cancelled run's.
  std::vector<std::string> claimed;
  for (const QueueItem& item : Claim()) claimed.push_back(item.run_id);
  EXPECT_EQ(claimed, std::vector<std::string>{third});
}

// Every transaction locks the lanes it locks in one order, so no two wait on each other's
// lanes in a cycle: an ingest of events in several lanes takes a transaction of its own and
// locks them in key order, and a group of ends locks their lanes in that order too, whatever
// the order of their runs. The ends and the ingest are made to queue while the database holds
// another transaction, so they would share the next group. (Before, that group locked the
// ingest's lanes, then the ends' in their runs' order: b, y, z, a; PostgreSQL broke the
// deadlocks this made with concurrent transactions after a second's wait.)
TEST_P(StoreConformance, EveryTransactionLocksItsLanesInOneOrder) {
  const std::string head_z = Start("app-plain", "z");  // the older run, in the later lane
  clock_.Advance(1ms);                                 // (run ids order by creation time)
  const std::string head_a = Start("app-plain", "a");
  ASSERT_LT(head_z, head_a);
  auto heads = Claim();
  ASSERT_EQ(heads.size(), 2u);
  if (heads[0].run_id != head_z) std::swap(heads[0], heads[1]);
  auto end_of = [&](const QueueItem& item, const std::string& key) {
    Transition t;
    t.move = Transition::End{kCompleted, "done", nullptr};
    t.lane = {{"app-plain", key}};
    return store_->Apply(item, t, clock_.Now());
  };
  std::vector<NewEvent> events;
  for (const char* key : {"y", "b"}) {  // between the ends' lanes
    NewEvent ne = Event("test/e");
    ne.runs.push_back(NewRun{NewUlid(UnixMillis(clock_.Now())), "app-plain", std::string(key)});
    events.push_back(std::move(ne));
  }

  db_->record_lanes = true;
  db_->hold_next = true;
  std::thread holder([&] { EXPECT_THAT(store_->LoadRunState(head_a), IsOk()); });
  while (!db_->held) std::this_thread::sleep_for(1ms);
  Status ended_z, ended_a;
  Result<std::vector<IngestedEvent>> ingested = Unavailable("not run");
  std::thread z([&] { ended_z = end_of(heads[0], "z"); });
  std::thread a([&] { ended_a = end_of(heads[1], "a"); });
  std::thread ingest([&] { ingested = store_->IngestEvents(events, clock_.Now(), nullptr); });
  std::this_thread::sleep_for(300ms);  // all three wait for the held transaction's group
  db_->Release();
  for (std::thread* t : {&holder, &z, &a, &ingest}) t->join();
  ASSERT_THAT(ended_z, IsOk());
  ASSERT_THAT(ended_a, IsOk());
  ASSERT_THAT(ingested, IsOk());

  int locks = 0;
  for (const std::vector<std::string>& lanes : db_->LanesLocked()) {
    EXPECT_TRUE(std::is_sorted(lanes.begin(), lanes.end()))
        << ::testing::PrintToString(lanes) << " locked in this order";
    locks += static_cast<int>(lanes.size());
  }
  EXPECT_EQ(locks, 4) << "the ingest's two lanes and the ends' two";
  EXPECT_EQ(RunStatus(head_z), kCompleted);
  EXPECT_EQ(RunStatus(head_a), kCompleted);
  EXPECT_EQ(ClaimedRuns().size(), 2u) << "the new runs head their new lanes";
}

// A head that ends hands its lane to the next run with one write of the lane's row (locked
// by a read first): the next head set and the ended head's place given up together; the
// lane's last run's end deletes the row, also in one write.
TEST_P(StoreConformance, AHeadsEndHandsItsLaneOnInOneWriteOfTheLanesRow) {
  const std::string head = Start("app-plain", "k");
  clock_.Advance(1ms);
  const std::string second = Start("app-plain", "k");
  auto items = Claim();
  ASSERT_EQ(items.size(), 1u);
  ASSERT_EQ(items[0].run_id, head);
  db_->record_lanes = true;
  ASSERT_THAT(End(items[0]), IsOk());
  items = Claim();
  ASSERT_EQ(items.size(), 1u) << "the next run heads the lane";
  EXPECT_EQ(items[0].run_id, second);
  ASSERT_THAT(End(items[0]), IsOk());
  db_->record_lanes = false;
  // The first end, the claim (which writes no lane) and the second end.
  EXPECT_EQ(db_->LaneWrites(), (std::vector<int>{1, 0, 1}));

  Start("app-plain", "k");  // the lane was deleted: a new run heads it at once
  EXPECT_EQ(Claim().size(), 1u);
}

// An ingest of events into many lanes writes their rows in a few statements, not a few a
// lane: one locks (creating them) up to 64 lanes, one gives up to 64 lanes their new runs'
// places and heads, and lanes their runs joined need no look for emptiness. 100 events in
// 100 new lanes: two statements of each (64 and 36 lanes), where one a lane each made 300
// writes. Each lane is whole: its run heads it, and a second run of a key waits behind it.
TEST_P(StoreConformance, AnIngestIntoManyLanesWritesThemInAFewStatements) {
  std::vector<NewEvent> events;
  for (int i = 0; i < 100; ++i) {
    NewEvent ne = Event("test/e");
    ne.runs.push_back(
        NewRun{NewUlid(UnixMillis(clock_.Now())), "app-plain", "k" + std::to_string(i)});
    events.push_back(std::move(ne));
  }
  db_->record_lanes = true;
  ASSERT_THAT(store_->IngestEvents(events, clock_.Now(), nullptr), IsOk());
  db_->record_lanes = false;
  EXPECT_EQ(db_->LaneWrites(), (std::vector<int>{4}));
  for (const std::vector<std::string>& lanes : db_->LanesLocked()) {
    EXPECT_EQ(lanes.size(), 100u);
    EXPECT_TRUE(std::is_sorted(lanes.begin(), lanes.end()));
  }

  const std::string behind = Start("app-plain", "k7");
  const std::vector<QueueItem> heads = Claim();
  ASSERT_EQ(heads.size(), 100u) << "each new lane's run heads it";
  for (const QueueItem& head : heads) EXPECT_NE(head.run_id, behind);
  for (const QueueItem& head : heads) ASSERT_THAT(End(head), IsOk());
  const std::vector<QueueItem> next = Claim();
  ASSERT_EQ(next.size(), 1u);
  EXPECT_EQ(next[0].run_id, behind) << "k7's second run, once its first ended";
}

// A singleton cancel in a lane racing the head's own end: the ingest locks the head's rows
// before the lane, as Apply does, so neither waits on the other in a cycle (on PostgreSQL a
// deadlock would fail one of them as kUnavailable).
TEST_P(StoreConformance, SingletonCancelInALaneRacingTheHeadsEndNeverDeadlocks) {
  for (int round = 0; round < 20; ++round) {
    const std::string key = "race-" + std::to_string(round);
    IngestedEvent got;
    const std::string head =
        SendSingletonInLane(*store_, Event("test/ordered"), key, true, clock_.Now(), &got);
    auto items = Claim();
    ASSERT_EQ(items.size(), 1u);
    Status ended = Unavailable("not run");
    std::string next;
    std::thread end([&] { ended = End(items[0]); });
    std::thread cancel([&] {
      next = SendSingletonInLane(*store_, Event("test/ordered"), key, true, clock_.Now(), &got);
    });
    end.join();
    cancel.join();
    // The end first (completed, the new run starts alone) or the cancel first (the end finds
    // its run ended, and the lane waited for it); never a failure of either.
    EXPECT_TRUE(ended.ok() || IsRunEndedMeanwhile(ended)) << ended.ToString();
    EXPECT_EQ(RunStatus(head), ended.ok() ? kCompleted : kCancelled) << round;
    auto claimed = ClaimedRuns();
    EXPECT_EQ(claimed, Runs{next}) << round;
    for (const QueueItem& item : Claim()) EXPECT_THAT(End(item), IsOk());
  }
}

// With a lane: an event a gate refuses takes no place in it, and a run cancelled by its
// timeouts while it waits leaves it through the one cancel path; the lane keeps its order.
TEST_P(StoreConformance, AdmissionGatesAndTimeoutsNeverReorderALane) {
  auto send = [&](const std::string& idempotency_key,
                  std::optional<std::chrono::milliseconds> start_timeout = std::nullopt) {
    NewEvent ne = Event("test/ordered");
    NewRun run =
        Gated::Rate("app-ordered", clock_.Now(), kSkipIdempotency, idempotency_key, 1, 24h);
    run.lane_key = "k";
    if (start_timeout) run.timeouts = RunTimeouts{start_timeout, std::nullopt};
    ne.runs.push_back(run);
    auto r = store_->IngestEvents({ne}, clock_.Now(), nullptr);
    EXPECT_THAT(r, IsOk());
    const bool skipped = r.ok() && !(*r)[0].skipped.empty();
    return skipped ? std::string() : run.run_id;
  };
  const std::string r1 = send("a");
  EXPECT_EQ(send("a"), "") << "refused: takes no place in the lane";
  const std::string r3 = send("b");
  const std::string r4 = send("c", 5s);
  const std::string r5 = send("d");
  auto lanes = store_->ListLanes({.function_id = "app-ordered"});
  ASSERT_THAT(lanes, IsOk());
  ASSERT_EQ(lanes->size(), 1u);
  EXPECT_EQ((*lanes)[0].depth, 4) << "the refused event is not counted";

  std::vector<std::string> started;
  auto claim_one = [&] {
    auto items = Claim();
    EXPECT_EQ(items.size(), 1u);
    if (items.size() != 1) return;
    started.push_back(items[0].run_id);
    EXPECT_THAT(End(items[0]), IsOk());
  };
  claim_one();  // r1
  claim_one();  // r3, the next place
  clock_.Advance(5s);
  auto cancelled = store_->CancelTimedOutRuns(clock_.Now(), 10);
  ASSERT_THAT(cancelled, IsOk());
  EXPECT_EQ(*cancelled, std::vector<std::string>{r4}) << "never started within 5 s";
  claim_one();  // r5: r4 left the lane cancelled
  EXPECT_EQ(started, (std::vector<std::string>{r1, r3, r5}));
  EXPECT_TRUE(Claim().empty());
  EXPECT_EQ(RunStatus(r4), kCancelled);
}

// DueSweeps says a sweep has work whenever the sweep's own read would find some (the look-back
// and gap cases are in their tests above): an idle coordinator asks it alone.
TEST_P(StoreConformance, DueSweepsSaysWhenTimeoutsAndRunEndsHaveWork) {
  const int64_t t0 = UnixMillis(clock_.Now());
  const SweepsDue idle = Due(t0 + 1);
  EXPECT_FALSE(idle.lookbacks || idle.lane_gaps || idle.timeouts || idle.run_ends);

  NewEvent ne = Event("test/deadline");
  NewRun run{NewUlid(t0), "app-plain"};
  run.timeouts = RunTimeouts{std::nullopt, 5s};  // finish within 5 s of its start
  ne.runs.push_back(run);
  ASSERT_THAT(store_->IngestEvents({ne}, clock_.Now(), nullptr), IsOk());
  auto items = Claim();
  ASSERT_EQ(items.size(), 1u);
  clock_.Advance(4999ms);
  EXPECT_FALSE(Due(t0).timeouts);
  clock_.Advance(1ms);
  EXPECT_TRUE(Due(t0).timeouts) << "past its finish deadline";

  // It completes before a sweep got to it: its end is pending, and its deadline is gone with
  // it (nothing for the timeouts sweep to forget).
  ASSERT_THAT(End(items[0]), IsOk());
  const int64_t ended = UnixMillis(clock_.Now());
  EXPECT_FALSE(Due(t0).timeouts) << "an ended run is past no deadline";
  EXPECT_TRUE(Due(t0, 0).run_ends);
  EXPECT_FALSE(Due(t0, ended).run_ends) << "ended at the bound, not before";
  EXPECT_TRUE(Due(t0, ended + 1).run_ends);
  EXPECT_EQ(*store_->CancelTimedOutRuns(clock_.Now(), 10), Runs{});
  ASSERT_THAT(store_->AckRunEnds({run.run_id}), IsOk());
  EXPECT_FALSE(Due(t0, 0).run_ends);
}

// Deadlines recorded before they were kept in the runs' rows (the table run_timeouts) move
// into the rows of the runs that have not ended: the next one of each, as the sweep reads it.
TEST_P(StoreConformance, TheDeadlinesMigrationMovesTheActiveRunsDeadlinesIntoTheirRows) {
  auto start = [&](std::optional<std::chrono::milliseconds> s,
                   std::optional<std::chrono::milliseconds> f) {
    NewEvent ne = Event("test/deadline");
    NewRun run{NewUlid(UnixMillis(clock_.Now())), "app-plain"};
    run.timeouts = RunTimeouts{s, f};
    ne.runs.push_back(run);
    EXPECT_THAT(store_->IngestEvents({ne}, clock_.Now(), nullptr), IsOk());
    return run.run_id;
  };
  const std::string ended = start(std::nullopt, 5s);
  auto items = Claim();
  ASSERT_EQ(items.size(), 1u);
  ASSERT_THAT(End(items[0]), IsOk());
  const std::string running = start(10s, 5s);
  ASSERT_EQ(Claim().size(), 1u);
  const int64_t started_ms = UnixMillis(clock_.Now());
  clock_.Advance(1s);
  const std::string queued = start(10s, std::nullopt);
  const int64_t queued_ms = UnixMillis(clock_.Now());
  // The database as the version before kept it.
  ASSERT_THAT(db_->Transact([&](sql::Tx& tx) {
    tx.Exec("DROP INDEX runs_timeout");
    tx.Exec("ALTER TABLE runs DROP COLUMN timeout_at_ms");
    tx.Exec("ALTER TABLE runs DROP COLUMN finish_timeout_ms");
    tx.Exec(
        "CREATE TABLE run_timeouts (run_id text PRIMARY KEY REFERENCES runs (id) ON DELETE "
        "CASCADE, start_deadline_ms bigint, finish_timeout_ms bigint)");
    tx.Exec("INSERT INTO run_timeouts VALUES ($1, NULL, 5000), ($2, $3, 5000), ($4, $5, NULL)",
            {ended, running, started_ms + 10000, queued, queued_ms + 10000});
    tx.Exec("DELETE FROM schema_migrations WHERE name LIKE '%_run_deadlines'");
    return Status::Ok();
  }),
              IsOk());
  ASSERT_THAT(store_->Migrate(), IsOk());
  std::map<std::string, std::pair<std::optional<int64_t>, std::optional<int64_t>>> rows;
  ASSERT_THAT(db_->Transact([&](sql::Tx& tx) {
    for (sql::Row row :
         tx.Query("SELECT id, timeout_at_ms, finish_timeout_ms FROM runs WHERE id IN ($1, $2, $3)",
                  {ended, running, queued})) {
      rows[row.Text(0)] = {row.OptInt(1), row.OptInt(2)};
    }
    EXPECT_EQ(tx.Count("SELECT count(*) FROM runs WHERE timeout_at_ms IS NOT NULL"), 2);
    return Status::Ok();
  }),
              IsOk());
  ASSERT_EQ(rows.size(), 3u);
  using Deadlines = std::pair<std::optional<int64_t>, std::optional<int64_t>>;
  EXPECT_EQ(rows[running], Deadlines(started_ms + 5000, 5000)) << "started: its finish";
  EXPECT_EQ(rows[queued], Deadlines(queued_ms + 10000, std::nullopt)) << "not started: its start";
  EXPECT_EQ(rows[ended].first, std::nullopt) << "ended: none";
  clock_.Advance(4s - 1ms);
  EXPECT_EQ(*store_->CancelTimedOutRuns(clock_.Now(), 10), Runs{});
  clock_.Advance(1ms);
  EXPECT_EQ(*store_->CancelTimedOutRuns(clock_.Now(), 10), Runs{running});
  clock_.Advance(6s);
  EXPECT_EQ(*store_->CancelTimedOutRuns(clock_.Now(), 10), Runs{queued});
}

// A database a newer coordinator migrated: a migration this version does not know leaves it
// running unless it is marked as breaking earlier versions; then Migrate refuses, applying
// nothing, and CheckMigrations (a running coordinator's periodic check) says why. The
// deadlines' migration is marked, also when a version that did not mark it (or had no column
// for it) applied it.
TEST_P(StoreConformance, AMigrationThatBreaksEarlierVersionsStopsTheVersionsThatDoNotKnowIt) {
  const bool pg = GetParam().name == "postgres";
  const int known = db_->KnownMigration();
  ASSERT_GE(known, pg ? 36 : 33);
  auto exec = [&](const std::string& sql, sql::Params params = {}) {
    ASSERT_THAT(db_->Transact([&](sql::Tx& tx) {
      tx.Exec(sql, params);
      return Status::Ok();
    }),
                IsOk());
  };
  auto count = [&](const std::string& sql) {
    int64_t n = -1;
    EXPECT_THAT(db_->Transact([&](sql::Tx& tx) {
      n = tx.Count(sql);
      return Status::Ok();
    }),
                IsOk());
    return n;
  };
  const std::string deadlines_marked =
      "SELECT count(*) FROM schema_migrations WHERE breaks_earlier AND name LIKE "
      "'%_run_deadlines'";
  EXPECT_EQ(count(deadlines_marked), 1);
  EXPECT_EQ(count("SELECT count(*) FROM schema_migrations WHERE breaks_earlier"), 1);
  exec("UPDATE schema_migrations SET breaks_earlier = (version < 0)");
  ASSERT_EQ(count(deadlines_marked), 0);
  ASSERT_THAT(store_->Migrate(), IsOk());
  EXPECT_EQ(count(deadlines_marked), 1) << "marked again";
  // As the versions before the column left the table.
  exec("ALTER TABLE schema_migrations DROP COLUMN breaks_earlier");
  ASSERT_THAT(store_->Migrate(), IsOk());
  EXPECT_EQ(count(deadlines_marked), 1) << "the column added, the migration marked";
  EXPECT_THAT(store_->CheckMigrations(), IsOk());

  const std::string add =
      pg ? "INSERT INTO schema_migrations (version, name, breaks_earlier) "
           "VALUES ($1, 'newer', $2 = 1)"
         : "INSERT INTO schema_migrations (version, name, applied_at_ms, breaks_earlier) "
           "VALUES ($1, 'newer', 0, $2 = 1)";
  exec(add, {known + 1, 0});
  EXPECT_THAT(store_->CheckMigrations(), IsOk()) << "a newer migration that breaks nothing";
  EXPECT_THAT(store_->Migrate(), IsOk());

  exec(add, {known + 2, 1});
  const std::string why = "at schema version " + std::to_string(known + 2) +
                          ", this funcky knows up to " + std::to_string(known) + ", and version " +
                          std::to_string(known + 2) + " changes what earlier versions read";
  EXPECT_THAT(store_->CheckMigrations(), StatusIs(StatusCode::kFailedPrecondition, HasSubstr(why)));
  // Had Migrate applied anything, it would apply the newest migration it knows again.
  exec("DELETE FROM schema_migrations WHERE version = " + std::to_string(known));
  EXPECT_THAT(store_->Migrate(), StatusIs(StatusCode::kFailedPrecondition, HasSubstr(why)));
  EXPECT_EQ(
      count("SELECT count(*) FROM schema_migrations WHERE version = " + std::to_string(known)), 0)
      << "nothing applied";
  exec("DELETE FROM schema_migrations WHERE version = " + std::to_string(known + 2));
  EXPECT_THAT(store_->CheckMigrations(), IsOk());
}

// timeouts.finish counts from the run's first start: a run that waits again (a retry, a
// sleep) and is claimed again keeps its deadline, and one that has not started is past none
// but its start's.
TEST_P(StoreConformance, TimeoutsFinishCountsFromTheFirstStartThroughRetries) {
  NewEvent ne = Event("test/deadline");
  NewRun run{NewUlid(UnixMillis(clock_.Now())), "app-plain"};
  run.timeouts = RunTimeouts{std::nullopt, 5s};
  ne.runs.push_back(run);
  ASSERT_THAT(store_->IngestEvents({ne}, clock_.Now(), nullptr), IsOk());
  clock_.Advance(1h);  // no start deadline: queued as long as it takes
  EXPECT_EQ(*store_->CancelTimedOutRuns(clock_.Now(), 10), Runs{});
  auto items = Claim();
  ASSERT_EQ(items.size(), 1u);
  Transition retry;
  retry.move = Transition::Retry{clock_.Now() + 1s};
  ASSERT_THAT(store_->Apply(items[0], retry, clock_.Now()), IsOk());
  clock_.Advance(2s);
  ASSERT_EQ(Claim().size(), 1u) << "the retry";
  clock_.Advance(3s - 1ms);
  EXPECT_EQ(*store_->CancelTimedOutRuns(clock_.Now(), 10), Runs{});
  clock_.Advance(1ms);
  EXPECT_EQ(*store_->CancelTimedOutRuns(clock_.Now(), 10), Runs{run.run_id})
      << "5 s after its first start, not after the retry's";
}

TEST_P(StoreConformance, TimeoutsCancelARunNotStartedOrNotFinishedInTime) {
  auto start = [&](const std::string& function_id, std::optional<std::chrono::milliseconds> s,
                   std::optional<std::chrono::milliseconds> f) {
    NewEvent ne = Event("test/deadline");
    NewRun run{NewUlid(UnixMillis(clock_.Now())), function_id};
    run.timeouts = RunTimeouts{s, f};
    ne.runs.push_back(run);
    EXPECT_THAT(store_->IngestEvents({ne}, clock_.Now(), nullptr), IsOk());
    return run.run_id;
  };
  auto sweep = [&] {
    auto r = store_->CancelTimedOutRuns(clock_.Now(), 100);
    EXPECT_THAT(r, IsOk());
    Runs out = r.ok() ? *r : Runs{};
    std::sort(out.begin(), out.end());
    return out;
  };
  // Behind a busy lane head, a run with start: 10s waits in the queue past it.
  NewEvent queued_event = Event("test/deadline");
  NewRun queued{NewUlid(UnixMillis(clock_.Now())), "app-ordered", "k"};
  queued.timeouts = RunTimeouts{10s, std::nullopt};
  NewEvent lane_head_event = Event("test/deadline");
  NewRun lane_head{NewUlid(UnixMillis(clock_.Now())), "app-ordered", "k"};
  lane_head_event.runs.push_back(lane_head);
  queued_event.runs.push_back(queued);
  ASSERT_THAT(store_->IngestEvents({lane_head_event, queued_event}, clock_.Now(), nullptr), IsOk());
  const std::string finishing = start("app-plain", std::nullopt, 5s);
  const std::string prompt = start("app-plain", 10s, std::nullopt);
  auto items = Claim();  // the lane head, `finishing` and `prompt` start now
  ASSERT_EQ(items.size(), 3u);
  clock_.Advance(4999ms);
  EXPECT_EQ(sweep(), Runs{});
  clock_.Advance(1ms);
  EXPECT_EQ(sweep(), Runs{finishing});  // 5 s after its start
  EXPECT_EQ(RunStatus(finishing), kCancelled);
  EXPECT_EQ(store_->GetRun(finishing)->error["name"], "Timeout");
  clock_.Advance(4999ms);
  EXPECT_EQ(sweep(), Runs{});
  clock_.Advance(1ms);
  EXPECT_EQ(sweep(), Runs{queued.run_id});  // never started within 10 s
  EXPECT_EQ(RunStatus(queued.run_id), kCancelled);
  EXPECT_EQ(RunStatus(prompt), kRunning);  // started in time; it has no finish deadline
  EXPECT_EQ(sweep(), Runs{});              // once each
  // Through the one cancel path: the call in flight records nothing, the ends are recorded.
  for (const QueueItem& item : items) {
    if (item.run_id == finishing) {
      EXPECT_TRUE(IsRunEndedMeanwhile(End(item)));
    }
  }
  auto ends = store_->PendingRunEnds(0, 10);
  ASSERT_THAT(ends, IsOk());
  Runs sorted_ends = *ends;
  std::sort(sorted_ends.begin(), sorted_ends.end());
  Runs expected{finishing, queued.run_id};
  std::sort(expected.begin(), expected.end());
  EXPECT_EQ(sorted_ends, expected);
}

// throttle (docs/flow-control.md "throttle"): no run is refused; each run's first call is
// due at its start slot, paced per key by GCRA.
NewRun Throttled(const std::string& function_id, TimePoint now, std::string key, int64_t limit,
                 std::chrono::milliseconds period, int64_t burst = 0,
                 std::optional<std::string> lane_key = std::nullopt) {
  NewRun run{NewUlid(UnixMillis(now)), function_id, std::move(lane_key)};
  run.throttle = ThrottleGate{std::move(key), limit, period, burst};
  return run;
}

TEST_P(StoreConformance, ThrottlePacesStartsPerKeyInFifoOrderAndDropsNone) {
  // limit 2 per 2 s: one start per second per key, the runs of a key in ingest order.
  Runs a, b;
  std::vector<NewEvent> batch;
  for (int i = 0; i < 5; ++i) {
    NewEvent ne = Event("test/paced");
    ne.runs.push_back(Throttled("app-plain", clock_.Now(), "a", 2, 2s));
    a.push_back(ne.runs.back().run_id);
    batch.push_back(std::move(ne));
  }
  ASSERT_THAT(store_->IngestEvents(batch, clock_.Now(), nullptr), IsOk());
  for (int i = 0; i < 2; ++i) {  // key b, ingested later: its own pace
    NewEvent ne = Event("test/paced");
    ne.runs.push_back(Throttled("app-plain", clock_.Now(), "b", 2, 2s));
    b.push_back(ne.runs.back().run_id);
    auto r = store_->IngestEvents({ne}, clock_.Now(), nullptr);
    ASSERT_THAT(r, IsOk());
    EXPECT_TRUE((*r)[0].skipped.empty());
  }
  RunFilter filter;
  filter.function_id = "app-plain";
  EXPECT_EQ(store_->ListRuns(filter)->size(), 7u);  // none dropped
  Runs first = ClaimedRuns();
  std::sort(first.begin(), first.end());
  Runs expected_first{a[0], b[0]};
  std::sort(expected_first.begin(), expected_first.end());
  EXPECT_EQ(first, expected_first);
  for (int i = 1; i < 5; ++i) {
    clock_.Advance(999ms);
    EXPECT_EQ(ClaimedRuns(), Runs{}) << "run " << i << " started before its slot";
    EXPECT_EQ(RunStatus(a[i]), kQueued);
    clock_.Advance(1ms);
    Runs expected{a[i]};
    if (i == 1) expected.push_back(b[1]);
    Runs claimed = ClaimedRuns();
    std::sort(claimed.begin(), claimed.end());
    std::sort(expected.begin(), expected.end());
    EXPECT_EQ(claimed, expected) << "second " << i;
  }
  EXPECT_EQ(ClaimedRuns(), Runs{});
  // A quiet key starts at once again.
  clock_.Advance(10s);
  NewEvent late = Event("test/paced");
  late.runs.push_back(Throttled("app-plain", clock_.Now(), "a", 2, 2s));
  ASSERT_THAT(store_->IngestEvents({late}, clock_.Now(), nullptr), IsOk());
  EXPECT_EQ(ClaimedRuns(), Runs{late.runs[0].run_id});
}

// A key's slots go at most 366 days ahead: one a week, the 60th run's would be 413 days out
// (about 12,000 such runs went past what a time point holds, 15 million past int64). Runs
// past the bound take its last slot; the claim still paces them.
TEST_P(StoreConformance, ThrottleSlotsGoNoFurtherThan366DaysAhead) {
  constexpr int kRuns = 60;
  for (int i = 0; i < kRuns; ++i) {
    NewEvent ne = Event("test/weekly");
    ne.runs.push_back(Throttled("app-plain", clock_.Now(), "", 1, std::chrono::days(7)));
    ASSERT_THAT(store_->IngestEvents({ne}, clock_.Now(), nullptr), IsOk());
  }
  auto stats = store_->GetQueueStats(clock_.Now() + std::chrono::days(364));
  ASSERT_THAT(stats, IsOk());
  EXPECT_EQ(stats->due, 53) << "one a week up to the bound";
  stats = store_->GetQueueStats(clock_.Now() + std::chrono::days(366));
  ASSERT_THAT(stats, IsOk());
  EXPECT_EQ(stats->due, kRuns) << "every slot within 366 days";
}

TEST_P(StoreConformance, ThrottleBurstStartsThatManyMoreAtOnceThenPaces) {
  // limit 1 per 1 s with burst 2: three at once, then one a second.
  Runs runs;
  for (int i = 0; i < 5; ++i) {
    NewEvent ne = Event("test/burst");
    ne.runs.push_back(Throttled("app-plain", clock_.Now(), "", 1, 1s, 2));
    runs.push_back(ne.runs.back().run_id);
    ASSERT_THAT(store_->IngestEvents({ne}, clock_.Now(), nullptr), IsOk());
  }
  Runs claimed = ClaimedRuns();
  std::sort(claimed.begin(), claimed.end());
  Runs burst{runs[0], runs[1], runs[2]};
  std::sort(burst.begin(), burst.end());
  EXPECT_EQ(claimed, burst);
  clock_.Advance(999ms);
  EXPECT_EQ(ClaimedRuns(), Runs{});
  clock_.Advance(1ms);
  EXPECT_EQ(ClaimedRuns(), Runs{runs[3]});
  clock_.Advance(1s);
  EXPECT_EQ(ClaimedRuns(), Runs{runs[4]});
}

TEST_P(StoreConformance, ThrottleInALaneKeepsTheLaneOrderAndEachRunsSlot) {
  // limit 1 per 1 s, one lane: a run that becomes head before its slot waits for it.
  Runs runs;
  for (int i = 0; i < 3; ++i) {
    NewEvent ne = Event("test/lane");
    ne.runs.push_back(Throttled("app-ordered", clock_.Now(), "", 1, 1s, 0, "k"));
    runs.push_back(ne.runs.back().run_id);
    ASSERT_THAT(store_->IngestEvents({ne}, clock_.Now(), nullptr), IsOk());
  }
  auto items = Claim();
  ASSERT_EQ(items.size(), 1u);
  EXPECT_EQ(items[0].run_id, runs[0]);
  ASSERT_THAT(End(items[0]), IsOk());  // runs[1] is head now; its slot is 1 s away
  EXPECT_EQ(ClaimedRuns(), Runs{});
  clock_.Advance(999ms);
  EXPECT_EQ(ClaimedRuns(), Runs{});
  clock_.Advance(1ms);
  items = Claim();
  ASSERT_EQ(items.size(), 1u);
  EXPECT_EQ(items[0].run_id, runs[1]);
  // runs[1] held the lane past runs[2]'s slot (2 s): runs[2] starts as soon as it is head.
  clock_.Advance(5s);
  EXPECT_EQ(ClaimedRuns(), Runs{});  // behind its head
  ASSERT_THAT(End(items[0]), IsOk());
  EXPECT_EQ(ClaimedRuns(), Runs{runs[2]});
}

TEST_P(StoreConformance, AStartTimeHoldsTheFirstCallUntilThenAlsoWhenTheRunBecomesHeadEarlier) {
  // A cron tick's jitter (NewRun::start_at_ms): run a at once, run b of the lane 3 s later.
  const int64_t now_ms = UnixMillis(clock_.Now());
  Runs runs;
  for (int64_t delay_ms : {0, 3000}) {
    NewEvent ne = Event("test/lane");
    NewRun run{NewUlid(now_ms), "app-ordered", "k"};
    run.start_at_ms = now_ms + delay_ms;
    runs.push_back(run.run_id);
    ne.runs.push_back(std::move(run));
    ASSERT_THAT(store_->IngestEvents({ne}, clock_.Now(), nullptr), IsOk());
  }
  auto items = Claim();
  ASSERT_EQ(items.size(), 1u);
  EXPECT_EQ(items[0].run_id, runs[0]);
  clock_.Advance(1s);
  ASSERT_THAT(End(items[0]), IsOk());  // runs[1] is head now; its start is 2 s away
  clock_.Advance(1999ms);
  EXPECT_EQ(ClaimedRuns(), Runs{});
  clock_.Advance(1ms);
  EXPECT_EQ(ClaimedRuns(), Runs{runs[1]});
}

// One ingest whose runs join a lane both plainly and with a start time (a cron tick's, say)
// places them all one way (CreateRun's, run by run), in the events' order; a plain lane of
// the same ingest takes the plain runs' way beside it. Each lane runs its runs in order.
TEST_P(StoreConformance, AnIngestOfPlainAndTimedRunsInOneLaneKeepsTheirOrder) {
  const int64_t now_ms = UnixMillis(clock_.Now());
  std::vector<NewEvent> events;
  Runs mixed, plain;
  for (int i = 0; i < 3; ++i) {
    NewEvent ne = Event("test/lane");
    NewRun run{NewUlid(now_ms), "app-ordered", "mixed"};
    if (i == 1) run.start_at_ms = now_ms;  // due now, yet not plain
    mixed.push_back(run.run_id);
    ne.runs.push_back(std::move(run));
    NewRun other{NewUlid(now_ms), "app-ordered", "plain"};
    plain.push_back(other.run_id);
    ne.runs.push_back(std::move(other));
    events.push_back(std::move(ne));
  }
  ASSERT_THAT(store_->IngestEvents(events, clock_.Now(), nullptr), IsOk());
  for (size_t i = 0; i < 3; ++i) {
    SCOPED_TRACE(i);
    auto items = Claim();
    ASSERT_EQ(items.size(), 2u) << "one head a lane";
    std::set<std::string> heads{items[0].run_id, items[1].run_id};
    EXPECT_EQ(heads, (std::set<std::string>{mixed[i], plain[i]}));
    for (const QueueItem& item : items) ASSERT_THAT(End(item), IsOk());
  }
  EXPECT_TRUE(Claim().empty());
  auto lanes = store_->ListLanes(LaneFilter{.function_id = "app-ordered"});
  ASSERT_THAT(lanes, IsOk());
  EXPECT_TRUE(lanes->empty()) << "both lanes removed with their last runs";
}

TEST_P(StoreConformance, ThrottledFirstCallsHeldPastTheirSlotsAreStillPacedWhenClaimed) {
  // limit 2 per 2 s, 4 runs; nobody claims for 10 s (every coordinator was down): their
  // slots have all passed, yet they start one a second, in order, none dropped.
  Runs runs;
  for (int i = 0; i < 4; ++i) {
    NewEvent ne = Event("test/late");
    ne.runs.push_back(Throttled("app-plain", clock_.Now(), "k", 2, 2s));
    runs.push_back(ne.runs.back().run_id);
    ASSERT_THAT(store_->IngestEvents({ne}, clock_.Now(), nullptr), IsOk());
  }
  clock_.Advance(10s);
  EXPECT_EQ(ClaimedRuns(), Runs{runs[0]});
  for (int i = 1; i < 4; ++i) {
    clock_.Advance(999ms);
    EXPECT_EQ(ClaimedRuns(), Runs{}) << "run " << i << " started too soon after the one before";
    EXPECT_EQ(RunStatus(runs[i]), kQueued);
    clock_.Advance(1ms);
    EXPECT_EQ(ClaimedRuns(), Runs{runs[i]}) << "run " << i;
  }
  // Later calls of a started run are not paced: a retry goes when it is due.
  auto items = store_->Claim(10, clock_.Now(), 30s);
  ASSERT_THAT(items, IsOk());
  EXPECT_TRUE(items->empty());
}
// Priority (docs/flow-control.md "priority"): a run's first call is claimed as if queued
// priority_s seconds earlier (or is due that much later when negative).
class PriorityTest : public StoreConformance {
 protected:
  // Ingests one event starting a run of `function_id`; returns the run id.
  std::string StartRun(const std::string& function_id, int64_t priority_s,
                       std::optional<std::string> lane_key = {}) {
    NewEvent ne = Event("test/priority");
    NewRun run{NewUlid(UnixMillis(clock_.Now())), function_id, std::move(lane_key)};
    run.priority_s = priority_s;
    ne.runs.push_back(run);
    EXPECT_THAT(store_->IngestEvents({ne}, clock_.Now(), nullptr), IsOk());
    return run.run_id;
  }
  // The run of the one item a claim of at most one item takes ("" for none).
  std::string ClaimOne() {
    auto items = Claim(1);
    return items.empty() ? "" : items[0].run_id;
  }
};

TEST_P(PriorityTest, APositivePriorityClaimsTheFirstCallAheadOfOlderWorkButNotItsRetry) {
  Runs plain;
  for (int i = 0; i < 3; ++i) {
    plain.push_back(StartRun("app-plain", 0));
    clock_.Advance(1s);
  }
  const std::string vip = StartRun("app-plain", 60);  // as if queued 60 s ago
  auto first = Claim(1);
  ASSERT_EQ(first.size(), 1u);
  EXPECT_EQ(first[0].run_id, vip);
  // Its retry is due in 1 s, after the plain runs were queued: it goes after them.
  ASSERT_THAT(Retry(first[0], 1s), IsOk());
  clock_.Advance(2s);
  EXPECT_EQ(ClaimOne(), plain[0]);
  EXPECT_EQ(ClaimOne(), plain[1]);
  EXPECT_EQ(ClaimOne(), plain[2]);
  EXPECT_EQ(ClaimOne(), vip);
  EXPECT_EQ(ClaimOne(), "");
}

TEST_P(PriorityTest, ANegativePriorityDelaysTheFirstCall) {
  const std::string late = StartRun("app-plain", -5);
  const std::string now = StartRun("app-plain", 0);
  EXPECT_EQ(ClaimedRuns(), Runs{now});
  clock_.Advance(4999ms);
  EXPECT_EQ(ClaimedRuns(), Runs{});
  EXPECT_EQ(RunStatus(late), kQueued);
  clock_.Advance(1ms);
  EXPECT_EQ(ClaimedRuns(), Runs{late});
}

TEST_P(PriorityTest, AnItemHeldBackByALimitKeepsItsPriorityOrder) {
  // concurrency 1: the first run takes the slot, the rest are held back at every claim.
  Runs plain;
  for (int i = 0; i < 4; ++i) {
    plain.push_back(StartRun("app-one", 0));
    clock_.Advance(100ms);
  }
  auto running = Claim();
  ASSERT_EQ(running.size(), 1u);
  EXPECT_EQ(running[0].run_id, plain[0]);
  clock_.Advance(1s);
  const std::string vip = StartRun("app-one", 30);
  for (int i = 0; i < 3; ++i) {  // every waiting item, vip too, is held back again
    clock_.Advance(1s);
    EXPECT_EQ(ClaimedRuns(), Runs{});
  }
  ASSERT_THAT(End(running[0]), IsOk());
  clock_.Advance(100ms);
  running = Claim();
  ASSERT_EQ(running.size(), 1u);
  EXPECT_EQ(running[0].run_id, vip) << "the high-priority run starts next";
  ASSERT_THAT(End(running[0]), IsOk());
  clock_.Advance(100ms);
  running = Claim();
  ASSERT_EQ(running.size(), 1u);
  EXPECT_EQ(running[0].run_id, plain[1]);
}

TEST_P(PriorityTest, ABoostedBacklogHeldBackByALimitDoesNotStarveOtherWork) {
  // app-one (concurrency 1) is busy; 40 boosted calls wait behind it, more than a claim of 5
  // takes. A plain run of another function, queued after them, is still reached within a
  // pass over them, though each held call comes back (after kHeldBackMs) ahead of it.
  auto running = Claim();
  ASSERT_TRUE(running.empty());
  StartRun("app-one", 0);
  ASSERT_EQ(Claim().size(), 1u);
  for (int i = 0; i < 40; ++i) StartRun("app-one", 600);
  clock_.Advance(10ms);
  const std::string other = StartRun("app-plain", 0);
  bool reached = false;
  for (int claim = 0; claim < 12 && !reached; ++claim) {
    clock_.Advance(60ms);
    for (const QueueItem& item : Claim(5)) reached = reached || item.run_id == other;
  }
  EXPECT_TRUE(reached) << "the plain run waited behind calls that could not run";
}

TEST_P(PriorityTest, PriorityNeverReordersALaneAndMovesOnlyTheHeadsFirstCall) {
  const std::string other = StartRun("app-plain", 0);
  clock_.Advance(1s);
  const std::string l1 = StartRun("app-ordered", 0, "k");
  const std::string l2 = StartRun("app-ordered", 0, "k");
  const std::string l3 = StartRun("app-ordered", 600, "k");  // later, highest priority
  EXPECT_EQ(ClaimOne(), other);
  auto head = Claim(1);
  ASSERT_EQ(head.size(), 1u);
  EXPECT_EQ(head[0].run_id, l1);
  ASSERT_THAT(End(head[0]), IsOk());
  head = Claim(1);
  ASSERT_EQ(head.size(), 1u);
  EXPECT_EQ(head[0].run_id, l2) << "a later run of the key never overtakes";
  // Work of another function queued while l2 holds the lane.
  const std::string queued = StartRun("app-plain", 0);
  clock_.Advance(1s);
  ASSERT_THAT(End(head[0]), IsOk());  // l3 becomes head: its first call takes its priority
  EXPECT_EQ(ClaimOne(), l3);
  EXPECT_EQ(ClaimOne(), queued);
}

TEST_P(PriorityTest, TwoKeyedLimitsAreEachEnforced) {
  // app-two-keys: at most 2 calls in flight per first key, 3 per second key.
  auto start = [&](const std::string& a, const std::string& b) {
    NewEvent ne = Event("test/keys");
    NewRun run{NewUlid(UnixMillis(clock_.Now())), "app-two-keys"};
    run.concurrency_key = a;
    run.concurrency_key2 = b;
    ne.runs.push_back(run);
    EXPECT_THAT(store_->IngestEvents({ne}, clock_.Now(), nullptr), IsOk());
    clock_.Advance(10ms);
    return run.run_id;
  };
  // "y" is a value of both keys: each key counts its own calls.
  const std::string r1 = start("a1", "x"), r2 = start("a1", "x"), r3 = start("a1", "x");
  const std::string r4 = start("a2", "x"), r5 = start("a2", "x"), r6 = start("y", "y");
  const std::string r7 = start("y", "y");
  auto sorted = [](Runs runs) {
    std::sort(runs.begin(), runs.end());
    return runs;
  };
  std::vector<QueueItem> items = Claim();
  Runs claimed;
  for (const QueueItem& item : items) claimed.push_back(item.run_id);
  // r3: a1 full (2); r5: x full (r1, r2, r4); r6 and r7 share "y" on both keys, 2 and 3 allow 2.
  EXPECT_EQ(sorted(claimed), sorted({r1, r2, r4, r6, r7}));
  clock_.Advance(1s);
  EXPECT_EQ(ClaimedRuns(), Runs{});
  auto item_of = [&](const std::string& run) {
    return *std::find_if(items.begin(), items.end(),
                         [&](const QueueItem& i) { return i.run_id == run; });
  };
  ASSERT_THAT(End(item_of(r1)), IsOk());  // frees one of a1 and one of x
  clock_.Advance(100ms);
  EXPECT_EQ(ClaimedRuns(), Runs{r3});  // r5 still waits: x is full again (r2, r3, r4)
  clock_.Advance(100ms);
  EXPECT_EQ(ClaimedRuns(), Runs{});
  ASSERT_THAT(End(item_of(r4)), IsOk());  // frees a2 and x
  clock_.Advance(100ms);
  EXPECT_EQ(ClaimedRuns(), Runs{r5});
}

INSTANTIATE_TEST_SUITE_P(Backends, PriorityTest,
                         ::testing::Values(Backend{"postgres", OpenPostgres},
                                           Backend{"sqlite", OpenSqlite}),
                         [](const auto& info) { return info.param.name; });

// Debounce (docs/flow-control.md "debounce"): one run per burst of events of a key, with
// the last event, its first call due `period` after the last (at most `timeout` after the
// first).
class DebounceTest : public StoreConformance {
 protected:
  struct Sent {
    std::string event_id;
    std::string run_id;  // of the NewRun sent (created only for a new debounce)
    IngestedEvent result;
  };
  Sent Send(const std::string& key, std::chrono::milliseconds period,
            std::optional<std::chrono::milliseconds> timeout = {}, std::optional<int64_t> ts = {},
            bool in_lane = false) {
    NewEvent ne = Event("test/debounce");
    const int64_t event_ts = ts.value_or(UnixMillis(clock_.Now()));
    ne.event.payload["ts"] = event_ts;
    // In a lane: app-ordered, whose lane key is the debounce key (as sync requires).
    NewRun run{NewUlid(UnixMillis(clock_.Now())), in_lane ? "app-ordered" : "app-plain"};
    if (in_lane) run.lane_key = key;
    run.debounce = DebounceGate{key, period, timeout, event_ts};
    ne.runs.push_back(run);
    auto r = store_->IngestEvents({ne}, clock_.Now(), nullptr);
    EXPECT_THAT(r, IsOk());
    return {ne.event.internal_id, run.run_id, r.ok() ? (*r)[0] : IngestedEvent{}};
  }
  size_t RunCount() {
    RunFilter filter;
    filter.function_id = "app-plain";
    auto runs = store_->ListRuns(filter);
    EXPECT_THAT(runs, IsOk());
    return runs.ok() ? runs->size() : 0;
  }
  std::vector<std::string> SkipReasons(const std::string& event_id) {
    std::vector<std::string> out;
    auto skips = store_->EventSkips(event_id);  // held: a loop over *temporary would dangle
    EXPECT_THAT(skips, IsOk());
    if (!skips.ok()) return out;
    for (const EventSkip& s : *skips) out.push_back(s.reason);
    return out;
  }
};

// timeouts.start of a debounced run counts from when its debounce is due, pushed by each event
// that joins it (as in Inngest, where the run is created then): with a period longer than
// `start`, the run is not cancelled before it could ever start.
TEST_P(DebounceTest, TimeoutsStartCountsFromWhenTheDebounceIsDue) {
  auto send = [&] {
    NewEvent ne = Event("test/debounce");
    ne.event.payload["ts"] = UnixMillis(clock_.Now());
    NewRun run{NewUlid(UnixMillis(clock_.Now())), "app-plain"};
    run.debounce = DebounceGate{"k", 60s, std::nullopt, UnixMillis(clock_.Now())};
    run.timeouts = RunTimeouts{30s, std::nullopt};
    ne.runs.push_back(run);
    EXPECT_THAT(store_->IngestEvents({ne}, clock_.Now(), nullptr), IsOk());
    return run.run_id;
  };
  auto cancelled = [&] {
    auto r = store_->CancelTimedOutRuns(clock_.Now(), 100);
    EXPECT_THAT(r, IsOk());
    return r.ok() ? *r : Runs{};
  };
  const std::string run = send();
  clock_.Advance(40s);  // past `start` after the first event, before the debounce is due
  EXPECT_TRUE(cancelled().empty());
  send();               // joins: due 60 s from now
  clock_.Advance(80s);  // past the first due time plus `start`, not the new one
  EXPECT_TRUE(cancelled().empty());
  EXPECT_EQ(RunStatus(run), kQueued);
  clock_.Advance(11s);  // the new due time plus `start`, had nothing claimed it
  EXPECT_EQ(cancelled(), Runs{run});
}

TEST_P(DebounceTest, InALaneARunWaitingBehindTheHeadTakesTheBurstAndStartsAtItsDueTime) {
  auto send = [&](const char* key) { return Send(key, 1s, std::nullopt, std::nullopt, true); };
  const Sent x1 = send("k");  // the lane's head, its first call due in 1 s
  EXPECT_TRUE(Claim().empty());
  clock_.Advance(1s);
  auto head = Claim();
  ASSERT_EQ(head.size(), 1u);
  EXPECT_EQ(head[0].run_id, x1.run_id);
  // x1's run started: x2 starts a new debounce, its run behind the head; x3 and x4 join it
  // there, each pushing its start back.
  const Sent x2 = send("k");
  EXPECT_TRUE(x2.result.debounced.empty());
  EXPECT_EQ(RunStatus(x2.run_id), kQueued);
  clock_.Advance(300ms);
  const Sent x3 = send("k");
  EXPECT_EQ(x3.result.debounced, std::vector<std::string>{"app-ordered"});
  clock_.Advance(300ms);
  const Sent x4 = send("k");
  EXPECT_EQ(x4.result.debounced, std::vector<std::string>{"app-ordered"});
  EXPECT_EQ(SkipReasons(x2.event_id), std::vector<std::string>{kSkipDebounce});
  EXPECT_EQ(SkipReasons(x3.event_id), std::vector<std::string>{kSkipDebounce});
  // The head ends before the burst's due time (x4 + 1 s): the run waits for it.
  clock_.Advance(100ms);
  ASSERT_THAT(End(head[0]), IsOk());
  clock_.Advance(899ms);
  EXPECT_EQ(ClaimedRuns(), Runs{});
  clock_.Advance(1ms);
  auto next = Claim();
  ASSERT_EQ(next.size(), 1u);
  EXPECT_EQ(next[0].run_id, x2.run_id);
  auto run = store_->GetRun(x2.run_id);
  ASSERT_THAT(run, IsOk());
  EXPECT_EQ(run->event_id, x4.event_id);  // the burst's last event
  // A burst that comes while the head runs past its due time starts when the head ends.
  const Sent y1 = send("k");
  clock_.Advance(5s);
  EXPECT_EQ(ClaimedRuns(), Runs{});  // behind its head
  ASSERT_THAT(End(next[0]), IsOk());
  EXPECT_EQ(ClaimedRuns(), Runs{y1.run_id});
}

TEST_P(DebounceTest, ALaterEventReplacesThePendingRunsEventAndPushesItsStartBack) {
  const Sent a1 = Send("a", 2s);
  EXPECT_TRUE(a1.result.debounced.empty());
  EXPECT_EQ(RunStatus(a1.run_id), kQueued);
  const Sent b1 = Send("b", 2s);  // another key: a debounce of its own
  clock_.Advance(1s);
  EXPECT_TRUE(Claim().empty());
  const Sent a2 = Send("a", 2s);
  EXPECT_EQ(a2.result.debounced, std::vector<std::string>{"app-plain"});
  EXPECT_TRUE(a2.result.skipped.empty());
  EXPECT_EQ(SkipReasons(a1.event_id), std::vector<std::string>{kSkipDebounce});
  clock_.Advance(1s);
  // b's period passed: only b is due; a was pushed to 3 s.
  EXPECT_EQ(ClaimedRuns(), Runs{b1.run_id});
  const Sent a3 = Send("a", 2s);
  EXPECT_EQ(a3.result.debounced, std::vector<std::string>{"app-plain"});
  EXPECT_EQ(SkipReasons(a2.event_id), std::vector<std::string>{kSkipDebounce});
  EXPECT_TRUE(SkipReasons(a3.event_id).empty());
  clock_.Advance(1999ms);
  EXPECT_TRUE(Claim().empty());
  clock_.Advance(1ms);
  EXPECT_EQ(ClaimedRuns(), Runs{a1.run_id});
  EXPECT_EQ(store_->GetRun(a1.run_id)->event_id, a3.event_id);
  auto state = store_->LoadRunState(a1.run_id);
  ASSERT_THAT(state, IsOk());
  ASSERT_EQ(state->events.size(), 1u);
  EXPECT_EQ(state->events[0]["ts"], UnixMillis(clock_.Now() - 2s));
  EXPECT_EQ(RunCount(), 2u);
}

// The pending run runs with the last event that joined it, so with that event's concurrency
// keys and priority, on the run and on its first call: kept from the first event, a run for
// user u2 was counted against u1's limit (a keyed limit passed for u2) and lost u2's priority.
TEST_P(DebounceTest, AJoiningEventsConcurrencyKeysAndPriorityAreTheRuns) {
  auto send = [&](const std::string& user, int64_t priority_s) {
    NewEvent ne = Event("test/debounce");
    ne.event.payload["ts"] = UnixMillis(clock_.Now());
    NewRun run{NewUlid(UnixMillis(clock_.Now())), "app-plain"};
    run.debounce = DebounceGate{"doc-1", 2s, std::nullopt, UnixMillis(clock_.Now())};
    run.concurrency_key = user;
    run.concurrency_key2 = user + "-team";
    run.priority_s = priority_s;
    ne.runs.push_back(run);
    EXPECT_THAT(store_->IngestEvents({ne}, clock_.Now(), nullptr), IsOk());
    return run.run_id;
  };
  const std::string pending = send("u1", 0);
  clock_.Advance(1s);
  send("u2", 60);
  EXPECT_EQ(store_->GetRun(pending)->concurrency_key, "u2");
  int64_t run_rows = -1, item_rows = -1;
  ASSERT_THAT(db_->Transact([&](sql::Tx& tx) {
    run_rows = tx.Count(
        "SELECT count(*) FROM runs WHERE id = $1 AND concurrency_key = 'u2' AND "
        "concurrency_key2 = 'u2-team' AND priority_s = 60",
        {pending});
    item_rows = tx.Count(
        "SELECT count(*) FROM queue WHERE run_id = $1 AND concurrency_key = 'u2' AND "
        "concurrency_key2 = 'u2-team' AND priority_ms = 60000",
        {pending});
    return Status::Ok();
  }),
              IsOk());
  EXPECT_EQ(run_rows, 1);
  EXPECT_EQ(item_rows, 1);
  // A join at a negative priority puts the first call off; the next, at 0, brings it back to
  // the debounce's time: the delay is the call's, not kept in the run's start slot.
  send("u3", -600);
  clock_.Advance(2s);
  EXPECT_TRUE(Claim().empty());
  send("u4", 0);
  clock_.Advance(2s);
  EXPECT_EQ(ClaimedRuns(), Runs{pending});
  EXPECT_EQ(store_->GetRun(pending)->concurrency_key, "u4");
}

TEST_P(DebounceTest, TimeoutCapsTheDelaySinceTheFirstEvent) {
  const Sent e1 = Send("k", 2s, 3s);
  clock_.Advance(1500ms);
  Send("k", 2s, 3s);  // due at min(3.5 s, 3 s)
  clock_.Advance(1000ms);
  const Sent e3 = Send("k", 2s, 3s);
  EXPECT_EQ(e3.result.debounced, std::vector<std::string>{"app-plain"});
  clock_.Advance(499ms);  // 2.999 s after the first event
  EXPECT_TRUE(Claim().empty());
  clock_.Advance(1ms);
  EXPECT_EQ(ClaimedRuns(), Runs{e1.run_id});
  EXPECT_EQ(store_->GetRun(e1.run_id)->event_id, e3.event_id);
  EXPECT_EQ(RunCount(), 1u);
}

TEST_P(DebounceTest, AnOlderEventDoesNotReplaceTheOneHeldAndIsRecordedAsSkipped) {
  const int64_t now = UnixMillis(clock_.Now());
  const Sent e1 = Send("k", 2s, {}, now);
  clock_.Advance(1s);
  const Sent late = Send("k", 2s, {}, now - 1);
  EXPECT_EQ(late.result.skipped, std::vector<std::string>{"app-plain"});
  EXPECT_TRUE(late.result.debounced.empty());
  EXPECT_EQ(SkipReasons(late.event_id), std::vector<std::string>{kSkipDebounce});
  EXPECT_TRUE(store_->GetEvent(late.event_id).ok());  // stored all the same
  EXPECT_TRUE(SkipReasons(e1.event_id).empty());
  clock_.Advance(1s);  // not pushed back by the late event
  EXPECT_EQ(ClaimedRuns(), Runs{e1.run_id});
  EXPECT_EQ(store_->GetRun(e1.run_id)->event_id, e1.event_id);
  EXPECT_EQ(RunCount(), 1u);
}

TEST_P(DebounceTest, AClaimEndsTheDebounceAndTheNextEventStartsANewOne) {
  const Sent e1 = Send("k", 1s);
  clock_.Advance(1s);
  auto items = Claim();
  ASSERT_EQ(items.size(), 1u);
  EXPECT_EQ(items[0].run_id, e1.run_id);
  const Sent e2 = Send("k", 1s);
  EXPECT_TRUE(e2.result.debounced.empty());
  EXPECT_TRUE(e2.result.skipped.empty());
  EXPECT_EQ(RunCount(), 2u);
  EXPECT_EQ(store_->GetRun(e1.run_id)->event_id, e1.event_id);
  EXPECT_EQ(store_->GetRun(e2.run_id)->event_id, e2.event_id);
  EXPECT_TRUE(Claim().empty());   // e2's debounce runs its own period
  const Sent e3 = Send("k", 1s);  // joins e2's, which is not claimed yet
  EXPECT_EQ(e3.result.debounced, std::vector<std::string>{"app-plain"});
  EXPECT_EQ(store_->GetRun(e2.run_id)->event_id, e3.event_id);
  EXPECT_EQ(store_->GetRun(e1.run_id)->event_id, e1.event_id);
  // e1's run ended, e2's was claimed: the next event starts a third debounce.
  ASSERT_THAT(End(items[0]), IsOk());
  clock_.Advance(1s);
  EXPECT_EQ(ClaimedRuns(), Runs{e2.run_id});
  const Sent e4 = Send("k", 1s);
  EXPECT_TRUE(e4.result.debounced.empty());
  EXPECT_EQ(RunCount(), 3u);
}

// Events racing claims of one key: each event is either its run's event or recorded as
// replaced, and no run's first call is claimed twice.
TEST_P(DebounceTest, EventsRacingClaimsAreNeverLostAndNoRunStartsTwice) {
  constexpr int kEvents = 40;
  std::atomic<bool> done = false;
  std::vector<std::string> sent;
  std::mutex mu;
  std::map<std::string, int> claims_of;
  std::map<std::string, std::string> event_at_claim;
  std::thread claimer([&] {
    while (!done) {
      auto r = store_->Claim(10, clock_.Now() + 5s, 60s);  // every item looks due
      if (!r.ok()) continue;
      std::lock_guard lock(mu);
      for (const QueueItem& item : *r) {
        ++claims_of[item.run_id];
        // Claimed: the run's event is final from now on.
        event_at_claim[item.run_id] = store_->GetRun(item.run_id)->event_id;
      }
    }
  });
  for (int i = 0; i < kEvents; ++i) {
    for (int tries = 0; tries < 20; ++tries) {
      NewEvent ne = Event("test/debounce");
      ne.event.payload["ts"] = UnixMillis(clock_.Now()) + i;
      NewRun run{NewUlid(UnixMillis(clock_.Now())), "app-plain"};
      run.debounce = DebounceGate{"k", 1s, {}, UnixMillis(clock_.Now()) + i};
      ne.runs.push_back(run);
      auto r = store_->IngestEvents({ne}, clock_.Now(), nullptr);
      if (!r.ok() && r.status().code() == StatusCode::kUnavailable) continue;
      ASSERT_THAT(r, IsOk());
      sent.push_back(ne.event.internal_id);
      break;
    }
  }
  done = true;
  claimer.join();
  auto last = store_->Claim(100, clock_.Now() + 5s, 60s);
  ASSERT_THAT(last, IsOk());
  for (const QueueItem& item : *last) {
    ++claims_of[item.run_id];
    event_at_claim[item.run_id] = store_->GetRun(item.run_id)->event_id;
  }
  RunFilter filter;
  filter.function_id = "app-plain";
  filter.limit = 1000;
  auto runs = store_->ListRuns(filter);
  ASSERT_THAT(runs, IsOk());
  std::set<std::string> held;
  for (const RunRecord& run : *runs) {
    held.insert(run.event_id);
    EXPECT_EQ(claims_of[run.id], 1) << run.id;
    EXPECT_EQ(event_at_claim[run.id], run.event_id) << "replaced after its claim: " << run.id;
  }
  ASSERT_EQ(sent.size(), static_cast<size_t>(kEvents));
  for (const std::string& id : sent) {
    const bool replaced = SkipReasons(id) == std::vector<std::string>{kSkipDebounce};
    EXPECT_NE(held.count(id) == 1, replaced) << id;
  }
}

// batchEvents (docs/flow-control.md "batchEvents").
class BatchTest : public StoreConformance {
 protected:
  struct Sent {
    std::string event_id;
    std::string run_id;  // of the NewRun sent (created only for a new batch)
    IngestedEvent result;
  };
  NewEvent BatchedEvent(const std::string& key, int64_t max_size, std::chrono::milliseconds timeout,
                        int64_t now_ms) {
    NewEvent ne = Event("test/batch");
    ne.event.payload["id"] = ne.event.id;
    NewRun run{NewUlid(now_ms), "app-plain"};
    run.batch = BatchGate{key, max_size, timeout};
    ne.runs.push_back(run);
    return ne;
  }
  Sent Send(const std::string& key, int64_t max_size, std::chrono::milliseconds timeout) {
    NewEvent ne = BatchedEvent(key, max_size, timeout, UnixMillis(clock_.Now()));
    auto r = store_->IngestEvents({ne}, clock_.Now(), nullptr);
    EXPECT_THAT(r, IsOk());
    return {ne.event.internal_id, ne.runs[0].run_id, r.ok() ? (*r)[0] : IngestedEvent{}};
  }
  std::vector<RunRecord> Runs() {
    RunFilter filter;
    filter.function_id = "app-plain";
    filter.limit = 1000;
    auto runs = store_->ListRuns(filter);
    EXPECT_THAT(runs, IsOk());
    return runs.ok() ? *runs : std::vector<RunRecord>{};
  }
};

TEST_P(BatchTest, EventsJoinTheOpenBatchAndTheRunStartsAtOnceWhenItIsFull) {
  const Sent e1 = Send("k", 3, 10s);
  EXPECT_TRUE(e1.result.batched.empty());
  EXPECT_EQ(RunStatus(e1.run_id), kQueued);
  const Sent other = Send("other", 3, 10s);  // another key: a batch of its own
  EXPECT_TRUE(other.result.batched.empty());
  const Sent e2 = Send("k", 3, 10s);
  EXPECT_EQ(e2.result.batched, std::vector<std::string>{"app-plain"});
  EXPECT_TRUE(Claim().empty());  // not full, not timed out
  const Sent e3 = Send("k", 3, 10s);
  EXPECT_EQ(e3.result.batched, std::vector<std::string>{"app-plain"});
  EXPECT_EQ(ClaimedRuns(), std::vector<std::string>{e1.run_id});  // full: due now
  EXPECT_EQ(Runs().size(), 2u);
  auto run = store_->GetRun(e1.run_id);
  ASSERT_THAT(run, IsOk());
  EXPECT_EQ(run->event_id, e1.event_id);
  EXPECT_EQ(run->event_ids, (std::vector<std::string>{e1.event_id, e2.event_id, e3.event_id}));
  auto state = store_->LoadRunState(e1.run_id);  // what the call carries
  ASSERT_THAT(state, IsOk());
  ASSERT_EQ(state->events.size(), 3u);
  EXPECT_EQ(state->events[0]["id"], e1.event_id);
  EXPECT_EQ(state->events[1]["id"], e2.event_id);
  EXPECT_EQ(state->events[2]["id"], e3.event_id);
  // Every event of the batch lists the run.
  RunFilter by_event;
  by_event.event_id = e3.event_id;
  auto of_e3 = store_->ListRuns(by_event);
  ASSERT_THAT(of_e3, IsOk());
  ASSERT_EQ(of_e3->size(), 1u);
  EXPECT_EQ((*of_e3)[0].id, e1.run_id);
  // The next event of the key opens a new batch.
  const Sent e4 = Send("k", 3, 10s);
  EXPECT_TRUE(e4.result.batched.empty());
  EXPECT_EQ(Runs().size(), 3u);
  EXPECT_EQ(store_->GetRun(e4.run_id)->event_ids, std::vector<std::string>{e4.event_id});
}

TEST_P(BatchTest, TheTimerStartsTheRunWithWhatItHoldsOnceAndLaterEventsOpenANewBatch) {
  const Sent e1 = Send("k", 5, 2s);
  clock_.Advance(1s);
  const Sent e2 = Send("k", 5, 2s);
  EXPECT_EQ(e2.result.batched, std::vector<std::string>{"app-plain"});
  clock_.Advance(999ms);
  EXPECT_TRUE(Claim().empty());
  clock_.Advance(1ms);  // 2 s after the first event, not the last
  // The timer has fired but its call is not claimed yet: the batch is closed all the same.
  const Sent e3 = Send("k", 5, 2s);
  EXPECT_TRUE(e3.result.batched.empty());
  EXPECT_EQ(ClaimedRuns(), std::vector<std::string>{e1.run_id});
  EXPECT_TRUE(Claim().empty());  // once
  EXPECT_EQ(store_->GetRun(e1.run_id)->event_ids,
            (std::vector<std::string>{e1.event_id, e2.event_id}));
  const Sent e4 = Send("k", 5, 2s);  // joins e3's batch
  EXPECT_EQ(e4.result.batched, std::vector<std::string>{"app-plain"});
  clock_.Advance(2s);
  EXPECT_EQ(ClaimedRuns(), std::vector<std::string>{e3.run_id});
  EXPECT_EQ(store_->GetRun(e3.run_id)->event_ids,
            (std::vector<std::string>{e3.event_id, e4.event_id}));
  EXPECT_EQ(Runs().size(), 2u);
}

TEST_P(BatchTest, OneRequestFillsBatchesInArrivalOrder) {
  std::vector<NewEvent> events;
  for (int i = 0; i < 5; ++i) {
    events.push_back(BatchedEvent("k", 2, 5s, UnixMillis(clock_.Now())));
  }
  auto r = store_->IngestEvents(events, clock_.Now(), nullptr);
  ASSERT_THAT(r, IsOk());
  EXPECT_EQ(ClaimedRuns(),
            (std::vector<std::string>{events[0].runs[0].run_id, events[2].runs[0].run_id}));
  EXPECT_EQ(store_->GetRun(events[2].runs[0].run_id)->event_ids,
            (std::vector<std::string>{events[2].event.internal_id, events[3].event.internal_id}));
  const std::vector<RunRecord> runs = Runs();
  EXPECT_EQ(runs.size(), 3u);  // 2 + 2 + the last one, open
}

// A batch's run passes throttle like any run: its slot is taken when it is created (with the
// batch's first event), and filling the batch makes it due at that slot, not before.
TEST_P(BatchTest, AFullBatchOfAThrottledFunctionStartsAtItsSlot) {
  auto send = [&](const std::string& key) {
    NewEvent ne = BatchedEvent(key, 2, 30s, UnixMillis(clock_.Now()));
    ne.runs[0].throttle = ThrottleGate{"", 1, 10s, 0};
    auto r = store_->IngestEvents({ne}, clock_.Now(), nullptr);
    EXPECT_THAT(r, IsOk());
    return ne.runs[0].run_id;
  };
  const std::string a = send("a");
  const std::string b = send("b");  // slot 10 s later
  send("a");
  send("b");  // both full
  EXPECT_EQ(ClaimedRuns(), std::vector<std::string>{a});
  clock_.Advance(9999ms);
  EXPECT_TRUE(Claim().empty());
  clock_.Advance(1ms);
  EXPECT_EQ(ClaimedRuns(), std::vector<std::string>{b});
}

// timeouts.start counts from when a batch is started (its timer, or the event that fills
// it), not from its first event: a start shorter than the batch timeout cancels nothing
// while the batch gathers.
TEST_P(BatchTest, TimeoutsStartCountsFromWhenTheBatchStarts) {
  auto send = [&](const std::string& key) {
    NewEvent ne = BatchedEvent(key, 3, 5s, UnixMillis(clock_.Now()));
    ne.runs[0].timeouts = RunTimeouts{1s, std::nullopt};
    auto r = store_->IngestEvents({ne}, clock_.Now(), nullptr);
    EXPECT_THAT(r, IsOk());
    return ne.runs[0].run_id;
  };
  auto sweep = [&] {
    auto r = store_->CancelTimedOutRuns(clock_.Now(), 100);
    EXPECT_THAT(r, IsOk());
    return r.ok() ? *r : std::vector<std::string>{};
  };
  const std::string timed = send("timer");  // starts at 5 s: cancelled at 6 s if not claimed
  const std::string filled = send("full");
  clock_.Advance(2s);
  send("full");
  send("full");  // full at 2 s: cancelled at 3 s if not claimed
  EXPECT_TRUE(sweep().empty());
  clock_.Advance(999ms);
  EXPECT_TRUE(sweep().empty());
  clock_.Advance(1ms);
  EXPECT_EQ(sweep(), std::vector<std::string>{filled});
  clock_.Advance(2999ms);  // 5.999 s
  EXPECT_TRUE(sweep().empty());
  clock_.Advance(1ms);
  EXPECT_EQ(sweep(), std::vector<std::string>{timed});
}

// A batch is started before its events would pass kMaxBatchBytes as JSON: the event that
// would take it past opens the next batch.
TEST_P(BatchTest, AnEventThatWouldPassTheByteCapStartsTheBatchWithoutIt) {
  const std::string three_mib(3 << 20, 'x');
  std::vector<NewEvent> sent;
  for (int i = 0; i < 4; ++i) {
    NewEvent ne = BatchedEvent("k", 10, 30s, UnixMillis(clock_.Now()));
    ne.event.payload["data"] = {{"blob", three_mib}};
    ASSERT_THAT(store_->IngestEvents({ne}, clock_.Now(), nullptr), IsOk());
    sent.push_back(std::move(ne));
  }
  EXPECT_EQ(ClaimedRuns(), std::vector<std::string>{sent[0].runs[0].run_id});
  EXPECT_EQ(store_->GetRun(sent[0].runs[0].run_id)->event_ids,
            (std::vector<std::string>{sent[0].event.internal_id, sent[1].event.internal_id,
                                      sent[2].event.internal_id}));
  EXPECT_EQ(store_->GetRun(sent[3].runs[0].run_id)->event_ids,
            std::vector<std::string>{sent[3].event.internal_id});
  EXPECT_EQ(RunStatus(sent[3].runs[0].run_id), kQueued);
}

TEST_P(BatchTest, RetentionKeepsEveryEventOfARunItKeepsAndDeletesThemWithTheRun) {
  const Sent e1 = Send("done", 2, 10s);
  const Sent e2 = Send("done", 2, 10s);  // full: the run starts
  for (const QueueItem& item : Claim()) ASSERT_THAT(End(item), IsOk());
  auto pending = store_->PendingRunEnds(0, 100);
  ASSERT_THAT(pending, IsOk());
  ASSERT_THAT(store_->AckRunEnds(*pending), IsOk());
  const Sent e3 = Send("open", 5, 10s);
  const Sent e4 = Send("open", 5, 10s);  // held only through run_events
  ASSERT_EQ(e4.result.batched, std::vector<std::string>{"app-plain"});
  clock_.Advance(2h);
  for (int pass = 0; pass < 10; ++pass) {
    auto n = store_->DeleteExpired(clock_.Now() - 30min, 500);
    ASSERT_THAT(n, IsOk());
    if (*n == 0) break;
  }
  EXPECT_EQ(store_->GetRun(e1.run_id).status().code(), StatusCode::kNotFound);
  EXPECT_EQ(store_->GetEvent(e1.event_id).status().code(), StatusCode::kNotFound);
  EXPECT_EQ(store_->GetEvent(e2.event_id).status().code(), StatusCode::kNotFound);
  ASSERT_THAT(store_->GetRun(e3.run_id), IsOk());
  EXPECT_THAT(store_->GetEvent(e3.event_id), IsOk());
  EXPECT_THAT(store_->GetEvent(e4.event_id), IsOk());
  auto state = store_->LoadRunState(e3.run_id);
  ASSERT_THAT(state, IsOk());
  EXPECT_EQ(state->events.size(), 2u);
  // Retention passed over the batch rows without error; the timed-out batch stays closed.
  const Sent e5 = Send("open", 5, 10s);
  EXPECT_TRUE(e5.result.batched.empty());
}

// A replay of a batch's run that is gone is kNotFound, though the event it names is kept: the
// run's other events went with it. (The replay started with the one event, its batch lost.)
TEST_P(BatchTest, AReplayOfABatchRunThatIsGoneIsNotFound) {
  const Sent e1 = Send("k", 2, 10s);
  Send("k", 2, 10s);
  NewRun replay{NewUlid(UnixMillis(clock_.Now())), "app-plain"};
  replay.events_of = "01NOSUCHRUN";
  EXPECT_EQ(store_->StartRun(e1.event_id, replay, clock_.Now()).code(), StatusCode::kNotFound);
  EXPECT_EQ(store_->GetRun(replay.run_id).status().code(), StatusCode::kNotFound);
}

// A retention shorter than a batch's timeout deletes no open batch: the key's next event joins
// it rather than opening a second one beside it.
TEST_P(BatchTest, AShortRetentionKeepsAnOpenBatch) {
  const Sent e1 = Send("k", 5, 60s);
  clock_.Advance(30s);
  ASSERT_THAT(store_->DeleteExpired(clock_.Now() - 1s, 500), IsOk());
  const Sent e2 = Send("k", 5, 60s);
  EXPECT_EQ(e2.result.batched, std::vector<std::string>{"app-plain"});
  EXPECT_EQ(Runs().size(), 1u);
  auto run = store_->GetRun(e1.run_id);
  ASSERT_THAT(run, IsOk());
  EXPECT_EQ(run->event_ids, (std::vector<std::string>{e1.event_id, e2.event_id}));
}

// Events racing claims (and, on PostgreSQL, each other): every event is in exactly one
// run, no batch holds more than maxSize, and no run's first call is claimed twice or gets
// an event after its claim.
TEST_P(BatchTest, RacingEventsAndClaimsPutEveryEventInExactlyOneRunClaimedOnce) {
  constexpr int kThreads = 3;
  constexpr int kEventsEach = 20;
  std::atomic<bool> done = false;
  std::mutex mu;
  std::map<std::string, int> claims_of;
  std::map<std::string, size_t> size_at_claim;
  std::thread claimer([&] {
    while (!done) {
      // Every item looks due: open batches' timers fire while events join them.
      auto r = store_->Claim(10, clock_.Now() + 20s, 60s);
      if (!r.ok()) continue;
      std::lock_guard lock(mu);
      for (const QueueItem& item : *r) {
        ++claims_of[item.run_id];
        size_at_claim[item.run_id] = store_->GetRun(item.run_id)->event_ids.size();
      }
    }
  });
  std::vector<std::vector<std::string>> sent(kThreads);
  std::vector<std::thread> senders;
  for (int t = 0; t < kThreads; ++t) {
    senders.emplace_back([&, t] {
      for (int i = 0; i < kEventsEach; ++i) {
        for (int tries = 0; tries < 50; ++tries) {
          NewEvent ne = BatchedEvent("k", 4, 10s, UnixMillis(clock_.Now()));
          auto r = store_->IngestEvents({ne}, clock_.Now(), nullptr);
          if (!r.ok() && r.status().code() == StatusCode::kUnavailable) continue;
          EXPECT_THAT(r, IsOk());
          sent[t].push_back(ne.event.internal_id);
          break;
        }
      }
    });
  }
  for (std::thread& s : senders) s.join();
  done = true;
  claimer.join();
  auto last = store_->Claim(1000, clock_.Now() + 20s, 60s);
  ASSERT_THAT(last, IsOk());
  for (const QueueItem& item : *last) {
    ++claims_of[item.run_id];
    size_at_claim[item.run_id] = store_->GetRun(item.run_id)->event_ids.size();
  }
  std::map<std::string, int> runs_of;
  for (const RunRecord& listed : Runs()) {
    auto run = store_->GetRun(listed.id);
    ASSERT_THAT(run, IsOk());
    EXPECT_EQ(claims_of[run->id], 1) << run->id;
    EXPECT_LE(run->event_ids.size(), 4u) << run->id;
    EXPECT_EQ(size_at_claim[run->id], run->event_ids.size()) << "joined after its claim";
    for (const std::string& id : run->event_ids) ++runs_of[id];
  }
  size_t total = 0;
  for (int t = 0; t < kThreads; ++t) {
    EXPECT_EQ(sent[t].size(), static_cast<size_t>(kEventsEach));
    for (const std::string& id : sent[t]) {
      EXPECT_EQ(runs_of[id], 1) << id;
      ++total;
    }
  }
  EXPECT_EQ(runs_of.size(), total);
}

INSTANTIATE_TEST_SUITE_P(Backends, BatchTest,
                         ::testing::Values(Backend{"postgres", OpenPostgres},
                                           Backend{"sqlite", OpenSqlite}),
                         [](const auto& info) { return info.param.name; });

INSTANTIATE_TEST_SUITE_P(Backends, DebounceTest,
                         ::testing::Values(Backend{"postgres", OpenPostgres},
                                           Backend{"sqlite", OpenSqlite}),
                         [](const auto& info) { return info.param.name; });

INSTANTIATE_TEST_SUITE_P(Backends, StoreConformance,
                         ::testing::Values(Backend{"postgres", OpenPostgres},
                                           Backend{"sqlite", OpenSqlite}),
                         [](const auto& info) { return info.param.name; });

}  // namespace
}  // namespace funcky::store
