// The key expressions and flow-control options of a function config.
#include <gtest/gtest.h>

#include <algorithm>
#include <limits>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>

#include "common/crypto.h"
#include "coordinator/expr/expr.h"
#include "coordinator/scheduler/flow.h"
#include "coordinator/scheduler/sequence.h"

namespace funcky {
namespace {

using Json = nlohmann::json;

// `status` is an error whose message starts with `prefix`; `what` names the case.
void ExpectErrorStartingWith(const Status& status, const std::string& prefix,
                             const std::string& what) {
  ASSERT_FALSE(status.ok()) << what;
  EXPECT_EQ(status.code(), StatusCode::kInvalidArgument) << what;
  EXPECT_EQ(status.message().rfind(prefix, 0), 0u) << what << " gave: " << status.message();
}

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

TEST(Expr, AnExpressionNamesItsVariables) {
  auto e = expr::Compile("has(event.data.x) && size([async.y, z]) > lowercase(event.name)");
  ASSERT_TRUE(e.ok()) << e.status().ToString();
  EXPECT_EQ((*e)->VariableNames(), (std::set<std::string>{"async", "event", "z"}));
  EXPECT_TRUE(expr::RefuseUnknownVariables(**e, {"event", "async", "z"}).ok());
  EXPECT_EQ(expr::RefuseUnknownVariables(**e, {"event", "async"}).message(),
            "unknown variable 'z' (this expression sees event and async)");
}

TEST(Expr, KeyTextNeverThrowsOnBytesThatAreNotUtf8) {
  // Found by the fuzzer: a list holding a string with invalid UTF-8 made KeyText throw.
  const std::string source = std::string("[1, \"x\x01", 8) + std::string("\0\0\xca\"]", 5);
  auto e = expr::Compile(source);
  ASSERT_TRUE(e.ok()) << e.status().ToString();
  EXPECT_EQ(expr::KeyText((*e)->Evaluate(Json::object())).substr(0, 5), "[1,\"x");
}

// A key longer than an index entry may hold is its digest: the same text the same key,
// distinct texts distinct keys, and a key up to the bound as it is.
TEST(Expr, AKeyLongerThanTheBoundIsItsDigest) {
  const std::string at_bound(expr::kMaxKeyBytes, 'k');
  EXPECT_EQ(expr::Key(Json(at_bound)), at_bound);
  const std::string long_key = at_bound + "x";
  const std::string digest = expr::Key(Json(long_key));
  EXPECT_EQ(digest, "sha256:" + crypto::Sha256Hex(long_key));
  EXPECT_EQ(digest.size(), 7u + 64u);
  EXPECT_EQ(expr::Key(Json(long_key)), digest);
  EXPECT_NE(expr::Key(Json(at_bound + "y")), digest);
  // Lists and objects too, by their JSON text.
  const Json list = Json::array({long_key});
  EXPECT_EQ(expr::Key(list), "sha256:" + crypto::Sha256Hex(list.dump()));
}

// A key whose text PostgreSQL would refuse (bytes that are not UTF-8) or cut at a NUL (two
// keys made one) is its digest too, on every store alike; UTF-8 text stays as it is.
TEST(Expr, AKeyThatIsNotUtf8OrHoldsANulIsItsDigest) {
  for (const std::string& kept :
       {std::string("tenant-7"), std::string("caf\u00e9 \u20ac \U0001F600"), std::string()}) {
    EXPECT_EQ(expr::Key(Json(kept)), kept);
  }
  const std::string bad[] = {
      std::string("a\0b", 3),
      std::string("a\0c", 3),  // NUL: distinct keys stay distinct
      "\xff",
      "a\xc3",
      "\xc0\x80",  // not UTF-8, cut short, overlong
      "\xed\xa0\x80",
      "\xf4\x90\x80\x80",  // a surrogate, beyond U+10FFFF
  };
  for (const std::string& text : bad) {
    EXPECT_EQ(expr::Key(Json(text)), "sha256:" + crypto::Sha256Hex(text))
        << Json(text).dump(-1, ' ', true);
  }
  EXPECT_NE(expr::Key(Json(bad[0])), expr::Key(Json(bad[1])));
  // As a key expression makes it from event data.
  auto key = expr::Compile("b64decode(event.data.k)");
  ASSERT_TRUE(key.ok());
  const Json event = {{"event", {{"data", {{"k", "/w=="}}}}}};
  EXPECT_EQ(expr::Key((*key)->Evaluate(event)), "sha256:" + crypto::Sha256Hex("\xff"));
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
  std::string refs = "event.data.big != \"\"";
  for (int i = 0; i < 100; ++i) refs += " && event.data.big != \"\"";
  auto many_refs = expr::Compile(refs);
  ASSERT_TRUE(many_refs.ok()) << many_refs.status().ToString();
  EXPECT_TRUE((*many_refs)->Matches(vars));
  // But a string's size() reads all of it to count its characters: charged by its bytes.
  std::string sizes = "size(event.data.big) == 100000";
  for (int i = 0; i < 100; ++i) sizes += " && size(event.data.big) == 100000";
  auto many_sizes = expr::Compile(sizes);
  ASSERT_TRUE(many_sizes.ok()) << many_sizes.status().ToString();
  EXPECT_EQ((*many_sizes)->Evaluate(vars), nullptr);
  EXPECT_EQ((*expr::Compile("size(event.data.big)"))->Evaluate(vars), 100'000);
  // Comparing is charged by what it walks: equal strings byte by byte, lists and objects of
  // one size item by item (each `==` walked the whole event for one step).
  const Json deep = [] {
    Json items = Json::array();
    for (int i = 0; i < 20'000; ++i) items.push_back({{"k", i}, {"v", "value"}});
    return Json{{"event", {{"data", {{"items", items}, {"big", std::string(100'000, 'x')}}}}}};
  }();
  for (const std::string& one :
       {std::string("event == event"), std::string("event.data.big == event.data.big"),
        std::string("event.data.big >= event.data.big"), std::string("event in [event]")}) {
    std::string many = one;
    for (int i = 0; i < 100; ++i) many += " && " + one;
    auto repeated = expr::Compile(many);
    ASSERT_TRUE(repeated.ok()) << repeated.status().ToString();
    EXPECT_EQ((*repeated)->Evaluate(deep), nullptr) << one;
    auto once = expr::Compile(one);
    ASSERT_TRUE(once.ok());
    EXPECT_EQ((*once)->Evaluate(deep), true) << one;
  }
  // Values of different types or sizes compare at once, for nothing.
  auto cheap = expr::Compile("event.data.items != event.data.big && event.data.items != []");
  ASSERT_TRUE(cheap.ok());
  EXPECT_EQ((*cheap)->Evaluate(deep), true);
}

// Integers past int64's range (JSON keeps them unsigned) are not wrapped, and integers are
// compared exactly, not as doubles.
TEST(Expr, LargeIntegersNeitherWrapNorCompareAsDoubles) {
  const Json vars = {{"event",
                      {{"data",
                        {{"max", uint64_t{18446744073709551615u}},
                         {"big", uint64_t{9223372036854775808u}},
                         {"p", int64_t{9007199254740993}},
                         {"q", int64_t{9007199254740992}},
                         {"list", {1, 2}}}}}}};
  const std::vector<std::pair<std::string, Json>> cases = {
      {"event.data.max + 1", nullptr},  // was 0
      {"event.data.max - 1", nullptr},
      {"-event.data.big", nullptr},
      {"event.data.list[event.data.max]", nullptr},
      {"event.data.p == event.data.q", false},  // equal as doubles
      {"event.data.p > event.data.q", true},
      {"event.data.max > event.data.p", true},
      {"event.data.p < event.data.big", true},
      {"event.data.max == event.data.big", false},
      {"event.data.big < event.data.max", true},
      {"event.data.p - 1 == event.data.q", true},
      {"1 == 1.0", true},
      {"2 > 1.5", true},
  };
  for (const auto& [source, want] : cases) {
    auto e = expr::Compile(source);
    ASSERT_TRUE(e.ok()) << source << ": " << e.status().ToString();
    EXPECT_EQ((*e)->Evaluate(vars), want) << source;
  }
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
      // The receiver form has no field to look for (it compiled, and crashed when evaluated).
      {"event.has()", "has() needs a field, e.g. has(event.data.x)"},
      {"'a'.has()", "has() needs a field, e.g. has(event.data.x)"},
      {"[].has()", "has() needs a field, e.g. has(event.data.x)"},
      {"event.data.has()", "has() needs a field, e.g. has(event.data.x)"},
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

// A wait's `if` that requires a field of the incoming event (`async`) to equal a value known
// from the run's event gives the key of that field and value; an event the `if` is true of has
// that key among its IndexKeys. Anything else gives no key (the wait is read for every event).
TEST(Expr, AnEqualityTheIfRequiresOfTheEventGivesAKeyThatEventsMeetingItHave) {
  const nlohmann::json trigger = {{"data", {{"id", "t-1"}, {"n", 5}}}};
  const nlohmann::json async = {
      {"name", "app/paid"},
      {"data",
       {{"id", "t-1"}, {"kind", "paid"}, {"n", 5.0}, {"total", 4}, {"a", {{"b", {{"c", "x"}}}}}}}};
  const auto key = [](std::vector<std::string> path, const nlohmann::json& value) {
    return expr::IndexKey(path, value);
  };
  const std::vector<std::pair<std::string, std::optional<std::string>>> cases = {
      {"event.data.id == async.data.id", key({"data", "id"}, "t-1")},
      {"async.data.id == event.data.id", key({"data", "id"}, "t-1")},
      {"async[\"data\"][\"id\"] == event.data.id", key({"data", "id"}, "t-1")},
      {"async.data.kind == 'paid' && async.data.id == event.data.id",
       key({"data", "kind"}, "paid")},
      {"async.data.total > 3 && async.data.n == event.data.n", key({"data", "n"}, 5)},
      {"async.data.n == 5.0", key({"data", "n"}, 5)},
      {"async.data.id == 't-' + '1'", key({"data", "id"}, "t-1")},
      {"async.data.a.b.c == 'x'", key({"data", "a", "b", "c"}, "x")},
      {"async.name == 'app/paid'", key({"name"}, "app/paid")},
      // Nothing the event must equal: no key.
      {"async.data.id == event.data.id || async.data.x == 1", std::nullopt},
      {"!(async.data.id == event.data.id)", std::nullopt},
      {"async.data.id != event.data.id", std::nullopt},
      {"async.data.id == event.data.missing", std::nullopt},  // null == null holds too
      {"async.data.id == async.data.other", std::nullopt},
      {"lowercase(async.data.id) == 't-1'", std::nullopt},
      {"async.data.list[0] == 'a'", std::nullopt},
      {"async.data.n == 1.5", std::nullopt},
      {"async.data.n == 9007199254740992", std::nullopt},  // 2^53: doubles no longer exact
      {"async.data.ok == true", std::nullopt},
      {"async == event", std::nullopt},
      {"event.data.id == 't-1'", std::nullopt},
      {"async.a.b.c.d.e.f.g == 'x'", std::nullopt},  // deeper than kMaxIndexDepth
  };
  std::vector<std::string> keys;
  ASSERT_TRUE(expr::IndexKeys(async, &keys));
  for (const auto& [source, want] : cases) {
    auto e = expr::Compile(source);
    ASSERT_TRUE(e.ok()) << source << ": " << e.status().ToString();
    const std::optional<std::string> got =
        (*e)->RequiredKey("async", expr::Variables{{"event", &trigger}});
    EXPECT_EQ(got, want) << source;
    if (got && (*e)->Matches(expr::Variables{{"event", &trigger}, {"async", &async}})) {
      EXPECT_NE(std::find(keys.begin(), keys.end(), *got), keys.end())
          << source << ": an event it is true of lacks its key";
    }
  }
  EXPECT_TRUE((*expr::Compile("async.data.id == event.data.id"))
                  ->Matches(expr::Variables{{"event", &trigger}, {"async", &async}}));
}

// A RequiredKey's evaluations share one small budget (kMaxRequiredKeySteps), not one evaluation's
// each: a wait's `if` of 4,096 characters repeating an `==` whose side searches a long list
// of the event cost a whole evaluation per term, and a reply of a thousand such waits kept
// the coordinator's I/O thread for minutes. Past the budget there is no key (the wait is
// matched by its whole expression); cheap sides still give theirs.
TEST(Expr, ARequiredKeysEvaluationsShareOneSmallBudget) {
  const Json trigger = {{"l", Json(std::vector<int>(3 * expr::kMaxRequiredKeySteps, 1))},
                        {"id", "t-1"}};
  std::string expensive;
  for (int i = 0; i < 4; ++i) expensive += "async.a == (0 in event.l) && ";
  auto over = expr::Compile(expensive + "async.b == 'x'");
  ASSERT_TRUE(over.ok()) << over.status().ToString();
  EXPECT_EQ((*over)->RequiredKey("async", expr::Variables{{"event", &trigger}}), std::nullopt);
  // The same key, its term first, is found before anything costly is evaluated.
  auto first = expr::Compile("async.b == 'x' && " + expensive + "true");
  ASSERT_TRUE(first.ok()) << first.status().ToString();
  auto cheap = expr::Compile("async.b == 'x'");
  ASSERT_TRUE(cheap.ok());
  const auto key = (*cheap)->RequiredKey("async", expr::Variables{{"event", &trigger}});
  ASSERT_TRUE(key.has_value());
  EXPECT_EQ((*first)->RequiredKey("async", expr::Variables{{"event", &trigger}}), key);
  // A key's side as users write it, beside a term that costs nothing much.
  auto usual = expr::Compile("async.kind == 'paid' && async.data.id == event.id");
  ASSERT_TRUE(usual.ok());
  EXPECT_TRUE((*usual)->RequiredKey("async", expr::Variables{{"event", &trigger}}).has_value());
}

// An event's keys: one per leaf that is a string or an integral number under 2^53 (5 and 5.0
// one key, "5" another), through objects up to kMaxIndexDepth fields; past kMaxIndexKeys the
// keys are incomplete. A long key is its digest.
TEST(Expr, AnEventsIndexKeysAreThoseOfItsStringAndIntegralLeaves) {
  const nlohmann::json event = {
      {"name", "a/b"},
      {"data",
       {{"id", "t-1"},
        {"n", 5},
        {"f", 7.0},
        {"s", "5"},
        {"x", 1.5},
        {"big", 9007199254740993ULL},
        {"ok", true},
        {"none", nullptr},
        {"list", {"a", "b"}},
        {"d2", {{"d3", {{"d4", {{"d5", {{"leaf", "in"}, {"d6", {{"leaf", "out"}}}}}}}}}}}}}};
  std::vector<std::string> keys;
  ASSERT_TRUE(expr::IndexKeys(event, &keys));
  const std::set<std::string> want = {
      *expr::IndexKey({"name"}, "a/b"),
      *expr::IndexKey({"data", "id"}, "t-1"),
      *expr::IndexKey({"data", "n"}, 5),
      *expr::IndexKey({"data", "f"}, 7),
      *expr::IndexKey({"data", "s"}, "5"),
      *expr::IndexKey({"data", "d2", "d3", "d4", "d5", "leaf"}, "in"),  // six fields: the most
  };
  EXPECT_EQ(std::set<std::string>(keys.begin(), keys.end()), want);
  EXPECT_EQ(keys.size(), want.size());
  EXPECT_EQ(expr::IndexKey({"n"}, 5), expr::IndexKey({"n"}, 5.0));
  EXPECT_NE(expr::IndexKey({"n"}, 5), expr::IndexKey({"n"}, "5"));
  EXPECT_NE(expr::IndexKey({"a", "b"}, "c"), expr::IndexKey({"a"}, "b.c"));
  EXPECT_EQ(expr::IndexKey({"n"}, -9007199254740991LL).has_value(), true);
  EXPECT_EQ(expr::IndexKey({"n"}, 9007199254740992.0), std::nullopt);
  EXPECT_EQ(expr::IndexKey({"n"}, nlohmann::json()), std::nullopt);
  const std::string long_key = *expr::IndexKey({"data", "text"}, std::string(1000, 'z'));
  EXPECT_EQ(long_key.rfind("sha256:", 0), 0u) << long_key.substr(0, 40);

  nlohmann::json wide = {{"data", nlohmann::json::object()}};
  for (size_t i = 0; i <= expr::kMaxIndexKeys; ++i) wide["data"]["f" + std::to_string(i)] = "v";
  EXPECT_FALSE(expr::IndexKeys(wide, &keys)) << "more leaves than kMaxIndexKeys";
  EXPECT_EQ(keys.size(), expr::kMaxIndexKeys);
  wide["data"].erase("f0");
  EXPECT_TRUE(expr::IndexKeys(wide, &keys));
  EXPECT_EQ(keys.size(), expr::kMaxIndexKeys);
  EXPECT_TRUE(expr::IndexKeys(nlohmann::json::array(), &keys));
  EXPECT_TRUE(keys.empty());
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
  EXPECT_EQ(scheduler::EvaluateKeys(*inngest, {{"data", {{"k", "x"}}}})->lane_key, "x");

  auto limits = scheduler::ParseFlowControl(
      Json::parse(R"({"concurrency":[{"limit":10},{"limit":3,"key":"event.data.k"}]})"));
  ASSERT_TRUE(limits.ok());
  EXPECT_FALSE(limits->lane_key);
  EXPECT_EQ(limits->function_limit, 10);
  EXPECT_EQ(limits->key_limit, 3);
  EXPECT_EQ(scheduler::EvaluateKeys(*limits, {{"data", {{"k", 5}}}})->concurrency_key, "5");

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
  // A number after an entry holds as one too (it set the limit over the entry's: 2 became 10).
  for (const char* config : {R"({"concurrency":[{"limit":2},10]})", R"({"concurrency":[2,10]})",
                             R"({"concurrency":[10,2]})", R"({"concurrency":[0,2]})"}) {
    auto numbers = scheduler::ParseFlowControl(Json::parse(config));
    ASSERT_TRUE(numbers.ok()) << config;
    EXPECT_EQ(numbers->function_limit, 2) << config;
  }
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
      // 0s failed every head at once; a cancel rule with 0s applied to no run.
      {R"({"ordering":{"key":"event.data.a","head_timeout":"0s"}})",
       "ordering.head_timeout must be at least 1s"},
      {R"({"concurrency":{"limit":1,"key":"event.data.a","head_timeout":"999ms"}})",
       "concurrency.head_timeout must be at least 1s"},
      {R"({"cancel":[{"event":"x","timeout":"0s"}]})", "cancel[0].timeout must be at least 1s"},
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
      {R"({"throttle":{"period":"1s"}})", "throttle.limit must be an integer from 1"},
      {R"({"throttle":{"limit":0,"period":"1s"}})", "throttle.limit must be an integer from 1"},
      {R"({"throttle":{"limit":2147483648,"period":"1s"}})", "throttle.limit must be"},
      {R"({"throttle":{"limit":1.5,"period":"1s"}})", "throttle.limit must be"},
      {R"({"throttle":{"limit":1}})", "throttle needs a \"period\""},
      {R"({"throttle":{"limit":1,"period":"500ms"}})", "throttle.period must be from 1s to 7d"},
      {R"({"throttle":{"limit":1,"period":"8d"}})", "throttle.period must be from 1s to 7d"},
      {R"({"throttle":{"limit":1,"period":7}})", "throttle.period must be a duration string"},
      {R"({"throttle":{"limit":1,"period":"1s","burst":-1}})",
       "throttle.burst must be an integer from 0 to 1000000"},
      {R"({"throttle":{"limit":1,"period":"1s","burst":"2"}})", "throttle.burst must be"},
      {R"({"throttle":{"limit":1,"period":"1s","key":""}})", "throttle.key must be a non-empty"},
      {R"({"throttle":{"limit":1,"period":"1s","key":"event."}})", "throttle.key: at 7:"},
      {R"({"throttle":{"limit":1,"period":"1s","scope":"fn"}})",
       "throttle.scope is not implemented by Funcky"},
      {R"({"throttle":[1]})", "throttle must be an object"},
      {R"({"debounce":{"period":"1s","burst":2}})", "debounce.burst is not implemented"},
      {R"({"priority":{"run":""}})", "priority.run must be a non-empty expression string"},
      {R"({"priority":{"run":5}})", "priority.run must be a non-empty expression string"},
      {R"({"priority":{"run":"event."}})", "priority.run: at 7:"},
      {R"({"priority":{}})", "priority needs \"run\""},
      {R"({"priority":"event.data.p"})", "priority must be an object {run}"},
      {R"({"priority":{"run":"1","factor":2}})", "priority.factor is not implemented by Funcky"},
      // Admission gates: each bad shape is refused naming the field.
      {R"({"idempotency":""})", "idempotency must be a non-empty expression string"},
      {R"({"idempotency":42})", "idempotency must be a non-empty expression string"},
      {R"({"idempotency":"event."})", "idempotency: at 7:"},
      {R"({"rateLimit":{"period":"1m"}})", "rateLimit.limit must be an integer from 1"},
      {R"({"rateLimit":{"limit":0,"period":"1m"}})", "rateLimit.limit must be an integer from 1"},
      {R"({"rateLimit":{"limit":2147483648,"period":"1m"}})", "rateLimit.limit must be"},
      {R"({"rateLimit":{"limit":1}})", "rateLimit needs a \"period\""},
      {R"({"rateLimit":{"limit":1,"period":""}})", "rateLimit.period: "},
      {R"({"rateLimit":{"limit":1,"period":"25h"}})", "rateLimit.period must be from 1s to 24h"},
      {R"({"rateLimit":{"limit":1,"period":"500ms"}})", "rateLimit.period must be from 1s"},
      {R"({"rateLimit":{"limit":1,"period":"1m","key":"event."}})", "rateLimit.key: at 7:"},
      {R"({"rateLimit":{"limit":1,"period":"1m","burst":2}})",
       "rateLimit.burst is not implemented by Funcky"},
      {R"({"rateLimit":[1]})", "rateLimit must be an object"},
      // A bad rateLimit is refused even when idempotency replaces it.
      {R"({"idempotency":"event.data.id","rateLimit":{"limit":1,"period":"2d"}})",
       "rateLimit.period must be from 1s to 24h"},
      {R"({"singleton":{}})", "singleton.mode must be \"skip\" or \"cancel\""},
      {R"({"singleton":{"mode":"first"}})", "singleton.mode must be \"skip\" or \"cancel\""},
      {R"({"singleton":{"mode":"skip","key":""}})", "singleton.key must be a non-empty"},
      {R"({"singleton":{"mode":"skip","ttl":"1m"}})", "singleton.ttl is not implemented"},
      {R"({"singleton":{"mode":"skip"},"ordering":{"key":"event.data.a"}})",
       "singleton with a lane (ordering) needs singleton.key to be the lane's key expression "
       "(\"event.data.a\"), so that the singleton and the lane hold the same key; it is missing"},
      {R"({"singleton":{"mode":"cancel","key":"event.data.b"},"concurrency":{"limit":1,"key":"event.data.a"}})",
       "singleton with a lane (concurrency) needs singleton.key to be the lane's key expression "
       "(\"event.data.a\"), so that the singleton and the lane hold the same key; it is "
       "\"event.data.b\""},
      {R"({"singleton":{"mode":"skip","key":"event.data.a"},"ordering":{"key":"event.data.a","bypass":"event.data.urgent"}})",
       "singleton with a lane (ordering) and ordering.bypass is not implemented by Funcky"},
      {R"({"singleton":{"mode":"skip","key":"event.data.a"},"ordering":{"key":"event.data.a","sequence":"event.data.v","gap_timeout":"1m"}})",
       "singleton with a lane (ordering) and ordering.sequence is not implemented by Funcky"},
      {R"({"timeouts":{"start":"soon"}})", "timeouts.start: "},
      {R"({"timeouts":{"finish":"0s"}})", "timeouts.finish must be more than 0"},
      {R"({"timeouts":{"finish":"400d"}})", "timeouts.finish must be more than 0 and at most"},
      {R"({"timeouts":{"start":"1s","queue":"1s"}})", "timeouts.queue is not implemented"},
      {R"({"timeouts":"1m"})", "timeouts must be an object"},
      {R"({"optimizeParallelism":true})", "unknown option \"optimizeParallelism\""},
      {R"({"triggers":[{"cron":"* * * * *","jitter":"soon"}]})", "triggers[0].jitter: "},
      {R"({"triggers":[{"cron":"* * * * *","jitter":30}]})",
       "triggers[0].jitter must be a duration string"},
      {R"({"triggers":[{"cron":"* * * * *","jitter":"0s"}]})",
       "triggers[0].jitter must be more than 0 and less than the schedule's shortest interval "
       "(1m)"},
      {R"({"triggers":[{"event":"a"},{"cron":"*/5 * * * *","jitter":"5m"}]})",
       "triggers[1].jitter must be more than 0 and less than the schedule's shortest interval "
       "(5m)"},
      {R"({"triggers":[{"cron":"* * * * * *","jitter":"1s"}]})",
       "triggers[0].jitter must be more than 0 and less than the schedule's shortest interval"},
      {R"({"triggers":[{"event":"a","jitter":"10s"}]})", "triggers[0].jitter needs a cron trigger"},
      // A cron trigger is only a schedule: nothing beside it is dropped unsaid.
      {R"({"triggers":[{"cron":"0 * * * *","expression":"event.data.x == 1"}]})",
       "triggers[0]: a cron trigger takes no \"event\" or \"expression\""},
      {R"({"triggers":[{"event":"a","cron":"0 * * * *"}]})",
       "triggers[0]: a cron trigger takes no \"event\" or \"expression\""},
      {R"({"triggers":[{"event":"a","cron":5}]})", "triggers[0].cron must be a string"},
      {R"({"ordering":{"key":"event.data.a","sequence_number":"event.data.v"}})",
       "ordering.sequence_number is not implemented by Funcky"},
      {R"({"cancel":[{"event":"x","match":"data.id"}]})", "cancel[0].match is not implemented"},
      {R"({"concurrency":{"limit":2,"key":"event.data.a","scope":"account"}})",
       "concurrency.scope \"account\" (a limit shared across functions) is not implemented"},
      {R"({"concurrency":{"limit":2,"scope":"env"}})", "concurrency.scope \"env\""},
      // A variable no event provides (a wait's `match` pasted in, a typo) was null: one key
      // for every event, a filter that never held.
      {R"({"idempotency":"data.order_id"})",
       "idempotency: unknown variable 'data' (this expression sees event)"},
      {R"({"concurrency":{"limit":1,"key":"evnt.data.tenant"}})",
       "concurrency.key: unknown variable 'evnt'"},
      {R"({"triggers":[{"event":"a","expression":"async.data.x > 1"}]})",
       "triggers[0].expression: unknown variable 'async'"},
      {R"({"cancel":[{"event":"x","if":"event.data.id == asyn.data.id"}]})",
       "cancel[0].if: unknown variable 'asyn' (this expression sees event and async)"},
      {R"({"concurrency":[{"limit":5,"key":"event.data.a"},{"limit":3,"key":"event.data.b","scope":"env"}]})",
       "concurrency.scope \"env\""},
  };
  for (const auto& [config, message] : cases) {
    ExpectErrorStartingWith(scheduler::ParseFlowControl(Json::parse(config)).status(), message,
                            config);
  }
}

// `concurrency: [{limit, key}, {limit, key}]`: both keyed limits are kept, each with its key,
// and each run carries both values.
TEST(Flow, TwoKeyedLimitsAreBothKeptAndEachRunCarriesBothKeys) {
  auto flow = scheduler::ParseFlowControl(Json::parse(
      R"({"concurrency":[{"limit":5,"key":"event.data.a"},{"limit":3,"key":"event.data.b"}]})"));
  ASSERT_TRUE(flow.ok()) << flow.status().ToString();
  EXPECT_FALSE(flow->lane_key);
  EXPECT_EQ(flow->function_limit, 0);
  EXPECT_EQ(flow->key_limit, 5);
  EXPECT_EQ(flow->limit_key->source(), "event.data.a");
  EXPECT_EQ(flow->key_limit2, 3);
  EXPECT_EQ(flow->limit_key2->source(), "event.data.b");
  auto keys = scheduler::EvaluateKeys(*flow, {{"data", {{"a", "x"}, {"b", 7}}}});
  ASSERT_TRUE(keys.ok());
  EXPECT_EQ(keys->concurrency_key, "x");
  EXPECT_EQ(keys->concurrency_key2, "7");
  // A missing field is the empty key, as for one keyed limit.
  EXPECT_EQ(scheduler::EvaluateKeys(*flow, {{"data", Json::object()}})->concurrency_key2, "");
  // One keyed limit leaves the second unset.
  auto one = scheduler::ParseFlowControl(
      Json::parse(R"({"concurrency":[{"limit":2},{"limit":3,"key":"event.data.b"}]})"));
  ASSERT_TRUE(one.ok());
  EXPECT_EQ(one->key_limit2, 0);
  EXPECT_FALSE(scheduler::EvaluateKeys(*one, {{"data", {{"b", 1}}}})->concurrency_key2);
}

// `priority: {run}`: whole seconds, truncated, clamped to ±600; anything else is 0.
TEST(Flow, PriorityIsWholeSecondsClampedTo600EitherWay) {
  auto flow = scheduler::ParseFlowControl(
      Json::parse(R"({"priority":{"run":"event.data.p"},"concurrency":1})"));
  ASSERT_TRUE(flow.ok()) << flow.status().ToString();
  ASSERT_TRUE(flow->priority);
  EXPECT_EQ(flow->priority->source(), "event.data.p");
  const std::vector<std::pair<Json, int64_t>> cases = {
      {120, 120},
      {-30, -30},
      {0, 0},
      {2.9, 2},
      {-2.9, -2},
      {600, 600},
      {601, 600},
      {-601, -600},
      {1e300, 600},
      {-1e300, -600},
      {Json(18446744073709551615ULL), 600},
      {Json(INT64_MIN), -600},
      {"120", 0},
      {true, 0},
      {nullptr, 0},
      {Json::array({1}), 0},
      {Json::object(), 0},
  };
  for (const auto& [p, seconds] : cases) {
    auto keys = scheduler::EvaluateKeys(*flow, {{"data", {{"p", p}}}});
    ASSERT_TRUE(keys.ok());
    EXPECT_EQ(keys->priority_s, seconds) << p.dump();
  }
  // A missing field, an expression that fails and no priority at all are 0.
  EXPECT_EQ(scheduler::EvaluateKeys(*flow, {{"data", Json::object()}})->priority_s, 0);
  auto failing =
      scheduler::ParseFlowControl(Json::parse(R"({"priority":{"run":"event.data.p.q.r + 1"}})"));
  ASSERT_TRUE(failing.ok());
  EXPECT_EQ(scheduler::EvaluateKeys(*failing, {{"data", {{"p", "s"}}}})->priority_s, 0);
  auto arithmetic =
      scheduler::ParseFlowControl(Json::parse(R"({"priority":{"run":"event.data.p * 10"}})"));
  ASSERT_TRUE(arithmetic.ok());
  EXPECT_EQ(scheduler::EvaluateKeys(*arithmetic, {{"data", {{"p", 7}}}})->priority_s, 70);
  auto none = scheduler::ParseFlowControl(Json::parse(R"({"priority":null})"));
  ASSERT_TRUE(none.ok());
  EXPECT_FALSE(none->priority);
  EXPECT_EQ(scheduler::EvaluateKeys(*none, {{"data", {{"p", 9}}}})->priority_s, 0);
}

TEST(Flow, CronJitterIsKeptWithItsScheduleAndMustEndBeforeTheNextTick) {
  auto flow = scheduler::ParseFlowControl(Json::parse(
      R"({"triggers":[{"cron":"*/5 * * * *","jitter":"4m59s"},{"cron":"0 9 * * *"},)"
      R"({"cron":"0,50 * * * * *","jitter":"9s"},{"cron":"0 0 0,22 * * *","jitter":"1h59m"}]})"));
  ASSERT_TRUE(flow.ok()) << flow.status().ToString();
  ASSERT_EQ(flow->crons.size(), 4u);
  EXPECT_EQ(flow->crons[0].schedule.spec(), "*/5 * * * *");
  EXPECT_EQ(flow->crons[0].jitter, std::chrono::seconds(299));
  EXPECT_EQ(flow->crons[1].jitter, std::chrono::milliseconds(0));
  EXPECT_EQ(flow->crons[1].schedule.ShortestIntervalSeconds(), 86400);
  // Seconds 0 and 50 are 10 s apart across the minute's end.
  EXPECT_EQ(flow->crons[2].schedule.ShortestIntervalSeconds(), 10);
  // Hours 0 and 22 are 2 h apart across midnight: "2h" is refused, "1h59m" is not.
  EXPECT_EQ(flow->crons[3].schedule.ShortestIntervalSeconds(), 7200);
}

TEST(Flow, CronJitterAsLongAsTheIntervalIsRefused) {
  ExpectErrorStartingWith(
      scheduler::ParseFlowControl(
          Json::parse(R"({"triggers":[{"cron":"0 0 0,22 * * *","jitter":"2h"}]})"))
          .status(),
      "triggers[0].jitter must be more than 0 and less than the schedule's shortest interval (2h)",
      "2h");
  EXPECT_TRUE(scheduler::ParseFlowControl(
                  Json::parse(R"({"triggers":[{"cron":"0 0 0,22 * * *","jitter":"1h59m"}]})"))
                  .ok());
}

// Admission gates (docs/flow-control.md): what each option compiles to and the gate each
// event's run carries.
TEST(Flow, IdempotencyIsOneRunPerKeyPer24HoursAndReplacesRateLimit) {
  auto flow = scheduler::ParseFlowControl(
      Json::parse(R"({"idempotency":"event.data.order","rateLimit":{"limit":5,"period":"1m"}})"));
  ASSERT_TRUE(flow.ok()) << flow.status().ToString();
  ASSERT_TRUE(flow->rate);
  EXPECT_EQ(flow->rate->reason, store::kSkipIdempotency);
  EXPECT_EQ(flow->rate->limit, 1);
  EXPECT_EQ(flow->rate->period, std::chrono::hours(24));
  auto keys = scheduler::EvaluateKeys(*flow, {{"data", {{"order", 42}}}});
  ASSERT_TRUE(keys.ok());
  ASSERT_TRUE(keys->rate);
  EXPECT_EQ(keys->rate->reason, store::kSkipIdempotency);
  EXPECT_EQ(keys->rate->key, "42");
  EXPECT_EQ(keys->rate->limit, 1);
  EXPECT_EQ(keys->rate->period, std::chrono::hours(24));
  EXPECT_FALSE(keys->singleton);
  // A missing field is the empty key: every such event shares it.
  EXPECT_EQ(scheduler::EvaluateKeys(*flow, {{"data", Json::object()}})->rate->key, "");
}

TEST(Flow, RateLimitCarriesItsLimitPeriodAndKey) {
  auto flow = scheduler::ParseFlowControl(
      Json::parse(R"({"rateLimit":{"limit":3,"period":"1h30m","key":"event.data.user"}})"));
  ASSERT_TRUE(flow.ok()) << flow.status().ToString();
  auto keys = scheduler::EvaluateKeys(*flow, {{"data", {{"user", "u-1"}}}});
  ASSERT_TRUE(keys.ok());
  ASSERT_TRUE(keys->rate);
  EXPECT_EQ(keys->rate->reason, store::kSkipRateLimit);
  EXPECT_EQ(keys->rate->key, "u-1");
  EXPECT_EQ(keys->rate->limit, 3);
  EXPECT_EQ(keys->rate->period, std::chrono::minutes(90));
  // Without a key the whole function shares one; the bounds are inclusive.
  auto unkeyed =
      scheduler::ParseFlowControl(Json::parse(R"({"rateLimit":{"limit":1,"period":"24h"}})"));
  ASSERT_TRUE(unkeyed.ok());
  EXPECT_EQ(scheduler::EvaluateKeys(*unkeyed, {{"data", {{"user", "u"}}}})->rate->key, "");
  EXPECT_TRUE(
      scheduler::ParseFlowControl(Json::parse(R"({"rateLimit":{"limit":1,"period":"1s"}})")).ok());
}

TEST(Flow, ThrottleCarriesItsLimitPeriodBurstAndKey) {
  auto flow = scheduler::ParseFlowControl(
      Json::parse(R"({"throttle":{"limit":3,"period":"1m","burst":2,"key":"event.data.user"}})"));
  ASSERT_TRUE(flow.ok()) << flow.status().ToString();
  auto keys = scheduler::EvaluateKeys(*flow, {{"data", {{"user", "u-1"}}}});
  ASSERT_TRUE(keys.ok());
  ASSERT_TRUE(keys->throttle);
  EXPECT_EQ(keys->throttle->key, "u-1");
  EXPECT_EQ(keys->throttle->limit, 3);
  EXPECT_EQ(keys->throttle->period, std::chrono::minutes(1));
  EXPECT_EQ(keys->throttle->burst, 2);
  EXPECT_FALSE(keys->rate);  // not a gate: nothing is refused
  // Without key and burst: one key for the function, no burst; the bounds are inclusive.
  auto plain = scheduler::ParseFlowControl(
      Json::parse(R"({"throttle":{"limit":1,"period":"7d","burst":null,"key":null}})"));
  ASSERT_TRUE(plain.ok()) << plain.status().ToString();
  auto pk = scheduler::EvaluateKeys(*plain, {{"data", {{"user", "u"}}}});
  ASSERT_TRUE(pk.ok() && pk->throttle);
  EXPECT_EQ(pk->throttle->key, "");
  EXPECT_EQ(pk->throttle->burst, 0);
  EXPECT_EQ(pk->throttle->period, std::chrono::hours(24 * 7));
  EXPECT_TRUE(
      scheduler::ParseFlowControl(Json::parse(R"({"throttle":{"limit":1,"period":"1s"}})")).ok());
  // It composes with a lane.
  auto laned = scheduler::ParseFlowControl(
      Json::parse(R"({"throttle":{"limit":1,"period":"1s"},"ordering":{"key":"event.data.k"}})"));
  ASSERT_TRUE(laned.ok()) << laned.status().ToString();
  auto lk = scheduler::EvaluateKeys(*laned, {{"data", {{"k", "x"}}}});
  ASSERT_TRUE(lk.ok());
  EXPECT_EQ(lk->lane_key, "x");
  EXPECT_TRUE(lk->throttle);
}

TEST(Flow, SingletonCarriesItsModeAndKey) {
  auto skip = scheduler::ParseFlowControl(
      Json::parse(R"({"singleton":{"mode":"skip","key":"event.data.acct"}})"));
  ASSERT_TRUE(skip.ok()) << skip.status().ToString();
  auto keys = scheduler::EvaluateKeys(*skip, {{"data", {{"acct", "a"}}}});
  ASSERT_TRUE(keys.ok() && keys->singleton);
  EXPECT_EQ(keys->singleton->key, "a");
  EXPECT_FALSE(keys->singleton->cancel);
  EXPECT_FALSE(keys->rate);
  auto cancel = scheduler::ParseFlowControl(Json::parse(R"({"singleton":{"mode":"cancel"}})"));
  ASSERT_TRUE(cancel.ok());
  auto ck = scheduler::EvaluateKeys(*cancel, {{"data", Json::object()}});
  ASSERT_TRUE(ck.ok() && ck->singleton);
  EXPECT_EQ(ck->singleton->key, "");
  EXPECT_TRUE(ck->singleton->cancel);
  // A keyed limit above 1 is no lane: it composes with singleton.
  EXPECT_TRUE(
      scheduler::ParseFlowControl(
          Json::parse(
              R"({"singleton":{"mode":"skip"},"concurrency":{"limit":2,"key":"event.data.a"}})"))
          .ok());
}

TEST(Flow, SingletonInALaneIsKeyedByTheLaneKey) {
  for (const char* config :
       {R"({"singleton":{"mode":"skip","key":"event.data.a"},"ordering":{"key":"event.data.a"}})",
        R"({"singleton":{"mode":"cancel","key":"event.data.a"},)"
        R"("concurrency":{"limit":1,"key":"event.data.a"}})",
        R"({"singleton":{"mode":"skip","key":"event.data.a"},)"
        R"("concurrency":[{"limit":1,"key":"event.data.a"},{"limit":3}]})"}) {
    auto flow = scheduler::ParseFlowControl(Json::parse(config));
    ASSERT_TRUE(flow.ok()) << config << ": " << flow.status().ToString();
    auto keys = scheduler::EvaluateKeys(*flow, {{"data", {{"a", "t-1"}}}});
    ASSERT_TRUE(keys.ok() && keys->singleton && keys->lane_key) << config;
    EXPECT_EQ(keys->singleton->key, "t-1");
    EXPECT_EQ(keys->lane_key, "t-1");
  }
}

TEST(Flow, TimeoutsCarryTheirDeadlines) {
  auto flow =
      scheduler::ParseFlowControl(Json::parse(R"({"timeouts":{"start":"10s","finish":"1h"}})"));
  ASSERT_TRUE(flow.ok()) << flow.status().ToString();
  auto keys = scheduler::EvaluateKeys(*flow, {{"data", Json::object()}});
  ASSERT_TRUE(keys.ok() && keys->timeouts);
  EXPECT_EQ(keys->timeouts->start, std::chrono::seconds(10));
  EXPECT_EQ(keys->timeouts->finish, std::chrono::hours(1));
  auto finish_only = scheduler::ParseFlowControl(Json::parse(R"({"timeouts":{"finish":"2s"}})"));
  ASSERT_TRUE(finish_only.ok());
  EXPECT_FALSE(finish_only->timeouts->start);
  EXPECT_EQ(finish_only->timeouts->finish, std::chrono::seconds(2));
  // `{}` sets no deadline: the runs are plain ones.
  auto none = scheduler::ParseFlowControl(Json::parse(R"({"timeouts":{}})"));
  ASSERT_TRUE(none.ok()) << none.status().ToString();
  EXPECT_FALSE(none->timeouts);
}

TEST(Flow, DebounceCarriesItsPeriodTimeoutKeyAndTheEventsTs) {
  auto flow = scheduler::ParseFlowControl(Json::parse(
      R"({"debounce":{"period":"2s","key":"event.data.doc","timeout":"1m"},"rateLimit":null})"));
  ASSERT_TRUE(flow.ok()) << flow.status().ToString();
  auto keys = scheduler::EvaluateKeys(*flow, {{"data", {{"doc", "d-1"}}}, {"ts", 1700000000123}});
  ASSERT_TRUE(keys.ok() && keys->debounce);
  EXPECT_EQ(keys->debounce->key, "d-1");
  EXPECT_EQ(keys->debounce->period, std::chrono::seconds(2));
  EXPECT_EQ(keys->debounce->timeout, std::chrono::minutes(1));
  EXPECT_EQ(keys->debounce->event_ts_ms, 1700000000123);
  EXPECT_FALSE(keys->rate);
  auto unkeyed = scheduler::ParseFlowControl(Json::parse(R"({"debounce":{"period":"7d"}})"));
  ASSERT_TRUE(unkeyed.ok()) << unkeyed.status().ToString();
  auto uk = scheduler::EvaluateKeys(*unkeyed, {{"data", {{"doc", "d"}}}});
  ASSERT_TRUE(uk.ok() && uk->debounce);
  EXPECT_EQ(uk->debounce->key, "");
  EXPECT_FALSE(uk->debounce->timeout);
  EXPECT_EQ(uk->debounce->event_ts_ms, 0);
  EXPECT_TRUE(scheduler::ParseFlowControl(Json::parse(R"({"debounce":{"period":"1s"}})")).ok());
  EXPECT_TRUE(
      scheduler::ParseFlowControl(Json::parse(R"({"debounce":{"period":"1s","timeout":"1w"}})"))
          .ok());
}

TEST(Flow, DebounceInALaneIsKeyedByTheLaneKey) {
  for (const char* config :
       {R"({"debounce":{"period":"2s","key":"event.data.a"},"ordering":{"key":"event.data.a"}})",
        R"({"debounce":{"period":"2s","key":"event.data.a"},)"
        R"("concurrency":[{"limit":1,"key":"event.data.a"},{"limit":3}]})"}) {
    auto flow = scheduler::ParseFlowControl(Json::parse(config));
    ASSERT_TRUE(flow.ok()) << config << ": " << flow.status().ToString();
    auto keys = scheduler::EvaluateKeys(*flow, {{"data", {{"a", "t-1"}}}});
    ASSERT_TRUE(keys.ok() && keys->debounce && keys->lane_key);
    EXPECT_EQ(keys->debounce->key, *keys->lane_key);
  }
}

TEST(Flow, BadDebounceConfigsAreRefusedNamingTheOption) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {R"({"debounce":"2s"})", "debounce must be an object {period, key?, timeout?}"},
      {R"({"debounce":{}})", "debounce needs a \"period\""},
      {R"({"debounce":{"period":2}})", "debounce.period must be a duration string"},
      {R"({"debounce":{"period":"999ms"}})", "debounce.period must be from 1s to 7d"},
      {R"({"debounce":{"period":"7d1s"}})", "debounce.period must be from 1s to 7d"},
      {R"({"debounce":{"period":"2s","timeout":"0s"}})", "debounce.timeout must be from 1s to 7d"},
      {R"({"debounce":{"period":"2s","timeout":"8d"}})", "debounce.timeout must be from 1s to 7d"},
      {R"({"debounce":{"period":"2s","timeout":"soon"}})", "debounce.timeout: "},
      {R"({"debounce":{"period":"2s","key":""}})", "debounce.key must be a non-empty expression"},
      {R"({"debounce":{"period":"2s","key":"event."}})", "debounce.key: at 7: "},
      {R"({"debounce":{"period":"2s","limit":3}})", "debounce.limit is not implemented"},
      {R"({"debounce":{"period":"2s"},"ordering":{"key":"event.data.a"}})",
       "debounce with a lane (ordering) needs debounce.key to be the lane's key expression "
       "(\"event.data.a\"), so that a burst is one lane key's events; it is missing"},
      {R"({"debounce":{"period":"2s","key":"event.data.b"},"concurrency":{"limit":1,"key":"event.data.a"}})",
       "debounce with a lane (concurrency) needs debounce.key to be the lane's key expression "
       "(\"event.data.a\"), so that a burst is one lane key's events; it is \"event.data.b\""},
      {R"({"debounce":{"period":"2s","key":"event.data.a"},"ordering":{"key":"event.data.a","bypass":"event.data.urgent"}})",
       "debounce with a lane (ordering) and ordering.bypass is not implemented"},
      {R"({"debounce":{"period":"2s","key":"event.data.a"},"ordering":{"key":"event.data.a","sequence":"event.data.v","gap_timeout":"1m"}})",
       "debounce with a lane (ordering) and ordering.sequence is not implemented"},
      {R"({"debounce":{"period":"2s"},"singleton":{"mode":"skip"}})",
       "debounce with singleton is not implemented"},
  };
  for (const auto& [config, message] : cases) {
    ExpectErrorStartingWith(scheduler::ParseFlowControl(Json::parse(config)).status(), message,
                            config);
  }
}

TEST(Flow, BatchEventsCarriesItsSizeTimeoutAndKeyWhenItsIfHolds) {
  auto flow = scheduler::ParseFlowControl(Json::parse(R"({"batchEvents":{"maxSize":5,
      "timeout":"5s","key":"event.data.user","if":"event.data.plan == 'free'"},
      "rateLimit":{"limit":10,"period":"1m"},"throttle":{"limit":1,"period":"1s"}})"));
  ASSERT_TRUE(flow.ok()) << flow.status().ToString();
  ASSERT_TRUE(flow->batch);
  EXPECT_EQ(flow->batch->max_size, 5);
  EXPECT_EQ(flow->batch->timeout, std::chrono::seconds(5));
  auto free = scheduler::EvaluateKeys(*flow, {{"data", {{"user", "u-1"}, {"plan", "free"}}}});
  ASSERT_TRUE(free.ok() && free->batch);
  EXPECT_EQ(free->batch->key, "u-1");
  EXPECT_EQ(free->batch->max_size, 5);
  EXPECT_EQ(free->batch->timeout, std::chrono::seconds(5));
  EXPECT_TRUE(free->rate);  // the rate gate is decided per event, before the batch
  // `if` false (or not a boolean): the event runs alone.
  auto paid = scheduler::EvaluateKeys(*flow, {{"data", {{"user", "u-1"}, {"plan", "paid"}}}});
  ASSERT_TRUE(paid.ok());
  EXPECT_FALSE(paid->batch);
  auto bare = scheduler::ParseFlowControl(
      Json::parse(R"({"batchEvents":{"maxSize":100,"timeout":"60s","key":null}})"));
  ASSERT_TRUE(bare.ok()) << bare.status().ToString();
  auto keys = scheduler::EvaluateKeys(*bare, {{"data", Json::object()}});
  ASSERT_TRUE(keys.ok() && keys->batch);
  EXPECT_EQ(keys->batch->key, "");
  EXPECT_EQ(keys->batch->max_size, 100);
  EXPECT_TRUE(
      scheduler::ParseFlowControl(Json::parse(R"({"batchEvents":{"maxSize":2,"timeout":"1s"}})"))
          .ok());
  EXPECT_TRUE(scheduler::ParseFlowControl(
                  Json::parse(R"({"batchEvents":{"maxSize":2,"timeout":"1s"},"cancel":[],)"
                              R"("idempotency":"event.data.id"})"))
                  .ok());
}

TEST(Flow, BadBatchEventsConfigsAndCombinationsAreRefusedNamingTheOption) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {R"({"batchEvents":5})", "batchEvents must be an object {maxSize, timeout, key?, if?}"},
      {R"({"batchEvents":{"timeout":"1s"}})",
       "batchEvents.maxSize must be an integer from 2 to 100"},
      {R"({"batchEvents":{"maxSize":1,"timeout":"1s"}})", "batchEvents.maxSize must be an integer"},
      {R"({"batchEvents":{"maxSize":101,"timeout":"1s"}})", "batchEvents.maxSize must be"},
      {R"({"batchEvents":{"maxSize":2.5,"timeout":"1s"}})", "batchEvents.maxSize must be"},
      {R"({"batchEvents":{"maxSize":"5","timeout":"1s"}})", "batchEvents.maxSize must be"},
      {R"({"batchEvents":{"maxSize":5}})", "batchEvents needs a \"timeout\""},
      {R"({"batchEvents":{"maxSize":5,"timeout":5}})", "batchEvents.timeout must be a duration"},
      {R"({"batchEvents":{"maxSize":5,"timeout":"999ms"}})",
       "batchEvents.timeout must be from 1s to 60s"},
      {R"({"batchEvents":{"maxSize":5,"timeout":"61s"}})",
       "batchEvents.timeout must be from 1s to 60s"},
      {R"({"batchEvents":{"maxSize":5,"timeout":"soon"}})", "batchEvents.timeout: "},
      {R"({"batchEvents":{"maxSize":5,"timeout":"1s","key":""}})",
       "batchEvents.key must be a non-empty expression"},
      {R"({"batchEvents":{"maxSize":5,"timeout":"1s","key":"event."}})", "batchEvents.key: at 7: "},
      {R"({"batchEvents":{"maxSize":5,"timeout":"1s","if":""}})",
       "batchEvents.if must be a non-empty expression"},
      {R"({"batchEvents":{"maxSize":5,"timeout":"1s","if":"event.("}})", "batchEvents.if: "},
      {R"({"batchEvents":{"maxSize":5,"timeout":"1s","maxBytes":10}})",
       "batchEvents.maxBytes is not implemented by Funcky"},
      {R"({"batchEvents":{"maxSize":5,"timeout":"1s"},"cancel":[{"event":"x"}]})",
       "batchEvents with cancel is not implemented"},
      {R"({"batchEvents":{"maxSize":5,"timeout":"1s"},"debounce":{"period":"1s"}})",
       "batchEvents with debounce is not implemented"},
      {R"({"batchEvents":{"maxSize":5,"timeout":"1s"},"singleton":{"mode":"skip"}})",
       "batchEvents with singleton is not implemented"},
      {R"({"batchEvents":{"maxSize":5,"timeout":"1s"},"ordering":{"key":"event.data.a"}})",
       "batchEvents with ordering (a lane) is not implemented"},
      {R"({"batchEvents":{"maxSize":5,"timeout":"1s"},"concurrency":{"limit":1,"key":"event.data.a"}})",
       "batchEvents with concurrency (a lane) is not implemented"},
      {R"({"batchEvents":{"maxSize":5,"timeout":"1s"},"priority":{"run":"1"}})",
       "batchEvents with priority is not implemented"},
  };
  for (const auto& [config, message] : cases) {
    ExpectErrorStartingWith(scheduler::ParseFlowControl(Json::parse(config)).status(), message,
                            config);
  }
}

// Sequence lanes (docs/ordering.md "Sequence lanes"): the options on `ordering`.
TEST(SequenceLanes, OrderingOptionsAreParsed) {
  auto flow = scheduler::ParseFlowControl(Json::parse(R"({"ordering":{
      "key":"event.data.tenant","sequence":"event.data.version","gap_timeout":"2s",
      "start":1,"stale":"run","bypass":"event.data.unordered == true","head_timeout":"1h"}})"));
  ASSERT_TRUE(flow.ok()) << flow.status().ToString();
  EXPECT_EQ(flow->lane_from, "ordering");
  ASSERT_TRUE(flow->lane_key);
  EXPECT_EQ(flow->lane_key->source(), "event.data.tenant");
  EXPECT_EQ(flow->head_timeout, std::chrono::hours(1));
  ASSERT_TRUE(flow->bypass);
  EXPECT_EQ(flow->bypass->source(), "event.data.unordered == true");
  ASSERT_TRUE(flow->sequence);
  EXPECT_EQ(flow->sequence->expression->source(), "event.data.version");
  EXPECT_EQ(flow->sequence->gap_timeout, std::chrono::seconds(2));
  EXPECT_EQ(flow->sequence->start, 1);
  EXPECT_EQ(flow->sequence->stale, scheduler::StalePolicy::kRun);

  // The defaults: a new lane starts at the first number it sees; stale numbers are skipped.
  auto defaults = scheduler::ParseFlowControl(Json::parse(
      R"({"ordering":{"key":"event.data.t","sequence":"event.data.v","gap_timeout":"1m",
          "start":null,"stale":null,"bypass":null}})"));
  ASSERT_TRUE(defaults.ok()) << defaults.status().ToString();
  ASSERT_TRUE(defaults->sequence);
  EXPECT_EQ(defaults->sequence->start, std::nullopt);
  EXPECT_EQ(defaults->sequence->stale, scheduler::StalePolicy::kSkip);
  EXPECT_FALSE(defaults->bypass);
  EXPECT_FALSE(defaults->head_timeout);

  // The bounds themselves are accepted.
  for (const char* gap : {"1s", "7d", "168h", "1000ms"}) {
    auto edge = scheduler::ParseFlowControl(
        {{"ordering",
          {{"key", "event.data.t"}, {"sequence", "event.data.v"}, {"gap_timeout", gap}}}});
    EXPECT_TRUE(edge.ok()) << gap << ": " << edge.status().ToString();
  }
  for (int64_t start : {int64_t{0}, scheduler::kMaxSequenceNumber}) {
    auto edge = scheduler::ParseFlowControl({{"ordering",
                                              {{"key", "event.data.t"},
                                               {"sequence", "event.data.v"},
                                               {"gap_timeout", "5s"},
                                               {"start", start}}}});
    ASSERT_TRUE(edge.ok()) << start << ": " << edge.status().ToString();
    EXPECT_EQ(edge->sequence->start, start);
  }

  // A lane in acceptance order may have a bypass too.
  auto plain = scheduler::ParseFlowControl(
      Json::parse(R"({"ordering":{"key":"event.data.t","bypass":"event.name == 'a/ping'"}})"));
  ASSERT_TRUE(plain.ok()) << plain.status().ToString();
  EXPECT_FALSE(plain->sequence);
  EXPECT_TRUE(plain->bypass);
}

// The npm SDK's getConfig drops unknown top-level keys (so `ordering` never reaches the
// coordinator) but passes the `concurrency` value through as it is: the same options ride on
// the lane's entry and mean the same.
TEST(SequenceLanes, TheConcurrencyEntryFormMeansTheSame) {
  const Json options = {{"sequence", "event.data.version"},
                        {"gap_timeout", "2s"},
                        {"start", 1},
                        {"stale", "run"},
                        {"bypass", "event.data.unordered == true"},
                        {"head_timeout", "1h"}};
  Json ordering = options;
  ordering["key"] = "event.data.tenant";
  Json entry = options;
  entry["limit"] = 1;
  entry["key"] = "event.data.tenant";
  Json with_limit = {{"limit", 10}};  // a function-wide limit beside the lane
  for (const Json& config :
       {Json{{"concurrency", entry}}, Json{{"concurrency", Json::array({with_limit, entry})}}}) {
    auto a = scheduler::ParseFlowControl({{"ordering", ordering}});
    auto b = scheduler::ParseFlowControl(config);
    ASSERT_TRUE(a.ok()) << a.status().ToString();
    ASSERT_TRUE(b.ok()) << config << ": " << b.status().ToString();
    EXPECT_EQ(b->lane_from, "concurrency");
    EXPECT_EQ(b->lane_key->source(), a->lane_key->source());
    EXPECT_EQ(b->head_timeout, a->head_timeout);
    EXPECT_EQ(b->bypass->source(), a->bypass->source());
    ASSERT_TRUE(b->sequence);
    EXPECT_EQ(b->sequence->expression->source(), a->sequence->expression->source());
    EXPECT_EQ(b->sequence->gap_timeout, a->sequence->gap_timeout);
    EXPECT_EQ(b->sequence->start, a->sequence->start);
    EXPECT_EQ(b->sequence->stale, a->sequence->stale);
    EXPECT_EQ(b->key_limit, 0);
  }
  auto with_limit_parsed = scheduler::ParseFlowControl({{"concurrency", {with_limit, entry}}});
  EXPECT_EQ(with_limit_parsed->function_limit, 10);
}

TEST(SequenceLanes, BadOptionsAreRefusedNamingTheField) {
  const std::string max = std::to_string(scheduler::kMaxSequenceNumber);
  const std::vector<std::pair<std::string, std::string>> cases = {
      {R"({"ordering":{"sequence":"event.data.v","gap_timeout":"2s"}})",
       "ordering.sequence needs ordering.key: the numbers are counted per key"},
      {R"({"ordering":{"key":"event.data.t","sequence":"event.data.v"}})",
       "ordering.sequence needs ordering.gap_timeout: how long the lane waits for a missing "
       "number, from 1s to 7d"},
      {R"({"ordering":{"key":"event.data.t","gap_timeout":"2s"}})",
       "ordering.gap_timeout needs ordering.sequence"},
      {R"({"ordering":{"key":"event.data.t","start":1}})",
       "ordering.start needs ordering.sequence"},
      {R"({"ordering":{"key":"event.data.t","stale":"run"}})",
       "ordering.stale needs ordering.sequence"},
      {R"({"ordering":{"key":"event.data.t","sequence":"event.data.","gap_timeout":"2s"}})",
       "ordering.sequence: at 12: expected a field name after '.'"},
      {R"({"ordering":{"key":"event.data.t","sequence":"","gap_timeout":"2s"}})",
       "ordering.sequence must be a non-empty expression string"},
      {R"({"ordering":{"key":"event.data.t","sequence":7,"gap_timeout":"2s"}})",
       "ordering.sequence must be a non-empty expression string"},
      {R"({"ordering":{"key":"event.data.t","sequence":"event.data.v","gap_timeout":"999ms"}})",
       "ordering.gap_timeout must be from 1s to 7d"},
      {R"({"ordering":{"key":"event.data.t","sequence":"event.data.v","gap_timeout":"7d1ms"}})",
       "ordering.gap_timeout must be from 1s to 7d"},
      {R"({"ordering":{"key":"event.data.t","sequence":"event.data.v","gap_timeout":"0s"}})",
       "ordering.gap_timeout must be from 1s to 7d"},
      {R"({"ordering":{"key":"event.data.t","sequence":"event.data.v","gap_timeout":"soon"}})",
       "ordering.gap_timeout: "},
      {R"({"ordering":{"key":"event.data.t","sequence":"event.data.v","gap_timeout":2000}})",
       "ordering.gap_timeout must be a duration string"},
      {R"({"ordering":{"key":"event.data.t","sequence":"event.data.v","gap_timeout":"2s","start":-1}})",
       "ordering.start must be an integer from 0 to " + max},
      {R"({"ordering":{"key":"event.data.t","sequence":"event.data.v","gap_timeout":"2s","start":1.5}})",
       "ordering.start must be an integer from 0 to " + max},
      {R"({"ordering":{"key":"event.data.t","sequence":"event.data.v","gap_timeout":"2s","start":9007199254740992}})",
       "ordering.start must be an integer from 0 to " + max},
      {R"({"ordering":{"key":"event.data.t","sequence":"event.data.v","gap_timeout":"2s","start":"1"}})",
       "ordering.start must be an integer from 0 to " + max},
      {R"({"ordering":{"key":"event.data.t","sequence":"event.data.v","gap_timeout":"2s","stale":"drop"}})",
       "ordering.stale must be \"skip\" or \"run\""},
      {R"({"ordering":{"key":"event.data.t","bypass":"event.data.x =="}})", "ordering.bypass: at "},
      {R"({"ordering":{"key":"event.data.t","head_timeout":5}})",
       "ordering.head_timeout must be a duration string"},
      // Unknown fields are still refused, on either form.
      {R"({"ordering":{"key":"event.data.t","sequence":"event.data.v","gap_timeout":"2s","order":"desc"}})",
       "ordering.order is not implemented by Funcky"},
      {R"({"concurrency":{"limit":1,"key":"event.data.t","reorder":true}})",
       "concurrency.reorder is not implemented by Funcky"},
      // The concurrency form: the options need the lane's entry (limit 1 with a key).
      {R"({"concurrency":{"limit":2,"key":"event.data.t","sequence":"event.data.v","gap_timeout":"2s"}})",
       "concurrency.sequence needs a lane: an entry {limit: 1, key}"},
      {R"({"concurrency":{"limit":1,"sequence":"event.data.v","gap_timeout":"2s"}})",
       "concurrency.sequence needs a lane: an entry {limit: 1, key}"},
      {R"({"concurrency":[{"limit":5,"head_timeout":"1m"},{"limit":1,"key":"event.data.t"}]})",
       "concurrency.head_timeout needs a lane: an entry {limit: 1, key}"},
      {R"({"concurrency":{"limit":1,"key":"event.data.t","sequence":"event.data.v"}})",
       "concurrency.sequence needs concurrency.gap_timeout"},
      {R"({"concurrency":{"limit":1,"key":"event.data.t","sequence":"event.data.v","gap_timeout":"1h","stale":"later"}})",
       "concurrency.stale must be \"skip\" or \"run\""},
      {R"({"concurrency":{"limit":1,"key":"event.data.t","gap_timeout":"1h"}})",
       "concurrency.gap_timeout needs concurrency.sequence"},
      // A cron tick has no number to order by.
      {R"({"triggers":[{"cron":"* * * * *"}],"ordering":{"key":"'all'","sequence":"event.data.v","gap_timeout":"1m"}})",
       "ordering.sequence: a cron trigger's ticks carry no sequence number"},
  };
  for (const auto& [config, message] : cases) {
    ExpectErrorStartingWith(scheduler::ParseFlowControl(Json::parse(config)).status(), message,
                            config);
  }
}

TEST(SequenceLanes, NumbersAreNonNegativeSafeIntegers) {
  const int64_t max = scheduler::kMaxSequenceNumber;
  const std::vector<std::pair<Json, int64_t>> good = {
      {Json(0), 0},
      {Json(7), 7},
      {Json(uint64_t{42}), 42},
      {Json(max), max},
      {Json(3.0), 3},
      {Json(-0.0), 0},
      {Json(1e15), 1'000'000'000'000'000},
      {Json("17"), 17},
      {Json("007"), 7},
      {Json("9007199254740991"), max},
  };
  for (const auto& [value, want] : good) {
    auto n = scheduler::SequenceNumber(value);
    ASSERT_TRUE(n.ok()) << value << ": " << n.status().ToString();
    EXPECT_EQ(*n, want) << value;
  }
  const std::vector<std::pair<Json, std::string>> bad = {
      {Json(nullptr), "is null (a missing field?)"},
      {Json(-1), "is -1, below 0"},
      {Json(max + 1), "is 9007199254740992, above 9007199254740991"},
      {Json(uint64_t{18446744073709551615u}), "is 18446744073709551615, above"},
      {Json(1.5), "is 1.5, not an integer"},
      {Json(-2.0), "is -2.0, below 0"},
      {Json(1e300), "is 1e+300, above"},
      {Json(std::numeric_limits<double>::quiet_NaN()), "is null, not an integer"},
      {Json("9007199254740992"), "is \"9007199254740992\", above"},
      {Json("99999999999999999999999"), "is \"99999999999999999999999\", above"},
      {Json("-3"), "is \"-3\", not a string of decimal digits"},
      {Json("+3"), "is \"+3\", not a string of decimal digits"},
      {Json("3 "), "is \"3 \", not a string of decimal digits"},
      {Json(""), "is \"\", not a string of decimal digits"},
      {Json("v2"), "is \"v2\", not a string of decimal digits"},
      {Json(true), "is true, not a number"},
      {Json::array({1}), "is [1], not a number"},
      {Json{{"n", 1}}, "is {\"n\":1}, not a number"},
      // Long values are cut short in the message.
      {Json(std::string(100, '1')), "is \"" + std::string(36, '1') + "..., above"},
      // ... at a character's start.
      {Json(std::string(35, '1') + "\u00e9" + std::string(10, '1')),
       "is \"" + std::string(35, '1') + "..., not a string of decimal digits"},
      // Bytes that are not UTF-8 (b64decode() makes them) are shown as U+FFFD (they threw).
      {Json("\xff"), "is \"\ufffd\", not a string of decimal digits"},
  };
  for (const auto& [value, message] : bad) {
    ExpectErrorStartingWith(scheduler::SequenceNumber(value).status(), message,
                            value.dump(-1, ' ', false, Json::error_handler_t::replace));
  }
}

// What intake computes per event: the lane key, the bypass, and a sequence lane's number.
TEST(SequenceLanes, EachEventGetsItsNumberOrBypassesItsLane) {
  auto flow = scheduler::ParseFlowControl(Json::parse(R"({"ordering":{
      "key":"event.data.tenant","sequence":"event.data.version","gap_timeout":"2s",
      "bypass":"event.data.unordered == true"},
      "concurrency":[{"limit":3,"key":"event.data.user"}]})"));
  ASSERT_TRUE(flow.ok()) << flow.status().ToString();
  const auto keys = [&](Json data) {
    return scheduler::EvaluateKeys(*flow, {{"name", "crm/updated"}, {"data", std::move(data)}});
  };

  auto ordered = keys({{"tenant", "t1"}, {"version", 3}, {"user", "u"}});
  ASSERT_TRUE(ordered.ok()) << ordered.status().ToString();
  EXPECT_EQ(ordered->lane_key, "t1");
  EXPECT_EQ(ordered->concurrency_key, "u");
  EXPECT_FALSE(ordered->lane.bypass_lane);
  EXPECT_EQ(ordered->lane.lane_sequence, 3);
  EXPECT_EQ(keys({{"tenant", "t1"}, {"version", "12"}})->lane.lane_sequence, 12);

  // The bypass is decided first: such an event needs no number, and has no lane.
  auto bypass = keys({{"tenant", "t1"}, {"unordered", true}, {"user", "u"}});
  ASSERT_TRUE(bypass.ok()) << bypass.status().ToString();
  EXPECT_TRUE(bypass->lane.bypass_lane);
  EXPECT_EQ(bypass->lane_key, std::nullopt);
  EXPECT_EQ(bypass->lane.lane_sequence, std::nullopt);
  EXPECT_EQ(bypass->concurrency_key, "u");  // other limits still hold
  // Only `true` bypasses (as for any condition).
  EXPECT_EQ(keys({{"tenant", "t1"}, {"unordered", "yes"}, {"version", 1}})->lane_key, "t1");

  // No number: refused, naming the expression and what it gave.
  for (const auto& [data, message] : std::vector<std::pair<Json, std::string>>{
           {{{"tenant", "t1"}},
            "its sequence number \"event.data.version\" is null (a missing "
            "field?)"},
           {{{"tenant", "t1"}, {"version", -4}},
            "its sequence number \"event.data.version\" is "
            "-4, below 0"},
           {{{"tenant", "t1"}, {"version", 2.5}},
            "its sequence number \"event.data.version\" "
            "is 2.5, not an integer"}}) {
    auto r = keys(data);
    ASSERT_FALSE(r.ok()) << data;
    EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
    EXPECT_EQ(r.status().message(), message);
  }

  // A number computed by the expression, and one over the evaluation budget (null).
  auto computed = scheduler::ParseFlowControl(Json::parse(
      R"({"ordering":{"key":"event.data.t","sequence":"event.data.major * 1000 + event.data.minor",
          "gap_timeout":"2s"}})"));
  ASSERT_TRUE(computed.ok()) << computed.status().ToString();
  auto n = scheduler::EvaluateKeys(*computed, {{"data", {{"t", "a"}, {"major", 2}, {"minor", 5}}}});
  ASSERT_TRUE(n.ok()) << n.status().ToString();
  EXPECT_EQ(n->lane.lane_sequence, 2005);
  std::string costly = "size(event.data.b";
  for (int i = 1; i < 300; ++i) costly += "+event.data.b";
  costly += ")";
  auto over = scheduler::ParseFlowControl(
      {{"ordering", {{"key", "event.data.t"}, {"sequence", costly}, {"gap_timeout", "2s"}}}});
  ASSERT_TRUE(over.ok()) << over.status().ToString();
  auto r =
      scheduler::EvaluateKeys(*over, {{"data", {{"t", "a"}, {"b", std::string(100'000, 'x')}}}});
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("is null"), std::string::npos) << r.status().message();

  // A lane in acceptance order: no number; the bypass still applies.
  auto plain = scheduler::ParseFlowControl(
      Json::parse(R"({"ordering":{"key":"event.data.t","bypass":"event.name == 'a/ping'"}})"));
  ASSERT_TRUE(plain.ok());
  auto fifo = scheduler::EvaluateKeys(*plain, {{"name", "a/write"}, {"data", {{"t", "x"}}}});
  ASSERT_TRUE(fifo.ok());
  EXPECT_EQ(fifo->lane_key, "x");
  EXPECT_EQ(fifo->lane.lane_sequence, std::nullopt);
  auto ping = scheduler::EvaluateKeys(*plain, {{"name", "a/ping"}, {"data", {{"t", "x"}}}});
  ASSERT_TRUE(ping.ok());
  EXPECT_EQ(ping->lane_key, std::nullopt);
  EXPECT_TRUE(ping->lane.bypass_lane);

  // A function without a lane: no bypass, no number, whatever the event.
  auto none = scheduler::ParseFlowControl(Json::object());
  ASSERT_TRUE(none.ok());
  auto unlaned = scheduler::EvaluateKeys(*none, {{"data", {{"version", "x"}}}});
  ASSERT_TRUE(unlaned.ok());
  EXPECT_EQ(unlaned->lane_key, std::nullopt);
  EXPECT_FALSE(unlaned->lane.bypass_lane);
}

// A run's cancel keys (store::CancelKey): one for each rule with an `if`, named by the rule's
// id (the same for the same event and `if` in every parse, another for another pair, also for
// a pair that reads as another when joined), its key what the `if` requires of `async`.
TEST(Flow, CancelRulesKeyARunByWhatTheirIfRequires) {
  auto parse = [](const Json& cancel) {
    auto flow = scheduler::ParseFlowControl({{"cancel", cancel}});
    EXPECT_TRUE(flow.ok()) << flow.status().ToString();
    return flow.ok() ? *flow : scheduler::FlowControl{};
  };
  const Json rules = Json::array(
      {{{"event", "stop"}, {"if", "async.data.user == event.data.user"}},
       {{"event", "stop"}, {"if", "async.data.user == event.data.user"}},  // its twin
       {{"event", "halt"}, {"if", "async.data.user == event.data.user"}},
       {{"event", "stop"}, {"if", "async.data.a == 1 || async.data.user == event.data.user"}},
       {{"event", "stop"}}});
  const scheduler::FlowControl flow = parse(rules);
  ASSERT_EQ(flow.cancel.size(), 5u);
  EXPECT_EQ(flow.cancel[0].id.size(), 32u);
  EXPECT_EQ(flow.cancel[0].id, parse(rules).cancel[0].id) << "the same in every parse";
  EXPECT_EQ(flow.cancel[0].id, flow.cancel[1].id);
  EXPECT_NE(flow.cancel[0].id, flow.cancel[2].id);
  EXPECT_NE(flow.cancel[0].id, flow.cancel[3].id);
  EXPECT_TRUE(flow.cancel[4].id.empty()) << "no if: no keys";
  // "stop\nx ||" with "y" against "stop" with "x ||\ny": an event and an `if` joined by a
  // newline read the same; as a pair they do not.
  const scheduler::FlowControl a =
      parse(Json::array({{{"event", "stop\nasync.data.v == event.data.v ||"},
                          {"if", "async.data.u == event.data.u"}}}));
  const scheduler::FlowControl b = parse(
      Json::array({{{"event", "stop"},
                    {"if", "async.data.v == event.data.v ||\nasync.data.u == event.data.u"}}}));
  EXPECT_NE(a.cancel[0].id, b.cancel[0].id);

  auto keys = scheduler::EvaluateKeys(flow, {{"data", {{"user", "u1"}}}});
  ASSERT_TRUE(keys.ok()) << keys.status().ToString();
  ASSERT_EQ(keys->cancel_keys.size(), 3u) << "the twins once, the rule without an if none";
  EXPECT_EQ(keys->cancel_keys[0].rule, flow.cancel[0].id);
  ASSERT_TRUE(keys->cancel_keys[0].key);
  std::vector<std::string> event_keys;
  ASSERT_TRUE(expr::IndexKeys(Json{{"name", "stop"}, {"data", {{"user", "u1"}}}}, &event_keys));
  EXPECT_NE(std::find(event_keys.begin(), event_keys.end(), *keys->cancel_keys[0].key),
            event_keys.end())
      << "the key is one of a cancelling event's of that user";
  EXPECT_EQ(keys->cancel_keys[1].rule, flow.cancel[2].id);
  EXPECT_EQ(keys->cancel_keys[2].rule, flow.cancel[3].id);
  EXPECT_FALSE(keys->cancel_keys[2].key) << "an `||` requires nothing";
  // A value that is no key (an object): the rule's events all read the run.
  auto object = scheduler::EvaluateKeys(flow, {{"data", {{"user", {{"id", 1}}}}}});
  ASSERT_TRUE(object.ok());
  EXPECT_FALSE(object->cancel_keys[0].key);
}

}  // namespace
}  // namespace funcky
