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

}  // namespace

Result<Format> ParseFormat(std::string_view name) {
  if (name == "text") return Format::kText;
  if (name == "json") return Format::kJson;
  return InvalidArgument("--log-format must be text or json, not \"" + std::string(name) + "\"");
}

void Setup(Format format) {
  if (format == Format::kJson) {
    spdlog::set_formatter(std::make_unique<JsonFormatter>());
  } else {
    spdlog::set_pattern("%Y-%m-%dT%H:%M:%S.%e %^%l%$ %v");
  }
}

}  // namespace funcky::logging
