#include "coordinator/expr/expr.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdint>
#include <initializer_list>
#include <optional>
#include <type_traits>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/crypto.h"
#include "common/json_parse.h"
#include "common/utf8.h"

namespace funcky::expr {

using Json = nlohmann::json;

namespace {

// Deeper nesting than this is refused at compile time, so evaluation never runs out of stack.
constexpr int kMaxDepth = 64;

// json_parse() never stores what it parses, so \u0000 is fine there.
constexpr JsonLimits kJsonParseLimits{.max_depth = 64, .allow_nul = true};

enum class Op {
  kLiteral,
  kVariable,
  kMember,  // lhs.name
  kIndex,   // lhs[rhs]
  kList,    // [args…]
  kCall,    // name(args…)
  kNot,
  kNeg,
  kAnd,
  kOr,
  kEq,
  kNe,
  kLt,
  kLe,
  kGt,
  kGe,
  kIn,
  kAdd,
  kSub,
  kMul,
  kDiv,
  kMod,
};

struct Node {
  Op op;
  Json literal;                             // kLiteral
  std::string name;                         // kVariable, kMember (field), kCall (function)
  std::vector<std::unique_ptr<Node>> args;  // operands, list items, call arguments
};

std::unique_ptr<Node> Make(Op op, std::vector<std::unique_ptr<Node>> args = {},
                           std::string name = "", Json literal = nullptr) {
  return std::make_unique<Node>(Node{op, std::move(literal), std::move(name), std::move(args)});
}

std::unique_ptr<Node> Binary(Op op, std::unique_ptr<Node> a, std::unique_ptr<Node> b) {
  std::vector<std::unique_ptr<Node>> args;
  args.push_back(std::move(a));
  args.push_back(std::move(b));
  return Make(op, std::move(args));
}

// The functions an expression may call, with how many arguments each takes.
int Arity(const std::string& name) {
  if (name == "size" || name == "has" || name == "lowercase" || name == "uppercase" ||
      name == "b64decode" || name == "json_parse") {
    return 1;
  }
  return -1;
}

class Parser {
 public:
  explicit Parser(std::string_view src) : src_(src) {}

  Result<std::unique_ptr<Node>> Parse() {
    ASSIGN_OR_RETURN(auto node, Or());
    SkipSpace();
    if (pos_ != src_.size()) return Unexpected();
    return node;
  }

 private:
  Status Error(const std::string& what) const {
    return InvalidArgument("at " + std::to_string(pos_ + 1) + ": " + what);
  }
  Status Unexpected() const {
    if (pos_ >= src_.size()) return Error("unexpected end of expression");
    const auto c = static_cast<unsigned char>(src_[pos_]);
    // A byte of a multi-byte character is named by its value: quoted alone it would make the
    // message invalid UTF-8, which JSON cannot hold (the message becomes a run's error).
    if (c < 0x20 || c >= 0x7f) {
      static constexpr char kHex[] = "0123456789ABCDEF";
      return Error(std::string("unexpected byte 0x") + kHex[c >> 4] + kHex[c & 15] +
                   " (outside strings only ASCII is allowed)");
    }
    return Error("unexpected '" + std::string(1, src_[pos_]) + "'");
  }
  void SkipSpace() {
    while (pos_ < src_.size() && std::isspace(static_cast<unsigned char>(src_[pos_]))) ++pos_;
  }
  // Consumes `token` if it comes next (an operator not followed by a longer one).
  bool Eat(std::string_view token) {
    SkipSpace();
    if (src_.substr(pos_, token.size()) != token) return false;
    if (token == "<" || token == ">" || token == "!" || token == "=") {
      if (pos_ + 1 < src_.size() && src_[pos_ + 1] == '=') return false;
    }
    if (token == "in") {
      size_t end = pos_ + 2;
      if (end < src_.size() && IdentChar(src_[end])) return false;
    }
    pos_ += token.size();
    return true;
  }
  static bool IdentStart(char c) { return std::isalpha(static_cast<unsigned char>(c)) || c == '_'; }
  static bool IdentChar(char c) {
    return IdentStart(c) || std::isdigit(static_cast<unsigned char>(c));
  }

