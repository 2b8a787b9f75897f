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
    const std::vector<store::FunctionRecord>& functions, const store::EventRecord& event) {
  std::vector<const store::FunctionRecord*> out;
  for (const auto& fn : functions) {
    auto triggers = fn.config.find("triggers");
    if (triggers == fn.config.end() || !triggers->is_array()) continue;
    for (const auto& t : *triggers) {
      auto ev = t.find("event");
      if (ev == t.end() || !ev->is_string()) continue;
      if (EventNameMatches(ev->get_ref<const std::string&>(), event.name)) {
        out.push_back(&fn);
        break;  // one run per function per event, however many triggers match
      }
    }
  }
  return out;
}

}  // namespace funcky::scheduler
