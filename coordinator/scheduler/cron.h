// Cron triggers (docs/protocol.md §8.4): "[TZ=<zone> ]<minute> <hour> <day> <month> <weekday>".
//
// Each field is `*`, a number, a range `a-b`, a step `*/n` or `a-b/n`, or a list of those
// (`1,15,30-40`); months and weekdays also take names (`jan`, `mon`), Sunday is 0 or 7.
// As in Vixie cron, when both day-of-month and weekday are restricted, a day matching
// either one fires; a field is restricted unless it is a bare `*` or `?` (so `*/2` is, as in
// Go's robfig/cron; Vixie cron counts a field starting with `*` as unrestricted). A sixth
// leading field of seconds is accepted as an extension (Go's robfig/cron "seconds optional"
// form); without it a schedule fires at second 0.
// Time zones come from the system's tz database (/usr/share/zoneinfo, Debian's tzdata);
// without TZ= the zone is UTC.
#pragma once

#include <array>
#include <bitset>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"

namespace funcky::scheduler {

// A zone's UTC offsets over time, read from a TZif file.
class TimeZone {
 public:
  static Result<std::shared_ptr<const TimeZone>> Load(const std::string& name);
  static std::shared_ptr<const TimeZone> Utc();
  // Seconds east of UTC in effect at `unix_seconds`. After the file's last transition
  // (2037 for most zones) the last offset holds.
  int32_t OffsetAt(int64_t unix_seconds) const;
  const std::string& name() const { return name_; }

 private:
  std::string name_;
  std::vector<int64_t> transitions_;  // ascending
  std::vector<int32_t> offsets_;      // offsets_[i] from transitions_[i] on
  int32_t initial_offset_ = 0;        // before the first transition
};

class CronSchedule {
 public:
  // kInvalidArgument naming the field that is wrong.
  static Result<CronSchedule> Parse(std::string_view spec);
  // True when the schedule fires at this second.
  bool FiresAt(int64_t unix_seconds) const;
  // A lower bound of the time between two fire times, in seconds: the smallest gap between
  // two values of the finest field that takes more than one (seconds, else minutes, else
  // hours; counted around the field's wrap, e.g. "0,50" seconds gives 10), else one day.
  // A time zone's daylight-saving shift is not counted.
  int64_t ShortestIntervalSeconds() const;
  const std::string& spec() const { return spec_; }

 private:
  std::string spec_;
  std::shared_ptr<const TimeZone> zone_;
  std::bitset<60> seconds_, minutes_;
  std::bitset<24> hours_;
  std::bitset<32> days_;     // 1..31
  std::bitset<13> months_;   // 1..12
  std::bitset<7> weekdays_;  // 0 = Sunday
  bool days_restricted_ = false, weekdays_restricted_ = false;
};

}  // namespace funcky::scheduler
