// SPDX-License-Identifier: LGPL-2.1-or-later
// Limits at accept: connections per uid (limits.max_connections_per_uid) with
// real, different uids, and a broker out of descriptors (RLIMIT_NOFILE lowered
// under it with prlimit): connected clients served, new ones refused cleanly, no
// busy loop, recovery.
#include <sys/resource.h>

#include <fstream>
#include <sstream>

#include "broker_harness.hpp"
#include "test_util.hpp"

using namespace fdbroker;
using namespace fdbroker::test;

namespace {

constexpr uid_t nobody = 65534;
constexpr uid_t other = 65533;

// `n` connections to the broker made by a child process running as `uid` (and
// gid `uid`, no groups), handed back over SCM_RIGHTS: the broker saw `uid`
// connect (SO_PEERCRED is recorded at connect()), and the test holds them.
std::vector<unique_fd> connect_as(const BrokerProcess& broker, uid_t uid, std::size_t n) {
  int sv[2];
  if (::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0)
    throw std::runtime_error("socketpair");
  unique_fd here(sv[0]);
  unique_fd there(sv[1]);
  pid_t pid = ::fork();
  if (pid == 0) {
    if (::setgroups(0, nullptr) < 0 || ::setresgid(uid, uid, uid) < 0 ||
        ::setresuid(uid, uid, uid) < 0) {
      ::_exit(1);
    }
    std::vector<unique_fd> socks;
    std::vector<int> batch;
    try {
      for (std::size_t i = 0; i < n; ++i) {
        socks.push_back(broker.connect());
        batch.push_back(socks.back().get());
        if (batch.size() == max_fds_per_message || i + 1 == n) {
          sendfds(there.get(), "c", batch);
          batch.clear();
        }
      }
    } catch (const std::exception&) {
      ::_exit(2);
    }
    ::_exit(0);
  }
  there.reset();
  std::vector<unique_fd> got;
  while (got.size() < n) {
    auto m = recvfds(here.get(), 16, max_fds_per_message);
    if (m.empty()) break;
    for (auto& fd : m.fds) got.push_back(std::move(fd));
  }
  int status = 0;
  ::waitpid(pid, &status, 0);
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0 || got.size() != n) {
    throw std::runtime_error("connecting as uid " + std::to_string(uid) + " failed");
  }
  return got;
}

unique_fd connect_one_as(const BrokerProcess& broker, uid_t uid) {
  return std::move(connect_as(broker, uid, 1)[0]);
}

// The broker closed `sock` without a reply: end of stream (ECONNRESET first if
// the client had sent a request before the broker closed it unread).
::testing::AssertionResult closed_unanswered(int sock, int timeout_ms = 3000) {
  pollfd pfd{sock, POLLIN, 0};
  if (::poll(&pfd, 1, timeout_ms) != 1)
    return ::testing::AssertionFailure() << "still open after " << timeout_ms << " ms";
  char buf[65537];
  ssize_t n = ::recv(sock, buf, sizeof buf, MSG_DONTWAIT);
  if (n < 0 && errno == ECONNRESET) n = ::recv(sock, buf, sizeof buf, MSG_DONTWAIT);
  if (n == 0) return ::testing::AssertionSuccess();
  if (n > 0)
    return ::testing::AssertionFailure()
           << "got a reply: " << std::string(buf, static_cast<std::size_t>(n));
  return ::testing::AssertionFailure() << "recv: " << std::strerror(errno);
}

// Sends `payload` unless the broker closed the connection first (EPIPE): a
// refused client may find out either way.
void send_unless_closed(int sock, const std::string& payload) {
  if (::send(sock, payload.data(), payload.size(), MSG_NOSIGNAL) < 0 && errno != EPIPE &&
      errno != ECONNRESET) {
    throw std::system_error(errno, std::system_category(), "send");
  }
}

bool answers_hello(int sock) {
  try {
    return call(sock, {{"op", "hello"}}).ok();
  } catch (const std::exception&) {
    return false;
  }
}

