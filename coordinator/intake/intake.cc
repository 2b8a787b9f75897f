#include "coordinator/intake/intake.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>
#include <set>
#include <thread>

#include "common/ulid.h"
#include "coordinator/executor/transition.h"
#include "coordinator/expr/expr.h"
#include "coordinator/logging/log.h"
#include "coordinator/scheduler/fanout.h"

namespace funcky::intake {

namespace {

// A `ts` this little ahead of the coordinator's clock is a producer's clock running ahead,
// not a schedule: the run starts now (not delayed, nor holding its lane, by the skew).
constexpr std::chrono::milliseconds kFutureTsTolerance{2000};
// Runs cancel_on reads at a time, page by page.
constexpr int kActiveRunsPage = 1000;
constexpr int kLookbackEvents = 1000;  // a page of a wait's look-back
constexpr int kLookbackPages = 100;    // the most pages one look-back reads

// Runs `work` of a background thread: an exception (a defect; input is checked before it
// gets here) is logged, and the thread goes on, where it would have ended the process. What
// `work` left undone stays recorded for the sweep.
template <typename Work>
void Guarded(std::string_view what, Work&& work) {
  try {
    work();
  } catch (const std::exception& e) {
    spdlog::error("{} failed unexpectedly: {:.200}; left for the next sweep", what,
                  std::string_view(e.what()));
  }
}

// How long run-end events wait to be stored with others (one transaction for many).
constexpr std::chrono::milliseconds kOutboxGather{5};
// Run ends recorded at least this long ago and still not announced are the sweep's: a
// coordinator that is alive announces its own within milliseconds.
constexpr std::chrono::milliseconds kSweepAge{2000};
constexpr std::chrono::milliseconds kSweepInterval{1000};
constexpr int kSweepBatch = 200;
// The most buffered run ends announced in one transaction.
constexpr size_t kAnnounceBatch = 500;
// The most pages of an outbox (run ends, look-backs, cancels, resumes) one sweep does (a
// page is kSweepBatch).
constexpr int kSweepPages = 25;
// A page of the waits an event of the wait outbox may resume, and the most pages read for
// one event.
constexpr int kResumeWaits = 1000;
constexpr int kResumePages = 100;
// The most time one sweep spends on one outbox's work (resuming waits, cancelling runs, looking
// back): it goes on with the item in hand, then stops; the rest at the next sweep. The sweep
// shares its thread with the run-end announcements.
constexpr std::chrono::milliseconds kSweepWorkBudget{1000};

// One sweep's second of work on an outbox: spent once the second has passed, and never before
// one item was done (a read that took the second alone would otherwise stop every sweep).
class SweepBudget {
 public:
  // Whether the next item waits for the next sweep; counts it done otherwise.
  bool Spent() {
    if (started_ && std::chrono::steady_clock::now() > end_) return true;
    started_ = true;
    return false;
  }

