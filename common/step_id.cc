#include "common/step_id.h"

#include "common/crypto.h"

namespace funcky {

std::string HashStepId(std::string_view user_id, int repeat_index) {
  if (repeat_index == 0) return crypto::Sha1Hex(user_id);
  std::string id(user_id);
  id += ':';
  id += std::to_string(repeat_index);
  return crypto::Sha1Hex(id);
}

}  // namespace funcky
