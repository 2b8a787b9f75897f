// HttpClient's keep-alive pool against a server that counts the connections it accepts.
#include <atomic>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>

#include <gtest/gtest.h>
#include <openssl/ssl.h>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl/ssl_stream.hpp>

#include "common/http_client.h"

namespace funcky {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace ssl = asio::ssl;
using tcp = asio::ip::tcp;
using std::chrono::milliseconds;

// Answers every request 200 "ok", keeping the connection open, with `keep_alive` as its
// Keep-Alive header (none when empty), like Node's http server (`Keep-Alive: timeout=5`).
// Counts the connections it accepts. With `cert_dir` (cert.pem, key.pem), it serves TLS,
// counts completed handshakes and keeps the host name the last client sent as SNI.
class CountingServer {
 public:
  explicit CountingServer(std::string keep_alive, const std::string& cert_dir = "")
      : keep_alive_(std::move(keep_alive)),
        acceptor_(io_, {asio::ip::make_address("127.0.0.1"), 0}) {
    if (!cert_dir.empty()) {
      tls_.emplace(ssl::context::tls_server);
      tls_->use_certificate_chain_file(cert_dir + "/cert.pem");
      tls_->use_private_key_file(cert_dir + "/key.pem", ssl::context::pem);
    }
    asio::co_spawn(io_, Accept(), asio::detached);
    thread_ = std::thread([this] { io_.run(); });
  }
  ~CountingServer() {
    io_.stop();
    thread_.join();
  }

  std::string url(const std::string& host = "127.0.0.1") const {
    return std::string(tls_ ? "https" : "http") + "://" + host + ":" +
           std::to_string(acceptor_.local_endpoint().port()) + "/call";
  }
  int connections() const { return connections_; }
  int handshakes() const { return handshakes_; }
  std::string sni() const {
    std::lock_guard lock(mu_);
    return sni_;
  }
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
    if (!tls_) {
      co_await Answer(socket);
      co_return;
    }
    beast::ssl_stream<beast::tcp_stream> stream(beast::tcp_stream(std::move(socket)), *tls_);
    auto [hec] = co_await stream.async_handshake(ssl::stream_base::server,
                                                 asio::as_tuple(asio::use_awaitable));
    if (hec) co_return;
    const char* name = SSL_get_servername(stream.native_handle(), TLSEXT_NAMETYPE_host_name);
    {
      std::lock_guard lock(mu_);
      sni_ = name ? name : "";
    }
    ++handshakes_;
    co_await Answer(stream);
  }
  template <typename Stream>
  asio::awaitable<void> Answer(Stream& stream) {
    beast::flat_buffer buffer;
    for (;;) {
      http::request<http::string_body> req;
      auto [rec, rn] =
          co_await http::async_read(stream, buffer, req, asio::as_tuple(asio::use_awaitable));
      if (rec) co_return;
      ++requests_;
      http::response<http::string_body> res{http::status::ok, 11};
      if (!keep_alive_.empty()) res.set("Keep-Alive", keep_alive_);
      res.body() = "ok";
      res.keep_alive(true);
      res.prepare_payload();
      auto [wec, wn] = co_await http::async_write(stream, res, asio::as_tuple(asio::use_awaitable));
      if (wec) co_return;
    }
  }

