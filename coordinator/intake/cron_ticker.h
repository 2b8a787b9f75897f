// Starts the runs of cron triggers (docs/protocol.md §8.4). Every coordinator ticks; a tick's
// event id names the function and the second it fired, so however many coordinators see a
// tick, it is stored once and starts one run. Ticks missed while no coordinator was up
// are not made up for. A trigger's `jitter` delays each tick's run by a random amount in
// [0, jitter]: its first call is due then (a time kept in the store, not a sleep here); the
// tick's event and its id are those of the tick, so the delay changes nothing about which
// runs exist, and a tick seen by two coordinators still starts one run (the one stored first,
// with its delay).
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <optional>
#include <random>
#include <thread>

#include "common/clock.h"
#include "coordinator/intake/intake.h"

namespace funcky::intake {

class CronTicker {
 public:
  // `seed` feeds the jitter delays; 0: a seed from the OS. `retain`: the coordinator's
  // --retain, if any (CatchUp).
  CronTicker(Intake& intake, const Clock& clock, uint64_t seed = 0,
             std::optional<std::chrono::milliseconds> retain = std::nullopt);
  ~CronTicker() { Stop(); }

  void Start();
  // Asks the ticker's thread to stop, without waiting for it (a turn may be storing ticks).
  void RequestStop();
  // Stops it and waits for its thread.
  void Stop();

  // Fires every cron tick in the seconds (after_s, up_to_s]; returns how many runs were
  // started, or why the ticks could not be stored. Public for tests.
  Result<int> FireTicks(int64_t after_s, int64_t up_to_s);

  // One turn of the loop, whose last stored ticks were those up to `last_s`: fires the ticks
  // after the later of `last_s` and the start of the catch-up window. The window is a minute,
  // or half of --retain when that is shorter (at least the current second): a tick's event
  // is what keeps a second coordinator from storing the tick again, and retention may delete
  // it (its run ended) once it is --retain old. Public for tests.
  Result<int> CatchUp(int64_t last_s, int64_t now_s);

 private:
  void Loop();

  Intake& intake_;
  const Clock& clock_;
  const int64_t max_catch_up_s_;
  std::mt19937_64 rng_;  // only touched by FireTicks, which the loop (or a test) calls alone
  std::thread thread_;
  std::mutex mu_;
  std::condition_variable wake_;
  bool stopping_ = false;  // GUARDED_BY(mu_)
};

}  // namespace funcky::intake
