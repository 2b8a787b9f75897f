// One call's replay state, shared by the step tools and the serve handler. Internal.
#pragma once

#include <chrono>
#include <cstddef>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/ops.h"

namespace funcky::sdk {

// Thrown through the handler to end a call with ops (a 206). Not a std::exception, so
// user code catching std::exception does not swallow it.
struct Interrupt {
  std::vector<Op> ops;
  bool no_retry = false;
  std::optional<std::chrono::seconds> retry_after;
};

// Thrown when the requested step is not reached by the replay.
struct StepNotFound {
  std::string step_id;
};

class Client;

class Execution {
 public:
  const Client* client = nullptr;  // for step.send_event and step.invoke
  nlohmann::json memo;             // hashed step id -> memoized value
  std::string target_step;
  bool disable_immediate_execution = false;
  int attempt = 0;
  int max_attempts = 0;  // 0: unknown (the coordinator decides finality)
  // The step ids (before hashing) this execution has used, and per id repeated the next
  // index to try for it ("id:n"): see NextOp in function.cc.
  std::set<std::string> used_ids;
  std::map<std::string, int> next_index;
  // The step this call ran when the function went on past it (Step::run in a discovery
  // call): its StepRun, not recorded yet. The function may then only replay: the next step
  // it meets that is not memoized ends the call with this op alone (that step runs in a
  // later call, once this one is recorded), and if it returns instead, the call ends with
  // this op and RunComplete, so its last step and its end are recorded together.
  std::optional<Op> ran;
  // The name of the step whose function runs now, if one does: steps do not nest.
  const std::string* running_step = nullptr;

  // Ends the call with the step it ran, if it ran one (see `ran`).
  void EndIfRan() const;

  // Written so that no attempt count can overflow it.
  bool last_attempt() const { return max_attempts > 0 && attempt >= max_attempts - 1; }
};

// An error as the SDK reports it; a `message` that is not UTF-8 has U+FFFD for its bad bytes.
nlohmann::json SerializeError(const std::string& name, const std::string& message);

// `data` (`what`, for messages), which a reply carries `depth` levels inside it beside
// `wrapping_bytes` of other text, as the coordinator reads it: through JSON text, so a NaN is
// null. Throws NonRetriableError when the reply could not carry it, or a coordinator would
// refuse the reply (kHostReplyJsonLimits): a string that is not UTF-8, \u0000, nesting too
// deep, or text longer than a reply may be less `wrapping_bytes`. Retried, the code that made
// it would only make it again.
nlohmann::json AsReplied(const nlohmann::json& data, const std::string& what, int depth,
                         size_t wrapping_bytes);

}  // namespace funcky::sdk
