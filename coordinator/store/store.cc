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

Json SignalConflictMemo(std::string_view signal) {
  return {{"error",
           {{"name", "SignalConflictError"},
            {"message", "Signal conflict: another run's wait holds the signal \"" +
                            std::string(signal) + "\" (onConflict \"fail\")"}}}};
}

bool IsTerminalStatus(std::string_view status) {
  return status == kCompleted || status == kFailed || status == kCancelled;
}

namespace {

// nlohmann's ==, but for an integer and an unsigned integer, which it compares after casting
// the unsigned one (-1 == 2^64 - 1): these are compared by value. Numbers of other kinds stay
// as == has them (1 == 1.0: a number read back from PostgreSQL's jsonb may change its kind).
bool SameJson(const Json& a, const Json& b) {
  if (a.is_number_integer() && b.is_number_integer() &&
      a.is_number_unsigned() != b.is_number_unsigned()) {
    const Json& u = a.is_number_unsigned() ? a : b;
    const Json& s = a.is_number_unsigned() ? b : a;
    const int64_t signed_value = s.get<int64_t>();
    return signed_value >= 0 && static_cast<uint64_t>(signed_value) == u.get<uint64_t>();
  }
  if (a.is_object() && b.is_object()) {
    if (a.size() != b.size()) return false;
    for (auto x = a.begin(), y = b.begin(); x != a.end(); ++x, ++y) {  // both in key order
      if (x.key() != y.key() || !SameJson(*x, *y)) return false;
    }
    return true;
  }
  if (a.is_array() && b.is_array()) {
    if (a.size() != b.size()) return false;
    for (size_t i = 0; i < a.size(); ++i) {
      if (!SameJson(a[i], b[i])) return false;
    }
    return true;
  }
  return a == b;
}

}  // namespace

bool SameEvent(const Json& a, const Json& b) {
  if (!a.is_object() || !b.is_object()) return SameJson(a, b);
  for (const char* key : {"name", "data", "user", "id", "v"}) {
    auto x = a.find(key), y = b.find(key);
    const bool in_a = x != a.end() && !x->is_null(), in_b = y != b.end() && !y->is_null();
    if (in_a != in_b || (in_a && !SameJson(*x, *y))) return false;
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
