#include "common/ops.h"

#include <algorithm>
#include <array>
#include <utility>

#include "common/json_parse.h"

namespace funcky {

namespace {

constexpr std::array<std::pair<OpCode, std::string_view>, 17> kNames = {{
    {OpCode::kStep, "Step"},
    {OpCode::kStepRun, "StepRun"},
    {OpCode::kStepError, "StepError"},
    {OpCode::kStepPlanned, "StepPlanned"},
    {OpCode::kSleep, "Sleep"},
    {OpCode::kWaitForEvent, "WaitForEvent"},
    {OpCode::kInvokeFunction, "InvokeFunction"},
    {OpCode::kAIGateway, "AIGateway"},
    {OpCode::kGateway, "Gateway"},
    {OpCode::kWaitForSignal, "WaitForSignal"},
    {OpCode::kRunComplete, "RunComplete"},
    {OpCode::kStepFailed, "StepFailed"},
    {OpCode::kSyncRunComplete, "SyncRunComplete"},
    {OpCode::kDiscoveryRequest, "DiscoveryRequest"},
    {OpCode::kDeferAdd, "DeferAdd"},
    {OpCode::kDeferAbort, "DeferAbort"},
    {OpCode::kStepNotFound, "StepNotFound"},
}};

}  // namespace

std::string_view OpCodeName(OpCode code) {
  for (const auto& [c, name] : kNames) {
    if (c == code) return name;
  }
  return "Unknown";
}

std::optional<OpCode> ParseOpCode(std::string_view name) {
  for (const auto& [c, n] : kNames) {
    if (n == name) return c;
  }
  return std::nullopt;
}

std::string Op::DisplayName() const {
  if (!display_name.empty()) return display_name;
  if (!name.empty()) return name;
  if (userland.is_object() && userland.contains("id") && userland["id"].is_string()) {
    return userland["id"].get<std::string>();
  }
  return id;
}

Result<std::vector<Op>> ParseOps(std::string_view body) {
  auto parsed = ParseUntrustedJson(body, kHostReplyJsonLimits);
  if (!parsed.ok()) return InvalidArgument("op list: " + parsed.status().message());
  return ParseOpList(*parsed);
}

Result<std::vector<Op>> ParseOpList(nlohmann::json& doc) {
  if (!doc.is_array()) return InvalidArgument("op list is not a JSON array");
  if (doc.size() > kMaxOps) {
    return InvalidArgument("op list has " + std::to_string(doc.size()) + " ops, more than " +
                           std::to_string(kMaxOps));
  }
  std::vector<Op> ops;
  ops.reserve(doc.size());
  for (size_t i = 0; i < doc.size(); ++i) {
    auto& j = doc[i];
    std::string where = "op " + std::to_string(i);
    if (!j.is_object()) return InvalidArgument(where + " is not an object");
    auto id = j.find("id");
    auto op = j.find("op");
    if (id == j.end() || !id->is_string() || id->get_ref<const std::string&>().empty()) {
      return InvalidArgument(where + " has no string \"id\"");
    }
    const std::string& id_text = id->get_ref<const std::string&>();
    if (id_text.size() > kMaxStepIdBytes) {
      return InvalidArgument(where + "'s id has " + std::to_string(id_text.size()) +
                             " bytes, more than " + std::to_string(kMaxStepIdBytes));
    }
    // The id goes back to the host in a header (X-Inngest-Step-ID): a CR or LF in it would
    // add header lines of the host's choosing to the coordinator's next call.
    if (std::any_of(id_text.begin(), id_text.end(),
                    [](char c) { return static_cast<unsigned char>(c) < 0x20 || c == 0x7f; })) {
      return InvalidArgument(where + "'s id holds a control character");
    }
    if (op == j.end() || !op->is_string()) return InvalidArgument(where + " has no string \"op\"");
    const std::string& op_name = op->get_ref<const std::string&>();
    auto code = ParseOpCode(op_name);
    if (!code) {
      // The name is quoted only when it is short (the message is stored with the attempt).
      return InvalidArgument(where + " has unknown op" +
                             (op_name.size() <= 64 ? " \"" + op_name + "\"" : std::string()));
    }
    Op out;
    out.id = id->get<std::string>();
    out.code = *code;
    auto str = [&](const char* key) -> std::string {
      auto it = j.find(key);
      return it != j.end() && it->is_string() ? it->get<std::string>() : std::string();
    };
    out.name = str("name");
    out.display_name = str("displayName");
    if (auto it = j.find("opts"); it != j.end()) out.opts = std::move(*it);
    if (auto it = j.find("data"); it != j.end()) out.data = std::move(*it);
    if (auto it = j.find("error"); it != j.end()) out.error = std::move(*it);
    if (auto it = j.find("userland"); it != j.end()) out.userland = std::move(*it);
    if (auto it = j.find("timing"); it != j.end()) out.timing = std::move(*it);
    ops.push_back(std::move(out));
  }
  return ops;
}

std::optional<std::chrono::milliseconds> Op::HostDuration() const {
  if (!timing.is_object()) return std::nullopt;
  auto b = timing.find("b");
  if (b == timing.end() || !b->is_number()) return std::nullopt;
  const double ns = b->get<double>();
  if (!(ns >= 0 && ns <= 86'400e9)) return std::nullopt;
  return std::chrono::milliseconds(static_cast<int64_t>(ns / 1e6));
}

nlohmann::json OpToJson(const Op& op) {
  nlohmann::json j = {{"id", op.id}, {"op", std::string(OpCodeName(op.code))}};
  if (!op.name.empty()) j["name"] = op.name;
  if (!op.display_name.empty()) j["displayName"] = op.display_name;
  j["opts"] = op.opts.is_null() ? nlohmann::json::object() : op.opts;
  j["data"] = op.data;
  if (!op.error.is_null()) j["error"] = op.error;
  if (!op.userland.is_null()) j["userland"] = op.userland;
  return j;
}

}  // namespace funcky
