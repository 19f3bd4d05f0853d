// SPDX-License-Identifier: LGPL-2.1-or-later
#include <fdbroker/client.hpp>

#include <fdbroker/error.hpp>
#include <fdbroker/scm_rights.hpp>

#include "client_protocol.hpp"

#include <poll.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <utility>

namespace fdbroker {

std::string socket_path_from_env() {
  const char* env = std::getenv("FDBROKER_SOCKET");
  return env != nullptr && *env != '\0' ? std::string(env) : std::string(default_socket_path);
}

BrokerError::BrokerError(int err, std::string error_name, std::string message)
    : std::system_error(err, std::system_category(), message),
      error_name_(std::move(error_name)),
      message_(std::move(message)) {}

struct Client::Reply {
  std::string payload;
  std::vector<unique_fd> fds;  // whatever came with the reply; closed unless moved out
};

namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

// Beyond this a deadline means nothing (and now + it could overflow the clock):
// 2^40 ms is about 35 years.
constexpr milliseconds unbounded{std::int64_t{1} << 40};

// How long the broker gives the new broker to get ready (docs/protocol.md,
// `upgrade`; fdbrokerd's upgrade_timeout): waiting on purpose, like wait_ms, so it
// is added to the client's timeout.
constexpr milliseconds upgrade_ready_wait{10000};

// now + timeout + extra, or none if that is beyond `unbounded`.
std::optional<Clock::time_point> deadline_after(milliseconds timeout, milliseconds extra) {
  extra = std::max(extra, milliseconds(0));
  if (timeout >= unbounded || extra >= unbounded - timeout) return std::nullopt;
  return Clock::now() + timeout + extra;
}

// Time left until `deadline`, rounded up to whole milliseconds so that a wait of it
// never wakes up just before the deadline and spins; 0 once it passed.
std::optional<milliseconds> time_left(const std::optional<Clock::time_point>& deadline) {
  if (!deadline) return std::nullopt;
  auto left = *deadline - Clock::now();
  if (left <= Clock::duration::zero()) return milliseconds(0);
  return std::chrono::ceil<milliseconds>(left);
}

// One poll() for `events`; false if it timed out or a signal interrupted it (the
// caller recomputes the time left and polls again).
bool poll_once(int sock, short events, std::optional<milliseconds> left) {
  int ms = left ? static_cast<int>(std::min<std::int64_t>(left->count(), INT_MAX)) : -1;
  pollfd watched{sock, events, 0};
  int ready = ::poll(&watched, 1, ms);
  if (ready < 0 && errno != EINTR) throw_errno(errno, "poll on the fdbroker connection");
  return ready > 0;  // POLLHUP/POLLERR too: the send or receive that follows reports them
}

// SO_SNDTIMEO, which also bounds how long connect() to a UNIX socket waits for room
// in the listener's backlog (0: no limit).
void set_send_timeout(int sock, milliseconds timeout) {
  timeval tv{};
  tv.tv_sec = static_cast<time_t>(timeout.count() / 1000);
  tv.tv_usec = static_cast<suseconds_t>((timeout.count() % 1000) * 1000);
  if (::setsockopt(sock, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv) < 0) {
    throw_errno(errno, "setsockopt(SO_SNDTIMEO)");
  }
}

std::string describe(milliseconds timeout) { return std::to_string(timeout.count()) + " ms"; }

}  // namespace

Client::Client(const std::string& path) { connect(path); }

Client::Client(const std::string& path, std::optional<std::chrono::milliseconds> timeout) {
  set_timeout(timeout);
  connect(path);
}

void Client::set_timeout(std::optional<std::chrono::milliseconds> timeout) {
  if (timeout && timeout->count() <= 0) {
    throw std::invalid_argument("fdbroker client timeout must be > 0 ms, got " +
                                std::to_string(timeout->count()));
  }
  timeout_ = timeout;
}

void Client::connect(const std::string& path) {
  sock_.reset();
  std::string target = path.empty() ? socket_path_from_env() : path;
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  // "@name" is the conventional spelling of an abstract socket (as in ss(8)).
  bool abstract = !target.empty() && target[0] == '@';
  if (target.size() >= sizeof(addr.sun_path)) {
    throw_errno(ENAMETOOLONG, "fdbroker socket path too long: '" + target + "'");
  }
  std::memcpy(addr.sun_path, target.data(), target.size());
  if (abstract) addr.sun_path[0] = '\0';
  auto len =
      static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + target.size() + (abstract ? 0 : 1));

  unique_fd sock(::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0));
  if (!sock.valid()) throw_errno(errno, "socket(AF_UNIX, SOCK_SEQPACKET)");
  // A blocking connect() to a UNIX socket waits while the listener's backlog is
  // full, which is forever for a stopped broker: SO_SNDTIMEO bounds that wait
  // (it then fails with EAGAIN), reset to the time left after each EINTR.
  Deadline deadline = timeout_ ? deadline_after(*timeout_, milliseconds(0)) : std::nullopt;
  for (;;) {
    if (deadline) {
      auto left = time_left(deadline);
      if (left->count() == 0) {
        throw_errno(ETIMEDOUT, "connect to fdbroker at '" + target +
                                   "': its backlog stayed full for " + describe(*timeout_));
      }
      set_send_timeout(sock.get(), *left);
    }
    if (::connect(sock.get(), reinterpret_cast<const sockaddr*>(&addr), len) == 0) break;
    if (errno == EINTR || (errno == EAGAIN && deadline)) continue;
    throw_errno(errno, "connect to fdbroker at '" + target + "'");
  }
  // Requests are bounded by poll() against their own deadline, not by SO_SNDTIMEO.
  if (deadline) set_send_timeout(sock.get(), milliseconds(0));
  sock_ = std::move(sock);
}

