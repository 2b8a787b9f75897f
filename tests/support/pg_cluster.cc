#include "tests/support/pg_cluster.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <thread>

#include <libpq-fe.h>

#include <memory>
#include <stdexcept>

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
  StartWatchdog();
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
  StartWatchdog();
}

void PgCluster::StartWatchdog() {
  if (pid_ <= 0) return;  // no server known: nothing it could stop (kill(0) is a group)
  int fds[2];
  // Close-on-exec: a process the tests start must not hold the write end, or the watchdog
  // would wait for it too.
  if (pipe2(fds, O_CLOEXEC) != 0) {
    std::perror("pg watchdog: pipe2");
    return;
  }
  const pid_t server = pid_;
  const std::string dir = dir_;  // read by the child: nothing is allocated after the fork
  const pid_t child = fork();
  if (child == 0) {
    // Only async-signal-safe calls from here: the test binary has threads. Forked again and
    // in a session of its own, the watchdog is no descendant of the test binary nor in its
    // process group: what ends a hung binary with its process tree (ctest's timeout,
    // timeout(1), ^C) leaves it to do its work.
    if (fork() != 0) _exit(0);
    setsid();
    const int null_fd = open("/dev/null", O_RDWR);
    for (int fd = 0; fd < 3; ++fd) dup2(null_fd, fd);
    dup2(fds[0], 3);
    close_range(4, ~0U, 0);  // ctest's output pipe among them: it would wait for this process
    char byte;
    ssize_t n;
    while ((n = read(3, &byte, 1)) == -1 && errno == EINTR) {
    }
    if (n == 1) _exit(0);  // Stop disarmed it: the server is stopped the usual way
    kill(server, SIGINT);  // the binary is gone: fast shutdown, as Stop
    for (int i = 0; i < 200 && kill(server, 0) == 0; ++i) usleep(50'000);
    execl("/bin/rm", "rm", "-rf", dir.c_str(), static_cast<char*>(nullptr));  // as ~PgCluster
    _exit(0);
  }
  close(fds[0]);
  if (child < 0) {
    std::perror("pg watchdog: fork");
    close(fds[1]);
    return;
  }
  waitpid(child, nullptr, 0);  // the intermediate process, gone at once
  watchdog_fd_ = fds[1];
}

void PgCluster::StopWatchdog() {
  // Disarmed by a byte before the server stops: it never signals the server's PID once that
  // may be another process's. (The end of the pipe without a byte means this process died.)
  if (watchdog_fd_ >= 0) {
    const char byte = 1;
    while (write(watchdog_fd_, &byte, 1) == -1 && errno == EINTR) {
    }
    close(watchdog_fd_);
    watchdog_fd_ = -1;
  }
}

void PgCluster::Stop() {
  StopWatchdog();
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
  PgConnection c(base + "postgres");
  std::string quoted = "\"";
  for (char ch : name) quoted += ch == '"' ? std::string("\"\"") : std::string(1, ch);
  quoted += "\"";
  c.Query("DROP DATABASE IF EXISTS " + quoted);
  c.Query("CREATE DATABASE " + quoted);
  return base + name;
}

PgConnection::PgConnection(const std::string& url) : c_(PQconnectdb(url.c_str())) {
  if (PQstatus(c_) != CONNECTION_OK) {
    const std::string message = PQerrorMessage(c_);
    PQfinish(c_);
    throw std::runtime_error("cannot connect to " + url + ": " + message);
  }
  PQsetNoticeProcessor(
      c_, [](void*, const char*) {}, nullptr);  // "does not exist, skipping"
}

PgConnection::~PgConnection() { PQfinish(c_); }

std::vector<std::vector<std::optional<std::string>>> PgConnection::Query(const std::string& sql) {
  std::unique_ptr<PGresult, void (*)(PGresult*)> r(PQexec(c_, sql.c_str()), PQclear);
  const ExecStatusType status = PQresultStatus(r.get());
  if (status != PGRES_TUPLES_OK && status != PGRES_COMMAND_OK) {
    throw std::runtime_error(std::string(PQresultErrorMessage(r.get())) + " in: " + sql);
  }
  std::vector<std::vector<std::optional<std::string>>> rows(PQntuples(r.get()));
  for (int i = 0; i < PQntuples(r.get()); ++i) {
    for (int j = 0; j < PQnfields(r.get()); ++j) {
      rows[i].push_back(PQgetisnull(r.get(), i, j)
                            ? std::nullopt
                            : std::optional<std::string>(PQgetvalue(r.get(), i, j)));
    }
  }
  return rows;
}

int64_t PgConnection::Count(const std::string& sql) {
  auto rows = Query(sql);
  if (rows.empty() || rows[0].empty() || !rows[0][0]) {
    throw std::runtime_error("no count from: " + sql);
  }
  return std::stoll(*rows[0][0]);
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
