#include "coordinator/executor/executor.h"

#include <algorithm>
#include <condition_variable>
#include <cstdlib>
#include <map>
#include <mutex>
#include <optional>
#include <random>
#include <thread>

#include <spdlog/spdlog.h>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/thread_pool.hpp>
#include <boost/asio/use_awaitable.hpp>

#include "common/json_parse.h"
#include "common/offload.h"
#include "common/step_id.h"
#include "coordinator/executor/transition.h"
#include "coordinator/logging/log.h"

namespace funcky::executor {

namespace asio = boost::asio;
using store::Json;

namespace {

// A run's error in a log line: its JSON, cut to 2,000 bytes (a host's error may be megabytes).
// A run's state, a host's reply or an error larger than this is written or read on the
// blocking pool, not on the I/O thread, whose every millisecond holds every call, the HTTP
// server and the leases' renewals: a call carrying 30 MiB of state took some 0.2 s there to
// be written canonically and signed, and 32 of them at once held it past a lease.
constexpr size_t kInlineJsonBytes = 256 << 10;

std::string ErrorForLog(const store::Json& error) {
  constexpr size_t kMax = 2000;
  if (JsonLargerThan({&error}, 4 * kMax)) {
    // Not written whole to be cut: its name and the start of its message.
    auto field = [&](const char* key) -> const store::Json* {
      if (!error.is_object()) return nullptr;
      auto it = error.find(key);
      return it == error.end() ? nullptr : &*it;
    };
    store::Json brief = store::Json::object();
    for (const char* key : {"name", "message"}) {
      if (const store::Json* value = field(key); value && value->is_string()) {
        brief[key] = value->get_ref<const std::string&>().substr(0, kMax);
      }
    }
    if (error.is_string()) brief = error.get_ref<const std::string&>().substr(0, kMax);
    std::string text = brief.dump(-1, ' ', false, store::Json::error_handler_t::replace);
    if (text.size() > kMax) text.resize(kMax);
    return text + "… (cut: the error is over " + std::to_string(4 * kMax) + " bytes)";
  }
  std::string text = error.dump(-1, ' ', false, store::Json::error_handler_t::replace);
  if (text.size() <= kMax) return text;
  const size_t whole = text.size();
  text.resize(kMax);
  return text + "… (" + std::to_string(whole) + " bytes)";
}

class HttpTransport final : public HostTransport {
 public:
  explicit HttpTransport(HttpClient& client) : client_(client) {}
  asio::awaitable<Result<HttpResponse>> Call(HttpRequest request) override {
    co_return co_await client_.Call(std::move(request));
  }

 private:
  HttpClient& client_;
};

}  // namespace

std::unique_ptr<HostTransport> MakeHttpTransport(HttpClient& client) {
  return std::make_unique<HttpTransport>(client);
}

struct Executor::Impl : std::enable_shared_from_this<Impl> {
  Impl(asio::io_context& io, asio::thread_pool& blocking, store::QueueStore& queue,
       const Clock& clock, HostTransport& transport, ExecutorOptions options)
      : io(io),
        blocking(blocking),
        queue(queue),
        clock(clock),
        transport(transport),
        options(std::move(options)),
        timer(io) {}

  asio::io_context& io;
  asio::thread_pool& blocking;
  store::QueueStore& queue;
  const Clock& clock;
  HostTransport& transport;
  ExecutorOptions options;
  asio::steady_timer timer;
  std::atomic<bool> stopping{false};
  std::atomic<bool> wake_pending{false};
  std::atomic<int> in_flight{0};
  // Of in_flight, the slots taken for a claim or an ingest still under way (no call yet).
  std::atomic<int> reserved{0};
  // The last claim could reserve fewer call slots than a claim takes when none is in use
  // (claim_batch, or max_in_flight if fewer): a slot freed may let due work start.
  std::atomic<bool> slots_short{false};

  // The items this executor holds a lease on and has not applied an outcome for, from the
  // moment the claim returns (on the blocking pool) until Process ends (on the io_context).
  // A claim running when the executor stops gives its items back itself; ReleaseLeases waits
  // for claims in progress, so nothing claimed during shutdown waits out its lease.
  std::mutex hold_mu;
  std::condition_variable claims_done;
  int claims_running = 0;                    // guarded by hold_mu
  std::map<int64_t, store::QueueItem> held;  // guarded by hold_mu

  // Claims up to `want` items and holds them; `states` receives their runs' states.
  Result<std::vector<store::QueueItem>> ClaimAndHold(int want,
                                                     std::vector<store::RunState>* states) {
    {
      std::lock_guard lock(hold_mu);
      if (stopping) return std::vector<store::QueueItem>{};
      ++claims_running;
    }
    auto claimed = queue.Claim(want, clock.Now(), options.lease, states);
    if (!claimed.ok()) {
      EndClaim();
      return claimed;
    }
    if (!Hold(*claimed)) return std::vector<store::QueueItem>{};
    return claimed;
  }

