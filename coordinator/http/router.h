// Maps (method, path pattern) to a handler. Patterns are literal segments and `{name}`
// segments that capture one path segment ("/v1/runs/{id}").
#pragma once

#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "coordinator/http/message.h"

namespace funcky::http {

using Handler = std::function<Response(const Request&)>;
// Runs before a handler: the response to send instead of calling it (e.g. a 401), or
// nullopt to call it.
using Guard = std::function<std::optional<Response>(const Request&)>;

enum class Access {
  kGuarded,  // the guards of every prefix the route's pattern falls under apply
  kPublic,   // no guard applies (a route that authenticates by other means)
};

class Router {
 public:
  void Add(std::string method, std::string pattern, Handler handler,
           Access access = Access::kGuarded);
  // Every route whose pattern is `prefix` or lies under it ("/v1" covers "/v1/runs/{id}"),
  // added before or after this call, runs `guard` first unless it was added kPublic. So a
  // route added later cannot forget its authentication.
  void Protect(std::string prefix, Guard guard);

  // Runs the matching handler. 404 JSON when no pattern matches the path, 405 when one
  // matches with another method. A handler that throws gets a 500, never a crash; the log
  // names the route's pattern, not the path, whose segments may be secrets (`/e/{key}`).
  Response Handle(Request request) const;

 private:
  struct Route {
    std::string method;
    std::string pattern;
    std::vector<std::string> segments;
    Handler handler;
    Access access;
  };
  struct Protection {
    std::vector<std::string> prefix;
    Guard guard;
  };
  std::vector<Route> routes_;
  std::vector<Protection> protections_;
};

}  // namespace funcky::http
