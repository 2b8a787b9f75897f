#include "common/url.h"

#include <algorithm>
#include <cctype>
#include <charconv>

#include <boost/url/encode.hpp>
#include <boost/url/parse.hpp>
#include <boost/url/rfc/unreserved_chars.hpp>
#include <boost/url/url.hpp>

#include "common/utf8.h"

namespace funcky {

namespace urls = boost::urls;

namespace {

// Spaces and control characters are never valid in a URL; refusing them before parsing
// also keeps a decoded host from carrying CR/LF into a request line or a header.
bool HasControlOrSpace(std::string_view s) {
  for (unsigned char c : s) {
    if (c <= 0x20 || c == 0x7f) return true;
  }
  return false;
}

std::string Quoted(std::string_view url) {
  // Enough to recognise the URL in an error, never a whole body pasted as a "URL".
  constexpr size_t kMax = 200;
  std::string out = "\"" + std::string(url.substr(0, kMax));
  if (url.size() > kMax) out += "…";
  for (char& c : out) {
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) c = '?';
  }
  return out + "\"";
}

// A host name made of letters, digits, '-', '_' and '.' only (what DNS and /etc/hosts can
// hold); percent-encoded or other characters in a name are refused.
bool IsPlainHostName(std::string_view host) {
  if (host.empty()) return false;
  for (unsigned char c : host) {
    if (!std::isalnum(c) && c != '-' && c != '_' && c != '.') return false;
  }
  return true;
}

// Whether a host name's last label is a number, as WHATWG's URL parser asks: decimal digits,
// or 0x and hex digits ("127.1", "2130706433", "0x7f.1", "010.0.0.1"). getaddrinfo reads such
// a name as an IPv4 address in inet_aton's forms (010 in octal), another than it shows.
bool EndsInANumber(std::string_view host) {
  if (!host.empty() && host.back() == '.') host.remove_suffix(1);
  std::string_view last =
      host.substr(host.rfind('.') == std::string_view::npos ? 0 : host.rfind('.') + 1);
  if (last.empty()) return false;
  if (std::all_of(last.begin(), last.end(), [](unsigned char c) { return std::isdigit(c); })) {
    return true;
  }
  if (last.size() < 2 || last[0] != '0' || (last[1] != 'x' && last[1] != 'X')) return false;
  return std::all_of(last.begin() + 2, last.end(),
                     [](unsigned char c) { return std::isxdigit(c); });
}

}  // namespace

std::string UrlForLog(std::string_view url) {
  constexpr size_t kMax = 200;
  const size_t rest = url.find_first_of("?#");
  const std::string_view kept = url.substr(0, rest);
  std::string out(kept.substr(0, kMax));
  if (kept.size() > kMax) out += "…";
  for (char& c : out) {
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) c = '?';
  }
  if (rest != std::string_view::npos) out += "?…";
  return out;
}

std::string Url::authority() const {
  std::string h = host.find(':') != std::string::npos ? "[" + host + "]" : host;
  return h + ":" + std::to_string(port);
}

// Case and percent-encoding normalised in the scheme, authority and path, not the query:
// Boost.URL 1.81 decodes %26, %3D and %2B there, which makes one parameter's value two
// parameters, or a '+' a space.
namespace {
void NormalizeAllButQuery(urls::url& u) {
  u.normalize_scheme();
  u.normalize_authority();
  u.normalize_path();
}
}  // namespace

