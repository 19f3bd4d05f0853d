// SPDX-License-Identifier: LGPL-2.1-or-later
// fdbroker::Client against a real fdbrokerd: every operation, broker refusals as
// BrokerError with the errno the reply named, transport failures as plain
// std::system_error, and no descriptor left behind on either side.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <fdbroker/client.hpp>
#include <fdbroker/error.hpp>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "broker_harness.hpp"
#include "test_util.hpp"

namespace {

using fdbroker::BrokerError;
using fdbroker::Client;
using fdbroker::PutOptions;
using namespace fdbroker::test;

// The errno of the BrokerError `f` throws; -1 for any other outcome.
template <class F>
int broker_errno(F&& f) {
  try {
    f();
  } catch (const BrokerError& e) {
    return e.code().value();
  } catch (...) {
    return -1;
  }
  return -1;
}

// Every test gets its own broker; at the end the broker must hold exactly the fds
// it held at the start once the test's entries are gone and its client closed.
class ClientTest : public ::testing::Test {
 protected:
  void SetUp() override {
    baseline_ = settled_fd_count();
    client_.connect(broker_.socket_path());
  }

  void TearDown() override {
    for (const auto& e : client_.list()) {
      if (!e.is_static) client_.remove(e.name);
    }
    client_.close();
    EXPECT_TRUE(broker_.settles_at(baseline_));
    EXPECT_EQ(broker_.terminate(), 0);
  }

  // The broker's fd count once it stops moving: READY=1 can arrive while
  // sd_notify's own socket is still open in the broker.
  std::size_t settled_fd_count() const {
    std::size_t last = broker_.fd_count();
    auto stable_since = std::chrono::steady_clock::now();
    while (std::chrono::steady_clock::now() - stable_since < std::chrono::milliseconds(200)) {
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
      std::size_t now = broker_.fd_count();
      if (now != last) {
        last = now;
        stable_since = std::chrono::steady_clock::now();
      }
    }
    return last;
  }