namespace {

// A reply as received, checked for what protocol v1 allows.
received_message checked_reply(received_message message) {
  if (message.empty()) throw_errno(ECONNRESET, "fdbroker closed the connection");
  if (message.payload_truncated || message.payload.size() > detail::max_message_size) {
    throw_errno(EPROTO, "fdbroker reply larger than 64 KiB");
  }
  return message;
}

}  // namespace

Client::Reply Client::call(const std::string& request, const std::vector<int>& fds,
                           std::chrono::milliseconds server_wait) {
  if (!sock_.valid()) throw_errno(ENOTCONN, "fdbroker client is not connected");
  if (request.size() > detail::max_message_size) {
    throw_errno(EMSGSIZE, "fdbroker request larger than 64 KiB");
  }
  if (timeout_ || io_waiter_) {
    Deadline deadline = timeout_ ? deadline_after(*timeout_, server_wait) : std::nullopt;
    server_wait_ = server_wait;  // for timed_out()'s message
    send_request(request, fds, deadline);
    return receive_reply(deadline);
  }
  // No timeout and no IoWaiter: plain blocking calls, the fastest path.
  sendfds(sock_.get(), request, fds);
  if (reply_waiter_) {
    try {
      reply_waiter_(sock_.get());
    } catch (...) {
      sock_.reset();
      throw;
    }
  }
  // One byte more than the limit, so that an oversized reply shows as truncation.
  received_message message = checked_reply(recvfds(sock_.get(), detail::max_message_size + 1));
  return Reply{std::move(message.payload), std::move(message.fds)};
}

void Client::send_request(const std::string& request, const std::vector<int>& fds,
                          const Deadline& deadline) {
  // A SOCK_SEQPACKET send is all or nothing: EAGAIN means nothing went, because the
  // broker has not read enough of what this connection sent before.
  for (;;) {
    auto sent = try_sendfds(sock_.get(), request.data(), request.size(), fds.data(), fds.size(),
                            io_flags::dontwait);
    if (sent) return;
    if (sent.error().value() != EAGAIN) throw std::system_error(sent.error(), "send to fdbroker");
    if (!wait_ready(POLLOUT, deadline)) timed_out("take the request");
  }
}

Client::Reply Client::receive_reply(const Deadline& deadline) {
  for (;;) {
    if (!wait_ready(POLLIN, deadline)) timed_out("answer");
    if (reply_waiter_) {
      try {
        reply_waiter_(sock_.get());  // the socket is readable: it returns at once
      } catch (...) {
        sock_.reset();
        throw;
      }
    }
    auto received = try_recvfds(sock_.get(), detail::max_message_size + 1, max_fds_per_message,
                                io_flags::dontwait);
    if (received) {
      received_message message = checked_reply(std::move(*received));
      return Reply{std::move(message.payload), std::move(message.fds)};
    }
    if (received.error().value() != EAGAIN) {
      throw std::system_error(received.error(), "receive from fdbroker");
    }
  }
}

bool Client::wait_ready(short events, const Deadline& deadline) {
  for (;;) {
    auto left = time_left(deadline);
    if (left && left->count() == 0) return false;
    bool ready = false;
    if (io_waiter_) {
      try {
        ready = io_waiter_(sock_.get(), events, left);
      } catch (...) {
        sock_.reset();  // the reply still due could not be told from the next one
        throw;
      }
    } else {
      ready = poll_once(sock_.get(), events, left);
    }
    if (ready) return true;
  }
}

void Client::timed_out(const char* waiting_for) {
  // A reply that arrives after this would be read as the answer to the next request.
  sock_.reset();
  std::string limit = timeout_ ? describe(*timeout_) : std::string("?");
  if (server_wait_.count() > 0) limit += " plus the request's wait of " + describe(server_wait_);
  throw std::system_error(
      ETIMEDOUT, std::system_category(),
      std::string("fdbroker did not ") + waiting_for + " within the client's timeout of " + limit);
}

Hello Client::hello() {
  std::int64_t id = next_id_++;
  return detail::parse_hello_reply(call(detail::simple_request("hello", id)).payload, id);
}

