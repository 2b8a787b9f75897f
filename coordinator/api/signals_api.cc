// POST /v1/signals: resumes the run whose step.waitForSignal waits for the signal named
// (docs/protocol.md §5.7). The JS SDK's inngest.sendSignal and step.sendSignal post here.
#include <spdlog/spdlog.h>

#include "common/json_parse.h"
#include "coordinator/api/api.h"
#include "coordinator/api/json_views.h"

namespace funcky::api {

using http::ErrorResponse;
using http::JsonResponse;
using http::Request;
using http::Response;
using store::Json;

std::optional<Response> Api::RefuseSignal(const Request& req) const {
  // The SDK's key, as its checkpoints; or the API token, as the rest of /v1.
  if (!SigningKeyAccepted(req) && (options_.api_token.empty() || CheckApiToken(req))) {
    return ErrorResponse(401, "unauthenticated", SigningKeyRefusal());
  }
  return std::nullopt;
}

Response Api::HandleSignal(const Request& req) {
  auto body = ParseUntrustedJson(req.body, kHostReplyJsonLimits);
  if (!body.ok()) return ErrorResponse(InvalidArgument("body: " + body.status().message()));
  if (!body->is_object()) return ErrorResponse(InvalidArgument("body must be a JSON object"));
  auto signal = StringField(*body, "signal");
  if (!signal.ok()) return ErrorResponse(signal.status());
  const std::string& name = *signal;
  if (name.size() > store::kMaxSignalBytes) {
    return ErrorResponse(InvalidArgument("signal is longer than " +
                                         std::to_string(store::kMaxSignalBytes) + " bytes"));
  }
  Json data = body->value("data", Json(nullptr));
  // Kept in the run's state as its step's memo: held to an event's bound, as the data an
  // event would bring.
  if (data.dump(-1, ' ', false, Json::error_handler_t::replace).size() > options_.max_event_bytes) {
    return ErrorResponse(413, "payload_too_large",
                         "data is larger than " + std::to_string(options_.max_event_bytes) +
                             " bytes (an event's bound)");
  }
  auto resumed = stores_.waits.ResolveSignal(name, data, clock_.Now());
  if (!resumed.ok()) {
    spdlog::warn("resuming the wait for a signal failed: {}", resumed.status().ToString());
    return ErrorResponse(Unavailable("the signal could not be recorded; try again"));
  }
  if (!*resumed) {
    return ErrorResponse(404, "not_found", "no run waits for this signal");
  }
  spdlog::info("run {}: signal wait resumed", **resumed);
  intake_.Wake();
  return JsonResponse(200, {{"data", {{"run_id", **resumed}}}});
}

}  // namespace funcky::api
