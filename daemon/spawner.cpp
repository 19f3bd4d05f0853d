// SPDX-License-Identifier: LGPL-2.1-or-later
#include "spawner.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fdbroker/listen_fds.hpp>
#include <fdbroker/scm_rights.hpp>
#include <string_view>
#include <thread>

namespace fdbroker::daemon {

namespace {

// Largest request: argv and the environment (a seqpacket message is read whole).
constexpr std::size_t max_request = 256 * 1024;

void send_report(int sock, char kind, pid_t pid, int value) {
  SpawnerReport r;
  r.kind = kind;
  r.pid = pid;
  r.value = value;
  // MSG_NOSIGNAL: a broker gone is EOF for the loop below, not a SIGPIPE.
  ssize_t ignored = ::send(sock, &r, sizeof r, MSG_NOSIGNAL);
  (void)ignored;
}

// The successor, in the spawner's child: `channel` is the only descriptor above
// 2 besides the spawner's socket. Never returns.
[[noreturn]] void run_child(int channel, int m, const char* path, std::vector<char*>& argv,
                            std::vector<std::string>& env) {
  // Out of the way of 3 .. 3 + m - 1, then nothing else open (the spawner's
  // socket and the channel: sockets, whose close never waits).
  int high = ::fcntl(channel, F_DUPFD_CLOEXEC, 3 + m);
  if (high < 0) ::_exit(127);
  ::close_range(3, static_cast<unsigned>(high) - 1, 0);
  ::close_range(static_cast<unsigned>(high) + 1, ~0u, 0);
  // The descriptors, in order. Received without MSG_CMSG_CLOEXEC: they are the
  // successor's. The kernel installs each at the lowest free number, so they
  // land at 3 .. 3 + m - 1 without a dup2 or a close: a descriptor of a file
  // system that does not answer is never closed here (lib's try_place_listen_fds,
  // which moves fds and closes the old numbers, is for fds already in hand). Raw recvmsg rather
  // than recvfds (scm_rights.cpp): this needs flags 0 and checks the numbers.
  int got = 0;
  while (got < m) {
    char byte;
    iovec iov{&byte, 1};
    alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * max_fds_per_message)];
    msghdr msg{};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control;
    msg.msg_controllen = sizeof control;
    ssize_t n = ::recvmsg(high, &msg, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0 || (msg.msg_flags & MSG_CTRUNC) != 0) ::_exit(127);
    for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c != nullptr; c = CMSG_NXTHDR(&msg, c)) {
      if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
      std::size_t k = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
      for (std::size_t i = 0; i < k; ++i) {
        int fd;
        std::memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof fd);
        if (fd != 3 + got) ::_exit(127);  // cannot be: everything below `high` was free
        ++got;
      }
    }
  }
  ::close(high);
  sigset_t none;
  ::sigemptyset(&none);
  ::sigprocmask(SIG_SETMASK, &none, nullptr);
  for (int sig : {SIGPIPE, SIGINT, SIGHUP, SIGUSR2}) ::signal(sig, SIG_DFL);
  env.push_back(listen_pid_variable(::getpid()));
  std::vector<char*> envp;
  for (auto& s : env) envp.push_back(s.data());
  envp.push_back(nullptr);
  ::execve(path, argv.data(), envp.data());
  int err = errno;
  // The readiness pipe is the last descriptor (upgrade.cpp): 'X' + errno.
  char msg[1 + sizeof(int)];
  msg[0] = 'X';
  std::memcpy(msg + 1, &err, sizeof err);
  ssize_t ignored = ::write(3 + m - 1, msg, sizeof msg);
  (void)ignored;
  ::_exit(127);
}

// One request: NUL-separated strings "m", path, argc, argv..., env...; one fd.
void handle_request(int sock, const char* data, std::size_t size, unique_fd channel) {
  std::vector<std::string> parts;
  std::string_view rest(data, size);
  while (!rest.empty()) {
    auto nul = rest.find('\0');
    if (nul == std::string_view::npos) break;
    parts.emplace_back(rest.substr(0, nul));
    rest.remove_prefix(nul + 1);
  }
  if (parts.size() < 3 || !channel.valid()) {
    send_report(sock, 'F', -1, EPROTO);
    return;
  }
  int m = std::atoi(parts[0].c_str());
  std::size_t argc = std::strtoul(parts[2].c_str(), nullptr, 10);
  if (m < 1 || parts.size() < 3 + argc) {
    send_report(sock, 'F', -1, EPROTO);
    return;
  }
  std::vector<char*> argv;
  for (std::size_t i = 0; i < argc; ++i) argv.push_back(parts[3 + i].data());
  argv.push_back(nullptr);
  std::vector<std::string> env(parts.begin() + static_cast<std::ptrdiff_t>(3 + argc), parts.end());
  pid_t pid = ::fork();  // the spawner runs one thread: the child may allocate
  if (pid < 0) {
    send_report(sock, 'F', -1, errno);
    return;
  }
  if (pid == 0) run_child(channel.get(), m, parts[1].c_str(), argv, env);
  channel.reset();
  send_report(sock, 'P', pid, 0);
}