namespace {

// A get/take reply: the description plus exactly one received fd per description.
Entry to_entry(EntryInfo info, std::vector<unique_fd> fds) {
  if (fds.size() != info.fd_descriptions.size()) {
    // `fds` are closed on the way out: nothing received is leaked.
    throw_errno(EPROTO, "fdbroker sent " + std::to_string(fds.size()) + " fds for an entry of " +
                            std::to_string(info.fd_descriptions.size()));
  }
  Entry entry;
  static_cast<EntryInfo&>(entry) = std::move(info);
  entry.fds = std::move(fds);
  return entry;
}

}  // namespace

Entry Client::get(std::string_view name, std::optional<std::int64_t> wait_ms) {
  std::int64_t id = next_id_++;
  Reply reply = call(detail::name_request("get", id, name, wait_ms), {},
                     std::chrono::milliseconds(wait_ms.value_or(0)));
  return to_entry(detail::parse_entry_reply(reply.payload, id), std::move(reply.fds));
}

Entry Client::take(std::string_view name, std::optional<std::int64_t> wait_ms) {
  std::int64_t id = next_id_++;
  Reply reply = call(detail::name_request("take", id, name, wait_ms), {},
                     std::chrono::milliseconds(wait_ms.value_or(0)));
  return to_entry(detail::parse_entry_reply(reply.payload, id), std::move(reply.fds));
}

std::optional<Entry> Client::try_get(std::string_view name) {
  try {
    return get(name);
  } catch (const BrokerError& e) {
    if (e.code().value() == ENOENT) return std::nullopt;
    throw;
  }
}

std::optional<Entry> Client::try_take(std::string_view name) {
  try {
    return take(name);
  } catch (const BrokerError& e) {
    if (e.code().value() == ENOENT) return std::nullopt;
    throw;
  }
}

std::uint64_t Client::put(std::string_view name, const std::vector<int>& fds,
                          const PutOptions& options) {
  if (fds.empty() || fds.size() > max_fds_per_message) {
    throw std::invalid_argument("put needs 1 to 253 descriptors, got " +
                                std::to_string(fds.size()));
  }
  std::int64_t id = next_id_++;
  return detail::parse_put_reply(call(detail::put_request(id, name, options), fds).payload, id);
}

void Client::remove(std::string_view name) {
  std::int64_t id = next_id_++;
  detail::parse_empty_reply(call(detail::name_request("delete", id, name)).payload, id);
}

ListPage Client::list_page(std::string_view prefix, unsigned limit,
                           const std::optional<std::string>& cursor) {
  std::int64_t id = next_id_++;
  return detail::parse_list_reply(call(detail::list_request(id, prefix, limit, cursor)).payload,
                                  id);
}

std::vector<EntryInfo> Client::list(std::string_view prefix, unsigned page_size) {
  std::vector<EntryInfo> all;
  std::optional<std::string> cursor;
  do {
    ListPage page = list_page(prefix, page_size, cursor);
    // A page may be empty (the broker skipped entries this client may not see), but
    // a cursor that does not move would loop forever: that is a broker bug.
    if (page.cursor && page.cursor == cursor) {
      throw_errno(EPROTO, "fdbroker list returned the same cursor again");
    }
    for (auto& e : page.entries) all.push_back(std::move(e));
    cursor = std::move(page.cursor);
  } while (cursor);
  return all;
}

Stats Client::stats() {
  std::int64_t id = next_id_++;
  return detail::parse_stats_reply(call(detail::simple_request("stats", id)).payload, id);
}

namespace {

// The one descriptor an open or bind reply must come with; EPROTO (closing what
// came) otherwise.
unique_fd single_fd(std::vector<unique_fd> fds, const char* op) {
  if (fds.size() != 1) {
    throw_errno(EPROTO, std::string("fdbroker sent ") + std::to_string(fds.size()) +
                            " fds for an " + op + ", not 1");
  }
  return std::move(fds.front());
}

}  // namespace

Opened Client::open(std::string_view path, const OpenFlags& flags, std::optional<unsigned> mode) {
  std::int64_t id = next_id_++;
  Reply reply = call(detail::open_request(id, path, flags, mode));
  Opened opened = detail::parse_open_reply(reply.payload, id);
  opened.fd = single_fd(std::move(reply.fds), "open");
  return opened;
}

Bound Client::bind(std::string_view url, const BrokerBindOptions& options) {
  std::int64_t id = next_id_++;
  Reply reply = call(detail::bind_request(id, url, options));
  Bound bound = detail::parse_bind_reply(reply.payload, id, url);
  bound.fd = single_fd(std::move(reply.fds), "bind");
  return bound;
}

std::int64_t Client::upgrade(std::string_view binary) {
  std::int64_t id = next_id_++;
  return detail::parse_upgrade_reply(
      call(detail::upgrade_request(id, binary), {}, upgrade_ready_wait).payload, id);
}

}  // namespace fdbroker
