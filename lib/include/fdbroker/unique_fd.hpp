// SPDX-License-Identifier: LGPL-2.1-or-later
// unique_fd: the one owning file-descriptor type of libfdbroker.
//
// Users of an fd take `int` (borrowed for the call); keepers take `unique_fd` by
// value; creators return `unique_fd`.
#pragma once

#include <fdbroker/export.hpp>

namespace fdbroker {

// Owns one file descriptor and closes it on destruction. Move-only.
// There is deliberately no implicit conversion to int and no operator bool.
class FDBROKER_API unique_fd {
 public:
  unique_fd() noexcept = default;
  // Takes ownership of `fd` (which may be -1 for "none").
  explicit unique_fd(int fd) noexcept : fd_(fd) {}
  unique_fd(unique_fd&& other) noexcept : fd_(other.release()) {}
  unique_fd& operator=(unique_fd&& other) noexcept {
    reset(other.release());
    return *this;
  }
  unique_fd(const unique_fd&) = delete;
  unique_fd& operator=(const unique_fd&) = delete;
  ~unique_fd() { reset(); }

  [[nodiscard]] int get() const noexcept { return fd_; }
  [[nodiscard]] bool valid() const noexcept { return fd_ >= 0; }

  // Gives up ownership: the caller now owns the returned fd (or -1).
  [[nodiscard]] int release() noexcept {
    int fd = fd_;
    fd_ = -1;
    return fd;
  }

  // Closes the owned fd, if any, and takes ownership of `fd`. close() is called
  // once and never retried on EINTR (Linux has already released the fd); errno is
  // preserved, so reset() is safe in error paths.
  void reset(int fd = -1) noexcept;

 private:
  int fd_ = -1;
};

// Duplicates `fd` into a new close-on-exec descriptor >= 3 (F_DUPFD_CLOEXEC).
// Returns an invalid unique_fd and sets errno (EBADF, EMFILE, EINVAL) on failure.
FDBROKER_API unique_fd dup_cloexec(int fd) noexcept;

}  // namespace fdbroker
