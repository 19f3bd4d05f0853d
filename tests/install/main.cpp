// SPDX-License-Identifier: LGPL-2.1-or-later
// A user of the installed library: passes a pipe's write end over a socketpair and
// checks that the received descriptor is the same file and works.
#include <fdbroker/fdbroker.hpp>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <string>

namespace {

int fail(const char* what) {
  std::fprintf(stderr, "install test: %s\n", what);
  return 1;
}

}  // namespace

int main() {
  auto [a, b] = fdbroker::socketpair();
  int p[2];
  if (::pipe2(p, O_CLOEXEC) < 0) return fail("pipe2");
  fdbroker::unique_fd read_end(p[0]), write_end(p[1]);

  if (fdbroker::sendfds(a.get(), "hello", {write_end.get()}) != 5) return fail("sendfds");
  auto message = fdbroker::recvfds(b.get(), 16, 4);
  if (message.payload != "hello" || message.fds.size() != 1) return fail("recvfds");

  struct stat sent {
  }, got{};
  if (::fstat(write_end.get(), &sent) < 0 || ::fstat(message.fds[0].get(), &got) < 0)
    return fail("fstat");
  if (sent.st_dev != got.st_dev || sent.st_ino != got.st_ino) return fail("not the same file");
  if ((::fcntl(message.fds[0].get(), F_GETFD) & FD_CLOEXEC) == 0) return fail("not close-on-exec");

  write_end.reset();
  if (::write(message.fds[0].get(), "!", 1) != 1) return fail("write through the received fd");
  message = {};
  char buf[2] = {};
  if (::read(read_end.get(), buf, sizeof buf) != 1 || buf[0] != '!') return fail("read back");
  if (::read(read_end.get(), buf, sizeof buf) != 0) return fail("a copy of the write end leaked");

  // The error vocabulary is part of the installed API too.
  if (std::string(fdbroker::errno_name(2)) != "ENOENT") return fail("errno_name");
  std::printf("fdbroker %s: fd passed and checked\n", FDBROKER_VERSION_STRING);
  return 0;
}