// Closes what the spawner inherited, but `keep`. At a first start none of it is a
// client's; in a broker started by an upgrade (or by systemd) the passed entries
// are, and one of a FUSE mount that does not answer would hang its close: so
// the closes run on a thread of their own, and the spawner answers meanwhile.
// (A child forked while one hangs still has it, and hangs in its close_range:
// that upgrade then fails after upgrade_timeout, without blocking the broker.)
// Each listed number is closed once, so a number reused meanwhile is safe.
void close_inherited(int keep, int ours) {
  ::close(ours);  // the broker's end: a socket, closed now so that its EOF reaches us
  std::vector<int> fds;
  if (DIR* dir = ::opendir("/proc/self/fd"); dir != nullptr) {
    int self = ::dirfd(dir);
    while (dirent* e = ::readdir(dir)) {
      int fd = std::atoi(e->d_name);
      if (fd > 2 && fd != keep && fd != self && fd != ours) fds.push_back(fd);
    }
    ::closedir(dir);
  } else {
    return;  // no list: keep them (a child's close_range closes them)
  }
  std::thread([fds = std::move(fds)] {
    for (int fd : fds) ::close(fd);
  }).detach();
}

[[noreturn]] void run_spawner(int sock) {
  sigset_t chld;
  ::sigemptyset(&chld);
  ::sigaddset(&chld, SIGCHLD);
  int sigfd = ::signalfd(-1, &chld, SFD_CLOEXEC | SFD_NONBLOCK);
  if (sigfd < 0) ::_exit(1);
  std::vector<char> buf(max_request);
  for (;;) {
    pollfd pfds[2] = {{sock, POLLIN, 0}, {sigfd, POLLIN, 0}};
    if (::poll(pfds, 2, -1) < 0) {
      if (errno == EINTR) continue;
      ::_exit(1);
    }
    if ((pfds[1].revents & POLLIN) != 0) {
      signalfd_siginfo si;
      while (::read(sigfd, &si, sizeof si) > 0) {
      }
      int status = 0;
      pid_t p;
      while ((p = ::waitpid(-1, &status, WNOHANG)) > 0) send_report(sock, 'E', p, status);
    }
    if (pfds[0].revents != 0) {
      // One request, with the successor's channel attached (close-on-exec).
      std::vector<unique_fd> fds;
      auto got = try_recvfds_into(sock, buf.data(), buf.size(), fds, 1);
      if (!got && got.error().value() == EINTR) continue;
      if (!got && got.error().value() == EMSGSIZE) {  // its fds were closed
        send_report(sock, 'F', -1, EMSGSIZE);
        continue;
      }
      if (!got || (got->size == 0 && fds.empty())) ::_exit(0);  // the broker is gone
      if (got->payload_truncated) {
        send_report(sock, 'F', -1, EMSGSIZE);
        continue;
      }
      std::size_t n = got->size;
      unique_fd channel = fds.empty() ? unique_fd() : std::move(fds[0]);
      handle_request(sock, buf.data(), n, std::move(channel));
    }
  }
}

}  // namespace

unique_fd start_spawner() {
  int pair[2];
  if (::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, pair) < 0) return {};
  unique_fd ours(pair[0]);
  unique_fd theirs(pair[1]);
  pid_t parent = ::getpid();
  pid_t pid = ::fork();
  if (pid < 0) return {};
  if (pid == 0) {
    // Dies with the broker (the thread that forked it: the main thread).
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (::getppid() != parent) ::_exit(0);
    ::prctl(PR_SET_NAME, "fdbrokerd-spawn");
    int sock = theirs.get();
    // Before any thread: SIGCHLD must reach the signalfd, not a thread.
    sigset_t chld;
    ::sigemptyset(&chld);
    ::sigaddset(&chld, SIGCHLD);
    ::sigprocmask(SIG_BLOCK, &chld, nullptr);
    for (int sig : {SIGINT, SIGHUP, SIGUSR2, SIGPIPE}) ::signal(sig, SIG_IGN);
    close_inherited(sock, ours.release());
    run_spawner(sock);
  }
  return ours;
}

int send_spawn_request(int spawner, int channel_peer, const std::string& path,
                       const std::vector<std::string>& argv, const std::vector<std::string>& envp,
                       int m) {
  std::string payload;
  auto add = [&](const std::string& s) {
    payload += s;
    payload += '\0';
  };
  add(std::to_string(m));
  add(path);
  add(std::to_string(argv.size()));
  for (const auto& a : argv) add(a);
  for (const auto& e : envp) add(e);
  if (payload.size() > max_request) return E2BIG;
  auto sent = try_sendfds(spawner, payload.data(), payload.size(), &channel_peer, 1);
  if (!sent) return sent.error().value();
  return 0;
}

}  // namespace fdbroker::daemon
