// The SDK's serve handler without a network: replay, memoization and error mapping.
#include <gtest/gtest.h>

#include <chrono>
#include <cmath>
#include <cstdint>
#include <limits>
#include <map>
#include <memory>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "common/jcs.h"
#include "common/json_parse.h"
#include "common/ops.h"
#include "common/signing.h"
#include "common/step_id.h"
#include "coordinator/expr/expr.h"
#include "coordinator/scheduler/flow.h"
#include "sdk/execution.h"
#include "sdk/serve.h"

namespace funcky::sdk {
namespace {

class ServeTest : public ::testing::Test {
 protected:
  ServeTest() : client_({.app_id = "app"}) {}

  ServeResponse Call(const ServeHandler& h, Json steps, int attempt = 0,
                     std::string step_id = "step", int max_attempts = 3) {
    Json body = {{"event", {{"name", "e"}, {"data", {{"x", 2}}}}},
                 {"events", Json::array()},
                 {"steps", steps},
                 {"ctx", {{"run_id", "R"}, {"attempt", attempt}, {"max_attempts", max_attempts}}}};
    return h.handle({"POST", "/api?fnId=app-fn&stepId=" + step_id, {}, body.dump()});
  }
  static std::string Header(const ServeResponse& r, std::string_view name) {
    return std::string(FindHeader(r.headers, name));
  }

  // A handler of one function, "fn", that counts its runs in signed_runs_ and returns "done",
  // with signing key "signkey-test-beef".
  ServeHandler SignedHandler() {
    return ServeHandler(signed_client_, "http://h/api",
                        {create_function({.id = "fn"}, [this](Context&) {
                          ++signed_runs_;
                          return Json("done");
                        })});
  }

  Client client_;
  int runs_of_a_ = 0;
  Client signed_client_{{.app_id = "app", .signing_key = "signkey-test-beef"}};
  int signed_runs_ = 0;
};

TEST_F(ServeTest, RunsFirstNewStepThenReplaysMemoThenReturns) {
  ServeHandler h(client_, "http://h/api", {create_function({.id = "fn"}, [&](Context& ctx) {
                   Json a = ctx.step.run("a", [&] {
                     ++runs_of_a_;
                     return Json(ctx.event["data"]["x"].get<int>() * 10);
                   });
                   Json b = ctx.step.run("a", [&] { return Json(a.get<int>() + 1); });
                   return Json{{"sum", a.get<int>() + b.get<int>()}};
                 })});
  auto r1 = Call(h, Json::object());
  ASSERT_EQ(r1.status, 206);
  Json ops = Json::parse(r1.body);
  EXPECT_EQ(ops[0]["op"], "StepRun");
  EXPECT_EQ(ops[0]["id"], HashStepId("a"));
  EXPECT_EQ(ops[0]["data"], 20);
  EXPECT_EQ(Header(r1, "X-Inngest-Req-Version"), "2");
  EXPECT_FALSE(Header(r1, "X-Inngest-SDK").empty());

  // The first call ran "a" and went on: it stops at the next step, which it does not run.
  ASSERT_EQ(ops.size(), 1u) << ops;

  // The last step ran, the function returned: both in one reply.
  auto r2 = Call(h, {{HashStepId("a"), {{"data", 20}}}});
  ASSERT_EQ(r2.status, 206);
  Json ops2 = Json::parse(r2.body);
  ASSERT_EQ(ops2.size(), 2u) << ops2;
  EXPECT_EQ(ops2[0]["op"], "StepRun");
  EXPECT_EQ(ops2[0]["id"], HashStepId("a", 1));  // the repeated id is a new step
  EXPECT_EQ(ops2[0]["userland"]["index"], 1);
  EXPECT_EQ(ops2[0]["data"], 21);
  EXPECT_EQ(ops2[1]["op"], "RunComplete");
  EXPECT_EQ(ops2[1]["id"], HashStepId("complete"));
  EXPECT_EQ(ops2[1]["data"], Json({{"sum", 41}}));

  // A replay with both steps memoized (a call redone after its reply was lost) returns.
  auto r3 = Call(h, {{HashStepId("a"), {{"data", 20}}}, {HashStepId("a", 1), {{"data", 21}}}});
  EXPECT_EQ(r3.status, 200);
  EXPECT_EQ(Json::parse(r3.body), Json({{"sum", 41}}));
  EXPECT_EQ(runs_of_a_, 1);  // memoized steps never run again
}

// After the step a call ran, the function goes on only while it replays: the next step it
// meets, of any kind, ends the call with the step it ran alone, and so does an exception, which
// the call that replays past the recorded step meets again.
TEST_F(ServeTest, AfterItsStepACallEndsAtTheNextNewStepOrFailureWithThatStepAlone) {
  int later_runs = 0;
  auto function = [&](const std::string& id, std::function<void(Context&)> then) {
    return create_function({.id = id}, [&, then](Context& ctx) {
      ctx.step.run("a", [] { return Json("A"); });
      then(ctx);
      return Json("end");
    });
  };
  ServeHandler h(
      client_, "http://h/api",
      {function("run",
                [&](Context& ctx) {
                  ctx.step.run("b", [&] {
                    ++later_runs;
                    return Json("B");
                  });
                }),
       function("sleep", [](Context& ctx) { ctx.step.sleep("nap", std::chrono::seconds(2)); }),
       function(
           "wait",
           [](Context& ctx) { ctx.step.wait_for_event("w", {.event = "x", .timeout = "1h"}); }),
       function("invoke", [](Context& ctx) { ctx.step.invoke("i", {.function_id = "other"}); }),
       function("parallel",
                [&](Context& ctx) {
                  ctx.step.parallel({{"p", [&] {
                                        ++later_runs;
                                        return Json(1);
                                      }}});
                }),
       function("throw", [](Context&) { throw std::runtime_error("after a"); }),
       function("give-up", [](Context&) { throw NonRetriableError("after a"); })});
  for (const char* fn : {"run", "sleep", "wait", "invoke", "parallel", "throw", "give-up"}) {
    SCOPED_TRACE(fn);
    Json body = {{"event", {{"name", "e"}}}, {"steps", Json::object()}, {"ctx", {{"attempt", 0}}}};
    auto r =
        h.handle({"POST", std::string("/api?fnId=app-") + fn + "&stepId=step", {}, body.dump()});
    ASSERT_EQ(r.status, 206) << r.body;
    EXPECT_EQ(Header(r, "X-Inngest-No-Retry"), "false");
    Json ops = Json::parse(r.body);
    ASSERT_EQ(ops.size(), 1u) << ops;
    EXPECT_EQ(ops[0]["op"], "StepRun");
    EXPECT_EQ(ops[0]["id"], HashStepId("a"));
    EXPECT_EQ(ops[0]["data"], "A");
  }
  EXPECT_EQ(later_runs, 0);  // no step ran after the first
  // Replayed past the recorded step, the failures are answered as usual.
  Json memo = {{HashStepId("a"), {{"data", "A"}}}};
  auto thrown = h.handle({"POST",
                          "/api?fnId=app-throw&stepId=step",
                          {},
                          Json{{"event", Json::object()}, {"steps", memo}}.dump()});
  EXPECT_EQ(thrown.status, 500);
  auto given_up = h.handle({"POST",
                            "/api?fnId=app-give-up&stepId=step",
                            {},
                            Json{{"event", Json::object()}, {"steps", memo}}.dump()});
  EXPECT_EQ(given_up.status, 400);
  EXPECT_EQ(Header(given_up, "X-Inngest-No-Retry"), "true");
}

// A last step and an end that make a large reply together come in two: the step, then on
// the replay past it the end, each as large as it was before.
TEST_F(ServeTest, ALargeLastStepAndEndComeInTwoReplies) {
  const std::string large(700 << 10, 'x');
  ServeHandler h(client_, "http://h/api", {create_function({.id = "fn"}, [&](Context& ctx) {
                   Json a = ctx.step.run("a", [&] { return Json(large); });
                   return Json{{"a", a}};
                 })});
  auto step = Call(h, Json::object());
  ASSERT_EQ(step.status, 206);
  Json ops = Json::parse(step.body);
  ASSERT_EQ(ops.size(), 1u);
  EXPECT_EQ(ops[0]["op"], "StepRun");
  EXPECT_EQ(ops[0]["data"], large);
  auto end = Call(h, {{HashStepId("a"), {{"data", large}}}});
  EXPECT_EQ(end.status, 200);
  EXPECT_EQ(Json::parse(end.body), Json({{"a", large}}));
}

// An end nested so deep that inside the reply with its step it would pass the depth a
// coordinator takes (kHostReplyJsonLimits), though alone it does not, comes alone in the next
// call: the step is recorded and not run again.
TEST_F(ServeTest, ADeepEndComesInTheCallAfterItsLastStep) {
  Json deep = Json::array();
  for (int i = 0; i < 127; ++i) deep = Json::array({deep});  // 128 levels
  int runs_of_a = 0;
  ServeHandler h(client_, "http://h/api", {create_function({.id = "fn"}, [&](Context& ctx) {
                   ctx.step.run("a", [&] {
                     ++runs_of_a;
                     return Json("A");
                   });
                   return deep;
                 })});
  auto step = Call(h, Json::object());
  ASSERT_EQ(step.status, 206);
  EXPECT_TRUE(ParseUntrustedJson(step.body, kHostReplyJsonLimits).ok());
  Json ops = Json::parse(step.body);
  ASSERT_EQ(ops.size(), 1u) << step.body.substr(0, 200);
  EXPECT_EQ(ops[0]["op"], "StepRun");
  auto end = Call(h, {{HashStepId("a"), {{"data", "A"}}}});
  EXPECT_EQ(end.status, 200);
  EXPECT_TRUE(ParseUntrustedJson(end.body, kHostReplyJsonLimits).ok());
  EXPECT_EQ(Json::parse(end.body), deep);
  EXPECT_EQ(runs_of_a, 1);
}

// The code after a step gets the step's result as a replay gets it from the memo: through
// JSON text (a NaN is null), so a run goes the same way whether or not its steps were
// replayed.
TEST_F(ServeTest, TheCodeAfterAStepSeesItsResultAsAReplayDoes) {
  std::vector<Json> seen;
  ServeHandler h(client_, "http://h/api", {create_function({.id = "fn"}, [&](Context& ctx) {
                   Json a = ctx.step.run("a", [] { return Json(std::nan("")); });
                   seen.push_back(a);
                   return Json{{"a", a}};
                 })});
  auto first = Call(h, Json::object());
  ASSERT_EQ(first.status, 206);
  Json ops = Json::parse(first.body);
  ASSERT_EQ(ops.size(), 2u) << ops;
  EXPECT_EQ(ops[0]["data"], nullptr);
  EXPECT_EQ(ops[1]["op"], "RunComplete");
  EXPECT_EQ(ops[1]["data"], Json({{"a", nullptr}}));
  auto replay = Call(h, {{HashStepId("a"), {{"data", nullptr}}}});
  EXPECT_EQ(replay.status, 200);
  EXPECT_EQ(Json::parse(replay.body), Json({{"a", nullptr}}));
  EXPECT_EQ(seen, (std::vector<Json>{nullptr, nullptr}));
}

// Bytes that are not UTF-8 cannot go in a reply's JSON: in a step's result they fail the
// step for good (run again, it would give the same); in an exception's message or a step id
// from the URL they become U+FFFD. The handler answers every call and throws nothing.
TEST_F(ServeTest, BytesThatAreNotUtf8FailTheStepOrAreReplacedInMessages) {
  ServeHandler h(client_, "http://h/api",
                 {create_function({.id = "result"},
                                  [](Context& ctx) {
                                    ctx.step.run("a", [] { return Json(std::string("\xff")); });
                                    return Json("end");
                                  }),
                  create_function({.id = "step-throws"},
                                  [](Context& ctx) {
                                    ctx.step.run("a", []() -> Json {
                                      throw std::runtime_error("bad \xff byte");
                                    });
                                    return Json("end");
                                  }),
                  create_function({.id = "fn-throws"}, [](Context&) -> Json {
                    throw std::runtime_error("bad \xff byte");
                  })});
  auto call = [&](const std::string& target) {
    Json body = {{"event", {{"name", "e"}}}, {"steps", Json::object()}, {"ctx", {{"attempt", 0}}}};
    return h.handle({"POST", target, {}, body.dump()});
  };
  const std::string replaced = "bad \xEF\xBF\xBD byte";

  auto result = call("/api?fnId=app-result&stepId=step");
  ASSERT_EQ(result.status, 206) << result.body;
  EXPECT_EQ(Header(result, "X-Inngest-No-Retry"), "true");
  Json ops = Json::parse(result.body);
  ASSERT_EQ(ops.size(), 1u);
  EXPECT_EQ(ops[0]["op"], "StepFailed");
  EXPECT_NE(ops[0]["error"]["message"].get<std::string>().find("UTF-8"), std::string::npos) << ops;

  auto step = call("/api?fnId=app-step-throws&stepId=step");
  ASSERT_EQ(step.status, 206) << step.body;
  EXPECT_EQ(Json::parse(step.body)[0]["error"]["message"], replaced);

  auto fn = call("/api?fnId=app-fn-throws&stepId=step");
  EXPECT_EQ(fn.status, 500);
  EXPECT_EQ(Json::parse(fn.body)["message"], replaced);

  auto no_function = call("/api?fnId=app-%FF&stepId=step");
  EXPECT_EQ(no_function.status, 500);
  EXPECT_EQ(Json::parse(no_function.body)["message"],
            "no function \"app-\xEF\xBF\xBD\" in this app");

  auto no_step = call("/api?fnId=app-result&stepId=%FF");
  EXPECT_EQ(no_step.status, 500);
  EXPECT_EQ(Json::parse(no_step.body)["requestedStep"], "\xEF\xBF\xBD");
}

// Steps do not nest: a step used inside another step's function fails that step for good
// (a UsageError: its retries would fail the same), and nothing of the inner one runs.
TEST_F(ServeTest, AStepInsideAStepFailsTheOuterStep) {
  int inner_runs = 0;
  ServeHandler h(client_, "http://h/api", {create_function({.id = "fn"}, [&](Context& ctx) {
                   ctx.step.run("outer", [&] {
                     ctx.step.run("inner", [&] {
                       ++inner_runs;
                       return Json(1);
                     });
                     return Json(2);
                   });
                   return Json("end");
                 })});
  auto r = Call(h, Json::object());
  ASSERT_EQ(r.status, 206) << r.body;
  Json ops = Json::parse(r.body);
  ASSERT_EQ(ops.size(), 1u) << ops;
  EXPECT_EQ(ops[0]["op"], "StepFailed") << "retried, it fails the same";
  EXPECT_EQ(ops[0]["id"], HashStepId("outer"));
  EXPECT_EQ(ops[0]["error"]["name"], "NonRetriableError");
  EXPECT_EQ(ops[0]["error"]["message"],
            "step \"inner\" is used inside step \"outer\": steps do not nest");
  EXPECT_EQ(inner_runs, 0);
}

// A step the coordinator asks for by id (planned, or a parallel branch) ends its call at
// once: other calls of the run may record steps meanwhile. So does a step that fails.
TEST_F(ServeTest, AStepAskedForByIdOrFailingEndsItsCall) {
  int after = 0;
  ServeHandler h(client_, "http://h/api", {create_function({.id = "fn"}, [&](Context& ctx) {
                   ctx.step.run("a", [&]() -> Json {
                     if (ctx.attempt == 0) throw std::runtime_error("not yet");
                     return Json("A");
                   });
                   ++after;
                   return Json("end");
                 })});
  auto asked = Call(h, Json::object(), 1, HashStepId("a"));
  ASSERT_EQ(asked.status, 206);
  EXPECT_EQ(Json::parse(asked.body), Json::parse(R"([{"op":"StepRun","id":")" + HashStepId("a") +
                                                 R"(","name":"a","displayName":"a","data":"A",)"
                                                 R"("opts":{},"userland":{"id":"a"}}])"))
      << asked.body;
  auto failed = Call(h, Json::object(), 0);
  ASSERT_EQ(failed.status, 206);
  Json ops = Json::parse(failed.body);
  ASSERT_EQ(ops.size(), 1u) << ops;
  EXPECT_EQ(ops[0]["op"], "StepError");
  EXPECT_EQ(after, 0);
}

