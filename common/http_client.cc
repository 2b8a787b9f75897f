#include "common/http_client.h"

#include <algorithm>
#include <map>
#include <mutex>
#include <variant>

#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509_vfy.h>
#include <strings.h>
#include <sys/socket.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/ssl/error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/thread_pool.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl/ssl_stream.hpp>
#include <cerrno>

#include "common/url.h"

namespace funcky {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace ssl = asio::ssl;
using tcp = asio::ip::tcp;

std::string_view FindHeader(const Headers& headers, std::string_view name) {
  for (const auto& [k, v] : headers) {
    if (k.size() == name.size() && strncasecmp(k.data(), name.data(), k.size()) == 0) return v;
  }
  return {};
}

namespace {

using PlainStream = beast::tcp_stream;
using TlsStream = beast::ssl_stream<beast::tcp_stream>;
// One connection to an origin, plain or TLS; pooled between calls while kept alive.
using Connection = std::variant<std::unique_ptr<PlainStream>, std::unique_ptr<TlsStream>>;

// Name lookups run on a few threads of their own, shared by every client: getaddrinfo blocks,
// and nothing can interrupt it. (Asio's resolver looked every name up on one thread per
// io_context, IP literals too, so one name whose DNS stalled held up new connections to every
// host.) Never destroyed: a lookup stalled at exit is not waited for.
asio::thread_pool& LookupPool() {
  static auto* pool = new asio::thread_pool(4);
  return *pool;
}

// The system's resolver: the addresses of `host`, as text.
Result<std::vector<std::string>> SystemResolve(const std::string& host) {
  asio::io_context ctx;
  tcp::resolver resolver(ctx);
  beast::error_code ec;
  const tcp::resolver::results_type results = resolver.resolve(host, "", ec);  // getaddrinfo
  if (ec) return Unavailable(ec.message());
  std::vector<std::string> out;
  for (const auto& entry : results) out.push_back(entry.endpoint().address().to_string());
  return out;
}

// A name lookup in flight, as its call sees it: owned by the call alone (its timer belongs to
// the call's io_context and must go with the call, not with a pool thread finishing later).
struct Lookup {
  Lookup(const asio::any_io_executor& executor, std::chrono::steady_clock::time_point deadline)
      : wait(executor, deadline) {}
  asio::steady_timer wait;  // expires at the deadline; cancelled by the lookup's completion
  bool done = false;
  Result<std::vector<std::string>> addresses = Unavailable("not looked up");
};

// What the pool's thread shares with the call: it posts the result to the call's executor,
// unless the call gave up (its deadline passed, or its io_context went away): then the
// executor may be gone, and nothing is posted. The result reaches the call only if the call
// still exists (a weak reference).
struct LookupHandoff {
  explicit LookupHandoff(asio::any_io_executor e, std::weak_ptr<Lookup> l)
      : executor(std::move(e)), lookup(std::move(l)) {}
  std::mutex mu;
  bool abandoned = false;  // GUARDED_BY(mu)
  asio::any_io_executor executor;
  std::weak_ptr<Lookup> lookup;
};

// Marks a lookup given up when the call stops waiting for it, however it stops.
struct AbandonLookup {
  std::shared_ptr<LookupHandoff> handoff;
  ~AbandonLookup() {
    std::lock_guard lock(handoff->mu);
    handoff->abandoned = true;
  }
};

beast::tcp_stream& Lowest(Connection& c) {
  return std::visit([](auto& s) -> beast::tcp_stream& { return beast::get_lowest_layer(*s); }, c);
}

// Whether a pooled connection is as its last answer left it: nothing to read and not closed
// by the host. Bytes waiting there (a second answer to one request, a TLS alert) or an end
// of stream make it unusable: the next call would read them as its answer. Over TLS they may
// be off the socket already: decrypted and unread (SSL_pending), a record read but not yet
// decrypted (SSL_has_pending), or bytes the stream handed to OpenSSL's network BIO and it has
// not read yet (a read from the socket takes what is there, the next record too).
bool Quiet(Connection& c) {
  if (auto* tls = std::get_if<std::unique_ptr<TlsStream>>(&c)) {
    SSL* ssl = (*tls)->native_handle();
    if (SSL_pending(ssl) > 0 || SSL_has_pending(ssl) == 1) return false;
    if (BIO* in = SSL_get_rbio(ssl); in != nullptr && BIO_ctrl_pending(in) > 0) return false;
  }
  char byte;
  const ssize_t n = ::recv(Lowest(c).socket().native_handle(), &byte, 1, MSG_PEEK | MSG_DONTWAIT);
  return n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK);
}

Status LoadTrust(ssl::context& ctx, const std::string& ca_file) {
  beast::error_code ec;
  ctx.set_default_verify_paths(ec);
  if (ec) return Unavailable("cannot load the system's CA certificates: " + ec.message());
  if (!ca_file.empty()) {
    ctx.load_verify_file(ca_file, ec);
    if (ec) return InvalidArgument("cannot load CA file " + ca_file + ": " + ec.message());
  }
  return Status::Ok();
}

}  // namespace