  // Apply; for a run going on at once, its next call comes back leased and held, unless the
  // executor is stopping (then it is given back at once).
  Result<store::Applied> ApplyAndHold(const store::QueueItem& item, const store::Transition& t) {
    bool keep = false;
    {
      std::lock_guard lock(hold_mu);
      if (!stopping) {
        keep = true;
        ++claims_running;
      }
    }
    if (!keep) {
      Status applied = queue.Apply(item, t, clock.Now());
      if (store::IsRunEndedMeanwhile(applied)) return store::Applied{.run_ended = true};
      if (!applied.ok()) return applied;
      return store::Applied();  // whether the end's events were stored is not known
    }
    auto applied = queue.ApplyAndKeep(item, t, clock.Now(), options.lease);
    if (!applied.ok() || !applied->kept) {
      EndClaim();
      return applied;
    }
    if (!Hold({applied->kept->item})) applied->kept.reset();
    return applied;
  }

  // Ends a claim (or a kept call) that leased nothing.
  void EndClaim() {
    std::lock_guard lock(hold_mu);
    --claims_running;
    claims_done.notify_all();
  }

  // Ends a claim that leased `items`: held, or given back at once when the executor stopped
  // meanwhile (false). ReleaseLeases waits until this returns.
  bool Hold(const std::vector<store::QueueItem>& items) {
    std::unique_lock lock(hold_mu);
    if (!stopping) {
      // A kept call reuses its item: it replaces the call before it (its lease token too).
      for (const store::QueueItem& item : items) held.insert_or_assign(item.id, item);
      --claims_running;
      claims_done.notify_all();
      return true;
    }
    lock.unlock();
    if (!items.empty()) (void)queue.ReleaseLeases(items, clock.Now());
    EndClaim();
    return false;
  }

  // Forgets `item` as held: only under its own lease. An item leased anew meanwhile (this
  // call's lease lost, the item claimed again here) is another call's to forget, and a drain
  // gives that one back.
  void Unhold(const store::QueueItem& item) {
    std::lock_guard lock(hold_mu);
    auto it = held.find(item.id);
    if (it != held.end() && it->second.lease_token == item.lease_token) held.erase(it);
  }

  // Runs `fn` on the blocking pool and resumes on the io_context.
  template <typename Fn>
  asio::awaitable<std::invoke_result_t<Fn&>> Offload(Fn fn) {
    co_return co_await funcky::Offload(blocking, std::move(fn));
  }

  // Runs `fn` on the blocking pool when `large` (work on JSON over kInlineJsonBytes would hold
  // the I/O thread), here otherwise.
  template <typename Fn>
  asio::awaitable<std::invoke_result_t<Fn&>> OffloadIf(bool large, Fn fn) {
    if (!large) co_return fn();
    co_return co_await Offload(std::move(fn));
  }

  // BuildCall, on the blocking pool when the state is large (kInlineJsonBytes).
  asio::awaitable<Result<HttpRequest>> BuildCallFor(const store::RunState& state,
                                                    const store::QueueItem& item) {
    const TimePoint now = clock.Now();
    co_return co_await OffloadIf(CallStateLargerThan(state, kInlineJsonBytes),
                                 [&] { return BuildCall(state, item, options.call, now); });
  }

  // Takes up to `want` of the free call slots (of max_in_flight) for a claim or an ingest,
  // counted in `reserved` until it gives them back or makes calls of them; returns how many.
  int Reserve(int want) {
    int current = in_flight.load();
    for (;;) {
      const int n = std::min(want, options.max_in_flight - current);
      if (n <= 0) return 0;
      if (in_flight.compare_exchange_weak(current, current + n)) {
        reserved += n;
        return n;
      }
    }
  }

  // Executor::ReserveCalls and StartCalls.
  int ReserveCalls(int want) {
    std::lock_guard lock(hold_mu);
    if (stopping) return 0;
    const int n = Reserve(want);
    if (n > 0) ++claims_running;  // ReleaseLeases waits for StartCalls
    return n;
  }
  void StartCalls(store::StartedCalls calls, int slots) {
    if (slots <= 0) return;
    const int n = static_cast<int>(calls.items.size());
    if (!Hold(calls.items)) {  // stopped meanwhile: given back
      in_flight -= slots;
      reserved -= slots;
      return;
    }
    in_flight -= slots - n;
    reserved -= slots;
    if (n == 0) return;
    asio::post(io, [self = shared_from_this(), calls = std::move(calls)]() mutable {
      for (size_t i = 0; i < calls.items.size(); ++i) {
        std::optional<store::RunState> state;
        if (calls.states.size() == calls.items.size()) state = std::move(calls.states[i]);
        asio::co_spawn(self->io, self->Process(std::move(calls.items[i]), std::move(state)),
                       asio::detached);
      }
    });
  }

  void Wake() {
    wake_pending = true;
    asio::post(io, [self = shared_from_this()] { self->timer.cancel(); });
  }

  asio::awaitable<void> Dispatch() {
    auto self = shared_from_this();
    AssertOnIoThread();
    bool backoff_on_error = false;
    while (!stopping) {
      // An exception (none is expected: the store answers with a status) must not end the
      // claim loop, leaving a coordinator that serves its API but makes no call: it is logged
      // and the loop goes on after a pause.
      bool failed = false;
      try {
        co_await DispatchOnce(backoff_on_error);
      } catch (const std::exception& e) {
        spdlog::error("the claim loop failed unexpectedly: {}; it goes on in a second",
                      std::string_view(e.what()).substr(0, 200));
        failed = true;
      }
      if (failed) {
        backoff_on_error = true;
        timer.expires_after(std::chrono::seconds(1));
        co_await timer.async_wait(asio::as_tuple(asio::use_awaitable));
      }
    }
  }

