// SPDX-License-Identifier: LGPL-2.1-or-later
// The Broker in-process, on a real listening socket and EventLoop: the one drain
// that shutdown and upgrade share (a waiting get, and what follows it, is told
// ESHUTDOWN before a clean end of stream; the upgrade's requester is served on;
// the backlog waits for the successor), and answers to a requester found by its
// ConnectionId, so that a client that got a gone one's fd number hears nothing.
#include "broker.hpp"

#include <gtest/gtest.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <set>

#include "run_loop.hpp"
#include "test_util.hpp"

using namespace fdbroker;
using namespace fdbroker::daemon;
using namespace std::chrono_literals;
using fdbroker::test::open_fd_count;
using fdbroker::test::run_until;
using json = nlohmann::json;

namespace {

bool readable(int sock) {
  pollfd pfd{sock, POLLIN, 0};
  return ::poll(&pfd, 1, 0) == 1;
}

struct Fixture {
  Fixture() {
    Config config;
    config.limits.shutdown_timeout_ms = 5000;
    // No unlink path: like a socket systemd owns, the test removes it.
    broker = std::make_unique<Broker>(
        loop, test::raw_unix_listener(path, SOCK_SEQPACKET | SOCK_NONBLOCK, 64), "", config,
        EffectiveLimits{64, 0, 1000});
    EXPECT_TRUE(broker->start().empty());
  }

  unique_fd connect_client() const { return test::connect_unix(path); }

  static void send_json(int sock, const json& request) {
    std::string text = request.dump();
    ASSERT_EQ(::send(sock, text.data(), text.size(), MSG_NOSIGNAL),
              static_cast<ssize_t>(text.size()));
  }

  // The next reply on `sock`, running the loop until it arrives (null: end of stream).
  json next_reply(int sock) {
    EXPECT_TRUE(run_until(loop, [&] { return readable(sock); }));
    char buf[65536];
    ssize_t got = ::recv(sock, buf, sizeof buf, MSG_DONTWAIT);
    if (got <= 0) return nullptr;
    return json::parse(std::string(buf, static_cast<std::size_t>(got)));
  }

  // Whether `sock` stays silent while the loop runs for a while.
  bool silent(int sock, std::chrono::milliseconds how_long = 100ms) {
    return !run_until(
        loop, [&] { return readable(sock); }, how_long);
  }

  test::TempDir dir;  // first: removed after everything below is closed
  std::string path = dir.socket_path("s");
  EventLoop loop;
  std::unique_ptr<Broker> broker;
};

// The descriptors open in this process.
std::set<int> open_fds() {
  std::set<int> fds;
  for (const auto& entry : std::filesystem::directory_iterator("/proc/self/fd")) {
    fds.insert(std::stoi(entry.path().filename().string()));
  }
  return fds;
}

// The descriptors in `after` but not in `before`, nor `except`.
std::set<int> added(const std::set<int>& before, const std::set<int>& after, int except) {
  std::set<int> out;
  for (int fd : after) {
    if (before.count(fd) == 0 && fd != except) out.insert(fd);
  }
  return out;
}

json waiting_get(int id) {
  return {{"op", "get"}, {"name", "absent"}, {"wait_ms", 20000}, {"id", id}};
}

}  // namespace

TEST(BrokerDrain, ShutdownAnswersAWaitingGetAndWhatFollowsThenCallsDone) {
  std::size_t before = open_fd_count();
  {
    Fixture f;
    unique_fd a = f.connect_client();
    Fixture::send_json(a.get(), waiting_get(1));
    Fixture::send_json(a.get(), {{"op", "hello"}, {"id", 2}});
    ASSERT_TRUE(f.silent(a.get()));  // the get waits, the hello behind it too
    bool done = false;
    f.broker->shutdown([&] { done = true; });
    ASSERT_TRUE(run_until(f.loop, [&] { return done; }));
    json first = f.next_reply(a.get());
    EXPECT_EQ(first["id"], 1);
    EXPECT_EQ(first["error"], "ESHUTDOWN");
    EXPECT_EQ(first["message"], "broker shutting down");
    json second = f.next_reply(a.get());
    EXPECT_EQ(second["id"], 2);
    EXPECT_EQ(second["error"], "ESHUTDOWN");
    EXPECT_TRUE(f.next_reply(a.get()).is_null());  // then end of stream
    EXPECT_EQ(f.broker->status(), "0 entries, 0 fds, 0 clients");
  }
  EXPECT_EQ(open_fd_count(), before);
}

