// HttpClient's keep-alive pool against a server that counts the connections it accepts.
#include <atomic>
#include <memory>
#include <string>
#include <thread>

#include <gtest/gtest.h>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

#include "common/http_client.h"

namespace funcky {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;
using std::chrono::milliseconds;

// Answers every request 200 "ok", keeping the connection open, with `keep_alive` as its
// Keep-Alive header (none when empty), like Node's http server (`Keep-Alive: timeout=5`).
class CountingServer {
 public:
  explicit CountingServer(std::string keep_alive)
      : keep_alive_(std::move(keep_alive)),
        acceptor_(io_, {asio::ip::make_address("127.0.0.1"), 0}) {
    asio::co_spawn(io_, Accept(), asio::detached);
    thread_ = std::thread([this] { io_.run(); });
  }
  ~CountingServer() {
    io_.stop();
    thread_.join();
  }

  std::string url() const {
    return "http://127.0.0.1:" + std::to_string(acceptor_.local_endpoint().port()) + "/call";
  }
  int connections() const { return connections_; }
  int requests() const { return requests_; }

 private:
  asio::awaitable<void> Accept() {
    for (;;) {
      auto [ec, socket] = co_await acceptor_.async_accept(asio::as_tuple(asio::use_awaitable));
      if (ec) co_return;
      ++connections_;
      asio::co_spawn(io_, Serve(std::move(socket)), asio::detached);
    }
  }
  asio::awaitable<void> Serve(tcp::socket socket) {
    beast::flat_buffer buffer;
    for (;;) {
      http::request<http::string_body> req;
      auto [rec, rn] =
          co_await http::async_read(socket, buffer, req, asio::as_tuple(asio::use_awaitable));
      if (rec) co_return;
      ++requests_;
      http::response<http::string_body> res{http::status::ok, 11};
      if (!keep_alive_.empty()) res.set("Keep-Alive", keep_alive_);
      res.body() = "ok";
      res.keep_alive(true);
      res.prepare_payload();
      auto [wec, wn] = co_await http::async_write(socket, res, asio::as_tuple(asio::use_awaitable));
      if (wec) co_return;
    }
  }

  std::string keep_alive_;
  asio::io_context io_;
  tcp::acceptor acceptor_;
  std::thread thread_;
  std::atomic<int> connections_{0};
  std::atomic<int> requests_{0};
};

// `calls` calls one after another through one client, `pause` apart; the status of each.
std::vector<int> CallInTurn(const std::string& url, int calls, HttpClientOptions options = {},
                            milliseconds pause = milliseconds(0)) {
  asio::io_context io;
  HttpClient client(io.get_executor(), options);
  std::vector<int> statuses;
  asio::co_spawn(
      io,
      [&]() -> asio::awaitable<void> {
        for (int i = 0; i < calls; ++i) {
          if (i > 0 && pause > milliseconds(0)) {
            asio::steady_timer timer(io, pause);
            co_await timer.async_wait(asio::as_tuple(asio::use_awaitable));
          }
          // A named request: GCC 12 mishandles a braced temporary in a co_await operand.
          HttpRequest request;
          request.url = url;
          request.body = "{}";
          auto r = co_await client.Call(std::move(request));
          statuses.push_back(r.ok() ? r->status : -1);
        }
      },
      asio::detached);
  io.run();
  return statuses;
}

TEST(HttpClientPoolTest, ReusesOneConnectionForCallsInTurn) {
  CountingServer server("");
  EXPECT_EQ(CallInTurn(server.url(), 5), std::vector<int>(5, 200));
  EXPECT_EQ(server.requests(), 5);
  EXPECT_EQ(server.connections(), 1);
}

TEST(HttpClientPoolTest, ReusesAConnectionTheHostKeepsLongEnough) {
  CountingServer server("timeout=65");
  EXPECT_EQ(CallInTurn(server.url(), 5), std::vector<int>(5, 200));
  EXPECT_EQ(server.connections(), 1);
}

// A host that keeps idle connections a second or less (its Keep-Alive header says so) may
// close one just as the next call goes out: each call gets a fresh connection instead.
TEST(HttpClientPoolTest, DoesNotPoolAConnectionTheHostClosesWithinASecond) {
  CountingServer server("timeout=1");
  EXPECT_EQ(CallInTurn(server.url(), 3), std::vector<int>(3, 200));
  EXPECT_EQ(server.requests(), 3);
  EXPECT_EQ(server.connections(), 3);
}

TEST(HttpClientPoolTest, AHostThatSaysNothingGetsTheIdleTimeout) {
  CountingServer server("");
  EXPECT_EQ(CallInTurn(server.url(), 3, {.idle_timeout = milliseconds(0)}),
            std::vector<int>(3, 200));
  EXPECT_EQ(server.connections(), 3);
}

// A pooled connection idle past its timeout is closed, not used.
TEST(HttpClientPoolTest, DropsAPooledConnectionIdlePastItsTimeout) {
  CountingServer server("");
  EXPECT_EQ(CallInTurn(server.url(), 2, {.idle_timeout = milliseconds(20)}, milliseconds(60)),
            std::vector<int>(2, 200));
  EXPECT_EQ(server.connections(), 2);
}

TEST(HttpClientPoolTest, PooledIdleTimeoutFollowsTheKeepAliveHeader) {
  const HttpClientOptions options;  // idle_timeout 4 s, at most 600 s
  EXPECT_EQ(PooledIdleTimeout("", options), milliseconds(4'000));
  EXPECT_EQ(PooledIdleTimeout("timeout=5", options), milliseconds(4'000));  // Node's default
  EXPECT_EQ(PooledIdleTimeout("timeout=65", options), milliseconds(64'000));
  EXPECT_EQ(PooledIdleTimeout("max=100, Timeout=10", options), milliseconds(9'000));
  EXPECT_EQ(PooledIdleTimeout("timeout=1", options), milliseconds(0));
  EXPECT_EQ(PooledIdleTimeout("timeout=0", options), milliseconds(0));
  EXPECT_EQ(PooledIdleTimeout("timeout=86400", options), milliseconds(600'000));
  EXPECT_EQ(PooledIdleTimeout("timeout=99999999999999999999", options), milliseconds(600'000));
  EXPECT_EQ(PooledIdleTimeout("timeout=", options), milliseconds(4'000));
  EXPECT_EQ(PooledIdleTimeout("timeout=x", options), milliseconds(4'000));
  EXPECT_EQ(PooledIdleTimeout("max=5", options), milliseconds(4'000));
}

}  // namespace
}  // namespace funcky
