// SPDX-License-Identifier: LGPL-2.1-or-later
#include <fdbroker/client.hpp>

#include <fdbroker/error.hpp>
#include <fdbroker/scm_rights.hpp>

#include "client_protocol.hpp"

#include <sys/socket.h>
#include <sys/un.h>

#include <cerrno>
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

Client::Client(const std::string& path) { connect(path); }

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
  auto len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + target.size() +
                                    (abstract ? 0 : 1));

  unique_fd sock(::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0));
  if (!sock.valid()) throw_errno(errno, "socket(AF_UNIX, SOCK_SEQPACKET)");
  int r;
  do {
    r = ::connect(sock.get(), reinterpret_cast<const sockaddr*>(&addr), len);
  } while (r < 0 && errno == EINTR);
  if (r < 0) throw_errno(errno, "connect to fdbroker at '" + target + "'");
  sock_ = std::move(sock);
}

Client::Reply Client::call(const std::string& request, const std::vector<int>& fds) {
  if (!sock_.valid()) throw_errno(ENOTCONN, "fdbroker client is not connected");
  if (request.size() > detail::max_message_size) {
    throw_errno(EMSGSIZE, "fdbroker request larger than 64 KiB");
  }
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
  received_message message = recvfds(sock_.get(), detail::max_message_size + 1);
  if (message.empty()) throw_errno(ECONNRESET, "fdbroker closed the connection");
  if (message.payload_truncated || message.payload.size() > detail::max_message_size) {
    throw_errno(EPROTO, "fdbroker reply larger than 64 KiB");
  }
  return Reply{std::move(message.payload), std::move(message.fds)};
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
  Reply reply = call(detail::name_request("get", id, name, wait_ms));
  return to_entry(detail::parse_entry_reply(reply.payload, id), std::move(reply.fds));
}

Entry Client::take(std::string_view name, std::optional<std::int64_t> wait_ms) {
  std::int64_t id = next_id_++;
  Reply reply = call(detail::name_request("take", id, name, wait_ms));
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
    throw std::invalid_argument("put needs 1 to 253 descriptors, got " + std::to_string(fds.size()));
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

}  // namespace fdbroker
