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

TEST(Expr, MalformedExpressionsSayWhere) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"", "at 1: unexpected end of expression"},
      {"event.", "at 7: expected a field name after '.'"},
      {"event.data +", "at 13: unexpected end of expression"},
      {"event.data.a b", "at 14: unexpected 'b'"},
      {"(event.data", "at 12: expected ')'"},
      {"event['a'", "at 10: expected ']'"},
      {"event[1]", "at 7: expected a string"},
      {"'open", "at 6: unterminated string"},
      {"event.data.a == 1", "at 14: unexpected '='"},
      {"#", "at 1: unexpected '#'"},
  };
  for (const auto& [source, message] : cases) {
    auto e = expr::Compile(source);
    ASSERT_FALSE(e.ok()) << source;
    EXPECT_EQ(e.status().code(), StatusCode::kInvalidArgument);
    EXPECT_EQ(e.status().message(), message) << source;
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

TEST(Flow, BadOptionsAreRefusedWithTheReason) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {R"({"ordering":{"key":"event."}})", "ordering.key: at 7: expected a field name after '.'"},
      {R"({"ordering":{}})", "ordering must be an object with a \"key\""},
      {R"({"ordering":{"key":"event.data.a","head_timeout":"soon"}})", "ordering.head_timeout: "},
      {R"({"concurrency":{"limit":"3"}})", "concurrency needs an integer \"limit\" of 0 or more"},
      {R"({"concurrency":-1})", "concurrency must not be negative"},
      {R"({"concurrency":[{"limit":1},{"limit":2},{"limit":3}]})",
       "concurrency allows at most 2 entries"},
      {R"({"concurrency":{"limit":2,"key":"event.data.a","scope":"planet"}})",
       "concurrency.scope must be \"fn\", \"env\" or \"account\""},
      {R"({"ordering":{"key":"event.data.a"},"concurrency":{"limit":1,"key":"event.data.b"}})",
       "only one lane key per function"},
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
