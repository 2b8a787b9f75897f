// Helpers for end-to-end tests: a coordinator and a test host as real processes on a
// private PostgreSQL database, and JSON over HTTP.
#pragma once

#include <memory>
#include <set>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "common/http_client.h"
#include "tests/support/process.h"

namespace funcky::testing {

using Json = nlohmann::json;

struct JsonReply {
  int status = 0;
  Json body;
  std::string raw;
  Headers headers;
};

JsonReply Http(const std::string& method, const std::string& url, const std::string& body = "",
               Headers headers = {});
// A CA file Http() trusts for https:// URLs from now on (a test's private CA); "" for none.
void SetHttpCaFile(std::string path);

// Reads the JSON lines a test host wrote.
std::vector<Json> ReadJsonLines(const std::string& path);

struct CoordinatorOptions {
  std::string db;
  std::vector<std::string> extra_args;
};

class Coordinator {
 public:
  Coordinator(std::string db, std::vector<std::string> extra_args, std::string dir);
  void Start();  // waits for /healthz
  // Environment variables ("NAME=value") of the next Start.
  void SetEnv(std::vector<std::string> env) { env_ = std::move(env); }
  bool running() { return process_.running(); }
  void Kill9() { process_.Kill9(); }
  void Stop(int sig = 15, std::chrono::milliseconds timeout = std::chrono::seconds(10)) {
    process_.Stop(sig, timeout);
  }
  int exit_code() const { return process_.exit_code(); }
  int pid() const { return process_.pid(); }
  const std::string& url() const { return url_; }
  std::string Log() const { return process_.Log(); }

 private:
  std::string db_;
  std::vector<std::string> args_;
  std::vector<std::string> env_;
  std::string dir_;
  int port_;
  std::string url_;
  Process process_;
  int starts_ = 0;
};

class TestHost {
 public:
  // Starts funcky_test_host registered with `coordinator_url`; waits until it is ready.
  TestHost(const std::string& coordinator_url, const std::string& dir,
           std::vector<std::string> extra_args = {});
  std::vector<Json> Records() const { return ReadJsonLines(log_); }
  // Records of `kind` ("call" or "step"), optionally only of one run and one step name.
  int Count(const std::string& kind, const std::string& run_id = "",
            const std::string& step = "") const;
  std::string Output() const { return process_.Log(); }
  void Stop() { process_.Stop(); }

 private:
  std::string log_;
  Process process_;
};

// Polls GET /v1/runs/{id} until the run's status is one of `statuses`; returns it (or the
// last view).
Json WaitForRunStatus(const std::string& coordinator_url, const std::string& run_id,
                      const std::set<std::string>& statuses,
                      std::chrono::milliseconds timeout = std::chrono::seconds(30));
// Polls GET /v1/runs/{id} until the run has ended; returns it (or the last view).
Json WaitForRunEnd(const std::string& coordinator_url, const std::string& run_id,
                   std::chrono::milliseconds timeout = std::chrono::seconds(30));
// The ids of runs started by event `internal_id`, waiting until there are `n`.
std::vector<std::string> RunsOfEvent(const std::string& coordinator_url,
                                     const std::string& internal_id, size_t n = 1);

// A function config as an SDK syncs it: one event trigger, one step at `url` with one retry,
// and `extra` options merged in.
Json FunctionConfig(const std::string& id, const std::string& event, const std::string& url,
                    Json extra = Json::object());

// A fixture with a temporary folder and an empty database, both named after the test.
class E2eTest : public ::testing::Test {
 protected:
  void SetUp() override;
  // "postgres": a database on the shared cluster and `funcky serve`; "sqlite": a file in the
  // test's folder and `funcky dev`.
  virtual std::string backend() const { return "postgres"; }

  std::unique_ptr<Coordinator> StartCoordinator(std::vector<std::string> args = {});
  // Sends one event and returns its internal id.
  std::string Send(const Coordinator& c, const Json& event);
  // Sends `event`, expects it to start exactly one run, and returns that run once it ended
  // (its "id" is empty when no run started).
  Json RunToEnd(const Coordinator& c, const Json& event);
  // The number of rows GET `path` lists under "data".
  int CountRows(const Coordinator& c, const std::string& path);

  std::string dir_;
  std::string db_;
};

}  // namespace funcky::testing
