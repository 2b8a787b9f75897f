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
  auto lanes = stores_.lanes.ListLanes(filter);
  if (!lanes.ok()) return ErrorResponse(lanes.status());
  const int64_t now_ms = UnixMillis(clock_.Now());
  Json data = Json::array();
  for (const auto& l : *lanes) {
    data.push_back({{"function_id", l.function_id},
                    {"key", l.key},
                    {"depth", l.depth},
                    {"head", {{"run_id", l.head_run_id}, {"status", l.head_status}}},
                    {"head_since", FormatRfc3339(l.head_since_ms)},
                    {"blocked_ms", now_ms - l.head_since_ms},
                    {"head_deadline", l.head_deadline_ms ? Json(FormatRfc3339(*l.head_deadline_ms))
                                                         : Json(nullptr)}});
  }
  Json next = nullptr;
  if (static_cast<int>(lanes->size()) == filter.limit) {
    next = lanes->back().function_id + kCursorSeparator + lanes->back().key;
  }
  return JsonResponse(200, {{"data", data}, {"cursor", next}});
}

Response Api::LaneHeadAction(const Request& req, LaneHeadOp op, std::string_view done,
                             std::string_view result_field) {
  const std::string& function_id = req.param("function");
  const std::string& key = req.param("key");
  auto run_id = (stores_.lanes.*op)(function_id, key, clock_.Now());
  if (!run_id.ok()) {
    // The head changed meanwhile (skip) or is not blocked (retry): the caller should look again.
    const StatusCode code = run_id.status().code();
    if (code == StatusCode::kAborted || code == StatusCode::kFailedPrecondition) {
      return ErrorResponse(409, "conflict", run_id.status().message());
    }
    return ErrorResponse(run_id.status());
  }
  spdlog::warn("lane \"{}\" of {}: head run {} {} by an operator", key, function_id, *run_id, done);
  intake_.AnnounceEnd(*run_id);  // a skipped head has ended; a retried one has not
  intake_.Wake();
  return JsonResponse(200, {{"data", {{std::string(result_field), *run_id}}}});
}

Response Api::HandleSkipLaneHead(const Request& req) {
  return LaneHeadAction(req, &store::LaneStore::SkipLaneHead, "skipped", "skipped_run_id");
}

Response Api::HandleRetryLaneHead(const Request& req) {
  return LaneHeadAction(req, &store::LaneStore::RetryLaneHead, "retried", "retried_run_id");
}

}  // namespace funcky::api
