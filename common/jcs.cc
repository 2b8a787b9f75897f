#include "common/jcs.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdint>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

namespace funcky {

namespace {

// UTF-16 code units of a UTF-8 string, for ordering object keys as RFC 8785 §3.2.3 asks.
std::u16string Utf16(std::string_view s) {
  std::u16string out;
  for (size_t i = 0; i < s.size();) {
    unsigned char c = s[i];
    uint32_t cp;
    int len;
    if (c < 0x80) {
      cp = c, len = 1;
    } else if ((c >> 5) == 0x6) {
      cp = c & 0x1f, len = 2;
    } else if ((c >> 4) == 0xe) {
      cp = c & 0x0f, len = 3;
    } else {
      cp = c & 0x07, len = 4;
    }
    for (int k = 1; k < len && i + k < s.size(); ++k) cp = cp << 6 | (s[i + k] & 0x3f);
    i += len;
    if (cp >= 0x10000) {
      cp -= 0x10000;
      out.push_back(static_cast<char16_t>(0xd800 + (cp >> 10)));
      out.push_back(static_cast<char16_t>(0xdc00 + (cp & 0x3ff)));
    } else {
      out.push_back(static_cast<char16_t>(cp));
    }
  }
  return out;
}

// Whether `key` holds a code point in U+E000..U+FFFF (UTF-8 lead byte 0xEE or 0xEF): the
// only ones whose UTF-16 order differs from their UTF-8 byte order (such a code point sorts
// before U+10000 and above by code point, after them by UTF-16 code unit, whose surrogates
// are 0xD800..0xDFFF).
bool OrdersDifferently(std::string_view key) {
  return std::any_of(key.begin(), key.end(), [](char c) {
    return static_cast<unsigned char>(c) >= 0xee && static_cast<unsigned char>(c) <= 0xef;
  });
}

void AppendString(std::string& out, std::string_view s) {
  static constexpr char kHex[] = "0123456789abcdef";
  out.push_back('"');
  size_t plain = 0;  // start of the characters not yet appended, none of which needs escaping
  for (size_t i = 0; i < s.size(); ++i) {
    const unsigned char c = s[i];
    if (c >= 0x20 && c != '"' && c != '\\') continue;
    out.append(s.substr(plain, i - plain));
    plain = i + 1;
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\b':
        out += "\\b";
        break;
      case '\f':
        out += "\\f";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      default:
        out += "\\u00";
        out.push_back(kHex[c >> 4]);
        out.push_back(kHex[c & 0xf]);
    }
  }
  out.append(s.substr(plain));
  out.push_back('"');
}

// ECMAScript Number::toString for a finite double (ECMA-262 §6.1.6.1.20), built on the
// shortest round-trip digits that std::to_chars gives.
void AppendDouble(std::string& out, double v) {
  if (v == 0) {  // both +0 and -0 print as 0
    out.push_back('0');
    return;
  }
  if (v < 0) {
    out.push_back('-');
    v = -v;
  }
  char buf[64];
  auto res = std::to_chars(buf, buf + sizeof buf, v, std::chars_format::scientific);
  std::string_view sci(buf, res.ptr - buf);  // d.ddde±XX
  size_t e_pos = sci.find('e');
  std::string digits;
  for (char c : sci.substr(0, e_pos)) {
    if (c != '.') digits.push_back(c);
  }
  while (digits.size() > 1 && digits.back() == '0') digits.pop_back();
  int exp10 = 0;
  std::from_chars(sci.data() + e_pos + 1 + (sci[e_pos + 1] == '+'), sci.data() + sci.size(), exp10);
  const int k = static_cast<int>(digits.size());
  const int n = exp10 + 1;  // position of the decimal point relative to the digits
  if (k <= n && n <= 21) {
    out += digits;
    out.append(n - k, '0');
  } else if (0 < n && n <= 21) {
    out += digits.substr(0, n);
    out.push_back('.');
    out += digits.substr(n);
  } else if (-6 < n && n <= 0) {
    out += "0.";
    out.append(-n, '0');
    out += digits;
  } else {
    out.push_back(digits[0]);
    if (k > 1) {
      out.push_back('.');
      out += digits.substr(1);
    }
    out.push_back('e');
    out.push_back(n - 1 >= 0 ? '+' : '-');
    out += std::to_string(std::abs(n - 1));
  }
}

// 2^53: integers up to this magnitude are doubles exactly, and both forms write them alike.
constexpr uint64_t kLargestExactInteger = uint64_t{1} << 53;

bool IsLarge(int64_t v) {
  return v < -static_cast<int64_t>(kLargestExactInteger) ||
         v > static_cast<int64_t>(kLargestExactInteger);
}
bool IsLarge(uint64_t v) { return v > kLargestExactInteger; }

template <typename Int>
void AppendInteger(std::string& out, Int v, JcsIntegers integers, bool* large) {
  if (large && !*large && IsLarge(v)) *large = true;
  if (integers == JcsIntegers::kAsDoubles && IsLarge(v)) {
    AppendDouble(out, static_cast<double>(v));
  } else {
    out += std::to_string(v);
  }
}

Status Append(std::string& out, const nlohmann::json& v, JcsIntegers integers, bool* large) {
  using T = nlohmann::json::value_t;
  switch (v.type()) {
    case T::null:
      out += "null";
      break;
    case T::boolean:
      out += v.get<bool>() ? "true" : "false";
      break;
    case T::number_integer:
      AppendInteger(out, v.get<int64_t>(), integers, large);
      break;
    case T::number_unsigned:
      AppendInteger(out, v.get<uint64_t>(), integers, large);
      break;
    case T::number_float: {
      double d = v.get<double>();
      if (!std::isfinite(d)) return InvalidArgument("JSON cannot carry a non-finite number");
      AppendDouble(out, d);
      break;
    }
    case T::string:
      AppendString(out, v.get_ref<const std::string&>());
      break;
    case T::array: {
      out.push_back('[');
      bool first = true;
      for (const auto& e : v) {
        if (!first) out.push_back(',');
        first = false;
        RETURN_IF_ERROR(Append(out, e, integers, large));
      }
      out.push_back(']');
      break;
    }
    case T::object: {
      // nlohmann::json keeps members in UTF-8 byte order: RFC 8785's UTF-16 order unless a
      // key holds a code point that the two order differently, which then takes a sort.
      bool resort = false;
      for (auto it = v.begin(); it != v.end() && !resort; ++it)
        resort = OrdersDifferently(it.key());
      std::vector<std::pair<std::u16string, nlohmann::json::const_iterator>> resorted;
      if (resort) {
        resorted.reserve(v.size());
        for (auto m = v.begin(); m != v.end(); ++m) resorted.emplace_back(Utf16(m.key()), m);
        std::sort(resorted.begin(), resorted.end(),
                  [](const auto& a, const auto& b) { return a.first < b.first; });
      }
      out.push_back('{');
      bool first = true;
      auto member = [&](const nlohmann::json::const_iterator& m) -> Status {
        if (!first) out.push_back(',');
        first = false;
        AppendString(out, m.key());
        out.push_back(':');
        return Append(out, m.value(), integers, large);
      };
      if (resorted.empty()) {
        for (auto m = v.begin(); m != v.end(); ++m) RETURN_IF_ERROR(member(m));
      } else {
        for (const auto& [utf16, m] : resorted) RETURN_IF_ERROR(member(m));
      }
      out.push_back('}');
      break;
    }
    case T::binary:
    case T::discarded:
      return InvalidArgument("value is not JSON");
  }
  return Status::Ok();
}

}  // namespace

