#include "sdk/function.h"

#include "common/step_id.h"
#include "common/url.h"
#include "sdk/execution.h"

namespace funcky::sdk {

Json Function::config(const std::string& app_id, const std::string& serve_url) const {
  const std::string id = app_id + "-" + options_.id;
  Json triggers = Json::array();
  for (const auto& t : options_.triggers) {
    Json trigger = {{"event", t.event}};
    if (!t.expression.empty()) trigger["expression"] = t.expression;
    triggers.push_back(std::move(trigger));
  }
  Json step = {{"id", "step"},
               {"name", "step"},
               {"runtime",
                {{"type", "http"},
                 {"url", SetQueryParam(SetQueryParam(serve_url, "fnId", id), "stepId", "step")}}}};
  if (options_.retries) step["retries"] = {{"attempts", *options_.retries}};
  Json config = {{"id", id},
                 {"name", options_.name.empty() ? options_.id : options_.name},
                 {"triggers", triggers},
                 {"steps", {{"step", step}}}};
  if (options_.ordering) {
    config["ordering"] = {{"key", options_.ordering->key}};
    if (!options_.ordering->head_timeout.empty()) {
      config["ordering"]["head_timeout"] = options_.ordering->head_timeout;
    }
  }
  if (!options_.concurrency.empty()) {
    Json limits = Json::array();
    for (const Concurrency& c : options_.concurrency) {
      Json one = {{"limit", c.limit}};
      if (!c.key.empty()) one["key"] = c.key;
      limits.push_back(std::move(one));
    }
    config["concurrency"] = std::move(limits);
  }
  return config;
}

Function create_function(FunctionOptions options, Handler handler) {
  return Function(std::move(options), std::move(handler));
}

Json Step::run(const std::string& id, const std::function<Json()>& fn) {
  Execution& x = execution_;
  const int index = x.counts[id]++;
  const std::string hash = HashStepId(id, index);
  Json userland = {{"id", id}};
  if (index > 0) userland["index"] = index;

  if (auto it = x.memo.find(hash); it != x.memo.end()) {
    const Json& v = it.value();
    if (v.is_object() && v.size() == 1 && v.contains("data")) return v["data"];
    if (v.is_object() && v.size() == 1 && v.contains("error")) throw StepError(v["error"]);
    return v;
  }
  Op op;
  op.id = hash;
  op.name = id;
  op.display_name = id;
  op.opts = Json::object();
  op.userland = userland;
  const bool discovering = x.target_step == kDiscoveryStepId;
  if (!discovering && x.target_step != hash) {
    // Replaying towards another step, which must come later: this one was never run, so
    // the coordinator's state does not match this function's code.
    throw StepNotFound{x.target_step};
  }
  if (discovering && x.disable_immediate_execution) {
    op.code = OpCode::kStepPlanned;
    throw Interrupt{{op}, false};
  }
  try {
    op.data = fn();
    op.code = OpCode::kStepRun;
    throw Interrupt{{op}, false};
  } catch (const NonRetriableError& e) {
    op.error = SerializeError("NonRetriableError", e.what());
    op.code = OpCode::kStepFailed;
  } catch (const RetryAfterError& e) {
    op.error = SerializeError("RetryAfterError", e.what());
    op.code = x.last_attempt() ? OpCode::kStepFailed : OpCode::kStepError;
    if (op.code == OpCode::kStepError) throw Interrupt{{op}, false, e.after()};
  } catch (const std::exception& e) {
    op.error = SerializeError("Error", e.what());
    op.code = x.last_attempt() ? OpCode::kStepFailed : OpCode::kStepError;
  }
  if (op.code == OpCode::kStepFailed) {
    op.data = {{"__serialized", true},
               {"name", op.error["name"]},
               {"message", op.error["message"]},
               {"stack", ""}};
  }
  throw Interrupt{{op}, op.code == OpCode::kStepFailed};
}

}  // namespace funcky::sdk
