#include "sdk/client.h"

#include <chrono>
#include <cstdint>
#include <thread>

#include "common/crypto.h"
#include "common/http_client.h"
#include "common/json_parse.h"
#include "common/signing.h"
#include "common/url.h"
#include "sdk/coordinator_api.h"

namespace funcky::sdk {

namespace {

// `path` as messages name it: an event path holds the event key, a secret, which is left out.
std::string ShownPath(std::string_view path) {
  return path.starts_with("/e/") ? "/e/…" : std::string(path);
}

// The `status` of a coordinator's reply: `status_if_absent` when it has none, and 0 (no
// verdict at all) when it is not a whole number an HTTP status can be. Json::value() would
// throw on a string and cast a double such as 1e300 to int, which is undefined.
int ReplyStatus(const nlohmann::json& reply, int status_if_absent) {
  if (!reply.is_object()) return 0;
  const auto status = reply.find("status");
  if (status == reply.end()) return status_if_absent;
  if (!status->is_number_integer()) return 0;
  if (status->is_number_unsigned()) {
    const uint64_t n = status->get<uint64_t>();
    return n <= 999 ? static_cast<int>(n) : 0;
  }
  const int64_t n = status->get<int64_t>();
  return n >= 0 && n <= 999 ? static_cast<int>(n) : 0;
}

}  // namespace

Result<nlohmann::json> PostToCoordinator(const ClientOptions& options, std::string_view path,
                                         Headers headers, std::string body, int status_if_absent) {
  // The coordinator's URL is checked alone first: ParseUrl quotes a URL it refuses, and the
  // path added to it may hold the event key. A URL that passes still passes with the path
  // (percent-encoded) after it.
  if (auto url = ParseUrl(options.coordinator_url); !url.ok()) {
    return Status(url.status().code(), "coordinator_url: " + url.status().message());
  }
  HttpRequest req;
  req.method = "POST";
  req.url = options.coordinator_url + std::string(path);
  req.headers = std::move(headers);
  req.headers.emplace_back("Content-Type", "application/json");
  req.body = std::move(body);
  req.timeout = std::chrono::seconds(30);
  ASSIGN_OR_RETURN(HttpResponse res, HttpCall(req, {.ca_file = options.ca_file}));
  // A coordinator's reply is small and flat; whatever else answers is held to the limits.
  auto parsed = ParseUntrustedJson(res.body, kUnverifiedCallBodyJsonLimits);
  nlohmann::json reply = parsed.ok() ? std::move(*parsed) : nlohmann::json();
  const int status = ReplyStatus(reply, status_if_absent);
  if (res.status == 200 && status == 200) return reply;
  std::string message = reply.is_object() && reply.contains("error") && reply["error"].is_string()
                            ? reply["error"].get<std::string>()
                            : res.body.substr(0, 300);
  message = ShownPath(path) + " (HTTP " + std::to_string(res.status) + "): " + message;
  if (res.status == 401) return Unauthenticated(message);
  if (res.status >= 500) return Unavailable(message);
  return InvalidArgument(message);
}

Result<std::vector<std::string>> Client::send(const nlohmann::json& events) const {
  std::string body;
  try {
    body = events.dump();
  } catch (const nlohmann::json::type_error& e) {  // 316: a string that is not UTF-8
    return InvalidArgument(std::string("the events cannot be sent as JSON: ") + e.what());
  }
  // A send that fails on the way (no answer, 5xx) is made again, up to twice, with the same
  // X-Inngest-Event-Id-Seed: the coordinator gives each event the same internal id again, so
  // an event stored by an attempt whose answer was lost is stored once.
  const std::string seed = std::to_string(std::chrono::duration_cast<std::chrono::milliseconds>(
                                              std::chrono::system_clock::now().time_since_epoch())
                                              .count()) +
                           "," + crypto::Base64Encode(crypto::RandomBytes(10));
  Result<nlohmann::json> sent = Unavailable("not sent");
  for (int attempt = 0; attempt < 3; ++attempt) {
    if (attempt > 0) std::this_thread::sleep_for(std::chrono::milliseconds(200 << attempt));
    sent = PostToCoordinator(options_, "/e/" + PercentEncode(options_.event_key),
                             {{"X-Inngest-Event-Id-Seed", seed}}, body, /*status_if_absent=*/0);
    const StatusCode code = sent.ok() ? StatusCode::kOk : sent.status().code();
    if (code != StatusCode::kUnavailable && code != StatusCode::kDeadlineExceeded) break;
  }
  ASSIGN_OR_RETURN(nlohmann::json reply, std::move(sent));
  // The reply is read with care: an answer of another shape (a proxy's, say) is an error,
  // never an exception.
  std::vector<std::string> ids;
  const auto listed = reply.find("ids");
  if (listed == reply.end()) return ids;
  if (!listed->is_array()) return Unavailable("/e/… (HTTP 200): the reply's ids are not a list");
  for (const auto& id : *listed) {
    if (!id.is_string()) {
      return Unavailable("/e/… (HTTP 200): the reply has an id that is not text");
    }
    ids.push_back(id.get<std::string>());
  }
  return ids;
}

Result<std::optional<std::string>> Client::send_signal(const std::string& signal,
                                                       const nlohmann::json& data) const {
  std::string body;
  try {
    body = nlohmann::json{{"signal", signal}, {"data", data}}.dump();
  } catch (const nlohmann::json::type_error& e) {  // 316: a string that is not UTF-8
    return InvalidArgument(std::string("the signal cannot be sent as JSON: ") + e.what());
  }
  Headers headers;
  if (!options_.signing_key.empty()) {
    headers.emplace_back("Authorization",
                         "Bearer " + signing::HashedSigningKey(options_.signing_key));
  }
  auto reply = PostToCoordinator(options_, "/v1/signals", std::move(headers), std::move(body),
                                 /*status_if_absent=*/200);
  if (!reply.ok()) {
    // 404: no wait holds the signal, which is an answer, not an error.
    if (reply.status().code() == StatusCode::kInvalidArgument &&
        reply.status().message().find("(HTTP 404)") != std::string::npos) {
      return std::optional<std::string>();
    }
    return reply.status();
  }
  const auto data_field = reply->find("data");
  if (data_field == reply->end() || !data_field->is_object() || !data_field->contains("run_id") ||
      !(*data_field)["run_id"].is_string()) {
    return Unavailable("/v1/signals (HTTP 200): the reply names no run");
  }
  return std::optional<std::string>((*data_field)["run_id"].get<std::string>());
}

}  // namespace funcky::sdk
