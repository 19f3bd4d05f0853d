// SPDX-License-Identifier: LGPL-2.1-or-later
// Ping-pong of fdbroker::sendfds/recvfds against the same ping-pong written with
// raw sendmsg()/recvmsg() (raw_pingpong.hpp), for 1, 16 and 253 descriptors on
// SOCK_SEQPACKET and SOCK_STREAM.
//
// One iteration is one round trip on a socketpair, driven by a single thread: A
// sends a payload and N descriptors, B receives them, sends the same back and
// closes its copies, A receives and closes. One thread alternating on both ends
// means no wake-ups, no scheduler and no second core in the measurement: only the
// four syscalls, the 2N closes and the user-space code around them, which is what
// the library can make faster or slower. (A two-thread layout mostly measures
// futex-free socket wake-ups and scheduling noise on a shared 2-core machine.)
//
// Four implementations of the same round trip:
//   raw    hand-written sendmsg/recvmsg, stack buffers only
//   try    try_sendfds + try_recvfds_into into reused buffers: the event-loop API
//   into   sendfds + recvfds_into into reused buffers: the throwing API, no allocation
//   throw  sendfds + recvfds returning received_message: the everyday API, which
//          allocates the payload string and the fd vector per message
// run_lib.sh / pingpong_ratios.py turn the JSON output into lib/raw ratios.
#include <benchmark/benchmark.h>
#include <fcntl.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <fdbroker/scm_rights.hpp>
#include <fdbroker/unique_fd.hpp>

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstring>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "raw_pingpong.hpp"

namespace {

using fdbroker::unique_fd;
using fdbroker_bench::raw_max_fds;

constexpr std::string_view payload = "ping-pong 16 byte";  // past std::string's SSO
constexpr std::size_t recv_bufsize = 64;

// A connected pair and N open descriptors (of /dev/null) to pass around.
struct fixture {
  unique_fd a, b;
  std::vector<unique_fd> owned;
  std::vector<int> fds;

