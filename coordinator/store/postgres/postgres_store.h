// The PostgreSQL backend of the Store (see coordinator/store/store.h for the contracts).
#pragma once

#include <condition_variable>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include <pqxx/pqxx>

#include "coordinator/store/store.h"

namespace funcky::store {

class PostgresStore final : public Store {
 public:
  explicit PostgresStore(PostgresOptions options);
  ~PostgresStore() override;

  Status Migrate() override;
  Status Ping() override;

  Result<SyncResult> SyncApp(const AppSync& sync) override;
  Result<std::vector<AppRecord>> ListApps() override;
  Result<std::vector<FunctionRecord>> ListFunctions() override;
  Result<FunctionRecord> GetFunction(const std::string& id) override;

  Result<std::vector<IngestedEvent>> IngestEvents(const std::vector<NewEvent>& events,
                                                  TimePoint now,
                                                  std::vector<WaitRecord>* waits) override;
  Result<std::vector<EventRecord>> ListEvents(const EventFilter& filter) override;
  Result<EventRecord> GetEvent(const std::string& internal_id) override;

  Result<RunRecord> GetRun(const std::string& run_id) override;
  Result<std::vector<RunRecord>> ListRuns(const RunFilter& filter) override;
  Result<std::vector<StepRecord>> GetSteps(const std::string& run_id) override;
  Result<std::vector<AttemptRecord>> GetAttempts(const std::string& run_id) override;

  Result<std::vector<QueueItem>> Claim(int max, TimePoint now,
                                       std::chrono::milliseconds lease) override;
  Result<RunState> LoadRunState(const std::string& run_id) override;
  Status Apply(const QueueItem& item, const Transition& t, TimePoint now) override;
  Result<int64_t> QueueDepth() override;
  Result<QueueStats> GetQueueStats(TimePoint now) override;
  Status RenewLease(const QueueItem& item, TimePoint until) override;
  Status ReleaseLeases(const std::vector<QueueItem>& items, TimePoint now) override;
  Result<std::vector<std::string>> PendingRunEnds(int64_t ended_before_ms, int limit) override;
  Status AckRunEnds(const std::vector<std::string>& run_ids) override;
  Result<std::vector<std::string>> ExpireLaneHeads(TimePoint now) override;

  Result<std::vector<LaneRecord>> ListLanes(const LaneFilter& filter) override;
  Result<std::string> SkipLaneHead(const std::string& function_id, const std::string& key,
                                   TimePoint now) override;
  Result<std::string> RetryLaneHead(const std::string& function_id, const std::string& key,
                                    TimePoint now) override;

  Result<bool> ResolveWait(const std::string& run_id, const std::string& step_id, const Json& memo,
                           TimePoint now) override;
  Result<std::vector<EventRecord>> EventsSince(const std::string& name, int64_t since_ms,
                                               int limit) override;

  Result<bool> CancelRun(const std::string& run_id, const Json& error, TimePoint now) override;
  Status StartRun(const std::string& event_internal_id, const NewRun& run, TimePoint now) override;
  Result<std::vector<ActiveRun>> ActiveRuns(const std::string& function_id, int limit) override;

  Result<int64_t> DeleteExpired(TimePoint horizon, int batch) override;

 private:
  // Runs `fn(pqxx::work&)` in a transaction on a pooled connection and commits when it
  // returns OK. Database exceptions become a Status: a lost connection is kUnavailable (and
  // the connection is dropped), as is a deadlock or serialization failure: both are worth
  // retrying. kAborted is kept for a lost lease (see Apply).
  template <typename Fn>
  auto InTransaction(Fn&& fn) -> decltype(fn(std::declval<pqxx::work&>()));

  Result<std::unique_ptr<pqxx::connection>> TakeConnection();
  void ReturnConnection(std::unique_ptr<pqxx::connection> conn);

  PostgresOptions options_;
  std::mutex mu_;
  std::condition_variable available_;
  std::vector<std::unique_ptr<pqxx::connection>> idle_;  // GUARDED_BY(mu_)
  // Closes every idle connection (after one was found broken).
  void DropIdleConnections();
  int open_ = 0;  // GUARDED_BY(mu_)
};

}  // namespace funcky::store
