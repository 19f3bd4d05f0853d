// SPDX-License-Identifier: LGPL-2.1-or-later
#include "fd_sources.hpp"

#include <fdbroker/error.hpp>
#include <fdbroker/listen_url.hpp>

#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string_view>
#include <system_error>

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

// A UDP socket bound to the address of a udp:// URL. The address syntax is the
// listen URL's (lib/listen_url.hpp), so it is parsed as the tcp:// twin.
fdbroker::unique_fd bind_udp(const std::string& url, const fdbroker::ListenUrl& address) {
  fdbroker::unique_fd sock(::socket(address.family, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  if (!sock.valid()) fdbroker::throw_errno(errno, "socket for " + url);
  if (address.family == AF_INET6) {
    int v6only = address.v6only ? 1 : 0;
    if (::setsockopt(sock.get(), IPPROTO_IPV6, IPV6_V6ONLY, &v6only, sizeof v6only) < 0) {
      fdbroker::throw_errno(errno, "IPV6_V6ONLY for " + url);
    }
  }
  if (::bind(sock.get(), reinterpret_cast<const sockaddr*>(&address.address),
             address.address_length) < 0) {
    fdbroker::throw_errno(errno, "bind " + url);
  }
  return sock;
}

// A malformed URL is a usage error (exit 100), not a system one.
fdbroker::ListenUrl parse_url(const std::string& url, const std::string& as) {
  try {
    return fdbroker::parse_listen_url(as);
  } catch (const std::system_error& e) {
    throw UsageError("--listen " + url + ": " + e.what());
  }
}

}  // namespace

fdbroker::unique_fd listen_on(const std::string& url) {
  std::string_view u(url);
  for (std::string_view scheme : {"udp://", "udp6://"}) {
    if (u.rfind(scheme, 0) == 0) {
      std::string as = (scheme == "udp://" ? "tcp://" : "tcp6://") + url.substr(scheme.size());
      return bind_udp(url, parse_url(url, as));
    }
  }
  return fdbroker::bind_listener(parse_url(url, url));
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
