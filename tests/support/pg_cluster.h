// A private PostgreSQL cluster for tests: initdb into a temporary folder, started with
// pg_ctl on 127.0.0.1 and a free port, stopped by its postmaster PID.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

struct pg_conn;

namespace funcky::testing {

// A plain libpq connection for a test's own queries of the database it checks. Throws
// std::runtime_error (with the server's message) when it cannot connect or a query fails.
class PgConnection {
 public:
  explicit PgConnection(const std::string& url);
  ~PgConnection();
  PgConnection(const PgConnection&) = delete;
  PgConnection& operator=(const PgConnection&) = delete;

  // The rows of `sql` (the simple protocol), as text; NULL as nullopt.
  std::vector<std::vector<std::optional<std::string>>> Query(const std::string& sql);
  // The first column of the first row of `sql` as an integer.
  int64_t Count(const std::string& sql);

 private:
  pg_conn* c_;
};

class PgCluster {
 public:
  // Starts the cluster; aborts the test binary (with the server log) if it cannot.
  PgCluster();
  ~PgCluster();
  PgCluster(const PgCluster&) = delete;
  PgCluster& operator=(const PgCluster&) = delete;

  int port() const { return port_; }
  // The postmaster's PID.
  int pid() const { return pid_; }
  // Stops the server (fast shutdown: sessions are ended) and starts it again on the same
  // port and data, for outage tests.
  void Stop();
  void Start();
  // Creates an empty database and returns its URL.
  std::string CreateDatabase(const std::string& name);

 private:
  // Starts the server on port_; false when it did not start (e.g. the port was taken).
  bool TryStart();
  // A test binary that crashes (a signal, an abort, a timeout's kill) runs neither
  // destructors nor atexit handlers: a watchdog process, started with the server, stops it
  // once this process is gone (the end of a pipe only this process holds). Disarmed before
  // the server is stopped.
  void StartWatchdog();
  void StopWatchdog();
  std::string dir_;
  std::string bindir_;
  std::string as_pg_;  // runs a command as user postgres when the tests run as root
  int port_ = 0;
  int pid_ = 0;
  int watchdog_fd_ = -1;  // the pipe's write end: a byte disarms the watchdog, its end fires it
};

// The cluster shared by the tests of one binary, started on first use.
PgCluster& SharedPgCluster();

}  // namespace funcky::testing
