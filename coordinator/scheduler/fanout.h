// Which functions an event starts (docs/protocol.md §3).
#pragma once

#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "coordinator/scheduler/flow.h"
#include "coordinator/store/store.h"

namespace funcky::scheduler {

// True when trigger event pattern `pattern` matches event name `name`: equal, or a pattern
// ending in "*" right after "/" or "." that matches any name with that prefix
// ("app/*" matches "app/user.created").
bool EventNameMatches(std::string_view pattern, std::string_view name);

// The functions among `functions` with a trigger matching `event` — by name, and by the
// trigger's expression when it has one — each once, in order. `flows` holds each function's
// compiled config by id; a function missing from it is not started.
std::vector<const store::FunctionRecord*> MatchFunctions(
    const std::vector<store::FunctionRecord>& functions,
    const std::map<std::string, FlowControl>& flows, const store::EventRecord& event);

}  // namespace funcky::scheduler
