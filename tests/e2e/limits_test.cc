// Limits of the coordinator's HTTP listener, probed over raw sockets: Transfer-Encodings
// other than chunked are refused, connections are capped, and running out of file
// descriptors neither spins nor stops the listener.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <fstream>
#include <sstream>
#include <thread>

#include <gtest/gtest.h>

#include "tests/support/e2e.h"
#include "tests/support/process.h"

namespace funcky::testing {
namespace {

// A TCP connection to 127.0.0.1:port, closed on destruction.
class RawConnection {
 public:
  explicit RawConnection(int port) : fd_(socket(AF_INET, SOCK_STREAM, 0)) {
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(static_cast<uint16_t>(port));
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    connected_ = connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
    timeval tv{.tv_sec = 5, .tv_usec = 0};
    setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  }
  ~RawConnection() { close(fd_); }
  bool connected() const { return connected_; }
  void Send(const std::string& bytes) {
    ASSERT_EQ(write(fd_, bytes.data(), bytes.size()), static_cast<ssize_t>(bytes.size()));
  }
  // Sends what the server takes of `bytes` before it closes the connection; how much.
  size_t SendUntilClosed(const std::string& bytes) {
    size_t sent = 0;
    while (sent < bytes.size()) {
      ssize_t n = send(fd_, bytes.data() + sent, bytes.size() - sent, MSG_NOSIGNAL);
      if (n <= 0) break;
      sent += static_cast<size_t>(n);
    }
    return sent;
  }
  // What one read gets (the answer to a small request, as a rule), the connection left open.
  std::string ReadSome() {
    char buf[4096];
    const ssize_t n = read(fd_, buf, sizeof buf);
    return n > 0 ? std::string(buf, static_cast<size_t>(n)) : std::string();
  }
  // Everything until the server closes the connection (or 5 s pass).
  std::string ReadAll() {
    std::string out;
    char buf[4096];
    for (;;) {
      ssize_t n = read(fd_, buf, sizeof buf);
      if (n <= 0) break;
      out.append(buf, static_cast<size_t>(n));
    }
    return out;
  }

