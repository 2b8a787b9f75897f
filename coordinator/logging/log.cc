#include "coordinator/logging/log.h"

#include <chrono>

#include <spdlog/formatter.h>
#include <spdlog/pattern_formatter.h>
#include <nlohmann/json.hpp>

namespace funcky::logging {

namespace internal {
thread_local const Fields* current_fields = nullptr;
}  // namespace internal

namespace {

// {"ts":"2026-11-30T10:00:00.123Z","level":"info","msg":"…","run_id":"…",…}
class JsonFormatter final : public spdlog::formatter {
 public:
  void format(const spdlog::details::log_msg& msg, spdlog::memory_buf_t& dest) override {
    nlohmann::json line;
    const auto ms =
        std::chrono::duration_cast<std::chrono::milliseconds>(msg.time.time_since_epoch()).count();
    const std::time_t secs = static_cast<std::time_t>(ms / 1000);
    std::tm tm{};
    gmtime_r(&secs, &tm);
    char ts[80];  // room for any int the fields could hold, so no truncation warning
    std::snprintf(ts, sizeof ts, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
                  tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                  static_cast<int>(ms % 1000));
    line["ts"] = ts;
    auto level = spdlog::level::to_string_view(msg.level);
    line["level"] = std::string(level.data(), level.size());
    line["msg"] = std::string(msg.payload.data(), msg.payload.size());
    if (const Fields* f = internal::current_fields) {
      if (!f->run_id.empty()) line["run_id"] = f->run_id;
      if (!f->function_id.empty()) line["function_id"] = f->function_id;
      if (!f->step_id.empty()) line["step_id"] = f->step_id;
    }
    // Messages may quote text from the network: invalid UTF-8 is replaced, never fatal.
    std::string text = line.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
    dest.append(text.data(), text.data() + text.size());
    dest.push_back('\n');
  }
  std::unique_ptr<spdlog::formatter> clone() const override {
    return std::make_unique<JsonFormatter>();
  }
};

// The message of a text line with its control characters escaped (\n, \r, \t, \xNN): a
// message may quote what a sender chose (an event's name, a lane key from its data), which
// would otherwise start a line of its own, one that reads as the coordinator's.
class EscapedMessage final : public spdlog::custom_flag_formatter {
 public:
  void format(const spdlog::details::log_msg& msg, const std::tm&,
              spdlog::memory_buf_t& dest) override {
    AppendEscaped(std::string_view(msg.payload.data(), msg.payload.size()), dest);
  }
  std::unique_ptr<custom_flag_formatter> clone() const override {
    return std::make_unique<EscapedMessage>();
  }
};

}  // namespace

void AppendEscaped(std::string_view text, spdlog::memory_buf_t& dest) {
  static constexpr char kHex[] = "0123456789abcdef";
  for (const char c : text) {
    const auto u = static_cast<unsigned char>(c);
    if (u >= 0x20 && u != 0x7f) {
      dest.push_back(c);
      continue;
    }
    const char* escaped = u == '\n' ? "\\n" : u == '\r' ? "\\r" : u == '\t' ? "\\t" : nullptr;
    if (escaped) {
      dest.append(escaped, escaped + 2);
    } else {
      const char hex[] = {'\\', 'x', kHex[u >> 4], kHex[u & 0xf]};
      dest.append(hex, hex + 4);
    }
  }
}

Result<Format> ParseFormat(std::string_view name) {
  if (name == "text") return Format::kText;
  if (name == "json") return Format::kJson;
  return InvalidArgument("--log-format must be text or json, not \"" + std::string(name) + "\"");
}

void Setup(Format format) {
  if (format == Format::kJson) {
    spdlog::set_formatter(std::make_unique<JsonFormatter>());
  } else {
    auto formatter = std::make_unique<spdlog::pattern_formatter>();
    formatter->add_flag<EscapedMessage>('*').set_pattern("%Y-%m-%dT%H:%M:%S.%e %^%l%$ %*");
    spdlog::set_formatter(std::move(formatter));
  }
}

}  // namespace funcky::logging
