#include "coordinator/store/store.h"

namespace funcky::store {

std::string InvokeWaitExpression(std::string_view correlation_id) {
  std::string out = "async.data.correlation_id == \"";
  for (char c : correlation_id) {
    if (c == '"' || c == '\\') out += '\\';
    out += c;
  }
  return out + '"';
}

bool IsTerminalStatus(std::string_view status) {
  return status == kCompleted || status == kFailed || status == kCancelled;
}

bool SameEvent(const Json& a, const Json& b) {
  if (!a.is_object() || !b.is_object()) return a == b;
  for (const char* key : {"name", "data", "user", "id", "v"}) {
    auto x = a.find(key), y = b.find(key);
    const bool in_a = x != a.end() && !x->is_null(), in_b = y != b.end() && !y->is_null();
    if (in_a != in_b || (in_a && *x != *y)) return false;
  }
  return true;
}

Status EventIdClash(const std::string& internal_id) {
  return {StatusCode::kAlreadyExists,
          "event id " + internal_id +
              " is stored already as a different event (the same X-Inngest-Event-Id-Seed); "
              "nothing was stored"};
}

namespace {
constexpr std::string_view kOutcomeUnknown = "commit outcome unknown: ";
}  // namespace

Status CommitOutcomeUnknown(std::string_view why) {
  return Unavailable(std::string(kOutcomeUnknown) + std::string(why));
}

bool IsCommitOutcomeUnknown(const Status& status) {
  return status.code() == StatusCode::kUnavailable && status.message().starts_with(kOutcomeUnknown);
}

namespace {
constexpr std::string_view kRunEnded =
    " ended while its call was in flight: the call's outcome "
    "is dropped";
}  // namespace

Status RunEndedMeanwhile(const std::string& run_id) {
  return {StatusCode::kFailedPrecondition, "run " + run_id + std::string(kRunEnded)};
}

bool IsRunEndedMeanwhile(const Status& status) {
  return status.code() == StatusCode::kFailedPrecondition && status.message().starts_with("run ") &&
         status.message().ends_with(kRunEnded);
}

}  // namespace funcky::store
