#include "coordinator/intake/cron_ticker.h"

#include <algorithm>

#include <spdlog/spdlog.h>

#include "common/duration.h"
#include "common/ulid.h"
#include "coordinator/executor/transition.h"

namespace funcky::intake {

namespace {

constexpr const char* kScheduledTimer = "inngest/scheduled.timer";
// A coordinator that stalled longer than this makes up for no more of the gap (less with a
// short --retain: CatchUp).
constexpr int64_t kMaxCatchUpSeconds = 60;

}  // namespace

CronTicker::CronTicker(Intake& intake, const Clock& clock, uint64_t seed,
                       std::optional<std::chrono::milliseconds> retain)
    : intake_(intake),
      clock_(clock),
      // The whole seconds in half of --retain, and at least the current one: a tick's event
      // is received no sooner than its second, so one in the window is younger than --retain
      // (with room for some difference between coordinators' clocks) unless --retain is under
      // 2 s.
      max_catch_up_s_(retain ? std::clamp<int64_t>(retain->count() / 2000, 1, kMaxCatchUpSeconds)
                             : kMaxCatchUpSeconds),
      rng_(seed ? seed : std::random_device{}()) {}

void CronTicker::Start() {
  thread_ = std::thread([this] { Loop(); });
}

void CronTicker::RequestStop() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  wake_.notify_all();
}

void CronTicker::Stop() {
  RequestStop();
  if (thread_.joinable()) thread_.join();
}

void CronTicker::Loop() {
  int64_t last_s = UnixMillis(clock_.Now()) / 1000;
  std::unique_lock lock(mu_);
  while (!stopping_) {
    wake_.wait_for(lock, std::chrono::milliseconds(200));
    if (stopping_) break;
    const int64_t now_s = UnixMillis(clock_.Now()) / 1000;
    if (now_s <= last_s) continue;
    lock.unlock();
    bool fired = true;
    try {
      // Not stored (the store failed): the same ticks are fired again at the next turn, up to
      // kMaxCatchUpSeconds back (a tick's id makes a second store of it a duplicate).
      fired = CatchUp(last_s, now_s).ok();
    } catch (const std::exception& e) {
      // A defect (configs are checked at sync): logged, and the ticker goes on, where the
      // exception would have ended the process.
      spdlog::error("cron: firing ticks up to {} failed unexpectedly: {:.200}", now_s,
                    std::string_view(e.what()));
    }
    lock.lock();
    if (fired) last_s = now_s;
  }
}

Result<int> CronTicker::CatchUp(int64_t last_s, int64_t now_s) {
  return FireTicks(std::max(last_s, now_s - max_catch_up_s_), now_s);
}

Result<int> CronTicker::FireTicks(int64_t after_s, int64_t up_to_s) {
  auto set = intake_.Functions(/*refresh=*/false);
  if (!set.ok()) {
    spdlog::warn("cron: cannot load functions: {}", set.status().ToString());
    return set.status();
  }
  std::vector<IncomingEvent> ticks;
  for (const auto& [fn_id, flow] : (*set)->flows) {
    for (const scheduler::CronTrigger& cron : flow.crons) {
      for (int64_t s = after_s + 1; s <= up_to_s; ++s) {
        if (!cron.schedule.FiresAt(s)) continue;
        const std::string at = FormatRfc3339(s * 1000);
        IncomingEvent e = intake_.InternalEvent(
            kScheduledTimer, {{"cron", cron.schedule.spec()}, {"scheduledAt", at}, {"fireAt", at}},
            executor::CronTickEventId(fn_id, at));
        e.target_function = fn_id;
        if (cron.jitter.count() > 0) {
          std::uniform_int_distribution<int64_t> delay(0, cron.jitter.count());
          e.start_at_ms = s * 1000 + delay(rng_);
        }
        ticks.push_back(std::move(e));
      }
    }
  }
  if (ticks.empty()) return 0;
  // A tick's id names its function and second; given up on, the tick would be lost.
  auto r = intake_.IngestRetrying(ticks);
  if (!r.ok()) {
    spdlog::error("cron: storing ticks failed (tried again shortly): {}", r.status().ToString());
    return r.status();
  }
  if (r->runs_started > 0) spdlog::info("cron: {} run(s) started", r->runs_started);
  return static_cast<int>(r->runs_started);
}

}  // namespace funcky::intake