  BrokerProcess broker_;
  std::size_t baseline_ = 0;
  Client client_;
};

TEST_F(ClientTest, HelloReportsThisProcess) {
  auto hello = client_.hello();
  EXPECT_EQ(hello.server, "fdbrokerd");
  EXPECT_EQ(hello.protocol, 1);
  EXPECT_EQ(hello.peer.pid, ::getpid());
  EXPECT_EQ(hello.peer.uid, ::getuid());
  EXPECT_EQ(hello.peer.gid, ::getgid());
  // broker_identity_test checks the unit; here outside any unit it may be none.
  EXPECT_EQ(hello.peer.cgroup, own_cgroup());
}

TEST_F(ClientTest, PutThenGetSharesTheOpenFile) {
  auto pipe = pipe_pair();
  PutOptions options;
  options.meta_json = R"({"role":"log"})";
  std::uint64_t generation = client_.put("log", {pipe.write.get()}, options);
  EXPECT_GE(generation, 1u);

  std::size_t before = open_fd_count();
  {
    fdbroker::Entry entry = client_.get("log");
    EXPECT_EQ(entry.name, "log");
    EXPECT_EQ(entry.generation, generation);
    EXPECT_EQ(entry.meta_json, R"({"role":"log"})");
    EXPECT_EQ(entry.owner_uid, ::getuid());
    EXPECT_FALSE(entry.is_static);
    ASSERT_EQ(entry.fds.size(), 1u);
    ASSERT_EQ(entry.fd_descriptions.size(), 1u);
    EXPECT_EQ(entry.fd_descriptions[0].kind, "pipe");
    EXPECT_EQ(entry.fd_descriptions[0].access, "w");
    EXPECT_TRUE(same_file(entry.fds[0].get(), pipe.write.get()));
    EXPECT_TRUE(fdbroker::test::is_cloexec(entry.fds[0].get()));
    ASSERT_EQ(::write(entry.fds[0].get(), "x", 1), 1);
  }
  EXPECT_EQ(open_fd_count(), before);
  char byte = 0;
  EXPECT_EQ(::read(pipe.read.get(), &byte, 1), 1);
  EXPECT_EQ(byte, 'x');
}

TEST_F(ClientTest, MissingEntryIsEnoentAndTryGetIsEmpty) {
  EXPECT_EQ(broker_errno([&] { client_.get("missing"); }), ENOENT);
  EXPECT_EQ(broker_errno([&] { client_.take("missing"); }), ENOENT);
  EXPECT_EQ(broker_errno([&] { client_.remove("missing"); }), ENOENT);
  EXPECT_FALSE(client_.try_get("missing").has_value());
  EXPECT_FALSE(client_.try_take("missing").has_value());
  try {
    client_.get("missing");
  } catch (const BrokerError& e) {
    EXPECT_EQ(e.error_name(), "ENOENT");
    EXPECT_NE(e.message().find("missing"), std::string::npos);
  }
}

TEST_F(ClientTest, PutRefusesExistingUnlessReplaceOrMatchingGeneration) {
  auto pipe = pipe_pair();
  std::uint64_t first = client_.put("x", {pipe.read.get()});
  EXPECT_EQ(broker_errno([&] { client_.put("x", {pipe.read.get()}); }), EEXIST);

  PutOptions replace;
  replace.replace = true;
  std::uint64_t second = client_.put("x", {pipe.write.get()}, replace);
  EXPECT_GT(second, first);

  PutOptions stale;
  stale.expect_generation = first;
  EXPECT_EQ(broker_errno([&] { client_.put("x", {pipe.read.get()}, stale); }), ESTALE);
  PutOptions absent;
  absent.expect_generation = 0;
  EXPECT_EQ(broker_errno([&] { client_.put("x", {pipe.read.get()}, absent); }), ESTALE);
  PutOptions current;
  current.expect_generation = second;
  EXPECT_GT(client_.put("x", {pipe.read.get()}, current), second);
}

TEST_F(ClientTest, TakeRemovesAndDeleteClosesTheBrokersCopy) {
  auto a = pipe_pair();
  auto b = pipe_pair();
  client_.put("a", {a.write.get()});
  client_.put("b", {b.write.get()});
  a.write.reset();
  b.write.reset();
  {
    fdbroker::Entry taken = client_.take("a");
    EXPECT_EQ(taken.fds.size(), 1u);
  }
  EXPECT_EQ(broker_errno([&] { client_.get("a"); }), ENOENT);
  EXPECT_TRUE(reaches_eof(a.read.get()));  // the broker dropped its copy with the take

  client_.remove("b");
  EXPECT_TRUE(reaches_eof(b.read.get()));
}

TEST_F(ClientTest, WaitGetsALaterPutAndOtherwiseTimesOut) {
  auto start = std::chrono::steady_clock::now();
  EXPECT_EQ(broker_errno([&] { client_.get("later", 150); }), ETIMEDOUT);
  EXPECT_GE(std::chrono::steady_clock::now() - start, std::chrono::milliseconds(140));

  auto pipe = pipe_pair();
  std::thread producer([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    Client other(broker_.socket_path());
    other.put("later", {pipe.read.get()});
  });
  fdbroker::Entry entry = client_.get("later", 20000);
  producer.join();
  EXPECT_TRUE(same_file(entry.fds[0].get(), pipe.read.get()));
}

TEST_F(ClientTest, TtlExpiresTheEntry) {
  auto pipe = pipe_pair();
  PutOptions options;
  options.ttl_ms = 200;
  client_.put("brief", {pipe.write.get()}, options);
  pipe.write.reset();
  {
    auto entry = client_.get("brief");
    ASSERT_TRUE(entry.expires_ms.has_value());
    EXPECT_LE(*entry.expires_ms, 200);
  }
  EXPECT_TRUE(reaches_eof(pipe.read.get(), 10000));
  EXPECT_FALSE(client_.try_get("brief").has_value());
}

TEST_F(ClientTest, ListFollowsTheCursorOverEveryPage) {
  auto pipe = pipe_pair();
  std::vector<std::string> names;
  for (int i = 0; i < 260; ++i) {
    char name[32];
    std::snprintf(name, sizeof name, "p/%03d", i);
    names.emplace_back(name);
    client_.put(name, {pipe.read.get()});
  }
  client_.put("q", {pipe.read.get()});
  std::vector<std::string> listed;
  for (const auto& e : client_.list("p/", 33)) listed.push_back(e.name);
  EXPECT_EQ(listed, names);

  auto page = client_.list_page("p/", 100);
  EXPECT_EQ(page.entries.size(), 100u);
  ASSERT_TRUE(page.cursor.has_value());
  auto rest = client_.list_page("p/", 1000, page.cursor);
  EXPECT_EQ(rest.entries.size(), 160u);
  EXPECT_FALSE(rest.cursor.has_value());
}

TEST_F(ClientTest, StatsCountEntriesAndFds) {
  auto pipe = pipe_pair();
  client_.put("s", {pipe.read.get(), pipe.write.get()});
  auto stats = client_.stats();
  EXPECT_EQ(stats.entries, 1);
  EXPECT_EQ(stats.fds_held, 2);
  EXPECT_GE(stats.connections_current, 1);
  EXPECT_GE(stats.requests.at("put").at("ok"), 1);
  EXPECT_NE(stats.json.find("\"requests\""), std::string::npos);
}

TEST_F(ClientTest, BadArgumentsAreRefusedBeforeSending) {
  auto pipe = pipe_pair();
  EXPECT_THROW(client_.put("none", {}), std::invalid_argument);
  PutOptions bad_meta;
  bad_meta.meta_json = "[1]";
  EXPECT_THROW(client_.put("m", {pipe.read.get()}, bad_meta), std::invalid_argument);
  EXPECT_EQ(broker_errno([&] { client_.put("bad name", {pipe.read.get()}); }), EINVAL);
  // The connection is still in step.
  EXPECT_EQ(client_.hello().protocol, 1);
}

TEST_F(ClientTest, AnotherUserIsRefusedWithEacces) {
  auto pipe = pipe_pair();
  client_.put("private", {pipe.read.get()});
  std::string socket = broker_.socket_path();
  std::string outcome = fdbroker::test::as_user(65534, 65534, {}, [&]() -> std::string {
    Client nobody(socket);
    std::string problems;
    if (nobody.hello().peer.uid != 65534) problems += "hello: wrong uid; ";
    if (broker_errno([&] { nobody.get("private"); }) != EACCES) problems += "get not EACCES; ";
    if (broker_errno([&] { nobody.take("private"); }) != EACCES) problems += "take not EACCES; ";
    if (broker_errno([&] { nobody.remove("private"); }) != EACCES)
      problems += "delete not EACCES; ";
    if (!nobody.list().empty()) problems += "list shows root's entry; ";
    return problems;
  });
  EXPECT_EQ(outcome, "");
  EXPECT_EQ(client_.get("private").fds.size(), 1u);
}

TEST_F(ClientTest, ReplyWaiterRunsBeforeEachReplyAndAThrowClosesTheConnection) {
  int calls = 0;
  client_.set_reply_waiter([&](int sock) {
    EXPECT_EQ(sock, client_.fd());
    ++calls;
  });
  client_.hello();
  client_.stats();
  EXPECT_EQ(calls, 2);

  client_.set_reply_waiter([](int) { throw std::runtime_error("interrupted"); });
  EXPECT_THROW(client_.get("never", 20000), std::runtime_error);
  EXPECT_FALSE(client_.connected());
  client_.set_reply_waiter(nullptr);
  client_.connect(broker_.socket_path());
  EXPECT_EQ(client_.hello().protocol, 1);
}

TEST(ClientTransport, MissingSocketIsATransportErrorNotARefusal) {
  fdbroker::test::TempDir dir;
  try {
    Client client(dir.socket_path("none"));
    FAIL() << "connected to nothing";
  } catch (const BrokerError&) {
    FAIL() << "a transport failure must not look like a refusal";
  } catch (const std::system_error& e) {
    EXPECT_EQ(e.code().value(), ENOENT);
  }
  Client unconnected;
  try {
    unconnected.hello();
    FAIL() << "hello without a connection";
  } catch (const std::system_error& e) {
    EXPECT_EQ(e.code().value(), ENOTCONN);
  }
}

TEST(ClientTransport, BrokerGoingAwayIsEconnreset) {
  BrokerProcess broker;
  Client client(broker.socket_path());
  EXPECT_EQ(client.hello().protocol, 1);
  EXPECT_EQ(broker.terminate(), 0);
  try {
    client.hello();
    FAIL() << "hello after the broker stopped";
  } catch (const BrokerError&) {
    FAIL() << "a transport failure must not look like a refusal";
  } catch (const std::system_error& e) {
    // EPIPE if the send already sees the closed peer, ECONNRESET if the reply never comes.
    EXPECT_TRUE(e.code().value() == ECONNRESET || e.code().value() == EPIPE) << e.what();
  }
}

TEST(ClientTransport, SocketPathFromEnvironment) {
  ::setenv("FDBROKER_SOCKET", "/run/elsewhere.sock", 1);
  EXPECT_EQ(fdbroker::socket_path_from_env(), "/run/elsewhere.sock");
  ::setenv("FDBROKER_SOCKET", "", 1);
  EXPECT_EQ(fdbroker::socket_path_from_env(), fdbroker::default_socket_path);
  ::unsetenv("FDBROKER_SOCKET");
  EXPECT_EQ(fdbroker::socket_path_from_env(), fdbroker::default_socket_path);
}

}  // namespace
