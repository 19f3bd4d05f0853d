// SPDX-License-Identifier: LGPL-2.1-or-later
#include "connection.hpp"

#include <fdbroker/scm_rights.hpp>

#include <cerrno>
#include <utility>

namespace fdbroker::daemon {

namespace {

result<std::size_t> send_one(int sock, std::string_view body, const FdSet* fds) {
  // The socket is non-blocking; MSG_DONTWAIT too, in case someone shares it.
  return try_sendfds(sock, body.data(), body.size(), fds != nullptr ? fds->data() : nullptr,
                     fds != nullptr ? fds->size() : 0, io_flags::dontwait);
}

bool would_block(const std::error_code& ec) {
  return ec.value() == EAGAIN || ec.value() == EWOULDBLOCK;
}

}  // namespace

Connection::Sent Connection::send(std::string_view body, const std::shared_ptr<const FdSet>& fds) {
  if (queue_.empty()) {
    auto sent = send_one(sock_.get(), body, fds.get());
    if (sent) return Sent::now;
    if (sent.error().value() == EMSGSIZE) return Sent::too_large;
    if (!would_block(sent.error())) return Sent::failed;
  }
  queue_.push_back(QueuedReply{std::string(body), fds, std::nullopt});
  return Sent::queued;
}

void Connection::hold(std::string_view body, const std::shared_ptr<const FdSet>& fds) {
  queue_.push_back(QueuedReply{std::string(body), fds, std::nullopt, true});
}

void Connection::release() noexcept {
  for (auto& reply : queue_) reply.held = false;
}

Connection::Flushed Connection::flush() {
  Flushed result;
  while (!queue_.empty()) {
    QueuedReply& reply = queue_.front();
    if (reply.held) return result;
    auto sent = send_one(sock_.get(), reply.body, reply.fds.get());
    if (!sent) {
      if (!would_block(sent.error())) result.error = sent.error();
      return result;
    }
    result.progressed = true;
    queue_.pop_front();  // a taken entry goes with it: the peer has the fds now
  }
  return result;
}

std::optional<std::uint64_t> ReportLimiter::note(Clock::time_point now, std::uint64_t n) noexcept {
  held_back_ += n;
  if (recent(now)) return std::nullopt;
  reported_ = true;
  last_ = now;
  return std::exchange(held_back_, 0);
}

std::uint64_t ReportLimiter::due(Clock::time_point now) noexcept {
  if (held_back_ == 0 || recent(now)) return 0;
  reported_ = true;
  last_ = now;
  return std::exchange(held_back_, 0);
}

bool UidConnections::admit(uid_t uid, std::uint64_t limit, bool exempt) {
  PerUid& u = uids_[uid];
  if (!exempt && limit != 0 && u.connections >= limit) return false;
  ++u.connections;
  return true;
}

void UidConnections::release(uid_t uid, Clock::time_point now) noexcept {
  auto it = uids_.find(uid);
  if (it == uids_.end()) return;
  PerUid& u = it->second;
  if (u.connections > 0) --u.connections;
  // A uid refused lately stays until sweep(), so that connecting and leaving
  // in a loop does not buy it a fresh warning each time.
  if (u.connections == 0 && u.refusals.held_back() == 0 && !u.refusals.recent(now)) uids_.erase(it);
}

std::uint64_t UidConnections::of(uid_t uid) const noexcept {
  auto it = uids_.find(uid);
  return it == uids_.end() ? 0 : it->second.connections;
}

std::uint64_t UidConnections::note_refusal(uid_t uid, Clock::time_point now) {
  return uids_[uid].refusals.note(now).value_or(0);
}

std::vector<std::pair<uid_t, std::uint64_t>> UidConnections::sweep(Clock::time_point now) {
  std::vector<std::pair<uid_t, std::uint64_t>> due;
  if (now < next_sweep_) return due;
  next_sweep_ = now + warning_interval;
  for (auto it = uids_.begin(); it != uids_.end();) {
    PerUid& u = it->second;
    if (std::uint64_t n = u.refusals.due(now)) due.emplace_back(it->first, n);
    if (u.connections == 0 && u.refusals.held_back() == 0 && !u.refusals.recent(now)) {
      it = uids_.erase(it);
    } else {
      ++it;
    }
  }
  return due;
}

}  // namespace fdbroker::daemon
