// funcky: the coordinator. The one composition root (docs/architecture.md "Start and
// stop"): parses flags, opens the store, and wires the executor, API, router and HTTP
// server together.
#include <malloc.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <mutex>
#include <optional>
#include <stop_token>
#include <string_view>
#include <thread>
#include <utility>

#include <spdlog/spdlog.h>
#include <CLI/CLI.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/address.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/thread_pool.hpp>

#include "common/duration.h"
#include "common/http_server.h"
#include "common/json_parse.h"
#include "common/signing.h"
#include "coordinator/api/api.h"
#include "coordinator/executor/executor.h"
#include "coordinator/http/router.h"
#include "coordinator/intake/cron_ticker.h"
#include "coordinator/intake/intake.h"
#include "coordinator/logging/log.h"
#include "coordinator/metrics/metrics.h"
#include "coordinator/store/store.h"

namespace {

namespace asio = boost::asio;
using namespace funcky;

struct ServeFlags {
  std::string db;
  std::string host = "127.0.0.1";
  uint16_t port = 8288;
  std::string signing_key;
  std::string signing_key_fallback;
  std::vector<std::string> event_keys;
  std::string api_token;
  std::string retry_schedule = "15s,30s,1m,2m,5m,10m,20m,40m,1h,2h";
  std::string retry_jitter = "30s";
  std::string call_timeout = "60s";
  std::string poll_interval = "1s";
  std::string lease = "10s";
  std::string drain_timeout = "10s";
  int max_in_flight = 64;
  bool listen_for_work = true;
  bool sdk_checkpointing = true;
  int64_t max_steps_per_run = executor::kDefaultStepLimit;
  int db_pool = 16;
  int api_threads = 8;
  size_t max_body_bytes = 3 << 20;
  size_t max_connections = 1024;
  size_t max_body_bytes_in_flight = 0;  // 0: 256 MiB, or max_body_bytes when larger
  std::string host_ca;
  std::vector<std::string> sync_allow;
  std::string retain;  // empty: keep runs and events forever
  std::string retain_interval = "1m";
  std::string tls_cert;
  std::string tls_key;
  std::string log_level = "info";
  std::string log_format = "text";
};

std::string EnvOr(const char* name, std::string fallback) {
  const char* v = std::getenv(name);
  return v && *v ? std::string(v) : fallback;
}

Result<std::chrono::milliseconds> DurationFlag(const std::string& flag, const std::string& v) {
  auto d = ParseDuration(v);
  if (!d.ok()) return InvalidArgument("--" + flag + ": " + d.status().message());
  return *d;
}

// The longest --call-timeout, --poll-interval, --lease, --drain-timeout and --retry-jitter:
// far from where the deadlines they make (time points of clocks that count nanoseconds)
// would overflow.
constexpr std::chrono::milliseconds kMaxFlagDuration = std::chrono::hours(24);
// On SIGTERM, how long the HTTP requests read before the listener stops may take to be
// answered (an event's ingest, a checkpoint) once the calls are drained.
constexpr std::chrono::milliseconds kHttpDrain = std::chrono::seconds(5);
// How often a running coordinator reads the database's newest migrations.
constexpr std::chrono::milliseconds kSchemaCheckInterval = std::chrono::seconds(10);

// A duration flag from `min` to `max`; `why` ends the message of a value out of range.
Result<std::chrono::milliseconds> DurationFlagIn(const std::string& flag, const std::string& v,
                                                 std::chrono::milliseconds min,
                                                 std::chrono::milliseconds max,
                                                 std::string_view why = {}) {
  ASSIGN_OR_RETURN(std::chrono::milliseconds d, DurationFlag(flag, v));
  if (d < min || d > max) {
    return InvalidArgument("--" + flag + " must be from " + FormatDuration(min) + " to " +
                           FormatDuration(max) + std::string(why));
  }
  return d;
}

// --log-level: the names its help lists. spdlog's from_str reads any other name as "off",
// which would silence every line, the errors included.
std::optional<spdlog::level::level_enum> ParseLogLevel(std::string_view name) {
  constexpr std::pair<std::string_view, spdlog::level::level_enum> kLevels[] = {
      {"trace", spdlog::level::trace},       {"debug", spdlog::level::debug},
      {"info", spdlog::level::info},         {"warn", spdlog::level::warn},
      {"warning", spdlog::level::warn},      {"error", spdlog::level::err},
      {"critical", spdlog::level::critical}, {"off", spdlog::level::off}};
  for (const auto& [level_name, level] : kLevels) {
    if (level_name == name) return level;
  }
  return std::nullopt;
}

bool IsPostgresUrl(const std::string& db) {
  return db.rfind("postgres://", 0) == 0 || db.rfind("postgresql://", 0) == 0;
}

// Why `db` is neither a postgres:// URL nor a SQLite file's path, if it is not: a URL of
// another scheme (a typo, `postgre://…`) or a libpq keyword string (`host=… password=…`)
// would otherwise be taken for a file's path, and migrated, while the operator thinks the
// database was. The message never quotes it: it may hold a password.
std::optional<std::string> NotADatabase(const std::string& db) {
  if (IsPostgresUrl(db)) {
    // The user and password as libpq reads them: up to the first '@' or '/'. An '@' or '/'
    // in a password, or a '%' that starts no escape, makes it read a host, port or escape of
    // the password, and quote that in its error: a password's part in the log.
    const std::string_view url(db);
    const size_t from = url.find("://") + 3;
    const size_t end = url.find_first_of("@/", from);
    bool bad = false;
    if (end != std::string_view::npos && url[end] == '@') {
      const std::string_view userinfo = url.substr(from, end - from);
      for (size_t i = userinfo.find('%'); !bad && i != std::string_view::npos;
           i = userinfo.find('%', i + 1)) {
        bad = i + 2 >= userinfo.size() ||
              !std::isxdigit(static_cast<unsigned char>(userinfo[i + 1])) ||
              !std::isxdigit(static_cast<unsigned char>(userinfo[i + 2]));
      }
      // Another '@' before the host ends: the password's own.
      const std::string_view host = url.substr(end + 1, url.find_first_of("/?", end + 1) - end - 1);
      bad = bad || host.find('@') != std::string_view::npos;
    } else if (end != std::string_view::npos) {
      // A '/' first, and an '@' after it before the query: the password's '/'.
      const std::string_view path = url.substr(end, url.find('?', end) - end);
      bad = path.find('@') != std::string_view::npos;
    }
    if (bad) {
      return "--db: its user or password holds a character that must be percent-encoded "
             "(%, /, @: write %25, %2F, %40)";
    }
    return std::nullopt;
  }
  if (db.find("://") != std::string::npos) {
    return "--db is a URL but not a postgres:// (or postgresql://) one; a SQLite database is "
           "a file's path";
  }
  // A keyword string starts with one of libpq's connection keywords (a file may be `v2=a.db`).
  static constexpr std::string_view kKeywords[] = {"host",
                                                   "hostaddr",
                                                   "port",
                                                   "dbname",
                                                   "user",
                                                   "password",
                                                   "passfile",
                                                   "sslmode",
                                                   "service",
                                                   "options",
                                                   "connect_timeout",
                                                   "application_name"};
  const size_t eq = db.find('=');
  const std::string_view first = std::string_view(db).substr(0, eq);
  if (eq != std::string::npos &&
      std::find(std::begin(kKeywords), std::end(kKeywords), first) != std::end(kKeywords)) {
    return "--db looks like a libpq keyword string (key=value …): write it as a "
           "postgres://user:password@host:port/dbname URL";
  }
  return std::nullopt;
}

// A postgres:// URL opens PostgreSQL; anything else is a SQLite file (its folder is made).
Result<std::unique_ptr<store::Store>> OpenStore(const std::string& db, int pool) {
  if (IsPostgresUrl(db)) return store::OpenPostgresStore({db, pool});
  std::error_code ec;
  auto parent = std::filesystem::path(db).parent_path();
  if (!parent.empty()) std::filesystem::create_directories(parent, ec);
  if (ec) return Unavailable("cannot create " + parent.string() + ": " + ec.message());
  return store::OpenSqliteStore({.path = db});
}

// Logs why Store::Migrate failed.
void LogMigrateFailure(const Status& s) {
  if (s.code() == StatusCode::kFailedPrecondition) {
    spdlog::error("{}", s.message());  // a database newer than this version
  } else {
    spdlog::error("migration failed: {}", s.ToString());
  }
}

int Migrate(const std::string& db) {
  if (auto why = NotADatabase(db)) {
    spdlog::error("{}", *why);
    return 2;
  }
  auto store = OpenStore(db, 1);
  if (!store.ok()) {
    spdlog::error("{}", store.status().ToString());
    return 1;
  }
  if (Status s = (*store)->Migrate(); !s.ok()) {
    LogMigrateFailure(s);
    return 1;
  }
  spdlog::info("database is up to date ({})", IsPostgresUrl(db) ? "PostgreSQL" : "SQLite " + db);
  return 0;
}

// Retention (--retain): deletes finished runs and events older than `retain`, a batch per
// transaction (short locks) until none is left, then sleeps `interval`. On its own thread so
// no I/O thread waits on the database; every coordinator of a database may run it, as
// deletes are idempotent. A failed pass (e.g. the database is down) is retried next time.
void RetainLoop(std::stop_token stop, store::Retention& store, const Clock& clock,
                std::chrono::milliseconds retain, std::chrono::milliseconds interval) {
  constexpr int kBatch = 500;
  std::mutex mu;
  std::condition_variable_any sleep;
  while (!stop.stop_requested()) {
    int64_t deleted = 0;
    while (!stop.stop_requested()) {
      auto n = store.DeleteExpired(clock.Now() - retain, kBatch);
      if (!n.ok()) {
        spdlog::warn("retention: {}", n.status().ToString());
        break;
      }
      if (*n == 0) break;
      deleted += *n;
    }
    if (deleted > 0) {
      spdlog::info(
          "retention: deleted {} finished run(s), event(s) and lane record(s) older than {}",
          deleted, FormatDuration(retain));
    }
    std::unique_lock lock(mu);
    sleep.wait_for(lock, stop, interval, [] { return false; });
  }
}

// Addresses only this machine can reach.
bool IsLoopback(const std::string& host) {
  return host == "localhost" || host == "::1" || host.rfind("127.", 0) == 0;
}

int Serve(const ServeFlags& f, bool dev) {
  if (!dev && !IsPostgresUrl(f.db)) {
    spdlog::error(
        f.db.empty()
            ? "no database: `funcky serve` runs on PostgreSQL; pass --db "
              "postgres://user@host:port/dbname (or set FUNCKY_DB), or try `funcky dev` for a "
              "zero-set-up coordinator on SQLite"
            : "--db must be a postgres:// URL for `funcky serve`; for a SQLite file use "
              "`funcky dev --db <file>`");
    return 2;
  }
  if (auto why = NotADatabase(f.db)) {
    spdlog::error("{}", *why);
    return 2;
  }
  // An empty key (`--event-key "$KEY"` with KEY unset) would be a key anyone has.
  for (const std::string& key : f.event_keys) {
    if (key.empty()) {
      spdlog::error("--event-key (or FUNCKY_EVENT_KEY) holds an empty key");
      return 2;
    }
  }
  if (f.max_body_bytes_in_flight && f.max_body_bytes_in_flight < f.max_body_bytes) {
    spdlog::error("--max-body-bytes-in-flight ({}) must be at least --max-body-bytes ({})",
                  f.max_body_bytes_in_flight, f.max_body_bytes);
    return 2;
  }
  // An address to bind, or localhost (127.0.0.1): a name is no address here (it failed at
  // bind time, exit 1).
  if (f.host != "localhost") {
    boost::system::error_code bad;
    boost::asio::ip::make_address(f.host, bad);
    if (bad) {
      spdlog::error("--host {} is not an IP address (or localhost)", f.host);
      return 2;
    }
  }
  if (!IsLoopback(f.host) && f.api_token.empty()) {
    spdlog::error(
        "--host {} exposes the dashboard and the /v1 API beyond this machine: set "
        "--dashboard-token (or FUNCKY_DASHBOARD_TOKEN) to protect them",
        f.host);
    return 2;
  }
  // Without a signing key the coordinator is in dev mode and checks no signature: a fallback
  // alone would be ignored, leaving everything unauthenticated while the operator thinks not.
  if (f.signing_key.empty() && !f.signing_key_fallback.empty()) {
    spdlog::error(
        "--signing-key-fallback needs --signing-key (or FUNCKY_SIGNING_KEY): without a signing "
        "key the coordinator runs in dev mode and authenticates nothing");
    return 2;
  }
  // A malformed key would sign with (and let SDKs register with) next to nothing.
  for (const auto& [flag, key] : {std::pair{"--signing-key", &f.signing_key},
                                  std::pair{"--signing-key-fallback", &f.signing_key_fallback}}) {
    if (key->empty()) continue;
    if (Status s = signing::ValidateSigningKey(*key); !s.ok()) {
      spdlog::error("{}: {}", flag, s.message());
      return 2;
    }
  }
  executor::ExecutorOptions exec;
  {
    // A call timeout of 0 fails every call at once; a poll interval of 0 is a busy loop.
    constexpr std::chrono::milliseconds kOneMs(1);
    auto schedule = scheduler::ParseSchedule(f.retry_schedule);
    if (!schedule.ok())
      schedule = InvalidArgument("--retry-schedule: " + schedule.status().message());
    auto jitter = DurationFlagIn("retry-jitter", f.retry_jitter, {}, kMaxFlagDuration);
    auto timeout = DurationFlagIn("call-timeout", f.call_timeout, kOneMs, kMaxFlagDuration);
    auto poll = DurationFlagIn("poll-interval", f.poll_interval, kOneMs, kMaxFlagDuration);
    auto drain = DurationFlagIn("drain-timeout", f.drain_timeout, {}, kMaxFlagDuration);
    auto lease = DurationFlagIn("lease", f.lease, std::chrono::seconds(1), kMaxFlagDuration,
                                " (it is renewed every third of it)");
    for (const Status* s : {&schedule.status(), &jitter.status(), &timeout.status(), &poll.status(),
                            &drain.status(), &lease.status()}) {
      if (!s->ok()) {
        spdlog::error("{}", s->message());
        return 2;
      }
    }
    exec.retry.schedule = *schedule;
    exec.retry.max_jitter = *jitter;
    exec.call_timeout = *timeout;
    exec.lease = *lease;
    exec.poll_interval = *poll;
    exec.max_in_flight = f.max_in_flight;
    exec.call.signing_key = f.signing_key;
    exec.call.checkpointing = f.sdk_checkpointing;
    exec.step_limit = f.max_steps_per_run;
    // Fault injection, for the crash and outage tests only: FUNCKY_FAULT_AFTER_END_OF=<function
    // id> exits after a run of it ends; with FUNCKY_FAULT_PAUSE=<duration> it pauses instead.
    exec.fault_after_end_of = EnvOr("FUNCKY_FAULT_AFTER_END_OF", "");
    if (!exec.fault_after_end_of.empty()) {
      if (auto pause = EnvOr("FUNCKY_FAULT_PAUSE", ""); !pause.empty()) {
        auto d = DurationFlag("FUNCKY_FAULT_PAUSE", pause);
        if (!d.ok()) {
          spdlog::error("{}", d.status().message());
          return 2;
        }
        exec.fault_pause = *d;
      }
      spdlog::warn("fault injection on: {} after the end of a run of {}",
                   exec.fault_pause ? "pausing" : "exiting", exec.fault_after_end_of);
    }
    // FUNCKY_FAULT_AFTER_WAIT_OF=<function id> exits after a wait of it is stored.
    exec.fault_after_wait_of = EnvOr("FUNCKY_FAULT_AFTER_WAIT_OF", "");
    if (!exec.fault_after_wait_of.empty()) {
      spdlog::warn("fault injection on: exiting after a wait of a run of {} is stored",
                   exec.fault_after_wait_of);
    }
  }
  if (!f.host_ca.empty()) {
    if (Status s = CheckCaFile(f.host_ca); !s.ok()) {
      spdlog::error("--host-ca: {}", s.message());
      return 2;
    }
  }
  std::vector<api::SyncTarget> sync_allow;
  for (const std::string& entry : f.sync_allow) {
    auto target = api::ParseSyncTarget(entry);
    if (!target.ok()) {
      spdlog::error("--sync-allow: {}", target.status().message());
      return 2;
    }
    sync_allow.push_back(*target);
  }
  std::optional<std::chrono::milliseconds> retain;
  // Checked with or without --retain: a bad value is refused, never dropped.
  auto retain_interval = DurationFlagIn("retain-interval", f.retain_interval,
                                        std::chrono::milliseconds(1), kMaxFlagDuration);
  if (!retain_interval.ok()) {
    spdlog::error("{}", retain_interval.status().message());
    return 2;
  }
  if (!f.retain.empty()) {
    // At most a century: the horizon is now less --retain on a clock that counts
    // nanoseconds, which a longer one (it parses up to 1e15 ms) would wrap into the future,
    // deleting every finished run.
    auto r =
        DurationFlagIn("retain", f.retain, std::chrono::milliseconds(1), std::chrono::days(36500));
    if (!r.ok()) {
      spdlog::error("{}", r.status().message());
      return 2;
    }
    retain = *r;
  }
  if (f.tls_cert.empty() != f.tls_key.empty()) {
    spdlog::error("--tls-cert and --tls-key go together: pass both to serve HTTPS");
    return 2;
  }

  auto opened = OpenStore(f.db, f.db_pool);
  if (!opened.ok()) {
    spdlog::error("{}", opened.status().ToString());
    return 1;
  }
  std::unique_ptr<store::Store> store = std::move(opened).value();
  if (Status s = store->Migrate(); !s.ok()) {
    LogMigrateFailure(s);
    return 1;
  }

  // Threads (docs/architecture.md, "Threads"): one I/O thread runs `io` (every socket, the
  // executor's coroutines); `blocking` runs the executor's store calls; `api_pool` runs HTTP
  // handlers, so dashboard traffic or a slow in-band sync cannot hold up claims; intake has
  // its run-end thread, cron and retention one each.
  SystemClock clock;
  asio::io_context io(1);
  asio::thread_pool blocking(static_cast<size_t>(f.db_pool));
  asio::thread_pool api_pool(static_cast<size_t>(f.api_threads));
  HttpClient client(io.get_executor(), {.ca_file = f.host_ca});
  metrics::Metrics metrics;
  exec.observer = &metrics;
  auto transport = executor::MakeHttpTransport(client);
  // Set once the executor exists; read by intake's thread, which may already be sweeping.
  std::atomic<executor::Executor*> wake_target = nullptr;
  intake::Intake intake(*store, clock, std::chrono::seconds(1), [&wake_target] {
    if (executor::Executor* target = wake_target.load()) target->Wake();
  });
  intake.CountRunEndsIn(&metrics);
  exec.events = &intake;
  executor::Executor executor(io, blocking, *store, clock, *transport, exec);
  wake_target = &executor;
  // A new run starts at once on the coordinator that accepted its event when it has room.
  intake.StartRunsWith(
      {.reserve = [&executor](int want) { return executor.ReserveCalls(want); },
       .start = [&executor](store::StartedCalls calls,
                            int reserved) { executor.StartCalls(std::move(calls), reserved); },
       .lease = executor.lease()});
  // Other coordinators on the database announce the work they make due (PostgreSQL NOTIFY):
  // an idle executor needs no short poll to find it.
  std::unique_ptr<store::WorkWatch> watch;
  if (f.listen_for_work) watch = store->WatchForWork([&executor] { executor.Wake(); });
  intake::CronTicker cron(intake, clock, /*seed=*/0, retain);

  api::ApiOptions api_options;
  api_options.dev_mode = f.signing_key.empty();
  api_options.event_keys = f.event_keys;
  api_options.signing_key = f.signing_key;
  api_options.signing_key_fallback = f.signing_key_fallback;
  api_options.api_token = f.api_token;
  api_options.keyless_routes_loopback_only = IsLoopback(f.host) && !f.api_token.empty();
  api_options.host_ca_file = f.host_ca;
  api_options.sync_allow = sync_allow;
  api_options.max_body_bytes = f.max_body_bytes;
  api_options.step_limit = f.max_steps_per_run;
  api::Api api(api_options, api::ApiStores::Of(*store), clock, intake, metrics,
               [&executor] { return static_cast<int64_t>(executor.calls_in_flight()); });
  http::Router router;
  api.Register(router);
  // Open on loopback: only this machine's names, so that a web page whose name resolves to
  // 127.0.0.1 cannot read or drive it (DNS rebinding). With a token, the token holds, and the
  // routes that authenticate by a key that is not set check the Host themselves
  // (ApiOptions::keyless_routes_loopback_only).
  if (IsLoopback(f.host) && f.api_token.empty()) router.OnlyLoopbackHosts();

  HttpServerOptions server_options;
  server_options.address = f.host == "localhost" ? "127.0.0.1" : f.host;
  server_options.port = f.port;
  server_options.max_body_bytes = f.max_body_bytes;
  server_options.max_connections = f.max_connections;
  server_options.max_body_bytes_in_flight = f.max_body_bytes_in_flight
                                                ? f.max_body_bytes_in_flight
                                                : std::max(size_t{256} << 20, f.max_body_bytes);
  server_options.tls_cert_file = f.tls_cert;
  server_options.tls_key_file = f.tls_key;
  // A large body's caller is refused before it is read when its key is wrong (Router::Screen).
  server_options.screen = [&router](const ServerRequest& r) -> std::optional<ServerResponse> {
    auto refused = router.Screen({r.method, r.target, r.headers, "", {}});
    if (!refused) return std::nullopt;
    return ServerResponse{refused->status, std::move(refused->headers), std::move(refused->body)};
  };
  HttpServer server(io, api_pool, server_options, [&router](ServerRequest r) {
    http::Request req{
        std::move(r.method), std::move(r.target), std::move(r.headers), std::move(r.body), {}};
    http::Response res = router.Handle(std::move(req));
    return ServerResponse{res.status, std::move(res.headers), std::move(res.body)};
  });
  if (Status s = server.Start(); !s.ok()) {
    spdlog::error("{}", s.message());
    // Before the executor goes, which intake's thread may wake (architecture.md, "Start and
    // stop"). A file that cannot be loaded (--tls-cert, --tls-key) is a usage error; a port
    // taken is not.
    intake.Stop();
    return s.code() == StatusCode::kInvalidArgument ? 2 : 1;
  }
  executor.Start();
  cron.Start();
  std::optional<std::jthread> retention;
  if (retain) {
    retention.emplace(RetainLoop, std::ref(*store), std::cref(clock), *retain, *retain_interval);
    spdlog::info("retention on: finished runs and events older than {} are deleted",
                 FormatDuration(*retain));
  }
  if (f.api_token.empty()) {
    spdlog::info("the dashboard and /v1 are open on {} (no --dashboard-token)", f.host);
  }
  const char* scheme = f.tls_cert.empty() ? "http" : "https";
  spdlog::info(
      "funcky{} listening on {}://{}:{} ({}; calls {}; store: {}); dashboard at "
      "{}://{}:{}/",
      dev ? " dev" : "", scheme, f.host, server.port(),
      api_options.dev_mode ? "dev mode: registration not authenticated" : "signing on",
      f.signing_key.empty() ? "unsigned" : "signed",
      IsPostgresUrl(f.db) ? "PostgreSQL" : "SQLite " + f.db, scheme, f.host, server.port());

  asio::signal_set signals(io, SIGINT, SIGTERM);
  const auto drain_timeout = *DurationFlag("drain-timeout", f.drain_timeout);
  asio::steady_timer drain(io);
  std::function<void()> wait_drained;
  std::thread closing;  // stops the listener once the calls are drained
  bool stopping = false;
  int exit_code = 0;
  std::chrono::steady_clock::time_point drain_deadline;
  // On the io_context's thread, once.
  auto stop = [&](const std::string& why) {
    if (stopping) return;
    stopping = true;
    // HTTP stays open while the calls in flight finish: their hosts' checkpoints come here
    // (a host whose checkpoints fail falls back to a slower path), and events are still
    // stored; /readyz answers 503 so that a load balancer sends the rest elsewhere.
    spdlog::info("{}: stopping; waiting for {} call(s) in flight (/readyz answers 503)", why,
                 executor.in_flight());
    api.SetDraining();
    cron.RequestStop();  // joined once the io_context has stopped: it may wait on the database
    executor.Stop();
    drain_deadline = std::chrono::steady_clock::now() + drain_timeout;
    wait_drained = [&] {
      if (executor.in_flight() == 0 || std::chrono::steady_clock::now() > drain_deadline) {
        // Then the listener: the requests read by now are answered first (Drain waits off the
        // io_context's thread, which writes their answers).
        server.Stop();
        closing = std::thread([&] {
          if (!server.Drain(kHttpDrain)) {
            spdlog::warn("stopping with HTTP requests unanswered after {}",
                         FormatDuration(kHttpDrain));
          }
          asio::post(io, [&] { io.stop(); });
        });
        return;
      }
      drain.expires_after(std::chrono::milliseconds(20));
      drain.async_wait([&](const boost::system::error_code&) { wait_drained(); });
    };
    wait_drained();
  };
  // A second signal (^C again) does not wait out the drain: the calls still in flight give
  // their leases back at once, as at the drain's end.
  std::function<void(const boost::system::error_code&, int)> on_signal =
      [&](const boost::system::error_code& ec, int sig) {
        if (ec) return;
        if (!stopping) {
          stop("signal " + std::to_string(sig));
        } else if (drain_deadline > std::chrono::steady_clock::now()) {
          spdlog::warn("signal {} again: not waiting for the {} call(s) in flight", sig,
                       executor.in_flight());
          drain_deadline = std::chrono::steady_clock::now();
        }
        signals.async_wait(on_signal);
      };
  signals.async_wait(on_signal);
  // A newer coordinator may migrate the database under this one: once a migration this
  // version does not know breaks what it reads or writes, it stops as on SIGTERM (its calls'
  // outcomes may still record; other statements fail until then) and exits 1.
  asio::steady_timer schema_timer(io);
  bool schema_check_failing = false;  // warned once a streak
  std::function<void()> check_schema = [&] {
    schema_timer.expires_after(kSchemaCheckInterval);
    schema_timer.async_wait([&](const boost::system::error_code& ec) {
      if (ec || stopping) return;
      asio::post(blocking, [&] {
        Status s = store->CheckMigrations();
        asio::post(io, [&, s] {
          if (stopping) return;  // a signal's stop: its exit code
          if (s.code() == StatusCode::kFailedPrecondition) {
            spdlog::error("{}", s.message());
            exit_code = 1;
            stop("newer schema");
            return;
          }
          if (!s.ok() && !schema_check_failing) {
            spdlog::warn("cannot read the database's migrations (checked again every {}): {}",
                         FormatDuration(kSchemaCheckInterval), s.ToString());
          }
          schema_check_failing = !s.ok();
          check_schema();
        });
      });
    });
  };
  check_schema();
  io.run();
  if (closing.joinable()) closing.join();
  cron.Stop();
  // Stopped in order: cron and the executor's claims, then the listener, above; here the calls
  // still unfinished after the drain go back to the other coordinators at once instead of
  // when their leases expire; then retention; then intake announces the run ends it holds
  // and stops its thread (the one that could wake the executor); then the pools finish
  // what they run. Only then do destructors run.
  executor.ReleaseLeases();
  retention.reset();  // joins the thread
  intake.Stop();
  api_pool.join();
  blocking.join();
  spdlog::info("stopped");
  return exit_code;
}

void AddServeFlags(CLI::App& app, ServeFlags& f) {
  app.add_option("--host", f.host, "IP address to listen on (localhost: 127.0.0.1)")
      ->capture_default_str();
  app.add_option("--port", f.port, "Port to listen on")->capture_default_str();
  app.add_option("--signing-key", f.signing_key,
                 "Signing key (signkey-<env>-<hex>): signs calls to hosts and authenticates "
                 "SDK registration (env FUNCKY_SIGNING_KEY); unset = dev mode");
  app.add_option("--signing-key-fallback", f.signing_key_fallback,
                 "Previous signing key, accepted during a rotation (needs --signing-key; env "
                 "FUNCKY_SIGNING_KEY_FALLBACK)");
  app.add_option(
      "--event-key", f.event_keys,
      "Event key accepted on /e/{key} (repeatable; env FUNCKY_EVENT_KEY, comma-separated); "
      "unset = any key");
  app.add_option("--dashboard-token,--api-token", f.api_token,
                 "Token the dashboard and every /v1/* API call must present "
                 "(Authorization: Bearer; env FUNCKY_DASHBOARD_TOKEN); unset = open");
  app.add_option("--retry-schedule", f.retry_schedule,
                 "Delays after failed attempts 1, 2, …; the last repeats")
      ->capture_default_str();
  app.add_option("--retry-jitter", f.retry_jitter, "Random extra delay, up to this")
      ->capture_default_str();
  app.add_option("--call-timeout", f.call_timeout, "Deadline of one call to a host (1ms to 24h)")
      ->capture_default_str();
  app.add_option("--poll-interval", f.poll_interval,
                 "The longest an idle coordinator waits before looking for due work again "
                 "(it looks at once for events it accepts, for work other coordinators "
                 "announce on PostgreSQL, and when the next sleep, retry or lease is due; 1ms "
                 "to 24h)")
      ->capture_default_str();
  app.add_option("--lease", f.lease,
                 "How long a claimed call is held without renewal: renewed every third of it "
                 "while the call is in flight, it is how soon other coordinators take over "
                 "the calls of one that died (1s to 24h)")
      ->capture_default_str();
  app.add_option("--drain-timeout", f.drain_timeout,
                 "On SIGTERM, how long calls in flight may finish before their leases are "
                 "given back to other coordinators (at most 24h)")
      ->capture_default_str();
  app.add_option("--max-in-flight", f.max_in_flight,
                 "Concurrent calls to hosts; 0: make none (the coordinator takes events and "
                 "serves the API, others on its database make the calls)")
      ->check(CLI::Range(0, 100000))
      ->capture_default_str();
  app.add_option("--listen-for-work", f.listen_for_work,
                 "Wake when another coordinator on the PostgreSQL database announces due work "
                 "(LISTEN/NOTIFY, on a connection of its own); false, e.g. behind a pooler "
                 "that cannot LISTEN: an idle coordinator finds such work within "
                 "--poll-interval")
      ->capture_default_str();
  app.add_option("--sdk-checkpointing", f.sdk_checkpointing,
                 "Let the JS SDK run a function's steps back to back within one call, "
                 "recording each through POST /v1/checkpoint/{run}/async before it goes on "
                 "(calls carry ctx.fn_id and ctx.qi_id); false: one call per step. The "
                 "SDK's API base URL must reach a coordinator of this database")
      ->capture_default_str();
  app.add_option("--max-steps-per-run", f.max_steps_per_run,
                 "The most steps a run may have: a run that would take more (a step, sleep, "
                 "wait or invoke past them) fails with InngestErrFunctionOverflowed. Each "
                 "call carries every step of its run, and the host replays them all")
      ->check(CLI::Range(int64_t{1}, executor::kMaxStepLimit))
      ->capture_default_str();
  // Ranges: 0 would hang (no connection, no thread, no answer, no body) and CLI11 reads a
  // negative size_t as its two's complement (-1: SIZE_MAX).
  app.add_option("--db-pool", f.db_pool, "Database connections (and the executor's threads)")
      ->check(CLI::Range(1, 256))
      ->capture_default_str();
  app.add_option("--api-threads", f.api_threads,
                 "Threads serving HTTP requests (the API and dashboard have their own, so they "
                 "cannot delay claims)")
      ->check(CLI::Range(1, 256))
      ->capture_default_str();
  // At most the longest JSON text a request's parser takes (JsonLimits::max_bytes): a larger
  // body would be read whole and then refused as a 400.
  app.add_option("--max-body-bytes", f.max_body_bytes,
                 "Largest request body accepted (at most 16 MiB, the longest JSON body parsed)")
      ->check(CLI::Range(size_t{1}, JsonLimits{}.max_bytes))
      ->capture_default_str();
  app.add_option("--max-body-bytes-in-flight", f.max_body_bytes_in_flight,
                 "Request bodies over 64 KiB held at once across connections, at least "
                 "--max-body-bytes; a request past it waits for room, then is answered 503 "
                 "[default: 256 MiB, or --max-body-bytes when larger]")
      ->check(CLI::Range(size_t{1}, size_t{1} << 40));
  app.add_option("--max-connections", f.max_connections,
                 "Connections served at once; more wait in the listen backlog")
      ->check(CLI::Range(size_t{1}, size_t{1} << 20))
      ->capture_default_str();
  app.add_option("--host-ca", f.host_ca,
                 "PEM file of CA certificates trusted for https:// hosts besides the system's "
                 "(a private CA); host certificates are always verified (env FUNCKY_HOST_CA)");
  app.add_option("--sync-allow", f.sync_allow,
                 "Target POST /v1/apps/sync may call, as host or host:port (repeatable; env "
                 "FUNCKY_SYNC_ALLOW, comma-separated); unset = any target without "
                 "--signing-key, none with it (the sync's request is signed)");
  app.add_option("--retain", f.retain,
                 "Delete finished runs, and events no kept run refers to, once older than "
                 "this (e.g. 30d; at most 36500d); unset = keep forever");
  app.add_option("--retain-interval", f.retain_interval,
                 "Pause between two retention passes (1ms to 24h)")
      ->capture_default_str();
  app.add_option("--tls-cert", f.tls_cert,
                 "PEM certificate chain: serve HTTPS instead of HTTP (with --tls-key)");
  app.add_option("--tls-key", f.tls_key, "PEM private key of --tls-cert");
  app.add_option("--log-level", f.log_level, "trace, debug, info, warn, error, critical or off")
      ->capture_default_str();
  app.add_option("--log-format", f.log_format,
                 "text, or json: one JSON object per line with run_id, function_id and "
                 "step_id where known")
      ->capture_default_str();
}

// glibc gives the free memory at the top of a thread's heap back to the OS once it passes
// 128 KiB, and any thread of the pool runs the next transaction: SQLite's working memory of a
// transaction was given back after most and faulted in again by the next (66 page faults a
// run, a fifth of an idle coordinator's CPU, with `funcky dev`). Kept up to 8 MiB a heap
// instead, and allocations below 4 MiB come from the heaps (setting the trim threshold stops
// glibc from raising the mmap threshold itself). Left alone when GLIBC_TUNABLES sets malloc's
// own tunables.
void KeepFreedMemory() {
  const char* tunables = std::getenv("GLIBC_TUNABLES");
  if (tunables && std::string_view(tunables).find("glibc.malloc.") != std::string_view::npos) {
    return;
  }
  mallopt(M_TRIM_THRESHOLD, 8 << 20);
  mallopt(M_MMAP_THRESHOLD, 4 << 20);
}

// The non-empty items of a comma-separated list (an environment variable's).
std::vector<std::string> CommaList(std::string_view text) {
  std::vector<std::string> items;
  for (std::string_view rest = text; !rest.empty();) {
    std::string_view item = rest.substr(0, rest.find(','));
    rest.remove_prefix(std::min(rest.size(), item.size() + 1));
    if (!item.empty()) items.emplace_back(item);
  }
  return items;
}

}  // namespace

