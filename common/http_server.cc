#include "common/http_server.h"

#include <array>
#include <atomic>
#include <thread>
#include <vector>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/thread_pool.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl/ssl_stream.hpp>
#include <nlohmann/json.hpp>

#include "common/offload.h"

namespace funcky {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace bhttp = beast::http;
namespace ssl = asio::ssl;
using tcp = asio::ip::tcp;

namespace {

// The bytes a read may add beyond a whole header to what is not parsed yet (Beast reads
// 64 KiB at a time).
constexpr size_t kReadSliceBytes = 64 << 10;

// Beast reads a body of any other Transfer-Encoding as "until the connection closes", which
// for a request would take the next request as body: only chunked is understood.
bool UnsupportedTransferEncoding(const bhttp::request_parser<bhttp::string_body>& parser) {
  auto it = parser.get().find(bhttp::field::transfer_encoding);
  if (it == parser.get().end()) return false;
  return !beast::iequals(it->value(), "chunked");
}

}  // namespace

struct HttpServer::Impl : std::enable_shared_from_this<Impl> {
  Impl(asio::io_context& io, asio::thread_pool& pool, HttpServerOptions o, ServerHandler h)
      : io(io), pool(pool), options(std::move(o)), handler(std::move(h)), acceptor(io) {}

  asio::io_context& io;
  asio::thread_pool& pool;
  HttpServerOptions options;
  ServerHandler handler;
  tcp::acceptor acceptor;
  std::optional<ssl::context> tls;  // set when serving HTTPS
  std::atomic<bool> stopping{false};
  std::atomic<bool> draining{false};
  std::atomic<int> requests_in_flight{0};  // read whole and not answered yet
  size_t connections = 0;                  // only touched on the io_context
  size_t body_bytes_held = 0;  // of max_body_bytes_in_flight; only touched on the io_context
  // The timers of the requests waiting for budget (WaitForBudget), woken when some is given
  // back or the server stops; only touched on the io_context.
  std::vector<asio::steady_timer*> budget_waiters;
  void WakeBudgetWaiters() {
    for (asio::steady_timer* t : budget_waiters) t->cancel();
  }

  // A request body's share of the budget, given back when the request is done.
  class BodyBudget {
   public:
    explicit BodyBudget(Impl& server) : server_(server) {}
    ~BodyBudget() {
      if (held_ == 0) return;
      server_.body_bytes_held -= held_;
      server_.WakeBudgetWaiters();
    }
    BodyBudget(const BodyBudget&) = delete;
    BodyBudget& operator=(const BodyBudget&) = delete;

    // The bytes of budget the body the parser's header announces takes (0: not budgeted).
    static size_t BytesFor(const bhttp::request_parser<bhttp::string_body>& parser,
                           const HttpServerOptions& o) {
      const size_t bytes = parser.content_length() ? std::min<uint64_t>(*parser.content_length(),
                                                                        o.max_body_bytes)
                                                   : o.max_body_bytes;  // chunked
      return bytes <= kUnbudgetedBodyBytes ? 0 : bytes;
    }

    // Whether the body the parser's header announces fits: it is then counted.
    bool Take(const bhttp::request_parser<bhttp::string_body>& parser) {
      const auto& o = server_.options;
      const size_t bytes = BytesFor(parser, o);
      if (bytes == 0) return true;
      if (server_.body_bytes_held + bytes > o.max_body_bytes_in_flight) return false;
      server_.body_bytes_held += bytes;
      held_ = bytes;
      return true;
    }

   private:
    Impl& server_;
    size_t held_ = 0;
  };
  uint16_t bound_port = 0;

  static bhttp::response<bhttp::string_body> LimitError(int status, std::string_view code,
                                                        std::string_view message) {
    bhttp::response<bhttp::string_body> res{static_cast<bhttp::status>(status), 11};
    res.set(bhttp::field::content_type, "application/json");
    res.body() = nlohmann::json{{"error", {{"code", code}, {"message", message}}}}.dump();
    res.keep_alive(false);
    res.prepare_payload();
    return res;
  }

  // A request's method, target and headers, without its body.
  static ServerRequest HeadOf(const bhttp::request<bhttp::string_body>& req) {
    ServerRequest head;
    head.method = std::string(req.method_string());
    head.target = std::string(req.target());
    for (const auto& field : req) {
      head.headers.emplace_back(std::string(field.name_string()), std::string(field.value()));
    }
    return head;
  }

  bhttp::response<bhttp::string_body> ToBeast(ServerResponse out) const {
    bhttp::response<bhttp::string_body> res{static_cast<bhttp::status>(out.status), 11};
    res.set(bhttp::field::server, options.server_name);
    for (const auto& [k, v] : out.headers) res.set(k, v);
    res.body() = std::move(out.body);
    return res;
  }

