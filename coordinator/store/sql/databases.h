// The two databases the one store runs on. Internal to coordinator/store (and its tests,
// which wrap a database to inject failures); everyone else opens a Store (store.h).
#pragma once

#include <memory>

#include "coordinator/store/sql/sql.h"
#include "coordinator/store/store.h"

namespace funcky::store {

// A pool of connections; connects lazily. Migrations from migrations/postgres/.
std::unique_ptr<sql::Database> NewPostgresDatabase(const PostgresOptions& options);

// One connection in WAL mode; kUnavailable when the file cannot be opened. Migrations from
// migrations/sqlite/.
Result<std::unique_ptr<sql::Database>> OpenSqliteDatabase(const SqliteOptions& options);

}  // namespace funcky::store
