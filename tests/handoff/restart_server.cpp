// SPDX-License-Identifier: LGPL-2.1-or-later
// The server of the restart-under-load test: answers "GET /<token> ..." with the
// token and its pid, each connection on its own thread, after --delay-ms.
//
//   --mode handoff  listening socket from fdbroker::listen(); ready() when serving;
//                   stops accepting when a successor is ready (or on SIGTERM),
//                   drains and exits 0. The test starts each successor itself.
//   --mode rebind   the classic restart: binds the address itself; on SIGTERM closes
//                   the socket, drains and exits; the next instance binds again.
// Prints "ready <pid>" on stdout once it accepts, "exit <pid> served <n>" at the end.
#include <fdbroker/handoff.hpp>
#include <fdbroker/listen_url.hpp>

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <exception>
#include <mutex>
#include <optional>
#include <string>
#include <thread>

namespace {

struct Args {
  std::string mode = "handoff";
  std::string url;
  std::string name = "restart-test/http";
  std::string service = "restart-test";
  int delay_ms = 2;
};

// Connections being served: the drain waits for zero.
class InFlight {
 public:
  void begin() {
    std::lock_guard lock(mutex_);
    ++count_;
  }
  void end() {
    std::lock_guard lock(mutex_);
    if (--count_ == 0) idle_.notify_all();
  }
  void wait_idle() {
    std::unique_lock lock(mutex_);
    idle_.wait(lock, [this] { return count_ == 0; });
  }

 private:
  std::mutex mutex_;
  std::condition_variable idle_;
  int count_ = 0;
};

std::atomic<long> served{0};

void serve(int conn, int delay_ms, InFlight& in_flight) {
  fdbroker::unique_fd sock(conn);
  std::string request;
  char buf[1024];
  while (request.find("\r\n\r\n") == std::string::npos && request.size() < 8192) {
    ssize_t n = ::recv(sock.get(), buf, sizeof buf, 0);
    if (n <= 0) break;
    request.append(buf, static_cast<std::size_t>(n));
  }
  // "GET /<token> HTTP/1.0": echo the token.
  std::string token;
  if (request.rfind("GET /", 0) == 0) {
    auto end = request.find(' ', 5);
    if (end != std::string::npos) token = request.substr(5, end - 5);
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(delay_ms));
  std::string body = token + " " + std::to_string(::getpid()) + "\n";
  std::string reply = "HTTP/1.0 200 OK\r\nContent-Length: " + std::to_string(body.size()) +
                      "\r\nConnection: close\r\n\r\n" + body;
  std::size_t sent = 0;
  while (sent < reply.size()) {
    ssize_t n = ::send(sock.get(), reply.data() + sent, reply.size() - sent, MSG_NOSIGNAL);
    if (n <= 0) break;
    sent += static_cast<std::size_t>(n);
  }
  served.fetch_add(1);
  sock.reset();
  in_flight.end();
}

// Accepts until `stop_fd` fires, handing each connection to a thread.
void accept_until(int listener, int stop_fd, int delay_ms, InFlight& in_flight) {
  pollfd pfds[2] = {{listener, POLLIN, 0}, {stop_fd, POLLIN, 0}};
  for (;;) {
    if (::poll(pfds, 2, -1) < 0) {
      if (errno == EINTR) continue;
      std::perror("poll");
      return;
    }
    if ((pfds[1].revents & POLLIN) != 0) return;
    // Both instances poll the same socket during a handoff: the other one may take
    // the connection first (EAGAIN), which is why the listener is non-blocking.
    for (;;) {
      int conn = ::accept4(listener, nullptr, nullptr, SOCK_CLOEXEC);
      if (conn < 0) break;
      in_flight.begin();
      std::thread(serve, conn, delay_ms, std::ref(in_flight)).detach();
    }
  }
}

fdbroker::unique_fd termination_signals() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  // Blocked in every thread (they inherit the mask), read through a signalfd.
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  return fdbroker::unique_fd(::signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK));
}

int run(const Args& args) {
  auto signals = termination_signals();
  InFlight in_flight;
  fdbroker::unique_fd listener;
  std::optional<fdbroker::handoff::Upgrader> upgrader;

  if (args.mode == "handoff") {
    upgrader.emplace(args.service);
    fdbroker::ListenOptions options;
    options.bind.nonblocking = true;
    options.require_broker = true;
    listener = fdbroker::listen(args.name, args.url, options);
  } else {
    fdbroker::BindOptions options;
    options.nonblocking = true;
    listener = fdbroker::bind_listener(fdbroker::parse_listen_url(args.url), options);
  }

  // One fd that fires on SIGTERM or, with handoff, when a successor is ready.
  int stop_fd = signals.get();
  std::thread exit_forwarder;
  fdbroker::unique_fd stop_event;
  if (upgrader) {
    upgrader->ready();
    int pipe_fds[2];
    if (::pipe2(pipe_fds, O_CLOEXEC) < 0)
      throw std::system_error(errno, std::system_category(), "pipe2");
    stop_event.reset(pipe_fds[0]);
    fdbroker::unique_fd write_end(pipe_fds[1]);
    int exit_fd = upgrader->exit_fd();
    int signal_fd = signals.get();
    exit_forwarder = std::thread([exit_fd, signal_fd, w = std::move(write_end)] {
      pollfd pfds[2] = {{exit_fd, POLLIN, 0}, {signal_fd, POLLIN, 0}};
      while (::poll(pfds, 2, -1) < 0 && errno == EINTR) {
      }
      (void)!::write(w.get(), "x", 1);
    });
    stop_fd = stop_event.get();
  }

  std::printf("ready %d\n", static_cast<int>(::getpid()));
  std::fflush(stdout);
  accept_until(listener.get(), stop_fd, args.delay_ms, in_flight);
  // Stop accepting: with handoff the socket lives on in the broker and the
  // successor, so queued connections are the successor's to accept; with rebind
  // this close resets them and refuses new ones until the next instance binds.
  listener.reset();
  in_flight.wait_idle();
  if (exit_forwarder.joinable()) exit_forwarder.join();
  std::printf("exit %d served %ld\n", static_cast<int>(::getpid()), served.load());
  std::fflush(stdout);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  Args args;
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string key = argv[i];
    std::string value = argv[i + 1];
    if (key == "--mode")
      args.mode = value;
    else if (key == "--url")
      args.url = value;
    else if (key == "--name")
      args.name = value;
    else if (key == "--service")
      args.service = value;
    else if (key == "--delay-ms")
      args.delay_ms = std::stoi(value);
    else {
      std::fprintf(stderr, "restart_server: unknown option %s\n", key.c_str());
      return 100;
    }
  }
  if (args.url.empty() || (args.mode != "handoff" && args.mode != "rebind")) {
    std::fprintf(stderr,
                 "usage: restart_server --mode handoff|rebind --url URL [--name N] "
                 "[--service S] [--delay-ms MS]\n");
    return 100;
  }
  try {
    return run(args);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "restart_server: %s\n", e.what());
    return 1;
  }
}
