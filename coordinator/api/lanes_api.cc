// GET /v1/lanes, POST /v1/lanes/{function}/{key}/skip-head and …/retry-head.
#include <spdlog/spdlog.h>

#include "coordinator/api/api.h"
#include "coordinator/api/json_views.h"

namespace funcky::api {

using http::ErrorResponse;
using http::JsonResponse;
using http::Request;
using http::Response;
using store::Json;

namespace {

constexpr char kCursorSeparator = '\x1f';

}  // namespace

Response Api::HandleListLanes(const Request& req) {
  if (auto denied = CheckApiToken(req)) return *denied;
  store::LaneFilter filter;
  filter.function_id = req.query("function");
  const std::string cursor = req.query("cursor");
  const std::string blocked = req.query("blocked");
  if (blocked != "" && blocked != "true" && blocked != "false") {
    return ErrorResponse(InvalidArgument("blocked must be true or false"));
  }
  filter.blocked_only = blocked == "true";
  if (!cursor.empty()) {
    const size_t sep = cursor.find(kCursorSeparator);
    if (sep == std::string::npos) {
      return ErrorResponse(InvalidArgument("cursor is not one this API returned"));
    }
    filter.after.emplace(cursor.substr(0, sep), cursor.substr(sep + 1));
  }
  auto limit = ParseLimit(req.query("limit"));
  if (!limit.ok()) return ErrorResponse(limit.status());
  filter.limit = *limit;
  auto lanes = store_.ListLanes(filter);
  if (!lanes.ok()) return ErrorResponse(lanes.status());
  const int64_t now_ms = UnixMillis(clock_.Now());
  Json data = Json::array();
  for (const auto& l : *lanes) {
    data.push_back({{"function_id", l.function_id},
                    {"key", l.key},
                    {"depth", l.depth},
                    {"head", {{"run_id", l.head_run_id}, {"status", l.head_status}}},
                    {"head_since", FormatTime(l.head_since_ms)},
                    {"blocked_ms", now_ms - l.head_since_ms},
                    {"head_deadline",
                     l.head_deadline_ms ? Json(FormatTime(*l.head_deadline_ms)) : Json(nullptr)}});
  }
  Json next = nullptr;
  if (static_cast<int>(lanes->size()) == filter.limit) {
    next = lanes->back().function_id + kCursorSeparator + lanes->back().key;
  }
  return JsonResponse(200, {{"data", data}, {"cursor", next}});
}

Response Api::HandleSkipLaneHead(const Request& req) {
  if (auto denied = CheckApiToken(req)) return *denied;
  const std::string& function_id = req.param("function");
  const std::string& key = req.param("key");
  auto skipped = store_.SkipLaneHead(function_id, key, clock_.Now());
  if (!skipped.ok()) {
    if (skipped.status().code() == StatusCode::kAborted) {
      return ErrorResponse(409, "conflict", skipped.status().message());
    }
    return ErrorResponse(skipped.status());
  }
  spdlog::warn("lane \"{}\" of {}: head run {} skipped by an operator", key, function_id, *skipped);
  if (on_new_work_) on_new_work_();
  return JsonResponse(200, {{"data", {{"skipped_run_id", *skipped}}}});
}

Response Api::HandleRetryLaneHead(const Request& req) {
  if (auto denied = CheckApiToken(req)) return *denied;
  const std::string& function_id = req.param("function");
  const std::string& key = req.param("key");
  auto retried = store_.RetryLaneHead(function_id, key, clock_.Now());
  if (!retried.ok()) {
    if (retried.status().code() == StatusCode::kFailedPrecondition) {
      return ErrorResponse(409, "conflict", retried.status().message());
    }
    return ErrorResponse(retried.status());
  }
  spdlog::warn("lane \"{}\" of {}: blocked head run {} retried by an operator", key, function_id,
               *retried);
  if (on_new_work_) on_new_work_();
  return JsonResponse(200, {{"data", {{"retried_run_id", *retried}}}});
}

}  // namespace funcky::api
