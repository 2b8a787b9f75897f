#include "coordinator/scheduler/sequence.h"

#include <charconv>
#include <cmath>
#include <string>

#include <nlohmann/json.hpp>

namespace funcky::scheduler {

using Json = nlohmann::json;

namespace {

// A value as an error message shows it: its JSON, cut short at a character's start. The value
// may hold bytes that are not UTF-8 (b64decode() makes any), which become U+FFFD: a strict
// dump() would throw, out of the event's intake.
std::string Shown(const Json& value) {
  std::string text = value.dump(-1, ' ', false, Json::error_handler_t::replace);
  if (text.size() > 40) {
    size_t cut = 37;
    while (cut > 0 && (static_cast<unsigned char>(text[cut]) & 0xC0) == 0x80) --cut;
    text = text.substr(0, cut) + "...";
  }
  return text;
}

Result<int64_t> InRange(int64_t n, const Json& value) {
  if (n < 0) return InvalidArgument("is " + Shown(value) + ", below 0");
  if (n > kMaxSequenceNumber) {
    return InvalidArgument("is " + Shown(value) + ", above " + std::to_string(kMaxSequenceNumber));
  }
  return n;
}

}  // namespace

std::string_view StalePolicyName(StalePolicy policy) {
  return policy == StalePolicy::kRun ? "run" : "skip";
}

Result<int64_t> SequenceNumber(const Json& value) {
  if (value.is_number_unsigned()) {
    const uint64_t u = value.get<uint64_t>();
    if (u > static_cast<uint64_t>(kMaxSequenceNumber)) {
      return InvalidArgument("is " + Shown(value) + ", above " +
                             std::to_string(kMaxSequenceNumber));
    }
    return static_cast<int64_t>(u);
  }
  if (value.is_number_integer()) return InRange(value.get<int64_t>(), value);
  if (value.is_number_float()) {
    const double d = value.get<double>();
    if (!std::isfinite(d) || d != std::trunc(d)) {
      return InvalidArgument("is " + Shown(value) + ", not an integer");
    }
    // Compared as doubles first: a huge double does not fit an int64_t.
    if (d < 0) return InvalidArgument("is " + Shown(value) + ", below 0");
    if (d > static_cast<double>(kMaxSequenceNumber)) {
      return InvalidArgument("is " + Shown(value) + ", above " +
                             std::to_string(kMaxSequenceNumber));
    }
    return static_cast<int64_t>(d);
  }
  if (value.is_string()) {
    const std::string& s = value.get_ref<const std::string&>();
    int64_t n = 0;
    const char* end = s.data() + s.size();
    auto [ptr, ec] = std::from_chars(s.data(), end, n);
    const bool digits_only = !s.empty() && s.front() != '-';
    if (!digits_only || ptr != end || ec == std::errc::invalid_argument) {
      return InvalidArgument("is " + Shown(value) + ", not a string of decimal digits");
    }
    if (ec == std::errc::result_out_of_range) {
      return InvalidArgument("is " + Shown(value) + ", above " +
                             std::to_string(kMaxSequenceNumber));
    }
    return InRange(n, value);
  }
  if (value.is_null()) return InvalidArgument("is null (a missing field?)");
  return InvalidArgument("is " + Shown(value) + ", not a number");
}

Result<LanePlacement> PlaceInLane(const Sequencing* sequence, const expr::Expression* bypass,
                                  const Json& event) {
  LanePlacement placement;
  const expr::Variables vars{{"event", &event}};
  if (bypass && bypass->Matches(vars)) {
    placement.bypass_lane = true;
    return placement;
  }
  if (!sequence) return placement;
  auto n = SequenceNumber(sequence->expression->Evaluate(vars));
  if (!n.ok()) {
    return InvalidArgument("its sequence number \"" + sequence->expression->source() + "\" " +
                           n.status().message());
  }
  placement.lane_sequence = *n;
  return placement;
}

}  // namespace funcky::scheduler