  // One round of Dispatch: a claim, and the wait before the next unless one is due at once.
  asio::awaitable<void> DispatchOnce(bool& backoff_on_error) {
    wake_pending = false;
    co_await ExpireLaneHeads();
    bool full_batch = false;
    bool claimed_none = false;
    if (co_await GatherSlots()) co_return;
    // The slots the claim may fill, taken before it (an ingest may take some meanwhile).
    const int want = Reserve(options.claim_batch);
    slots_short = want < std::min(options.claim_batch, options.max_in_flight);
    if (want > 0) {
      std::vector<store::RunState> states;
      Result<std::vector<store::QueueItem>> claimed = Internal("not claimed");
      try {  // the slots reserved are given back whatever happens
        claimed = co_await Offload([this, want, &states] { return ClaimAndHold(want, &states); });
      } catch (const std::exception& e) {
        claimed =
            Internal("the claim threw: " + std::string(std::string_view(e.what()).substr(0, 200)));
      }
      // Read once: a Stop() between two reads left the claimed slots counted with no Process
      // to give them back (the drain then waited its whole timeout).
      const bool stopped = stopping;
      in_flight -= want - (claimed.ok() && !stopped ? static_cast<int>(claimed->size()) : 0);
      reserved -= want;
      if (!claimed.ok()) {
        spdlog::warn("claiming work failed: {}", claimed.status().ToString());
        backoff_on_error = true;
      } else {
        backoff_on_error = false;
        full_batch = static_cast<int>(claimed->size()) == want;
        claimed_none = claimed->empty();
        // Stopped while claiming: start no call; ReleaseLeases gives the items back.
        if (stopped) co_return;
        for (size_t i = 0; i < claimed->size(); ++i) {
          std::optional<store::RunState> state;
          if (states.size() == claimed->size()) state = std::move(states[i]);
          asio::co_spawn(io, Process(std::move((*claimed)[i]), std::move(state)), asio::detached);
        }
      }
    }
    if (full_batch && !stopping && in_flight < options.max_in_flight) co_return;
    if (wake_pending && !backoff_on_error) co_return;
    // Busy (some work claimed, more may come due any moment): look again soon. Idle: wait
    // for what is known to come (IdleWait).
    std::chrono::milliseconds wait = std::min(options.poll_interval, kBusyPoll);
    if (backoff_on_error) {
      wait = std::chrono::milliseconds(1000);
    } else if (options.max_in_flight == 0) {
      wait = options.poll_interval;  // makes no calls: only its housekeeping is due
    } else if (claimed_none) {
      wait = co_await IdleWait();
    }
    if (wake_pending || stopping) co_return;
    timer.expires_after(wait);
    co_await timer.async_wait(asio::as_tuple(asio::use_awaitable));
  }

  // Nearly full, with slow calls (the hosts have nearly max_in_flight calls in hand and take
  // a while over them: a call started now would queue behind theirs): a claim of the one or
  // two slots a finished call frees costs a transaction as a claim of many does, so the first
  // slot freed waits up to claim_gather for more, until a quarter of a claim's worth
  // (claim_batch, or max_in_flight if fewer) is free. With a slow host every call's end used
  // to claim one item. Fast calls are not held back: the calls in hand are then mostly this
  // coordinator's own work, and a slot refilled late is time lost (a lane's next run, too).
  // True when it waited (look again); false when the claim should go now.
  asio::awaitable<bool> GatherSlots() {
    const int free_slots = options.max_in_flight - in_flight.load();
    const int enough = std::max(1, std::min(options.claim_batch, options.max_in_flight) / 4);
    if (free_slots <= 0 || free_slots >= enough || options.claim_gather.count() <= 0 ||
        !call_time || *call_time < options.claim_gather_past) {
      gather_until.reset();
      co_return false;
    }
    const auto now = std::chrono::steady_clock::now();
    if (!gather_until) gather_until = now + options.claim_gather;
    if (now >= *gather_until) {
      gather_until.reset();
      co_return false;
    }
    slots_short = true;  // each call's end looks again (Wake), sooner than the timer
    timer.expires_at(*gather_until);
    co_await timer.async_wait(asio::as_tuple(asio::use_awaitable));
    co_return true;
  }
  // When the slots being gathered are claimed anyway (GatherSlots).
  std::optional<std::chrono::steady_clock::time_point> gather_until;
  // How long the hosts' calls take of late: a moving mean, each call weighing an eighth.
  std::optional<std::chrono::steady_clock::duration> call_time;
  void NoteCallTime(std::chrono::steady_clock::duration took) {
    call_time = call_time ? *call_time + (took - *call_time) / 8 : took;
  }

  // How long to wait when a claim found nothing: until the queue's next item becomes visible
  // (a sleep, a retry, an expiring lease), at most poll_interval; what this coordinator
  // accepts or frees wakes it earlier (Wake), and so do other coordinators' notifications
  // where the store has them (Store::WatchForWork).
  asio::awaitable<std::chrono::milliseconds> IdleWait() {
    auto next = co_await Offload([this] { return queue.NextVisible(); });
    if (!next.ok() || !*next) co_return options.poll_interval;
    const auto until = std::chrono::duration_cast<std::chrono::milliseconds>(**next - clock.Now());
    // Visible now but not claimed: another claimer's claim holds it at the moment.
    if (until <= std::chrono::milliseconds(0)) co_return std::min(options.poll_interval, kBusyPoll);
    co_return std::min(options.poll_interval, until + std::chrono::milliseconds(1));
  }
  static constexpr std::chrono::milliseconds kBusyPoll{25};
  // How long a call whose handling failed unexpectedly waits before it is made again.
  static constexpr std::chrono::seconds kFailedCallPause{10};
  // A run whose calls go on at once but record nothing (a host answering a discovery with only
  // DiscoveryRequest, or a planned step with `206 []` and planning it again) would be called
  // in a loop as fast as the host answers, with no attempt counted and no new step for the
  // step limit: after this many such calls in a row its next call waits kNoProgressPause.
  static constexpr int kMaxCallsWithoutProgress = 16;
  static constexpr std::chrono::seconds kNoProgressPause{1};

