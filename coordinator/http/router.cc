#include "coordinator/http/router.h"

#include <algorithm>
#include <cctype>

#include <spdlog/spdlog.h>

#include "common/url.h"

namespace funcky::http {

namespace {

// The segments of a path, percent-decoded. An empty segment between two others is one (the
// empty lane key in "/v1/lanes/f//skip-head": events without the key field share that lane);
// a trailing slash adds none.
std::vector<std::string> Split(std::string_view path) {
  std::vector<std::string> out;
  if (path.starts_with('/')) path.remove_prefix(1);
  if (path.ends_with('/')) path.remove_suffix(1);
  if (path.empty()) return out;
  size_t pos = 0;
  for (;;) {
    const size_t end = path.find('/', pos);
    out.push_back(PercentDecode(path.substr(pos, end == std::string_view::npos ? end : end - pos)));
    if (end == std::string_view::npos) return out;
    pos = end + 1;
  }
}

// The host name of a Host header value or an origin's authority: "[::1]:80" is "::1",
// "localhost:8288" is "localhost"; lowercased.
std::string HostName(std::string_view authority) {
  std::string_view name = authority;
  if (name.starts_with('[')) {
    name = name.substr(
        1, name.find(']') == std::string_view::npos ? name.size() - 1 : name.find(']') - 1);
  } else if (size_t colon = name.rfind(':'); colon != std::string_view::npos) {
    name = name.substr(0, colon);
  }
  std::string out(name);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

bool IsLoopbackName(const std::string& name) {
  if (name == "localhost" || name.ends_with(".localhost") || name == "::1") return true;
  // 127.0.0.0/8, dotted decimal.
  if (!name.starts_with("127.")) return false;
  int dots = 0;
  for (char c : name) {
    if (c == '.') {
      ++dots;
    } else if (c < '0' || c > '9') {
      return false;
    }
  }
  return dots == 3;
}

// The port of a Host header value or an origin's authority ("localhost:8288" is "8288"),
// or "" when it names none.
std::string_view PortOf(std::string_view authority) {
  const size_t host_end = authority.starts_with('[') ? authority.find(']') : 0;
  if (host_end == std::string_view::npos) return {};
  const size_t colon = authority.find(':', host_end);
  return colon == std::string_view::npos ? std::string_view() : authority.substr(colon + 1);
}

// Whether a browser's `origin` ("http://localhost:3000") is the one the request was sent to
// (its Host). Hosts and ports are compared: another server on the same machine (a dev server
// on :3000) is another origin. A Host without a port (as a proxy may pass it) matches the
// origin's default port; the scheme cannot be compared, as TLS may end at that proxy.
bool SameOrigin(std::string_view origin, std::string_view host) {
  const size_t scheme_end = origin.find("://");
  if (scheme_end == std::string_view::npos) return false;
  const std::string_view scheme = origin.substr(0, scheme_end);
  const std::string_view authority = origin.substr(scheme_end + 3);
  if (HostName(authority) != HostName(host)) return false;
  const std::string_view default_port = scheme == "https" ? "443" : scheme == "http" ? "80" : "";
  std::string_view origin_port = PortOf(authority);
  if (origin_port.empty()) origin_port = default_port;
  const std::string_view host_port = PortOf(host);
  return host_port.empty() ? origin_port == default_port : origin_port == host_port;
}

// Why a browser's request from another site is refused, or empty.
std::string_view CrossSite(const Request& request) {
  const std::string_view fetch_site = request.header("Sec-Fetch-Site");
  if (fetch_site == "cross-site") return "a request from another site";
  // The browser's own word (a page cannot set it): the Host a proxy passes may have lost the
  // port the browser used (nginx's `Host $host`), which the Origin check below needs.
  if (fetch_site == "same-origin") return {};
  std::string_view origin = request.header("Origin");
  if (origin.empty()) return {};
  if (origin == "null") return "a request from an opaque origin";
  if (!SameOrigin(origin, request.header("Host"))) return "a request from another origin";
  return {};
}

}  // namespace

bool HostIsLoopback(const Request& request) {
  const std::string_view host = request.header("Host");
  return host.empty() || IsLoopbackName(HostName(host));
}

void Router::Add(std::string method, std::string pattern, Handler handler, Access access,
                 Guard refuse) {
  std::vector<std::string> segments = Split(pattern);
  routes_.push_back({std::move(method), std::move(pattern), std::move(segments), std::move(handler),
                     access, std::move(refuse)});
}

void Router::Protect(std::string prefix, Guard guard) {
  protections_.push_back({Split(prefix), std::move(guard)});
}

Router::Admission Router::Admit(Request& request) const {
  // Parameters go to the stores as text: bytes PostgreSQL refuses were a 500 there, and a
  // NUL cut a run id short (`/v1/runs/<id>%00x` read run <id>); a query that does not parse
  // read as no query, every filter dropped.
  if (Status target = CheckRequestTarget(request.target); !target.ok()) {
    return {.refused = ErrorResponse(400, "bad_request", target.message())};
  }
  if (std::string_view why = CrossSite(request); !why.empty()) {
    return {.refused = ErrorResponse(403, "forbidden", std::string(why) + " is refused")};
  }
  if (loopback_hosts_only_ && !HostIsLoopback(request)) {
    return {.refused = ErrorResponse(
                403, "forbidden",
                "the Host header names another machine; this coordinator listens on "
                "loopback without a token and answers only localhost, 127.0.0.1 or "
                "::1 (behind a proxy that passes another name, set --dashboard-token)")};
  }
  const std::vector<std::string> segments = Split(request.path());
  bool path_matched = false;
  for (const Route& route : routes_) {
    if (route.segments.size() != segments.size()) continue;
    std::map<std::string, std::string> params;
    bool match = true;
    for (size_t i = 0; i < segments.size() && match; ++i) {
      const std::string& want = route.segments[i];
      if (want.size() > 2 && want.front() == '{' && want.back() == '}') {
        params[want.substr(1, want.size() - 2)] = segments[i];
      } else {
        match = want == segments[i];
      }
    }
    if (!match) continue;
    path_matched = true;
    if (route.method != request.method) continue;
    request.params = std::move(params);
    if (route.access == Access::kGuarded) {
      for (const Protection& p : protections_) {
        if (p.prefix.size() > route.segments.size() ||
            !std::equal(p.prefix.begin(), p.prefix.end(), route.segments.begin())) {
          continue;
        }
        if (auto refused = p.guard(request)) return {.refused = std::move(refused)};
      }
    }
    if (route.refuse) {
      if (auto refused = route.refuse(request)) return {.refused = std::move(refused)};
    }
    return {.route = &route};
  }
  if (path_matched) {
    return {.refused = ErrorResponse(
                405, "method_not_allowed",
                "method " + request.method + " is not allowed on " + std::string(request.path()))};
  }
  return {.refused =
              ErrorResponse(404, "not_found", "no route for " + std::string(request.path()))};
}

Response Router::Shaped(const Request& request, Response refused) const {
  for (const auto& [path, shape] : refusal_shapes_) {
    if (request.path() == path) return shape(std::move(refused));
  }
  return refused;
}

Response Router::Handle(Request request) const {
  const Route* route = nullptr;
  try {
    Admission admitted = Admit(request);
    if (admitted.refused) return Shaped(request, std::move(*admitted.refused));
    route = admitted.route;
    return route->handler(request);
  } catch (const std::exception& e) {
    // An exception's text may quote the request (a JSON token, say): log its start only.
    spdlog::error("handler for {} {} threw: {:.200}", request.method,
                  route ? route->pattern : std::string("a guard"), std::string_view(e.what()));
    return ErrorResponse(500, "internal", "internal error; see the coordinator log");
  }
}

std::optional<Response> Router::Screen(Request request) const {
  std::optional<Response> refused = Admit(request).refused;
  if (refused) return Shaped(request, std::move(*refused));
  return refused;
}

}  // namespace funcky::http
