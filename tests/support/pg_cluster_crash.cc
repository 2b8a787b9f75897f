// Starts a private PostgreSQL cluster, prints its postmaster's PID and aborts: no destructor
// or atexit handler stops the server. tests/store/pg_cluster_test.cc checks that the
// cluster's watchdog does.
#include <cstdio>
#include <cstdlib>

#include "tests/support/pg_cluster.h"

int main() {
  auto* cluster = new funcky::testing::PgCluster();
  std::printf("%d\n", cluster->pid());
  std::fflush(stdout);
  std::abort();
}