TEST_F(ServeTest, StepThrowIsStepErrorThenStepFailedOnLastAttempt) {
  ServeHandler h(client_, "http://h/api", {create_function({.id = "fn"}, [](Context& ctx) {
                   ctx.step.run("boom", []() -> Json { throw std::runtime_error("kaboom"); });
                   return Json(nullptr);
                 })});
  auto r = Call(h, Json::object(), 0);
  ASSERT_EQ(r.status, 206);
  EXPECT_EQ(Json::parse(r.body)[0]["op"], "StepError");
  EXPECT_EQ(Json::parse(r.body)[0]["error"]["message"], "kaboom");
  EXPECT_EQ(Header(r, "X-Inngest-No-Retry"), "false");
  auto last = Call(h, Json::object(), 2);
  EXPECT_EQ(Json::parse(last.body)[0]["op"], "StepFailed");
  EXPECT_EQ(Header(last, "X-Inngest-No-Retry"), "true");
}

TEST_F(ServeTest, NonRetriableAndUncaughtMemoizedErrorFailAtOnce) {
  ServeHandler h(client_, "http://h/api",
                 {create_function({.id = "fn"},
                                  [](Context& ctx) {
                                    ctx.step.run("s", [] { return Json(1); });
                                    throw NonRetriableError("stop");
                                    return Json(nullptr);
                                  }),
                  create_function({.id = "fn2"}, [](Context& ctx) {
                    ctx.step.run("s", [] { return Json(1); });
                    return Json(nullptr);
                  })});
  auto r = Call(h, {{HashStepId("s"), {{"data", 1}}}});
  EXPECT_EQ(r.status, 400);
  EXPECT_EQ(Header(r, "X-Inngest-No-Retry"), "true");
  Json failed_memo = {{HashStepId("s"), {{"error", {{"name", "Error"}, {"message", "m"}}}}}};
  auto r2 = h.handle(
      {"POST",
       "/api?fnId=app-fn2&stepId=step",
       {},
       Json{{"event", Json::object()}, {"steps", failed_memo}, {"ctx", {{"attempt", 0}}}}.dump()});
  EXPECT_EQ(r2.status, 400);
  EXPECT_EQ(Header(r2, "X-Inngest-No-Retry"), "true");
}

TEST_F(ServeTest, PlainExceptionIsRetriableUntilLastAttempt) {
  ServeHandler h(
      client_, "http://h/api",
      {create_function({.id = "fn"}, [](Context&) -> Json { throw std::runtime_error("oops"); })});
  auto r = Call(h, Json::object(), 0);
  EXPECT_EQ(r.status, 500);
  EXPECT_EQ(Header(r, "X-Inngest-No-Retry"), "false");
  EXPECT_EQ(Call(h, Json::object(), 2).status, 400);
}

TEST_F(ServeTest, UnknownFunctionOrBadBodyIs500Internal) {
  ServeHandler h(client_, "http://h/api", {});
  EXPECT_EQ(h.handle({"POST", "/api?fnId=nope&stepId=step", {}, "{}"}).status, 500);
  EXPECT_EQ(h.handle({"POST", "/api?fnId=nope&stepId=step", {}, "{oops"}).status, 500);
  EXPECT_EQ(h.handle({"POST", "/api?fnId=nope&stepId=step", {}, ""}).status, 401);
  EXPECT_EQ(h.handle({"DELETE", "/api", {}, ""}).status, 405);
}

// A call that fails but may pass when made again says so (X-Inngest-No-Retry: false), as the
// protocol has every retriable failure do: an unknown function (a host of another version may
// know it), a body that is not a JSON object, a step asked for that the replay does not reach.
TEST_F(ServeTest, ARetriableFailureOfACallSaysNoRetryFalse) {
  ServeHandler h(client_, "http://h/api", {create_function({.id = "fn"}, [](Context& ctx) {
                   ctx.step.run("a", [] { return Json(1); });
                   return Json("end");
                 })});
  const std::string call = Json{{"event", Json::object()}, {"steps", Json::object()}}.dump();
  for (const auto& [target, body] : {std::pair{std::string("/api?fnId=app-nope&stepId=step"), call},
                                     {"/api?fnId=app-fn&stepId=step", "{oops"},
                                     {"/api?fnId=app-fn&stepId=step", "[]"},
                                     {"/api?fnId=app-fn&stepId=" + HashStepId("b"), call}}) {
    SCOPED_TRACE(target + " " + body);
    auto r = h.handle({"POST", target, {}, body});
    EXPECT_EQ(r.status, 500) << r.body;
    EXPECT_EQ(Header(r, "X-Inngest-No-Retry"), "false");
  }
}

// Every refusal has the protocol's form: 401 {"message":"Unauthorized"}, unsigned, with no
// x-inngest-* header but SDK-Handled. With a signing key: a GET, an in-band PUT and a call
// that are not signed; in any mode, a call without a body.
TEST_F(ServeTest, EveryRefusalIs401WithNoInngestHeaderButSdkHandled) {
  ServeHandler h = SignedHandler();
  ServeHandler dev(client_, "http://h/api", {});
  const std::vector<ServeResponse> refused = {
      h.handle({"GET", "/api", {}, ""}),
      h.handle({"PUT", "/api", {{"X-Inngest-Sync-Kind", "in_band"}}, "{}"}),
      h.handle({"POST", "/api?fnId=app-fn&stepId=step", {}, "{}"}),
      dev.handle({"POST", "/api?fnId=app-fn&stepId=step", {}, ""})};
  for (size_t i = 0; i < refused.size(); ++i) {
    SCOPED_TRACE(i);
    const ServeResponse& r = refused[i];
    EXPECT_EQ(r.status, 401);
    EXPECT_EQ(Json::parse(r.body), Json({{"message", "Unauthorized"}}));
    EXPECT_EQ(Header(r, "X-Inngest-SDK-Handled"), "true");
    for (const auto& header : r.headers) {
      const std::string& name = header.first;
      EXPECT_TRUE(name == "X-Inngest-SDK-Handled" || !name.starts_with("X-Inngest-")) << name;
    }
  }
  EXPECT_EQ(signed_runs_, 0);
}