  // Guards recursion: every nested rule entry counts.
  struct Depth {
    explicit Depth(int& d) : d(d) { ++d; }
    ~Depth() { --d; }
    int& d;
  };
  Status CheckDepth() const {
    return depth_ > kMaxDepth ? Error("expression nested too deeply") : Status::Ok();
  }

  // One precedence level of left-associative binary operators over `operand`, the next
  // tighter level: operand (op operand)*.
  using Rule = Result<std::unique_ptr<Node>> (Parser::*)();
  struct BinaryOp {
    std::string_view token;
    Op op;
  };
  Result<std::unique_ptr<Node>> LeftAssociative(std::initializer_list<BinaryOp> ops, Rule operand) {
    ASSIGN_OR_RETURN(auto lhs, (this->*operand)());
    for (;;) {
      const BinaryOp* matched = nullptr;
      for (const BinaryOp& o : ops) {
        if (Eat(o.token)) {
          matched = &o;
          break;
        }
      }
      if (!matched) return lhs;
      ASSIGN_OR_RETURN(auto rhs, (this->*operand)());
      lhs = Binary(matched->op, std::move(lhs), std::move(rhs));
    }
  }

  // Precedence, loosest first: || < && < comparisons and `in` < + - < * / % < unary.
  Result<std::unique_ptr<Node>> Or() {
    Depth guard(depth_);
    RETURN_IF_ERROR(CheckDepth());
    return LeftAssociative({{"||", Op::kOr}}, &Parser::And);
  }
  Result<std::unique_ptr<Node>> And() {
    return LeftAssociative({{"&&", Op::kAnd}}, &Parser::Relation);
  }
  Result<std::unique_ptr<Node>> Relation() {
    // "<=" before "<": Eat never takes "<" out of "<=" anyway, but the order reads plainly.
    return LeftAssociative({{"==", Op::kEq},
                            {"!=", Op::kNe},
                            {"<=", Op::kLe},
                            {">=", Op::kGe},
                            {"<", Op::kLt},
                            {">", Op::kGt},
                            {"in", Op::kIn}},
                           &Parser::Sum);
  }
  Result<std::unique_ptr<Node>> Sum() {
    return LeftAssociative({{"+", Op::kAdd}, {"-", Op::kSub}}, &Parser::Product);
  }
  Result<std::unique_ptr<Node>> Product() {
    return LeftAssociative({{"*", Op::kMul}, {"/", Op::kDiv}, {"%", Op::kMod}}, &Parser::Unary);
  }

  Result<std::unique_ptr<Node>> Unary() {
    Depth guard(depth_);
    RETURN_IF_ERROR(CheckDepth());
    if (Eat("!")) {
      ASSIGN_OR_RETURN(auto operand, Unary());
      std::vector<std::unique_ptr<Node>> args;
      args.push_back(std::move(operand));
      return Make(Op::kNot, std::move(args));
    }
    SkipSpace();
    if (pos_ < src_.size() && src_[pos_] == '-' &&
        !(pos_ + 1 < src_.size() && std::isdigit(static_cast<unsigned char>(src_[pos_ + 1])))) {
      ++pos_;
      ASSIGN_OR_RETURN(auto operand, Unary());
      std::vector<std::unique_ptr<Node>> args;
      args.push_back(std::move(operand));
      return Make(Op::kNeg, std::move(args));
    }
    return Postfix();
  }

  Result<std::unique_ptr<Node>> Postfix() {
    ASSIGN_OR_RETURN(auto node, Primary());
    for (;;) {
      if (Eat(".")) {
        SkipSpace();
        if (pos_ >= src_.size() || !IdentStart(src_[pos_])) {
          return Error("expected a field name after '.'");
        }
        std::string field = Identifier();
        if (Eat("(")) {  // receiver-style call: x.size()
          if (Arity(field) != 1) return Error("unknown function '" + field + "'");
          // has() takes a field to look for, which a receiver is not: has(event.data.x).
          if (field == "has") return Error("has() needs a field, e.g. has(event.data.x)");
          if (!Eat(")")) return Error("expected ')'");
          std::vector<std::unique_ptr<Node>> args;
          args.push_back(std::move(node));
          node = Make(Op::kCall, std::move(args), field);
          continue;
        }
        std::vector<std::unique_ptr<Node>> args;
        args.push_back(std::move(node));
        node = Make(Op::kMember, std::move(args), std::move(field));
      } else if (Eat("[")) {
        ASSIGN_OR_RETURN(auto index, Or());
        if (!Eat("]")) return Error("expected ']'");
        node = Binary(Op::kIndex, std::move(node), std::move(index));
      } else {
        return node;
      }
    }
  }