// Root's view of the per-uid connection limit: what `stats` reports as the limit
// and as refused so far. The root connection is closed again on return.
void expect_per_uid_stats(const BrokerProcess& broker, int limit, int refused) {
  auto root = broker.connect();
  auto stats = call(root.get(), {{"op", "stats"}});
  EXPECT_EQ(stats.body["connections"]["limit_per_uid"], limit) << stats.raw;
  EXPECT_EQ(stats.body["connections"]["refused_per_uid"], refused) << stats.raw;
}

// utime + stime of `pid`, in seconds.
double cpu_seconds(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string stat((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::istringstream fields(stat.substr(stat.rfind(')') + 2));
  std::string f;
  std::uint64_t ticks = 0;
  for (int i = 3; i <= 15 && fields >> f; ++i) {
    if (i == 14 || i == 15) ticks += std::stoull(f);
  }
  return static_cast<double>(ticks) / static_cast<double>(::sysconf(_SC_CLK_TCK));
}

// Sets the broker's RLIMIT_NOFILE soft limit for the scope's duration.
class SoftLimit {
 public:
  SoftLimit(pid_t pid, rlim_t soft) : pid_(pid) {
    if (::prlimit(pid_, RLIMIT_NOFILE, nullptr, &old_) < 0) throw std::runtime_error("prlimit");
    rlimit tight = old_;
    tight.rlim_cur = soft;
    if (::prlimit(pid_, RLIMIT_NOFILE, &tight, nullptr) < 0) throw std::runtime_error("prlimit");
  }
  ~SoftLimit() { restore(); }
  SoftLimit(const SoftLimit&) = delete;
  SoftLimit& operator=(const SoftLimit&) = delete;
  void restore() {
    if (pid_ > 0) ::prlimit(pid_, RLIMIT_NOFILE, &old_, nullptr);
    pid_ = -1;
  }

 private:
  pid_t pid_;
  rlimit old_{};
};

}  // namespace

TEST(BrokerLimits, AUidAtItsConnectionLimitDoesNotStarveOthers) {
  BrokerProcess broker(json{{"limits", {{"max_connections_per_uid", 4}}}});
  std::size_t baseline = broker.fd_count();
  auto held = connect_as(broker, nobody, 4);
  for (auto& s : held) ASSERT_TRUE(answers_hello(s.get()));
  ASSERT_TRUE(broker.settles_at(baseline + 4));

  // Over the limit: accepted and closed at once, unanswered, whether the client
  // waits for the broker or sends first.
  auto quiet = connect_one_as(broker, nobody);
  EXPECT_TRUE(closed_unanswered(quiet.get()));
  // (The broker is stopped meanwhile so that the request is surely sent before
  // it accepts the connection.)
  ::kill(broker.pid(), SIGSTOP);
  auto eager = connect_one_as(broker, nobody);
  send_raw(eager.get(), json({{"op", "hello"}, {"id", "eager"}}).dump());
  ::kill(broker.pid(), SIGCONT);
  EXPECT_TRUE(closed_unanswered(eager.get()));
  EXPECT_TRUE(broker.settles_at(baseline + 4));  // nothing kept of them

  // Another uid is served, up to its own allowance, and so is root beyond it.
  auto others = connect_as(broker, other, 4);
  for (auto& s : others) EXPECT_TRUE(answers_hello(s.get()));
  std::vector<unique_fd> root;
  for (int i = 0; i < 6; ++i) {
    root.push_back(broker.connect());
    EXPECT_TRUE(answers_hello(root.back().get()));
  }
  // The uid at its limit is still served on the connections it holds.
  for (auto& s : held) EXPECT_TRUE(answers_hello(s.get()));
  EXPECT_TRUE(broker.settles_at(baseline + 4 + 4 + 6));

  // One of its connections closes: it may connect again, once.
  held.pop_back();
  ASSERT_TRUE(broker.settles_at(baseline + 4 + 4 + 6 - 1));
  auto again = connect_one_as(broker, nobody);
  EXPECT_TRUE(answers_hello(again.get()));
  EXPECT_TRUE(closed_unanswered(connect_one_as(broker, nobody).get()));

  auto stats = call(root[0].get(), {{"op", "stats"}});
  EXPECT_EQ(stats.body["connections"]["limit_per_uid"], 4) << stats.raw;
  EXPECT_EQ(stats.body["connections"]["refused_per_uid"], 3) << stats.raw;
  EXPECT_EQ(stats.body["connections"]["current"], 4 + 4 + 6) << stats.raw;

  held.clear();
  others.clear();
  root.clear();
  again.reset();
  EXPECT_TRUE(broker.settles_at(baseline));
}

TEST(BrokerLimits, PerUidLimitDefaultsToTheLargerOf64AndAQuarterOfMaxConnections) {
  {
    BrokerProcess broker(json{{"limits", {{"max_connections", 1000}}}});
    auto c = broker.connect();
    EXPECT_EQ(call(c.get(), {{"op", "stats"}}).body["connections"]["limit_per_uid"], 250);
  }
  BrokerProcess broker(json{{"limits", {{"max_connections", 100}}}});
  std::size_t baseline = broker.fd_count();
  auto held = connect_as(broker, nobody, 64);
  for (auto& s : held) ASSERT_TRUE(answers_hello(s.get()));
  EXPECT_TRUE(closed_unanswered(connect_one_as(broker, nobody).get()));
  expect_per_uid_stats(broker, 64, 1);
  held.clear();
  EXPECT_TRUE(broker.settles_at(baseline));
}

TEST(BrokerLimits, ZeroTurnsThePerUidLimitOff) {
  BrokerProcess broker(
      json{{"limits", {{"max_connections", 100}, {"max_connections_per_uid", 0}}}});
  std::size_t baseline = broker.fd_count();
  auto held = connect_as(broker, nobody, 80);  // beyond the default of 64
  for (auto& s : held) ASSERT_TRUE(answers_hello(s.get()));
  EXPECT_TRUE(broker.settles_at(baseline + 80));
  expect_per_uid_stats(broker, 0, 0);
  held.clear();
  EXPECT_TRUE(broker.settles_at(baseline));
}

TEST(BrokerLimits, AReloadChangesThePerUidLimitForNewConnections) {
  BrokerProcess broker(json{{"limits", {{"max_connections_per_uid", 3}}}});
  std::size_t baseline = broker.fd_count();
  auto held = connect_as(broker, nobody, 3);
  for (auto& s : held) ASSERT_TRUE(answers_hello(s.get()));
  EXPECT_TRUE(closed_unanswered(connect_one_as(broker, nobody).get()));
  broker.write_config(json{{"socket", {{"path", broker.socket_path()}, {"mode", "0666"}}},
                           {"log_level", "warning"},
                           {"limits", {{"max_connections_per_uid", 2}}}});
  broker.reload();
  // Those it holds stay; a new one is refused until the uid is below the new limit.
  for (auto& s : held) EXPECT_TRUE(answers_hello(s.get()));
  held.pop_back();
  ASSERT_TRUE(broker.settles_at(baseline + 2));
  EXPECT_TRUE(closed_unanswered(connect_one_as(broker, nobody).get()));
  held.pop_back();
  ASSERT_TRUE(broker.settles_at(baseline + 1));
  auto next = connect_one_as(broker, nobody);
  EXPECT_TRUE(answers_hello(next.get()));
  held.clear();
  next.reset();
  EXPECT_TRUE(broker.settles_at(baseline));
}

TEST(BrokerLimits, OutOfDescriptorsConnectedClientsAreServedAndNewOnesRefused) {
  BrokerProcess broker;
  auto a = broker.connect();
  auto b = broker.connect();
  auto held = pipe_pair();
  ASSERT_TRUE(call(a.get(), {{"op", "put"}, {"name", "e"}}, {held.write.get()}).ok());
  held.write.reset();
  ASSERT_TRUE(answers_hello(b.get()));
  std::size_t baseline = broker.fd_count();

  SoftLimit full(broker.pid(), broker.lowest_free_fd());  // no fd can be allocated
  // New clients see the connection end without a reply, at once: none is left
  // hanging in the backlog.
  for (int i = 0; i < 5; ++i) {
    auto c = broker.connect();
    send_unless_closed(c.get(), json({{"op", "hello"}, {"id", i}}).dump());
    EXPECT_TRUE(closed_unanswered(c.get())) << i;
  }
  // Connected clients are served: replies, and descriptors handed out.
  EXPECT_TRUE(answers_hello(a.get()));
  auto got = call(b.get(), {{"op", "get"}, {"name", "e"}});
  ASSERT_TRUE(got.ok()) << got.raw;
  EXPECT_EQ(got.fds.size(), 1u);
  got.fds.clear();
  // A put whose descriptor the broker has no room for fails, and closes it.
  auto p = pipe_pair();
  auto refused = call(a.get(), {{"op", "put"}, {"name", "x"}}, {p.write.get()});
  EXPECT_EQ(refused.error(), "EMSGSIZE") << refused.raw;
  p.write.reset();
  EXPECT_TRUE(reaches_eof(p.read.get()));
  EXPECT_TRUE(broker.settles_at(baseline));

  // No busy loop: clients keep knocking (one every 100 ms), each refused, and the
  // broker's CPU time stays far below a spinning loop's (generous bound: 20% of
  // one CPU over 2 s).
  double cpu_before = cpu_seconds(broker.pid());
  auto start = std::chrono::steady_clock::now();
  int knocked = 0;
  while (std::chrono::steady_clock::now() - start < std::chrono::seconds(2)) {
    auto c = broker.connect();
    EXPECT_TRUE(closed_unanswered(c.get()));
    ++knocked;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  double cpu = cpu_seconds(broker.pid()) - cpu_before;
  double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  EXPECT_LT(cpu, 0.2 * wall) << cpu << " s of CPU in " << wall << " s";
  RecordProperty("broker_cpu_ms", static_cast<int>(cpu * 1000));
  RecordProperty("wall_ms", static_cast<int>(wall * 1000));
  auto stats = call(a.get(), {{"op", "stats"}});
  EXPECT_EQ(stats.body["connections"]["refused_no_fds"], 5 + knocked) << stats.raw;
  EXPECT_TRUE(broker.settles_at(baseline));

  // Descriptors free again: new clients are served.
  full.restore();
  auto late = broker.connect();
  EXPECT_TRUE(answers_hello(late.get()));
  ASSERT_TRUE(call(late.get(), {{"op", "put"}, {"name", "x"}}, {p.read.get()}).ok());
  late.reset();
  EXPECT_TRUE(broker.settles_at(baseline + 1));
}

TEST(BrokerLimits, WithNotEvenAReserveSlotTheListenerRestsWithoutSpinning) {
  // At "info", as by default, the broker has logged before it is starved. (The
  // asan build's UBSan checks the dynamic type of fmt's buffer at its first use,
  // and probes memory through a pipe to do so: with no descriptor at all it
  // would take a sound object for a bad one. Once checked, the type is cached.)
  BrokerProcess broker(json{{"log_level", "info"}});
  auto a = broker.connect();
  ASSERT_TRUE(answers_hello(a.get()));
  std::size_t baseline = broker.fd_count();
  {
    // Below every fd the broker holds, its reserve too: it can neither accept
    // nor refuse, so the client waits in the backlog while the listener rests.
    SoftLimit starved(broker.pid(), 3);
    auto waiting = broker.connect();
    send_raw(waiting.get(), json({{"op", "hello"}, {"id", "waiting"}}).dump());
    double cpu_before = cpu_seconds(broker.pid());
    auto start = std::chrono::steady_clock::now();
    EXPECT_TRUE(silent_for(waiting.get(), 2000));
    double cpu = cpu_seconds(broker.pid()) - cpu_before;
    double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    EXPECT_LT(cpu, 0.2 * wall) << cpu << " s of CPU in " << wall << " s";
    RecordProperty("broker_cpu_ms", static_cast<int>(cpu * 1000));
    RecordProperty("wall_ms", static_cast<int>(wall * 1000));
    EXPECT_TRUE(answers_hello(a.get()));
    starved.restore();
    // Served once descriptors are available again.
    EXPECT_EQ(receive(waiting.get()).body["id"], "waiting");
  }
  EXPECT_TRUE(broker.settles_at(baseline));
  // The reserve is back: the next shortage is met by refusing, not by hanging.
  SoftLimit full(broker.pid(), broker.lowest_free_fd());
  auto c = broker.connect();
  send_unless_closed(c.get(), json({{"op", "hello"}}).dump());
  EXPECT_TRUE(closed_unanswered(c.get()));
  EXPECT_TRUE(answers_hello(a.get()));
}

// Under a small RLIMIT_NOFILE the derived limits (max_connections at half the
// table, max_fds below what is left) keep clients from ever filling the table:
// at max_fds a put gets ENOSPC and its descriptors are closed, at
// max_connections new clients wait their turn, and no accept meets EMFILE.
TEST(BrokerLimits, TheDerivedLimitsStopClientsBeforeTheTableIsFull) {
  BrokerProcess broker;
  // A lower hard limit, and a reload: the limits are derived anew from it.
  rlimit small{512, 512};
  ASSERT_EQ(::prlimit(broker.pid(), RLIMIT_NOFILE, &small, nullptr), 0);
  broker.reload();
  std::size_t baseline = broker.fd_count();

  auto admin = broker.connect();
  auto stats = call(admin.get(), {{"op", "stats"}});
  ASSERT_EQ(stats.body["connections"]["limit"], 256) << stats.raw;
  ASSERT_EQ(stats.body["connections"]["limit_per_uid"], 64) << stats.raw;
  const std::size_t max_fds = stats.body["fds_limit"].get<std::size_t>();
  ASSERT_GT(max_fds, 0u);
  ASSERT_LE(max_fds, std::size_t{253});

  // The store full: the next put is ENOSPC, and what it carried is closed.
  auto held = pipe_pair();
  ASSERT_TRUE(call(admin.get(), {{"op", "put"}, {"name", "all"}},
                   std::vector<int>(max_fds, held.write.get()))
                  .ok());
  held.write.reset();
  expect_put_refused(admin.get(), "one-more", "ENOSPC");
  EXPECT_TRUE(broker.settles_at(baseline + 1 + max_fds));

  // Every connection slot taken (root is not limited per uid).
  std::vector<unique_fd> clients;
  for (int i = 1; i < 256; ++i) {
    clients.push_back(broker.connect());
    ASSERT_TRUE(answers_hello(clients.back().get())) << i;
  }
  auto waiting = broker.connect();
  send_raw(waiting.get(), json({{"op", "hello"}, {"id", "waiting"}}).dump());
  EXPECT_TRUE(silent_for(waiting.get(), 300));  // in the backlog, not refused
  EXPECT_LT(broker.lowest_free_fd(), rlim_t{512});
  clients.pop_back();
  EXPECT_EQ(receive(waiting.get()).body["id"], "waiting");
  stats = call(admin.get(), {{"op", "stats"}});
  EXPECT_EQ(stats.body["connections"]["refused_no_fds"], 0) << stats.raw;

  ASSERT_TRUE(call(admin.get(), {{"op", "delete"}, {"name", "all"}}).ok());
  EXPECT_TRUE(reaches_eof(held.read.get()));
  clients.clear();
  waiting.reset();
  admin.reset();
  EXPECT_TRUE(broker.settles_at(baseline));
}
