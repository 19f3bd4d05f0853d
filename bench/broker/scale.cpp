// SPDX-License-Identifier: LGPL-2.1-or-later
// Scale figures for fdbrokerd (issue 9): how puts, gets, a full paginated `list` and
// many idle connections behave as the broker holds 1k, 10k, ... entries. scale.sh
// starts the servers and runs the steps; report_scale.py makes the table. Each step
// prints one JSON line. Raw syscalls, no libfdbroker, as loadgen.cpp: the baseline
// server (baseline_server.cpp) faces the very same client code.
//
// Steps:
//   put    --from A --to B [--clients C]   puts of the names s/<A>..s/<B-1>, each with
//          one descriptor (the same /dev/null, sent again each time: the server gets
//          a new one per put), C connections with one put in flight each. puts/s over
//          the whole step, p50/p99 latency.
//   get    --entries N [--clients C] [--warmup S] [--duration S]   gets of names drawn
//          at random from s/0..s/<N-1>, C kept-open connections, one get in flight
//          each; each reply must carry exactly one fd. gets/s, p50/p99.
//   list   --expect N [--limit L]   `list` page after page (cursor) until the end, on
//          one connection; checks that N entries came back. Time for all the pages.
//   idle   --clients N [--idle S]   connects N clients (retrying while the listen
//          backlog is full), waits until the server holds them all (/proc/PID/fd),
//          leaves them idle S seconds, then each sends a `hello` at once and waits
//          for its answer (60 s at most). Counts the answered, the time from the
//          first send to the last answer, p50/p99 per client.
//   stats  one `stats` request, the reply printed as is.
// With --server-pid P every step also reports the server's VmRSS (kB) before and
// after it (/proc/P/status) and its descriptor count (/proc/P/fd).
//
// Why a separate program and not a mode of loadgen: these steps have a fixed amount
// of work (N puts, every page, N hellos) rather than a timed window, and check
// other replies; loadgen stays the small get-loop it is.

#include <fcntl.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <string_view>
#include <vector>

#include "bench_wire.hpp"

[[noreturn]] void bench::die(const char* what) {
  std::fprintf(stderr, "scale: %s: %s\n", what, std::strerror(errno));
  std::exit(111);
}

namespace {

using namespace bench;

constexpr std::uint64_t reply_timeout_ns = 60'000'000'000;

struct Options {
  std::string step;
  std::string socket_path;
  std::string label;
  long server_pid = 0;
  long from = 0, to = 0, entries = 0, expect = -1;
  int clients = 1;
  int limit = 1000;
  double warmup_s = 0.5, duration_s = 2.0, idle_s = 1.0;
  unsigned seed = 1;
};

[[noreturn]] void fail(const std::string& what) {
  std::fprintf(stderr, "scale: %s\n", what.c_str());
  std::exit(1);
}

[[noreturn]] void usage() {
  std::fprintf(stderr,
               "usage: scale put   --socket PATH --from A --to B [--clients C]\n"
               "       scale get   --socket PATH --entries N [--clients C] [--warmup S] "
               "[--duration S] [--seed K]\n"
               "       scale list  --socket PATH --expect N [--limit L]\n"
               "       scale idle  --socket PATH --clients N [--idle S]\n"
               "       scale stats --socket PATH\n"
               "  common: [--label L] [--server-pid PID]\n");
  std::exit(100);
}

// ------------------------------------------------------------------ the server's process

long rss_kb(long pid) {
  if (pid <= 0) return -1;
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(in, line))
    if (line.rfind("VmRSS:", 0) == 0) return std::atol(line.c_str() + 6);
  return -1;
}

long fd_count(long pid) {
  if (pid <= 0) return -1;
  std::error_code ec;
  long n = 0;
  for (std::filesystem::directory_iterator it("/proc/" + std::to_string(pid) + "/fd", ec), end;
       !ec && it != end; it.increment(ec))
    ++n;
  return ec ? -1 : n;
}

