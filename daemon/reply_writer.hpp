// SPDX-License-Identifier: LGPL-2.1-or-later
// The one way a reply leaves the broker: built in one reused buffer (no
// allocation per request), sent on a Connection with its fds, and replaced by a
// short EMSGSIZE error with the same id when it would not fit in one message.
// Error replies, the upgrade's late answer and every other reply go through it.
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "connection.hpp"
#include "failure.hpp"
#include "fd_store.hpp"

namespace fdbroker::daemon {

// Protocol limit on one message.
inline constexpr std::size_t max_message_bytes = 65536;

class ReplyWriter {
 public:
  ReplyWriter();

  // Starts a reply to a request whose id is `id` (its JSON text; empty: none):
  // `{"id":<id>,`. Returns the buffer, for the caller to append the fields and
  // the closing brace.
  std::string& begin(std::string_view id);
  [[nodiscard]] const std::string& text() const noexcept { return reply_; }

  // What became of a reply.
  struct Delivery {
    Connection::Sent sent = Connection::Sent::now;  // now, queued or failed; never too_large
    bool replaced = false;  // it would not fit: an EMSGSIZE error went instead
  };
  // Sends the reply built since begin(), with `fds` attached (may be null). A
  // reply over max_message_bytes, or one the socket refuses as too large, is
  // replaced by {"id":<id>,"ok":false,"error":"EMSGSIZE",...} (logged: a bug), and
  // the connection stays usable. `failed`: the connection is broken; the caller
  // closes it. `queued`: the caller watches the connection for writing.
  Delivery send(Connection& c, const std::shared_ptr<const FdSet>& fds = nullptr);
  // An error reply: {"id":<id>,"ok":false,"error":"<errno name>","message":...}.
  Delivery send_error(Connection& c, std::string_view id, int err, std::string_view message);
  Delivery send_error(Connection& c, std::string_view id, const Failure& failure) {
    return send_error(c, id, failure.err, failure.why);
  }

  // Durable acknowledgements (fd store in use): the reply built is queued on `c`
  // held (Connection::hold), until the state that holds its change has reached
  // systemd; then take_held() names the connections to release.
  void hold(Connection& c, const std::shared_ptr<const FdSet>& fds = nullptr);
  [[nodiscard]] bool has_held() const noexcept { return !held_.empty(); }
  // The connections holding replies, in the order they were held (some may be
  // gone by now), and forgets them.
  std::vector<ConnectionId> take_held() noexcept { return std::exchange(held_, {}); }

 private:
  void replace_with_too_large();

  std::string reply_;
  std::size_t head_ = 0;  // where the fields begin, after the id
  std::vector<ConnectionId> held_;
};

}  // namespace fdbroker::daemon
