// ParseUntrustedJson and the parsers built on it: nothing an untrusted sender writes may
// make them (or what holds their result) recurse without bound.
#include "common/json_parse.h"

#include <string>

#include <gtest/gtest.h>

#include "common/ops.h"
#include "tests/support/deep_json.h"

namespace funcky {
namespace {

using Json = nlohmann::json;

constexpr size_t kMillion = 1'000'000;

using testing::DeepArrays;
using testing::DeepObjects;

TEST(ParseUntrustedJson, RefusesAMillionLevelsOfArraysAndObjects) {
  for (const std::string& text : {DeepArrays(kMillion), DeepObjects(kMillion)}) {
    auto parsed = ParseUntrustedJson(text, {.max_depth = 64});
    ASSERT_FALSE(parsed.ok()) << text.substr(0, 10);
    EXPECT_EQ(parsed.status().code(), StatusCode::kInvalidArgument);
    EXPECT_EQ(parsed.status().message(), "JSON nested deeper than 64 levels");
  }
}

TEST(ParseUntrustedJson, AcceptsExactlyTheDepthLimit) {
  EXPECT_TRUE(ParseUntrustedJson(DeepArrays(64), {.max_depth = 64}).ok());
  EXPECT_FALSE(ParseUntrustedJson(DeepArrays(65), {.max_depth = 64}).ok());
  EXPECT_TRUE(ParseUntrustedJson(DeepObjects(64), {.max_depth = 64}).ok());
  EXPECT_FALSE(ParseUntrustedJson(DeepObjects(65), {.max_depth = 64}).ok());
  // Brackets inside strings are text, not nesting.
  auto in_string = ParseUntrustedJson("{\"s\":\"" + std::string(400'000, '[') + "\"}");
  ASSERT_TRUE(in_string.ok()) << in_string.status().ToString();
  EXPECT_EQ((*in_string)["s"].get_ref<const std::string&>().size(), 400'000u);
}

TEST(ParseUntrustedJson, RefusesTextOverTheByteLimitBeforeParsing) {
  auto parsed = ParseUntrustedJson("[1, 2, 3]", {.max_bytes = 8});
  EXPECT_EQ(parsed.status().code(), StatusCode::kResourceExhausted);
  EXPECT_TRUE(ParseUntrustedJson("[1, 2, 3]", {.max_bytes = 9}).ok());
}

// Each scalar, key and container counts one value; past the bound the parse stops with
// kResourceExhausted, before the rest is built. The default bound refuses three megabytes of
// empty objects, which would take some twenty times that once parsed. Unbounded, the million
// objects parse in about a second: nlohmann's parser with a callback (what checked the limits
// before) scanned an array at the end of each object in it, some eleven minutes here, past
// the suite's timeout.
TEST(ParseUntrustedJson, RefusesMoreValuesThanItsBoundWhileParsing) {
  EXPECT_TRUE(ParseUntrustedJson(R"([1,"a",{"k":null}])", {.max_values = 6}).ok());
  auto over = ParseUntrustedJson(R"([1,"a",{"k":null}])", {.max_values = 5});
  EXPECT_EQ(over.status().code(), StatusCode::kResourceExhausted);
  EXPECT_EQ(over.status().message(), "JSON holds more than 5 values");

  std::string empties = "[";
  for (size_t i = 0; i < (size_t{1} << 20); ++i) empties += "{},";
  empties.back() = ']';
  auto refused = ParseUntrustedJson(empties);
  EXPECT_EQ(refused.status().code(), StatusCode::kResourceExhausted);
  EXPECT_EQ(refused.status().message(), "JSON holds more than 1048576 values");
  auto unbounded = ParseUntrustedJson(empties, {.max_values = 0});
  ASSERT_TRUE(unbounded.ok());
  EXPECT_EQ(unbounded->size(), size_t{1} << 20);
  // The call body an SDK reads is bounded by its bytes alone.
  EXPECT_TRUE(ParseUntrustedJson(empties, kCallBodyJsonLimits).ok());
}

// What the builder makes is what nlohmann's own parser makes: scalars at the top, nesting,
// empty containers, duplicate keys (the last wins), escapes, numbers of every kind.
TEST(ParseUntrustedJson, BuildsWhatNlohmannsParserBuilds) {
  for (const std::string text :
       {"0", "-1", "18446744073709551615", "1.5e300", "true", "null", R"("a\u00e9\n")", "[]", "{}",
        "[[],{},[[{}]]]", R"({"a":1,"a":2})", R"({"k":{"k":{"k":[1,"2",null,false]}}})",
        R"([{"x":[1,2,{"y":[]}]},-0.0,{"":""}])", R"(  {"spaced" : [ 1 , 2 ] }  )"}) {
    auto built = ParseUntrustedJson(text);
    ASSERT_TRUE(built.ok()) << text << ": " << built.status().ToString();
    const Json expected = Json::parse(text);
    EXPECT_EQ(*built, expected) << text;
    EXPECT_EQ(built->dump(), expected.dump()) << text;
  }
  for (const std::string text : {"", "[", "{\"a\"}", "[1,]", "1 2", "{\"a\":1,}", "nul"}) {
    EXPECT_EQ(ParseUntrustedJson(text).status().code(), StatusCode::kInvalidArgument) << text;
  }
}

TEST(ParseUntrustedJson, NumbersOutOfRangeAreRefusedWithAShortMessage) {
  const std::string digits(100'000, '7');
  for (const std::string& text : {std::string(R"({"n": 1e400})"), std::string(R"({"n": -1e400})"),
                                  "{\"n\": " + digits + "}"}) {
    auto parsed = ParseUntrustedJson(text);
    ASSERT_FALSE(parsed.ok());
    EXPECT_EQ(parsed.status().code(), StatusCode::kInvalidArgument);
    EXPECT_EQ(parsed.status().message(), "JSON number out of range");
  }
  EXPECT_EQ((*ParseUntrustedJson("1e300")).get<double>(), 1e300);
}

TEST(ParseUntrustedJson, MalformedTextGetsAPositionButNeverTheWholeToken) {
  const std::string long_token = "\"" + std::string(100'000, 'x');  // never closed
  auto parsed = ParseUntrustedJson(long_token);
  ASSERT_FALSE(parsed.ok());
  EXPECT_EQ(parsed.status().code(), StatusCode::kInvalidArgument);
  EXPECT_LT(parsed.status().message().size(), 300u);
  EXPECT_NE(parsed.status().message().find("malformed JSON: parse error at line 1"),
            std::string::npos)
      << parsed.status().message();
  EXPECT_EQ(ParseUntrustedJson("").status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(ParseUntrustedJson("[1,]").status().code(), StatusCode::kInvalidArgument);
}

TEST(ParseUntrustedJson, NulInAStringOrKeyIsRefusedUnlessAllowed) {
  for (const std::string text : {R"({"a":"x\u0000y"})", R"({"a\u0000":1})", R"(["\u0000"])"}) {
    auto parsed = ParseUntrustedJson(text);
    ASSERT_FALSE(parsed.ok()) << text;
    EXPECT_EQ(parsed.status().code(), StatusCode::kInvalidArgument);
    EXPECT_EQ(parsed.status().message(), "JSON string holds \\u0000, which cannot be stored");
    EXPECT_TRUE(ParseUntrustedJson(text, {.allow_nul = true}).ok()) << text;
  }
}

TEST(ParseOps, AMillionLevelsDeepReplyIsAProtocolErrorNotACrash) {
  for (const std::string& data : {DeepArrays(kMillion), DeepObjects(kMillion)}) {
    auto ops = ParseOps(R"([{"id":"h","op":"StepRun","data":)" + data + "}]");
    ASSERT_FALSE(ops.ok());
    EXPECT_EQ(ops.status().code(), StatusCode::kInvalidArgument);
    EXPECT_EQ(ops.status().message(), "op list: JSON nested deeper than 128 levels");
  }
  // The same depth as a whole reply.
  EXPECT_EQ(ParseOps(DeepArrays(kMillion)).status().message(),
            "op list: JSON nested deeper than 128 levels");
}

// JsonBytesUpTo measures values by their strings, keys and values, and JsonLargerThan tells
// small ones from large ones by it; both stop walking once past the bound: a list of a million
// values is judged by its first few.
TEST(JsonLargerThan, CountsStringsKeysAndValuesAndStopsPastTheBound) {
  const nlohmann::json small = {{"id", "t-1"}, {"n", 5}, {"list", {1, 2, 3}}};
  EXPECT_FALSE(JsonLargerThan({&small}, 1024));
  // 8 a value (7 here), and the strings' and keys' bytes ("t-1"; id, n, list): 56 + 3 + 7.
  EXPECT_EQ(JsonBytesUpTo({&small}, 1024), 66u);
  const nlohmann::json text = std::string(2000, 'x');
  EXPECT_TRUE(JsonLargerThan({&text}, 1024));
  EXPECT_TRUE(JsonLargerThan({&small, &text}, 1024));
  nlohmann::json keys = nlohmann::json::object();
  for (int i = 0; i < 100; ++i)
    keys[std::string(20, static_cast<char>('a' + i % 26)) + std::to_string(i)] = nullptr;
  EXPECT_TRUE(JsonLargerThan({&keys}, 1024));
  const nlohmann::json many(std::vector<int>(1'000'000, 0));
  EXPECT_TRUE(JsonLargerThan({&many}, 1024));
  const nlohmann::json empties(std::vector<nlohmann::json>(1'000'000, nlohmann::json::object()));
  EXPECT_TRUE(JsonLargerThan({&empties}, 1024));
  EXPECT_FALSE(JsonLargerThan({}, 0));
}

}  // namespace
}  // namespace funcky
