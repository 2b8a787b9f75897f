#include "coordinator/store/sql/sql.h"

#include <algorithm>
#include <cctype>
#include <charconv>
#include <stdexcept>

namespace funcky::store::sql {

namespace {

bool IsIdentChar(char c) { return std::isalnum(static_cast<unsigned char>(c)) || c == '_'; }

// Reads the digits at sql[i…]; returns where they end.
size_t Digits(std::string_view sql, size_t i) {
  while (i < sql.size() && std::isdigit(static_cast<unsigned char>(sql[i]))) ++i;
  return i;
}

}  // namespace

std::string Rewrite(std::string_view sql, Dialect dialect) {
  const bool pg = dialect == Dialect::kPostgres;
  std::string out;
  out.reserve(sql.size() + 16);
  for (size_t i = 0; i < sql.size();) {
    const char c = sql[i];
    if (c == '\'') {  // a string literal, copied as it is
      const size_t end = sql.find('\'', i + 1);
      if (end == std::string_view::npos) throw std::logic_error("unterminated string in SQL");
      out.append(sql.substr(i, end + 1 - i));
      i = end + 1;
    } else if (c == '{') {  // PostgreSQL only
      const size_t end = sql.find('}', i);
      if (end == std::string_view::npos) throw std::logic_error("unterminated { in SQL");
      if (pg) out.append(sql.substr(i + 1, end - i - 1));
      i = end + 1;
    } else if (c == '@') {  // @list($N) or @ids($N)
      const bool ids = sql.substr(i, 6) == "@ids($";
      if (!ids && sql.substr(i, 7) != "@list($") throw std::logic_error("unknown @ in SQL");
      const size_t digits = i + (ids ? 6 : 7);
      const size_t end = Digits(sql, digits);
      if (end == digits || end >= sql.size() || sql[end] != ')') {
        throw std::logic_error("malformed @list/@ids in SQL");
      }
      const std::string_view n = sql.substr(digits, end - digits);
      if (pg) {
        // "x IN list" as "x = ANY (array)": the planner then looks the elements up in x's
        // index, where for IN (subquery) it guesses 100 rows and scans middling tables.
        const std::string_view in = " IN ", not_in = " NOT IN ";
        const std::string_view head(out);
        const bool negated = head.ends_with(not_in);
        const bool array = negated || head.ends_with(in);
        if (array) {
          out.resize(out.size() - (negated ? not_in : in).size());
          out += negated ? " <> ALL (ARRAY" : " = ANY (ARRAY";
        }
        out += "(SELECT jsonb_array_elements_text($";
        out += n;
        out += ids ? "::jsonb)::bigint)" : "::jsonb))";
        if (array) out += ")";
      } else {
        out += "(SELECT value FROM json_each(?";
        out += n;
        out += "))";
      }
      i = end + 1;
    } else if (c == ':' && i + 1 < sql.size() && sql[i + 1] == ':') {  // a cast
      size_t end = i + 2;
      while (end < sql.size() && IsIdentChar(sql[end])) ++end;
      if (sql.substr(end, 2) == "[]") end += 2;
      if (pg) out.append(sql.substr(i, end - i));
      i = end;
    } else if (c == '$' && i + 1 < sql.size() &&
               std::isdigit(static_cast<unsigned char>(sql[i + 1]))) {
      const size_t end = Digits(sql, i + 1);
      out += pg ? '$' : '?';
      out.append(sql.substr(i + 1, end - i - 1));
      i = end;
    } else {
      out += c;
      ++i;
    }
  }
  return out;
}

namespace {
constexpr std::string_view kConflict = "transaction conflict (";
}  // namespace

Status Conflict(std::string_view sqlstate) {
  return Unavailable(std::string(kConflict) + std::string(sqlstate) + "), retry");
}

bool IsConflict(const Status& s) {
  return s.code() == StatusCode::kUnavailable && s.message().starts_with(kConflict);
}

namespace {
constexpr std::string_view kUnmet = "a required row was not found";
}  // namespace

Status Unmet() { return FailedPrecondition(std::string(kUnmet)); }

bool IsUnmet(const Status& s) {
  return s.code() == StatusCode::kFailedPrecondition && s.message() == kUnmet;
}

void Tx::Require(std::string_view sql, Params params, size_t rows, std::function<void(Rows)> done) {
  Rows got = Query(sql, params);
  if (got.size() < rows) throw UnmetRequirement();
  done(std::move(got));
}

namespace {

// A string that is not UTF-8 (one the coordinator cut or built, never one it parsed) is
// written with U+FFFD for its bad bytes: strict, the write threw, and the transition holding it
// could never be recorded (its call was made again and again).
std::string Dump(const Json& j) { return j.dump(-1, ' ', false, Json::error_handler_t::replace); }

}  // namespace

Value JsonValue(const Json& j) {
  if (j.is_null()) return nullptr;
  return Dump(j);
}

Value ListValue(const std::vector<std::string>& items) { return Dump(Json(items)); }

std::string AnyRow(std::string_view from_where, std::string_view order) {
  return "((SELECT 1 FROM " + std::string(from_where) + " ORDER BY " + std::string(order) +
         " LIMIT 1) IS NOT NULL)";
}

int64_t Row::Int(int c) const {
  const Cell& cell = cells_[c];
  if (const auto* i = std::get_if<int64_t>(&cell)) return *i;
  if (const auto* s = std::get_if<std::string>(&cell)) {
    int64_t v = 0;
    auto [end, ec] = std::from_chars(s->data(), s->data() + s->size(), v);
    if (ec != std::errc() || end != s->data() + s->size()) {
      throw std::runtime_error("column " + std::to_string(c) + " is not an integer: " + *s);
    }
    return v;
  }
  return 0;
}

bool Row::Bool(int c) const {
  const Cell& cell = cells_[c];
  if (const auto* i = std::get_if<int64_t>(&cell)) return *i != 0;
  if (const auto* s = std::get_if<std::string>(&cell)) {
    return *s == "t" || *s == "true" || *s == "1";
  }
  return false;
}

std::string Row::Text(int c) const {
  const Cell& cell = cells_[c];
  if (const auto* s = std::get_if<std::string>(&cell)) return *s;
  if (const auto* i = std::get_if<int64_t>(&cell)) return std::to_string(*i);
  return {};
}

Json Row::JsonCol(int c) const {
  if (Null(c)) return nullptr;
  return Json::parse(Text(c), nullptr, /*allow_exceptions=*/false);
}

std::optional<int64_t> Row::OptInt(int c) const {
  if (Null(c)) return std::nullopt;
  return Int(c);
}

std::optional<std::string> Row::OptText(int c) const {
  if (Null(c)) return std::nullopt;
  return Text(c);
}

int64_t Tx::Count(std::string_view sql, Params params) {
  Rows rows = Query(sql, params);
  return rows.empty() ? 0 : rows[0].Int(0);
}

namespace {

// The highest $N in `row`: the parameters of one row.
size_t Width(std::string_view row) {
  size_t width = 0;
  for (size_t i = 0; i < row.size(); ++i) {
    if (row[i] != '$') continue;
    size_t n = 0;
    std::from_chars(row.data() + i + 1, row.data() + Digits(row, i + 1), n);
    width = std::max(width, n);
  }
  return width;
}

// `rows` copies of `row`, the parameters of copy r numbered from r * width + 1.
std::string ValuesList(std::string_view row, size_t rows, size_t width) {
  std::string out;
  for (size_t r = 0; r < rows; ++r) {
    if (r) out += ", ";
    for (size_t i = 0; i < row.size();) {
      const size_t end = row[i] == '$' ? Digits(row, i + 1) : i + 1;
      if (end > i + 1) {
        size_t n = 0;
        std::from_chars(row.data() + i + 1, row.data() + end, n);
        out += '$' + std::to_string(n + r * width);
      } else {
        out += row[i];
      }
      i = end;
    }
  }
  return out;
}

}  // namespace

void Rows::Append(Rows more) {
  if (more.columns_ == 0) return;
  if (columns_ == 0) columns_ = more.columns_;
  if (more.columns_ != columns_) throw std::logic_error("appending rows of other columns");
  cells_.insert(cells_.end(), std::make_move_iterator(more.cells_.begin()),
                std::make_move_iterator(more.cells_.end()));
}

std::vector<std::pair<std::string, std::vector<Value>>> Tx::RowsStatements(
    std::string_view head, std::string_view row, std::string_view tail,
    const std::vector<Value>& params) {
  // At most this many rows a statement: the statements stay few and alike (backends cache
  // them by text), far under any database's limit on parameters.
  constexpr size_t kMaxRows = 64;
  const size_t width = Width(row);
  if (width == 0 || params.size() % width != 0) {
    throw std::logic_error("RowsStatements: parameters do not fill whole rows");
  }
  const size_t rows = params.size() / width;
  std::vector<std::pair<std::string, std::vector<Value>>> out;
  for (size_t first = 0; first < rows; first += kMaxRows) {
    const size_t n = std::min(kMaxRows, rows - first);
    std::string sql(head);
    sql += " VALUES ";
    sql += ValuesList(row, n, width);
    if (!tail.empty()) {
      sql += ' ';
      sql += tail;
    }
    out.emplace_back(std::move(sql), std::vector<Value>(params.begin() + first * width,
                                                        params.begin() + (first + n) * width));
  }
  return out;
}

Rows Tx::QueryRows(std::string_view head, std::string_view row, std::string_view tail,
                   const std::vector<Value>& params) {
  Rows out;
  for (const auto& [sql, chunk] : RowsStatements(head, row, tail, params)) {
    out.Append(Query(sql, chunk));
  }
  return out;
}

void Tx::InsertLater(std::string_view insert, std::string_view row, std::vector<Value> params,
                     std::string_view tail) {
  auto it = std::find_if(later_.begin(), later_.end(), [&](const Later& l) {
    return l.insert == insert && l.row == row && l.tail == tail;
  });
  if (it == later_.end()) {
    later_.push_back({std::string(insert), std::string(row), std::string(tail), {}});
    it = later_.end() - 1;
  }
  it->params.insert(it->params.end(), std::make_move_iterator(params.begin()),
                    std::make_move_iterator(params.end()));
}

void Tx::SendRows(std::string_view head, std::string_view row, const std::vector<Value>& params,
                  std::string_view tail) {
  for (const auto& [sql, chunk] : RowsStatements(head, row, tail, params)) Send(sql, chunk);
}

void Tx::FlushInserts() {
  std::vector<Later> later = std::move(later_);
  later_.clear();
  for (const Later& l : later) SendRows(l.insert, l.row, l.params, l.tail);
}

}  // namespace funcky::store::sql
