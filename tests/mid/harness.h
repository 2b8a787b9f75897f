// The in-process harness of the mid-level tests: the real executor over a real SQLite store,
// with the world injected (STYLE.md §5): a ManualClock, a fake host whose replies the test
// scripts, a store wrapper that fails the n-th call of a method, and an io_context that the
// test itself drives. No process is spawned and no socket is opened.
#pragma once

#include <array>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/thread_pool.hpp>

#include "common/clock.h"
#include "coordinator/executor/executor.h"
#include "coordinator/store/store.h"

namespace funcky::mid {

using store::Json;

// A host that answers each call with the next scripted reply, in the order calls arrive.
// A call with nothing scripted fails the test. Used on the io_context's thread only, which
// is the test's thread while it drives the io_context.
class FakeTransport final : public executor::HostTransport {
 public:
  // The next call gets `reply`: a response, or a failure such as DeadlineExceeded.
  void Reply(Result<HttpResponse> reply);
  // The next call gets `reply` only once Release() is called: a call in flight.
  void HoldReply(Result<HttpResponse> reply);
  // Lets the call held longest answer.
  void Release();
  int held() const { return static_cast<int>(held_.size()); }

  int calls() const { return static_cast<int>(requests_.size()); }
  const std::vector<HttpRequest>& requests() const { return requests_; }
  // The JSON body of the n-th call (0-based).
  Json Body(int n) const;

  boost::asio::awaitable<Result<HttpResponse>> Call(HttpRequest request) override;

 private:
  struct Scripted {
    Result<HttpResponse> reply;
    bool hold = false;
  };
  std::deque<Scripted> script_;
  std::vector<HttpRequest> requests_;
  std::deque<std::unique_ptr<boost::asio::steady_timer>> held_;       // calls held, oldest first
  std::vector<std::unique_ptr<boost::asio::steady_timer>> released_;  // kept until the end
};

// A reply from an SDK: `status` and `body` with the headers every SDK sends, and `extra`.
HttpResponse SdkReply(int status, std::string body, Headers extra = {});
// A 206 whose op list runs the step named `name` with result `data`.
HttpResponse StepRunReply(const std::string& name, const Json& data);

// A QueueStore that forwards to a real one, except that a chosen call of a method returns
// a chosen status without reaching it: a connection lost on the n-th Apply, a lease lost.
// Counts calls per method. Thread-safe: the executor calls it from its blocking pool.
class FailingQueue final : public store::QueueStore {
 public:
  enum Method {
    kClaim,
    kLoadRunState,
    kApply,
    kRenewLease,
    kCheckpoint,
    kReleaseLeases,
    kQueueDepth,
    kGetQueueStats,
    kExpireLaneHeads,
    kMethodCount
  };

  explicit FailingQueue(store::QueueStore& real) : real_(real) {}

  // The n-th call of `method` from now on (1: the next one) returns `status`.
  void FailNthCall(Method method, int n, Status status);
  // The n-th call of `method` from now on throws (a failure no status reports).
  void ThrowOnNthCall(Method method, int n);
  // Calls of `method` so far, failed ones included.
  int calls(Method method) const { return calls_[method].load(); }
  // Items that Claim has handed out so far.
  int claimed() const { return claimed_.load(); }
  // Claims return no run states, as a store without them would: every first call loads.
  void WithholdClaimStates() { withhold_states_ = true; }
  // From now on, a Claim is counted and then waits, before reaching the store, until
  // ResumeClaims: a claim in progress at a chosen moment.
  void PauseClaims();
  void ResumeClaims();

  Result<std::vector<store::QueueItem>> Claim(
      int max, TimePoint now, std::chrono::milliseconds lease,
      std::vector<store::RunState>* states = nullptr) override;
  Result<store::RunState> LoadRunState(const std::string& run_id) override;
  Status Apply(const store::QueueItem& item, const store::Transition& t, TimePoint now) override;
  // Counted (and failed) as an Apply.
  Result<store::Applied> ApplyAndKeep(const store::QueueItem& item, const store::Transition& t,
                                      TimePoint now, std::chrono::milliseconds lease) override;
  Status RenewLease(const store::QueueItem& item, TimePoint until) override;
  Result<store::RecordedCheckpoint> Checkpoint(const store::QueueItem& item,
                                               const std::vector<store::StepRecord>& steps,
                                               const std::vector<store::AttemptRecord>& attempts,
                                               TimePoint now, int64_t step_limit) override;
  Status ReleaseLeases(const std::vector<store::QueueItem>& items, TimePoint now) override;
  Result<int64_t> QueueDepth() override;
  Result<store::QueueStats> GetQueueStats(TimePoint now) override;
  Result<std::vector<std::string>> ExpireLaneHeads(TimePoint now) override;

