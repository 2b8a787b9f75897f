#include "common/signing.h"

#include <cctype>
#include <charconv>

#include "common/crypto.h"

namespace funcky::signing {

namespace {

// Length of the `signkey-<word>-` prefix, or 0 when there is none.
size_t PrefixLength(std::string_view key) {
  constexpr std::string_view kStart = "signkey-";
  if (key.substr(0, kStart.size()) != kStart) return 0;
  size_t i = kStart.size();
  size_t word = i;
  while (i < key.size() && (std::isalnum(static_cast<unsigned char>(key[i])) || key[i] == '_')) {
    ++i;
  }
  if (i == word || i >= key.size() || key[i] != '-') return 0;
  return i + 1;
}

}  // namespace

std::string_view KeyMaterial(std::string_view key) { return key.substr(PrefixLength(key)); }

Status ValidateSigningKey(std::string_view key) {
  std::string_view material = KeyMaterial(key);
  if (material.empty()) {
    return InvalidArgument("the signing key has no key material after its signkey-<env>- prefix");
  }
  if (!crypto::HexDecode(material)) {
    return InvalidArgument(
        "the signing key must be signkey-<env>-<hex> or bare hex with an even number of hex "
        "digits");
  }
  return Status::Ok();
}

std::string SignatureHeader(std::string_view body, std::string_view key, int64_t unix_seconds) {
  std::string t = std::to_string(unix_seconds);
  std::string message(body);
  message += t;
  return "t=" + t + "&s=" + crypto::HmacSha256Hex(KeyMaterial(key), message);
}

Status VerifySignature(std::string_view header, std::string_view body,
                       const std::vector<std::string>& keys, int64_t now_unix_seconds) {
  if (header.empty()) return Unauthenticated("missing X-Inngest-Signature");
  std::string_view t_text, s_text;
  size_t pos = 0;
  while (pos <= header.size()) {
    size_t amp = header.find('&', pos);
    std::string_view part = header.substr(pos, amp == std::string_view::npos ? amp : amp - pos);
    if (part.substr(0, 2) == "t=") t_text = part.substr(2);
    if (part.substr(0, 2) == "s=") s_text = part.substr(2);
    if (amp == std::string_view::npos) break;
    pos = amp + 1;
  }
  int64_t t = 0;
  auto [end, ec] = std::from_chars(t_text.data(), t_text.data() + t_text.size(), t);
  if (t_text.empty() || ec != std::errc() || end != t_text.data() + t_text.size() ||
      s_text.empty()) {
    return Unauthenticated("malformed X-Inngest-Signature");
  }
  // The distance between t and now in unsigned arithmetic: `now - t` overflows (undefined
  // behaviour) for a hostile t such as INT64_MIN, and two int64 values are less than 2^64
  // apart, so the larger minus the smaller is exact as uint64.
  const uint64_t distance =
      t < now_unix_seconds ? static_cast<uint64_t>(now_unix_seconds) - static_cast<uint64_t>(t)
                           : static_cast<uint64_t>(t) - static_cast<uint64_t>(now_unix_seconds);
  if (distance > static_cast<uint64_t>(kMaxSkew.count())) {
    return Unauthenticated("signature timestamp is outside the 5 minute window");
  }
  std::string message(body);
  message += t_text;
  for (const std::string& key : keys) {
    if (key.empty()) continue;
    if (crypto::ConstantTimeEqual(crypto::HmacSha256Hex(KeyMaterial(key), message), s_text)) {
      return Status::Ok();
    }
  }
  return Unauthenticated("signature does not match");
}

std::string HashedSigningKey(std::string_view key) {
  size_t prefix = PrefixLength(key);
  auto raw = crypto::HexDecode(key.substr(prefix));
  if (!raw) return "";
  return std::string(key.substr(0, prefix)) + crypto::Sha256Hex(*raw);
}

bool BearerMatchesSigningKey(std::string_view bearer, std::string_view key) {
  std::string_view presented = KeyMaterial(bearer);
  std::string hashed = HashedSigningKey(key);
  // Evaluate both comparisons so the timing does not tell which form was close.
  bool plain_ok = crypto::ConstantTimeEqual(presented, KeyMaterial(key));
  bool hashed_ok = !hashed.empty() && crypto::ConstantTimeEqual(presented, KeyMaterial(hashed));
  return plain_ok | hashed_ok;
}

}  // namespace funcky::signing