  fixture(int type, std::size_t nfds) {
    int sv[2];
    if (::socketpair(AF_UNIX, type | SOCK_CLOEXEC, 0, sv) != 0)
      fdbroker_bench::raw_fail("socketpair");
    a.reset(sv[0]);
    b.reset(sv[1]);
    for (std::size_t i = 0; i < nfds; ++i) {
      owned.emplace_back(::open("/dev/null", O_RDONLY | O_CLOEXEC));
      if (!owned.back().valid()) fdbroker_bench::raw_fail("open /dev/null");
      fds.push_back(owned.back().get());
    }
  }
};

void check(bool ok, const char* what) {
  if (!ok) throw std::runtime_error(what);
}

// noinline, all of them: each round trip is one call in every variant, and callgrind
// can attribute instructions to it (bench/README.md, "Instruction counts").
[[gnu::noinline]] void round_trip_raw(fixture& f) {
  fdbroker_bench::raw_round_trip(f.a.get(), f.b.get(), payload.data(), payload.size(), f.fds.data(),
                                 f.fds.size());
}

// The event-loop API, as a loop would use it: buffers owned by the caller and reused.
struct try_state {
  std::array<char, recv_bufsize> buf{};
  std::vector<unique_fd> got;
  std::array<int, raw_max_fds> back{};
  try_state() { got.reserve(raw_max_fds); }
};

[[gnu::noinline]] void round_trip_try(fixture& f, try_state& s) {
  using namespace fdbroker;
  check(try_sendfds(f.a.get(), payload.data(), payload.size(), f.fds.data(), f.fds.size()).ok(),
        "try_sendfds a");
  auto info = try_recvfds_into(f.b.get(), s.buf.data(), s.buf.size(), s.got);
  check(info.ok(), "try_recvfds_into b");
  for (std::size_t i = 0; i < s.got.size(); ++i) s.back[i] = s.got[i].get();
  check(try_sendfds(f.b.get(), s.buf.data(), info->size, s.back.data(), s.got.size()).ok(),
        "try_sendfds b");
  s.got.clear();  // closes B's copies
  info = try_recvfds_into(f.a.get(), s.buf.data(), s.buf.size(), s.got);
  check(info.ok() && info->size == payload.size() && s.got.size() == f.fds.size(),
        "try_recvfds_into a");
  s.got.clear();
}

// The throwing API with the caller's buffers reused (recvfds_into): no allocation.
struct into_state {
  std::array<char, recv_bufsize> buf{};
  std::vector<unique_fd> got;
  std::vector<int> back;
  into_state() {
    got.reserve(raw_max_fds);
    back.reserve(raw_max_fds);
  }
};

[[gnu::noinline]] void round_trip_into(fixture& f, into_state& s) {
  using namespace fdbroker;
  sendfds(f.a.get(), payload, f.fds);
  recv_info info = recvfds_into(f.b.get(), s.buf.data(), s.buf.size(), s.got);
  s.back.clear();
  for (const auto& fd : s.got) s.back.push_back(fd.get());
  sendfds(f.b.get(), std::string_view(s.buf.data(), info.size), s.back);
  s.got.clear();  // closes B's copies
  info = recvfds_into(f.a.get(), s.buf.data(), s.buf.size(), s.got);
  check(info.size == payload.size() && s.got.size() == f.fds.size(), "recvfds_into a");
  s.got.clear();
}

// The everyday API: one received_message per call, as most callers write it.
[[gnu::noinline]] void round_trip_throw(fixture& f, std::vector<int>& back) {
  using namespace fdbroker;
  sendfds(f.a.get(), payload, f.fds);
  received_message at_b = recvfds(f.b.get(), recv_bufsize);
  back.clear();
  for (const auto& fd : at_b.fds) back.push_back(fd.get());
  sendfds(f.b.get(), at_b.payload, back);
  received_message at_a = recvfds(f.a.get(), recv_bufsize);
  check(at_a.payload.size() == payload.size() && at_a.fds.size() == f.fds.size(), "recvfds a");
}  // at_b and at_a close their descriptors here

void set_counters(benchmark::State& state, std::size_t nfds) {
  state.SetItemsProcessed(state.iterations());  // round trips
  state.counters["fds"] = static_cast<double>(nfds);
}

void bench_raw(benchmark::State& state, int type, std::size_t nfds) {
  fixture f(type, nfds);
  for (auto _ : state) round_trip_raw(f);
  set_counters(state, nfds);
}

void bench_try(benchmark::State& state, int type, std::size_t nfds) {
  fixture f(type, nfds);
  try_state s;
  for (auto _ : state) round_trip_try(f, s);
  set_counters(state, nfds);
}

void bench_into(benchmark::State& state, int type, std::size_t nfds) {
  fixture f(type, nfds);
  into_state s;
  for (auto _ : state) round_trip_into(f, s);
  set_counters(state, nfds);
}

void bench_throw(benchmark::State& state, int type, std::size_t nfds) {
  fixture f(type, nfds);
  std::vector<int> back;
  for (auto _ : state) round_trip_throw(f, back);
  set_counters(state, nfds);
}

// Paired measurement, for a ratio that survives a noisy shared machine: each
// iteration times one block of raw round trips and one block of library round
// trips back to back (alternating which goes first, so that neither always pays
// for the switch), and records lib/raw for that pair. Both blocks of a pair see
// the same machine state, so the load other processes put on the machine divides
// out; the median over all pairs is reported as the counter "ratio".
// Thread CPU time: time spent descheduled is not ours to count.
double thread_cpu_ns() {
  timespec t{};
  ::clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
  return static_cast<double>(t.tv_sec) * 1e9 + static_cast<double>(t.tv_nsec);
}

template <class RoundTrip>
double time_block(RoundTrip&& round_trip, int block) {
  double start = thread_cpu_ns();
  for (int i = 0; i < block; ++i) round_trip();
  return thread_cpu_ns() - start;
}

template <class LibRoundTrip>
void run_paired(benchmark::State& state, fixture& f, std::size_t nfds, LibRoundTrip&& lib) {
  // About 0.3 ms per block: long enough to dwarf the clock reads, short enough
  // for the pair to see the same conditions.
  const int block = nfds >= 100 ? 2 : nfds >= 10 ? 16 : 40;
  auto raw = [&f] { round_trip_raw(f); };
  std::vector<double> ratios;
  bool lib_first = false;
  for (auto _ : state) {
    double lib_ns, raw_ns;
    if (lib_first) {
      lib_ns = time_block(lib, block);
      raw_ns = time_block(raw, block);
    } else {
      raw_ns = time_block(raw, block);
      lib_ns = time_block(lib, block);
    }
    lib_first = !lib_first;
    ratios.push_back(lib_ns / raw_ns);
  }
  std::sort(ratios.begin(), ratios.end());
  state.counters["ratio"] = ratios.empty() ? 0.0 : ratios[ratios.size() / 2];
  state.counters["pairs"] = static_cast<double>(ratios.size());
  state.counters["fds"] = static_cast<double>(nfds);
}

void bench_paired_try(benchmark::State& state, int type, std::size_t nfds) {
  fixture f(type, nfds);
  try_state s;
  run_paired(state, f, nfds, [&] { round_trip_try(f, s); });
}

void bench_paired_into(benchmark::State& state, int type, std::size_t nfds) {
  fixture f(type, nfds);
  into_state s;
  run_paired(state, f, nfds, [&] { round_trip_into(f, s); });
}

void bench_paired_throw(benchmark::State& state, int type, std::size_t nfds) {
  fixture f(type, nfds);
  std::vector<int> back;
  run_paired(state, f, nfds, [&] { round_trip_throw(f, back); });
}

}  // namespace

int main(int argc, char** argv) {
  struct socket_type {
    const char* name;
    int type;
  };
  for (socket_type t :
       {socket_type{"seqpacket", SOCK_SEQPACKET}, socket_type{"stream", SOCK_STREAM}}) {
    for (std::size_t nfds : {std::size_t{1}, std::size_t{16}, std::size_t{253}}) {
      // Names are PingPong/<type>/<nfds>/<impl>: pingpong_ratios.py pairs them up.
      std::string base = std::string("PingPong/") + t.name + "/" + std::to_string(nfds) + "/";
      benchmark::RegisterBenchmark((base + "raw").c_str(), bench_raw, t.type, nfds);
      benchmark::RegisterBenchmark((base + "try").c_str(), bench_try, t.type, nfds);
      benchmark::RegisterBenchmark((base + "into").c_str(), bench_into, t.type, nfds);
      benchmark::RegisterBenchmark((base + "throw").c_str(), bench_throw, t.type, nfds);
      std::string paired = std::string("Paired/") + t.name + "/" + std::to_string(nfds) + "/";
      benchmark::RegisterBenchmark((paired + "try").c_str(), bench_paired_try, t.type, nfds);
      benchmark::RegisterBenchmark((paired + "into").c_str(), bench_paired_into, t.type, nfds);
      benchmark::RegisterBenchmark((paired + "throw").c_str(), bench_paired_throw, t.type, nfds);
    }
  }
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
