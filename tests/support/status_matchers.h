// gmock matchers for Status and Result<T>, so a test asserts the exact code (STYLE.md §10)
// and a failure prints the status instead of "Value of: x.ok(), Actual: false":
//
//   EXPECT_THAT(store->Apply(item, t, now), IsOk());
//   EXPECT_THAT(store->GetRun("nope"), StatusIs(StatusCode::kNotFound));
//   EXPECT_THAT(s, StatusIs(StatusCode::kInvalidArgument, HasSubstr("cron")));
#pragma once

#include <ostream>
#include <string>

#include <gmock/gmock.h>

#include "common/status.h"

namespace funcky {

// How gtest prints a Status or a Result<T> in failure messages (found by ADL).
inline void PrintTo(const Status& status, std::ostream* os) { *os << status.ToString(); }
template <typename T>
void PrintTo(const Result<T>& result, std::ostream* os) {
  *os << (result.ok() ? std::string("OK (a value)") : result.status().ToString());
}

namespace testing {
namespace internal {

inline const Status& StatusOf(const Status& status) { return status; }
template <typename T>
const Status& StatusOf(const Result<T>& result) {
  return result.status();  // OK when the result holds a value
}

class StatusIsMatcher {
 public:
  StatusIsMatcher(StatusCode code, ::testing::Matcher<const std::string&> message)
      : code_(code), message_(std::move(message)) {}

  template <typename T>
  bool MatchAndExplain(const T& value, ::testing::MatchResultListener* listener) const {
    const Status& status = StatusOf(value);
    if (status.code() != code_) {
      *listener << "whose status is " << status.ToString();
      return false;
    }
    ::testing::StringMatchResultListener message_listener;
    if (!message_.MatchAndExplain(status.message(), &message_listener)) {
      *listener << "whose message \"" << status.message() << "\" " << message_listener.str();
      return false;
    }
    return true;
  }

  void DescribeTo(std::ostream* os) const {
    *os << "has status " << StatusCodeName(code_) << " and a message that ";
    message_.DescribeTo(os);
  }
  void DescribeNegationTo(std::ostream* os) const {
    *os << "has a status other than " << StatusCodeName(code_) << " or a message that ";
    message_.DescribeNegationTo(os);
  }

 private:
  StatusCode code_;
  ::testing::Matcher<const std::string&> message_;
};

class IsOkMatcher {
 public:
  template <typename T>
  bool MatchAndExplain(const T& value, ::testing::MatchResultListener* listener) const {
    const Status& status = StatusOf(value);
    if (!status.ok()) *listener << "whose status is " << status.ToString();
    return status.ok();
  }
  void DescribeTo(std::ostream* os) const { *os << "is OK"; }
  void DescribeNegationTo(std::ostream* os) const { *os << "is not OK"; }
};

}  // namespace internal

// Matches a Status, or a Result<T>, that is OK.
inline ::testing::PolymorphicMatcher<internal::IsOkMatcher> IsOk() {
  return ::testing::MakePolymorphicMatcher(internal::IsOkMatcher());
}

// Matches a Status, or a Result<T>, with `code` and a message that `message` matches.
inline ::testing::PolymorphicMatcher<internal::StatusIsMatcher> StatusIs(
    StatusCode code, ::testing::Matcher<const std::string&> message = ::testing::_) {
  return ::testing::MakePolymorphicMatcher(internal::StatusIsMatcher(code, std::move(message)));
}

}  // namespace testing
}  // namespace funcky
