#include "coordinator/scheduler/fanout.h"

namespace funcky::scheduler {

bool EventNameMatches(std::string_view pattern, std::string_view name) {
  if (pattern == name) return true;
  if (pattern.size() >= 2 && pattern.back() == '*') {
    char before = pattern[pattern.size() - 2];
    if (before != '/' && before != '.') return false;
    std::string_view prefix = pattern.substr(0, pattern.size() - 1);
    return name.size() > prefix.size() && name.substr(0, prefix.size()) == prefix;
  }
  return false;
}

std::vector<const store::FunctionRecord*> MatchFunctions(
    const std::vector<store::FunctionRecord>& functions,
    const std::map<std::string, FlowControl>& flows, const store::EventRecord& event) {
  std::vector<const store::FunctionRecord*> out;
  const expr::Variables vars{{"event", &event.payload}};
  for (const auto& fn : functions) {
    auto flow = flows.find(fn.id);
    if (flow == flows.end()) continue;
    for (const TriggerFilter& t : flow->second.triggers) {
      if (!EventNameMatches(t.event, event.name)) continue;
      if (t.expression && !t.expression->Matches(vars)) continue;
      out.push_back(&fn);
      break;  // one run per function per event, however many triggers match
    }
  }
  return out;
}

}  // namespace funcky::scheduler
