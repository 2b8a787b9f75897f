// The statement spelling each database gets from the one store's SQL (sql::Rewrite), and
// the reading of cells as each backend returns them.
#include "coordinator/store/sql/sql.h"

#include <cstdint>
#include <limits>

#include <gtest/gtest.h>

namespace funcky::store::sql {
namespace {

TEST(SqlRewrite, PostgresKeepsCastsAndLocksAndExpandsLists) {
  EXPECT_EQ(Rewrite("SELECT id FROM q WHERE a = $1::text AND id IN @ids($2) {FOR UPDATE}",
                    Dialect::kPostgres),
            "SELECT id FROM q WHERE a = $1::text AND id = ANY "
            "(ARRAY(SELECT jsonb_array_elements_text($2::jsonb)::bigint)) FOR UPDATE");
  EXPECT_EQ(Rewrite("x IN @list($12)", Dialect::kPostgres),
            "x = ANY (ARRAY(SELECT jsonb_array_elements_text($12::jsonb)))");
  EXPECT_EQ(Rewrite("x NOT IN @list($1)", Dialect::kPostgres),
            "x <> ALL (ARRAY(SELECT jsonb_array_elements_text($1::jsonb)))");
  EXPECT_EQ(Rewrite("SELECT 1 FROM @list($1) l", Dialect::kPostgres),
            "SELECT 1 FROM (SELECT jsonb_array_elements_text($1::jsonb)) l");
}

TEST(SqlRewrite, SqliteNumbersParametersAndDropsCastsAndLocks) {
  EXPECT_EQ(Rewrite("UPDATE r SET e = $2::jsonb WHERE id IN @list($1) {FOR UPDATE SKIP LOCKED}",
                    Dialect::kSqlite),
            "UPDATE r SET e = ?2 WHERE id IN (SELECT value FROM json_each(?1)) ");
  EXPECT_EQ(Rewrite("a = $10::bigint[] AND b = $1", Dialect::kSqlite), "a = ?10 AND b = ?1");
}

TEST(SqlRewrite, StringLiteralsAreLeftAlone) {
  EXPECT_EQ(Rewrite("SELECT '{x} $1 ::t @list($1)', $1", Dialect::kSqlite),
            "SELECT '{x} $1 ::t @list($1)', ?1");
}

TEST(SqlRewrite, MalformedConventionsAreProgrammingErrors) {
  EXPECT_THROW(Rewrite("SELECT 'open", Dialect::kSqlite), std::logic_error);
  EXPECT_THROW(Rewrite("SELECT 1 {FOR UPDATE", Dialect::kPostgres), std::logic_error);
  EXPECT_THROW(Rewrite("x IN @set($1)", Dialect::kPostgres), std::logic_error);
}

TEST(SqlRow, ReadsTextFromPostgresAndIntegersFromSqlite) {
  Rows rows(4, {std::string("42"), std::string("t"), int64_t{7}, std::monostate{}});
  ASSERT_EQ(rows.size(), 1u);
  Row row = rows[0];
  EXPECT_EQ(row.Int(0), 42);
  EXPECT_TRUE(row.Bool(1));
  EXPECT_EQ(row.Text(2), "7");
  EXPECT_TRUE(row.Bool(2));
  EXPECT_TRUE(row.Null(3));
  EXPECT_EQ(row.OptInt(3), std::nullopt);
  EXPECT_TRUE(row.JsonCol(3).is_null());
  Rows bad(1, {std::string("4x")});
  EXPECT_THROW(bad[0].Int(0), std::runtime_error);
}

TEST(SqlValue, OptionalsAreNullWhenAbsentAndJsonNullIsNull) {
  EXPECT_TRUE(std::holds_alternative<std::monostate>(Value(std::optional<int>()).get()));
  EXPECT_EQ(std::get<int64_t>(Value(std::optional<int>(3)).get()), 3);
  EXPECT_TRUE(std::holds_alternative<std::monostate>(JsonValue(nullptr).get()));
  EXPECT_EQ(std::get<std::string>(JsonValue({{"a", 1}}).get()), R"({"a":1})");
  EXPECT_EQ(std::get<std::string>(ListValue({"a", "b"}).get()), R"(["a","b"])");
}

// Records the statements it is given instead of running them.
class RecordingTx : public Tx {
 public:
  Rows Query(std::string_view sql, Params params) override {
    Exec(sql, params);
    return {};
  }
  int64_t Exec(std::string_view sql, Params params) override {
    statements.push_back({std::string(sql), std::vector<Value>(params.begin(), params.end())});
    return 1;
  }
  void Wait() override {}
  void LockKey(std::string_view, bool) override {}
  std::vector<std::pair<std::string, std::vector<Value>>> statements;
};

TEST(SqlInsertLater, RowsOfOneInsertShareStatementsOfAtMost64RowsInOrder) {
  RecordingTx tx;
  for (int i = 0; i < 70; ++i) {
    tx.InsertLater("INSERT INTO a (x, y)", "($1, $2::jsonb)", {i, "{}"});
    if (i == 1) tx.InsertLater("INSERT INTO b (z)", "($1)", {"only"});
  }
  EXPECT_TRUE(tx.statements.empty()) << "nothing runs before the flush";
  tx.FlushInserts();
  ASSERT_EQ(tx.statements.size(), 3u);
  const auto& [first, first_params] = tx.statements[0];
  EXPECT_EQ(first.rfind("INSERT INTO a (x, y) VALUES ($1, $2::jsonb), ($3, $4::jsonb), ", 0), 0u)
      << first;
  EXPECT_NE(first.find("($127, $128::jsonb)"), std::string::npos) << "64 rows";
  EXPECT_EQ(first.find("$129"), std::string::npos);
  ASSERT_EQ(first_params.size(), 128u);
  EXPECT_EQ(std::get<int64_t>(first_params[126].get()), 63);
  EXPECT_EQ(tx.statements[1].first,
            "INSERT INTO a (x, y) VALUES ($1, $2::jsonb), ($3, $4::jsonb), "
            "($5, $6::jsonb), ($7, $8::jsonb), ($9, $10::jsonb), "
            "($11, $12::jsonb)");
  EXPECT_EQ(std::get<int64_t>(tx.statements[1].second[0].get()), 64);
  EXPECT_EQ(tx.statements[2].first, "INSERT INTO b (z) VALUES ($1)");
  tx.FlushInserts();
  EXPECT_EQ(tx.statements.size(), 3u) << "flushed once";
}

}  // namespace
}  // namespace funcky::store::sql

