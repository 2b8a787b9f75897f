#include "coordinator/http/router.h"

#include <algorithm>

#include <spdlog/spdlog.h>

#include "common/url.h"

namespace funcky::http {

namespace {

std::vector<std::string> Split(std::string_view path) {
  std::vector<std::string> out;
  size_t pos = 0;
  while (pos < path.size()) {
    if (path[pos] == '/') {
      ++pos;
      continue;
    }
    size_t end = path.find('/', pos);
    if (end == std::string_view::npos) end = path.size();
    out.push_back(PercentDecode(path.substr(pos, end - pos)));
    pos = end;
  }
  return out;
}

}  // namespace

void Router::Add(std::string method, std::string pattern, Handler handler, Access access) {
  std::vector<std::string> segments = Split(pattern);
  routes_.push_back(
      {std::move(method), std::move(pattern), std::move(segments), std::move(handler), access});
}

void Router::Protect(std::string prefix, Guard guard) {
  protections_.push_back({Split(prefix), std::move(guard)});
}

Response Router::Handle(Request request) const {
  // Parameters go to the stores as text: bytes PostgreSQL refuses were a 500 there, and a
  // NUL cut a run id short (`/v1/runs/<id>%00x` read run <id>); a query that does not parse
  // read as no query, every filter dropped.
  if (Status target = CheckRequestTarget(request.target); !target.ok()) {
    return ErrorResponse(400, "bad_request", target.message());
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
    try {
      if (route.access == Access::kGuarded) {
        for (const Protection& p : protections_) {
          if (p.prefix.size() > route.segments.size() ||
              !std::equal(p.prefix.begin(), p.prefix.end(), route.segments.begin())) {
            continue;
          }
          if (auto refused = p.guard(request)) return *refused;
        }
      }
      return route.handler(request);
    } catch (const std::exception& e) {
      // An exception's text may quote the request (a JSON token, say): log its start only.
      spdlog::error("handler for {} {} threw: {:.200}", request.method, route.pattern,
                    std::string_view(e.what()));
      return ErrorResponse(500, "internal", "internal error; see the coordinator log");
    }
  }
  if (path_matched) {
    return ErrorResponse(
        405, "method_not_allowed",
        "method " + request.method + " is not allowed on " + std::string(request.path()));
  }
  return ErrorResponse(404, "not_found", "no route for " + std::string(request.path()));
}

}  // namespace funcky::http
