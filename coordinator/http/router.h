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

// Whether the request's Host header names this machine (localhost, *.localhost, 127.x.x.x,
// ::1), or is absent.
bool HostIsLoopback(const Request& request);

class Router {
 public:
  // `refuse`: the route's own check of who may call it, from the request line and headers
  // alone, run after the guards and before the handler, by Handle and by Screen (before a body
  // is read). Routes that authenticate by a key of their own set one.
  void Add(std::string method, std::string pattern, Handler handler,
           Access access = Access::kGuarded, Guard refuse = nullptr);
  // Every route whose pattern is `prefix` or lies under it ("/v1" covers "/v1/runs/{id}"),
  // added before or after this call, runs `guard` first unless it was added kPublic. So a
  // route added later cannot forget its authentication.
  void Protect(std::string prefix, Guard guard);

  // Refuses (403) requests whose Host is not a name of this machine (localhost, *.localhost,
  // 127.x.x.x, ::1): for a coordinator that listens on loopback without a token, where a web
  // page whose name resolves to 127.0.0.1 (DNS rebinding) could otherwise read and drive it.
  void OnlyLoopbackHosts() { loopback_hosts_only_ = true; }

  // Refusals of requests for `path` (exactly) made before its handler runs (a malformed
  // target, another site, another machine's name, a guard, a method it does not serve) go
  // through `shape`: a route whose clients read errors in a shape of their own gets them in
  // it (/fn/register: the SDKs read `status`, and `error` as a string).
  void ShapeRefusals(std::string path, std::function<Response(Response)> shape) {
    refusal_shapes_.emplace_back(std::move(path), std::move(shape));
  }

  // Runs the matching handler. 404 JSON when no pattern matches the path, 405 when one
  // matches with another method. A handler that throws gets a 500, never a crash; the log
  // names the route's pattern, not the path, whose segments may be secrets (`/e/{key}`).
  // A browser's request from another site (Sec-Fetch-Site: cross-site, or an Origin whose
  // host is not the request's) is a 403: no route serves other sites, and a form another
  // site posts would otherwise drive an open coordinator.
  Response Handle(Request request) const;

  // What Handle would refuse `request` with, seen without its body (the server asks before
  // it reads and budgets a large one): a malformed target, another site, another machine's
  // name, no route, a guard's or the route's own refusal. nullopt: read the body and Handle.
  std::optional<Response> Screen(Request request) const;

 private:
  struct Route {
    std::string method;
    std::string pattern;
    std::vector<std::string> segments;
    Handler handler;
    Access access;
    Guard refuse;  // may be empty
  };
  // The route `request` is for, its params set; or the response that refuses it (a guard's
  // or the route's own refusal among them).
  struct Admission {
    const Route* route = nullptr;
    std::optional<Response> refused;
  };
  Admission Admit(Request& request) const;
  struct Protection {
    std::vector<std::string> prefix;
    Guard guard;
  };
  std::vector<Route> routes_;
  std::vector<Protection> protections_;
  bool loopback_hosts_only_ = false;
  std::vector<std::pair<std::string, std::function<Response(Response)>>> refusal_shapes_;
  // `refused`, shaped for the request's path (ShapeRefusals).
  Response Shaped(const Request& request, Response refused) const;
};

}  // namespace funcky::http