 private:
  int fd_;
  bool connected_ = false;
};

int PortOf(const Coordinator& c) { return std::stoi(c.url().substr(c.url().rfind(':') + 1)); }

class LimitsTest : public E2eTest {
 protected:
  std::string backend() const override { return "sqlite"; }
};

TEST_F(LimitsTest, TransferEncodingsOtherThanChunkedAreRefusedAndNothingIsStored) {
  auto c = StartCoordinator();
  const std::string event = R"({"name":"te/test"})";
  for (const char* te : {"identity", "gzip", "xchunked", "gzip, chunked"}) {
    RawConnection conn(PortOf(*c));
    ASSERT_TRUE(conn.connected());
    // A second request hides in the "body": it must not be served.
    conn.Send(
        std::string(
            "POST /e/test HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n") +
        "Transfer-Encoding: " + te + "\r\n\r\n" + event +
        "GET /v1/events HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
    const std::string reply = conn.ReadAll();
    EXPECT_EQ(reply.rfind("HTTP/1.1 400", 0), 0u) << te << ": " << reply;
    EXPECT_NE(reply.find("Transfer-Encoding"), std::string::npos) << reply;
    // One answer, then the connection is closed.
    EXPECT_EQ(reply.find("HTTP/1.1", 1), std::string::npos) << reply;
  }
  // Chunked works as before.
  RawConnection chunked(PortOf(*c));
  std::ostringstream body;
  body << std::hex << event.size() << "\r\n" << event << "\r\n0\r\n\r\n";
  chunked.Send(
      "POST /e/test HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
      "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n" +
      body.str());
  EXPECT_EQ(chunked.ReadAll().rfind("HTTP/1.1 200", 0), 0u);
  EXPECT_EQ(CountRows(*c, "/v1/events?name=te/test"), 1);
}

// A chunk's size line and a trailer have no limit of their own in the HTTP parser: sent
// without end, they grew the server's read buffer until the request's timeout (30 s; a fast
// client fills gigabytes). The buffer is bounded: a 400 at once, nothing stored.
TEST_F(LimitsTest, AnEndlessChunkSizeLineOrTrailerIsA400NotMemory) {
  auto c = StartCoordinator();
  const std::string head =
      "POST /e/test HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
      "Transfer-Encoding: chunked\r\n\r\n";
  const std::string endless(256 << 10, 'x');  // well past the bound; no line end
  for (const std::string& start : {std::string("1;"), std::string("0\r\nX-Trailer: ")}) {
    RawConnection conn(PortOf(*c));
    ASSERT_TRUE(conn.connected());
    conn.SendUntilClosed(head + start + endless);
    const std::string reply = conn.ReadAll();  // at most 5 s: the timeout is 30
    EXPECT_EQ(reply.rfind("HTTP/1.1 400", 0), 0u) << start << ": " << reply.substr(0, 200);
    EXPECT_NE(reply.find("a chunk's size line or a trailer is longer than"), std::string::npos)
        << reply.substr(0, 300);
  }
  EXPECT_EQ(CountRows(*c, "/v1/events"), 0);
}

// On loopback without a token, a request naming another host (a DNS name rebound to
// 127.0.0.1 by a web page) is a 403; with a token, the token holds and any name is served.
TEST_F(LimitsTest, OnLoopbackWithoutATokenOnlyThisMachinesNamesAreServed) {
  auto get = [](const Coordinator& c, const std::string& host) {
    RawConnection conn(PortOf(c));
    conn.Send("GET /healthz HTTP/1.1\r\nHost: " + host + "\r\nConnection: close\r\n\r\n");
    return conn.ReadAll();
  };
  auto open = StartCoordinator();
  EXPECT_EQ(get(*open, "rebound.example:8288").rfind("HTTP/1.1 403", 0), 0u);
  EXPECT_EQ(get(*open, "localhost:8288").rfind("HTTP/1.1 200", 0), 0u);
  auto guarded = StartCoordinator({"--dashboard-token", "t0ken"});
  EXPECT_EQ(get(*guarded, "rebound.example:8288").rfind("HTTP/1.1 200", 0), 0u);
}

// A large body from a caller without the event key is refused before it is read, so it holds
// none of the bodies' budget: two such callers declaring the whole budget, sending nothing,
// held it for their request timeout and a keyed sender's large body waited behind them.
TEST_F(LimitsTest, ALargeBodyWithAWrongKeyIsRefusedUnreadAndHoldsNoBudget) {
  auto c = StartCoordinator({"--event-key", "ek", "--max-body-bytes", "1048576",
                             "--max-body-bytes-in-flight", "1048576"});
  const std::string declare_all =
      "POST /e/wrong HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
      "Content-Length: 1048576\r\n\r\n";
  RawConnection first(PortOf(*c));
  first.Send(declare_all);
  const std::string refused = first.ReadAll();
  EXPECT_EQ(refused.rfind("HTTP/1.1 401", 0), 0u) << refused.substr(0, 200);
  EXPECT_NE(refused.find("unknown event key"), std::string::npos);
  RawConnection second(PortOf(*c));  // left open, unread
  second.Send(declare_all);

  const std::string padded =
      Json{{"name", "limits/padded"}, {"data", {{"pad", std::string(200 << 10, 'p')}}}}.dump();
  auto sent = Http("POST", c->url() + "/e/ek", padded);
  EXPECT_EQ(sent.status, 200) << sent.raw.substr(0, 200);
}

TEST_F(LimitsTest, ConnectionsPastTheCapWaitUntilOneCloses) {
  auto c = StartCoordinator({"--max-connections", "3"});
  std::vector<std::unique_ptr<RawConnection>> idle;
  for (int i = 0; i < 3; ++i) {
    idle.push_back(std::make_unique<RawConnection>(PortOf(*c)));
    ASSERT_TRUE(idle.back()->connected());
    // Accepted and served, then kept alive, idle: it holds one of the three slots.
    idle.back()->Send("GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
    ASSERT_EQ(idle.back()->ReadSome().rfind("HTTP/1.1 200", 0), 0u) << "connection " << i;
  }
  // A fourth connection is left in the backlog: its request gets no answer yet.
  RawConnection waiting(PortOf(*c));
  ASSERT_TRUE(waiting.connected());  // the kernel's backlog completes the handshake
  waiting.Send("GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
  std::thread closer([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(1500));
    idle.pop_back();
  });
  const auto start = std::chrono::steady_clock::now();
  const std::string reply = waiting.ReadAll();
  const auto waited = std::chrono::steady_clock::now() - start;
  closer.join();
  EXPECT_EQ(reply.rfind("HTTP/1.1 200", 0), 0u) << reply;
  // Answered only once a slot was free.
  EXPECT_GE(waited, std::chrono::milliseconds(1300));
}

// CPU time (user + system) of process `pid` so far, in clock ticks.
long CpuTicks(int pid) {
  std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
  std::string content((std::istreambuf_iterator<char>(stat)), {});
  std::istringstream fields(content.substr(content.rfind(')') + 2));
  std::string skip;
  for (int i = 0; i < 11; ++i) fields >> skip;  // state … cmajflt
  long utime = 0, stime = 0;
  fields >> utime >> stime;
  return utime + stime;
}

TEST_F(LimitsTest, OutOfFileDescriptorsTheListenerBacksOffAndRecovers) {
  const int port = FreePort();
  Process funcky({"/usr/bin/prlimit", "--nofile=48:48", FUNCKY_BIN, "dev", "--db", dir_ + "/fd.db",
                  "--port", std::to_string(port)},
                 dir_ + "/fd.log");
  const std::string url = "http://127.0.0.1:" + std::to_string(port);
  ASSERT_TRUE(WaitFor([&] { return Http("GET", url + "/healthz").status == 200; })) << funcky.Log();
  std::vector<std::unique_ptr<RawConnection>> flood;
  for (int i = 0; i < 80; ++i) flood.push_back(std::make_unique<RawConnection>(port));
  const long before = CpuTicks(funcky.pid());
  std::this_thread::sleep_for(std::chrono::seconds(2));
  const long spent = CpuTicks(funcky.pid()) - before;
  // A spinning accept loop burns ~2 s of CPU here (200 ticks); backing off, almost none.
  EXPECT_LT(spent, sysconf(_SC_CLK_TCK) / 2) << "ticks: " << spent;
  flood.clear();
  EXPECT_TRUE(WaitFor([&] { return Http("GET", url + "/healthz").status == 200; },
                      std::chrono::seconds(5)));
  EXPECT_TRUE(funcky.running());
}

}  // namespace
}  // namespace funcky::testing
