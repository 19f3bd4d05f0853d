// SPDX-License-Identifier: LGPL-2.1-or-later
#include "static_entries.hpp"

#include <fdbroker/listen_url.hpp>

#include <fcntl.h>
#include <sys/socket.h>

#include <cerrno>

namespace fdbroker::daemon {

namespace {

// The failure of try_bind_listener for `what`, with a word on the two refusals
// an operator must act on.
Failure bind_failure(const std::string& what, int err) {
  if (err == EADDRINUSE) return os_failure(what + ": another socket is bound there", err);
  if (err == EEXIST) return os_failure(what + ": the file there is not a socket", err);
  return os_failure(what, err);
}

Outcome<unique_fd> open_inet(const StaticEntry& e) {
  // The address is "IPv4:PORT" or "[IPv6]:PORT", checked by config with the same parser.
  auto url = try_parse_listen_url("tcp://" + e.address);
  if (!url) return os_failure("address '" + e.address + "'", url.error().value());
  url->v6only = e.v6only;
  BindOptions options;
  options.socket_type = e.kind == StaticKind::tcp ? SOCK_STREAM : SOCK_DGRAM;
  options.backlog = e.backlog;
  options.reuse_port = e.reuseport;
  auto sock = try_bind_listener(*url, options);
  if (!sock) return bind_failure("bind " + e.address, sock.error().value());
  return std::move(*sock);
}

Outcome<unique_fd> open_unix(const StaticEntry& e) {
  auto url = try_unix_listen_url(e.path);
  if (!url) return os_failure("socket path '" + e.path + "'", ENAMETOOLONG);
  BindOptions options;
  options.socket_type = e.socket_type;
  options.backlog = e.backlog;
  options.unix_mode = e.mode;
  // The file never exists with a wider mode than configured, even for an instant.
  options.bind_umask = static_cast<mode_t>(~e.mode & 0777);
  if (e.owner) options.unix_owner = *e.owner;
  if (e.group) options.unix_group = *e.group;
  auto sock = try_bind_listener(*url, options);
  if (!sock) return bind_failure("bind '" + e.path + "'", sock.error().value());
  return std::move(*sock);
}

}  // namespace

Outcome<unique_fd> open_static_entry(const StaticEntry& e) {
  switch (e.kind) {
    case StaticKind::file: {
      unique_fd fd(::open(e.path.c_str(), e.open_flags | O_CLOEXEC, e.mode));
      if (!fd.valid()) return os_failure("open '" + e.path + "'", errno);
      return fd;
    }
    case StaticKind::tcp:
    case StaticKind::udp:
      return open_inet(e);
    case StaticKind::unix_socket:
      return open_unix(e);
  }
  return os_failure("unknown entry type", EINVAL);
}

}  // namespace fdbroker::daemon
