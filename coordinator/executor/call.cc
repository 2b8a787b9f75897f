#include "coordinator/executor/call.h"

#include <algorithm>
#include <cctype>
#include <iterator>
#include <map>
#include <vector>

#include "common/jcs.h"
#include "common/json_parse.h"
#include "common/signing.h"
#include "common/step_id.h"
#include "common/url.h"
#include "coordinator/scheduler/backoff.h"

namespace funcky::executor {

using store::Json;

Result<std::string> FunctionUrl(const Json& config) {
  const Json* url = nullptr;
  if (auto steps = config.find("steps"); steps != config.end() && steps->is_object()) {
    for (const auto& step : *steps) {
      auto runtime = step.find("runtime");
      if (runtime != step.end() && runtime->is_object()) {
        auto u = runtime->find("url");
        if (u != runtime->end() && u->is_string()) url = &*u;
      }
      break;  // one step entry ("step") per function in the protocol
    }
  }
  if (!url) return InvalidArgument("function config has no steps.step.runtime.url");
  return url->get<std::string>();
}

int FunctionRetries(const Json& config) {
  int retries = scheduler::kDefaultRetries;
  if (auto steps = config.find("steps"); steps != config.end() && steps->is_object()) {
    for (const auto& step : *steps) {
      auto r = step.find("retries");
      if (r != step.end() && r->is_object()) {
        auto a = r->find("attempts");
        if (a != r->end() && a->is_number_integer()) retries = a->get<int>();
      }
      break;
    }
  }
  return std::clamp(retries, 0, scheduler::kMaxRetries);
}

namespace {

// The call's body in its canonical form, written piece by piece: the event and the steps'
// memos, the bulk of it, are written once each rather than copied into a tree first.
// `*holds_large` (when given) is set if the body holds an integer above 2^53.
Result<std::string> CallBody(const store::RunState& state, const store::QueueItem& item,
                             const CallOptions& options, JcsIntegers integers,
                             bool* holds_large = nullptr) {
  std::string event;
  std::string events = "[";
  for (size_t i = 0; i < state.events.size(); ++i) {
    ASSIGN_OR_RETURN(std::string e, CanonicalJson(state.events[i], integers, holds_large));
    if (i > 0) events.push_back(',');
    events += e;
    if (i == 0) event = std::move(e);
  }
  events.push_back(']');
  std::map<std::string, std::string> memos;  // by step id: a later record of one wins
  std::string stack = "[";
  for (const auto& step : state.steps) {
    ASSIGN_OR_RETURN(memos[step.step_id], CanonicalJson(step.memo, integers, holds_large));
    if (stack.size() > 1) stack.push_back(',');
    stack += CanonicalString(step.step_id);
  }
  stack.push_back(']');
  const int max_attempts = FunctionRetries(state.function.config) + 1;
  // Members added one by one: an initializer list would copy each value, the events too.
  JsonMembers stack_members, ctx, top;
  stack_members.emplace_back("stack", std::move(stack));
  stack_members.emplace_back("current", std::to_string(state.steps.size()));
  ctx.reserve(10);
  ctx.emplace_back("run_id", CanonicalString(state.run.id));
  ctx.emplace_back("attempt", std::to_string(item.attempt));
  ctx.emplace_back("max_attempts", std::to_string(max_attempts));
  ctx.emplace_back("disable_immediate_execution", "false");
  ctx.emplace_back("use_api", "false");
  ctx.emplace_back("stack", CanonicalObject(std::move(stack_members)));
  ctx.emplace_back("step_id", CanonicalString(item.step_id));
  ctx.emplace_back("env", R"("")");
  if (options.checkpointing && !item.lease_token.empty()) {
    ctx.emplace_back("fn_id", CanonicalString(state.function.id));
    ctx.emplace_back("qi_id", CanonicalString(QueueRef(item)));
  }
  top.reserve(6);
  top.emplace_back("ctx", CanonicalObject(std::move(ctx)));
  top.emplace_back("event", std::move(event));
  top.emplace_back("events", std::move(events));
  top.emplace_back("steps", CanonicalObject(JsonMembers(std::make_move_iterator(memos.begin()),
                                                        std::make_move_iterator(memos.end()))));
  top.emplace_back("version", std::to_string(state.run.req_version));
  top.emplace_back("use_api", "false");
  return CanonicalObject(std::move(top));
}

}  // namespace

bool CallStateLargerThan(const store::RunState& state, size_t bytes) {
  std::vector<const Json*> values;
  values.reserve(state.events.size() + state.steps.size());
  for (const Json& e : state.events) values.push_back(&e);
  for (const store::StepRecord& s : state.steps) values.push_back(&s.memo);
  return JsonLargerThan(std::move(values), bytes);
}

Result<HttpRequest> BuildCall(const store::RunState& state, const store::QueueItem& item,
                              const CallOptions& options, TimePoint now) {
  ASSIGN_OR_RETURN(std::string base_url, FunctionUrl(state.function.config));
  if (state.events.empty()) return FailedPrecondition("run " + state.run.id + " has no event");
  bool holds_large = false;
  ASSIGN_OR_RETURN(std::string canonical,
                   CallBody(state, item, options, JcsIntegers::kExact, &holds_large));
  if (canonical.size() > kMaxCallBodyBytes) {
    return ResourceExhausted("the run's state (its events and memoized steps) is " +
                             std::to_string(canonical.size()) + " bytes, more than the " +
                             std::to_string(kMaxCallBodyBytes) + " a call carries");
  }

  HttpRequest req;
  req.method = "POST";
  req.url = SetQueryParam(base_url, "stepId", item.step_id);
  req.headers = {{"Content-Type", "application/json"},
                 {"X-Run-ID", state.run.id},
                 {"X-Inngest-Step-ID", item.step_id}};
  if (state.run.req_version >= 0) {
    req.headers.emplace_back("x-inngest-req-version", std::to_string(state.run.req_version));
  }
  if (!options.signing_key.empty()) {
    // A host gets every integer's digits; the signature covers the RFC 8785 form, which is
    // what the JavaScript SDK rebuilds from the body it parsed (large integers as doubles).
    // The two differ only when the run's state holds an integer above 2^53: then the body as
    // sent is signed too, in a header of Funcky's own, so that a host which reads the digits
    // (the C++ SDK) has them authenticated; the standard signature alone would let them be
    // changed within a double's rounding.
    if (holds_large) {
      ASSIGN_OR_RETURN(std::string rfc_form,
                       CallBody(state, item, options, JcsIntegers::kAsDoubles));
      req.headers.emplace_back(
          "X-Inngest-Signature",
          signing::SignatureHeader(rfc_form, options.signing_key, UnixSeconds(now)));
      req.headers.emplace_back(
          std::string(signing::kExactSignatureHeader),
          signing::SignatureHeader(canonical, options.signing_key, UnixSeconds(now)));
    } else {
      req.headers.emplace_back(
          "X-Inngest-Signature",
          signing::SignatureHeader(canonical, options.signing_key, UnixSeconds(now)));
    }
  }
  req.body = std::move(canonical);
  return req;
}

std::string QueueRef(const store::QueueItem& item) {
  return std::to_string(item.id) + "." + item.lease_token;
}

Result<store::QueueItem> ParseQueueRef(std::string_view ref, const std::string& run_id) {
  auto refuse = [] { return InvalidArgument("qi_id is not a queue item reference of Funcky"); };
  const size_t dot = ref.find('.');
  if (dot == std::string_view::npos || dot == 0 || dot > 18 || dot + 1 == ref.size() ||
      ref.size() - dot - 1 > 64) {
    return refuse();
  }
  store::QueueItem item;
  for (char c : ref.substr(0, dot)) {
    if (c < '0' || c > '9') return refuse();
    item.id = item.id * 10 + (c - '0');
  }
  for (char c : ref.substr(dot + 1)) {
    if (!std::isxdigit(static_cast<unsigned char>(c))) return refuse();
  }
  item.run_id = run_id;
  item.lease_token = std::string(ref.substr(dot + 1));
  return item;
}

}  // namespace funcky::executor
