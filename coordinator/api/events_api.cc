// POST /e/{key} and /v1/events: event intake (PROTOCOL.md §3); GET /v1/events.
#include <spdlog/spdlog.h>

#include "common/ulid.h"
#include "coordinator/api/api.h"
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

constexpr int64_t kMinTs = 315532800000;   // 1980-01-01
constexpr int64_t kMaxTs = 4102444800000;  // 2100-01-01

// Checks one event and fills defaults; the error names the event's position.
Status NormalizeEvent(Json& e, size_t index, int64_t now_ms, size_t max_bytes) {
  std::string where = "event " + std::to_string(index);
  if (!e.is_object()) return InvalidArgument(where + " is not a JSON object");
  auto name = e.find("name");
  if (name == e.end() || !name->is_string() || name->get_ref<const std::string&>().empty()) {
    return InvalidArgument(where + ": \"name\" must be a non-empty string");
  }
  const std::string& n = name->get_ref<const std::string&>();
  if (n.size() > 256) return InvalidArgument(where + ": \"name\" is longer than 256 bytes");
  if (n.rfind("inngest/", 0) == 0) {
    return InvalidArgument(where + ": names starting with \"inngest/\" are reserved");
  }
  auto data = e.find("data");
  if (data == e.end() || data->is_null()) {
    e["data"] = Json::object();
  } else if (!data->is_object()) {
    return InvalidArgument(where + ": \"data\" must be an object");
  } else {
    data->erase("_inngest");  // reserved for the coordinator
  }
  auto user = e.find("user");
  if (user == e.end() || user->is_null()) {
    e["user"] = Json::object();
  } else if (!user->is_object()) {
    return InvalidArgument(where + ": \"user\" must be an object");
  }
  auto id = e.find("id");
  if (id != e.end() && !id->is_null()) {
    if (!id->is_string()) return InvalidArgument(where + ": \"id\" must be a string");
    if (id->get_ref<const std::string&>().size() > 512) {
      return InvalidArgument(where + ": \"id\" is longer than 512 bytes");
    }
  }
  auto ts = e.find("ts");
  if (ts == e.end() || ts->is_null() || (ts->is_number() && ts->get<double>() == 0)) {
    e["ts"] = now_ms;
  } else if (!ts->is_number_integer()) {
    return InvalidArgument(where + ": \"ts\" must be an integer (Unix milliseconds)");
  } else if (ts->get<int64_t>() < kMinTs || ts->get<int64_t>() > kMaxTs) {
    return InvalidArgument(where + ": \"ts\" must be between 1980 and 2100 in Unix milliseconds");
  }
  if (auto v = e.find("v"); v != e.end() && !v->is_null() && !v->is_string()) {
    return InvalidArgument(where + ": \"v\" must be a string");
  }
  if (e.dump().size() > max_bytes) {
    return ResourceExhausted(where + " is larger than " + std::to_string(max_bytes) + " bytes");
  }
  return Status::Ok();
}

}  // namespace

Response Api::HandleEvents(const Request& req, std::string_view key) {
  if (!EventKeyAccepted(key)) return EventsError(401, "unauthenticated", "unknown event key");
  auto body = http::ParseJsonBody(req.body);
  if (!body.ok()) return EventsError(400, "invalid_argument", body.status().message());
  Json list = body->is_array() ? std::move(*body) : Json::array({std::move(*body)});
  if (list.empty()) return EventsError(400, "invalid_argument", "no events in the request");
  if (list.size() > options_.max_events_per_request) {
    return EventsError(413, "too_many_events",
                       std::to_string(list.size()) + " events in one request; the limit is " +
                           std::to_string(options_.max_events_per_request));
  }
  const TimePoint now = clock_.Now();
  const int64_t now_ms = UnixMillis(now);
  for (size_t i = 0; i < list.size(); ++i) {
    if (Status s = NormalizeEvent(list[i], i, now_ms, options_.max_event_bytes); !s.ok()) {
      int status = s.code() == StatusCode::kResourceExhausted ? 413 : 400;
      return EventsError(status, StatusCodeName(s.code()), s.message());
    }
  }
  const std::string seed(req.header("x-inngest-event-id-seed"));
  std::vector<intake::IncomingEvent> batch;
  batch.reserve(list.size());
  for (size_t i = 0; i < list.size(); ++i) {
    Json& e = list[i];
    intake::IncomingEvent in;
    std::optional<std::string> seeded;
    if (!seed.empty()) seeded = UlidFromSeed(seed, static_cast<uint32_t>(i + 1));
    in.internal_id = seeded ? *seeded : NewUlid(now_ms);
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
    spdlog::error("storing {} event(s) failed: {}", count, stored.status().ToString());
    return EventsError(503, "unavailable", "storage unavailable; nothing was stored, retry");
  }
  Json ids = Json::array();
  for (const store::IngestedEvent& s : stored->stored) {
    ids.push_back(s.internal_id);
    ++(s.duplicate ? counters_.events_duplicate : counters_.events_accepted);
  }
  counters_.runs_started += stored->runs_started;
  return JsonResponse(200, {{"ids", ids}, {"status", 200}});
}

Response Api::HandleListEvents(const Request& req) {
  if (auto denied = CheckApiToken(req)) return *denied;
  store::EventFilter filter;
  filter.name = req.query("name");
  filter.cursor = req.query("cursor");
  auto limit = ParseLimit(req.query("limit"));
  if (!limit.ok()) return http::ErrorResponse(limit.status());
  filter.limit = *limit;
  auto events = store_.ListEvents(filter);
  if (!events.ok()) return http::ErrorResponse(events.status());
  Json data = Json::array();
  for (const auto& e : *events) data.push_back(EventJson(e));
  Json cursor = nullptr;
  if (static_cast<int>(events->size()) == filter.limit) cursor = events->back().internal_id;
  return JsonResponse(200, {{"data", data}, {"cursor", cursor}});
}

Response Api::HandleGetEvent(const Request& req) {
  if (auto denied = CheckApiToken(req)) return *denied;
  auto event = store_.GetEvent(req.param("id"));
  if (!event.ok()) return http::ErrorResponse(event.status());
  store::RunFilter filter;
  filter.event_id = event->internal_id;
  filter.limit = 500;
  auto runs = store_.ListRuns(filter);
  if (!runs.ok()) return http::ErrorResponse(runs.status());
  Json j = EventJson(*event);
  j["runs"] = Json::array();
  for (const auto& r : *runs) j["runs"].push_back(RunJson(r));
  return JsonResponse(200, {{"data", j}});
}

}  // namespace funcky::api
