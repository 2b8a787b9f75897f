// A private PostgreSQL cluster for tests: initdb into a temporary folder, started with
// pg_ctl on 127.0.0.1 and a free port, stopped by its postmaster PID.
#pragma once

#include <string>

namespace funcky::testing {

class PgCluster {
 public:
  // Starts the cluster; aborts the test binary (with the server log) if it cannot.
  PgCluster();
  ~PgCluster();
  PgCluster(const PgCluster&) = delete;
  PgCluster& operator=(const PgCluster&) = delete;

  int port() const { return port_; }
  // Stops the server (fast shutdown: sessions are ended) and starts it again on the same
  // port and data, for outage tests.
  void Stop();
  void Start();
  // Creates an empty database and returns its URL.
  std::string CreateDatabase(const std::string& name);

 private:
  // Starts the server on port_; false when it did not start (e.g. the port was taken).
  bool TryStart();
  std::string dir_;
  std::string bindir_;
  std::string as_pg_;  // runs a command as user postgres when the tests run as root
  int port_ = 0;
  int pid_ = 0;
};

// The cluster shared by the tests of one binary, started on first use.
PgCluster& SharedPgCluster();

}  // namespace funcky::testing
