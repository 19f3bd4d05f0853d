// SPDX-License-Identifier: LGPL-2.1-or-later
#include "fd_sources.hpp"

#include <fdbroker/error.hpp>
#include <fdbroker/listen_url.hpp>

#include <fcntl.h>
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

// A malformed URL is a usage error (exit 100), not a system one.
fdbroker::SocketUrl parse_url(const std::string& url) {
  try {
    return fdbroker::parse_socket_url(url);
  } catch (const std::system_error& e) {
    throw UsageError("--listen " + url + ": " + e.what());
  }
}

}  // namespace

fdbroker::unique_fd listen_on(const std::string& url) {
  // udp:// and udp6:// are bound as datagram sockets (no listen()).
  fdbroker::SocketUrl parsed = parse_url(url);
  fdbroker::BindOptions options;
  options.socket_type = parsed.socket_type;
  auto sock = fdbroker::try_bind_listener(parsed.url, options);
  if (!sock.ok()) fdbroker::throw_errno(sock.error().value(), "cannot listen on " + url);
  return std::move(sock).value();
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
