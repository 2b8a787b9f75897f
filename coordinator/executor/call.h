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
};

// The POST for queue item `item` of the run in `state`: body
// {event, events, steps, ctx{run_id, attempt, max_attempts, stack, …}, version, use_api},
// serialised in its JCS form and signed with the key when there is one. Never sends `fn_id`
// (that would turn on the JS SDK's async checkpointing, which Funcky does not implement).
Result<HttpRequest> BuildCall(const store::RunState& state, const store::QueueItem& item,
                              const CallOptions& options, TimePoint now);

}  // namespace funcky::executor
