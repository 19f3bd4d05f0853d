// SPDX-License-Identifier: LGPL-2.1-or-later
// What durable acknowledgements cost: N kept-open connections each put an entry
// of their own (one fd attached) and delete it, again and again, all in flight at
// once through one epoll thread; one JSON line with operations/s (puts and
// deletes) and p50/p99 latency. bench/broker/durability.sh runs it against
// fdbrokerd with and without the fd store.
//
//   durability_load --socket PATH [--clients N] [--warmup S] [--duration S] [--label L]
//   durability_load --sink PATH     a stand-in for systemd's notify socket: receives
//                                   every message, closes the fds, until killed
#include <fcntl.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

#include "bench_wire.hpp"

[[noreturn]] void bench::die(const char* what) {
  std::fprintf(stderr, "durability_load: %s: %s\n", what, std::strerror(errno));
  std::exit(1);
}

namespace {

using namespace bench;

// Receives one message and closes whatever fds came with it. Returns its size.
ssize_t receive_and_close(int sock, char* buffer, std::size_t capacity) {
  return receive_reply(sock, buffer, capacity).size;
}

int sink(const std::string& path) {
  int sock = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (sock < 0) die("socket");
  sockaddr_un addr = address_of(path);
  if (::bind(sock, reinterpret_cast<sockaddr*>(&addr), sizeof addr) < 0) die("bind");
  // A deep queue, as systemd's: the broker must not wait for this process to be scheduled.
  int size = 8 << 20;
  ::setsockopt(sock, SOL_SOCKET, SO_RCVBUF, &size, sizeof size);
  std::vector<char> buffer(65536);
  for (;;) {
    if (receive_and_close(sock, buffer.data(), buffer.size()) < 0) die("recvmsg");
  }
}

struct Client {
  int sock = -1;
  bool putting = true;  // the next request: put (true) or delete
  std::uint64_t sent_ns = 0;
  std::string name;
};

int load(const std::string& path, int nclients, double warmup_s, double duration_s,
         const std::string& label) {
  int payload = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
  if (payload < 0) die("open /dev/null");
  int ep = ::epoll_create1(EPOLL_CLOEXEC);
  if (ep < 0) die("epoll_create1");
  sockaddr_un addr = address_of(path);
  std::vector<Client> clients(static_cast<std::size_t>(nclients));
  auto send_next = [&](Client& c) {
    std::string request = c.putting ? R"({"op":"put","replace":true,"name":")" + c.name + "\"}"
                                    : R"({"op":"delete","name":")" + c.name + "\"}";
    c.sent_ns = now_ns();
    if (!send_message(c.sock, request, c.putting ? payload : -1)) die("sendmsg");
  };
  for (std::size_t i = 0; i < clients.size(); ++i) {
    Client& c = clients[i];
    c.name = "durability/" + std::to_string(::getpid()) + "/" + std::to_string(i);
    c.sock = try_connect(addr, false);
    if (c.sock < 0) die("connect");
    watch_input(ep, c.sock, i);
  }
  for (auto& c : clients) send_next(c);
  const std::uint64_t start = now_ns() + static_cast<std::uint64_t>(warmup_s * 1e9);
  const std::uint64_t end = start + static_cast<std::uint64_t>(duration_s * 1e9);
  std::vector<std::uint64_t> latencies;
  latencies.reserve(1 << 20);
  std::uint64_t errors = 0;
  std::string first_error;
  std::vector<char> buffer(65537);
  epoll_event events[256];
  for (;;) {
    std::uint64_t t = now_ns();
    if (t >= end) break;
    int n = wait_events(ep, events, 256, static_cast<int>((end - t) / 1000000 + 1));
    for (int i = 0; i < n; ++i) {
      Client& c = clients[events[i].data.u64];
      ssize_t size = receive_and_close(c.sock, buffer.data(), buffer.size());
      if (size <= 0) die("the broker closed a connection");
      std::uint64_t done = now_ns();
      std::string_view reply(buffer.data(), static_cast<std::size_t>(size));
      if (reply.find("\"ok\":true") == std::string_view::npos) {
        ++errors;
        if (first_error.empty()) first_error = std::string(reply.substr(0, 200));
      }
      if (done >= start && done < end) latencies.push_back(done - c.sent_ns);
      c.putting = !c.putting;
      send_next(c);
    }
  }
  // The last replies are read (and their entries deleted) so that the broker is
  // left as it was: one more exchange per client, outside the window.
  for (auto& c : clients) {
    if (receive_and_close(c.sock, buffer.data(), buffer.size()) <= 0) die("recvmsg");
    if (c.putting) {  // the put just answered: delete it
      c.putting = false;
      send_next(c);
      if (receive_and_close(c.sock, buffer.data(), buffer.size()) <= 0) die("recvmsg");
    }
    ::close(c.sock);
  }
  std::printf(
      "{\"label\":\"%s\",\"clients\":%d,\"seconds\":%.2f,\"ops\":%zu,\"ops_per_s\":%.0f,"
      "\"p50_us\":%.1f,\"p99_us\":%.1f,\"errors\":%llu}\n",
      label.c_str(), nclients, duration_s, latencies.size(),
      static_cast<double>(latencies.size()) / duration_s, percentile_us(latencies, 0.50),
      percentile_us(latencies, 0.99), static_cast<unsigned long long>(errors));
  if (!first_error.empty())
    std::fprintf(stderr, "durability_load: %s: first error: %s\n", label.c_str(),
                 first_error.c_str());
  ::close(payload);
  ::close(ep);
  return errors == 0 ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  std::string socket_path, sink_path, label = "broker";
  int clients = 8;
  double warmup = 1, duration = 3;
  for (int i = 1; i < argc; ++i) {
    std::string_view arg = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "durability_load: %s needs a value\n", argv[i]);
        std::exit(100);
      }
      return argv[++i];
    };
    if (arg == "--socket")
      socket_path = value();
    else if (arg == "--sink")
      sink_path = value();
    else if (arg == "--clients")
      clients = std::atoi(value().c_str());
    else if (arg == "--warmup")
      warmup = std::atof(value().c_str());
    else if (arg == "--duration")
      duration = std::atof(value().c_str());
    else if (arg == "--label")
      label = value();
    else {
      std::fprintf(stderr,
                   "usage: durability_load --socket PATH [--clients N] [--warmup S] [--duration S] "
                   "[--label L]\n"
                   "       durability_load --sink PATH\n");
      return 100;
    }
  }
  if (!sink_path.empty()) return sink(sink_path);
  if (socket_path.empty() || clients < 1) {
    std::fprintf(stderr, "durability_load: --socket PATH and --clients >= 1 needed\n");
    return 100;
  }
  return load(socket_path, clients, warmup, duration, label);
}
