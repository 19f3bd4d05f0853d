// SPDX-License-Identifier: LGPL-2.1-or-later
// Client::open and Client::bind against a real fdbrokerd with `files` and `bind`
// rules (issue 11): the descriptor and its description, the rule that allowed it,
// the broker's refusals as BrokerError with their errno, and the broker's fd count
// unchanged afterwards (it keeps no copy). The broker's decisions in every corner
// are the daemon's tests'; these show the C++ client carries them.
#include <arpa/inet.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <fdbroker/client.hpp>
#include <string>

#include "broker_harness.hpp"
#include "test_util.hpp"

namespace {

using fdbroker::BrokerError;
using fdbroker::Client;
using fdbroker::unique_fd;
using namespace fdbroker::test;

template <class F>
int broker_errno(F&& f) {
  try {
    f();
  } catch (const BrokerError& e) {
    return e.code().value();
  } catch (...) {
    return -1;
  }
  return 0;
}

// A TCP port on 127.0.0.1 that nobody listens on now (the kernel's pick).
int free_port() {
  unique_fd s(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof addr;
  if (::bind(s.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) < 0 ||
      ::getsockname(s.get(), reinterpret_cast<sockaddr*>(&addr), &len) < 0) {
    throw std::system_error(errno, std::system_category(), "free port");
  }
  return ntohs(addr.sin_port);
}

json privsep_config(const std::string& root) {
  return {{"files",
           {{{"name", "data"},
             {"root", root},
             {"match", {"**"}},
             {"users", {"root"}},
             {"allow", {"read", "write", "create"}},
             {"mode", "0640"}}}},
          {"bind",
           {{{"name", "high"},
             {"address", "tcp://127.0.0.1:1024-65535"},
             {"users", {"root"}},
             {"allow", {"bind"}}}}}};
}

class ClientPrivsepTest : public ::testing::Test {
 protected:
  void SetUp() override {
    baseline_ = broker_.fd_count();
    client_.connect(broker_.socket_path());
  }
  void TearDown() override {
    client_.close();
    EXPECT_TRUE(broker_.settles_at(baseline_));
    EXPECT_EQ(broker_.terminate(), 0);
  }

  TempDir root_;  // before broker_: the rule's root must exist when it loads
  BrokerProcess broker_{privsep_config(root_.path())};
  std::size_t baseline_ = 0;
  Client client_;
};

TEST_F(ClientPrivsepTest, OpenReadsAFileTheRuleAllows) {
  std::string path = root_.socket_path("config");
  {
    unique_fd f(::open(path.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0600));
    ASSERT_EQ(::write(f.get(), "hello", 5), 5);
  }
  std::size_t before = open_fd_count();
  {
    fdbroker::Opened opened = client_.open(path);
    EXPECT_EQ(opened.rule, "data");
    EXPECT_EQ(opened.path, path);
    EXPECT_FALSE(opened.created);
    EXPECT_EQ(opened.description.kind, "file");
    EXPECT_EQ(opened.description.access, "r");
    EXPECT_TRUE(is_cloexec(opened.fd.get()));
    char buf[8] = {};
    EXPECT_EQ(::read(opened.fd.get(), buf, sizeof buf), 5);
  }
  EXPECT_EQ(open_fd_count(), before);
}

TEST_F(ClientPrivsepTest, OpenCreatesWithTheModeMaskedByTheRule) {
  std::string path = root_.socket_path("new");
  fdbroker::OpenFlags flags;
  flags.access = fdbroker::OpenAccess::write;
  flags.create = true;
  flags.excl = true;
  fdbroker::Opened opened = client_.open(path, flags, 0666);
  EXPECT_TRUE(opened.created);
  struct stat st {};
  ASSERT_EQ(::fstat(opened.fd.get(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0640u);
  EXPECT_EQ(broker_errno([&] { client_.open(path, flags); }), EEXIST);
}

TEST_F(ClientPrivsepTest, RefusalsCarryTheBrokersErrno) {
  EXPECT_EQ(broker_errno([&] { client_.open("/etc/hostname"); }), EACCES);  // no rule
  EXPECT_EQ(broker_errno([&] { client_.open(root_.socket_path("missing")); }), ENOENT);
  EXPECT_EQ(broker_errno([&] { client_.open(root_.path() + "/../x"); }), EINVAL);
  EXPECT_EQ(broker_errno([&] { client_.bind("tcp://127.0.0.1:80"); }), EACCES);
  EXPECT_EQ(broker_errno([&] { client_.bind("tcp://127.0.0.1:0"); }), EINVAL);
}

TEST_F(ClientPrivsepTest, BindGivesAListeningSocketAndEaddrinuseForATakenPort) {
  int port = free_port();
  std::string url = "tcp://127.0.0.1:" + std::to_string(port);
  fdbroker::Bound bound = client_.bind(url);
  EXPECT_EQ(bound.rule, "high");
  EXPECT_TRUE(bound.description.listening);
  EXPECT_EQ(bound.description.local, "127.0.0.1:" + std::to_string(port));
  unique_fd conn(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<std::uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(::connect(conn.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  unique_fd served(::accept4(bound.fd.get(), nullptr, nullptr, SOCK_CLOEXEC));
  EXPECT_TRUE(served.valid());
  EXPECT_EQ(broker_errno([&] { client_.bind(url); }), EADDRINUSE);
  fdbroker::BrokerBindOptions reuse;
  reuse.reuseport = true;
  EXPECT_EQ(broker_errno([&] { client_.bind(url, reuse); }), EACCES);
}

}  // namespace
