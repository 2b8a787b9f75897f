#include "tests/mid/harness.h"

#include <filesystem>
#include <stdexcept>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

#include "common/step_id.h"
#include "common/ulid.h"
#include "coordinator/store/sql/databases.h"
#include "tests/support/process.h"
#include "tests/support/status_matchers.h"

namespace funcky::mid {

namespace asio = boost::asio;
using namespace std::chrono_literals;
using testing::IsOk;

void FakeTransport::Reply(Result<HttpResponse> reply) {
  script_.push_back({std::move(reply), false});
}

void FakeTransport::HoldReply(Result<HttpResponse> reply) {
  script_.push_back({std::move(reply), true});
}

void FakeTransport::Release() {
  ASSERT_FALSE(held_.empty()) << "no call is held";
  held_.front()->cancel();
  released_.push_back(std::move(held_.front()));
  held_.pop_front();
}

Json FakeTransport::Body(int n) const { return Json::parse(requests_.at(n).body); }

asio::awaitable<Result<HttpResponse>> FakeTransport::Call(HttpRequest request) {
  requests_.push_back(std::move(request));
  if (script_.empty()) {
    ADD_FAILURE() << "call " << requests_.size() << " has no scripted reply";
    co_return Unavailable("no reply scripted");
  }
  Scripted next = std::move(script_.front());
  script_.pop_front();
  if (next.hold) {
    held_.push_back(std::make_unique<asio::steady_timer>(co_await asio::this_coro::executor,
                                                         asio::steady_timer::time_point::max()));
    co_await held_.back()->async_wait(asio::as_tuple(asio::use_awaitable));
  }
  co_return std::move(next.reply);
}

HttpResponse SdkReply(int status, std::string body, Headers extra) {
  HttpResponse r;
  r.status = status;
  r.body = std::move(body);
  r.headers = {{"X-Inngest-SDK", "test:v1"}, {"X-Inngest-Req-Version", "2"}};
  for (auto& h : extra) r.headers.push_back(std::move(h));
  return r;
}

HttpResponse StepRunReply(const std::string& name, const Json& data) {
  Json op = {{"id", HashStepId(name)},
             {"op", "StepRun"},
             {"name", name},
             {"displayName", name},
             {"data", data}};
  return SdkReply(206, Json::array({op}).dump());
}

void FailingQueue::FailNthCall(Method method, int n, Status status) {
  std::lock_guard lock(mu_);
  failures_[{method, calls_[method].load() + n}] = std::move(status);
}

void FailingQueue::ThrowOnNthCall(Method method, int n) {
  std::lock_guard lock(mu_);
  throws_.insert({method, calls_[method].load() + n});
}

std::optional<Status> FailingQueue::Count(Method method) {
  const int call = ++calls_[method];
  std::lock_guard lock(mu_);
  if (throws_.erase({method, call}) > 0) throw std::runtime_error("injected: the store threw");
  auto it = failures_.find({method, call});
  if (it == failures_.end()) return std::nullopt;
  Status status = std::move(it->second);
  failures_.erase(it);
  return status;
}

Result<std::vector<store::QueueItem>> FailingQueue::Claim(int max, TimePoint now,
                                                          std::chrono::milliseconds lease,
                                                          std::vector<store::RunState>* states) {
  if (auto failure = Count(kClaim)) return *failure;
  {
    std::unique_lock lock(mu_);
    resumed_.wait(lock, [&] { return !paused_; });
  }
  auto items = real_.Claim(max, now, lease, withhold_states_ ? nullptr : states);
  if (items.ok()) claimed_ += static_cast<int>(items->size());
  return items;
}

void FailingQueue::PauseClaims() {
  std::lock_guard lock(mu_);
  paused_ = true;
}

void FailingQueue::ResumeClaims() {
  {
    std::lock_guard lock(mu_);
    paused_ = false;
  }
  resumed_.notify_all();
}

Result<store::RunState> FailingQueue::LoadRunState(const std::string& run_id) {
  if (auto failure = Count(kLoadRunState)) return *failure;
  return real_.LoadRunState(run_id);
}

Status FailingQueue::Apply(const store::QueueItem& item, const store::Transition& t,
                           TimePoint now) {
  if (auto failure = Count(kApply)) return *failure;
  return real_.Apply(item, t, now);
}

Result<store::Applied> FailingQueue::ApplyAndKeep(const store::QueueItem& item,
                                                  const store::Transition& t, TimePoint now,
                                                  std::chrono::milliseconds lease) {
  if (auto failure = Count(kApply)) return *failure;
  return real_.ApplyAndKeep(item, t, now, lease);
}

Status FailingQueue::RenewLease(const store::QueueItem& item, TimePoint until) {
  if (auto failure = Count(kRenewLease)) return *failure;
  return real_.RenewLease(item, until);
}

Result<store::RecordedCheckpoint> FailingQueue::Checkpoint(
    const store::QueueItem& item, const std::vector<store::StepRecord>& steps,
    const std::vector<store::AttemptRecord>& attempts, TimePoint now, int64_t step_limit) {
  if (auto failure = Count(kCheckpoint)) return *failure;
  return real_.Checkpoint(item, steps, attempts, now, step_limit);
}

Status FailingQueue::ReleaseLeases(const std::vector<store::QueueItem>& items, TimePoint now) {
  if (auto failure = Count(kReleaseLeases)) return *failure;
  return real_.ReleaseLeases(items, now);
}

Result<int64_t> FailingQueue::QueueDepth() {
  if (auto failure = Count(kQueueDepth)) return *failure;
  return real_.QueueDepth();
}

Result<store::QueueStats> FailingQueue::GetQueueStats(TimePoint now) {
  if (auto failure = Count(kGetQueueStats)) return *failure;
  return real_.GetQueueStats(now);
}

Result<std::vector<std::string>> FailingQueue::ExpireLaneHeads(TimePoint now) {
  if (auto failure = Count(kExpireLaneHeads)) return *failure;
  return real_.ExpireLaneHeads(now);
}

namespace {

store::FunctionRecord Function(const std::string& id, int retries) {
  store::FunctionRecord f;
  f.id = id;
  f.app_id = "app";
  f.name = id;
  f.config = {{"id", id},
              {"steps",
               {{"step",
                 {{"runtime", {{"url", "http://127.0.0.1:1/api?fnId=" + id + "&stepId=step"}}},
                  {"retries", {{"attempts", retries}}}}}}}};
  return f;
}

}  // namespace

ExecutorHarness::ExecutorHarness() {
  // Every test controls time: the backoff is exactly the schedule, and the lease is long
  // enough that no heartbeat renews it while a test runs.
  options_.retry.schedule = {10s, 20s};
  options_.retry.max_jitter = 0ms;
  options_.lease = 60s;
  options_.poll_interval = 2ms;
  options_.seed = 1;
  options_.observer = &observer_;
}

void OpenStoreWithApp(const std::string& path, std::vector<store::FunctionRecord> functions,
                      std::unique_ptr<store::Store>& out) {
  auto opened = store::OpenSqliteStore({.path = path});
  ASSERT_THAT(opened, IsOk());
  ASSERT_THAT((*opened)->Migrate(), IsOk());
  store::AppSync sync;
  sync.app = {"app", "http://127.0.0.1:1/api", "cpp", "", "sum", 0, 0};
  sync.functions = std::move(functions);
  ASSERT_THAT((*opened)->SyncApp(sync), IsOk());
  out = std::move(*opened);
}

void ExecutorHarness::SetUp() {
  dir_ = testing::TempDir("funcky-mid-");
  OpenStoreWithApp(dir_ + "/funcky.db", {Function(kFunction, 2), Function(kOrdered, 0)}, store_);
  ASSERT_NE(store_, nullptr);
  queue_ = std::make_unique<FailingQueue>(*store_);
}

void ExecutorHarness::TearDown() {
  if (executor_) {
    executor_->Stop();
    // Lets the dispatcher see the stop and the calls in flight finish.
    EXPECT_TRUE(RunUntil([&] { return executor_->in_flight() == 0; }));
    io_.poll();
    blocking_.join();
    executor_.reset();
  }
  queue_.reset();
  store_.reset();
  if (!dir_.empty()) std::filesystem::remove_all(dir_);
}

void ExecutorHarness::StartExecutor() {
  executor_ =
      std::make_unique<executor::Executor>(io_, blocking_, *queue_, clock_, transport_, options_);
  executor_->Start();
}

namespace {

// An event "test/go" ({"n": 1}) that starts one run of `function_id`.
store::NewEvent GoEvent(TimePoint now, const std::string& function_id,
                        std::optional<std::string> lane_key) {
  store::NewEvent ne;
  ne.event.internal_id = NewUlid(UnixMillis(now));
  ne.event.id = ne.event.internal_id;
  ne.event.name = "test/go";
  ne.event.payload = {{"name", "test/go"}, {"data", {{"n", 1}}}};
  ne.event.received_at_ms = UnixMillis(now);
  store::NewRun run;
  run.run_id = NewUlid(UnixMillis(now));
  run.function_id = function_id;
  run.lane_key = std::move(lane_key);
  ne.runs.push_back(run);
  return ne;
}

}  // namespace

std::string ExecutorHarness::StartRun(const std::string& function_id,
                                      std::optional<std::string> lane_key) {
  store::NewEvent ne = GoEvent(clock_.Now(), function_id, std::move(lane_key));
  EXPECT_THAT(store_->IngestEvents({ne}, clock_.Now(), nullptr), IsOk());
  return ne.runs[0].run_id;
}

std::string ExecutorHarness::StartRunHere(const std::string& function_id) {
  store::NewEvent ne = GoEvent(clock_.Now(), function_id, std::nullopt);
  ne.runs[0].may_start_here = true;
  const int reserved = executor_->ReserveCalls(1);
  if (reserved != 1) {
    ADD_FAILURE() << "no call slot to reserve";
    return "";
  }
  store::StartedCalls started{.max = reserved, .lease = executor_->lease()};
  EXPECT_THAT(store_->IngestEvents({ne}, clock_.Now(), nullptr, &started), IsOk());
  if (started.items.size() != 1) {
    ADD_FAILURE() << "the run did not start at its ingest";
    executor_->StartCalls({}, reserved);
    return "";
  }
  executor_->StartCalls(std::move(started), reserved);
  return ne.runs[0].run_id;
}

bool ExecutorHarness::RunUntil(const std::function<bool()>& done) {
  const auto give_up = std::chrono::steady_clock::now() + 10s;
  while (!done()) {
    if (std::chrono::steady_clock::now() > give_up) return false;
    if (io_.stopped()) io_.restart();
    io_.run_for(1ms);
  }
  return true;
}

bool ExecutorHarness::RunClaimRounds(int n) {
  const int until = queue_->calls(FailingQueue::kClaim) + n;
  return RunUntil([&] { return queue_->calls(FailingQueue::kClaim) >= until; });
}

store::RunRecord ExecutorHarness::Run(const std::string& run_id) {
  auto run = store_->GetRun(run_id);
  EXPECT_THAT(run, IsOk());
  return run.ok() ? *run : store::RunRecord{};
}

int ExecutorHarness::RunRowReqVersion(const std::string& run_id) {
  auto db = store::OpenSqliteDatabase({.path = dir_ + "/funcky.db"});
  if (!db.ok()) return -2;
  int version = -2;
  Status read = (*db)->Transact([&](store::sql::Tx& tx) {
    store::sql::Rows rows = tx.Query("SELECT req_version FROM runs WHERE id = $1", {run_id});
    if (!rows.empty()) version = rows[0].Int32(0);
    return Status::Ok();
  });
  return read.ok() ? version : -2;
}

std::vector<store::StepRecord> ExecutorHarness::Steps(const std::string& run_id) {
  auto steps = store_->GetSteps(run_id);
  EXPECT_THAT(steps, IsOk());
  return steps.ok() ? *steps : std::vector<store::StepRecord>{};
}

std::vector<store::AttemptRecord> ExecutorHarness::Attempts(const std::string& run_id) {
  auto attempts = store_->GetAttempts(run_id);
  EXPECT_THAT(attempts, IsOk());
  return attempts.ok() ? *attempts : std::vector<store::AttemptRecord>{};
}

}  // namespace funcky::mid
