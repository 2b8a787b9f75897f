// Building the call request the coordinator pushes to a host (docs/protocol.md §4), and reading
// a function's settings out of its synced config.
#pragma once

#include <string>

#include "common/clock.h"
#include "common/http_client.h"
#include "common/status.h"
#include "coordinator/store/store.h"

namespace funcky::executor {

// The host URL of a function: `steps.step.runtime.url` of its config.
Result<std::string> FunctionUrl(const store::Json& config);
// Retries (not attempts) from `steps.step.retries.attempts`; default 4, clamped to [0, 20].
int FunctionRetries(const store::Json& config);

struct CallOptions {
  std::string signing_key;  // empty: calls are not signed (dev mode)
  // Offer hosts async checkpointing (docs/protocol.md §5.6): a call carries ctx.fn_id and
  // ctx.qi_id, so the JS SDK runs the function's steps back to back within the call and
  // reports each to POST /v1/checkpoint/{run}/async before it answers.
  bool checkpointing = true;
};

// The largest body a call carries: a run's state (its events and memoized steps) past it
// fails the run (kResourceExhausted from BuildCall) rather than being sent again and again
// to a host that refuses it (the C++ SDK takes at most 32 MiB), or held by each call in
// flight.
inline constexpr size_t kMaxCallBodyBytes = 32 << 20;

// The most steps a run may have (--max-steps-per-run): by default and at most, Inngest's
// default and absolute limits. Every call carries each recorded step and the host replays
// them, so a run's cost grows with the square of its steps; a function that makes steps in an
// endless loop fails at the limit instead of being called ever larger calls.
inline constexpr int64_t kDefaultStepLimit = 1000;
inline constexpr int64_t kMaxStepLimit = 10000;

// The POST for queue item `item` of the run in `state`: body
// {event, events, steps, ctx{run_id, attempt, max_attempts, stack, fn_id, qi_id, …}, version,
// use_api}, serialised in its JCS form and signed with the key when there is one. `fn_id`
// (the function's id) and `qi_id` (QueueRef) only with options.checkpointing: a truthy fn_id
// is what turns the JS SDK's checkpointing on.
Result<HttpRequest> BuildCall(const store::RunState& state, const store::QueueItem& item,
                              const CallOptions& options, TimePoint now);

// Whether the call of the run in `state` would carry more than about `bytes` of its events
// and memoized steps (JsonLargerThan: cheap however large they are).
bool CallStateLargerThan(const store::RunState& state, size_t bytes);

// The reference of a leased queue item a call carries as ctx.qi_id, "<item id>.<lease token>":
// a host's checkpoint names its call by it, and it holds only while that lease does.
std::string QueueRef(const store::QueueItem& item);
// The queue item (id and lease token) of run `run_id` that `ref` names; kInvalidArgument
// when `ref` is not a QueueRef.
Result<store::QueueItem> ParseQueueRef(std::string_view ref, const std::string& run_id);

}  // namespace funcky::executor
