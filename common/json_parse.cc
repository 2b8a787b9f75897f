#include "common/json_parse.h"

#include <string>

namespace funcky {

namespace {

using Json = nlohmann::json;

// Thrown from the parser callback to stop parsing at once; never leaves this file.
struct Refused {
  std::string reason;
};

bool HasNul(const std::string& s) { return s.find('\0') != std::string::npos; }

// nlohmann's messages end with "last read: '<token>'", which for a 100k-digit number or a
// long string is the whole token: keep the position and the reason only.
std::string ShortMessage(std::string_view what) {
  if (auto pos = what.find("] "); pos != std::string_view::npos) what.remove_prefix(pos + 2);
  if (auto pos = what.find("; last read"); pos != std::string_view::npos)
    what = what.substr(0, pos);
  constexpr size_t kMax = 200;
  std::string out(what.substr(0, kMax));
  if (what.size() > kMax) out += "…";
  return out;
}

}  // namespace

Result<Json> ParseUntrustedJson(std::string_view text, JsonLimits limits) {
  if (text.size() > limits.max_bytes) {
    return ResourceExhausted("JSON text of " + std::to_string(text.size()) +
                             " bytes is larger than the limit of " +
                             std::to_string(limits.max_bytes));
  }
  // The callback sees each container before its contents, with the depth of its parent:
  // refusing there means nothing deeper than the limit is ever built.
  Json::parser_callback_t check = [&limits](int depth, Json::parse_event_t event,
                                            Json& parsed) -> bool {
    switch (event) {
      case Json::parse_event_t::object_start:
      case Json::parse_event_t::array_start:
        if (depth >= limits.max_depth) {
          throw Refused{"JSON nested deeper than " + std::to_string(limits.max_depth) + " levels"};
        }
        break;
      case Json::parse_event_t::key:
      case Json::parse_event_t::value:
        if (!limits.allow_nul && parsed.is_string() &&
            HasNul(parsed.get_ref<const std::string&>())) {
          throw Refused{"JSON string holds \\u0000, which cannot be stored"};
        }
        break;
      default:
        break;
    }
    return true;
  };
  try {
    return Json::parse(text, check);
  } catch (const Refused& r) {
    return InvalidArgument(r.reason);
  } catch (const Json::out_of_range&) {
    // The only out_of_range the parser raises: a number a double cannot hold (406).
    return InvalidArgument("JSON number out of range");
  } catch (const Json::exception& e) {
    return InvalidArgument("malformed JSON: " + ShortMessage(e.what()));
  }
}

}  // namespace funcky
