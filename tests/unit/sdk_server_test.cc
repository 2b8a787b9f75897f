// The SDK's HTTP server on 127.0.0.1: calls are served on its handler threads, as many at once
// as it has. And the SDK's client against a fake coordinator served by it.
#include <array>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <csignal>
#include <functional>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <unistd.h>

#include <gtest/gtest.h>

#include <boost/asio/buffer.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/write.hpp>

#include "common/http_client.h"
#include "common/signing.h"
#include "common/ulid.h"
#include "sdk/client.h"
#include "sdk/serve.h"
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

// wait_for_signal returns on SIGTERM, whichever thread it reaches (here one of the test's
// own, not the waiting one), and stops the server; the process lives on. (With a signal mask
// it relied on, a SIGTERM reaching a thread without the mask ended the process; masking every
// server thread instead passed the mask on to a step's child processes.)
TEST(SdkServer, WaitForSignalReturnsOnSigtermFromAnyThreadAndStops) {
  Rendezvous handler(1);
  Server server(std::ref(handler), {.port = 0, .threads = 2});
  ASSERT_TRUE(server.start().ok());
  const uint16_t port = server.port();
  std::thread signaller([] {
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    ::kill(::getpid(), SIGTERM);
  });
  server.wait_for_signal();
  signaller.join();
  Result<HttpResponse> r = HttpCall({.url = "http://127.0.0.1:" + std::to_string(port) + "/",
                                     .timeout = std::chrono::seconds(2)});
  EXPECT_FALSE(r.ok() && r->status == 200) << "the server has stopped";
}

// The request timeout bounds sending a request, from the moment the client connects: one
// that stalls halfway through its headers is dropped once it passes, and its connection no
// longer held.
TEST(SdkServer, ARequestNotWhollySentWithinTheRequestTimeoutIsDropped) {
  EXPECT_LE(ServerOptions{}.request_timeout, std::chrono::seconds(60));
  Rendezvous handler(1);
  Server server(std::ref(handler),
                {.port = 0, .threads = 1, .request_timeout = std::chrono::milliseconds(300)});
  ASSERT_TRUE(server.start().ok());
  namespace asio = boost::asio;
  asio::io_context io;
  asio::ip::tcp::socket socket(io);
  socket.connect({asio::ip::make_address("127.0.0.1"), server.port()});
  const std::string half_a_request = "POST /api/funcky HTTP/1.1\r\nHost: h\r\n";
  asio::write(socket, asio::buffer(half_a_request));
  std::array<char, 256> buffer;
  boost::system::error_code read_error;
  bool ended = false;
  socket.async_read_some(asio::buffer(buffer), [&](boost::system::error_code ec, size_t) {
    read_error = ec;
    ended = true;
  });
  io.run_for(std::chrono::seconds(10));
  ASSERT_TRUE(ended) << "the connection was still open after 10 s";
  EXPECT_TRUE(read_error == asio::error::eof || read_error == asio::error::connection_reset)
      << read_error.message();
}

// The request timeout bounds reading the request and writing the reply, not the handler: a
// call whose handler (a step) runs longer is answered.
TEST(SdkServer, AHandlerMayRunLongerThanTheRequestTimeout) {
  Server server(
      [](const ServeRequest&) -> ServeResponse {
        std::this_thread::sleep_for(std::chrono::milliseconds(900));
        return {200, {{"Content-Type", "text/plain"}}, "slow"};
      },
      {.port = 0, .threads = 1, .request_timeout = std::chrono::milliseconds(300)});
  ASSERT_TRUE(server.start().ok());
  Result<HttpResponse> r = HttpCall(
      {.url = "http://127.0.0.1:" + std::to_string(server.port()) + "/api/funcky", .body = "{}"});
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(r->body, "slow");
}

