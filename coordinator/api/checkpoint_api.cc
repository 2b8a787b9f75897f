// POST /v1/checkpoint/{run}/async: the JS SDK's async checkpointing (docs/protocol.md §5.6).
// A call that carries ctx.fn_id and ctx.qi_id lets the SDK run the function's steps back to
// back within it; after each step it posts the step here and goes on once it is recorded.
#include <algorithm>
#include <cctype>

#include <spdlog/spdlog.h>

#include "common/json_parse.h"
#include "common/ops.h"
#include "coordinator/api/api.h"
#include "coordinator/api/json_views.h"
#include "coordinator/executor/call.h"
#include "coordinator/executor/transition.h"

namespace funcky::api {

using http::ErrorResponse;
using http::JsonResponse;
using http::Request;
using http::Response;
using store::Json;

namespace {

// Whether `id` may be a run id (a ULID): at most 64 letters and digits, so no other text
// from a URL reaches the store or the log.
bool MayBeRunId(std::string_view id) {
  return !id.empty() && id.size() <= 64 && std::all_of(id.begin(), id.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) != 0;
  });
}

}  // namespace

Response Api::HandleCheckpoint(const Request& req) {
  Response r = AnswerCheckpoint(req);
  metrics_.CheckpointAnswered(r.status == 200   ? "recorded"
                              : r.status == 409 ? "stale"
                              : r.status == 422 ? "step_limit"
                              : r.status < 500  ? "invalid"
                                                : "failed");
  return r;
}

std::optional<Response> Api::RefuseCheckpoint(const Request& req) const {
  if (!SigningKeyAccepted(req)) return ErrorResponse(401, "unauthenticated", SigningKeyRefusal());
  return std::nullopt;
}

Response Api::AnswerCheckpoint(const Request& req) {
  const std::string& run_id = req.param("id");
  if (!MayBeRunId(run_id)) return ErrorResponse(InvalidArgument("the URL does not name a run"));
  // A host reply in all but name: held to the same limits.
  auto body = ParseUntrustedJson(req.body, kHostReplyJsonLimits);
  if (!body.ok()) return ErrorResponse(InvalidArgument("body: " + body.status().message()));
  if (!body->is_object()) return ErrorResponse(InvalidArgument("body must be a JSON object"));
  auto body_run = StringField(*body, "run_id");
  if (!body_run.ok()) return ErrorResponse(body_run.status());
  if (*body_run != run_id) {
    return ErrorResponse(InvalidArgument("run_id does not match the run of the URL"));
  }
  auto ref = StringField(*body, "qi_id");
  if (!ref.ok()) return ErrorResponse(ref.status());
  auto item = executor::ParseQueueRef(*ref, run_id);
  if (!item.ok()) return ErrorResponse(item.status());
  auto steps = body->find("steps");
  if (steps == body->end()) return ErrorResponse(InvalidArgument("steps must be an op list"));
  auto ops = ParseOpList(*steps);
  if (!ops.ok()) return ErrorResponse(InvalidArgument("steps: " + ops.status().message()));
  const TimePoint now = clock_.Now();
  auto records = executor::CheckpointRecords(*ops, now);
  if (!records.ok()) return ErrorResponse(records.status());

  auto checkpointed =
      stores_.queue.Checkpoint(*item, records->steps, records->attempts, now, options_.step_limit);
  const Status& recorded = checkpointed.status();
  if (recorded.code() == StatusCode::kAborted) {
    // A stale dispatch: the SDK stops running the function (another holder redoes the call).
    spdlog::debug("run {}: checkpoint refused: {}", run_id, recorded.message());
    return ErrorResponse(recorded);
  }
  if (recorded.code() == StatusCode::kResourceExhausted) {
    // Not a 409, which would stop the SDK: after its tries it answers the call with the step,
    // and the run fails before its next call (Executor, DecideTransition).
    spdlog::info("run {}: checkpoint refused: {}", run_id, recorded.message());
    return ErrorResponse(422, "step_limit", recorded.message());
  }
  if (!recorded.ok()) {
    spdlog::warn("run {}: recording a checkpoint failed: {}", run_id, recorded.ToString());
    return ErrorResponse(Unavailable("the checkpoint could not be recorded; try again"));
  }
  // The durations of the steps it recorded count as those of steps a call recorded do (a
  // step sent again, recorded already, is not counted again).
  for (const store::AttemptRecord& a : checkpointed->attempts) {
    metrics_.StepAttempt(checkpointed->function_id,
                         std::chrono::milliseconds(a.ended_at_ms - a.started_at_ms));
  }
  return JsonResponse(200, {{"status", 200}, {"steps", records->steps.size()}});
}

}  // namespace funcky::api
