// SPDX-License-Identifier: LGPL-2.1-or-later
// fdbroker::Client's own timeout: a wedged broker (a real listener in the test that
// accepts and never answers, or a real fdbrokerd stopped with SIGSTOP) gives a
// plain std::system_error with ETIMEDOUT after about the timeout, closes the
// connection and leaks no descriptor; a wait_ms longer than the timeout is not cut
// short; the broker's own ETIMEDOUT stays a BrokerError; the waiters compose with it.
// Durations are asserted as a lower bound and a generous upper bound only.
#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <fdbroker/client.hpp>
#include <fdbroker/scm_rights.hpp>
#include <functional>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "broker_harness.hpp"
#include "test_util.hpp"

namespace {

using fdbroker::BrokerError;
using fdbroker::Client;
using fdbroker::unique_fd;
using namespace fdbroker::test;
using std::chrono::milliseconds;
using Clock = std::chrono::steady_clock;

// Far above any timeout used here: only a client that never gives up exceeds it.
constexpr milliseconds generous{15000};

// A "broker" that is a real AF_UNIX SOCK_SEQPACKET listener and never answers.
class WedgedPeer {
 public:
  explicit WedgedPeer(int backlog = 16) : path_(dir_.socket_path("wedged.sock")) {
    listener_.reset(::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0));
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::strncpy(addr.sun_path, path_.c_str(), sizeof addr.sun_path - 1);
    if (::bind(listener_.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) < 0 ||
        ::listen(listener_.get(), backlog) < 0) {
      throw std::system_error(errno, std::system_category(), "wedged peer on " + path_);
    }
  }
  [[nodiscard]] const std::string& path() const { return path_; }
  // The server side of the next connection (already queued by connect()).
  unique_fd accept() const {
    return unique_fd(::accept4(listener_.get(), nullptr, nullptr, SOCK_CLOEXEC));
  }

 private:
  TempDir dir_;
  std::string path_;
  unique_fd listener_;
};

// What `f` threw: the errno of a plain std::system_error (not a BrokerError), and
// how long it took; errno -1 for anything else.
struct Outcome {
  int transport_errno = -1;
  milliseconds took{0};
};

template <class F>
Outcome transport_failure(F&& f) {
  auto start = Clock::now();
  Outcome outcome;
  try {
    f();
  } catch (const BrokerError&) {
    // a refusal is not a timeout: leave -1
  } catch (const std::system_error& e) {
    outcome.transport_errno = e.code().value();
  } catch (...) {
  }
  outcome.took = std::chrono::duration_cast<milliseconds>(Clock::now() - start);
  return outcome;
}

// ETIMEDOUT, and no sooner than `timeout`; a client that never gives up fails too.
::testing::AssertionResult timed_out_after(const Outcome& outcome, milliseconds timeout) {
  if (outcome.transport_errno != ETIMEDOUT) {
    return ::testing::AssertionFailure()
           << "errno " << outcome.transport_errno << ", not ETIMEDOUT";
  }
  if (outcome.took < timeout || outcome.took >= generous) {
    return ::testing::AssertionFailure() << "timed out after " << outcome.took.count()
                                         << " ms, for a timeout of " << timeout.count() << " ms";
  }
  return ::testing::AssertionSuccess();
}

// True once the peer of `server_side` closed its end: the request is read, then EOF.
bool peer_closed(int server_side) {
  for (;;) {
    pollfd pfd{server_side, POLLIN, 0};
    if (::poll(&pfd, 1, 5000) != 1) return false;
    auto message = fdbroker::recvfds(server_side, 65537);
    if (message.empty()) return true;
  }
}

TEST(ClientTimeout, IsOffByDefaultAndMustBePositive) {
  Client client;
  EXPECT_FALSE(client.timeout().has_value());
  client.set_timeout(milliseconds(250));
  EXPECT_EQ(client.timeout(), milliseconds(250));
  EXPECT_THROW(client.set_timeout(milliseconds(0)), std::invalid_argument);
  EXPECT_THROW(client.set_timeout(milliseconds(-5)), std::invalid_argument);
  EXPECT_EQ(client.timeout(), milliseconds(250));
  client.set_timeout(std::nullopt);
  EXPECT_FALSE(client.timeout().has_value());
}

