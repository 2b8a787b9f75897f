// An HTTP server on 127.0.0.1 inside a test process, answering every request with a
// function of the test's: a host or an app that misbehaves in a scripted way.
#pragma once

#include <memory>
#include <string>
#include <thread>

#include <gtest/gtest.h>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/thread_pool.hpp>

#include "common/http_server.h"

namespace funcky::testing {

class ScriptedServer {
 public:
  // `options`' port is 0 (any free one) unless set; `threads` handlers run at once.
  explicit ScriptedServer(ServerHandler handler, HttpServerOptions options = {.port = 0},
                          int threads = 1)
      : pool_(threads), work_(io_.get_executor()) {
    server_ = std::make_unique<HttpServer>(io_, pool_, std::move(options), std::move(handler));
    Status s = server_->Start();
    EXPECT_TRUE(s.ok()) << s.ToString();
    thread_ = std::thread([this] { io_.run(); });
  }
  ~ScriptedServer() {
    server_->Stop();
    work_.reset();
    io_.stop();
    thread_.join();
    pool_.join();
  }
  ScriptedServer(const ScriptedServer&) = delete;
  ScriptedServer& operator=(const ScriptedServer&) = delete;

  uint16_t port() const { return server_->port(); }
  // http://127.0.0.1:<port><path>
  std::string url(const std::string& path = "/") const {
    return "http://127.0.0.1:" + std::to_string(server_->port()) + path;
  }

 private:
  boost::asio::io_context io_;
  boost::asio::thread_pool pool_;
  boost::asio::executor_work_guard<boost::asio::io_context::executor_type> work_;
  std::unique_ptr<HttpServer> server_;
  std::thread thread_;
};

}  // namespace funcky::testing