  // The lease of one claimed item, renewed while its call is in flight.
  struct Heartbeat {
    explicit Heartbeat(asio::io_context& io) : timer(io) {}
    asio::steady_timer timer;
    bool done = false;  // the outcome is applied (or dropped): stop renewing
    void Stop() {
      done = true;
      timer.cancel();
    }
  };

  // The executor's other state (rng, last_expiry) is touched without locks: only ever on
  // the one thread that runs the io_context. Checked, not assumed: a second I/O thread
  // would be a data race, so it stops the process at once.
  std::thread::id io_thread;
  void AssertOnIoThread() {
    if (io_thread == std::thread::id()) io_thread = std::this_thread::get_id();
    if (std::this_thread::get_id() != io_thread) {
      spdlog::critical("the executor ran on a second I/O thread; it needs exactly one");
      std::abort();
    }
  }

  // Makes the call of `first`, then, for as long as the run goes on at once with one next
  // call (leased to this executor by the Apply that recorded the step), that call too: no
  // claim and no other coordinator between the steps of a running run.
  // `state` is the run's state as the claim read it.
  asio::awaitable<void> Process(store::QueueItem first, std::optional<store::RunState> state) {
    auto self = shared_from_this();
    AssertOnIoThread();
    std::optional<store::QueueItem> item = std::move(first);
    // The run's state for the call to make: the claim's, then the kept call's.
    std::optional<store::RunState> carried = std::move(state);
    bool ended_alone = false;        // the last call ended a run nothing waits behind
    int calls_without_progress = 0;  // kept calls in a row that recorded no step
    while (item) {
      std::optional<store::QueueItem> kept;  // the run's next call, held
      ended_alone = false;
      auto beat = std::make_shared<Heartbeat>(io);
      asio::co_spawn(io, KeepLease(*item, beat), asio::detached);
      // Whatever happens while handling the item, the heartbeat stops and the slot is freed:
      // a lease renewed for a call nobody finishes would hold its lane forever.
      bool failed = false;
      try {
        co_await Handle(*item, *beat, kept, carried, ended_alone, calls_without_progress);
      } catch (const std::exception& e) {
        failed = true;
        logging::Error({.run_id = item->run_id, .step_id = item->step_id},
                       "run {}: handling a call failed unexpectedly: {}; the call is given back",
                       item->run_id, std::string_view(e.what()).substr(0, 200));
      }
      const bool renewing = !beat->done;
      beat->Stop();
      std::vector<store::QueueItem> give_back;
      if (failed && renewing) give_back.push_back(*item);
      const bool spinning = kept && calls_without_progress >= kMaxCallsWithoutProgress;
      if (spinning && !failed && !stopping) {
        logging::Warn({.run_id = item->run_id, .step_id = kept->step_id},
                      "run {}: {} calls in a row recorded no step (the host answers without "
                      "progress); its next call waits {} s",
                      item->run_id, calls_without_progress, kNoProgressPause.count());
      }
      // Stopping: a drain lets calls in flight finish, it starts none.
      if (kept && (failed || stopping || spinning)) give_back.push_back(*kept);
      if (!give_back.empty()) {
        // A failure that would come again (a reply that makes the handling throw) is not
        // made again at once, in a loop against the host: the call waits a while.
        const TimePoint at = clock.Now() + (failed     ? kFailedCallPause
                                            : spinning ? kNoProgressPause
                                                       : TimePoint::duration(0));
        co_await Offload([&] { return queue.ReleaseLeases(give_back, at); });
      }
      // The kept call, held under the same item id, is not the finished call's to unhold.
      if (!kept || kept->id != item->id) Unhold(*item);
      item.reset();
      if (kept) {
        if (failed || stopping || spinning) {
          Unhold(*kept);
          carried.reset();
        } else {
          item = std::move(kept);
        }
      }
    }
    --in_flight;
    // The slot freed may start due work, and what the call left (a retry, a sleep, another
    // call, the next run of its lane or of its function's concurrency) may be due soon: a
    // claim looks. Not after the end of a run outside a lane and any concurrency limit when
    // slots were not short: nothing can have become due (a claim per run, at idle).
    if (!ended_alone || slots_short) Wake();
  }

