// Offload: runs blocking work on a thread pool from a coroutine and resumes the coroutine on
// its own executor with the result.
//
// `co_await asio::co_spawn(pool, …, use_awaitable)` does the same with one more thread hop:
// a coroutine spawned on the pool that never switches threads posts itself to the pool once
// more before it completes (co_spawn's entry point, so that a handler is never run inline),
// so every store call woke a second pool thread before the caller's I/O thread. Here the work
// is one handler on the pool, which posts the result straight to the caller's executor: one
// wake-up there and one back.
#pragma once

#include <exception>
#include <type_traits>
#include <utility>

#include <boost/asio/associated_executor.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/use_awaitable.hpp>

namespace funcky {

// Runs `fn()` on `pool` (an executor or execution context, e.g. an asio::thread_pool) and
// returns its result to the awaiting coroutine, on that coroutine's executor. An exception
// `fn` throws is rethrown in the coroutine. The result type must be default-constructible
// (the value passed beside an exception) and movable.
template <typename Pool, typename Fn>
boost::asio::awaitable<std::invoke_result_t<Fn&>> Offload(Pool& pool, Fn fn) {
  using R = std::invoke_result_t<Fn&>;
  namespace asio = boost::asio;
  co_return co_await asio::async_initiate<const asio::use_awaitable_t<>&,
                                          void(std::exception_ptr, R)>(
      [&pool](auto handler, Fn fn) {
        // The caller's executor has work meanwhile: the awaiting coroutine's co_spawn holds it.
        auto caller = asio::get_associated_executor(handler);
        asio::post(pool, [fn = std::move(fn), handler = std::move(handler), caller]() mutable {
          std::exception_ptr error;
          R result{};
          try {
            result = fn();
          } catch (...) {
            error = std::current_exception();
          }
          asio::post(caller,
                     [handler = std::move(handler), error, result = std::move(result)]() mutable {
                       std::move(handler)(error, std::move(result));
                     });
        });
      },
      asio::use_awaitable, std::move(fn));
}

}  // namespace funcky
