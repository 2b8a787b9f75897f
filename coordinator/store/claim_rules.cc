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

Admission AdmitWithinLimits(std::vector<ClaimCandidate> candidates, size_t max,
                            const std::function<int64_t(const LimitId&)>& in_flight) {
  // The limits each candidate falls under.
  auto limits_of = [](const ClaimCandidate& c) {
    std::vector<std::pair<LimitId, int>> out;
    if (c.function_limit > 0) out.push_back({{c.function_id, 0, std::nullopt}, c.function_limit});
    for (int slot = 0; slot < kKeyedLimits; ++slot) {
      if (c.key_limits[slot] > 0 && c.keys[slot]) {
        out.push_back({{c.function_id, slot, c.keys[slot]}, c.key_limits[slot]});
      }
    }
    return out;
  };
  // Room left under each limit: calls that may still start.
  std::map<LimitId, int64_t> room;
  for (const ClaimCandidate& c : candidates) {
    for (const auto& [id, limit] : limits_of(c)) room.emplace(id, limit);
  }
  for (auto& [id, free] : room) free -= in_flight(id);

  Admission out;
  for (ClaimCandidate& c : candidates) {
    if (out.claimed.size() >= max) break;
    std::vector<int64_t*> under;
    bool full = false;
    for (const auto& [id, limit] : limits_of(c)) {
      int64_t* free = &room.at(id);
      full = full || *free <= 0;
      under.push_back(free);
    }
    if (full) {
      out.held.push_back(c.item.id);
      continue;
    }
    for (int64_t* free : under) --*free;
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
