#include <sys/wait.h>
#include <unistd.h>

#include <cstdint>
#include <limits>
#include <set>
#include <string>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "common/crypto.h"
#include "common/duration.h"
#include "common/jcs.h"
#include "common/ops.h"
#include "common/signing.h"
#include "common/step_id.h"
#include "common/ulid.h"
#include "common/url.h"
#include "tests/support/status_matchers.h"

namespace funcky {
namespace {

using nlohmann::json;
using ::testing::HasSubstr;
using testing::IsOk;
using ::testing::Not;
using testing::StatusIs;

// docs/protocol.md §7 vector.
TEST(Signing, HashedSigningKeyMatchesProtocolVector) {
  EXPECT_EQ(signing::HashedSigningKey("signkey-test-12345678abcdef00"),
            "signkey-test-1425c614b3c1496f790eda4bea6c2256db84457b632ab328d8544fe290a611f2");
}

TEST(Signing, SignatureIsHmacOfBodyAndTimestampKeyedWithHexText) {
  // HMAC-SHA256(key = "12345678abcdef00" as ASCII, message = body || "1700000000").
  const std::string body = R"({"a":1})";
  const std::string header =
      signing::SignatureHeader(body, "signkey-test-12345678abcdef00", 1700000000);
  EXPECT_EQ(header,
            "t=1700000000&s=" + crypto::HmacSha256Hex("12345678abcdef00", body + "1700000000"));
  // Known HMAC-SHA256 vector (RFC 4231 case 2) to pin the primitive itself.
  EXPECT_EQ(crypto::HmacSha256Hex("Jefe", "what do ya want for nothing?"),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
}

TEST(Signing, VerifyAcceptsFreshRejectsStaleWrongAndMalformed) {
  const std::string key = "signkey-prod-abcdef0123";
  const std::string body = "{}";
  const int64_t now = 1'800'000'000;
  std::vector<std::string> keys = {key};
  EXPECT_TRUE(
      signing::VerifySignature(signing::SignatureHeader(body, key, now), body, keys, now).ok());
  EXPECT_TRUE(
      signing::VerifySignature(signing::SignatureHeader(body, key, now - 299), body, keys, now)
          .ok());
  EXPECT_EQ(
      signing::VerifySignature(signing::SignatureHeader(body, key, now - 360), body, keys, now)
          .code(),
      StatusCode::kUnauthenticated);
  EXPECT_EQ(
      signing::VerifySignature(signing::SignatureHeader(body, key, now + 360), body, keys, now)
          .code(),
      StatusCode::kUnauthenticated);
  EXPECT_EQ(signing::VerifySignature(signing::SignatureHeader(body, "signkey-prod-ff", now), body,
                                     keys, now)
                .code(),
            StatusCode::kUnauthenticated);
  EXPECT_EQ(
      signing::VerifySignature(signing::SignatureHeader("{ }", key, now), body, keys, now).code(),
      StatusCode::kUnauthenticated);
  EXPECT_EQ(signing::VerifySignature("", body, keys, now).code(), StatusCode::kUnauthenticated);
  EXPECT_EQ(signing::VerifySignature("t=x&s=y", body, keys, now).code(),
            StatusCode::kUnauthenticated);
  // The fallback key is tried after the main key.
  std::vector<std::string> rotated = {"signkey-prod-0000", key};
  EXPECT_TRUE(
      signing::VerifySignature(signing::SignatureHeader(body, key, now), body, rotated, now).ok());
}

// A hostile timestamp at either end of int64 is outside the window, decided without the
// signed overflow of `now - t` (the sanitizer build of `make test` aborts on one), even when
// the signature over it is right; the window's own edges are inside it, there too.
TEST(Signing, TimestampsAtTheEndsOfInt64AreOutsideTheWindow) {
  const std::string key = "signkey-prod-abcdef0123";
  const std::string body = "{}";
  const std::vector<std::string> keys = {key};
  constexpr int64_t kMin = std::numeric_limits<int64_t>::min();
  constexpr int64_t kMax = std::numeric_limits<int64_t>::max();
  auto verify = [&](int64_t t, int64_t now) {
    return signing::VerifySignature(signing::SignatureHeader(body, key, t), body, keys, now);
  };
  for (const int64_t now : {int64_t{1'800'000'000}, int64_t{0}}) {
    for (const int64_t t : {kMin, kMin + 1, kMax, kMax - 1}) {
      Status s = verify(t, now);
      EXPECT_EQ(s.code(), StatusCode::kUnauthenticated) << t << " at " << now;
      EXPECT_EQ(s.message(), "signature timestamp is outside the 5 minute window")
          << t << " at " << now;
    }
  }
  // Wrapped around, `now - t` would be 1 here: inside the window.
  EXPECT_EQ(verify(kMax, kMin).code(), StatusCode::kUnauthenticated);
  EXPECT_EQ(verify(kMin, kMax).code(), StatusCode::kUnauthenticated);
  // As a hostile sender writes it.
  EXPECT_EQ(signing::VerifySignature("t=-9223372036854775808&s=" + std::string(64, 'a'), body, keys,
                                     1'800'000'000)
                .message(),
            "signature timestamp is outside the 5 minute window");
  const int64_t now = 1'800'000'000;
  EXPECT_THAT(verify(now - 300, now), IsOk());
  EXPECT_THAT(verify(now + 300, now), IsOk());
  EXPECT_EQ(verify(now - 301, now).code(), StatusCode::kUnauthenticated);
  EXPECT_EQ(verify(now + 301, now).code(), StatusCode::kUnauthenticated);
  EXPECT_THAT(verify(kMin + 300, kMin), IsOk());
  EXPECT_THAT(verify(kMax - 300, kMax), IsOk());
  EXPECT_EQ(verify(kMin + 301, kMin).code(), StatusCode::kUnauthenticated);
  EXPECT_EQ(verify(kMax - 301, kMax).code(), StatusCode::kUnauthenticated);
}

TEST(Signing, BearerAcceptsHashedOrPlainKeyOnly) {
  const std::string key = "signkey-test-12345678abcdef00";
  EXPECT_TRUE(signing::BearerMatchesSigningKey(signing::HashedSigningKey(key), key));
  EXPECT_TRUE(signing::BearerMatchesSigningKey(key, key));
  EXPECT_FALSE(signing::BearerMatchesSigningKey("signkey-test-00", key));
  EXPECT_FALSE(signing::BearerMatchesSigningKey("", key));
}

// Malformed keys are refused (the coordinator will not start on them).
TEST(Signing, MalformedKeysAreRefusedWithoutQuotingThem) {
  EXPECT_THAT(signing::ValidateSigningKey("signkey-prod-12345678abcdef00"), IsOk());
  EXPECT_THAT(signing::ValidateSigningKey("12345678ABCDEF00"), IsOk());
  for (const std::string key :
       {"signkey-prod-", "signkey-test-", "signkey-prod-not-hex-zz", "signkey-prod-abc",
        "signkey-prod", "secret", "signkey-prod-12 34"}) {
    Status s = signing::ValidateSigningKey(key);
    EXPECT_EQ(s.code(), StatusCode::kInvalidArgument) << key;
    EXPECT_EQ(s.message().find(key), std::string::npos) << s.message();
  }
  EXPECT_EQ(signing::ValidateSigningKey("signkey-prod-").message(),
            "the signing key has no key material after its signkey-<env>- prefix");
}

TEST(Crypto, RandomBytesAreFreshAcrossCallsSizesAndAFork) {
  std::set<std::string> seen;
  for (int i = 0; i < 200; ++i) {  // past several blocks of the thread's
    std::string b = crypto::RandomBytes(12);
    ASSERT_EQ(b.size(), 12u);
    EXPECT_TRUE(seen.insert(b).second);
  }
  EXPECT_EQ(crypto::RandomBytes(0), "");
  EXPECT_EQ(crypto::RandomBytes(4096).size(), 4096u);
  EXPECT_NE(crypto::RandomBytes(4096), crypto::RandomBytes(4096));
  // A forked child must not hand out the parent's next bytes.
  int fds[2];
  ASSERT_EQ(pipe(fds), 0);
  const pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    const std::string b = crypto::RandomBytes(16);
    _exit(write(fds[1], b.data(), b.size()) == 16 ? 0 : 1);
  }
  const std::string mine = crypto::RandomBytes(16);
  std::string theirs(16, '\0');
  ASSERT_EQ(read(fds[0], theirs.data(), theirs.size()), 16);
  int status = 0;
  ASSERT_EQ(waitpid(child, &status, 0), child);
  EXPECT_EQ(status, 0);
  close(fds[0]);
  close(fds[1]);
  EXPECT_NE(mine, theirs);
}

TEST(Crypto, ConstantTimeEqual) {
  EXPECT_TRUE(crypto::ConstantTimeEqual("abc", "abc"));
  EXPECT_FALSE(crypto::ConstantTimeEqual("abc", "abd"));
  EXPECT_FALSE(crypto::ConstantTimeEqual("abc", "abcd"));
}

// Secrets an operator chose are compared by digest: equal only when equal, whatever the
// lengths (the time taken is not what a unit test can claim).
TEST(Crypto, SecretEqualComparesWholeSecretsOfAnyLength) {
  EXPECT_TRUE(crypto::SecretEqual("event-key-1", "event-key-1"));
  EXPECT_TRUE(crypto::SecretEqual("", ""));
  EXPECT_FALSE(crypto::SecretEqual("event-key-1", "event-key-2"));
  EXPECT_FALSE(crypto::SecretEqual("event-key", "event-key-1"));
  EXPECT_FALSE(crypto::SecretEqual("", "event-key-1"));
  EXPECT_FALSE(crypto::SecretEqual(std::string("k\0x", 3), "k"));
}

// docs/protocol.md §6 vectors.
TEST(StepId, HashesMatchProtocolVectors) {
  EXPECT_EQ(HashStepId("my-step-id"), "e7d8a2f140845095749d60246ff1110c9d01d76a");
  EXPECT_EQ(HashStepId("first"), "e0996a37c13d44c3b06074939d43fa3759bd32c1");
  EXPECT_EQ(HashStepId("second"), "352f7829a2384b001cc12b0c2613c756454a1f6a");
  EXPECT_EQ(HashStepId("complete"), "0737c22d3bfae812339732d14d8c7dbd6dc4e09c");
  EXPECT_EQ(HashStepId("dup").substr(0, 8), "7116abcd");
  EXPECT_EQ(HashStepId("dup", 1).substr(0, 8), "6a50dff2");
  EXPECT_EQ(HashStepId("dup", 1), crypto::Sha1Hex("dup:1"));
}

TEST(Jcs, SortsKeysDropsWhitespaceAndFormatsNumbersLikeEcmaScript) {
  json j = json::parse(R"({"b": [1, 2.5, true, null], "a": {"z": "x", "y": 1e21}, "c": 100.0})");
  EXPECT_EQ(*CanonicalJson(j), R"({"a":{"y":1e+21,"z":"x"},"b":[1,2.5,true,null],"c":100})");
  EXPECT_EQ(*CanonicalJson(json(0.000001)), "0.000001");
  EXPECT_EQ(*CanonicalJson(json(1e-7)), "1e-7");
  EXPECT_EQ(*CanonicalJson(json(-0.0)), "0");
  EXPECT_EQ(*CanonicalJson(json(123456789012345680000.0)), "123456789012345680000");
  EXPECT_EQ(*CanonicalJson(json(4.5)), "4.5");
  EXPECT_EQ(*CanonicalJson(json(0.1 + 0.2)), "0.30000000000000004");
}

// RFC 8785 writes an integer above 2^53 as the double a JavaScript parser makes of it; the
// exact form keeps its digits. Up to 2^53 in magnitude the two agree.
TEST(Jcs, WritesLargeIntegersExactlyOrAsDoubles) {
  json j = json::parse(
      R"({"u": 12345678901234567890, "n": -9007199254740993, "edge": 9007199254740992,)"
      R"( "neg_edge": -9007199254740992, "pow": 1152921504606846976, "e21": 1000000000000000000000})");
  EXPECT_EQ(*CanonicalJson(j),
            R"({"e21":1e+21,"edge":9007199254740992,"n":-9007199254740993,)"
            R"("neg_edge":-9007199254740992,"pow":1152921504606846976,"u":12345678901234567890})");
  EXPECT_EQ(*CanonicalJson(j, JcsIntegers::kAsDoubles),
            R"({"e21":1e+21,"edge":9007199254740992,"n":-9007199254740992,)"
            R"("neg_edge":-9007199254740992,"pow":1152921504606847000,"u":12345678901234567000})");
  // The value as the doubles form writes it: integers within 2^53 are left as they are.
  json doubled = j;
  LargeIntegersAsDoubles(doubled);
  EXPECT_TRUE(doubled["u"].is_number_float());
  EXPECT_TRUE(doubled["n"].is_number_float());
  EXPECT_TRUE(doubled["edge"].is_number_integer());
  EXPECT_TRUE(doubled["neg_edge"].is_number_integer());
  EXPECT_EQ(*CanonicalJson(doubled), *CanonicalJson(j, JcsIntegers::kAsDoubles));
  json deep = json::parse(R"([[{"deep": 9007199254740993, "small": 1}]])");
  LargeIntegersAsDoubles(deep);
  EXPECT_TRUE(deep[0][0]["deep"].is_number_float());
  EXPECT_TRUE(deep[0][0]["small"].is_number_integer());
  EXPECT_EQ(*CanonicalJson(json(std::numeric_limits<int64_t>::min()), JcsIntegers::kAsDoubles),
            "-9223372036854776000");
  EXPECT_EQ(*CanonicalJson(json(std::numeric_limits<uint64_t>::max()), JcsIntegers::kAsDoubles),
            "18446744073709552000");
}

TEST(Jcs, EscapesOnlyWhatItMust) {
  EXPECT_EQ(*CanonicalJson(json("a\"b\\c\n\x01\x7f\xc3\xa9")),
            "\"a\\\"b\\\\c\\n\\u0001\x7f\xc3\xa9\"");
  // Keys sort by UTF-16 code units: U+E000 sorts after U+1F600 (a surrogate pair, 0xD83D).
  json j = {{"\xee\x80\x80", 1}, {"\xf0\x9f\x98\x80", 2}, {"a", 3}};
  EXPECT_EQ(*CanonicalJson(j), "{\"a\":3,\"\xf0\x9f\x98\x80\":2,\"\xee\x80\x80\":1}");
}

TEST(Jcs, KeepsUtf16OrderWhereByteOrderAgreesAndEscapesWithinLongerText) {
  // No key holds U+E000..U+FFFF: byte order is UTF-16 order (U+00E9 < U+4E2D < U+1F600).
  json j = {{"\xf0\x9f\x98\x80", 1},
            {"\xe4\xb8\xad", 2},
            {"\xc3\xa9", 3},
            {"\x7f", 4},
            {"a", 5},
            {"Z", 6},
            {"a\tb", 7}};
  EXPECT_EQ(*CanonicalJson(j),
            "{\"Z\":6,\"a\":5,\"a\\tb\":7,\"\x7f\":4,\"\xc3\xa9\":3,\"\xe4\xb8\xad\":2,"
            "\"\xf0\x9f\x98\x80\":1}");
  // An object that must be re-sorted inside one that need not, and the other way round.
  json nested = {{"b", {{"\xee\x80\x80", 1}, {"\xf0\x9f\x98\x80", 2}}},
                 {"\xef\xbf\xbd", {{"y", 1}, {"x", 2}}},
                 {"\xf0\x9f\x98\x80", 3}};
  EXPECT_EQ(*CanonicalJson(nested),
            "{\"b\":{\"\xf0\x9f\x98\x80\":2,\"\xee\x80\x80\":1},\"\xf0\x9f\x98\x80\":3,"
            "\"\xef\xbf\xbd\":{\"x\":2,\"y\":1}}");
  // Escapes at the start, the middle and the end of plain runs.
  EXPECT_EQ(*CanonicalJson(json("\nplain \"quoted\" text\\")),
            "\"\\nplain \\\"quoted\\\" text\\\\\"");
  EXPECT_EQ(*CanonicalJson(json(std::string("a\0b", 3))), "\"a\\u0000b\"");
}

TEST(Jcs, CanonicalObjectSortsMembersWrittenAlready) {
  EXPECT_EQ(CanonicalObject({}), "{}");
  EXPECT_EQ(CanonicalObject({{"b", "[1,2]"}, {"a\n", "{\"x\":1}"}, {"A", "null"}}),
            "{\"A\":null,\"a\\n\":{\"x\":1},\"b\":[1,2]}");
  // By UTF-16 code units once a key needs it, as CanonicalJson sorts.
  json j = {{"\xee\x80\x80", 1}, {"\xf0\x9f\x98\x80", 2}, {"a", 3}};
  EXPECT_EQ(CanonicalObject({{"\xee\x80\x80", "1"}, {"\xf0\x9f\x98\x80", "2"}, {"a", "3"}}),
            *CanonicalJson(j));
}

TEST(Ulid, EncodesTimeAndEntropyAndDerivesFromSeed) {
  // Time part of the ULID spec's example: 1469918176385 -> "01ARYZ6S41".
  EXPECT_EQ(MakeUlid(1469918176385, std::string(10, '\0')).substr(0, 10), "01ARYZ6S41");
  EXPECT_EQ(MakeUlid(0, std::string(10, '\xff')), "0000000000ZZZZZZZZZZZZZZZZ");
  // Same seed and index -> same id; the index changes the id.
  auto a = UlidFromSeed("1700000000000,AAAAAAAAAAAAAA==", 1);
  auto b = UlidFromSeed("1700000000000,AAAAAAAAAAAAAA==", 1);
  auto c = UlidFromSeed("1700000000000,AAAAAAAAAAAAAA==", 2);
  ASSERT_TRUE(a && b && c);
  EXPECT_EQ(*a, *b);
  EXPECT_NE(*a, *c);
  EXPECT_EQ(*a, MakeUlid(1700000000000, std::string("\0\0\0\0\0\0\0\0\0\x01", 10)));
  EXPECT_FALSE(UlidFromSeed("garbage", 1));
  EXPECT_FALSE(UlidFromSeed("1,AAAA", 1));
}

// The ids of one request's events, made in one millisecond, sort as the events were sent, and
// are distinct; two requests' draws differ.
TEST(Ulid, IdsMadeInOrderSortInOrder) {
  for (int draw = 0; draw < 50; ++draw) {
    const std::vector<std::string> ids = NewUlidsInOrder(1700000000000, 5000);
    ASSERT_EQ(ids.size(), 5000u);
    EXPECT_TRUE(std::is_sorted(ids.begin(), ids.end()));
    EXPECT_EQ(std::adjacent_find(ids.begin(), ids.end()), ids.end()) << "two ids alike";
    EXPECT_EQ(ids.front().substr(0, 10),
              MakeUlid(1700000000000, std::string(10, '\0')).substr(0, 10));
  }
  EXPECT_NE(NewUlidsInOrder(1, 1)[0], NewUlidsInOrder(1, 1)[0]);
  EXPECT_TRUE(NewUlidsInOrder(1, 0).empty());
}

TEST(Duration, ParsesProtocolTimeStrings) {
  EXPECT_EQ(ParseDuration("300ms")->count(), 300);
  EXPECT_EQ(ParseDuration("2h45m")->count(), (2 * 3600 + 45 * 60) * 1000);
  EXPECT_EQ(ParseDuration("1d")->count(), 86400000);
  EXPECT_EQ(ParseDuration("1w")->count(), 7 * 86400000LL);
  EXPECT_EQ(ParseDuration("1.5s")->count(), 1500);
  EXPECT_THAT(ParseDuration(""), StatusIs(StatusCode::kInvalidArgument));
  EXPECT_THAT(ParseDuration("5"), StatusIs(StatusCode::kInvalidArgument));
  EXPECT_THAT(ParseDuration("5y"), StatusIs(StatusCode::kInvalidArgument));
  EXPECT_THAT(ParseDuration("s"), StatusIs(StatusCode::kInvalidArgument));
}

TEST(Ops, ParsesOpListAndRejectsMalformed) {
  auto ops = ParseOps(R"([{"id":"e0996a37","op":"StepRun","name":"first","data":"A","extra":1},
                          {"id":"h2","op":"StepError","error":{"name":"Error","message":"x"}},
                          {"id":"h3","op":"Sleep","name":"2s","displayName":"nap"}])");
  ASSERT_TRUE(ops.ok()) << ops.status().ToString();
  ASSERT_EQ(ops->size(), 3u);
  EXPECT_EQ((*ops)[0].code, OpCode::kStepRun);
  EXPECT_EQ((*ops)[0].data, "A");
  EXPECT_EQ((*ops)[1].code, OpCode::kStepError);
  EXPECT_EQ((*ops)[1].error["message"], "x");
  EXPECT_EQ((*ops)[2].DisplayName(), "nap");
  EXPECT_TRUE(ParseOps("[]")->empty());
  EXPECT_THAT(ParseOps("{}"), StatusIs(StatusCode::kInvalidArgument));
  EXPECT_THAT(ParseOps("[1]"), StatusIs(StatusCode::kInvalidArgument));
  EXPECT_THAT(ParseOps(R"([{"op":"StepRun"}])"), StatusIs(StatusCode::kInvalidArgument));
  EXPECT_THAT(ParseOps(R"([{"id":"x","op":"Bogus"}])"), StatusIs(StatusCode::kInvalidArgument));
  EXPECT_THAT(ParseOps("not json"), StatusIs(StatusCode::kInvalidArgument));
  // An id goes back to the host in a header (X-Inngest-Step-ID): no line breaks in it.
  for (const char* id : {R"(x\r\nX-Injected: 1)", R"(x\n)", R"(x\u0001)", R"(x\u007f)"}) {
    EXPECT_THAT(ParseOps(std::string(R"([{"id":")") + id + R"(","op":"StepPlanned"}])"),
                StatusIs(StatusCode::kInvalidArgument, "op 0's id holds a control character"))
        << id;
  }
  EXPECT_TRUE(ParseOps(R"([{"id":"x y\u00e9","op":"StepPlanned"}])").ok());
}

// An op list's size and its step ids are bounded: ids are keys of the store's indexes.
TEST(Ops, RefusesTooManyOpsAndTooLongIds) {
  auto list = [](size_t n, const std::string& id) {
    nlohmann::json ops = nlohmann::json::array();
    for (size_t i = 0; i < n; ++i)
      ops.push_back({{"id", id + std::to_string(i)}, {"op", "StepRun"}});
    return ops.dump();
  };
  EXPECT_TRUE(ParseOps(list(kMaxOps, "h")).ok());
  EXPECT_THAT(ParseOps(list(kMaxOps + 1, "h")),
              StatusIs(StatusCode::kInvalidArgument, "op list has 1001 ops, more than 1000"));
  EXPECT_TRUE(ParseOps(list(1, std::string(kMaxStepIdBytes - 1, 'a'))).ok());
  EXPECT_THAT(ParseOps(list(1, std::string(kMaxStepIdBytes, 'a'))),
              StatusIs(StatusCode::kInvalidArgument, "op 0's id has 257 bytes, more than 256"));
  // An unknown op is named only when its name is short.
  EXPECT_THAT(ParseOps(R"([{"id":"x","op":"Bogus"}])"),
              StatusIs(StatusCode::kInvalidArgument, "op 0 has unknown op \"Bogus\""));
  EXPECT_THAT(ParseOps(R"([{"id":"x","op":")" + std::string(65, 'B') + R"("}])"),
              StatusIs(StatusCode::kInvalidArgument, "op 0 has unknown op"));
}

TEST(Url, ParsesAndEditsQuery) {
  auto u = ParseUrl("http://127.0.0.1:3000/api/funcky?fnId=a-b&stepId=step");
  ASSERT_TRUE(u.ok());
  EXPECT_EQ(u->scheme, "http");
  EXPECT_EQ(u->host, "127.0.0.1");
  EXPECT_EQ(u->port, 3000);
  EXPECT_EQ(u->target, "/api/funcky?fnId=a-b&stepId=step");
  EXPECT_FALSE(u->tls());
  EXPECT_EQ(SetQueryParam("http://h/x?fnId=f&stepId=step", "stepId", "abc"),
            "http://h/x?fnId=f&stepId=abc");
  EXPECT_EQ(SetQueryParam("https://h/x", "stepId", "a b&c"), "https://h/x?stepId=a%20b%26c");
  // An empty query, a fragment, or both (Boost.URL 1.81 crashed on "?#"; found by fuzzing).
  EXPECT_EQ(SetQueryParam("http://h/a?#pfnId", "stepId", "s"), "http://h/a?stepId=s");
  EXPECT_EQ(SetQueryParam("http://h/a?", "stepId", "s"), "http://h/a?stepId=s");
  EXPECT_EQ(SetQueryParam("http://h/a?x=1#f", "stepId", "s"), "http://h/a?x=1&stepId=s");
  EXPECT_EQ(QueryParam("/x?fnId=a%2Db&stepId=s", "fnId"), "a-b");
  EXPECT_EQ(QueryParam("/x?fnId=a%2Db&stepId=s", "stepId"), "s");
  EXPECT_EQ(QueryParam("/x?fnId=a", "missing"), "");
  // A '+' is written %2B: read as a form's, a plain '+' is a space (an id "email+sms" found
  // no function).
  EXPECT_EQ(SetQueryParam("http://h/x", "fnId", "email+sms"), "http://h/x?fnId=email%2Bsms");
  auto edited = ParseUrl(SetQueryParam("http://h/x?a=1", "fnId", "e+s =&%"));
  ASSERT_TRUE(edited.ok());
  EXPECT_EQ(QueryParam(edited->target, "fnId"), "e+s =&%");
  EXPECT_EQ(QueryParam(edited->target, "a"), "1");
  EXPECT_EQ(edited->target, "/x?a=1&fnId=e%2Bs%20%3D%26%25") << "the query is sent as written";
  EXPECT_EQ(PercentDecode("a%2Fb+c"), "a/b+c");  // a path segment: '+' stays '+'
  EXPECT_EQ(PercentEncode("a/b c~"), "a%2Fb%20c~");
}

TEST(Url, HttpsWithDefaultPortsAndNormalisation) {
  auto u = ParseUrl("HTTPS://App.Example.COM/api/%7efn/../inngest?x=1#frag");
  ASSERT_TRUE(u.ok()) << u.status().ToString();
  EXPECT_EQ(u->scheme, "https");
  EXPECT_TRUE(u->tls());
  EXPECT_EQ(u->host, "app.example.com");
  EXPECT_EQ(u->port, 443);
  EXPECT_EQ(u->target, "/api/inngest?x=1");
  EXPECT_EQ(u->authority(), "app.example.com:443");
  auto v6 = ParseUrl("http://[::1]:8080");
  ASSERT_TRUE(v6.ok());
  EXPECT_EQ(v6->host, "::1");
  EXPECT_EQ(v6->port, 8080);
  EXPECT_EQ(v6->target, "/");
  EXPECT_EQ(v6->authority(), "[::1]:8080");
  EXPECT_EQ(ParseUrl("http://h")->port, 80);
}

TEST(Url, RefusesWhatCouldInjectOrMislead) {
  for (const char* bad :
       {"ftp://h/", "h/x", "/relative", "http://:80/", "http://h:99999/", "http://h:0/",
        "http://user:pw@h/", "http://h/a\r\nX-Injected: 1", "http://h\r\n/", "http://h/a b",
        "http://h%0d%0a/", "http://[v1.x]/", "http://h/\x01", "http://h:80(0/x",
        "http://[::2]:80(0/x", "http://h:8080x/", ""}) {
    EXPECT_THAT(ParseUrl(bad), StatusIs(StatusCode::kInvalidArgument)) << bad;
  }
  // The message quotes the URL with control characters masked, never raw.
  auto crlf = ParseUrl("http://h/\r\nHost: evil");
  ASSERT_FALSE(crlf.ok());
  EXPECT_EQ(crlf.status().message().find('\r'), std::string::npos);
  // Another scheme is named as such.
  auto ftp = ParseUrl("ftp://h/");
  ASSERT_FALSE(ftp.ok());
  EXPECT_EQ(ftp.status().message(), "the scheme must be http or https: \"ftp://h/\"");
  // A name ending in a number is an address getaddrinfo reads its own way (010 in octal,
  // 127.1 as 127.0.0.1): another host than the one shown, logged and compared with
  // --sync-allow.
  for (const char* numeric : {"http://127.1/", "http://2130706433/", "http://0x7f.1/",
                              "http://010.0.0.1/", "http://app.example.123/", "http://0X1F./"}) {
    EXPECT_THAT(ParseUrl(numeric), StatusIs(StatusCode::kInvalidArgument)) << numeric;
  }
  for (const char* name : {"http://127.0.0.1/", "http://app1.example.com/", "http://0x.example/",
                           "http://1.example.com/", "http://h0x1/", "http://example.com./"}) {
    EXPECT_TRUE(ParseUrl(name).ok()) << name;
  }
}

// A URL in a log line: no query or fragment (a token may ride there), at most 200 bytes, no
// control characters.
TEST(Url, ALoggedUrlKeepsNeitherItsQueryNorMoreThan200Bytes) {
  EXPECT_EQ(UrlForLog("https://app.example.com/api/inngest"),
            "https://app.example.com/api/inngest");
  EXPECT_EQ(UrlForLog("https://app.example.com/api/inngest?x-vercel-protection-bypass=s3cret"),
            "https://app.example.com/api/inngest?…");
  EXPECT_EQ(UrlForLog("http://h/a#frag"), "http://h/a?…");
  const std::string logged = UrlForLog("http://127.0.0.1:9/" + std::string(3 << 20, 'a'));
  EXPECT_EQ(logged, "http://127.0.0.1:9/" + std::string(200 - 19, 'a') + "…");
  EXPECT_EQ(UrlForLog("http://h/\r\nX: 1"), "http://h/??X: 1");
}

TEST(Url, ResolvesAStepUrlAgainstTheAppUrl) {
  EXPECT_EQ(*ResolveUrl("https://app.example.com/api/inngest", "/api/fn?fnId=x"),
            "https://app.example.com/api/fn?fnId=x");
  EXPECT_EQ(*ResolveUrl("https://app.example.com/api/inngest", "fn"),
            "https://app.example.com/api/fn");
  EXPECT_EQ(*ResolveUrl("https://app.example.com/a/b", "../c"), "https://app.example.com/c");
  EXPECT_EQ(*ResolveUrl("https://app.example.com/a", "http://other:81/x"), "http://other:81/x");
  EXPECT_FALSE(ResolveUrl("https://app.example.com/a", "ftp://x/").ok());
  EXPECT_FALSE(ResolveUrl("https://app.example.com/a", "/x\r\nEvil: 1").ok());
  EXPECT_FALSE(ResolveUrl("not a url", "/x").ok());
}

TEST(StatusMatchers, MatchTheCodeAndMessageOfAStatusOrAResultAndSayWhatTheyGot) {
  EXPECT_THAT(Status::Ok(), IsOk());
  EXPECT_THAT(Result<int>(7), IsOk());
  EXPECT_THAT(NotFound("no run 01X"), Not(IsOk()));
  EXPECT_THAT(NotFound("no run 01X"), StatusIs(StatusCode::kNotFound));
  EXPECT_THAT(Result<int>(NotFound("no run 01X")),
              StatusIs(StatusCode::kNotFound, HasSubstr("01X")));
  EXPECT_THAT(Result<int>(7), StatusIs(StatusCode::kOk));
  EXPECT_THAT(NotFound("no run 01X"), Not(StatusIs(StatusCode::kAborted)));
  EXPECT_THAT(NotFound("no run 01X"), Not(StatusIs(StatusCode::kNotFound, HasSubstr("01Y"))));

  ::testing::StringMatchResultListener listener;
  EXPECT_FALSE(::testing::ExplainMatchResult(IsOk(), Unavailable("database down"), &listener));
  EXPECT_EQ(listener.str(), "whose status is unavailable: database down");
  EXPECT_EQ(::testing::DescribeMatcher<Status>(StatusIs(StatusCode::kNotFound, "x")),
            "has status not_found and a message that is equal to \"x\"");
}

}  // namespace
}  // namespace funcky
