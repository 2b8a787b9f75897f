// An HTTP/1.1 client for http:// and https:// URLs: keep-alive pool per origin, a deadline on
// every call, TLS over OpenSSL with the peer's certificate and host name verified.
//
// The coordinator pushes calls to hosts with HttpClient::Call on its io_context; the SDK
// uses the blocking HttpCall for registration and sending events.
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>

#include "common/status.h"

namespace funcky {

using Headers = std::vector<std::pair<std::string, std::string>>;

// Case-insensitive header lookup; empty when absent.
std::string_view FindHeader(const Headers& headers, std::string_view name);

struct HttpRequest {
  std::string method = "POST";
  std::string url;  // absolute http:// or https:// URL
  Headers headers;
  std::string body;
  std::chrono::milliseconds timeout{30'000};  // the whole exchange, connect included
};

struct HttpResponse {
  int status = 0;
  Headers headers;
  std::string body;
  std::string_view header(std::string_view name) const { return FindHeader(headers, name); }
};

struct HttpClientOptions {
  size_t max_idle_per_origin = 64;
  // How long a kept-alive connection may wait in the pool for its next call. A host that
  // says how long it keeps an idle connection open (`Keep-Alive: timeout=N`; Node's http
  // server says 5 s) is trusted for a second less than that, so that no call goes out on a
  // connection the host is closing; a host that says nothing gets `idle_timeout`. Never more
  // than `max_idle_timeout`.
  std::chrono::milliseconds idle_timeout{4'000};
  std::chrono::milliseconds max_idle_timeout{600'000};
  size_t max_response_bytes = 16 << 20;
  // PEM file of CA certificates trusted for https:// besides the system's store (a private
  // CA). Empty: the system's store only. Certificates are always verified.
  std::string ca_file;
  // How a host name becomes IP addresses (as text); unset: the system's resolver
  // (getaddrinfo). Called on a thread of the lookup pool, never for an IP literal. For tests.
  std::function<Result<std::vector<std::string>>(const std::string& host)> resolve;
};

// How long a connection whose last response carried `keep_alive` (the value of its
// Keep-Alive header, empty when absent) may stay pooled; zero: not at all.
std::chrono::milliseconds PooledIdleTimeout(std::string_view keep_alive,
                                            const HttpClientOptions& options);

// Checks that `ca_file` holds at least one PEM certificate OpenSSL can load, so a bad
// --host-ca is refused at start rather than on the first call. kInvalidArgument otherwise.
Status CheckCaFile(const std::string& ca_file);

// Thread-safe. Errors: kInvalidArgument (bad URL), kDeadlineExceeded (the timeout passed),
// kUnavailable (connection refused or reset, TLS handshake failed — the message says why,
// e.g. "certificate verify failed" —, malformed response). Any HTTP status counts as success
// at this level. An https:// URL is never called over plain TCP.
class HttpClient {
 public:
  explicit HttpClient(boost::asio::any_io_executor executor, HttpClientOptions options = {});
  ~HttpClient();
  HttpClient(const HttpClient&) = delete;
  HttpClient& operator=(const HttpClient&) = delete;

  boost::asio::awaitable<Result<HttpResponse>> Call(HttpRequest request);

 private:
  struct Pool;
  struct Tls;
  struct Lookups;
  boost::asio::any_io_executor executor_;
  HttpClientOptions options_;
  std::shared_ptr<Pool> pool_;
  std::shared_ptr<Tls> tls_;
  std::shared_ptr<Lookups> lookups_;
};

// Runs one request to completion on a private io_context (no pooling). For SDK start-up
// and tools; never call it on an io_context thread.
Result<HttpResponse> HttpCall(const HttpRequest& request, const HttpClientOptions& options = {});

}  // namespace funcky
