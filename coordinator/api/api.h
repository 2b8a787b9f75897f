// The coordinator's HTTP API (README "HTTP API"): SDK sync, event
// intake, the runs API, health and metrics. Handlers are plain functions of a Request
// (coordinator/http/router.h); they block on the store and run on the blocking pool.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/clock.h"
#include "coordinator/executor/call.h"
#include "coordinator/http/router.h"
#include "coordinator/intake/intake.h"
#include "coordinator/metrics/metrics.h"
#include "coordinator/store/store.h"

namespace funcky::api {

// An entry of --sync-allow: a host (any port) or a host and port.
struct SyncTarget {
  std::string host;  // lower case; an IPv6 literal without its brackets
  std::optional<uint16_t> port;
};
// Parses "host", "host:port", "[v6]" or "[v6]:port"; kInvalidArgument for anything else
// (a scheme, a path, credentials, a port outside 1..65535).
Result<SyncTarget> ParseSyncTarget(std::string_view entry);

struct ApiOptions {
  bool dev_mode = false;
  // Accepted event keys; empty: any key is accepted (dev mode, or an open coordinator).
  std::vector<std::string> event_keys;
  // Signing key (and fallback) that SDKs prove with their bearer token on /fn/register and
  // checkpoints. Empty: those are not authenticated.
  std::string signing_key;
  std::string signing_key_fallback;
  // Bearer token required on /v1/* (but event intake), /metrics and /readyz; empty: open.
  std::string api_token;
  // For a loopback listener with an API token, where the router answers every Host (a proxy
  // may pass another name): a route whose own key is not set (/fn/register, checkpoints and
  // signals without a signing key, event intake without event keys) still answers only a
  // Host that names this machine, so that a web page whose name resolves to 127.0.0.1 (DNS
  // rebinding) cannot register an app or send events.
  bool keyless_routes_loopback_only = false;
  // CA file trusted for in-band sync of https:// apps (--host-ca), besides the system's.
  std::string host_ca_file;
  // The only targets in-band sync (POST /v1/apps/sync) may call; empty: any. The route is
  // behind api_token, but a token holder should not reach every port the coordinator can.
  std::vector<SyncTarget> sync_allow;
  size_t max_events_per_request = 5000;
  size_t max_event_bytes = 512 << 10;
  // The largest request body (--max-body-bytes): an app's in-band sync reply, which becomes
  // the same config as a /fn/register body, is held to it too.
  size_t max_body_bytes = 3 << 20;
  // The most steps a run may have (--max-steps-per-run): a checkpoint that would take a run
  // past them is refused (422); the host then answers its call with the step, and the run
  // fails before its next call (docs/protocol.md §5.6).
  int64_t step_limit = executor::kDefaultStepLimit;
};

// The parts of the store the API reads and changes, each by its role: the HTTP API cannot
// claim, apply, cancel behind intake's back or delete.
struct ApiStores {
  store::AppRegistry& apps;   // sync, apps and functions
  store::EventStore& events;  // the events API (intake stores events itself)
  store::RunReader& runs;     // runs, steps and attempts
  store::LaneStore& lanes;    // lanes, skip-head and retry-head
  store::QueueStore& queue;   // the queue and lane gauges of /metrics
  store::Health& health;      // /readyz
  store::WaitStore& waits;    // signals
  static ApiStores Of(store::Store& s) { return {s, s, s, s, s, s, s}; }
};

class Api {
 public:
  // Events enter through `intake`, which also wakes executors. /metrics renders `metrics`
  // with the calls in flight that `calls_in_flight` counts.
  Api(ApiOptions options, ApiStores stores, const Clock& clock, intake::Intake& intake,
      metrics::Metrics& metrics, std::function<int64_t()> calls_in_flight = {});

  // Adds every route, and the API token's guard over /v1 (event intake excepted), /metrics
  // and /readyz.
  void Register(http::Router& router);

