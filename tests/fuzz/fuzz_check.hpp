// SPDX-License-Identifier: LGPL-2.1-or-later
// What every fuzz target uses: an invariant check that aborts (a finding under
// libFuzzer, a failed test under replay_main.cpp), and the open-fd count.
#pragma once

#include <dirent.h>

#include <cstddef>
#include <cstdio>
#include <cstdlib>
#include <string_view>

// FUZZ_CHECK(condition, "what must hold"): abort with the message if it does not.
#define FUZZ_CHECK(cond, what)                                                               \
  do {                                                                                       \
    if (!(cond)) {                                                                           \
      std::fprintf(stderr, "%s:%d: invariant violated: %s (%s)\n", __FILE__, __LINE__, what, \
                   #cond);                                                                   \
      std::abort();                                                                          \
    }                                                                                        \
  } while (0)

namespace fuzz {

// Descriptors open in this process now (entries of /proc/self/fd, less the one
// opendir() holds while reading it).
inline int open_fd_count() {
  DIR* dir = ::opendir("/proc/self/fd");
  FUZZ_CHECK(dir != nullptr, "/proc/self/fd is readable");
  int n = 0;
  while (const dirent* d = ::readdir(dir)) {
    if (d->d_name[0] != '.') ++n;
  }
  ::closedir(dir);
  return n - 1;
}

// Counts the fds around one input: FdCheck check; ...; check.same("...").
class FdCheck {
 public:
  FdCheck() : before_(open_fd_count()) {}
  void same(const char* what) const {
    int after = open_fd_count();
    if (after != before_) {
      std::fprintf(stderr, "fd leak: %d open before, %d after: %s\n", before_, after, what);
      std::abort();
    }
  }

 private:
  int before_;
};

inline std::string_view as_text(const unsigned char* data, std::size_t size) {
  return {reinterpret_cast<const char*>(data), size};
}

}  // namespace fuzz
