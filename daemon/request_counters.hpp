// SPDX-License-Identifier: LGPL-2.1-or-later
// What `stats` reports about traffic: each request's outcome per operation, and
// the connections taken in, dropped and refused. Plain counters: counting costs
// an increment, never an allocation.
#pragma once

#include <array>
#include <cstdint>

#include <nlohmann/json.hpp>

#include "fd_store.hpp"
#include "request.hpp"

namespace fdbroker::daemon {

struct ConnectionCounters {
  std::uint64_t total = 0;            // accepted and served
  std::uint64_t dropped = 0;          // closed for leaving replies unread (client_timeout_ms)
  std::uint64_t refused_per_uid = 0;  // over limits.max_connections_per_uid
  std::uint64_t refused_no_fds = 0;   // accepted and closed at once: EMFILE/ENFILE
};

class RequestCounters {
 public:
  // One answered request: `err` 0 for ok, else the errno of its error reply.
  void count(const Request& req, int err) noexcept {
    std::size_t row = req.has_op ? static_cast<std::size_t>(req.op) : op_count;
    ++requests_[row][static_cast<std::size_t>(err) < 256 ? static_cast<std::size_t>(err) : 255];
  }
  // {"<op>":{"ok":N,"<errno name>":N},...,"invalid":{...}}, operations never
  // asked left out.
  [[nodiscard]] nlohmann::json requests_json() const;

  ConnectionCounters connections;
  const Clock::time_point started = Clock::now();

 private:
  // [op][0] = ok, [op][errno] = that error; the last row counts requests with no valid op.
  std::array<std::array<std::uint64_t, 256>, op_count + 1> requests_{};
};

}  // namespace fdbroker::daemon