 private:
  // Counts a call of `method`; the status it must return instead of forwarding, if any.
  std::optional<Status> Count(Method method);

  store::QueueStore& real_;
  std::array<std::atomic<int>, kMethodCount> calls_{};
  std::atomic<int> claimed_{0};
  std::mutex mu_;
  std::condition_variable resumed_;
  bool paused_ = false;  // GUARDED_BY(mu_)
  std::atomic<bool> withhold_states_{false};
  std::map<std::pair<Method, int>, Status> failures_;  // GUARDED_BY(mu_): by (method, call)
  std::set<std::pair<Method, int>> throws_;            // GUARDED_BY(mu_)
};

// Opens a migrated SQLite store at `path` into `out` holding app "app" with `functions`;
// leaves `out` empty and fails the test if any step fails.
void OpenStoreWithApp(const std::string& path, std::vector<store::FunctionRecord> functions,
                      std::unique_ptr<store::Store>& out);

// What the executor reported; read on the io_context's thread (the test's).
class RecordingObserver final : public executor::ExecutorObserver {
 public:
  int leases_lost = 0;
  std::vector<std::string> run_ends;  // statuses, in order

  void CallEnded(const std::string&, std::string_view, std::chrono::nanoseconds) override {}
  void FirstCall(const std::string&, std::chrono::nanoseconds) override {}
  void StepAttempt(const std::string&, std::chrono::nanoseconds) override {}
  void RunEnded(const std::string&, std::string_view status) override {
    run_ends.emplace_back(status);
  }
  void LaneHeadsTimedOut(int64_t) override {}
  void LeaseLost() override { ++leases_lost; }
};

// A fixture with a fresh SQLite store holding one app with two functions:
// kFunction (2 retries) and kOrdered (no retries; its runs are given lane keys).
class ExecutorHarness : public ::testing::Test {
 protected:
  static constexpr const char* kFunction = "app-fn";
  static constexpr const char* kOrdered = "app-ordered";

  ExecutorHarness();
  void SetUp() override;
  void TearDown() override;

  // Builds the executor with options_ and starts it.
  void StartExecutor();
  // Ingests an event that starts a run of `function_id` (in lane `lane_key` if given);
  // returns the run id.
  std::string StartRun(const std::string& function_id,
                       std::optional<std::string> lane_key = std::nullopt);
  // Ingests an event whose run of `function_id` starts here at once, as intake does with the
  // executor's reservation (store::StartedCalls): its first call leased to the started
  // executor, no claim. Returns the run id; empty, failing the test, if it did not start.
  std::string StartRunHere(const std::string& function_id);

  // Drives the io_context until `done` holds; false if it does not within a generous bound
  // of real time (a hang, not a measurement: the test's time is the ManualClock).
  bool RunUntil(const std::function<bool()>& done);
  // Drives the io_context until the executor has looked for due work `n` more times.
  bool RunClaimRounds(int n);

  store::RunRecord Run(const std::string& run_id);
  // The request version in the run's own row (runs.req_version), read from the database
  // file; -2 when it cannot be read.
  int RunRowReqVersion(const std::string& run_id);
  std::vector<store::StepRecord> Steps(const std::string& run_id);
  std::vector<store::AttemptRecord> Attempts(const std::string& run_id);

  std::string dir_;  // a fresh temporary folder holding the database, removed after the test
  ManualClock clock_;
  std::unique_ptr<store::Store> store_;
  std::unique_ptr<FailingQueue> queue_;  // what the executor uses: store_, with failures
  // Before the transport: a held reply's timer must be destroyed before the io_context.
  boost::asio::io_context io_;
  FakeTransport transport_;
  RecordingObserver observer_;
  executor::ExecutorOptions options_;
  boost::asio::thread_pool blocking_{2};
  std::unique_ptr<executor::Executor> executor_;
};

}  // namespace funcky::mid
