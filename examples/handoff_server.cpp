// SPDX-License-Identifier: LGPL-2.1-or-later
// An HTTP-ish echo server that restarts without dropping a connection.
//
//   handoff_server [URL]     (default tcp://127.0.0.1:8080; FDBROKER_SOCKET names the broker)
//
// Every request gets "HTTP/1.0 200" with the request line, this process's pid and
// how many requests all generations have served together. Send SIGHUP to restart:
// the server starts its successor (this binary again: replace it on disk first to
// upgrade), which takes the listening socket and the request counter from the broker
// and says it is ready; the old process then stops accepting, finishes the requests
// it has, and exits. SIGTERM stops it. docs/handoff.md walks through the sequence.
#include <fdbroker/handoff.hpp>

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <condition_variable>
#include <cstdio>
#include <exception>
#include <mutex>
#include <string>
#include <thread>

namespace {

// State that outlives every generation: a counter in a memfd that each instance maps
// shared, handed from one to the next through the broker.
std::atomic<long>* map_counter(int memfd) {
  void* p =
      ::mmap(nullptr, sizeof(std::atomic<long>), PROT_READ | PROT_WRITE, MAP_SHARED, memfd, 0);
  if (p == MAP_FAILED) throw std::system_error(errno, std::system_category(), "mmap");
  return static_cast<std::atomic<long>*>(p);
}

fdbroker::unique_fd new_counter() {
  fdbroker::unique_fd memfd(::memfd_create("handoff-server-counter", MFD_CLOEXEC));
  if (!memfd.valid() || ::ftruncate(memfd.get(), sizeof(std::atomic<long>)) < 0)
    throw std::system_error(errno, std::system_category(), "memfd");
  return memfd;
}

class Drain {
 public:
  void begin() {
    std::lock_guard lock(mutex_);
    ++active_;
  }
  void end() {
    std::lock_guard lock(mutex_);
    if (--active_ == 0) idle_.notify_all();
  }
  void wait() {
    std::unique_lock lock(mutex_);
    idle_.wait(lock, [this] { return active_ == 0; });
  }

 private:
  std::mutex mutex_;
  std::condition_variable idle_;
  int active_ = 0;
};

void serve(fdbroker::unique_fd conn, std::atomic<long>* counter, Drain& drain) {
  std::string request;
  char buf[2048];
  while (request.find("\r\n\r\n") == std::string::npos && request.size() < 16384) {
    ssize_t n = ::recv(conn.get(), buf, sizeof buf, 0);
    if (n <= 0) break;
    request.append(buf, static_cast<std::size_t>(n));
  }
  std::string line = request.substr(0, request.find("\r\n"));
  long total = counter->fetch_add(1) + 1;
  std::string body =
      line + "\npid " + std::to_string(::getpid()) + ", request " + std::to_string(total) + "\n";
  std::string reply = "HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\nContent-Length: " +
                      std::to_string(body.size()) + "\r\nConnection: close\r\n\r\n" + body;
  for (std::size_t sent = 0; sent < reply.size();) {
    ssize_t n = ::send(conn.get(), reply.data() + sent, reply.size() - sent, MSG_NOSIGNAL);
    if (n <= 0) break;
    sent += static_cast<std::size_t>(n);
  }
  conn.reset();
  drain.end();
}

int run(const std::string& url) {
  // Signals arrive through a signalfd; block them before any thread starts.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGHUP);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  fdbroker::unique_fd signal_fd(::signalfd(-1, &signals, SFD_CLOEXEC | SFD_NONBLOCK));

  // 1. Who came before us, if anyone.
  fdbroker::handoff::Upgrader upgrader("handoff-server");

  // 2. The listening socket: inherited, the broker's, or bound now and deposited.
  //    Non-blocking because old and new instance poll it together for a moment.
  fdbroker::ListenOptions options;
  options.bind.nonblocking = true;
  auto listener = fdbroker::open_listener("handoff-server/http", url, options);
  std::fprintf(stderr, "handoff_server %d: listening on %s (%s)%s%s\n", ::getpid(), url.c_str(),
               fdbroker::to_string(listener.origin), listener.broker_error.empty() ? "" : ": ",
               listener.broker_error.c_str());

  // 3. The state: the predecessor's counter, or a new one. Put it back at once so
  //    that our own successor finds it too (get would leave it; take+put makes this
  //    instance the one that hands it on).
  auto state = upgrader.take_state();
  fdbroker::unique_fd counter_fd =
      state && !state->fds.empty() ? std::move(state->fds[0]) : new_counter();
  std::atomic<long>* counter = map_counter(counter_fd.get());
  if (upgrader.has_broker())
    upgrader.put_state({counter_fd.get()}, R"({"what": "request counter"})");

  // 4. Ready: from here on we accept, and the predecessor is told to retire.
  upgrader.ready();
  int exit_fd = upgrader.exit_fd();
  std::fprintf(stderr, "handoff_server %d: ready (generation %llu)\n", ::getpid(),
               static_cast<unsigned long long>(upgrader.generation()));

  Drain drain;
  pollfd pfds[3] = {
      {listener.fd.get(), POLLIN, 0}, {exit_fd, POLLIN, 0}, {signal_fd.get(), POLLIN, 0}};
  bool running = true;
  while (running) {
    if (::poll(pfds, 3, -1) < 0) {
      if (errno == EINTR) continue;
      throw std::system_error(errno, std::system_category(), "poll");
    }
    if ((pfds[1].revents & POLLIN) != 0) {
      std::fprintf(stderr, "handoff_server %d: successor %d is ready; draining\n", ::getpid(),
                   upgrader.successor_pid());
      running = false;
    }
    if ((pfds[2].revents & POLLIN) != 0) {
      signalfd_siginfo info{};
      while (::read(signal_fd.get(), &info, sizeof info) == sizeof info) {
        if (info.ssi_signo != SIGHUP) {
          running = false;
          continue;
        }
        try {
          // 5. Upgrade: start the next generation and wait until it is ready.
          pid_t successor = upgrader.upgrade();
          std::fprintf(stderr, "handoff_server %d: upgraded to %d; draining\n", ::getpid(),
                       successor);
          running = false;
        } catch (const std::exception& e) {
          // The successor failed: we keep serving, nothing was lost.
          std::fprintf(stderr, "handoff_server %d: upgrade failed: %s\n", ::getpid(), e.what());
        }
      }
    }
    if (running && (pfds[0].revents & POLLIN) != 0) {
      // EAGAIN when the other instance took the connection first: fine.
      for (int fd; (fd = ::accept4(listener.fd.get(), nullptr, nullptr, SOCK_CLOEXEC)) >= 0;) {
        drain.begin();
        std::thread(serve, fdbroker::unique_fd(fd), counter, std::ref(drain)).detach();
      }
    }
  }
  // 6. Exit: stop accepting (the broker and the successor keep the socket open, so
  //    queued connections are the successor's), finish what we accepted, leave.
  listener.fd.reset();
  drain.wait();
  std::fprintf(stderr, "handoff_server %d: done\n", ::getpid());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return run(argc > 1 ? argv[1] : "tcp://127.0.0.1:8080");
  } catch (const std::exception& e) {
    std::fprintf(stderr, "handoff_server: %s\n", e.what());
    return 1;
  }
}
