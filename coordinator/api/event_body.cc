#include "coordinator/api/event_body.h"

#include <string>
#include <utility>

#include "common/json_parse.h"
#include "coordinator/executor/transition.h"

namespace funcky::api {

namespace {

using Json = nlohmann::json;

constexpr int64_t kMinTs = 315532800000;   // 1980-01-01
constexpr int64_t kMaxTs = 4102444800000;  // 2100-01-01
// How far ahead a `ts` may be: it schedules the event's runs then (docs/protocol.md §3), no
// later than a sleep may wake. A typo in a year would otherwise hold a lane for decades.
constexpr int64_t kMaxTsAheadMs = int64_t{366} * 24 * 3600 * 1000;

// Checks one event and fills defaults; the error names the event's position.
Status NormalizeEvent(Json& e, size_t index, int64_t now_ms, size_t max_bytes) {
  std::string where = "event " + std::to_string(index);
  if (!e.is_object()) return InvalidArgument(where + " is not a JSON object");
  auto name = e.find("name");
  if (name == e.end() || !name->is_string() || name->get_ref<const std::string&>().empty()) {
    return InvalidArgument(where + ": \"name\" must be a non-empty string");
  }
  const std::string& n = name->get_ref<const std::string&>();
  if (n.size() > store::kMaxEventNameBytes) {
    return InvalidArgument(where + ": \"name\" is longer than " +
                           std::to_string(store::kMaxEventNameBytes) + " bytes");
  }
  if (n.rfind("inngest/", 0) == 0 || n.rfind("funcky/", 0) == 0) {
    return InvalidArgument(where + ": names starting with \"" + n.substr(0, n.find('/') + 1) +
                           "\" are reserved");
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
    const std::string& text = id->get_ref<const std::string&>();
    if (text.size() > 512) return InvalidArgument(where + ": \"id\" is longer than 512 bytes");
    // The coordinator's own events have ids made from what anyone can know (a cron tick's
    // function and time, a run's id): one sent first would take the id and the coordinator's
    // event would be dropped as its duplicate.
    for (std::string_view reserved : executor::kReservedIdPrefixes) {
      if (text.starts_with(reserved)) {
        return InvalidArgument(where + ": ids starting with \"" + std::string(reserved) +
                               "\" are the coordinator's own");
      }
    }
  }
  auto ts = e.find("ts");
  if (ts == e.end() || ts->is_null() || (ts->is_number() && ts->get<double>() == 0)) {
    e["ts"] = now_ms;
  } else if (!ts->is_number_integer()) {
    return InvalidArgument(where + ": \"ts\" must be an integer (Unix milliseconds)");
  } else if (ts->get<int64_t>() < kMinTs || ts->get<int64_t>() > kMaxTs) {
    return InvalidArgument(where + ": \"ts\" must be between 1980 and 2100 in Unix milliseconds");
  } else if (ts->get<int64_t>() - now_ms > kMaxTsAheadMs) {
    return InvalidArgument(where +
                           ": \"ts\" is more than 366 days ahead; a ts in the future schedules "
                           "the event's runs then, at most 366 days ahead");
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

Result<std::vector<Json>> ParseEventBody(std::string_view body, const EventBodyLimits& limits,
                                         int64_t now_ms) {
  ASSIGN_OR_RETURN(Json parsed, ParseUntrustedJson(body, kRequestJsonLimits));
  std::vector<Json> events;
  if (parsed.is_array()) {
    if (parsed.size() > limits.max_events) {
      return ResourceExhausted(std::to_string(parsed.size()) +
                               " events in one request; the limit is " +
                               std::to_string(limits.max_events));
    }
    events.reserve(parsed.size());
    for (Json& e : parsed) events.push_back(std::move(e));
  } else {
    events.push_back(std::move(parsed));
  }
  if (events.empty()) return InvalidArgument("no events in the request");
  for (size_t i = 0; i < events.size(); ++i) {
    RETURN_IF_ERROR(NormalizeEvent(events[i], i, now_ms, limits.max_event_bytes));
  }
  return events;
}

}  // namespace funcky::api