// Whether `done` holds within 10 s (polled every 5 ms): for what another thread does.
bool Eventually(const std::function<bool()>& done) {
  const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (!done()) {
    if (std::chrono::steady_clock::now() > give_up) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return true;
}

// Stopping lets the calls in hand finish and answer: a call's step has run, and an answer
// lost would have the coordinator make the call again, its step with it (a restart, SIGTERM).
TEST(SdkServer, StopAnswersTheCallsInHandFirst) {
  std::atomic<bool> running{false};
  Server server(
      [&](const ServeRequest&) -> ServeResponse {
        running = true;
        std::this_thread::sleep_for(std::chrono::milliseconds(500));
        return {200, {{"Content-Type", "text/plain"}}, "step done"};
      },
      {.port = 0, .threads = 2});
  ASSERT_TRUE(server.start().ok());
  std::optional<Result<HttpResponse>> answer;
  std::thread call([&] {
    answer = HttpCall(
        {.url = "http://127.0.0.1:" + std::to_string(server.port()) + "/api/funcky", .body = "{}"});
  });
  EXPECT_TRUE(Eventually([&] { return running.load(); })) << "the handler never ran";
  server.stop();
  call.join();
  ASSERT_TRUE(answer.has_value());
  ASSERT_TRUE(answer->ok()) << answer->status().ToString();
  EXPECT_EQ((*answer)->status, 200);
  EXPECT_EQ((*answer)->body, "step done");
}

// A call that waited for a free thread longer than its coordinator waits for the answer
// (X-Funcky-Call-Timeout-Ms) is not run: nobody waits for its answer, and the coordinator
// makes it again, so run late its step would run twice. One without the header, or within
// it, runs.
TEST(SdkServer, ACallThatWaitedPastItsCoordinatorsTimeoutIsNotRun) {
  std::atomic<int> ran{0};
  Server server(
      [&](const ServeRequest&) -> ServeResponse {
        ++ran;
        std::this_thread::sleep_for(std::chrono::milliseconds(600));
        return {200, {{"Content-Type", "text/plain"}}, "ran"};
      },
      {.port = 0, .threads = 1});
  ASSERT_TRUE(server.start().ok());
  const std::string url = "http://127.0.0.1:" + std::to_string(server.port()) + "/api/funcky";
  auto call = [&](const std::string& timeout_ms) {
    HttpRequest request{.url = url, .body = "{}"};
    if (!timeout_ms.empty()) request.headers = {{"X-Funcky-Call-Timeout-Ms", timeout_ms}};
    return HttpCall(request);
  };
  std::optional<Result<HttpResponse>> first, late, patient;
  std::thread a([&] { first = call(""); });
  EXPECT_TRUE(Eventually([&] { return ran.load() == 1; })) << "the first call never ran";
  std::thread b([&] { late = call("200"); });
  std::thread c([&] { patient = call("60000"); });
  a.join();
  b.join();
  c.join();
  ASSERT_TRUE(first && first->ok() && late && late->ok() && patient && patient->ok());
  EXPECT_EQ((*first)->body, "ran");
  EXPECT_EQ((*late)->status, 503);
  EXPECT_EQ((*patient)->body, "ran");
  EXPECT_EQ(ran.load(), 2);
}

// With a signing key, a request whose large body would take the room for bodies is refused
// from its head when it carries no fresh signature (401), or is for another path (404), before
// its body is read: a caller without the key cannot hold the room, and a signed call of that
// size is served meanwhile. (Without the screen the unsigned head held all 32 MiB of room
// until its request timeout, and the signed call waited for it, then got 503.)
TEST(SdkServer, ALargeBodyIsReadOnlyForASignedRequestOfTheServePath) {
  Client client({.app_id = "app", .signing_key = "signkey-test-beef"});
  std::atomic<int> runs{0};
  ServeHandler handler(client, "http://h/api/funcky", {create_function({.id = "fn"}, [&](Context&) {
                         ++runs;
                         return nlohmann::json("done");
                       })});
  Server server(handler, {.port = 0,
                          .threads = 2,
                          .request_timeout = std::chrono::seconds(20),
                          .max_body_bytes_in_flight = 32 << 20});
  ASSERT_TRUE(server.start().ok());
  namespace asio = boost::asio;
  asio::io_context io;
  // Heads of 32 MiB bodies, none of which is sent: the answer must come from the head alone.
  auto answer_to_head = [&](const std::string& target, const std::string& headers,
                            const std::string& method = "POST") {
    asio::ip::tcp::socket socket(io);
    socket.connect({asio::ip::make_address("127.0.0.1"), server.port()});
    const std::string head =
        method + " " + target + " HTTP/1.1\r\nHost: h\r\n" + headers +
        "Content-Type: application/json\r\nContent-Length: " + std::to_string(32 << 20) +
        "\r\n\r\n";
    asio::write(socket, asio::buffer(head));
    std::array<char, 512> buffer{};
    size_t got = 0;
    bool ended = false;
    socket.async_read_some(asio::buffer(buffer), [&](boost::system::error_code, size_t n) {
      got = n;
      ended = true;
    });
    io.restart();
    io.run_for(std::chrono::seconds(5));
    return ended ? std::string(buffer.data(), got) : std::string("no answer within 5 s");
  };
  EXPECT_TRUE(
      answer_to_head("/api/funcky?fnId=app-fn&stepId=step", "").starts_with("HTTP/1.1 401"));
  EXPECT_TRUE(
      answer_to_head("/api/funcky?fnId=app-fn&stepId=step", "X-Inngest-Signature: t=1&s=00\r\n")
          .starts_with("HTTP/1.1 401"));
  EXPECT_TRUE(answer_to_head("/other", "").starts_with("HTTP/1.1 404"));
  // A request that takes no body (an out-of-band sync, an introspection) is refused one.
  EXPECT_TRUE(answer_to_head("/api/funcky", "", "PUT").starts_with("HTTP/1.1 413"));
  EXPECT_TRUE(answer_to_head("/api/funcky", "", "GET").starts_with("HTTP/1.1 413"));

  // An unsigned head left open while a signed call of over 64 KiB is made.
  asio::ip::tcp::socket holder(io);
  holder.connect({asio::ip::make_address("127.0.0.1"), server.port()});
  asio::write(holder, asio::buffer("POST /api/funcky?fnId=app-fn&stepId=step HTTP/1.1\r\n"
                                   "Host: h\r\nContent-Length: " +
                                   std::to_string(32 << 20) + "\r\n\r\n"));
  nlohmann::json body = {{"event", nlohmann::json::object()},
                         {"steps", nlohmann::json::object()},
                         {"ctx", {{"attempt", 0}, {"step_id", "step"}}},
                         {"pad", std::string(100 << 10, 'x')}};
  const std::string sent = body.dump();
  const int64_t now = std::chrono::duration_cast<std::chrono::seconds>(
                          std::chrono::system_clock::now().time_since_epoch())
                          .count();
  Result<HttpResponse> r =
      HttpCall({.url = "http://127.0.0.1:" + std::to_string(server.port()) +
                       "/api/funcky?fnId=app-fn&stepId=step",
                .headers = {{"Content-Type", "application/json"},
                            {"X-Inngest-Signature",
                             signing::SignatureHeader(sent, "signkey-test-beef", now)}},
                .body = sent,
                .timeout = std::chrono::seconds(15)});
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->status, 200) << r->body;
  EXPECT_EQ(runs.load(), 1);
}