  http::Response HandleRegister(const http::Request& req);
  http::Response HandleSyncAppUrl(const http::Request& req);
  http::Response HandleListApps(const http::Request& req);
  http::Response HandleEvents(const http::Request& req);  // its key checked by RefuseEvents
  http::Response HandleCheckpoint(const http::Request& req);
  http::Response HandleSignal(const http::Request& req);
  http::Response HandleListRuns(const http::Request& req);
  http::Response HandleGetRun(const http::Request& req);
  http::Response HandleCancelRun(const http::Request& req);
  http::Response HandleReplayRun(const http::Request& req);
  http::Response HandleListEvents(const http::Request& req);
  http::Response HandleGetEvent(const http::Request& req);
  http::Response HandleListFunctions(const http::Request& req);
  http::Response HandleListLanes(const http::Request& req);
  http::Response HandleSkipLaneHead(const http::Request& req);
  http::Response HandleListLaneGaps(const http::Request& req);
  http::Response HandleRetryLaneHead(const http::Request& req);
  http::Response HandleSetLaneNext(const http::Request& req);
  http::Response HandleHealth(const http::Request& req);
  http::Response HandleReady(const http::Request& req);
  // The coordinator is stopping (SIGTERM): /readyz answers 503 from now on, so that a load
  // balancer sends its traffic elsewhere while the calls in flight finish. Thread-safe.
  void SetDraining() { draining_ = true; }
  http::Response HandleMetrics(const http::Request& req);
  http::Response HandleIndex(const http::Request& req);  // the dashboard
  http::Response HandleDashboardFile(const http::Request& req);

 private:
  std::atomic<bool> draining_{false};
  struct SyncOutcome {
    std::string app_id;
    int functions = 0;
    bool modified = false;
  };
  // Checks a register body (docs/protocol.md §2.1) and stores the app and its functions.
  Result<SyncOutcome> SyncApp(const store::Json& body);
  bool EventKeyAccepted(std::string_view key) const;
  // A route's refusal of its caller, from the request line and headers alone: the router runs
  // it before the route's handler (Router::Add's `refuse`), and before the server reads a
  // large body (Router::Screen), so that a caller without the key cannot hold the bodies'
  // budget. nullopt: accepted.
  std::optional<http::Response> RefuseRegister(const http::Request& req) const;
  // A refusal of /fn/register in the shape the SDKs read (`status`, and `error` a string),
  // from the router's `{"error": {"code", "message"}}`; another shape is left as it is.
  static http::Response AsRegisterError(http::Response refused);
  std::optional<http::Response> RefuseEvents(const http::Request& req, std::string_view key) const;
  std::optional<http::Response> RefuseCheckpoint(const http::Request& req) const;
  std::optional<http::Response> RefuseSignal(const http::Request& req) const;
  // HandleCheckpoint's answer, before it is counted.
  http::Response AnswerCheckpoint(const http::Request& req);
  // Whether an SDK's request proves the signing key (or its fallback) with its bearer token,
  // as /fn/register and checkpoints must; true when no signing key is set.
  bool SigningKeyAccepted(const http::Request& req) const;
  // Why SigningKeyAccepted refused a request, for its 401.
  std::string SigningKeyRefusal() const;
  // nullopt when the request may use /v1/*, else the 401 to send.
  std::optional<http::Response> CheckApiToken(const http::Request& req) const;
  // skip-head and retry-head: runs `op` (function, key) on the lane named by the path and
  // answers alike.
  using LaneHeadOp =
      std::function<Result<std::string>(const std::string& function_id, const std::string& key)>;
  // `done_before` (read after `op`): the head had been skipped already (a request sent again),
  // whose end was announced then.
  http::Response LaneHeadAction(const http::Request& req, const LaneHeadOp& op, bool skip,
                                std::string_view done, std::string_view result_field,
                                const bool* done_before = nullptr);

  ApiOptions options_;
  ApiStores stores_;
  const Clock& clock_;
  intake::Intake& intake_;
  metrics::Metrics& metrics_;
  std::function<int64_t()> calls_in_flight_;
  metrics::QueueGauges queue_gauges_;
};

}  // namespace funcky::api
