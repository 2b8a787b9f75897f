// POST /fn/register: an SDK syncs its app (docs/protocol.md §2.1, §2.2).
#include "common/crypto.h"
#include "common/http_client.h"
#include "common/jcs.h"
#include "common/signing.h"
#include "common/url.h"
#include "coordinator/api/api.h"
#include "coordinator/api/json_views.h"
#include "coordinator/scheduler/backoff.h"
#include "coordinator/scheduler/flow.h"

#include <algorithm>
#include <set>

#include <spdlog/spdlog.h>

namespace funcky::api {

using http::JsonResponse;
using http::Request;
using http::Response;
using store::Json;

namespace {

// The longest app or function id: ids are keys of the store's indexes, whose entries
// PostgreSQL bounds (about 2.7 kB).
constexpr size_t kMaxIdBytes = 256;
// The most triggers a function may have (Inngest's limit too): each event is matched against
// every trigger of every function.
constexpr size_t kMaxTriggers = 10;
// The most functions an app may have: each event is matched against all of them, and a sync
// checks and writes each in one transaction.
constexpr size_t kMaxFunctions = 1000;

// The SDK reads `status` and `error` from the body, not the HTTP status: always send both.
Response RegisterError(int status, std::string_view code, const std::string& message) {
  return JsonResponse(status, {{"status", status}, {"error", message}, {"code", code}});
}

// A step URL may be relative to the app's URL (RFC 3986 resolution); it is stored absolute
// and normalised, so calls go where the app said.
Status ResolveStepUrl(Json& fn, const std::string& app_url) {
  if (!fn.is_object() || !fn.contains("steps") || !fn["steps"].is_object()) return Status::Ok();
  for (auto& step : fn["steps"]) {
    if (!step.is_object() || !step.contains("runtime") || !step["runtime"].is_object()) continue;
    Json& url = step["runtime"]["url"];
    if (!url.is_string()) continue;
    auto resolved = ResolveUrl(app_url, url.get<std::string>());
    if (!resolved.ok()) {
      std::string id = fn.contains("id") && fn["id"].is_string() ? fn["id"].get<std::string>() : "";
      return InvalidArgument("function \"" + id +
                             "\": steps.step.runtime.url: " + resolved.status().message());
    }
    url = *resolved;
  }
  return Status::Ok();
}

Status ValidateFunction(const Json& fn, size_t index) {
  std::string where = "functions[" + std::to_string(index) + "]";
  if (!fn.is_object()) return InvalidArgument(where + " is not an object");
  auto id = fn.find("id");
  if (id == fn.end() || !id->is_string() || id->get_ref<const std::string&>().empty()) {
    return InvalidArgument(where + ".id must be a non-empty string");
  }
  if (id->get_ref<const std::string&>().size() > kMaxIdBytes) {
    return InvalidArgument(where + ".id is longer than " + std::to_string(kMaxIdBytes) + " bytes");
  }
  where = "function \"" + id->get<std::string>() + "\"";
  if (auto name = fn.find("name"); name != fn.end() && !name->is_null() && !name->is_string()) {
    return InvalidArgument(where + ": name must be a string");
  }
  auto triggers = fn.find("triggers");
  if (triggers == fn.end() || !triggers->is_array()) {
    return InvalidArgument(where + ": triggers must be an array");
  }
  if (triggers->size() > kMaxTriggers) {
    return InvalidArgument(where + ": " + std::to_string(triggers->size()) +
                           " triggers; a function has at most " + std::to_string(kMaxTriggers));
  }
  for (const auto& t : *triggers) {
    if (!t.is_object()) return InvalidArgument(where + ": each trigger must be an object");
    bool has_event = t.contains("event") && t["event"].is_string() &&
                     !t["event"].get_ref<const std::string&>().empty();
    bool has_cron = t.contains("cron") && t["cron"].is_string();
    if (!has_event && !has_cron) {
      return InvalidArgument(where + ": a trigger needs a non-empty \"event\" or \"cron\"");
    }
  }
  // One step, as the SDKs send it: {id, name, runtime: {type: "http", url}, retries:
  // {attempts}}. Funcky calls that step's URL; anything else in it would be ignored.
  auto steps = fn.find("steps");
  if (steps == fn.end() || !steps->is_object() || steps->size() != 1) {
    return InvalidArgument(where + ": steps must be an object with one step");
  }
  const Json& step = steps->begin().value();
  // Named by its key in messages unless the key is too long to quote.
  const std::string& step_key = steps->begin().key();
  const std::string step_where = where + ": steps." + (step_key.size() <= 64 ? step_key : "step");
  if (!step.is_object() || !step.contains("runtime") || !step["runtime"].is_object() ||
      !step["runtime"].contains("url") || !step["runtime"]["url"].is_string()) {
    return InvalidArgument(step_where + ".runtime.url must be a string");
  }
  RETURN_IF_ERROR(scheduler::OnlyKnownKeys(step, step_where, {"id", "name", "runtime", "retries"}));
  RETURN_IF_ERROR(
      scheduler::OnlyKnownKeys(step["runtime"], step_where + ".runtime", {"type", "url"}));
  if (const Json& type = step["runtime"].value("type", Json()); !type.is_null() && type != "http") {
    const bool quotable = type.is_string() && type.get_ref<const std::string&>().size() <= 32;
    return InvalidArgument(step_where + ".runtime.type " + (quotable ? type.dump() + " " : "") +
                           "is not implemented by Funcky: it calls the step's URL over HTTP "
                           "(\"http\"); Inngest Connect's WebSocket workers are not supported");
  }
  if (auto u = ParseUrl(step["runtime"]["url"].get<std::string>()); !u.ok()) {
    return InvalidArgument(where + ": " + u.status().message());
  }
  if (step.contains("retries") && !step["retries"].is_null()) {
    // Refused rather than clamped or wrapped: 4294967297 read as an int would be 1.
    const Json& r = step["retries"];
    if (!r.is_object() || (r.contains("attempts") &&
                           !scheduler::IsIntegerIn(r["attempts"], 0, scheduler::kMaxRetries))) {
      return InvalidArgument(step_where + ".retries.attempts must be an integer from 0 to " +
                             std::to_string(scheduler::kMaxRetries));
    }
    RETURN_IF_ERROR(scheduler::OnlyKnownKeys(r, step_where + ".retries", {"attempts"}));
  }
  return Status::Ok();
}

bool SyncTargetAllowed(const Url& u, const std::vector<SyncTarget>& allow) {
  if (allow.empty()) return true;
  return std::any_of(allow.begin(), allow.end(), [&](const SyncTarget& t) {
    return t.host == u.host && (!t.port || *t.port == u.port);
  });
}

// The first place an in-band sync reply would send calls (its url, each step's url resolved
// against it) that `allow` does not list, as host:port; nothing when it lists them all. URLs
// that do not parse are left to SyncApp, which refuses them.
std::optional<std::string> TargetNotAllowed(const Json& registration,
                                            const std::vector<SyncTarget>& allow) {
  const Json& app_url = registration["url"];
  if (!app_url.is_string()) return std::nullopt;
  auto refused = [&](const std::string& url) -> std::optional<std::string> {
    auto u = ParseUrl(url);
    if (!u.ok() || SyncTargetAllowed(*u, allow)) return std::nullopt;
    return u->authority();
  };
  if (auto target = refused(app_url.get<std::string>())) return target;
  const Json& functions = registration["functions"];
  if (!functions.is_array()) return std::nullopt;
  for (const Json& fn : functions) {
    if (!fn.is_object() || !fn.contains("steps") || !fn["steps"].is_object()) continue;
    for (const Json& step : fn["steps"]) {
      if (!step.is_object() || !step.contains("runtime") || !step["runtime"].is_object()) continue;
      const Json& url = step["runtime"].value("url", Json());
      if (!url.is_string()) continue;
      auto resolved = ResolveUrl(app_url.get<std::string>(), url.get<std::string>());
      if (!resolved.ok()) continue;
      if (auto target = refused(*resolved)) return target;
    }
  }
  return std::nullopt;
}

}  // namespace

Result<SyncTarget> ParseSyncTarget(std::string_view entry) {
  auto refuse = [&] {
    return InvalidArgument("\"" + std::string(entry) +
                           "\" is not a host or host:port (IPv6 in brackets)");
  };
  if (entry.empty() || entry.find_first_of("/@?#") != std::string_view::npos) return refuse();
  // Parsed as a URL's authority, so hosts compare as sync URLs are normalised (lower case,
  // IPv6 without brackets).
  auto u = ParseUrl("http://" + std::string(entry) + "/");
  if (!u.ok()) return refuse();
  const size_t host_end = entry.front() == '[' ? entry.find(']') : 0;
  const bool has_port = entry.find(':', host_end) != std::string_view::npos;
  return SyncTarget{u->host, has_port ? std::optional<uint16_t>(u->port) : std::nullopt};
}

std::string Api::SigningKeyRefusal() const {
  if (options_.signing_key.empty()) {
    return "without --signing-key, this route answers only a Host that names this machine "
           "(localhost, 127.0.0.1, ::1)";
  }
  return "invalid or missing signing key";
}

bool Api::SigningKeyAccepted(const Request& req) const {
  if (options_.signing_key.empty()) {
    return !options_.keyless_routes_loopback_only || http::HostIsLoopback(req);
  }
  std::string_view token = req.bearer_token();
  bool ok = signing::BearerMatchesSigningKey(token, options_.signing_key);
  if (!options_.signing_key_fallback.empty()) {
    ok |= signing::BearerMatchesSigningKey(token, options_.signing_key_fallback);
  }
  return ok;
}

Response Api::AsRegisterError(Response refused) {
  auto body = http::ParseJsonBody(refused.body);
  if (!body.ok() || !body->is_object() || !(*body)["error"].is_object()) return refused;
  const Json& error = (*body)["error"];
  return RegisterError(refused.status, error.value("code", std::string("error")),
                       error.value("message", std::string()));
}

std::optional<Response> Api::RefuseRegister(const Request& req) const {
  if (!SigningKeyAccepted(req)) return RegisterError(401, "unauthenticated", SigningKeyRefusal());
  return std::nullopt;
}

Response Api::HandleRegister(const Request& req) {
  auto body = http::ParseJsonBody(req.body);
  if (!body.ok()) return RegisterError(400, "invalid_argument", body.status().message());
  auto synced = SyncApp(*body);
  if (!synced.ok()) {
    const Status& s = synced.status();
    return RegisterError(
        http::HttpStatusFor(s.code()),
        s.code() == StatusCode::kFailedPrecondition ? "conflict" : StatusCodeName(s.code()),
        s.message());
  }
  return JsonResponse(
      200,
      {{"ok", true}, {"modified", synced->modified}, {"status", 200}, {"app_id", synced->app_id}});
}

Response Api::HandleSyncAppUrl(const Request& req) {
  auto body = http::ParseJsonBody(req.body);
  if (!body.ok()) return http::ErrorResponse(body.status());
  if (!body->is_object() || !body->contains("url") || !(*body)["url"].is_string()) {
    return http::ErrorResponse(InvalidArgument("body must be {\"url\": \"<app serve URL>\"}"));
  }
  const std::string url = (*body)["url"].get<std::string>();
  auto target = ParseUrl(url);
  if (!target.ok()) {
    return http::ErrorResponse(InvalidArgument("url: " + target.status().message()));
  }
  if (!options_.signing_key.empty() && options_.sync_allow.empty()) {
    // The PUT below is signed, and any app of the key takes a signed PUT's `url` as its own
    // (the JS SDK does): sent to a URL anyone may name, it would be passed on to a real app,
    // whose signed answer then registers the passer's URL for that app's calls.
    return http::ErrorResponse(
        403, "forbidden",
        "in-band sync with a signing key needs --sync-allow (the hosts of your apps): a signed "
        "sync request sent to any URL could be passed on to one of your apps, which would then "
        "register that URL as its own");
  }
  if (!SyncTargetAllowed(*target, options_.sync_allow)) {
    return http::ErrorResponse(
        403, "forbidden",
        target->authority() + " is not in --sync-allow: the coordinator may not sync an app there");
  }
  // In-band sync (docs/protocol.md §2.3): the app answers the PUT with its functions.
  const std::string put_body = Json{{"url", url}}.dump();
  HttpRequest put;
  put.method = "PUT";
  put.url = url;
  put.body = put_body;
  put.timeout = std::chrono::seconds(10);
  put.headers = {{"Content-Type", "application/json"}, {"X-Inngest-Sync-Kind", "in_band"}};
  if (!options_.signing_key.empty()) {
    put.headers.emplace_back(
        "X-Inngest-Signature",
        signing::SignatureHeader(put_body, options_.signing_key, UnixSeconds(clock_.Now())));
  } else {
    put.headers.emplace_back("X-Inngest-Server-Kind", "dev");
  }
  // The app's reply is held to the limits of a request body (it becomes the same config),
  // and read no further than that.
  auto reply = HttpCall(
      put, {.max_response_bytes = options_.max_body_bytes, .ca_file = options_.host_ca_file});
  if (!reply.ok() && reply.status().code() == StatusCode::kResourceExhausted) {
    return http::ErrorResponse(InvalidArgument("the app's sync reply is larger than " +
                                               std::to_string(options_.max_body_bytes) +
                                               " bytes (--max-body-bytes)"));
  }
  // One text for every way a connection fails (refused, reset, timeout, TLS, DNS) and only
  // the status of a reply, never its body: the caller must not learn through this route
  // which ports are open or what a service that is not an app says.
  if (!reply.ok()) {
    spdlog::warn("sync of the app at {}: {}", UrlForLog(url), reply.status().ToString());
    return http::ErrorResponse(502, "bad_gateway",
                               "cannot sync the app at " + url + ": no valid answer");
  }
  if (reply->status != 200) {
    spdlog::warn("sync of the app at {}: HTTP {}", UrlForLog(url), reply->status);
    return http::ErrorResponse(
        502, "bad_gateway",
        "cannot sync the app at " + url + ": it answered HTTP " + std::to_string(reply->status));
  }
  if (reply->header("X-Inngest-Sync-Kind") != "in_band") {
    // The app registered itself through /fn/register instead (in-band sync turned off).
    return JsonResponse(200, {{"data", {{"url", url}, {"sync_kind", "out_of_band"}}}});
  }
  // With a signing key, an app's reply is signed with it as every SDK signs its answers to
  // a signed request: an unsigned reply comes from something that does not hold the key (a
  // service at that URL that is not the app, or one in between), whose functions would be
  // registered as the app's, as /fn/register refuses them without the key.
  if (!options_.signing_key.empty()) {
    std::vector<std::string> keys = {options_.signing_key};
    if (!options_.signing_key_fallback.empty()) keys.push_back(options_.signing_key_fallback);
    Status signed_by_key = signing::VerifySignature(reply->header("X-Inngest-Signature"),
                                                    reply->body, keys, UnixSeconds(clock_.Now()));
    if (!signed_by_key.ok()) {
      spdlog::warn("sync of the app at {}: the reply is not signed with the signing key: {}",
                   UrlForLog(url), signed_by_key.message());
      return http::ErrorResponse(502, "bad_gateway",
                                 "cannot sync the app at " + url +
                                     ": its reply is not signed with the signing key "
                                     "(--signing-key or --signing-key-fallback)");
    }
  }
  auto parsed = http::ParseJsonBody(reply->body);
  if (!parsed.ok()) {
    return http::ErrorResponse(
        InvalidArgument("the app's sync reply: " + parsed.status().message()));
  }
  const Json& app = *parsed;
  if (!app.is_object()) {
    return http::ErrorResponse(502, "bad_gateway", "the app's sync reply is not a JSON object");
  }
  // Its fields as the SDKs send them; one of another type is the reply's fault, named.
  std::string mistyped;
  auto text = [&](const char* key, const std::string& absent) -> Json {
    auto it = app.find(key);
    if (it == app.end()) return absent;
    if (!it->is_string() && mistyped.empty()) mistyped = key;
    return *it;
  };
  Json registration = {{"url", text("url", url)},
                       {"appName", text("app_id", std::string())},
                       {"sdk", text("sdk", std::string())},
                       {"framework", text("framework", std::string())},
                       {"functions", app.value("functions", Json::array())}};
  if (!mistyped.empty()) {
    return http::ErrorResponse(
        InvalidArgument("the app's sync reply: " + mistyped + " must be a string"));
  }
  // Where the reply sends calls is held to the policy the sync itself is.
  if (auto target = TargetNotAllowed(registration, options_.sync_allow)) {
    spdlog::warn("sync of the app at {}: its reply sends calls to {}, not in --sync-allow",
                 UrlForLog(url), UrlForLog(*target));
    return http::ErrorResponse(
        403, "forbidden",
        "the app's sync reply sends calls to " + *target + ", which is not in --sync-allow");
  }
  auto synced = SyncApp(registration);
  if (!synced.ok()) return http::ErrorResponse(synced.status());
  return JsonResponse(200, {{"data",
                             {{"app_id", synced->app_id},
                              {"url", registration["url"]},
                              {"functions", synced->functions},
                              {"modified", synced->modified},
                              {"sync_kind", "in_band"}}}});
}

Response Api::HandleListApps(const Request& req) {
  auto apps = stores_.apps.ListApps();
  if (!apps.ok()) return http::ErrorResponse(apps.status());
  Json data = Json::array();
  for (const auto& a : *apps) {
    data.push_back({{"id", a.id},
                    {"url", a.url},
                    {"sdk", a.sdk},
                    {"framework", a.framework},
                    {"created_at", FormatRfc3339(a.created_at_ms)},
                    {"synced_at", FormatRfc3339(a.synced_at_ms)}});
  }
  return JsonResponse(200, {{"data", data}});
}

Result<Api::SyncOutcome> Api::SyncApp(const Json& b) {
  if (!b.is_object()) return InvalidArgument("body must be a JSON object");
  auto str = [&](const char* key) -> std::optional<std::string> {
    auto it = b.find(key);
    if (it == b.end() || !it->is_string()) return std::nullopt;
    return it->get<std::string>();
  };
  auto url = str("url");
  if (!url || url->empty()) return InvalidArgument("url must be a string");
  if (auto u = ParseUrl(*url); !u.ok()) return InvalidArgument("url: " + u.status().message());
  auto app_name = str("appName");
  if (!app_name || app_name->empty()) return InvalidArgument("appName must be a non-empty string");
  if (app_name->size() > kMaxIdBytes) {
    return InvalidArgument("appName is longer than " + std::to_string(kMaxIdBytes) + " bytes");
  }
  auto functions = b.find("functions");
  if (functions == b.end() || !functions->is_array()) {
    return InvalidArgument("functions must be an array");
  }
  if (functions->size() > kMaxFunctions) {
    return InvalidArgument(std::to_string(functions->size()) + " functions; an app has at most " +
                           std::to_string(kMaxFunctions));
  }
  store::AppSync sync;
  std::set<std::string> seen;
  for (size_t i = 0; i < functions->size(); ++i) {
    Json fn = (*functions)[i];
    RETURN_IF_ERROR(ResolveStepUrl(fn, *url));
    RETURN_IF_ERROR(ValidateFunction(fn, i));
    std::string id = fn["id"].get<std::string>();
    if (!seen.insert(id).second) {
      return InvalidArgument("function \"" + id + "\" is listed twice");
    }
    auto flow = scheduler::ParseFlowControl(fn);
    if (!flow.ok()) return InvalidArgument("function \"" + id + "\": " + flow.status().message());
    store::FunctionRecord record;
    record.id = id;
    record.concurrency_limit = flow->function_limit;
    record.key_concurrency_limit = flow->key_limit;
    record.key_concurrency_limit2 = flow->key_limit2;
    record.app_id = *app_name;
    record.name =
        fn.contains("name") && fn["name"].is_string() ? fn["name"].get<std::string>() : id;
    record.config = fn;
    for (const scheduler::CancelOn& on : flow->cancel) {
      if (on.condition) sync.cancel_rules[id].push_back(on.id);
    }
    store::AppSync::LaneTimeouts& lanes = sync.lane_timeouts[id];
    if (flow->lane_key && flow->head_timeout) lanes.head_timeout_ms = flow->head_timeout->count();
    if (flow->lane_key && flow->sequence)
      lanes.gap_timeout_ms = flow->sequence->gap_timeout.count();
    sync.functions.push_back(std::move(record));
  }
  const TimePoint now = clock_.Now();
  sync.app.id = *app_name;
  sync.app.url = *url;
  sync.app.sdk = str("sdk").value_or("");
  sync.app.framework = str("framework").value_or("");
  ASSIGN_OR_RETURN(std::string canonical,
                   CanonicalJson(Json{{"url", *url}, {"functions", *functions}}));
  sync.app.checksum = crypto::Sha256Hex(canonical);
  sync.app.synced_at_ms = UnixMillis(now);
  sync.app.created_at_ms = UnixMillis(now);

  auto result = stores_.apps.SyncApp(sync);
  if (!result.ok()) {
    const Status& s = result.status();
    if (s.code() == StatusCode::kFailedPrecondition) return s;
    spdlog::error("sync of app {} failed: {}", *app_name, s.ToString());
    return s.code() == StatusCode::kInternal ? Internal("internal error") : s;
  }
  (void)intake_.Functions(/*refresh=*/true);
  spdlog::info("app {} synced from {}: {} function(s){}", *app_name, UrlForLog(*url),
               sync.functions.size(), result->modified ? "" : " (unchanged)");
  return SyncOutcome{*app_name, static_cast<int>(sync.functions.size()), result->modified};
}

}  // namespace funcky::api