TEST(ClientTimeout, SilentPeerGivesEtimedoutAndClosesTheConnection) {
  WedgedPeer peer;
  std::size_t fds_before = open_fd_count();
  {
    Client client(peer.path(), milliseconds(300));
    unique_fd server_side = peer.accept();
    ASSERT_TRUE(server_side.valid());
    Outcome outcome = transport_failure([&] { client.hello(); });
    EXPECT_TRUE(timed_out_after(outcome, milliseconds(300)));
    EXPECT_FALSE(client.connected());
    EXPECT_TRUE(peer_closed(server_side.get()));
    // The next call says so instead of reading a stale reply.
    EXPECT_EQ(transport_failure([&] { client.stats(); }).transport_errno, ENOTCONN);
  }
  EXPECT_EQ(open_fd_count(), fds_before);
}

TEST(ClientTimeout, WaitMsIsAddedToTheTimeout) {
  WedgedPeer peer;
  Client client(peer.path(), milliseconds(100));
  unique_fd server_side = peer.accept();
  Outcome outcome = transport_failure([&] { client.get("never", 400); });
  EXPECT_TRUE(timed_out_after(outcome, milliseconds(500)));
  EXPECT_FALSE(client.connected());
}

TEST(ClientTimeout, FullSendQueueGivesEtimedout) {
  WedgedPeer peer;
  std::size_t fds_before = open_fd_count();
  {
    Client client(peer.path(), milliseconds(300));
    unique_fd server_side = peer.accept();
    // Fill the connection until the kernel refuses more: the peer reads nothing.
    std::string filler(60000, 'x');
    int sent = 0;
    while (::send(client.fd(), filler.data(), filler.size(), MSG_DONTWAIT | MSG_NOSIGNAL) > 0)
      ++sent;
    ASSERT_EQ(errno, EAGAIN);
    ASSERT_GT(sent, 0);
    Outcome outcome = transport_failure([&] { client.hello(); });
    EXPECT_TRUE(timed_out_after(outcome, milliseconds(300)));
    EXPECT_FALSE(client.connected());
    EXPECT_TRUE(peer_closed(server_side.get()));
  }
  EXPECT_EQ(open_fd_count(), fds_before);
}

TEST(ClientTimeout, FullListenBacklogBoundsTheConnect) {
  // listen(0): one connection waits in the backlog, the next connect() blocks.
  WedgedPeer peer(0);
  Client first(peer.path());
  std::size_t fds_before = open_fd_count();
  Outcome outcome = transport_failure([&] { Client second(peer.path(), milliseconds(300)); });
  EXPECT_TRUE(timed_out_after(outcome, milliseconds(300)));
  EXPECT_EQ(open_fd_count(), fds_before);
}

void ignore_signal(int) {}

TEST(ClientTimeout, SignalsDoNotRestartTheTimeout) {
  // SIGALRM every 40 ms interrupts each poll(): a client that started its timeout
  // afresh after each EINTR would never give up.
  struct sigaction action {};
  action.sa_handler = &ignore_signal;  // no SA_RESTART
  struct sigaction previous {};
  ASSERT_EQ(::sigaction(SIGALRM, &action, &previous), 0);
  itimerval every{{0, 40000}, {0, 40000}};
  ::setitimer(ITIMER_REAL, &every, nullptr);

  WedgedPeer peer;
  Client client(peer.path(), milliseconds(300));
  unique_fd server_side = peer.accept();
  Outcome outcome = transport_failure([&] { client.hello(); });

  itimerval off{};
  ::setitimer(ITIMER_REAL, &off, nullptr);
  ::sigaction(SIGALRM, &previous, nullptr);
  EXPECT_TRUE(timed_out_after(outcome, milliseconds(300)));
}

TEST(ClientTimeout, IoWaiterIsToldTheTimeLeftAndAskedAgainUntilItRunsOut) {
  WedgedPeer peer;
  Client client(peer.path(), milliseconds(300));
  unique_fd server_side = peer.accept();
  std::vector<std::optional<milliseconds>> asked;
  // A waiter that waits a little and reports "not ready", as one interrupted by a
  // signal would: the client must ask again with less time left.
  client.set_io_waiter([&](int sock, short events, std::optional<milliseconds> left) {
    EXPECT_EQ(sock, client.fd());
    EXPECT_EQ(events, POLLIN);
    asked.push_back(left);
    std::this_thread::sleep_for(milliseconds(50));
    return false;
  });
  Outcome outcome = transport_failure([&] { client.hello(); });
  EXPECT_TRUE(timed_out_after(outcome, milliseconds(300)));
  ASSERT_GE(asked.size(), 2u);
  for (std::size_t i = 0; i < asked.size(); ++i) {
    ASSERT_TRUE(asked[i].has_value());
    EXPECT_GT(asked[i]->count(), 0);
    EXPECT_LE(*asked[i], milliseconds(300));
    if (i > 0) {
      EXPECT_LT(*asked[i], *asked[i - 1]);
    }
  }
  EXPECT_FALSE(client.connected());
}

