// SPDX-License-Identifier: LGPL-2.1-or-later
#include "listener.hpp"

#include <fdbroker/error.hpp>

#include <fcntl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "os_failure.hpp"

namespace fdbroker::daemon {

namespace {

void make_parents(const std::string& path) {
  for (std::size_t slash = path.find('/', 1); slash != std::string::npos;
       slash = path.find('/', slash + 1)) {
    // EEXIST and the like are fine; a real problem shows up at bind().
    ::mkdir(path.substr(0, slash).c_str(), 0755);
  }
}

}  // namespace

result<unique_fd> bind_listener(const std::string& path, mode_t mode, std::optional<gid_t> group,
                                std::string& ret_why) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.empty() || path.size() >= sizeof addr.sun_path) {
    return os_failure(ret_why, "socket path '" + path + "'", ENAMETOOLONG);
  }
  std::memcpy(addr.sun_path, path.data(), path.size());

  unique_fd sock(::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  if (!sock.valid()) return os_failure(ret_why, "socket", errno);

  struct stat st {};
  if (::lstat(path.c_str(), &st) == 0) {
    if (!S_ISSOCK(st.st_mode))
      return os_failure(ret_why, "'" + path + "' exists and is not a socket", EEXIST);
    // Is a broker alive behind it? Connecting tells; a refused connect means stale.
    unique_fd probe(::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0));
    if (probe.valid() &&
        ::connect(probe.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0) {
      return os_failure(ret_why, "'" + path + "': another process is listening there", EADDRINUSE);
    }
    ::unlink(path.c_str());
  } else {
    make_parents(path);
  }

  mode_t old = ::umask(static_cast<mode_t>(~mode & 0777));
  int r = ::bind(sock.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr);
  int err = errno;
  ::umask(old);
  if (r < 0) return os_failure(ret_why, "bind '" + path + "'", err);
  if (::chmod(path.c_str(), mode) < 0) return os_failure(ret_why, "chmod '" + path + "'", errno);
  if (group && ::lchown(path.c_str(), static_cast<uid_t>(-1), *group) < 0) {
    return os_failure(ret_why, "chown '" + path + "'", errno);
  }
  if (::listen(sock.get(), SOMAXCONN) < 0)
    return os_failure(ret_why, "listen '" + path + "'", errno);
  return sock;
}

}  // namespace fdbroker::daemon
