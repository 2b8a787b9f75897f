// Flow control of a function (DESIGN.md "Ordering", PROTOCOL.md §8.2), read from its config:
// - a lane key: `ordering: {key, head_timeout?}` (Funcky's extension), or an Inngest
//   `concurrency: {limit: 1, key}` with scope fn — each key is a strict FIFO lane;
// - a function-wide limit on calls in flight: `concurrency: N` or `{limit: N}`;
// - a per-key limit on calls in flight: `{limit: N, key}` with N > 1 (no order promise).
#pragma once

#include <chrono>
#include <memory>
#include <optional>
#include <string>

#include <nlohmann/json.hpp>

#include "common/status.h"
#include "coordinator/expr/expr.h"

namespace funcky::scheduler {

struct FlowControl {
  std::shared_ptr<const expr::Expression> lane_key;  // null: no lanes
  std::optional<std::chrono::milliseconds> head_timeout;
  int function_limit = 0;  // 0: unlimited
  int key_limit = 0;       // 0: unlimited
  std::shared_ptr<const expr::Expression> limit_key;
};

// kInvalidArgument naming the option and, for a bad expression, the position in it.
Result<FlowControl> ParseFlowControl(const nlohmann::json& config);

// The keys of one run, evaluated on its triggering event.
struct RunKeys {
  std::optional<std::string> lane_key;
  std::optional<std::string> concurrency_key;
};
RunKeys EvaluateKeys(const FlowControl& flow, const nlohmann::json& event);

}  // namespace funcky::scheduler
