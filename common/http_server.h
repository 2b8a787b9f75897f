// An HTTP/1.1 server on Boost.Beast: one coroutine per connection, a deadline on every read
// and write, limits on header and body size, and handlers run off the I/O threads.
//
// Handlers may block (database, user code): they run on `handler_pool`, never on the
// io_context. The server answers limit violations itself with a JSON error:
// 413 (body too large), 431 (headers too large), 400 (malformed request, or a
// Transfer-Encoding other than chunked), 503 (the bodies held at once would pass their
// budget), and 500 for a request whose handler threw. With a certificate and key it serves
// HTTPS only.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "common/http_client.h"
#include "common/status.h"

namespace boost::asio {
class io_context;
class thread_pool;
}  // namespace boost::asio

namespace funcky {

struct ServerRequest {
  std::string method;
  std::string target;
  Headers headers;
  std::string body;
  // When the whole request had been read (its handler may start later, once a thread of the
  // handler pool is free).
  std::chrono::steady_clock::time_point read_at;
};

struct ServerResponse {
  int status = 200;
  Headers headers;
  std::string body;
};

using ServerHandler = std::function<ServerResponse(ServerRequest)>;

struct HttpServerOptions {
  std::string address = "127.0.0.1";
  uint16_t port = 0;  // 0: any free port (see HttpServer::port)
  size_t max_body_bytes = 3 << 20;
  // The request bodies held at once, across connections, from reading to the handler's end:
  // a request whose body (its Content-Length; `max_body_bytes` when chunked) would pass it is
  // answered 503 with `Retry-After: 1` before its body is read, and its connection closed.
  // Bodies of at most kUnbudgetedBodyBytes are not counted. At least `max_body_bytes`.
  size_t max_body_bytes_in_flight = 256 << 20;
  uint32_t max_header_bytes = 16 << 10;
  // A client must deliver a whole request within this time, and read a response.
  std::chrono::milliseconds request_timeout{30'000};
  std::chrono::milliseconds idle_timeout{75'000};  // between requests on a keep-alive connection
  std::string server_name = "funcky";
  // At most this many connections at once; past it new ones wait in the listen backlog.
  size_t max_connections = 1024;
  // PEM certificate chain and private key: serve TLS (HTTPS) instead of plain HTTP.
  std::string tls_cert_file;
  std::string tls_key_file;
  // Asked, on the I/O thread, about a request whose body would take budget (more than
  // kUnbudgetedBodyBytes), with its method, target and headers and before any of its body is
  // read: a response refuses it (sent, then the connection closed, the body never read nor
  // budgeted), so that a caller the handler would refuse (no key, a wrong one) cannot hold
  // the bodies' budget. Must be quick. Empty: every request is read.
  std::function<std::optional<ServerResponse>(const ServerRequest&)> screen;
};

// Bodies this small (an event, a health check) are read without the budget: they hold at most
// max_connections × 64 KiB together.
inline constexpr size_t kUnbudgetedBodyBytes = 64 << 10;

class HttpServer {
 public:
  HttpServer(boost::asio::io_context& io, boost::asio::thread_pool& handler_pool,
             HttpServerOptions options, ServerHandler handler);
  ~HttpServer();

  // Binds and starts accepting. kUnavailable when the address cannot be bound;
  // kInvalidArgument when the TLS certificate or key cannot be loaded, or the bodies' budget
  // is below one body.
  Status Start();
  // The bound port (after Start).
  uint16_t port() const;
  // Stops accepting; connections close after the response in progress. Thread-safe.
  void Stop();
  // After Stop: waits, up to `timeout`, until every request read before it has been answered
  // (its handler run and its response written), while the io_context runs; a request read
  // from now on is answered 503 without its handler. Whether all were. Call it off the
  // io_context's threads.
  bool Drain(std::chrono::milliseconds timeout);

 private:
  struct Impl;
  std::shared_ptr<Impl> impl_;
};

}  // namespace funcky
