// Starts the runs of cron triggers (docs/protocol.md §8.4). Every coordinator ticks; a tick's
// event id names the function and the second it fired, so however many coordinators see a
// tick, it is stored once and starts one run. Ticks missed while no coordinator was up
// are not made up for.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <thread>

#include "common/clock.h"
#include "coordinator/intake/intake.h"

namespace funcky::intake {

class CronTicker {
 public:
  CronTicker(Intake& intake, const Clock& clock) : intake_(intake), clock_(clock) {}
  ~CronTicker() { Stop(); }

  void Start();
  void Stop();

  // Fires every cron tick in the seconds (after_s, up_to_s]; returns how many runs were
  // started. Public for tests.
  int FireTicks(int64_t after_s, int64_t up_to_s);

 private:
  void Loop();

  Intake& intake_;
  const Clock& clock_;
  std::thread thread_;
  std::mutex mu_;
  std::condition_variable wake_;
  bool stopping_ = false;  // GUARDED_BY(mu_)
};

}  // namespace funcky::intake
