#include "sdk/client.h"

#include "common/http_client.h"
#include "common/json_parse.h"
#include "common/url.h"
#include "sdk/coordinator_api.h"

namespace funcky::sdk {

Result<nlohmann::json> PostToCoordinator(const ClientOptions& options, std::string_view path,
                                         Headers headers, std::string body, int status_if_absent) {
  HttpRequest req;
  req.method = "POST";
  req.url = options.coordinator_url + std::string(path);
  req.headers = std::move(headers);
  req.headers.emplace_back("Content-Type", "application/json");
  req.body = std::move(body);
  req.timeout = std::chrono::seconds(30);
  ASSIGN_OR_RETURN(HttpResponse res, HttpCall(req, {.ca_file = options.ca_file}));
  // A coordinator's reply is small and flat; whatever else answers is held to the limits.
  auto parsed = ParseUntrustedJson(res.body, kCallBodyJsonLimits);
  nlohmann::json reply = parsed.ok() ? std::move(*parsed) : nlohmann::json();
  int status = reply.is_object() ? reply.value("status", status_if_absent) : 0;
  if (res.status == 200 && status == 200) return reply;
  std::string message = reply.is_object() && reply.contains("error") && reply["error"].is_string()
                            ? reply["error"].get<std::string>()
                            : res.body.substr(0, 300);
  message = std::string(path) + " (HTTP " + std::to_string(res.status) + "): " + message;
  if (res.status == 401) return Unauthenticated(message);
  if (res.status >= 500) return Unavailable(message);
  return InvalidArgument(message);
}

Result<std::vector<std::string>> Client::send(const nlohmann::json& events) const {
  ASSIGN_OR_RETURN(nlohmann::json reply,
                   PostToCoordinator(options_, "/e/" + PercentEncode(options_.event_key), {},
                                     events.dump(), /*status_if_absent=*/0));
  std::vector<std::string> ids;
  for (const auto& id : reply.value("ids", nlohmann::json::array())) {
    ids.push_back(id.get<std::string>());
  }
  return ids;
}

}  // namespace funcky::sdk
