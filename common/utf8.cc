#include "common/utf8.h"

#include <cstdint>

namespace funcky {

bool IsUtf8WithoutNul(std::string_view text) {
  static constexpr uint32_t kLeast[] = {0, 0x80, 0x800, 0x10000};  // by continuation bytes
  size_t i = 0;
  while (i < text.size()) {
    const auto c = static_cast<unsigned char>(text[i]);
    if (c == 0) return false;
    if (c < 0x80) {
      ++i;
      continue;
    }
    size_t more;
    uint32_t code;
    if ((c & 0xE0) == 0xC0) {
      more = 1, code = c & 0x1F;
    } else if ((c & 0xF0) == 0xE0) {
      more = 2, code = c & 0x0F;
    } else if ((c & 0xF8) == 0xF0) {
      more = 3, code = c & 0x07;
    } else {
      return false;  // a continuation byte first, or no UTF-8 lead byte at all
    }
    if (i + more >= text.size()) return false;  // cut short
    for (size_t k = 1; k <= more; ++k) {
      const auto d = static_cast<unsigned char>(text[i + k]);
      if ((d & 0xC0) != 0x80) return false;
      code = (code << 6) | (d & 0x3F);
    }
    if (code < kLeast[more] || code > 0x10FFFF || (code >= 0xD800 && code <= 0xDFFF)) {
      return false;  // overlong, beyond Unicode, or a surrogate
    }
    i += more + 1;
  }
  return true;
}

}  // namespace funcky
