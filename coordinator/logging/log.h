// The coordinator's log: spdlog, as text (default) or one JSON object per line
// (--log-format json) for log pipelines. A line about a run carries its ids as fields:
//
//   logging::Info({.run_id = id, .function_id = fn}, "run {} of {} completed", id, fn);
//
// prints the message as text, and in JSON adds "run_id" and "function_id" next to "msg".
#pragma once

#include <string_view>
#include <utility>

#include <spdlog/spdlog.h>

#include "common/status.h"

namespace funcky::logging {

enum class Format { kText, kJson };

// kInvalidArgument for anything but "text" or "json".
Result<Format> ParseFormat(std::string_view name);

// Installs the format on spdlog's default logger. Call once, before other threads log.
void Setup(Format format);

// Appends `text` to `dest` with its control characters escaped (\n, \r, \t, \xNN), as a text
// line's message is written: a message quoting what a sender chose cannot make a line of its
// own.
void AppendEscaped(std::string_view text, spdlog::memory_buf_t& dest);

// The ids a line is about; empty ones are left out.
struct Fields {
  std::string_view run_id;
  std::string_view function_id;
  std::string_view step_id;
};

namespace internal {
// The fields of the line being logged on this thread (spdlog formats synchronously, in
// the caller's thread), or null.
extern thread_local const Fields* current_fields;
struct ScopedFields {
  explicit ScopedFields(const Fields& f) : previous(current_fields) { current_fields = &f; }
  ~ScopedFields() { current_fields = previous; }
  const Fields* previous;
};
}  // namespace internal

template <typename... Args>
void Log(spdlog::level::level_enum level, const Fields& fields,
         spdlog::format_string_t<Args...> fmt, Args&&... args) {
  internal::ScopedFields scope(fields);
  spdlog::log(level, fmt, std::forward<Args>(args)...);
}

template <typename... Args>
void Info(const Fields& f, spdlog::format_string_t<Args...> fmt, Args&&... args) {
  Log(spdlog::level::info, f, fmt, std::forward<Args>(args)...);
}
template <typename... Args>
void Warn(const Fields& f, spdlog::format_string_t<Args...> fmt, Args&&... args) {
  Log(spdlog::level::warn, f, fmt, std::forward<Args>(args)...);
}
template <typename... Args>
void Error(const Fields& f, spdlog::format_string_t<Args...> fmt, Args&&... args) {
  Log(spdlog::level::err, f, fmt, std::forward<Args>(args)...);
}

}  // namespace funcky::logging
