// SPDX-License-Identifier: LGPL-2.1-or-later
// Load generator for fdbrokerd and the baseline server: N clients each send
// {"op":"get","name":...,"id":k}, wait for the reply, close the fd it carried and
// repeat. Prints one JSON line per run (gets/s, p50/p99 latency, CPU used by the
// server, by the generator and by everything else on the machine); run.sh runs it
// against both servers and report.py turns the lines into the table.
//
// Why one thread driving many connections through epoll (and not a thread per
// client): the machines have 2 cores and the server under test is single-threaded,
// so it gets one core and the generator the other. A thread per client would make 64
// threads fight the server for its core, and we would measure the scheduler. With
// epoll a single thread keeps all N requests in flight and picks up whichever reply
// comes first; `--threads` can spread connections over more threads to check that
// the generator is not the limit (see `loadgen_cpu` in the output).
//
// Modes:
//   keepalive  N connections opened before the clock starts, kept open.
//   connect    N clients each connect, get, close, and start over (connect-get-close);
//              latency counts from socket() to the reply.
//
// Usage:
//   loadgen --socket PATH [--mode keepalive|connect] [--clients N] [--threads T]
//           [--warmup S] [--duration S] [--name NAME] [--label L] [--server-pid PID]
//   loadgen --socket PATH --put NAME [--fd-path FILE]   store an entry (raw protocol)
//   loadgen --socket PATH --show [--name NAME]          one get, print the reply

#include <fcntl.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <charconv>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "bench_wire.hpp"

[[noreturn]] void bench::die(const char* what) {
  std::fprintf(stderr, "loadgen: %s: %s\n", what, std::strerror(errno));
  std::exit(111);
}

namespace {

using namespace bench;

struct Options {
  std::string socket_path;
  std::string mode = "keepalive";
  std::string name = "bench";
  std::string label;
  std::string put_name;
  std::string fd_path = "/dev/null";
  bool show = false;
  int clients = 1;
  int threads = 1;
  double warmup_s = 1.0;
  double duration_s = 3.0;
  long server_pid = 0;
};

[[noreturn]] void usage() {
  std::fprintf(stderr,
               "usage: loadgen --socket PATH [--mode keepalive|connect] [--clients N]\n"
               "               [--threads T] [--warmup S] [--duration S] [--name NAME]\n"
               "               [--label L] [--server-pid PID]\n"
               "       loadgen --socket PATH --put NAME [--fd-path FILE]\n"
               "       loadgen --socket PATH --show [--name NAME]\n");
  std::exit(100);
}

// What one worker thread saw inside the measured window.
struct Tally {
  std::vector<std::uint64_t> latencies_ns;
  std::uint64_t errors = 0;           // error replies, wrong fd count, dropped connections
  std::uint64_t connect_retries = 0;  // EAGAIN from connect(): backlog full
  std::string first_error;
};

struct Window {
  std::atomic<std::uint64_t> start_ns{0};
  std::atomic<std::uint64_t> end_ns{0};
};

class Worker {
 public:
  Worker(const Options& options, int nclients, const Window& window)
      : options_(options),
        window_(window),
        addr_(address_of(options.socket_path)),
        clients_(static_cast<std::size_t>(nclients)),
        buffer_(max_message + 1) {
    epoll_ = ::epoll_create1(EPOLL_CLOEXEC);
    if (epoll_ < 0) die("epoll_create1");
    request_prefix_ = R"({"op":"get","name":")" + options.name + R"(","id":)";
    tally_.latencies_ns.reserve(1 << 20);
  }
  Worker(const Worker&) = delete;
  Worker& operator=(const Worker&) = delete;
  ~Worker() {
    for (Client& c : clients_)
      if (c.sock >= 0) ::close(c.sock);
    ::close(epoll_);
  }

  // keepalive: opens every connection now, before the clock starts.
  void open_connections() {
    if (options_.mode != "keepalive") return;
    for (std::size_t i = 0; i < clients_.size(); ++i) {
      for (;;) {
        int sock = try_connect(addr_, true);
        if (sock >= 0) {
          adopt(i, sock);
          break;
        }
        if (errno != EAGAIN) die("connect");
        ::usleep(1000);  // backlog full while the server accepts the others
      }
    }
  }

