// libFuzzer target for the host-reply op parser: any reply either parses into ops
// or is refused with kInvalidArgument, and every op it yields turns back into JSON and text
// without crashing (so nothing a host sends recurses without bound when copied or dumped).
#include <cstddef>
#include <cstdint>
#include <string_view>

#include <nlohmann/json.hpp>

#include "common/ops.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view body(reinterpret_cast<const char*>(data), size);
  auto ops = funcky::ParseOps(body);
  if (!ops.ok()) {
    if (ops.status().code() != funcky::StatusCode::kInvalidArgument) __builtin_trap();
    return 0;
  }
  for (const funcky::Op& op : *ops) {
    nlohmann::json j = funcky::OpToJson(op);
    (void)j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
    (void)op.DisplayName();
    nlohmann::json copy = op.data;
    if (copy != op.data) __builtin_trap();
  }
  return 0;
}
