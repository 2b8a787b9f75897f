// The body of POST /e/{key} (docs/protocol.md §3): one event object or an array of them, parsed
// with the request limits of common/json_parse.h and checked one by one. Pure, so it is
// fuzzed on its own (fuzz/event_body_fuzz.cc).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/status.h"

namespace funcky::api {

struct EventBodyLimits {
  size_t max_events = 5000;
  size_t max_event_bytes = 512 << 10;  // of one event as JSON
};

// The events of `body`, each with its defaults filled in: `data` and `user` objects, `ts`
// (`now_ms` when absent or 0); `data._inngest` removed. kInvalidArgument naming the event
// ("event 2: …") for JSON that ParseUntrustedJson refuses, no events, or an event that is
// not {name: non-empty string not starting with "inngest/", data?: object, user?: object,
// id?: string, ts?: integer ms between 1980 and 2100, v?: string}; kResourceExhausted for
// more than `max_events` events or one larger than `max_event_bytes`.
Result<std::vector<nlohmann::json>> ParseEventBody(std::string_view body,
                                                   const EventBodyLimits& limits, int64_t now_ms);

}  // namespace funcky::api
