// The one implementation of the Store (coordinator/store/store.h has the contracts), written
// once over the SQL interface of sql.h; coordinator/store/postgres/ and sqlite/ supply the
// databases. Internal to coordinator/store.
#pragma once

#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <vector>

#include "coordinator/store/sql/sql.h"
#include "coordinator/store/store.h"

namespace funcky::store {

class SqlStore final : public Store {
 public:
  explicit SqlStore(std::unique_ptr<sql::Database> db);
  ~SqlStore() override;

  Status Migrate() override;
  Status CheckMigrations() override;
  Status Ping() override;
  std::optional<int64_t> RoundTrips() const override;
  // Pieces of work waiting for a group to take them (InGroup): tests hold a group's
  // transaction and wait for this count, to have the next group share their pieces.
  size_t PiecesWaitingForAGroup();

  Result<SyncResult> SyncApp(const AppSync& sync) override;
  Result<std::vector<AppRecord>> ListApps() override;
  Result<std::vector<FunctionRecord>> ListFunctions() override;
  Result<int64_t> FunctionGeneration() override;
  Result<FunctionRecord> GetFunction(const std::string& id) override;

  Result<std::vector<IngestedEvent>> IngestEvents(
      const std::vector<NewEvent>& events, TimePoint now, IngestWaits* waits,
      StartedCalls* start = nullptr, std::optional<int64_t> functions_generation = {}) override;
  Result<std::vector<EventRecord>> ListEvents(const EventFilter& filter) override;
  Result<EventRecord> GetEvent(const std::string& internal_id) override;
  Result<EventRecord> FindEventById(const std::string& id) override;
  Result<std::vector<EventSkip>> EventSkips(const std::string& internal_id) override;

  Result<RunRecord> GetRun(const std::string& run_id) override;
  Result<std::vector<RunRecord>> ListRuns(const RunFilter& filter) override;
  Result<std::vector<StepRecord>> GetSteps(const std::string& run_id) override;
  Result<std::vector<AttemptRecord>> GetAttempts(const std::string& run_id) override;

  Result<std::vector<QueueItem>> Claim(int max, TimePoint now, std::chrono::milliseconds lease,
                                       std::vector<RunState>* states = nullptr) override;
  Result<RunState> LoadRunState(const std::string& run_id) override;
  Status Apply(const QueueItem& item, const Transition& t, TimePoint now) override;
  Result<Applied> ApplyAndKeep(const QueueItem& item, const Transition& t, TimePoint now,
                               std::chrono::milliseconds lease) override;
  Status RenewLease(const QueueItem& item, TimePoint until) override;
  Result<RecordedCheckpoint> Checkpoint(const QueueItem& item, const std::vector<StepRecord>& steps,
                                        const std::vector<AttemptRecord>& attempts, TimePoint now,
                                        int64_t step_limit) override;
  Status ReleaseLeases(const std::vector<QueueItem>& items, TimePoint now) override;
  Result<int64_t> QueueDepth() override;
  Result<std::optional<TimePoint>> NextVisible() override;
  std::unique_ptr<WorkWatch> WatchForWork(std::function<void()> wake) override;
  Result<QueueStats> GetQueueStats(TimePoint now) override;
  Result<std::vector<std::string>> ExpireLaneHeads(TimePoint now) override;

  Result<std::vector<LaneRecord>> ListLanes(const LaneFilter& filter) override;
  Result<std::string> SkipLaneHead(const std::string& function_id, const std::string& key,
                                   TimePoint now, const std::string& expected_head = "",
                                   std::optional<int64_t> waiting_for = std::nullopt,
                                   bool* skipped_before = nullptr) override;
  Result<std::vector<LaneGap>> ListLaneGaps(const std::string& function_id, const std::string& key,
                                            int limit) override;
  Result<std::vector<LaneOutcome>> LaneOutcomesOf(const std::string& internal_id) override;
  Result<std::vector<LaneGap>> PendingLaneGaps(int limit) override;
  Status AckLaneGaps(const std::vector<int64_t>& ids) override;
  Result<LaneNextSet> SetLaneNext(const std::string& function_id, const std::string& key,
                                  int64_t next, std::optional<int64_t> expected_next,
                                  TimePoint now) override;
  Result<std::string> RetryLaneHead(const std::string& function_id, const std::string& key,
                                    TimePoint now) override;

