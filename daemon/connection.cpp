// SPDX-License-Identifier: LGPL-2.1-or-later
#include "connection.hpp"

#include <fdbroker/scm_rights.hpp>

#include <cerrno>

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

Connection::Flushed Connection::flush() {
  Flushed result;
  while (!queue_.empty()) {
    QueuedReply& reply = queue_.front();
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

}  // namespace fdbroker::daemon