// -------------------------------------------------------------------------- messages

int connect_retrying(const sockaddr_un& addr, bool nonblocking) {
  for (;;) {
    int sock = try_connect(addr, nonblocking);
    if (sock >= 0) return sock;
    if (errno != EAGAIN) die("connect");
    ::usleep(1000);  // backlog full while the server accepts the others
  }
}

std::string name_of(long i) {
  char digits[16];
  std::snprintf(digits, sizeof(digits), "%06ld", i);  // fixed width: sorted = numeric order
  return std::string("s/") + digits;
}

// CPU time in seconds of a process, all its threads: the first field of each
// /proc/PID/task/TID/schedstat (nanoseconds on a CPU; /proc/PID/stat counts 10 ms
// ticks, too coarse for a step of 1000 puts); -1 if unknown.
double cpu_s(long pid) {
  if (pid <= 0) return -1;
  std::error_code ec;
  double ns = 0;
  bool any = false;
  for (std::filesystem::directory_iterator it("/proc/" + std::to_string(pid) + "/task", ec), end;
       !ec && it != end; it.increment(ec)) {
    std::ifstream in(it->path() / "schedstat");
    double on_cpu = 0;
    if (in >> on_cpu) {
      ns += on_cpu;
      any = true;
    }
  }
  return any ? ns / 1e9 : -1;
}

// The start of every step's JSON line: the step, the label, the server's state before.
struct Line {
  std::string text;
  double cpu_before;
  Line(const Options& o, long rss_before, long fds_before) : cpu_before(cpu_s(o.server_pid)) {
    text = "{\"step\":\"" + o.step + "\",\"label\":\"" + o.label + "\"";
    add("rss_kb_before", rss_before);
    add("fds_before", fds_before);
  }
  void start_cpu(const Options& o) { cpu_before = cpu_s(o.server_pid); }
  // The server's CPU time per request since the step began (or start_cpu): what a
  // request costs the server, whatever else the shared machine is doing.
  void add_cpu_per_request(const Options& o, std::uint64_t requests) {
    double after = cpu_s(o.server_pid);
    if (cpu_before >= 0 && after >= 0 && requests > 0)
      add("server_cpu_us", (after - cpu_before) * 1e6 / static_cast<double>(requests));
  }
  void add(const char* key, double value) {
    char number[64];
    std::snprintf(number, sizeof(number), "%.3f", value);
    text += std::string(",\"") + key + "\":" + number;
  }
  void add(const char* key, long value) {
    text += std::string(",\"") + key + "\":" + std::to_string(value);
  }
  // After the step's connections are closed: waits until the server has seen them
  // go (its fd count stays the same for 50 ms; 2 s at most), so that fds_after
  // counts what it holds, not our connections.
  void print(const Options& o) {
    long fds = fd_count(o.server_pid);
    for (int i = 0; i < 40 && fds >= 0; ++i) {
      ::usleep(50'000);
      long again = fd_count(o.server_pid);
      if (again == fds) break;
      fds = again;
    }
    add("rss_kb_after", rss_kb(o.server_pid));
    add("fds_after", fd_count(o.server_pid));
    std::printf("%s}\n", text.c_str());
    std::fflush(stdout);
  }
};

// ----------------------------------------------------- many connections, one in flight

// C kept-open connections driven by one epoll thread (see loadgen.cpp for why one
// thread): `next(i)` builds connection i's next request, `done(i, reply)` judges the
// reply; the loop stops when `next` has nothing more or the deadline passed.
class Pipeline {
 public:
  Pipeline(const Options& o, int nclients)
      : addr_(address_of(o.socket_path)), buffer_(max_message + 1) {
    epoll_ = ::epoll_create1(EPOLL_CLOEXEC);
    if (epoll_ < 0) die("epoll_create1");
    for (int i = 0; i < nclients; ++i) {
      int sock = connect_retrying(addr_, true);
      watch_input(epoll_, sock, static_cast<std::uint64_t>(i));
      socks_.push_back(sock);
    }
    started_.assign(socks_.size(), 0);
  }
  ~Pipeline() {
    for (int s : socks_) ::close(s);
    ::close(epoll_);
  }
  Pipeline(const Pipeline&) = delete;
  Pipeline& operator=(const Pipeline&) = delete;

