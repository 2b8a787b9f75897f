#include "coordinator/api/json_views.h"

#include <charconv>
#include <ctime>

namespace funcky::api {

using store::Json;

std::string FormatTime(int64_t unix_ms) {
  std::time_t secs = static_cast<std::time_t>(unix_ms / 1000);
  std::tm tm{};
  gmtime_r(&secs, &tm);
  char buf[40];
  size_t n = std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", &tm);
  std::snprintf(buf + n, sizeof buf - n, ".%03dZ", static_cast<int>(unix_ms % 1000));
  return buf;
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
  return ms ? Json(FormatTime(*ms)) : Json(nullptr);
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
            {"created_at", FormatTime(r.created_at_ms)},
            {"started_at", OptionalTime(r.started_at_ms)},
            {"ended_at", OptionalTime(r.ended_at_ms)}};
  if (r.ended_at_ms) j["duration_ms"] = *r.ended_at_ms - r.created_at_ms;
  return j;
}

Json EventJson(const store::EventRecord& e) {
  return {{"internal_id", e.internal_id},
          {"id", e.id},
          {"name", e.name},
          {"payload", e.payload},
          {"received_at", FormatTime(e.received_at_ms)}};
}

Json FunctionJson(const store::FunctionRecord& f) {
  return {
      {"id", f.id},         {"app_id", f.app_id},     {"name", f.name},
      {"config", f.config}, {"archived", f.archived}, {"updated_at", FormatTime(f.updated_at_ms)}};
}

}  // namespace funcky::api
