// JSON shapes of the /v1 API, shared by its handlers.
#pragma once

#include <string_view>

#include <nlohmann/json.hpp>

#include "common/duration.h"  // FormatRfc3339: the API's times
#include "common/status.h"
#include "coordinator/scheduler/flow.h"
#include "coordinator/store/store.h"

namespace funcky::api {

// A request body's string field `key`; kInvalidArgument ("<key> must be a non-empty
// string") when it is missing, not a string or empty.
Result<std::string> StringField(const nlohmann::json& body, const char* key);

// A page size: default 50, 1..500. kInvalidArgument otherwise.
Result<int> ParseLimit(std::string_view text);

nlohmann::json RunJson(const store::RunRecord& run);
nlohmann::json EventJson(const store::EventRecord& event);
nlohmann::json FunctionJson(const store::FunctionRecord& fn);
// A function's lane as the coordinator understood its config: null without a lane, else
// {from, key, head_timeout, bypass, sequence: null | {expression, gap_timeout,
// gap_timeout_ms, start, stale, enforced}}.
nlohmann::json LaneJson(const scheduler::FlowControl& flow);

}  // namespace funcky::api
