// The tests' private PostgreSQL cluster does not outlive a test binary that crashes.
#include <signal.h>

#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>

#include <gtest/gtest.h>

#include "tests/support/process.h"

namespace funcky::testing {
namespace {

using namespace std::chrono_literals;

// A binary that aborts with its cluster running (no destructor, no atexit handler) leaves no
// server behind: the cluster's watchdog stops it.
TEST(PgClusterTest, ACrashedTestBinaryLeavesNoServerRunning) {
  const std::string dir = TempDir("funcky-pg-crash-");
  Process crash({PG_CLUSTER_CRASH_BIN}, dir + "/crash.log");
  const auto give_up = std::chrono::steady_clock::now() + 60s;
  while (crash.running()) {
    ASSERT_LT(std::chrono::steady_clock::now(), give_up) << crash.Log();
    std::this_thread::sleep_for(50ms);
  }
  ASSERT_EQ(crash.exit_code(), 128 + SIGABRT) << crash.Log();
  // Other lines may come first (the server's own, such as a warning about the directory).
  const std::string log = crash.Log();
  const size_t line = log.find("postmaster ");
  ASSERT_NE(line, std::string::npos) << log;
  const int server = std::atoi(log.c_str() + line + std::strlen("postmaster "));
  ASSERT_GT(server, 0) << log;
  const auto stopped_by = std::chrono::steady_clock::now() + 20s;
  while (kill(server, 0) == 0 || errno != ESRCH) {
    ASSERT_LT(std::chrono::steady_clock::now(), stopped_by)
        << "the postmaster " << server << " still runs after its test binary crashed";
    std::this_thread::sleep_for(50ms);
  }
}

}  // namespace
}  // namespace funcky::testing
