#include "coordinator/store/store.h"

namespace funcky::store {

bool IsTerminalStatus(std::string_view status) {
  return status == kCompleted || status == kFailed || status == kCancelled;
}

}  // namespace funcky::store
