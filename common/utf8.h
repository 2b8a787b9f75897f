// Text checks for bytes from the network that end up in a store or a log.
#pragma once

#include <string_view>

namespace funcky {

// Whether `text` is UTF-8 (no overlong forms, surrogates or code points past U+10FFFF) and
// holds no NUL: what every store keeps as it is. PostgreSQL refuses other bytes in text, and
// libpq ends a parameter at a NUL.
bool IsUtf8WithoutNul(std::string_view text);

}  // namespace funcky
