// SPDX-License-Identifier: LGPL-2.1-or-later
// Helpers for tests over real kernel objects: fd counting, pipes whose EOF proves
// that every copy of a write end was closed, file identity and temp socket paths.
#pragma once

#include <fdbroker/unique_fd.hpp>

#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <random>
#include <string>
#include <system_error>
#include <vector>

#include <gtest/gtest.h>

namespace fdbroker::test {

// The number of descriptors open in this process (/proc/self/fd), not counting
// the one used to read the directory.
inline std::size_t open_fd_count() {
  DIR* dir = ::opendir("/proc/self/fd");
  if (dir == nullptr) throw std::system_error(errno, std::system_category(), "opendir");
  std::size_t count = 0;
  while (const dirent* entry = ::readdir(dir)) {
    if (entry->d_name[0] != '.') ++count;
  }
  ::closedir(dir);
  return count - 1;
}

struct Pipe {
  unique_fd read;
  unique_fd write;
};

// A close-on-exec pipe. Pass `write` somewhere, close every copy you hold, and
// reaches_eof(read) proves whether all other copies were closed too.
inline Pipe pipe_pair() {
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) < 0) throw std::system_error(errno, std::system_category(), "pipe2");
  return Pipe{unique_fd(fds[0]), unique_fd(fds[1])};
}

// True when `read_fd` (a pipe's read end, or a socket, with nothing buffered) reports EOF within
// `timeout_ms`, i.e. every write end is closed. Closing is synchronous on Linux, so
// the timeout only bounds how long a failing test waits.
inline ::testing::AssertionResult reaches_eof(int read_fd, int timeout_ms = 2000) {
  pollfd pfd{read_fd, POLLIN, 0};
  int ready = ::poll(&pfd, 1, timeout_ms);
  if (ready < 0) return ::testing::AssertionFailure() << "poll: " << std::strerror(errno);
  if (ready == 0)
    return ::testing::AssertionFailure() << "fd " << read_fd << ": a write end is still open";
  char byte;
  ssize_t got = ::read(read_fd, &byte, 1);
  if (got == 0) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure()
         << "fd " << read_fd << ": read returned " << got << " instead of EOF";
}

// Whether the pipe's write end is still open somewhere: no EOF right now.
inline bool write_end_open(int read_fd) {
  pollfd pfd{read_fd, POLLIN, 0};
  return ::poll(&pfd, 1, 0) == 0;
}