  // next(i, ret_request, ret_fd) -> false when nothing is left for connection i;
  // done(i, text, reply, start_ns, end_ns). No new request after deadline_ns; fails
  // if no reply comes for 60 s. Returns the number of replies.
  template <typename Next, typename Done>
  std::uint64_t run(std::uint64_t deadline_ns, Next next, Done done) {
    std::size_t in_flight = 0;
    std::string request;
    auto issue = [&](std::size_t i) {
      int fd = -1;
      if (!next(i, request, fd)) return;
      started_[i] = now_ns();
      if (!send_message(socks_[i], request, fd)) die("sendmsg");
      ++in_flight;
    };
    for (std::size_t i = 0; i < socks_.size(); ++i) issue(i);
    std::uint64_t replies = 0;
    std::uint64_t progress = now_ns();  // when the last reply came
    epoll_event events[256];
    while (in_flight > 0) {
      if (now_ns() - progress > reply_timeout_ns) fail("no reply for 60 s");
      int n = wait_events(epoll_, events, 256, 1000);
      for (int e = 0; e < n; ++e) {
        auto i = static_cast<std::size_t>(events[e].data.u64);
        Reply reply = receive_reply(socks_[i], buffer_.data(), buffer_.size());
        if (reply.size < 0 && errno == EAGAIN) continue;
        if (reply.size <= 0)
          fail(reply.size == 0 ? "the server closed a connection" : "recvmsg failed");
        std::uint64_t end = now_ns();
        progress = end;
        --in_flight;
        ++replies;
        done(i, std::string_view(buffer_.data(), static_cast<std::size_t>(reply.size)), reply,
             started_[i], end);
        if (end < deadline_ns) issue(i);
      }
    }
    return replies;
  }

