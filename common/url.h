// URLs of hosts and coordinators (schemes http and https, with a host), parsed and normalised by
// Boost.URL; query helpers for request targets.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "common/status.h"

namespace funcky {

struct Url {
  std::string scheme;  // "http" or "https", lower case
  std::string host;    // lower case; without brackets for IPv6 literals
  uint16_t port = 80;  // the scheme's default when the URL names none
  std::string target;  // path and query, at least "/"; no fragment

  bool tls() const { return scheme == "https"; }
  // "host:port" ("[::1]:port" for IPv6): the Host header and the connection pool's key.
  std::string authority() const;
};

// kInvalidArgument for anything but an absolute URL of scheme http or https with a host and
// no credentials; for control characters or spaces anywhere (they could end up in a request
// line or a header); for a port outside 1..65535.
Result<Url> ParseUrl(std::string_view url);

// `reference` resolved against the absolute `base` (RFC 3986 §5), e.g. a function's step URL
// "/api/fn" against the app URL "https://app.example.com/api/inngest". An absolute
// `reference` is returned normalised. kInvalidArgument when either does not parse or the
// result is not a URL ParseUrl accepts.
Result<std::string> ResolveUrl(std::string_view base, std::string_view reference);

// `url` with query parameter `key` set to `value` (replacing every existing `key`), without
// its fragment.
std::string SetQueryParam(std::string_view url, std::string_view key, std::string_view value);

// The value of query parameter `key` in a request target or URL, percent-decoded; empty if
// absent.
std::string QueryParam(std::string_view target, std::string_view key);

// The path of a request target, without the query.
std::string_view TargetPath(std::string_view target);

// kInvalidArgument unless request target `target` parses, and each of its path segments and
// query keys and values, percent-decoded, is UTF-8 without NUL (they go to stores as text).
// The message never quotes the target: a path segment may be a secret (an event key).
Status CheckRequestTarget(std::string_view target);

// `url` as a log line may hold it: without its query and fragment, where a deployment's
// access token may ride (Vercel's `x-vercel-protection-bypass`), marked `?…` when it had
// either; at most 200 bytes (then `…`); control characters as `?`.
std::string UrlForLog(std::string_view url);

std::string PercentEncode(std::string_view s);
std::string PercentDecode(std::string_view s);

}  // namespace funcky
