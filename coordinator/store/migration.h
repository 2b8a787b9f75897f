// Schema migrations, embedded in the binary from migrations/<backend>/NNNN_name.sql.
#pragma once

#include <string>
#include <vector>

namespace funcky::store {

struct Migration {
  int version;
  std::string name;
  std::string sql;
};

// In version order.
const std::vector<Migration>& PostgresMigrations();
const std::vector<Migration>& SqliteMigrations();

}  // namespace funcky::store
