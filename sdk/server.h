// A small HTTP server for a ServeHandler, for hosts that have no web framework of their own.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "common/status.h"
#include "sdk/serve.h"

namespace funcky::sdk {

struct ServerOptions {
  std::string address = "127.0.0.1";
  uint16_t port = 3000;  // 0: any free port
  std::string path = "/api/funcky";
  int threads = 8;  // handler threads: calls served at once
  // PEM certificate chain and private key: serve HTTPS instead of HTTP.
  std::string tls_cert_file;
  std::string tls_key_file;
  // How long a client has to send a whole request, from the moment it connects, and to read
  // the reply. The server arms it only while it reads or writes: a handler (a step) runs for
  // as long as it needs. Every connection that waits on it holds one of `max_connections` and
  // may be buffering up to 32 MiB of body, so it is as short as reading a call allows: a
  // coordinator sends its largest (32 MiB) within it at little more than 1 MB/s.
  std::chrono::milliseconds request_timeout{30'000};
  // At most this many connections at once; past it new ones wait in the listen backlog. Room
  // for the calls of several coordinators in flight at once (64 each by default), while
  // bounding what slow or idle clients hold.
  size_t max_connections = 256;
  // The calls' bodies (over 64 KiB each) held at once, from reading to the handler's end; a
  // call past it waits for room up to `request_timeout`, then is answered 503 with
  // `Retry-After: 1` (a coordinator retries it). At least 32 MiB, the largest body.
  size_t max_body_bytes_in_flight = 1 << 30;
  // How long stop() (and wait_for_signal, on SIGTERM) lets the calls being handled finish
  // and answer; a call that arrives meanwhile is answered 503 (the coordinator makes it
  // again). Past it the answers of calls still being handled are lost (their steps run
  // again), and a step still running is not stopped (nothing stops a thread from outside):
  // stop() returns once it has.
  std::chrono::milliseconds drain_timeout{30'000};
};

class Server {
 public:
  using Handler = std::function<ServeResponse(const ServeRequest&)>;
  // Serves `handler` at options.path; other paths get 404. Keeps a reference: `handler`
  // must outlive the server (a temporary is refused). A body over 64 KiB is read only when
  // the request is for options.path and, with a signing key, is a call or an in-band sync
  // with a signature of the right form and time (ServeHandler::screen): else it is refused
  // unread, so that callers who do not sign cannot hold max_body_bytes_in_flight.
  Server(const ServeHandler& handler, ServerOptions options);
  Server(ServeHandler&& handler, ServerOptions options) = delete;
  // Serves any handler at options.path (e.g. one that wraps a ServeHandler; only the path
  // is screened).
  Server(Handler handler, ServerOptions options);
  ~Server();
  // Binds and serves on background threads. kUnavailable when the port cannot be bound;
  // kInvalidArgument for threads or max_connections below 1.
  Status start();
  uint16_t port() const;
  // Stops accepting, lets the calls in hand finish and answer (up to drain_timeout), then
  // stops its threads, once every handler still running has returned.
  void stop();
  // Blocks until SIGINT or SIGTERM, then stops (see stop).
  void wait_for_signal();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace funcky::sdk