  // Renews the item's lease every third of the lease until `beat` is done, so the lease can
  // be short: a coordinator that dies loses its calls to others within one lease.
  asio::awaitable<void> KeepLease(store::QueueItem item, std::shared_ptr<Heartbeat> beat) {
    auto self = shared_from_this();
    // No call legitimately holds its item longer than its timeout plus the store work
    // around it: past that, stop renewing and let the lease expire, whatever went wrong.
    const auto renew_until =
        std::chrono::steady_clock::now() + options.call_timeout + 2 * options.lease;
    while (!beat->done) {
      if (std::chrono::steady_clock::now() > renew_until) {
        logging::Error({.run_id = item.run_id, .step_id = item.step_id},
                       "run {}: the call has held its item past its timeout; no longer renewing "
                       "its lease",
                       item.run_id);
        break;
      }
      beat->timer.expires_after(options.lease / 3);
      co_await beat->timer.async_wait(asio::as_tuple(asio::use_awaitable));
      if (beat->done) break;
      Status renewed =
          co_await Offload([&] { return queue.RenewLease(item, clock.Now() + options.lease); });
      if (beat->done) break;
      if (renewed.code() == StatusCode::kAborted) {
        logging::Warn({.run_id = item.run_id, .step_id = item.step_id},
                      "run {}: {}; its outcome will be dropped", item.run_id, renewed.message());
        break;
      }
      if (!renewed.ok()) {
        logging::Warn({.run_id = item.run_id, .step_id = item.step_id},
                      "run {}: renewing the lease failed: {}", item.run_id, renewed.ToString());
      }
    }
  }

