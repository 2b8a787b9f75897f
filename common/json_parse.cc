#include "common/json_parse.h"

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace funcky {

namespace {

using Json = nlohmann::json;

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

// Builds the value from nlohmann's SAX events, checking each against the limits before it is
// stored. nlohmann's own parser with a callback does the checking too, but after each object
// it scans the whole of its parent for a value to discard: `[{},{},…]` took time quadratic in
// its length (a million objects, eleven minutes). Here each event costs the same whatever came
// before it.
class Builder {
 public:
  explicit Builder(const JsonLimits& limits) : limits_(limits) {}

  bool null() { return Add(nullptr); }
  bool boolean(bool v) { return Add(v); }
  bool number_integer(Json::number_integer_t v) { return Add(v); }
  bool number_unsigned(Json::number_unsigned_t v) { return Add(v); }
  bool number_float(Json::number_float_t v, const Json::string_t&) { return Add(v); }
  bool string(Json::string_t& v) { return NulAllowed(v) && Add(std::move(v)); }
  bool binary(Json::binary_t& v) { return Add(Json::binary(std::move(v))); }  // not in JSON text

  bool start_object(std::size_t) { return Open(Json::object()); }
  bool key(Json::string_t& k) {
    if (!Count() || !NulAllowed(k)) return false;
    member_ = &(*open_.back())[std::move(k)];
    return true;
  }
  bool end_object() {
    open_.pop_back();
    return true;
  }
  bool start_array(std::size_t) { return Open(Json::array()); }
  bool end_array() {
    open_.pop_back();
    return true;
  }

  bool parse_error(std::size_t, const std::string&, const Json::exception& e) {
    // 406: a number a double cannot hold (1e400, 100k digits).
    error_ = e.id == 406 ? InvalidArgument("JSON number out of range")
                         : InvalidArgument("malformed JSON: " + ShortMessage(e.what()));
    return false;
  }

  Result<Json> Take() {
    if (!error_.ok()) return error_;
    return std::move(root_);
  }

 private:
  // Each scalar, key and container at its start: counted before it is stored.
  bool Count() {
    if (limits_.max_values && ++values_ > limits_.max_values) {
      error_ = ResourceExhausted("JSON holds more than " + std::to_string(limits_.max_values) +
                                 " values");
      return false;
    }
    return true;
  }

  bool NulAllowed(const std::string& s) {
    if (limits_.allow_nul || !HasNul(s)) return true;
    error_ = InvalidArgument("JSON string holds \\u0000, which cannot be stored");
    return false;
  }

  // Stores `v` where the text puts it: the root, the end of the open array, or the member
  // whose key came last. Containers are added empty and filled while open; a pointer to one
  // stays valid while it is open, as nothing is added to its parent meanwhile.
  Json* Place(Json&& v) {
    if (open_.empty()) {
      root_ = std::move(v);
      return &root_;
    }
    Json& parent = *open_.back();
    if (parent.is_array()) {
      parent.get_ref<Json::array_t&>().push_back(std::move(v));
      return &parent.get_ref<Json::array_t&>().back();
    }
    *member_ = std::move(v);
    return member_;
  }

  bool Add(Json&& v) {
    if (!Count()) return false;
    Place(std::move(v));
    return true;
  }

  bool Open(Json&& empty) {
    // A scalar is depth 0: the container that opens with `max_depth` others open is too deep.
    if (static_cast<int64_t>(open_.size()) >= limits_.max_depth) {
      error_ = InvalidArgument("JSON nested deeper than " + std::to_string(limits_.max_depth) +
                               " levels");
      return false;
    }
    if (!Count()) return false;
    open_.push_back(Place(std::move(empty)));
    return true;
  }

  const JsonLimits& limits_;
  Json root_;
  std::vector<Json*> open_;  // the containers opened and not closed yet, outermost first
  Json* member_ = nullptr;   // the object member whose key came last
  size_t values_ = 0;
  Status error_;
};

}  // namespace

Result<Json> ParseUntrustedJson(std::string_view text, JsonLimits limits) {
  if (text.size() > limits.max_bytes) {
    return ResourceExhausted("JSON text of " + std::to_string(text.size()) +
                             " bytes is larger than the limit of " +
                             std::to_string(limits.max_bytes));
  }
  Builder builder(limits);
  try {
    Json::sax_parse(text, &builder);
  } catch (const Json::exception& e) {
    // nlohmann reports its errors through parse_error; one thrown is refused all the same.
    return InvalidArgument("malformed JSON: " + ShortMessage(e.what()));
  }
  return builder.Take();
}

size_t JsonBytesUpTo(std::vector<const nlohmann::json*> values, size_t bound) {
  // A value's 8 are counted when it is queued, so that no more are queued than `bound` allows
  // (a list of a million items is not queued whole to be measured).
  size_t seen = 8 * values.size();
  std::vector<const nlohmann::json*> todo = std::move(values);
  while (!todo.empty() && seen <= bound) {
    const nlohmann::json* j = todo.back();
    todo.pop_back();
    if (j->is_string()) {
      seen += j->get_ref<const std::string&>().size();
    } else if (j->is_object()) {
      for (auto it = j->begin(); it != j->end() && seen <= bound; ++it) {
        seen += 8 + it.key().size();
        todo.push_back(&it.value());
      }
    } else if (j->is_array()) {
      for (auto it = j->begin(); it != j->end() && seen <= bound; ++it) {
        seen += 8;
        todo.push_back(&*it);
      }
    }
  }
  return seen;
}

}  // namespace funcky