  std::string Identifier() {
    size_t start = pos_;
    while (pos_ < src_.size() && IdentChar(src_[pos_])) ++pos_;
    return std::string(src_.substr(start, pos_ - start));
  }

  Result<Json> StringLiteral() {
    const char quote = src_[pos_++];
    std::string out;
    while (pos_ < src_.size() && src_[pos_] != quote) {
      char c = src_[pos_++];
      if (c == '\\') {
        if (pos_ >= src_.size()) break;
        c = src_[pos_++];
        if (c == 'n') {
          c = '\n';
        } else if (c == 't') {
          c = '\t';
        }
      }
      out += c;
    }
    if (pos_ >= src_.size()) return Error("unterminated string");
    ++pos_;
    return Json(out);
  }

  Result<std::vector<std::unique_ptr<Node>>> Arguments(std::string_view close) {
    std::vector<std::unique_ptr<Node>> args;
    if (Eat(close)) return args;
    for (;;) {
      ASSIGN_OR_RETURN(auto arg, Or());
      args.push_back(std::move(arg));
      if (Eat(close)) return args;
      if (!Eat(",")) return Error("expected ',' or '" + std::string(close) + "'");
    }
  }

  Result<std::unique_ptr<Node>> Primary() {
    SkipSpace();
    if (pos_ >= src_.size()) return Unexpected();
    const char c = src_[pos_];
    if (c == '(') {
      ++pos_;
      ASSIGN_OR_RETURN(auto inner, Or());
      if (!Eat(")")) return Error("expected ')'");
      return inner;
    }
    if (c == '[') {
      ++pos_;
      ASSIGN_OR_RETURN(auto items, Arguments("]"));
      return Make(Op::kList, std::move(items));
    }
    if (c == '"' || c == '\'') {
      ASSIGN_OR_RETURN(Json s, StringLiteral());
      return Make(Op::kLiteral, {}, "", std::move(s));
    }
    if (std::isdigit(static_cast<unsigned char>(c)) || c == '-') {
      const size_t start = pos_++;
      while (pos_ < src_.size() &&
             (std::isdigit(static_cast<unsigned char>(src_[pos_])) || src_[pos_] == '.')) {
        ++pos_;
      }
      Json n = Json::parse(src_.substr(start, pos_ - start), nullptr, false);
      if (!n.is_number()) {
        pos_ = start;
        return Error("malformed number");
      }
      return Make(Op::kLiteral, {}, "", std::move(n));
    }
    if (IdentStart(c)) {
      const size_t start = pos_;
      std::string id = Identifier();
      if (id == "true") return Make(Op::kLiteral, {}, "", true);
      if (id == "false") return Make(Op::kLiteral, {}, "", false);
      if (id == "null") return Make(Op::kLiteral, {}, "", nullptr);
      if (Eat("(")) {
        const int arity = Arity(id);
        if (arity < 0) {
          pos_ = start;
          return Error("unknown function '" + id + "'");
        }
        ASSIGN_OR_RETURN(auto args, Arguments(")"));
        if (static_cast<int>(args.size()) != arity) {
          pos_ = start;
          return Error(id + "() takes " + std::to_string(arity) + " argument");
        }
        if (id == "has" && args[0]->op != Op::kMember) {
          pos_ = start;
          return Error("has() needs a field, e.g. has(event.data.x)");
        }
        return Make(Op::kCall, std::move(args), std::move(id));
      }
      return Make(Op::kVariable, {}, std::move(id));
    }
    return Unexpected();
  }

