#include "sdk/serve.h"

#include <algorithm>
#include <charconv>
#include <chrono>
#include <cstdint>
#include <optional>
#include <stdexcept>
#include <thread>

#include "common/jcs.h"
#include "common/json_parse.h"
#include "common/signing.h"
#include "common/step_id.h"
#include "common/url.h"
#include "sdk/coordinator_api.h"
#include "sdk/execution.h"

namespace funcky::sdk {

namespace {

constexpr const char* kSdkVersion = "0.1.0";

// The largest reply that answers a function's last step with its end (Execution::ran): a
// larger one answers the step alone and the next call the end, so that the two together never
// break a coordinator's limit on a reply (Funcky's: 16 MiB) that each keeps alone. So does a
// reply whose end, nested in it, is deeper than a coordinator takes (kHostReplyJsonLimits).
constexpr size_t kMaxStepAndEndReplyBytes = 1 << 20;

ServeResponse JsonReply(int status, const Json& body) {
  return {status, {{"Content-Type", "application/json"}}, body.dump()};
}

int64_t NowSeconds() {
  return std::chrono::duration_cast<std::chrono::seconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// `text` as a JSON string that can be written: bytes that are not UTF-8 become U+FFFD (an
// exception's message, a step id from the request's URL).
Json Utf8String(const std::string& text) {
  return Json::parse(Json(text).dump(-1, ' ', false, Json::error_handler_t::replace));
}

// Whether `header` has the form of a signature (`t=<unix seconds>&s=<hex>`, read as
// signing::VerifySignature reads it) with a time within signing::kMaxSkew of `now`. A call is
// held to this before anything is done with its body, so one without a fresh signature costs
// no parsing and no HMAC. The window is compared without subtracting, which for a `t` near
// either end of int64_t would overflow; a `t` that passes is one VerifySignature can subtract.
bool FreshSignatureHeader(std::string_view header, int64_t now) {
  std::string_view t_text, s_text;
  for (size_t pos = 0; pos <= header.size();) {
    const size_t amp = std::min(header.find('&', pos), header.size());
    const std::string_view part = header.substr(pos, amp - pos);
    if (part.starts_with("t=")) t_text = part.substr(2);
    if (part.starts_with("s=")) s_text = part.substr(2);
    pos = amp + 1;
  }
  int64_t t = 0;
  const auto [end, ec] = std::from_chars(t_text.data(), t_text.data() + t_text.size(), t);
  if (t_text.empty() || s_text.empty() || ec != std::errc() ||
      end != t_text.data() + t_text.size()) {
    return false;
  }
  const int64_t skew = signing::kMaxSkew.count();
  return t >= now - skew && t <= now + skew;
}

// A refused request, as the protocol has it (docs/protocol.md §7): no x-inngest-* headers but
// SDK-Handled, and unsigned, so that it tells a caller without the key nothing of the host.
ServeResponse Unauthorized() {
  return {401,
          {{"Content-Type", "application/json"}, {"X-Inngest-SDK-Handled", "true"}},
          Json{{"message", "Unauthorized"}}.dump()};
}

// `r` marked as a failed attempt to retry. A coordinator retries a failure that says nothing,
// but the protocol has every retriable one say so (docs/protocol.md §5.1).
ServeResponse Retriable(ServeResponse r) {
  r.headers.emplace_back("X-Inngest-No-Retry", "false");
  return r;
}

// The first 12 hex digits of `key`'s hash, null without a key: enough to tell which key a
// host holds, too few to stand for the whole hash, which is a bearer token.
Json KeyHashPrefix(const std::string& key) {
  if (key.empty()) return nullptr;
  const std::string hashed = signing::HashedSigningKey(key);
  return std::string(signing::KeyMaterial(hashed).substr(0, 12));
}

// The serve URL's origin and path, as the JS SDK's introspection names them; null when the
// URL does not parse.
Json ServeLocation(const std::string& serve_url) {
  auto url = ParseUrl(serve_url);
  if (!url.ok()) return {{"serve_origin", nullptr}, {"serve_path", nullptr}};
  return {{"serve_origin", url->scheme + "://" + url->authority()},
          {"serve_path", std::string(TargetPath(url->target))}};
}

// The largest attempt count read from a call's ctx; past it a count is taken as absent. It
// keeps `attempt + 1` and the like far from overflowing (a coordinator allows 21 attempts).
constexpr int64_t kMaxCtxCount = 1'000'000;

// Member `key` of a call's ctx as a count (attempt, max_attempts): a whole number from 0 to
// kMaxCtxCount, else 0, the protocol's default. Read with care, as every ctx member is:
// Json::value() throws on a member of another type, and casts a double such as 1e300 to int,
// which is undefined.
int CtxCount(const Json& ctx, const char* key) {
  const auto it = ctx.find(key);
  if (it == ctx.end()) return 0;
  if (it->is_number_unsigned()) {
    const uint64_t n = it->get<uint64_t>();
    return n <= static_cast<uint64_t>(kMaxCtxCount) ? static_cast<int>(n) : 0;
  }
  if (it->is_number_integer()) {
    const int64_t n = it->get<int64_t>();
    return n >= 0 && n <= kMaxCtxCount ? static_cast<int>(n) : 0;
  }
  return 0;
}

}  // namespace

Json SerializeError(const std::string& name, const std::string& message) {
  // Cut to 64 KiB: a failed step carries its message twice, and a reply past the
  // coordinator's 16 MiB would fail the run with a ProtocolError the function cannot catch.
  constexpr size_t kMaxMessageBytes = 64 << 10;
  std::string text =
      Utf8String(message.size() > kMaxMessageBytes ? message.substr(0, kMaxMessageBytes)
                                                   : message)  // a cut character becomes U+FFFD
          .get<std::string>();
  if (message.size() > kMaxMessageBytes) {
    text += "… (" + std::to_string(message.size()) + " bytes)";
  }
  return {{"name", name}, {"message", std::move(text)}, {"stack", ""}, {"__serialized", true}};
}

ServeHandler::ServeHandler(const Client& client, std::string serve_url,
                           std::vector<Function> functions)
    : client_(client), serve_url_(std::move(serve_url)), functions_(std::move(functions)) {
  for (const auto& [key, name] :
       {std::pair{&client_.options().signing_key, "signing_key"},
        {&client_.options().signing_key_fallback, "signing_key_fallback"}}) {
    if (key->empty()) continue;
    if (Status s = signing::ValidateSigningKey(*key); !s.ok()) {
      throw std::invalid_argument(std::string("ClientOptions::") + name + ": " + s.message());
    }
  }
  for (const auto& f : functions_) {
    const std::string id = client_.options().app_id + "-" + f.options().id;
    by_id_[id] = &f.handler();
    if (f.options().on_failure) by_id_[id + "-failure"] = &f.options().on_failure;
  }
}

Json ServeHandler::register_body() const {
  Json functions = Json::array();
  for (const auto& f : functions_) {
    for (Json& config : f.configs(client_.options().app_id, serve_url_)) {
      functions.push_back(std::move(config));
    }
  }
  return {{"url", serve_url_},
          {"deployType", "ping"},
          {"framework", "funcky"},
          {"appName", client_.options().app_id},
          {"functions", functions},
          {"sdk", std::string("cpp:v") + kSdkVersion},
          {"v", "0.1"}};
}

Status ServeHandler::register_functions() const {
  Headers headers = {{"X-Inngest-SDK", std::string("funcky-cpp:v") + kSdkVersion},
                     {"X-Inngest-Sync-Kind", "out_of_band"}};
  if (!client_.options().signing_key.empty()) {
    headers.emplace_back("Authorization",
                         "Bearer " + signing::HashedSigningKey(client_.options().signing_key));
  }
  // A config that is not UTF-8 (an id, an expression) cannot be sent: refused here, not
  // thrown at the caller.
  std::string body;
  try {
    body = register_body().dump();
  } catch (const Json::exception&) {
    return InvalidArgument("registration not sent: a function's config is not UTF-8");
  }
  // The register reply's `status` defaults to 200 (docs/protocol.md §2.2).
  auto reply = PostToCoordinator(client_.options(), "/fn/register", headers, body,
                                 /*status_if_absent=*/200);
  // Refused for the key while keys rotate (the coordinator has the new one, this host the old
  // one as its fallback, or the other way round): once more with the fallback (§7).
  const std::string& fallback = client_.options().signing_key_fallback;
  if (!reply.ok() && reply.status().code() == StatusCode::kUnauthenticated && !fallback.empty()) {
    for (auto& [k, v] : headers) {
      if (k == "Authorization") v = "Bearer " + signing::HashedSigningKey(fallback);
    }
    reply = PostToCoordinator(client_.options(), "/fn/register", std::move(headers),
                              std::move(body), /*status_if_absent=*/200);
  }
  if (!reply.ok()) {
    return Status(reply.status().code(), "registration refused: " + reply.status().message());
  }
  return Status::Ok();
}

Status ServeHandler::register_functions(std::chrono::milliseconds wait) const {
  const auto deadline = std::chrono::steady_clock::now() + wait;
  for (;;) {
    Status s = register_functions();
    if (s.ok() || s.code() != StatusCode::kUnavailable ||
        std::chrono::steady_clock::now() >= deadline) {
      return s;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
}

ServeResponse ServeHandler::Finish(ServeResponse r) const {
  r.headers.emplace_back("X-Inngest-SDK", std::string("funcky-cpp:v") + kSdkVersion);
  r.headers.emplace_back("X-Inngest-SDK-Handled", "true");
  r.headers.emplace_back("X-Inngest-Framework", "funcky");
  r.headers.emplace_back("X-Inngest-Req-Version", "2");
  return r;
}

ServeResponse ServeHandler::Sign(ServeResponse r, const std::string* key) {
  if (key && !key->empty()) {
    r.headers.emplace_back("X-Inngest-Signature",
                           signing::SignatureHeader(r.body, *key, NowSeconds()));
  }
  return r;
}

ServeResponse ServeHandler::handle(const ServeRequest& request) const {
  try {
    if (request.method == "POST") return Call(request);
    if (request.method == "PUT") return Sync(request);
    if (request.method == "GET") return Introspect(request);
    return Finish(JsonReply(405, {{"message", "method not allowed"}}));
  } catch (...) {
    // Call answers every failure of a function itself. What is left fails the SDK's own work
    // (a function's config that is not UTF-8 in a sync, memory): it is answered too, never
    // thrown into a host's server, which need not catch it. The exception is not quoted.
    ServeResponse r = JsonReply(500, {{"type", "internal"},
                                      {"name", "Error"},
                                      {"message", "the SDK could not answer the request"}});
    // A call that failed so (out of memory, as a rule) may pass when made again.
    if (request.method == "POST") r = Retriable(std::move(r));
    return Finish(std::move(r));
  }
}

std::optional<ServeResponse> ServeHandler::screen(const ServeRequest& head) const {
  if (client_.options().signing_key.empty()) return std::nullopt;
  const bool signed_request =
      head.method == "POST" ||
      (head.method == "PUT" && FindHeader(head.headers, "X-Inngest-Sync-Kind") == "in_band");
  // Only a call or an in-band sync has a body to read (a GET, an out-of-band PUT has none).
  if (!signed_request) {
    return JsonReply(413, {{"message", "this request takes no body this large"}});
  }
  if (!FreshSignatureHeader(FindHeader(head.headers, "X-Inngest-Signature"), NowSeconds())) {
    return Unauthorized();
  }
  return std::nullopt;
}

const std::string* ServeHandler::SigningKeyOf(const Headers& headers, std::string_view body) const {
  const std::string_view header = FindHeader(headers, "X-Inngest-Signature");
  const int64_t now = NowSeconds();
  if (!FreshSignatureHeader(header, now)) return nullptr;
  for (const std::string* key :
       {&client_.options().signing_key, &client_.options().signing_key_fallback}) {
    if (!key->empty() && signing::VerifySignature(header, body, {*key}, now).ok()) return key;
  }
  return nullptr;
}

ServeResponse ServeHandler::Introspect(const ServeRequest& request) const {
  const ClientOptions& options = client_.options();
  Json body = {{"function_count", functions_.size()},
               {"has_event_key", !options.event_key.empty()},
               {"has_signing_key", !options.signing_key.empty()},
               {"mode", options.signing_key.empty() ? "dev" : "cloud"},
               {"schema_version", "2024-05-24"}};
  if (options.signing_key.empty()) return Finish(JsonReply(200, body));
  // With a key, only its holder may look (docs/protocol.md §7). A GET has no body: the
  // signature is over an empty one, whatever came with the request.
  const std::string* key = SigningKeyOf(request.headers, "");
  if (!key) return Unauthorized();
  body.update(ServeLocation(serve_url_));
  body.update(Json{{"authentication_succeeded", true},
                   {"app_id", options.app_id},
                   {"framework", "funcky"},
                   {"sdk_language", "cpp"},
                   {"sdk_version", kSdkVersion},
                   {"signing_key_hash", KeyHashPrefix(options.signing_key)},
                   {"signing_key_fallback_hash", KeyHashPrefix(options.signing_key_fallback)}});
  return Sign(Finish(JsonReply(200, body)), key);
}

ServeResponse ServeHandler::Sync(const ServeRequest& request) const {
  if (FindHeader(request.headers, "X-Inngest-Sync-Kind") == "in_band") {
    // The reply is signed with the key the request was (the JS SDK's way): during a
    // rotation, with the host's fallback still the coordinator's only key, the coordinator
    // holds the reply to that key.
    const std::string* key = nullptr;
    if (!client_.options().signing_key.empty()) {
      key = SigningKeyOf(request.headers, request.body);
      if (!key) return Unauthorized();
    }
    Json reg = register_body();
    ServeResponse r = JsonReply(200, {{"app_id", client_.options().app_id},
                                      {"framework", "funcky"},
                                      {"functions", reg["functions"]},
                                      {"sdk", reg["sdk"]},
                                      {"sdk_author", "funcky"},
                                      {"sdk_language", "cpp"},
                                      {"sdk_version", kSdkVersion},
                                      {"url", serve_url_}});
    r.headers.emplace_back("X-Inngest-Sync-Kind", "in_band");
    return Sign(Finish(std::move(r)), key);
  }
  Status s = register_functions();
  ServeResponse r =
      JsonReply(s.ok() ? 200 : 500,
                {{"message", Utf8String(s.ok() ? "Successfully registered" : s.message())},
                 {"modified", s.ok()}});
  r.headers.emplace_back("X-Inngest-Sync-Kind", "out_of_band");
  return Finish(std::move(r));
}

ServeResponse ServeHandler::Call(const ServeRequest& request) const {
  if (request.body.empty()) return Unauthorized();
  // The body is parsed once, when first needed: with a signing key, not before the call is
  // known to be signed at all.
  std::optional<Result<Json>> parsed;
  if (!client_.options().signing_key.empty()) {
    // The protocol signs the body's canonical form (docs/protocol.md §7). The header's form
    // and time are checked first, which costs nothing; then the HMAC over the body as it
    // came, since Funcky's coordinator sends the body written canonically. The two differ
    // when the body holds an integer above 2^53, which the standard signature covers as a
    // double (common/jcs.h): Funcky's coordinator then signs the body as sent as well
    // (signing::kExactSignatureHeader), which authenticates the digits. Only when neither
    // holds, the HMAC over the RFC 8785 form of the parsed body (a parse and a second
    // serialization of the whole body, which the checks before spare); a body accepted so
    // reaches the function as signed, its large integers the doubles the signature covered.
    const std::string_view header = FindHeader(request.headers, "X-Inngest-Signature");
    const std::string_view exact = FindHeader(request.headers, signing::kExactSignatureHeader);
    const std::vector<std::string> keys = {client_.options().signing_key,
                                           client_.options().signing_key_fallback};
    const int64_t now = NowSeconds();
    bool authentic = FreshSignatureHeader(header, now);
    if (authentic && !signing::VerifySignature(header, request.body, keys, now).ok() &&
        !(FreshSignatureHeader(exact, now) &&
          signing::VerifySignature(exact, request.body, keys, now).ok())) {
      parsed = ParseUntrustedJson(request.body, kUnverifiedCallBodyJsonLimits);
      if (!parsed->ok() && parsed->status().code() == StatusCode::kResourceExhausted) {
        // Said as what it is, not as a bad signature: a coordinator that signs only the
        // canonical form of a body this large cannot call this SDK.
        return Finish(
            JsonReply(413, {{"type", "internal"},
                            {"name", "Error"},
                            {"message",
                             "the call's signature does not cover its body as sent, and its "
                             "canonical form is checked only within a host reply's bounds: " +
                                 parsed->status().message()}}));
      }
      authentic = false;
      if (parsed->ok()) {
        auto canonical = CanonicalJson(**parsed, JcsIntegers::kAsDoubles);
        authentic = canonical.ok() && *canonical != request.body &&
                    signing::VerifySignature(header, *canonical, keys, now).ok();
        if (authentic) LargeIntegersAsDoubles(**parsed);
      }
    }
    if (!authentic) return Unauthorized();
  }
  if (!parsed) parsed = ParseUntrustedJson(request.body, kCallBodyJsonLimits);
  // Only the answer to a call known to be the coordinator's is signed: a signed answer to
  // anyone's request would be a signature of its body, good for sending that body to this
  // host as a call (the same HMAC over the body and a time) for five minutes.
  return Sign(Run(request, std::move(*parsed)), &client_.options().signing_key);
}

ServeResponse ServeHandler::Run(const ServeRequest& request, Result<Json> parsed) const {
  // Retried: another host of the app (a deploy rolling out) may know the function, and a
  // body that is not JSON is no fault of the function's, whose run it must not fail for good.
  auto internal_error = [&](const std::string& message) {
    return Finish(Retriable(JsonReply(
        500, {{"type", "internal"}, {"name", "Error"}, {"message", Utf8String(message)}})));
  };
  if (!parsed.ok() || !parsed->is_object()) return internal_error("request body is not JSON");
  Json body = std::move(*parsed);
  const std::string fn_id = QueryParam(request.target, "fnId");
  auto it = by_id_.find(fn_id);
  if (it == by_id_.end()) return internal_error("no function \"" + fn_id + "\" in this app");

  // The body's members are moved out of it (it is not read again), not copied.
  auto take = [&body](const char* key) -> std::optional<Json> {
    auto member = body.find(key);
    if (member == body.end()) return std::nullopt;
    return std::move(*member);
  };
  Execution x;
  x.client = &client_;
  x.memo = take("steps").value_or(Json::object());
  if (!x.memo.is_object()) x.memo = Json::object();
  x.target_step = QueryParam(request.target, "stepId");
  if (x.target_step.empty()) x.target_step = std::string(kDiscoveryStepId);
  Json ctx_json = take("ctx").value_or(Json::object());
  if (!ctx_json.is_object()) ctx_json = Json::object();
  if (!client_.options().signing_key.empty()) {
    // The signature covers the body, not the URL: a signed call replayed with another
    // ?fnId or ?stepId would run another function, or another step, with this run's memos.
    // The body names both (Funcky's coordinator signs ctx.step_id, and ctx.fn_id when it
    // checkpoints): a call whose URL names others is refused.
    const auto signed_step = ctx_json.find("step_id");
    const auto signed_fn = ctx_json.find("fn_id");
    if ((signed_step != ctx_json.end() && signed_step->is_string() &&
         *signed_step != x.target_step) ||
        (signed_fn != ctx_json.end() && signed_fn->is_string() && *signed_fn != fn_id)) {
      return Unauthorized();
    }
  }
  x.attempt = CtxCount(ctx_json, "attempt");
  x.max_attempts = CtxCount(ctx_json, "max_attempts");
  const auto immediate = ctx_json.find("disable_immediate_execution");
  x.disable_immediate_execution =
      immediate != ctx_json.end() && immediate->is_boolean() && immediate->get<bool>();
  const auto run_id = ctx_json.find("run_id");
  Json event = take("event").value_or(Json::object());
  // An object with a "data" object, whatever the body held: a function's ctx.event["data"]
  // (a const read, undefined when missing) is then always safe.
  if (!event.is_object()) event = Json::object();
  if (auto d = event.find("data"); d == event.end() || !d->is_object()) {
    event["data"] = Json::object();
  }
  std::optional<Json> sent_events = take("events");
  const Json events = sent_events ? std::move(*sent_events) : Json::array({event});

  Step step(x);
  Context ctx{event, events,
              run_id != ctx_json.end() && run_id->is_string() ? run_id->get<std::string>() : "",
              x.attempt, step};
  // An op list as a reply's body. Written strictly in the try below, where a function's end
  // that is not UTF-8 fails the call as any other exception does; in the catch handlers,
  // which must not throw, bytes that are not UTF-8 would become U+FFFD (the step tools
  // refuse such text before they make an op, so none is expected there).
  auto ops_body = [](const std::vector<Op>& ops,
                     Json::error_handler_t on_bad_utf8 = Json::error_handler_t::strict) {
    Json body = Json::array();
    for (const auto& op : ops) body.push_back(OpToJson(op));
    return body.dump(-1, ' ', false, on_bad_utf8);
  };
  constexpr Json::error_handler_t kReplace = Json::error_handler_t::replace;
  auto ops_reply = [&](std::string body, bool no_retry,
                       std::optional<std::chrono::seconds> retry_after) {
    ServeResponse r{206, {{"Content-Type", "application/json"}}, std::move(body)};
    r.headers.emplace_back("X-Inngest-No-Retry", no_retry ? "true" : "false");
    if (retry_after) r.headers.emplace_back("Retry-After", std::to_string(retry_after->count()));
    return Finish(std::move(r));
  };
  try {
    Json result = (*it->second)(ctx);
    // The end alone is held to the limits a coordinator holds the reply to, as a step's
    // result is: an end it would refuse fails the run for good here (a NonRetriableError,
    // answered below) rather than being made, sent and refused again on every attempt.
    if (!x.ran) {
      return Finish(JsonReply(200, AsReplied(result, "the function's return value", 0, 0)));
    }
    // The function returned after the step it ran: both go in this reply, to be recorded
    // together (Execution::ran), unless that makes it too large.
    Op end;
    end.id = HashStepId("complete");
    end.code = OpCode::kRunComplete;
    end.data = std::move(result);
    std::string body = ops_body({*x.ran, std::move(end)});
    if (body.size() > kMaxStepAndEndReplyBytes ||
        !ParseUntrustedJson(body, kHostReplyJsonLimits).ok()) {
      body = ops_body({*x.ran});
    }
    return ops_reply(std::move(body), false, std::nullopt);
  } catch (const Interrupt& in) {
    return ops_reply(ops_body(in.ops, kReplace), in.no_retry, in.retry_after);
  } catch (...) {
    // Whatever went wrong after the step this call ran is met again, and answered, by the
    // call that replays past the step once it is recorded.
    if (x.ran) return ops_reply(ops_body({*x.ran}, kReplace), false, std::nullopt);
    return FailureReply(x);
  }
}

// The reply to a call whose function threw (called while the exception is handled).
ServeResponse ServeHandler::FailureReply(const Execution& x) const {
  auto error_reply = [&](const std::string& name, const std::string& message, bool no_retry,
                         std::optional<std::chrono::seconds> retry_after) {
    bool final = no_retry || x.last_attempt();
    ServeResponse r = JsonReply(final ? 400 : 500, SerializeError(name, message));
    r.headers.emplace_back("X-Inngest-No-Retry", final ? "true" : "false");
    if (retry_after && !final)
      r.headers.emplace_back("Retry-After", std::to_string(retry_after->count()));
    return Finish(std::move(r));
  };
  try {
    throw;
  } catch (const StepNotFound& nf) {
    // Retried, as the protocol has it: a host of another version (a deploy rolling out) may
    // reach the step.
    return Finish(Retriable(
        JsonReply(500, {{"error", Utf8String("Could not find step \"" + nf.step_id + "\"")},
                        {"requestedStep", Utf8String(nf.step_id)}})));
  } catch (const NonRetriableError& e) {
    return error_reply("NonRetriableError", e.what(), true, std::nullopt);
  } catch (const StepError& e) {
    // A step failed for good and the function did not handle it: the run fails.
    return error_reply("StepError", e.what(), true, std::nullopt);
  } catch (const RetryAfterError& e) {
    return error_reply("RetryAfterError", e.what(), false, e.after());
  } catch (const std::exception& e) {
    return error_reply("Error", e.what(), false, std::nullopt);
  } catch (...) {
    return error_reply("Error", "unknown exception", false, std::nullopt);
  }
}

}  // namespace funcky::sdk
