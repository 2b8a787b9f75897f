#include "tests/support/e2e.h"

#include "tests/support/pg_cluster.h"

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <fstream>

#include <gtest/gtest.h>

namespace funcky::testing {

namespace {
std::string g_ca_file;
}  // namespace

void SetHttpCaFile(std::string path) { g_ca_file = std::move(path); }

JsonReply Http(const std::string& method, const std::string& url, const std::string& body,
               Headers headers) {
  HttpRequest req;
  req.method = method;
  req.url = url;
  req.body = body;
  req.headers = std::move(headers);
  if (!body.empty()) req.headers.emplace_back("Content-Type", "application/json");
  req.timeout = std::chrono::seconds(30);
  auto res = HttpCall(req, {.ca_file = g_ca_file});
  JsonReply out;
  if (!res.ok()) {
    out.status = -1;
    out.raw = res.status().ToString();
    return out;
  }
  out.status = res->status;
  out.raw = res->body;
  out.headers = res->headers;
  out.body = Json::parse(res->body, nullptr, false);
  return out;
}

std::vector<Json> ReadJsonLines(const std::string& path) {
  std::vector<Json> out;
  std::ifstream in(path);
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty()) continue;
    Json j = Json::parse(line, nullptr, false);
    if (!j.is_discarded()) out.push_back(std::move(j));
  }
  return out;
}

Coordinator::Coordinator(std::string db, std::vector<std::string> extra_args, std::string dir)
    : db_(std::move(db)), args_(std::move(extra_args)), dir_(std::move(dir)), port_(FreePort()) {
  const bool tls = std::find(args_.begin(), args_.end(), "--tls-cert") != args_.end();
  url_ = std::string(tls ? "https" : "http") + "://127.0.0.1:" + std::to_string(port_);
}

void Coordinator::Start() {
  // A postgres:// URL runs `funcky serve`; a file path runs `funcky dev` on SQLite.
  const bool postgres = db_.rfind("postgres://", 0) == 0;
  // `make test` runs a test or two against a sanitizer build of the coordinator.
  const char* bin = std::getenv("FUNCKY_TEST_COORDINATOR_BIN");
  std::vector<std::string> argv = {bin && *bin ? bin : FUNCKY_BIN,
                                   postgres ? "serve" : "dev",
                                   "--db",
                                   db_,
                                   "--port",
                                   std::to_string(port_),
                                   "--retry-schedule",
                                   "50ms",
                                   "--retry-jitter",
                                   "0s"};
  argv.insert(argv.end(), args_.begin(), args_.end());
  if (!env_.empty()) {
    std::vector<std::string> with_env = {"/usr/bin/env"};
    with_env.insert(with_env.end(), env_.begin(), env_.end());
    argv.insert(argv.begin(), with_env.begin(), with_env.end());
  }
  const size_t port_arg = std::find(argv.begin(), argv.end(), "--port") - argv.begin() + 1;
  for (int tries = 1;; ++tries) {
    // Named by port too: several coordinators of one test share its folder.
    process_ = Process(argv, dir_ + "/coordinator-" + std::to_string(port_) + "-" +
                                 std::to_string(++starts_) + ".log");
    bool up = WaitFor(
        [&] { return Http("GET", url_ + "/healthz").status == 200 || !process_.running(); });
    up = up && process_.running();
    // The port found free was taken before the coordinator bound it (another test's server
    // picked it too): a first start goes to another port, as nobody has its URL yet. A
    // restart keeps its port.
    if (!up && starts_ == 1 && tries < 5 && !process_.running() &&
        process_.Log().find("Address already in use") != std::string::npos) {
      --starts_;
      port_ = FreePort();
      argv[port_arg] = std::to_string(port_);
      url_ = url_.substr(0, url_.rfind(':') + 1) + std::to_string(port_);
      continue;
    }
    ASSERT_TRUE(up) << "coordinator did not start:\n" << process_.Log();
    return;
  }
}

