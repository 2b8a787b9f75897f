// Calls from the SDK to the coordinator's protocol endpoints. Internal.
#pragma once

#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "common/http_client.h"
#include "common/status.h"
#include "sdk/client.h"

namespace funcky::sdk {

// POSTs `body` (JSON) to `path` of the coordinator and reads the Inngest-shaped reply, whose
// verdict is the `status` inside the body (`status_if_absent` when the body has none).
// Returns the body on 200; otherwise kUnauthenticated (401), kUnavailable (unreachable or
// 5xx: worth retrying) or kInvalidArgument (also for a coordinator_url that is not a URL),
// with the reply's `error` in the message. Messages name an event path "/e/…": never the
// event key it holds.
Result<nlohmann::json> PostToCoordinator(const ClientOptions& options, std::string_view path,
                                         Headers headers, std::string body, int status_if_absent);

}  // namespace funcky::sdk
