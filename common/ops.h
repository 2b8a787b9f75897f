// The op list a host answers with in a 206 (docs/protocol.md §5.2).
#pragma once

#include <chrono>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/status.h"

namespace funcky {

enum class OpCode {
  kStep,            // legacy v0: data may be wrapped already
  kStepRun,         // a step ran in this request; data is its (unwrapped) return value
  kStepError,       // a step threw and may be retried
  kStepPlanned,     // a step was found but not run
  kSleep,           // step.sleep: duration in `name` (or opts.duration)
  kWaitForEvent,    // step.wait_for_event
  kInvokeFunction,  // step.invoke
  kAIGateway,
  kGateway,
  kWaitForSignal,
  kRunComplete,  // the function finished; data is its return value
  kStepFailed,   // a step threw on its last attempt or with a non-retriable error
  kSyncRunComplete,
  kDiscoveryRequest,
  kDeferAdd,
  kDeferAbort,
  kStepNotFound,
};

std::string_view OpCodeName(OpCode code);
// nullopt for a name that is not an opcode of the protocol.
std::optional<OpCode> ParseOpCode(std::string_view name);

struct Op {
  std::string id;  // hashed step id
  OpCode code = OpCode::kStepRun;
  std::string name;
  std::string display_name;
  nlohmann::json opts;      // object or null
  nlohmann::json data;      // null when absent
  nlohmann::json error;     // null when absent
  nlohmann::json userland;  // {"id": raw id, "index": n} or null
  nlohmann::json timing;    // {"a": start, "b": duration} in ns (JS SDK), or null

  // How long the step ran by the host's own account (timing.b), when it says so sanely
  // (a number of ns from 0 to a day).
  std::optional<std::chrono::milliseconds> HostDuration() const;

  // `displayName`, else `name`, else `userland.id`, else the hashed id.
  std::string DisplayName() const;
};

// The most ops a reply or a checkpoint may hold (Inngest's own limit of steps a function).
inline constexpr size_t kMaxOps = 1000;
// The longest step id an op may have. The SDKs send hashes (40 hex digits); an id is a key of
// the store's indexes, whose entries PostgreSQL bounds (about 2.7 kB).
inline constexpr size_t kMaxStepIdBytes = 256;

// Parses a 206 body with ParseUntrustedJson's host-reply limits (common/json_parse.h).
// kInvalidArgument when it is not a JSON array of at most kMaxOps objects each with a string
// `id` (1 to kMaxStepIdBytes bytes, no control character) and a known string `op` (unknown
// keys are ignored), or breaks those limits.
Result<std::vector<Op>> ParseOps(std::string_view body);
// The same for an op list already parsed (with those limits), e.g. the `steps` of a
// checkpoint; `doc` is left in a valid but unspecified state.
Result<std::vector<Op>> ParseOpList(nlohmann::json& doc);

// The JSON form of an op, as a host sends it.
nlohmann::json OpToJson(const Op& op);

}  // namespace funcky
