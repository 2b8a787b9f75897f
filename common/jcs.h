// JSON Canonicalization Scheme (RFC 8785).
//
// Request signatures are computed over the JCS form of a body (docs/protocol.md §7): the
// receiver parses the JSON and re-serialises it canonically before the HMAC, so both sides
// must produce byte-identical text for the same value.
#pragma once

#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "common/status.h"

namespace funcky {

// How integers above 2^53 in magnitude are written. RFC 8785 writes every number as the
// IEEE 754 double it parses to, as a JavaScript receiver holds it: such an integer loses
// digits (12345678901234567890 is written 12345678901234567000). kExact keeps its digits,
// for text a host receives; kAsDoubles follows the RFC, for text a signature covers, which
// the JavaScript SDK recomputes from the body as it parsed it.
enum class JcsIntegers { kExact, kAsDoubles };

// Canonical text of `value`: object members sorted by their UTF-16 code units, no white
// space, numbers as ECMAScript's Number.prototype.toString (integers per `integers`), strings
// with the minimal escapes. Fails with kInvalidArgument on a non-finite number (JSON cannot
// carry it). `*holds_large`, when given, is set to true if `value` holds an integer above 2^53
// in magnitude (one the two forms write differently), and left as it is otherwise.
Result<std::string> CanonicalJson(const nlohmann::json& value,
                                  JcsIntegers integers = JcsIntegers::kExact,
                                  bool* holds_large = nullptr);

// Makes each integer of `value` above 2^53 in magnitude the double it rounds to: the value
// as its kAsDoubles form writes it, which is what a signature over that form covers of it.
void LargeIntegersAsDoubles(nlohmann::json& value);

// Canonical text of an object whose members' values are canonical text already (from
// CanonicalJson, or this), so that a large value is not copied into a tree to be written:
// the members are sorted as CanonicalJson sorts them. The keys must be distinct.
using JsonMembers = std::vector<std::pair<std::string, std::string>>;  // key, canonical value
std::string CanonicalObject(JsonMembers members);

// Canonical text of the JSON string `s` (UTF-8).
std::string CanonicalString(std::string_view s);

}  // namespace funcky
