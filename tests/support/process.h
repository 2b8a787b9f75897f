// Child processes for end-to-end tests: spawned with arguments, output to a log file,
// always stopped by PID.
#pragma once

#include <chrono>
#include <functional>
#include <string>
#include <vector>

namespace funcky::testing {

class Process {
 public:
  Process() = default;
  Process(std::vector<std::string> argv, std::string log_path);
  ~Process();  // SIGKILL if still running
  Process(Process&& other) noexcept;
  Process& operator=(Process&& other) noexcept;

  int pid() const { return pid_; }
  bool running();
  // Sends `sig` and waits up to `timeout` for the exit; SIGKILL after that.
  void Stop(int sig = 15, std::chrono::milliseconds timeout = std::chrono::seconds(10));
  void Kill9();
  std::string Log() const;
  // How the process ended: its exit code, or 128 + the signal that killed it; -1 while it
  // has not been reaped.
  int exit_code() const { return exit_code_; }
  const std::string& log_path() const { return log_path_; }

 private:
  void Reaped(int status);
  int pid_ = 0;
  int exit_code_ = -1;
  std::string log_path_;
};

int FreePort();
// The running gtest test's name with every character but letters and digits made '_', for
// names of folders and databases.
std::string CurrentTestSlug();
// A new folder under $TMPDIR (or /tmp) named `prefix` and six random characters; removed
// when the test binary exits with all its tests passed (kept after a failure, for its logs,
// or with FUNCKY_KEEP_TEST_DIRS set).
std::string TempDir(const std::string& prefix);

// Polls `ready` every 20 ms until it is true or `timeout` passes.
bool WaitFor(const std::function<bool()>& ready,
             std::chrono::milliseconds timeout = std::chrono::seconds(20));

}  // namespace funcky::testing
