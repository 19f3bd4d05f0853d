// SPDX-License-Identifier: LGPL-2.1-or-later
#include "fd_sources.hpp"

#include <fdbroker/error.hpp>

#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string_view>

namespace fdbrokerctl {

namespace {

fdbroker::unique_fd open_file(const FdSource& s) {
  int flags = O_CLOEXEC | O_NOCTTY;
  // "w" appends so that several writers sharing the broker's file (a log) never
  // overwrite each other; neither mode truncates what is there.
  if (s.mode == "r") flags |= O_RDONLY;
  if (s.mode == "w") flags |= O_WRONLY | O_APPEND | O_CREAT;
  if (s.mode == "rw") flags |= O_RDWR | O_CREAT;
  fdbroker::unique_fd fd(::open(s.path.c_str(), flags, 0666));
  if (!fd.valid()) fdbroker::throw_errno(errno, "open '" + s.path + "'");
  return fd;
}

void check_inherited(int fd) {
  if (::fcntl(fd, F_GETFD) < 0) {
    throw UsageError("--fd " + std::to_string(fd) + ": not an open descriptor");
  }
}

fdbroker::unique_fd bind_unix(const std::string& url, std::string_view path) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.empty() || path.size() >= sizeof(addr.sun_path)) {
    throw UsageError("--listen " + url + ": bad UNIX socket path");
  }
  bool abstract = path[0] == '@';
  std::memcpy(addr.sun_path, path.data(), path.size());
  if (abstract) addr.sun_path[0] = '\0';
  auto len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + path.size() + (abstract ? 0 : 1));
  fdbroker::unique_fd sock(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!sock.valid()) fdbroker::throw_errno(errno, "socket(AF_UNIX)");
  if (::bind(sock.get(), reinterpret_cast<const sockaddr*>(&addr), len) < 0) {
    fdbroker::throw_errno(errno, "bind " + url);
  }
  if (::listen(sock.get(), SOMAXCONN) < 0) fdbroker::throw_errno(errno, "listen " + url);
  return sock;
}

fdbroker::unique_fd bind_inet(const std::string& url, std::string_view scheme, std::string_view rest) {
  bool stream = scheme == "tcp" || scheme == "tcp6";
  bool want_v6 = scheme == "tcp6" || scheme == "udp6";
  // HOST:PORT, with IPv6 addresses in brackets: [::1]:443.
  std::string host, port;
  if (!rest.empty() && rest[0] == '[') {
    auto close = rest.find(']');
    if (close == std::string_view::npos || close + 1 >= rest.size() || rest[close + 1] != ':') {
      throw UsageError("--listen " + url + ": expected [ADDRESS]:PORT");
    }
    host = std::string(rest.substr(1, close - 1));
    port = std::string(rest.substr(close + 2));
    want_v6 = true;
  } else {
    auto colon = rest.rfind(':');
    if (colon == std::string_view::npos) throw UsageError("--listen " + url + ": expected HOST:PORT");
    host = std::string(rest.substr(0, colon));
    port = std::string(rest.substr(colon + 1));
  }
  if (port.empty()) throw UsageError("--listen " + url + ": no port");

  addrinfo hints{};
  hints.ai_family = want_v6 ? AF_INET6 : (host.empty() ? AF_INET : AF_UNSPEC);
  hints.ai_socktype = stream ? SOCK_STREAM : SOCK_DGRAM;
  hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
  addrinfo* found = nullptr;
  int r = ::getaddrinfo(host.empty() ? nullptr : host.c_str(), port.c_str(), &hints, &found);
  if (r != 0) {
    if (r == EAI_SYSTEM) fdbroker::throw_errno(errno, "resolve " + url);
    throw UsageError("--listen " + url + ": " + ::gai_strerror(r));
  }
  // Bind the first address only: one URL, one socket.
  int family = found->ai_family;
  sockaddr_storage addr{};
  auto addrlen = found->ai_addrlen;
  std::memcpy(&addr, found->ai_addr, addrlen);
  ::freeaddrinfo(found);

  fdbroker::unique_fd sock(::socket(family, (stream ? SOCK_STREAM : SOCK_DGRAM) | SOCK_CLOEXEC, 0));
  if (!sock.valid()) fdbroker::throw_errno(errno, "socket for " + url);
  int one = 1;
  // A restarted server must be able to bind again while old connections linger in
  // TIME_WAIT: the usual choice for listening sockets.
  if (stream && ::setsockopt(sock.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0) {
    fdbroker::throw_errno(errno, "SO_REUSEADDR for " + url);
  }
  if (::bind(sock.get(), reinterpret_cast<const sockaddr*>(&addr), addrlen) < 0) {
    fdbroker::throw_errno(errno, "bind " + url);
  }
  if (stream && ::listen(sock.get(), SOMAXCONN) < 0) fdbroker::throw_errno(errno, "listen " + url);
  return sock;
}

}  // namespace

fdbroker::unique_fd listen_on(const std::string& url) {
  std::string_view u(url);
  if (u.rfind("unix:", 0) == 0) return bind_unix(url, u.substr(5));
  auto sep = u.find("://");
  if (sep == std::string_view::npos) throw UsageError("--listen " + url + ": expected SCHEME://...");
  std::string_view scheme = u.substr(0, sep);
  if (scheme != "tcp" && scheme != "tcp6" && scheme != "udp" && scheme != "udp6") {
    throw UsageError("--listen " + url + ": scheme must be tcp, tcp6, udp, udp6 or unix:");
  }
  return bind_inet(url, scheme, u.substr(sep + 3));
}

PreparedFds prepare_fds(const std::vector<FdSource>& sources) {
  PreparedFds out;
  for (const auto& s : sources) {
    switch (s.kind) {
      case FdSource::Kind::inherited:
        check_inherited(s.fd);
        out.fds.push_back(s.fd);
        break;
      case FdSource::Kind::file:
        out.owned.push_back(open_file(s));
        out.fds.push_back(out.owned.back().get());
        break;
      case FdSource::Kind::listen:
        out.owned.push_back(listen_on(s.url));
        out.fds.push_back(out.owned.back().get());
        break;
    }
  }
  return out;
}

}  // namespace fdbrokerctl