std::chrono::milliseconds PooledIdleTimeout(std::string_view keep_alive,
                                            const HttpClientOptions& options) {
  using std::chrono::milliseconds;
  milliseconds idle = options.idle_timeout;
  // `Keep-Alive: timeout=5, max=1000` (RFC 9110 leaves the parameters to the server; this
  // one is what Node, Apache and others send).
  for (size_t pos = 0; pos < keep_alive.size();) {
    size_t end = keep_alive.find(',', pos);
    if (end == std::string_view::npos) end = keep_alive.size();
    std::string_view param = keep_alive.substr(pos, end - pos);
    pos = end + 1;
    while (!param.empty() && (param.front() == ' ' || param.front() == '\t')) {
      param.remove_prefix(1);
    }
    constexpr std::string_view kTimeout = "timeout=";
    if (param.size() <= kTimeout.size() ||
        strncasecmp(param.data(), kTimeout.data(), kTimeout.size()) != 0) {
      continue;
    }
    param.remove_prefix(kTimeout.size());
    int64_t seconds = 0;
    size_t digits = 0;
    while (digits < param.size() && param[digits] >= '0' && param[digits] <= '9' &&
           seconds < 1'000'000) {
      seconds = seconds * 10 + (param[digits++] - '0');
    }
    if (digits == 0) continue;
    // A second less than the host's word, as the host counts from when it sent the response
    // and a call takes a moment to reach it.
    idle = milliseconds(seconds * 1000) - std::chrono::seconds(1);
    break;
  }
  return std::clamp(idle, milliseconds::zero(), options.max_idle_timeout);
}

Status CheckCaFile(const std::string& ca_file) {
  ssl::context ctx(ssl::context::tls_client);
  return LoadTrust(ctx, ca_file);
}

struct HttpClient::Pool {
  using Clock = std::chrono::steady_clock;
  struct Idle {
    Connection conn;
    Clock::time_point expires;  // past this the host may have closed it: never used again
  };
  std::mutex mu;
  std::map<std::string, std::vector<Idle>> idle;  // GUARDED_BY(mu)

  // The most recently pooled connection to `origin` that has not expired and is quiet
  // (Quiet); the others are dropped (closed).
  std::optional<Connection> Take(const std::string& origin) {
    std::vector<Idle> dropped;  // closed after the lock is released
    std::lock_guard lock(mu);
    auto it = idle.find(origin);
    if (it == idle.end()) return std::nullopt;
    auto& v = it->second;
    Sweep(v, Clock::now(), dropped);
    while (!v.empty()) {
      Connection c = std::move(v.back().conn);
      v.pop_back();
      if (Quiet(c)) return c;
      dropped.push_back({std::move(c), {}});
    }
    return std::nullopt;
  }
  // Pools `c` for `idle_for`; and drops the expired connections of every origin, so that
  // those of an origin no longer called do not stay open.
  void Put(const std::string& origin, Connection c, std::chrono::milliseconds idle_for,
           size_t max) {
    if (idle_for <= std::chrono::milliseconds::zero()) return;
    std::vector<Idle> dropped;  // closed after the lock is released
    std::lock_guard lock(mu);
    const Clock::time_point now = Clock::now();
    for (auto it = idle.begin(); it != idle.end();) {
      Sweep(it->second, now, dropped);
      it = it->second.empty() && it->first != origin ? idle.erase(it) : std::next(it);
    }
    auto& v = idle[origin];
    if (v.size() < max) v.push_back({std::move(c), now + idle_for});
  }

 private:
  static void Sweep(std::vector<Idle>& v, Clock::time_point now, std::vector<Idle>& dropped) {
    for (auto e = v.begin(); e != v.end();) {
      if (e->expires > now) {
        ++e;
        continue;
      }
      dropped.push_back(std::move(*e));
      e = v.erase(e);
    }
  }
};