// ctx.event is an object with a "data" object whatever the body held, so a function's
// ctx.event["data"] (a const read: undefined behaviour when missing) is always safe.
TEST_F(ServeTest, AnEventWithoutDataReachesTheFunctionWithAnEmptyDataObject) {
  ServeHandler h(client_, "http://h/api", {create_function({.id = "fn"}, [](Context& ctx) {
                   return Json(ctx.event["data"].value("x", int64_t{-1}));
                 })});
  for (const Json& event : {Json{{"name", "e"}}, Json{{"name", "e"}, {"data", nullptr}},
                            Json("not an object"), Json{{"name", "e"}, {"data", {{"x", 5}}}}}) {
    Json body = {{"event", event}, {"steps", Json::object()}, {"ctx", {{"attempt", 0}}}};
    ServeResponse r = h.handle({"POST", "/api?fnId=app-fn&stepId=step", {}, body.dump()});
    ASSERT_EQ(r.status, 200) << event.dump() << " " << r.body;
    EXPECT_EQ(Json::parse(r.body),
              event.is_object() && event.contains("data") && event["data"].is_object() ? Json(5)
                                                                                       : Json(-1))
        << event.dump();
  }
}

// The signature covers the body: a signed call whose URL names another step or function
// than the body's ctx (a captured call sent again with another ?stepId or ?fnId) is refused.
TEST_F(ServeTest, ASignedCallRunsOnlyTheStepAndFunctionItsBodyNames) {
  int runs = 0;
  int other_runs = 0;
  ServeHandler h(signed_client_, "http://h/api",
                 {create_function({.id = "fn"},
                                  [&](Context&) {
                                    ++runs;
                                    return Json("done");
                                  }),
                  create_function({.id = "other"}, [&](Context&) {
                    ++other_runs;
                    return Json("other");
                  })});
  Json body = {{"event", Json::object()},
               {"steps", Json::object()},
               {"ctx", {{"attempt", 0}, {"step_id", "step"}, {"fn_id", "app-fn"}}}};
  const std::string canonical = *CanonicalJson(body);
  const int64_t now = std::chrono::duration_cast<std::chrono::seconds>(
                          std::chrono::system_clock::now().time_since_epoch())
                          .count();
  auto call = [&](const std::string& target) {
    return h.handle(
        {"POST",
         target,
         {{"X-Inngest-Signature", signing::SignatureHeader(canonical, "signkey-test-beef", now)}},
         canonical});
  };
  EXPECT_EQ(call("/api?fnId=app-fn&stepId=abc123").status, 401);
  EXPECT_EQ(call("/api?fnId=app-other&stepId=step").status, 401);
  EXPECT_EQ(runs, 0);
  EXPECT_EQ(other_runs, 0);
  EXPECT_EQ(call("/api?fnId=app-fn&stepId=step").status, 200);
  EXPECT_EQ(call("/api?fnId=app-fn").status, 200) << "no stepId: the discovery step";
  EXPECT_EQ(runs, 2);
}

TEST_F(ServeTest, WithSigningKeyOnlyFreshCorrectSignaturesRun) {
  ServeHandler h = SignedHandler();
  const int& runs = signed_runs_;
  Json body = {{"event", Json::object()}, {"steps", Json::object()}, {"ctx", {{"attempt", 0}}}};
  std::string canonical = *CanonicalJson(body);
  int64_t now = std::chrono::duration_cast<std::chrono::seconds>(
                    std::chrono::system_clock::now().time_since_epoch())
                    .count();
  auto call = [&](Headers headers) {
    return h.handle({"POST", "/api?fnId=app-fn&stepId=step", std::move(headers), canonical});
  };
  EXPECT_EQ(call({}).status, 401);
  EXPECT_EQ(
      call({{"X-Inngest-Signature", signing::SignatureHeader(canonical, "signkey-test-dead", now)}})
          .status,
      401);
  EXPECT_EQ(call({{"X-Inngest-Signature",
                   signing::SignatureHeader(canonical, "signkey-test-beef", now - 360)}})
                .status,
            401);
  EXPECT_EQ(runs, 0);
  auto ok = call(
      {{"X-Inngest-Signature", signing::SignatureHeader(canonical, "signkey-test-beef", now)}});
  EXPECT_EQ(ok.status, 200);
  EXPECT_EQ(runs, 1);
  // The response is signed with the same key.
  EXPECT_TRUE(signing::VerifySignature(Header(ok, "X-Inngest-Signature"), ok.body,
                                       {"signkey-test-beef"}, now)
                  .ok());
}

// Only the answer to a call the host authenticated is signed. A signed answer to anyone's
// request (a 405, a 413 sent before the signature is known good) is an HMAC over its body and
// a time, the same as a call's: sent back to the host as a call, with its signature, it ran
// the function's first step (a signature oracle).
TEST_F(ServeTest, OnlyTheAnswerToAnAuthenticatedCallIsSigned) {
  ServeHandler h = SignedHandler();
  const int64_t now = std::chrono::duration_cast<std::chrono::seconds>(
                          std::chrono::system_clock::now().time_since_epoch())
                          .count();
  std::string large = R"({"event":{},"steps":{},"ctx":{"attempt":0},"pad":[)";
  for (size_t i = 0; i < kUnverifiedCallBodyJsonLimits.max_values; ++i) large += "{},";
  large.back() = ']';
  large += "}";
  const std::vector<ServeRequest> refused = {
      {"DELETE", "/api", {}, ""},
      {"PATCH", "/api", {}, R"({"event":{"data":{}}})"},
      {"GET", "/api", {}, ""},
      {"PUT", "/api", {{"X-Inngest-Sync-Kind", "in_band"}}, "{}"},
      {"POST",
       "/api?fnId=app-fn&stepId=step",
       {{"X-Inngest-Signature", signing::SignatureHeader("other", "signkey-test-beef", now)}},
       large}};
  for (const ServeRequest& request : refused) {
    SCOPED_TRACE(request.method);
    ServeResponse r = h.handle(request);
    EXPECT_GE(r.status, 400);
    EXPECT_EQ(Header(r, "X-Inngest-Signature"), "");
    // Sent back as a call with whatever signature it carried, it runs nothing.
    ServeResponse replayed = h.handle({"POST",
                                       "/api?fnId=app-fn&stepId=step",
                                       {{"X-Inngest-Signature", Header(r, "X-Inngest-Signature")}},
                                       r.body});
    EXPECT_EQ(replayed.status, 401);
  }
  EXPECT_EQ(signed_runs_, 0);
}

// A body whose signature does not cover it as sent is parsed for its canonical form within a
// host reply's count of values: an unsigned body of a million empty objects is refused (413,
// saying why) rather than built (about a gigabyte for 32 MiB of them), and runs nothing.
TEST_F(ServeTest, ABodyNotSignedAsSentIsCheckedCanonicallyOnlyWithinAReplysValues) {
  ServeHandler h = SignedHandler();
  std::string body = R"({"event":{},"steps":{},"ctx":{"attempt":0},"pad":[)";
  for (size_t i = 0; i < kUnverifiedCallBodyJsonLimits.max_values; ++i) body += "{},";
  body.back() = ']';
  body += "}";
  const int64_t now = std::chrono::duration_cast<std::chrono::seconds>(
                          std::chrono::system_clock::now().time_since_epoch())
                          .count();
  ServeResponse r = h.handle(
      {"POST",
       "/api?fnId=app-fn&stepId=step",
       {{"X-Inngest-Signature", signing::SignatureHeader("other", "signkey-test-beef", now)}},
       body});
  EXPECT_EQ(r.status, 413);
  EXPECT_NE(r.body.find("more than 1048576 values"), std::string::npos) << r.body.substr(0, 300);
  EXPECT_EQ(signed_runs_, 0);
}

// A body written otherwise than canonically (spaces, another order of keys) runs when it is
// signed over its canonical form, as the protocol signs, or over the bytes as sent; not when
// a byte of it changed.
TEST_F(ServeTest, ASignatureHoldsOverTheCanonicalFormOrTheBodyAsSent) {
  ServeHandler h = SignedHandler();
  const int& runs = signed_runs_;
  const std::string sent =
      R"({ "steps": {}, "event": {"name": "e", "data": {}}, "ctx": {"attempt": 0} })";
  const std::string canonical = *CanonicalJson(Json::parse(sent));
  ASSERT_NE(canonical, sent);
  const int64_t now = std::chrono::duration_cast<std::chrono::seconds>(
                          std::chrono::system_clock::now().time_since_epoch())
                          .count();
  auto call = [&](const std::string& body, const std::string& signed_over) {
    return h
        .handle({"POST",
                 "/api?fnId=app-fn&stepId=step",
                 {{"X-Inngest-Signature",
                   signing::SignatureHeader(signed_over, "signkey-test-beef", now)}},
                 body})
        .status;
  };
  EXPECT_EQ(call(sent, canonical), 200);
  EXPECT_EQ(call(sent, sent), 200);
  std::string changed = sent;
  changed.replace(changed.find("\"e\""), 3, "\"f\"");
  EXPECT_EQ(call(changed, canonical), 401);
  EXPECT_EQ(call(changed, sent), 401);
  // A body holding an integer above 2^53 is signed over its RFC 8785 form, the integer
  // written as a double (common/jcs.h), as the coordinator and the JavaScript SDK sign it.
  const std::string large =
      R"({"ctx":{"attempt":0},"event":{"data":{"id":12345678901234567890},"name":"e"},"steps":{}})";
  ASSERT_EQ(*CanonicalJson(Json::parse(large)), large);
  EXPECT_EQ(call(large, *CanonicalJson(Json::parse(large), JcsIntegers::kAsDoubles)), 200);
  EXPECT_EQ(runs, 3);
}

