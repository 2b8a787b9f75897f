// cancel_on beside many active runs: how long a cancelling event takes when its rule's `if`
// keys the runs (`async.data.user == event.data.user`: the event reads the runs of its own
// user, store::CancelCandidates) and when it does not (the same test behind `||`: every active
// run of the function is read and its `if` evaluated), on one PostgreSQL database in one run,
// through the intake as a POST's events go.
//
//   cancel_on --db postgres://… [--runs 10000] [--cancels 200] [--only keyed|unkeyed]
// The database must be empty; bench/store_bench.sh cancel_on makes a private cluster and runs
// this.
#include <chrono>
#include <cstdio>
#include <iostream>
#include <vector>

#include <CLI/CLI.hpp>

#include "common/clock.h"
#include "common/ulid.h"
#include "coordinator/intake/intake.h"
#include "coordinator/scheduler/flow.h"
#include "coordinator/store/store.h"

using funcky::store::Json;

namespace {

void Check(const funcky::Status& s, const char* what) {
  if (!s.ok()) {
    std::cerr << what << ": " << s.ToString() << std::endl;
    std::exit(1);
  }
}

funcky::store::FunctionRecord Fn(const std::string& id, const std::string& stop,
                                 const std::string& condition) {
  funcky::store::FunctionRecord f;
  f.id = id;
  f.app_id = "bench";
  f.name = id;
  f.config = {{"id", id},
              {"triggers", Json::array({{{"event", "bench/start"}}})},
              {"cancel", Json::array({{{"event", stop}, {"if", condition}}})}};
  return f;
}

funcky::intake::IncomingEvent Event(const std::string& name, const std::string& user) {
  const int64_t now_ms = funcky::UnixMillis(funcky::SystemClock().Now());
  const std::string id = funcky::NewUlid(now_ms);
  return {Json{{"name", name}, {"data", {{"user", user}}}, {"id", id}, {"ts", now_ms}},
          funcky::NewUlid(now_ms), std::nullopt};
}

int64_t Cancelled(funcky::store::Store& store, const std::string& function_id) {
  int64_t n = 0;
  std::string cursor;
  for (;;) {
    auto runs = store.ListRuns({.function_id = function_id,
                                .status = funcky::store::kCancelled,
                                .cursor = cursor,
                                .limit = 1000});
    Check(runs.status(), "list");
    n += static_cast<int64_t>(runs->size());
    if (runs->size() < 1000) return n;
    cursor = runs->back().id;
  }
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"cancel_on: a cancelling event's time beside many active runs, keyed or not"};
  std::string db;
  int runs = 10000, cancels = 200;
  std::string only;
  app.add_option("--db", db, "Empty database")->required();
  app.add_option("--runs", runs, "Active runs of each function (one user each)")
      ->capture_default_str();
  app.add_option("--cancels", cancels, "Cancelling events sent to each function, one a request")
      ->capture_default_str();
  app.add_option("--only", only, "Time one rule only")->check(CLI::IsMember({"keyed", "unkeyed"}));
  CLI11_PARSE(app, argc, argv);

  auto store = funcky::store::OpenPostgresStore({.url = db, .pool_size = 4});
  Check(store.status(), "open");
  Check((*store)->Migrate(), "migrate");
  funcky::store::AppSync sync;
  sync.app = {"bench", "http://127.0.0.1:1/api", "bench", "", "sum", 0, 0};
  sync.functions = {Fn("bench-keyed", "bench/stop-keyed", "async.data.user == event.data.user"),
                    Fn("bench-unkeyed", "bench/stop-unkeyed",
                       "async.data.user == event.data.user || async.data.never == true")};
  for (const auto& f : sync.functions) {
    auto flow = funcky::scheduler::ParseFlowControl(f.config);
    Check(flow.status(), "config");
    for (const auto& on : flow->cancel) sync.cancel_rules[f.id].push_back(on.id);
  }
  Check((*store)->SyncApp(sync).status(), "sync");
  funcky::SystemClock clock;
  funcky::intake::Intake intake(**store, clock, std::chrono::seconds(60), [] {});

  std::vector<funcky::intake::IncomingEvent> batch;
  for (int i = 0; i < runs; ++i) {
    batch.push_back(Event("bench/start", "u" + std::to_string(i)));
    if (batch.size() == 200 || i + 1 == runs) {
      Check(intake.Ingest(std::move(batch)).status(), "ingest");
      batch.clear();
    }
  }
  std::printf("%d active runs of each function; %d cancelling events to each, one a request\n",
              runs, cancels);
  double ms[2] = {0, 0};
  for (int side = 0; side < 2; ++side) {
    if (!only.empty() && only != (side == 0 ? "keyed" : "unkeyed")) continue;
    const std::string stop = side == 0 ? "bench/stop-keyed" : "bench/stop-unkeyed";
    const auto start = std::chrono::steady_clock::now();
    for (int j = 0; j < cancels; ++j) {
      std::vector<funcky::intake::IncomingEvent> one;
      // Spread over the users: each cancels one run.
      one.push_back(Event(stop, "u" + std::to_string((j * 7919) % runs)));
      Check(intake.Ingest(std::move(one)).status(), "cancel");
    }
    ms[side] = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start)
                   .count() /
               cancels;
    const std::string fn = side == 0 ? "bench-keyed" : "bench-unkeyed";
    std::printf("%-44s %9.2f ms an event  (%lld runs cancelled)\n",
                side == 0 ? "keyed (async.data.user == event.data.user):"
                          : "unkeyed (the same || async.data.never == true):",
                ms[side], static_cast<long long>(Cancelled(**store, fn)));
  }
  if (only.empty()) std::printf("unkeyed ÷ keyed: %.1f\n", ms[1] / ms[0]);
  intake.Stop();
  return 0;
}
