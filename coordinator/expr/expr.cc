#include "coordinator/expr/expr.h"

#include <cctype>
#include <vector>

#include <nlohmann/json.hpp>

namespace funcky::expr {

using Json = nlohmann::json;

namespace {

// The syntax tree: a node is a literal, a variable, a member access or a sum.
struct Node {
  enum Kind { kLiteral, kVariable, kMember, kAdd } kind;
  Json literal;      // kLiteral
  std::string name;  // kVariable, kMember (the field)
  std::unique_ptr<Node> lhs, rhs;
};

class Parser {
 public:
  explicit Parser(std::string_view src) : src_(src) {}

  Result<std::unique_ptr<Node>> Parse() {
    ASSIGN_OR_RETURN(auto node, Sum());
    SkipSpace();
    if (pos_ != src_.size()) return Error("unexpected '" + std::string(1, src_[pos_]) + "'");
    return node;
  }

 private:
  Status Error(const std::string& what) const {
    return InvalidArgument("at " + std::to_string(pos_ + 1) + ": " + what);
  }
  void SkipSpace() {
    while (pos_ < src_.size() && std::isspace(static_cast<unsigned char>(src_[pos_]))) ++pos_;
  }
  bool Eat(char c) {
    SkipSpace();
    if (pos_ < src_.size() && src_[pos_] == c) {
      ++pos_;
      return true;
    }
    return false;
  }
  static bool IdentStart(char c) { return std::isalpha(static_cast<unsigned char>(c)) || c == '_'; }
  static bool IdentChar(char c) {
    return IdentStart(c) || std::isdigit(static_cast<unsigned char>(c));
  }

  Result<std::unique_ptr<Node>> Sum() {
    ASSIGN_OR_RETURN(auto lhs, Postfix());
    while (Eat('+')) {
      ASSIGN_OR_RETURN(auto rhs, Postfix());
      auto add =
          std::make_unique<Node>(Node{Node::kAdd, nullptr, "", std::move(lhs), std::move(rhs)});
      lhs = std::move(add);
    }
    return lhs;
  }

  Result<std::unique_ptr<Node>> Postfix() {
    ASSIGN_OR_RETURN(auto node, Primary());
    for (;;) {
      if (Eat('.')) {
        SkipSpace();
        if (pos_ >= src_.size() || !IdentStart(src_[pos_])) {
          return Error("expected a field name after '.'");
        }
        node = Member(std::move(node), Identifier());
      } else if (Eat('[')) {
        SkipSpace();
        ASSIGN_OR_RETURN(Json key, StringLiteral());
        if (!Eat(']')) return Error("expected ']'");
        node = Member(std::move(node), key.get<std::string>());
      } else {
        return node;
      }
    }
  }

  static std::unique_ptr<Node> Member(std::unique_ptr<Node> of, std::string field) {
    return std::make_unique<Node>(
        Node{Node::kMember, nullptr, std::move(field), std::move(of), {}});
  }

  std::string Identifier() {
    size_t start = pos_;
    while (pos_ < src_.size() && IdentChar(src_[pos_])) ++pos_;
    return std::string(src_.substr(start, pos_ - start));
  }

  Result<Json> StringLiteral() {
    if (pos_ >= src_.size() || (src_[pos_] != '"' && src_[pos_] != '\'')) {
      return Error("expected a string");
    }
    const char quote = src_[pos_++];
    std::string out;
    while (pos_ < src_.size() && src_[pos_] != quote) {
      char c = src_[pos_++];
      if (c == '\\') {
        if (pos_ >= src_.size()) break;
        c = src_[pos_++];
        if (c == 'n')
          c = '\n';
        else if (c == 't')
          c = '\t';
      }
      out += c;
    }
    if (pos_ >= src_.size()) return Error("unterminated string");
    ++pos_;
    return Json(out);
  }

  Result<std::unique_ptr<Node>> Primary() {
    SkipSpace();
    if (pos_ >= src_.size()) return Error("unexpected end of expression");
    const char c = src_[pos_];
    if (c == '(') {
      ++pos_;
      ASSIGN_OR_RETURN(auto inner, Sum());
      if (!Eat(')')) return Error("expected ')'");
      return inner;
    }
    if (c == '"' || c == '\'') {
      ASSIGN_OR_RETURN(Json s, StringLiteral());
      return Literal(std::move(s));
    }
    if (std::isdigit(static_cast<unsigned char>(c)) || c == '-') {
      size_t start = pos_++;
      while (pos_ < src_.size() &&
             (std::isdigit(static_cast<unsigned char>(src_[pos_])) || src_[pos_] == '.')) {
        ++pos_;
      }
      Json n = Json::parse(src_.substr(start, pos_ - start), nullptr, false);
      if (!n.is_number()) {
        pos_ = start;
        return Error("malformed number");
      }
      return Literal(std::move(n));
    }
    if (IdentStart(c)) {
      std::string id = Identifier();
      if (id == "true") return Literal(true);
      if (id == "false") return Literal(false);
      if (id == "null") return Literal(nullptr);
      return std::make_unique<Node>(Node{Node::kVariable, nullptr, std::move(id), {}, {}});
    }
    return Error("unexpected '" + std::string(1, c) + "'");
  }

  static std::unique_ptr<Node> Literal(Json value) {
    return std::make_unique<Node>(Node{Node::kLiteral, std::move(value), "", {}, {}});
  }

  std::string_view src_;
  size_t pos_ = 0;
};

Json Eval(const Node& n, const Json& vars) {
  switch (n.kind) {
    case Node::kLiteral:
      return n.literal;
    case Node::kVariable: {
      auto it = vars.find(n.name);
      return it == vars.end() ? Json(nullptr) : *it;
    }
    case Node::kMember: {
      Json of = Eval(*n.lhs, vars);
      if (!of.is_object()) return nullptr;
      auto it = of.find(n.name);
      return it == of.end() ? Json(nullptr) : *it;
    }
    case Node::kAdd: {
      Json a = Eval(*n.lhs, vars), b = Eval(*n.rhs, vars);
      if (a.is_string() || b.is_string()) return KeyText(a) + KeyText(b);
      if (a.is_number_integer() && b.is_number_integer()) {
        return a.get<int64_t>() + b.get<int64_t>();
      }
      if (a.is_number() && b.is_number()) return a.get<double>() + b.get<double>();
      return nullptr;
    }
  }
  return nullptr;
}

class TreeExpression final : public Expression {
 public:
  TreeExpression(std::string source, std::unique_ptr<Node> root)
      : Expression(std::move(source)), root_(std::move(root)) {}
  Json Evaluate(const Json& vars) const override { return Eval(*root_, vars); }

 private:
  std::unique_ptr<Node> root_;
};

}  // namespace

Result<std::unique_ptr<Expression>> Compile(std::string_view source) {
  Parser parser(source);
  ASSIGN_OR_RETURN(auto root, parser.Parse());
  return std::unique_ptr<Expression>(
      std::make_unique<TreeExpression>(std::string(source), std::move(root)));
}

std::string KeyText(const Json& value) {
  if (value.is_null()) return "";
  if (value.is_string()) return value.get<std::string>();
  return value.dump();
}

}  // namespace funcky::expr
