#include "common/http_client.h"

#include <map>
#include <mutex>

#include <strings.h>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

#include "common/url.h"

namespace funcky {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;

std::string_view FindHeader(const Headers& headers, std::string_view name) {
  for (const auto& [k, v] : headers) {
    if (k.size() == name.size() && strncasecmp(k.data(), name.data(), k.size()) == 0) return v;
  }
  return {};
}

struct HttpClient::Pool {
  std::mutex mu;
  std::map<std::string, std::vector<std::unique_ptr<beast::tcp_stream>>> idle;  // GUARDED_BY(mu)

  std::unique_ptr<beast::tcp_stream> Take(const std::string& origin) {
    std::lock_guard lock(mu);
    auto it = idle.find(origin);
    if (it == idle.end() || it->second.empty()) return nullptr;
    auto s = std::move(it->second.back());
    it->second.pop_back();
    return s;
  }
  void Put(const std::string& origin, std::unique_ptr<beast::tcp_stream> s, size_t max) {
    std::lock_guard lock(mu);
    auto& v = idle[origin];
    if (v.size() < max) v.push_back(std::move(s));
  }
};

HttpClient::HttpClient(asio::any_io_executor executor, HttpClientOptions options)
    : executor_(std::move(executor)), options_(options), pool_(std::make_shared<Pool>()) {}

HttpClient::~HttpClient() = default;

namespace {

Status NetworkError(const beast::error_code& ec, std::string_view what, const Url& url) {
  std::string where = std::string(what) + " " + url.host + ":" + std::to_string(url.port);
  if (ec == beast::error::timeout) return DeadlineExceeded(where + ": timed out");
  return Unavailable(where + ": " + ec.message());
}

}  // namespace

asio::awaitable<Result<HttpResponse>> HttpClient::Call(HttpRequest request) {
  auto url = ParseUrl(request.url);
  if (!url.ok()) co_return url.status();
  const std::string origin = url->host + ":" + std::to_string(url->port);

  http::request<http::string_body> req;
  req.method_string(request.method);
  req.target(url->target);
  req.version(11);
  req.set(http::field::host, origin);
  for (const auto& [k, v] : request.headers) req.set(k, v);
  req.body() = std::move(request.body);
  req.keep_alive(true);
  req.prepare_payload();

  auto stream = pool_->Take(origin);
  bool reused = stream != nullptr;
  for (int attempt = 0;; ++attempt) {
    if (!stream) {
      stream = std::make_unique<beast::tcp_stream>(executor_);
      tcp::resolver resolver(executor_);
      stream->expires_after(request.timeout);
      auto [rec, endpoints] = co_await resolver.async_resolve(url->host, std::to_string(url->port),
                                                              asio::as_tuple(asio::use_awaitable));
      if (rec) co_return NetworkError(rec, "resolving", *url);
      auto [cec, ep] =
          co_await stream->async_connect(endpoints, asio::as_tuple(asio::use_awaitable));
      if (cec) co_return NetworkError(cec, "connecting to", *url);
      stream->socket().set_option(tcp::no_delay(true));
    }
    stream->expires_after(request.timeout);
    auto [wec, wn] = co_await http::async_write(*stream, req, asio::as_tuple(asio::use_awaitable));
    beast::flat_buffer buffer;
    http::response_parser<http::string_body> parser;
    parser.body_limit(options_.max_response_bytes);
    beast::error_code rec;
    // A server may answer before reading the whole body (e.g. 413) and close; the write then
    // fails, but the answer is waiting to be read.
    if (wec != beast::error::timeout) {
      auto [ec, rn] =
          co_await http::async_read(*stream, buffer, parser, asio::as_tuple(asio::use_awaitable));
      rec = ec;
    }
    beast::error_code ec = rec ? rec : (parser.is_done() ? beast::error_code() : wec);
    if (ec) {
      // A pooled connection the server closed while idle fails at once with EOF or a reset;
      // try a fresh connection once. A timeout is never retried here.
      bool stale = reused && attempt == 0 && ec != beast::error::timeout && buffer.size() == 0 &&
                   !parser.got_some();
      if (stale) {
        stream.reset();
        reused = false;
        continue;
      }
      co_return NetworkError(ec, wec ? "writing to" : "reading from", *url);
    }
    auto& res = parser.get();
    HttpResponse out;
    out.status = static_cast<int>(res.result_int());
    for (const auto& field : res) {
      out.headers.emplace_back(std::string(field.name_string()), std::string(field.value()));
    }
    out.body = std::move(res.body());
    if (res.keep_alive()) {
      pool_->Put(origin, std::move(stream), options_.max_idle_per_origin);
    }
    co_return out;
  }
}

Result<HttpResponse> HttpCall(const HttpRequest& request) {
  asio::io_context ioc;
  HttpClient client(ioc.get_executor());
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
