// POST /e/{key} and /v1/events: event intake (docs/protocol.md §3); GET /v1/events.
#include <spdlog/spdlog.h>

#include "common/duration.h"
#include "common/ulid.h"
#include "coordinator/api/api.h"
#include "coordinator/api/event_body.h"
#include "coordinator/api/json_views.h"

namespace funcky::api {

using http::JsonResponse;
using http::Request;
using http::Response;
using store::Json;

namespace {

// The SDK checks `status` inside the body; `ids` is always present.
Response EventsError(int status, std::string_view code, const std::string& message) {
  return JsonResponse(
      status, {{"ids", Json::array()}, {"status", status}, {"error", message}, {"code", code}});
}

}  // namespace

std::optional<Response> Api::RefuseEvents(const Request& req, std::string_view key) const {
  if (!EventKeyAccepted(key)) return EventsError(401, "unauthenticated", "unknown event key");
  if (options_.event_keys.empty() && options_.keyless_routes_loopback_only &&
      !http::HostIsLoopback(req)) {
    return EventsError(403, "forbidden",
                       "without --event-key, events are taken only from a Host that names this "
                       "machine (localhost, 127.0.0.1, ::1)");
  }
  return std::nullopt;
}

Response Api::HandleEvents(const Request& req) {
  const int64_t now_ms = UnixMillis(clock_.Now());
  auto events = ParseEventBody(
      req.body,
      {.max_events = options_.max_events_per_request, .max_event_bytes = options_.max_event_bytes},
      now_ms);
  if (!events.ok()) {
    const Status& s = events.status();
    int status = s.code() == StatusCode::kResourceExhausted ? 413 : 400;
    return EventsError(status, StatusCodeName(s.code()), s.message());
  }
  std::vector<Json>& list = *events;
  const std::string seed(req.header("x-inngest-event-id-seed"));
  std::vector<intake::IncomingEvent> batch;
  batch.reserve(list.size());
  // Unseeded, the events' ids increase in the request's order, as seeded ones do: events of
  // one request share a millisecond, and a look-back or a sweep takes the first match by id.
  const std::vector<std::string> unseeded_ids =
      seed.empty() ? NewUlidsInOrder(now_ms, list.size()) : std::vector<std::string>();
  for (size_t i = 0; i < list.size(); ++i) {
    Json& e = list[i];
    intake::IncomingEvent in;
    std::optional<std::string> seeded;
    if (!seed.empty()) seeded = UlidFromSeed(seed, static_cast<uint32_t>(i + 1));
    in.internal_id = seeded ? *seeded : !unseeded_ids.empty() ? unseeded_ids[i] : NewUlid(now_ms);
    if (!e.contains("id") || e["id"].is_null() || e["id"].get_ref<const std::string&>().empty()) {
      e["id"] = in.internal_id;
    }
    in.payload = std::move(e);
    batch.push_back(std::move(in));
  }
  const size_t count = batch.size();
  auto stored = intake_.Ingest(std::move(batch));
  if (!stored.ok()) {
    if (stored.status().code() == StatusCode::kAlreadyExists) {
      // A seed reused for another event: storing it would lose one of the two. Resending
      // this request cannot succeed, so no 5xx (SDKs retry those forever).
      return EventsError(409, "already_exists", stored.status().message());
    }
    if (stored.status().code() == StatusCode::kInvalidArgument) {
      // An event a function cannot order (no sequence number): the sender's to fix.
      return EventsError(400, "invalid_argument", stored.status().message());
    }
    spdlog::error("storing {} event(s) failed: {}", count, stored.status().ToString());
    if (store::IsCommitOutcomeUnknown(stored.status())) {
      // A resend is safe where the events have ids (their own, or the seed's): those stored
      // come back as duplicates.
      return EventsError(503, "unavailable",
                         "storage unavailable; the events may or may not have been stored: "
                         "retry (events with an id, or sent with X-Inngest-Event-Id-Seed, are "
                         "stored once)");
    }
    return EventsError(503, "unavailable", "storage unavailable; nothing was stored, retry");
  }
  Json ids = Json::array();
  int64_t duplicates = 0;
  for (const store::IngestedEvent& s : stored->stored) {
    ids.push_back(s.internal_id);
    duplicates += s.duplicate ? 1 : 0;
  }
  metrics_.EventsDuplicate(duplicates);
  metrics_.EventsAccepted(static_cast<int64_t>(stored->stored.size()) - duplicates);
  metrics_.RunsStarted(stored->runs_started);
  return JsonResponse(200, {{"ids", ids}, {"status", 200}});
}

Response Api::HandleListEvents(const Request& req) {
  store::EventFilter filter;
  filter.name = req.query("name");
  filter.cursor = req.query("cursor");
  auto limit = ParseLimit(req.query("limit"));
  if (!limit.ok()) return http::ErrorResponse(limit.status());
  filter.limit = *limit;
  auto events = stores_.events.ListEvents(filter);
  if (!events.ok()) return http::ErrorResponse(events.status());
  Json data = Json::array();
  for (const auto& e : *events) data.push_back(EventJson(e));
  Json cursor = nullptr;
  if (static_cast<int>(events->size()) == filter.limit) cursor = events->back().internal_id;
  return JsonResponse(200, {{"data", data}, {"cursor", cursor}});
}

Response Api::HandleGetEvent(const Request& req) {
  auto event = stores_.events.GetEvent(req.param("id"));
  if (!event.ok()) return http::ErrorResponse(event.status());
  store::RunFilter filter;
  filter.event_id = event->internal_id;
  filter.limit = 500;
  auto runs = stores_.runs.ListRuns(filter);
  if (!runs.ok()) return http::ErrorResponse(runs.status());
  auto outcomes = stores_.lanes.LaneOutcomesOf(event->internal_id);
  if (!outcomes.ok()) return http::ErrorResponse(outcomes.status());
  Json j = EventJson(*event);
  j["runs"] = Json::array();
  for (const auto& r : *runs) j["runs"].push_back(RunJson(r));
  // Sequence lanes this event started no run in: a stale or duplicate number.
  j["lanes"] = Json::array();
  for (const auto& o : *outcomes) {
    j["lanes"].push_back({{"function_id", o.function_id},
                          {"key", o.key},
                          {"number", o.number},
                          {"outcome", o.outcome},
                          {"run_id", o.run_id ? Json(*o.run_id) : Json(nullptr)},
                          {"recorded_at", FormatRfc3339(o.recorded_at_ms)}});
  }
  // The runs flow control did not start (idempotency, rateLimit, singleton skip).
  auto skips = stores_.events.EventSkips(event->internal_id);
  if (!skips.ok()) return http::ErrorResponse(skips.status());
  j["skipped"] = Json::array();
  for (const store::EventSkip& s : *skips) {
    j["skipped"].push_back({{"function_id", s.function_id},
                            {"reason", s.reason},
                            {"key", s.key},
                            {"at", FormatRfc3339(s.at_ms)}});
  }
  return JsonResponse(200, {{"data", j}});
}

}  // namespace funcky::api
