// SPDX-License-Identifier: LGPL-2.1-or-later
// The broker socket's accepting side: takes clients in from the listening
// socket, up to limits.max_connections (and max_connections_per_uid per uid),
// and hands each one, with its kernel-verified identity (credentials and
// groups; its unit is read later, when needed: peer_unit.hpp), to a callback. When the
// fd table is full (EMFILE/ENFILE) it refuses the waiting clients through a
// reserve descriptor instead of spinning or leaving them hang; when it must rest
// (at the connection limit, ENOBUFS) it pauses and resumes by itself.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>

#include <fdbroker/unique_fd.hpp>

#include "connection.hpp"
#include "event_loop.hpp"
#include "failure.hpp"
#include "policy.hpp"
#include "request_counters.hpp"

namespace fdbroker::daemon {

class Acceptor {
 public:
  struct Limits {
    std::uint64_t max_connections = 0;
    std::uint64_t max_connections_per_uid = 0;  // 0: no limit
  };
  // A client accepted: `sock` (non-blocking, close-on-exec) and who it is. False:
  // not taken (it is closed, and not counted as open).
  using Accepted = std::function<bool(unique_fd sock, ClientIdentity peer)>;
  // Whether `peer` may exceed max_connections_per_uid (root, the broker's uid).
  using Exempt = std::function<bool(const ClientIdentity& peer)>;

  // `listener`: a listening, non-blocking SOCK_SEQPACKET socket, taken. The
  // counters (borrowed, outliving the acceptor) count accepted and refused clients.
  Acceptor(EventLoop& loop, unique_fd listener, Limits limits, Exempt exempt, Accepted accepted,
           ConnectionCounters& counters);
  ~Acceptor();
  Acceptor(const Acceptor&) = delete;
  Acceptor& operator=(const Acceptor&) = delete;

  // Starts accepting (again, after stop()). Fails with epoll_ctl's errno.
  std::optional<Failure> start();
  // Stops accepting; the socket stays open and new clients wait in its backlog
  // (an upgrade's drain: for whichever broker serves next). No resume until start().
  void stop();
  // Takes in what waits in the backlog now, then closes the socket (shutdown of
  // a broker that owns its socket: that backlog would die with it).
  void accept_backlog_and_close();
  // Closes the socket without accepting more.
  void close();

  // New limits (reload); accepting resumes if there is room again.
  void set_limits(Limits limits);
  // A connection handed out by Accepted (of `uid`) is gone: it no longer counts,
  // and accepting resumes if it was paused at the limit.
  void release(uid_t uid);

  [[nodiscard]] std::uint64_t open_connections() const noexcept { return open_; }
  [[nodiscard]] bool paused() const noexcept { return paused_; }
  // The listening socket (borrowed; -1 once closed).
  [[nodiscard]] int fd() const noexcept { return listener_.get(); }
  [[nodiscard]] bool listening() const noexcept { return listener_.valid(); }

 private:
  void on_readable();
  void pause(std::chrono::milliseconds for_how_long);
  void resume();
  // The fd table is full at accept (EMFILE/ENFILE): refuse what waits in the backlog.
  void shed_backlog(int err);
  void refill_reserve();

  EventLoop& loop_;
  unique_fd listener_;
  Limits limits_;
  Exempt exempt_;
  Accepted accepted_;
  ConnectionCounters& counters_;
  // Two fds kept in reserve, released for the moment the acceptor must do
  // something when the table is full: the first takes in a waiting client to
  // close it at once (shed_backlog); logging, and sanitizer runtimes, may need
  // descriptors of their own (UBSan probes memory through a pipe: two).
  unique_fd reserve_[2];
  UidConnections uid_connections_;
  ReportLimiter no_fds_warnings_{UidConnections::warning_interval};
  std::uint64_t open_ = 0;
  bool watching_ = false;
  bool paused_ = false;
  bool stopped_ = true;  // before start(), after stop() and close()
  EventLoop::TimerId timer_ = 0;
};

}  // namespace fdbroker::daemon
