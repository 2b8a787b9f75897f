#include "coordinator/api/api.h"

#include <spdlog/spdlog.h>

#include "common/crypto.h"

namespace funcky::api {

using http::ErrorResponse;
using http::JsonResponse;
using http::Request;
using http::Response;

Api::Api(ApiOptions options, ApiStores stores, const Clock& clock, intake::Intake& intake,
         metrics::Metrics& metrics, std::function<int64_t()> calls_in_flight)
    : options_(std::move(options)),
      stores_(stores),
      clock_(clock),
      intake_(intake),
      metrics_(metrics),
      calls_in_flight_(std::move(calls_in_flight)),
      queue_gauges_([this] { return stores_.queue.GetQueueStats(clock_.Now()); }) {}

void Api::Register(http::Router& router) {
  auto guard = [this](const Request& r) { return CheckApiToken(r); };
  router.Protect("/v1", guard);
  router.Protect("/metrics", guard);
  router.Protect("/readyz", guard);
  router.Add(
      "POST", "/fn/register", [this](const Request& r) { return HandleRegister(r); },
      http::Access::kGuarded, [this](const Request& r) { return RefuseRegister(r); });
  router.ShapeRefusals("/fn/register", &Api::AsRegisterError);
  router.Add("GET", "/v1/apps", [this](const Request& r) { return HandleListApps(r); });
  router.Add("POST", "/v1/apps/sync", [this](const Request& r) { return HandleSyncAppUrl(r); });
  router.Add(
      "POST", "/e/{key}", [this](const Request& r) { return HandleEvents(r); },
      http::Access::kGuarded, [this](const Request& r) { return RefuseEvents(r, r.param("key")); });
  // Event intake authenticates by its event key instead of the API token.
  router.Add(
      "POST", "/v1/events", [this](const Request& r) { return HandleEvents(r); },
      http::Access::kPublic,
      [this](const Request& r) { return RefuseEvents(r, r.bearer_token()); });
  // SDKs authenticate by the signing key, as on /fn/register.
  router.Add(
      "POST", "/v1/checkpoint/{id}/async", [this](const Request& r) { return HandleCheckpoint(r); },
      http::Access::kPublic,
      [this](const Request& r) {
        // Refused before the handler: counted here, as the handler counts its answers.
        auto refused = RefuseCheckpoint(r);
        if (refused) metrics_.CheckpointAnswered("unauthenticated");
        return refused;
      });
  // Also the SDK's: step.sendSignal and inngest.sendSignal post here with the signing key.
  router.Add(
      "POST", "/v1/signals", [this](const Request& r) { return HandleSignal(r); },
      http::Access::kPublic, [this](const Request& r) { return RefuseSignal(r); });
  router.Add("GET", "/v1/events", [this](const Request& r) { return HandleListEvents(r); });
  router.Add("GET", "/v1/events/{id}", [this](const Request& r) { return HandleGetEvent(r); });
  router.Add("GET", "/v1/runs", [this](const Request& r) { return HandleListRuns(r); });
  router.Add("GET", "/v1/runs/{id}", [this](const Request& r) { return HandleGetRun(r); });
  router.Add("POST", "/v1/runs/{id}/cancel",
             [this](const Request& r) { return HandleCancelRun(r); });
  router.Add("POST", "/v1/runs/{id}/replay",
             [this](const Request& r) { return HandleReplayRun(r); });
  router.Add("GET", "/v1/functions", [this](const Request& r) { return HandleListFunctions(r); });
  router.Add("GET", "/v1/lanes", [this](const Request& r) { return HandleListLanes(r); });
  router.Add("GET", "/v1/lanes/{function}/{key}/gaps",
             [this](const Request& r) { return HandleListLaneGaps(r); });
  router.Add("POST", "/v1/lanes/{function}/{key}/skip-head",
             [this](const Request& r) { return HandleSkipLaneHead(r); });
  router.Add("POST", "/v1/lanes/{function}/{key}/retry-head",
             [this](const Request& r) { return HandleRetryLaneHead(r); });
  router.Add("POST", "/v1/lanes/{function}/{key}/set-next",
             [this](const Request& r) { return HandleSetLaneNext(r); });
  router.Add("GET", "/healthz", [this](const Request& r) { return HandleHealth(r); });
  router.Add("GET", "/readyz", [this](const Request& r) { return HandleReady(r); });
  router.Add("GET", "/metrics", [this](const Request& r) { return HandleMetrics(r); });
  router.Add("GET", "/", [this](const Request& r) { return HandleIndex(r); });
  router.Add("GET", "/dashboard/{file}",
             [this](const Request& r) { return HandleDashboardFile(r); });
}

bool Api::EventKeyAccepted(std::string_view key) const {
  if (options_.event_keys.empty()) return true;
  bool ok = false;
  for (const auto& k : options_.event_keys) ok |= crypto::SecretEqual(key, k);
  return ok;
}

std::optional<Response> Api::CheckApiToken(const Request& req) const {
  if (options_.api_token.empty()) return std::nullopt;
  if (crypto::SecretEqual(req.bearer_token(), options_.api_token)) return std::nullopt;
  return ErrorResponse(401, "unauthenticated",
                       "a valid API token is required (Authorization: Bearer …)");
}

Response Api::HandleHealth(const Request&) { return JsonResponse(200, {{"status", "ok"}}); }

Response Api::HandleReady(const Request&) {
  if (draining_) return ErrorResponse(Unavailable("draining: the coordinator is stopping"));
  Status s = stores_.health.Ping();
  if (!s.ok()) {
    // The driver's text may name hosts and users: it goes to the log, not to the caller.
    spdlog::warn("readyz: database not reachable: {}", s.ToString());
    return ErrorResponse(Unavailable("database not reachable"));
  }
  return JsonResponse(200, {{"status", "ready"}});
}

Response Api::HandleMetrics(const Request&) {
  std::optional<store::QueueStats> stats;
  if (auto s = queue_gauges_.Get(); s.ok()) {
    stats = *s;
  } else {
    spdlog::warn("metrics: cannot read queue gauges: {}", s.status().ToString());
  }
  std::string out = metrics_.Render(stats, calls_in_flight_ ? calls_in_flight_() : 0,
                                    stores_.health.RoundTrips());
  Response r;
  r.status = 200;
  r.headers.emplace_back("Content-Type", "text/plain; version=0.0.4");
  r.body = std::move(out);
  return r;
}

}  // namespace funcky::api
