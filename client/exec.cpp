// SPDX-License-Identifier: LGPL-2.1-or-later
#include "exec.hpp"

#include <fdbroker/error.hpp>

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

void exec_with_entries(const Options& o, fdbroker::Client& client) {
  std::vector<fdbroker::Entry> entries;
  for (const auto& want : o.exec_entries) {
    entries.push_back(want.take ? client.take(want.name, o.wait_ms)
                                : client.get(want.name, o.wait_ms));
  }
  client.close();

  std::vector<fdbroker::unique_fd> fds;
  std::string names;
  for (auto& e : entries) {
    for (auto& fd : e.fds) {
      fds.push_back(std::move(fd));
      names += (names.empty() ? "" : ":") + fd_name_for(e.name);
    }
  }
  const int count = static_cast<int>(fds.size());
  const int first_free = 3 + count;

  // Received descriptors may already sit on 3..3+count-1, where others must go:
  // first move every one above that range (still close-on-exec), then dup2 each
  // into place. dup2 leaves the new descriptor without FD_CLOEXEC, which is what
  // passes it to the program.
  for (auto& fd : fds) {
    fdbroker::unique_fd high(::fcntl(fd.get(), F_DUPFD_CLOEXEC, first_free));
    if (!high.valid()) fdbroker::throw_errno(errno, "F_DUPFD_CLOEXEC");
    fd = std::move(high);
  }
  for (int i = 0; i < count; ++i) {
    if (::dup2(fds[static_cast<std::size_t>(i)].get(), 3 + i) < 0)
      fdbroker::throw_errno(errno, "dup2");
  }
  cloexec_from(first_free);

  // LISTEN_PID is our own pid: execvp keeps it, and sd_listen_fds() checks it.
  ::setenv("LISTEN_FDS", std::to_string(count).c_str(), 1);
  ::setenv("LISTEN_PID", std::to_string(::getpid()).c_str(), 1);
  ::setenv("LISTEN_FDNAMES", names.c_str(), 1);

  std::vector<char*> argv;
  for (const auto& arg : o.program) argv.push_back(const_cast<char*>(arg.c_str()));
  argv.push_back(nullptr);
  ::execvp(argv[0], argv.data());
  fdbroker::throw_errno(errno, "exec '" + o.program[0] + "'");
}

}  // namespace fdbrokerctl
