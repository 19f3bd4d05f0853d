// SPDX-License-Identifier: LGPL-2.1-or-later
// fdbroker::listen() and handoff::Upgrader against a real fdbrokerd process
// (FDBROKERD_PATH) with real sockets, memfds, pidfds and child processes.
#include <fdbroker/handoff.hpp>

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "test_util.hpp"

namespace fdbroker {
namespace {

using namespace std::chrono_literals;

// fdbrokerd on a socket in a temp dir, with built-in defaults (our uid may do
// anything); killed and reaped by the destructor.
class Broker {
 public:
  Broker() {
    socket_ = dir_.socket_path("broker.sock");
    std::string config = dir_.socket_path("fdbroker.json");
    std::ofstream(config) << "{}\n";
    pid_ = ::fork();
    if (pid_ == 0) {
      ::execl(FDBROKERD_PATH, FDBROKERD_PATH, "--config", config.c_str(), "--socket",
              socket_.c_str(), "--log-level", "error", static_cast<char*>(nullptr));
      ::_exit(127);
    }
    for (int i = 0; i < 500; ++i) {
      unique_fd probe(::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0));
      auto url = parse_listen_url("unix:" + socket_);
      if (::connect(probe.get(), reinterpret_cast<const sockaddr*>(&url.address),
                    url.address_length) == 0)
        return;
      std::this_thread::sleep_for(10ms);
    }
    throw std::runtime_error("fdbrokerd did not start");
  }
  Broker(const Broker&) = delete;
  Broker& operator=(const Broker&) = delete;
  ~Broker() {
    ::kill(pid_, SIGKILL);
    ::waitpid(pid_, nullptr, 0);
  }
  [[nodiscard]] const std::string& socket() const { return socket_; }
  [[nodiscard]] Client client() const { return Client(socket_); }

