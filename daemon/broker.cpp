// SPDX-License-Identifier: LGPL-2.1-or-later
#include "broker.hpp"

#include <fdbroker/error.hpp>
#include <fdbroker/scm_rights.hpp>
#include <fdbroker/unix_socket.hpp>
#include <fdbroker/version.hpp>

#include <fcntl.h>
#include <linux/sockios.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <spdlog/spdlog.h>
#include <algorithm>
#include <cerrno>
#include <nlohmann/json.hpp>

#include "closer.hpp"
#include "fd_description.hpp"
#include "json_text.hpp"
#include "static_entries.hpp"

namespace fdbroker::daemon {

namespace {

// Room left in a message for what is spliced around an entry's precomputed body
// (an id of up to max_id_bytes, expires_ms, and list framing with a cursor).
constexpr std::size_t max_entry_body = max_message_bytes - 2048;
// Requests handled per wakeup of one connection. One: epoll is level-triggered, so a
// connection with more requests queued is reported again at the next epoll_wait (and
// others get their turn in between). Reading on until EAGAIN would cost the usual
// request/reply client a second recvmsg per request that only says EAGAIN: about 10%
// of the broker's CPU per get (bench/broker/run.sh --syscalls: 1.9 recvmsg per get
// instead of 1).
constexpr int requests_per_wakeup = 1;
// Requests read per round while draining (shutdown, upgrade): what clients already sent.
constexpr int requests_per_drain_round = 32;
// Connections accepted per wakeup of the listener.
constexpr int accepts_per_wakeup = 64;
// How long the listener rests after ENOBUFS/ENOMEM at accept, or when even a
// reserve slot cannot take a connection in to refuse it (shed_backlog).
constexpr std::chrono::milliseconds accept_backoff{100};

const char* error_name(int err) {
  const char* name = errno_name(err);
  return name != nullptr ? name : "EIO";
}

// After a zero-length read: whether the peer has shut down its sending side with
// nothing left to read (end of stream), rather than sent an empty record. An
// empty record followed only by the shutdown is indistinguishable from it, and
// taken for the end (docs/protocol.md).
bool peer_done_sending(int sock) {
  pollfd pfd{sock, POLLRDHUP, 0};
  if (::poll(&pfd, 1, 0) != 1 || (pfd.revents & (POLLRDHUP | POLLHUP | POLLERR)) == 0) return false;
  int queued = 0;
  return ::ioctl(sock, SIOCINQ, &queued) < 0 || queued == 0;
}

std::int64_t ms_until(Clock::time_point when, Clock::time_point now) {
  auto left = std::chrono::ceil<std::chrono::milliseconds>(when - now).count();
  return left > 0 ? left : 0;
}

// `facts`: probe_fd() of each descriptor, if already done (else probed here).
std::string describe_all(const FdSet& fds, const std::vector<FdFacts>& facts = {}) {
  nlohmann::json list = nlohmann::json::array();
  for (std::size_t i = 0; i < fds.size(); ++i) {
    list.push_back(i < facts.size() ? describe_fd(fds[i], facts[i]) : describe_fd(fds[i]));
  }
  return list.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

}  // namespace

EffectiveLimits derive_limits(const Limits& configured) {
  rlimit rl{};
  if (::getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
    rlimit raised = rl;
    raised.rlim_cur = rl.rlim_max;
    if (::setrlimit(RLIMIT_NOFILE, &raised) == 0) rl = raised;
  }
  std::uint64_t nofile = rl.rlim_cur == RLIM_INFINITY ? 1u << 20 : rl.rlim_cur;
  EffectiveLimits limits;
  // Never let connections eat more than half the table: the entries need the rest.
  limits.max_connections = std::min<std::uint64_t>(configured.max_connections, nofile / 2);
  // One uid may hold a quarter of the connections: a client that leaks
  // connections (or one user on purpose) cannot shut the others out.
  limits.max_connections_per_uid = configured.max_connections_per_uid
                                       ? *configured.max_connections_per_uid
                                       : std::max<std::uint64_t>(64, limits.max_connections / 4);
  // Headroom: the connections, one incoming message's fds, and the broker's own
  // (listener, epoll, timerfd, signalfd, logs, static entries being reopened).
  std::uint64_t reserve = limits.max_connections + max_fds_per_message + 64;
  limits.max_fds = nofile > reserve + 16 ? nofile - reserve : nofile / 4;
  if (configured.max_fds != 0)
    limits.max_fds = std::min<std::uint64_t>(limits.max_fds, configured.max_fds);
  return limits;
}

Broker::Broker(EventLoop& loop, unique_fd listener, std::string unlink_path, const Config& config,
               EffectiveLimits limits)
    : loop_(loop),
      listener_(std::move(listener)),
      unlink_path_(std::move(unlink_path)),
      config_(config),
      limits_(limits),
      policy_(config.rules, config.owner_rights, ::geteuid()),
      // Generations start at the wall clock in microseconds, so that they keep
      // growing across restarts of the broker without stored state (2^53, where
      // JSON numbers stop being exact in JavaScript, is centuries away).
      store_(static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::microseconds>(
                                            std::chrono::system_clock::now().time_since_epoch())
                                            .count())),
      buffer_(max_message_bytes + 1) {
  reply_.reserve(max_message_bytes);
  fds_.reserve(max_fds_per_message);
  for (auto& fd : reserve_) fd.reset(::open("/dev/null", O_RDONLY | O_CLOEXEC));
}

Broker::~Broker() {
  if (release_hook_ != 0) loop_.remove_turn_hook(release_hook_);
  if (held_retry_timer_ != 0) loop_.cancel(held_retry_timer_);
  if (listener_timer_ != 0) loop_.cancel(listener_timer_);
  if (expiry_timer_ != 0) loop_.cancel(expiry_timer_);
  if (shutdown_timer_ != 0) loop_.cancel(shutdown_timer_);
  if (closer_timer_ != 0) loop_.cancel(closer_timer_);
  for (auto& [fd, c] : connections_) {
    if (c->park_timer != 0) loop_.cancel(c->park_timer);
    if (c->stuck_timer != 0) loop_.cancel(c->stuck_timer);
    loop_.unwatch(fd);
  }
  if (listener_.valid()) loop_.unwatch(listener_.get());
}

std::string Broker::status() const {
  return std::to_string(store_.size()) + " entries, " + std::to_string(store_.fds_held()) +
         " fds, " + std::to_string(connections_.size()) + " clients";
}

// ---------------------------------------------------------------- start, reload

bool Broker::prepare_static(const Config& config, std::vector<StoredEntry>& ret_entries,
                            std::vector<std::string>& ret_errors) {
  std::vector<StoredEntry> prepared;
  for (std::size_t i = 0; i < config.entries.size(); ++i) {
    const StaticEntry& decl = config.entries[i];
    StoredEntry e;
    e.name = decl.name;
    e.meta = decl.meta;
    e.owner = 0;
    e.is_static = true;
    const StoredEntry* existing = nullptr;
    auto it = static_openings_.find(decl.name);
    if (it != static_openings_.end() && it->second == decl.opening) {
      auto found = store_.entries().find(decl.name);
      if (found != store_.entries().end() && found->second.is_static) existing = &found->second;
    }
    if (existing != nullptr) {
      // Unchanged declaration: the same fds (a listening socket is never re-bound).
      e.fds = existing->fds;
      e.fds_json = existing->fds_json;
      e.generation = existing->meta == e.meta ? existing->generation : 0;
    } else {
      auto fd = open_static_entry(decl);
      if (!fd) {
        ret_errors.push_back("entries[" + std::to_string(i) + "] '" + decl.name +
                             "': " + fd.failure().why);
        continue;
      }
      std::vector<unique_fd> one;
      one.push_back(std::move(*fd));
      e.fds = std::make_shared<const FdSet>(std::move(one));
      e.fds_json = describe_all(*e.fds);
    }
    if (e.generation == 0) e.generation = store_.next_generation();
    e.render();
    if (e.reply_body.size() > max_entry_body) {
      ret_errors.push_back("entries[" + std::to_string(i) + "] '" + decl.name +
                           "': meta too large for one message");
      continue;
    }
    prepared.push_back(std::move(e));
  }
  if (!ret_errors.empty()) return false;  // the new fds in `prepared` close here
  ret_entries = std::move(prepared);
  return true;
}

void Broker::install_static(std::vector<StoredEntry> entries) {
  // Static entries no longer declared go; declared ones replace whatever is there.
  std::vector<std::string> gone;
  for (const auto& declared : static_openings_) {
    const std::string& name =
        declared.first;  // not a structured binding: clang 14 cannot capture one
    bool still = std::any_of(entries.begin(), entries.end(),
                             [&](const StoredEntry& e) { return e.name == name; });
    if (!still) gone.push_back(name);
  }
  for (const auto& name : gone) {
    if (auto old = store_.extract(name))
      drop_entry(std::move(*old), "no longer in the configuration");
  }
  static_openings_.clear();
  for (const auto& decl : config_.entries) static_openings_[decl.name] = decl.opening;
  std::vector<std::string> names;
  for (auto& e : entries) {
    names.push_back(e.name);
    const StoredEntry* current = store_.find(e.name, Clock::now());
    if (current != nullptr && !current->is_static) {
      spdlog::warn("static entry '{}' replaces the entry put by uid {}", e.name, current->owner);
    }
    store_.insert(std::move(e));
  }
  for (const auto& name : names) wake_waiters(name);
}

bool Broker::start(std::vector<std::string>& ret_errors) {
  std::vector<StoredEntry> entries;
  if (!prepare_static(config_, entries, ret_errors)) return false;
  for (const auto& e : entries) spdlog::info("static entry '{}': {}", e.name, e.fds_json);
  install_static(std::move(entries));
  std::error_code ec =
      loop_.watch(listener_.get(), EPOLLIN, [this](std::uint32_t ev) { on_listener(ev); });
  if (ec) {
    ret_errors.push_back("watching the listening socket: " + ec.message());
    return false;
  }
  return true;
}

bool Broker::reload(const Config& config, EffectiveLimits limits,
                    std::vector<std::string>& ret_errors) {
  std::vector<StoredEntry> entries;
  if (!prepare_static(config, entries, ret_errors)) return false;
  // Nothing can fail from here on.
  if (config.socket_path != config_.socket_path || config.socket_mode != config_.socket_mode ||
      config.socket_group != config_.socket_group) {
    spdlog::warn("socket settings changed; they take effect at the next start");
  }
  std::string keep_path = config_.socket_path;
  config_ = config;
  config_.socket_path = keep_path;
  limits_ = limits;
  policy_ = Policy(config.rules, config.owner_rights, ::geteuid());
  install_static(std::move(entries));
  if (listener_paused_ && listener_timer_ == 0 && connections_.size() < limits_.max_connections) {
    resume_listener();
  }
  return true;
}

// ---------------------------------------------------------------- accepting

void Broker::pause_listener(std::chrono::milliseconds for_how_long) {
  if (!listener_paused_) {
    listener_paused_ = true;
    (void)loop_.modify(listener_.get(), 0);
  }
  if (for_how_long.count() > 0 && listener_timer_ == 0) {
    listener_timer_ = loop_.add_timer(Clock::now() + for_how_long, [this] {
      listener_timer_ = 0;
      resume_listener();
    });
  }
}

void Broker::resume_listener() {
  if (!listener_paused_ || shutting_down_ || !listener_.valid()) return;
  listener_paused_ = false;
  (void)loop_.modify(listener_.get(), EPOLLIN);
}

void Broker::on_listener(std::uint32_t) {
  // A reserve slot lost to a shortage (shed_backlog could not take it back) is
  // taken again as soon as one is free, before a client can have it.
  for (auto& fd : reserve_) {
    if (!fd.valid()) fd.reset(::open("/dev/null", O_RDONLY | O_CLOEXEC));
  }
  for (const auto& [uid, refused] : uid_connections_.sweep(Clock::now())) {
    spdlog::warn("refused {} more connections of uid {} (limits.max_connections_per_uid {})",
                 refused, uid, limits_.max_connections_per_uid);
  }
  for (int i = 0; i < accepts_per_wakeup; ++i) {
    if (connections_.size() >= limits_.max_connections) {
      // Leave the rest in the backlog until someone leaves (close_connection resumes).
      spdlog::warn("{} clients connected, the limit: not accepting more for now",
                   connections_.size());
      pause_listener(std::chrono::milliseconds(0));
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
        spdlog::warn("accept: {}: not accepting for {} ms", error_name(err),
                     accept_backoff.count());
        for (auto& fd : reserve_)
          fd.reset(::open("/dev/null", O_RDONLY | O_CLOEXEC));  // the same slots, at once
        pause_listener(accept_backoff);
        return;
      }
      spdlog::error("accept: {}", error_name(err));
      return;
    }
    auto creds = try_peer_credentials(sock.get());
    if (!creds) {
      spdlog::warn("dropping a client whose credentials are unknown: {}",
                   error_name(creds.error().value()));
      continue;
    }
    ClientIdentity peer;
    peer.pid = creds->pid;
    peer.uid = creds->uid;
    peer.gid = creds->gid;
    if (!uid_connections_.admit(peer.uid, limits_.max_connections_per_uid,
                                policy_.is_admin(peer))) {
      // Closed unanswered: the client sees end of stream (ECONNRESET if it had
      // sent a request already), and the backlog does not fill up with one uid's
      // connections while other users wait behind them.
      ++connections_refused_per_uid_;
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
    int fd = sock.get();
    uid_t uid = peer.uid;
    auto conn = std::make_unique<Connection>(std::move(sock), std::move(peer));
    Connection* c = conn.get();
    if (auto ec =
            loop_.watch(fd, EPOLLIN, [this, c](std::uint32_t ev) { on_connection(*c, ev); })) {
      spdlog::error("watching a client: {}", ec.message());
      uid_connections_.release(uid, Clock::now());
      continue;
    }
    c->events = EPOLLIN;
    connections_.emplace(fd, std::move(conn));
    ++connections_total_;
    spdlog::debug("client connected: {}", c->peer().label);
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
void Broker::shed_backlog(int err) {
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
  connections_refused_no_fds_ += shed;
  // Not even the reserve slot was enough (ENFILE: another process took it):
  // rest instead of spinning.
  bool rest = stopped_by != EAGAIN && stopped_by != EWOULDBLOCK;
  reserve_[1].reset();  // for logging (the journal's socket), and sanitizer runtimes
  if (auto n = no_fds_warnings_.note(Clock::now(), shed)) {
    spdlog::warn(
        "accept: {}: no descriptor left for new clients: {} refused since the last warning{}",
        error_name(err), *n,
        rest ? "; not accepting for " + std::to_string(accept_backoff.count()) + " ms"
             : std::string());
  }
  for (auto& fd : reserve_)
    fd.reset(::open("/dev/null", O_RDONLY | O_CLOEXEC));  // the same slots, at once
  // Without its reserve slot the next shortage could not be shed: rest then too.
  if (rest || !reserve_[0].valid()) pause_listener(accept_backoff);
}

// ---------------------------------------------------------------- connections

// Connections closed during a handler are freed at its end, when nothing on the
// stack refers to them any more; this is also when their sockets are closed.
void Broker::reap() { dying_.clear(); }

void Broker::update_interest(Connection& c) {
  if (c.closed) return;
  bool want_in =
      !c.parked && !c.eof && !shutting_down_ && c.queued() < config_.limits.max_queued_replies;
  if (want_in && closes_over_quota(c.peer().uid)) {
    // Too many of this uid's descriptors wait for the closer (a hanging file
    // system?): read none of its requests, each of which may carry 253 more,
    // until they drain. Checked again shortly; other uids are served meanwhile.
    want_in = false;
    if (closer_timer_ == 0) {
      closer_timer_ = loop_.add_timer(Clock::now() + std::chrono::milliseconds(100), [this] {
        closer_timer_ = 0;
        for (auto& [fd, conn] : connections_) update_interest(*conn);
      });
    }
  }
  std::uint32_t events = (want_in ? EPOLLIN : 0u) | (c.sendable() ? EPOLLOUT : 0u);
  if (events != c.events) {
    c.events = events;
    (void)loop_.modify(c.fd(), events);
  }
}

// Called whenever a reply was queued: a client that leaves replies unread for
// client_timeout_ms without reading any is dropped.
void Broker::note_queued(Connection& c) {
  if (c.stuck_timer == 0) {
    Connection* cp = &c;
    c.stuck_timer = loop_.add_timer(
        Clock::now() + std::chrono::milliseconds(config_.limits.client_timeout_ms), [this, cp] {
          cp->stuck_timer = 0;
          spdlog::warn("dropping client {}: {} replies unread for {} ms", cp->peer().label,
                       cp->queued(), config_.limits.client_timeout_ms);
          ++connections_dropped_;
          close_connection(*cp, nullptr);
          reap();
        });
  }
  update_interest(c);
}

void Broker::close_connection(Connection& c, const char* why) {
  if (c.closed) return;
  c.closed = true;
  if (why != nullptr) spdlog::debug("client {} closed: {}", c.peer().label, why);
  unpark(c);
  if (c.stuck_timer != 0) loop_.cancel(c.stuck_timer);
  c.stuck_timer = 0;
  // Takes whose reply never left: the entry comes back, as if never taken.
  for (auto& reply : c.take_queue()) {
    if (!reply.taken) continue;
    StoredEntry& e = *reply.taken;
    if (store_.find(e.name, Clock::now()) == nullptr) {
      spdlog::info("take of '{}' by {} not delivered: entry restored", e.name, c.peer().label);
      std::string name = e.name;
      store_.insert(std::move(e));
      schedule_expiry();
      wake_waiters(name);
    }
  }
  loop_.unwatch(c.fd());
  auto it = connections_.find(c.fd());
  if (it != connections_.end()) {
    uid_connections_.release(c.peer().uid, Clock::now());
    dying_.push_back(std::move(it->second));
    connections_.erase(it);
  }
  if (shutting_down_) {
    if (connections_.empty() && shutdown_done_) {
      if (shutdown_timer_ != 0) loop_.cancel(shutdown_timer_);
      shutdown_timer_ = 0;
      auto done = std::move(shutdown_done_);
      shutdown_done_ = nullptr;
      done();
    }
  } else if (listener_paused_ && listener_timer_ == 0 &&
             connections_.size() < limits_.max_connections) {
    resume_listener();
  }
}

void Broker::on_connection(Connection& c, std::uint32_t events) {
  if (events & EPOLLOUT) write_replies(c);
  if (!c.closed) {
    if (events & EPOLLIN) {
      read_requests(c);
    } else if (events & (EPOLLHUP | EPOLLERR)) {
      close_connection(c, "hung up");
    }
  }
  reap();  // `c` may be among them: not touched after this
}

void Broker::write_replies(Connection& c) {
  auto flushed = c.flush();
  if (flushed.error) {
    close_connection(c, "send failed");
    return;
  }
  if (flushed.progressed && c.stuck_timer != 0) {
    loop_.cancel(c.stuck_timer);
    c.stuck_timer = 0;
    if (c.has_queued()) note_queued(c);  // a fresh deadline for what is left
  }
  if (!c.has_queued() && (c.eof || shutting_down_) && !c.parked) {
    close_connection(c, c.eof ? "end of requests" : "shutting down");
    return;
  }
  update_interest(c);
}

bool Broker::read_requests(Connection& c, bool draining) {
  const int bound = draining ? requests_per_drain_round : requests_per_wakeup;
  int handled = 0;
  for (; handled < bound; ++handled) {
    if (c.closed || c.parked || c.eof || (shutting_down_ && !draining) ||
        c.queued() >= config_.limits.max_queued_replies ||
        (!draining && closes_over_quota(c.peer().uid))) {
      break;
    }
    close_later(fds_, c.peer().uid);
    // Truncated ancillary data is accepted so that the payload (and its id) can
    // still be answered; the descriptors that did arrive are closed below.
    auto got = try_recvfds_into(c.fd(), buffer_.data(), buffer_.size(), fds_, max_fds_per_message,
                                io_flags::dontwait | io_flags::accept_truncated_fds);
    if (!got) {
      int err = got.error().value();
      if (err == EAGAIN || err == EWOULDBLOCK) break;
      close_connection(c, error_name(err));
      return false;
    }
    if (got->size == 0 && fds_.empty() && !got->payload_truncated && peer_done_sending(c.fd())) {
      c.eof = true;  // the peer closed (or shut down) its sending side
      if (!c.has_queued() && !c.parked) close_connection(c, "end of requests");
      return false;
    }
    try {
      handle_message(c, got->size, got->payload_truncated || got->size > max_message_bytes,
                     got->fds_truncated);
    } catch (const std::exception& e) {
      // A bug costs this connection, not the broker.
      spdlog::error("internal error serving {}: {}", c.peer().label, e.what());
      close_connection(c, "internal error");
    }
    close_later(fds_, c.peer().uid);  // whatever was not stored is closed (closer.hpp)
  }
  update_interest(c);
  return handled == bound;
}

// ---------------------------------------------------------------- replies

void Broker::begin_reply(const std::string& id) {
  reply_.clear();
  reply_ += '{';
  if (!id.empty()) {
    reply_ += "\"id\":";
    reply_ += id;
    reply_ += ',';
  }
  reply_head_ = reply_.size();
}

void Broker::reply_too_large() {
  reply_.resize(reply_head_);
  append_error(reply_, EMSGSIZE, "the reply would not fit in one message");
}

void Broker::count(const Request& req, int err) {
  std::size_t row = req.has_op ? static_cast<std::size_t>(req.op) : op_count;
  ++requests_[row][static_cast<std::size_t>(err) < 256 ? static_cast<std::size_t>(err) : 255];
}

void Broker::send_reply(Connection& c, const std::shared_ptr<const FdSet>& fds) {
  if (reply_.size() > max_message_bytes) {
    // Every reply is bounded by construction: this is a bug, but it costs the
    // client one short error, not its connection and the requests behind it.
    spdlog::error("a reply of {} bytes to {} exceeds the protocol's limit", reply_.size(),
                  c.peer().label);
    reply_too_large();
    send_reply(c);
    return;
  }
  switch (c.send(reply_, fds)) {
    case Connection::Sent::now:
      break;
    case Connection::Sent::queued:
      note_queued(c);
      break;
    case Connection::Sent::too_large:
      spdlog::error("the socket refused a reply of {} bytes to {} (EMSGSIZE)", reply_.size(),
                    c.peer().label);
      reply_too_large();
      send_reply(c);
      break;
    case Connection::Sent::failed:
      close_connection(c, "send failed");
      break;
  }
}

void Broker::send_error(Connection& c, const Request& req, int err, std::string_view message) {
  // The descriptors of a refused request go to the closer before the reply
  // leaves: closed on its threads, a moment later (never on this one: closer.hpp).
  close_later(fds_, c.peer().uid);
  count(req, err);
  begin_reply(req.id);
  append_error(reply_, err, message);
  send_reply(c);
}

bool Broker::allowed(Connection& c, unsigned perm, const Request& req, const StoredEntry* entry) {
  const uid_t* owner = entry != nullptr && !entry->is_static ? &entry->owner : nullptr;
  Decision d = policy_.check(c.peer(), perm, req.name, owner);
  if (!d.allowed) {
    spdlog::info("denied {} '{}' to {}: {}", perm_name(perm), req.name, c.peer().label, d.reason);
    return false;
  }
  // Grants that change the store are worth an audit line; reads are the hot
  // path (100k+/s) and only show at debug.
  if (perm == perm_get || perm == perm_stats) {
    spdlog::debug("granted {} '{}' to {}: {}", perm_name(perm), req.name, c.peer().label, d.reason);
  } else {
    spdlog::info("granted {} '{}' to {}: {}", perm_name(perm), req.name, c.peer().label, d.reason);
  }
  return true;
}

// ---------------------------------------------------------------- requests

void Broker::handle_message(Connection& c, std::size_t size, bool truncated_payload,
                            bool truncated_fds) {
  Request& req = request_;
  if (truncated_payload) {
    req.id.clear();
    req.has_op = false;
    send_error(c, req, EMSGSIZE, "message longer than 65536 bytes");
    return;
  }
  if (size == 0) {  // nothing to parse, and no id to echo
    req.id.clear();
    req.has_op = false;
    if (truncated_fds) {
      send_error(c, req, EMSGSIZE, "too many descriptors: the ancillary data was truncated");
    } else {
      send_error(c, req, EPROTO, "empty message");
    }
    return;
  }
  int err = parse_request(std::string_view(buffer_.data(), size), req, message_);
  if (truncated_fds) {
    send_error(c, req, EMSGSIZE, "too many descriptors: the ancillary data was truncated");
    return;
  }
  if (err != 0) {
    send_error(c, req, err, message_);
    return;
  }
  if (!fds_.empty() && req.op != Op::put) {
    send_error(c, req, EINVAL,
               std::string("descriptors attached to '") + op_name(req.op) + "', which takes none");
    return;
  }
  dispatch(c, req);
}

void Broker::dispatch(Connection& c, Request& req) {
  if (c.refusing) {
    // Behind a waiting request that was refused at shutdown or upgrade: in order,
    // the same answer (its descriptors, if a put, are closed by send_error).
    send_error(c, req, ESHUTDOWN, farewell_);
    return;
  }
  switch (req.op) {
    case Op::hello:
      do_hello(c, req);
      break;
    case Op::get:
    case Op::take:
      do_get(c, req, true);
      break;
    case Op::put:
      do_put(c, req);
      break;
    case Op::del:
      do_delete(c, req);
      break;
    case Op::list:
      do_list(c, req);
      break;
    case Op::stats:
      do_stats(c, req);
      break;
    case Op::upgrade:
      do_upgrade(c, req);
      break;
  }
}

void Broker::do_hello(Connection& c, const Request& req) {
  count(req, 0);
  begin_reply(req.id);
  reply_ += "\"ok\":true,\"server\":\"fdbrokerd\",\"version\":\"" FDBROKER_VERSION_STRING
            "\",\"protocol\":1,\"peer\":{\"uid\":";
  append_uint(reply_, c.peer().uid);
  reply_ += ",\"gid\":";
  append_uint(reply_, c.peer().gid);
  reply_ += ",\"pid\":";
  append_int(reply_, c.peer().pid);
  reply_ += "}}";
  send_reply(c);
}

void Broker::do_get(Connection& c, Request& req, bool may_park) {
  bool take = req.op == Op::take;
  auto now = Clock::now();
  const StoredEntry* e = store_.find(req.name, now);
  // Access first, existence after: a peer refused the name learns nothing about
  // whether it exists (EACCES either way), nor waits for an entry it could not get.
  if (!allowed(c, take ? perm_take : perm_get, req, e)) {
    send_error(c, req, EACCES,
               std::string(take ? "take" : "get") + " of '" + req.name + "' not allowed");
    return;
  }
  if (e == nullptr) {
    if (may_park && req.wait_ms > 0 && config_.limits.max_wait_ms > 0) {
      if (c.winding_down) {
        refuse_waiting(c, req);  // this broker will not be there when the entry comes
        return;
      }
      auto wait = std::min<std::int64_t>(req.wait_ms,
                                         static_cast<std::int64_t>(config_.limits.max_wait_ms));
      park(c, req, std::chrono::milliseconds(wait));
      return;
    }
    send_error(c, req, req.wait_ms > 0 ? ETIMEDOUT : ENOENT,
               req.wait_ms > 0 ? "no entry named '" + req.name + "' appeared in time"
                               : "no entry named '" + req.name + "'");
    return;
  }
  if (take && e->is_static) {
    send_error(c, req, EPERM,
               "'" + req.name + "' is declared in the configuration: it cannot be taken");
    return;
  }
  count(req, 0);
  begin_reply(req.id);
  if (e->expiry) {
    reply_ += "\"expires_ms\":";
    append_int(reply_, ms_until(*e->expiry, now));
    reply_ += ',';
  }
  reply_ += e->reply_body;
  if (!take) {
    send_reply(c, e->fds);
    return;
  }
  // take: the store lets go of the entry only once the reply has left, or is
  // queued holding the entry so that it comes back if it never leaves.
  std::shared_ptr<const FdSet> fds = e->fds;
  if (durable_acks()) {
    // Out of the store now, so that the turn's state no longer names it; the
    // reply waits for that state (release_held), holding the entry meanwhile.
    c.hold(reply_, fds);
    c.back().taken = store_.extract(req.name);
    held_.push_back(c.fd());
    return;
  }
  switch (c.send(reply_, fds)) {
    case Connection::Sent::now:
      if (auto gone = store_.extract(req.name)) drop_entry(std::move(*gone), nullptr);
      break;
    case Connection::Sent::queued:
      c.back().taken = store_.extract(req.name);
      note_queued(c);
      break;
    case Connection::Sent::too_large:  // the entry stays: it was not delivered
      reply_too_large();
      send_reply(c);
      break;
    case Connection::Sent::failed:
      close_connection(c, "send failed");
      break;
  }
}

void Broker::do_put(Connection& c, const Request& req) {
  if (fds_.empty()) {
    send_error(c, req, EINVAL, "put needs 1 to 253 descriptors attached");
    return;
  }
  auto now = Clock::now();
  const StoredEntry* old = store_.find(req.name, now);
  if (!allowed(c, perm_put, req, old)) {  // before existence: see do_get()
    send_error(c, req, EACCES, "put of '" + req.name + "' not allowed");
    return;
  }
  // Each descriptor is probed once: for the FUSE check, then for its description.
  facts_.clear();
  for (const auto& fd : fds_) facts_.push_back(probe_fd(fd.get()));
  if (!config_.accept_fuse_fds) {
    // A FUSE daemon decides how long closing its files takes (forever, if it
    // stops answering): such descriptors are not kept, nor handed to PID 1's fd store.
    for (std::size_t i = 0; i < fds_.size(); ++i) {
      std::string why = fuse_reason(facts_[i], mount_table());
      if (why.empty()) continue;
      spdlog::info("put of '{}' by {} refused: descriptor {} is on {}", req.name, c.peer().label, i,
                   why);
      send_error(c, req, EOPNOTSUPP,
                 "descriptor " + std::to_string(i) + " is on a FUSE file system (" + why +
                     "), which the configuration does not accept (accept_fuse_fds)");
      return;
    }
  }
  if (old != nullptr && old->is_static) {
    send_error(c, req, EPERM,
               "'" + req.name + "' is declared in the configuration: it cannot be replaced");
    return;
  }
  if (req.expect_generation >= 0) {
    std::uint64_t current = old != nullptr ? old->generation : 0;
    if (current != static_cast<std::uint64_t>(req.expect_generation)) {
      send_error(c, req, ESTALE,
                 "'" + req.name + "' is at generation " + std::to_string(current) + ", not " +
                     std::to_string(req.expect_generation));
      return;
    }
  } else if (old != nullptr && !req.replace) {
    send_error(c, req, EEXIST, "'" + req.name + "' exists (use replace or expect_generation)");
    return;
  }
  uid_t uid = c.peer().uid;
  std::uint64_t n = fds_.size();
  Usage usage = store_.usage(uid);
  bool replacing_own = old != nullptr && old->owner == uid;
  std::uint64_t entries_after = usage.entries + 1 - (replacing_own ? 1 : 0);
  std::uint64_t fds_after = usage.fds + n - (replacing_own ? old->fds->size() : 0);
  if (entries_after > config_.limits.max_entries_per_uid ||
      fds_after > config_.limits.max_fds_per_uid) {
    spdlog::info("quota: put of '{}' by {} refused ({} entries, {} fds after it)", req.name,
                 c.peer().label, entries_after, fds_after);
    send_error(c, req, EDQUOT,
               "quota of uid " + std::to_string(uid) + " exceeded (entries " +
                   std::to_string(config_.limits.max_entries_per_uid) + ", fds " +
                   std::to_string(config_.limits.max_fds_per_uid) + ")");
    return;
  }
  std::uint64_t freed = old != nullptr ? old->fds->size() : 0;
  if (store_.fds_held() + n - freed > limits_.max_fds) {
    spdlog::warn("put of '{}' by {} refused: {} fds held, the limit is {}", req.name,
                 c.peer().label, store_.fds_held(), limits_.max_fds);
    send_error(
        c, req, ENOSPC,
        "the broker holds its maximum of descriptors (" + std::to_string(limits_.max_fds) + ")");
    return;
  }

  StoredEntry e;
  e.name = req.name;
  e.meta = req.meta;
  e.owner = uid;
  e.fds = std::make_shared<const FdSet>(std::move(fds_));
  fds_.clear();
  e.fds_json = describe_all(*e.fds, facts_);
  e.generation = store_.next_generation();
  if (req.ttl_ms > 0) e.expiry = now + std::chrono::milliseconds(req.ttl_ms);
  e.render();
  if (e.reply_body.size() > max_entry_body) {
    send_error(c, req, EMSGSIZE,
               "the entry's description (meta and fds) would not fit in one message");
    return;  // `e` and its fds go
  }
  std::uint64_t generation = e.generation;
  spdlog::info("put '{}' generation {} by {}: {} fds{}", req.name, generation, c.peer().label, n,
               req.ttl_ms > 0 ? ", ttl " + std::to_string(req.ttl_ms) + " ms" : std::string());
  if (auto replaced = store_.insert(std::move(e))) drop_entry(std::move(*replaced), nullptr);
  if (req.ttl_ms > 0) schedule_expiry();

  count(req, 0);
  begin_reply(req.id);
  reply_ += "\"ok\":true,\"name\":";
  append_json_string(reply_, req.name);
  reply_ += ",\"generation\":";
  append_uint(reply_, generation);
  reply_ += '}';
  acknowledge(c);
  wake_waiters(req.name);
}

void Broker::do_delete(Connection& c, const Request& req) {
  const StoredEntry* e = store_.find(req.name, Clock::now());
  if (!allowed(c, perm_delete, req, e)) {  // before existence: see do_get()
    send_error(c, req, EACCES, "delete of '" + req.name + "' not allowed");
    return;
  }
  if (e == nullptr) {
    send_error(c, req, ENOENT, "no entry named '" + req.name + "'");
    return;
  }
  if (e->is_static) {
    send_error(c, req, EPERM,
               "'" + req.name + "' is declared in the configuration: it cannot be deleted");
    return;
  }
  if (auto gone = store_.extract(req.name)) drop_entry(std::move(*gone), nullptr);
  count(req, 0);
  begin_reply(req.id);
  reply_ += "\"ok\":true,\"name\":";
  append_json_string(reply_, req.name);
  reply_ += '}';
  acknowledge(c);
}

void Broker::do_list(Connection& c, const Request& req) {
  auto now = Clock::now();
  const auto& entries = store_.entries();
  auto it = entries.lower_bound(req.prefix);
  if (!req.cursor.empty()) {
    auto after = entries.upper_bound(req.cursor);
    if (after != entries.end() && (it == entries.end() || after->first > it->first)) it = after;
    if (after == entries.end()) it = after;
  }
  auto visible = [&](const StoredEntry& e) {
    if (e.expiry && *e.expiry <= now) return false;
    const uid_t* owner = e.is_static ? nullptr : &e.owner;
    return policy_.check(c.peer(), perm_get, e.name, owner).allowed;
  };
  count(req, 0);
  begin_reply(req.id);
  reply_ += "\"ok\":true,\"entries\":[";
  // What must still fit after the entries: "]", a cursor of up to 255 bytes, "}".
  constexpr std::size_t tail_room = 300;
  std::int64_t listed = 0;
  std::string_view last;
  bool more = false;
  for (; it != entries.end() && it->first.compare(0, req.prefix.size(), req.prefix) == 0; ++it) {
    const StoredEntry& e = it->second;
    if (!visible(e)) continue;
    std::size_t item = e.list_head.size() + 1 + (e.expiry ? 32 : 0) + 1;
    if (listed == req.limit || reply_.size() + item + tail_room > max_message_bytes) {
      more = true;
      break;
    }
    if (listed > 0) reply_ += ',';
    reply_ += e.list_head;
    if (e.expiry) {
      reply_ += ",\"expires_ms\":";
      append_int(reply_, ms_until(*e.expiry, now));
    }
    reply_ += '}';
    last = e.name;
    ++listed;
  }
  reply_ += ']';
  if (more && listed > 0) {
    reply_ += ",\"cursor\":";
    append_json_string(reply_, last);
  }
  reply_ += '}';
  spdlog::debug("list '{}' by {}: {} entries", req.prefix, c.peer().label, listed);
  send_reply(c);
}

void Broker::do_stats(Connection& c, const Request& req) {
  if (!allowed(c, perm_stats, req, nullptr)) {
    send_error(c, req, EACCES, "stats not allowed");
    return;
  }
  count(req, 0);
  nlohmann::json requests = nlohmann::json::object();
  for (std::size_t op = 0; op <= op_count; ++op) {
    nlohmann::json outcomes = nlohmann::json::object();
    for (std::size_t err = 0; err < 256; ++err) {
      if (requests_[op][err] == 0) continue;
      outcomes[err == 0 ? "ok" : error_name(static_cast<int>(err))] = requests_[op][err];
    }
    if (!outcomes.empty())
      requests[op < op_count ? op_name(static_cast<Op>(op)) : "invalid"] = std::move(outcomes);
  }
  nlohmann::json body = {
      {"uptime_ms",
       std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - started_).count()},
      {"connections",
       {{"current", connections_.size()},
        {"total", connections_total_},
        {"dropped", connections_dropped_},
        {"limit", limits_.max_connections},
        {"limit_per_uid", limits_.max_connections_per_uid},
        {"refused_per_uid", connections_refused_per_uid_},
        {"refused_no_fds", connections_refused_no_fds_}}},
      {"entries", store_.size()},
      {"fds_held", store_.fds_held()},
      {"fds_limit", limits_.max_fds},
      {"requests", std::move(requests)},
  };
  begin_reply(req.id);
  reply_ += "\"ok\":true,";
  std::string text = body.dump();
  reply_.append(text, 1, std::string::npos);  // without its opening brace
  send_reply(c);
}

// ---------------------------------------------------------------- waiting

void Broker::park(Connection& c, const Request& req, std::chrono::milliseconds wait) {
  c.parked = std::make_unique<Request>(req);
  Connection* cp = &c;
  c.park_timer = loop_.add_timer(Clock::now() + wait, [this, cp] {
    cp->park_timer = 0;
    auto r = unpark(*cp);
    send_error(*cp, *r, ETIMEDOUT, "no entry named '" + r->name + "' appeared in time");
    if (!cp->closed) {
      if (cp->eof && !cp->has_queued()) {
        close_connection(*cp, "end of requests");
      } else {
        update_interest(*cp);
      }
    }
    reap();
  });
  waiters_[req.name].push_back(&c);
  update_interest(c);  // requests behind this one wait their turn in the socket
}

std::unique_ptr<Request> Broker::unpark(Connection& c) {
  if (!c.parked) return nullptr;
  if (c.park_timer != 0) loop_.cancel(c.park_timer);
  c.park_timer = 0;
  // The waiter is found by its request's name: deregister before the request
  // leaves the connection (a moved-from name would find nothing, leaving a
  // dangling waiter behind).
  auto it = waiters_.find(c.parked->name);
  if (it != waiters_.end()) {
    auto& list = it->second;
    list.erase(std::remove(list.begin(), list.end(), &c), list.end());
    if (list.empty()) waiters_.erase(it);
  }
  return std::move(c.parked);
}

void Broker::wake_waiters(const std::string& name) {
  auto it = waiters_.find(name);
  if (it == waiters_.end()) return;
  std::vector<Connection*> list = it->second;  // a copy: serving them edits waiters_
  for (Connection* c : list) {
    if (store_.find(name, Clock::now()) == nullptr) break;  // taken by an earlier waiter
    if (c->closed || !c->parked) continue;
    auto r = unpark(*c);
    do_get(*c, *r, false);
    if (c->closed) continue;
    if (c->eof && !c->has_queued()) {
      close_connection(*c, "end of requests");
      continue;
    }
    update_interest(*c);
    // Requests pipelined behind the parked one are read on the next wakeup
    // (level-triggered epoll reports the socket readable again).
  }
}

void Broker::refuse_waiting(Connection& c, const Request& req) {
  spdlog::debug("{} of '{}' by {} refused: {}", op_name(req.op), req.name, c.peer().label,
                farewell_);
  c.refusing = true;
  send_error(c, req, ESHUTDOWN, farewell_);
}

void Broker::wind_down(Connection& c) {
  c.winding_down = true;
  if (auto r = unpark(c)) refuse_waiting(c, *r);
  // The requests behind it (and any other the client already sent), up to a
  // bound: a client that floods the socket is not answered forever.
  for (int rounds = 0; rounds < 64 && !c.closed && read_requests(c, /*draining=*/true); ++rounds) {
  }
}

// ---------------------------------------------------------------- expiry

void Broker::drop_entry(StoredEntry&& e, const char* why) {
  if (why != nullptr)
    spdlog::info("entry '{}' generation {} removed: {}", e.name, e.generation, why);
  StoredEntry gone = std::move(e);  // its fds close here unless a queued reply still holds them
}

void Broker::schedule_expiry() {
  auto next = store_.next_expiry();
  if (!next || (expiry_timer_ != 0 && *next >= expiry_at_)) return;
  if (expiry_timer_ != 0) loop_.cancel(expiry_timer_);
  expiry_at_ = *next;
  expiry_timer_ = loop_.add_timer(*next, [this] {
    expiry_timer_ = 0;
    expiry_at_ = Clock::time_point::max();
    expire_entries();
  });
}

void Broker::expire_entries() {
  for (auto& e : store_.expire(Clock::now())) drop_entry(std::move(e), "expired");
  schedule_expiry();
}

// ---------------------------------------------------------------- shutdown

void Broker::shutdown(std::function<void()> done) {
  if (shutting_down_) return;
  if (listener_timer_ != 0) loop_.cancel(listener_timer_);
  listener_timer_ = 0;
  if (listener_.valid()) {
    // Our own socket dies with us, and with it any connection in its backlog:
    // take those in and serve them. (A socket from systemd outlives us; what
    // waits in its backlog is the next broker's.)
    if (!unlink_path_.empty()) {
      listener_paused_ = false;
      on_listener(EPOLLIN);
    }
    loop_.unwatch(listener_.get());
    listener_.reset();
  }
  if (!unlink_path_.empty()) ::unlink(unlink_path_.c_str());
  shutting_down_ = true;
  shutdown_done_ = std::move(done);
  farewell_ = "broker shutting down";
  std::vector<Connection*> all;
  for (auto& [fd, c] : connections_) all.push_back(c.get());
  for (Connection* c : all) {
    // Answer what the client sent before the shutdown began. After SHUT_RD the
    // kernel refuses the peer's further sends (EPIPE), so a request is either
    // in the socket now, and answered, or never sent: none arrives between the
    // drain and the close, where the close would reset the connection and lose
    // it unanswered (as at an upgrade's handover).
    ::shutdown(c->fd(), SHUT_RD);
    wind_down(*c);
    if (c->closed) continue;
    if (!c->has_queued()) {
      close_connection(*c, "shutting down");
    } else {
      update_interest(*c);
    }
  }
  reap();
  if (connections_.empty()) {
    if (shutdown_done_) {
      auto d = std::move(shutdown_done_);
      shutdown_done_ = nullptr;
      d();
    }
    return;
  }
  shutdown_timer_ = loop_.add_timer(
      Clock::now() + std::chrono::milliseconds(config_.limits.shutdown_timeout_ms), [this] {
        shutdown_timer_ = 0;
        std::vector<Connection*> left;
        for (auto& [fd, c] : connections_) left.push_back(c.get());
        spdlog::warn("shutdown: dropping {} clients with unread replies", left.size());
        for (Connection* c : left) close_connection(*c, "shutdown timeout");
        reap();
      });
}

}  // namespace fdbroker::daemon
