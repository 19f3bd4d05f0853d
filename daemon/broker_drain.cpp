// SPDX-License-Identifier: LGPL-2.1-or-later
// The drain, shared by shutdown (SIGTERM) and upgrade: stop reading, answer what
// clients already sent, close. And the Broker's side of an upgrade (upgrade.hpp):
// draining for a successor so that the state it gets is final, the descriptors
// it gets, the late answer to the requester, and accepting again if the
// successor never became ready.
#include <spdlog/spdlog.h>
#include <sys/socket.h>
#include <unistd.h>

#include "broker.hpp"
#include "systemd_fd_store.hpp"

namespace fdbroker::daemon {

void Broker::drain(ConnectionId keep, std::string farewell, std::function<void()> quiet) {
  for (auto* timer : {&drain_.deadline_timer, &drain_.quiet_timer}) {
    if (*timer != 0) loop_.cancel(*timer);
    *timer = 0;
  }
  drain_.active = true;
  drain_.keep = keep;
  drain_.farewell = std::move(farewell);
  drain_.quiet = std::move(quiet);
  std::vector<Connection*> all;
  for (auto& [id, c] : connections_) {
    if (id != keep) all.push_back(c.get());
  }
  for (Connection* c : all) {  // none is freed before reap()
    if (c->closed) continue;   // serving another one's put may have closed it
    // After SHUT_RD the kernel refuses the peer's further sends (EPIPE), so a
    // request is either in the socket now, and answered, or never sent: none
    // arrives between the drain and the close, where the close would reset the
    // connection and lose it unanswered.
    ::shutdown(c->fd(), SHUT_RD);
    wind_down(*c);
    if (c->closed) continue;
    if (!c->has_queued() && !c->busy()) {  // busy: an open under way, answered when done
      close_connection(*c, "drained");
    } else {
      update_interest(*c);  // closed once its replies are out (write_replies)
    }
  }
  reap();
  drain_.deadline_timer = loop_.add_timer(
      Clock::now() + std::chrono::milliseconds(config_.limits.shutdown_timeout_ms), [this] {
        drain_.deadline_timer = 0;
        std::vector<Connection*> left;
        for (auto& [id, c] : connections_) {
          if (id != drain_.keep) left.push_back(c.get());
        }
        spdlog::warn("{}: dropping {} clients with unread replies",
                     shutting_down_ ? "shutdown" : "upgrade", left.size());
        for (Connection* c : left) close_connection(*c, "drain timeout");
        reap();
      });
  check_drained();
}

// Called whenever a connection closes: once a drain has none left but the one it
// keeps, its `quiet` runs, from the loop (not from inside the handler that
// closed the last connection, which may still be on the stack).
void Broker::check_drained() {
  if (!drain_.active || !drain_.quiet || drain_.quiet_timer != 0) return;
  std::size_t kept = drain_.keep != 0 && connections_.count(drain_.keep) != 0 ? 1 : 0;
  if (connections_.size() > kept) return;
  drain_.quiet_timer = loop_.add_timer(Clock::now(), [this] {
    drain_.quiet_timer = 0;
    if (drain_.deadline_timer != 0) loop_.cancel(drain_.deadline_timer);
    drain_.deadline_timer = 0;
    auto quiet = std::move(drain_.quiet);
    drain_.quiet = nullptr;
    if (quiet) quiet();
  });
}

void Broker::end_drain() {
  for (auto* timer : {&drain_.deadline_timer, &drain_.quiet_timer}) {
    if (*timer != 0) loop_.cancel(*timer);
    *timer = 0;
  }
  drain_.active = false;
  drain_.keep = 0;
  drain_.quiet = nullptr;
  // drain_.farewell stays: connections refusing (Connection::refusing) still use it.
}

void Broker::refuse_waiting(Connection& c, const Request& req) {
  spdlog::debug("{} of '{}' by {} refused: {}", op_name(req.op), req.name, c.peer().label,
                drain_.farewell);
  c.refusing = true;
  send_error(c, req, ESHUTDOWN, drain_.farewell);
}

void Broker::wind_down(Connection& c) {
  c.winding_down = true;
  if (auto r = unpark(c)) refuse_waiting(c, *r);
  // The requests behind it (and any other the client already sent), up to a
  // bound: a client that floods the socket is not answered forever.
  for (int rounds = 0; rounds < 64 && !c.closed && read_requests(c, /*draining=*/true); ++rounds) {
  }
}

void Broker::shutdown(std::function<void()> done) {
  if (shutting_down_) return;
  shutting_down_ = true;
  if (!unlink_path_.empty()) {
    // Our own socket dies with us, and with it any connection in its backlog:
    // take those in and serve them. (A socket from systemd, or one the successor
    // has now, outlives us; what waits in its backlog is the next broker's.)
    acceptor_.accept_backlog_and_close();
    ::unlink(unlink_path_.c_str());
  } else {
    acceptor_.close();
  }
  drain(0, "broker shutting down", std::move(done));
}

// ---------------------------------------------------------------- upgrade

bool Broker::begin_drain_for_successor(ConnectionId requester, std::function<void()> quiet) {
  if (shutting_down_ || !acceptor_.listening()) return false;
  // The listening socket stays open: connections wait in its backlog for
  // whichever broker serves next (the successor, or this one again).
  acceptor_.stop();
  // A get/take waiting for its entry, and what follows it, is refused: the
  // successor has the entries, and the client retries there.
  drain(requester, "broker being replaced by a new one (upgrade): reconnect and retry",
        std::move(quiet));
  return true;
}

void Broker::end_drain_for_successor() {
  if (!drain_.active || shutting_down_) return;
  end_drain();
  if (auto failed = acceptor_.start()) spdlog::error("upgrade: {}", failed->why);
}

std::vector<std::pair<std::string, int>> Broker::successor_fds() const {
  std::vector<std::pair<std::string, int>> out;
  out.emplace_back("listen", acceptor_.fd());
  for (const auto& [name, e] : store_.entries()) {
    std::uint64_t serial = sync_ != nullptr ? sync_->serial_of(name) : 0;
    for (std::size_t i = 0; e.fds && i < e.fds->size(); ++i) {
      out.emplace_back(entry_fdname(serial, i), (*e.fds)[i]);
    }
  }
  return out;
}

void Broker::reply_to(ConnectionId requester, const std::string& id, Outcome<std::string> answer) {
  Connection* c = find(requester);
  if (c == nullptr) return;  // gone meanwhile: nobody waits for this
  if (answer) {
    std::string& reply = replies_.begin(id);
    reply += "\"ok\":true";
    if (!answer->empty()) {
      reply += ',';
      reply += *answer;
    }
    reply += '}';
    send_reply(*c);
  } else {
    settle(*c, replies_.send_error(*c, id, answer.failure()));
  }
  reap();
}

}  // namespace fdbroker::daemon