// Two descriptors refer to the same file when st_dev and st_ino agree.
inline ::testing::AssertionResult same_file(int a, int b) {
  struct stat sa {
  }, sb{};
  if (::fstat(a, &sa) < 0) return ::testing::AssertionFailure() << "fstat(" << a << ") failed";
  if (::fstat(b, &sb) < 0) return ::testing::AssertionFailure() << "fstat(" << b << ") failed";
  if (sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure()
         << "fd " << a << " is ino " << sa.st_ino << ", fd " << b << " is ino " << sb.st_ino;
}

inline bool is_open(int fd) { return ::fcntl(fd, F_GETFD) >= 0; }

inline bool is_cloexec(int fd) {
  int flags = ::fcntl(fd, F_GETFD);
  return flags >= 0 && (flags & FD_CLOEXEC) != 0;
}

// True when nothing at all is queued on `sock` (not even an empty message).
inline bool nothing_queued(int sock) {
  char byte;
  return ::recv(sock, &byte, 1, MSG_DONTWAIT | MSG_PEEK) < 0 && errno == EAGAIN;
}

// `size` pseudo-random bytes, NULs included; the seed makes failures reproducible.
inline std::string random_bytes(std::size_t size, std::uint32_t seed = 42) {
  std::mt19937 gen(seed);
  std::uniform_int_distribution<int> byte(0, 255);
  std::string out(size, '\0');
  for (auto& c : out) c = static_cast<char>(byte(gen));
  return out;
}

// Names AF_UNIX socket types in parameterised test names: AllTypes/Suite.Test/Stream.
inline std::string socket_type_name(const ::testing::TestParamInfo<int>& type) {
  switch (type.param) {
    case SOCK_STREAM:
      return "Stream";
    case SOCK_SEQPACKET:
      return "Seqpacket";
    case SOCK_DGRAM:
      return "Dgram";
    default:
      return "Type" + std::to_string(type.param);
  }
}

// The descriptor numbers of owned fds, for passing them on.
inline std::vector<int> raw_fds(const std::vector<unique_fd>& fds) {
  std::vector<int> out;
  for (const auto& fd : fds) out.push_back(fd.get());
  return out;
}

// `n` pipes, for messages with many descriptors whose closing can be proven.
inline std::vector<Pipe> pipes(std::size_t n) {
  std::vector<Pipe> out;
  for (std::size_t i = 0; i < n; ++i) out.push_back(pipe_pair());
  return out;
}

inline std::vector<int> write_ends(const std::vector<Pipe>& from) {
  std::vector<int> out;
  for (const auto& p : from) out.push_back(p.write.get());
  return out;
}

// A private directory under $TMPDIR (or /tmp), removed with its contents on
// destruction; short enough for sockaddr_un paths.
class TempDir {
 public:
  TempDir() {
    const char* base = ::getenv("TMPDIR");
    std::string pattern =
        std::string(base != nullptr && *base != '\0' ? base : "/tmp") + "/fdbroker-test-XXXXXX";
    if (::mkdtemp(pattern.data()) == nullptr)
      throw std::system_error(errno, std::system_category(), "mkdtemp");
    path_ = pattern;
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  ~TempDir() {
    if (DIR* dir = ::opendir(path_.c_str())) {
      while (const dirent* entry = ::readdir(dir)) {
        std::string name = entry->d_name;
        if (name != "." && name != "..") ::unlink((path_ + "/" + name).c_str());
      }
      ::closedir(dir);
    }
    ::rmdir(path_.c_str());
  }

  [[nodiscard]] const std::string& path() const noexcept { return path_; }
  // A path for an AF_UNIX socket (or any file) inside this directory.
  [[nodiscard]] std::string socket_path(const std::string& name = "sock") const {
    return path_ + "/" + name;
  }

 private:
  std::string path_;
};

// The AF_UNIX address of `path`.
inline sockaddr_un unix_address(const std::string& path) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, path.c_str(), sizeof addr.sun_path - 1);
  return addr;
}

// A listening AF_UNIX socket of `type` bound at `path` with the raw calls (not
// through the code under test): "a live service" for tests of who may take a path,
// or the listening socket handed to the part under test.
inline unique_fd raw_unix_listener(const std::string& path, int type, int backlog = 16) {
  unique_fd sock(::socket(AF_UNIX, type | SOCK_CLOEXEC, 0));
  sockaddr_un addr = unix_address(path);
  EXPECT_EQ(::bind(sock.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0) << path;
  EXPECT_EQ(::listen(sock.get(), backlog), 0);
  return sock;
}

// A client socket of `type` connected to `path` (it may wait in the backlog).
inline unique_fd connect_unix(const std::string& path, int type = SOCK_SEQPACKET) {
  unique_fd sock(::socket(AF_UNIX, type | SOCK_CLOEXEC, 0));
  sockaddr_un addr = unix_address(path);
  EXPECT_EQ(::connect(sock.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof addr), 0)
      << path << ": " << std::strerror(errno);
  return sock;
}

// This process's cgroup v2 path: the "0::" line of /proc/self/cgroup, read with
// plain string code (not the daemon's parser), "" if there is none.
inline std::string own_cgroup() {
  std::ifstream in("/proc/self/cgroup");
  for (std::string line; std::getline(in, line);) {
    if (line.rfind("0::", 0) == 0) return line.substr(3);
  }
  return "";
}

// Whether this kernel has SO_PEERPIDFD (77; Linux 6.5+), which the broker needs
// to know its peers' systemd units: tests of units skip without it (CI's kernel
// has it: .ci/run checks).
inline bool kernel_has_peer_pidfd() {
  int sv[2];
  if (::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0) return false;
  int fd = -1;
  socklen_t len = sizeof fd;
  bool has = ::getsockopt(sv[0], SOL_SOCKET, 77, &fd, &len) == 0;
  if (has) ::close(fd);
  ::close(sv[0]);
  ::close(sv[1]);
  return has;
}

// The inode at `path` (lstat), 0 if there is none.
inline ino_t inode_of(const std::string& path) {
  struct stat st {};
  return ::lstat(path.c_str(), &st) == 0 ? st.st_ino : 0;
}

}  // namespace fdbroker::test
