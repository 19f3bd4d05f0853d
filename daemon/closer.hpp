// SPDX-License-Identifier: LGPL-2.1-or-later
// Closes client-supplied descriptors off the event loop.
//
// Why: close() can block for as long as the file system behind a descriptor
// wants. FUSE sends FLUSH on every close and waits for its daemon's answer,
// forever by default; a user who mounted a FUSE file system and stopped its
// daemon would freeze a broker that closed one of its files on the event
// loop's thread (issue 9). close_range() and dup2() flush the same way, so
// nothing on the loop may drop a client's descriptor: it goes to the Closer.
//
// How it stays bounded (threads, memory, descriptors):
// - A fixed pool of threads (4). A thread works on one mount at a time and no
//   two threads close on the same mount at once, so a mount whose closes hang
//   holds one thread, and the others go on closing everything else. Only when
//   every thread hangs, each on a different mount, do other closes wait (they
//   are not lost: they run once a thread returns, e.g. when the mount is
//   aborted or the kernel's fs.fuse.default_request_timeout expires).
// - Pending closes are counted per uid (the client that sent the descriptors);
//   while a uid has max_pending_per_uid or more waiting, the broker reads no
//   more requests from that uid's connections (over_quota()): each further
//   message could carry 253 more. Other uids go on being served. Descriptors
//   dropped from the store (delete, replace, take, expiry) count for no uid:
//   the store's own limits bound them.
// - A close that takes longer than slow_after is logged once while it hangs,
//   and again when it returns.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <fdbroker/unique_fd.hpp>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

namespace fdbroker::daemon {

class Closer {
 public:
  static constexpr uid_t no_uid = static_cast<uid_t>(-1);

  struct Options {
    unsigned threads = 4;
    std::size_t max_pending_per_uid = 1024;
    std::chrono::milliseconds slow_after = std::chrono::seconds(5);
    // Where the slow-close lines go (any thread); default spdlog::warn.
    std::function<void(const std::string&)> warn;
  };

  Closer() : Closer(Options{}) {}
  explicit Closer(Options options);
  // Never waits for a close that hangs: if any close is pending, the threads
  // are left to finish on their own (detached) and the process may exit
  // meanwhile; the kernel closes what is left at exit (and the exit, not the
  // broker's work, waits for a FUSE daemon that does not answer).
  ~Closer();
  Closer(const Closer&) = delete;
  Closer& operator=(const Closer&) = delete;

  // Takes every fd of `fds` (left empty) and closes them on a closer thread.
  // Never blocks on a close. `uid`: whose they were (over_quota()).
  void close(std::vector<unique_fd>& fds, uid_t uid = no_uid);
  void close(unique_fd fd, uid_t uid = no_uid);

  // Closes queued or under way.
  [[nodiscard]] std::size_t pending() const;
  // Whether `uid` has max_pending_per_uid or more closes pending.
  [[nodiscard]] bool over_quota(uid_t uid) const;
  // Closes under way for longer than slow_after.
  [[nodiscard]] std::size_t slow() const;
  // Descriptors queued behind such a close, on its mount: still open in this
  // process (a fork copies them; the child's close of its copy would hang too).
  [[nodiscard]] std::size_t queued_behind_slow() const;
  // Waits until nothing is pending, at most `timeout`; true if nothing is.
  bool wait_idle(std::chrono::milliseconds timeout) const;

  // The closer that FdSet and the broker use (close_later()); main sets it.
  static Closer* current() noexcept;
  static void make_current(Closer* closer) noexcept;

 private:
  struct State;
  std::shared_ptr<State> state_;
  std::vector<std::thread> threads_;
};

// Closes `fds` (left empty) through Closer::current(), or right here if there
// is none (unit tests of code that drops descriptors).
void close_later(std::vector<unique_fd>& fds, uid_t uid = Closer::no_uid);
// Whether the broker should stop reading `uid`'s requests for now (false if
// there is no current closer).
bool closes_over_quota(uid_t uid);

}  // namespace fdbroker::daemon
