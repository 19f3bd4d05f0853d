// SPDX-License-Identifier: LGPL-2.1-or-later
#include "acceptor.hpp"

#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <sys/socket.h>

#include <cerrno>
#include <string>

#include <fdbroker/unix_socket.hpp>

#include "json_text.hpp"

namespace fdbroker::daemon {

namespace {

// Connections accepted per wakeup of the listener.
constexpr int accepts_per_wakeup = 64;
// How long the listener rests after ENOBUFS/ENOMEM at accept, or when even a
// reserve slot cannot take a connection in to refuse it (shed_backlog).
constexpr std::chrono::milliseconds accept_backoff{100};

unique_fd open_reserve() { return unique_fd(::open("/dev/null", O_RDONLY | O_CLOEXEC)); }

}  // namespace

Acceptor::Acceptor(EventLoop& loop, unique_fd listener, Limits limits, Exempt exempt,
                   Accepted accepted, ConnectionCounters& counters)
    : loop_(loop),
      listener_(std::move(listener)),
      limits_(limits),
      exempt_(std::move(exempt)),
      accepted_(std::move(accepted)),
      counters_(counters) {
  refill_reserve();
}

Acceptor::~Acceptor() {
  if (timer_ != 0) loop_.cancel(timer_);
  if (watching_) loop_.unwatch(listener_.get());
}

std::optional<Failure> Acceptor::start() {
  if (!listener_.valid()) return Failure{EBADF, "the listening socket is closed"};
  if (!watching_) {
    if (auto ec = loop_.watch(listener_.get(), EPOLLIN, [this](std::uint32_t) { on_readable(); })) {
      return os_failure("watching the listening socket", ec.value());
    }
    watching_ = true;
  } else {
    (void)loop_.modify(listener_.get(), EPOLLIN);
  }
  stopped_ = false;
  paused_ = false;
  return std::nullopt;
}

void Acceptor::stop() {
  if (timer_ != 0) loop_.cancel(timer_);
  timer_ = 0;
  if (watching_) loop_.unwatch(listener_.get());
  watching_ = false;
  stopped_ = true;
  paused_ = true;
}

void Acceptor::accept_backlog_and_close() {
  if (listener_.valid()) on_readable();
  close();
}

void Acceptor::close() {
  stop();
  listener_.reset();
}

void Acceptor::set_limits(Limits limits) {
  limits_ = limits;
  if (paused_ && timer_ == 0 && open_ < limits_.max_connections) resume();
}

void Acceptor::release(uid_t uid) {
  if (open_ > 0) --open_;
  uid_connections_.release(uid, Clock::now());
  if (paused_ && timer_ == 0 && open_ < limits_.max_connections) resume();
}

void Acceptor::pause(std::chrono::milliseconds for_how_long) {
  if (!paused_) {
    paused_ = true;
    if (watching_) (void)loop_.modify(listener_.get(), 0);
  }
  if (for_how_long.count() > 0 && timer_ == 0) {
    timer_ = loop_.add_timer(Clock::now() + for_how_long, [this] {
      timer_ = 0;
      resume();
    });
  }
}

void Acceptor::resume() {
  if (!paused_ || stopped_ || !listener_.valid()) return;
  paused_ = false;
  (void)loop_.modify(listener_.get(), EPOLLIN);
}

void Acceptor::refill_reserve() {
  for (auto& fd : reserve_) {
    if (!fd.valid()) fd = open_reserve();
  }
}

void Acceptor::on_readable() {
  // A reserve slot lost to a shortage (shed_backlog could not take it back) is
  // taken again as soon as one is free, before a client can have it.
  refill_reserve();
  for (const auto& [uid, refused] : uid_connections_.sweep(Clock::now())) {
    spdlog::warn("refused {} more connections of uid {} (limits.max_connections_per_uid {})",
                 refused, uid, limits_.max_connections_per_uid);
  }
  for (int i = 0; i < accepts_per_wakeup; ++i) {
    if (open_ >= limits_.max_connections) {
      // Leave the rest in the backlog until someone leaves (release() resumes).
      spdlog::warn("{} clients connected, the limit: not accepting more for now", open_);
      pause(std::chrono::milliseconds(0));
      return;
    }
    unique_fd sock(::accept4(listener_.get(), nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC));
    if (!sock.valid()) {
      int err = errno;
      if (err == EAGAIN || err == EWOULDBLOCK) return;
      if (err == EINTR || err == ECONNABORTED || err == EPROTO) continue;
      if (err == EMFILE || err == ENFILE) {
        shed_backlog(err);
        return;
      }
      if (err == ENOBUFS || err == ENOMEM) {
        // Level-triggered epoll would wake us again at once for the same pending
        // connection: rest the listener instead of spinning.
        for (auto& fd : reserve_) fd.reset();
        spdlog::warn("accept: {}: not accepting for {} ms", errno_name_or_eio(err),
                     accept_backoff.count());
        refill_reserve();  // the same slots, at once
        pause(accept_backoff);
        return;
      }
      spdlog::error("accept: {}", errno_name_or_eio(err));
      return;
    }
    auto creds = try_peer_credentials(sock.get());
    if (!creds) {
      spdlog::warn("dropping a client whose credentials are unknown: {}",
                   errno_name_or_eio(creds.error().value()));
      continue;
    }
    ClientIdentity peer;
    peer.pid = creds->pid;
    peer.uid = creds->uid;
    peer.gid = creds->gid;
    if (!uid_connections_.admit(peer.uid, limits_.max_connections_per_uid,
                                exempt_ && exempt_(peer))) {
      // Closed unanswered: the client sees end of stream (ECONNRESET if it had
      // sent a request already), and the backlog does not fill up with one uid's
      // connections while other users wait behind them.
      ++counters_.refused_per_uid;
      if (std::uint64_t n = uid_connections_.note_refusal(peer.uid, Clock::now())) {
        spdlog::warn(
            "refused a connection of {}: uid {} holds {} connections, its limit "
            "(limits.max_connections_per_uid){}",
            identity_label(peer.pid, peer.uid, peer.gid), peer.uid, uid_connections_.of(peer.uid),
            n > 1 ? " (and " + std::to_string(n - 1) + " more since the last warning)"
                  : std::string());
      }
      continue;
    }
    if (auto groups = try_peer_groups(sock.get())) peer.groups = std::move(*groups);
    peer.label = identity_label(peer.pid, peer.uid, peer.gid);
    uid_t uid = peer.uid;
    ++open_;
    if (!accepted_(std::move(sock), std::move(peer))) {
      --open_;
      uid_connections_.release(uid, Clock::now());
      continue;
    }
    ++counters_.total;
  }
}

// No descriptor is left for a new client (EMFILE, or ENFILE for the whole
// system). Epoll is level-triggered: leaving the backlog alone would wake us again
// at once for it (a busy loop), and pausing the listener alone would leave those
// clients hanging, and block the next ones in connect() once the backlog is full,
// for as long as the shortage lasts. So refuse them as libuv does: free a reserve
// slot, accept each waiting client into it and close it at once. The client sees
// end of stream without a reply (ECONNRESET if it had sent a request) and may try
// again later; connected clients are served as before, and a new client is
// accepted again as soon as descriptors are free.
void Acceptor::shed_backlog(int err) {
  reserve_[0].reset();
  std::uint64_t shed = 0;
  int stopped_by = EAGAIN;
  for (int i = 0; i < accepts_per_wakeup; ++i) {
    unique_fd sock(::accept4(listener_.get(), nullptr, nullptr, SOCK_CLOEXEC));
    if (sock.valid()) {
      ++shed;
      continue;  // closed here
    }
    if (errno == EINTR || errno == ECONNABORTED || errno == EPROTO) continue;
    stopped_by = errno;
    break;
  }
  counters_.refused_no_fds += shed;
  // Not even the reserve slot was enough (ENFILE: another process took it):
  // rest instead of spinning.
  bool rest = stopped_by != EAGAIN && stopped_by != EWOULDBLOCK;
  reserve_[1].reset();  // for logging (the journal's socket), and sanitizer runtimes
  if (auto n = no_fds_warnings_.note(Clock::now(), shed)) {
    spdlog::warn(
        "accept: {}: no descriptor left for new clients: {} refused since the last warning{}",
        errno_name_or_eio(err), *n,
        rest ? "; not accepting for " + std::to_string(accept_backoff.count()) + " ms"
             : std::string());
  }
  refill_reserve();  // the same slots, at once
  // Without its reserve slot the next shortage could not be shed: rest then too.
  if (rest || !reserve_[0].valid()) pause(accept_backoff);
}

}  // namespace fdbroker::daemon