// A body with an integer above 2^53 carries two signatures from Funcky's coordinator: the
// standard one over its RFC 8785 form (the integer as a double) and Funcky's over the body as
// sent. With the latter the function gets every digit; with the standard one alone it gets
// what that covers, the double — else the digits could be changed within a double's rounding
// (…890 to …891) and still pass.
TEST_F(ServeTest, TheDigitsOfALargeIntegerReachTheFunctionOnlyWhenTheySigned) {
  Json seen;
  ServeHandler h(signed_client_, "http://h/api", {create_function({.id = "fn"}, [&](Context& ctx) {
                   seen = ctx.event["data"]["id"];
                   return Json("done");
                 })});
  const std::string sent =
      R"({"ctx":{"attempt":0},"event":{"data":{"id":12345678901234567890},"name":"e"},"steps":{}})";
  const std::string rfc = *CanonicalJson(Json::parse(sent), JcsIntegers::kAsDoubles);
  const int64_t now = std::chrono::duration_cast<std::chrono::seconds>(
                          std::chrono::system_clock::now().time_since_epoch())
                          .count();
  auto call = [&](const std::string& body, Headers headers) {
    return h.handle({"POST", "/api?fnId=app-fn&stepId=step", std::move(headers), body}).status;
  };
  const std::string standard = signing::SignatureHeader(rfc, "signkey-test-beef", now);
  EXPECT_EQ(call(sent, {{"X-Inngest-Signature", standard},
                        {"X-Funcky-Signature",
                         signing::SignatureHeader(sent, "signkey-test-beef", now)}}),
            200);
  EXPECT_EQ(seen, Json::parse("12345678901234567890"));
  seen = nullptr;
  EXPECT_EQ(call(sent, {{"X-Inngest-Signature", standard}}), 200);
  EXPECT_EQ(seen, Json::parse("12345678901234567000"));
  // Digits changed within the double's rounding, Funcky's signature over the original: the
  // function gets the double the standard signature covers, not the changed digits.
  std::string changed = sent;
  changed.replace(changed.rfind("890"), 3, "891");
  seen = nullptr;
  EXPECT_EQ(call(changed, {{"X-Inngest-Signature", standard},
                           {"X-Funcky-Signature",
                            signing::SignatureHeader(sent, "signkey-test-beef", now)}}),
            200);
  EXPECT_EQ(seen, Json::parse("12345678901234567000"));
}

TEST_F(ServeTest, RegisterBodyCarriesCompositeIdsAndStepUrl) {
  ServeHandler h(client_, "http://h:1/api",
                 {create_function({.id = "fn", .triggers = {{.event = "a/*"}}, .retries = 7},
                                  [](Context&) { return Json(nullptr); })});
  Json b = h.register_body();
  EXPECT_EQ(b["appName"], "app");
  EXPECT_EQ(b["functions"][0]["id"], "app-fn");
  EXPECT_EQ(b["functions"][0]["triggers"][0]["event"], "a/*");
  EXPECT_EQ(b["functions"][0]["steps"]["step"]["runtime"]["url"],
            "http://h:1/api?fnId=app-fn&stepId=step");
  EXPECT_EQ(b["functions"][0]["steps"]["step"]["retries"]["attempts"], 7);
}

// wait_for_signal reports the op the coordinator reads (transition.cc SignalWait, whose unit
// test reads these opts) and returns
// {"signal", "data"}, nullopt at its timeout, and throws the conflict's StepError.
TEST_F(ServeTest, AWaitForASignalReportsItsOpAndReturnsWhatTheSignalBrought) {
  std::optional<Json> got;
  ServeHandler h(client_, "http://h/api", {create_function({.id = "fn"}, [&](Context& ctx) {
                   got = ctx.step.wait_for_signal(
                       "approval", {.signal = "order-7", .timeout = "1h", .replace = true});
                   return Json("done");
                 })});
  auto r = Call(h, Json::object());
  ASSERT_EQ(r.status, 206) << r.body;
  Json op = Json::parse(r.body)[0];
  EXPECT_EQ(op["op"], "WaitForSignal");
  EXPECT_EQ(op["id"], HashStepId("approval"));
  EXPECT_EQ(op["opts"], Json({{"signal", "order-7"}, {"timeout", "1h"}, {"conflict", "replace"}}));
  Json memo = {{HashStepId("approval"), {{"data", {{"signal", "order-7"}, {"data", 5}}}}}};
  EXPECT_EQ(Call(h, memo).status, 200);
  EXPECT_EQ(got, Json({{"signal", "order-7"}, {"data", 5}}));
  memo[HashStepId("approval")] = nullptr;
  EXPECT_EQ(Call(h, memo).status, 200);
  EXPECT_FALSE(got.has_value());
  memo[HashStepId("approval")] = store::SignalConflictMemo("order-7");
  EXPECT_EQ(Call(h, memo).status, 400) << "the uncaught StepError fails the run";
}

TEST_F(ServeTest, AsyncStepsReportTheirOpsAndReturnTheirMemos) {
  std::optional<Json> approval;
  ServeHandler h(
      client_, "http://h/api", {create_function({.id = "fn"}, [&](Context& ctx) {
        ctx.step.sleep("nap", std::chrono::milliseconds(1500));
        approval =
            ctx.step.wait_for_event("approval", {.event = "a/approved",
                                                 .if_expression = "async.data.id == event.data.id",
                                                 .timeout = "1h",
                                                 .lookback = "5s"});
        Json doubled = ctx.step.invoke("call", {.function_id = "callee", .data = {{"n", 2}}});
        return doubled;
      })});
  auto r1 = Call(h, Json::object());
  ASSERT_EQ(r1.status, 206) << r1.body;
  Json sleep = Json::parse(r1.body)[0];
  EXPECT_EQ(sleep["op"], "Sleep");
  EXPECT_EQ(sleep["id"], HashStepId("nap"));
  EXPECT_EQ(sleep["name"], "1500ms");

  Json memo = {{HashStepId("nap"), nullptr}};
  Json wait = Json::parse(Call(h, memo).body)[0];
  EXPECT_EQ(wait["op"], "WaitForEvent");
  EXPECT_EQ(wait["name"], "a/approved");
  EXPECT_EQ(wait["opts"], Json({{"event", "a/approved"},
                                {"timeout", "1h"},
                                {"if", "async.data.id == event.data.id"},
                                {"lookback", "5s"}}));

  memo[HashStepId("approval")] = nullptr;  // timed out
  Json invoke = Json::parse(Call(h, memo).body)[0];
  EXPECT_FALSE(approval.has_value());
  EXPECT_EQ(invoke["op"], "InvokeFunction");
  EXPECT_EQ(invoke["opts"]["function_id"], "app-callee");
  EXPECT_EQ(invoke["opts"]["payload"], Json({{"data", {{"n", 2}}}}));

  memo[HashStepId("approval")] = {{"name", "a/approved"}, {"data", {{"id", 1}}}};
  memo[HashStepId("call")] = {{"data", {{"doubled", 4}}}};
  auto done = Call(h, memo);
  EXPECT_EQ(done.status, 200);
  EXPECT_EQ(Json::parse(done.body), Json({{"doubled", 4}}));
  ASSERT_TRUE(approval.has_value());
  EXPECT_EQ((*approval)["data"]["id"], 1);

  memo[HashStepId("call")] = {{"error", {{"name", "Error"}, {"message", "callee failed"}}}};
  EXPECT_EQ(Call(h, memo).status, 400);  // an uncaught invoke error fails the run
}

TEST_F(ServeTest, ParallelPlansEveryNewStepAndRunsTheTargetedOne) {
  std::vector<std::string> ran;
  ServeHandler h(client_, "http://h/api", {create_function({.id = "fn"}, [&](Context& ctx) {
                   auto step = [&](std::string n) {
                     return std::pair<std::string, std::function<Json()>>{n, [&ran, n] {
                                                                            ran.push_back(n);
                                                                            return Json(n);
                                                                          }};
                   };
                   auto parts = ctx.step.parallel({step("a"), step("b")});
                   return Json(parts[0].get<std::string>() + parts[1].get<std::string>());
                 })});
  Json planned = Json::parse(Call(h, Json::object()).body);
  ASSERT_EQ(planned.size(), 2u);
  EXPECT_EQ(planned[0]["op"], "StepPlanned");
  EXPECT_EQ(planned[1]["id"], HashStepId("b"));
  EXPECT_TRUE(ran.empty());

  Json b = Json::parse(Call(h, Json::object(), 0, HashStepId("b")).body);
  ASSERT_EQ(b.size(), 1u);
  EXPECT_EQ(b[0]["op"], "StepRun");
  EXPECT_EQ(b[0]["data"], "b");
  EXPECT_EQ(ran, std::vector<std::string>{"b"});

  // With one step left, discovery runs it at once.
  Json a = Json::parse(Call(h, {{HashStepId("b"), {{"data", "b"}}}}).body);
  EXPECT_EQ(a[0]["op"], "StepRun");
  EXPECT_EQ(a[0]["id"], HashStepId("a"));
  auto done = Call(h, {{HashStepId("a"), {{"data", "a"}}}, {HashStepId("b"), {{"data", "b"}}}});
  EXPECT_EQ(done.body, "\"ab\"");
}

// An error's message is cut to 64 KiB (a failed step carries it twice, and a reply past the
// coordinator's 16 MiB would fail the run with a ProtocolError the function cannot catch).
TEST(SerializeError, CutsAHugeMessage) {
  const Json small = SerializeError("Error", "short");
  EXPECT_EQ(small["message"], "short");
  const Json big = SerializeError("Error", std::string(9 << 20, 'x'));
  const std::string message = big["message"];
  EXPECT_LT(message.size(), (64u << 10) + 64);
  EXPECT_EQ(message.rfind(std::string(1000, 'x'), 0), 0u);
  EXPECT_NE(message.find(std::to_string(9 << 20) + " bytes"), std::string::npos);
}

// `match` is the condition the npm SDK writes ("event.<match> == async.<match>"); with an
// if_expression too, both must hold. A wait so written is one the coordinator finds by its
// key; cancel_on takes it as well.
TEST_F(ServeTest, MatchBecomesTheConditionTheNpmSdkWrites) {
  ServeHandler h(client_, "http://h/api",
                 {create_function({.id = "fn",
                                   .cancel_on = {{.event = "a/cancel", .match = "data.id"},
                                                 {.event = "a/stop",
                                                  .if_expression = "async.data.now",
                                                  .match = "data.id"}}},
                                  [](Context& ctx) {
                                    ctx.step.wait_for_event(
                                        "a", {.event = "a/b", .timeout = "1h", .match = "data.id"});
                                    ctx.step.wait_for_event(
                                        "b", {.event = "a/b",
                                              .if_expression = "async.data.ok == true",
                                              .timeout = "1h",
                                              .match = "data.id"});
                                    return Json(nullptr);
                                  })});
  const Json cancel = h.register_body()["functions"][0]["cancel"];
  EXPECT_EQ(cancel[0]["if"], "event.data.id == async.data.id");
  EXPECT_EQ(cancel[1]["if"], "event.data.id == async.data.id && (async.data.now)");
  Json first = Json::parse(Call(h, Json::object()).body)[0];
  EXPECT_EQ(first["opts"]["if"], "event.data.id == async.data.id");
  Json second = Json::parse(Call(h, {{HashStepId("a"), nullptr}}).body)[0];
  const std::string both = second["opts"]["if"];
  EXPECT_EQ(both, "event.data.id == async.data.id && (async.data.ok == true)");
  auto compiled = expr::Compile(both);
  ASSERT_TRUE(compiled.ok()) << compiled.status().ToString();
  const Json trigger = {{"name", "a/go"}, {"data", {{"id", 7}}}};
  EXPECT_EQ((*compiled)->RequiredKey("async", {{"event", &trigger}}),
            expr::IndexKey({"data", "id"}, 7));
}

