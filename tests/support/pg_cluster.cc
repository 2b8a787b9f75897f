#include "tests/support/pg_cluster.h"

#include <signal.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <thread>

#include <pqxx/pqxx>

#include "tests/support/process.h"

namespace funcky::testing {

namespace {

int RunCommand(const std::string& cmd) { return std::system(cmd.c_str()); }

std::string FindBinDir() {
  for (const char* candidate :
       {"/usr/lib/postgresql/17/bin", "/usr/lib/postgresql/16/bin", "/usr/lib/postgresql/15/bin"}) {
    if (std::filesystem::exists(std::string(candidate) + "/initdb")) return candidate;
  }
  return "";
}

}  // namespace

PgCluster::PgCluster() {
  bindir_ = FindBinDir();
  if (bindir_.empty()) {
    std::cerr << "PostgreSQL server binaries not found (apt-get install postgresql)\n";
    std::abort();
  }
  dir_ = TempDir("funcky-pg-");
  port_ = FreePort();
  const bool root = geteuid() == 0;
  as_pg_ = root ? "runuser -u postgres -- " : "";
  if (root) RunCommand("chown postgres:postgres " + dir_);
  const std::string data = dir_ + "/data";
  if (RunCommand(as_pg_ + bindir_ + "/initdb -D " + data + " -A trust -U postgres -E UTF8 > " +
                 dir_ + "/initdb.log 2>&1") != 0) {
    std::cerr << "initdb failed; see " << dir_ << "/initdb.log\n";
    std::abort();
  }
  // Another test process may take the same free port between FreePort and the bind: try a
  // new port a few times before giving up.
  for (int tries = 1; !TryStart(); ++tries) {
    if (tries == 5) {
      std::cerr << "pg_ctl start failed; see " << dir_ << "/server.log\n";
      std::abort();
    }
    port_ = FreePort();
  }
}

bool PgCluster::TryStart() {
  const std::string data = dir_ + "/data";
  std::string start = as_pg_ + bindir_ + "/pg_ctl -D " + data + " -l " + dir_ +
                      "/server.log -w start -o \"-c listen_addresses=127.0.0.1 -p " +
                      std::to_string(port_) + " -c unix_socket_directories=" + dir_ +
                      " -c max_connections=300\" > /dev/null";
  if (RunCommand(start) != 0) return false;
  std::ifstream pidfile(data + "/postmaster.pid");
  pidfile >> pid_;
  return true;
}

void PgCluster::Start() {
  const std::string data = dir_ + "/data";
  // fsync stays on: tests claim durability.
  std::string start = as_pg_ + bindir_ + "/pg_ctl -D " + data + " -l " + dir_ +
                      "/server.log -w start -o \"-c listen_addresses=127.0.0.1 -p " +
                      std::to_string(port_) + " -c unix_socket_directories=" + dir_ +
                      " -c max_connections=300\" > /dev/null";
  if (RunCommand(start) != 0) {
    std::cerr << "pg_ctl start failed; see " << dir_ << "/server.log\n";
    std::abort();
  }
  std::ifstream pidfile(data + "/postmaster.pid");
  pidfile >> pid_;
}

void PgCluster::Stop() {
  if (pid_ <= 0) return;
  kill(pid_, SIGINT);  // fast shutdown
  for (int i = 0; i < 200 && kill(pid_, 0) == 0; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  pid_ = 0;
}

PgCluster::~PgCluster() {
  Stop();
  std::error_code ignored;  // the server may still be removing its own files
  std::filesystem::remove_all(dir_, ignored);
}

std::string PgCluster::CreateDatabase(const std::string& name) {
  const std::string base = "postgres://postgres@127.0.0.1:" + std::to_string(port_) + "/";
  pqxx::connection c(base + "postgres");
  pqxx::nontransaction w(c);
  w.exec("DROP DATABASE IF EXISTS " + w.quote_name(name));
  w.exec("CREATE DATABASE " + w.quote_name(name));
  return base + name;
}

namespace {
PgCluster* g_cluster = nullptr;
}  // namespace

PgCluster& SharedPgCluster() {
  if (!g_cluster) {
    g_cluster = new PgCluster();
    // Stop the server when the test binary exits, however the tests ended.
    std::atexit([] {
      delete g_cluster;
      g_cluster = nullptr;
    });
  }
  return *g_cluster;
}

}  // namespace funcky::testing
