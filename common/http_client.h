// An HTTP/1.1 client for http:// and https:// URLs: keep-alive pool per origin, a deadline on
// every call, TLS over OpenSSL with the peer's certificate and host name verified.
//
// The coordinator pushes calls to hosts with HttpClient::Call on its io_context; the SDK
// uses the blocking HttpCall for registration and sending events.
#pragma once

#include <chrono>
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
  size_t max_response_bytes = 16 << 20;
  // PEM file of CA certificates trusted for https:// besides the system's store (a private
  // CA). Empty: the system's store only. Certificates are always verified.
  std::string ca_file;
};

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
  boost::asio::any_io_executor executor_;
  HttpClientOptions options_;
  std::shared_ptr<Pool> pool_;
  std::shared_ptr<Tls> tls_;
};

// Runs one request to completion on a private io_context (no pooling). For SDK start-up
// and tools; never call it on an io_context thread.
Result<HttpResponse> HttpCall(const HttpRequest& request, const HttpClientOptions& options = {});

}  // namespace funcky
