// SPDX-License-Identifier: LGPL-2.1-or-later
// Restarting a service without dropping a connection (docs/handoff.md).
//
// 1. fdbroker::listen(name, url) replaces socket()+bind()+listen(): the listening
//    socket lives in the broker under `name`, so it stays open while processes come
//    and go, and connections that arrive meanwhile wait in its accept queue.
// 2. fdbroker::handoff::Upgrader coordinates one instance with the next, like
//    cloudflare/tableflip's Upgrade -> Ready -> Exit, but through the broker, so the
//    successor may be started by the old process or by anyone else (a deploy tool,
//    systemd, a test): it hands state over, tells the old instance when the new one
//    is ready, and the old one then stops accepting, drains and exits.
#pragma once

#include <fdbroker/client.hpp>
#include <fdbroker/export.hpp>
#include <fdbroker/listen_fds.hpp>
#include <fdbroker/listen_url.hpp>
#include <fdbroker/unique_fd.hpp>

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace fdbroker {

// Where open_listener() found the socket.
enum class ListenerOrigin {
  inherited,       // LISTEN_FDS (systemd socket activation, fdbrokerctl exec)
  broker,          // an entry the broker already held (a predecessor's socket)
  created,         // bound by this call and deposited in the broker
  private_socket,  // bound by this call, broker unreachable: it dies with this process
};
// "inherited", "broker", "created", "private".
FDBROKER_API const char* to_string(ListenerOrigin origin) noexcept;

struct ListenOptions {
  std::string broker_socket;  // empty: socket_path_from_env()
  BindOptions bind;           // used when this call binds the socket
  // Meta for the entry when this call creates it (a JSON object; empty: {}); "url"
  // and "pid" are added.
  std::string meta_json;
  // Throw instead of falling back to a private socket when no broker answers.
  bool require_broker = false;
  // bind() said EADDRINUSE while the broker had no entry: another starter may be
  // about to deposit one; wait this long for it before giving up.
  std::chrono::milliseconds race_wait{5000};
  // Where to look for inherited fds; nullptr: inherited_fds() (this process's).
  InheritedFds* inherited = nullptr;
};

struct Listener {
  unique_fd fd;  // the caller's; close-on-exec
  ListenerOrigin origin = ListenerOrigin::private_socket;
  std::uint64_t generation = 0;  // the broker entry's (origin broker or created), else 0
  std::string broker_error;      // origin private_socket: why the broker was not used
};

// A listening socket for `url` (see listen_url.hpp), shared through the broker entry
// `name`. In order:
//  1. an inherited fd named `name` (LISTEN_FDNAMES), taken from options.inherited;
//  2. a copy of the broker's entry `name` (it must be a listening stream socket on
//     `url`; port 0 in `url` matches any port);
//  3. bind `url` and put it under `name` with expect_generation 0; if another
//     starter won that race (EEXIST/ESTALE, or EADDRINUSE from bind), use theirs;
//  4. no broker reachable (connect failed): bind `url` privately (origin
//     private_socket, broker_error says why) unless options.require_broker.
// If options.bind.nonblocking, O_NONBLOCK is set on the socket: that flag belongs to
// the open file description, so every process sharing the socket sees it (servers
// sharing a listener should all poll + non-blocking accept anyway).
// Errors (std::system_error): EINVAL (bad url, name or meta), EEXIST (the entry holds
// a socket for another address: delete it to rebind), EADDRINUSE (the address is
// taken outside the broker), EACCES (the broker's rules deny get/put), the bind
// errors of bind_listener(), the connect errors of Client::connect() when
// require_broker.
FDBROKER_API Listener open_listener(std::string_view name, std::string_view url,
                                    const ListenOptions& options = {});

// open_listener(...).fd: what most services need.
FDBROKER_API unique_fd listen(std::string_view name, std::string_view url,
                              const ListenOptions& options = {});

namespace handoff {

struct Options {
  std::string broker_socket;  // empty: socket_path_from_env()
  // upgrade(): how long the successor has to call ready().
  std::chrono::milliseconds ready_timeout{30000};
  // How long a retire request lives in the broker if nobody takes it (its addressee
  // died): it expires instead of piling up.
  std::chrono::milliseconds retire_ttl{600000};
};

// One instance of a restartable service. Entries it uses, under the service name S:
//   S/leader           the ready instance: a pidfd of it, meta {"pid"}
//   S/retire/<G>       put by a successor when ready, taken by the leader of
//                      generation G: "stop accepting, drain, exit"
//   S/state            whatever put_state() handed over (memfds, sockets, ...)
// Without a reachable broker the Upgrader is standalone: has_broker() is false,
// ready() does nothing, no exit is ever requested and upgrade() throws ENOTCONN, so a
// service still runs (without handoff) when the broker is down.
// Thread-safe: exit_fd()/wait_for_exit() run a watcher thread with its own connection.
class FDBROKER_API Upgrader {
 public:
  // Connects to the broker and looks up the current leader of `service` (the
  // predecessor, if any). Throws EINVAL for a bad service name, EACCES if the broker
  // denies it.
  explicit Upgrader(std::string service, Options options = {});
  Upgrader(const Upgrader&) = delete;
  Upgrader& operator=(const Upgrader&) = delete;
  // Stops the watcher thread; closes this instance's descriptors.
  ~Upgrader();

  [[nodiscard]] const std::string& service() const noexcept;
  [[nodiscard]] bool has_broker() const noexcept;
  // Why there is no broker ("" if there is).
  [[nodiscard]] const std::string& broker_error() const noexcept;

  // The leader found at construction: its generation (0: none, this is the first
  // instance) and pid.
  [[nodiscard]] std::uint64_t predecessor_generation() const noexcept;
  [[nodiscard]] pid_t predecessor_pid() const noexcept;
  // Waits up to `timeout` for the predecessor process to exit (its pidfd polls
  // readable). True at once if there is none or it has exited.
  bool wait_for_predecessor_exit(std::chrono::milliseconds timeout);

  // Hands state to the successor: stores `fds` (borrowed; 1-253) and `meta_json` (a
  // JSON object, empty for {}) as S/state, replacing older state. Returns its
  // generation. Errors: those of Client::put().
  std::uint64_t put_state(const std::vector<int>& fds, const std::string& meta_json = {});
  // S/state, if there is one (waiting up to `wait` for it to appear); nullopt on
  // ENOENT/ETIMEDOUT. get leaves it for later instances, take removes it.
  std::optional<Entry> get_state(std::chrono::milliseconds wait = std::chrono::milliseconds{0});
  std::optional<Entry> take_state(std::chrono::milliseconds wait = std::chrono::milliseconds{0});

  // Call once this instance serves (its accept loop runs): it becomes S/leader with a
  // compare-and-swap on the predecessor's generation and asks the predecessor to
  // retire. Errors: ESTALE (another instance became leader since construction: this
  // one lost the race and should exit), and those of Client::put().
  void ready();
  [[nodiscard]] bool is_ready() const noexcept;
  // This instance's S/leader generation (0 before ready()).
  [[nodiscard]] std::uint64_t generation() const noexcept;

  // A descriptor (eventfd, owned by the Upgrader) that polls readable once a
  // successor is ready and this instance should stop accepting, drain and exit.
  // Starts the watcher thread on first call. Call after ready().
  int exit_fd();
  // Blocks until a successor is ready (true) or `timeout` passes (false).
  bool wait_for_exit(std::chrono::milliseconds timeout);
  [[nodiscard]] bool exit_requested() const noexcept;
  // The successor's pid once exit_requested() (0 before).
  [[nodiscard]] pid_t successor_pid() const noexcept;

  // Starts a successor (argv[0] is the program, searched in PATH if it has no '/';
  // empty argv: this program again, /proc/self/exe as of construction, with this
  // process's arguments) with LISTEN_PID/LISTEN_FDS/LISTEN_FDNAMES removed from its
  // environment, an empty signal mask and default signal dispositions, and waits
  // until it is ready. Returns its pid (not reaped: it
  // outlives this process). If the successor exits first, throws ECHILD; if it is
  // not ready within options.ready_timeout, kills it (SIGKILL) and throws ETIMEDOUT.
  // Either way this instance keeps serving. Call after ready().
  pid_t upgrade(std::vector<std::string> argv = {});

 private:
  // The connections, the watcher thread and their locks (handoff_upgrader.cpp): out
  // of this exported header, so that its layout is no part of the ABI.
  class Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace handoff
}  // namespace fdbroker
