// SPDX-License-Identifier: LGPL-2.1-or-later
// The load generator of the restart-under-load test: --workers threads each open a
// new loopback connection, send "GET /<token>", and check that the reply echoes the
// token, over and over, until SIGTERM/SIGINT, --max-seconds or --max-connections.
// Every failure is classified by what the kernel said:
//   refused  connect() gave ECONNREFUSED (nobody listening)
//   reset    ECONNRESET/EPIPE on connect, send or receive (a queued connection
//            dropped by a closing listener)
//   failed   anything else: a timeout, a short or wrong reply, EOF before the reply
// Prints one JSON object on stdout at the end:
//   {"connections":N,"ok":N,"refused":N,"reset":N,"failed":N,"pids":N,"errors":[...]}
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

namespace {

std::atomic<bool> stop{false};
std::atomic<long> connections{0};
std::mutex report_mutex;
std::set<std::string> pids;
std::vector<std::string> errors;  // the first few, for the log

enum class Outcome { ok, refused, reset, failed };
std::atomic<long> outcome_counts[4];  // indexed by Outcome

long count_of(Outcome outcome) { return outcome_counts[static_cast<int>(outcome)].load(); }

void note_error(const std::string& what) {
  std::lock_guard lock(report_mutex);
  if (errors.size() < 10) errors.push_back(what);
}

Outcome classify(int err, const char* step) {
  note_error(std::string(step) + ": " + std::strerror(err));
  if (err == ECONNREFUSED) return Outcome::refused;
  if (err == ECONNRESET || err == EPIPE) return Outcome::reset;
  return Outcome::failed;
}

Outcome one_request(const sockaddr_in& address, long token) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return classify(errno, "socket");
  struct Closer {
    int fd;
    ~Closer() { ::close(fd); }
  } closer{fd};
  // Bounded waits: a hung connection is a failure, not a hang of the test.
  timeval timeout{5, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
  ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, sizeof timeout);
  if (::connect(fd, reinterpret_cast<const sockaddr*>(&address), sizeof address) < 0)
    return classify(errno, "connect");

  std::string token_text = "t" + std::to_string(token);
  std::string request = "GET /" + token_text + " HTTP/1.0\r\nHost: test\r\n\r\n";
  std::size_t sent = 0;
  while (sent < request.size()) {
    ssize_t n = ::send(fd, request.data() + sent, request.size() - sent, MSG_NOSIGNAL);
    if (n < 0) return classify(errno, "send");
    sent += static_cast<std::size_t>(n);
  }
  std::string reply;
  char buf[512];
  for (;;) {
    ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n < 0) return classify(errno, "recv");
    if (n == 0) break;
    reply.append(buf, static_cast<std::size_t>(n));
  }
  auto body_at = reply.find("\r\n\r\n");
  if (reply.rfind("HTTP/1.0 200 OK\r\n", 0) != 0 || body_at == std::string::npos) {
    note_error("bad reply: '" + reply.substr(0, 60) + "'");
    return Outcome::failed;
  }
  std::string body = reply.substr(body_at + 4);
  auto space = body.find(' ');
  if (space == std::string::npos || body.substr(0, space) != token_text || body.back() != '\n') {
    note_error("wrong body: '" + body.substr(0, 60) + "'");
    return Outcome::failed;
  }
  std::lock_guard lock(report_mutex);
  pids.insert(body.substr(space + 1, body.size() - space - 2));
  return Outcome::ok;
}

void worker(sockaddr_in address, int id, long max_connections, int pause_us) {
  long sequence = 0;
  while (!stop.load(std::memory_order_relaxed)) {
    if (connections.fetch_add(1) >= max_connections) {
      connections.fetch_sub(1);
      break;
    }
    Outcome outcome = one_request(address, id * 100000000L + sequence++);
    outcome_counts[static_cast<int>(outcome)].fetch_add(1);
    if (pause_us > 0) ::usleep(static_cast<useconds_t>(pause_us));
  }
}

std::string json_string(const std::string& s) {
  std::string out = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\') out += '\\';
    if (static_cast<unsigned char>(c) < 0x20) {
      out += ' ';
      continue;
    }
    out += c;
  }
  return out + "\"";
}

}  // namespace

int main(int argc, char** argv) {
  std::string host = "127.0.0.1";
  int port = 0, workers = 8, max_seconds = 30, pause_us = 500;
  long max_connections = 100000;
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string key = argv[i];
    std::string value = argv[i + 1];
    if (key == "--port")
      port = std::stoi(value);
    else if (key == "--host")
      host = value;
    else if (key == "--workers")
      workers = std::stoi(value);
    else if (key == "--max-seconds")
      max_seconds = std::stoi(value);
    else if (key == "--max-connections")
      max_connections = std::stol(value);
    else if (key == "--pause-us")
      pause_us = std::stoi(value);
    else {
      std::fprintf(stderr, "restart_load: unknown option %s\n", key.c_str());
      return 100;
    }
  }
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(static_cast<std::uint16_t>(port));
  // Loopback only: this is a test, not a tool to point at other machines.
  if (port <= 0 || ::inet_pton(AF_INET, host.c_str(), &address.sin_addr) != 1 ||
      (ntohl(address.sin_addr.s_addr) >> 24) != 127) {
    std::fprintf(stderr,
                 "usage: restart_load --port PORT [--host 127.x.y.z] [--workers N] "
                 "[--max-seconds S] [--max-connections N] [--pause-us US]\n");
    return 100;
  }

  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);  // workers inherit the mask

  std::vector<std::thread> threads;
  for (int i = 0; i < workers; ++i)
    threads.emplace_back(worker, address, i, max_connections, pause_us);
  std::fprintf(stderr, "restart_load: %d workers on %s:%d\n", workers, host.c_str(), port);

  timespec limit{max_seconds, 0};
  siginfo_t info;
  // Wakes on a signal or the time limit; workers stopping on their own (the
  // connection bound) also end the run.
  std::thread waiter([&] {
    sigtimedwait(&set, &info, &limit);
    stop.store(true);
  });
  for (auto& t : threads) t.join();
  if (!stop.load()) {
    stop.store(true);
    ::kill(::getpid(), SIGTERM);  // release the waiter
  }
  waiter.join();

  std::printf(
      "{\"connections\":%ld,\"ok\":%ld,\"refused\":%ld,\"reset\":%ld,\"failed\":%ld,"
      "\"pids\":%zu,\"errors\":[",
      connections.load(), count_of(Outcome::ok), count_of(Outcome::refused),
      count_of(Outcome::reset), count_of(Outcome::failed), pids.size());
  for (std::size_t i = 0; i < errors.size(); ++i)
    std::printf("%s%s", i ? "," : "", json_string(errors[i]).c_str());
  std::printf("]}\n");
  return 0;
}
