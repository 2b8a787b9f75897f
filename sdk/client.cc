#include "sdk/client.h"

#include "common/http_client.h"
#include "common/url.h"

namespace funcky::sdk {

Result<std::vector<std::string>> Client::send(const nlohmann::json& events) const {
  HttpRequest req;
  req.method = "POST";
  req.url = options_.coordinator_url + "/e/" + PercentEncode(options_.event_key);
  req.headers = {{"Content-Type", "application/json"}};
  req.body = events.dump();
  req.timeout = std::chrono::seconds(30);
  ASSIGN_OR_RETURN(HttpResponse res, HttpCall(req));
  auto body = nlohmann::json::parse(res.body, nullptr, false);
  if (res.status != 200 || !body.is_object() || body.value("status", 0) != 200) {
    std::string message = body.is_object() && body.contains("error") && body["error"].is_string()
                              ? body["error"].get<std::string>()
                              : res.body;
    if (res.status >= 500) return Unavailable("coordinator: " + message);
    return InvalidArgument("coordinator refused the events: " + message);
  }
  std::vector<std::string> ids;
  for (const auto& id : body.value("ids", nlohmann::json::array()))
    ids.push_back(id.get<std::string>());
  return ids;
}

}  // namespace funcky::sdk
