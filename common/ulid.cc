#include "common/ulid.h"

#include <charconv>

#include "common/crypto.h"

namespace funcky {

namespace {

constexpr char kCrockford[] = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";

}  // namespace

std::string MakeUlid(uint64_t unix_ms, std::string_view entropy10) {
  unsigned char bytes[16];
  for (int i = 0; i < 6; ++i) bytes[i] = static_cast<unsigned char>(unix_ms >> (8 * (5 - i)));
  for (int i = 0; i < 10; ++i) bytes[6 + i] = static_cast<unsigned char>(entropy10[i]);
  // 128 bits as 26 base32 characters; the first character carries only 3 bits.
  std::string out(26, '0');
  unsigned __int128 v = 0;
  for (unsigned char b : bytes) v = v << 8 | b;
  for (int i = 25; i >= 0; --i) {
    out[i] = kCrockford[static_cast<int>(v & 31)];
    v >>= 5;
  }
  return out;
}

std::string NewUlid(uint64_t unix_ms) { return MakeUlid(unix_ms, crypto::RandomBytes(10)); }

std::vector<std::string> NewUlidsInOrder(uint64_t unix_ms, size_t count) {
  std::string entropy = crypto::RandomBytes(10);
  entropy[6] = static_cast<char>(static_cast<unsigned char>(entropy[6]) & 0x7f);
  uint32_t tail = 0;
  for (int i = 6; i < 10; ++i) tail = tail << 8 | static_cast<unsigned char>(entropy[i]);
  std::vector<std::string> out;
  out.reserve(count);
  for (size_t n = 0; n < count; ++n, ++tail) {
    for (int i = 9, t = 0; i >= 6; --i, t += 8) entropy[i] = static_cast<char>((tail >> t) & 0xff);
    out.push_back(MakeUlid(unix_ms, entropy));
  }
  return out;
}

std::optional<std::string> UlidFromSeed(std::string_view seed_header, uint32_t index) {
  size_t comma = seed_header.find(',');
  if (comma == std::string_view::npos) return std::nullopt;
  uint64_t ms = 0;
  auto [end, ec] = std::from_chars(seed_header.data(), seed_header.data() + comma, ms);
  if (ec != std::errc() || end != seed_header.data() + comma) return std::nullopt;
  auto entropy = crypto::Base64Decode(seed_header.substr(comma + 1));
  if (!entropy || entropy->size() != 10) return std::nullopt;
  uint32_t tail = 0;
  for (int i = 6; i < 10; ++i) tail = tail << 8 | static_cast<unsigned char>((*entropy)[i]);
  tail += index;  // wraps like the Go server's uint32 addition
  for (int i = 9; i >= 6; --i) {
    (*entropy)[i] = static_cast<char>(tail & 0xff);
    tail >>= 8;
  }
  return MakeUlid(ms, *entropy);
}

}  // namespace funcky
