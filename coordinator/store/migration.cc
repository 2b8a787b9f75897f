#include "coordinator/store/migration.h"

#include <string>

#include <spdlog/spdlog.h>

namespace funcky::store {

Status CheckAppliedMigrations(int known, int newest, int newest_breaking) {
  if (newest_breaking <= known) return Status::Ok();
  return FailedPrecondition(
      "the database was migrated by a newer funcky: it is at schema version " +
      std::to_string(newest) + ", this funcky knows up to " + std::to_string(known) +
      ", and version " + std::to_string(newest_breaking) +
      " changes what earlier versions read and write; run the newer funcky");
}

void WarnOfNewerMigrations(int known, int newest) {
  if (newest <= known) return;
  spdlog::warn(
      "the database is at schema version {}, newer than this funcky knows ({}); those "
      "migrations leave what this version reads and writes alone, so it runs",
      newest, known);
}

}  // namespace funcky::store
