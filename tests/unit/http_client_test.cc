// HttpClient's keep-alive pool against a server that counts the connections it accepts.
#include <atomic>
#include <condition_variable>
#include <cstdlib>
#include <filesystem>
#include <functional>
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
#include <boost/asio/write.hpp>
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

// A host that answers in raw bytes: for request `r` (counted from 0 over all connections) on
// its connection `c` (from 0), `script(c, r)` gives the parts to write, `gap` apart (each
// part one write: over TLS, a record of its own); with no part, it holds the connection
// `hold` and closes it. Requests are read as HTTP/1.1. With `cert_dir` (cert.pem, key.pem),
// it serves TLS.
class RawServer {
 public:
  using Script = std::function<std::vector<std::string>(int connection, int request)>;
  explicit RawServer(Script script, milliseconds hold = milliseconds(0),
                     const std::string& cert_dir = "", milliseconds gap = milliseconds(50))
      : script_(std::move(script)),
        hold_(hold),
        gap_(gap),
        acceptor_(io_, {asio::ip::make_address("127.0.0.1"), 0}) {
    if (!cert_dir.empty()) {
      tls_.emplace(ssl::context::tls_server);
      tls_->use_certificate_chain_file(cert_dir + "/cert.pem");
      tls_->use_private_key_file(cert_dir + "/key.pem", ssl::context::pem);
    }
    asio::co_spawn(io_, Accept(), asio::detached);
    thread_ = std::thread([this] { io_.run(); });
  }
  ~RawServer() {
    io_.stop();
    thread_.join();
  }
  std::string url() const {
    return std::string(tls_ ? "https" : "http") +
           "://127.0.0.1:" + std::to_string(acceptor_.local_endpoint().port()) + "/call";
  }
  int connections() const { return connections_; }

 private:
  asio::awaitable<void> Accept() {
    for (;;) {
      auto [ec, socket] = co_await acceptor_.async_accept(asio::as_tuple(asio::use_awaitable));
      if (ec) co_return;
      asio::co_spawn(io_, Serve(std::move(socket), connections_++), asio::detached);
    }
  }
  asio::awaitable<void> Serve(tcp::socket socket, int connection) {
    if (!tls_) {
      co_await Answer(socket, connection);
      co_return;
    }
    beast::ssl_stream<beast::tcp_stream> stream(beast::tcp_stream(std::move(socket)), *tls_);
    auto [hec] = co_await stream.async_handshake(ssl::stream_base::server,
                                                 asio::as_tuple(asio::use_awaitable));
    if (!hec) co_await Answer(stream, connection);
  }
  template <typename Stream>
  asio::awaitable<void> Answer(Stream& stream, int connection) {
    beast::flat_buffer buffer;
    for (;;) {
      http::request<http::string_body> req;
      auto [rec, rn] =
          co_await http::async_read(stream, buffer, req, asio::as_tuple(asio::use_awaitable));
      if (rec) co_return;
      std::vector<std::string> parts = script_(connection, requests_++);
      asio::steady_timer timer(io_);
      if (parts.empty()) {
        timer.expires_after(hold_);
        co_await timer.async_wait(asio::as_tuple(asio::use_awaitable));
        co_return;  // closes
      }
      for (size_t i = 0; i < parts.size(); ++i) {
        if (i > 0 && gap_ > milliseconds(0)) {
          timer.expires_after(gap_);
          co_await timer.async_wait(asio::as_tuple(asio::use_awaitable));
        }
        auto [wec, wn] = co_await asio::async_write(stream, asio::buffer(parts[i]),
                                                    asio::as_tuple(asio::use_awaitable));
        if (wec) co_return;
      }
    }
  }

  Script script_;
  milliseconds hold_;
  milliseconds gap_;
  std::optional<ssl::context> tls_;  // set: serves TLS
  asio::io_context io_;
  tcp::acceptor acceptor_;
  std::thread thread_;
  std::atomic<int> connections_{0};
  std::atomic<int> requests_{0};
};

std::string Ok(const std::string& body) {
  return "HTTP/1.1 200 OK\r\nContent-Length: " + std::to_string(body.size()) + "\r\n\r\n" + body;
}