  asio::awaitable<void> Session(tcp::socket socket) {
    auto self = shared_from_this();
    // Counted until the session ends, however it ends.
    struct Counted {
      size_t& n;
      explicit Counted(size_t& n) : n(n) { ++n; }
      ~Counted() { --n; }
    } counted(connections);
    if (tls) {
      beast::ssl_stream<beast::tcp_stream> stream(std::move(socket), *tls);
      beast::get_lowest_layer(stream).expires_after(options.request_timeout);
      auto [hec] = co_await stream.async_handshake(ssl::stream_base::server,
                                                   asio::as_tuple(asio::use_awaitable));
      if (!hec) {
        co_await Serve(stream);
        beast::get_lowest_layer(stream).expires_after(std::chrono::seconds(1));
        co_await stream.async_shutdown(asio::as_tuple(asio::use_awaitable));
      }
    } else {
      beast::tcp_stream stream(std::move(socket));
      co_await Serve(stream);
      beast::error_code ignored;
      stream.socket().shutdown(tcp::socket::shutdown_send, ignored);
    }
  }

  // Whether the body `parser`'s header announces fits the budget, now or, as other requests
  // give theirs back, by the request's `deadline`: the body is not read meanwhile, so TCP
  // holds the client back. A waiting request sleeps until budget is given back (no polling).
  asio::awaitable<bool> WaitForBudget(BodyBudget& budget,
                                      const bhttp::request_parser<bhttp::string_body>& parser,
                                      std::chrono::steady_clock::time_point deadline) {
    asio::steady_timer pause(io);
    struct Waiting {  // listed while this frame lives, however it ends
      std::vector<asio::steady_timer*>& list;
      asio::steady_timer* timer;
      ~Waiting() { std::erase(list, timer); }
    } waiting{budget_waiters, &pause};
    budget_waiters.push_back(&pause);
    while (!budget.Take(parser)) {
      if (stopping || std::chrono::steady_clock::now() >= deadline) co_return false;
      pause.expires_at(deadline);
      co_await pause.async_wait(asio::as_tuple(asio::use_awaitable));
    }
    co_return true;
  }

  // After answering a request whose body was not read: stop sending, then read and drop what
  // the client still sends (for a second at most), so that closing with it unread does not
  // reset the connection before the client has read the answer.
  static asio::awaitable<void> DrainBeforeClose(beast::tcp_stream& lowest) {
    beast::error_code ignored;
    lowest.socket().shutdown(tcp::socket::shutdown_send, ignored);
    lowest.expires_after(std::chrono::seconds(1));
    std::array<char, 16 << 10> sink;
    for (;;) {
      auto [ec, n] =
          co_await lowest.async_read_some(asio::buffer(sink), asio::as_tuple(asio::use_awaitable));
      if (ec) break;
    }
  }

