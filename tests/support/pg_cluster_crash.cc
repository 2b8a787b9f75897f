// Starts a private PostgreSQL cluster, prints "postmaster <pid>" and aborts: no destructor
// or atexit handler stops the server. tests/store/pg_cluster_test.cc checks that the
// cluster's watchdog does.
#include <sys/resource.h>

#include <cstdio>
#include <cstdlib>

#include "tests/support/pg_cluster.h"

int main() {
  auto* cluster = new funcky::testing::PgCluster();
  std::printf("postmaster %d\n", cluster->pid());
  std::fflush(stdout);
  const rlimit no_core{0, 0};  // the abort is the test's, not a bug to keep a core of
  setrlimit(RLIMIT_CORE, &no_core);
  std::abort();
}
