// SPDX-License-Identifier: LGPL-2.1-or-later
// The "bind" rules: reading a rule's address, and the decision for a request.
#include "bind_rules.hpp"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "policy.hpp"

using namespace fdbroker::daemon;

namespace {

ClientIdentity peer(uid_t uid, std::optional<std::string> unit = std::nullopt) {
  ClientIdentity p;
  p.uid = uid;
  p.gid = uid;
  p.unit = std::move(unit);
  return p;
}

Principals anyone() {
  Principals who;
  who.any = true;
  return who;
}

BindRule rule(const std::string& name, const std::string& address, Principals who = anyone(),
              bool allow = true, bool reuseport = false) {
  BindRule r;
  r.name = name;
  r.origin = "bind[" + name + "]";
  std::string why = read_bind_address(address, r);
  EXPECT_EQ(why, "") << address;
  r.who = std::move(who);
  r.allow = allow;
  r.deny = !allow;
  r.reuseport = reuseport;
  return r;
}

// The rule name decide() grants for `url`, or "ERRNO: why".
std::string decision(const BindPolicy& policy, const ClientIdentity& who, const std::string& url,
                     bool reuseport = false) {
  auto parsed = fdbroker::try_parse_socket_url(url);
  EXPECT_TRUE(parsed.ok()) << url;
  if (!parsed.ok()) return "bad url";
  auto got = policy.decide(who, parsed.value().socket_type, parsed.value().url, reuseport);
  if (!got.ok()) {
    return std::string(fdbroker::errno_name(got.failure().err)) + ": " + got.failure().why;
  }
  return (*got)->name;
}

const std::string nothing = "EACCES: no bind rule grants it";

}  // namespace

TEST(BindAddress, RulesAreRead) {
  BindRule r;
  ASSERT_EQ(read_bind_address("tcp://*:443", r), "");
  EXPECT_EQ(r.socket_type, SOCK_STREAM);
  EXPECT_FALSE(r.host.has_value());
  EXPECT_EQ(r.family, AF_UNSPEC);
  EXPECT_FALSE(r.v6only);
  EXPECT_EQ(r.port_lo, 443);
  EXPECT_EQ(r.port_hi, 443);

  ASSERT_EQ(read_bind_address("tcp://127.0.0.1:8000-8999", r), "");
  EXPECT_EQ(r.host, "127.0.0.1");
  EXPECT_EQ(r.family, AF_INET);
  EXPECT_EQ(r.port_lo, 8000);
  EXPECT_EQ(r.port_hi, 8999);

  ASSERT_EQ(read_bind_address("tcp6://[0:0::1]:80", r), "");
  EXPECT_EQ(r.host, "::1");  // normalized
  EXPECT_EQ(r.family, AF_INET6);
  EXPECT_TRUE(r.v6only);

  ASSERT_EQ(read_bind_address("udp://[::]:53", r), "");
  EXPECT_EQ(r.socket_type, SOCK_DGRAM);
  EXPECT_EQ(r.host, "::");
  EXPECT_FALSE(r.v6only);

  ASSERT_EQ(read_bind_address("udp6://*:1-65535", r), "");
  EXPECT_EQ(r.socket_type, SOCK_DGRAM);
  EXPECT_FALSE(r.host.has_value());
  EXPECT_EQ(r.family, AF_INET6);
  EXPECT_EQ(r.port_lo, 1);
  EXPECT_EQ(r.port_hi, 65535);
}

