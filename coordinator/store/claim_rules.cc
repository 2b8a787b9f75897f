#include "coordinator/store/claim_rules.h"

#include <algorithm>

namespace funcky::store {

LaneLocks LanesOf(const std::vector<NewEvent>& events) {
  LaneLocks lanes;
  for (const NewEvent& ne : events) {
    for (const NewRun& run : ne.runs) {
      if (!run.lane_key) continue;
      LaneOptions options;
      if (run.head_timeout) options.head_timeout_ms = run.head_timeout->count();
      options.sequencing = run.sequencing;
      lanes[{run.function_id, *run.lane_key}] = options;
    }
  }
  return lanes;
}

Admission AdmitWithinLimits(
    std::vector<ClaimCandidate> candidates,
    const std::function<int64_t(const std::string&, const std::optional<std::string>&)>&
        in_flight) {
  // Room left under each limit: (function id, key or none) -> calls that may still start.
  using LimitId = std::pair<std::string, std::optional<std::string>>;
  std::map<LimitId, int64_t> room;
  for (const ClaimCandidate& c : candidates) {
    if (c.function_limit > 0) room.emplace(LimitId{c.function_id, std::nullopt}, c.function_limit);
    if (c.key_limit > 0 && c.concurrency_key) {
      room.emplace(LimitId{c.function_id, c.concurrency_key}, c.key_limit);
    }
  }
  for (auto& [id, free] : room) free -= in_flight(id.first, id.second);

  Admission out;
  for (ClaimCandidate& c : candidates) {
    int64_t* fn_room =
        c.function_limit > 0 ? &room.at(LimitId{c.function_id, std::nullopt}) : nullptr;
    int64_t* key_room = c.key_limit > 0 && c.concurrency_key
                            ? &room.at(LimitId{c.function_id, c.concurrency_key})
                            : nullptr;
    if ((fn_room && *fn_room <= 0) || (key_room && *key_room <= 0)) {
      out.held.push_back(c.item.id);
      continue;
    }
    if (fn_room) --*fn_room;
    if (key_room) --*key_room;
    out.claimed.push_back(std::move(c.item));
  }
  std::sort(out.claimed.begin(), out.claimed.end(),
            [](const QueueItem& a, const QueueItem& b) { return a.id < b.id; });
  return out;
}

Status LaneHasNoHead(const std::string& function_id, const std::string& key) {
  return NotFound("lane \"" + key + "\" of function \"" + function_id + "\" has no head");
}

Status HeadNotBlocked(const std::string& key, const std::string& status) {
  return FailedPrecondition("the head of lane \"" + key + "\" is " + status +
                            ", not blocked; only a blocked head can be retried");
}

}  // namespace funcky::store
