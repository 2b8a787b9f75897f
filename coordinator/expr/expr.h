// Expressions over events (PROTOCOL.md §8.5): trigger filters, lane and concurrency keys,
// and later `if` conditions. Callers compile once (at sync, so a bad expression is reported
// to the host with its position) and evaluate per event.
//
// The CEL subset: variables (`event`, `async`, …) with field access (`event.data.a`,
// `event["data"]`, `list[0]`); string, number, boolean, null and list literals;
// `== != < <= > >=`, `in`, `&& || !`, `+ - * / %` (with `+` concatenating when either side
// is a string, and lists); `size(x)`/`x.size()`, `has(a.b)`, `lowercase(s)`, `uppercase(s)`;
// parentheses. Precedence is CEL's: `||` < `&&` < comparisons and `in` < `+ -` < `* / %` <
// unary < member access.
//
// Nothing a value can be makes evaluation fail: a missing field is null, comparisons of
// mixed types or null are false (`!=` true), arithmetic on the wrong types or a division by
// zero gives null, and `&&`, `||`, `!` treat anything but `true` as false.
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
  // True only when the expression evaluates to the boolean true.
  bool Matches(const nlohmann::json& vars) const;
  const std::string& source() const { return source_; }

 protected:
  explicit Expression(std::string source) : source_(std::move(source)) {}

 private:
  std::string source_;
};

// kInvalidArgument with the 1-based position of the problem, e.g.
// "at 11: expected a field name after '.'". Sources longer than kMaxExpressionLength or
// nested deeper than 64 levels are refused.
inline constexpr size_t kMaxExpressionLength = 4096;
Result<std::unique_ptr<Expression>> Compile(std::string_view source);

// The text of a key value: strings as they are, numbers and booleans as JSON, null (a
// missing field) as the empty string.
std::string KeyText(const nlohmann::json& value);

}  // namespace funcky::expr