  std::string_view src_;
  size_t pos_ = 0;
  int depth_ = 0;
};

bool IsTrue(const Json& v) { return v.is_boolean() && v.get<bool>(); }

// An integer's value when int64 holds it: JSON integers past INT64_MAX are unsigned, and
// get<int64_t> would wrap them.
std::optional<int64_t> Int64Of(const Json& v) {
  if (v.is_number_unsigned()) {
    const uint64_t u = v.get<uint64_t>();
    if (u > static_cast<uint64_t>(INT64_MAX)) return std::nullopt;
    return static_cast<int64_t>(u);
  }
  if (v.is_number_integer()) return v.get<int64_t>();
  return std::nullopt;
}

// -1, 0 or 1 as two numbers order: integers exactly (as doubles, 2^53 + 1 == 2^53), others as
// doubles.
int CompareNumbers(const Json& a, const Json& b) {
  if (a.is_number_integer() && b.is_number_integer()) {
    // Either fits int64, or is unsigned past it: compare by sign first, then within type.
    const bool a_big = a.is_number_unsigned() && !Int64Of(a);
    const bool b_big = b.is_number_unsigned() && !Int64Of(b);
    if (a_big || b_big) {
      if (a_big && b_big) {
        const uint64_t x = a.get<uint64_t>(), y = b.get<uint64_t>();
        return x < y ? -1 : (x > y ? 1 : 0);
      }
      return a_big ? 1 : -1;
    }
    const int64_t x = *Int64Of(a), y = *Int64Of(b);
    return x < y ? -1 : (x > y ? 1 : 0);
  }
  const double x = a.get<double>(), y = b.get<double>();
  return x < y ? -1 : (x > y ? 1 : 0);
}

bool IsNan(const Json& v) { return v.is_number_float() && std::isnan(v.get<double>()); }

// Equality with numbers compared by value (1 == 1.0); values of different types are unequal.
bool Equal(const Json& a, const Json& b) {
  if (a.is_number() && b.is_number()) return CompareNumbers(a, b) == 0 && !IsNan(a) && !IsNan(b);
  return a == b;
}

// Ordering of two values of one comparable type; nullopt for mixed types or null.
std::optional<int> Compare(const Json& a, const Json& b) {
  if (a.is_number() && b.is_number()) return CompareNumbers(a, b);
  if (a.is_string() && b.is_string()) {
    int c = a.get_ref<const std::string&>().compare(b.get_ref<const std::string&>());
    return c < 0 ? -1 : (c > 0 ? 1 : 0);
  }
  if (a.is_boolean() && b.is_boolean()) return int(a.get<bool>()) - int(b.get<bool>());
  return std::nullopt;
}

size_t Utf8Length(const std::string& s) {
  size_t n = 0;
  for (unsigned char c : s) n += (c & 0xC0) != 0x80;
  return n;
}

// What one evaluation may still spend. Every node evaluated and every list item `in`
// looks at is a step; every value the evaluation makes (a concatenation, a copied list
// item, a parsed or decoded string) costs its size in bytes. Once either runs out, the
// evaluation stops and its result is null.
class Budget {
 public:
  Budget() = default;
  Budget(size_t steps, size_t bytes) : steps_(steps), bytes_(bytes) {}
  bool Step(size_t n = 1) {
    if (n > steps_) exceeded_ = true;
    if (!exceeded_) steps_ -= n;
    return !exceeded_;
  }
  // Charges roughly the bytes of `v` (JsonBytesUpTo: its strings and keys, 8 per value);
  // walks no further than the budget left, so measuring a huge value costs no more than the
  // budget.
  bool Charge(const Json& v) {
    if (exceeded_) return false;
    return ChargeBytes(JsonBytesUpTo({&v}, bytes_));
  }
  bool ChargeBytes(size_t n) {
    if (n > bytes_) exceeded_ = true;
    if (!exceeded_) bytes_ -= n;
    return !exceeded_;
  }
  bool exceeded() const { return exceeded_; }

