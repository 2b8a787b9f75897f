// GET /v1/lanes, GET /v1/lanes/{function}/{key}/gaps, POST /v1/lanes/{function}/{key}/skip-head,
// …/retry-head and …/set-next.
#include <optional>

#include <spdlog/spdlog.h>

#include "coordinator/api/api.h"
#include "coordinator/api/json_views.h"
#include "coordinator/logging/log.h"
#include "coordinator/scheduler/sequence.h"

namespace funcky::api {

using http::ErrorResponse;
using http::JsonResponse;
using http::Request;
using http::Response;
using store::Json;

namespace {

constexpr char kCursorSeparator = '\x1f';

// The query parameter `name` of `req` as a lane number, read as an event's string of digits
// is (scheduler::SequenceNumber: 0 to kMaxSequenceNumber); none when absent; kInvalidArgument
// saying what it must be otherwise.
Result<std::optional<int64_t>> LaneNumberParam(const Request& req, const char* name) {
  const std::string text = req.query(name);
  if (text.empty()) return std::optional<int64_t>();
  auto n = scheduler::SequenceNumber(Json(text));
  if (!n.ok()) {
    return InvalidArgument(std::string(name) + " must be a lane number, an integer from 0 to " +
                           std::to_string(scheduler::kMaxSequenceNumber));
  }
  return std::optional<int64_t>(*n);
}

Json GapJson(const store::LaneGap& gap) {
  return {{"first", gap.first},
          {"last", gap.last},
          {"count", gap.last - gap.first + 1},
          {"waited_since", FormatRfc3339(gap.waited_since_ms)},
          {"recorded_at", FormatRfc3339(gap.recorded_at_ms)},
          {"reason", gap.reason},
          {"resumed_run_id", gap.resumed_run_id ? Json(*gap.resumed_run_id) : Json(nullptr)}};
}

// A sequence lane's state: the number it expects, the numbers waiting, since when it waits
// for a missing one and when it gives up on it, and what it recorded.
Json SequenceJson(const store::LaneSequence& s) {
  const bool waiting_for_gap = s.gap_since_ms.has_value();
  return {{"next", s.next ? Json(*s.next) : Json(nullptr)},
          {"waiting", s.waiting},
          {"gap_timeout_ms", s.gap_timeout_ms},
          {"gap_since", waiting_for_gap ? Json(FormatRfc3339(*s.gap_since_ms)) : Json(nullptr)},
          {"gives_up_at", waiting_for_gap ? Json(FormatRfc3339(*s.gap_since_ms + s.gap_timeout_ms))
                                          : Json(nullptr)},
          {"gaps_total", s.gaps_total},
          {"stale_total", s.stale_total},
          {"duplicates_total", s.duplicates_total},
          {"last_gap", s.last_gap ? GapJson(*s.last_gap) : Json(nullptr)}};
}

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
    Json lane = {{"function_id", l.function_id},
                 {"key", l.key},
                 {"depth", l.depth},
                 {"head",
                  {{"run_id", l.head_run_id.empty() ? Json(nullptr) : Json(l.head_run_id)},
                   {"status", l.head_status}}},
                 {"head_since", FormatRfc3339(l.head_since_ms)},
                 {"blocked_ms", now_ms - l.head_since_ms},
                 {"head_deadline",
                  l.head_deadline_ms ? Json(FormatRfc3339(*l.head_deadline_ms)) : Json(nullptr)},
                 {"sequence", nullptr}};
    if (l.sequence) lane["sequence"] = SequenceJson(*l.sequence);
    data.push_back(std::move(lane));
  }
  Json next = nullptr;
  if (static_cast<int>(lanes->size()) == filter.limit) {
    next = lanes->back().function_id + kCursorSeparator + lanes->back().key;
  }
  return JsonResponse(200, {{"data", data}, {"cursor", next}});
}

Response Api::HandleListLaneGaps(const Request& req) {
  auto limit = ParseLimit(req.query("limit"));
  if (!limit.ok()) return ErrorResponse(limit.status());
  auto gaps = stores_.lanes.ListLaneGaps(req.param("function"), req.param("key"), *limit);
  if (!gaps.ok()) return ErrorResponse(gaps.status());
  Json data = Json::array();
  for (const store::LaneGap& gap : *gaps) data.push_back(GapJson(gap));
  return JsonResponse(200, {{"data", data}});
}

