// Transport-free HTTP messages: what the router takes and gives, so handlers are tested
// without sockets.
#pragma once

#include <map>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "common/http_client.h"
#include "common/status.h"

namespace funcky::http {

struct Request {
  std::string method;  // upper case
  std::string target;  // path and query
  Headers headers;
  std::string body;
  std::map<std::string, std::string> params;  // path parameters, filled by the router

  std::string_view header(std::string_view name) const { return FindHeader(headers, name); }
  // The token of `Authorization: Bearer <token>`; empty when there is none.
  std::string_view bearer_token() const;
  std::string_view path() const;
  std::string query(std::string_view key) const;
  const std::string& param(const std::string& name) const;
};

struct Response {
  int status = 200;
  Headers headers;
  std::string body;
};

// The HTTP status for a Status code: the one table of that mapping.
int HttpStatusFor(StatusCode code);

// 2xx JSON.
Response JsonResponse(int status, const nlohmann::json& body);
// `{"error":{"code":"…","message":"…"}}` with the status of `HttpStatusFor`.
Response ErrorResponse(const Status& status);
Response ErrorResponse(int http_status, std::string_view code, std::string_view message);

// Parses a request body: ParseUntrustedJson (common/json_parse.h) with the request limits.
// kInvalidArgument with a short reason on bad JSON, nesting deeper than 64 levels, a number
// out of range or a `\u0000`.
Result<nlohmann::json> ParseJsonBody(std::string_view body);

}  // namespace funcky::http