 private:
  size_t steps_ = kMaxEvaluationSteps;
  size_t bytes_ = kMaxEvaluationBytes;
  bool exceeded_ = false;
};

// Charges `budget` for comparing `a` with `b` as Equal and Compare do: strings byte by byte,
// lists and objects of one size item by item (as Charge walks them); values of other types,
// or of different sizes, cost nothing more (their comparison stops at once). False once the
// budget is spent. (Deep comparisons cost one step each: 290 `event == event` within an
// expression's length walked a 512 KiB event 290 times.)
bool ChargeComparison(const Json& a, const Json& b, Budget& budget) {
  if (a.is_string() && b.is_string()) {
    return budget.ChargeBytes(
        std::min(a.get_ref<const std::string&>().size(), b.get_ref<const std::string&>().size()));
  }
  if (a.type() == b.type() && a.is_structured() && a.size() == b.size()) return budget.Charge(a);
  return !budget.exceeded();
}

// A value during evaluation: a view into a variable (evaluating `event.data.x` copies
// nothing) or a value the evaluation made.
class Value {
 public:
  Value() = default;
  Value(Json owned) : owned_(std::move(owned)) {}  // NOLINT: implicit by design
  template <typename T, typename = std::enable_if_t<std::is_arithmetic_v<T>>>
  Value(T scalar) : owned_(scalar) {}  // NOLINT: booleans and numbers, as Json takes them
  static Value Of(const Json* j) {
    Value v;
    v.ref_ = j;
    return v;
  }
  const Json& operator*() const { return ref_ ? *ref_ : owned_; }
  const Json* operator->() const { return &**this; }
  // `part` points into this value; the result stays valid after this value is gone.
  Value Part(const Json* part) && {
    if (!part) return Value();
    if (ref_) return Of(part);
    return Value(std::move(*const_cast<Json*>(part)));  // part of owned_, which is ours
  }
  Json Take() && { return ref_ ? *ref_ : std::move(owned_); }

