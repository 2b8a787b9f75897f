// The small part of URL handling Funcky needs: http://host[:port]/path?query.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "common/status.h"

namespace funcky {

struct Url {
  std::string scheme;  // "http"
  std::string host;    // without brackets for IPv6 literals
  uint16_t port = 80;
  std::string target;  // path and query, at least "/"
};

// kInvalidArgument for anything but an absolute http:// URL with a host (https is not
// supported by this build; see README "Limits").
Result<Url> ParseUrl(std::string_view url);

// `url` with query parameter `key` set to `value` (replacing every existing `key`).
std::string SetQueryParam(std::string_view url, std::string_view key, std::string_view value);

// The value of query parameter `key` in a request target or URL, percent-decoded; empty if
// absent.
std::string QueryParam(std::string_view target, std::string_view key);

// The path of a request target, without the query.
std::string_view TargetPath(std::string_view target);

std::string PercentEncode(std::string_view s);
std::string PercentDecode(std::string_view s);

}  // namespace funcky