// A `match` that is not a field path of both events would make an expression that never holds
// ("event.data.id": event.event.data.id) or always does: a wait's fails its run at once, a
// cancel_on's makes create_function throw.
TEST_F(ServeTest, AMatchThatIsNotAFieldPathIsRefused) {
  for (const char* bad : {"event.data.id", "async.data.id", "data.user-id", "data.a || true",
                          "data.0", "data..id", ".data", "data.", "data id"}) {
    SCOPED_TRACE(bad);
    EXPECT_THROW(create_function({.id = "fn", .cancel_on = {{.event = "a/c", .match = bad}}},
                                 [](Context&) { return Json(nullptr); }),
                 std::invalid_argument);
    ServeHandler h(client_, "http://h/api", {create_function({.id = "fn"}, [&](Context& ctx) {
                     ctx.step.wait_for_event("w", {.event = "a/b", .timeout = "1h", .match = bad});
                     return Json(nullptr);
                   })});
    auto r = Call(h, Json::object());
    EXPECT_EQ(r.status, 400) << r.body;
    EXPECT_EQ(Header(r, "X-Inngest-No-Retry"), "true");
    EXPECT_NE(r.body.find("must be a field path"), std::string::npos) << r.body;
  }
  for (const char* good : {"id", "data.id", "data.order_id", "data._x9.y"}) {
    SCOPED_TRACE(good);
    EXPECT_NO_THROW(create_function({.id = "fn", .cancel_on = {{.event = "a/c", .match = good}}},
                                    [](Context&) { return Json(nullptr); }));
  }
}

TEST_F(ServeTest, OnFailureIsRegisteredAsItsOwnFunctionAndServed) {
  FunctionOptions options{
      .id = "fn",
      .triggers = {{.event = "a/b"},
                   {.cron = "TZ=Europe/Paris 0 9 * * 1"},
                   {.cron = "*/5 * * * *", .jitter = "30s"}},
      .cancel_on = {{.event = "a/cancel", .if_expression = "true", .timeout = "1h"}},
      .on_failure = [](Context& ctx) {
        return Json{{"saw", ctx.event["data"]["error"]["message"]}};
      }};
  ServeHandler h(client_, "http://h/api",
                 {create_function(options, [](Context&) { return Json(nullptr); })});
  Json body = h.register_body();
  ASSERT_EQ(body["functions"].size(), 2u);
  const Json& fn = body["functions"][0];
  EXPECT_EQ(fn["triggers"][1], Json({{"cron", "TZ=Europe/Paris 0 9 * * 1"}}));
  EXPECT_EQ(fn["triggers"][2], Json({{"cron", "*/5 * * * *"}, {"jitter", "30s"}}));
  // A trigger given both a cron and an event sends both, for the sync to refuse by name
  // (the event was dropped).
  FunctionOptions both{.id = "both", .triggers = {{.event = "a/b", .cron = "* * * * *"}}};
  ServeHandler h2(client_, "http://h/api",
                  {create_function(both, [](Context&) { return Json(nullptr); })});
  EXPECT_EQ(h2.register_body()["functions"][0]["triggers"][0],
            Json({{"cron", "* * * * *"}, {"event", "a/b"}}));
  // A config that is not UTF-8 is refused as a status, not thrown at the caller.
  FunctionOptions bad{.id = "fn", .triggers = {{.event = "a/\xff"}}};
  ServeHandler h3(client_, "http://h/api",
                  {create_function(bad, [](Context&) { return Json(nullptr); })});
  Status registered = Status::Ok();
  EXPECT_NO_THROW(registered = h3.register_functions());
  EXPECT_EQ(registered.code(), StatusCode::kInvalidArgument) << registered.ToString();
  EXPECT_EQ(fn["cancel"], Json::parse(R"([{"event":"a/cancel","if":"true","timeout":"1h"}])"));
  const Json& failure = body["functions"][1];
  EXPECT_EQ(failure["id"], "app-fn-failure");
  EXPECT_EQ(failure["triggers"][0]["event"], "inngest/function.failed");
  EXPECT_EQ(failure["triggers"][0]["expression"], "event.data.function_id == 'app-fn'");

  Json call = {
      {"event",
       {{"name", "inngest/function.failed"}, {"data", {{"error", {{"message", "boom"}}}}}}},
      {"steps", Json::object()},
      {"ctx", {{"run_id", "R"}, {"attempt", 0}}}};
  auto r = h.handle({"POST", "/api?fnId=app-fn-failure&stepId=step", {}, call.dump()});
  EXPECT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(Json::parse(r.body), Json({{"saw", "boom"}}));
}

// A step result the coordinator would refuse in the reply that carries it (nested deeper
// than its 128 levels less the reply's two, holding \u0000, or larger than a reply) fails
// the step for good in the call that ran it: retried, its function would run again only to
// give the same. The reply is one the coordinator takes. A result at the limit goes through.
TEST_F(ServeTest, AStepResultTheCoordinatorWouldRefuseFailsTheStepForGood) {
  auto nested = [](int levels) {
    Json v = Json::array();
    for (int i = 1; i < levels; ++i) v = Json::array({v});
    return v;
  };
  std::map<std::string, int> runs;
  auto function = [&](const std::string& id, Json result) {
    return create_function({.id = id}, [&runs, id, result](Context& ctx) {
      ctx.step.run("a", [&] {
        ++runs[id];
        return result;
      });
      return Json("end");
    });
  };
  ServeHandler h(
      client_, "http://h/api",
      {function("deep", nested(127)), function("nul", Json(std::string("a\0b", 3))),
       function("large", Json(std::string(16 << 20, 'x'))), function("at-limit", nested(126))});
  auto call = [&](const std::string& fn) {
    Json body = {{"event", {{"name", "e"}}}, {"steps", Json::object()}, {"ctx", {{"attempt", 0}}}};
    return h.handle({"POST", "/api?fnId=app-" + fn + "&stepId=step", {}, body.dump()});
  };
  for (const char* fn : {"deep", "nul", "large"}) {
    SCOPED_TRACE(fn);
    auto r = call(fn);
    ASSERT_EQ(r.status, 206) << r.body.substr(0, 300);
    EXPECT_EQ(Header(r, "X-Inngest-No-Retry"), "true");
    auto ops = ParseOps(r.body);
    ASSERT_TRUE(ops.ok()) << ops.status().ToString();
    ASSERT_EQ(ops->size(), 1u);
    EXPECT_EQ((*ops)[0].code, OpCode::kStepFailed);
    EXPECT_EQ((*ops)[0].error["name"], "NonRetriableError");
    EXPECT_EQ(runs[fn], 1);
  }
  auto at_limit = call("at-limit");
  ASSERT_EQ(at_limit.status, 206);
  auto ops = ParseOps(at_limit.body);
  ASSERT_TRUE(ops.ok()) << ops.status().ToString();
  EXPECT_EQ((*ops)[0].code, OpCode::kStepRun);
  EXPECT_EQ((*ops)[0].data, nested(126));
}

// A function's end that a coordinator would refuse in the reply that carries it alone (more
// than 16 MiB as JSON, nested deeper than 128 levels, holding \u0000, not UTF-8) fails the run
// for good, saying why, on any attempt: sent, it would be refused on every one. After the step
// a call ran, that step is recorded first and the replay past it fails. An end at the limits
// goes through.
TEST_F(ServeTest, AnEndTheCoordinatorWouldRefuseFailsTheRunForGood) {
  auto nested = [](int levels) {
    Json v = Json::array();
    for (int i = 1; i < levels; ++i) v = Json::array({v});
    return v;
  };
  const size_t limit = kHostReplyJsonLimits.max_bytes;
  // Each function makes its end when it runs: the large ones are not held beforehand.
  auto ending = [](const std::string& id, std::function<Json()> make) {
    return create_function({.id = id}, [make](Context&) { return make(); });
  };
  ServeHandler h(
      client_, "http://h/api",
      {ending("large", [limit] { return Json(std::string(limit - 1, 'x')); }),  // limit + 1 quoted
       ending("deep", [&] { return nested(129); }),
       ending("nul", [] { return Json(std::string("a\0b", 3)); }),
       ending("not-utf8", [] { return Json(std::string("\xff")); }),
       ending("at-limit", [limit] { return Json(std::string(limit - 2, 'x')); }),
       ending("deep-at-limit", [&] { return nested(128); }),
       create_function({.id = "after-a-step"}, [limit](Context& ctx) {
         ctx.step.run("a", [] { return Json("A"); });
         return Json(std::string(limit, 'x'));
       })});
  auto call = [&](const std::string& fn, Json steps = Json::object()) {
    Json body = {{"event", {{"name", "e"}}},
                 {"steps", steps},
                 {"ctx", {{"attempt", 0}, {"max_attempts", 3}}}};
    return h.handle({"POST", "/api?fnId=app-" + fn + "&stepId=step", {}, body.dump()});
  };
  const std::vector<std::pair<std::string, std::string>> refused = {
      {"large", "JSON text of " + std::to_string(limit + 1) +
                    " bytes is larger than the limit of " + std::to_string(limit)},
      {"deep", "JSON nested deeper than 128 levels"},
      {"nul", "\\u0000"},
      {"not-utf8", "cannot be sent as JSON"}};
  for (const auto& [fn, reason] : refused) {
    SCOPED_TRACE(fn);
    auto r = call(fn);
    ASSERT_EQ(r.status, 400) << r.body.substr(0, 300);
    EXPECT_EQ(Header(r, "X-Inngest-No-Retry"), "true");
    Json error = Json::parse(r.body);
    EXPECT_EQ(error["name"], "NonRetriableError");
    const std::string message = error["message"].get<std::string>();
    EXPECT_TRUE(message.starts_with("the function's return value")) << message;
    EXPECT_NE(message.find(reason), std::string::npos) << message;
  }
  auto at_limit = call("at-limit");
  EXPECT_EQ(at_limit.status, 200);
  EXPECT_EQ(at_limit.body.size(), limit);
  auto deep_at_limit = call("deep-at-limit");
  EXPECT_EQ(deep_at_limit.status, 200);
  EXPECT_EQ(Json::parse(deep_at_limit.body), nested(128));

  auto step = call("after-a-step");
  ASSERT_EQ(step.status, 206);
  auto ops = ParseOps(step.body);
  ASSERT_TRUE(ops.ok()) << ops.status().ToString();
  ASSERT_EQ(ops->size(), 1u);
  EXPECT_EQ((*ops)[0].code, OpCode::kStepRun);
  auto end = call("after-a-step", {{HashStepId("a"), {{"data", "A"}}}});
  EXPECT_EQ(end.status, 400) << end.body.substr(0, 300);
  EXPECT_EQ(Header(end, "X-Inngest-No-Retry"), "true");
}

