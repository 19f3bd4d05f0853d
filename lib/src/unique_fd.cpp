// SPDX-License-Identifier: LGPL-2.1-or-later
#include <fdbroker/unique_fd.hpp>

#include <fcntl.h>
#include <cerrno>

#include "sys.hpp"

namespace fdbroker {

void unique_fd::reset(int fd) noexcept {
  if (fd_ >= 0 && fd_ != fd) {
    int saved = errno;
    // Don't retry close on EINTR: Linux has released the fd already, and a retry
    // could close a descriptor another thread has just been given.
    detail::sys::calls.close(fd_);
    errno = saved;
  }
  fd_ = fd;
}

unique_fd dup_cloexec(int fd) noexcept { return unique_fd(::fcntl(fd, F_DUPFD_CLOEXEC, 3)); }

}  // namespace fdbroker