 private:
  sockaddr_un addr_;
  std::vector<int> socks_;
  std::vector<std::uint64_t> started_;
  std::vector<char> buffer_;
  int epoll_ = -1;
};

// ---------------------------------------------------------------------------- steps

int step_put(const Options& o) {
  if (o.to <= o.from) usage();
  int fd = ::open("/dev/null", O_RDWR | O_CLOEXEC);
  if (fd < 0) die("open /dev/null");
  Line line(o, rss_kb(o.server_pid), fd_count(o.server_pid));
  long next_index = o.from;
  std::vector<std::uint64_t> latencies;
  latencies.reserve(static_cast<std::size_t>(o.to - o.from));
  std::uint64_t errors = 0;
  std::string first_error;
  double seconds = 0;
  {
    Pipeline pipeline(o, o.clients);
    // Timed from here: connecting is not part of a put.
    line.start_cpu(o);
    std::uint64_t t0 = now_ns();
    std::uint64_t replies = pipeline.run(
        UINT64_MAX,
        [&](std::size_t, std::string& request, int& ret_fd) {
          if (next_index >= o.to) return false;
          request = R"({"op":"put","name":")" + name_of(next_index++) + R"("})";
          ret_fd = fd;
          return true;
        },
        [&](std::size_t, std::string_view text, const Reply& reply, std::uint64_t start,
            std::uint64_t end) {
          // The baseline answers a put as it answers anything: with its get reply.
          if (reply_ok(text) && !reply.truncated) {
            latencies.push_back(end - start);
          } else if (errors++ == 0) {
            first_error = std::string(text.substr(0, 300));
          }
        });
    seconds = static_cast<double>(now_ns() - t0) / 1e9;
    line.add_cpu_per_request(o, replies);
  }
  ::close(fd);
  line.add("from", o.from);
  line.add("to", o.to);
  line.add("clients", static_cast<long>(o.clients));
  line.add("seconds", seconds);
  line.add("puts_per_s", static_cast<double>(latencies.size()) / seconds);
  line.add("p50_us", percentile_us(latencies, 0.50));
  line.add("p99_us", percentile_us(latencies, 0.99));
  line.add("errors", static_cast<long>(errors));
  line.print(o);
  if (errors > 0) fail("put: " + std::to_string(errors) + " errors; first: " + first_error);
  return 0;
}

int step_get(const Options& o) {
  if (o.entries < 1) usage();
  Line line(o, rss_kb(o.server_pid), fd_count(o.server_pid));
  std::mt19937_64 random(o.seed);
  std::uniform_int_distribution<long> pick(0, o.entries - 1);
  std::vector<std::uint64_t> latencies;
  latencies.reserve(1 << 20);
  std::uint64_t errors = 0, id = 0;
  std::string first_error;
  std::uint64_t start_ns = now_ns() + static_cast<std::uint64_t>(o.warmup_s * 1e9);
  std::uint64_t end_ns = start_ns + static_cast<std::uint64_t>(o.duration_s * 1e9);
  std::uint64_t replies = Pipeline(o, o.clients)
                              .run(
                                  end_ns,
                                  [&](std::size_t, std::string& request, int&) {
                                    request = R"({"op":"get","name":")" + name_of(pick(random)) +
                                              R"(","id":)" + std::to_string(id++) + "}";
                                    return true;
                                  },
                                  [&](std::size_t, std::string_view text, const Reply& reply,
                                      std::uint64_t start, std::uint64_t end) {
                                    bool good =
                                        reply_ok(text) && reply.fds == 1 && !reply.truncated;
                                    if (!good && errors++ == 0)
                                      first_error = std::string(text.substr(0, 300));
                                    if (good && start >= start_ns && end < end_ns)
                                      latencies.push_back(end - start);
                                  });
  line.add("entries", o.entries);
  line.add("clients", static_cast<long>(o.clients));
  line.add("seconds", o.duration_s);
  line.add("gets_per_s", static_cast<double>(latencies.size()) / o.duration_s);
  line.add("p50_us", percentile_us(latencies, 0.50));
  line.add("p99_us", percentile_us(latencies, 0.99));
  line.add("errors", static_cast<long>(errors));
  line.add_cpu_per_request(o, replies);
  line.print(o);
  if (errors > 0) fail("get: " + std::to_string(errors) + " errors; first: " + first_error);
  return 0;
}

// The value of "cursor" in a list reply, or "" if there is none. The broker writes
// names as JSON strings without escapes (names are [A-Za-z0-9._:@/-]).
std::string cursor_of(std::string_view reply) {
  constexpr std::string_view key = "\"cursor\":\"";
  std::size_t pos = reply.rfind(key);
  if (pos == std::string_view::npos) return {};
  pos += key.size();
  std::size_t end = reply.find('"', pos);
  return end == std::string_view::npos ? std::string() : std::string(reply.substr(pos, end - pos));
}

// Entries in a list reply: each is an object that starts with its name.
long entries_in(std::string_view reply) {
  long n = 0;
  for (std::size_t pos = 0; (pos = reply.find("{\"name\":", pos)) != std::string_view::npos; ++pos)
    ++n;
  return n;
}

