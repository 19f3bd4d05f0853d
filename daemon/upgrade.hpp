// SPDX-License-Identifier: LGPL-2.1-or-later
// Upgrade without systemd: `fdbrokerctl upgrade` (the `upgrade` op) or SIGUSR2
// makes the broker run a new fdbrokerd and hand it everything, through the same
// LISTEN_FDS/LISTEN_FDNAMES path a start under systemd uses (restore.hpp):
//
//  1. The broker drains (Broker::begin_drain_for_successor): it stops accepting
//     (new clients wait in the listening socket's backlog), lets no connection
//     send more (SHUT_RD: their next send fails with EPIPE, at a request
//     boundary), answers what was sent and closes them. The state is final from
//     here on: nothing a client did is lost by the upgrade.
//  2. The spawner (spawner.hpp) forks and execs the new binary (the successor) with the same
//     arguments, so that no other descriptor of this process reaches it: the listening
//     socket ("listen"), every entry's fds ("e<serial>.<i>"), a sealed state
//     memfd ("state.<seq>"), and a pipe ($FDBROKER_UPGRADE_READY_FD) on which
//     the new broker says it is ready (once it would say READY=1).
//  3. Ready: the old broker answers the requester, leaves the socket file to
//     the new one and exits (lame duck, as on SIGTERM). Not ready (exec error,
//     bad config, exit, upgrade_timeout): the child is killed (the spawner reaps it), and
//     the old broker accepts again with everything intact.
//
// Under systemd this is refused (EOPNOTSUPP): systemd tracks the main PID and
// holds the fd store; `systemctl restart` already keeps every entry.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <fdbroker/unique_fd.hpp>
#include <functional>
#include <string>
#include <vector>

#include "broker.hpp"
#include "event_loop.hpp"
#include "failure.hpp"
#include "spawner.hpp"

namespace fdbroker::daemon {

// How long a new broker may take to become ready.
inline constexpr std::chrono::seconds upgrade_timeout{10};

// How long the spawner may take to answer, and the child to take the descriptors.
inline constexpr std::chrono::seconds spawner_timeout{5};

// The environment variable naming the readiness pipe's fd in a new broker.
inline constexpr const char* upgrade_ready_env = "FDBROKER_UPGRADE_READY_FD";

class UpgradeRunner {
 public:
  // `argv`: the running broker's arguments, passed on unchanged. `default_binary`:
  // what /proc/self/exe named at start (the path, so that a replaced file there
  // is what runs). `under_systemd`: refuse (see above).
  // `spawner`: the broker's end of the spawner's socket (spawner.hpp), taken;
  // invalid: every upgrade is refused with ESRCH.
  UpgradeRunner(EventLoop& loop, Broker& broker, std::vector<std::string> argv,
                std::string default_binary, bool under_systemd, unique_fd spawner);
  ~UpgradeRunner();
  UpgradeRunner(const UpgradeRunner&) = delete;
  UpgradeRunner& operator=(const UpgradeRunner&) = delete;

  // Called once a successor is ready: the broker should now shut down.
  void on_successor_ready(std::function<void()> fn) { successor_ready_ = std::move(fn); }

  // Starts an upgrade to `binary` (empty: default). `requester` is the connection
  // that asked (0: SIGUSR2), answered with {"ok":true,"pid":N} or an error: EBUSY (one is
  // running), ESHUTDOWN, EOPNOTSUPP, ESRCH (no spawner), the fork's or exec's
  // errno, ECHILD (exited before ready), ETIMEDOUT. Descriptors queued on the
  // closer behind a close that hangs do not matter: the spawner, not this
  // process, forks the new broker (spawner.hpp).
  void start(ConnectionId requester, const std::string& id, const std::string& binary);

 private:
  void launch();
  void on_ready_pipe();
  void fail(Failure failure);
  // The spawner's reports: a child's end is logged (it reaps them).
  void on_spawner_readable();
  void on_report(const SpawnerReport& report);
  void spawner_lost();

  EventLoop& loop_;
  Broker& broker_;
  std::vector<std::string> argv_;
  std::string default_binary_;
  bool under_systemd_;
  unique_fd spawner_;
  std::function<void()> successor_ready_;

  bool running_ = false;
  ConnectionId requester_ = 0;
  std::string id_;
  std::string binary_;
  pid_t child_ = -1;
  unique_fd ready_;
  EventLoop::TimerId timer_ = 0;
};

// In a new broker: tells the old one it is ready, if one waits
// ($FDBROKER_UPGRADE_READY_FD), and forgets the variable.
void report_upgrade_ready();

// /proc/self/exe's target, read now (empty if unreadable).
std::string own_binary();

}  // namespace fdbroker::daemon
