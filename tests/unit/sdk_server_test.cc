// The SDK's HTTP server on 127.0.0.1: calls are served on its handler threads, as many at once
// as it has.
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "common/http_client.h"
#include "sdk/server.h"

namespace funcky::sdk {
namespace {

// A handler that holds each call until `expected` calls are inside it at once (or `wait` has
// passed) and answers whether they all were.
class Rendezvous {
 public:
  explicit Rendezvous(int expected, std::chrono::milliseconds wait = std::chrono::seconds(10))
      : expected_(expected), wait_(wait) {}
  ServeResponse operator()(const ServeRequest&) {
    std::unique_lock lock(mu_);
    ++inside_;
    cv_.notify_all();
    const bool met = cv_.wait_for(lock, wait_, [&] { return inside_ >= expected_; });
    return {200, {{"Content-Type", "text/plain"}}, met ? "together" : "alone"};
  }

 private:
  const int expected_;
  const std::chrono::milliseconds wait_;
  std::mutex mu_;
  std::condition_variable cv_;
  int inside_ = 0;
};

std::vector<std::string> CallAtOnce(const Server& server, int calls) {
  std::vector<std::string> bodies(calls);
  std::vector<std::thread> threads;
  for (int i = 0; i < calls; ++i) {
    threads.emplace_back([&, i] {
      Result<HttpResponse> r =
          HttpCall({.url = "http://127.0.0.1:" + std::to_string(server.port()) + "/api/funcky",
                    .body = "{}"});
      bodies[i] = r.ok() ? std::to_string(r->status) + " " + r->body : r.status().ToString();
    });
  }
  for (std::thread& t : threads) t.join();
  return bodies;
}

TEST(SdkServer, ServesAsManyCallsAtOnceAsItHasThreads) {
  Rendezvous handler(3);
  Server server(std::ref(handler), {.port = 0, .threads = 3});
  ASSERT_TRUE(server.start().ok());
  EXPECT_EQ(CallAtOnce(server, 3),
            (std::vector<std::string>{"200 together", "200 together", "200 together"}));
}

TEST(SdkServer, ACallBlockingItsOneThreadHoldsTheNextBack) {
  // One thread: the second call is handled only once the first has been answered.
  Rendezvous handler(2, std::chrono::milliseconds(500));
  Server server(std::ref(handler), {.port = 0, .threads = 1});
  ASSERT_TRUE(server.start().ok());
  const auto start = std::chrono::steady_clock::now();
  std::vector<std::string> bodies = CallAtOnce(server, 2);
  EXPECT_EQ(bodies[0] == "200 alone" ? bodies[1] : bodies[0], "200 together");
  EXPECT_EQ(bodies[0] == "200 alone" ? bodies[0] : bodies[1], "200 alone");
  EXPECT_GE(std::chrono::steady_clock::now() - start, std::chrono::milliseconds(500));
}

// A handler that throws (a host's own code, say) gets its call a 500 with a JSON error that
// does not quote the exception, and the server goes on serving, new connections too.
TEST(SdkServer, ACallWhoseHandlerThrowsGets500AndTheServerGoesOn) {
  Server server(
      [](const ServeRequest& r) -> ServeResponse {
        if (r.body == "throw") throw std::runtime_error("secret \xff");
        return {200, {{"Content-Type", "text/plain"}}, "ok"};
      },
      {.port = 0, .threads = 1});
  ASSERT_TRUE(server.start().ok());
  const std::string url = "http://127.0.0.1:" + std::to_string(server.port()) + "/api/funcky";
  for (int i = 0; i < 3; ++i) {
    Result<HttpResponse> r = HttpCall({.url = url, .body = "throw"});
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    EXPECT_EQ(r->status, 500);
    EXPECT_EQ(nlohmann::json::parse(r->body)["error"]["code"], "internal") << r->body;
    EXPECT_EQ(r->body.find("secret"), std::string::npos);
  }
  Result<HttpResponse> r = HttpCall({.url = url, .body = "{}"});
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(r->body, "ok");
}

TEST(SdkServer, AnswersOtherPathsWith404) {
  Rendezvous handler(1);
  Server server(std::ref(handler), {.port = 0, .threads = 2});
  ASSERT_TRUE(server.start().ok());
  Result<HttpResponse> r =
      HttpCall({.url = "http://127.0.0.1:" + std::to_string(server.port()) + "/other"});
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->status, 404);
}

}  // namespace
}  // namespace funcky::sdk
