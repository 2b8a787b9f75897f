// libFuzzer target for the expression parser and evaluator: any input either
// compiles or is refused with kInvalidArgument, and a compiled expression evaluates against
// an event without crashing. `make fuzz` builds it with clang and runs it for 60 s.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include <nlohmann/json.hpp>

#include "coordinator/expr/expr.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const nlohmann::json vars = nlohmann::json::parse(R"({
    "event": {"name": "app/e", "data": {"n": 5, "x": 2.5, "s": "Hello", "ok": true,
              "nil": null, "tags": ["a", "b"], "obj": {"k": {"deep": [1, 2, {"z": 0}]}}}},
    "async": {"data": {"user": "u1", "n": -9223372036854775807}}})");
  std::string_view source(reinterpret_cast<const char*>(data), size);
  auto compiled = funcky::expr::Compile(source);
  if (!compiled.ok()) {
    if (compiled.status().code() != funcky::StatusCode::kInvalidArgument) __builtin_trap();
    return 0;
  }
  (void)(*compiled)->Evaluate(vars);
  (void)(*compiled)->Matches(vars);
  (void)funcky::expr::KeyText((*compiled)->Evaluate(vars));
  return 0;
}
