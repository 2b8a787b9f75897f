// JSON shapes of the /v1 API, shared by its handlers.
#pragma once

#include <string_view>

#include <nlohmann/json.hpp>

#include "common/duration.h"  // FormatRfc3339: the API's times
#include "common/status.h"
#include "coordinator/store/store.h"

namespace funcky::api {

// A page size: default 50, 1..500. kInvalidArgument otherwise.
Result<int> ParseLimit(std::string_view text);

nlohmann::json RunJson(const store::RunRecord& run);
nlohmann::json EventJson(const store::EventRecord& event);
nlohmann::json FunctionJson(const store::FunctionRecord& fn);

}  // namespace funcky::api
