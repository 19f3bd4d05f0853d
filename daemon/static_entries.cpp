// SPDX-License-Identifier: LGPL-2.1-or-later
#include "static_entries.hpp"

#include <fdbroker/error.hpp>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "os_failure.hpp"

namespace fdbroker::daemon {

namespace {

// Fills `addr` from "1.2.3.4:80" or "[::1]:80" (already validated by config).
socklen_t parse_inet(const std::string& address, sockaddr_storage& addr) {
  std::size_t colon = address.rfind(':');
  auto port = static_cast<std::uint16_t>(std::stoul(address.substr(colon + 1)));
  std::string host = address.substr(0, colon);
  std::memset(&addr, 0, sizeof addr);
  if (!host.empty() && host.front() == '[') {
    auto& in6 = reinterpret_cast<sockaddr_in6&>(addr);
    in6.sin6_family = AF_INET6;
    in6.sin6_port = htons(port);
    ::inet_pton(AF_INET6, host.substr(1, host.size() - 2).c_str(), &in6.sin6_addr);
    return sizeof in6;
  }
  auto& in = reinterpret_cast<sockaddr_in&>(addr);
  in.sin_family = AF_INET;
  in.sin_port = htons(port);
  ::inet_pton(AF_INET, host.c_str(), &in.sin_addr);
  return sizeof in;
}

int set_flag(int fd, int level, int option) {
  int one = 1;
  return ::setsockopt(fd, level, option, &one, sizeof one);
}

result<unique_fd> open_inet(const StaticEntry& e, std::string& ret_why) {
  sockaddr_storage addr{};
  socklen_t len = parse_inet(e.address, addr);
  bool tcp = e.kind == StaticKind::tcp;
  unique_fd fd(::socket(addr.ss_family, (tcp ? SOCK_STREAM : SOCK_DGRAM) | SOCK_CLOEXEC, 0));
  if (!fd.valid()) return os_failure(ret_why, "socket for " + e.address, errno);
  // Like systemd's sockets: rebinding a port with connections in TIME_WAIT must work.
  if (tcp && set_flag(fd.get(), SOL_SOCKET, SO_REUSEADDR) < 0)
    return os_failure(ret_why, "SO_REUSEADDR", errno);
  if (e.reuseport && set_flag(fd.get(), SOL_SOCKET, SO_REUSEPORT) < 0)
    return os_failure(ret_why, "SO_REUSEPORT", errno);
  if (addr.ss_family == AF_INET6) {
    int v6only = e.v6only ? 1 : 0;
    if (::setsockopt(fd.get(), IPPROTO_IPV6, IPV6_V6ONLY, &v6only, sizeof v6only) < 0) {
      return os_failure(ret_why, "IPV6_V6ONLY", errno);
    }
  }
  if (::bind(fd.get(), reinterpret_cast<sockaddr*>(&addr), len) < 0) {
    return os_failure(ret_why, "bind " + e.address, errno);
  }
  if (tcp && ::listen(fd.get(), e.backlog) < 0)
    return os_failure(ret_why, "listen " + e.address, errno);
  return fd;
}

result<unique_fd> open_unix(const StaticEntry& e, std::string& ret_why) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::memcpy(addr.sun_path, e.path.data(), e.path.size());  // length checked by config
  unique_fd fd(::socket(AF_UNIX, e.socket_type | SOCK_CLOEXEC, 0));
  if (!fd.valid()) return os_failure(ret_why, "socket for " + e.path, errno);
  struct stat st {};
  if (::lstat(e.path.c_str(), &st) == 0) {
    if (!S_ISSOCK(st.st_mode))
      return os_failure(ret_why, "'" + e.path + "' exists and is not a socket", EEXIST);
    ::unlink(e.path.c_str());  // a leftover from a previous run
  }
  // The umask decides the socket file's initial mode: set it so that the file
  // never exists with a wider mode than configured, even for an instant.
  mode_t old = ::umask(static_cast<mode_t>(~e.mode & 0777));
  int r = ::bind(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr);
  int err = errno;
  ::umask(old);
  if (r < 0) return os_failure(ret_why, "bind '" + e.path + "'", err);
  if (::chmod(e.path.c_str(), e.mode) < 0)
    return os_failure(ret_why, "chmod '" + e.path + "'", errno);
  if ((e.owner || e.group) && ::lchown(e.path.c_str(), e.owner ? *e.owner : static_cast<uid_t>(-1),
                                       e.group ? *e.group : static_cast<gid_t>(-1)) < 0) {
    return os_failure(ret_why, "chown '" + e.path + "'", errno);
  }
  if (::listen(fd.get(), e.backlog) < 0)
    return os_failure(ret_why, "listen '" + e.path + "'", errno);
  return fd;
}

}  // namespace

result<unique_fd> open_static_entry(const StaticEntry& e, std::string& ret_why) {
  switch (e.kind) {
    case StaticKind::file: {
      unique_fd fd(::open(e.path.c_str(), e.open_flags | O_CLOEXEC, e.mode));
      if (!fd.valid()) return os_failure(ret_why, "open '" + e.path + "'", errno);
      return fd;
    }
    case StaticKind::tcp:
    case StaticKind::udp:
      return open_inet(e, ret_why);
    case StaticKind::unix_socket:
      return open_unix(e, ret_why);
  }
  return os_failure(ret_why, "unknown entry type", EINVAL);
}

}  // namespace fdbroker::daemon