  void run() {
    const bool keepalive = options_.mode == "keepalive";
    for (std::size_t i = 0; i < clients_.size(); ++i) {
      if (keepalive) {
        send_get(i);
      } else {
        start_connect(i);
      }
    }
    constexpr int max_events = 256;
    epoll_event events[max_events];
    const std::uint64_t end = window_.end_ns.load();
    for (;;) {
      std::uint64_t now = now_ns();
      if (now >= end) break;
      retry_pending_connects();
      int timeout_ms = pending_.empty() ? static_cast<int>((end - now) / 1'000'000 + 1) : 1;
      int n = wait_events(epoll_, events, max_events, timeout_ms);
      for (int e = 0; e < n; ++e) on_readable(events[e].data.u64);
    }
  }

  Tally& tally() { return tally_; }

 private:
  struct Client {
    int sock = -1;
    std::uint64_t started_ns = 0;  // when the request (or, connect mode, the socket) began
    std::uint64_t next_id = 0;
  };

  void adopt(std::size_t i, int sock) {
    clients_[i].sock = sock;
    watch_input(epoll_, sock, i);
  }

  void drop(std::size_t i) {
    ::close(clients_[i].sock);  // also leaves the epoll set
    clients_[i].sock = -1;
  }

  void send_get(std::size_t i) {
    Client& c = clients_[i];
    char request[512];
    std::memcpy(request, request_prefix_.data(), request_prefix_.size());
    char* end = request + request_prefix_.size();
    end = std::to_chars(end, request + sizeof(request) - 1, c.next_id++).ptr;
    *end++ = '}';
    if (options_.mode == "keepalive") c.started_ns = now_ns();
    if (!send_message(c.sock, std::string_view(request, end - request), nullptr, 0)) {
      fail(i, std::string("sendmsg: ") + std::strerror(errno));
    }
  }

  // connect mode: a fresh socket per get. Latency includes socket()+connect().
  void start_connect(std::size_t i) {
    clients_[i].started_ns = now_ns();
    int sock = try_connect(addr_, true);
    if (sock < 0) {
      if (errno != EAGAIN) die("connect");
      ++tally_.connect_retries;
      pending_.push_back(i);
      return;
    }
    adopt(i, sock);
    send_get(i);
  }

  void retry_pending_connects() {
    if (pending_.empty()) return;
    std::vector<std::size_t> retry;
    retry.swap(pending_);
    for (std::size_t i : retry) {
      std::uint64_t began = clients_[i].started_ns;
      start_connect(i);
      clients_[i].started_ns = began;  // waiting for the backlog is part of the latency
    }
  }

  void on_readable(std::size_t i) {
    Client& c = clients_[i];
    Reply reply = receive_reply(c.sock, buffer_.data(), buffer_.size());
    std::uint64_t done = now_ns();
    if (reply.size < 0 && errno == EAGAIN) return;
    if (reply.size <= 0) {
      fail(i, reply.size == 0 ? "server closed the connection"
                              : std::string("recvmsg: ") + std::strerror(errno));
      return;
    }
    std::string_view text(buffer_.data(), static_cast<std::size_t>(reply.size));
    bool good = !reply.truncated && reply.fds == 1 && reply_ok(text);
    if (done >= window_.start_ns.load(std::memory_order_relaxed) &&
        done < window_.end_ns.load(std::memory_order_relaxed)) {
      if (good) {
        tally_.latencies_ns.push_back(done - c.started_ns);
      } else {
        ++tally_.errors;
      }
    }
    if (!good && tally_.first_error.empty()) {
      tally_.first_error =
          std::string(text.substr(0, 300)) + " (fds: " + std::to_string(reply.fds) + ")";
    }
    if (options_.mode == "keepalive") {
      send_get(i);
    } else {
      drop(i);
      start_connect(i);
    }
  }

  // A broken connection counts as an error; the client starts over on a new one.
  void fail(std::size_t i, const std::string& why) {
    ++tally_.errors;
    if (tally_.first_error.empty()) tally_.first_error = why;
    if (clients_[i].sock >= 0) drop(i);
    if (options_.mode == "keepalive") {
      int sock = try_connect(addr_, true);
      if (sock < 0) die("reconnect");
      adopt(i, sock);
      send_get(i);
    } else {
      start_connect(i);
    }
  }