Result<std::string> CanonicalJson(const nlohmann::json& value, JcsIntegers integers,
                                  bool* holds_large) {
  std::string out;
  RETURN_IF_ERROR(Append(out, value, integers, holds_large));
  return out;
}

void LargeIntegersAsDoubles(nlohmann::json& value) {
  if (value.is_number_unsigned()) {
    if (IsLarge(value.get<uint64_t>())) value = static_cast<double>(value.get<uint64_t>());
  } else if (value.is_number_integer()) {
    if (IsLarge(value.get<int64_t>())) value = static_cast<double>(value.get<int64_t>());
  } else if (value.is_array() || value.is_object()) {
    for (nlohmann::json& e : value) LargeIntegersAsDoubles(e);
  }
}

std::string CanonicalString(std::string_view s) {
  std::string out;
  out.reserve(s.size() + 2);
  AppendString(out, s);
  return out;
}

std::string CanonicalObject(JsonMembers members) {
  const bool resort = std::any_of(members.begin(), members.end(),
                                  [](const auto& m) { return OrdersDifferently(m.first); });
  if (resort) {
    std::sort(members.begin(), members.end(),
              [](const auto& a, const auto& b) { return Utf16(a.first) < Utf16(b.first); });
  } else {
    std::sort(members.begin(), members.end(),
              [](const auto& a, const auto& b) { return a.first < b.first; });
  }
  size_t size = 2;
  for (const auto& [key, value] : members) size += key.size() + value.size() + 4;
  std::string out;
  out.reserve(size);
  out.push_back('{');
  for (size_t i = 0; i < members.size(); ++i) {
    if (i > 0) out.push_back(',');
    AppendString(out, members[i].first);
    out.push_back(':');
    out += members[i].second;
  }
  out.push_back('}');
  return out;
}

}  // namespace funcky