 private:
  test::TempDir dir_;
  std::string socket_;
  pid_t pid_ = -1;
};

ListenOptions via(const Broker& broker) {
  ListenOptions options;
  options.broker_socket = broker.socket();
  return options;
}

handoff::Options upgrader_options(const Broker& broker) {
  handoff::Options options;
  options.broker_socket = broker.socket();
  return options;
}

// Two fds refer to the same socket (open file description) when their inodes agree.
ino_t inode_of(int fd) {
  struct stat st {};
  EXPECT_EQ(::fstat(fd, &st), 0);
  return st.st_ino;
}

std::uint16_t port_of(int sock) {
  auto url = try_socket_listen_url(sock);
  EXPECT_TRUE(url.ok());
  return url.ok() ? url->port : 0;
}

TEST(Listen, CreatesDepositsAndThenSharesTheSameSocket) {
  Broker broker;
  auto first = open_listener("web/http", "tcp://127.0.0.1:0", via(broker));
  EXPECT_EQ(first.origin, ListenerOrigin::created);
  EXPECT_GE(first.generation, 1u);
  EXPECT_TRUE(test::is_cloexec(first.fd.get()));

  auto second = open_listener("web/http", "tcp://127.0.0.1:0", via(broker));
  EXPECT_EQ(second.origin, ListenerOrigin::broker);
  EXPECT_EQ(second.generation, first.generation);
  EXPECT_EQ(inode_of(second.fd.get()), inode_of(first.fd.get()));

  // Closing every process-side copy does not close the socket: the broker keeps it,
  // and a connection made meanwhile waits in its queue for the next instance.
  auto port = port_of(first.fd.get());
  first.fd.reset();
  second.fd.reset();
  auto url = parse_listen_url("tcp://127.0.0.1:" + std::to_string(port));
  unique_fd client(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  ASSERT_EQ(
      ::connect(client.get(), reinterpret_cast<const sockaddr*>(&url.address), url.address_length),
      0);
  auto third = listen("web/http", url.str(), via(broker));
  unique_fd accepted(::accept4(third.get(), nullptr, nullptr, SOCK_CLOEXEC));
  EXPECT_TRUE(accepted.valid());
  EXPECT_EQ(::send(client.get(), "hi", 2, 0), 2);
  char buf[2];
  EXPECT_EQ(::recv(accepted.get(), buf, 2, 0), 2);
}

TEST(Listen, UnixSocketIsKeptByTheBrokerToo) {
  Broker broker;
  test::TempDir dir;
  std::string url = "unix:" + dir.socket_path("app.sock");
  auto first = open_listener("app/unix", url, via(broker));
  EXPECT_EQ(first.origin, ListenerOrigin::created);
  auto second = open_listener("app/unix", url, via(broker));
  EXPECT_EQ(second.origin, ListenerOrigin::broker);
  EXPECT_EQ(inode_of(second.fd.get()), inode_of(first.fd.get()));
  try {
    (void)listen("app/unix", "unix:" + dir.socket_path("other.sock"), via(broker));
    FAIL() << "no exception";
  } catch (const std::system_error& e) {
    EXPECT_EQ(e.code().value(), EEXIST) << e.what();
  }
}

TEST(Listen, EntryIsDescribedWithItsUrl) {
  Broker broker;
  auto listener = open_listener("web/http", "tcp://127.0.0.1:0", via(broker));
  auto entry = broker.client().get("web/http");
  ASSERT_EQ(entry.fd_descriptions.size(), 1u);
  EXPECT_EQ(entry.fd_descriptions[0].kind, "socket");
  EXPECT_TRUE(entry.fd_descriptions[0].listening);
  EXPECT_NE(entry.meta_json.find("tcp://127.0.0.1:0"), std::string::npos) << entry.meta_json;
}

TEST(Listen, EntryForAnotherAddressIsEexist) {
  Broker broker;
  auto held = listen("web/http", "tcp://127.0.0.1:0", via(broker));
  auto other_port = port_of(held.get()) == 65000 ? 65001 : 65000;
  try {
    (void)listen("web/http", "tcp://127.0.0.1:" + std::to_string(other_port), via(broker));
    FAIL() << "no exception";
  } catch (const std::system_error& e) {
    EXPECT_EQ(e.code().value(), EEXIST) << e.what();
  }
}

TEST(Listen, AddressTakenOutsideTheBrokerIsAddressInUse) {
  Broker broker;
  auto outsider = bind_listener(parse_listen_url("tcp://127.0.0.1:0"));
  auto options = via(broker);
  options.race_wait = 200ms;
  auto before = test::open_fd_count();
  try {
    (void)listen("web/http", "tcp://127.0.0.1:" + std::to_string(port_of(outsider.get())), options);
    FAIL() << "no exception";
  } catch (const std::system_error& e) {
    EXPECT_EQ(e.code().value(), EADDRINUSE) << e.what();
  }
  EXPECT_EQ(test::open_fd_count(), before);
}

TEST(Listen, RacingStartersAgreeOnOneSocket) {
  Broker broker;
  constexpr int starters = 6;
  std::vector<Listener> got(starters);
  std::vector<std::thread> threads;
  auto port = [] {
    auto probe = bind_listener(parse_listen_url("tcp://127.0.0.1:0"));
    return port_of(probe.get());
  }();
  std::string url = "tcp://127.0.0.1:" + std::to_string(port);
  for (int i = 0; i < starters; ++i) {
    threads.emplace_back([&, i] { got[i] = open_listener("race/http", url, via(broker)); });
  }
  for (auto& t : threads) t.join();
  int created = 0;
  for (auto& l : got) {
    created += l.origin == ListenerOrigin::created;
    EXPECT_EQ(inode_of(l.fd.get()), inode_of(got[0].fd.get()));
  }
  EXPECT_EQ(created, 1);
}

TEST(Listen, WithoutABrokerFallsBackToAPrivateSocket) {
  test::TempDir dir;
  ListenOptions options;
  options.broker_socket = dir.socket_path("nobody-here.sock");
  auto listener = open_listener("web/http", "tcp://127.0.0.1:0", options);
  EXPECT_EQ(listener.origin, ListenerOrigin::private_socket);
  EXPECT_STREQ(to_string(listener.origin), "private");
  EXPECT_NE(listener.broker_error.find("nobody-here.sock"), std::string::npos)
      << listener.broker_error;
  EXPECT_TRUE(socket_matches_url(listener.fd.get(), parse_listen_url("tcp://127.0.0.1:0")));

  options.require_broker = true;
  try {
    (void)listen("web/http", "tcp://127.0.0.1:0", options);
    FAIL() << "no exception";
  } catch (const std::system_error& e) {
    EXPECT_EQ(e.code().value(), ENOENT);
  }
}

TEST(Listen, InheritedFdWinsAndTheBrokerIsNotAsked) {
  test::TempDir dir;
  auto sock = bind_listener(parse_listen_url("tcp://127.0.0.1:0"));
  ino_t inode = inode_of(sock.get());
  std::vector<InheritedFd> fds;
  fds.push_back(InheritedFd{sock.release(), "web/http"});  // the set owns it now
  InheritedFds inherited(std::move(fds));
  ListenOptions options;
  options.broker_socket = dir.socket_path("nobody-here.sock");
  options.require_broker = true;  // would throw if it asked
  options.inherited = &inherited;
  auto listener = open_listener("web/http", "tcp://127.0.0.1:0", options);
  EXPECT_EQ(listener.origin, ListenerOrigin::inherited);
  EXPECT_EQ(inode_of(listener.fd.get()), inode);
  EXPECT_TRUE(inherited.remaining().empty());
}

TEST(Listen, BadUrlIsEinval) {
  Broker broker;
  try {
    (void)listen("web/http", "http://127.0.0.1:80", via(broker));
    FAIL() << "no exception";
  } catch (const std::system_error& e) {
    EXPECT_EQ(e.code().value(), EINVAL);
  }
}

TEST(Upgrader, FirstInstanceHasNoPredecessorAndBecomesLeader) {
  Broker broker;
  handoff::Upgrader up("svc", upgrader_options(broker));
  EXPECT_TRUE(up.has_broker());
  EXPECT_EQ(up.predecessor_generation(), 0u);
  EXPECT_EQ(up.predecessor_pid(), 0);
  EXPECT_TRUE(up.wait_for_predecessor_exit(0ms));
  up.ready();
  EXPECT_GT(up.generation(), 0u);
  auto leader = broker.client().get("svc/leader");
  EXPECT_EQ(leader.generation, up.generation());
  EXPECT_NE(leader.meta_json.find(std::to_string(::getpid())), std::string::npos);
  EXPECT_FALSE(up.wait_for_exit(50ms));
}

TEST(Upgrader, SuccessorReadyRetiresThePredecessorAndStateIsHandedOver) {
  Broker broker;
  auto before = test::open_fd_count();
  {
    handoff::Upgrader old_instance("svc", upgrader_options(broker));
    old_instance.ready();
    int exit_fd = old_instance.exit_fd();

    // State: a memfd both instances can map; the successor gets the same file.
    unique_fd state(::memfd_create("app-state", MFD_CLOEXEC));
    ASSERT_TRUE(state.valid());
    ASSERT_EQ(::write(state.get(), "counter=41", 10), 10);
    old_instance.put_state({state.get()}, R"({"format": 1})");

    handoff::Upgrader new_instance("svc", upgrader_options(broker));
    EXPECT_EQ(new_instance.predecessor_generation(), old_instance.generation());
    EXPECT_EQ(new_instance.predecessor_pid(), ::getpid());
    auto got = new_instance.take_state();
    ASSERT_TRUE(got);
    ASSERT_EQ(got->fds.size(), 1u);
    EXPECT_EQ(inode_of(got->fds[0].get()), inode_of(state.get()));
    EXPECT_NE(got->meta_json.find("format"), std::string::npos);
    EXPECT_FALSE(new_instance.take_state());  // taken: gone

    pollfd pfd{exit_fd, POLLIN, 0};
    EXPECT_EQ(::poll(&pfd, 1, 0), 0);  // nobody asked yet
    new_instance.ready();
    EXPECT_GT(new_instance.generation(), old_instance.generation());
    EXPECT_TRUE(old_instance.wait_for_exit(5s));
    EXPECT_EQ(::poll(&pfd, 1, 0), 1);
    EXPECT_TRUE(old_instance.exit_requested());
    EXPECT_EQ(old_instance.successor_pid(), ::getpid());
    // The retire request was consumed; the leader is the new instance.
    EXPECT_FALSE(
        broker.client().try_get("svc/retire/" + std::to_string(old_instance.generation())));
    EXPECT_EQ(broker.client().get("svc/leader").generation, new_instance.generation());
  }
  EXPECT_EQ(test::open_fd_count(), before);  // watcher connections, eventfds, pidfds closed
}

TEST(Upgrader, OfTwoRacingSuccessorsOneWinsTheOtherGetsEstale) {
  Broker broker;
  handoff::Upgrader leader("svc", upgrader_options(broker));
  leader.ready();
  handoff::Upgrader a("svc", upgrader_options(broker));
  handoff::Upgrader b("svc", upgrader_options(broker));
  a.ready();
  try {
    b.ready();
    FAIL() << "no exception";
  } catch (const std::system_error& e) {
    EXPECT_EQ(e.code().value(), ESTALE);
  }
  EXPECT_TRUE(leader.wait_for_exit(5s));
}

TEST(Upgrader, GetStateLeavesItForLaterInstancesAndWaits) {
  Broker broker;
  handoff::Upgrader up("svc", upgrader_options(broker));
  EXPECT_FALSE(up.get_state(100ms));  // none appears: nullopt after the wait
  auto pipe = test::pipe_pair();
  std::thread putter([&] {
    std::this_thread::sleep_for(100ms);
    handoff::Upgrader other("svc", upgrader_options(broker));
    other.put_state({pipe.write.get()});
  });
  auto state = up.get_state(5s);
  putter.join();
  ASSERT_TRUE(state);
  EXPECT_TRUE(up.get_state());  // still there
}

TEST(Upgrader, UpgradeSpawnsASuccessorWithoutListenVariablesAndReturnsOnceReady) {
  Broker broker;
  handoff::Upgrader up("svc", upgrader_options(broker));
  up.ready();
  // Pretend we were socket-activated: the successor must not inherit that claim.
  ::setenv("LISTEN_FDS", "1", 1);
  ::setenv("LISTEN_PID", std::to_string(::getpid()).c_str(), 1);
  ::setenv("FDBROKER_SOCKET", broker.socket().c_str(), 1);
  pid_t child = up.upgrade({HANDOFF_SUCCESSOR_PATH, "ready", "svc"});
  ::unsetenv("LISTEN_FDS");
  ::unsetenv("LISTEN_PID");
  ::unsetenv("FDBROKER_SOCKET");
  EXPECT_GT(child, 0);
  EXPECT_TRUE(up.exit_requested());
  EXPECT_EQ(up.successor_pid(), child);
  // The successor waits to be retired; retire it as a third instance would.
  handoff::Upgrader third("svc", upgrader_options(broker));
  EXPECT_EQ(third.predecessor_pid(), child);
  third.ready();
  EXPECT_TRUE(third.wait_for_predecessor_exit(10s));
  int status = 0;
  ASSERT_EQ(::waitpid(child, &status, 0), child);
  EXPECT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0);
}

TEST(Upgrader, SuccessorThatExitsBeforeReadyIsEchildAndWeStayLeader) {
  Broker broker;
  handoff::Upgrader up("svc", upgrader_options(broker));
  up.ready();
  try {
    (void)up.upgrade({HANDOFF_SUCCESSOR_PATH, "fail"});
    FAIL() << "no exception";
  } catch (const std::system_error& e) {
    EXPECT_EQ(e.code().value(), ECHILD);
    EXPECT_NE(std::string(e.what()).find("status 3"), std::string::npos) << e.what();
  }
  EXPECT_FALSE(up.exit_requested());
  EXPECT_EQ(broker.client().get("svc/leader").generation, up.generation());
}

TEST(Upgrader, SuccessorNeverReadyIsKilledAfterTheTimeout) {
  Broker broker;
  auto options = upgrader_options(broker);
  options.ready_timeout = 300ms;
  handoff::Upgrader up("svc", options);
  up.ready();
  auto start = std::chrono::steady_clock::now();
  try {
    (void)up.upgrade({HANDOFF_SUCCESSOR_PATH, "hang"});
    FAIL() << "no exception";
  } catch (const std::system_error& e) {
    EXPECT_EQ(e.code().value(), ETIMEDOUT);
  }
  EXPECT_LT(std::chrono::steady_clock::now() - start, 5s);
  EXPECT_FALSE(up.exit_requested());
}

TEST(Upgrader, WithoutABrokerRunsStandalone) {
  test::TempDir dir;
  handoff::Options options;
  options.broker_socket = dir.socket_path("nobody-here.sock");
  handoff::Upgrader up("svc", options);
  EXPECT_FALSE(up.has_broker());
  EXPECT_NE(up.broker_error().find("nobody-here.sock"), std::string::npos);
  up.ready();
  EXPECT_TRUE(up.is_ready());
  EXPECT_FALSE(up.wait_for_exit(50ms));
  EXPECT_FALSE(up.take_state());
  try {
    (void)up.upgrade({"/bin/true"});
    FAIL() << "no exception";
  } catch (const std::system_error& e) {
    EXPECT_EQ(e.code().value(), ENOTCONN);
  }
}

TEST(Upgrader, BadServiceNameIsEinval) {
  Broker broker;
  for (const char* bad : {"", "svc/"}) {
    try {
      handoff::Upgrader up(bad, upgrader_options(broker));
      FAIL() << "no exception for '" << bad << "'";
    } catch (const std::system_error& e) {
      EXPECT_EQ(e.code().value(), EINVAL);
    }
  }
}

}  // namespace
}  // namespace fdbroker
