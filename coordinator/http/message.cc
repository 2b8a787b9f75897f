#include "coordinator/http/message.h"

#include <spdlog/spdlog.h>

#include "common/json_parse.h"
#include "common/url.h"

namespace funcky::http {

std::string_view Request::path() const { return TargetPath(target); }

std::string_view Request::bearer_token() const {
  constexpr std::string_view kBearer = "Bearer ";
  std::string_view auth = header("Authorization");
  return auth.substr(0, kBearer.size()) == kBearer ? auth.substr(kBearer.size())
                                                   : std::string_view();
}

std::string Request::query(std::string_view key) const { return QueryParam(target, key); }

const std::string& Request::param(const std::string& name) const {
  static const std::string kEmpty;
  auto it = params.find(name);
  return it == params.end() ? kEmpty : it->second;
}

int HttpStatusFor(StatusCode code) {
  switch (code) {
    case StatusCode::kOk:
      return 200;
    case StatusCode::kInvalidArgument:
      return 400;
    case StatusCode::kUnauthenticated:
      return 401;
    case StatusCode::kNotFound:
      return 404;
    case StatusCode::kAlreadyExists:
      return 409;
    case StatusCode::kFailedPrecondition:
      return 409;
    case StatusCode::kAborted:
      return 409;
    case StatusCode::kResourceExhausted:
      return 413;
    case StatusCode::kUnavailable:
      return 503;
    case StatusCode::kDeadlineExceeded:
      return 504;
    case StatusCode::kInternal:
      return 500;
  }
  return 500;
}

Response JsonResponse(int status, const nlohmann::json& body) {
  Response r;
  r.status = status;
  r.headers.emplace_back("Content-Type", "application/json");
  r.body = body.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  return r;
}

Response ErrorResponse(int http_status, std::string_view code, std::string_view message) {
  return JsonResponse(http_status, {{"error", {{"code", code}, {"message", message}}}});
}

Response ErrorResponse(const Status& status) {
  // Internal details go to the log (their start: a message may quote what it failed on);
  // the client gets the code and a generic message.
  if (status.code() == StatusCode::kInternal) {
    spdlog::error("answering 500: {:.200}", status.message());
    return ErrorResponse(500, "internal", "internal error; see the coordinator log");
  }
  return ErrorResponse(HttpStatusFor(status.code()), StatusCodeName(status.code()),
                       status.message());
}

Result<nlohmann::json> ParseJsonBody(std::string_view body) {
  return ParseUntrustedJson(body, kRequestJsonLimits);
}

}  // namespace funcky::http
