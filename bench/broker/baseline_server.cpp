// SPDX-License-Identifier: LGPL-2.1-or-later
// The yardstick fdbrokerd is measured against: the least a broker-shaped server can
// do per `get`. One thread, one level-triggered epoll, a non-blocking SOCK_SEQPACKET
// listener; per readable connection one recvmsg() and one sendmsg() of a fixed JSON
// reply (about the size of fdbrokerd's `get` reply) with one stored fd attached as
// SCM_RIGHTS. No JSON parsing, no id echo, no access control, no logging, no allocation
// after start. Whatever fdbrokerd costs beyond this is the price of being a broker.
//
// Usage: baseline_server --socket PATH [--fd-path FILE] [--drain]
//   --drain  read requests until EAGAIN (at most 32) per readiness event, as
//            fdbrokerd does, instead of one: isolates what that extra recvmsg costs.
// Runs until SIGTERM/SIGINT (default action: the kernel cleans up; the socket file is
// left for the caller's temporary directory to remove).

#include <fcntl.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <string_view>

#include "bench_wire.hpp"

[[noreturn]] void bench::die(const char* what) {
  std::fprintf(stderr, "baseline_server: %s: %s\n", what, std::strerror(errno));
  std::exit(EXIT_FAILURE);
}

namespace {

using namespace bench;

// Shaped like fdbrokerd's reply to {"op":"get","name":"bench","id":k} for an entry
// holding /dev/null, so that both servers copy about the same bytes per reply.
// (fdbrokerd's generations are 16-digit numbers: they must grow across restarts.)
constexpr std::string_view fixed_reply =
    R"({"id":1,"ok":true,"name":"bench","generation":1795466045567555,"meta":{},)"
    R"("owner":{"uid":0},"fds":[{"access":"rw","kind":"other","path":"/dev/null"}]})";

// Larger than any request the load generator sends; a longer request is truncated
// (MSG_TRUNC) and still answered: the baseline does not look at requests.
constexpr std::size_t request_buffer_size = 4096;

int listen_on(const std::string& path) {
  int sock = ::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (sock < 0) die("socket");
  sockaddr_un addr = address_of(path);
  ::unlink(path.c_str());  // a stale socket file from an earlier run
  if (::bind(sock, reinterpret_cast<const sockaddr*>(&addr), sizeof(addr)) < 0) die("bind");
  if (::listen(sock, SOMAXCONN) < 0) die("listen");
  return sock;
}

// Sends the fixed reply with `stored_fd` attached. The kernel duplicates the fd into
// the peer; ours stays open for the next reply, exactly as a broker's `get` does.
bool send_reply(int conn, int stored_fd) { return send_message(conn, fixed_reply, stored_fd); }

// Reads one request and answers it. Returns false to drop the client; `answered`
// tells a reply from EAGAIN.
bool serve_request(int conn, int stored_fd, bool& answered) {
  char request[request_buffer_size];
  // No control buffer: if a client attaches fds, the kernel closes them for us
  // (MSG_CTRUNC), so nothing leaks.
  int flags = 0;
  ssize_t got = fdbroker_bench::raw_recv_each(conn, request, sizeof(request), 0, &flags,
                                              [](const unsigned char*, std::size_t) {});
  if (got < 0) return errno == EAGAIN;
  if (got == 0) return false;  // peer closed
  answered = true;
  // A minimal server: a full send buffer (a client that does not read) drops it.
  return send_reply(conn, stored_fd);
}

// By default one request per readiness event: with level-triggered epoll a second
// queued request wakes us again, and not reading until EAGAIN saves a syscall per
// request when (as here) each client has one request in flight.
bool serve_one(int conn, int stored_fd, bool drain) {
  bool answered = false;
  if (!drain) return serve_request(conn, stored_fd, answered);
  for (int i = 0; i < 32; ++i) {
    answered = false;
    if (!serve_request(conn, stored_fd, answered)) return false;
    if (!answered) break;  // EAGAIN: drained
  }
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  std::string socket_path;
  std::string fd_path = "/dev/null";
  bool drain = false;
  for (int i = 1; i < argc; ++i) {
    std::string_view arg = argv[i];
    if (arg == "--socket" && i + 1 < argc) {
      socket_path = argv[++i];
    } else if (arg == "--fd-path" && i + 1 < argc) {
      fd_path = argv[++i];
    } else if (arg == "--drain") {
      drain = true;
    } else {
      std::fprintf(stderr, "usage: baseline_server --socket PATH [--fd-path FILE] [--drain]\n");
      return 100;
    }
  }
  if (socket_path.empty()) {
    std::fprintf(stderr, "usage: baseline_server --socket PATH [--fd-path FILE] [--drain]\n");
    return 100;
  }

  int stored_fd = ::open(fd_path.c_str(), O_RDWR | O_CLOEXEC);
  if (stored_fd < 0) die("open stored fd");
  int listener = listen_on(socket_path);
  int epoll = ::epoll_create1(EPOLL_CLOEXEC);
  if (epoll < 0) die("epoll_create1");
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.fd = listener;
  if (::epoll_ctl(epoll, EPOLL_CTL_ADD, listener, &ev) < 0) die("epoll_ctl listener");

  constexpr int max_events = 256;
  epoll_event events[max_events];
  for (;;) {
    int n = ::epoll_wait(epoll, events, max_events, -1);
    if (n < 0) {
      if (errno == EINTR) continue;
      die("epoll_wait");
    }
    for (int i = 0; i < n; ++i) {
      int fd = events[i].data.fd;
      if (fd == listener) {
        // Accept everything queued: connect-get-close clients arrive in bursts.
        for (;;) {
          int conn = ::accept4(listener, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
          if (conn < 0) {
            // EAGAIN: drained. EMFILE/ENFILE: the clients wait in the backlog and the
            // next epoll_wait retries; the generator never opens that many.
            if (errno != EINTR && errno != ECONNABORTED) break;
            continue;
          }
          epoll_event cev{};
          cev.events = EPOLLIN;
          cev.data.fd = conn;
          if (::epoll_ctl(epoll, EPOLL_CTL_ADD, conn, &cev) < 0) ::close(conn);
        }
        continue;
      }
      // EPOLLHUP with a request still queued: answer it first, recvmsg then sees EOF.
      bool keep = serve_one(fd, stored_fd, drain);
      if (!keep) ::close(fd);  // close also leaves the epoll set
    }
  }
}
