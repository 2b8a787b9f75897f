// One run at a time through the store on PostgreSQL, as an idle coordinator writes it: the
// ingest that starts the run's first call here, two steps that each keep the run's next call,
// the run's end; each transaction timed, and the waits for PostgreSQL counted. Runs alternate
// between calls marked QueueItem::one_at_a_time, whose applies go in one flight (sql_store.cc,
// ApplyWork), and the same calls unmarked, applied the usual way (the run's statement, then
// the rest with the commit), so that the box's drift weighs on both.
//
//   apply_latency --db postgres://… [--runs 2000]
// The database must be empty; bench/store_bench.sh apply_latency makes a private cluster and runs
// this.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <iostream>
#include <string>
#include <thread>
#include <vector>

#include <CLI/CLI.hpp>

#include "common/clock.h"
#include "common/step_id.h"
#include "common/ulid.h"
#include "coordinator/store/store.h"

using namespace std::chrono_literals;
namespace store = funcky::store;

namespace {

void Check(const funcky::Status& s, const char* what) {
  if (!s.ok()) {
    std::cerr << what << ": " << s.ToString() << std::endl;
    std::exit(1);
  }
}

// A step's reply as the executor records it: the step, its attempt, the run's discovery next.
store::Transition StepDone(const std::string& id, funcky::TimePoint now) {
  store::Transition t;
  t.steps.push_back({id, 0, id, "completed", {{"data", id}}});
  const int64_t ms = funcky::UnixMillis(now);
  t.attempts.push_back({id, id, 0, "completed", nullptr, ms, ms});
  t.move = store::Transition::Continue{.next = {{std::string(funcky::kDiscoveryStepId), now}},
                                       .next_only_if_idle = true};
  return t;
}

// Milliseconds a transaction took, and the store's waits for PostgreSQL, a kind of run.
struct Timings {
  std::vector<double> ms[4];  // ingest, first step, second step, end
  int64_t round_trips = 0;
  int runs = 0;
};

double Percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[std::min(v.size() - 1, static_cast<size_t>(p * static_cast<double>(v.size())))];
}

// Makes one run and times its transactions into `into` (unless warming up), pausing `pause`
// before each (where a coordinator would call the host).
void OneRun(store::Store& s, bool one_flight, std::chrono::microseconds pause, Timings* into) {
  funcky::SystemClock clock;
  const int64_t now_ms = funcky::UnixMillis(clock.Now());
  store::NewEvent ne;
  ne.event.internal_id = funcky::NewUlid(now_ms);
  ne.event.id = ne.event.internal_id;
  ne.event.name = "bench/e";
  ne.event.payload = {{"name", "bench/e"}, {"data", store::Json::object()}};
  store::NewRun run{funcky::NewUlid(now_ms), "bench-plain"};
  run.may_start_here = true;
  ne.runs.push_back(run);
  const std::optional<int64_t> trips0 = s.RoundTrips();
  auto timed = [&](int i, auto&& fn) {
    if (pause.count() > 0) std::this_thread::sleep_for(pause);
    const auto t0 = std::chrono::steady_clock::now();
    fn();
    const double ms =
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    if (into) into->ms[i].push_back(ms);
  };
  store::StartedCalls start{.max = 1, .lease = 30s};
  timed(0, [&] { Check(s.IngestEvents({ne}, clock.Now(), nullptr, &start).status(), "ingest"); });
  if (start.items.size() != 1) Check(funcky::Internal("the ingest started no call here"), "ingest");
  store::QueueItem item = start.items[0];
  for (int step = 1; step <= 2; ++step) {
    item.one_at_a_time = one_flight;
    timed(step, [&] {
      auto applied =
          s.ApplyAndKeep(item, StepDone("s" + std::to_string(step), clock.Now()), clock.Now(), 30s);
      Check(applied.status(), "step");
      if (!applied->kept) Check(funcky::Internal("the step kept no call"), "step");
      item = applied->kept->item;
    });
  }
  item.one_at_a_time = one_flight;
  store::Transition end;
  end.move = store::Transition::End{store::kCompleted, "done", nullptr};
  timed(3, [&] { Check(s.Apply(item, end, clock.Now()), "end"); });
  if (into) {
    into->round_trips += s.RoundTrips().value_or(0) - trips0.value_or(0);
    ++into->runs;
  }
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"apply_latency: one run at a time, its transactions timed, in one flight or not"};
  std::string db;
  int runs = 2000, warmup = 50, pause_us = 0;
  app.add_option("--db", db, "Empty PostgreSQL database")->required();
  app.add_option("--runs", runs, "Runs, half of each kind")->capture_default_str();
  app.add_option("--warmup", warmup, "Untimed runs first")->capture_default_str();
  app.add_option("--pause-us", pause_us, "Sleep before each transaction, as a host call takes (µs)")
      ->capture_default_str();
  CLI11_PARSE(app, argc, argv);

  auto opened = store::OpenPostgresStore({.url = db, .pool_size = 2});
  Check(opened.status(), "open");
  store::Store& s = **opened;
  Check(s.Migrate(), "migrate");
  store::AppSync sync;
  sync.app = {"bench", "http://127.0.0.1:1/api", "bench", "", "sum", 0, 0};
  store::FunctionRecord fn;
  fn.id = fn.name = "bench-plain";
  fn.app_id = "bench";
  fn.config = {{"id", fn.id}};
  sync.functions = {fn};
  Check(s.SyncApp(sync).status(), "sync");

  const std::chrono::microseconds pause(pause_us);
  for (int i = 0; i < warmup; ++i) OneRun(s, i % 2 == 0, pause, nullptr);
  Timings kinds[2];  // [0] the usual way, [1] in one flight
  for (int i = 0; i < runs; ++i) OneRun(s, i % 2 == 0, pause, &kinds[i % 2 == 0 ? 1 : 0]);

  std::printf("%-36s %-22s %-22s %-22s %-22s %s\n", "applies (one run at a time)",
              "ingest p50 / p99", "step 1", "step 2", "end", "round trips a run");
  for (int k : {1, 0}) {
    const Timings& t = kinds[k];
    std::printf("%-36s", k ? "calls one at a time: one flight" : "calls unmarked: the usual way");
    for (const auto& v : t.ms) {
      char cell[32];
      std::snprintf(cell, sizeof cell, "%.3f / %.3f ms", Percentile(v, 0.5), Percentile(v, 0.99));
      std::printf(" %-22s", cell);
    }
    std::printf(" %.2f\n", static_cast<double>(t.round_trips) / std::max(t.runs, 1));
  }
  double sums[2] = {0, 0};
  for (int k : {0, 1}) {
    for (int i = 1; i < 4; ++i) sums[k] += Percentile(kinds[k].ms[i], 0.5);
  }
  std::printf("the three applies' p50s summed: %.3f ms in one flight, %.3f ms the usual way\n",
              sums[1], sums[0]);
  return 0;
}
