// Expressions over events (docs/protocol.md §8.3): trigger filters, lane and concurrency keys,
// and later `if` conditions. Callers compile once (at sync, so a bad expression is reported
// to the host with its position) and evaluate per event.
//
// The CEL subset: variables (`event`, `async`, …) with field access (`event.data.a`,
// `event["data"]`, `list[0]`); string, number, boolean, null and list literals;
// `== != < <= > >=`, `in`, `&& || !`, `+ - * / %` (with `+` concatenating when either side
// is a string, and lists); `size(x)`/`x.size()`, `has(a.b)`, `lowercase(s)`, `uppercase(s)`,
// `b64decode(s)` and `json_parse(s)` (null when the text does not decode);
// parentheses. Precedence is CEL's: `||` < `&&` < comparisons and `in` < `+ -` < `* / %` <
// unary < member access.
//
// Nothing a value can be makes evaluation fail: a missing field is null, comparisons of
// mixed types or null are false (`!=` true), arithmetic on the wrong types or a division by
// zero gives null, and `&&`, `||`, `!` treat anything but `true` as false.
//
// Evaluation runs on untrusted events inside an event POST, so its cost is bounded: an
// evaluation that would take more than kMaxEvaluationSteps steps (nodes evaluated, list
// items searched by `in`) or make more than kMaxEvaluationBytes bytes of values in all
// (concatenations, list literals, decoded and parsed strings) stops there and yields null,
// so a filter over budget does not match and a key over budget is empty. Field access
// never copies: `event.data.x` reads the event in place.
#pragma once

#include <initializer_list>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "common/status.h"

namespace funcky::expr {

// The variables an expression sees, by name. Holds pointers, not copies: evaluating over an
// event costs no copy of its payload. The values must outlive the Variables.
class Variables {
 public:
  Variables(std::initializer_list<std::pair<std::string_view, const nlohmann::json*>> vars)
      : vars_(vars) {}
  // Each member of a JSON object, e.g. {"event": {...}, "async": {...}}.
  static Variables Of(const nlohmann::json& object);
  // nullptr when there is no variable `name`.
  const nlohmann::json* Find(std::string_view name) const;

 private:
  Variables() = default;
  std::vector<std::pair<std::string_view, const nlohmann::json*>> vars_;
};

inline constexpr size_t kMaxEvaluationSteps = 1'000'000;
inline constexpr size_t kMaxEvaluationBytes = 4 << 20;
// What a RequiredKey may spend on all the sides it evaluates together. A key's side is a
// field of the event as a rule (a few steps); one that costs more gives no key, and the wait
// or rule is matched by evaluating its whole expression. Small, because a host's reply may
// register a thousand waits, each asking for its key while the reply is decided.
inline constexpr size_t kMaxRequiredKeySteps = 10'000;
inline constexpr size_t kMaxRequiredKeyBytes = 64 << 10;

class Expression {
 public:
  virtual ~Expression() = default;
  nlohmann::json Evaluate(const Variables& vars) const;
  // `object` holds the variables, e.g. {"event": {...}}.
  nlohmann::json Evaluate(const nlohmann::json& object) const;
  // True only when the expression evaluates to the boolean true.
  bool Matches(const Variables& vars) const;
  bool Matches(const nlohmann::json& object) const;
  const std::string& source() const { return source_; }
  // The IndexKey of an equality the expression requires of `variable`: an `==` (alone, or a
  // term of a chain of `&&`) between a field path of `variable` (`async.data.id`,
  // `async["data"]["id"]`, at most kMaxIndexDepth fields) and a side that does not name it
  // and evaluates over `known` to an indexable value; nullopt when there is none. Whenever
  // the expression is true of a value of `variable`, IndexKeys of that value holds the key
  // (or says it is incomplete). Its evaluations share one budget (kMaxRequiredKeySteps and
  // kMaxRequiredKeyBytes); past it, nullopt.
  std::optional<std::string> RequiredKey(std::string_view variable, const Variables& known) const;
  // The variables the expression names (`event` in `event.data.x`). A name no caller
  // provides evaluates to null, so callers refuse one they do not (RefuseUnknownVariables).
  std::set<std::string> VariableNames() const;

 protected:
  explicit Expression(std::string source) : source_(std::move(source)) {}
  virtual nlohmann::json EvaluateIn(const Variables& vars) const = 0;
  virtual std::optional<std::string> RequiredKeyIn(std::string_view variable,
                                                   const Variables& known) const = 0;
  virtual void AddVariableNames(std::set<std::string>* names) const = 0;

 private:
  std::string source_;
};

// kInvalidArgument with the 1-based position of the problem, e.g.
// "at 11: expected a field name after '.'". Sources longer than kMaxExpressionLength or
// nested deeper than 64 levels are refused.
inline constexpr size_t kMaxExpressionLength = 4096;
Result<std::unique_ptr<Expression>> Compile(std::string_view source);

// kInvalidArgument naming the first variable of `e` not in `allowed` ("unknown variable
// 'evnt' (this expression sees event)"): a typo there would make the value null, a key the
// same for every event and a condition never true.
Status RefuseUnknownVariables(const Expression& e, std::initializer_list<std::string_view> allowed);

// The text of a value as `+` joins it to a string: strings as they are, numbers, booleans,
// lists and objects as JSON, null (a missing field) as the empty string.
std::string KeyText(const nlohmann::json& value);

// The longest key kept as it is. Keys are keys of the store's indexes (lanes, limits, gates),
// whose entries PostgreSQL bounds (about 2.7 kB): a longer one is its digest.
inline constexpr size_t kMaxKeyBytes = 256;

// The key a key expression's value makes: its KeyText, or when that is longer than
// kMaxKeyBytes or is not UTF-8 without NUL (b64decode() and json_parse() make any bytes),
// "sha256:" and the text's SHA-256 in hex (distinct texts keep distinct keys).
std::string Key(const nlohmann::json& value);

// Equality keys: how a store finds the waits an event may meet without evaluating every one.
// A key names a field path and a value: a string, or an integral number under 2^53 in
// magnitude (so 5 and 5.0 share one key, as `==` finds them equal). Other values have no key.
inline constexpr size_t kMaxIndexDepth = 6;
inline constexpr size_t kMaxIndexKeys = 256;
// The key of `value` at `path`; nullopt when the value has none.
std::optional<std::string> IndexKey(const std::vector<std::string>& path,
                                    const nlohmann::json& value);
// The keys of the leaves of `value` (an object) that have one, at paths of up to
// kMaxIndexDepth fields (through objects, not lists), without duplicates. False when there
// were more than kMaxIndexKeys: `keys` then holds the first kMaxIndexKeys.
bool IndexKeys(const nlohmann::json& value, std::vector<std::string>* keys);

}  // namespace funcky::expr