// Text a step tool would put in an op that is not UTF-8, or holds NUL (a step id, a wait's
// event, an invoke's data), and a wait without a timeout or with one that is no duration,
// fail the function for good (a UsageError: no retry mends it),
// before an op is made; a config that cannot be written fails a sync with a 500. The handler
// throws nothing.
TEST_F(ServeTest, OpTextThatIsNotUtf8FailsTheFunctionAndTheHandlerThrowsNothing) {
  ServeHandler h(
      client_, "http://h/api",
      {create_function({.id = "id"},
                       [](Context& ctx) {
                         ctx.step.run("bad \xff", [] { return Json(1); });
                         return Json("end");
                       }),
       create_function({.id = "nul-id"},
                       [](Context& ctx) {
                         ctx.step.sleep(std::string("a\0b", 3), std::chrono::seconds(1));
                         return Json("end");
                       }),
       create_function({.id = "wait"},
                       [](Context& ctx) {
                         ctx.step.wait_for_event("w", {.event = "a/\xff", .timeout = "1h"});
                         return Json("end");
                       }),
       create_function({.id = "invoke"},
                       [](Context& ctx) {
                         ctx.step.invoke("i", {.function_id = "other", .data = {{"x", "\xff"}}});
                         return Json("end");
                       }),
       create_function({.id = "bad-duration"},
                       [](Context& ctx) {
                         ctx.step.wait_for_event("w", {.event = "a/b", .timeout = "soon"});
                         return Json("end");
                       }),
       create_function({.id = "no-timeout"},
                       [](Context& ctx) {
                         ctx.step.wait_for_event("w", {.event = "a/b"});
                         return Json("end");
                       }),
       create_function({.id = "after-a-step"}, [](Context& ctx) {
         ctx.step.run("a", [] { return Json("A"); });
         ctx.step.run("\xff", [] { return Json("B"); });
         return Json("end");
       })});
  auto call = [&](const std::string& fn, Json steps = Json::object()) {
    Json body = {{"event", {{"name", "e"}}}, {"steps", steps}, {"ctx", {{"attempt", 0}}}};
    ServeResponse r;
    EXPECT_NO_THROW(
        r = h.handle({"POST", "/api?fnId=app-" + fn + "&stepId=step", {}, body.dump()}));
    return r;
  };
  for (const auto& [fn, message] :
       {std::pair{"id", "a step id must be UTF-8 text without NUL"},
        {"nul-id", "a step id must be UTF-8 text without NUL"},
        {"wait", "wait_for_event's event must be UTF-8 text without NUL"},
        {"invoke", "invoke's data cannot be sent as JSON"},
        {"bad-duration", "timeout \"soon\" is not a duration"},
        {"no-timeout", "wait_for_event needs a timeout"}}) {
    SCOPED_TRACE(fn);
    auto r = call(fn);
    EXPECT_EQ(r.status, 400);
    EXPECT_EQ(Header(r, "X-Inngest-No-Retry"), "true");
    ASSERT_TRUE(ParseUntrustedJson(r.body, kHostReplyJsonLimits).ok()) << r.body;
    EXPECT_NE(Json::parse(r.body)["message"].get<std::string>().find(message), std::string::npos)
        << r.body;
  }
  // After the step a call ran, the bad id ends the call with that step alone; the replay past
  // it fails.
  auto ran = call("after-a-step");
  ASSERT_EQ(ran.status, 206) << ran.body;
  auto ops = ParseOps(ran.body);
  ASSERT_TRUE(ops.ok()) << ops.status().ToString();
  ASSERT_EQ(ops->size(), 1u);
  EXPECT_EQ((*ops)[0].id, HashStepId("a"));
  EXPECT_EQ(call("after-a-step", {{HashStepId("a"), {{"data", "A"}}}}).status, 400);

  ServeHandler bad_config(client_, "http://h/api",
                          {create_function({.id = "f\xff"}, [](Context&) { return Json(1); })});
  ServeResponse sync;
  EXPECT_NO_THROW(
      sync = bad_config.handle({"PUT", "/api", {{"X-Inngest-Sync-Kind", "in_band"}}, "{}"}));
  EXPECT_EQ(sync.status, 500);
}

// A repeated id gets the first "id:n" not used yet in the run, as the JS SDK picks it: a step
// named "x:1" before two named "x" leaves the second "x" "x:2", not the first's "x:1".
TEST_F(ServeTest, ARepeatedStepIdTakesTheFirstIndexNotUsedYet) {
  ServeHandler h(client_, "http://h/api",
                 {create_function({.id = "fn"},
                                  [](Context& ctx) {
                                    Json a = ctx.step.run("x:1", [] { return Json("a"); });
                                    Json b = ctx.step.run("x", [] { return Json("b"); });
                                    Json c = ctx.step.run("x", [] { return Json("c"); });
                                    return Json::array({a, b, c});
                                  }),
                  create_function({.id = "fn2"}, [](Context& ctx) {
                    Json a = ctx.step.run("y", [] { return Json("a"); });
                    Json b = ctx.step.run("y", [] { return Json("b"); });
                    Json c = ctx.step.run("y:1", [] { return Json("c"); });
                    return Json::array({a, b, c});
                  })});
  auto r = Call(h, {{HashStepId("x:1"), {{"data", "a"}}}, {HashStepId("x"), {{"data", "b"}}}});
  ASSERT_EQ(r.status, 206) << r.body;
  Json ops = Json::parse(r.body);
  ASSERT_EQ(ops.size(), 2u) << ops;
  EXPECT_EQ(ops[0]["op"], "StepRun");
  EXPECT_EQ(ops[0]["id"], HashStepId("x", 2));
  EXPECT_EQ(ops[0]["userland"], Json({{"id", "x"}, {"index", 2}}));
  EXPECT_EQ(ops[0]["data"], "c");
  EXPECT_EQ(ops[1]["data"], Json({"a", "b", "c"}));

  // "y", "y", "y:1": the second "y" is "y:1", so the step named "y:1" is "y:1:1".
  Json body = {{"event", Json::object()},
               {"steps",
                {{HashStepId("y"), {{"data", "a"}}},
                 {HashStepId("y", 1), {{"data", "b"}}},
                 {HashStepId("y:1", 1), {{"data", "c"}}}}}};
  auto done = h.handle({"POST", "/api?fnId=app-fn2&stepId=step", {}, body.dump()});
  EXPECT_EQ(done.status, 200) << done.body;
  EXPECT_EQ(Json::parse(done.body), Json({"a", "b", "c"}));
}

// The ctx of a call is read with care: a member of another type, a number out of range or
// not whole is taken as absent (attempt 0, max_attempts unknown, run_id ""), never thrown
// on or cast.
TEST_F(ServeTest, CtxMembersOfAnyShapeAreReadAsTheirDefaults) {
  std::vector<std::pair<int, std::string>> seen;
  ServeHandler h(client_, "http://h/api", {create_function({.id = "fn"}, [&](Context& ctx) {
                   seen.emplace_back(ctx.attempt, ctx.run_id);
                   ctx.step.run("a", []() -> Json { throw std::runtime_error("no"); });
                   return Json("end");
                 })});
  auto call = [&](Json ctx) {
    Json body = {{"event", Json::object()}, {"steps", Json::object()}, {"ctx", ctx}};
    ServeResponse r;
    EXPECT_NO_THROW(r = h.handle({"POST", "/api?fnId=app-fn&stepId=step", {}, body.dump()}));
    return r;
  };
  const int64_t int_max = std::numeric_limits<int>::max();
  for (const Json& ctx : {Json{{"attempt", "2"},
                               {"max_attempts", 1e300},
                               {"run_id", 5},
                               {"disable_immediate_execution", "yes"}},
                          Json{{"attempt", -1}, {"max_attempts", 2.5}},
                          Json{{"attempt", int_max}, {"max_attempts", int_max}},
                          Json{{"attempt", std::numeric_limits<uint64_t>::max()},
                               {"max_attempts", std::numeric_limits<int64_t>::min()}}}) {
    SCOPED_TRACE(ctx.dump());
    seen.clear();
    auto r = call(ctx);
    ASSERT_EQ(r.status, 206) << r.body;
    EXPECT_EQ(Json::parse(r.body)[0]["op"], "StepError");  // max_attempts unknown: retried
    EXPECT_EQ(seen, (std::vector<std::pair<int, std::string>>{{0, ""}}));
  }
  // Counts in range are read as they are.
  seen.clear();
  auto last = call({{"attempt", 2}, {"max_attempts", 3}, {"run_id", "R"}});
  EXPECT_EQ(Json::parse(last.body)[0]["op"], "StepFailed");
  EXPECT_EQ(seen, (std::vector<std::pair<int, std::string>>{{2, "R"}}));
}

// A memoized step error of any shape throws StepError from step.run: its message when it
// has a string one, else "step failed".
TEST_F(ServeTest, AMemoizedStepErrorOfAnyShapeThrowsStepError) {
  ServeHandler h(client_, "http://h/api", {create_function({.id = "fn"}, [](Context& ctx) {
                   try {
                     ctx.step.run("a", [] { return Json(1); });
                   } catch (const StepError& e) {
                     return Json{{"caught", e.what()}, {"error", e.error()}};
                   }
                   return Json("not failed");
                 })});
  for (const auto& [error, message] : {std::pair{Json(5), "step failed"},
                                       {Json("boom"), "step failed"},
                                       {Json{{"message", 7}}, "step failed"},
                                       {Json{{"message", "m"}}, "m"}}) {
    SCOPED_TRACE(error.dump());
    ServeResponse r;
    EXPECT_NO_THROW(r = Call(h, {{HashStepId("a"), {{"error", error}}}}));
    ASSERT_EQ(r.status, 200) << r.body;
    EXPECT_EQ(Json::parse(r.body), Json({{"caught", message}, {"error", error}}));
  }
}

// A call body holds the run's whole state, up to the 32 MiB a coordinator sends: one past
// 16 MiB is read.
TEST_F(ServeTest, ACallBodyOfMoreThan16MiBIsRead) {
  const std::string large(20 << 20, 'x');
  ServeHandler h(client_, "http://h/api", {create_function({.id = "fn"}, [](Context& ctx) {
                   Json a = ctx.step.run("a", [] { return Json("never runs"); });
                   return Json(a.get<std::string>().size());
                 })});
  auto r = Call(h, {{HashStepId("a"), {{"data", large}}}});
  EXPECT_EQ(r.status, 200) << r.body.substr(0, 300);
  EXPECT_EQ(r.body, std::to_string(large.size()));
}

// With a signing key, a call without a signature of the right form and time is refused, its
// large body unread (serve.cc checks the header before it parses anything; no timing here).
TEST_F(ServeTest, ACallWithoutAFreshSignatureIsRefused) {
  ServeHandler h = SignedHandler();
  std::string body = R"({"event":{},"steps":{},"ctx":{},"pad":[)";
  while (body.size() < (size_t{24} << 20)) body += "0.1,";
  body += "0.1]}";
  const int64_t now = std::chrono::duration_cast<std::chrono::seconds>(
                          std::chrono::system_clock::now().time_since_epoch())
                          .count();
  for (const std::string& header :
       {std::string(), std::string("t=abc&s=00"),
        signing::SignatureHeader(body, "signkey-test-beef", now - 3600)}) {
    SCOPED_TRACE(header.substr(0, 40));
    ServeRequest request{"POST", "/api?fnId=app-fn&stepId=step", {}, body};
    if (!header.empty()) request.headers.emplace_back("X-Inngest-Signature", header);
    EXPECT_EQ(h.handle(request).status, 401);
  }
  EXPECT_EQ(signed_runs_, 0);
}