  // Makes the call of `item` and records its outcome; `kept` receives the run's next call
  // when the record leased it to this executor (ApplyAndHold).
  // `carried`, when set, is the run's state (as the claim read it, or the previous call's
  // record applied to what that call was given): no load. It is set again for the kept call.
  // `ended_alone`: set when the call ended its run, which was in no lane and whose function
  // has no concurrency limit. `calls_without_progress` counts the kept calls in a row after
  // which the run had no more steps recorded than before (checkpointed steps count).
  asio::awaitable<void> Handle(const store::QueueItem& item, Heartbeat& beat,
                               std::optional<store::QueueItem>& kept,
                               std::optional<store::RunState>& carried, bool& ended_alone,
                               int& calls_without_progress) {
    // A failure to load is transient (a database restart): retry, backing off up to a second,
    // for as long as half the lease (the heartbeat keeps the lease once the database is
    // back), then give the claim back rather than hold it until the lease expires.
    Result<store::RunState> state = Unavailable("not loaded");
    if (carried) {  // the run's state as the claim or the previous call left it
      state = std::move(*carried);
      carried.reset();
    }
    const TimePoint give_up = clock.Now() + options.lease / 2;
    for (int tries = 0; !state.ok(); ++tries) {
      state = co_await Offload([&] { return queue.LoadRunState(item.run_id); });
      if (state.ok() || state.status().code() != StatusCode::kUnavailable) break;
      if (clock.Now() >= give_up || stopping) break;
      asio::steady_timer wait(io,
                              std::chrono::milliseconds(std::min(100 << std::min(tries, 4), 1000)));
      co_await wait.async_wait(asio::as_tuple(asio::use_awaitable));
    }
    if (!state.ok()) {
      logging::Warn({.run_id = item.run_id, .step_id = item.step_id},
                    "run {}: cannot load state: {}; giving the call back", item.run_id,
                    state.status().ToString());
      beat.Stop();
      co_await Offload([&] { return queue.ReleaseLeases({item}, clock.Now()); });
      co_return;  // released, or else the lease expires and the item is claimed again
    }
    store::Transition t;
    // The run's recorded steps, as the apply that kept a call saw them (unset: the view here
    // is whole).
    std::optional<int64_t> kept_steps;
    if (item.resume) {
      t = ResumeTransition(item, clock.Now());
    } else if (!store::IsTerminalStatus(state->run.status) &&
               state->run.status != store::kBlocked) {
      // (A blocked lane head's call, its holder gone: its outcome would be dropped, and the
      // head waits for an operator. The empty transition below drops the item.)
      if (static_cast<int64_t>(state->steps.size()) > options.step_limit) {
        // Past its step limit already, by the steps a host checkpointed during a call whose
        // reply then recorded more (DecideTransition counts the run as its call found it):
        // not called again. The call's failed attempt says why on the run's timeline.
        Json error = StepLimitError(options.step_limit);
        const int64_t now_ms = UnixMillis(clock.Now());
        t.attempts.push_back(
            {item.step_id, item.step_id, item.attempt, "failed", error, now_ms, now_ms});
        t.move = store::Transition::End{store::kFailed, nullptr, std::move(error)};
      } else if (state->unloaded_step_bytes > 0) {
        // Its steps were too many bytes to read (store::kMaxLoadedStepBytes): no call can carry
        // them. The call's failed attempt says why on the run's timeline.
        Json error = {
            {"name", "StateTooLarge"},
            {"message", "the run's memoized steps are " +
                            std::to_string(state->unloaded_step_bytes) + " bytes, more than the " +
                            std::to_string(store::kMaxLoadedStepBytes) +
                            " a run's state is read with"}};
        const int64_t now_ms = UnixMillis(clock.Now());
        t.attempts.push_back(
            {item.step_id, item.step_id, item.attempt, "failed", error, now_ms, now_ms});
        t.move = store::Transition::End{store::kFailed, nullptr, std::move(error)};
      } else if (auto request = co_await BuildCallFor(*state, item); !request.ok()) {
        const bool too_large = request.status().code() == StatusCode::kResourceExhausted;
        t.move = store::Transition::End{store::kFailed,
                                        nullptr,
                                        {{"name", too_large ? "StateTooLarge" : "ConfigError"},
                                         {"message", request.status().message()}}};
      } else {
        request->timeout = options.call_timeout;
        // How long this coordinator waits for the answer: a host that could not start the
        // call within it (its threads busy) need not run it, as nobody waits for its answer.
        request->headers.emplace_back(
            "X-Funcky-Call-Timeout-Ms",
            std::to_string(
                std::chrono::duration_cast<std::chrono::milliseconds>(options.call_timeout)
                    .count()));
        CallOutcome outcome;
        outcome.started = clock.Now();
        if (options.observer && state->steps.empty() && item.attempt == 0 &&
            item.step_id == kDiscoveryStepId) {
          options.observer->FirstCall(
              state->function.id,
              outcome.started - TimePoint(std::chrono::milliseconds(state->run.created_at_ms)));
        }
        const auto sent = std::chrono::steady_clock::now();
        outcome.reply = co_await transport.Call(std::move(*request));
        outcome.ended = clock.Now();
        const auto took = std::chrono::steady_clock::now() - sent;  // the wall clock may step
        NoteCallTime(took);
        if (outcome.reply.ok() && IsStreamedAnswer(*outcome.reply)) {
          HttpResponse streamed = std::move(*outcome.reply);
          const bool large = streamed.body.size() > kInlineJsonBytes;
          outcome.reply =
              co_await OffloadIf(large, [&] { return UnwrapStreamedAnswer(std::move(streamed)); });
        }
        // A large reply is parsed and decided on the blocking pool, with a generator of its
        // own (`rng` is the I/O thread's).
        const bool large = outcome.reply.ok() && outcome.reply->body.size() > kInlineJsonBytes;
        std::optional<std::mt19937_64> own_rng;
        if (large) own_rng.emplace(rng());
        t = co_await OffloadIf(large, [&] {
          return DecideTransition(*state, item, outcome, options.retry, own_rng ? *own_rng : rng,
                                  options.step_limit);
        });
        if (options.observer) ReportCall(state->function.id, outcome, took, t);
      }
      ParkFailedLaneHead(state->run, t);
      if (Status started = co_await StartInvocations(*state, t); !started.ok()) {
        // The callee's run may have been stored: failing the invoker could leave a callee
        // running for an invoker told it never started. The call is made again instead, once
        // its lease expires (not at once: the database is likely away).
        logging::Warn({.run_id = item.run_id, .step_id = item.step_id},
                      "run {}: cannot start an invocation: {}; the call will be made again when "
                      "its lease expires",
                      item.run_id, started.ToString());
        beat.Stop();
        co_return;
      }
    }
    if (state->run.lane_key) t.lane = {{state->run.function_id, *state->run.lane_key}};
    // A run's row holds its request version once it ends (its steps held it until then).
    if ((t.end() || t.park()) && !t.req_version && state->run.req_version >= 0) {
      t.req_version = state->run.req_version;
    }
    const logging::Fields fields{
        .run_id = item.run_id, .function_id = state->function.id, .step_id = item.step_id};
    // An event received from here on either sees the stored wait or is found by look-back.
    if (auto* next = std::get_if<store::Transition::Continue>(&t.move)) {
      const TimePoint registering = clock.Now();
      for (store::NewWait& wait : next->waits) wait.lookback_from = registering - wait.lookback;
    }
    bool end_events_stored = false;
    bool outcome_refused = false;  // the store refused the outcome: the run fails instead
    for (int tries = 0;; ++tries) {
      Result<store::Applied> applied = co_await Offload([&] {
        if (auto* ending = std::get_if<store::Transition::End>(&t.move);
            ending && options.events && tries == 0) {
          ending->events = options.events->EndEventsToStore(
              *state, ending->status, ending->output, ending->error, &ending->functions_generation);
        }
        return ApplyAndHold(item, t);
      });
      const Status& status = applied.status();
      if (applied.ok() || status.code() == StatusCode::kAborted) beat.Stop();
      if (applied.ok() && applied->run_ended) {
        // Cancelled (or ended otherwise, or its lane head blocked) while the host ran the call:
        // nothing was recorded, and nothing of the outcome is announced.
        logging::Info(fields,
                      "run {} ended, or blocked its lane, while its call {} was in flight; the "
                      "outcome is dropped",
                      item.run_id, item.step_id);
        co_return;
      }
      if (applied.ok()) {
        if (applied->kept) {
          kept = applied->kept->item;
          kept_steps = applied->kept->steps;
        }
        end_events_stored = applied->end_events_stored;
        break;
      }
      if (status.code() == StatusCode::kAborted) {
        if (options.observer) options.observer->LeaseLost();
        logging::Warn(fields, "run {}: {}; the new holder redoes the call", item.run_id,
                      status.message());
        co_return;
      }
      if (status.code() == StatusCode::kInternal && !outcome_refused) {
        // Not the database away: this outcome cannot be written (a fault of Funcky's). Left to
        // the lease, the call would be made again and again, its steps run each time; the run
        // fails instead (a lane's head blocks its lane), saying so, with the outcome dropped.
        logging::Error(fields,
                       "run {}: cannot record the outcome of call {}: {}; the run fails instead",
                       item.run_id, item.step_id, status.ToString());
        store::Transition failed;
        failed.lane = t.lane;
        failed.req_version = t.req_version;
        failed.move = store::Transition::End{
            store::kFailed,
            nullptr,
            {{"name", "OutcomeNotRecorded"},
             {"message", "the coordinator could not record the outcome of call " + item.step_id +
                             " (attempt " + std::to_string(item.attempt) + "); see its log"}}};
        if (!failed.req_version && state->run.req_version >= 0) {
          failed.req_version = state->run.req_version;
        }
        ParkFailedLaneHead(state->run, failed);
        t = std::move(failed);
        outcome_refused = true;
        tries = -1;  // the end's events are made for it afresh
        continue;
      }
      if (tries >= 5 || stopping) {
        logging::Error(fields,
                       "run {}: cannot record the outcome of a call: {}; it will be redone "
                       "when the lease expires",
                       item.run_id, status.ToString());
        co_return;
      }
      asio::steady_timer wait(io, std::chrono::milliseconds(100 << tries));
      co_await wait.async_wait(asio::as_tuple(asio::use_awaitable));
    }
    const store::Transition::End* end = t.end();
    ended_alone = end && !state->run.lane_key && !state->function.LimitsCalls();
    const store::Transition::Continue* next = t.next();
    const std::vector<store::NewWait> no_waits;
    const std::vector<store::NewWait>& waits = next ? next->waits : no_waits;
    if (end && options.fault_after_end_of == state->function.id) {
      if (!options.fault_pause) {
        logging::Error(fields, "fault injection: exiting after the end of run {} was stored",
                       item.run_id);
        std::_Exit(70);
      }
      logging::Warn(fields, "fault injection: pausing {} ms after the end of run {} was stored",
                    options.fault_pause->count(), item.run_id);
      asio::steady_timer pause(io, *options.fault_pause);
      co_await pause.async_wait(asio::as_tuple(asio::use_awaitable));
    }
    if (!waits.empty() && options.fault_after_wait_of == state->function.id) {
      logging::Error(fields, "fault injection: exiting after a wait of run {} was stored",
                     item.run_id);
      std::_Exit(70);
    }
    // An end whose events were stored with it has nothing left to announce.
    const bool announce_end = end && !end_events_stored;
    if (options.events && (!waits.empty() || announce_end)) {
      co_await Offload([&] {
        for (const store::NewWait& wait : waits) {
          options.events->WaitRegistered(*state, wait, UnixMillis(*wait.lookback_from));
        }
        if (announce_end) options.events->RunEnded(*state, end->status, end->output, end->error);
        return 0;
      });
    }
    if (options.observer && end) {
      options.observer->RunEnded(state->function.id, end->status);
    } else if (options.observer && t.park()) {
      options.observer->RunEnded(state->function.id, store::kBlocked);
    }
    if (end && end->status == store::kCompleted) {
      logging::Info(fields, "run {} of {} completed", item.run_id, state->function.id);
    } else if (end && end->status == store::kFailed) {
      logging::Info(fields, "run {} of {} failed: {}", item.run_id, state->function.id,
                    ErrorForLog(end->error));
    } else if (const store::Transition::Park* park = t.park()) {
      logging::Warn(
          fields, "run {} of {} failed and blocks lane \"{}\" until skip-head or head_timeout: {}",
          item.run_id, state->function.id, state->run.lane_key.value_or(""),
          ErrorForLog(park->error));
    } else if (const store::Transition::Retry* retry = t.retry()) {
      logging::Info(
          fields, "run {} of {}: call {} attempt {} failed, retrying in {} ms", item.run_id,
          state->function.id, item.step_id, item.attempt,
          std::chrono::duration_cast<std::chrono::milliseconds>(retry->at - clock.Now()).count());
    }
    if (kept) {
      const size_t steps_before = state->steps.size();
      store::RunState after = StateAfter(std::move(*state), t, UnixMillis(clock.Now()));
      const int64_t steps_now = kept_steps.value_or(static_cast<int64_t>(after.steps.size()));
      calls_without_progress =
          steps_now > static_cast<int64_t>(steps_before) ? 0 : calls_without_progress + 1;
      // Another call of the run recorded a step meanwhile (a parallel branch): load it anew.
      if (!kept_steps || static_cast<int64_t>(after.steps.size()) == *kept_steps) {
        carried = std::move(after);
      }
    }
  }

