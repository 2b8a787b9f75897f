// The key expressions and flow-control options of a function config.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "coordinator/expr/expr.h"
#include "coordinator/scheduler/flow.h"

namespace funcky {
namespace {

using Json = nlohmann::json;

struct KeyCase {
  std::string expression;
  std::string key;  // KeyText of the value
};

TEST(Expr, EvaluatesKeyExpressions) {
  const Json vars = {{"event",
                      {{"name", "crm/contact.updated"},
                       {"data", {{"tenant_id", "t-1"}, {"n", 7}, {"x", 1.5}, {"ok", true}}}}}};
  const std::vector<KeyCase> cases = {
      {"event.data.tenant_id", "t-1"},
      {"event.data.tenant_id + \"-\" + event.data.n", "t-1-7"},
      {"event.data['tenant_id']", "t-1"},
      {"event[\"data\"].n + 1", "8"},
      {"event.data.n + event.data.n", "14"},
      {"event.data.n + event.data.x", "8.5"},
      {"(event.data.n + 1) + 'x'", "8x"},
      {"event.data.ok", "true"},
      {"event.data.missing", ""},
      {"event.data.missing.deeper", ""},
      {"event.name.length", ""},  // a field of a string is missing, not an error
      {"event.data.n + '/' + event.data.ok", "7/true"},
      {"nothing.at.all", ""},
      {"'lit'", "lit"},
      {"  event . data . tenant_id  ", "t-1"},
      {"event.data.missing + 1", ""},  // null + number: null
      {"true", "true"},
      {"null", ""},
  };
  for (const auto& c : cases) {
    auto e = expr::Compile(c.expression);
    ASSERT_TRUE(e.ok()) << c.expression << ": " << e.status().ToString();
    EXPECT_EQ(expr::KeyText((*e)->Evaluate(vars)), c.key) << c.expression;
  }
}

struct ValueCase {
  std::string expression;
  Json want;
};

// The CEL subset of docs/protocol.md §8.3, value by value: comparisons, logic, precedence,
// functions, and what type mismatches and missing fields give (never an error).
TEST(Expr, EvaluatesTheCelSubset) {
  const Json vars = {
      {"event",
       {{"name", "app/user.created"},
        {"data",
         {{"n", 5},
          {"x", 2.5},
          {"s", "Hello"},
          {"ok", true},
          {"nil", nullptr},
          {"tags", {"a", "b"}},
          {"obj", {{"k", 1}}},
          {"user", "u1"}}}}},
      {"async", {{"name", "app/user.paid"}, {"data", {{"user", "u1"}, {"ok", false}}}}}};
  const std::vector<ValueCase> cases = {
      // literals
      {"1", 1},
      {"-3", -3},
      {"2.5", 2.5},
      {"'a'", "a"},
      {"\"b\"", "b"},
      {"true", true},
      {"false", false},
      {"null", nullptr},
      {"[1, 'x']", Json::array({1, "x"})},
      {"[]", Json::array()},
      // field access
      {"event.data.n", 5},
      {"event['data']['s']", "Hello"},
      {"event.data.tags[1]", "b"},
      {"event.data.tags[5]", nullptr},
      {"event.data.missing", nullptr},
      {"event.data.s.deeper", nullptr},
      {"nothing.at.all", nullptr},
      {"event.data.obj.k", 1},
      // comparisons
      {"event.data.n > 1", true},
      {"event.data.n >= 5", true},
      {"event.data.n < 5", false},
      {"event.data.n <= 4", false},
      {"event.data.n == 5", true},
      {"event.data.n == 5.0", true},
      {"event.data.n != 5", false},
      {"event.data.x < event.data.n", true},
      {"event.data.s == 'Hello'", true},
      {"'a' < 'b'", true},
      {"false < true", true},
      // mixed types and null: false, never an error
      {"event.data.s > 1", false},
      {"event.data.s == 5", false},
      {"event.data.s != 5", true},
      {"event.data.missing > 1", false},
      {"event.data.missing < 1", false},
      {"event.data.missing == null", true},
      {"event.data.nil == null", true},
      {"event.data.tags > 1", false},
      {"'5' == 5", false},
      // logic
      {"true && false", false},
      {"true || false", true},
      {"!true", false},
      {"!event.data.ok", false},
      {"!event.data.missing", true},
      {"event.data.n && true", false},
      {"event.data.s || true", true},
      {"async.data.user == event.data.user && async.data.ok == false", true},
      // precedence
      {"1 + 2 * 3", 7},
      {"(1 + 2) * 3", 9},
      {"true || false && false", true},
      {"(true || false) && false", false},
      {"1 + 2 == 3", true},
      {"!false && false", false},
      {"10 - 4 - 3", 3},
      {"7 % 4 + 1", 4},
      {"8 / 2 / 2", 2},
      {"-event.data.n + 1", -4},
      // arithmetic and strings
      {"event.data.x * 2", 5.0},
      {"event.data.s + ' ' + event.data.user", "Hello u1"},
      {"event.data.s + event.data.n", "Hello5"},
      {"1 / 0", nullptr},
      {"5 % 0", nullptr},
      {"event.data.s - 1", nullptr},
      {"event.data.missing + 1", nullptr},
      {"[1] + [2]", Json::array({1, 2})},
      // in
      {"'a' in event.data.tags", true},
      {"'z' in event.data.tags", false},
      {"'k' in event.data.obj", true},
      {"1 in event.data.s", false},
      {"2 in [1, 2.0]", true},
      // functions
      {"size(event.data.s)", 5},
      {"event.data.tags.size()", 2},
      {"size('héllo')", 5},
      {"size(event.data.obj)", 1},
      {"size(event.data.n)", nullptr},
      {"has(event.data.nil)", true},
      {"has(event.data.missing)", false},
      {"has(event.data.s.x)", false},
      {"lowercase(event.data.s)", "hello"},
      {"uppercase('a-b')", "A-B"},
      {"lowercase(event.data.n)", nullptr},
      {"size(event.data.tags) == 2 && has(event.data.obj)", true},
      {"b64decode('aGVsbG8=') == lowercase(event.data.s)", true},
      {"b64decode('aGVsbG8')", "hello"},  // unpadded
      {"b64decode('not base64!')", nullptr},
      {"b64decode(event.data.n)", nullptr},
      {"json_parse('{\"a\": [1, 2]}').a[1]", 2},
      {"json_parse('not json')", nullptr},
      {"json_parse(b64decode('eyJrIjoidiJ9')).k", "v"},
  };
  ASSERT_GE(cases.size(), 60u);
  for (const auto& c : cases) {
    auto e = expr::Compile(c.expression);
    ASSERT_TRUE(e.ok()) << c.expression << ": " << e.status().ToString();
    EXPECT_EQ((*e)->Evaluate(vars), c.want) << c.expression;
  }
  auto filter = expr::Compile("event.data.n > 1 && 'a' in event.data.tags");
  ASSERT_TRUE(filter.ok());
  EXPECT_TRUE((*filter)->Matches(vars));
  EXPECT_FALSE((*filter)->Matches({{"event", {{"data", {{"n", "7"}}}}}}));
  auto not_bool = expr::Compile("event.data.n");
  ASSERT_TRUE(not_bool.ok());
  EXPECT_FALSE((*not_bool)->Matches(vars)) << "only the boolean true matches";
}

TEST(Expr, KeyTextNeverThrowsOnBytesThatAreNotUtf8) {
  // Found by the fuzzer: a list holding a string with invalid UTF-8 made KeyText throw.
  const std::string source = std::string("[1, \"x\x01", 8) + std::string("\0\0\xca\"]", 5);
  auto e = expr::Compile(source);
  ASSERT_TRUE(e.ok()) << e.status().ToString();
  EXPECT_EQ(expr::KeyText((*e)->Evaluate(Json::object())).substr(0, 5), "[1,\"x");
}

// json_parse() on event data nested a million levels deep is null, as
// for any text that does not decode, and never a crash.
TEST(Expr, JsonParseOfDeeplyNestedTextIsNull) {
  std::string objects;
  for (int i = 0; i < 1'000'000; ++i) objects += "{\"a\":";
  objects += "1" + std::string(1'000'000, '}');
  const std::string arrays = std::string(1'000'000, '[') + std::string(1'000'000, ']');
  auto e = expr::Compile("json_parse(event.data.s)");
  ASSERT_TRUE(e.ok());
  auto filter = expr::Compile("json_parse(event.data.s) != null");
  ASSERT_TRUE(filter.ok());
  for (const std::string& deep : {arrays, objects, std::string(400'000, '[')}) {
    const Json vars = {{"event", {{"data", {{"s", deep}}}}}};
    EXPECT_EQ((*e)->Evaluate(vars), nullptr);
    EXPECT_FALSE((*filter)->Matches(vars));
  }
  const Json shallow = {{"event", {{"data", {{"s", "[[[1]]]"}}}}}};
  EXPECT_EQ((*e)->Evaluate(shallow), Json::parse("[[[1]]]"));
}

// A valid filter that concatenates a 100 KB field 300 times stops at
// the evaluation budget and does not match; smaller work under the budget is unchanged.
TEST(Expr, EvaluationOverItsBudgetStopsAndYieldsNull) {
  std::string source = "event.data.b";
  for (int i = 1; i < 300; ++i) source += "+event.data.b";
  auto concat = expr::Compile(source);
  ASSERT_TRUE(concat.ok()) << concat.status().ToString();
  auto filter = expr::Compile("size(" + source + ")>0");
  ASSERT_TRUE(filter.ok()) << filter.status().ToString();
  const Json vars = {
      {"event",
       {{"data", {{"b", std::string(100'000, 'x')}, {"big", std::string(100'000, 'x')}}}}}};
  EXPECT_EQ((*concat)->Evaluate(vars), nullptr);
  EXPECT_FALSE((*filter)->Matches(vars));

  // Three copies (300 KB in all) are well within the budget.
  auto three = expr::Compile("size(event.data.big + event.data.big + event.data.big)");
  ASSERT_TRUE(three.ok());
  EXPECT_EQ((*three)->Evaluate(vars), 300'000);
  // Lists of lists and list concatenation are charged too.
  std::string lists = "[event.data.big]";
  for (int i = 0; i < 100; ++i) lists += " + [event.data.big]";
  auto list_concat = expr::Compile("size(" + lists + ")");
  ASSERT_TRUE(list_concat.ok()) << list_concat.status().ToString();
  EXPECT_EQ((*list_concat)->Evaluate(vars), nullptr);
  // Reading fields copies nothing, so many references to a big event cost no bytes.
  std::string refs = "size(event.data.big) == 100000";
  for (int i = 0; i < 100; ++i) refs += " && size(event.data.big) == 100000";
  auto many_refs = expr::Compile(refs);
  ASSERT_TRUE(many_refs.ok()) << many_refs.status().ToString();
  EXPECT_TRUE((*many_refs)->Matches(vars));
}

TEST(Expr, MalformedExpressionsSayWhere) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"", "at 1: unexpected end of expression"},
      {"event.", "at 7: expected a field name after '.'"},
      {"event.data +", "at 13: unexpected end of expression"},
      {"event.data.a b", "at 14: unexpected 'b'"},
      {"(event.data", "at 12: expected ')'"},
      {"event['a'", "at 10: expected ']'"},
      {"'open", "at 6: unterminated string"},
      {"event.data.a = 1", "at 14: unexpected '='"},
      {"#", "at 1: unexpected '#'"},
      {"a &", "at 3: unexpected '&'"},
      {"a ==", "at 5: unexpected end of expression"},
      {"[1, 2", "at 6: expected ',' or ']'"},
      {"nosuch(1)", "at 1: unknown function 'nosuch'"},
      {"size(1, 2)", "at 1: size() takes 1 argument"},
      {"has(event)", "at 1: has() needs a field, e.g. has(event.data.x)"},
      {"event.data.x.frob()", "at 19: unknown function 'frob'"},
      {"1.2.3", "at 1: malformed number"},
      {"a inside b", "at 3: unexpected 'i'"},
      {std::string(100, '(') + "1" + std::string(100, ')'), "expression nested too deeply"},
      {std::string(100, '!') + "true", "expression nested too deeply"},
      {std::string(5000, 'a'), "expression longer than 4096 characters"},
  };
  for (const auto& [source, message] : cases) {
    auto e = expr::Compile(source);
    ASSERT_FALSE(e.ok()) << source;
    EXPECT_EQ(e.status().code(), StatusCode::kInvalidArgument);
    EXPECT_NE(e.status().message().find(message), std::string::npos)
        << source.substr(0, 40) << " gave: " << e.status().message();
  }
}

TEST(Flow, OrderingAndConcurrencyOptions) {
  auto ordered = scheduler::ParseFlowControl(
      Json::parse(R"({"ordering":{"key":"event.data.t","head_timeout":"1m"}})"));
  ASSERT_TRUE(ordered.ok());
  ASSERT_TRUE(ordered->lane_key);
  EXPECT_EQ(ordered->head_timeout, std::chrono::minutes(1));

  // The Inngest SDKs' way to ask for FIFO per key.
  auto inngest = scheduler::ParseFlowControl(
      Json::parse(R"({"concurrency":{"limit":1,"key":"event.data.k"}})"));
  ASSERT_TRUE(inngest.ok());
  EXPECT_TRUE(inngest->lane_key);
  EXPECT_EQ(inngest->key_limit, 0);
  EXPECT_EQ(scheduler::EvaluateKeys(*inngest, {{"data", {{"k", "x"}}}}).lane_key, "x");

  auto limits = scheduler::ParseFlowControl(
      Json::parse(R"({"concurrency":[{"limit":10},{"limit":3,"key":"event.data.k"}]})"));
  ASSERT_TRUE(limits.ok());
  EXPECT_FALSE(limits->lane_key);
  EXPECT_EQ(limits->function_limit, 10);
  EXPECT_EQ(limits->key_limit, 3);
  EXPECT_EQ(scheduler::EvaluateKeys(*limits, {{"data", {{"k", 5}}}}).concurrency_key, "5");

  auto number = scheduler::ParseFlowControl(Json::parse(R"({"concurrency":4})"));
  ASSERT_TRUE(number.ok());
  EXPECT_EQ(number->function_limit, 4);
}

TEST(Flow, TwoUnkeyedLimitsBothHoldSoTheSmallestBindsAndNullOptionsAreAbsent) {
  auto flow = scheduler::ParseFlowControl(
      Json::parse(R"({"concurrency":[{"limit":5},{"limit":3}],"throttle":null,"rateLimit":null})"));
  ASSERT_TRUE(flow.ok()) << flow.status().ToString();
  EXPECT_EQ(flow->function_limit, 3);
  auto reversed = scheduler::ParseFlowControl(Json::parse(R"({"concurrency":[3,{"limit":5}]})"));
  ASSERT_TRUE(reversed.ok());
  EXPECT_EQ(reversed->function_limit, 3);
  // A lane (limit 1 with a key) and a keyed limit above 1 are both kept.
  auto both = scheduler::ParseFlowControl(Json::parse(
      R"({"concurrency":[{"limit":1,"key":"event.data.t"},{"limit":4,"key":"event.data.u"}]})"));
  ASSERT_TRUE(both.ok());
  EXPECT_NE(both->lane_key, nullptr);
  EXPECT_EQ(both->key_limit, 4);
  auto scoped = scheduler::ParseFlowControl(
      Json::parse(R"({"concurrency":{"limit":2,"key":"event.data.a","scope":"fn"}})"));
  EXPECT_TRUE(scoped.ok());
}

TEST(Flow, BadOptionsAreRefusedWithTheReason) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {R"({"ordering":{"key":"event."}})", "ordering.key: at 7: expected a field name after '.'"},
      {R"({"ordering":{}})", "ordering must be an object with a \"key\""},
      {R"({"ordering":{"key":"event.data.a","head_timeout":"soon"}})", "ordering.head_timeout: "},
      {R"({"concurrency":{"limit":"3"}})",
       "concurrency needs an integer \"limit\" from 0 to 2147483647"},
      {R"({"concurrency":-1})", "concurrency must be an integer from 0 to 2147483647"},
      // Out of range is refused, never wrapped.
      {R"({"concurrency":2147483648})", "concurrency must be an integer from 0 to 2147483647"},
      {R"({"concurrency":18446744073709551615})",
       "concurrency must be an integer from 0 to 2147483647"},
      {R"({"concurrency":{"limit":4294967297}})",
       "concurrency needs an integer \"limit\" from 0 to 2147483647"},
      {R"({"concurrency":[{"limit":4294967297,"key":"event.data.k"}]})",
       "concurrency needs an integer \"limit\" from 0 to 2147483647"},
      {R"({"concurrency":1.5})", "concurrency must be an integer from 0 to 2147483647"},
      {R"({"concurrency":[{"limit":1},{"limit":2},{"limit":3}]})",
       "concurrency allows at most 2 entries"},
      {R"({"concurrency":{"limit":2,"key":"event.data.a","scope":"planet"}})",
       "concurrency.scope must be \"fn\", \"env\" or \"account\""},
      {R"({"ordering":{"key":"event.data.a"},"concurrency":{"limit":1,"key":"event.data.b"}})",
       "only one lane key per function"},
      // Nothing Funcky does not implement is accepted and ignored.
      {R"({"throttle":{"limit":1,"period":"1s"}})", "throttle is an Inngest flow-control option"},
      {R"({"rateLimit":{"limit":1,"period":"1s"}})", "rateLimit is an Inngest flow-control"},
      {R"({"idempotency":"event.data.id"})", "idempotency is an Inngest flow-control option"},
      {R"({"debounce":{"period":"1s"}})", "debounce is an Inngest flow-control option"},
      {R"({"batchEvents":{"maxSize":2,"timeout":"1s"}})", "batchEvents is an Inngest"},
      {R"({"priority":{"run":"1"}})", "priority is an Inngest flow-control option"},
      {R"({"singleton":{"mode":"skip"}})", "singleton is an Inngest flow-control option"},
      {R"({"timeouts":{"start":"1s"}})", "timeouts is an Inngest flow-control option"},
      {R"({"optimizeParallelism":true})", "unknown option \"optimizeParallelism\""},
      {R"({"triggers":[{"cron":"* * * * *","jitter":"10s"}]})",
       "triggers[0].jitter is not implemented by Funcky"},
      {R"({"ordering":{"key":"event.data.a","gap_timeout":"2s"}})",
       "ordering.gap_timeout is not implemented by Funcky"},
      {R"({"cancel":[{"event":"x","match":"data.id"}]})", "cancel[0].match is not implemented"},
      {R"({"concurrency":{"limit":2,"key":"event.data.a","scope":"account"}})",
       "concurrency.scope \"account\" (a limit shared across functions) is not implemented"},
      {R"({"concurrency":{"limit":2,"scope":"env"}})", "concurrency.scope \"env\""},
      {R"({"concurrency":[{"limit":5,"key":"event.data.a"},{"limit":3,"key":"event.data.b"}]})",
       "concurrency: two keyed limits are not implemented by Funcky"},
  };
  for (const auto& [config, message] : cases) {
    auto flow = scheduler::ParseFlowControl(Json::parse(config));
    ASSERT_FALSE(flow.ok()) << config;
    EXPECT_EQ(flow.status().message().rfind(message, 0), 0u)
        << config << " gave: " << flow.status().message();
  }
}

}  // namespace
}  // namespace funcky
