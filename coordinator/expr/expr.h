// Expressions over events (PROTOCOL.md §8.5): lane keys, concurrency keys, and later
// trigger filters and `if` conditions. Callers compile once (at sync, so a bad expression is
// reported to the host) and evaluate per event.
//
// The language so far: field access on variables (`event.data.tenant_id`, `event["data"]`),
// string, number, boolean and null literals, `+` (concatenation when either side is a
// string, else numeric addition) and parentheses. A missing field evaluates to null, never
// an error. The full CEL subset of the protocol grows behind this interface.
#pragma once

#include <memory>
#include <string>
#include <string_view>

#include <nlohmann/json_fwd.hpp>

#include "common/status.h"

namespace funcky::expr {

class Expression {
 public:
  virtual ~Expression() = default;
  // `vars` is an object of the variables, e.g. {"event": {...}}.
  virtual nlohmann::json Evaluate(const nlohmann::json& vars) const = 0;
  const std::string& source() const { return source_; }

 protected:
  explicit Expression(std::string source) : source_(std::move(source)) {}

 private:
  std::string source_;
};

// kInvalidArgument with the 1-based position of the problem, e.g.
// "at 11: expected a field name after '.'".
Result<std::unique_ptr<Expression>> Compile(std::string_view source);

// The text of a key value: strings as they are, numbers and booleans as JSON, null (a
// missing field) as the empty string.
std::string KeyText(const nlohmann::json& value);

}  // namespace funcky::expr