  // What LoadRunState would read after `t` (a run going on) was applied at `now_ms` to the
  // run in `state`: the new steps after the known ones, the status and request version.
  static store::RunState StateAfter(store::RunState state, const store::Transition& t,
                                    int64_t now_ms) {
    for (const store::StepRecord& step : t.steps) {
      int next_seq = 0;
      bool known = false;
      for (const store::StepRecord& s : state.steps) {
        next_seq = std::max(next_seq, s.seq + 1);
        known = known || s.step_id == step.step_id;
      }
      if (known) continue;  // recorded once: Apply keeps the first
      store::StepRecord added = step;
      added.seq = next_seq;
      added.created_at_ms = now_ms;
      state.steps.push_back(std::move(added));
    }
    if (t.req_version) state.run.req_version = *t.req_version;
    if (const store::Transition::Continue* next = t.next(); next && next->run_status) {
      state.run.status = *next->run_status;
    }
    return state;
  }

  void ReportCall(const std::string& function_id, const CallOutcome& outcome,
                  std::chrono::nanoseconds took, const store::Transition& t) {
    std::string_view result = "ok";
    if (!outcome.reply.ok()) {
      result = outcome.reply.status().code() == StatusCode::kDeadlineExceeded ? "timeout"
                                                                              : "unreachable";
    } else if (outcome.reply->status < 200 || outcome.reply->status >= 300) {
      result = "error";
    }
    options.observer->CallEnded(function_id, result, took);
    for (const store::AttemptRecord& a : t.attempts) {
      options.observer->StepAttempt(function_id,
                                    std::chrono::milliseconds(a.ended_at_ms - a.started_at_ms));
    }
  }

