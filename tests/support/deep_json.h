// Untrusted input at its worst: JSON nested far deeper than any limit.
#pragma once

#include <string>

namespace funcky::testing {

// JSON nested `depth` levels deep: arrays ([[…]]) or objects ({"a":{"a":…1}}).
inline std::string DeepArrays(size_t depth) {
  return std::string(depth, '[') + std::string(depth, ']');
}
inline std::string DeepObjects(size_t depth) {
  std::string out;
  out.reserve(depth * 6 + 1);
  for (size_t i = 0; i < depth; ++i) out += "{\"a\":";
  out += "1";
  out.append(depth, '}');
  return out;
}

}  // namespace funcky::testing
