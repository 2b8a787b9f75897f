// libFuzzer target for the event body parser of POST /e/{key}: any body either
// yields events, each an object with a non-empty string name, or is refused with
// kInvalidArgument or kResourceExhausted; the events dump and compare without crashing.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include <nlohmann/json.hpp>

#include "coordinator/api/event_body.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view body(reinterpret_cast<const char*>(data), size);
  auto events =
      funcky::api::ParseEventBody(body, {.max_events = 50, .max_event_bytes = 4096}, 1700000000000);
  if (!events.ok()) {
    const funcky::StatusCode code = events.status().code();
    if (code != funcky::StatusCode::kInvalidArgument &&
        code != funcky::StatusCode::kResourceExhausted) {
      __builtin_trap();
    }
    return 0;
  }
  for (const nlohmann::json& e : *events) {
    if (!e.is_object() || !e["name"].is_string() || e["name"].get<std::string>().empty()) {
      __builtin_trap();
    }
    if (!e["data"].is_object() || !e["ts"].is_number_integer()) __builtin_trap();
    const std::string text = e.dump();
    if (nlohmann::json::parse(text) != e) __builtin_trap();
  }
  return 0;
}