int step_list(const Options& o) {
  Line line(o, rss_kb(o.server_pid), fd_count(o.server_pid));
  sockaddr_un addr = address_of(o.socket_path);
  int sock = connect_retrying(addr, false);
  std::vector<char> buffer(max_message + 1);
  long pages = 0, listed = 0;
  std::size_t largest = 0;
  std::string cursor;
  std::uint64_t t0 = now_ns();
  do {
    std::string request = R"({"op":"list","prefix":"s/","limit":)" + std::to_string(o.limit);
    if (!cursor.empty()) request += R"(,"cursor":")" + cursor + "\"";
    request += "}";
    if (!send_message(sock, request, -1)) die("sendmsg");
    Reply reply = receive_reply(sock, buffer.data(), buffer.size());
    if (reply.size <= 0) fail("list: no reply");
    std::string_view text(buffer.data(), static_cast<std::size_t>(reply.size));
    if (!reply_ok(text) || reply.truncated || reply.fds != 0)
      fail("list: " + std::string(text.substr(0, 300)));
    ++pages;
    listed += entries_in(text);
    largest = std::max(largest, text.size());
    cursor = cursor_of(text);
  } while (!cursor.empty());
  double seconds = static_cast<double>(now_ns() - t0) / 1e9;
  ::close(sock);
  line.add("limit", static_cast<long>(o.limit));
  line.add("entries", listed);
  line.add("pages", pages);
  line.add("largest_reply", static_cast<long>(largest));
  line.add("seconds", seconds);
  line.add("ms", seconds * 1e3);
  line.print(o);
  if (o.expect >= 0 && listed != o.expect)
    fail("list: " + std::to_string(listed) + " entries, expected " + std::to_string(o.expect));
  return 0;
}