  // Reads requests and writes responses on one connection until it closes.
  template <typename Stream>
  asio::awaitable<void> Serve(Stream& stream) {
    auto& lowest = beast::get_lowest_layer(stream);
    // Holds what is read and not parsed yet: a header (the parser bounds it), a chunk's size
    // line or a trailer (nothing else bounds those: endless, they grew the buffer until the
    // request's timeout), a slice of the body.
    beast::flat_buffer buffer(options.max_header_bytes + kReadSliceBytes);
    bool first = true;
    while (!stopping) {
      bhttp::request_parser<bhttp::string_body> parser;
      parser.header_limit(options.max_header_bytes);
      parser.body_limit(options.max_body_bytes);
      // Wait for the first byte of a request up to the idle timeout (a new connection's, up
      // to the request timeout), then the whole request, its wait for budget included, must
      // arrive within the request timeout: one deadline, not one per part.
      auto deadline = std::chrono::steady_clock::now() + options.request_timeout;
      if (buffer.size() == 0) {
        lowest.expires_after(first ? options.request_timeout : options.idle_timeout);
        auto [fec, fn] = co_await stream.async_read_some(buffer.prepare(kReadSliceBytes),
                                                         asio::as_tuple(asio::use_awaitable));
        buffer.commit(fn);
        if (fec && fn == 0) break;  // closed, reset or idle: nothing to answer
        if (!first) deadline = std::chrono::steady_clock::now() + options.request_timeout;
      }
      first = false;
      lowest.expires_at(deadline);
      auto [hec, hn] = co_await bhttp::async_read_header(stream, buffer, parser,
                                                         asio::as_tuple(asio::use_awaitable));
      beast::error_code ec = hec;
      if (!ec && UnsupportedTransferEncoding(parser)) {
        auto err = LimitError(400, "bad_request",
                              "unsupported Transfer-Encoding: only chunked is accepted");
        lowest.expires_after(options.request_timeout);
        co_await bhttp::async_write(stream, err, asio::as_tuple(asio::use_awaitable));
        break;
      }
      if (!ec && !parser.is_done() && options.screen && BodyBudget::BytesFor(parser, options) > 0) {
        std::optional<ServerResponse> refused;
        try {
          refused = options.screen(HeadOf(parser.get()));
        } catch (...) {
          // Left to the handler, which sees the whole request.
        }
        if (refused) {
          auto res = ToBeast(std::move(*refused));
          res.keep_alive(false);
          res.prepare_payload();
          lowest.expires_after(options.request_timeout);
          auto [wec, wn] =
              co_await bhttp::async_write(stream, res, asio::as_tuple(asio::use_awaitable));
          if (!wec) co_await DrainBeforeClose(lowest);
          break;
        }
      }
      BodyBudget budget(*this);
      if (!ec && !parser.is_done() && !co_await WaitForBudget(budget, parser, deadline)) {
        auto err =
            LimitError(503, "busy", "the server holds too many request bodies at once; try again");
        err.set(bhttp::field::retry_after, "1");
        lowest.expires_after(options.request_timeout);
        auto [wec, wn] =
            co_await bhttp::async_write(stream, err, asio::as_tuple(asio::use_awaitable));
        if (!wec) co_await DrainBeforeClose(lowest);
        break;
      }
      if (!ec && !parser.is_done()) {
        lowest.expires_at(deadline);
        auto [bec, bn] =
            co_await bhttp::async_read(stream, buffer, parser, asio::as_tuple(asio::use_awaitable));
        ec = bec;
      }
      if (ec) {
        std::optional<bhttp::response<bhttp::string_body>> err;
        if (ec == bhttp::error::body_limit) {
          err = LimitError(
              413, "payload_too_large",
              "request body exceeds " + std::to_string(options.max_body_bytes) + " bytes");
        } else if (ec == bhttp::error::header_limit) {
          err = LimitError(431, "headers_too_large", "request headers are too large");
        } else if (ec == bhttp::error::buffer_overflow) {
          err = LimitError(400, "bad_request",
                           "malformed HTTP request: a chunk's size line or a trailer is longer "
                           "than " +
                               std::to_string(buffer.max_size()) + " bytes");
        } else if (ec != bhttp::error::end_of_stream && ec != beast::error::timeout &&
                   ec != asio::error::eof && ec != asio::error::connection_reset &&
                   ec != asio::error::operation_aborted) {
          err = LimitError(400, "bad_request", "malformed HTTP request: " + ec.message());
        }
        if (err) {
          lowest.expires_after(options.request_timeout);
          auto [wec, wn] =
              co_await bhttp::async_write(stream, *err, asio::as_tuple(asio::use_awaitable));
          // The body of a request refused before it was read (too large, or its header was)
          // may still be on its way: closing with it unread would reset the connection before
          // the client read the answer.
          if (!wec && (ec == bhttp::error::body_limit || ec == bhttp::error::header_limit)) {
            co_await DrainBeforeClose(lowest);
          }
        }
        break;
      }
      // Counted from here until its response is written, for Drain.
      struct InFlight {
        std::atomic<int>& n;
        explicit InFlight(std::atomic<int>& n) : n(n) { ++n; }
        ~InFlight() { --n; }
      } in_flight(requests_in_flight);
      if (draining) {
        auto err = LimitError(503, "stopping", "the server is stopping; try again");
        err.set(bhttp::field::retry_after, "1");
        lowest.expires_after(options.request_timeout);
        co_await bhttp::async_write(stream, err, asio::as_tuple(asio::use_awaitable));
        break;
      }
      auto req = parser.release();
      ServerRequest request = HeadOf(req);
      request.body = std::move(req.body());
      request.read_at = std::chrono::steady_clock::now();
      const bool keep_alive = req.keep_alive();

      // Run the handler on the blocking pool and come back to this connection's executor.
      std::optional<ServerResponse> out =
          co_await Offload(pool, [this, &request]() -> std::optional<ServerResponse> {
            try {
              return handler(std::move(request));
            } catch (...) {
              // A handler answers every request itself; one that throws anyway gets this
              // (its exception's text may quote the request: it is not sent), and the
              // server goes on.
              return ServerResponse{
                  500,
                  {{"Content-Type", "application/json"}},
                  R"({"error":{"code":"internal","message":"the request's handler failed"}})"};
            }
          });

      auto res = ToBeast(std::move(*out));
      res.keep_alive(keep_alive && !stopping);
      res.prepare_payload();
      lowest.expires_after(options.request_timeout);
      auto [wec, wn] =
          co_await bhttp::async_write(stream, res, asio::as_tuple(asio::use_awaitable));
      if (wec || !res.keep_alive()) break;
    }
  }

  asio::awaitable<void> Accept() {
    auto self = shared_from_this();
    asio::steady_timer pause(io);
    while (!stopping) {
      if (connections >= options.max_connections) {
        // Full: leave new connections in the listen backlog until one closes.
        pause.expires_after(std::chrono::milliseconds(10));
        co_await pause.async_wait(asio::as_tuple(asio::use_awaitable));
        continue;
      }
      auto [ec, socket] = co_await acceptor.async_accept(asio::as_tuple(asio::use_awaitable));
      if (ec) {
        if (stopping || ec == asio::error::operation_aborted) break;
        // E.g. EMFILE (out of file descriptors): keep serving the connections we have and
        // try again shortly instead of spinning on the failing accept.
        pause.expires_after(std::chrono::milliseconds(100));
        co_await pause.async_wait(asio::as_tuple(asio::use_awaitable));
        continue;
      }
      // A connection reset already may refuse it (not on Linux): its first read says so.
      beast::error_code ignored;
      socket.set_option(tcp::no_delay(true), ignored);
      asio::co_spawn(io, Session(std::move(socket)), asio::detached);
    }
  }
};

HttpServer::HttpServer(asio::io_context& io, asio::thread_pool& handler_pool,
                       HttpServerOptions options, ServerHandler handler)
    : impl_(std::make_shared<Impl>(io, handler_pool, std::move(options), std::move(handler))) {}

HttpServer::~HttpServer() { Stop(); }

Status HttpServer::Start() {
  beast::error_code ec;
  const auto& o = impl_->options;
  if (o.tls_cert_file.empty() != o.tls_key_file.empty()) {
    return InvalidArgument("TLS needs both a certificate and a key");
  }
  if (o.max_body_bytes_in_flight < o.max_body_bytes) {
    return InvalidArgument(
        "the request bodies' budget (" + std::to_string(o.max_body_bytes_in_flight) +
        " bytes) is below one body (" + std::to_string(o.max_body_bytes) + " bytes)");
  }
  if (!o.tls_cert_file.empty()) {
    auto& ctx = impl_->tls.emplace(ssl::context::tls_server);
    ctx.set_options(ssl::context::default_workarounds | ssl::context::no_sslv2 |
                    ssl::context::no_sslv3 | ssl::context::no_tlsv1 | ssl::context::no_tlsv1_1);
    ctx.use_certificate_chain_file(o.tls_cert_file, ec);
    if (ec)
      return InvalidArgument("cannot load TLS certificate " + o.tls_cert_file + ": " +
                             ec.message());
    ctx.use_private_key_file(o.tls_key_file, ssl::context::pem, ec);
    if (ec) return InvalidArgument("cannot load TLS key " + o.tls_key_file + ": " + ec.message());
  }
  auto address = asio::ip::make_address(impl_->options.address, ec);
  if (ec) return InvalidArgument("bad listen address \"" + impl_->options.address + "\"");
  tcp::endpoint endpoint(address, impl_->options.port);
  auto& acc = impl_->acceptor;
  acc.open(endpoint.protocol(), ec);
  if (!ec) acc.set_option(asio::socket_base::reuse_address(true), ec);
  if (!ec) acc.bind(endpoint, ec);
  if (!ec) acc.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) {
    return Unavailable("cannot listen on " + impl_->options.address + ":" +
                       std::to_string(impl_->options.port) + ": " + ec.message());
  }
  impl_->bound_port = acc.local_endpoint().port();
  asio::co_spawn(impl_->io, impl_->Accept(), asio::detached);
  return Status::Ok();
}

uint16_t HttpServer::port() const { return impl_->bound_port; }

bool HttpServer::Drain(std::chrono::milliseconds timeout) {
  impl_->draining = true;
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (impl_->requests_in_flight > 0) {
    if (std::chrono::steady_clock::now() >= deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return true;
}

void HttpServer::Stop() {
  if (impl_->stopping.exchange(true)) return;
  asio::post(impl_->io, [impl = impl_] {
    beast::error_code ignored;
    impl->acceptor.close(ignored);
    impl->WakeBudgetWaiters();  // they answer 503 now rather than at their deadlines
  });
}

}  // namespace funcky
