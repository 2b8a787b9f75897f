// libFuzzer target for the URL parser: any text either parses into an http or https URL
// with a host and a target starting with '/', none of whose parts holds a control character
// or a space (they would reach a request line or a header), or is refused with
// kInvalidArgument.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "common/url.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  auto url = funcky::ParseUrl(text);
  if (!url.ok()) {
    if (url.status().code() != funcky::StatusCode::kInvalidArgument) __builtin_trap();
    return 0;
  }
  if (url->host.empty() || url->target.empty() || url->target[0] != '/') __builtin_trap();
  if (url->scheme != "http" && url->scheme != "https") __builtin_trap();
  for (std::string_view part : {std::string_view(url->host), std::string_view(url->target)}) {
    for (unsigned char ch : part) {
      if (ch <= 0x20 || ch == 0x7f) __builtin_trap();
    }
  }
  (void)funcky::SetQueryParam(text, "stepId", "step");
  (void)funcky::QueryParam(url->target, "fnId");
  return 0;
}
