// SPDX-License-Identifier: LGPL-2.1-or-later
// One connected client: its socket, its kernel-verified identity, and the
// replies it has not read yet. The broker owns every Connection and drives it.
#pragma once

#include <cstdint>
#include <deque>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>

#include <fdbroker/unique_fd.hpp>

#include "event_loop.hpp"
#include "fd_store.hpp"
#include "policy.hpp"
#include "request.hpp"

namespace fdbroker::daemon {

// A reply the socket could not take yet. It keeps its fds alive through the
// shared FdSet, so deleting or replacing the entry meanwhile changes nothing.
struct QueuedReply {
  std::string body;
  std::shared_ptr<const FdSet> fds;
  // For a take: the entry, removed from the store but given back if this reply
  // is never sent (the connection dies first).
  std::optional<Entry> taken;
};

class Connection {
 public:
  Connection(unique_fd sock, Peer peer) noexcept : sock_(std::move(sock)), peer_(std::move(peer)) {}

  [[nodiscard]] int fd() const noexcept { return sock_.get(); }
  [[nodiscard]] const Peer& peer() const noexcept { return peer_; }

  enum class Sent { now, queued, too_large, failed };

  // Sends one reply with `fds` attached (may be null), or queues it if earlier
  // replies are still queued or the socket's buffer is full. `too_large`: the
  // socket refused it as larger than its send buffer (EMSGSIZE); nothing was
  // sent or queued, and the connection is fine. `failed` means the connection
  // is broken (EPIPE, ECONNRESET, ...): the caller closes it.
  Sent send(std::string_view body, const std::shared_ptr<const FdSet>& fds);

  // The reply queued last (precondition: has_queued()).
  QueuedReply& back() noexcept { return queue_.back(); }

  struct Flushed {
    bool progressed = false;
    std::error_code error;  // set: the connection is broken
  };
  // Sends queued replies until the socket is full or the queue empty.
  Flushed flush();

  [[nodiscard]] bool has_queued() const noexcept { return !queue_.empty(); }
  [[nodiscard]] std::size_t queued() const noexcept { return queue_.size(); }
  // Hands the unsent replies over (to give taken entries back), emptying the queue.
  std::deque<QueuedReply> take_queue() noexcept { return std::move(queue_); }

  // State the broker keeps per connection.
  std::unique_ptr<Request> parked;          // a get/take waiting (wait_ms) for its entry
  EventLoop::TimerId park_timer = 0;
  EventLoop::TimerId stuck_timer = 0;       // armed while replies are queued
  std::uint32_t events = 0;                 // what epoll watches now
  bool eof = false;                         // the peer will send no more requests
  // Shutdown or upgrade: what the peer already sent is answered, but a get/take
  // that would wait is refused (ESHUTDOWN) instead, and so is every request after it.
  bool winding_down = false;
  bool refusing = false;                    // a waiting request was refused: the rest are too
  bool closed = false;

 private:
  unique_fd sock_;
  Peer peer_;
  std::deque<QueuedReply> queue_;
};

}  // namespace fdbroker::daemon
