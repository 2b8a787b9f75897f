// POST /fn/register: an SDK syncs its app (PROTOCOL.md §2.2, §2.3).
#include "common/crypto.h"
#include "common/jcs.h"
#include "common/signing.h"
#include "common/url.h"
#include "coordinator/api/api.h"

#include <set>

#include <spdlog/spdlog.h>

namespace funcky::api {

using http::JsonResponse;
using http::Request;
using http::Response;
using store::Json;

namespace {

// The SDK reads `status` and `error` from the body, not the HTTP status: always send both.
Response RegisterError(int status, std::string_view code, const std::string& message) {
  return JsonResponse(status, {{"status", status}, {"error", message}, {"code", code}});
}

Status ValidateFunction(const Json& fn, size_t index) {
  std::string where = "functions[" + std::to_string(index) + "]";
  if (!fn.is_object()) return InvalidArgument(where + " is not an object");
  auto id = fn.find("id");
  if (id == fn.end() || !id->is_string() || id->get_ref<const std::string&>().empty()) {
    return InvalidArgument(where + ".id must be a non-empty string");
  }
  where = "function \"" + id->get<std::string>() + "\"";
  if (auto name = fn.find("name"); name != fn.end() && !name->is_string()) {
    return InvalidArgument(where + ": name must be a string");
  }
  auto triggers = fn.find("triggers");
  if (triggers == fn.end() || !triggers->is_array()) {
    return InvalidArgument(where + ": triggers must be an array");
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
  auto steps = fn.find("steps");
  if (steps == fn.end() || !steps->is_object() || steps->empty()) {
    return InvalidArgument(where + ": steps must be an object with one step");
  }
  const Json& step = steps->begin().value();
  if (!step.is_object() || !step.contains("runtime") || !step["runtime"].is_object() ||
      !step["runtime"].contains("url") || !step["runtime"]["url"].is_string()) {
    return InvalidArgument(where + ": steps.step.runtime.url must be a string");
  }
  if (auto u = ParseUrl(step["runtime"]["url"].get<std::string>()); !u.ok()) {
    return InvalidArgument(where + ": " + u.status().message());
  }
  if (step.contains("retries")) {
    const Json& r = step["retries"];
    if (!r.is_object() || (r.contains("attempts") && !r["attempts"].is_number_integer())) {
      return InvalidArgument(where + ": steps.step.retries.attempts must be an integer");
    }
  }
  return Status::Ok();
}

}  // namespace

Response Api::HandleRegister(const Request& req) {
  if (!options_.signing_key.empty()) {
    std::string_view token = req.bearer_token();
    bool ok = signing::BearerMatchesSigningKey(token, options_.signing_key);
    if (!options_.signing_key_fallback.empty()) {
      ok |= signing::BearerMatchesSigningKey(token, options_.signing_key_fallback);
    }
    if (!ok) return RegisterError(401, "unauthenticated", "invalid or missing signing key");
  }
  auto body = http::ParseJsonBody(req.body);
  if (!body.ok()) return RegisterError(400, "invalid_argument", body.status().message());
  const Json& b = *body;
  if (!b.is_object()) return RegisterError(400, "invalid_argument", "body must be a JSON object");
  auto str = [&](const char* key) -> std::optional<std::string> {
    auto it = b.find(key);
    if (it == b.end() || !it->is_string()) return std::nullopt;
    return it->get<std::string>();
  };
  auto url = str("url");
  if (!url || url->empty()) return RegisterError(400, "invalid_argument", "url must be a string");
  if (auto u = ParseUrl(*url); !u.ok()) {
    return RegisterError(400, "invalid_argument", "url: " + u.status().message());
  }
  auto app_name = str("appName");
  if (!app_name || app_name->empty()) {
    return RegisterError(400, "invalid_argument", "appName must be a non-empty string");
  }
  auto functions = b.find("functions");
  if (functions == b.end() || !functions->is_array()) {
    return RegisterError(400, "invalid_argument", "functions must be an array");
  }
  store::AppSync sync;
  std::set<std::string> seen;
  for (size_t i = 0; i < functions->size(); ++i) {
    const Json& fn = (*functions)[i];
    if (Status s = ValidateFunction(fn, i); !s.ok()) {
      return RegisterError(400, "invalid_argument", s.message());
    }
    std::string id = fn["id"].get<std::string>();
    if (!seen.insert(id).second) {
      return RegisterError(400, "invalid_argument", "function \"" + id + "\" is listed twice");
    }
    auto flow = scheduler::ParseFlowControl(fn);
    if (!flow.ok()) {
      return RegisterError(400, "invalid_argument",
                           "function \"" + id + "\": " + flow.status().message());
    }
    store::FunctionRecord record;
    record.id = id;
    record.concurrency_limit = flow->function_limit;
    record.key_concurrency_limit = flow->key_limit;
    record.app_id = *app_name;
    record.name = fn.contains("name") ? fn["name"].get<std::string>() : id;
    record.config = fn;
    sync.functions.push_back(std::move(record));
  }
  const TimePoint now = clock_.Now();
  sync.app.id = *app_name;
  sync.app.url = *url;
  sync.app.sdk = str("sdk").value_or("");
  sync.app.framework = str("framework").value_or("");
  auto canonical = CanonicalJson(Json{{"url", *url}, {"functions", *functions}});
  if (!canonical.ok()) return RegisterError(400, "invalid_argument", canonical.status().message());
  sync.app.checksum = crypto::Sha256Hex(*canonical);
  sync.app.synced_at_ms = UnixMillis(now);
  sync.app.created_at_ms = UnixMillis(now);

  auto result = store_.SyncApp(sync);
  if (!result.ok()) {
    const Status& s = result.status();
    if (s.code() == StatusCode::kFailedPrecondition) {
      return RegisterError(409, "conflict", s.message());
    }
    spdlog::error("sync of app {} failed: {}", *app_name, s.ToString());
    int code = http::HttpStatusFor(s.code());
    return RegisterError(code, StatusCodeName(s.code()),
                         s.code() == StatusCode::kInternal ? "internal error" : s.message());
  }
  (void)intake_.Functions(/*refresh=*/true);
  spdlog::info("app {} synced from {}: {} function(s){}", *app_name, *url, sync.functions.size(),
               result->modified ? "" : " (unchanged)");
  return JsonResponse(
      200, {{"ok", true}, {"modified", result->modified}, {"status", 200}, {"app_id", *app_name}});
}

}  // namespace funcky::api