 private:
  Json owned_;
  const Json* ref_ = nullptr;
};

Json Arithmetic(Op op, const Json& a, const Json& b, Budget& budget) {
  if (op == Op::kAdd) {
    if (a.is_string() || b.is_string()) {
      // Charged before the text is made: KeyText of a list or object dumps all of it.
      if (!budget.Charge(a) || !budget.Charge(b)) return nullptr;
      return KeyText(a) + KeyText(b);
    }
    if (a.is_array() && b.is_array()) {
      if (!budget.Charge(a) || !budget.Charge(b)) return nullptr;
      Json out = a;
      out.insert(out.end(), b.begin(), b.end());
      return out;
    }
  }
  if (!a.is_number() || !b.is_number()) return nullptr;
  if (a.is_number_integer() && b.is_number_integer()) {
    // Integer results that overflow are null, like every other result that has no value;
    // so are those of integers past int64's range (get<int64_t> wrapped them: 2^64-1 + 1
    // was 0).
    const std::optional<int64_t> ax = Int64Of(a), by = Int64Of(b);
    if (!ax || !by) return nullptr;
    const int64_t x = *ax, y = *by;
    int64_t r = 0;
    bool overflow = false;
    switch (op) {
      case Op::kAdd:
        overflow = __builtin_add_overflow(x, y, &r);
        break;
      case Op::kSub:
        overflow = __builtin_sub_overflow(x, y, &r);
        break;
      case Op::kMul:
        overflow = __builtin_mul_overflow(x, y, &r);
        break;
      case Op::kDiv:
      case Op::kMod:
        if (y == 0 || (x == INT64_MIN && y == -1)) return nullptr;
        r = op == Op::kDiv ? x / y : x % y;
        break;
      default:
        return nullptr;
    }
    return overflow ? Json(nullptr) : Json(r);
  }
  const double x = a.get<double>(), y = b.get<double>();
  switch (op) {
    case Op::kAdd:
      return x + y;
    case Op::kSub:
      return x - y;
    case Op::kMul:
      return x * y;
    case Op::kDiv:
      return y == 0 ? Json(nullptr) : Json(x / y);
    default:
      return nullptr;
  }
}

Value Eval(const Node& n, const Variables& vars, Budget& budget);

Value Call(const Node& n, const Variables& vars, Budget& budget) {
  if (n.name == "has") {
    const Node& member = *n.args[0];
    if (member.op != Op::kMember) return Value();  // refused at compile; never a null node
    Value of = Eval(*member.args[0], vars, budget);
    return of->is_object() && of->contains(member.name);
  }
  Value v = Eval(*n.args[0], vars, budget);
  if (n.name == "size") {
    if (v->is_string()) {
      // Counting a string's characters reads all of it: charged as other string functions are.
      const std::string& text = v->get_ref<const std::string&>();
      if (!budget.ChargeBytes(text.size())) return Value();
      return Utf8Length(text);
    }
    if (v->is_array() || v->is_object()) return v->size();
    return Value();
  }
  if (!v->is_string()) return Value();  // the rest take strings
  const std::string& text = v->get_ref<const std::string&>();
  if (!budget.ChargeBytes(text.size())) return Value();
  if (n.name == "b64decode") {
    auto decoded = crypto::Base64Decode(text);
    return decoded ? Json(*decoded) : Json(nullptr);
  }
  if (n.name == "json_parse") {
    // Event data is untrusted: text nested too deep (or breaking any other limit of a
    // request body) is null like any other text that does not decode.
    auto parsed = ParseUntrustedJson(text, kJsonParseLimits);
    return parsed.ok() ? std::move(*parsed) : Json(nullptr);
  }
  std::string s = text;  // lowercase / uppercase
  for (char& c : s) {
    c = static_cast<char>(n.name == "lowercase" ? std::tolower(static_cast<unsigned char>(c))
                                                : std::toupper(static_cast<unsigned char>(c)));
  }
  return Json(std::move(s));
}

Value Eval(const Node& n, const Variables& vars, Budget& budget) {
  // Past the budget every node is null at once, so the rest unwinds without work.
  if (!budget.Step()) return Value();
  auto eval = [&](size_t arg) { return Eval(*n.args[arg], vars, budget); };
  switch (n.op) {
    case Op::kLiteral:
      return Value::Of(&n.literal);
    case Op::kVariable:
      return Value::Of(vars.Find(n.name));  // null when there is no such variable
    case Op::kMember: {
      Value of = eval(0);
      if (!of->is_object()) return Value();
      auto it = of->find(n.name);
      return std::move(of).Part(it == of->end() ? nullptr : &*it);
    }
    case Op::kIndex: {
      Value of = eval(0), at = eval(1);
      if (of->is_object() && at->is_string()) {
        auto it = of->find(at->get_ref<const std::string&>());
        return std::move(of).Part(it == of->end() ? nullptr : &*it);
      }
      if (of->is_array() && at->is_number_integer()) {
        const int64_t i = Int64Of(*at).value_or(-1);
        bool inside = i >= 0 && i < static_cast<int64_t>(of->size());
        return std::move(of).Part(inside ? &(*of)[static_cast<size_t>(i)] : nullptr);
      }
      return Value();
    }
    case Op::kList: {
      Json out = Json::array();
      for (size_t i = 0; i < n.args.size(); ++i) {
        Value item = eval(i);
        if (!budget.Charge(*item)) return Value();
        out.push_back(std::move(item).Take());
      }
      return out;
    }
    case Op::kCall:
      return Call(n, vars, budget);
    case Op::kNot:
      return !IsTrue(*eval(0));
    case Op::kNeg: {
      Value v = eval(0);
      if (v->is_number_integer()) {
        const std::optional<int64_t> i = Int64Of(*v);
        return !i || *i == INT64_MIN ? Json(nullptr) : Json(-*i);
      }
      if (v->is_number()) return -v->get<double>();
      return Value();
    }
    case Op::kAnd:
      return IsTrue(*eval(0)) && IsTrue(*eval(1));
    case Op::kOr:
      return IsTrue(*eval(0)) || IsTrue(*eval(1));
    case Op::kEq:
    case Op::kNe: {
      Value a = eval(0), b = eval(1);
      if (!ChargeComparison(*a, *b, budget)) return Value();
      return Equal(*a, *b) == (n.op == Op::kEq);
    }
    case Op::kLt:
    case Op::kLe:
    case Op::kGt:
    case Op::kGe: {
      Value a = eval(0), b = eval(1);
      if (!ChargeComparison(*a, *b, budget)) return Value();
      auto c = Compare(*a, *b);
      if (!c) return false;
      if (n.op == Op::kLt) return *c < 0;
      if (n.op == Op::kLe) return *c <= 0;
      if (n.op == Op::kGt) return *c > 0;
      return *c >= 0;
    }
    case Op::kIn: {
      Value needle = eval(0), hay = eval(1);
      if (hay->is_array()) {
        if (!budget.Step(hay->size())) return Value();
        for (const auto& item : *hay) {
          if (!ChargeComparison(*needle, item, budget)) return Value();
          if (Equal(*needle, item)) return true;
        }
        return false;
      }
      if (hay->is_object() && needle->is_string()) {
        return hay->contains(needle->get_ref<const std::string&>());
      }
      return false;
    }
    case Op::kAdd:
    case Op::kSub:
    case Op::kMul:
    case Op::kDiv:
    case Op::kMod: {
      Value a = eval(0), b = eval(1);
      return Arithmetic(n.op, *a, *b, budget);
    }
  }
  return Value();
}

// The whole evaluation: null once it went over its budget, whatever was made so far.
Json EvaluateWithBudget(const Node& root, const Variables& vars) {
  Budget budget;
  Value v = Eval(root, vars, budget);
  return budget.exceeded() ? Json(nullptr) : std::move(v).Take();
}

// Whether `n` names the variable `variable` anywhere.
bool Names(const Node& n, std::string_view variable) {
  if (n.op == Op::kVariable) return n.name == variable;
  return std::any_of(n.args.begin(), n.args.end(),
                     [&](const std::unique_ptr<Node>& arg) { return Names(*arg, variable); });
}

// The fields of `n` when it is a field path of the variable `variable` (`v.a`, `v["a"]`).
bool PathOf(const Node& n, std::string_view variable, std::vector<std::string>* path) {
  if (n.op == Op::kVariable) return n.name == variable;
  if (n.op == Op::kMember) {
    if (!PathOf(*n.args[0], variable, path)) return false;
    path->push_back(n.name);
    return true;
  }
  if (n.op == Op::kIndex && n.args[1]->op == Op::kLiteral && n.args[1]->literal.is_string()) {
    if (!PathOf(*n.args[0], variable, path)) return false;
    path->push_back(n.args[1]->literal.get<std::string>());
    return true;
  }
  return false;
}

// Expression::RequiredKey of the tree at `n`: `&&` is true only when both sides are, `==`
// only when its sides are equal; any other node promises nothing. The sides it evaluates
// share `budget`: once it is spent, no key.
std::optional<std::string> RequiredKeyOf(const Node& n, std::string_view variable,
                                         const Variables& known, Budget& budget) {
  if (n.op == Op::kAnd) {
    if (auto key = RequiredKeyOf(*n.args[0], variable, known, budget)) return key;
    return RequiredKeyOf(*n.args[1], variable, known, budget);
  }
  if (n.op != Op::kEq) return std::nullopt;
  for (size_t side : {0, 1}) {
    const Node& other = *n.args[1 - side];
    std::vector<std::string> path;
    if (!PathOf(*n.args[side], variable, &path) || path.empty() || path.size() > kMaxIndexDepth ||
        Names(other, variable)) {
      continue;
    }
    Value v = Eval(other, known, budget);
    if (budget.exceeded()) return std::nullopt;
    if (auto key = IndexKey(path, std::move(v).Take())) return key;
  }
  return std::nullopt;
}

void AddNames(const Node& node, std::set<std::string>* names) {
  if (node.op == Op::kVariable) names->insert(node.name);
  for (const auto& arg : node.args) AddNames(*arg, names);
}

class TreeExpression final : public Expression {
 public:
  TreeExpression(std::string source, std::unique_ptr<Node> root)
      : Expression(std::move(source)), root_(std::move(root)) {}
  Json EvaluateIn(const Variables& vars) const override { return EvaluateWithBudget(*root_, vars); }
  std::optional<std::string> RequiredKeyIn(std::string_view variable,
                                           const Variables& known) const override {
    Budget budget(kMaxRequiredKeySteps, kMaxRequiredKeyBytes);
    return RequiredKeyOf(*root_, variable, known, budget);
  }
  void AddVariableNames(std::set<std::string>* names) const override { AddNames(*root_, names); }

