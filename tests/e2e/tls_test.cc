// HTTPS end to end: hosts served over TLS with certificates from a CA made by the test
// (openssl CLI), the coordinator's --host-ca, certificate and host name verification, and a
// coordinator listening with TLS that the C++ SDK registers with and sends events to.
#include <cstdlib>
#include <fstream>

#include <gtest/gtest.h>

#include "tests/support/e2e.h"
#include "tests/support/process.h"

namespace funcky::testing {
namespace {

// Runs a shell command; fails the test when it exits non-zero.
void Shell(const std::string& command) {
  int rc = std::system((command + " >/dev/null 2>&1").c_str());
  ASSERT_EQ(rc, 0) << command;
}

class TlsTest : public E2eTest {
 protected:
  std::string backend() const override { return "sqlite"; }

  void SetUp() override {
    E2eTest::SetUp();
    ca_ = dir_ + "/ca.pem";
    const std::string ec = "-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes";
    Shell("cd " + dir_ + " && openssl req -x509 " + ec +
          " -keyout ca.key -out ca.pem -days 2 -subj '/CN=Funcky Test CA'");
    // The host's certificate names 127.0.0.1 and localhost; "wrong" names another host;
    // "dns-localhost" names the DNS name localhost only, "dns-other" another DNS name only.
    MakeLeaf("host", "subjectAltName=IP:127.0.0.1,DNS:localhost");
    MakeLeaf("wrong", "subjectAltName=DNS:wrong.example");
    MakeLeaf("dns-localhost", "subjectAltName=DNS:localhost");
    MakeLeaf("dns-other", "subjectAltName=DNS:other.test");
  }

  void TearDown() override { SetHttpCaFile(""); }

  void MakeLeaf(const std::string& name, const std::string& san) {
    std::ofstream(dir_ + "/" + name + ".ext") << san << "\n";
    Shell("cd " + dir_ + " && openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 " +
          "-nodes -keyout " + name + ".key -out " + name + ".csr -subj '/CN=" + name +
          "' && openssl x509 -req -in " + name + ".csr -CA ca.pem -CAkey ca.key " +
          "-CAcreateserial -days 2 -out " + name + ".pem -extfile " + name + ".ext");
  }

  std::vector<std::string> HostTls(const std::string& name) {
    return {"--tls-cert", dir_ + "/" + name + ".pem", "--tls-key", dir_ + "/" + name + ".key"};
  }

  // The error of the failing step of run `run_id`, once one is recorded.
  std::string RetryError(const Coordinator& c, const std::string& run_id) {
    std::string error;
    WaitFor([&] {
      auto r = Http("GET", c.url() + "/v1/runs/" + run_id);
      // Retrying, or failed already when the retries (50 ms apart) outran the polling.
      for (const auto& step : r.body["data"]["steps"]) {
        if ((step["status"] == "retrying" || step["status"] == "failed") &&
            step["error"].is_object()) {
          error = step["error"].value("message", "");
          return true;
        }
      }
      return false;
    });
    return error;
  }