int main(int argc, char** argv) {
  KeepFreedMemory();
  CLI::App app{"funcky: a durable function coordinator that speaks the Inngest SDK protocol"};
  app.set_version_flag("--version", "funcky " FUNCKY_VERSION);
  app.require_subcommand(1);
  ServeFlags f;
  f.db = EnvOr("FUNCKY_DB", "");
  f.signing_key = EnvOr("FUNCKY_SIGNING_KEY", "");
  f.api_token = EnvOr("FUNCKY_DASHBOARD_TOKEN", EnvOr("FUNCKY_API_TOKEN", ""));
  f.signing_key_fallback = EnvOr("FUNCKY_SIGNING_KEY_FALLBACK", "");
  // Comma-separated: two event keys during a rotation, off the command line.
  f.event_keys = CommaList(EnvOr("FUNCKY_EVENT_KEY", ""));
  f.host_ca = EnvOr("FUNCKY_HOST_CA", "");
  f.sync_allow = CommaList(EnvOr("FUNCKY_SYNC_ALLOW", ""));

  ServeFlags dev_flags = f;
  dev_flags.db = EnvOr("FUNCKY_DB", ".funcky/dev.db");
  auto* serve = app.add_subcommand("serve", "Run the coordinator on PostgreSQL (production)");
  serve->add_option("--db", f.db, "PostgreSQL URL, postgres://user@host:port/db (env FUNCKY_DB)");
  AddServeFlags(*serve, f);
  auto* dev = app.add_subcommand(
      "dev", "Run the coordinator with zero set-up: a SQLite file, dev mode, on 127.0.0.1");
  // No capture_default_str: the default may come from FUNCKY_DB, whose URL may hold a
  // password, and --help would print it. No flag whose env may hold a secret shows its value.
  dev->add_option("--db", dev_flags.db,
                  "SQLite file (created if missing), or a postgres:// URL (env FUNCKY_DB); "
                  "default .funcky/dev.db");
  AddServeFlags(*dev, dev_flags);

  std::string migrate_db = f.db;
  auto* migrate = app.add_subcommand("migrate", "Apply database migrations and exit");
  migrate->add_option("--db", migrate_db, "PostgreSQL URL or SQLite file (env FUNCKY_DB)");

  // A bad flag is a usage error, exit 2 as for the checks below and in Serve (CLI11's own
  // codes are 100 and up); --help and --version exit 0.
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : 2;
  }
  if (*dev) f = dev_flags;
  auto log_format = logging::ParseFormat(f.log_format);
  if (!log_format.ok()) {
    std::fprintf(stderr, "%s\n", log_format.status().message().c_str());
    return 2;
  }
  const std::optional<spdlog::level::level_enum> log_level = ParseLogLevel(f.log_level);
  if (!log_level) {
    std::fprintf(stderr, "--log-level must be trace, debug, info, warn, error, critical or off\n");
    return 2;
  }
  logging::Setup(*log_format);
  spdlog::set_level(*log_level);
  if (*migrate) {
    if (migrate_db.empty()) {
      spdlog::error("no database: pass --db postgres://… (or set FUNCKY_DB)");
      return 2;
    }
    return Migrate(migrate_db);
  }
  return Serve(f, /*dev=*/static_cast<bool>(*dev));
}