TEST(BindAddress, ProblemsAreNamed) {
  BindRule r;
  EXPECT_EQ(read_bind_address("unix:/run/x.sock", r),
            "must be tcp://, tcp6://, udp:// or udp6:// HOST:PORT, got \"unix:/run/x.sock\"");
  EXPECT_EQ(read_bind_address("sctp://*:1", r),
            "must be tcp://, tcp6://, udp:// or udp6:// HOST:PORT, got \"sctp://*:1\"");
  EXPECT_EQ(read_bind_address("tcp://*", r),
            "needs a port or a port range (\"HOST:443\", \"HOST:8000-8999\"), got \"tcp://*\"");
  EXPECT_EQ(read_bind_address("tcp://*:0", r),
            "port 0 is not a port a rule can allow (a request names one)");
  EXPECT_EQ(read_bind_address("tcp://*:0-80", r),
            "port 0 is not a port a rule can allow (a request names one)");
  EXPECT_EQ(read_bind_address("tcp://*:90-80", r),
            "port range \"90-80\" is empty (LO must be <= HI)");
  EXPECT_EQ(read_bind_address("tcp://*:65536", r),
            "bad port or port range \"65536\" (PORT or LO-HI, 1-65535)");
  EXPECT_EQ(read_bind_address("tcp://*:80-", r),
            "bad port or port range \"80-\" (PORT or LO-HI, 1-65535)");
  EXPECT_EQ(read_bind_address("tcp://*:http", r),
            "bad port or port range \"http\" (PORT or LO-HI, 1-65535)");
  EXPECT_EQ(read_bind_address("tcp://*:1-2-3", r),
            "bad port or port range \"1-2-3\" (PORT or LO-HI, 1-65535)");
  const std::string bad_host = "\": \"*\", a numeric IPv4 address, or an IPv6 address in brackets";
  EXPECT_EQ(read_bind_address("tcp://localhost:80", r), "bad host \"localhost" + bad_host);
  EXPECT_EQ(read_bind_address("tcp://:80", r), "bad host \"" + bad_host);
  EXPECT_EQ(read_bind_address("tcp://example.com:80", r), "bad host \"example.com" + bad_host);
  EXPECT_EQ(read_bind_address("tcp://::1:80", r), "bad host \"::1" + bad_host);
  EXPECT_EQ(read_bind_address("tcp6://127.0.0.1:80", r), "bad host \"127.0.0.1" + bad_host);
  EXPECT_EQ(read_bind_address("tcp://[*]:80", r), "bad host \"[*]" + bad_host);
}

TEST(BindPolicy, PortRangeEdges) {
  BindPolicy policy({rule("high", "tcp://127.0.0.1:8000-8999")});
  EXPECT_EQ(decision(policy, peer(1000), "tcp://127.0.0.1:8000"), "high");
  EXPECT_EQ(decision(policy, peer(1000), "tcp://127.0.0.1:8999"), "high");
  EXPECT_EQ(decision(policy, peer(1000), "tcp://127.0.0.1:8500"), "high");
  EXPECT_EQ(decision(policy, peer(1000), "tcp://127.0.0.1:7999"), nothing);
  EXPECT_EQ(decision(policy, peer(1000), "tcp://127.0.0.1:9000"), nothing);
  // Another address, the wildcard included.
  EXPECT_EQ(decision(policy, peer(1000), "tcp://127.0.0.2:8000"), nothing);
  EXPECT_EQ(decision(policy, peer(1000), "tcp://0.0.0.0:8000"), nothing);
  EXPECT_EQ(decision(policy, peer(1000), "tcp://localhost:8000"), "high");  // 127.0.0.1
}

TEST(BindPolicy, AStarHostIsAnyAddressOfEitherFamily) {
  BindPolicy policy({rule("https", "tcp://*:443")});
  for (const char* url : {"tcp://0.0.0.0:443", "tcp://127.0.0.1:443", "tcp://[::]:443",
                          "tcp6://[::]:443", "tcp://[::1]:443", "tcp://[::ffff:127.0.0.1]:443"}) {
    EXPECT_EQ(decision(policy, peer(33), url), "https") << url;
  }
  EXPECT_EQ(decision(policy, peer(33), "tcp://*:444"), nothing);
  EXPECT_EQ(decision(policy, peer(33), "udp://*:443"), nothing);  // tcp only
}

TEST(BindPolicy, ANumericHostMatchesThatAddressOnly) {
  BindPolicy policy({rule("v6", "tcp://[::1]:80"), rule("v4", "tcp://127.0.0.1:81")});
  EXPECT_EQ(decision(policy, peer(1), "tcp://[0::1]:80"), "v6");        // normalized
  EXPECT_EQ(decision(policy, peer(1), "tcp6://[::1]:80"), "v6");        // v6only or not
  EXPECT_EQ(decision(policy, peer(1), "tcp://127.0.0.1:80"), nothing);  // another family
  EXPECT_EQ(decision(policy, peer(1), "tcp://[::]:80"), nothing);
  EXPECT_EQ(decision(policy, peer(1), "tcp://127.0.0.1:81"), "v4");
  // IPv4-mapped is an IPv6 address, not the IPv4 one.
  EXPECT_EQ(decision(policy, peer(1), "tcp://[::ffff:127.0.0.1]:81"), nothing);
}