TestHost::TestHost(const std::string& coordinator_url, const std::string& dir,
                   std::vector<std::string> extra_args) {
  log_ = dir + "/host-records.jsonl";
  std::vector<std::string> argv = {TEST_HOST_BIN,
                                   "--coordinator",
                                   coordinator_url,
                                   "--port",
                                   std::to_string(FreePort()),
                                   "--log",
                                   log_};
  argv.insert(argv.end(), extra_args.begin(), extra_args.end());
  process_ = Process(argv, dir + "/host.log");
  bool ready = WaitFor([&] { return process_.Log().find("ready ") != std::string::npos; });
  EXPECT_TRUE(ready) << "test host did not register:\n" << process_.Log();
}

int TestHost::Count(const std::string& kind, const std::string& run_id,
                    const std::string& step) const {
  int n = 0;
  for (const auto& r : Records()) {
    if (r["kind"] == kind && (run_id.empty() || r["run_id"] == run_id) &&
        (step.empty() || r["step"] == step)) {
      ++n;
    }
  }
  return n;
}

Json WaitForRunStatus(const std::string& url, const std::string& run_id,
                      const std::set<std::string>& statuses, std::chrono::milliseconds timeout) {
  Json last;
  WaitFor(
      [&] {
        auto r = Http("GET", url + "/v1/runs/" + run_id);
        if (r.status != 200) return false;
        last = r.body["data"];
        return statuses.count(last["status"].get<std::string>()) > 0;
      },
      timeout);
  return last;
}

Json WaitForRunEnd(const std::string& url, const std::string& run_id,
                   std::chrono::milliseconds timeout) {
  return WaitForRunStatus(url, run_id, {"completed", "failed", "cancelled"}, timeout);
}

std::vector<std::string> RunsOfEvent(const std::string& url, const std::string& internal_id,
                                     size_t n) {
  std::vector<std::string> ids;
  WaitFor([&] {
    ids.clear();
    auto r = Http("GET", url + "/v1/events/" + internal_id);
    if (r.status != 200) return false;
    for (const auto& run : r.body["data"]["runs"]) ids.push_back(run["id"]);
    return ids.size() >= n;
  });
  return ids;
}

Json FunctionConfig(const std::string& id, const std::string& event, const std::string& url,
                    Json extra) {
  Json config = {{"id", id},
                 {"name", id},
                 {"triggers", {{{"event", event}}}},
                 {"steps",
                  {{"step",
                    {{"id", "step"},
                     {"name", "step"},
                     {"runtime", {{"type", "http"}, {"url", url}}},
                     {"retries", {{"attempts", 1}}}}}}}};
  config.update(extra);
  return config;
}

void E2eTest::SetUp() {
  const std::string name = CurrentTestSlug();
  dir_ = TempDir("funcky-e2e-" + name + "-");
  db_ = backend() == "sqlite" ? dir_ + "/dev.db" : SharedPgCluster().CreateDatabase("e2e_" + name);
}

std::unique_ptr<Coordinator> E2eTest::StartCoordinator(std::vector<std::string> args) {
  auto c = std::make_unique<Coordinator>(db_, std::move(args), dir_);
  c->Start();
  return c;
}

std::string E2eTest::Send(const Coordinator& c, const Json& event) {
  auto r = Http("POST", c.url() + "/e/test", event.dump());
  EXPECT_EQ(r.status, 200) << r.raw;
  EXPECT_EQ(r.body["status"], 200) << r.raw;
  return r.body["ids"][0];
}

Json E2eTest::RunToEnd(const Coordinator& c, const Json& event) {
  auto runs = RunsOfEvent(c.url(), Send(c, event));
  EXPECT_EQ(runs.size(), 1u) << "runs started by " << event.dump();
  if (runs.empty()) return {{"id", ""}, {"status", "none"}};
  return WaitForRunEnd(c.url(), runs[0]);
}

int E2eTest::CountRows(const Coordinator& c, const std::string& path) {
  auto r = Http("GET", c.url() + path);
  EXPECT_EQ(r.status, 200) << r.raw;
  return static_cast<int>(r.body["data"].size());
}

}  // namespace funcky::testing