namespace funcky::store {
namespace {

// Two payloads are one event sent twice when they are equal but for `ts`; an integer and an
// unsigned integer are compared by value (nlohmann's == casts the unsigned one, so -1 was
// held equal to 2^64 - 1), and 1 and 1.0 stay equal (a number read back from jsonb).
TEST(SameEvent, EqualButForTsWithIntegersComparedByValue) {
  const uint64_t max = std::numeric_limits<uint64_t>::max();
  const auto event = [](Json data, Json ts = 1) {
    return Json{{"name", "a/b"}, {"data", std::move(data)}, {"ts", std::move(ts)}};
  };
  EXPECT_TRUE(SameEvent(event({{"n", 1}}), event({{"n", 1}}, 2)));
  EXPECT_TRUE(SameEvent(event({{"n", 5}}), event({{"n", 5u}})));
  EXPECT_TRUE(SameEvent(event({{"n", 1}}), event({{"n", 1.0}})));
  EXPECT_TRUE(
      SameEvent(event(Json::parse(R"({"a": [1, {"b": 2}]})")), event({{"a", {1, {{"b", 2}}}}})));
  EXPECT_FALSE(Json(-1) != Json(max)) << "nlohmann's == as this test knows it";
  EXPECT_FALSE(SameEvent(event({{"n", -1}}), event({{"n", max}})));
  EXPECT_FALSE(SameEvent(event({{"n", max}}), event({{"n", -1}})));
  EXPECT_FALSE(SameEvent(event({{"a", {-1}}}), event({{"a", {max}}})));
  EXPECT_FALSE(SameEvent(event({{"n", 1}}), event({{"n", 2}})));
  EXPECT_FALSE(SameEvent(event({{"n", 1}}), event({{"m", 1}})));
  EXPECT_FALSE(SameEvent(event({{"n", 1}}), event({{"n", 1}, {"m", 1}})));
  EXPECT_FALSE(SameEvent(event({{"n", "1"}}), event({{"n", 1}})));
}

}  // namespace
}  // namespace funcky::store
