#include "coordinator/scheduler/cron.h"

#include <algorithm>
#include <cctype>
#include <charconv>
#include <fstream>
#include <iterator>
#include <optional>
#include <sstream>

#include "common/duration.h"

namespace funcky::scheduler {

namespace {

// The smallest distance between two set bits of a field of N values, counted around its wrap
// (the last value is followed by the first); 0 when fewer than two are set.
template <size_t N>
int SmallestGap(const std::bitset<N>& bits) {
  int first = -1, previous = -1, smallest = 0;
  for (int v = 0; v < static_cast<int>(N); ++v) {
    if (!bits[v]) continue;
    if (previous >= 0 && (smallest == 0 || v - previous < smallest)) smallest = v - previous;
    if (first < 0) first = v;
    previous = v;
  }
  if (previous != first && (smallest == 0 || first + static_cast<int>(N) - previous < smallest)) {
    smallest = first + static_cast<int>(N) - previous;
  }
  return smallest;
}

int64_t BigEndian(const std::string& b, size_t at, int bytes) {
  uint64_t v = 0;
  for (int i = 0; i < bytes; ++i) v = (v << 8) | static_cast<unsigned char>(b[at + i]);
  if (bytes == 4) return static_cast<int32_t>(static_cast<uint32_t>(v));
  return static_cast<int64_t>(v);
}

struct FieldSpec {
  const char* name;
  int min, max;
  std::vector<std::string_view> names;  // names[i] is the value min + i
};

// A number in a field: one to four decimal digits.
std::optional<int> SmallNumber(std::string_view s) {
  if (s.empty() || s.size() > 4 ||
      !std::all_of(s.begin(), s.end(), [](unsigned char c) { return std::isdigit(c); })) {
    return std::nullopt;
  }
  int v = 0;
  std::from_chars(s.data(), s.data() + s.size(), v);
  return v;
}

Result<int> FieldValue(std::string_view text, const FieldSpec& f) {
  std::string lower;
  for (char c : text) lower += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  for (size_t i = 0; i < f.names.size(); ++i) {
    if (lower == f.names[i]) return f.min + static_cast<int>(i);
  }
  std::optional<int> number = SmallNumber(text);
  if (!number) {
    return InvalidArgument(std::string(f.name) + ": \"" + std::string(text) + "\" is not a number");
  }
  const int v = *number;
  int max = f.max == 6 ? 7 : f.max;  // weekday 7 is Sunday
  if (v < f.min || v > max) {
    return InvalidArgument(std::string(f.name) + ": " + std::to_string(v) + " is outside " +
                           std::to_string(f.min) + "-" + std::to_string(f.max));
  }
  return v;
}

// Sets the bits of one field; `restricted` is false for a bare `*`.
template <size_t N>
Status ParseField(std::string_view text, const FieldSpec& f, std::bitset<N>& bits,
                  bool& restricted) {
  restricted = text != "*" && text != "?";
  size_t start = 0;
  while (start <= text.size()) {
    size_t comma = text.find(',', start);
    std::string_view part = text.substr(
        start, comma == std::string_view::npos ? std::string_view::npos : comma - start);
    int step = 1;
    if (size_t slash = part.find('/'); slash != std::string_view::npos) {
      std::optional<int> n = SmallNumber(part.substr(slash + 1));
      if (!n || *n == 0) {
        return InvalidArgument(std::string(f.name) + ": bad step in \"" + std::string(part) + "\"");
      }
      step = *n;
      part = part.substr(0, slash);
    }
    int lo = f.min, hi = f.max;
    if (part != "*" && part != "?") {
      size_t dash = part.find('-');
      ASSIGN_OR_RETURN(lo, FieldValue(part.substr(0, dash), f));
      hi = lo;
      if (dash != std::string_view::npos) {
        ASSIGN_OR_RETURN(hi, FieldValue(part.substr(dash + 1), f));
      } else if (step > 1) {
        hi = f.max;  // "5/15" means from 5 on
      }
      if (hi < lo) {
        return InvalidArgument(std::string(f.name) + ": range \"" + std::string(part) +
                               "\" runs backwards");
      }
    }
    for (int v = lo; v <= hi; v += step) bits.set(f.max == 6 ? v % 7 : v);
    if (comma == std::string_view::npos) break;
    start = comma + 1;
  }
  return Status::Ok();
}

}  // namespace

std::shared_ptr<const TimeZone> TimeZone::Utc() {
  static const auto utc = [] {
    auto z = std::make_shared<TimeZone>();
    z->name_ = "UTC";
    return z;
  }();
  return utc;
}

Result<std::shared_ptr<const TimeZone>> TimeZone::Load(const std::string& name) {
  if (name == "UTC" || name == "Etc/UTC") return Utc();
  if (name.empty() || name.find("..") != std::string::npos || name[0] == '/') {
    return InvalidArgument("unknown time zone \"" + name + "\"");
  }
  std::ifstream in("/usr/share/zoneinfo/" + name, std::ios::binary);
  if (!in) return InvalidArgument("unknown time zone \"" + name + "\" (no tz database entry)");
  std::string b((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  auto bad = [&] { return InvalidArgument("time zone file of \"" + name + "\" is unreadable"); };
  if (b.size() < 44 || b.compare(0, 4, "TZif") != 0) return bad();
  // Skip the version 1 block (32-bit times) to the version 2 block when there is one.
  auto counts = [&](size_t at, int64_t c[6]) {
    for (int i = 0; i < 6; ++i) c[i] = BigEndian(b, at + 20 + 4 * i, 4);
  };
  int64_t c[6];  // isutcnt, isstdcnt, leapcnt, timecnt, typecnt, charcnt
  counts(0, c);
  size_t at = 44;
  int time_bytes = 4;
  if (b[4] >= '2') {
    at += c[3] * 4 + c[3] + c[4] * 6 + c[5] + c[2] * 8 + c[1] + c[0];
    if (b.size() < at + 44) return bad();
    counts(at, c);
    at += 44;
    time_bytes = 8;
  }
  const int64_t timecnt = c[3], typecnt = c[4];
  if (typecnt <= 0 ||
      b.size() < at + timecnt * (time_bytes + 1) + static_cast<size_t>(typecnt) * 6) {
    return bad();
  }
  auto z = std::make_shared<TimeZone>();
  z->name_ = name;
  std::vector<int32_t> type_offsets;
  const size_t types_at = at + timecnt * (time_bytes + 1);
  for (int64_t i = 0; i < typecnt; ++i) {
    type_offsets.push_back(static_cast<int32_t>(BigEndian(b, types_at + 6 * i, 4)));
  }
  for (int64_t i = 0; i < timecnt; ++i) {
    z->transitions_.push_back(BigEndian(b, at + i * time_bytes, time_bytes));
    auto type = static_cast<unsigned char>(b[at + timecnt * time_bytes + i]);
    if (type >= type_offsets.size()) return bad();
    z->offsets_.push_back(type_offsets[type]);
  }
  z->initial_offset_ = type_offsets[0];
  return std::shared_ptr<const TimeZone>(std::move(z));
}

int32_t TimeZone::OffsetAt(int64_t unix_seconds) const {
  auto it = std::upper_bound(transitions_.begin(), transitions_.end(), unix_seconds);
  if (it == transitions_.begin()) return initial_offset_;
  return offsets_[std::distance(transitions_.begin(), it) - 1];
}

Result<CronSchedule> CronSchedule::Parse(std::string_view spec) {
  CronSchedule s;
  s.spec_ = std::string(spec);
  s.zone_ = TimeZone::Utc();
  std::istringstream words{std::string(spec)};
  std::vector<std::string> fields;
  for (std::string w; words >> w;) fields.push_back(w);
  if (!fields.empty() && (fields[0].rfind("TZ=", 0) == 0 || fields[0].rfind("CRON_TZ=", 0) == 0)) {
    ASSIGN_OR_RETURN(s.zone_, TimeZone::Load(fields[0].substr(fields[0].find('=') + 1)));
    fields.erase(fields.begin());
  }
  if (fields.size() == 5) {
    fields.insert(fields.begin(), "0");
  } else if (fields.size() != 6) {
    return InvalidArgument("cron \"" + s.spec_ +
                           "\" needs 5 fields (minute hour day month weekday), optionally "
                           "after TZ=<zone>");
  }
  static const FieldSpec kSecond{"second", 0, 59, {}}, kMinute{"minute", 0, 59, {}},
      kHour{"hour", 0, 23, {}}, kDay{"day of month", 1, 31, {}},
      kMonth{"month",
             1,
             12,
             {"jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"}},
      kWeekday{"day of week", 0, 6, {"sun", "mon", "tue", "wed", "thu", "fri", "sat"}};
  bool unused;
  RETURN_IF_ERROR(ParseField(fields[0], kSecond, s.seconds_, unused));
  RETURN_IF_ERROR(ParseField(fields[1], kMinute, s.minutes_, unused));
  RETURN_IF_ERROR(ParseField(fields[2], kHour, s.hours_, unused));
  RETURN_IF_ERROR(ParseField(fields[3], kDay, s.days_, s.days_restricted_));
  RETURN_IF_ERROR(ParseField(fields[4], kMonth, s.months_, unused));
  RETURN_IF_ERROR(ParseField(fields[5], kWeekday, s.weekdays_, s.weekdays_restricted_));
  return s;
}

int64_t CronSchedule::ShortestIntervalSeconds() const {
  if (int gap = SmallestGap(seconds_); gap > 0) return gap;
  if (int gap = SmallestGap(minutes_); gap > 0) return int64_t{gap} * 60;
  if (int gap = SmallestGap(hours_); gap > 0) return int64_t{gap} * 3600;
  return 86400;
}

bool CronSchedule::FiresAt(int64_t unix_seconds) const {
  const int64_t local = unix_seconds + zone_->OffsetAt(unix_seconds);
  int64_t days = local >= 0 ? local / 86400 : (local - 86399) / 86400;
  const int64_t secs = local - days * 86400;
  if (!seconds_[secs % 60] || !minutes_[(secs / 60) % 60] || !hours_[secs / 3600]) return false;
  int64_t year, month, day;
  CivilFromDays(days, year, month, day);
  if (!months_[month]) return false;
  const int weekday = static_cast<int>(((days % 7) + 11) % 7);  // 1970-01-01 was a Thursday
  const bool day_ok = days_[day], weekday_ok = weekdays_[weekday];
  if (days_restricted_ && weekdays_restricted_) return day_ok || weekday_ok;
  return day_ok && weekday_ok;
}

}  // namespace funcky::scheduler