// Every test below runs against a real fdbrokerd.
class ClientTimeoutBroker : public ::testing::Test {
 protected:
  BrokerProcess broker_;
};

TEST_F(ClientTimeoutBroker, StoppedBrokerGivesEtimedoutAndRecovers) {
  Client client(broker_.socket_path(), milliseconds(300));
  EXPECT_EQ(client.hello().protocol, 1);
  std::size_t broker_fds = broker_.fd_count();
  std::size_t fds_before = open_fd_count();

  ASSERT_EQ(::kill(broker_.pid(), SIGSTOP), 0);
  Outcome outcome = transport_failure([&] { client.stats(); });
  ::kill(broker_.pid(), SIGCONT);
  EXPECT_TRUE(timed_out_after(outcome, milliseconds(300)));
  EXPECT_FALSE(client.connected());
  EXPECT_EQ(open_fd_count(), fds_before - 1);  // exactly the connection is gone

  // Once it runs again, the broker drops the abandoned connection and answers anew.
  EXPECT_TRUE(broker_.settles_at(broker_fds - 1));
  client.connect(broker_.socket_path());
  EXPECT_EQ(client.hello().protocol, 1);
}

TEST_F(ClientTimeoutBroker, LongWaitIsNotCutShortByAShortTimeout) {
  Client client(broker_.socket_path(), milliseconds(100));
  auto pipe = pipe_pair();
  std::thread producer([&] {
    std::this_thread::sleep_for(milliseconds(500));
    Client other(broker_.socket_path());
    other.put("later", {pipe.read.get()});
  });
  auto start = Clock::now();
  std::optional<fdbroker::Entry> entry;
  try {
    entry = client.get("later", 20000);
  } catch (const std::exception& e) {
    ADD_FAILURE() << "get with wait_ms beyond the timeout failed: " << e.what();
  }
  producer.join();
  ASSERT_TRUE(entry.has_value());
  EXPECT_GE(Clock::now() - start, milliseconds(400));  // well past the 100 ms timeout
  EXPECT_TRUE(same_file(entry->fds.at(0).get(), pipe.read.get()));
  EXPECT_TRUE(client.connected());
  client.remove("later");
}

TEST_F(ClientTimeoutBroker, BrokersOwnEtimedoutIsABrokerErrorAndKeepsTheConnection) {
  Client client(broker_.socket_path(), milliseconds(100));
  try {
    client.get("never", 300);
    FAIL() << "got an entry nobody put";
  } catch (const BrokerError& e) {
    EXPECT_EQ(e.code().value(), ETIMEDOUT);
  }
  EXPECT_TRUE(client.connected());
  EXPECT_EQ(client.hello().protocol, 1);
}

TEST_F(ClientTimeoutBroker, ReplyWaiterStillRunsBeforeEachReplyWithinTheTimeout) {
  Client client(broker_.socket_path(), milliseconds(5000));
  int calls = 0;
  client.set_reply_waiter([&](int sock) {
    // The client waited itself: the reply is there already.
    pollfd pfd{sock, POLLIN, 0};
    EXPECT_EQ(::poll(&pfd, 1, 0), 1);
    ++calls;
  });
  client.hello();
  client.stats();
  EXPECT_EQ(calls, 2);

  client.set_reply_waiter([](int) { throw std::runtime_error("interrupted"); });
  EXPECT_THROW(client.hello(), std::runtime_error);
  EXPECT_FALSE(client.connected());
}

TEST_F(ClientTimeoutBroker, IoWaiterWithoutTimeoutIsToldNoLimit) {
  Client client(broker_.socket_path());
  std::vector<std::optional<milliseconds>> asked;
  client.set_io_waiter([&](int sock, short events, std::optional<milliseconds> left) {
    asked.push_back(left);
    pollfd pfd{sock, events, 0};
    return ::poll(&pfd, 1, -1) == 1;
  });
  EXPECT_EQ(client.hello().protocol, 1);
  ASSERT_FALSE(asked.empty());
  for (const auto& left : asked) EXPECT_FALSE(left.has_value());
}

}  // namespace