TEST(BindPolicy, AnIPv6OnlyRuleDoesNotAllowADualStackWildcard) {
  BindPolicy policy({rule("v6any", "tcp6://*:443"), rule("v6wild", "tcp6://[::]:80")});
  EXPECT_EQ(decision(policy, peer(1), "tcp6://[::]:443"), "v6any");
  EXPECT_EQ(decision(policy, peer(1), "tcp://[::1]:443"), "v6any");
  EXPECT_EQ(decision(policy, peer(1), "tcp://[::]:443"), nothing);  // would take 0.0.0.0 too
  EXPECT_EQ(decision(policy, peer(1), "tcp://0.0.0.0:443"), nothing);
  EXPECT_EQ(decision(policy, peer(1), "tcp6://[::]:80"), "v6wild");
  EXPECT_EQ(decision(policy, peer(1), "tcp://[::]:80"), nothing);
}

TEST(BindPolicy, UdpAndTcpAreDifferentRules) {
  BindPolicy policy({rule("dns", "udp://127.0.0.1:53"), rule("web", "tcp://*:80")});
  EXPECT_EQ(decision(policy, peer(1), "udp://127.0.0.1:53"), "dns");
  EXPECT_EQ(decision(policy, peer(1), "tcp://127.0.0.1:53"), nothing);
  EXPECT_EQ(decision(policy, peer(1), "udp://127.0.0.1:80"), nothing);
  EXPECT_EQ(decision(policy, peer(1), "udp6://[::1]:53"), nothing);
}

TEST(BindPolicy, ReuseportNeedsTheRulesConsent) {
  BindPolicy plain({rule("web", "tcp://*:80")});
  EXPECT_EQ(decision(plain, peer(1), "tcp://*:80", false), "web");
  EXPECT_EQ(decision(plain, peer(1), "tcp://*:80", true),
            "EACCES: bind rule \"web\" allows it without reuseport (it does not say "
            "\"reuseport\": true)");
  BindPolicy both(
      {rule("web", "tcp://*:80"), rule("web-group", "tcp://*:80", anyone(), true, true)});
  EXPECT_EQ(decision(both, peer(1), "tcp://*:80", false), "web");
  EXPECT_EQ(decision(both, peer(1), "tcp://*:80", true), "web-group");
}

TEST(BindPolicy, ADenyBeatsEveryAllow) {
  Principals u1000;
  u1000.users = {1000};
  BindPolicy policy({rule("all", "tcp://*:1-65535"), rule("not-ssh", "tcp://*:22", anyone(), false),
                     rule("not-1000", "tcp://*:8080", u1000, false)});
  EXPECT_EQ(decision(policy, peer(1), "tcp://*:80"), "all");
  EXPECT_EQ(decision(policy, peer(1), "tcp://*:22"),
            "EACCES: denied by bind rule \"not-ssh\" (bind[not-ssh])");
  EXPECT_EQ(decision(policy, peer(1), "tcp://*:8080"), "all");
  EXPECT_EQ(decision(policy, peer(1000), "tcp://*:8080"),
            "EACCES: denied by bind rule \"not-1000\" (bind[not-1000])");
}

TEST(BindPolicy, PrincipalsUnitsAndNoExemptions) {
  Principals www;
  www.users = {33};
  Principals nginx;
  nginx.any = true;
  nginx.units = {"nginx.service"};
  BindPolicy policy({rule("www", "tcp://*:443", www), rule("nginx", "tcp://*:80", nginx)});
  EXPECT_EQ(decision(policy, peer(33), "tcp://*:443"), "www");
  EXPECT_EQ(decision(policy, peer(0), "tcp://*:443"), nothing);  // root is not exempt
  EXPECT_EQ(decision(policy, peer(34), "tcp://*:443"), nothing);
  EXPECT_EQ(decision(policy, peer(0, "nginx.service"), "tcp://*:80"), "nginx");
  EXPECT_EQ(decision(policy, peer(0, "other.service"), "tcp://*:80"), nothing);
  EXPECT_EQ(decision(policy, peer(0), "tcp://*:80"), nothing);
  EXPECT_EQ(decision(BindPolicy{}, peer(0), "tcp://*:80"), nothing);
}

TEST(BindPolicy, ARequestWithoutAConcretePortIsInvalid) {
  BindPolicy policy({rule("all", "tcp://*:1-65535")});
  EXPECT_EQ(decision(policy, peer(1), "tcp://*:0"),
            "EINVAL: bind needs a TCP or UDP address with a port other than 0");
  EXPECT_EQ(decision(policy, peer(1), "unix:/run/x.sock"),
            "EINVAL: bind needs a TCP or UDP address with a port other than 0");
}
