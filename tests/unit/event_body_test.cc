// The body of POST /e/{key}: what ParseEventBody accepts, fills in and refuses.
#include "coordinator/api/event_body.h"

#include <string>

#include <gtest/gtest.h>

namespace funcky::api {
namespace {

using Json = nlohmann::json;

constexpr int64_t kNow = 1700000000000;

TEST(EventBody, OneEventOrAListGetTheirDefaults) {
  auto one = ParseEventBody(R"({"name":"a/b","data":{"x":1,"_inngest":{"y":2}}})", {}, kNow);
  ASSERT_TRUE(one.ok()) << one.status().ToString();
  ASSERT_EQ(one->size(), 1u);
  EXPECT_EQ((*one)[0],
            Json::parse(R"({"name":"a/b","data":{"x":1},"user":{},"ts":1700000000000})"));
  auto list = ParseEventBody(
      R"([{"name":"a/b"},{"name":"c/d","ts":1600000000000},{"name":"e/f","ts":1731622400000}])", {},
      kNow);
  ASSERT_TRUE(list.ok()) << list.status().ToString();
  ASSERT_EQ(list->size(), 3u);
  EXPECT_EQ((*list)[1]["ts"], 1600000000000);
  EXPECT_EQ((*list)[2]["ts"], 1731622400000);  // 366 days ahead: kept, to schedule its runs
}

TEST(EventBody, MillionDeepBodiesNulAndHugeNumbersAreInvalidArguments) {
  std::string objects;
  for (int i = 0; i < 1'000'000; ++i) objects += "{\"a\":";
  objects += "1" + std::string(1'000'000, '}');
  const std::vector<std::pair<std::string, std::string>> cases = {
      {std::string(1'000'000, '[') + std::string(1'000'000, ']'),
       "JSON nested deeper than 64 levels"},
      {objects, "JSON nested deeper than 64 levels"},
      {R"({"name":"a/b","data":{"s":"\u0000"}})",
       "JSON string holds \\u0000, which cannot be stored"},
      {R"({"name":"a/\u0000"})", "JSON string holds \\u0000, which cannot be stored"},
      {R"({"name":"a/b","data":{"n":1e400}})", "JSON number out of range"},
      {R"({"name":"a/b","data":{"n":)" + std::string(100'000, '9') + "}}",
       "JSON number out of range"},
      {"[]", "no events in the request"},
      {R"([{"name":"a/b"},{"nope":1}])", "event 1: \"name\" must be a non-empty string"},
      {R"({"name":"inngest/function.failed"})",
       "event 0: names starting with \"inngest/\" are reserved"},
      // A cron tick's id is its function and time: sent first, it would drop the tick.
      {R"({"name":"a/b","id":"cron:app-nightly:2026-12-06T00:00:00.000Z"})",
       "event 0: ids starting with \"cron:\" are the coordinator's own"},
      {R"([{"name":"a/b"},{"name":"a/b","id":"lane-gap-7"}])",
       "event 1: ids starting with \"lane-gap-\" are the coordinator's own"},
      // A run's end events and invocations are the coordinator's under "funcky:".
      {R"({"name":"a/b","id":"funcky:failed:01KBRUN"})",
       "event 0: ids starting with \"funcky:\" are the coordinator's own"},
      // A ts schedules the event's runs: 366 days ahead at most (kNow + 366 d + 1 ms).
      {R"({"name":"a/b","ts":1731622400001})",
       "event 0: \"ts\" is more than 366 days ahead; a ts in the future schedules the "
       "event's runs then, at most 366 days ahead"},
  };
  for (const auto& [body, message] : cases) {
    auto events = ParseEventBody(body, {}, kNow);
    ASSERT_FALSE(events.ok()) << body.substr(0, 80);
    EXPECT_EQ(events.status().code(), StatusCode::kInvalidArgument) << body.substr(0, 80);
    EXPECT_EQ(events.status().message(), message) << body.substr(0, 80);
  }
}

TEST(EventBody, TooManyOrTooLargeEventsAreResourceExhausted) {
  auto many =
      ParseEventBody(R"([{"name":"a"},{"name":"b"},{"name":"c"}])", {.max_events = 2}, kNow);
  EXPECT_EQ(many.status().code(), StatusCode::kResourceExhausted);
  EXPECT_EQ(many.status().message(), "3 events in one request; the limit is 2");
  auto large = ParseEventBody(R"({"name":"a","data":{"s":")" + std::string(100, 'x') + "\"}}",
                              {.max_event_bytes = 64}, kNow);
  EXPECT_EQ(large.status().code(), StatusCode::kResourceExhausted);
  EXPECT_EQ(large.status().message(), "event 0 is larger than 64 bytes");
}

}  // namespace
}  // namespace funcky::api
