// SPDX-License-Identifier: LGPL-2.1-or-later
// One connected client: its socket, its kernel-verified identity, and the
// replies it has not read yet. The broker owns every Connection and drives it.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <deque>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>
#include <unordered_map>
#include <vector>

#include <fdbroker/unique_fd.hpp>

#include "event_loop.hpp"
#include "fd_store.hpp"
#include "policy.hpp"
#include "request.hpp"

namespace fdbroker::daemon {

// Names a connection for as long as the broker runs: a counter, never reused, so
// that whatever refers to a connection later (a waiting request, a held reply, an
// upgrade's requester) finds it, or finds it gone; never another client that got
// the same fd number meanwhile. 0 names no connection.
using ConnectionId = std::uint64_t;

// A reply the socket could not take yet. It keeps its fds alive through the
// shared FdSet, so deleting or replacing the entry meanwhile changes nothing.
struct QueuedReply {
  std::string body;
  std::shared_ptr<const FdSet> fds;
  // For a take: the entry, removed from the store but given back if this reply
  // is never sent (the connection dies first).
  std::optional<StoredEntry> taken;
  // Not to be sent yet: it acknowledges a change the fd store does not hold yet
  // (Broker::release_held). Replies behind it wait behind it.
  bool held = false;
};

class Connection {
 public:
  // `id`: the broker's name for it (0 outside a broker, as in tests of the send path).
  Connection(unique_fd sock, ClientIdentity peer, ConnectionId id = 0) noexcept
      : sock_(std::move(sock)), peer_(std::move(peer)), id_(id) {}

  [[nodiscard]] ConnectionId id() const noexcept { return id_; }
  [[nodiscard]] int fd() const noexcept { return sock_.get(); }
  [[nodiscard]] const ClientIdentity& peer() const noexcept { return peer_; }
  // The identity to complete with its unit and cgroup (Broker::identify), once.
  [[nodiscard]] ClientIdentity& identity_to_complete() noexcept { return peer_; }
  bool unit_read = false;  // peer().unit and .cgroup have been read

  enum class Sent { now, queued, too_large, failed };

  // Sends one reply with `fds` attached (may be null), or queues it if earlier
  // replies are still queued or the socket's buffer is full. `too_large`: the
  // socket refused it as larger than its send buffer (EMSGSIZE); nothing was
  // sent or queued, and the connection is fine. `failed` means the connection
  // is broken (EPIPE, ECONNRESET, ...): the caller closes it.
  Sent send(std::string_view body, const std::shared_ptr<const FdSet>& fds);

  // Queues a reply that must not leave before release() (its change is not yet
  // durable), and every reply after it behind it.
  void hold(std::string_view body, const std::shared_ptr<const FdSet>& fds);
  // The held replies may leave now (by flush()).
  void release() noexcept;

  // The reply queued last (precondition: has_queued()).
  QueuedReply& back() noexcept { return queue_.back(); }

  struct Flushed {
    bool progressed = false;
    std::error_code error;  // set: the connection is broken
  };
  // Sends queued replies until the socket is full or the queue empty.
  Flushed flush();

  [[nodiscard]] bool has_queued() const noexcept { return !queue_.empty(); }
  // A reply could be sent now, if the socket took it (the first one is not held).
  [[nodiscard]] bool sendable() const noexcept { return !queue_.empty() && !queue_.front().held; }
  [[nodiscard]] std::size_t queued() const noexcept { return queue_.size(); }
  // Hands the unsent replies over (to give taken entries back), emptying the queue.
  std::deque<QueuedReply> take_queue() noexcept { return std::move(queue_); }

  // State the broker keeps per connection (a waiting request: waiters.hpp).
  bool waiting = false;  // a get/take waits (wait_ms) for its entry: read no further
  bool opening = false;  // an open runs on a worker (worker_pool.hpp): read no further
  EventLoop::TimerId stuck_timer = 0;  // armed while replies are queued
  std::uint32_t events = 0;            // what epoll watches now
  bool eof = false;                    // the peer will send no more requests
  // Shutdown or upgrade: what the peer already sent is answered, but a get/take
  // that would wait is refused (ESHUTDOWN) instead, and so is every request after it.
  bool winding_down = false;
  bool refusing = false;  // a waiting request was refused: the rest are too
  bool closed = false;

  // A request is in progress (waiting or opening): no more are read until it is answered.
  [[nodiscard]] bool busy() const noexcept { return waiting || opening; }

 private:
  unique_fd sock_;
  ClientIdentity peer_;
  ConnectionId id_;
  std::deque<QueuedReply> queue_;
};

// Keeps a log quiet under a flood: counts events and says when to report them,
// at most once per `interval`, with the number of events since the last report.
class ReportLimiter {
 public:
  explicit ReportLimiter(Clock::duration interval) noexcept : interval_(interval) {}

  // `n` events at `now`. Returns how many events to report now (these and
  // those held back since the last report), or nothing: stay quiet.
  std::optional<std::uint64_t> note(Clock::time_point now, std::uint64_t n = 1) noexcept;
  // The events held back, once `interval` has passed since the last report
  // (0 otherwise), for a closing report; they are reported then.
  std::uint64_t due(Clock::time_point now) noexcept;
  [[nodiscard]] std::uint64_t held_back() const noexcept { return held_back_; }
  // True if a report was made less than `interval` before `now`.
  [[nodiscard]] bool recent(Clock::time_point now) const noexcept {
    return reported_ && now - last_ < interval_;
  }

 private:
  Clock::duration interval_;
  Clock::time_point last_{};
  bool reported_ = false;
  std::uint64_t held_back_ = 0;
};

// How many connections each uid holds (limits.max_connections_per_uid), and
// the rate-limited warnings about the connections refused for it.
class UidConnections {
 public:
  // One warning line per uid per this interval; the lines say how many
  // refusals they stand for.
  static constexpr Clock::duration warning_interval = std::chrono::seconds(5);

  // Counts a new connection of `uid`, unless `uid` already holds `limit` (0:
  // no limit) and is not `exempt` (root, the broker's own uid): false then, and
  // nothing counted.
  bool admit(uid_t uid, std::uint64_t limit, bool exempt);
  // A connection of `uid` (admitted before) is gone.
  void release(uid_t uid, Clock::time_point now) noexcept;
  [[nodiscard]] std::uint64_t of(uid_t uid) const noexcept;

  // A refusal of `uid` at `now`: how many refusals to report now (see
  // ReportLimiter::note), 0 to stay quiet.
  std::uint64_t note_refusal(uid_t uid, Clock::time_point now);
  // Returns the refusals held back whose interval has passed, per uid, to
  // report, and forgets the uids that hold no connection and have nothing
  // left to report. Cheap when called often: it looks at the uids at most once
  // per interval.
  std::vector<std::pair<uid_t, std::uint64_t>> sweep(Clock::time_point now);

 private:
  struct PerUid {
    std::uint64_t connections = 0;
    ReportLimiter refusals{warning_interval};
  };
  std::unordered_map<uid_t, PerUid> uids_;
  Clock::time_point next_sweep_{};
};

}  // namespace fdbroker::daemon
