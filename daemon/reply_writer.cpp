// SPDX-License-Identifier: LGPL-2.1-or-later
#include "reply_writer.hpp"

#include <spdlog/spdlog.h>

#include <cerrno>

#include "json_text.hpp"

namespace fdbroker::daemon {

ReplyWriter::ReplyWriter() { reply_.reserve(max_message_bytes); }

std::string& ReplyWriter::begin(std::string_view id) {
  reply_.clear();
  reply_ += '{';
  if (!id.empty()) {
    reply_ += "\"id\":";
    reply_ += id;
    reply_ += ',';
  }
  head_ = reply_.size();
  return reply_;
}

void ReplyWriter::replace_with_too_large() {
  reply_.resize(head_);
  append_error(reply_, EMSGSIZE, "the reply would not fit in one message");
}

ReplyWriter::Delivery ReplyWriter::send(Connection& c, const std::shared_ptr<const FdSet>& fds) {
  Delivery d;
  if (reply_.size() > max_message_bytes) {
    // Every reply is bounded by construction: this is a bug, but it costs the
    // client one short error, not its connection and the requests behind it.
    spdlog::error("a reply of {} bytes to {} exceeds the protocol's limit", reply_.size(),
                  c.peer().label);
    replace_with_too_large();
    d.replaced = true;
    d.sent = c.send(reply_, nullptr);
  } else {
    d.sent = c.send(reply_, fds);
    if (d.sent == Connection::Sent::too_large) {
      spdlog::error("the socket refused a reply of {} bytes to {} (EMSGSIZE)", reply_.size(),
                    c.peer().label);
      replace_with_too_large();
      d.replaced = true;
      d.sent = c.send(reply_, nullptr);
    }
  }
  // A short error the socket refuses too: the socket is unusable.
  if (d.sent == Connection::Sent::too_large) d.sent = Connection::Sent::failed;
  return d;
}

ReplyWriter::Delivery ReplyWriter::send_error(Connection& c, std::string_view id, int err,
                                              std::string_view message) {
  append_error(begin(id), err, message);
  return send(c);
}

void ReplyWriter::hold(Connection& c, const std::shared_ptr<const FdSet>& fds) {
  c.hold(reply_, fds);
  held_.push_back(c.id());
}

}  // namespace fdbroker::daemon