// The TLS client context: the trusted CAs, TLS 1.2 at least. One per CA file for the whole
// process, shared by every client and every https call; the CAs are read at the first https
// call, not before. Reading the system's store takes tens of milliseconds of CPU: every
// HttpCall (the SDK's events, registrations) paid that when each client read it as it was
// made, for plain http:// too.
struct HttpClient::Tls {
  explicit Tls(std::string ca) : ca_file(std::move(ca)) {
    ctx.set_options(ssl::context::default_workarounds | ssl::context::no_sslv2 |
                    ssl::context::no_sslv3 | ssl::context::no_tlsv1 | ssl::context::no_tlsv1_1);
    ctx.set_verify_mode(ssl::verify_peer);
  }
  // Whether the CAs could be read (read once; thread-safe).
  const Status& Loaded() {
    std::call_once(once, [this] { loaded = LoadTrust(ctx, ca_file); });
    return loaded;
  }
  // The context for `ca_file` (empty: the system's store alone).
  static std::shared_ptr<Tls> For(const std::string& ca_file) {
    static std::mutex mu;
    static std::map<std::string, std::shared_ptr<Tls>> by_file;
    std::lock_guard lock(mu);
    std::shared_ptr<Tls>& tls = by_file[ca_file];
    if (!tls) tls = std::make_shared<Tls>(ca_file);
    return tls;
  }

  const std::string ca_file;
  ssl::context ctx{ssl::context::tls_client};
  std::once_flag once;
  Status loaded;
};

// The client's name lookups in flight, by name: the calls that want one name while it is
// being looked up share that lookup, so a name whose DNS stalls holds one of the lookup
// pool's threads however many calls wait for it (each still gives up at its own deadline).
struct HttpClient::Lookups {
  std::mutex mu;
  std::map<std::string, std::vector<std::shared_ptr<LookupHandoff>>> waiting;  // GUARDED_BY(mu)

  // Hands `found` to each call still waiting for it.
  static void Deliver(const std::vector<std::shared_ptr<LookupHandoff>>& handoffs,
                      const Result<std::vector<std::string>>& found) {
    for (const std::shared_ptr<LookupHandoff>& handoff : handoffs) {
      std::lock_guard lock(handoff->mu);
      if (handoff->abandoned) continue;
      asio::post(handoff->executor, [weak = handoff->lookup, found] {
        const std::shared_ptr<Lookup> waiting = weak.lock();
        if (!waiting) return;
        waiting->done = true;
        waiting->addresses = found;
        waiting->wait.cancel();
      });
    }
  }
};

HttpClient::HttpClient(asio::any_io_executor executor, HttpClientOptions options)
    : executor_(std::move(executor)),
      options_(std::move(options)),
      pool_(std::make_shared<Pool>()),
      tls_(Tls::For(options_.ca_file)),
      lookups_(std::make_shared<Lookups>()) {}

HttpClient::~HttpClient() = default;

namespace {

Status NetworkError(const beast::error_code& ec, std::string_view what, const Url& url,
                    size_t body_limit) {
  std::string where = std::string(what) + " " + url.authority();
  if (ec == beast::error::timeout) return DeadlineExceeded(where + ": timed out");
  if (ec == http::error::body_limit) {
    return ResourceExhausted(where + ": the answer's body is larger than " +
                             std::to_string(body_limit) + " bytes");
  }
  return Unavailable(where + ": " + ec.message());
}

// Why a TLS handshake failed, in words an operator can act on: OpenSSL's reason and, for a
// certificate that did not verify, the verifier's reason (e.g. "hostname mismatch").
Status HandshakeError(const beast::error_code& ec, TlsStream& stream, const Url& url) {
  if (ec == beast::error::timeout) {
    return DeadlineExceeded("TLS handshake with " + url.authority() + ": timed out");
  }
  std::string reason = ec.message();
  long verify = SSL_get_verify_result(stream.native_handle());
  if (verify != X509_V_OK) {
    reason += std::string(" (") + X509_verify_cert_error_string(verify) + ")";
  }
  return Unavailable("TLS handshake with " + url.authority() + " failed: " + reason + " for host " +
                     url.host);
}

// The most interim answers (1xx) read before a call's answer.
constexpr int kMaxInterimAnswers = 8;
// The most bytes read and not parsed yet: a header, a chunk's size line (whose extensions
// have no limit of their own), a slice of the body.
constexpr size_t kMaxUnparsedBytes = 1 << 20;

// Writes `req` and reads the answer into `parser` (made anew for each answer read): interim
// answers (1xx: 100 Continue, 103 Early Hints from a proxy) are passed over, up to
// kMaxInterimAnswers. The write's and the read's errors.
template <typename Stream>
asio::awaitable<std::pair<beast::error_code, beast::error_code>> Exchange(
    Stream& stream, http::request<http::string_body>& req, beast::flat_buffer& buffer,
    std::optional<http::response_parser<http::string_body>>& parser, size_t body_limit) {
  auto [wec, wn] = co_await http::async_write(stream, req, asio::as_tuple(asio::use_awaitable));
  beast::error_code rec;
  // A server may answer before reading the whole body (e.g. 413) and close; the write then
  // fails, but the answer is waiting to be read.
  for (int interim = 0; wec != beast::error::timeout && interim <= kMaxInterimAnswers; ++interim) {
    parser.emplace();
    parser->body_limit(body_limit);
    auto [ec, rn] =
        co_await http::async_read(stream, buffer, *parser, asio::as_tuple(asio::use_awaitable));
    rec = ec;
    if (ec || parser->get().result_int() >= 200) break;
  }
  co_return std::pair{wec, rec};
}

bool IsIpLiteral(const std::string& host) {
  beast::error_code ec;
  asio::ip::make_address(host, ec);
  return !ec;
}

}  // namespace