// A signature's time at either end of int64_t is refused as out of the window: the SDK
// compares it without subtracting, which would overflow.
TEST_F(ServeTest, ASignatureTimeAtEitherEndOfInt64IsRefused) {
  ServeHandler h = SignedHandler();
  Json body = {{"event", Json::object()}, {"steps", Json::object()}, {"ctx", {{"attempt", 0}}}};
  const std::string canonical = *CanonicalJson(body);
  for (const int64_t t :
       {std::numeric_limits<int64_t>::min(), std::numeric_limits<int64_t>::max()}) {
    SCOPED_TRACE(t);
    const std::string header = signing::SignatureHeader(canonical, "signkey-test-beef", t);
    EXPECT_EQ(
        h.handle(
             {"POST", "/api?fnId=app-fn&stepId=step", {{"X-Inngest-Signature", header}}, canonical})
            .status,
        401);
    EXPECT_EQ(h.handle({"PUT",
                        "/api",
                        {{"X-Inngest-Sync-Kind", "in_band"}, {"X-Inngest-Signature", header}},
                        canonical})
                  .status,
              401);
  }
  EXPECT_EQ(signed_runs_, 0);
}

// Introspection (GET) is open in dev mode. With a signing key only a GET signed over an empty
// body, fresh, by the key or its fallback is answered (else 401), and then with the app's
// identity and the first 12 hex digits of each key's hash: never a key, nor a whole hash,
// which is a bearer token.
TEST_F(ServeTest, IntrospectionIsOpenInDevModeAndSignedOnlyWithAKey) {
  auto get = [](const ServeHandler& h, Headers headers = {}) {
    return h.handle({"GET", "/api/funcky", std::move(headers), ""});
  };
  ServeHandler dev(client_, "http://h/api",
                   {create_function({.id = "fn"}, [](Context&) { return Json(nullptr); })});
  auto open = get(dev);
  ASSERT_EQ(open.status, 200) << open.body;
  Json dev_view = Json::parse(open.body);
  EXPECT_EQ(dev_view["mode"], "dev");
  EXPECT_EQ(dev_view["has_signing_key"], false);
  EXPECT_EQ(dev_view["function_count"], 1);
  EXPECT_FALSE(dev_view.contains("authentication_succeeded")) << dev_view;
  EXPECT_FALSE(dev_view.contains("app_id")) << dev_view;

  const std::string key = "signkey-test-12345678abcdef00";  // docs/protocol.md §7's example
  const std::string fallback = "signkey-test-c0ffee";
  Client client({.app_id = "app", .signing_key = key, .signing_key_fallback = fallback});
  ServeHandler h(client, "https://h.example:8443/api/funcky?x=1",
                 {create_function({.id = "fn"}, [](Context&) { return Json(nullptr); })});
  const int64_t now = std::chrono::duration_cast<std::chrono::seconds>(
                          std::chrono::system_clock::now().time_since_epoch())
                          .count();
  for (const std::string& header :
       {std::string(), std::string("t=abc&s=00"),
        signing::SignatureHeader("", "signkey-test-dead", now),
        signing::SignatureHeader("", key, now - 360), signing::SignatureHeader("{}", key, now)}) {
    SCOPED_TRACE(header);
    Headers headers;
    if (!header.empty()) headers.emplace_back("X-Inngest-Signature", header);
    auto refused = get(h, headers);
    EXPECT_EQ(refused.status, 401) << refused.body;
    EXPECT_EQ(Json::parse(refused.body), Json({{"message", "Unauthorized"}}));
  }
  const std::string fallback_hash(
      signing::KeyMaterial(signing::HashedSigningKey(fallback)).substr(0, 12));
  for (const std::string& signer : {key, fallback}) {
    SCOPED_TRACE(signer);
    auto r = get(h, {{"X-Inngest-Signature", signing::SignatureHeader("", signer, now)}});
    ASSERT_EQ(r.status, 200) << r.body;
    Json view = Json::parse(r.body);
    EXPECT_EQ(view["authentication_succeeded"], true);
    EXPECT_EQ(view["mode"], "cloud");
    EXPECT_EQ(view["has_signing_key"], true);
    EXPECT_EQ(view["function_count"], 1);
    EXPECT_EQ(view["schema_version"], "2024-05-24");
    EXPECT_EQ(view["app_id"], "app");
    EXPECT_EQ(view["framework"], "funcky");
    EXPECT_EQ(view["sdk_language"], "cpp");
    EXPECT_TRUE(view["sdk_version"].is_string() && !view["sdk_version"].get<std::string>().empty())
        << view;
    EXPECT_EQ(view["serve_origin"], "https://h.example:8443");
    EXPECT_EQ(view["serve_path"], "/api/funcky");
    EXPECT_EQ(view["signing_key_hash"], "1425c614b3c1");
    EXPECT_EQ(view["signing_key_fallback_hash"], fallback_hash);
    EXPECT_EQ(fallback_hash.size(), 12u);
    for (const std::string& secret :
         {std::string("12345678abcdef00"), std::string("c0ffee"),
          std::string(signing::KeyMaterial(signing::HashedSigningKey(key))),
          std::string(signing::KeyMaterial(signing::HashedSigningKey(fallback)))}) {
      EXPECT_EQ(r.body.find(secret), std::string::npos) << secret;
    }
    // The answer is signed with the key that signed the request.
    EXPECT_TRUE(
        signing::VerifySignature(Header(r, "X-Inngest-Signature"), r.body, {signer}, now).ok());
    // So is an in-band sync's: during a key rotation, a coordinator whose only key is the
    // host's fallback holds the reply to that key.
    const std::string put_body = R"({"url":"https://h.example:8443/api/funcky"})";
    auto synced =
        h.handle({"PUT",
                  "/api/funcky",
                  {{"X-Inngest-Sync-Kind", "in_band"},
                   {"X-Inngest-Signature", signing::SignatureHeader(put_body, signer, now)}},
                  put_body});
    ASSERT_EQ(synced.status, 200) << synced.body;
    EXPECT_TRUE(
        signing::VerifySignature(Header(synced, "X-Inngest-Signature"), synced.body, {signer}, now)
            .ok());
  }
  // Without a fallback key, its hash is null.
  ServeHandler no_fallback = SignedHandler();
  auto r = get(no_fallback,
               {{"X-Inngest-Signature", signing::SignatureHeader("", "signkey-test-beef", now)}});
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(Json::parse(r.body)["signing_key_fallback_hash"], nullptr);
}

// A signing key (or fallback) that is set but malformed is refused when the handler is made,
// in a message that names the option, not the key.
TEST(ServeHandlerKeys, AMalformedSigningKeyIsRefusedAtConstruction) {
  auto make = [](ClientOptions options) {
    Client client(std::move(options));
    ServeHandler h(client, "http://h/api", {});
  };
  // Each is a key and a fallback.
  for (const auto& [key, fallback] : {std::pair{"signkey-prod-", ""},
                                      {"signkey-prod-c0ffe", ""},
                                      {"signkey-prod-nothex", ""},
                                      {"signkey-prod-beef", "signkey-prod-"}}) {
    SCOPED_TRACE(std::string(key) + " / " + fallback);
    try {
      make({.app_id = "app", .signing_key = key, .signing_key_fallback = fallback});
      ADD_FAILURE() << "no exception";
    } catch (const std::invalid_argument& e) {
      const std::string what = e.what();
      EXPECT_NE(what.find("signing_key"), std::string::npos) << what;
      EXPECT_EQ(what.find("signkey-prod"), std::string::npos) << what;
    }
  }
  EXPECT_NO_THROW(make({.app_id = "app", .signing_key = "signkey-test-beef"}));
  EXPECT_NO_THROW(make({.app_id = "app", .signing_key = "beef"}));
  EXPECT_NO_THROW(make({.app_id = "app"}));  // dev mode
}

// A ServeHandler's lookup table points into its own functions: a copy would point into the
// original's, so it cannot be copied; a move keeps the functions where they are.
static_assert(!std::is_copy_constructible_v<ServeHandler>);
static_assert(!std::is_copy_assignable_v<ServeHandler>);
static_assert(std::is_move_constructible_v<ServeHandler>);

TEST_F(ServeTest, AMovedServeHandlerServesItsFunctions) {
  auto original = std::make_unique<ServeHandler>(
      client_, "http://h/api",
      std::vector{create_function({.id = "fn"}, [](Context&) { return Json("moved"); })});
  ServeHandler moved(std::move(*original));
  original.reset();
  auto r = Call(moved, Json::object());
  EXPECT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(r.body, "\"moved\"");
}