  std::string keep_alive_;
  std::optional<ssl::context> tls_;  // set: serves TLS
  asio::io_context io_;
  tcp::acceptor acceptor_;
  std::thread thread_;
  std::atomic<int> connections_{0};
  std::atomic<int> handshakes_{0};
  std::atomic<int> requests_{0};
  mutable std::mutex mu_;
  std::string sni_;  // GUARDED_BY(mu_)
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

// A self-signed certificate for 127.0.0.1 and localhost made with the openssl CLI in a fresh
// folder, removed with this: its cert.pem is both the server's certificate and the CA the
// client trusts. dir is empty when openssl failed.
struct SelfSignedCert {
  SelfSignedCert() {
    std::string d = ::testing::TempDir() + "/http-client-tls-XXXXXX";
    if (mkdtemp(d.data()) == nullptr) return;
    const std::string cmd = "cd " + d +
                            " && openssl req -x509 -newkey ec -pkeyopt "
                            "ec_paramgen_curve:prime256v1 -nodes -keyout key.pem -out cert.pem "
                            "-days 2 -subj '/CN=127.0.0.1' "
                            "-addext subjectAltName=IP:127.0.0.1,DNS:localhost >/dev/null 2>&1";
    if (std::system(cmd.c_str()) == 0)
      dir = d;
    else
      std::filesystem::remove_all(d);
  }
  ~SelfSignedCert() {
    if (!dir.empty()) std::filesystem::remove_all(dir);
  }
  std::string dir;
};

// https:// calls in turn to one origin reuse one TLS connection: one TCP connection and one
// handshake for all of them.
TEST(HttpClientPoolTest, ReusesOneTlsConnectionForHttpsCallsInTurn) {
  const SelfSignedCert cert;
  ASSERT_FALSE(cert.dir.empty()) << "openssl could not make a certificate";
  const std::string& certs = cert.dir;
  CountingServer server("", certs);
  const HttpClientOptions options{.ca_file = certs + "/cert.pem"};
  EXPECT_EQ(CallInTurn(server.url(), 3, options), std::vector<int>(3, 200));
  EXPECT_EQ(server.requests(), 3);
  EXPECT_EQ(server.handshakes(), 1);
  EXPECT_EQ(server.connections(), 1);
}

// A URL that names the host by DNS name sends it as SNI (and is verified against it); one
// with an IP address sends none (RFC 6066 §3).
TEST(HttpClientPoolTest, SendsTheHostNameAsSniButNoIpAddress) {
  const SelfSignedCert cert;
  ASSERT_FALSE(cert.dir.empty()) << "openssl could not make a certificate";
  const std::string& certs = cert.dir;
  CountingServer server("", certs);
  const HttpClientOptions options{.ca_file = certs + "/cert.pem"};
  EXPECT_EQ(CallInTurn(server.url("localhost"), 1, options), std::vector<int>{200});
  EXPECT_EQ(server.sni(), "localhost");
  EXPECT_EQ(CallInTurn(server.url("127.0.0.1"), 1, options), std::vector<int>{200});
  EXPECT_EQ(server.sni(), "");
  EXPECT_EQ(server.handshakes(), 2);
}

// A pooled TLS connection idle past its timeout is not reused: a new handshake.
TEST(HttpClientPoolTest, AnExpiredTlsConnectionIsReplacedByANewHandshake) {
  const SelfSignedCert cert;
  ASSERT_FALSE(cert.dir.empty()) << "openssl could not make a certificate";
  const std::string& certs = cert.dir;
  CountingServer server("", certs);
  const HttpClientOptions options{.idle_timeout = milliseconds(20), .ca_file = certs + "/cert.pem"};
  EXPECT_EQ(CallInTurn(server.url(), 2, options, milliseconds(60)), std::vector<int>(2, 200));
  EXPECT_EQ(server.handshakes(), 2);
  EXPECT_EQ(server.connections(), 2);
}

// The trusted CAs are read at the first https:// call, not when the client is made (reading
// the system's store costs tens of milliseconds of CPU, which every one-off HttpCall paid, for
// http:// too): a CA file written after the client was made is trusted.
TEST(HttpClientPoolTest, ReadsTheTrustedCasAtTheFirstHttpsCall) {
  const SelfSignedCert cert;
  ASSERT_FALSE(cert.dir.empty()) << "openssl could not make a certificate";
  CountingServer server("", cert.dir);
  const std::string later = cert.dir + "/written-later.pem";
  asio::io_context io;
  HttpClient client(io.get_executor(), {.ca_file = later});
  std::filesystem::copy_file(cert.dir + "/cert.pem", later);
  int status = 0;
  asio::co_spawn(
      io,
      [&]() -> asio::awaitable<void> {
        HttpRequest request;
        request.url = server.url();
        auto r = co_await client.Call(std::move(request));
        status = r.ok() ? r->status : -1;
      },
      asio::detached);
  io.run();
  EXPECT_EQ(status, 200);
  EXPECT_EQ(server.handshakes(), 1);
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
