// The HTTP server's budget for request bodies held at once, on 127.0.0.1 with raw sockets: a
// body that would pass it waits unread for room, and is answered 503 once the request timeout
// has passed; small bodies are not counted.
#include <array>
#include <atomic>
#include <chrono>
#include <optional>
#include <string>
#include <thread>

#include <gtest/gtest.h>

#include <boost/asio/buffer.hpp>
#include <boost/asio/connect.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/thread_pool.hpp>
#include <boost/asio/write.hpp>

#include "common/http_server.h"
#include "tests/support/scripted_server.h"

namespace funcky {
namespace {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;

// A server whose bodies may be 1 MiB, 1 MiB of them at once, answering each request with the
// size of its body (after 1.5 s when the body begins with "slow").
class BudgetedServer : public testing::ScriptedServer {
 public:
  explicit BudgetedServer(std::chrono::milliseconds request_timeout)
      : ScriptedServer(
            [this](ServerRequest r) {
              if (r.body.starts_with("slow")) {
                ++slow_handlers_;
                std::this_thread::sleep_for(std::chrono::milliseconds(1500));
              }
              return ServerResponse{
                  200, {{"Content-Type", "text/plain"}}, std::to_string(r.body.size())};
            },
            {.port = 0,
             .max_body_bytes = 1 << 20,
             .max_body_bytes_in_flight = 1 << 20,
             .request_timeout = request_timeout},
            /*threads=*/2) {}
  // Waits (up to 10 s) until a "slow" body's handler holds it, with its budget.
  bool SlowHandlerHolds() {
    const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (slow_handlers_.load() == 0) {
      if (std::chrono::steady_clock::now() > give_up) return false;
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    return true;
  }

 private:
  std::atomic<int> slow_handlers_{0};
};

// A client on a raw socket that sends a request's header and as much of its body as it is
// told, and reads the answer's first bytes.
class RawClient {
 public:
  explicit RawClient(uint16_t port) : socket_(io_) {
    socket_.connect({asio::ip::make_address("127.0.0.1"), port});
  }
  void SendHeader(size_t content_length) {
    Send("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: " + std::to_string(content_length) +
         "\r\n\r\n");
  }
  void Send(const std::string& bytes) { asio::write(socket_, asio::buffer(bytes)); }
  // The answer: its header and its body (as long as its Content-Length says).
  std::string Answer() {
    std::string answer;
    std::array<char, 4096> chunk;
    boost::system::error_code ec;
    for (;;) {
      const size_t header_end = answer.find("\r\n\r\n");
      if (header_end != std::string::npos) {
        const size_t at = answer.find("Content-Length: ");
        const size_t length = at < header_end ? std::stoul(answer.substr(at + 16)) : 0;
        if (answer.size() >= header_end + 4 + length) return answer;
      }
      const size_t n = socket_.read_some(asio::buffer(chunk), ec);
      if (ec) return answer;
      answer.append(chunk.data(), n);
    }
  }

