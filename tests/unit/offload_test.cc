#include "common/offload.h"

#include <chrono>
#include <stdexcept>
#include <string>
#include <thread>

#include <gtest/gtest.h>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/thread_pool.hpp>

namespace funcky {
namespace {

namespace asio = boost::asio;

// The work runs on a pool thread, and the coroutine goes on on its own thread with the result.
TEST(Offload, RunsOnThePoolAndResumesOnTheCallersThreadWithTheResult) {
  asio::io_context io;
  asio::thread_pool pool(2);
  std::thread::id io_thread, work_thread, resumed_thread;
  int result = 0;
  bool ended = false;
  asio::co_spawn(
      io,
      [&]() -> asio::awaitable<void> {
        io_thread = std::this_thread::get_id();
        result = co_await Offload(pool, [&] {
          work_thread = std::this_thread::get_id();
          std::this_thread::sleep_for(std::chrono::milliseconds(20));
          return 42;
        });
        resumed_thread = std::this_thread::get_id();
        ended = true;
      },
      asio::detached);
  io.run();
  pool.join();
  EXPECT_TRUE(ended);
  EXPECT_EQ(result, 42);
  EXPECT_NE(work_thread, io_thread);
  EXPECT_NE(work_thread, std::thread::id());
  EXPECT_EQ(resumed_thread, io_thread);
}

TEST(Offload, AnExceptionOfTheWorkIsThrownInTheCoroutine) {
  asio::io_context io;
  asio::thread_pool pool(1);
  std::string caught;
  asio::co_spawn(
      io,
      [&]() -> asio::awaitable<void> {
        try {
          (void)co_await Offload(pool, []() -> std::string { throw std::runtime_error("boom"); });
        } catch (const std::runtime_error& e) {
          caught = e.what();
        }
      },
      asio::detached);
  io.run();
  pool.join();
  EXPECT_EQ(caught, "boom");
}

// Many at once from one coroutine each: every result reaches its own caller.
TEST(Offload, ConcurrentCallsEachGetTheirOwnResult) {
  asio::io_context io;
  asio::thread_pool pool(4);
  constexpr int kCalls = 200;
  int sum = 0, ended = 0;
  for (int i = 0; i < kCalls; ++i) {
    asio::co_spawn(
        io,
        [&, i]() -> asio::awaitable<void> {
          const int got = co_await Offload(pool, [i] { return i * 2; });
          EXPECT_EQ(got, i * 2);
          sum += got;
          ++ended;
        },
        asio::detached);
  }
  io.run();
  pool.join();
  EXPECT_EQ(ended, kCalls);
  EXPECT_EQ(sum, kCalls * (kCalls - 1));
}

}  // namespace
}  // namespace funcky
