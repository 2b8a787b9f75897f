// Maps (method, path pattern) to a handler. Patterns are literal segments and `{name}`
// segments that capture one path segment ("/v1/runs/{id}").
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "coordinator/http/message.h"

namespace funcky::http {

using Handler = std::function<Response(const Request&)>;

class Router {
 public:
  void Add(std::string method, std::string pattern, Handler handler);

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
  };
  std::vector<Route> routes_;
};

}  // namespace funcky::http