  // Starts the runs that invoke waits of `t` wait for; a wait whose callee cannot run (no
  // such function, its gate refused the run, the invocation is invalid) resumes at once with
  // the error instead. A failure that may pass (the database) is returned: whether the
  // callee's run was stored is not known.
  asio::awaitable<Status> StartInvocations(const store::RunState& state, store::Transition& t) {
    auto* next = std::get_if<store::Transition::Continue>(&t.move);
    if (!options.events || !next) co_return Status::Ok();
    for (auto it = next->waits.begin(); it != next->waits.end();) {
      if (it->kind != store::kWaitInvoke) {
        ++it;
        continue;
      }
      const store::NewWait& wait = *it;
      Status started =
          co_await Offload([&] { return options.events->StartInvocation(state, wait); });
      if (started.ok()) {
        ++it;
        continue;
      }
      const StatusCode code = started.code();
      if (code == StatusCode::kUnavailable || code == StatusCode::kAborted ||
          code == StatusCode::kDeadlineExceeded) {
        co_return started;
      }
      logging::Warn(
          {.run_id = state.run.id, .function_id = state.function.id, .step_id = wait.step_id},
          "run {}: invoke step {:.200}: {:.300}", state.run.id, wait.name,
          started.ToString());  // both may quote the host at any length
      Json error = {{"name", "InvokeError"}, {"message", started.message()}};
      next->next.push_back(
          {wait.step_id, clock.Now(), store::Resume({{"error", std::move(error)}}, wait.name)});
      it = next->waits.erase(it);
    }
    co_return Status::Ok();
  }

  // A failed run of an ordered function does not end: it stays its lane's head, blocked,
  // so no later run of the key overtakes a change that was never applied
  // (docs/ordering.md). skip-head or head_timeout fails it and moves the lane on.
  static void ParkFailedLaneHead(const store::RunRecord& run, store::Transition& t) {
    const store::Transition::End* end = t.end();
    if (!run.lane_key || !end || end->status != store::kFailed) return;
    t.move = store::Transition::Park{end->error};
  }

  // Fails lane heads past their head_timeout; any coordinator may do it, once a second.
  asio::awaitable<void> ExpireLaneHeads() {
    const TimePoint now = clock.Now();
    if (now - last_expiry < std::chrono::seconds(1)) co_return;
    last_expiry = now;
    auto expired = co_await Offload([this, now] { return queue.ExpireLaneHeads(now); });
    if (!expired.ok()) {
      spdlog::warn("expiring lane heads failed: {}", expired.status().ToString());
    } else if (!expired->empty()) {
      if (options.observer) {
        options.observer->LaneHeadsTimedOut(static_cast<int64_t>(expired->size()));
      }
      for (const std::string& run_id : *expired) {
        logging::Warn({.run_id = run_id},
                      "run {} held its lane past its head_timeout and was failed", run_id);
      }
      if (options.events) {
        co_await Offload([&] {
          for (const std::string& run_id : *expired) options.events->AnnounceEnd(run_id);
          return 0;
        });
      }
      Wake();
    }
  }
  TimePoint last_expiry{};

  std::mt19937_64 rng;  // only touched on the io_context; see Executor::Executor
};

Executor::Executor(asio::io_context& io, asio::thread_pool& blocking, store::QueueStore& queue,
                   const Clock& clock, HostTransport& transport, ExecutorOptions options)
    : impl_(std::make_shared<Impl>(io, blocking, queue, clock, transport, std::move(options))) {
  impl_->rng.seed(impl_->options.seed ? impl_->options.seed : std::random_device{}());
}

Executor::~Executor() { Stop(); }

void Executor::Start() { asio::co_spawn(impl_->io, impl_->Dispatch(), asio::detached); }

void Executor::Wake() { impl_->Wake(); }

void Executor::ReleaseLeases() {
  std::vector<store::QueueItem> items;
  {
    std::unique_lock lock(impl_->hold_mu);
    impl_->stopping = true;  // a claim starting from here on claims nothing
    impl_->claims_done.wait(lock, [&] { return impl_->claims_running == 0; });
    for (const auto& [id, item] : impl_->held) items.push_back(item);
  }
  if (items.empty()) return;
  Status s = impl_->queue.ReleaseLeases(items, impl_->clock.Now());
  if (s.ok()) {
    spdlog::info("gave back {} unfinished call(s) to the other coordinators", items.size());
  } else {
    spdlog::warn(
        "giving back {} unfinished call(s) failed: {}; they are taken over when "
        "their leases expire",
        items.size(), s.ToString());
  }
}

void Executor::Stop() {
  impl_->stopping = true;
  impl_->Wake();
}

int Executor::in_flight() const { return impl_->in_flight.load(); }

int Executor::calls_in_flight() const {
  // Read apart, the two may be a moment out of step: never below none.
  return std::max(0, impl_->in_flight.load() - impl_->reserved.load());
}

int Executor::ReserveCalls(int want) { return impl_->ReserveCalls(want); }

void Executor::StartCalls(store::StartedCalls calls, int reserved) {
  impl_->StartCalls(std::move(calls), reserved);
}

std::chrono::milliseconds Executor::lease() const { return impl_->options.lease; }

}  // namespace funcky::executor