Result<Url> ParseUrl(std::string_view text) {
  if (HasControlOrSpace(text)) {
    return InvalidArgument("URL must not contain spaces or control characters: " + Quoted(text));
  }
  auto parsed = urls::parse_uri(text);
  if (!parsed) {
    return InvalidArgument("not an absolute URL: " + Quoted(text) + " (" +
                           parsed.error().message() + ")");
  }
  urls::url u(*parsed);
  NormalizeAllButQuery(u);
  Url out;
  if (u.scheme_id() == urls::scheme::http) {
    out.scheme = "http";
    out.port = 80;
  } else if (u.scheme_id() == urls::scheme::https) {
    out.scheme = "https";
    out.port = 443;
  } else {
    return InvalidArgument("the scheme must be http or https: " + Quoted(text));
  }
  if (u.has_userinfo()) return InvalidArgument("URL must not carry credentials");
  switch (u.host_type()) {
    case urls::host_type::ipv4:
      out.host = u.host_ipv4_address().to_string();
      break;
    case urls::host_type::ipv6:
      out.host = u.host_ipv6_address().to_string();
      break;
    case urls::host_type::name:
      out.host = u.encoded_host();
      if (!IsPlainHostName(out.host)) return InvalidArgument("bad host in URL " + Quoted(text));
      if (EndsInANumber(out.host)) {
        return InvalidArgument("bad host in URL " + Quoted(text) +
                               ": a number that is not a dotted IPv4 address (a.b.c.d)");
      }
      break;
    default:
      return InvalidArgument("URL has no host: " + Quoted(text));
  }
  if (u.has_port() && !u.port().empty()) {
    // The grammar allows any run of digits; a port is 1..65535.
    std::string_view digits = u.port();
    unsigned value = 0;
    auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), value);
    if (ec != std::errc() || end != digits.data() + digits.size() || value == 0 || value > 65535) {
      return InvalidArgument("bad port in URL " + Quoted(text));
    }
    out.port = static_cast<uint16_t>(value);
  }
  // Boost.URL 1.81 reads "h:80x/y" as port 80 and path "x/y"; after an authority a path
  // is empty or starts with '/' (RFC 3986 path-abempty), so anything else is a bad port.
  if (!u.encoded_path().empty() && u.encoded_path().front() != '/') {
    return InvalidArgument("bad port in URL " + Quoted(text));
  }
  out.target = u.encoded_path().empty() ? "/" : std::string(u.encoded_path());
  if (u.has_query()) out.target += "?" + std::string(u.encoded_query());
  return out;
}

Result<std::string> ResolveUrl(std::string_view base, std::string_view reference) {
  ASSIGN_OR_RETURN(Url parsed_base, ParseUrl(base));
  (void)parsed_base;
  if (HasControlOrSpace(reference)) {
    return InvalidArgument("URL must not contain spaces or control characters: " +
                           Quoted(reference));
  }
  auto b = urls::parse_uri(base);
  auto r = urls::parse_uri_reference(reference);
  if (!b || !r) return InvalidArgument("not a URL reference: " + Quoted(reference));
  urls::url resolved;
  if (auto ok = urls::resolve(*b, *r, resolved); !ok) {
    return InvalidArgument("cannot resolve " + Quoted(reference) + " against " + Quoted(base));
  }
  resolved.remove_fragment();
  NormalizeAllButQuery(resolved);
  std::string out(resolved.buffer());
  RETURN_IF_ERROR(ParseUrl(out).status());
  return out;
}

std::string PercentEncode(std::string_view s) { return urls::encode(s, urls::unreserved_chars); }

std::string PercentDecode(std::string_view s) {
  auto pct = urls::make_pct_string_view(s);
  if (!pct) return std::string(s);  // not valid percent-encoding: taken as it is
  return pct->decode();
}

std::string_view TargetPath(std::string_view target) { return target.substr(0, target.find('?')); }

Status CheckRequestTarget(std::string_view target) {
  auto ref = urls::parse_origin_form(target);
  if (!ref) return InvalidArgument("the request target is not a path and query");
  for (auto segment : ref->segments()) {
    if (!IsUtf8WithoutNul(segment)) {
      return InvalidArgument("the path holds bytes that are not UTF-8, or a NUL");
    }
  }
  for (auto param : ref->params()) {
    if (!IsUtf8WithoutNul(param.key) || !IsUtf8WithoutNul(param.value)) {
      return InvalidArgument("the query holds bytes that are not UTF-8, or a NUL");
    }
  }
  return Status::Ok();
}

std::string QueryParam(std::string_view target, std::string_view key) {
  auto ref = urls::parse_uri_reference(target);
  if (!ref) return "";
  for (const auto& param : ref->params()) {
    if (param.key == key) return param.has_value ? param.value : std::string();
  }
  return "";
}

std::string SetQueryParam(std::string_view url, std::string_view key, std::string_view value) {
  auto ref = urls::parse_uri_reference(url);
  if (!ref) return std::string(url);  // callers pass URLs that ParseUrl accepted
  urls::url u(*ref);
  // A fragment is never sent. Boost.URL 1.81 also crashes setting a parameter of an empty
  // query followed by one ("/a?#f"), which the fuzz target found.
  u.remove_fragment();
  if (u.has_query() && u.encoded_query().empty()) u.remove_query();
  // Percent-encoded whole: a '+' left as it is reads as a space where a query is read as a
  // form (QueryParam, URLSearchParams), so a function id "email+sms" found no function.
  const std::string encoded_key = PercentEncode(key);
  const std::string encoded_value = PercentEncode(value);
  u.encoded_params().set(urls::pct_string_view(encoded_key), urls::pct_string_view(encoded_value));
  return std::string(u.buffer());
}

}  // namespace funcky