 private:
  std::chrono::steady_clock::time_point end_ = std::chrono::steady_clock::now() + kSweepWorkBudget;
  bool started_ = false;
};

// Calls `page` up to kSweepPages times while it returns true: it did a full page of an outbox
// and all of it, so there may be more.
template <typename Page>
void ForSweepPages(Page page) {
  for (int i = 0; i < kSweepPages && page(); ++i) {
  }
}

// Calls `fn` up to three times while it fails with kUnavailable (the database away for a
// moment), 100 ms and then 200 ms apart; its last result.
template <typename Fn>
auto RetryWhileUnavailable(Fn fn) -> decltype(fn()) {
  for (int tries = 0;; ++tries) {
    auto r = fn();
    if (r.ok() || r.status().code() != StatusCode::kUnavailable || tries >= 2) return r;
    std::this_thread::sleep_for(std::chrono::milliseconds(100 << tries));
  }
}

// A new run of function `fn` for `event`, with its lane and concurrency keys. An event that
// bypasses its lane gets a run without one. kInvalidArgument when the function's lane orders
// by sequence and the event has no number; the store decides what the number means (next,
// waiting, stale or a duplicate).
Result<store::NewRun> NewRunFor(const std::string& fn, const FunctionSet& set, const Json& event,
                                int64_t now_ms) {
  store::NewRun run{NewUlid(now_ms), fn};
  if (auto flow = set.flows.find(fn); flow != set.flows.end()) {
    auto keys = scheduler::EvaluateKeys(flow->second, event);
    if (!keys.ok()) {
      return InvalidArgument("function \"" + fn + "\" cannot order it: " + keys.status().message());
    }
    run.lane_key = std::move(keys->lane_key);
    if (run.lane_key) run.head_timeout = flow->second.head_timeout;
    if (run.lane_key && flow->second.sequence) {
      const scheduler::Sequencing& seq = *flow->second.sequence;
      run.sequencing = store::LaneSequencing{seq.gap_timeout, seq.start,
                                             seq.stale == scheduler::StalePolicy::kRun};
      run.lane_number = keys->lane.lane_sequence;
    }
    run.concurrency_key = std::move(keys->concurrency_key);
    run.concurrency_key2 = std::move(keys->concurrency_key2);
    run.priority_s = keys->priority_s;
    run.rate = std::move(keys->rate);
    run.singleton = std::move(keys->singleton);
    run.timeouts = std::move(keys->timeouts);
    run.throttle = std::move(keys->throttle);
    run.debounce = std::move(keys->debounce);
    run.batch = std::move(keys->batch);
    run.cancel_keys = std::move(keys->cancel_keys);
  }
  return run;
}

bool IsRunEndEvent(const std::string& name) {
  return name == executor::kFunctionFinished || name == executor::kFunctionFailed ||
         name == executor::kFunctionCancelled;
}

// The event `in` as the store records it, received at `now_ms` (its payload and internal id
// are moved out of it).
store::EventRecord RecordOf(IncomingEvent& in, int64_t now_ms) {
  store::EventRecord e;
  e.internal_id = std::move(in.internal_id);
  e.id = in.payload["id"].get<std::string>();
  e.name = in.payload["name"].get<std::string>();
  e.payload = std::move(in.payload);
  e.received_at_ms = now_ms;
  return e;
}

}  // namespace

const store::FunctionRecord* FunctionSet::Find(const std::string& id) const {
  for (const store::FunctionRecord& fn : functions) {
    if (fn.id == id) return &fn;
  }
  return nullptr;
}

Intake::Intake(store::Store& store, const Clock& clock,
               std::chrono::milliseconds function_cache_ttl, std::function<void()> on_new_work,
               size_t max_buffered_ends)
    : store_(store),
      clock_(clock),
      cache_ttl_(function_cache_ttl),
      on_new_work_(std::move(on_new_work)),
      max_buffered_ends_(max_buffered_ends) {
  flusher_ = std::thread([this] { FlushLoop(); });
}

Result<std::shared_ptr<const FunctionSet>> Intake::FunctionsWith(const std::string& fn_id) {
  ASSIGN_OR_RETURN(auto set, Functions(/*refresh=*/false));
  if (set->Find(fn_id)) return set;
  return Functions(/*refresh=*/true);
}

Result<std::shared_ptr<const FunctionSet>> Intake::Functions(bool refresh) {
  const TimePoint now = clock_.Now();
  std::shared_ptr<const FunctionSet> cached;
  {
    std::lock_guard lock(mu_);
    if (functions_) {
      if (!refresh && now - functions_loaded_at_ < cache_ttl_) return functions_;
      cached = functions_;
    }
  }
  // Loaded outside the lock: events must not wait on the database behind another thread's
  // load. Two threads may load at once; the newer generation wins, then the later load.
  // The generation first: the functions read after it are at least as new. When it is the
  // cached set's, no sync has changed them since: the set is kept, not read and parsed again.
  ASSIGN_OR_RETURN(const int64_t generation, store_.FunctionGeneration());
  if (cached && generation == cached->generation) {
    std::lock_guard lock(mu_);
    if (functions_ == cached && functions_loaded_at_ < now) functions_loaded_at_ = now;
    return functions_;
  }
  auto set = std::make_shared<FunctionSet>();
  set->generation = generation;
  ASSIGN_OR_RETURN(set->functions, store_.ListFunctions());
  for (const auto& fn : set->functions) {
    // Configs were checked at sync; one that no longer parses (synced by an older
    // coordinator) starts no runs, loudly, rather than runs its filters would exclude.
    auto flow = scheduler::ParseFlowControl(fn.config);
    if (!flow.ok()) {
      logging::Error({.function_id = fn.id},
                     "function {}: {}; it starts no runs until it is synced again", fn.id,
                     flow.status().message());
      continue;
    }
    set->flows.emplace(fn.id, std::move(*flow));
  }
  std::lock_guard lock(mu_);
  if (!functions_ || set->generation > functions_->generation ||
      (set->generation == functions_->generation && functions_loaded_at_ <= now)) {
    functions_ = std::move(set);
    functions_loaded_at_ = now;
  }
  return functions_;
}

Result<IngestResult> Intake::Ingest(std::vector<IncomingEvent> events) {
  // Matched against the set loaded here, which a sync on another coordinator may have
  // changed since: the store refuses the ingest then (kAborted, nothing stored), and the
  // events are matched again against the set as it is now.
  bool refresh = false;
  for (int tries = 1;; ++tries) {
    ASSIGN_OR_RETURN(auto set, Functions(refresh));
    auto ingested = IngestWith(*set, events);
    if (ingested.status().code() != StatusCode::kAborted) return ingested;
    if (tries == kIngestTries) {
      return Unavailable("the functions changed by syncs " + std::to_string(kIngestTries) +
                         " times during the ingest; nothing was stored");
    }
    refresh = true;
  }
}

TimePoint Intake::IngestTime(bool cancels) {
  // The clock read and the time published in one step: an ingest that had read the clock and
  // not yet published its millisecond was not seen by a cancelling one that then took it too.
  std::lock_guard lock(ingest_time_mu_);
  TimePoint now = clock_.Now();
  if (cancels) {
    const auto give_up = std::chrono::steady_clock::now() + std::chrono::milliseconds(5);
    while (UnixMillis(now) <= last_ingest_ms_ && std::chrono::steady_clock::now() < give_up) {
      std::this_thread::sleep_for(std::chrono::microseconds(100));
      now = clock_.Now();
    }
    if (UnixMillis(now) <= last_ingest_ms_) {
      now = TimePoint(std::chrono::milliseconds(last_ingest_ms_ + 1));
    }
  }
  // Never before an earlier ingest's, though the clock may step back (NTP): a run whose event
  // came after a cancel event's would be created before the cancel was received, and the
  // cancel's sweep would cancel it.
  if (UnixMillis(now) < last_ingest_ms_) now = FromUnixMillis(last_ingest_ms_);
  last_ingest_ms_ = UnixMillis(now);
  return now;
}

Result<IngestResult> Intake::IngestWith(const FunctionSet& set,
                                        std::vector<IncomingEvent>& events) {
  // Whether each event cancels (once an event: the rules are read for every function), and
  // so the request's time (IngestTime).
  std::vector<char> cancels(events.size());
  for (size_t i = 0; i < events.size(); ++i) {
    cancels[i] = Cancels(events[i].payload.value("name", std::string()), set);
  }
  const TimePoint now = IngestTime(std::find(cancels.begin(), cancels.end(), 1) != cancels.end());
  const int64_t now_ms = UnixMillis(now);
  std::vector<store::NewEvent> batch;
  int may_start_here = 0;  // runs that may start here at once (Starter)
  batch.reserve(events.size());
  for (size_t i = 0; i < events.size(); ++i) {
    IncomingEvent& in = events[i];
    store::NewEvent ne;
    ne.event = RecordOf(in, now_ms);
    ne.cancels = cancels[i];
    const Json& payload = ne.event.payload;
    const auto ts = payload.find("ts");
    const int64_t event_ts =
        ts != payload.end() && ts->is_number_integer() ? ts->get<int64_t>() : 0;
    std::vector<const store::FunctionRecord*> targets;
    if (in.target_function) {
      const store::FunctionRecord* fn = set.Find(*in.target_function);
      // An invocation of a function a sync dropped since the invoker looked (this ingest read
      // the functions anew) stores nothing: the invoker fails at once (StartInvocation), where
      // it waited for a run that never came, up to its timeout (a year by default).
      if (!fn && ne.event.name == executor::kFunctionInvoked) {
        return NotFound("no function \"" + *in.target_function +
                        "\" to invoke; is its app synced?");
      }
      if (fn) targets.push_back(fn);
    } else {
      targets = scheduler::MatchFunctions(set.functions, set.flows, ne.event);
    }
    // A function is not started by the end of its own run (it would start itself forever).
    std::string ended_fn;
    if (IsRunEndEvent(ne.event.name)) {
      ended_fn = ne.event.payload["data"].value("function_id", std::string());
    }
    for (const store::FunctionRecord* fn : targets) {
      if (fn->id == ended_fn) continue;
      auto run = NewRunFor(fn->id, set, ne.event.payload, now_ms);
      if (run.ok() && in.target_function) {
        run->start_at_ms = in.start_at_ms;
      } else if (run.ok() && event_ts > now_ms + kFutureTsTolerance.count() && !run->batch) {
        // An event `ts` in the future schedules its run then, as in Inngest (not a batch's:
        // its events have many times).
        run->start_at_ms = event_ts;
      }
      if (run.ok()) {
        // No limit of the function counts its calls in flight and it may start now: the run
        // may start here at once (the store decides which runs qualify otherwise).
        run->may_start_here = starter_.reserve && !fn->LimitsCalls() && !run->start_at_ms;
        may_start_here += run->may_start_here ? 1 : 0;
        // An invocation (or a cron tick) of one function runs alone: its invoker waits for
        // the end of the run of its own event, which a batch would hold back or put second.
        if (in.target_function) run->batch.reset();
        // Nor is an invocation debounced: a later event would take its run (the invoker then
        // waits for a run of an event not its own, until its timeout), or an earlier pending
        // one would skip it.
        if (in.target_function && ne.event.name == executor::kFunctionInvoked) {
          run->debounce.reset();
        }
        ne.runs.push_back(std::move(*run));
        continue;
      }
      // A sender's event is refused, and so is the whole request: nothing is stored. The end
      // of a run, or a lane's gap, cannot be refused (its announcement would be retried
      // forever, and every announcement after it with it): it starts no run of this function.
      const std::string what = "event " + std::to_string(batch.size()) + " (\"" + ne.event.name +
                               "\"): " + run.status().message();
      if (IsRunEndEvent(ne.event.name) || ne.event.name == executor::kLaneGap) {
        logging::Error({.function_id = fn->id}, "{}; it starts no run of {}", what, fn->id);
        continue;
      }
      return InvalidArgument(what);
    }
    batch.push_back(std::move(ne));
  }
  store::IngestWaits found;
  const std::vector<store::WaitRecord>& waits = found.open;
  store::StartedCalls started{.lease = starter_.lease};
  started.max = may_start_here > 0 ? starter_.reserve(may_start_here) : 0;
  Result<std::vector<store::IngestedEvent>> ingested = Internal("not ingested");
  try {
    ingested = store_.IngestEvents(batch, now, &found, started.max > 0 ? &started : nullptr,
                                   set.generation);
  } catch (...) {
    // The store answers with a status; should it throw anyway, the slots reserved go back
    // (held, they would lower the executor's calls for good and hold up its drain).
    if (started.max > 0) starter_.start({}, started.max);
    throw;
  }
  const int reserved = started.max;
  if (!ingested.ok()) started = {};
  const int64_t started_here = static_cast<int64_t>(started.items.size());
  if (reserved > 0) starter_.start(std::move(started), reserved);
  if (ingested.status().code() == StatusCode::kAborted) {
    // Nothing was stored: the events go back to the caller, to be matched again.
    for (size_t i = 0; i < batch.size(); ++i) {
      events[i].internal_id = std::move(batch[i].event.internal_id);
      events[i].payload = std::move(batch[i].event.payload);
    }
  }
  if (!ingested.ok()) return ingested.status();
  auto stored = std::move(ingested).value();
  IngestResult result;
  int resumed = 0;
  bool joined_batch = false;
  // Events whose waits are all resumed, for the wait outbox; none when the store did not read
  // every wait they may resume (the sweep reads them all).
  std::vector<std::string> resumes_done;
  const bool waits_cut = !found.complete;
  WaitsByName by_name(waits);
  const std::vector<const store::WaitRecord*> none;
  for (size_t i = 0; i < stored.size(); ++i) {
    const auto named = by_name.of_name.find(batch[i].event.name);
    const bool has_waits = named != by_name.of_name.end();
    const std::vector<const store::WaitRecord*>& its_waits = has_waits ? named->second : none;
    const int failed_before = result.waits_not_resumed;
    bool all_read = true;  // the waits read are all its own may resume
    if (stored[i].duplicate) {
      // Stored before, by a request whose waits may not all have been resumed: a coordinator
      // that stopped between the commit and the resumes, or a resume that failed (the sweep
      // does them within seconds; a resend does them at once).
      if (has_waits) {
        resumed += ResolveWaitsOfStored(stored[i].internal_id, batch[i].event.payload, its_waits,
                                        &result.waits_not_resumed, &all_read, &by_name.settled);
      }
    } else if (has_waits) {
      resumed +=
          ResolveWaits(batch[i].event, its_waits, &result.waits_not_resumed, &by_name.settled);
    }
    // A new event is acknowledged if the outbox recorded it, though it met no wait: the
    // store read none of its name when none had a key of the event.
    const bool recorded =
        stored[i].duplicate ? has_waits : found.pending.contains(stored[i].internal_id);
    if (recorded && all_read && !waits_cut && result.waits_not_resumed == failed_before) {
      resumes_done.push_back(stored[i].internal_id);
    }
    if (stored[i].duplicate) continue;
    result.runs_started += static_cast<int64_t>(batch[i].runs.size() - stored[i].skipped.size());
    result.runs_started -= static_cast<int64_t>(stored[i].debounced.size());  // joined a run
    result.runs_started -= static_cast<int64_t>(stored[i].batched.size());    // joined a batch
    joined_batch = joined_batch || !stored[i].batched.empty();  // it may have filled it
    for (const std::string& fn : stored[i].debounced) {
      logging::Info({.function_id = fn},
                    "event {} ({}) joins the pending debounced run of {}: it replaces that "
                    "run's event",
                    batch[i].event.internal_id, batch[i].event.name, fn);
    }
    for (const std::string& fn : stored[i].skipped) {
      logging::Info({.function_id = fn},
                    "event {} ({}) starts no run of {}: a flow-control gate refused it",
                    batch[i].event.internal_id, batch[i].event.name, fn);
    }
    for (const std::string& run_id : stored[i].cancelled) {
      // Cancelled in the ingest's transaction (singleton mode cancel): announce its end now
      // (the run-end outbox would within seconds anyway; announcing twice stores it once).
      logging::Info({.run_id = run_id},
                    "run {} cancelled by singleton: event {} started a run of its key", run_id,
                    batch[i].event.internal_id);
      AnnounceEnd(run_id);
    }
    // Done now, and again by the sweep once the event is older than the sweep age, which
    // then acknowledges it: a run created before the event on another coordinator, whose
    // transaction was still in flight as this read the runs, is cancelled then.
    if (batch[i].cancels) CancelMatchingRuns(batch[i].event, set);
  }
  result.stored = std::move(stored);
  if (Status s = store_.AckResumes(resumes_done); !s.ok()) {
    // Harmless: the sweep reads their waits again, and finds them resumed.
    spdlog::warn("acknowledging the resumes of {} event(s) failed: {}", resumes_done.size(),
                 s.ToString());
  }
  // Runs started here need no claim; the others are found by one.
  if ((result.runs_started > started_here || resumed > 0 || joined_batch) && on_new_work_) {
    on_new_work_();
  }
  return result;
}

bool Intake::WaitMatches(const store::WaitRecord& wait, const Json& event) {
  const std::string& expression = wait.expression;
  const Json& trigger = wait.trigger;
  if (expression.empty()) return true;
  std::shared_ptr<const expr::Expression> compiled;
  if (wait.kind == store::kWaitInvoke) {
    auto c = expr::Compile(expression);
    if (!c.ok()) return false;
    compiled = std::move(*c);
  } else {
    std::lock_guard lock(mu_);
    if (auto it = wait_exprs_.find(expression); it != wait_exprs_.end()) {
      compiled = it->second;
    } else {
      auto c = expr::Compile(expression);
      if (!c.ok()) return false;                             // checked when the wait was registered
      if (wait_exprs_.size() >= 10000) wait_exprs_.clear();  // bounded; rebuilt as used
      compiled = std::move(*c);
      wait_exprs_.emplace(expression, compiled);
    }
  }
  return compiled->Matches(expr::Variables{{"event", &trigger}, {"async", &event}});
}

Json Intake::WaitMemo(std::string_view kind, const Json& event) {
  if (kind != store::kWaitInvoke) return event;
  const Json& data = event["data"];
  if (data.contains("error") && !data["error"].is_null()) return {{"error", data["error"]}};
  return {{"data", data.value("result", Json(nullptr))}};
}

Intake::WaitsByName::WaitsByName(const std::vector<store::WaitRecord>& waits) {
  for (const store::WaitRecord& wait : waits) of_name[wait.event_name].push_back(&wait);
}

int Intake::ResolveWaitsOfStored(const std::string& internal_id, const Json& sent,
                                 const std::vector<const store::WaitRecord*>& waits, int* failed,
                                 bool* all, std::unordered_set<const store::WaitRecord*>* settled) {
  auto event = store_.GetEvent(internal_id);
  // As text: nlohmann's == holds -1 equal to 2^64 - 1 (it casts the unsigned), whose keys
  // differ.
  const auto text = [](const Json& j) {
    return j.dump(-1, ' ', false, Json::error_handler_t::replace);
  };
  *all = event.ok() && text(event->payload) == text(sent);
  if (!event.ok()) {
    logging::Error({}, "event {}: reading it to resume its waits failed: {}", internal_id,
                   event.status().ToString());
    ++*failed;
    return 0;
  }
  // A wait registered after the event was stored, or in its millisecond, looked back for it
  // itself (store::WaitStore::WaitsBefore says why strictly before).
  std::vector<const store::WaitRecord*> open_then;
  for (const store::WaitRecord* wait : waits) {
    if (wait->created_at_ms < event->received_at_ms) open_then.push_back(wait);
  }
  return ResolveWaits(*event, open_then, failed, settled);
}

int Intake::ResolveWaits(const store::EventRecord& event,
                         const std::vector<store::WaitRecord>& waits, int* failed) {
  std::vector<const store::WaitRecord*> pointers;
  pointers.reserve(waits.size());
  for (const store::WaitRecord& wait : waits) pointers.push_back(&wait);
  return ResolveWaits(event, pointers, failed);
}

int Intake::ResolveWaits(const store::EventRecord& event,
                         const std::vector<const store::WaitRecord*>& waits, int* failed,
                         std::unordered_set<const store::WaitRecord*>* settled) {
  int resumed = 0;
  for (const store::WaitRecord* each : waits) {
    const store::WaitRecord& wait = *each;
    if (wait.event_name != event.name) continue;
    if (settled && settled->contains(each)) continue;
    if (event.internal_id == wait.run_event_id) continue;  // the run's own event
    if (!WaitMatches(wait, event.payload)) continue;
    // A transient failure is tried again at once: a wait left open here is resumed only by
    // the event sent again, its timeout, or a later event that matches.
    auto r = RetryWhileUnavailable([&] {
      return store_.ResolveWait(wait.run_id, wait.step_id, WaitMemo(wait.kind, event.payload),
                                clock_.Now());
    });
    if (r.ok() && settled) settled->insert(each);  // resumed now, or before: no later event's
    if (!r.ok()) {
      ++*failed;
      logging::Error({.run_id = wait.run_id, .step_id = wait.step_id},
                     "run {}: resuming wait {} failed: {}", wait.run_id, wait.step_id,
                     r.status().ToString());
    } else if (*r) {
      ++resumed;
      logging::Info({.run_id = wait.run_id, .step_id = wait.step_id},
                    "run {}: {} wait resumed by event {} ({})", wait.run_id, wait.kind, event.name,
                    event.internal_id);
    }
  }
  return resumed;
}

bool Intake::Cancels(const std::string& event_name, const FunctionSet& set) {
  return std::any_of(set.flows.begin(), set.flows.end(), [&](const auto& entry) {
    const std::vector<scheduler::CancelOn>& cancel = entry.second.cancel;
    return std::any_of(cancel.begin(), cancel.end(), [&](const scheduler::CancelOn& on) {
      return scheduler::EventNameMatches(on.event, event_name);
    });
  });
}

bool Intake::CancelMatchingRuns(const store::EventRecord& event, const FunctionSet& set) {
  // As of the event's receipt: a run created since (in the same request, or a racing one) is
  // not the event's to cancel, and the timeout counts to when it came. So it may be done
  // again later (the sweep) and cancel the same runs.
  const int64_t at_ms = event.received_at_ms;
  // The keys a rule's runs may have to be cancelled by it (CancelCandidates); with more
  // fields than expr::IndexKeys keys, a run's key may not be among them: every run is read.
  std::vector<std::string> keys;
  const bool keyed = expr::IndexKeys(event.payload, &keys);
  bool done = true;
  for (const auto& [fn_id, flow] : set.flows) {
    for (const scheduler::CancelOn& on : flow.cancel) {
      if (!scheduler::EventNameMatches(on.event, event.name)) continue;
      // Page by page, to the last: a function may have more runs than a page holds (many
      // sleeping for days is what cancel_on is for).
      for (std::string after;;) {
        auto runs = on.condition && keyed ? store_.CancelCandidates(fn_id, on.id, keys, at_ms,
                                                                    at_ms - on.timeout.count(),
                                                                    after, kActiveRunsPage)
                                          : store_.ActiveRuns(fn_id, at_ms, after, kActiveRunsPage);
        if (!runs.ok()) {
          logging::Error({.function_id = fn_id}, "cancel_on of {}: listing runs failed: {}", fn_id,
                         runs.status().ToString());
          done = false;
          break;
        }
        if (runs->empty()) break;  // a page may be short before the last (its payloads' bytes)
        for (const store::ActiveRun& run : *runs) {
          if (run.event.value("id", std::string()) == event.id) continue;  // its own trigger
          if (at_ms - run.created_at_ms > on.timeout.count()) continue;
          if (on.condition && !on.condition->Matches(expr::Variables{{"event", &run.event},
                                                                     {"async", &event.payload}})) {
            continue;
          }
          auto cancelled =
              Cancel(run.run_id,
                     {{"name", "Cancelled"},
                      {"message", "cancelled by event \"" + event.name + "\" (" + event.id + ")"}});
          if (!cancelled.ok()) {
            logging::Error({.run_id = run.run_id, .function_id = fn_id},
                           "run {}: cancelling failed: {}", run.run_id,
                           cancelled.status().ToString());
            done = false;
          }
        }
        after = runs->back().run_id;
      }
    }
  }
  return done;
}

Result<bool> Intake::Cancel(const std::string& run_id, const Json& reason) {
  ASSIGN_OR_RETURN(bool cancelled, store_.CancelRun(run_id, reason, clock_.Now()));
  if (!cancelled) return false;
  logging::Info({.run_id = run_id}, "run {} cancelled: {}", run_id,
                reason.value("message", std::string()));
  AnnounceEnd(run_id);
  if (on_new_work_) on_new_work_();  // its lane may have moved on
  return true;
}

void Intake::AnnounceEnd(const std::string& run_id) {
  auto state = store_.LoadRunState(run_id);
  if (!state.ok()) {
    logging::Error({.run_id = run_id}, "run {}: cannot load it to emit its end: {}", run_id,
                   state.status().ToString());
    return;
  }
  if (!store::IsTerminalStatus(state->run.status)) return;
  if (executor::ExecutorObserver* counter = run_end_counter_.load()) {
    counter->RunEnded(state->function.id, state->run.status);
  }
  RunEnded(*state, state->run.status, state->run.output, state->run.error);
}

Result<std::string> Intake::Replay(const std::string& run_id, const std::string& idempotency_key) {
  ASSIGN_OR_RETURN(store::RunRecord run, store_.GetRun(run_id));
  ASSIGN_OR_RETURN(store::EventRecord event, store_.GetEvent(run.event_id));
  ASSIGN_OR_RETURN(auto set, FunctionsWith(run.function_id));
  const TimePoint now = clock_.Now();
  const store::ReplayKey key{run_id, idempotency_key};
  store::NewRun replay;
  Result<std::string> made = Aborted("not started");
  // Made from the set loaded here, which a sync may change meanwhile: the store refuses the
  // start then (kAborted), and the run is made again from the set as it is now (Ingest).
  for (int tries = 1;; ++tries) {
    // A function a sync dropped is archived: its runs go on to their ends, but it starts no
    // new one (its hosts may no longer have it).
    if (!set->Find(run.function_id)) {
      return FailedPrecondition("function \"" + run.function_id +
                                "\" is no longer in its app's last sync; its runs cannot be "
                                "replayed until a sync lists it again");
    }
    ASSIGN_OR_RETURN(replay, NewRunFor(run.function_id, *set, event.payload, UnixMillis(now)));
    // An operator's replay is not gated by idempotency, rateLimit or singleton.
    replay.rate.reset();
    replay.singleton.reset();
    if (run.event_ids.size() > 1) replay.events_of = run.id;  // a batch's: all its events
    made = store_.StartRun(event.internal_id, replay, now, idempotency_key.empty() ? nullptr : &key,
                           set->generation);
    if (made.status().code() != StatusCode::kAborted || tries == kIngestTries) break;
    ASSIGN_OR_RETURN(set, Functions(/*refresh=*/true));
  }
  if (made.status().code() == StatusCode::kAborted) {
    return Unavailable("the functions changed by syncs " + std::to_string(kIngestTries) +
                       " times during the replay; nothing was started");
  }
  ASSIGN_OR_RETURN(std::string started, std::move(made));
  if (started != replay.run_id) {
    logging::Info({.run_id = started, .function_id = run.function_id},
                  "run {} replayed run {} with this idempotency key already; not replayed again",
                  started, run_id);
    return started;
  }
  logging::Info({.run_id = replay.run_id, .function_id = run.function_id},
                "run {} replays run {} of {}", replay.run_id, run_id, run.function_id);
  if (on_new_work_) on_new_work_();
  return replay.run_id;
}

IncomingEvent Intake::InternalEvent(const std::string& name, Json data, const std::string& id) {
  const int64_t now_ms = UnixMillis(clock_.Now());
  return {Json{{"name", name},
               {"data", std::move(data)},
               {"user", Json::object()},
               {"id", id},
               {"ts", now_ms}},
          NewUlid(now_ms), std::nullopt};
}

namespace {

// Why `fn_id` was not invoked, for the invoker's InvokeError; the gate's key (user data) is
// left out.
std::string NotInvokedBecause(const std::string& fn_id, const store::EventSkip& skip) {
  const std::string head = "function \"" + fn_id + "\" was not invoked: ";
  if (skip.reason == store::kSkipRateLimit) return head + "its rateLimit refused the run";
  if (skip.reason == store::kSkipIdempotency) {
    return head + "a run with its idempotency key started within 24 hours";
  }
  if (skip.reason == store::kSkipSingleton) {
    return head + "a run of its singleton key is active (mode skip)";
  }
  return head + "a flow-control gate refused the run (" + skip.reason + ")";
}

// Why `fn_id` was not invoked when its sequence lane turned the invocation's number away
// (`outcome`); the lane's key (user data) is left out, as a gate's is.
std::string NotInvokedBecause(const std::string& fn_id, const store::LaneOutcome& outcome) {
  const std::string head = "function \"" + fn_id + "\" was not invoked: its sequence number " +
                           std::to_string(outcome.number);
  if (outcome.outcome == store::kDuplicate) {
    return head + " is a duplicate" +
           (outcome.run_id ? " (run " + *outcome.run_id + " has it)" : "");
  }
  return head + " is stale (below the next number its lane expects)";
}

}  // namespace

Status Intake::StartInvocation(const store::RunState& caller, const store::NewWait& wait) {
  const std::string fn_id = wait.invoke.value("function_id", std::string());
  ASSIGN_OR_RETURN(auto set, FunctionsWith(fn_id));
  if (!set->Find(fn_id)) {
    return NotFound("no function \"" + fn_id + "\" to invoke; is its app synced?");
  }
  const std::string correlation = wait.invoke.value("correlation_id", std::string());
  Json data = wait.invoke.value("data", Json::object());
  data["_inngest"] = {{"fn_id", fn_id},
                      {"correlation_id", correlation},
                      {"expire", UnixMillis(wait.expires_at)},
                      {"name", wait.name},
                      {"source_app_id", caller.function.app_id},
                      {"source_fn_id", caller.function.id},
                      {"source_fn_v", 0}};
  // The event id derives from the correlation id: a redone call starts nothing twice.
  IncomingEvent e = InternalEvent(executor::kFunctionInvoked, std::move(data),
                                  executor::InvokedEventId(correlation));
  e.target_function = fn_id;
  // A caller that gave up would take a stored event for a lost one (an invoker failed while
  // its callee runs).
  ASSIGN_OR_RETURN(IngestResult r, IngestRetrying({std::move(e)}));
  // A gate of the callee that refused its run (idempotency, rateLimit, singleton skip) fails
  // the invocation now: no run would ever end to resume the invoker. The refusal is stored
  // with the event, so a redone call (the same event again, a duplicate) reads it back.
  const store::IngestedEvent& stored = r.stored.front();
  if (stored.duplicate ||
      std::find(stored.skipped.begin(), stored.skipped.end(), fn_id) != stored.skipped.end()) {
    ASSIGN_OR_RETURN(std::vector<store::EventSkip> skips, store_.EventSkips(stored.internal_id));
    for (const store::EventSkip& skip : skips) {
      if (skip.function_id == fn_id) return FailedPrecondition(NotInvokedBecause(fn_id, skip));
    }
  }
  // So does a number the callee's sequence lane takes for a duplicate, or for stale unless it
  // ran all the same (`stale: "run"`, docs/ordering.md "Sequence lanes"; the outcome then
  // names its run): that outcome is stored with the event too. It is read only for a callee
  // with such a lane, as the ingest's result does not tell it.
  const auto flow = set->flows.find(fn_id);
  if (flow == set->flows.end() || !flow->second.sequence) return Status::Ok();
  ASSIGN_OR_RETURN(std::vector<store::LaneOutcome> outcomes,
                   store_.LaneOutcomesOf(stored.internal_id));
  for (const store::LaneOutcome& outcome : outcomes) {
    const bool ran = outcome.outcome == store::kStale && outcome.run_id;
    if (outcome.function_id == fn_id && !ran) {
      return FailedPrecondition(NotInvokedBecause(fn_id, outcome));
    }
  }
  return Status::Ok();
}

Result<IngestResult> Intake::IngestRetrying(const std::vector<IncomingEvent>& events) {
  // Their ids are fixed, so a resend after a failure whose commit may have happened (the
  // database's answer lost) is a duplicate at worst.
  return RetryWhileUnavailable([&] { return Ingest(events); });
}

void Intake::WaitRegistered(const store::RunState& state, const store::NewWait& wait,
                            int64_t since_ms) {
  // A signal's wait has no events to look back for: POST /v1/signals resumes it.
  if (state.events.empty() || wait.kind == store::kWaitSignal) return;
  LookBack({state.run.id, wait.step_id, state.function.id, wait.event_name, wait.expression,
            wait.kind, state.events[0], 0, 0, since_ms, std::nullopt, state.run.event_id},
           /*last=*/false);
}

Result<std::optional<Json>> Intake::FinishedEventOfInvocation(const store::WaitRecord& wait) {
  auto invoked = store_.FindEventById(
      executor::InvokedEventId(executor::CorrelationId(wait.run_id, wait.step_id)));
  if (!invoked.ok()) {
    if (invoked.status().code() == StatusCode::kNotFound) return std::optional<Json>();
    return invoked.status();
  }
  ASSIGN_OR_RETURN(auto callees, store_.ListRuns({.event_id = invoked->internal_id, .limit = 5}));
  for (const store::RunRecord& callee : callees) {
    if (!store::IsTerminalStatus(callee.status)) continue;
    auto finished = store_.FindEventById(executor::FinishedEventId(callee.id));
    if (finished.ok()) return std::optional<Json>(finished->payload);
    if (finished.status().code() != StatusCode::kNotFound) return finished.status();
  }
  return std::optional<Json>();
}

bool Intake::LookBack(const store::WaitRecord& wait, bool last) {
  const std::string& run_id = wait.run_id;
  const logging::Fields fields{.run_id = run_id, .step_id = wait.step_id};
  std::optional<Json> match;  // the event that resumes the wait
  std::string received;       // which one, for the log
  if (wait.kind == store::kWaitInvoke) {
    // The invoked run may have ended, and its end been announced, before the wait was stored
    // (under load, or when the caller's call is redone after a crash): found by its ids, not
    // by time, since the invocation may be long before this wait.
    auto finished = FinishedEventOfInvocation(wait);
    if (!finished.ok()) {
      logging::Warn(fields, "run {}: invoke look-back failed (retried by the sweep): {}", run_id,
                    finished.status().ToString());
      return false;
    }
    if (*finished) {
      match = std::move(**finished);
      received = "the invoked run's end, announced before it";
    }
  }
  // Oldest first, a page at a time, up to kLookbackPages pages (the first page only, before:
  // a match past the first thousand events of a busy name in the window was missed).
  int64_t after_ms = wait.lookback_from_ms.value_or(0);
  std::string after_id;
  int64_t read = 0;
  for (int page = 0; !match; ++page) {
    if (page == kLookbackPages) {
      logging::Warn(fields,
                    "run {}: wait look-back read {} events named {} with no match and stops "
                    "there; later events are matched as they come",
                    run_id, read, wait.event_name);
      break;
    }
    auto events = store_.EventsAfter(wait.event_name, after_ms, after_id, kLookbackEvents);
    if (!events.ok()) {
      logging::Warn(fields, "run {}: wait look-back failed (retried by the sweep): {}", run_id,
                    events.status().ToString());
      return false;
    }
    // A page may be short before the last (its payloads' bytes, EventsAfter): read to an empty
    // one.
    if (events->empty()) break;
    read += static_cast<int64_t>(events->size());
    for (const store::EventRecord& e : *events) {
      if (e.internal_id == wait.run_event_id) continue;  // the run's own event
      if (!WaitMatches(wait, e.payload)) continue;
      match = e.payload;
      received = "event " + e.name + " (" + e.internal_id + ") received before it";
      break;  // the first match decides
    }
    after_ms = events->back().received_at_ms;
    after_id = events->back().internal_id;
  }
  if (match) {
    auto r = store_.ResolveWait(run_id, wait.step_id, WaitMemo(wait.kind, *match), clock_.Now());
    if (!r.ok()) {
      logging::Warn(fields,
                    "run {}: resuming a wait by look-back failed (retried by the sweep): {}",
                    run_id, r.status().ToString());
      return false;
    }
    if (*r) {
      logging::Info(fields, "run {}: {} wait resumed by {}", run_id, wait.kind, received);
      if (on_new_work_) on_new_work_();
    }
    return true;  // whoever resumed the wait, its row is gone
  }
  if (!last) return true;  // the sweep looks again once the wait is older than its age
  Status done = store_.LookbackDone(run_id, wait.step_id);
  if (!done.ok()) {
    logging::Warn(fields,
                  "run {}: marking a wait's look-back done failed (redone by the sweep): {}",
                  run_id, done.ToString());
    return false;
  }
  return true;
}

std::vector<IncomingEvent> Intake::EndEvents(const store::RunState& state,
                                             const std::string& status, const Json& output,
                                             const Json& error) {
  static const Json kNoEvent = Json::object();
  const Json& first = state.events.empty() ? kNoEvent : state.events[0];
  // Built member by member: each event is copied into it once (an initializer list copies
  // its values twice).
  Json data = Json::object();
  data["function_id"] = state.function.id;
  data["run_id"] = state.run.id;
  data["event"] = first;
  data["events"] = state.events;
  data["_inngest"]["status"] = status;
  if (status == store::kCompleted) {
    data["result"] = output;
  } else {
    data["error"] = error.is_null() ? Json{{"name", "Error"}, {"message", status}} : error;
  }
  if (auto d = first.find("data"); d != first.end() && d->is_object()) {
    if (auto meta = d->find("_inngest"); meta != d->end() && meta->is_object()) {
      if (auto id = meta->find("correlation_id"); id != meta->end()) data["correlation_id"] = *id;
    }
  }
  // Ids derived from the run: announcing an end twice (a sweep after a lost
  // acknowledgement) stores each event once.
  const bool second = status == store::kFailed || status == store::kCancelled;
  std::vector<IncomingEvent> events;
  events.push_back(InternalEvent(executor::kFunctionFinished, second ? data : std::move(data),
                                 executor::FinishedEventId(state.run.id)));
  if (status == store::kFailed) {
    events.push_back(InternalEvent(executor::kFunctionFailed, std::move(data),
                                   executor::FailedEventId(state.run.id)));
  } else if (status == store::kCancelled) {
    events.push_back(InternalEvent(executor::kFunctionCancelled, std::move(data),
                                   executor::CancelledEventId(state.run.id)));
  }
  return events;
}

std::vector<store::EventRecord> Intake::EndEventsToStore(const store::RunState& state,
                                                         const std::string& status,
                                                         const Json& output, const Json& error,
                                                         std::optional<int64_t>* generation) {
  auto set = Functions(/*refresh=*/false);
  if (!set.ok()) return {};  // the outbox then, which retries
  *generation = (*set)->generation;
  std::vector<IncomingEvent> ends = EndEvents(state, status, output, error);
  // A run that invokes this one waits for its end: intake resumes it as it announces the end.
  if (ends[0].payload["data"].contains("correlation_id")) return {};
  const int64_t now_ms = UnixMillis(clock_.Now());
  std::vector<store::EventRecord> out;
  for (IncomingEvent& in : ends) {
    store::EventRecord e = RecordOf(in, now_ms);
    // As Ingest would: a function is not started by the end of its own run.
    for (const store::FunctionRecord* fn :
         scheduler::MatchFunctions((*set)->functions, (*set)->flows, e)) {
      if (fn->id != state.function.id) return {};
    }
    for (const auto& [fn_id, flow] : (*set)->flows) {
      for (const scheduler::CancelOn& on : flow.cancel) {
        if (scheduler::EventNameMatches(on.event, e.name)) return {};
      }
    }
    out.push_back(std::move(e));
  }
  return out;
}

void Intake::RunEnded(const store::RunState& state, const std::string& status, const Json& output,
                      const Json& error) {
  {
    std::lock_guard lock(outbox_mu_);
    if (outbox_.size() >= max_buffered_ends_) {
      // Its end is in the store's outbox: the sweep announces it within seconds.
      if (!outbox_full_) {
        spdlog::warn("{} run ends wait to be announced; later ones are left to the sweep",
                     outbox_.size());
        outbox_full_ = true;
      }
      return;
    }
  }
  PendingEnd end{state.run.id, EndEvents(state, status, output, error)};
  std::lock_guard lock(outbox_mu_);
  outbox_.push_back(std::move(end));
  outbox_cv_.notify_one();
}

bool Intake::Announce(std::vector<PendingEnd> ends) {
  std::vector<IncomingEvent> events;
  std::vector<std::string> run_ids;
  for (PendingEnd& end : ends) {
    run_ids.push_back(end.run_id);
    for (IncomingEvent& e : end.events) events.push_back(std::move(e));
  }
  for (int tries = 0;; ++tries) {
    std::vector<IncomingEvent> attempt = events;
    auto r = Ingest(std::move(attempt));
    if (r.ok() && r->waits_not_resumed > 0) {
      // Stored, but a wait they match (an invoking run's) is not resumed yet: not acknowledged,
      // so the sweep announces them again, and the resend, a duplicate, resumes it.
      spdlog::warn(
          "the ends of {} run(s) are stored but {} wait(s) were not resumed; the sweep "
          "retries them",
          run_ids.size(), r->waits_not_resumed);
      return false;
    }
    if (r.ok()) break;
    if (tries >= 2) {
      spdlog::warn("emitting the ends of {} run(s) failed: {}; the sweep retries them",
                   run_ids.size(), r.status().ToString());
      return false;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(100 << tries));
  }
  if (Status s = store_.AckRunEnds(run_ids); !s.ok()) {
    // Harmless: the sweep announces them again, and their events are stored once.
    spdlog::warn("acknowledging the ends of {} run(s) failed: {}", run_ids.size(), s.ToString());
    return false;
  }
  return true;
}

void Intake::AnnounceLaneGaps() {
  auto gaps = store_.PendingLaneGaps(kSweepBatch);
  if (!gaps.ok()) {
    spdlog::warn("reading lane gaps to announce failed: {}", gaps.status().ToString());
    return;
  }
  if (gaps->empty()) return;
  std::vector<IncomingEvent> events;
  std::vector<int64_t> ids;
  for (const store::LaneGap& gap : *gaps) {
    const std::string resumed = gap.resumed_run_id.value_or("");
    logging::Warn({.run_id = resumed, .function_id = gap.function_id},
                  "lane \"{}\" of {} gave up on numbers {}..{} ({}), went on with run {}", gap.key,
                  gap.function_id, gap.first, gap.last, gap.reason, resumed);
    Json data = {{"function_id", gap.function_id},
                 {"key", gap.key},
                 {"first", gap.first},
                 {"last", gap.last},
                 {"count", gap.last - gap.first + 1},
                 {"waited_ms", gap.recorded_at_ms - gap.waited_since_ms},
                 {"reason", gap.reason},
                 {"resumed_run_id", gap.resumed_run_id ? Json(*gap.resumed_run_id) : Json()}};
    // An id derived from the gap: announcing it twice (a lost acknowledgement) stores it once.
    events.push_back(
        InternalEvent(executor::kLaneGap, std::move(data), executor::LaneGapEventId(gap.id)));
    ids.push_back(gap.id);
  }
  if (auto r = Ingest(std::move(events)); !r.ok()) {
    spdlog::warn("emitting {} lane gap(s) failed: {}; the sweep retries them", ids.size(),
                 r.status().ToString());
    return;
  }
  if (Status s = store_.AckLaneGaps(ids); !s.ok()) {
    spdlog::warn("acknowledging {} lane gap(s) failed: {}", ids.size(), s.ToString());
  }
}

void Intake::Sweep(bool all) {
  const TimePoint now = clock_.Now();
  // Ends older than the sweep age (younger ones are being announced by the coordinator that
  // made them), or of any age at the first sweep: those a crashed coordinator left. Waits and
  // cancel_on events only once older than the sweep age, always: their sweep is a second
  // look for what was in flight at the first (Intake::LookBack, IngestWith).
  const int64_t aged = UnixMillis(now - kSweepAge);
  const int64_t ends_before = all ? 0 : aged;
  // One read says which sweeps have work: an idle coordinator's sweep is one transaction.
  auto due = store_.DueSweeps(aged, ends_before, now);
  if (!due.ok()) {
    spdlog::warn("reading what the sweeps have to do failed: {}", due.status().ToString());
    return;
  }
  if (due->lookbacks) SweepLookbacks(aged);
  if (due->lane_gaps) AnnounceLaneGaps();
  if (due->timeouts) SweepTimeouts();
  if (due->cancels) SweepCancels(aged);
  if (due->resumes) SweepResumes(aged);
  if (!due->run_ends) return;
  // Ends left by a full buffer, or by a crash of a busy coordinator.
  ForSweepPages([&] {
    auto pending = store_.PendingRunEnds(ends_before, kSweepBatch);
    if (!pending.ok()) {
      spdlog::warn("reading run ends to announce failed: {}", pending.status().ToString());
      return false;
    }
    if (pending->empty()) return false;
    std::vector<PendingEnd> ends;
    for (const std::string& run_id : *pending) {
      auto state = store_.LoadRunState(run_id);
      if (!state.ok()) {
        logging::Warn({.run_id = run_id}, "run {}: cannot load it to announce its end: {}", run_id,
                      state.status().ToString());
        continue;
      }
      ends.push_back(
          {run_id, EndEvents(*state, state->run.status, state->run.output, state->run.error)});
    }
    spdlog::info("announcing the end of {} run(s) recorded but not announced", ends.size());
    const size_t loaded = ends.size();
    // Short (the last page), or not all announced: a next page would read them again.
    return Announce(std::move(ends)) && pending->size() == static_cast<size_t>(kSweepBatch) &&
           loaded == pending->size();
  });
}

void Intake::SweepCancels(int64_t received_before_ms) {
  auto set = Functions(/*refresh=*/false);
  if (!set.ok()) {
    spdlog::warn("reading the functions for cancel_on failed: {}", set.status().ToString());
    return;
  }
  // Each event pages through its functions' active runs: a backlog is done a second's worth at
  // a time.
  SweepBudget budget;
  bool out_of_time = false;
  ForSweepPages([&] {
    auto pending = store_.PendingCancels(received_before_ms, kSweepBatch);
    if (!pending.ok()) {
      spdlog::warn("reading the cancel_on events to do failed: {}", pending.status().ToString());
      return false;
    }
    std::vector<std::string> done;
    size_t tried = 0;
    for (const store::EventRecord& event : *pending) {
      if (budget.Spent()) {
        out_of_time = true;
        break;
      }
      ++tried;
      if (CancelMatchingRuns(event, **set)) done.push_back(event.internal_id);
    }
    if (done.size() < tried) {
      spdlog::warn("cancel_on: the cancels of {} of {} event(s) failed; the sweep does them again",
                   tried - done.size(), tried);
    }
    if (Status s = store_.AckCancels(done); !s.ok()) {
      spdlog::warn("acknowledging the cancels of {} event(s) failed: {}", done.size(),
                   s.ToString());
      return false;
    }
    return !out_of_time && pending->size() == static_cast<size_t>(kSweepBatch) &&
           done.size() == pending->size();
  });
}

void Intake::SweepResumes(int64_t received_before_ms) {
  int resumed = 0;
  // Names whose earlier event's resumes failed: their later events wait for the next sweep,
  // so that none takes a wait the earlier one matches.
  std::set<std::string> failed_names;
  // The sweep shares its thread with the run-end announcements: a backlog (names with more
  // open waits than an ingest reads) is done a second's worth at a time.
  SweepBudget budget;
  bool out_of_time = false;
  ForSweepPages([&] {
    auto pending = store_.PendingResumes(received_before_ms, kSweepBatch);
    if (!pending.ok()) {
      spdlog::warn("reading the events whose waits are to resume failed: {}",
                   pending.status().ToString());
      return false;
    }
    std::vector<std::string> done;
    size_t skipped = 0;
    for (const store::EventRecord& event : *pending) {
      if (out_of_time || budget.Spent()) {
        out_of_time = true;
        ++skipped;
        continue;
      }
      if (failed_names.count(event.name)) {
        ++skipped;
        continue;
      }
      if (ResumeWaitsBefore(event, &resumed)) {
        done.push_back(event.internal_id);
      } else {
        failed_names.insert(event.name);
      }
    }
    if (done.size() + skipped < pending->size()) {
      spdlog::warn("resuming the waits of {} of {} event(s) failed; the sweep does them again",
                   pending->size() - done.size() - skipped, pending->size());
    }
    if (Status s = store_.AckResumes(done); !s.ok()) {
      spdlog::warn("acknowledging the resumes of {} event(s) failed: {}", done.size(),
                   s.ToString());
      return false;
    }
    return pending->size() == static_cast<size_t>(kSweepBatch) && done.size() == pending->size();
  });
  if (resumed > 0) {
    spdlog::info("the sweep resumed {} wait(s) of events stored earlier", resumed);
    if (on_new_work_) on_new_work_();
  }
}

bool Intake::ResumeWaitsBefore(const store::EventRecord& event, int* resumed) {
  int failed = 0;
  std::optional<store::WaitRecord> after;
  for (int page = 0;; ++page) {
    if (page == kResumePages) {
      spdlog::warn(
          "event {} ({}): resuming the waits registered before it stops after {} of them; "
          "later ones are matched by later events",
          event.internal_id, event.name, kResumePages * kResumeWaits);
      break;
    }
    auto waits = store_.WaitsBefore(event, after ? &*after : nullptr, kResumeWaits);
    if (!waits.ok()) {
      spdlog::warn("event {} ({}): reading the waits it may resume failed: {}", event.internal_id,
                   event.name, waits.status().ToString());
      return false;
    }
    *resumed += ResolveWaits(event, *waits, &failed);
    // The page's event waits (the invoke waits, read with the first, come after them).
    auto last = std::find_if(waits->rbegin(), waits->rend(), [](const store::WaitRecord& w) {
      return w.kind != store::kWaitInvoke;
    });
    if (last == waits->rend() || std::distance(last, waits->rend()) < kResumeWaits) break;
    after = *last;
  }
  return failed == 0;
}

void Intake::SweepLookbacks(int64_t before) {
  // A look-back may read up to kLookbackPages pages of events: a second's worth a sweep.
  SweepBudget budget;
  bool out_of_time = false;
  ForSweepPages([&] {
    auto pending = store_.PendingLookbacks(before, kSweepBatch);
    if (!pending.ok()) {
      spdlog::warn("reading waits whose look-back is pending failed: {}",
                   pending.status().ToString());
      return false;
    }
    size_t done = 0;
    size_t tried = 0;
    for (const store::WaitRecord& wait : *pending) {
      if (budget.Spent()) {
        out_of_time = true;
        break;
      }
      ++tried;
      done += LookBack(wait, /*last=*/true) ? 1 : 0;
    }
    spdlog::debug("the last look-back of {} wait(s) done", done);
    if (done < tried) {
      spdlog::warn("the last look-back of {} of {} wait(s) failed; the sweep does it again",
                   tried - done, tried);
      return false;
    }
    return !out_of_time && pending->size() == static_cast<size_t>(kSweepBatch);
  });
}

void Intake::SweepTimeouts() {
  auto cancelled = store_.CancelTimedOutRuns(clock_.Now(), kSweepBatch);
  if (!cancelled.ok()) {
    spdlog::warn("cancelling runs past their timeouts failed: {}", cancelled.status().ToString());
    return;
  }
  for (const std::string& run_id : *cancelled) {
    logging::Info({.run_id = run_id}, "run {} cancelled: past a deadline of its timeouts", run_id);
    AnnounceEnd(run_id);
  }
  if (!cancelled->empty() && on_new_work_) on_new_work_();  // lanes may have moved on
}

void Intake::FlushLoop() {
  std::unique_lock lock(outbox_mu_);
  // The first sweep, at start, takes every recorded end: those of a crashed coordinator.
  bool first_sweep = true;
  auto next_sweep = std::chrono::steady_clock::now();
  for (;;) {
    outbox_cv_.wait_until(lock, next_sweep, [&] { return stopping_ || !outbox_.empty(); });
    if (!outbox_.empty()) {
      // Gather what other runs end meanwhile: one transaction for many run-end events.
      if (!stopping_) outbox_cv_.wait_for(lock, kOutboxGather);
      // A transaction of at most kAnnounceBatch ends (a larger one took longer, and more
      // piled up meanwhile).
      std::vector<PendingEnd> batch;
      if (outbox_.size() <= kAnnounceBatch) {
        batch.swap(outbox_);
      } else {
        const auto cut = outbox_.begin() + kAnnounceBatch;
        batch.assign(std::make_move_iterator(outbox_.begin()), std::make_move_iterator(cut));
        outbox_.erase(outbox_.begin(), cut);
      }
      if (outbox_.size() < max_buffered_ends_) outbox_full_ = false;
      lock.unlock();
      Guarded("announcing run ends", [&] { Announce(std::move(batch)); });
      lock.lock();
      continue;
    }
    if (stopping_) return;
    if (std::chrono::steady_clock::now() >= next_sweep) {
      lock.unlock();
      Guarded("the run-end sweep", [&] { Sweep(first_sweep); });
      first_sweep = false;
      lock.lock();
      next_sweep = std::chrono::steady_clock::now() + kSweepInterval;
    }
  }
}

void Intake::Stop() {
  {
    std::lock_guard lock(outbox_mu_);
    stopping_ = true;
  }
  outbox_cv_.notify_all();
  if (flusher_.joinable()) flusher_.join();
}

Intake::~Intake() { Stop(); }

}  // namespace funcky::intake