// A fake coordinator's event endpoint, /e/sekret, answering every POST with `reply` (HTTP
// `status`).
class FakeCoordinator {
 public:
  FakeCoordinator()
      : server_(
            [this](const ServeRequest&) -> ServeResponse {
              std::lock_guard lock(mu_);
              return {status_, {{"Content-Type", "application/json"}}, reply_};
            },
            {.port = 0, .path = "/e/sekret", .threads = 1}) {}
  Status start() { return server_.start(); }
  void answer(int status, std::string reply) {
    std::lock_guard lock(mu_);
    status_ = status;
    reply_ = std::move(reply);
  }
  Client client() const {
    return Client({.app_id = "app",
                   .coordinator_url = "http://127.0.0.1:" + std::to_string(server_.port()),
                   .event_key = "sekret"});
  }

 private:
  std::mutex mu_;
  int status_ = 200;
  std::string reply_;
  Server server_;
};

// An error names the event path "/e/…", never the event key in it.
// A send that gets no good answer (the coordinator's 503, say, or an answer lost) is made
// again with the same event id seed, so the coordinator stores each event once.
TEST(SdkClient, ASendThatFailsOnTheWayIsMadeAgainWithTheSameSeed) {
  std::mutex mu;
  std::vector<std::string> seeds;  // GUARDED_BY(mu)
  Server coordinator(
      [&](const ServeRequest& r) -> ServeResponse {
        std::lock_guard lock(mu);
        seeds.emplace_back(FindHeader(r.headers, "X-Inngest-Event-Id-Seed"));
        if (seeds.size() == 1) {
          return {503, {{"Content-Type", "application/json"}}, R"({"error":"busy"})"};
        }
        return {200, {{"Content-Type", "application/json"}}, R"({"ids":["01A"],"status":200})"};
      },
      {.port = 0, .path = "/e/sekret", .threads = 1});
  ASSERT_TRUE(coordinator.start().ok());
  Client client({.app_id = "app",
                 .coordinator_url = "http://127.0.0.1:" + std::to_string(coordinator.port()),
                 .event_key = "sekret"});
  auto ids = client.send(nlohmann::json::array({{{"name", "a/b"}}}));
  ASSERT_TRUE(ids.ok()) << ids.status().ToString();
  EXPECT_EQ(*ids, std::vector<std::string>{"01A"});
  std::lock_guard lock(mu);
  ASSERT_EQ(seeds.size(), 2u);
  EXPECT_FALSE(seeds[0].empty());
  EXPECT_EQ(seeds[0], seeds[1]);
  EXPECT_TRUE(UlidFromSeed(seeds[0], 1).has_value()) << seeds[0];
}

