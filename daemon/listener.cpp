// SPDX-License-Identifier: LGPL-2.1-or-later
#include "listener.hpp"

#include <fdbroker/listen_url.hpp>

#include <sys/socket.h>

#include <cerrno>

namespace fdbroker::daemon {

Outcome<unique_fd> open_broker_socket(const std::string& path, mode_t mode,
                                      std::optional<gid_t> group) {
  const std::string what = "broker socket '" + path + "'";
  auto url = try_unix_listen_url(path);
  if (!url) return os_failure(what, ENAMETOOLONG);  // empty or longer than sun_path
  BindOptions options;
  options.socket_type = SOCK_SEQPACKET;
  options.nonblocking = true;
  options.backlog = SOMAXCONN;
  options.unix_mode = mode;
  options.bind_umask = static_cast<mode_t>(~mode & 0777);
  if (group) options.unix_group = *group;
  options.create_parent_directories = true;
  auto sock = try_bind_listener(*url, options);
  if (sock) return std::move(*sock);
  int err = sock.error().value();
  if (err == EADDRINUSE) return os_failure(what + ": another process is listening there", err);
  if (err == EEXIST) return os_failure(what + ": the file there is not a socket", err);
  return os_failure(what, err);
}

}  // namespace fdbroker::daemon
