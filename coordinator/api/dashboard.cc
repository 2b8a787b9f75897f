// GET / and /dashboard/{file}: the dashboard's static files (coordinator/dashboard/),
// embedded in the binary. They hold no data: everything they show comes from /v1/*, which
// asks for the dashboard token when one is set.
#include <map>
#include <string_view>

#include "coordinator/api/api.h"

namespace funcky {
const std::map<std::string, std::string_view>& DashboardFiles();  // generated
}  // namespace funcky

namespace funcky::api {

namespace {

std::string_view ContentType(std::string_view name) {
  if (name.ends_with(".html")) return "text/html; charset=utf-8";
  if (name.ends_with(".js")) return "text/javascript; charset=utf-8";
  if (name.ends_with(".css")) return "text/css; charset=utf-8";
  if (name.ends_with(".svg")) return "image/svg+xml";
  return "application/octet-stream";
}

http::Response File(std::string_view name) {
  const auto& files = DashboardFiles();
  auto it = files.find(std::string(name));
  if (it == files.end()) {
    return http::ErrorResponse(404, "not_found", "no dashboard file \"" + std::string(name) + "\"");
  }
  http::Response r;
  r.status = 200;
  r.headers = {{"Content-Type", std::string(ContentType(name))},
               {"Cache-Control", "no-cache"},
               {"X-Content-Type-Options", "nosniff"},
               // Never inside another page's frame: a page of the same site (another port of
               // the host) could lay itself over Replay or Cancel, the stored token in effect.
               {"X-Frame-Options", "DENY"},
               {"Content-Security-Policy",
                "default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
                "frame-ancestors 'none'; base-uri 'none'; object-src 'none'"}};
  r.body = std::string(it->second);
  return r;
}

}  // namespace

http::Response Api::HandleIndex(const http::Request&) { return File("index.html"); }

http::Response Api::HandleDashboardFile(const http::Request& req) {
  return File(req.param("file"));
}

}  // namespace funcky::api
