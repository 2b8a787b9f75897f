// Request signing of the Inngest SDK protocol (docs/protocol.md §7).
//
// A signing key looks like `signkey-<env>-<hex>`; a bare hex key is accepted too. Calls from
// the coordinator to a host carry `X-Inngest-Signature: t=<unix seconds>&s=<hex>`, where
// s = HMAC-SHA256(key = the hex *text* after the prefix, message = body || decimal(t)).
// Calls from an SDK to the coordinator carry `Authorization: Bearer <hashed key>`.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"

namespace funcky::signing {

// The maximum distance between the signature's timestamp and now, in either direction.
inline constexpr std::chrono::seconds kMaxSkew{300};

// Funcky's own signature of a call's body as sent, byte for byte, beside X-Inngest-Signature
// (same form and key) when the two differ: the standard one covers the body's RFC 8785 form,
// in which an integer above 2^53 is the double a JavaScript parser makes of it, so it does
// not authenticate such an integer's digits (docs/protocol.md §7).
inline constexpr std::string_view kExactSignatureHeader = "X-Funcky-Signature";

// The hex part of a key: `signkey-test-abc` gives `abc`; a bare key is returned unchanged.
std::string_view KeyMaterial(std::string_view key);

// OK when `key` is `signkey-<env>-<hex>` or bare hex, with an even number of hex digits
// after the prefix. kInvalidArgument otherwise (`signkey-prod-` with nothing after it,
// material that is not hex): such a key would sign with, and accept, next to nothing. The
// message never quotes the key.
Status ValidateSigningKey(std::string_view key);

// `t=<unix_seconds>&s=<hex>` for `body` signed with `key`.
std::string SignatureHeader(std::string_view body, std::string_view key, int64_t unix_seconds);

// Checks `header` against `body` with each key in turn (main key, then fallback).
// kUnauthenticated when the header is missing or malformed, the timestamp is more than
// kMaxSkew away from `now_unix_seconds`, or no key produces the same signature.
Status VerifySignature(std::string_view header, std::string_view body,
                       const std::vector<std::string>& keys, int64_t now_unix_seconds);

// `<prefix><hex(SHA256(hexdecode(material)))>`: what an SDK sends as its bearer token.
// Returns an empty string when the material is not valid hex.
std::string HashedSigningKey(std::string_view key);

// True when `bearer` (the token after "Bearer ") proves knowledge of `key`: it equals the
// hashed key or the plain key, compared in constant time with the prefixes stripped.
bool BearerMatchesSigningKey(std::string_view bearer, std::string_view key);

}  // namespace funcky::signing
