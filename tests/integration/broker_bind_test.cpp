// SPDX-License-Identifier: LGPL-2.1-or-later
// `bind` through a real fdbrokerd: the `bind` rules decide, the broker makes and
// binds the socket (a privileged port for an unprivileged caller) and keeps no copy.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>

#include "broker_harness.hpp"
#include "test_util.hpp"

using namespace fdbroker;
using namespace fdbroker::test;

namespace {

constexpr uid_t nobody = 65534;
constexpr gid_t nogroup = 65534;

// A privileged port on 127.0.0.1 in [from, from + 150) that nothing is bound to
// now, found by binding it. Each test searches its own range: ctest runs them
// in parallel.
int free_privileged_port(int from, int type = SOCK_STREAM) {
  for (int port = from; port < std::min(from + 150, 1024); ++port) {
    unique_fd s(::socket(AF_INET, type | SOCK_CLOEXEC, 0));
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(static_cast<std::uint16_t>(port));
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (::bind(s.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) == 0) return port;
  }
  throw std::runtime_error("no free privileged port");
}

std::string url(const std::string& scheme, int port) {
  return scheme + "://127.0.0.1:" + std::to_string(port);
}

json bind_request(const std::string& address, bool reuseport = false) {
  return {{"op", "bind"}, {"address", address}, {"reuseport", reuseport}};
}

}  // namespace

TEST(BrokerBind, AnUnprivilegedCallerGetsAPrivilegedPortThatServes) {
  int port = free_privileged_port(700);
  json config = {{"bind",
                  {{{"name", "web"},
                    {"address", url("tcp", port)},
                    {"users", {"nobody"}},
                    {"allow", {"bind"}}}}}};
  BrokerProcess broker(config);
  std::size_t baseline = broker.fd_count();
  std::string result = as_user_expect(broker, nobody, nogroup, {}, [&](Expectations& c) {
    Reply r = c.expect(bind_request(url("tcp", port)), "", "bind");
    if (r.fds.size() != 1) return c.fail("no socket attached");
    if (r.body["rule"] != "web") c.fail("rule " + r.body["rule"].dump());
    if (r.body["address"] != url("tcp", port)) c.fail("address " + r.body["address"].dump());
    if (!is_cloexec(r.fds[0].get())) c.fail("not close-on-exec");
    // It listens: a client connects and what it sends arrives.
    unique_fd client(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(static_cast<std::uint16_t>(port));
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (::connect(client.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) != 0)
      return c.fail("connect failed");
    unique_fd served(::accept4(r.fds[0].get(), nullptr, nullptr, SOCK_CLOEXEC));
    if (!served.valid()) return c.fail("accept failed");
    if (::write(client.get(), "hi", 2) != 2) return c.fail("write failed");
    char buf[2];
    if (::read(served.get(), buf, 2) != 2 || std::string(buf, 2) != "hi") c.fail("no data");
  });
  EXPECT_EQ(result, "");
  EXPECT_TRUE(broker.settles_at(baseline));  // no copy kept
}

TEST(BrokerBind, RulesDecidePortsProtocolsAndReuseport) {
  int port = free_privileged_port(850);
  int udp_port = free_privileged_port(1000 - 40, SOCK_DGRAM);  // apart from `port`
  json config = {
      {"bind",
       {{{"name", "range"},
         {"address", "tcp://127.0.0.1:" + std::to_string(port) + "-" + std::to_string(port + 1)},
         {"users", {"nobody"}},
         {"allow", {"bind"}}},
        {{"name", "shared"},
         {"address", "tcp://*:" + std::to_string(port + 1)},
         {"users", {"nobody"}},
         {"allow", {"bind"}},
         {"reuseport", true}},
        {{"name", "dns"},
         {"address", url("udp", udp_port)},
         {"users", {"nobody"}},
         {"allow", {"bind"}}}}}};
  BrokerProcess broker(config);
  std::size_t baseline = broker.fd_count();
  // The port is taken by someone else.
  unique_fd taken(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<std::uint16_t>(port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(::bind(taken.get(), reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
  ASSERT_EQ(::listen(taken.get(), 1), 0);
  std::string result = as_user_expect(broker, nobody, nogroup, {}, [&](Expectations& c) {
    c.expect(bind_request(url("tcp", port)), "EADDRINUSE", "taken port");
    c.expect(bind_request(url("tcp", port + 2)), "EACCES", "outside the range");
    c.expect(bind_request(url("tcp", port - 1)), "EACCES", "below the range");
    c.expect(bind_request(url("udp", port)), "EACCES", "udp where the rule says tcp");
    c.expect(bind_request(url("tcp", port + 1), true), "", "reuseport where the rule allows it");
    c.expect(bind_request("tcp://127.0.0.2:" + std::to_string(port)), "EACCES", "another host");
    Reply udp = c.expect(bind_request(url("udp", udp_port)), "", "udp");
    if (udp.fds.size() == 1) {
      int type = 0;
      socklen_t len = sizeof type;
      ::getsockopt(udp.fds[0].get(), SOL_SOCKET, SO_TYPE, &type, &len);
      if (type != SOCK_DGRAM) c.fail("udp gave a socket of type " + std::to_string(type));
    }
    c.expect(bind_request(url("udp", udp_port), true), "EACCES", "reuseport without consent");
    c.expect(bind_request(url("tcp", 0)), "EINVAL", "port 0");
    c.expect(bind_request("unix:/run/x.sock"), "EINVAL", "a unix path");
    c.expect(bind_request("http://127.0.0.1:80"), "EINVAL", "an unknown scheme");
    c.expect({{"op", "bind"}}, "EINVAL", "no address");
    c.expect({{"op", "bind"}, {"address", url("tcp", port)}, {"backlog", 0}}, "EINVAL",
             "backlog 0");
  });
  EXPECT_EQ(result, "");
  // Root has no rule: refused too.
  auto root = broker.connect();
  EXPECT_EQ(call(root.get(), bind_request(url("tcp", port + 1))).error(), "EACCES");
  root.reset();
  EXPECT_TRUE(broker.settles_at(baseline));
}
