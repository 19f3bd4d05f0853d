// SPDX-License-Identifier: LGPL-2.1-or-later
// The Broker's connections: taking them in from the Acceptor, reading requests,
// dispatching them, writing replies and closing; start and reload.
#include "broker.hpp"

#include <fdbroker/scm_rights.hpp>

#include <linux/sockios.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <spdlog/spdlog.h>
#include <algorithm>
#include <cerrno>

#include "closer.hpp"
#include "json_text.hpp"

namespace fdbroker::daemon {

namespace {

// Requests handled per wakeup of one connection. One: epoll is level-triggered, so a
// connection with more requests queued is reported again at the next epoll_wait (and
// others get their turn in between). Reading on until EAGAIN would cost the usual
// request/reply client a second recvmsg per request that only says EAGAIN: about 10%
// of the broker's CPU per get (bench/broker/run.sh --syscalls: 1.9 recvmsg per get
// instead of 1).
constexpr int requests_per_wakeup = 1;
// Requests read per round while draining (shutdown, upgrade): what clients already sent.
constexpr int requests_per_drain_round = 32;

// Whether a record is still queued on `sock`, an empty one included. SIOCINQ counts
// bytes, so it misses empty records (with or without descriptors). With SO_PASSCRED
// the kernel hands credentials with every record it delivers, and none with the
// end of stream: a peek for them tells the two apart. SO_PASSCRED is off again at
// once (left on, a send could autobind the socket).
bool record_queued(int sock) {
  int queued = 0;
  if (::ioctl(sock, SIOCINQ, &queued) == 0 && queued > 0) return true;
  int on = 1;
  if (::setsockopt(sock, SOL_SOCKET, SO_PASSCRED, &on, sizeof on) != 0) return false;
  // Room for the credentials only: descriptors the peeked record carries are not
  // installed (MSG_CTRUNC), and no payload byte is copied (MSG_TRUNC).
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(ucred))];
  msghdr msg{};
  msg.msg_control = control;
  msg.msg_controllen = sizeof control;
  ssize_t got = ::recvmsg(sock, &msg, MSG_PEEK | MSG_DONTWAIT);
  int off = 0;
  ::setsockopt(sock, SOL_SOCKET, SO_PASSCRED, &off, sizeof off);
  return got >= 0 &&
         (CMSG_FIRSTHDR(&msg) != nullptr || (msg.msg_flags & (MSG_TRUNC | MSG_CTRUNC)) != 0);
}

// After a zero-length read: whether the peer has shut down its sending side with
// no record left to read (end of stream), rather than sent an empty record. An
// empty record followed only by the shutdown is indistinguishable from it, and
// taken for the end (docs/protocol.md).
bool peer_done_sending(int sock) {
  pollfd pfd{sock, POLLRDHUP, 0};
  if (::poll(&pfd, 1, 0) != 1 || (pfd.revents & (POLLRDHUP | POLLHUP | POLLERR)) == 0) return false;
  return !record_queued(sock);
}

// Whether any rule, of any kind, names units: then every decision needs the
// peer's unit (Broker::identify), else only hello, open and bind do.
bool names_units(const Config& config) {
  auto named = [](const auto& rules) {
    return std::any_of(rules.begin(), rules.end(),
                       [](const auto& r) { return !r.who.units.empty(); });
  };
  return named(config.rules) || named(config.files) || named(config.binds);
}

