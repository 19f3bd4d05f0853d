// SPDX-License-Identifier: LGPL-2.1-or-later
// The broker over time: waiting requests, concurrent takers, reloads, slow and
// many clients, limits at accept, shutdown, socket activation, the command line.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/resource.h>

#include <fstream>

#include "broker_harness.hpp"
#include "test_util.hpp"

using namespace fdbroker;
using namespace fdbroker::test;

namespace {

std::uint16_t port_of(int sock) {
  sockaddr_in addr{};
  socklen_t len = sizeof addr;
  ::getsockname(sock, reinterpret_cast<sockaddr*>(&addr), &len);
  return ntohs(addr.sin_port);
}

unique_fd tcp_connect(std::uint16_t port) {
  unique_fd s(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(port);
  EXPECT_EQ(::connect(s.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  return s;
}

struct Run {
  int status;
  std::string output;
};

// Runs fdbrokerd with `args`; returns its exit status and stdout+stderr.
Run run_broker(const std::vector<std::string>& args) {
  int p[2];
  EXPECT_EQ(::pipe2(p, O_CLOEXEC), 0);
  pid_t pid = ::fork();
  if (pid == 0) {
    ::dup2(p[1], 1);
    ::dup2(p[1], 2);
    std::vector<std::string> all = {FDBROKERD_PATH};
    all.insert(all.end(), args.begin(), args.end());
    std::vector<char*> argv;
    for (auto& a : all) argv.push_back(a.data());
    argv.push_back(nullptr);
    ::execv(FDBROKERD_PATH, argv.data());
    ::_exit(127);
  }
  ::close(p[1]);
  Run run{};
  char buf[4096];
  ssize_t n;
  while ((n = ::read(p[0], buf, sizeof buf)) > 0)
    run.output.append(buf, static_cast<std::size_t>(n));
  ::close(p[0]);
  int status = 0;
  ::waitpid(pid, &status, 0);
  run.status = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return run;
}

}  // namespace

TEST(BrokerWait, GetWithWaitIsAnsweredByAPutAndOthersAreServedMeanwhile) {
  BrokerProcess broker;
  std::size_t baseline = broker.fd_count();
  {
    auto waiter = broker.connect();
    auto other = broker.connect();
    send_raw(waiter.get(),
             json({{"op", "get"}, {"name", "later"}, {"wait_ms", 5000}, {"id", "w"}}).dump());
    // Pipelined behind the waiting get: answered after it, in order.
    send_raw(waiter.get(), json({{"op", "hello"}, {"id", "behind"}}).dump());
    EXPECT_TRUE(silent_for(waiter.get(), 100));
    EXPECT_TRUE(call(other.get(), {{"op", "hello"}}).ok());  // not blocked by the waiter
    auto p = pipe_pair();
    ASSERT_TRUE(call(other.get(), {{"op", "put"}, {"name", "later"}}, {p.write.get()}).ok());
    auto got = receive(waiter.get());
    ASSERT_TRUE(got.ok()) << got.raw;
    EXPECT_EQ(got.body["id"], "w");
    EXPECT_EQ(got.fds.size(), 1u);
    auto behind = receive(waiter.get());
    EXPECT_EQ(behind.body["id"], "behind");
  }
  EXPECT_TRUE(broker.settles_at(baseline + 1));  // + the stored entry
}

TEST(BrokerWait, WaitRunsOutWithEtimedout) {
  BrokerProcess broker(json{{"limits", {{"max_wait_ms", 200}}}});
  auto c = broker.connect();
  auto start = std::chrono::steady_clock::now();
  auto r = call(c.get(), {{"op", "get"}, {"name", "never"}, {"wait_ms", 100}});
  auto took = std::chrono::steady_clock::now() - start;
  EXPECT_EQ(r.error(), "ETIMEDOUT");
  EXPECT_GE(took, std::chrono::milliseconds(100));
  // Capped by limits.max_wait_ms.
  start = std::chrono::steady_clock::now();
  EXPECT_EQ(call(c.get(), {{"op", "take"}, {"name", "never"}, {"wait_ms", 60000}}).error(),
            "ETIMEDOUT");
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(3));
  EXPECT_TRUE(call(c.get(), {{"op", "hello"}}).ok());
}

TEST(BrokerWait, AClientThatLeavesWhileWaitingIsForgotten) {
  BrokerProcess broker;
  std::size_t baseline = broker.fd_count();
  {
    auto c = broker.connect();
    send_raw(c.get(), json({{"op", "take"}, {"name", "x"}, {"wait_ms", 5000}}).dump());
    EXPECT_TRUE(silent_for(c.get(), 50));
  }
  EXPECT_TRUE(broker.settles_at(baseline));
  auto c = broker.connect();
  auto p = pipe_pair();
  ASSERT_TRUE(call(c.get(), {{"op", "put"}, {"name", "x"}}, {p.write.get()}).ok());
  EXPECT_TRUE(call(c.get(), {{"op", "get"}, {"name", "x"}}).ok());  // nobody took it
}

// A waiter woken by a put is no longer a waiter of that name: later puts of it
// neither answer the connection's next wait (with ETIMEDOUT, at once) nor, once
// it has closed, touch the freed connection (the broker died with SIGSEGV).
TEST(BrokerWait, AWaiterWokenByAPutNoLongerWaitsForThatName) {
  for (const char* op : {"get", "take"}) {
    SCOPED_TRACE(op);
    BrokerProcess broker;
    std::size_t baseline = broker.fd_count();
    auto other = broker.connect();
    ASSERT_TRUE(call(other.get(), {{"op", "hello"}}).ok());
    {
      auto waiter = broker.connect();
      send_raw(waiter.get(),
               json({{"op", op}, {"name", "r/x"}, {"wait_ms", 5000}, {"id", 1}}).dump());
      EXPECT_TRUE(silent_for(waiter.get(), 50));
      auto p = pipe_pair();
      ASSERT_TRUE(
          call(other.get(), {{"op", "put"}, {"name", "r/x"}, {"replace", true}}, {p.write.get()})
              .ok());
      auto woken = receive(waiter.get());
      ASSERT_TRUE(woken.ok()) << woken.raw;
      EXPECT_EQ(woken.body["id"], 1);
      // Now it waits for another name; a put of the first must not answer it.
      send_raw(waiter.get(),
               json({{"op", op}, {"name", "r/y"}, {"wait_ms", 5000}, {"id", 2}}).dump());
      EXPECT_TRUE(silent_for(waiter.get(), 50));
      ASSERT_TRUE(
          call(other.get(), {{"op", "put"}, {"name", "r/x"}, {"replace", true}}, {p.write.get()})
              .ok());
      EXPECT_TRUE(silent_for(waiter.get(), 200)) << "the wait for r/y was answered by a put of r/x";
      // Its wait for r/y is still served by a put of r/y.
      ASSERT_TRUE(call(other.get(), {{"op", "put"}, {"name", "r/y"}}, {p.write.get()}).ok());
      auto second = receive(waiter.get());
      EXPECT_TRUE(second.ok()) << second.raw;
      EXPECT_EQ(second.body["id"], 2);
    }
    // The waiter has gone: more puts of r/x must not reach it.
    auto p = pipe_pair();
    for (int i = 0; i < 3; ++i) {
      ASSERT_TRUE(
          call(other.get(), {{"op", "put"}, {"name", "r/x"}, {"replace", true}}, {p.write.get()})
              .ok());
    }
    auto fresh = broker.connect();
    EXPECT_TRUE(call(fresh.get(), {{"op", "hello"}}).ok());
    fresh.reset();
    ASSERT_TRUE(call(other.get(), {{"op", "delete"}, {"name", "r/x"}}).ok());
    auto y = call(other.get(), {{"op", "delete"}, {"name", "r/y"}});
    EXPECT_EQ(y.ok(), std::string(op) == "get") << y.raw;  // a take took it
    EXPECT_TRUE(broker.settles_at(baseline + 1));          // + `other`
  }
}

TEST(BrokerTake, OfManyConcurrentTakersExactlyOneWins) {
  BrokerProcess broker;
  auto root = broker.connect();
  for (bool waiting : {false, true}) {
    auto p = pipe_pair();
    if (!waiting) {
      ASSERT_TRUE(call(root.get(), {{"op", "put"}, {"name", "prize"}}, {p.write.get()}).ok());
    }
    constexpr int takers = 12;
    int go[2];
    ASSERT_EQ(::pipe2(go, O_CLOEXEC), 0);
    std::vector<pid_t> children;
    for (int i = 0; i < takers; ++i) {
      pid_t pid = ::fork();
      if (pid == 0) {
        ::close(go[1]);
        auto c = broker.connect();
        char byte;
        (void)!::read(go[0], &byte, 1);  // all start together
        json req = {{"op", "take"}, {"name", "prize"}};
        if (waiting) req["wait_ms"] = 2000;
        auto r = call(c.get(), req);
        ::_exit(r.ok() && r.fds.size() == 1
                    ? 1
                    : (r.error() == (waiting ? "ETIMEDOUT" : "ENOENT") ? 0 : 2));
      }
      children.push_back(pid);
    }
    ::close(go[0]);
    std::this_thread::sleep_for(std::chrono::milliseconds(100));  // let them connect
    ::close(go[1]);                                               // and go
    if (waiting) {
      std::this_thread::sleep_for(std::chrono::milliseconds(200));  // let them park
      ASSERT_TRUE(call(root.get(), {{"op", "put"}, {"name", "prize"}}, {p.write.get()}).ok());
    }
    int winners = 0, losers = 0;
    for (pid_t pid : children) {
      int status = 0;
      ::waitpid(pid, &status, 0);
      ASSERT_TRUE(WIFEXITED(status));
      if (WEXITSTATUS(status) == 1) ++winners;
      if (WEXITSTATUS(status) == 0) ++losers;
    }
    EXPECT_EQ(winners, 1) << (waiting ? "waiting" : "immediate");
    EXPECT_EQ(losers, takers - 1);
    EXPECT_EQ(call(root.get(), {{"op", "get"}, {"name", "prize"}}).error(), "ENOENT");
  }
}

TEST(BrokerReload, KeepsListeningSocketsAndTheirBacklog) {
  json config = {
      {"entries",
       {{{"name", "web"}, {"type", "tcp"}, {"address", "127.0.0.1:0"}, {"meta", {{"v", 1}}}},
        {{"name", "file"}, {"type", "file"}, {"path", "/etc/hostname"}}}}};
  BrokerProcess broker(config);
  auto c = broker.connect();
  auto before = call(c.get(), {{"op", "get"}, {"name", "web"}});
  ASSERT_TRUE(before.ok()) << before.raw;
  struct stat st_before {};
  ::fstat(before.fds[0].get(), &st_before);
  // A connection waiting in the listener's backlog, not accepted by anyone yet.
  auto pending = tcp_connect(port_of(before.fds[0].get()));
  ASSERT_EQ(::write(pending.get(), "hi", 2), 2);
  before.fds.clear();

  config["entries"][0]["meta"] = {{"v", 2}};     // meta changes: same socket, new generation
  config["entries"][1]["path"] = "/etc/passwd";  // the file changes: reopened
  config["entries"].push_back({{"name", "added"}, {"type", "file"}, {"path", "/etc/hostname"}});
  config["socket"] = {{"path", broker.socket_path()}, {"mode", "0666"}};
  config["log_level"] = "warning";
  broker.write_config(config);
  broker.reload();

  auto after = call(c.get(), {{"op", "get"}, {"name", "web"}});
  ASSERT_TRUE(after.ok()) << after.raw;
  struct stat st_after {};
  ::fstat(after.fds[0].get(), &st_after);
  EXPECT_EQ(st_before.st_ino, st_after.st_ino);
  EXPECT_EQ(after.body["meta"]["v"], 2);
  unique_fd accepted(::accept4(after.fds[0].get(), nullptr, nullptr, SOCK_CLOEXEC));
  ASSERT_TRUE(accepted.valid());
  char buf[2];
  EXPECT_EQ(::read(accepted.get(), buf, 2), 2);
  auto file = call(c.get(), {{"op", "get"}, {"name", "file"}});
  EXPECT_EQ(file.body["fds"][0]["path"], "/etc/passwd");
  EXPECT_TRUE(call(c.get(), {{"op", "get"}, {"name", "added"}}).ok());
}

TEST(BrokerReload, AnInvalidConfigChangesNothing) {
  json config = {{"entries", {{{"name", "file"}, {"type", "file"}, {"path", "/etc/hostname"}}}}};
  BrokerProcess broker(config);
  auto c = broker.connect();
  auto before = call(c.get(), {{"op", "get"}, {"name", "file"}});
  std::size_t fds = broker.fd_count();
  broker.write_config_text("{ \"entries\": [ {\"name\": \"file\", \"type\": \"nope\"} ] }");
  broker.reload();
  // A config that parses but cannot be opened is refused as a whole, too.
  config["entries"].push_back({{"name", "bad"}, {"type", "file"}, {"path", "/nonexistent/x"}});
  config["entries"][0]["path"] = "/etc/passwd";
  config["socket"] = {{"path", broker.socket_path()}, {"mode", "0666"}};
  broker.write_config(config);
  broker.reload();
  auto after = call(c.get(), {{"op", "get"}, {"name", "file"}});
  ASSERT_TRUE(after.ok());
  EXPECT_EQ(after.body["generation"], before.body["generation"]);
  EXPECT_EQ(after.body["fds"][0]["path"], "/etc/hostname");
  EXPECT_EQ(call(c.get(), {{"op", "get"}, {"name", "bad"}}).error(), "ENOENT");
  EXPECT_TRUE(broker.settles_at(fds));
}

TEST(BrokerReload, DroppedStaticEntriesGoAndRulesChange) {
  json config = {{"entries", {{{"name", "file"}, {"type", "file"}, {"path", "/etc/hostname"}}}}};
  BrokerProcess broker(config);
  std::size_t fds = broker.fd_count();
  json next = {{"socket", {{"path", broker.socket_path()}, {"mode", "0666"}}},
               {"log_level", "warning"},
               {"rules", {{{"prefix", ""}, {"users", {"nobody"}}, {"allow", {"stats"}}}}}};
  broker.write_config(next);
  broker.reload();
  auto c = broker.connect();
  EXPECT_EQ(call(c.get(), {{"op", "get"}, {"name", "file"}}).error(), "ENOENT");
  EXPECT_TRUE(broker.settles_at(fds));  // -1 for the file, +1 for our connection
  EXPECT_EQ(
      as_user(65534, 65534, {},
              [&] {
                auto n = broker.connect();
                return expect_outcome(call(n.get(), {{"op", "stats"}}), "", "stats after reload");
              }),
      "");
}

TEST(BrokerSlowClient, IsDroppedAndNeverStallsOthers) {
  BrokerProcess broker(json{{"limits", {{"client_timeout_ms", 300}, {"max_queued_replies", 8}}}});
  auto root = broker.connect();
  auto p = pipe_pair();
  ASSERT_TRUE(call(root.get(), {{"op", "put"}, {"name", "k"}}, {p.write.get()}).ok());
  p.write.reset();
  std::size_t baseline = broker.fd_count();

  auto slow = broker.connect();
  // Gets whose replies (each with the fd) it never reads, until its socket is full.
  // The broker stops reading once max_queued_replies wait; then the socket stays
  // full (no POLLOUT for a while).
  int sent = 0;
  for (; sent < 100000; ++sent) {
    std::string request = json({{"op", "get"}, {"name", "k"}, {"id", sent}}).dump();
    if (try_sendfds(slow.get(), request.data(), request.size(), nullptr, 0, io_flags::dontwait))
      continue;
    pollfd pfd{slow.get(), POLLOUT, 0};
    if (::poll(&pfd, 1, 100) != 1) break;
    --sent;
  }
  // Everyone else is served at once...
  auto fast = broker.connect();
  for (int i = 0; i < 20; ++i) ASSERT_TRUE(call(fast.get(), {{"op", "hello"}}).ok());
  // ...even after the entry is deleted, the queued replies keep its fd alive.
  ASSERT_TRUE(call(root.get(), {{"op", "delete"}, {"name", "k"}}).ok());
  EXPECT_TRUE(write_end_open(p.read.get()));
  // The slow one is dropped after client_timeout_ms without reading.
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  auto stats = call(root.get(), {{"op", "stats"}});
  EXPECT_EQ(stats.body["connections"]["dropped"], 1);
  // What it did receive is intact; then the stream ends.
  int replies = 0;
  for (;;) {
    auto m = try_recvfds(slow.get(), 65537, 253, io_flags::dontwait);
    // The broker closed with our requests unread: the kernel reports that once
    // as ECONNRESET, then hands over what is queued.
    if (!m && m.error().value() == ECONNRESET) continue;
    ASSERT_TRUE(m) << m.error().message();
    if (m->empty()) break;
    ++replies;
    EXPECT_EQ(m->fds.size(), 1u);
  }
  EXPECT_GT(replies, 0);
  EXPECT_LT(replies, sent);
  slow.reset();
  EXPECT_TRUE(reaches_eof(p.read.get()));    // every copy is gone now
  EXPECT_TRUE(broker.settles_at(baseline));  // - the entry's fd, + the fast connection
}

TEST(BrokerSlowClient, ATakeNeverDeliveredGivesTheEntryBack) {
  BrokerProcess broker(
      json{{"limits", {{"client_timeout_ms", 300}, {"max_queued_replies", 2000}}}});
  auto root = broker.connect();
  auto p = pipe_pair();
  auto put = call(root.get(), {{"op", "put"}, {"name", "k"}}, {p.write.get()});
  ASSERT_TRUE(put.ok());
  auto slow = broker.connect();
  // Enough gets to fill its receive buffer, so that the take's reply is queued
  // in the broker (and the entry held there) rather than delivered.
  for (int i = 0; i < 600; ++i) send_raw(slow.get(), json({{"op", "get"}, {"name", "k"}}).dump());
  send_raw(slow.get(), json({{"op", "take"}, {"name", "k"}}).dump());
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  EXPECT_EQ(call(root.get(), {{"op", "get"}, {"name", "k"}}).error(), "ENOENT");  // taken, pending
  std::this_thread::sleep_for(std::chrono::milliseconds(500));  // the slow one is dropped
  auto back = call(root.get(), {{"op", "get"}, {"name", "k"}});
  ASSERT_TRUE(back.ok()) << back.raw;
  EXPECT_EQ(back.body["generation"], put.body["generation"]);
  EXPECT_TRUE(same_file(back.fds[0].get(), p.write.get()));
}

TEST(BrokerConnections, ThousandsOfConcurrentClientsAreServed) {
  BrokerProcess broker;
  std::size_t baseline = broker.fd_count();
  constexpr int clients = 2000;
  std::vector<unique_fd> conns;
  for (int i = 0; i < clients; ++i) conns.push_back(broker.connect());
  for (int i = 0; i < clients; ++i)
    send_raw(conns[i].get(), json({{"op", "hello"}, {"id", i}}).dump());
  for (int i = 0; i < clients; ++i) EXPECT_EQ(receive(conns[i].get()).body["id"], i);
  EXPECT_TRUE(broker.settles_at(baseline + clients));
  conns.clear();
  EXPECT_TRUE(broker.settles_at(baseline));
}

TEST(BrokerConnections, MaxConnectionsLeavesTheRestInTheBacklog) {
  BrokerProcess broker(json{{"limits", {{"max_connections", 3}}}});
  std::vector<unique_fd> conns;
  for (int i = 0; i < 3; ++i) {
    conns.push_back(broker.connect());
    ASSERT_TRUE(call(conns.back().get(), {{"op", "hello"}}).ok());
  }
  auto fourth = broker.connect();  // the kernel completes it into the backlog
  send_raw(fourth.get(), json({{"op", "hello"}, {"id", 4}}).dump());
  EXPECT_TRUE(silent_for(fourth.get(), 200));
  conns.pop_back();
  EXPECT_EQ(receive(fourth.get()).body["id"], 4);
}

// Limits at accept (per uid, EMFILE): broker_limits_test.cpp.

TEST(BrokerShutdown, SigtermExitsCleanlyAndRemovesTheSocket) {
  BrokerProcess broker;
  auto c = broker.connect();
  ASSERT_TRUE(call(c.get(), {{"op", "hello"}}).ok());
  ::kill(broker.pid(), SIGTERM);
  std::string seen = broker.wait_notify("STOPPING=1");
  EXPECT_EQ(broker.wait_exit(5000), 0);
  struct stat st {};
  EXPECT_NE(::lstat(broker.socket_path().c_str(), &st), 0);
  char buf[8];
  EXPECT_EQ(::recv(c.get(), buf, sizeof buf, 0), 0);  // our connection was closed
}

TEST(BrokerShutdown, RequestsAlreadySentAreAnsweredFirst) {
  BrokerProcess broker;
  auto early = broker.connect();
  ASSERT_TRUE(call(early.get(), {{"op", "hello"}}).ok());
  // Freeze the broker, so that requests and a new connection are pending when the
  // SIGTERM is seen.
  ::kill(broker.pid(), SIGSTOP);
  for (int i = 0; i < 5; ++i) send_raw(early.get(), json({{"op", "hello"}, {"id", i}}).dump());
  auto late = broker.connect();  // in the backlog, not accepted yet
  send_raw(late.get(), json({{"op", "hello"}, {"id", "late"}}).dump());
  ::kill(broker.pid(), SIGTERM);
  ::kill(broker.pid(), SIGCONT);
  for (int i = 0; i < 5; ++i) EXPECT_EQ(receive(early.get()).body["id"], i);
  EXPECT_EQ(receive(late.get()).body["id"], "late");
  EXPECT_EQ(broker.wait_exit(5000), 0);
}

TEST(BrokerShutdown, ReadyAndStatusAreNotified) {
  BrokerProcess broker(
      json{{"entries", {{{"name", "f"}, {"type", "file"}, {"path", "/etc/hostname"}}}}});
  ::kill(broker.pid(), SIGHUP);
  std::string seen = broker.wait_notify("READY=1");
  EXPECT_NE(seen.find("RELOADING=1"), std::string::npos) << seen;
  EXPECT_NE(seen.find("STATUS=1 entries, 1 fds"), std::string::npos) << seen;
}

TEST(BrokerActivation, UsesTheSocketPassedBySystemd) {
  TempDir dir;
  std::string path = dir.socket_path("activated.sock");
  unique_fd listener(::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0));
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, path.c_str(), sizeof addr.sun_path - 1);
  ASSERT_EQ(::bind(listener.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  ASSERT_EQ(::listen(listener.get(), 16), 0);
  pid_t pid = ::fork();
  if (pid == 0) {
    if (listener.get() == 3) {
      ::fcntl(3, F_SETFD, 0);
    } else {
      ::dup2(listener.get(), 3);  // dup2 clears close-on-exec on the copy
    }
    ::setenv("LISTEN_FDS", "1", 1);
    ::setenv("LISTEN_PID", std::to_string(::getpid()).c_str(), 1);
    ::setenv("LISTEN_FDNAMES", "listen", 1);
    std::string unused = dir.socket_path("unused.sock");
    std::string config = dir.path() + "/c.json";
    std::ofstream(config) << "{}";
    ::execl(FDBROKERD_PATH, FDBROKERD_PATH, "--config", config.c_str(), "--socket", unused.c_str(),
            "--log-level", "warning", static_cast<char*>(nullptr));
    ::_exit(127);
  }
  unique_fd c(::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0));
  ASSERT_EQ(::connect(c.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  auto r = call(c.get(), {{"op", "hello"}});
  ::kill(pid, SIGTERM);
  int status = 0;
  ::waitpid(pid, &status, 0);
  EXPECT_TRUE(r.ok());
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  struct stat st {};
  EXPECT_EQ(::lstat(path.c_str(), &st), 0);  // systemd's socket file: not ours to remove
  EXPECT_NE(::lstat(dir.socket_path("unused.sock").c_str(), &st), 0);
  ::unlink(path.c_str());
}

TEST(BrokerCommandLine, HelpVersionAndUsageErrors) {
  auto help = run_broker({"--help"});
  EXPECT_EQ(help.status, 0);
  EXPECT_NE(help.output.find("--check-config"), std::string::npos);
  auto version = run_broker({"--version"});
  EXPECT_EQ(version.status, 0);
  EXPECT_NE(version.output.find("fdbrokerd 0."), std::string::npos);
  EXPECT_EQ(run_broker({"--frobnicate"}).status, 2);
  EXPECT_EQ(run_broker({"--log-level", "loud"}).status, 2);
}

TEST(BrokerCommandLine, CheckConfigReportsEveryProblemByKey) {
  TempDir dir;
  std::string path = dir.path() + "/bad.json";
  std::ofstream(path) << R"({ // a comment
    "limits": {"max_connections": "many"},
    "entries": [{"name": "x", "type": "tcp", "address": "nowhere"}]
  })";
  auto bad = run_broker({"--check-config", "--config", path});
  EXPECT_EQ(bad.status, 1);
  EXPECT_NE(bad.output.find("limits.max_connections:"), std::string::npos) << bad.output;
  EXPECT_NE(bad.output.find("entries[0].address:"), std::string::npos) << bad.output;
  for (const char* example : {"fdbroker.json", "dev.json", "default.json"}) {
    auto good = run_broker(
        {"--check-config", "--config", std::string(FDBROKER_SOURCE_DIR) + "/config/" + example});
    EXPECT_EQ(good.status, 0) << example << ": " << good.output;
  }
  EXPECT_EQ(run_broker({"--check-config", "--config", "/nonexistent.json"}).status, 1);
}

TEST(BrokerCommandLine, AStartupFailureExitsNonZero) {
  TempDir dir;
  std::string path = dir.path() + "/c.json";
  std::ofstream(path)
      << json({{"socket", {{"path", dir.socket_path()}}},
               {"entries", {{{"name", "x"}, {"type", "file"}, {"path", "/nonexistent/file"}}}}})
             .dump();
  auto r = run_broker({"--config", path});
  EXPECT_EQ(r.status, 1);
  EXPECT_NE(r.output.find("/nonexistent/file"), std::string::npos) << r.output;
  struct stat st {};
  EXPECT_NE(::lstat(dir.socket_path().c_str(), &st), 0);  // cleaned up
}

namespace {

json files_rule(const std::string& root) {
  return {
      {"name", "data"}, {"root", root}, {"match", {"**"}}, {"users", {"*"}}, {"allow", {"read"}}};
}

}  // namespace

TEST(BrokerCommandLine, CheckConfigChecksTheRootsOfFilesRules) {
  TempDir dir;
  std::string open_dir = dir.path() + "/open";
  std::string root = open_dir + "/root";
  std::string link = dir.path() + "/link";
  ASSERT_EQ(::mkdir(open_dir.c_str(), 0777), 0);
  ASSERT_EQ(::chmod(open_dir.c_str(), 0777), 0);
  ASSERT_EQ(::mkdir(root.c_str(), 0755), 0);
  ASSERT_EQ(::symlink(root.c_str(), link.c_str()), 0);
  std::string path = dir.path() + "/c.json";

  // A warning only: printed, and the config is still valid.
  std::ofstream(path) << json({{"files", {files_rule(root)}}}).dump();
  auto warned = run_broker({"--check-config", "--config", path});
  EXPECT_EQ(warned.status, 0) << warned.output;
  EXPECT_NE(warned.output.find("warning: " + path + ": files[0].root: ancestor \"" + open_dir +
                               "\" is writable by every user and not sticky"),
            std::string::npos)
      << warned.output;
  EXPECT_NE(warned.output.find("OK (0 rules, 0 static entries, 1 files rules, 0 bind rules)"),
            std::string::npos)
      << warned.output;

  // Refused roots: each named, with the file.
  json refused = files_rule(link);
  json proc = files_rule("/proc");
  proc["name"] = "proc";
  std::ofstream(path) << json({{"files", {refused, proc}}}).dump();
  auto bad = run_broker({"--check-config", "--config", path});
  EXPECT_EQ(bad.status, 1);
  EXPECT_NE(bad.output.find(path + ": files[0].root: \"" + link + "\" is a symlink"),
            std::string::npos)
      << bad.output;
  EXPECT_NE(bad.output.find(path + ": files[1].root: \"/proc\" is on procfs"), std::string::npos)
      << bad.output;
  ::unlink(link.c_str());
  ::rmdir(root.c_str());
  ::rmdir(open_dir.c_str());
}

TEST(BrokerCommandLine, ARefusedRootStopsTheStart) {
  TempDir dir;
  std::string path = dir.path() + "/c.json";
  std::ofstream(path)
      << json({{"socket", {{"path", dir.socket_path()}}}, {"files", {files_rule("/sys")}}}).dump();
  auto r = run_broker({"--config", path});
  EXPECT_EQ(r.status, 1);
  EXPECT_NE(r.output.find("files[0].root: \"/sys\" is on sysfs"), std::string::npos) << r.output;
  struct stat st {};
  EXPECT_NE(::lstat(dir.socket_path().c_str(), &st), 0);  // cleaned up
}

TEST(BrokerReload, FilesRootsAreOpenedAtLoadAndReopenedAtReload) {
  TempDir dir;
  std::string root = dir.path() + "/root";
  ASSERT_EQ(::mkdir(root.c_str(), 0755), 0);
  BrokerProcess broker(json{{"files", {files_rule(root)}}});
  std::size_t with_root = broker.fd_count();
  json config = {{"socket", {{"path", broker.socket_path()}, {"mode", "0666"}}},
                 {"files", {files_rule("/proc")}}};
  broker.write_config(config);
  broker.reload();  // refused: the running rules and their root stay
  EXPECT_TRUE(broker.settles_at(with_root));
  config["files"] = json::array();
  broker.write_config(config);
  broker.reload();
  EXPECT_TRUE(broker.settles_at(with_root - 1));  // the root's O_PATH fd closed with its rules
  config["files"] = {files_rule(root), files_rule(root)};
  config["files"][1]["name"] = "again";
  broker.write_config(config);
  broker.reload();
  EXPECT_TRUE(broker.settles_at(with_root));  // one fd for a root two rules share
  auto c = broker.connect();
  EXPECT_TRUE(call(c.get(), {{"op", "stats"}}).ok());
  ::rmdir(root.c_str());
}
