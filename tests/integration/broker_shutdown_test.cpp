// SPDX-License-Identifier: LGPL-2.1-or-later
// What a client waiting in get/take (wait_ms) hears when the broker goes away:
// at SIGTERM and at an upgrade's drain, an ESHUTDOWN reply, and the same for
// every request pipelined behind it, in order, before a clean end of stream;
// never a bare reset. Over raw protocol and through fdbroker::Client.
#include <signal.h>
#include <sys/socket.h>

#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <fdbroker/client.hpp>
#include <future>
#include <string>
#include <thread>

#include "broker_harness.hpp"
#include "test_util.hpp"

using namespace fdbroker;
using namespace fdbroker::test;

namespace {

json get_waiting(const char* name, const json& id) {
  return {{"op", "get"}, {"name", name}, {"wait_ms", 20000}, {"id", id}};
}

// The broker closed the connection after its last reply, with nothing of ours
// left unread on its side (else the kernel would report ECONNRESET).
::testing::AssertionResult ends_cleanly(int sock) {
  pollfd pfd{sock, POLLIN, 0};
  if (::poll(&pfd, 1, 5000) != 1) return ::testing::AssertionFailure() << "still open after 5 s";
  char buf[256];
  ssize_t n = ::recv(sock, buf, sizeof buf, 0);
  if (n == 0) return ::testing::AssertionSuccess();
  if (n < 0) return ::testing::AssertionFailure() << "recv: " << std::strerror(errno);
  return ::testing::AssertionFailure()
         << "another message: " << std::string(buf, static_cast<std::size_t>(n));
}

::testing::AssertionResult is_eshutdown(const Reply& r, const json& id, const std::string& words) {
  if (r.ok() || r.error() != "ESHUTDOWN" || r.body.value("id", json()) != id ||
      r.body.value("message", std::string()).find(words) == std::string::npos || !r.fds.empty()) {
    return ::testing::AssertionFailure() << r.raw;
  }
  return ::testing::AssertionSuccess();
}

// Reads one reply, turning the old behaviour (the connection simply closed or
// reset) into a test failure with what happened, not an exception.
::testing::AssertionResult next_is_eshutdown(int sock, const json& id, const std::string& words) {
  try {
    return is_eshutdown(receive(sock), id, words);
  } catch (const std::exception& e) {
    return ::testing::AssertionFailure() << "no reply for id " << id.dump() << ": " << e.what();
  }
}

// A new broker started by an upgrade is no child of ours: stop it by its pid.
void stop_successor(pid_t pid) {
  ASSERT_EQ(::kill(pid, SIGTERM), 0);
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (::kill(pid, 0) == 0 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  EXPECT_NE(::kill(pid, 0), 0) << "the successor broker " << pid << " ignored SIGTERM";
}

// Upgrades run the new broker with the same environment: make sure it never
// thinks it runs under systemd (which refuses `upgrade`), whatever ctest inherited.
void no_fdstore() { ::setenv("FDBROKER_FDSTORE", "0", 1); }

}  // namespace

TEST(BrokerShutdownReplies, AWaitingGetIsAnsweredEshutdownOnSigterm) {
  BrokerProcess broker;
  auto c = broker.connect();
  send_raw(c.get(), get_waiting("later", "w").dump());
  ASSERT_TRUE(silent_for(c.get(), 150));  // parked in the broker
  std::size_t ours = open_fd_count();
  ::kill(broker.pid(), SIGTERM);
  EXPECT_TRUE(next_is_eshutdown(c.get(), "w", "broker shutting down"));
  EXPECT_TRUE(ends_cleanly(c.get()));
  EXPECT_EQ(broker.wait_exit(5000), 0);
  EXPECT_EQ(open_fd_count(), ours);  // the error brought no descriptor along
}

TEST(BrokerShutdownReplies, AWaitingTakeIsAnsweredEshutdownWithItsExactEnvelope) {
  BrokerProcess broker;
  auto c = broker.connect();
  send_raw(c.get(), R"({"op":"take","name":"later","wait_ms":20000,"id":17})");
  ASSERT_TRUE(silent_for(c.get(), 150));
  ::kill(broker.pid(), SIGTERM);
  auto r = receive(c.get());
  EXPECT_EQ(r.raw, R"({"id":17,"ok":false,"error":"ESHUTDOWN","message":"broker shutting down"})");
  EXPECT_TRUE(ends_cleanly(c.get()));
  EXPECT_EQ(broker.wait_exit(5000), 0);
}

TEST(BrokerShutdownReplies, RequestsPipelinedBehindAWaitingOneAreAnsweredEshutdownInOrder) {
  BrokerProcess broker;
  auto setup = broker.connect();
  auto stored = pipe_pair();
  ASSERT_TRUE(call(setup.get(), {{"op", "put"}, {"name", "there"}}, {stored.write.get()}).ok());
  auto c = broker.connect();
  auto bystander = broker.connect();  // no waiting request: answered as usual
  send_raw(c.get(), get_waiting("later", 1).dump());
  send_raw(c.get(), json({{"op", "hello"}, {"id", 2}}).dump());
  auto offered = pipe_pair();
  send_raw(c.get(), json({{"op", "put"}, {"name", "p"}, {"id", 3}}).dump(), {offered.write.get()});
  send_raw(c.get(), json({{"op", "get"}, {"name", "there"}, {"id", 4}}).dump());
  send_raw(c.get(), get_waiting("later", 5).dump());
  ASSERT_TRUE(silent_for(c.get(), 150));
  offered.write.reset();
  // Stop the broker, so that the bystander's request is pending at the SIGTERM.
  ::kill(broker.pid(), SIGSTOP);
  send_raw(bystander.get(), json({{"op", "get"}, {"name", "there"}, {"id", "b"}}).dump());
  ::kill(broker.pid(), SIGTERM);
  ::kill(broker.pid(), SIGCONT);
  for (int id = 1; id <= 5; ++id) {
    EXPECT_TRUE(next_is_eshutdown(c.get(), id, "broker shutting down"));
  }
  EXPECT_TRUE(ends_cleanly(c.get()));
  auto b = receive(bystander.get());
  EXPECT_TRUE(b.ok()) << b.raw;
  EXPECT_EQ(b.fds.size(), 1u);
  EXPECT_EQ(broker.wait_exit(5000), 0);
  EXPECT_TRUE(reaches_eof(offered.read.get()));  // the refused put's descriptor is gone
}

TEST(BrokerShutdownReplies, ARequestSentOnceTheShutdownBeganFailsWithEpipeNotAReset) {
  BrokerProcess broker;
  auto setup = broker.connect();
  auto p = pipe_pair();
  // Replies of ~60 KB: a few fill the socket, the rest stay queued in the broker,
  // which keeps the connection open (draining) after the SIGTERM.
  json big = {{"op", "put"}, {"name", "big"}, {"meta", {{"blob", std::string(60000, 'x')}}}};
  ASSERT_TRUE(call(setup.get(), big, {p.write.get()}).ok());
  auto c = broker.connect();
  constexpr int gets = 10;
  for (int id = 0; id < gets; ++id)
    send_raw(c.get(), json({{"op", "get"}, {"name", "big"}, {"id", id}}).dump());
  std::this_thread::sleep_for(std::chrono::milliseconds(150));  // all read, most queued
  ::kill(broker.pid(), SIGTERM);
  broker.wait_notify("STOPPING=1");
  std::this_thread::sleep_for(std::chrono::milliseconds(150));
  // Too late: refused by the kernel, so the client knows it was never received.
  std::string hello = json({{"op", "hello"}, {"id", "late"}}).dump();
  EXPECT_EQ(::send(c.get(), hello.data(), hello.size(), MSG_NOSIGNAL | MSG_DONTWAIT), -1);
  EXPECT_EQ(errno, EPIPE);
  for (int id = 0; id < gets; ++id) {
    auto r = receive(c.get());
    EXPECT_TRUE(r.ok() && r.body["id"] == id && r.fds.size() == 1) << r.raw.substr(0, 80);
  }
  EXPECT_TRUE(ends_cleanly(c.get()));
  EXPECT_EQ(broker.wait_exit(5000), 0);
}

TEST(BrokerShutdownReplies, ClientThrowsBrokerErrorEshutdown) {
  BrokerProcess broker;
  Client client(broker.socket_path());
  auto waiting = std::async(std::launch::async, [&] {
    try {
      client.get("later", 20000);
      return std::string("the get succeeded");
    } catch (const BrokerError& e) {
      if (e.code().value() != ESHUTDOWN) return "wrong errno: " + e.error_name();
      if (e.error_name() != "ESHUTDOWN" || e.message() != "broker shutting down") {
        return "wrong error: " + e.error_name() + ": " + e.message();
      }
      return std::string();
    } catch (const std::exception& e) {
      return std::string("not a BrokerError: ") + e.what();
    }
  });
  ASSERT_EQ(waiting.wait_for(std::chrono::milliseconds(200)), std::future_status::timeout);
  ::kill(broker.pid(), SIGTERM);
  ASSERT_EQ(waiting.wait_for(std::chrono::seconds(10)), std::future_status::ready);
  EXPECT_EQ(waiting.get(), "");
  EXPECT_EQ(broker.wait_exit(5000), 0);
}

TEST(BrokerUpgradeReplies, AWaitingGetAndWhatFollowsItAreToldToRetryAtTheNewBroker) {
  no_fdstore();
  BrokerProcess broker;
  auto c = broker.connect();
  send_raw(c.get(), get_waiting("later", "w").dump());
  send_raw(c.get(), json({{"op", "hello"}, {"id", "behind"}}).dump());
  ASSERT_TRUE(silent_for(c.get(), 150));
  auto admin = broker.connect();
  auto up = call(admin.get(), {{"op", "upgrade"}, {"id", "u"}});
  ASSERT_TRUE(up.ok()) << up.raw;
  pid_t successor = up.body.at("pid").get<pid_t>();
  EXPECT_TRUE(next_is_eshutdown(c.get(), "w", "replaced"));
  EXPECT_TRUE(next_is_eshutdown(c.get(), "behind", "replaced"));
  EXPECT_TRUE(ends_cleanly(c.get()));
  EXPECT_EQ(broker.wait_exit(5000), 0);
  // Retrying as told: the new broker serves it (and waits, as the old one did).
  auto retry = broker.connect();
  send_raw(retry.get(), get_waiting("later", "again").dump());
  EXPECT_TRUE(silent_for(retry.get(), 100));
  auto p = pipe_pair();
  auto producer = broker.connect();
  ASSERT_TRUE(call(producer.get(), {{"op", "put"}, {"name", "later"}}, {p.write.get()}).ok());
  auto got = receive(retry.get());
  EXPECT_TRUE(got.ok()) << got.raw;
  stop_successor(successor);
}

TEST(BrokerUpgradeReplies, AFailedUpgradeStillAnsweredTheWaiterAndLeaksNoDescriptor) {
  no_fdstore();
  BrokerProcess broker;
  std::size_t baseline = broker.fd_count();
  auto c = broker.connect();
  send_raw(c.get(), get_waiting("later", "w").dump());
  auto offered = pipe_pair();
  send_raw(c.get(), json({{"op", "put"}, {"name", "p"}, {"id", "put"}}).dump(),
           {offered.write.get()});
  ASSERT_TRUE(silent_for(c.get(), 150));
  offered.write.reset();
  {
    auto admin = broker.connect();
    // A binary that cannot become a broker: the drain happens, then the old broker carries on.
    auto up = call(admin.get(), {{"op", "upgrade"}, {"binary", "/bin/false"}});
    EXPECT_EQ(up.error(), "ECHILD") << up.raw;
  }
  EXPECT_TRUE(next_is_eshutdown(c.get(), "w", "replaced"));
  EXPECT_TRUE(next_is_eshutdown(c.get(), "put", "replaced"));
  EXPECT_TRUE(ends_cleanly(c.get()));
  EXPECT_TRUE(reaches_eof(offered.read.get()));
  EXPECT_TRUE(broker.settles_at(baseline));
  // And it still serves.
  auto again = broker.connect();
  EXPECT_TRUE(call(again.get(), {{"op", "hello"}}).ok());
}