TEST(BrokerDrain, AnUpgradeDrainServesTheRequesterAndLeavesTheBacklogWaiting) {
  std::size_t before = open_fd_count();
  {
    Fixture f;
    ConnectionId requester = 0;
    std::string request_id;
    bool quiet = false;
    f.broker->set_upgrade_handler([&](ConnectionId who, const std::string& id, const std::string&) {
      requester = who;
      request_id = id;
      EXPECT_TRUE(f.broker->begin_drain_for_successor(who, [&] { quiet = true; }));
    });
    unique_fd waiter = f.connect_client();
    Fixture::send_json(waiter.get(), waiting_get(1));
    ASSERT_TRUE(f.silent(waiter.get()));
    unique_fd a = f.connect_client();
    Fixture::send_json(a.get(), {{"op", "upgrade"}, {"id", 7}});
    ASSERT_TRUE(run_until(f.loop, [&] { return quiet; }));
    EXPECT_NE(requester, 0u);
    EXPECT_EQ(request_id, "7");
    // The waiter is told to retry at the successor, then the connection ends.
    json refused = f.next_reply(waiter.get());
    EXPECT_EQ(refused["id"], 1);
    EXPECT_EQ(refused["error"], "ESHUTDOWN");
    EXPECT_EQ(refused["message"],
              "broker being replaced by a new one (upgrade): reconnect and retry");
    EXPECT_TRUE(f.next_reply(waiter.get()).is_null());
    // The requester is served on; a new client waits in the backlog.
    Fixture::send_json(a.get(), {{"op", "hello"}, {"id", 8}});
    EXPECT_EQ(f.next_reply(a.get())["ok"], true);
    unique_fd late = f.connect_client();
    Fixture::send_json(late.get(), {{"op", "hello"}, {"id", 9}});
    EXPECT_TRUE(f.silent(late.get()));
    auto fds = f.broker->successor_fds();
    ASSERT_FALSE(fds.empty());
    EXPECT_EQ(fds[0].first, "listen");
    // The successor never became ready: the requester hears why, and the broker
    // takes the waiting client in again.
    f.broker->end_drain_for_successor();
    f.broker->reply_to(requester, request_id, Failure{ECHILD, "the new fdbrokerd ended"});
    json failed = f.next_reply(a.get());
    EXPECT_EQ(failed["id"], 7);
    EXPECT_EQ(failed["error"], "ECHILD");
    EXPECT_EQ(failed["message"], "the new fdbrokerd ended");
    json hello = f.next_reply(late.get());
    EXPECT_EQ(hello["id"], 9);
    EXPECT_EQ(hello["ok"], true);
  }
  EXPECT_EQ(open_fd_count(), before);
}

TEST(BrokerDrain, AnAnswerForAClosedRequesterReachesNoOtherClient) {
  Fixture f;
  ConnectionId requester = 0;
  f.broker->set_upgrade_handler(
      [&](ConnectionId who, const std::string&, const std::string&) { requester = who; });
  std::set<int> idle = open_fds();
  unique_fd a = f.connect_client();
  Fixture::send_json(a.get(), {{"op", "upgrade"}, {"id", 7}});
  ASSERT_TRUE(run_until(f.loop, [&] { return requester != 0; }));
  std::set<int> a_in_broker = added(idle, open_fds(), a.get());
  a.reset();
  ASSERT_TRUE(
      run_until(f.loop, [&] { return f.broker->status() == "0 entries, 0 fds, 0 clients"; }));
  // The next client gets the descriptor number the requester had, in the broker.
  unique_fd b = f.connect_client();
  Fixture::send_json(b.get(), {{"op", "hello"}, {"id", 1}});
  EXPECT_EQ(f.next_reply(b.get())["id"], 1);
  // Where an answer by fd number would have gone (as before ConnectionId).
  ASSERT_EQ(added(idle, open_fds(), b.get()), a_in_broker);
  f.broker->reply_to(requester, "7", std::string("\"pid\":1"));
  EXPECT_TRUE(f.silent(b.get()));
}