int step_idle(const Options& o) {
  sockaddr_un addr = address_of(o.socket_path);
  const long base_fds = fd_count(o.server_pid);
  Line line(o, rss_kb(o.server_pid), base_fds);
  const auto n = static_cast<std::size_t>(o.clients);
  std::vector<int> socks;
  socks.reserve(n);
  std::uint64_t t0 = now_ns();
  for (std::size_t i = 0; i < n; ++i) socks.push_back(connect_retrying(addr, true));
  double connect_s = static_cast<double>(now_ns() - t0) / 1e9;
  // Connected is not accepted: wait until the server holds every connection.
  if (o.server_pid > 0) {
    while (fd_count(o.server_pid) < base_fds + o.clients) {
      if (now_ns() - t0 > reply_timeout_ns)
        fail("idle: the server did not accept every connection in 60 s");
      ::usleep(10'000);
    }
  }
  double accepted_s = static_cast<double>(now_ns() - t0) / 1e9;
  ::usleep(static_cast<useconds_t>(o.idle_s * 1e6));
  long rss_idle = rss_kb(o.server_pid);
  long fds_idle = fd_count(o.server_pid);

  int epoll = ::epoll_create1(EPOLL_CLOEXEC);
  if (epoll < 0) die("epoll_create1");
  std::vector<std::uint64_t> sent(n, 0);
  std::vector<std::uint64_t> latencies;
  latencies.reserve(n);
  std::uint64_t errors = 0;
  std::string first_error;
  std::uint64_t t1 = now_ns();
  for (std::size_t i = 0; i < n; ++i) {
    watch_input(epoll, socks[i], i);
    sent[i] = now_ns();
    if (!send_message(socks[i], R"({"op":"hello","id":1})", -1)) die("sendmsg hello");
  }
  std::vector<char> buffer(max_message + 1);
  std::size_t waiting = n;
  epoll_event events[256];
  while (waiting > 0 && now_ns() - t1 < reply_timeout_ns) {
    int got = wait_events(epoll, events, 256, 1000);
    for (int e = 0; e < got; ++e) {
      auto i = static_cast<std::size_t>(events[e].data.u64);
      Reply reply = receive_reply(socks[i], buffer.data(), buffer.size());
      if (reply.size < 0 && errno == EAGAIN) continue;
      std::uint64_t end = now_ns();
      std::string_view text(buffer.data(),
                            reply.size > 0 ? static_cast<std::size_t>(reply.size) : 0);
      if (reply.size > 0 && reply_ok(text)) {
        latencies.push_back(end - sent[i]);
      } else if (errors++ == 0) {
        first_error =
            reply.size <= 0 ? "connection closed or failed" : std::string(text.substr(0, 300));
      }
      ::epoll_ctl(epoll, EPOLL_CTL_DEL, socks[i], nullptr);
      --waiting;
    }
  }
  double answer_s = static_cast<double>(now_ns() - t1) / 1e9;
  long rss_answered = rss_kb(o.server_pid);
  ::close(epoll);
  for (int s : socks) ::close(s);
  line.add("clients", static_cast<long>(o.clients));
  line.add("connect_s", connect_s);
  line.add("accepted_s", accepted_s);
  line.add("rss_kb_idle", rss_idle);
  line.add("fds_idle", fds_idle);
  line.add("answered", static_cast<long>(latencies.size()));
  line.add("unanswered", static_cast<long>(waiting));
  line.add("errors", static_cast<long>(errors));
  line.add("answer_s", answer_s);
  line.add("p50_us", percentile_us(latencies, 0.50));
  line.add("p99_us", percentile_us(latencies, 0.99));
  line.add("rss_kb_answered", rss_answered);
  line.print(o);
  if (latencies.size() != n)
    fail("idle: " + std::to_string(latencies.size()) + " of " + std::to_string(n) +
         " answered; first error: " + first_error);
  return 0;
}

int step_stats(const Options& o) {
  sockaddr_un addr = address_of(o.socket_path);
  int sock = connect_retrying(addr, false);
  if (!send_message(sock, R"({"op":"stats"})", -1)) die("sendmsg");
  std::vector<char> buffer(max_message + 1);
  Reply reply = receive_reply(sock, buffer.data(), buffer.size());
  ::close(sock);
  if (reply.size <= 0) fail("stats: no reply");
  std::printf("%.*s\n", static_cast<int>(reply.size), buffer.data());
  return reply_ok(std::string_view(buffer.data(), static_cast<std::size_t>(reply.size))) ? 0 : 1;
}

// Many clients need many descriptors: take the whole hard limit.
void raise_nofile() {
  rlimit rl{};
  if (::getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    ::setrlimit(RLIMIT_NOFILE, &rl);
  }
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) usage();
  Options o;
  o.step = argv[1];
  for (int i = 2; i < argc; ++i) {
    std::string_view arg = argv[i];
    if (i + 1 >= argc) usage();
    std::string value = argv[++i];
    auto number = [&]() -> long {
      long v = 0;
      auto [end, ec] = std::from_chars(value.data(), value.data() + value.size(), v);
      if (ec != std::errc() || end != value.data() + value.size()) usage();
      return v;
    };
    if (arg == "--socket") {
      o.socket_path = value;
    } else if (arg == "--label") {
      o.label = value;
    } else if (arg == "--server-pid") {
      o.server_pid = number();
    } else if (arg == "--from") {
      o.from = number();
    } else if (arg == "--to") {
      o.to = number();
    } else if (arg == "--entries") {
      o.entries = number();
    } else if (arg == "--expect") {
      o.expect = number();
    } else if (arg == "--clients") {
      o.clients = static_cast<int>(number());
    } else if (arg == "--limit") {
      o.limit = static_cast<int>(number());
    } else if (arg == "--seed") {
      o.seed = static_cast<unsigned>(number());
    } else if (arg == "--warmup") {
      o.warmup_s = std::atof(value.c_str());
    } else if (arg == "--duration") {
      o.duration_s = std::atof(value.c_str());
    } else if (arg == "--idle") {
      o.idle_s = std::atof(value.c_str());
    } else {
      usage();
    }
  }
  if (o.socket_path.empty() || o.clients < 1 || o.duration_s <= 0) usage();
  raise_nofile();
  if (o.step == "put") return step_put(o);
  if (o.step == "get") return step_get(o);
  if (o.step == "list") return step_list(o);
  if (o.step == "idle") return step_idle(o);
  if (o.step == "stats") return step_stats(o);
  usage();
}
