// The one way Funcky parses JSON it did not write itself: request bodies, host replies,
// sync replies, `json_parse()` in expressions, and replies an SDK reads from a coordinator.
//
// nlohmann's parser does not recurse, but copying, dumping and comparing a value do: a
// reply nested a million levels deep would overflow the stack the first time it is copied.
// ParseUntrustedJson refuses such text while it parses, before anything deeper than the
// limit is built, so nothing that holds a value it returned can recurse without bound.
#pragma once

#include <cstddef>
#include <string_view>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/status.h"

namespace funcky {

// What untrusted JSON may be.
struct JsonLimits {
  // Arrays and objects nested deeper than this are refused (a scalar is depth 0, `[]` 1).
  int max_depth = 64;
  // Text longer than this is refused before parsing.
  size_t max_bytes = 16 << 20;
  // More values than this (each scalar, array, object and key counts one) are refused while
  // parsing, 0 for no bound. A parsed value takes 16 bytes and an object's entry about a
  // hundred, so `[{},{},…]` takes some twenty times its text: the bytes alone do not bound
  // the memory a parse takes.
  size_t max_values = 1 << 20;
  // `\u0000` in a string or key: PostgreSQL's text and jsonb cannot hold it, so anything
  // that may be stored refuses it at the edge, the same on every store.
  bool allow_nul = false;
};

// Limits by what the text is. Events and configs come first (64 levels); a host may nest
// them a little inside its step output (128); a call body nests the host's output a few
// levels deeper again, and an SDK reading it (or a coordinator's reply) stores nothing
// (256, \u0000 allowed). A call body holds a run's whole state: up to the 32 MiB a
// coordinator sends (coordinator/executor/call.h kMaxCallBodyBytes) and the C++ SDK's server
// takes; it is signed by the coordinator and made of host replies each held to their values'
// bound, so its own count is not bounded.
inline constexpr JsonLimits kRequestJsonLimits{.max_depth = 64};
inline constexpr JsonLimits kHostReplyJsonLimits{.max_depth = 128};
inline constexpr JsonLimits kCallBodyJsonLimits{
    .max_depth = 256, .max_bytes = 32 << 20, .max_values = 0, .allow_nul = true};
// What an SDK reads before it knows a coordinator sent it (a call body whose signature did not
// verify as sent, a reply from the coordinator's URL): a call body's shape, a host reply's
// count of values, since `{}` takes some twenty-five times its text once parsed.
inline constexpr JsonLimits kUnverifiedCallBodyJsonLimits{
    .max_depth = 256,
    .max_bytes = 32 << 20,
    .max_values = kHostReplyJsonLimits.max_values,
    .allow_nul = true};

// Parses `text` as one JSON value. kInvalidArgument for text that is not JSON, is nested
// deeper than `limits.max_depth`, holds a number outside a double's range (`1e400`, 100k
// digits), or holds `\u0000` when that is not allowed; kResourceExhausted for text longer
// than `limits.max_bytes` or holding more than `limits.max_values` values. Messages are short (a
// position and a reason, never the whole token), so they may be logged and returned to the sender.
// Never throws.
Result<nlohmann::json> ParseUntrustedJson(std::string_view text, JsonLimits limits = {});

// Roughly the bytes `values` take: their strings' and keys' bytes and 8 a value (the measure
// an expression's evaluation budget charges, coordinator/expr). Walks no further than `bound`:
// past it, the count returned is some number over `bound`, so measuring values of any size
// costs about `bound`.
size_t JsonBytesUpTo(std::vector<const nlohmann::json*> values, size_t bound);

// Whether `values` take more than about `bytes` (JsonBytesUpTo). For choosing where work on
// them runs, not for limits.
inline bool JsonLargerThan(std::vector<const nlohmann::json*> values, size_t bytes) {
  return JsonBytesUpTo(std::move(values), bytes) > bytes;
}

}  // namespace funcky
