// Cron schedules (5 fields, the optional seconds field, TZ=) and RFC 3339 times.
#include <gtest/gtest.h>

#include "common/duration.h"
#include "coordinator/scheduler/cron.h"

namespace funcky::scheduler {
namespace {

int64_t At(const char* rfc3339) { return *ParseRfc3339(rfc3339) / 1000; }

struct FiresCase {
  const char* spec;
  const char* time;
  bool fires;
};

TEST(Cron, FiresExactlyWhenEveryFieldMatches) {
  const FiresCase cases[] = {
      {"* * * * *", "2026-11-23T10:15:00Z", true},
      {"* * * * *", "2026-11-23T10:15:01Z", false},  // 5 fields fire at second 0
      {"*/15 * * * *", "2026-11-23T10:45:00Z", true},
      {"*/15 * * * *", "2026-11-23T10:50:00Z", false},
      {"5/15 * * * *", "2026-11-23T10:50:00Z", true},
      {"0 9-17 * * *", "2026-11-23T17:00:00Z", true},
      {"0 9-17 * * *", "2026-11-23T18:00:00Z", false},
      {"0 9-17/4 * * *", "2026-11-23T13:00:00Z", true},
      {"0 9-17/4 * * *", "2026-11-23T15:00:00Z", false},
      {"0 0 1,15 * *", "2026-11-15T00:00:00Z", true},
      {"0 0 1,15 * *", "2026-11-16T00:00:00Z", false},
      {"0 0 * * mon", "2026-11-23T00:00:00Z", true},       // a Monday
      {"0 0 * * MON-FRI", "2026-11-22T00:00:00Z", false},  // a Sunday
      {"0 0 * * 0", "2026-11-22T00:00:00Z", true},
      {"0 0 * * 7", "2026-11-22T00:00:00Z", true},  // 7 is Sunday too
      {"0 0 * feb *", "2026-02-01T00:00:00Z", true},
      {"0 0 * feb *", "2026-03-01T00:00:00Z", false},
      {"0 0 29 2 *", "2028-02-29T00:00:00Z", true},
      // Day of month and weekday both restricted: either fires (Vixie cron).
      {"0 0 13 * fri", "2026-11-13T00:00:00Z", true},
      {"0 0 13 * fri", "2026-11-20T00:00:00Z", true},
      {"0 0 13 * fri", "2026-11-19T00:00:00Z", false},
      {"*/10 * * * * *", "2026-11-23T10:15:20Z", true},  // six fields: seconds first
      {"*/10 * * * * *", "2026-11-23T10:15:21Z", false},
      {"TZ=Europe/Paris 0 9 * * *", "2026-11-23T08:00:00Z", true},  // CET, UTC+1
      {"TZ=Europe/Paris 0 9 * * *", "2026-07-01T07:00:00Z", true},  // CEST, UTC+2
      {"TZ=Europe/Paris 0 9 * * *", "2026-07-01T08:00:00Z", false},
      {"TZ=America/New_York 30 23 * * *", "2026-11-24T04:30:00Z", true},  // the day before
      {"CRON_TZ=Asia/Kolkata 0 12 * * *", "2026-11-23T06:30:00Z", true},  // UTC+5:30
  };
  for (const FiresCase& c : cases) {
    auto s = CronSchedule::Parse(c.spec);
    ASSERT_TRUE(s.ok()) << c.spec << ": " << s.status().ToString();
    EXPECT_EQ(s->FiresAt(At(c.time)), c.fires) << c.spec << " at " << c.time;
  }
}

TEST(Cron, MalformedSchedulesNameTheField) {
  const std::pair<const char*, const char*> cases[] = {
      {"", "needs 5 fields"},
      {"* * * *", "needs 5 fields"},
      {"* * * * * * *", "needs 5 fields"},
      {"60 * * * *", "minute: 60 is outside 0-59"},
      {"* 24 * * *", "hour: 24"},
      {"* * 0 * *", "day of month: 0"},
      {"* * * 13 *", "month: 13"},
      {"* * * * 8", "day of week: 8"},
      {"*/0 * * * *", "bad step"},
      {"5-1 * * * *", "runs backwards"},
      {"x * * * *", "\"x\" is not a number"},
      {"* * * smarch *", "\"smarch\" is not a number"},
      {"TZ=Mars/Olympus * * * * *", "unknown time zone"},
      {"TZ=../../etc/passwd * * * * *", "unknown time zone"},
  };
  for (const auto& [spec, message] : cases) {
    auto s = CronSchedule::Parse(spec);
    ASSERT_FALSE(s.ok()) << spec;
    EXPECT_EQ(s.status().code(), StatusCode::kInvalidArgument) << spec;
    EXPECT_NE(s.status().message().find(message), std::string::npos)
        << spec << ": " << s.status().message();
  }
}

TEST(TimeZone, OffsetsFollowDaylightSavingTime) {
  auto ny = TimeZone::Load("America/New_York");
  ASSERT_TRUE(ny.ok()) << ny.status().ToString();
  EXPECT_EQ((*ny)->OffsetAt(At("2026-01-15T12:00:00Z")), -5 * 3600);
  EXPECT_EQ((*ny)->OffsetAt(At("2026-07-15T12:00:00Z")), -4 * 3600);
  // The 2026 switch: 2026-03-08 07:00 UTC.
  EXPECT_EQ((*ny)->OffsetAt(At("2026-03-08T06:59:59Z")), -5 * 3600);
  EXPECT_EQ((*ny)->OffsetAt(At("2026-03-08T07:00:00Z")), -4 * 3600);
  EXPECT_EQ(TimeZone::Utc()->OffsetAt(At("2026-07-15T12:00:00Z")), 0);
}

TEST(Rfc3339, ParsesOffsetsAndFractionsAndRoundTrips) {
  EXPECT_EQ(*ParseRfc3339("1970-01-01T00:00:00Z"), 0);
  EXPECT_EQ(*ParseRfc3339("1970-01-01T00:00:01.5Z"), 1500);
  EXPECT_EQ(*ParseRfc3339("1970-01-01T01:00:00+01:00"), 0);
  EXPECT_EQ(*ParseRfc3339("1969-12-31T23:00:00-01:00"), 0);
  EXPECT_EQ(*ParseRfc3339("2030-01-01T00:00:00.000Z"), 1893456000000);
  EXPECT_EQ(FormatRfc3339(1893456000123), "2030-01-01T00:00:00.123Z");
  EXPECT_EQ(FormatRfc3339(-1000), "1969-12-31T23:59:59.000Z");
  for (int64_t ms : {int64_t{0}, int64_t{951782400000}, int64_t{4102444799999}}) {
    EXPECT_EQ(*ParseRfc3339(FormatRfc3339(ms)), ms);
  }
  for (const char* bad :
       {"", "2030-01-01", "2030-01-01T00:00:00", "2030-13-01T00:00:00Z", "2030-01-01T25:00:00Z",
        "2030-01-01T00:00:00Zjunk", "2s", "2030-01-01T00:00:00+0100"}) {
    EXPECT_FALSE(ParseRfc3339(bad).ok()) << bad;
  }
}

}  // namespace
}  // namespace funcky::scheduler
