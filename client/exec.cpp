// SPDX-License-Identifier: LGPL-2.1-or-later
#include "exec.hpp"

#include "open_flags.hpp"

#include <fdbroker/error.hpp>
#include <fdbroker/listen_fds.hpp>

#include <dirent.h>
#include <fcntl.h>
#include <linux/close_range.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <vector>

namespace fdbrokerctl {

std::string fd_name_for(std::string_view entry_name) {
  std::string out(entry_name);
  for (char& c : out) {
    if (c == ':') c = '_';
  }
  return out;
}

namespace {

// Marks every descriptor >= `first` close-on-exec, whoever opened it (a parent's
// leaked fd, a library's), so the program gets exactly 0, 1, 2 and ours.
void cloexec_from(int first) {
  if (::syscall(SYS_close_range, static_cast<unsigned>(first), ~0U, CLOSE_RANGE_CLOEXEC) == 0)
    return;
  // Kernels before 5.11: walk /proc/self/fd. The directory's own fd is CLOEXEC.
  DIR* dir = ::opendir("/proc/self/fd");
  if (dir == nullptr) fdbroker::throw_errno(errno, "opendir /proc/self/fd");
  while (dirent* d = ::readdir(dir)) {
    int fd = std::atoi(d->d_name);
    if (d->d_name[0] != '.' && fd >= first && fd != ::dirfd(dir)) {
      int flags = ::fcntl(fd, F_GETFD);
      if (flags >= 0) ::fcntl(fd, F_SETFD, flags | FD_CLOEXEC);
    }
  }
  ::closedir(dir);
}

}  // namespace

std::string fd_name_for_path(std::string_view path) {
  auto slash = path.rfind('/');
  return fd_name_for(slash == std::string_view::npos ? path : path.substr(slash + 1));
}

void exec_with_entries(const Options& o, fdbroker::Client& client) {
  std::vector<fdbroker::unique_fd> fds;
  std::vector<std::string> names;
  for (const auto& want : o.exec_entries) {
    switch (want.kind) {
      case ExecEntry::Kind::get:
      case ExecEntry::Kind::take: {
        fdbroker::Entry e = want.kind == ExecEntry::Kind::take ? client.take(want.name, o.wait_ms)
                                                               : client.get(want.name, o.wait_ms);
        for (auto& fd : e.fds) {
          fds.push_back(std::move(fd));
          names.push_back(fd_name_for(e.name));
        }
        break;
      }
      case ExecEntry::Kind::open: {
        OpenOptions mode;
        mode.mode = want.mode;
        fds.push_back(client.open(want.name, open_flags_for(mode)).fd);
        names.push_back(fd_name_for_path(want.name));
        break;
      }
      case ExecEntry::Kind::bind:
        fds.push_back(client.bind(want.name).fd);
        names.push_back(fd_name_for(want.name));
        break;
    }
  }
  client.close();
  if (auto err = fdbroker::try_place_listen_fds(fds))
    fdbroker::throw_errno(err.value(), "place fds");
  cloexec_from(fdbroker::listen_fds_start + static_cast<int>(fds.size()));
  // LISTEN_PID is our own pid: execvp keeps it, and sd_listen_fds() checks it.
  fdbroker::set_listen_environment(names);

  std::vector<char*> argv;
  for (const auto& arg : o.program) argv.push_back(const_cast<char*>(arg.c_str()));
  argv.push_back(nullptr);
  ::execvp(argv[0], argv.data());
  fdbroker::throw_errno(errno, "exec '" + o.program[0] + "'");
}

}  // namespace fdbrokerctl