// `calls` calls in turn through one client, `pause` apart, each with `timeout`: "status body"
// of each, or its error.
std::vector<std::string> Answers(const std::string& url, int calls, milliseconds pause,
                                 milliseconds timeout = milliseconds(10'000),
                                 HttpClientOptions options = {}) {
  asio::io_context io;
  HttpClient client(io.get_executor(), options);
  std::vector<std::string> answers;
  asio::co_spawn(
      io,
      [&]() -> asio::awaitable<void> {
        for (int i = 0; i < calls; ++i) {
          if (i > 0) {
            asio::steady_timer timer(io, pause);
            co_await timer.async_wait(asio::as_tuple(asio::use_awaitable));
          }
          HttpRequest request;
          request.url = url;
          request.body = "{}";
          request.timeout = timeout;
          auto r = co_await client.Call(std::move(request));
          answers.push_back(r.ok() ? std::to_string(r->status) + " " + r->body
                                   : r.status().ToString());
        }
      },
      asio::detached);
  io.run();
  return answers;
}

// A header whose name or value holds a CR, LF or NUL (a value a host chose, such as a step id)
// fails the call before anything is sent: Beast writes headers as given, so it would add
// lines, or a request, of the value's choosing.
TEST(HttpClientAnswerTest, AHeaderThatWouldBreakTheLineIsRefusedAndNothingIsSent) {
  RawServer server([](int, int) -> std::vector<std::string> { return {Ok("sent")}; });
  for (const Headers& headers :
       {Headers{{"X-Inngest-Step-ID", "x\r\nX-Injected: 1"}}, Headers{{"X-A\nB", "v"}},
        Headers{{"X-Inngest-Step-ID", std::string("x\0y", 3)}}}) {
    asio::io_context io;
    HttpClient client(io.get_executor(), {});
    std::optional<Result<HttpResponse>> answer;
    HttpRequest request;
    request.url = server.url();
    request.headers = headers;
    asio::co_spawn(
        io, [&]() -> asio::awaitable<void> { answer = co_await client.Call(request); },
        asio::detached);
    io.run();
    ASSERT_TRUE(answer.has_value());
    EXPECT_EQ(answer->status().code(), StatusCode::kInvalidArgument) << answer->status().ToString();
  }
  EXPECT_EQ(server.connections(), 0);
  EXPECT_EQ(Answers(server.url(), 1, milliseconds(0)), std::vector<std::string>{"200 sent"});
}

// A resolver for the lookup tests: "stalled.test" stalls until Release (or 20 s), any other
// name is 127.0.0.1. Shared with the lookup pool's threads, which outlive a test's stalled
// lookups.
struct LookupGate {
  std::mutex mu;
  std::condition_variable released_cv;
  bool released = false;  // GUARDED_BY(mu)
  std::atomic<int> lookups_of_stalled{0};
  std::atomic<int> lookups_of_literal{0};  // of "127.0.0.1", which needs none

  Result<std::vector<std::string>> Resolve(const std::string& host) {
    if (host == "stalled.test") {
      ++lookups_of_stalled;
      std::unique_lock lock(mu);
      released_cv.wait_for(lock, std::chrono::seconds(20), [&] { return released; });
      return Unavailable("gave up");
    }
    if (host == "127.0.0.1") ++lookups_of_literal;
    return std::vector<std::string>{"127.0.0.1"};
  }
  void Release() {
    {
      std::lock_guard lock(mu);
      released = true;
    }
    released_cv.notify_all();
  }
};

// A name whose lookup stalls holds up neither calls to IP literals nor the lookups of other
// names, and its own call gives up at its deadline, as does the blocking HttpCall. (Asio looked
// every name up on one thread per io_context, IP literals too: one stalled name held up every
// new connection, and HttpCall waited for the lookup past its deadline.)
TEST(HttpClientLookupTest, AStalledLookupHoldsUpNoOtherCall) {
  RawServer server([](int, int) -> std::vector<std::string> { return {Ok("here")}; });
  const std::string port = server.url().substr(server.url().rfind(':') + 1);  // "<port>/call"
  auto gate = std::make_shared<LookupGate>();
  HttpClientOptions options;
  options.resolve = [gate](const std::string& host) { return gate->Resolve(host); };
  auto call = [&](const std::string& host, milliseconds timeout) {
    HttpRequest request;
    request.url = "http://" + host + ":" + port;
    request.timeout = timeout;
    return HttpCall(request, options);
  };
  const auto started = std::chrono::steady_clock::now();
  std::vector<std::thread> stalled;
  for (int i = 0; i < 2; ++i) {
    stalled.emplace_back([&] {
      auto r = call("stalled.test", milliseconds(300));
      EXPECT_EQ(r.status().code(), StatusCode::kDeadlineExceeded) << r.status().ToString();
    });
  }
  // Both lookups stalled (they stay so until the gate is released, their calls' deadlines
  // passed or not).
  const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  while (gate->lookups_of_stalled.load() < 2 && std::chrono::steady_clock::now() < give_up) {
    std::this_thread::sleep_for(milliseconds(5));
  }
  EXPECT_EQ(gate->lookups_of_stalled.load(), 2);  // (not ASSERT: the threads are joined below)
  auto literal = call("127.0.0.1", milliseconds(5'000));
  ASSERT_TRUE(literal.ok()) << literal.status().ToString();
  EXPECT_EQ(literal->body, "here");
  EXPECT_EQ(gate->lookups_of_literal.load(), 0) << "an IP literal was looked up";
  auto named = call("other.test", milliseconds(5'000));
  ASSERT_TRUE(named.ok()) << named.status().ToString();
  EXPECT_EQ(named->body, "here");
  for (std::thread& t : stalled) t.join();
  EXPECT_LT(std::chrono::steady_clock::now() - started, std::chrono::seconds(5))
      << "a stalled lookup was waited for past its call's deadline";
  gate->Release();
}

// Calls of one client that want a name while it is being looked up share that lookup: six
// calls to a name whose lookup stalls hold one of the pool's four threads, not all of them,
// so another name is still looked up and called; each stalled call ends at its deadline.
TEST(HttpClientLookupTest, CallsWaitingForOneNameShareItsLookup) {
  RawServer server([](int, int) -> std::vector<std::string> { return {Ok("here")}; });
  const std::string port = server.url().substr(server.url().rfind(':') + 1);
  auto gate = std::make_shared<LookupGate>();
  HttpClientOptions options;
  options.resolve = [gate](const std::string& host) { return gate->Resolve(host); };
  asio::io_context io;
  HttpClient client(io.get_executor(), options);
  std::vector<Result<HttpResponse>> stalled(6, Unavailable("not called"));
  std::optional<Result<HttpResponse>> other;
  auto call = [&](std::string host, milliseconds timeout,
                  Result<HttpResponse>* out) -> asio::awaitable<void> {
    HttpRequest request;
    request.url = "http://" + host + ":" + port;
    request.timeout = timeout;
    *out = co_await client.Call(std::move(request));
  };
  for (auto& r : stalled) {
    asio::co_spawn(io, call("stalled.test", milliseconds(500), &r), asio::detached);
  }
  asio::steady_timer later(io, milliseconds(100));  // the stalled calls are all waiting by then
  later.async_wait([&](beast::error_code) {
    other.emplace(Unavailable("not called"));
    asio::co_spawn(io, call("other.test", milliseconds(5'000), &*other), asio::detached);
  });
  const auto started = std::chrono::steady_clock::now();
  io.run();
  ASSERT_TRUE(other.has_value());
  ASSERT_TRUE(other->ok()) << other->status().ToString();
  EXPECT_EQ((*other)->body, "here");
  for (const auto& r : stalled) {
    EXPECT_EQ(r.status().code(), StatusCode::kDeadlineExceeded) << r.status().ToString();
  }
  EXPECT_EQ(gate->lookups_of_stalled.load(), 1);
  EXPECT_LT(std::chrono::steady_clock::now() - started, std::chrono::seconds(4));
  gate->Release();
}

// Interim answers (a proxy's 103 Early Hints, 100 Continue) come before the answer: they are
// passed over, and the connection serves the next call as usual.
TEST(HttpClientAnswerTest, InterimAnswersArePassedOver) {
  RawServer server([](int, int request) -> std::vector<std::string> {
    if (request == 0) {
      return {
          "HTTP/1.1 103 Early Hints\r\nLink: </style.css>\r\n\r\n"
          "HTTP/1.1 100 Continue\r\n\r\n" +
          Ok("first")};
    }
    return {Ok("second")};
  });
  EXPECT_EQ(Answers(server.url(), 2, milliseconds(0)),
            (std::vector<std::string>{"200 first", "200 second"}));
  EXPECT_EQ(server.connections(), 1);
}

// A host that answers one request twice (at once, or a moment later): the second answer is
// never taken for the next call's, which gets its own on a new connection.
TEST(HttpClientAnswerTest, ASecondAnswerToOneRequestIsNotTheNextCalls) {
  for (bool later : {false, true}) {
    SCOPED_TRACE(later ? "a moment later" : "at once");
    RawServer server([&](int connection, int) -> std::vector<std::string> {
      if (connection > 0) return {Ok("fresh")};
      if (later) return {Ok("one"), Ok("stale")};
      return {Ok("one") + Ok("stale")};
    });
    // The next call a second after (the stale answer is written 50 ms after the first: a
    // busy box may be late with it, and the test is of an answer that came before the call).
    EXPECT_EQ(Answers(server.url(), 2, milliseconds(1000)),
              (std::vector<std::string>{"200 one", "200 fresh"}));
    EXPECT_EQ(server.connections(), 2);
  }
}

// Over TLS too: a second answer sent in a record of its own right behind the first reaches the
// client with it (one read takes both records off the socket, and the TLS layer holds the
// second undecrypted), yet it is not the next call's answer.
TEST(HttpClientAnswerTest, ASecondAnswerInARecordOfItsOwnIsNotTheNextCallsOverTls) {
  const SelfSignedCert cert;
  ASSERT_FALSE(cert.dir.empty()) << "openssl could not make a certificate";
  RawServer server(
      [&](int connection, int) -> std::vector<std::string> {
        if (connection > 0) return {Ok("fresh")};
        return {Ok("one"), Ok("stale")};
      },
      milliseconds(0), cert.dir, /*gap=*/milliseconds(0));
  EXPECT_EQ(Answers(server.url(), 2, milliseconds(200), milliseconds(10'000),
                    {.ca_file = cert.dir + "/cert.pem"}),
            (std::vector<std::string>{"200 one", "200 fresh"}));
  EXPECT_EQ(server.connections(), 2);
}

// A chunk's size line that never ends is refused once a bounded buffer is full, not read
// into memory until the call times out.
TEST(HttpClientAnswerTest, AnEndlessChunkSizeLineFailsTheCallEarly) {
  RawServer server([](int, int) -> std::vector<std::string> {
    return {"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1;" + std::string(4 << 20, 'x'),
            ""};
  });
  std::vector<std::string> answers = Answers(server.url(), 1, milliseconds(0));
  ASSERT_EQ(answers.size(), 1u);
  EXPECT_EQ(answers[0].find("200"), std::string::npos) << answers[0];
  EXPECT_EQ(answers[0].find("timed out"), std::string::npos) << answers[0];
}

// An answer's body past max_response_bytes fails the call as too large (kResourceExhausted,
// saying so), whether its length is told first or it comes in chunks; at the limit it is read.
TEST(HttpClientAnswerTest, ABodyPastTheLimitFailsTheCallAsTooLarge) {
  const std::string at_limit(1000, 'a');
  RawServer server([&](int connection, int) -> std::vector<std::string> {
    if (connection == 0) return {Ok(at_limit)};
    if (connection == 1) return {Ok(at_limit + "b")};
    return {"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3e8\r\n" + at_limit +
                "\r\n1\r\nb\r\n0\r\n\r\n",
            ""};
  });
  for (int call = 0; call < 3; ++call) {
    std::vector<std::string> answers = Answers(server.url(), 1, milliseconds(0),
                                               milliseconds(10'000), {.max_response_bytes = 1000});
    ASSERT_EQ(answers.size(), 1u);
    if (call == 0) {
      EXPECT_EQ(answers[0], "200 " + at_limit);
    } else {
      EXPECT_EQ(answers[0].find("resource_exhausted: "), 0u) << call << ": " << answers[0];
      EXPECT_NE(answers[0].find("the answer's body is larger than 1000 bytes"), std::string::npos)
          << answers[0];
    }
  }
}

// A call has one deadline: a pooled connection the host holds and then closes without an
// answer leaves the second try on a new connection only what is left of it.
TEST(HttpClientAnswerTest, ASecondTryOnANewConnectionSharesTheCallsDeadline) {
  RawServer server(
      [](int connection, int request) -> std::vector<std::string> {
        if (connection == 0 && request == 0) return {Ok("one")};
        return {};  // held, then closed without an answer
      },
      milliseconds(1'500));
  const auto start = std::chrono::steady_clock::now();
  std::vector<std::string> answers = Answers(server.url(), 2, milliseconds(0), milliseconds(2'000));
  const auto took = std::chrono::steady_clock::now() - start;
  ASSERT_EQ(answers.size(), 2u);
  EXPECT_EQ(answers[0], "200 one");
  EXPECT_NE(answers[1].find("timed out"), std::string::npos) << answers[1];
  // The second try has about 0.5 s left, not a whole 2 s (3.5 s in all before).
  EXPECT_LT(took, milliseconds(3'000));
  EXPECT_EQ(server.connections(), 2);
}

}  // namespace
}  // namespace funcky
