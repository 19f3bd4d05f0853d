// SPDX-License-Identifier: LGPL-2.1-or-later
// The Broker's side of an upgrade without systemd (upgrade.hpp): going quiet so
// that the state handed over is final, the descriptors to hand over, and going
// back to work if the successor never became ready.
#include <spdlog/spdlog.h>
#include <sys/socket.h>
#include <unistd.h>

#include <fdbroker/error.hpp>

#include "broker.hpp"
#include "json_text.hpp"
#include "systemd_fd_store.hpp"

namespace fdbroker::daemon {

namespace {
// How often a handover checks whether the last connection is gone.
constexpr std::chrono::milliseconds handover_poll{1};
}  // namespace

void Broker::do_upgrade(Connection& c, const Request& req) {
  // Only root and the broker's own user may replace the broker.
  if (c.peer().uid != 0 && c.peer().uid != ::geteuid()) {
    send_error(c, req, EACCES, "upgrade is for root and the broker's own user");
    return;
  }
  if (shutting_down_ || !listener_.valid()) {
    send_error(c, req, ESHUTDOWN, "the broker is shutting down");
    return;
  }
  if (!upgrade_handler_) {
    send_error(c, req, EOPNOTSUPP, "this broker cannot upgrade itself");
    return;
  }
  count(req, 0);
  spdlog::info("upgrade to '{}' requested by {}", req.binary.empty() ? "(this binary)" : req.binary,
               c.peer().label);
  upgrade_handler_(c.fd(), req.id, req.binary);
}

void Broker::reply_to(int conn_fd, const std::string& id, int err, const std::string& text) {
  // By fd: the connection may have gone meanwhile (then nobody waits for this).
  auto it = connections_.find(conn_fd);
  if (it == connections_.end() || it->second->closed) return;
  Connection& c = *it->second;
  begin_reply(id);
  if (err == 0) {
    reply_ += "\"ok\":true";
    if (!text.empty()) reply_ += "," + text;
    reply_ += '}';
  } else {
    append_error(reply_, err, text);
  }
  send_reply(c);
  reap();
}

bool Broker::begin_handover(int keep_fd, std::function<void()> quiet) {
  if (shutting_down_ || !listener_.valid()) return false;
  handing_over_ = true;
  if (listener_timer_ != 0) loop_.cancel(listener_timer_);
  listener_timer_ = 0;
  // The listening socket stays open: connections wait in its backlog for
  // whichever broker serves next (the successor, or this one again).
  loop_.unwatch(listener_.get());
  listener_paused_ = true;
  std::vector<Connection*> all;
  for (auto& [fd, c] : connections_) {
    if (fd != keep_fd) all.push_back(c.get());
  }
  // A get/take waiting for its entry, and what follows it, is refused: the
  // successor has the entries, and the client retries there.
  farewell_ = "broker being replaced by a new one (upgrade): reconnect and retry";
  for (Connection* c : all) {
    // After SHUT_RD the kernel refuses the peer's further sends (EPIPE), so what
    // is in the socket now is all there will be: answer it, then close.
    ::shutdown(c->fd(), SHUT_RD);
    wind_down(*c);
    // A peer that had shut its side already is not read again: done once answered.
    if (!c->closed && c->eof && !c->has_queued()) close_connection(*c, "upgrading");
  }
  reap();
  handover_keep_fd_ = keep_fd;
  handover_deadline_ = Clock::now() + std::chrono::milliseconds(config_.limits.shutdown_timeout_ms);
  handover_quiet_ = std::move(quiet);
  handover_timer_ = loop_.add_timer(Clock::now(), [this] { handover_check(); });
  return true;
}

void Broker::handover_check() {
  handover_timer_ = 0;
  std::vector<Connection*> left;
  for (auto& [fd, c] : connections_) {
    if (fd != handover_keep_fd_) left.push_back(c.get());
  }
  if (!left.empty() && Clock::now() < handover_deadline_) {
    handover_timer_ = loop_.add_timer(Clock::now() + handover_poll, [this] { handover_check(); });
    return;
  }
  if (!left.empty()) spdlog::warn("upgrade: dropping {} clients with unread replies", left.size());
  for (Connection* c : left) close_connection(*c, "upgrade timeout");
  reap();
  auto quiet = std::move(handover_quiet_);
  handover_quiet_ = nullptr;
  if (quiet) quiet();
}

void Broker::end_handover() {
  if (!handing_over_) return;
  handing_over_ = false;
  if (handover_timer_ != 0) loop_.cancel(handover_timer_);
  handover_timer_ = 0;
  handover_quiet_ = nullptr;
  listener_paused_ = false;
  if (auto ec =
          loop_.watch(listener_.get(), EPOLLIN, [this](std::uint32_t ev) { on_listener(ev); })) {
    spdlog::error("upgrade: watching the listening socket again: {}", ec.message());
  }
}

std::vector<std::pair<std::string, int>> Broker::handover_fds() const {
  std::vector<std::pair<std::string, int>> out;
  out.emplace_back("listen", listener_.get());
  for (const auto& [name, e] : store_.entries()) {
    std::uint64_t serial = sync_ != nullptr ? sync_->serial_of(name) : 0;
    for (std::size_t i = 0; e.fds && i < e.fds->size(); ++i) {
      out.emplace_back(entry_fdname(serial, i), (*e.fds)[i]);
    }
  }
  return out;
}

}  // namespace fdbroker::daemon
