#include "common/crypto.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <openssl/sha.h>

#include <pthread.h>

#include <atomic>
#include <cstring>
#include <mutex>
#include <stdexcept>

namespace funcky::crypto {

namespace {

// OpenSSL 3 looks an algorithm up by name at each use of EVP_sha1() and the like (a lock and
// a hash table, about a third of a short digest): each is fetched once, and kept.
const EVP_MD* Fetched(const char* name) {
  EVP_MD* md = EVP_MD_fetch(nullptr, name, nullptr);
  if (!md) throw std::runtime_error(std::string("OpenSSL has no ") + name);
  return md;
}
const EVP_MD* Sha1Md() {
  static const EVP_MD* md = Fetched("SHA1");
  return md;
}
const EVP_MD* Sha256Md() {
  static const EVP_MD* md = Fetched("SHA256");
  return md;
}

std::string Digest(const EVP_MD* md, std::string_view data) {
  unsigned char out[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  if (EVP_Digest(data.data(), data.size(), out, &len, md, nullptr) != 1) {
    throw std::runtime_error("EVP_Digest failed");  // only on allocation failure
  }
  return std::string(reinterpret_cast<char*>(out), len);
}

}  // namespace

std::string Sha1Hex(std::string_view data) { return HexEncode(Digest(Sha1Md(), data)); }
std::string Sha256(std::string_view data) { return Digest(Sha256Md(), data); }
std::string Sha256Hex(std::string_view data) { return HexEncode(Sha256(data)); }

std::string HmacSha256Hex(std::string_view key, std::string_view message) {
  unsigned char out[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  HMAC(Sha256Md(), key.data(), static_cast<int>(key.size()),
       reinterpret_cast<const unsigned char*>(message.data()), message.size(), out, &len);
  return HexEncode(std::string_view(reinterpret_cast<char*>(out), len));
}

std::string HexEncode(std::string_view bytes) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out;
  out.reserve(bytes.size() * 2);
  for (unsigned char c : bytes) {
    out.push_back(kDigits[c >> 4]);
    out.push_back(kDigits[c & 0xf]);
  }
  return out;
}

std::optional<std::string> HexDecode(std::string_view hex) {
  if (hex.size() % 2 != 0) return std::nullopt;
  auto nibble = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  };
  std::string out;
  out.reserve(hex.size() / 2);
  for (size_t i = 0; i < hex.size(); i += 2) {
    int hi = nibble(hex[i]), lo = nibble(hex[i + 1]);
    if (hi < 0 || lo < 0) return std::nullopt;
    out.push_back(static_cast<char>(hi << 4 | lo));
  }
  return out;
}

namespace {

void Fill(unsigned char* out, size_t n) {
  if (RAND_bytes(out, static_cast<int>(n)) != 1) throw std::runtime_error("RAND_bytes failed");
}

// Bumped in a forked child: a thread's block drawn before the fork is the parent's too.
std::atomic<uint64_t> fork_generation{0};

}  // namespace

std::string RandomBytes(size_t n) {
  // Each RAND_bytes call costs about a microsecond whatever its size (OpenSSL re-keys its
  // generator and checks the process id, a system call), and the coordinator draws several
  // short tokens a run: they come from a block drawn per thread. Bytes handed out are wiped
  // from the block.
  struct Block {
    unsigned char bytes[512];
    size_t used = sizeof bytes;
    uint64_t generation = 0;
    ~Block() { OPENSSL_cleanse(bytes, sizeof bytes); }
  };
  thread_local Block block;
  static std::once_flag at_fork;
  std::call_once(at_fork,
                 [] { pthread_atfork(nullptr, nullptr, [] { fork_generation.fetch_add(1); }); });
  std::string out(n, '\0');
  auto* dest = reinterpret_cast<unsigned char*>(out.data());
  if (n > sizeof block.bytes / 8) {
    Fill(dest, n);
    return out;
  }
  const uint64_t generation = fork_generation.load(std::memory_order_relaxed);
  if (block.generation != generation || block.used + n > sizeof block.bytes) {
    Fill(block.bytes, sizeof block.bytes);
    block.used = 0;
    block.generation = generation;
  }
  std::memcpy(dest, block.bytes + block.used, n);
  OPENSSL_cleanse(block.bytes + block.used, n);
  block.used += n;
  return out;
}

bool SecretEqual(std::string_view presented, std::string_view secret) {
  return ConstantTimeEqual(Sha256(presented), Sha256(secret));
}

bool ConstantTimeEqual(std::string_view a, std::string_view b) {
  // Lengths are not secret (they are fixed by the key format); the contents are.
  if (a.size() != b.size()) return false;
  return CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}

std::string Base64Encode(std::string_view bytes) {
  std::string out(4 * ((bytes.size() + 2) / 3), '\0');
  const int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                                reinterpret_cast<const unsigned char*>(bytes.data()),
                                static_cast<int>(bytes.size()));
  out.resize(static_cast<size_t>(n));
  return out;
}

std::optional<std::string> Base64Decode(std::string_view in) {
  auto value = [](char c) -> int {
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+' || c == '-') return 62;
    if (c == '/' || c == '_') return 63;
    return -1;
  };
  std::string out;
  uint32_t acc = 0;
  int bits = 0;
  for (char c : in) {
    if (c == '=') break;
    int v = value(c);
    if (v < 0) return std::nullopt;
    acc = acc << 6 | static_cast<uint32_t>(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out.push_back(static_cast<char>((acc >> bits) & 0xff));
    }
  }
  return out;
}

}  // namespace funcky::crypto
