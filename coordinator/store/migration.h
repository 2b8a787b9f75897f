// Schema migrations, embedded in the binary from migrations/<backend>/NNNN_name.sql.
#pragma once

#include <string>
#include <vector>

#include "common/status.h"

namespace funcky::store {

struct Migration {
  int version;
  std::string name;
  std::string sql;
  // The migration changes what coordinators of earlier versions read or write (it drops or
  // renames what they use, or needs a write they do not make): once it is applied, a
  // coordinator that does not know it refuses to start and stops if running. Marked by the
  // file's first line, `-- funcky: breaks earlier versions`; kept in
  // schema_migrations.breaks_earlier, where those coordinators read it.
  bool breaks_earlier = false;
};

// In version order.
const std::vector<Migration>& PostgresMigrations();
const std::vector<Migration>& SqliteMigrations();

// What the database's applied migrations mean for a coordinator that knows them up to
// `known`: OK when it knows them all, or when those it does not know (up to `newest`) leave
// what it reads and writes alone (none past `known` breaks earlier versions: `newest_breaking`
// is at most `known`); kFailedPrecondition naming the versions otherwise.
Status CheckAppliedMigrations(int known, int newest, int newest_breaking);

// Logs a warning when the database has migrations newer than `known` (that leave this
// version's reads and writes alone: CheckAppliedMigrations passed).
void WarnOfNewerMigrations(int known, int newest);

// The statement that reads a database's (newest applied, newest that breaks earlier
// versions), 0 for none; the same on PostgreSQL and SQLite.
inline constexpr const char* kAppliedMigrationsQuery =
    "SELECT coalesce(max(version), 0), "
    "coalesce(max(CASE WHEN breaks_earlier THEN version END), 0) FROM schema_migrations";

}  // namespace funcky::store
