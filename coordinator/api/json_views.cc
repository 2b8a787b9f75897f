#include "coordinator/api/json_views.h"

#include <charconv>

namespace funcky::api {

using store::Json;

Result<std::string> StringField(const nlohmann::json& body, const char* key) {
  auto it = body.find(key);
  if (it == body.end() || !it->is_string() || it->get_ref<const std::string&>().empty()) {
    return InvalidArgument(std::string(key) + " must be a non-empty string");
  }
  return it->get<std::string>();
}

Result<int> ParseLimit(std::string_view text) {
  if (text.empty()) return 50;
  int v = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (ec != std::errc() || end != text.data() + text.size() || v < 1 || v > 500) {
    return InvalidArgument("limit must be an integer from 1 to 500");
  }
  return v;
}

namespace {
Json OptionalTime(const std::optional<int64_t>& ms) {
  return ms ? Json(FormatRfc3339(*ms)) : Json(nullptr);
}
}  // namespace

Json RunJson(const store::RunRecord& r) {
  Json j = {{"id", r.id},
            {"function_id", r.function_id},
            {"event_id", r.event_id},
            {"event_name", r.event_name},
            {"status", r.status},
            {"key", r.lane_key ? Json(*r.lane_key) : Json(nullptr)},
            {"output", r.output},
            {"error", r.error},
            {"created_at", FormatRfc3339(r.created_at_ms)},
            {"started_at", OptionalTime(r.started_at_ms)},
            {"ended_at", OptionalTime(r.ended_at_ms)}};
  // A list's run whose output or error is too long to list (GET the run for it).
  if (r.output_omitted) j["output_omitted"] = true;
  if (r.error_omitted) j["error_omitted"] = true;
  if (r.ended_at_ms) j["duration_ms"] = *r.ended_at_ms - r.created_at_ms;
  if (!r.event_ids.empty()) j["event_ids"] = r.event_ids;  // GetRun's: all, a batch's too
  return j;
}

Json EventJson(const store::EventRecord& e) {
  Json j = {{"internal_id", e.internal_id},
            {"id", e.id},
            {"name", e.name},
            {"payload", e.payload},
            {"received_at", FormatRfc3339(e.received_at_ms)}};
  if (e.payload_omitted) j["payload_omitted"] = true;  // a list's: GET the event for it
  return j;
}

Json FunctionJson(const store::FunctionRecord& f) {
  return {{"id", f.id},
          {"app_id", f.app_id},
          {"name", f.name},
          {"config", f.config},
          {"archived", f.archived},
          {"updated_at", FormatRfc3339(f.updated_at_ms)}};
}

Json LaneJson(const scheduler::FlowControl& flow) {
  if (!flow.lane_key) return nullptr;
  const auto source = [](const std::shared_ptr<const expr::Expression>& e) {
    return e ? Json(e->source()) : Json(nullptr);
  };
  Json sequence = nullptr;
  if (flow.sequence) {
    const scheduler::Sequencing& s = *flow.sequence;
    sequence = {{"expression", s.expression->source()},
                {"gap_timeout", FormatDuration(s.gap_timeout)},
                {"gap_timeout_ms", s.gap_timeout.count()},
                {"start", s.start ? Json(*s.start) : Json(nullptr)},
                {"stale", scheduler::StalePolicyName(s.stale)}};
  }
  return {{"from", flow.lane_from},
          {"key", flow.lane_key->source()},
          {"head_timeout", flow.head_timeout ? Json(FormatDuration(*flow.head_timeout)) : Json()},
          {"bypass", source(flow.bypass)},
          {"sequence", std::move(sequence)}};
}

}  // namespace funcky::api