  Result<bool> ResolveWait(const std::string& run_id, const std::string& step_id, const Json& memo,
                           TimePoint now) override;
  Result<std::optional<std::string>> ResolveSignal(const std::string& signal, const Json& data,
                                                   TimePoint now) override;
  Result<std::vector<EventRecord>> EventsAfter(const std::string& name, int64_t after_ms,
                                               const std::string& after_id, int limit) override;
  Result<std::vector<WaitRecord>> PendingLookbacks(int64_t created_before_ms, int limit) override;
  Status LookbackDone(const std::string& run_id, const std::string& step_id) override;
  Result<std::vector<EventRecord>> PendingResumes(int64_t received_before_ms, int limit) override;
  Result<std::vector<WaitRecord>> WaitsBefore(const EventRecord& event, const WaitRecord* after,
                                              int limit) override;
  Status AckResumes(const std::vector<std::string>& event_ids) override;

  Result<bool> CancelRun(const std::string& run_id, const Json& error, TimePoint now) override;
  using RunControl::StartRun;
  Result<std::string> StartRun(const std::string& event_internal_id, const NewRun& run,
                               TimePoint now, const ReplayKey* key,
                               std::optional<int64_t> functions_generation) override;
  Result<std::vector<std::string>> CancelTimedOutRuns(TimePoint now, int limit) override;
  Result<std::vector<ActiveRun>> ActiveRuns(const std::string& function_id, int64_t before_ms,
                                            const std::string& after_run_id, int limit) override;
  Result<std::vector<ActiveRun>> CancelCandidates(const std::string& function_id,
                                                  const std::string& rule,
                                                  const std::vector<std::string>& keys,
                                                  int64_t before_ms, int64_t created_from_ms,
                                                  const std::string& after_run_id,
                                                  int limit) override;
  Result<std::vector<std::string>> PendingRunEnds(int64_t ended_before_ms, int limit) override;
  Status AckRunEnds(const std::vector<std::string>& run_ids) override;
  Result<std::vector<EventRecord>> PendingCancels(int64_t received_before_ms, int limit) override;
  Status AckCancels(const std::vector<std::string>& event_ids) override;
  Result<SweepsDue> DueSweeps(int64_t lookbacks_before_ms, int64_t ends_before_ms,
                              TimePoint now) override;

  Result<int64_t> DeleteExpired(TimePoint horizon, int batch) override;

 private:
  // Apply's transaction; with `keep`, ApplyAndKeep's.
  Result<Applied> ApplyInTx(const QueueItem& item, const Transition& t, TimePoint now,
                            std::optional<std::chrono::milliseconds> keep);
  // LoadRunState's reads.
  static Result<RunState> ReadRunState(sql::Tx& tx, const std::string& run_id);
  // The states of `run_ids` that exist, by run id; with `one_at_a_time`, the ids of those
  // whose rows say they never had a wait or calls in parallel (QueueItem::one_at_a_time).
  static std::map<std::string, RunState> ReadRunStates(
      sql::Tx& tx, const std::vector<std::string>& run_ids,
      std::set<std::string>* one_at_a_time = nullptr);
  // For the runs this ingest started here (`start`, whose items the commit completes): their
  // states, read with the commit (Tx::QueryLater) into start->states in the items' order.
  static void ReadStartedStatesLater(sql::Tx& tx, std::vector<std::string> run_ids,
                                     StartedCalls* start);