asio::awaitable<Result<HttpResponse>> HttpClient::Call(HttpRequest request) {
  auto url = ParseUrl(request.url);
  if (!url.ok()) co_return url.status();
  if (url->tls() && !tls_->Loaded().ok()) co_return tls_->Loaded();
  const std::string origin = url->scheme + "://" + url->authority();

  http::request<http::string_body> req;
  req.method_string(request.method);
  req.target(url->target);
  req.version(11);
  std::string host_header = url->authority();
  if (url->port == (url->tls() ? 443 : 80)) host_header.erase(host_header.rfind(':'));
  req.set(http::field::host, host_header);
  for (const auto& [k, v] : request.headers) {
    // Beast writes a header as given: a CR or LF would start a header line (or a request) of
    // whoever chose the value.
    auto breaks_line = [](std::string_view text) {
      return text.find_first_of(std::string_view("\r\n\0", 3)) != std::string_view::npos;
    };
    if (breaks_line(k) || breaks_line(v)) {
      co_return InvalidArgument("header " + std::string(k.substr(0, 64)) +
                                " holds a CR, LF or NUL; the call was not made");
    }
    req.set(k, v);
  }
  req.body() = std::move(request.body);
  req.keep_alive(true);
  req.prepare_payload();

  // One deadline for the whole call: connecting, the TLS handshake, the exchange and a
  // second try on a fresh connection share it.
  const auto deadline = std::chrono::steady_clock::now() + request.timeout;
  std::optional<Connection> conn = pool_->Take(origin);
  bool reused = conn.has_value();
  for (int attempt = 0;; ++attempt) {
    if (!conn) {
      // An IP literal needs no lookup. A name's lookup is held to the deadline too: it runs
      // on the lookup pool, and the call waits on a timer that its completion cuts short; a
      // lookup that stalls past the deadline is left to finish on its own.
      std::vector<tcp::endpoint> endpoints;
      if (IsIpLiteral(url->host)) {
        endpoints.emplace_back(asio::ip::make_address(url->host), url->port);
      } else {
        auto lookup = std::make_shared<Lookup>(executor_, deadline);
        auto handoff = std::make_shared<LookupHandoff>(executor_, lookup);
        const AbandonLookup abandon{handoff};
        bool first = false;  // no lookup of this name is in flight: this call starts one
        {
          std::lock_guard lock(lookups_->mu);
          auto& waiting = lookups_->waiting[url->host];
          first = waiting.empty();
          waiting.push_back(handoff);
        }
        if (first) {
          asio::post(LookupPool(),
                     [lookups = lookups_, resolve = options_.resolve, host = url->host] {
                       const Result<std::vector<std::string>> found =
                           resolve ? resolve(host) : SystemResolve(host);
                       std::vector<std::shared_ptr<LookupHandoff>> handoffs;
                       {
                         std::lock_guard lock(lookups->mu);
                         auto it = lookups->waiting.find(host);
                         handoffs = std::move(it->second);
                         lookups->waiting.erase(it);
                       }
                       Lookups::Deliver(handoffs, found);
                     });
        }
        co_await lookup->wait.async_wait(asio::as_tuple(asio::use_awaitable));
        if (!lookup->done) co_return DeadlineExceeded("resolving " + url->host + ": timed out");
        if (!lookup->addresses.ok()) {
          co_return Unavailable("resolving " + url->authority() + ": " +
                                lookup->addresses.status().message());
        }
        for (const std::string& address : *lookup->addresses) {
          beast::error_code aec;
          const asio::ip::address ip = asio::ip::make_address(address, aec);
          if (!aec) endpoints.emplace_back(ip, url->port);
        }
        if (endpoints.empty()) {
          co_return Unavailable("resolving " + url->authority() + ": no address");
        }
      }
      if (url->tls()) {
        auto s = std::make_unique<TlsStream>(executor_, tls_->ctx);
        // The certificate must be for the host the URL names, by IP address or DNS name,
        // checked by OpenSSL's verifier so a mismatch is reported as such. SNI names the
        // host (never an IP literal, RFC 6066 §3).
        SSL* native = s->native_handle();
        const bool ok =
            IsIpLiteral(url->host)
                ? X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(native), url->host.c_str()) == 1
                : SSL_set1_host(native, url->host.c_str()) == 1 &&
                      SSL_set_tlsext_host_name(native, url->host.c_str()) == 1;
        if (!ok) co_return Unavailable("TLS: cannot verify against host " + url->host);
        conn = std::move(s);
      } else {
        conn = std::make_unique<PlainStream>(executor_);
      }
      beast::tcp_stream& tcp_stream = Lowest(*conn);
      tcp_stream.expires_at(deadline);
      auto [cec, ep] =
          co_await tcp_stream.async_connect(endpoints, asio::as_tuple(asio::use_awaitable));
      if (cec) co_return NetworkError(cec, "connecting to", *url, options_.max_response_bytes);
      beast::error_code ignored;  // a socket reset at once: its first write says so
      tcp_stream.socket().set_option(tcp::no_delay(true), ignored);
      if (auto* tls = std::get_if<std::unique_ptr<TlsStream>>(&*conn)) {
        auto [hec] = co_await (*tls)->async_handshake(ssl::stream_base::client,
                                                      asio::as_tuple(asio::use_awaitable));
        if (hec) co_return HandshakeError(hec, **tls, *url);
      }
    }
    Lowest(*conn).expires_at(deadline);
    beast::flat_buffer buffer(kMaxUnparsedBytes);
    std::optional<http::response_parser<http::string_body>> parser;
    auto [wec, rec] = co_await std::visit(
        [&](auto& stream) {
          return Exchange(*stream, req, buffer, parser, options_.max_response_bytes);
        },
        *conn);
    beast::error_code ec = rec ? rec : (parser && parser->is_done() ? beast::error_code() : wec);
    if (ec) {
      // A pooled connection the server closed while idle fails at once with EOF or a reset;
      // try a fresh connection once. A timeout is never retried here.
      bool stale = reused && attempt == 0 && ec != beast::error::timeout && buffer.size() == 0 &&
                   !(parser && parser->got_some());
      if (stale) {
        conn.reset();
        reused = false;
        continue;
      }
      co_return NetworkError(ec, wec ? "writing to" : "reading from", *url,
                             options_.max_response_bytes);
    }
    auto& res = parser->get();
    if (res.result_int() < 200) {
      co_return Unavailable("reading from " + url->authority() + ": more than " +
                            std::to_string(kMaxInterimAnswers) + " interim (1xx) answers");
    }
    HttpResponse out;
    out.status = static_cast<int>(res.result_int());
    for (const auto& field : res) {
      out.headers.emplace_back(std::string(field.name_string()), std::string(field.value()));
    }
    out.body = std::move(res.body());
    // Pooled only when the answer ended where the connection's next one begins: nothing read
    // past it (a second answer to this request would be the next call's), and its length
    // not given by the connection's end.
    if (parser->keep_alive() && !wec && buffer.size() == 0) {
      pool_->Put(origin, std::move(*conn), PooledIdleTimeout(out.header("Keep-Alive"), options_),
                 options_.max_idle_per_origin);
    }
    co_return out;
  }
}

Result<HttpResponse> HttpCall(const HttpRequest& request, const HttpClientOptions& options) {
  asio::io_context ioc;
  HttpClient client(ioc.get_executor(), options);
  std::optional<Result<HttpResponse>> result;
  asio::co_spawn(ioc, client.Call(request), [&](std::exception_ptr e, Result<HttpResponse> r) {
    if (e) {
      result.emplace(Internal("HTTP call failed unexpectedly"));
    } else {
      result.emplace(std::move(r));
    }
  });
  ioc.run();
  if (!result) return Internal("HTTP call did not complete");
  return std::move(*result);
}

}  // namespace funcky