// The SDK's errors never quote the event key: a coordinator URL that does not parse is
// quoted without the event path after it.
TEST(ClientErrors, ABadCoordinatorUrlIsQuotedWithoutTheEventKey) {
  Client client(
      {.app_id = "app", .coordinator_url = "http://127.0.0.1:1/ bad", .event_key = "sekret"});
  auto sent = client.send(Json{{"name", "e"}});
  ASSERT_FALSE(sent.ok());
  EXPECT_EQ(sent.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(sent.status().message().find("http://127.0.0.1:1/ bad"), std::string::npos)
      << sent.status().message();
  EXPECT_EQ(sent.status().message().find("sekret"), std::string::npos) << sent.status().message();
}

// The C++ SDK's Ordering serializes to the form the coordinator parses.
TEST(Flow, TheCppSdkSyncsDebounceAsTheNpmSdkDoes) {
  auto fn = create_function(
      {.id = "quiet",
       .triggers = {{.event = "doc/edited"}},
       .debounce = Debounce{.period = "2s", .key = "event.data.doc", .timeout = "1m"}},
      [](Context&) { return Json(nullptr); });
  const Json config = fn.configs("app", "http://h:1/api").at(0);
  EXPECT_EQ(config["debounce"],
            Json::parse(R"({"period":"2s","key":"event.data.doc","timeout":"1m"})"));
  auto flow = scheduler::ParseFlowControl(config);
  ASSERT_TRUE(flow.ok()) << flow.status().ToString();
  ASSERT_TRUE(flow->debounce);
  EXPECT_EQ(flow->debounce->period, std::chrono::seconds(2));
  EXPECT_EQ(flow->debounce->timeout, std::chrono::minutes(1));
  EXPECT_EQ(flow->debounce->key->source(), "event.data.doc");
  auto plain = create_function(
      {.id = "p", .triggers = {{.event = "e"}}, .debounce = Debounce{.period = "5s"}},
      [](Context&) { return Json(nullptr); });
  EXPECT_EQ(plain.configs("app", "http://h:1/api").at(0)["debounce"],
            Json::parse(R"({"period":"5s"})"));
  auto none = create_function({.id = "n", .triggers = {{.event = "e"}}},
                              [](Context&) { return Json(nullptr); });
  EXPECT_FALSE(none.configs("app", "http://h:1/api").at(0).contains("debounce"));
}

TEST(Flow, TheCppSdkSyncsBatchEventsAsTheNpmSdkDoes) {
  auto fn =
      create_function({.id = "bulk",
                       .triggers = {{.event = "log/api.call"}},
                       .batch_events = BatchEvents{.max_size = 100,
                                                   .timeout = "5s",
                                                   .key = "event.data.user_id",
                                                   .if_ = "event.data.account_type == 'free'"}},
                      [](Context&) { return Json(nullptr); });
  const Json config = fn.configs("app", "http://h:1/api").at(0);
  EXPECT_EQ(config["batchEvents"], Json::parse(R"({"maxSize":100,"timeout":"5s",)"
                                               R"("key":"event.data.user_id",)"
                                               R"("if":"event.data.account_type == 'free'"})"));
  auto flow = scheduler::ParseFlowControl(config);
  ASSERT_TRUE(flow.ok()) << flow.status().ToString();
  ASSERT_TRUE(flow->batch);
  EXPECT_EQ(flow->batch->max_size, 100);
  EXPECT_EQ(flow->batch->timeout, std::chrono::seconds(5));
  EXPECT_EQ(flow->batch->key->source(), "event.data.user_id");
  EXPECT_EQ(flow->batch->condition->source(), "event.data.account_type == 'free'");
  auto plain = create_function({.id = "p",
                                .triggers = {{.event = "e"}},
                                .batch_events = BatchEvents{.max_size = 2, .timeout = "1s"}},
                               [](Context&) { return Json(nullptr); });
  EXPECT_EQ(plain.configs("app", "http://h:1/api").at(0)["batchEvents"],
            Json::parse(R"({"maxSize":2,"timeout":"1s"})"));
  auto none = create_function({.id = "n", .triggers = {{.event = "e"}}},
                              [](Context&) { return Json(nullptr); });
  EXPECT_FALSE(none.configs("app", "http://h:1/api").at(0).contains("batchEvents"));
}

TEST(SequenceLanes, TheCppSdkConfigParsesToTheSameLane) {
  Ordering ordering{.key = "event.data.tenant",
                    .head_timeout = "1h",
                    .bypass = "event.data.unordered == true",
                    .sequence = "event.data.version",
                    .gap_timeout = "2s",
                    .start = 1,
                    .stale = "run"};
  auto fn = create_function(
      {.id = "replicate", .triggers = {{.event = "crm/updated"}}, .ordering = ordering},
      [](Context&) { return Json(nullptr); });
  const Json config = fn.configs("app", "http://h:1/api").at(0);
  EXPECT_EQ(config["ordering"], Json::parse(R"({"key":"event.data.tenant","head_timeout":"1h",
      "bypass":"event.data.unordered == true","sequence":"event.data.version",
      "gap_timeout":"2s","start":1,"stale":"run"})"));
  auto flow = scheduler::ParseFlowControl(config);
  ASSERT_TRUE(flow.ok()) << flow.status().ToString();
  ASSERT_TRUE(flow->sequence);
  EXPECT_EQ(flow->sequence->expression->source(), "event.data.version");
  EXPECT_EQ(flow->sequence->gap_timeout, std::chrono::seconds(2));
  EXPECT_EQ(flow->sequence->start, 1);
  EXPECT_EQ(flow->sequence->stale, scheduler::StalePolicy::kRun);
  EXPECT_EQ(flow->bypass->source(), "event.data.unordered == true");
  EXPECT_EQ(flow->head_timeout, std::chrono::hours(1));

  // Unset fields are left out, so a plain lane syncs as before.
  auto plain = create_function(
      {.id = "p", .triggers = {{.event = "e"}}, .ordering = Ordering{.key = "event.data.t"}},
      [](Context&) { return Json(nullptr); });
  EXPECT_EQ(plain.configs("app", "http://h:1/api").at(0)["ordering"],
            Json::parse(R"({"key":"event.data.t"})"));
}

// The C++ SDK's Throttle serializes to Inngest's wire shape, which the coordinator parses.
TEST(Throttle, TheCppSdkConfigParsesToTheSameThrottle) {
  auto fn = create_function(
      {.id = "paced",
       .triggers = {{.event = "e"}},
       .throttle = Throttle{.limit = 2, .period = "2s", .burst = 1, .key = "event.data.user"}},
      [](Context&) { return Json(nullptr); });
  const Json config = fn.configs("app", "http://h:1/api").at(0);
  EXPECT_EQ(config["throttle"],
            Json::parse(R"({"limit":2,"period":"2s","burst":1,"key":"event.data.user"})"));
  auto flow = scheduler::ParseFlowControl(config);
  ASSERT_TRUE(flow.ok()) << flow.status().ToString();
  ASSERT_TRUE(flow->throttle);
  EXPECT_EQ(flow->throttle->limit, 2);
  EXPECT_EQ(flow->throttle->period, std::chrono::seconds(2));
  EXPECT_EQ(flow->throttle->burst, 1);
  EXPECT_EQ(flow->throttle->key->source(), "event.data.user");
  // Unset fields are left out.
  auto plain = create_function(
      {.id = "p", .triggers = {{.event = "e"}}, .throttle = Throttle{.limit = 1, .period = "1m"}},
      [](Context&) { return Json(nullptr); });
  EXPECT_EQ(plain.configs("app", "http://h:1/api").at(0)["throttle"],
            Json::parse(R"({"limit":1,"period":"1m"})"));
  EXPECT_FALSE(create_function({.id = "q", .triggers = {{.event = "e"}}},
                               [](Context&) { return Json(nullptr); })
                   .configs("app", "http://h:1/api")
                   .at(0)
                   .contains("throttle"));
}

// The C++ SDK's idempotency, rateLimit, singleton and timeouts serialize as the npm SDK sends
// them, which the coordinator parses; unset ones are left out.
TEST(Flow, TheCppSdkSyncsTheAdmissionGatesAndTimeoutsAsTheNpmSdkDoes) {
  auto fn = create_function(
      {.id = "gated",
       .triggers = {{.event = "e"}},
       .idempotency = "event.data.order_id",
       .rate_limit = RateLimit{.limit = 10, .period = "1m", .key = "event.data.user"},
       .singleton = Singleton{.mode = "cancel", .key = "event.data.account"},
       .timeouts = Timeouts{.start = "10s", .finish = "1h"}},
      [](Context&) { return Json(nullptr); });
  const Json config = fn.configs("app", "http://h:1/api").at(0);
  EXPECT_EQ(config["idempotency"], "event.data.order_id");
  EXPECT_EQ(config["rateLimit"],
            Json::parse(R"({"limit":10,"period":"1m","key":"event.data.user"})"));
  EXPECT_EQ(config["singleton"], Json::parse(R"({"mode":"cancel","key":"event.data.account"})"));
  EXPECT_EQ(config["timeouts"], Json::parse(R"({"start":"10s","finish":"1h"})"));
  auto flow = scheduler::ParseFlowControl(config);
  ASSERT_TRUE(flow.ok()) << flow.status().ToString();
  ASSERT_TRUE(flow->rate);
  EXPECT_EQ(flow->rate->reason, store::kSkipIdempotency) << "idempotency replaces rateLimit";
  EXPECT_EQ(flow->rate->key->source(), "event.data.order_id");
  ASSERT_TRUE(flow->singleton);
  EXPECT_TRUE(flow->singleton->cancel);
  EXPECT_EQ(flow->singleton->key_text, "event.data.account");
  ASSERT_TRUE(flow->timeouts);
  EXPECT_EQ(flow->timeouts->start, std::chrono::seconds(10));
  EXPECT_EQ(flow->timeouts->finish, std::chrono::hours(1));

  auto plain = create_function({.id = "p",
                                .triggers = {{.event = "e"}},
                                .rate_limit = RateLimit{.limit = 1, .period = "1s"},
                                .singleton = Singleton{.mode = "skip"},
                                .timeouts = Timeouts{.finish = "5m"}},
                               [](Context&) { return Json(nullptr); });
  const Json plain_config = plain.configs("app", "http://h:1/api").at(0);
  EXPECT_EQ(plain_config["rateLimit"], Json::parse(R"({"limit":1,"period":"1s"})"));
  EXPECT_EQ(plain_config["singleton"], Json::parse(R"({"mode":"skip"})"));
  EXPECT_EQ(plain_config["timeouts"], Json::parse(R"({"finish":"5m"})"));
  EXPECT_FALSE(plain_config.contains("idempotency"));
  auto rated = scheduler::ParseFlowControl(plain_config);
  ASSERT_TRUE(rated.ok()) << rated.status().ToString();
  ASSERT_TRUE(rated->rate);
  EXPECT_EQ(rated->rate->reason, store::kSkipRateLimit);
  EXPECT_EQ(rated->rate->limit, 1);
  EXPECT_EQ(rated->rate->period, std::chrono::seconds(1));
  EXPECT_FALSE(rated->rate->key);
  const Json none = create_function({.id = "n", .triggers = {{.event = "e"}}},
                                    [](Context&) { return Json(nullptr); })
                        .configs("app", "http://h:1/api")
                        .at(0);
  for (const char* option : {"idempotency", "rateLimit", "singleton", "timeouts"}) {
    EXPECT_FALSE(none.contains(option)) << option;
  }
  EXPECT_FALSE(create_function({.id = "t", .triggers = {{.event = "e"}}, .timeouts = Timeouts{}},
                               [](Context&) { return Json(nullptr); })
                   .configs("app", "http://h:1/api")
                   .at(0)
                   .contains("timeouts"))
      << "neither deadline: none sent";
}

// The C++ SDK's Priority serializes as the npm SDK sends it, which the coordinator parses.
TEST(Priority, TheCppSdkConfigParsesToTheSamePriority) {
  auto fn = create_function(
      {.id = "vip", .triggers = {{.event = "e"}}, .priority = Priority{.run = "event.data.boost"}},
      [](Context&) { return Json(nullptr); });
  const Json config = fn.configs("app", "http://h:1/api").at(0);
  EXPECT_EQ(config["priority"], Json::parse(R"({"run":"event.data.boost"})"));
  auto flow = scheduler::ParseFlowControl(config);
  ASSERT_TRUE(flow.ok()) << flow.status().ToString();
  ASSERT_TRUE(flow->priority);
  EXPECT_EQ(flow->priority->source(), "event.data.boost");
  EXPECT_FALSE(create_function({.id = "q", .triggers = {{.event = "e"}}},
                               [](Context&) { return Json(nullptr); })
                   .configs("app", "http://h:1/api")
                   .at(0)
                   .contains("priority"));
}

}  // namespace
}  // namespace funcky::sdk
