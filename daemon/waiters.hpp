// SPDX-License-Identifier: LGPL-2.1-or-later
// Requests waiting for an entry (get/take with wait_ms): parked by connection id,
// woken by the entry's name, expired by a timer. Keyed by ConnectionId, so that a
// connection closed while its request waits leaves nothing behind that could
// point at it, nor at the next client given its fd number.
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "connection.hpp"
#include "event_loop.hpp"
#include "request.hpp"

namespace fdbroker::daemon {

class Waiters {
 public:
  // `expired(id, request)`: `id`'s request waited its time out; it is no longer
  // parked when this is called.
  using Expired = std::function<void(ConnectionId, std::unique_ptr<Request>)>;

  Waiters(EventLoop& loop, Expired expired);
  ~Waiters();
  Waiters(const Waiters&) = delete;
  Waiters& operator=(const Waiters&) = delete;

  // Parks a copy of `req` (for the entry req.name) for `id`, for at most `wait`.
  // Precondition: `id` has no request parked.
  void park(ConnectionId id, const Request& req, std::chrono::milliseconds wait);
  // Stops `id` waiting and hands back its request (null: none was parked). Also
  // what to call when the connection closes.
  std::unique_ptr<Request> unpark(ConnectionId id);
  [[nodiscard]] bool parked(ConnectionId id) const;
  [[nodiscard]] std::size_t size() const noexcept { return parked_.size(); }

  // The connections waiting for `name`, in the order they parked (a copy: the
  // caller may unpark them as it goes). Empty, without allocating, if none waits.
  [[nodiscard]] std::vector<ConnectionId> waiting_for(const std::string& name) const;

 private:
  struct Parked {
    std::unique_ptr<Request> request;
    EventLoop::TimerId timer = 0;
  };

  EventLoop& loop_;
  Expired expired_;
  std::unordered_map<ConnectionId, Parked> parked_;
  std::unordered_map<std::string, std::vector<ConnectionId>> by_name_;
};

}  // namespace fdbroker::daemon
