// Status and Result<T>: how Funcky reports errors inside the process.
//
// Code inside Funcky returns a Status (or a Result<T>) and never throws; exceptions from
// libraries and backends (nlohmann::json, Asio, the store's databases) are caught where they
// arise and turned into a code. The code says what the caller should do about it, not where
// it came from: the HTTP layer maps each code to one HTTP status in one table
// (coordinator/http/errors.h).
#pragma once

#include <cassert>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <variant>

namespace funcky {

enum class StatusCode {
  kOk = 0,
  kInvalidArgument,     // the caller sent something wrong; retrying the same is pointless
  kNotFound,            // the thing named does not exist
  kAlreadyExists,       // a unique thing exists already
  kUnauthenticated,     // missing or wrong credentials
  kFailedPrecondition,  // the system is not in a state that allows this
  kResourceExhausted,   // a limit was hit (size, count)
  kUnavailable,         // transient: try again later (database down, host unreachable)
  kDeadlineExceeded,    // the operation took too long
  kAborted,             // lost a race (lease taken by another coordinator); re-read and retry
  kInternal,            // a bug or an invariant broken
};

std::string_view StatusCodeName(StatusCode code);

class [[nodiscard]] Status {
 public:
  Status() = default;
  Status(StatusCode code, std::string message) : code_(code), message_(std::move(message)) {}

  static Status Ok() { return Status(); }

  bool ok() const { return code_ == StatusCode::kOk; }
  StatusCode code() const { return code_; }
  const std::string& message() const { return message_; }
  std::string ToString() const;

 private:
  StatusCode code_ = StatusCode::kOk;
  std::string message_;
};

inline Status InvalidArgument(std::string m) {
  return {StatusCode::kInvalidArgument, std::move(m)};
}
inline Status NotFound(std::string m) { return {StatusCode::kNotFound, std::move(m)}; }
inline Status Unauthenticated(std::string m) {
  return {StatusCode::kUnauthenticated, std::move(m)};
}
inline Status FailedPrecondition(std::string m) {
  return {StatusCode::kFailedPrecondition, std::move(m)};
}
inline Status ResourceExhausted(std::string m) {
  return {StatusCode::kResourceExhausted, std::move(m)};
}
inline Status Unavailable(std::string m) { return {StatusCode::kUnavailable, std::move(m)}; }
inline Status DeadlineExceeded(std::string m) {
  return {StatusCode::kDeadlineExceeded, std::move(m)};
}
inline Status Aborted(std::string m) { return {StatusCode::kAborted, std::move(m)}; }
inline Status Internal(std::string m) { return {StatusCode::kInternal, std::move(m)}; }

// Result<T> holds a T or a non-OK Status.
template <typename T>
class [[nodiscard]] Result {
 public:
  // A Result that was never given a value (needed by Asio's co_spawn); holds kInternal.
  Result() : status_(StatusCode::kInternal, "result not set") {}
  Result(T value) : value_(std::move(value)) {}         // NOLINT: implicit by design
  Result(Status status) : status_(std::move(status)) {  // NOLINT: implicit by design
    assert(!status_.ok());
  }

  bool ok() const { return value_.has_value(); }
  const Status& status() const { return status_; }
  T& value() & { return *value_; }
  const T& value() const& { return *value_; }
  T&& value() && { return std::move(*value_); }
  T* operator->() { return &*value_; }
  const T* operator->() const { return &*value_; }
  T& operator*() & { return *value_; }
  const T& operator*() const& { return *value_; }

 private:
  Status status_;
  std::optional<T> value_;
};

}  // namespace funcky

#define FUNCKY_CONCAT_INNER(a, b) a##b
#define FUNCKY_CONCAT(a, b) FUNCKY_CONCAT_INNER(a, b)

#define RETURN_IF_ERROR(expr)                \
  do {                                       \
    ::funcky::Status _funcky_st = (expr);    \
    if (!_funcky_st.ok()) return _funcky_st; \
  } while (0)

#define ASSIGN_OR_RETURN_IMPL(tmp, lhs, expr) \
  auto tmp = (expr);                          \
  if (!tmp.ok()) return tmp.status();         \
  lhs = std::move(tmp).value()

#define ASSIGN_OR_RETURN(lhs, expr) \
  ASSIGN_OR_RETURN_IMPL(FUNCKY_CONCAT(_funcky_res_, __LINE__), lhs, expr)
