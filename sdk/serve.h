// The serve handler: what a host mounts at its /serve endpoint (docs/protocol.md §4–§7).
//
// It is framework-free: give it the method, target, headers and body of a request and send
// back what it returns. funcky::sdk::Server (sdk/server.h) runs it on its own HTTP server.
#pragma once

#include <chrono>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/http_client.h"
#include "common/status.h"
#include "sdk/client.h"
#include "sdk/function.h"

namespace funcky::sdk {

class Execution;

struct ServeRequest {
  std::string method;
  std::string target;  // path and query, e.g. "/api/funcky?fnId=app-fn&stepId=step"
  Headers headers;
  std::string body;
};

struct ServeResponse {
  int status = 200;
  Headers headers;
  std::string body;
};

class ServeHandler {
 public:
  // `serve_url` is the absolute URL the coordinator calls, e.g. http://host:3000/api/funcky.
  // Throws std::invalid_argument when the client's signing key (or its fallback) is set but
  // malformed (docs/protocol.md §7): `signkey-prod-` with nothing after it would sign with,
  // and accept, an empty key. The message never quotes the key.
  ServeHandler(const Client& client, std::string serve_url, std::vector<Function> functions);
  // Keeps a reference to `client`, which must outlive it (a temporary is refused).
  ServeHandler(Client&& client, std::string serve_url, std::vector<Function> functions) = delete;
  // Not copyable: by_id_ points at handlers inside functions_, so a copy's would point into
  // the original's. A move takes the functions' storage along (a vector's elements stay where
  // they are), so its pointers stay good.
  ServeHandler(const ServeHandler&) = delete;
  ServeHandler& operator=(const ServeHandler&) = delete;
  ServeHandler(ServeHandler&&) = default;

  // POST: run a function (verifying the signature when a signing key is set);
  // PUT: sync with the coordinator (in-band when asked, else by POST /fn/register);
  // GET: introspection (docs/protocol.md §7): with a signing key, 401 unless signed over an
  // empty body, and then the app's identity and the first 12 hex digits of its keys' hashes,
  // never the keys. Thread-safe. Never throws: whatever goes wrong is an answer (a 500 at
  // worst).
  ServeResponse handle(const ServeRequest& request) const;
  // Whether a request with a large body (its method, target and headers; its body not read
  // yet) is worth reading. With a signing key: 401 to a call or an in-band sync without a
  // signature of the right form and time, 413 to any other request (none takes a body);
  // else nullopt (read the body and handle it). A server asks it before reading a large body
  // (Server does), so that callers who do not try to sign cannot hold its room for bodies.
  // Cheap, and so no proof: no HMAC, no parsing (a forged header of the right form passes).
  std::optional<ServeResponse> screen(const ServeRequest& head) const;

  // Registers the functions with the coordinator (POST /fn/register). Call at start-up.
  // kUnavailable when the coordinator cannot be reached or fails (5xx), kUnauthenticated
  // when it refuses the signing key, kInvalidArgument when it refuses the functions.
  Status register_functions() const;
  // The same, trying again every 100 ms while the coordinator is unavailable, for up to
  // `wait` (a host may start before its coordinator).
  Status register_functions(std::chrono::milliseconds wait) const;

  // The register body (docs/protocol.md §2.1).
  nlohmann::json register_body() const;

 private:
  // Authenticates a call (with a signing key), then runs it (Run) and signs the answer.
  ServeResponse Call(const ServeRequest& request) const;
  // Runs the call whose body parsed as `parsed` (its function, up to its next step or end).
  ServeResponse Run(const ServeRequest& request, Result<nlohmann::json> parsed) const;
  ServeResponse FailureReply(const Execution& x) const;
  ServeResponse Sync(const ServeRequest& request) const;
  ServeResponse Introspect(const ServeRequest& request) const;
  // `response` with the SDK's headers, unsigned.
  ServeResponse Finish(ServeResponse response) const;
  // `response` signed with `key` (X-Inngest-Signature), the key that authenticated its
  // request; null or empty: left unsigned. Only an answer to a request signed with one of
  // the host's keys is signed: any other would hand its sender a signature to call with.
  static ServeResponse Sign(ServeResponse response, const std::string* key);
  // The key (the signing key or its fallback, in that order) of a fresh signature of `body`
  // that `headers` carry; null when neither signed it.
  const std::string* SigningKeyOf(const Headers& headers, std::string_view body) const;

  const Client& client_;
  std::string serve_url_;
  std::vector<Function> functions_;
  // composite id -> handler (a function's, or its on_failure's under "<id>-failure")
  std::map<std::string, const Handler*> by_id_;
};

}  // namespace funcky::sdk
