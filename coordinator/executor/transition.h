// What a host's reply means for the run (docs/protocol.md §5, §8.1): the pure core of the
// executor, tested without a network or a database.
#pragma once

#include <random>

#include "common/clock.h"
#include "common/http_client.h"
#include "common/ops.h"
#include "common/status.h"
#include "coordinator/executor/call.h"
#include "coordinator/scheduler/backoff.h"
#include "coordinator/store/store.h"

namespace funcky::executor {

struct CallOutcome {
  // The host's reply, or why there is none (refused, timed out, reset).
  Result<HttpResponse> reply;
  TimePoint started;
  TimePoint ended;
};

// Decides the Transition for queue item `item` of the run in `state` after `outcome`:
// - 200 from an SDK: the run completes with the body as output;
// - 206: each op is applied (StepRun memoizes {"data":…} and asks for discovery; StepError
//   retries the same call with backoff while attempts remain, else counts as StepFailed;
//   StepFailed memoizes {"error":…}; StepPlanned enqueues the planned step; RunComplete
//   completes the run); an op this coordinator does not implement fails the run, saying so;
// - anything else (no reply, 5xx, a 2xx that is not from an SDK, a malformed body) is a
//   failed attempt: retried with backoff (or `Retry-After`) while attempts remain, then the
//   run fails; `X-Inngest-No-Retry: true` fails the run at once.
//   Sleep enqueues a resume item at the wake time; WaitForEvent and InvokeFunction register
//   a wait whose timeout is a resume item (an invocation's target is started by the
//   executor, see NewWait::invoke);
// - a reply that would take the run past `step_limit` steps (StepsAfter) while it goes on
//   fails it with an InngestErrFunctionOverflowed error, as Inngest's executor does.
store::Transition DecideTransition(const store::RunState& state, const store::QueueItem& item,
                                   const CallOutcome& outcome, const scheduler::RetryPolicy& policy,
                                   std::mt19937_64& rng, int64_t step_limit = kDefaultStepLimit);

// Whether `reply` is a streamed answer: with `streaming` (INNGEST_STREAMING=true) the JS SDK
// answers a call with 201 at once, sends a space every few seconds while the function runs,
// then the answer as JSON `{status, headers, body}` (docs/protocol.md §5.1).
bool IsStreamedAnswer(const HttpResponse& reply);

// The answer a streamed answer carries: its status, its headers (ahead of the 201's own, so
// they win) and its body. kUnavailable saying what is wrong when the stream holds no such
// answer (the host stopped mid-way): the call is tried again, as for a connection that broke.
Result<HttpResponse> UnwrapStreamedAnswer(HttpResponse reply);

// How many steps the run in `state` has once `t` is applied, counting those `t` asks for and
// that are not recorded yet (a planned step, a sleep, a wait or an invoke, each a step once it
// ends): its recorded steps and the new ids among t's steps, next calls and waits.
int64_t StepsAfter(const store::RunState& state, const store::Transition& t);

// The error of a run that would pass `step_limit` steps (Inngest's name, which SDKs know).
store::Json StepLimitError(int64_t step_limit);

// What a host's async checkpoint of a call in flight records (docs/protocol.md §5.6): each op
// is a step the host ran within the call, recorded as a 206 records it (StepRun memoizes
// {"data":…}, a legacy Step its data as is), with a completed attempt that ended `now` and
// lasted as long as the host says (Op::timing), else no time. The attempts' `attempt` is
// left 0: the store sets the call's. kInvalidArgument naming the first op of another kind
// (errors, plans, sleeps and the run's end come in the call's reply instead) or none at all.
struct Checkpointed {
  std::vector<store::StepRecord> steps;
  std::vector<store::AttemptRecord> attempts;
};
Result<Checkpointed> CheckpointRecords(const std::vector<Op>& ops, TimePoint now);

// The transition of a resume item (a timer, or a wait matched or timed out): memoize its
// memo under its step and run discovery.
store::Transition ResumeTransition(const store::QueueItem& item, TimePoint now);

// The correlation id of an invocation made by `run_id`'s step `step_id` (docs/protocol.md §8.6).
std::string CorrelationId(const std::string& run_id, const std::string& step_id);

// Ids of the coordinator's own events (docs/protocol.md §8.6). Each derives from what it
// announces, so that announcing it twice stores it once, and begins with kInternalIdPrefix,
// which events sent to the API may not (coordinator/api/event_body.cc): a sender's id, the
// run's id reused as an idempotency key say, cannot take one and drop the coordinator's event.
inline constexpr std::string_view kInternalIdPrefix = "funcky:";
std::string FinishedEventId(std::string_view run_id);         // inngest/function.finished
std::string FailedEventId(std::string_view run_id);           // inngest/function.failed
std::string CancelledEventId(std::string_view run_id);        // inngest/function.cancelled
std::string InvokedEventId(std::string_view correlation_id);  // inngest/function.invoked
// Older ids of the coordinator's, under prefixes of their own (stored ones keep them): a cron
// tick's, from its function and time (RFC 3339), and a lane gap's, from its id.
inline constexpr std::string_view kCronTickIdPrefix = "cron:";
inline constexpr std::string_view kLaneGapIdPrefix = "lane-gap-";
std::string CronTickEventId(std::string_view function_id, std::string_view at);
std::string LaneGapEventId(int64_t gap_id);
// Every prefix of the coordinator's ids, which events sent to the API may not begin with.
inline constexpr std::string_view kReservedIdPrefixes[] = {kInternalIdPrefix, kCronTickIdPrefix,
                                                           kLaneGapIdPrefix};

inline constexpr const char* kFunctionFinished = "inngest/function.finished";
inline constexpr const char* kFunctionFailed = "inngest/function.failed";
inline constexpr const char* kFunctionCancelled = "inngest/function.cancelled";
inline constexpr const char* kFunctionInvoked = "inngest/function.invoked";
// Funcky's own event: a sequence lane gave up on missing numbers (docs/ordering.md).
inline constexpr const char* kLaneGap = "funcky/lane.gap";

}  // namespace funcky::executor