// While keys rotate, a registration the coordinator refuses for the signing key is sent once
// more with the fallback key's hash (docs/protocol.md §7).
TEST(SdkRegistration, ARefusedKeyIsTriedAgainWithTheFallback) {
  const std::string fallback = "signkey-test-dead";
  std::mutex mu;
  std::vector<std::string> keys;  // GUARDED_BY(mu): the Authorization of each registration
  Server coordinator(
      [&](const ServeRequest& r) -> ServeResponse {
        std::lock_guard lock(mu);
        keys.emplace_back(FindHeader(r.headers, "Authorization"));
        if (keys.back() != "Bearer " + signing::HashedSigningKey(fallback)) {
          return {401, {{"Content-Type", "application/json"}}, R"({"error":"bad key"})"};
        }
        return {200, {{"Content-Type", "application/json"}}, R"({"ok":true})"};
      },
      {.port = 0, .path = "/fn/register", .threads = 1});
  ASSERT_TRUE(coordinator.start().ok());
  Client client({.app_id = "app",
                 .coordinator_url = "http://127.0.0.1:" + std::to_string(coordinator.port()),
                 .signing_key = "signkey-test-beef",
                 .signing_key_fallback = fallback});
  ServeHandler handler(client, "http://127.0.0.1:1/api/funcky", {});
  Status s = handler.register_functions();
  EXPECT_TRUE(s.ok()) << s.ToString();
  std::lock_guard lock(mu);
  ASSERT_EQ(keys.size(), 2u);
  EXPECT_EQ(keys[0], "Bearer " + signing::HashedSigningKey("signkey-test-beef"));
}

TEST(SdkClient, AnErrorNamesTheEventPathWithoutTheKey) {
  FakeCoordinator coordinator;
  ASSERT_TRUE(coordinator.start().ok());
  coordinator.answer(400, R"({"status":400,"error":"nope"})");
  auto sent = coordinator.client().send(nlohmann::json{{"name", "e"}});
  ASSERT_FALSE(sent.ok());
  EXPECT_EQ(sent.status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(sent.status().message(), "/e/… (HTTP 400): nope");
}

// A reply of another shape than a coordinator's (a proxy's, say) is an error, never an
// exception: a status that is not a whole number, ids that are not a list of text.
TEST(SdkClient, AReplyOfAnotherShapeIsAnErrorNotAnException) {
  FakeCoordinator coordinator;
  ASSERT_TRUE(coordinator.start().ok());
  const Client client = coordinator.client();
  auto send = [&](std::string reply) {
    coordinator.answer(200, std::move(reply));
    Result<std::vector<std::string>> sent = InvalidArgument("not sent");
    EXPECT_NO_THROW(sent = client.send(nlohmann::json{{"name", "e"}}));
    return sent;
  };
  for (const char* reply : {R"({"status":"200","ids":["a"]})", R"({"status":1e300,"ids":["a"]})",
                            R"({"status":200.5,"ids":["a"]})"}) {
    SCOPED_TRACE(reply);
    auto sent = send(reply);
    ASSERT_FALSE(sent.ok());
    EXPECT_EQ(sent.status().code(), StatusCode::kInvalidArgument);
  }
  for (const char* reply : {R"({"status":200,"ids":[1]})", R"({"status":200,"ids":"a"})",
                            R"({"status":200,"ids":{"a":"b"}})"}) {
    SCOPED_TRACE(reply);
    auto sent = send(reply);
    ASSERT_FALSE(sent.ok());
    EXPECT_EQ(sent.status().code(), StatusCode::kUnavailable);
    EXPECT_EQ(sent.status().message().find("sekret"), std::string::npos);
  }
  auto sent = send(R"({"status":200,"ids":["a","b"]})");
  ASSERT_TRUE(sent.ok()) << sent.status().ToString();
  EXPECT_EQ(*sent, (std::vector<std::string>{"a", "b"}));
}

}  // namespace
}  // namespace funcky::sdk
