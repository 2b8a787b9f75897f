// GET /v1/runs, /v1/runs/{id}, POST /v1/runs/{id}/cancel and /replay, GET /v1/functions.
#include <algorithm>
#include <map>
#include <set>

#include "common/duration.h"
#include "coordinator/api/api.h"
#include "coordinator/api/json_views.h"

namespace funcky::api {

using http::ErrorResponse;
using http::JsonResponse;
using http::Request;
using http::Response;
using store::Json;

namespace {

// The longest Idempotency-Key of a replay (as Stripe's: 255).
constexpr size_t kMaxIdempotencyKey = 255;

// What a memoized step returned (docs/protocol.md §5.5): {"data": x} is x, {"error": …} is none,
// anything else (a sleep's null, a matched event) is itself.
Json StepOutput(const Json& memo) {
  if (memo.is_object() && memo.size() == 1) {
    if (memo.contains("data")) return memo["data"];
    if (memo.contains("error")) return nullptr;
  }
  return memo;
}

}  // namespace

Response Api::HandleListRuns(const Request& req) {
  store::RunFilter filter;
  filter.function_id = req.query("function");
  filter.status = req.query("status");
  filter.cursor = req.query("cursor");
  filter.key = req.query("key");
  for (auto [param, field] :
       {std::pair{"from", &filter.created_from_ms}, std::pair{"to", &filter.created_to_ms}}) {
    if (req.query(param).empty()) continue;
    auto ms = ParseRfc3339(req.query(param));
    if (!ms.ok()) {
      return ErrorResponse(InvalidArgument(std::string(param) + " must be an RFC 3339 time, e.g. "
                                                                "2026-01-31T12:00:00Z"));
    }
    *field = *ms;
  }
  if (!filter.status.empty()) {
    static const std::set<std::string> kStatuses = {
        store::kQueued,  store::kRunning,   store::kSleeping, store::kWaiting,
        store::kBlocked, store::kCompleted, store::kFailed,   store::kCancelled};
    if (!kStatuses.count(filter.status)) {
      return ErrorResponse(InvalidArgument(
          "status must be one of queued, running, sleeping, waiting, blocked, completed, "
          "failed, cancelled"));
    }
  }
  auto limit = ParseLimit(req.query("limit"));
  if (!limit.ok()) return ErrorResponse(limit.status());
  filter.limit = *limit;
  auto runs = stores_.runs.ListRuns(filter);
  if (!runs.ok()) return ErrorResponse(runs.status());
  Json data = Json::array();
  for (const auto& r : *runs) data.push_back(RunJson(r));
  Json cursor = nullptr;
  if (static_cast<int>(runs->size()) == filter.limit) cursor = runs->back().id;
  return JsonResponse(200, {{"data", data}, {"cursor", cursor}});
}

Response Api::HandleGetRun(const Request& req) {
  const std::string& id = req.param("id");
  auto run = stores_.runs.GetRun(id);
  if (!run.ok()) return ErrorResponse(run.status());
  auto steps = stores_.runs.GetSteps(id);
  if (!steps.ok()) return ErrorResponse(steps.status());
  auto attempts = stores_.runs.GetAttempts(id);
  if (!attempts.ok()) return ErrorResponse(attempts.status());
  auto event = stores_.events.GetEvent(run->event_id);
  if (!event.ok()) return ErrorResponse(event.status());

  // One entry per step: memoized steps in stack order, then steps still being retried.
  std::map<std::string, std::vector<const store::AttemptRecord*>> by_step;
  for (const auto& a : *attempts) by_step[a.step_id].push_back(&a);
  auto attempts_json = [&](const std::string& step_id) {
    Json out = Json::array();
    for (const auto* a : by_step[step_id]) {
      out.push_back({{"attempt", a->attempt},
                     {"outcome", a->outcome},
                     {"error", a->error},
                     {"started_at", FormatRfc3339(a->started_at_ms)},
                     {"ended_at", FormatRfc3339(a->ended_at_ms)},
                     {"duration_ms", a->ended_at_ms - a->started_at_ms}});
    }
    return out;
  };
  Json steps_json = Json::array();
  std::set<std::string> memoized;
  for (const auto& s : *steps) {
    memoized.insert(s.step_id);
    Json a = attempts_json(s.step_id);
    Json j = {
        {"id", s.step_id},
        {"name", s.name},
        {"status", s.status},
        {"attempts", a.size()},
        {"attempt_log", a},
        {"output", StepOutput(s.memo)},
        {"error", s.memo.is_object() && s.memo.contains("error") ? s.memo["error"] : Json(nullptr)},
        {"ended_at", FormatRfc3339(s.created_at_ms)}};
    if (!a.empty()) j["started_at"] = a.front()["started_at"];
    steps_json.push_back(std::move(j));
  }
  for (const auto& [step_id, list] : by_step) {
    if (memoized.count(step_id)) continue;
    Json a = attempts_json(step_id);
    steps_json.push_back({{"id", step_id},
                          {"name", list.front()->name},
                          {"status", store::IsTerminalStatus(run->status) ? "failed" : "retrying"},
                          {"attempts", a.size()},
                          {"attempt_log", a},
                          {"output", nullptr},
                          {"error", list.back()->error},
                          {"started_at", a.front()["started_at"]}});
  }
  Json j = RunJson(*run);
  j["event"] = EventJson(*event);
  if (run->event_ids.size() > 1) {  // a batch's run (batchEvents): all its events, in order
    j["events"] = Json::array();
    for (const std::string& event_id : run->event_ids) {
      auto e = stores_.events.GetEvent(event_id);
      if (!e.ok()) return ErrorResponse(e.status());
      j["events"].push_back(EventJson(*e));
    }
  }
  j["steps"] = std::move(steps_json);
  return JsonResponse(200, {{"data", j}});
}

Response Api::HandleCancelRun(const Request& req) {
  const std::string& id = req.param("id");
  auto cancelled =
      intake_.Cancel(id, {{"name", "Cancelled"}, {"message", "cancelled through the API"}});
  if (!cancelled.ok()) return ErrorResponse(cancelled.status());
  auto run = stores_.runs.GetRun(id);
  if (!run.ok()) return ErrorResponse(run.status());
  if (!*cancelled) {
    return ErrorResponse(409, "conflict", "run " + id + " has ended already (" + run->status + ")");
  }
  return JsonResponse(200, {{"data", RunJson(*run)}});
}

Response Api::HandleReplayRun(const Request& req) {
  // A client that makes the request again after a lost answer sends the same key, and gets
  // the run the first request started.
  const std::string_view key = req.header("Idempotency-Key");
  if (key.size() > kMaxIdempotencyKey ||
      !std::all_of(key.begin(), key.end(), [](char c) { return c >= 0x20 && c < 0x7f; })) {
    return ErrorResponse(InvalidArgument("the Idempotency-Key header must be at most " +
                                         std::to_string(kMaxIdempotencyKey) +
                                         " printable ASCII characters"));
  }
  auto replay = intake_.Replay(req.param("id"), std::string(key));
  if (!replay.ok()) return ErrorResponse(replay.status());
  auto run = stores_.runs.GetRun(*replay);
  if (!run.ok()) return ErrorResponse(run.status());
  Json j = RunJson(*run);
  j["replay_of"] = req.param("id");
  return JsonResponse(201, {{"data", j}});
}

Response Api::HandleListFunctions(const Request& req) {
  auto functions = stores_.apps.ListFunctions();
  if (!functions.ok()) return ErrorResponse(functions.status());
  auto apps = stores_.apps.ListApps();
  if (!apps.ok()) return ErrorResponse(apps.status());
  std::map<std::string, const store::AppRecord*> app_by_id;
  for (const auto& a : *apps) app_by_id[a.id] = &a;
  Json data = Json::array();
  for (const auto& f : *functions) {
    Json j = FunctionJson(f);
    auto flow = scheduler::ParseFlowControl(f.config);
    j["lane"] = flow.ok() ? LaneJson(*flow) : Json(nullptr);
    if (auto it = app_by_id.find(f.app_id); it != app_by_id.end()) {
      j["app"] = {{"id", it->second->id},
                  {"url", it->second->url},
                  {"sdk", it->second->sdk},
                  {"synced_at", FormatRfc3339(it->second->synced_at_ms)}};
    }
    data.push_back(std::move(j));
  }
  return JsonResponse(200, {{"data", data}});
}

}  // namespace funcky::api