  std::string ca_;
};

TEST_F(TlsTest, ARunCompletesThroughAnHttpsHostTrustedWithHostCa) {
  auto c = StartCoordinator({"--host-ca", ca_});
  TestHost host(c->url(), dir_, HostTls("host"));
  Json run = RunToEnd(*c, {{"name", "test/two-steps"}});
  EXPECT_EQ(run["status"], "completed") << run.dump() << c->Log();
  EXPECT_EQ(run["output"], (Json{{"b", "AB"}}));
  EXPECT_EQ(host.Count("call"), 2);
  auto fns = Http("GET", c->url() + "/v1/functions");
  ASSERT_EQ(fns.status, 200);
  const std::string app_url = fns.body["data"][0]["app"]["url"];
  EXPECT_EQ(app_url.rfind("https://127.0.0.1:", 0), 0u) << app_url;

  // In-band sync of the https:// app goes over TLS too: the app answers the coordinator's
  // PUT with its functions (not by registering itself again).
  auto sync = Http("POST", c->url() + "/v1/apps/sync", Json{{"url", app_url}}.dump());
  EXPECT_EQ(sync.status, 200) << sync.raw;
  EXPECT_EQ(sync.body["data"]["sync_kind"], "in_band") << sync.raw;
  EXPECT_EQ(sync.body["data"]["app_id"], "test") << sync.raw;
}

// The coordinator's own PUT to an https:// app verifies the app's certificate: without
// --host-ca the sync fails, the log says why, and nothing of the app is stored; with it, an
// in-band sync stores the app.
TEST_F(TlsTest, AnInBandSyncWithoutTheCaFailsWithACertificateErrorAndStoresNothing) {
  // The host registers with a coordinator that trusts the CA; two others are asked to sync it.
  auto registry = StartCoordinator({"--host-ca", ca_});
  TestHost host(registry->url(), dir_, HostTls("host"));
  auto fns = Http("GET", registry->url() + "/v1/functions");
  ASSERT_EQ(fns.status, 200) << fns.raw;
  ASSERT_FALSE(fns.body["data"].empty()) << fns.raw;
  const std::string app_url = fns.body["data"][0]["app"]["url"];

  Coordinator untrusting(dir_ + "/untrusting.db", {}, dir_);
  untrusting.Start();
  auto refused = Http("POST", untrusting.url() + "/v1/apps/sync", Json{{"url", app_url}}.dump());
  EXPECT_EQ(refused.status, 502) << refused.raw;
  // The caller learns only that there was no valid answer; the operator's log says why.
  EXPECT_NE(refused.raw.find("no valid answer"), std::string::npos) << refused.raw;
  EXPECT_NE(untrusting.Log().find("certificate verify failed"), std::string::npos)
      << untrusting.Log();
  EXPECT_EQ(CountRows(untrusting, "/v1/apps"), 0);
  EXPECT_EQ(CountRows(untrusting, "/v1/functions"), 0);

  Coordinator trusting(dir_ + "/trusting.db", {"--host-ca", ca_}, dir_);
  trusting.Start();
  auto synced = Http("POST", trusting.url() + "/v1/apps/sync", Json{{"url", app_url}}.dump());
  EXPECT_EQ(synced.status, 200) << synced.raw;
  EXPECT_EQ(synced.body["data"]["sync_kind"], "in_band") << synced.raw;
  EXPECT_EQ(CountRows(trusting, "/v1/apps"), 1);
  EXPECT_EQ(CountRows(trusting, "/v1/functions"), static_cast<int>(fns.body["data"].size()));
}

TEST_F(TlsTest, WithoutTheCaTheCallFailsWithACertificateErrorAndTheRunRetries) {
  auto c = StartCoordinator();  // trusts the system's CAs only
  TestHost host(c->url(), dir_, HostTls("host"));
  auto runs = RunsOfEvent(c->url(), Send(*c, {{"name", "test/two-steps"}}));
  ASSERT_EQ(runs.size(), 1u);
  const std::string error = RetryError(*c, runs[0]);
  EXPECT_NE(error.find("certificate verify failed"), std::string::npos) << error;
  EXPECT_NE(error.find("127.0.0.1"), std::string::npos) << error;
  // Retried (the retry schedule is 50 ms), never sent in plain text: the host saw no call.
  EXPECT_TRUE(WaitFor([&] {
    auto r = Http("GET", c->url() + "/v1/runs/" + runs[0]);
    for (const auto& step : r.body["data"]["steps"]) {
      if (step["attempts"].get<int>() >= 3) return true;
    }
    return false;
  }));
  EXPECT_EQ(host.Count("call"), 0);
  EXPECT_EQ(Http("GET", c->url() + "/healthz").status, 200);
  // Retried and failed by the retry policy (5 attempts, 50 ms apart), never completed.
  auto run = Http("GET", c->url() + "/v1/runs/" + runs[0]);
  EXPECT_NE(run.body["data"]["status"], "completed") << run.raw;
}

TEST_F(TlsTest, ACertificateForAnotherHostNameIsRefused) {
  auto c = StartCoordinator({"--host-ca", ca_});
  TestHost host(c->url(), dir_, HostTls("wrong"));
  auto runs = RunsOfEvent(c->url(), Send(*c, {{"name", "test/two-steps"}}));
  ASSERT_EQ(runs.size(), 1u);
  const std::string error = RetryError(*c, runs[0]);
  EXPECT_NE(error.find("certificate verify failed"), std::string::npos) << error;
  // The URL names an IP address the certificate does not list.
  EXPECT_NE(error.find("IP address mismatch"), std::string::npos) << error;
  EXPECT_EQ(host.Count("call"), 0);
}

// An app at https://localhost: the certificate is checked against the DNS name (and the
// name is sent as SNI). One that names localhost is accepted...
TEST_F(TlsTest, ARunCompletesThroughAnHttpsHostNamedByItsDnsName) {
  auto c = StartCoordinator({"--host-ca", ca_});
  std::vector<std::string> args = HostTls("dns-localhost");
  args.insert(args.end(), {"--serve-host", "localhost"});
  TestHost host(c->url(), dir_, args);
  auto fns = Http("GET", c->url() + "/v1/functions");
  ASSERT_EQ(fns.status, 200);
  const std::string app_url = fns.body["data"][0]["app"]["url"];
  EXPECT_EQ(app_url.rfind("https://localhost:", 0), 0u) << app_url;
  Json run = RunToEnd(*c, {{"name", "test/two-steps"}});
  EXPECT_EQ(run["status"], "completed") << run.dump() << c->Log();
  EXPECT_EQ(host.Count("call"), 2);
}

// ...one that names only another DNS name is refused: a host name mismatch, recorded on the
// attempt, and the host never sees a call.
TEST_F(TlsTest, ACertificateForAnotherDnsNameIsRefused) {
  auto c = StartCoordinator({"--host-ca", ca_});
  std::vector<std::string> args = HostTls("dns-other");
  args.insert(args.end(), {"--serve-host", "localhost"});
  TestHost host(c->url(), dir_, args);
  auto runs = RunsOfEvent(c->url(), Send(*c, {{"name", "test/two-steps"}}));
  ASSERT_EQ(runs.size(), 1u);
  const std::string error = RetryError(*c, runs[0]);
  EXPECT_NE(error.find("certificate verify failed"), std::string::npos) << error;
  EXPECT_NE(error.find("hostname mismatch"), std::string::npos) << error;
  EXPECT_NE(error.find("localhost"), std::string::npos) << error;
  EXPECT_EQ(host.Count("call"), 0);
}

TEST_F(TlsTest, TheSdkRegistersWithAndSendsEventsToACoordinatorListeningWithTls) {
  SetHttpCaFile(ca_);
  auto c = StartCoordinator(HostTls("host"));
  ASSERT_EQ(c->url().rfind("https://", 0), 0u);
  // The coordinator's certificate is verified: without the CA a client cannot connect.
  SetHttpCaFile("");
  auto refused = Http("GET", c->url() + "/healthz");
  EXPECT_EQ(refused.status, -1);
  EXPECT_NE(refused.raw.find("certificate verify failed"), std::string::npos) << refused.raw;
  SetHttpCaFile(ca_);

  TestHost host(c->url(), dir_,
                {"--coordinator-ca", ca_, "--send-on-start", R"({"name":"test/two-steps"})"});
  ASSERT_TRUE(WaitFor([&] { return host.Count("step", "", "second") == 1; }))
      << host.Output() << c->Log();
  // The second step's call is not the run's last (the third returns its result): the run
  // completes a call later.
  JsonReply runs;
  EXPECT_TRUE(WaitFor([&] {
    runs = Http("GET", c->url() + "/v1/runs?status=completed");
    return runs.status == 200 && runs.body["data"].size() == 1u;
  })) << runs.raw
      << c->Log();
}

TEST_F(TlsTest, BadTlsFilesAreRefusedAtStart) {
  Process bad_ca({FUNCKY_BIN, "dev", "--db", dir_ + "/a.db", "--port", std::to_string(FreePort()),
                  "--host-ca", dir_ + "/missing.pem"},
                 dir_ + "/bad-ca.log");
  ASSERT_TRUE(WaitFor([&] { return !bad_ca.running(); }, std::chrono::seconds(10)));
  EXPECT_NE(bad_ca.Log().find("--host-ca: cannot load CA file"), std::string::npos) << bad_ca.Log();
  Process half({FUNCKY_BIN, "dev", "--db", dir_ + "/b.db", "--port", std::to_string(FreePort()),
                "--tls-cert", dir_ + "/host.pem"},
               dir_ + "/half.log");
  ASSERT_TRUE(WaitFor([&] { return !half.running(); }, std::chrono::seconds(10)));
  EXPECT_NE(half.Log().find("--tls-cert and --tls-key go together"), std::string::npos)
      << half.Log();
  Process mismatch({FUNCKY_BIN, "dev", "--db", dir_ + "/c.db", "--port", std::to_string(FreePort()),
                    "--tls-cert", dir_ + "/host.pem", "--tls-key", dir_ + "/wrong.key"},
                   dir_ + "/mismatch.log");
  ASSERT_TRUE(WaitFor([&] { return !mismatch.running(); }, std::chrono::seconds(10)));
  EXPECT_NE(mismatch.Log().find("cannot load TLS key"), std::string::npos) << mismatch.Log();
}

}  // namespace
}  // namespace funcky::testing