Response Api::LaneHeadAction(const Request& req, const LaneHeadOp& op, bool skip,
                             std::string_view done, std::string_view result_field,
                             const bool* done_before) {
  const std::string& function_id = req.param("function");
  const std::string& key = req.param("key");
  auto run_id = op(function_id, key);
  if (!run_id.ok()) {
    // The head changed meanwhile (skip) or is not blocked (retry): the caller should look again.
    const StatusCode code = run_id.status().code();
    if (code == StatusCode::kAborted || code == StatusCode::kFailedPrecondition) {
      return ErrorResponse(409, "conflict", run_id.status().message());
    }
    return ErrorResponse(run_id.status());
  }
  auto run = stores_.runs.GetRun(*run_id);
  if (skip && run.ok() && !store::IsTerminalStatus(run->status)) {
    // A sequence lane waiting for a missing number gave up on it: this run goes on.
    logging::Warn({.run_id = *run_id, .function_id = function_id},
                  "lane \"{}\" of {}: an operator gave up on its missing numbers; run {} goes on",
                  key, function_id, *run_id);
    intake_.Wake();
    return JsonResponse(200, {{"data", {{"gap_skipped", true}, {"resumed_run_id", *run_id}}}});
  }
  if (done_before && *done_before) {
    return JsonResponse(200, {{"data", {{std::string(result_field), *run_id}}}});
  }
  logging::Warn({.run_id = *run_id, .function_id = function_id},
                "lane \"{}\" of {}: head run {} {} by an operator", key, function_id, *run_id,
                done);
  intake_.AnnounceEnd(*run_id);  // a skipped head has ended; a retried one has not
  intake_.Wake();
  return JsonResponse(200, {{"data", {{std::string(result_field), *run_id}}}});
}

Response Api::HandleSkipLaneHead(const Request& req) {
  // `run_id`: the head the caller saw, and only it is skipped (a request sent again after its
  // answer was lost skipped the next head, a run nobody meant to skip). `waiting_for`: the
  // missing number the caller saw a sequence lane without a head wait for, and only that gap
  // is given up (the run that became head meanwhile is not skipped in its place).
  const std::string expected = req.query("run_id");
  auto waiting = LaneNumberParam(req, "waiting_for");
  if (!waiting.ok()) return ErrorResponse(waiting.status());
  const std::optional<int64_t> waiting_for = *waiting;
  if (waiting_for && !expected.empty()) {
    return ErrorResponse(InvalidArgument(
        "run_id and waiting_for exclude each other: a lane that waits for a number has no head"));
  }
  bool skipped_before = false;
  return LaneHeadAction(
      req,
      [&](const std::string& function_id, const std::string& key) {
        return stores_.lanes.SkipLaneHead(function_id, key, clock_.Now(), expected, waiting_for,
                                          &skipped_before);
      },
      /*skip=*/true, "skipped", "skipped_run_id", &skipped_before);
}

Response Api::HandleSetLaneNext(const Request& req) {
  // `next`: the number the lane is to expect; `was`: the number the caller saw it expect, and
  // only then (an answer lost and the request sent again after the lane moved on changes
  // nothing).
  auto next = LaneNumberParam(req, "next");
  if (!next.ok()) return ErrorResponse(next.status());
  if (!*next)
    return ErrorResponse(InvalidArgument("next is required: the number the lane is to expect"));
  auto was = LaneNumberParam(req, "was");
  if (!was.ok()) return ErrorResponse(was.status());
  const std::string& function_id = req.param("function");
  const std::string& key = req.param("key");
  auto set = stores_.lanes.SetLaneNext(function_id, key, **next, *was, clock_.Now());
  if (!set.ok()) {
    if (set.status().code() == StatusCode::kAborted) {
      return ErrorResponse(409, "conflict", set.status().message());
    }
    return ErrorResponse(set.status());
  }
  logging::Warn(
      {.function_id = function_id},
      "lane \"{}\" of {}: an operator set the number it expects next to {} (it expected {})", key,
      function_id, **next, set->was ? std::to_string(*set->was) : "none");
  Json data = {{"next", **next}, {"was", set->was ? Json(*set->was) : Json(nullptr)}};
  if (set->head) {
    data["resumed_run_id"] = *set->head;
    intake_.Wake();
  }
  return JsonResponse(200, {{"data", std::move(data)}});
}

Response Api::HandleRetryLaneHead(const Request& req) {
  return LaneHeadAction(
      req,
      [&](const std::string& function_id, const std::string& key) {
        return stores_.lanes.RetryLaneHead(function_id, key, clock_.Now());
      },
      /*skip=*/false, "retried", "retried_run_id");
}

}  // namespace funcky::api
