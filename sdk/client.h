// The Funcky C++ SDK client: who the app is, where the coordinator is, and sending events.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/status.h"

namespace funcky::sdk {

struct ClientOptions {
  std::string app_id;  // e.g. "billing"
  std::string coordinator_url = "http://127.0.0.1:8288";
  // Signing key shared with the coordinator. Empty = dev mode: calls are not verified.
  std::string signing_key;
  std::string signing_key_fallback;
  std::string event_key = "dev";  // the key in POST /e/{key}
  // PEM file of CA certificates trusted for an https:// coordinator besides the system's
  // (a private CA). The coordinator's certificate is always verified.
  std::string ca_file;
};

class Client {
 public:
  explicit Client(ClientOptions options) : options_(std::move(options)) {}
  const ClientOptions& options() const { return options_; }

  // Sends one event (an object) or several (an array). Returns the stored events' ids.
  // kInvalidArgument when the coordinator refused them (or they are not JSON text: a string
  // that is not UTF-8), kUnavailable when it is unreachable or its reply is not one of a
  // coordinator. Never throws. Messages name the event path "/e/…", never the event key.
  Result<std::vector<std::string>> send(const nlohmann::json& events) const;
  // Sends a signal (POST /v1/signals, authenticated by the signing key): resumes the run
  // whose step.wait_for_signal holds it with {"signal", "data"} and returns its id; nullopt
  // when no wait holds it (a signal is not kept for a later wait). kInvalidArgument when the
  // coordinator refused it, kUnauthenticated for a wrong key, kUnavailable when it is
  // unreachable. Sent once: a lost answer is an error (the signal may have been taken).
  Result<std::optional<std::string>> send_signal(const std::string& signal,
                                                 const nlohmann::json& data) const;

 private:
  ClientOptions options_;
};

}  // namespace funcky::sdk
