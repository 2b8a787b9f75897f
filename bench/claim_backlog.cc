// Backlog-flat claims: runs/s through the store's claim and
// apply, on an empty queue and beside a backlog of other keys' work, on one PostgreSQL
// cluster in one run. The backlog is lanes of other keys whose heads wait in retry backoff
// (queue items due in an hour) with more runs queued behind them: work a claim must not
// pay for.
//
//   claim_backlog --db postgres://… [--runs 20000] [--keys 1000] [--backlog 50000]
// The database must be empty; bench/store_bench.sh claim_backlog makes a private cluster and runs
// this.
#include <atomic>
#include <chrono>
#include <cstdio>
#include <iostream>
#include <thread>

#include <CLI/CLI.hpp>

#include "common/clock.h"
#include "common/ulid.h"
#include "coordinator/store/store.h"

using namespace std::chrono_literals;
using funcky::store::Json;

namespace {

funcky::store::FunctionRecord Fn(const std::string& id) {
  funcky::store::FunctionRecord f;
  f.id = id;
  f.app_id = "bench";
  f.name = id;
  f.config = {{"id", id}, {"ordering", {{"key", "event.data.k"}}}};
  return f;
}

void Check(const funcky::Status& s, const char* what) {
  if (!s.ok()) {
    std::cerr << what << ": " << s.ToString() << std::endl;
    std::exit(1);
  }
}

// Ingests `runs` runs of `function_id` spread over `keys` lanes, 200 events a transaction.
void Ingest(funcky::store::Store& store, const std::string& function_id, int runs, int keys,
            const std::string& key_prefix) {
  std::vector<funcky::store::NewEvent> batch;
  for (int i = 0; i < runs; ++i) {
    const int64_t now_ms = funcky::UnixMillis(funcky::SystemClock().Now());
    funcky::store::NewEvent ne;
    ne.event.internal_id = funcky::NewUlid(now_ms);
    ne.event.id = ne.event.internal_id;
    ne.event.name = "bench/e";
    const std::string key = key_prefix + std::to_string(i % keys);
    ne.event.payload = {{"name", "bench/e"}, {"data", {{"k", key}}}};
    ne.runs.push_back({funcky::NewUlid(now_ms), function_id, key});
    batch.push_back(std::move(ne));
    if (batch.size() == 200 || i + 1 == runs) {
      Check(store.IngestEvents(batch, funcky::SystemClock().Now(), nullptr).status(), "ingest");
      batch.clear();
    }
  }
}

// Claims and completes runs with `threads` workers until `runs` have completed; runs/s.
double Drain(funcky::store::Store& store, int runs, int threads) {
  std::atomic<int> done{0};
  const auto start = std::chrono::steady_clock::now();
  std::vector<std::thread> workers;
  for (int t = 0; t < threads; ++t) {
    workers.emplace_back([&] {
      funcky::SystemClock clock;
      while (done.load() < runs) {
        auto items = store.Claim(32, clock.Now(), 30s);
        Check(items.status(), "claim");
        if (items->empty()) std::this_thread::sleep_for(1ms);
        for (const auto& item : *items) {
          funcky::store::Transition t;
          t.move = funcky::store::Transition::End{funcky::store::kCompleted, "ok", nullptr};
          Check(store.Apply(item, t, clock.Now()), "apply");
          ++done;
        }
      }
    });
  }
  for (auto& w : workers) w.join();
  return runs / std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

// Half the backlog are lane heads put in retry backoff for an hour; the other half wait
// behind them in their lanes.
void MakeBacklog(funcky::store::Store& store, int backlog) {
  const int lanes = backlog / 2;
  Ingest(store, "bench-backlog", backlog, lanes, "other-");
  funcky::SystemClock clock;
  int parked = 0;
  while (parked < lanes) {
    auto items = store.Claim(500, clock.Now(), 30s);
    Check(items.status(), "claim backlog");
    for (const auto& item : *items) {
      funcky::store::Transition t;
      t.move = funcky::store::Transition::Retry{clock.Now() + 1h};
      Check(store.Apply(item, t, clock.Now()), "park backlog");
      ++parked;
    }
  }
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"claim_backlog: runs/s of claim + apply with and without a backlog"};
  std::string db_empty, db_backlog;
  int runs = 20000, keys = 1000, backlog = 50000, threads = 4;
  app.add_option("--db", db_empty, "Empty database for the run without backlog")->required();
  app.add_option("--db-backlog", db_backlog, "Empty database for the run with backlog")->required();
  app.add_option("--runs", runs, "Runs to drain")->capture_default_str();
  app.add_option("--keys", keys, "Lanes they are spread over")->capture_default_str();
  app.add_option("--backlog", backlog, "Runs of other keys in the backlog")->capture_default_str();
  app.add_option("--threads", threads, "Claiming workers")->capture_default_str();
  CLI11_PARSE(app, argc, argv);

  double rate[2] = {0, 0};
  for (int phase = 0; phase < 2; ++phase) {
    auto store = funcky::store::OpenPostgresStore(
        {.url = phase ? db_backlog : db_empty, .pool_size = threads + 2});
    Check(store.status(), "open");
    Check((*store)->Migrate(), "migrate");
    funcky::store::AppSync sync;
    sync.app = {"bench", "http://127.0.0.1:1/api", "bench", "", "sum", 0, 0};
    sync.functions = {Fn("bench-ordered"), Fn("bench-backlog")};
    Check((*store)->SyncApp(sync).status(), "sync");
    if (phase == 1) MakeBacklog(**store, backlog);
    Ingest(**store, "bench-ordered", runs, keys, "k-");
    rate[phase] = Drain(**store, runs, threads);
    auto depth = (*store)->QueueDepth();
    Check(depth.status(), "depth");
    std::printf("%-34s %10.0f runs/s  (queue rows left: %lld)\n",
                phase ? "with backlog of other keys:" : "empty queue:", rate[phase],
                static_cast<long long>(*depth));
  }
  std::printf("backlog: %d runs of other keys (%d queue items due in 1 h)\n", backlog, backlog / 2);
  std::printf("difference: %.1f %% (target < 10 %%)\n", 100.0 * (rate[0] - rate[1]) / rate[0]);
  return 0;
}