 private:
  std::unique_ptr<Node> root_;
};

}  // namespace

Variables Variables::Of(const Json& object) {
  Variables vars;
  if (object.is_object()) {
    // Object iterators' keys refer to the object's own keys, so the views stay valid.
    for (auto it = object.begin(); it != object.end(); ++it) {
      vars.vars_.emplace_back(it.key(), &it.value());
    }
  }
  return vars;
}

const Json* Variables::Find(std::string_view name) const {
  for (const auto& [n, value] : vars_) {
    if (n == name) return value;
  }
  return nullptr;
}

Json Expression::Evaluate(const Variables& vars) const { return EvaluateIn(vars); }

Json Expression::Evaluate(const Json& object) const { return EvaluateIn(Variables::Of(object)); }

bool Expression::Matches(const Variables& vars) const { return IsTrue(EvaluateIn(vars)); }

bool Expression::Matches(const Json& object) const {
  return IsTrue(EvaluateIn(Variables::Of(object)));
}

std::optional<std::string> Expression::RequiredKey(std::string_view variable,
                                                   const Variables& known) const {
  return RequiredKeyIn(variable, known);
}

std::set<std::string> Expression::VariableNames() const {
  std::set<std::string> names;
  AddVariableNames(&names);
  return names;
}

Status RefuseUnknownVariables(const Expression& e,
                              std::initializer_list<std::string_view> allowed) {
  for (const std::string& name : e.VariableNames()) {
    if (std::find(allowed.begin(), allowed.end(), name) != allowed.end()) continue;
    std::string sees;
    for (std::string_view a : allowed) sees += (sees.empty() ? "" : " and ") + std::string(a);
    return InvalidArgument("unknown variable '" + name + "' (this expression sees " + sees + ")");
  }
  return Status::Ok();
}

Result<std::unique_ptr<Expression>> Compile(std::string_view source) {
  if (source.size() > kMaxExpressionLength) {
    return InvalidArgument("expression longer than " + std::to_string(kMaxExpressionLength) +
                           " characters");
  }
  Parser parser(source);
  ASSIGN_OR_RETURN(auto root, parser.Parse());
  return std::unique_ptr<Expression>(
      std::make_unique<TreeExpression>(std::string(source), std::move(root)));
}

std::string KeyText(const Json& value) {
  if (value.is_null()) return "";
  if (value.is_string()) return value.get<std::string>();
  // Strings inside lists or objects may hold bytes that are not UTF-8; never throw on them.
  return value.dump(-1, ' ', false, Json::error_handler_t::replace);
}

std::string Key(const Json& value) {
  std::string text = KeyText(value);
  if (text.size() > kMaxKeyBytes || !IsUtf8WithoutNul(text)) {
    return "sha256:" + crypto::Sha256Hex(text);
  }
  return text;
}

namespace {

// Integers from -2^53 to 2^53 (exclusive) are keyed by value: beyond, a double no longer holds
// each integer, and `==` compares an integer with a double as doubles.
constexpr int64_t kExactDoubles = int64_t{1} << 53;

void CollectKeys(const Json& object, std::vector<std::string>* path, std::vector<std::string>* keys,
                 bool* complete) {
  for (auto it = object.begin(); it != object.end() && *complete; ++it) {
    path->push_back(it.key());
    if (it->is_object()) {
      if (path->size() < kMaxIndexDepth) CollectKeys(*it, path, keys, complete);
    } else if (auto key = IndexKey(*path, *it)) {
      if (keys->size() == kMaxIndexKeys) {
        *complete = false;
      } else {
        keys->push_back(std::move(*key));
      }
    }
    path->pop_back();
  }
}

}  // namespace

std::optional<std::string> IndexKey(const std::vector<std::string>& path, const Json& value) {
  // The value is looked at before the path is copied: an event's null, boolean and array
  // leaves (no key) under one long path cost nothing each.
  Json leaf;
  if (value.is_string()) {
    leaf = value;
  } else if (value.is_number_integer()) {
    const std::optional<int64_t> i = Int64Of(value);
    if (!i || *i <= -kExactDoubles || *i >= kExactDoubles) return std::nullopt;
    leaf = *i;
  } else if (value.is_number_float()) {
    const double d = value.get<double>();
    if (!std::isfinite(d) || d != std::trunc(d) || std::fabs(d) >= double(kExactDoubles)) {
      return std::nullopt;
    }
    leaf = static_cast<int64_t>(d);
  } else {
    return std::nullopt;
  }
  Json key(path);
  key.push_back(std::move(leaf));
  // Distinct paths and values make distinct texts; a long one is its digest (Key).
  return Key(Json(key.dump(-1, ' ', false, Json::error_handler_t::replace)));
}

bool IndexKeys(const Json& value, std::vector<std::string>* keys) {
  keys->clear();
  if (!value.is_object()) return true;
  std::vector<std::string> path;
  bool complete = true;
  CollectKeys(value, &path, keys, &complete);
  return complete;
}

}  // namespace funcky::expr