  const Options& options_;
  const Window& window_;
  sockaddr_un addr_;
  std::vector<Client> clients_;
  std::vector<char> buffer_;
  std::vector<std::size_t> pending_;
  std::string request_prefix_;
  Tally tally_;
  int epoll_ = -1;
};

// CPU time in seconds (user+system) of a process, from /proc/PID/stat; -1 if gone.
double process_cpu_s(long pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string stat;
  if (!std::getline(in, stat)) return -1;
  // Fields after the command name, which may contain spaces: find the last ')'.
  std::istringstream rest(stat.substr(stat.rfind(')') + 2));
  std::string field;
  double utime = 0, stime = 0;
  for (int n = 3; rest >> field; ++n) {
    if (n == 14) utime = std::stod(field);
    if (n == 15) {
      stime = std::stod(field);
      break;
    }
  }
  return (utime + stime) / static_cast<double>(::sysconf(_SC_CLK_TCK));
}

double self_cpu_s() {
  rusage ru{};
  ::getrusage(RUSAGE_SELF, &ru);
  return static_cast<double>(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
         static_cast<double>(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

// Busy CPU time of the whole machine in seconds (all cores), from /proc/stat.
double machine_busy_s() {
  std::ifstream in("/proc/stat");
  std::string cpu;
  in >> cpu;
  double total = 0, idle = 0, value;
  for (int n = 0; n < 8 && in >> value; ++n) {
    total += value;
    if (n == 3 || n == 4) idle += value;  // idle, iowait
  }
  return (total - idle) / static_cast<double>(::sysconf(_SC_CLK_TCK));
}

struct CpuSample {
  double server, self, machine;
};

CpuSample sample_cpu(long server_pid) {
  return {server_pid > 0 ? process_cpu_s(server_pid) : -1, self_cpu_s(), machine_busy_s()};
}

void sleep_until(std::uint64_t deadline_ns) {
  timespec ts{static_cast<time_t>(deadline_ns / 1'000'000'000u),
              static_cast<long>(deadline_ns % 1'000'000'000u)};
  while (::clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, nullptr) == EINTR) {
  }
}

std::string json_string(const std::string& s) {
  std::string out = "\"";
  for (char ch : s) {
    if (ch == '"' || ch == '\\') {
      out += '\\';
      out += ch;
    } else if (static_cast<unsigned char>(ch) < 0x20) {
      out += ' ';
    } else {
      out += ch;
    }
  }
  return out + "\"";
}

int run_load(const Options& options) {
  Window window;
  std::vector<std::unique_ptr<Worker>> workers;
  for (int t = 0; t < options.threads; ++t) {
    int share = options.clients / options.threads + (t < options.clients % options.threads);
    if (share > 0) workers.push_back(std::make_unique<Worker>(options, share, window));
  }
  for (auto& w : workers) w->open_connections();

  std::uint64_t t0 = now_ns();
  window.start_ns = t0 + static_cast<std::uint64_t>(options.warmup_s * 1e9);
  window.end_ns = window.start_ns + static_cast<std::uint64_t>(options.duration_s * 1e9);
  std::vector<std::thread> threads;
  for (auto& w : workers) threads.emplace_back([&w] { w->run(); });
  sleep_until(window.start_ns);
  CpuSample before = sample_cpu(options.server_pid);
  sleep_until(window.end_ns);
  CpuSample after = sample_cpu(options.server_pid);
  for (auto& t : threads) t.join();

  std::vector<std::uint64_t> latencies;
  std::uint64_t errors = 0, retries = 0;
  std::string first_error;
  for (auto& w : workers) {
    Tally& t = w->tally();
    latencies.insert(latencies.end(), t.latencies_ns.begin(), t.latencies_ns.end());
    errors += t.errors;
    retries += t.connect_retries;
    if (first_error.empty()) first_error = t.first_error;
  }
  const double seconds = options.duration_s;
  const double server_cpu = options.server_pid > 0 && before.server >= 0 && after.server >= 0
                                ? (after.server - before.server) / seconds
                                : -1;
  const double self_cpu = (after.self - before.self) / seconds;
  const double machine = (after.machine - before.machine) / seconds;
  const double other = machine - self_cpu - std::max(server_cpu, 0.0);
  const std::size_t gets = latencies.size();
  double p50 = percentile_us(latencies, 0.50);
  double p99 = percentile_us(latencies, 0.99);
  std::printf(
      "{\"label\":%s,\"mode\":%s,\"clients\":%d,\"threads\":%d,\"seconds\":%.3f,"
      "\"gets\":%zu,\"gets_per_s\":%.1f,\"p50_us\":%.2f,\"p99_us\":%.2f,\"errors\":%llu,"
      "\"connect_retries\":%llu,\"server_cpu\":%.3f,\"loadgen_cpu\":%.3f,"
      "\"other_cpu\":%.3f,\"first_error\":%s}\n",
      json_string(options.label).c_str(), json_string(options.mode).c_str(), options.clients,
      options.threads, seconds, gets, static_cast<double>(gets) / seconds, p50, p99,
      static_cast<unsigned long long>(errors), static_cast<unsigned long long>(retries), server_cpu,
      self_cpu, other, json_string(first_error).c_str());
  if (!first_error.empty())
    std::fprintf(stderr, "loadgen: %s: first error: %s\n", options.label.c_str(),
                 first_error.c_str());
  return errors == 0 ? 0 : 1;
}

// A blocking request/reply on a fresh connection, for --put and --show.
std::string exchange(const Options& options, const std::string& request, const int* fds,
                     std::size_t nfds, std::size_t& ret_fds) {
  sockaddr_un addr = address_of(options.socket_path);
  int sock = try_connect(addr, false);
  if (sock < 0) die("connect");
  if (!send_message(sock, request, fds, nfds)) die("sendmsg");
  std::vector<char> buffer(max_message + 1);
  Reply reply = receive_reply(sock, buffer.data(), buffer.size());
  if (reply.size < 0) die("recvmsg");
  ::close(sock);
  ret_fds = reply.fds;
  return std::string(buffer.data(), static_cast<std::size_t>(reply.size));
}

int put_entry(const Options& options) {
  int fd = ::open(options.fd_path.c_str(), O_RDWR | O_CLOEXEC);
  if (fd < 0) die("open --fd-path");
  std::string request =
      R"({"op":"put","id":"loadgen","replace":true,"name":")" + options.put_name + "\"}";
  std::size_t fds = 0;
  std::string reply = exchange(options, request, &fd, 1, fds);
  ::close(fd);  // the broker holds its own copy now
  std::printf("%s\n", reply.c_str());
  return reply_ok(reply) ? 0 : 1;
}

int show_get(const Options& options) {
  std::string request = R"({"op":"get","name":")" + options.name + R"(","id":1})";
  std::size_t fds = 0;
  std::string reply = exchange(options, request, nullptr, 0, fds);
  std::printf("%zu bytes, %zu fd(s): %s\n", reply.size(), fds, reply.c_str());
  return reply_ok(reply) && fds == 1 ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  Options options;
  for (int i = 1; i < argc; ++i) {
    std::string_view arg = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) usage();
      return argv[++i];
    };
    if (arg == "--socket") {
      options.socket_path = value();
    } else if (arg == "--mode") {
      options.mode = value();
    } else if (arg == "--clients") {
      options.clients = std::atoi(value().c_str());
    } else if (arg == "--threads") {
      options.threads = std::atoi(value().c_str());
    } else if (arg == "--warmup") {
      options.warmup_s = std::atof(value().c_str());
    } else if (arg == "--duration") {
      options.duration_s = std::atof(value().c_str());
    } else if (arg == "--name") {
      options.name = value();
    } else if (arg == "--label") {
      options.label = value();
    } else if (arg == "--server-pid") {
      options.server_pid = std::atol(value().c_str());
    } else if (arg == "--put") {
      options.put_name = value();
    } else if (arg == "--fd-path") {
      options.fd_path = value();
    } else if (arg == "--show") {
      options.show = true;
    } else {
      usage();
    }
  }
  if (options.socket_path.empty() || options.clients < 1 || options.threads < 1 ||
      options.duration_s <= 0 || options.warmup_s < 0 ||
      (options.mode != "keepalive" && options.mode != "connect"))
    usage();
  if (!options.put_name.empty()) return put_entry(options);
  if (options.show) return show_get(options);
  return run_load(options);
}