 private:
  asio::io_context io_;
  tcp::socket socket_;
};

TEST(HttpServerBodyBudget, ABodyPastTheBudgetWaitsForRoomUnread) {
  BudgetedServer server(std::chrono::seconds(10));
  const size_t big = 600 << 10;
  RawClient first(server.port());
  first.SendHeader(big);
  first.Send(std::string(1000, 'a'));  // the first holds 600 KiB of the 1 MiB while it sends
  std::this_thread::sleep_for(std::chrono::milliseconds(100));

  // A second big body does not fit: it waits. A small one is not counted and is answered.
  RawClient second(server.port());
  second.SendHeader(big);
  std::thread second_sends([&] { second.Send(std::string(big, 'b')); });
  RawClient small(server.port());
  small.SendHeader(kUnbudgetedBodyBytes);
  small.Send(std::string(kUnbudgetedBodyBytes, 'c'));
  std::string answer = small.Answer();
  EXPECT_EQ(answer.rfind("HTTP/1.1 200", 0), 0u) << answer.substr(0, 40);
  EXPECT_NE(answer.find("\r\n\r\n" + std::to_string(kUnbudgetedBodyBytes)), std::string::npos);

  // The first's end makes room: the second's body is read and answered whole, woken by the
  // room given back, not at its 10 s deadline.
  first.Send(std::string(big - 1000, 'a'));
  answer = first.Answer();
  const auto room = std::chrono::steady_clock::now();
  EXPECT_EQ(answer.rfind("HTTP/1.1 200", 0), 0u) << answer.substr(0, 40);
  answer = second.Answer();
  EXPECT_LT(std::chrono::steady_clock::now() - room, std::chrono::seconds(5));
  second_sends.join();
  EXPECT_EQ(answer.rfind("HTTP/1.1 200", 0), 0u) << answer.substr(0, 40);
  EXPECT_NE(answer.find("\r\n\r\n" + std::to_string(big)), std::string::npos);
}

// A request on a kept-alive connection must arrive whole within the request timeout from its
// first byte: a header sent a byte at a time no longer holds the connection for the idle
// timeout (75 s), nor can each part of a request take a timeout of its own.
TEST(HttpServerBodyBudget, ARequestTrickledPastTheRequestTimeoutIsDropped) {
  BudgetedServer server(std::chrono::milliseconds(500));
  RawClient client(server.port());
  client.SendHeader(1);
  client.Send("a");
  EXPECT_EQ(client.Answer().rfind("HTTP/1.1 200", 0), 0u);
  client.Send("POST / HTTP/1.1\r\n");
  std::this_thread::sleep_for(std::chrono::milliseconds(800));
  try {  // the server may have closed the connection already
    client.Send("Host: h\r\nContent-Length: 1\r\n\r\na");
  } catch (const boost::system::system_error&) {
  }
  EXPECT_EQ(client.Answer(), "") << "no answer: the connection was closed at the deadline";
}

TEST(HttpServerBodyBudget, ABodyThatFindsNoRoomWithinTheRequestTimeoutIs503) {
  BudgetedServer server(std::chrono::milliseconds(500));
  const size_t big = 600 << 10;
  RawClient first(server.port());
  first.SendHeader(big);
  first.Send("slow" + std::string(big - 4, 'a'));  // its handler holds its body for 1.5 s
  ASSERT_TRUE(server.SlowHandlerHolds());
  RawClient second(server.port());
  second.SendHeader(big);
  second.Send(std::string(64 << 10, 'b'));  // some of it, unread by the server
  const std::string answer = second.Answer();
  EXPECT_EQ(answer.rfind("HTTP/1.1 503", 0), 0u) << answer.substr(0, 40);
  EXPECT_NE(answer.find("Retry-After: 1"), std::string::npos);
  EXPECT_NE(answer.find("\"busy\""), std::string::npos);
  EXPECT_EQ(first.Answer().rfind("HTTP/1.1 200", 0), 0u);
}

// A large body whose request the screen refuses (no key) is answered at once, unread, and
// takes none of the budget: callers without the key, each declaring the whole budget and
// sending nothing, held it until their request timeout, and a keyed request waited behind
// them (503 at its own). A small body is not screened: its handler decides.
TEST(HttpServerBodyBudget, ALargeBodyTheScreenRefusesIsAnsweredUnreadAndTakesNoBudget) {
  testing::ScriptedServer server(
      [](ServerRequest r) {
        return ServerResponse{200, {{"Content-Type", "text/plain"}}, std::to_string(r.body.size())};
      },
      {.port = 0,
       .max_body_bytes = 1 << 20,
       .max_body_bytes_in_flight = 1 << 20,
       .request_timeout = std::chrono::seconds(10),
       .screen = [](const ServerRequest& r) -> std::optional<ServerResponse> {
         if (FindHeader(r.headers, "X-Key") == "k") return std::nullopt;
         return ServerResponse{401, {{"Content-Type", "application/json"}}, R"({"error":"key"})"};
       }},
      /*threads=*/2);
  const size_t whole = 1 << 20;
  RawClient first(server.port());
  first.SendHeader(whole);
  std::string answer = first.Answer();
  EXPECT_EQ(answer.rfind("HTTP/1.1 401", 0), 0u) << answer.substr(0, 40);
  EXPECT_NE(answer.find(R"({"error":"key"})"), std::string::npos);
  RawClient second(server.port());  // stays connected, as the first could have
  second.SendHeader(whole);

  RawClient keyed(server.port());
  keyed.Send("POST / HTTP/1.1\r\nHost: h\r\nX-Key: k\r\nContent-Length: " + std::to_string(whole) +
             "\r\n\r\n" + std::string(whole, 'k'));
  answer = keyed.Answer();
  EXPECT_EQ(answer.rfind("HTTP/1.1 200", 0), 0u) << answer.substr(0, 40);
  EXPECT_NE(answer.find("\r\n\r\n" + std::to_string(whole)), std::string::npos);

  RawClient small(server.port());
  small.SendHeader(kUnbudgetedBodyBytes);
  small.Send(std::string(kUnbudgetedBodyBytes, 's'));
  answer = small.Answer();
  EXPECT_EQ(answer.rfind("HTTP/1.1 200", 0), 0u) << answer.substr(0, 40);
}

TEST(HttpServerBodyBudget, ABudgetBelowOneBodyIsRefusedAtStart) {
  asio::io_context io;
  asio::thread_pool pool(1);
  HttpServer server(io, pool,
                    {.port = 0, .max_body_bytes = 1 << 20, .max_body_bytes_in_flight = 1 << 19},
                    [](ServerRequest) { return ServerResponse{}; });
  Status s = server.Start();
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("below one body"), std::string::npos) << s.message();
  pool.join();
}

}  // namespace
}  // namespace funcky
