#include "sdk/server.h"

#include <algorithm>
#include <charconv>
#include <chrono>
#include <csignal>
#include <memory>
#include <optional>
#include <string_view>
#include <thread>

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/thread_pool.hpp>

#include "common/http_server.h"
#include "common/url.h"

namespace funcky::sdk {

namespace asio = boost::asio;

namespace {

// Whether `r` carries the coordinator's call timeout (X-Funcky-Call-Timeout-Ms) and waited
// longer than it since it was read.
bool CallTimedOutWaiting(const ServerRequest& r) {
  const std::string_view value = FindHeader(r.headers, "X-Funcky-Call-Timeout-Ms");
  int64_t ms = 0;
  auto [end, ec] = std::from_chars(value.data(), value.data() + value.size(), ms);
  if (value.empty() || ec != std::errc() || end != value.data() + value.size() || ms <= 0) {
    return false;
  }
  return std::chrono::steady_clock::now() - r.read_at > std::chrono::milliseconds(ms);
}

ServerResponse NotFound() {
  return ServerResponse{404, {{"Content-Type", "application/json"}}, R"({"message":"not found"})"};
}

}  // namespace

struct Server::Impl {
  using Screen = std::function<std::optional<ServeResponse>(const ServeRequest&)>;
  Impl(Server::Handler h, ServerOptions o, Screen screen)
      : options(std::move(o)),
        // At least one thread: start() refuses fewer, but the pool is made before it asks.
        pool(static_cast<size_t>(std::max(options.threads, 1))),
        work(asio::make_work_guard(io)),
        handler(std::move(h)) {
    HttpServerOptions so;
    so.address = options.address;
    so.port = options.port;
    so.server_name = "funcky-sdk";
    so.max_body_bytes = 32 << 20;  // memoized state grows with the run
    // Bounds reading a request and writing its reply, never the handler's run (HttpServer
    // arms it around reads and writes only): see ServerOptions.
    so.request_timeout = options.request_timeout;
    // A connection kept alive between calls is held no longer than a coordinator would use
    // it: it keeps one for 4 s from a host that does not say (HttpClientOptions::idle_timeout).
    // Longer would only let idle clients hold connections.
    so.idle_timeout = std::chrono::seconds(15);
    so.max_connections = options.max_connections;
    so.max_body_bytes_in_flight = options.max_body_bytes_in_flight;
    so.tls_cert_file = options.tls_cert_file;
    so.tls_key_file = options.tls_key_file;
    // A large body is read only for the serve path and, with a signing key, a request that
    // carries a fresh signature: another caller cannot hold the room for bodies.
    so.screen = [this, screen = std::move(screen)](
                    const ServerRequest& r) -> std::optional<ServerResponse> {
      if (TargetPath(r.target) != options.path) return NotFound();
      if (!screen) return std::nullopt;
      std::optional<ServeResponse> refused = screen({r.method, r.target, r.headers, ""});
      if (!refused) return std::nullopt;
      return ServerResponse{refused->status, std::move(refused->headers), std::move(refused->body)};
    };
    server = std::make_unique<HttpServer>(io, pool, so, [this](ServerRequest r) {
      if (TargetPath(r.target) != options.path) return NotFound();
      // A call that waited for a free thread longer than its coordinator waits for the answer
      // is not run: the coordinator has given up on it and makes it again, and run now its
      // step would run twice.
      if (CallTimedOutWaiting(r)) {
        return ServerResponse{503,
                              {{"Content-Type", "application/json"}, {"Retry-After", "1"}},
                              R"({"message":"the call waited for a free thread past its )"
                              R"(coordinator's timeout; not run"})"};
      }
      ServeResponse res = handler(
          {std::move(r.method), std::move(r.target), std::move(r.headers), std::move(r.body)});
      return ServerResponse{res.status, std::move(res.headers), std::move(res.body)};
    });
  }
  ServerOptions options;
  asio::io_context io;
  asio::thread_pool pool;
  asio::executor_work_guard<asio::io_context::executor_type> work;
  Server::Handler handler;
  std::unique_ptr<HttpServer> server;
  std::thread io_thread;
};

Server::Server(const ServeHandler& handler, ServerOptions options)
    : impl_(std::make_unique<Impl>(
          [&handler](const ServeRequest& r) { return handler.handle(r); }, std::move(options),
          [&handler](const ServeRequest& head) { return handler.screen(head); })) {}

Server::Server(Handler handler, ServerOptions options)
    : impl_(std::make_unique<Impl>(std::move(handler), std::move(options), nullptr)) {}

Server::~Server() { stop(); }

Status Server::start() {
  if (impl_->options.threads < 1)
    return InvalidArgument("ServerOptions::threads must be at least 1");
  if (impl_->options.max_connections < 1) {
    return InvalidArgument("ServerOptions::max_connections must be at least 1");
  }
  RETURN_IF_ERROR(impl_->server->Start());
  impl_->io_thread = std::thread([this] { impl_->io.run(); });
  return Status::Ok();
}

uint16_t Server::port() const { return impl_->server->port(); }

void Server::stop() {
  if (!impl_->io_thread.joinable()) return;
  impl_->server->Stop();
  // The calls in hand finish and are answered first: their steps have run, and an answer
  // lost would have the coordinator make each call again.
  impl_->server->Drain(impl_->options.drain_timeout);
  impl_->work.reset();
  impl_->io.stop();
  impl_->io_thread.join();
  impl_->pool.join();
}

void Server::wait_for_signal() {
  // Asio's signal handler, not a mask: whichever thread the signal reaches (the server's, a
  // step's), the handler only wakes this wait; nothing is blocked that a step's child
  // process would inherit.
  asio::io_context waiting;
  asio::signal_set signals(waiting, SIGINT, SIGTERM);
  signals.async_wait([](const boost::system::error_code&, int) {});
  waiting.run();
  stop();
}

}  // namespace funcky::sdk