Acceptor::Limits acceptor_limits(const EffectiveLimits& limits) {
  return {limits.max_connections, limits.max_connections_per_uid};
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
      acceptor_(
          loop, std::move(listener), acceptor_limits(limits),
          [this](const ClientIdentity& peer) { return policy_.is_admin(peer); },
          [this](unique_fd sock, ClientIdentity peer) {
            return take_in(std::move(sock), std::move(peer));
          },
          counters_.connections),
      waiters_(loop, [this](ConnectionId id,
                            std::unique_ptr<Request> req) { on_wait_expired(id, std::move(req)); }),
      openers_(loop, WorkerPool::Options{}),
      buffer_(max_message_bytes + 1) {
  fds_.reserve(max_fds_per_message);
}

Broker::~Broker() {
  if (release_hook_ != 0) loop_.remove_turn_hook(release_hook_);
  for (auto id : {held_retry_timer_, expiry_timer_, closer_timer_, drain_.deadline_timer,
                  drain_.quiet_timer}) {
    if (id != 0) loop_.cancel(id);
  }
  for (auto& [id, c] : connections_) {
    if (c->stuck_timer != 0) loop_.cancel(c->stuck_timer);
    loop_.unwatch(c->fd());
  }
}

std::string Broker::status() const {
  return std::to_string(store_.size()) + " entries, " + std::to_string(store_.fds_held()) +
         " fds, " + std::to_string(connections_.size()) + " clients";
}

// ---------------------------------------------------------------- start, reload

namespace {

// The roots of the "files" rules, opened and checked (file_rules.hpp); the
// warnings are logged, a refused root is a problem.
Outcome<std::shared_ptr<const FilePolicy>> open_file_policy(const Config& config) {
  std::vector<std::string> warnings;
  auto files = FilePolicy::open(config.files, warnings);
  for (const auto& w : warnings) spdlog::warn("{}", w);
  return files;
}

// FilePolicy::open's one line per refused root, as one problem each.
std::vector<Failure> one_per_line(const Failure& failure) {
  std::vector<Failure> problems;
  std::size_t start = 0;
  while (start <= failure.why.size()) {
    std::size_t end = std::min(failure.why.find('\n', start), failure.why.size());
    problems.push_back({failure.err, failure.why.substr(start, end - start)});
    start = end + 1;
  }
  return problems;
}

}  // namespace

std::vector<Failure> Broker::start() {
  auto files = open_file_policy(config_);
  if (!files) return one_per_line(files.failure());
  std::vector<StoredEntry> entries;
  std::vector<Failure> problems = prepare_static(config_, entries);
  if (!problems.empty()) return problems;
  files_ = std::move(*files);
  binds_ = std::make_shared<const BindPolicy>(config_.binds);
  units_named_ = names_units(config_);
  for (const auto& e : entries) spdlog::info("static entry '{}': {}", e.name, e.fds_json);
  install_static(std::move(entries));
  if (auto failed = acceptor_.start()) problems.push_back(std::move(*failed));
  return problems;
}

std::vector<Failure> Broker::reload(const Config& config, EffectiveLimits limits) {
  auto files = open_file_policy(config);
  if (!files) return one_per_line(files.failure());
  std::vector<StoredEntry> entries;
  std::vector<Failure> problems = prepare_static(config, entries);
  if (!problems.empty()) return problems;
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
  files_ = std::move(*files);
  binds_ = std::make_shared<const BindPolicy>(config.binds);
  units_named_ = names_units(config);
  install_static(std::move(entries));
  acceptor_.set_limits(acceptor_limits(limits_));
  return problems;
}

// ---------------------------------------------------------------- connections

bool Broker::take_in(unique_fd sock, ClientIdentity peer) {
  ConnectionId id = next_connection_id_++;
  int fd = sock.get();
  auto conn = std::make_unique<Connection>(std::move(sock), std::move(peer), id);
  Connection* c = conn.get();
  if (auto ec = loop_.watch(fd, EPOLLIN, [this, c](std::uint32_t ev) { on_connection(*c, ev); })) {
    spdlog::error("watching a client: {}", ec.message());
    return false;
  }
  c->events = EPOLLIN;
  connections_.emplace(id, std::move(conn));
  spdlog::debug("client connected: {}", c->peer().label);
  return true;
}

const ClientIdentity& Broker::identify(Connection& c) {
  if (!c.unit_read) {
    c.unit_read = true;
    PeerUnit unit = resolve_peer_unit(c.fd(), c.peer().pid, pidfd_use_);
    ClientIdentity& peer = c.identity_to_complete();
    peer.unit = std::move(unit.unit);
    peer.cgroup = std::move(unit.cgroup);
    spdlog::debug("client {}: unit {}, cgroup '{}'{}{}", peer.label, peer.unit.value_or("(none)"),
                  peer.cgroup, unit.pidfd_error != 0 ? "; no pidfd: " : "",
                  unit.pidfd_error != 0 ? errno_name_or_eio(unit.pidfd_error) : "");
  }
  return c.peer();
}

Connection* Broker::find(ConnectionId id) const {
  auto it = connections_.find(id);
  return it == connections_.end() || it->second->closed ? nullptr : it->second.get();
}

void Broker::update_interest(Connection& c) {
  if (c.closed) return;
  bool want_in =
      !c.busy() && !c.eof && !drained(c) && c.queued() < config_.limits.max_queued_replies;
  if (want_in && closes_over_quota(c.peer().uid)) {
    // Too many of this uid's descriptors wait for the closer (a hanging file
    // system?): read none of its requests, each of which may carry 253 more,
    // until they drain. Checked again shortly; other uids are served meanwhile.
    want_in = false;
    if (closer_timer_ == 0) {
      closer_timer_ = loop_.add_timer(Clock::now() + std::chrono::milliseconds(100), [this] {
        closer_timer_ = 0;
        for (auto& [id, conn] : connections_) update_interest(*conn);
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
    Connection* cp = &c;  // the timer is cancelled when `c` closes
    c.stuck_timer = loop_.add_timer(
        Clock::now() + std::chrono::milliseconds(config_.limits.client_timeout_ms), [this, cp] {
          cp->stuck_timer = 0;
          spdlog::warn("dropping client {}: {} replies unread for {} ms", cp->peer().label,
                       cp->queued(), config_.limits.client_timeout_ms);
          ++counters_.connections.dropped;
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
  auto it = connections_.find(c.id());
  if (it != connections_.end()) {
    dying_.push_back(std::move(it->second));
    connections_.erase(it);
    acceptor_.release(c.peer().uid);
  }
  check_drained();
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
  if (!c.has_queued() && (c.eof || drained(c)) && !c.busy()) {
    close_connection(c, c.eof ? "end of requests" : "drained");
    return;
  }
  update_interest(c);
}

bool Broker::read_requests(Connection& c, bool draining) {
  const int bound = draining ? requests_per_drain_round : requests_per_wakeup;
  int handled = 0;
  for (; handled < bound; ++handled) {
    if (c.closed || c.busy() || c.eof || (drained(c) && !draining) ||
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
      close_connection(c, errno_name_or_eio(err));
      return false;
    }
    if (got->size == 0 && fds_.empty() && !got->payload_truncated && !got->fds_truncated &&
        peer_done_sending(c.fd())) {
      c.eof = true;  // the peer closed (or shut down) its sending side
      if (!c.has_queued() && !c.busy()) close_connection(c, "end of requests");
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
  std::optional<Failure> failure = parse_request(std::string_view(buffer_.data(), size), req);
  if (truncated_fds) {
    send_error(c, req, EMSGSIZE, "too many descriptors: the ancillary data was truncated");
    return;
  }
  if (failure) {
    send_error(c, req, failure->err, failure->why);
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
    // Behind a waiting request that was refused by a drain: in order, the same
    // answer (its descriptors, if a put, are closed by send_error).
    send_error(c, req, ESHUTDOWN, drain_.farewell);
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
    case Op::open:
      do_open(c, req);
      break;
    case Op::bind:
      do_bind(c, req);
      break;
  }
}

// ---------------------------------------------------------------- replies

void Broker::settle(Connection& c, ReplyWriter::Delivery d) {
  if (d.sent == Connection::Sent::queued) {
    note_queued(c);
  } else if (d.sent == Connection::Sent::failed) {
    close_connection(c, "send failed");
  }
}

void Broker::send_reply(Connection& c, const std::shared_ptr<const FdSet>& fds) {
  settle(c, replies_.send(c, fds));
}

void Broker::send_error(Connection& c, const Request& req, int err, std::string_view message) {
  // The descriptors of a refused request go to the closer before the reply
  // leaves: closed on its threads, a moment later (never on this one: closer.hpp).
  close_later(fds_, c.peer().uid);
  counters_.count(req, err);
  settle(c, replies_.send_error(c, req.id, err, message));
}

}  // namespace fdbroker::daemon