  // What a failed piece of a group may have written, so whether its group may go on.
  enum class Piece {
    kRead,   // nothing: the group goes on whatever it returns
    kApply,  // nothing when it fails with kAborted (ApplyWork's lease check comes first)
    kWrite,  // anything: a failure rolls the group back
  };
  // Group commit: runs `body` in a transaction shared with the other work submitted at the
  // moment (at most kMaxGroup pieces, kGroupLeaders transactions at once, kSecondGroupAt), and
  // returns the status `body` returned. `order`: the groups' one order of row locks (a run's
  // pieces sort by its lane first, GroupOrder). With `alone` (a piece that locks several
  // lanes, an ingest's) the piece takes a transaction of its own: so every transaction locks
  // lanes in one order (an ingest's in key order, a group's ends in their lanes' order), and
  // two cannot deadlock over them. A failure after which the group may not go on (see Piece)
  // rolls it back, and each of its pieces is then run alone, in a transaction of its own
  // (again, should that one end in a conflict): so a body may run several times and must set
  // its results anew each time. Used by the hot path: ApplyInTx, LoadRunState and
  // IngestEvents.
  //
  // With `two_part`, the piece comes in two parts: `two_part->send` queues statements and
  // reads none of their results, `body` runs once they have come (Tx::Wait). The first parts
  // of a group's two-part pieces next to each other in its order, of different runs and of
  // different lanes, are sent together, and the group waits for them once rather than once
  // each; so such a piece may lock rows other than its run's and its lane's only in its
  // first part. Used by ApplyInTx.
  //
  // With `one_flight`, a piece that runs alone is first tried in one flight
  // (sql::Flights::kOne), with `*one_flight` true: its parts then queue all they write behind
  // a Tx::Require and read nothing, and its transaction goes at once with its commit. When
  // the requirement is not met (sql::IsUnmet), nothing was written, and the piece runs again
  // the usual way. `*one_flight` is false on every other run of it. Used by ApplyInTx and
  // IngestEvents.
  struct TwoPart {
    std::string_view run;  // the run whose rows the piece writes
    std::function<void(sql::Tx&)> send;
    const std::pair<std::string, std::string>* lane = nullptr;  // the run's, if in one
  };
  Status InGroup(std::string order, Piece piece, bool alone,
                 const std::function<Status(sql::Tx&)>& body, const TwoPart* two_part = nullptr,
                 bool* one_flight = nullptr);
  // InGroup for `fn(sql::Tx&)` returning a Result<T>: its last result, or the group's failure.
  template <typename Fn>
  auto InGroupResult(std::string order, Piece piece, bool alone, Fn&& fn,
                     const TwoPart* two_part = nullptr, bool* one_flight = nullptr)
      -> decltype(fn(std::declval<sql::Tx&>()));
  // The group order of a piece of `item`'s run, in `lane` (function id, key) when it has one.
  static std::string GroupOrder(const QueueItem& item,
                                const std::optional<std::pair<std::string, std::string>>& lane);
  struct GroupWork;
  static constexpr size_t kMaxGroup = 64;
  // The events of an event outbox (pending_cancels, pending_resumes): those recorded before
  // `received_before_ms` (0: any time), oldest first; and their acknowledgement.
  Result<std::vector<EventRecord>> PendingEvents(std::string_view outbox,
                                                 int64_t received_before_ms, int limit);
  Status AckEvents(std::string_view outbox, const std::vector<std::string>& event_ids);
  // How often Transact tries a transaction when each try ends in a conflict (sql::IsConflict).
  static constexpr int kConflictTries = 3;
  static constexpr int kGroupLeaders = 2;
  // A second group starts while one commits only once this much work waits; less waits for
  // the running group, to share the next transaction (fewer commits, as many calls served).
  static constexpr size_t kSecondGroupAt = 8;
  void CommitGroup(std::vector<GroupWork*>& group);
  // Whether a piece waiting may start a group now; the caller holds group_mu_.
  bool MayLeadGroup() const;
  std::mutex group_mu_;
  std::vector<GroupWork*> group_queue_;  // GUARDED_BY(group_mu_)
  int group_leaders_ = 0;                // GUARDED_BY(group_mu_)

  // Runs `fn(sql::Tx&)`, which returns a Status or a Result<T>, in one transaction that
  // commits when it is OK (Transact), so `fn` must set its results anew each time it runs.
  template <typename Fn>
  auto InTransaction(Fn&& fn) -> decltype(fn(std::declval<sql::Tx&>()));
  // Runs `body` in a transaction of its own, and again (up to kConflictTries in all) when the
  // database undoes it in a conflict (sql::IsConflict): InTransaction's transactions, and a
  // group's pieces run alone.
  Status Transact(const std::function<Status(sql::Tx&)>& body,
                  sql::Flights flights = sql::Flights::kAsNeeded);

  std::unique_ptr<sql::Database> db_;

  // Leases given by a claim, or by an apply that might have kept a call (ApplyAndKeep), whose
  // transaction failed with its outcome unknown (the commit may have happened): the next
  // claim gives their items back, so a connection lost at the wrong moment costs a retry,
  // not a whole lease. A claim's are all the items under its token; an apply's is its one
  // item, whose token (kept as it is) other items of the claim that leased it share: those
  // are calls in flight, held by their callers, which must keep them.
  struct Doubtful {
    std::string token;
    int64_t item_id = 0;  // 0: every item under `token` (a claim's)
    bool Covers(const QueueItem& item) const {
      return token == item.lease_token && (item_id == 0 || item_id == item.id);
    }
  };
  static constexpr size_t kMaxDoubtful = 1024;
  std::mutex doubtful_mu_;
  std::vector<Doubtful> doubtful_;  // GUARDED_BY(doubtful_mu_)
  // Adds `d` to doubtful_ (dropping the oldest past 64); the caller holds doubtful_mu_.
  void RememberDoubtful(Doubtful d);
};

}  // namespace funcky::store
