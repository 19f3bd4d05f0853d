// SPDX-License-Identifier: LGPL-2.1-or-later
// The peer's systemd unit and cgroup as a real fdbrokerd reports them in hello:
// read through SO_PEERPIDFD when it accepts the connection, and, on a kernel
// without it (simulated by FDBROKER_TEST_NO_PIDFD=1), no unit and the cgroup for
// information only. Rules that name units under real units: tests/systemd.
#include <systemd/sd-login.h>

#include <cstdlib>
#include <optional>

#include "broker_harness.hpp"
#include "test_util.hpp"

using namespace fdbroker;
using namespace fdbroker::test;

namespace {

constexpr uid_t nobody = 65534;
constexpr gid_t nogroup = 65534;

// What libsystemd says of this process: what the broker must report.
json own_unit() {
  char* unit = nullptr;
  if (sd_pid_get_unit(0, &unit) < 0) return nullptr;
  std::string name(unit);
  std::free(unit);
  return name;
}

// A broker started with FDBROKER_TEST_NO_PIDFD=1 in its environment only.
std::unique_ptr<BrokerProcess> broker_without_pidfd(json config = json::object()) {
  ::setenv("FDBROKER_TEST_NO_PIDFD", "1", 1);
  auto broker = std::make_unique<BrokerProcess>(std::move(config));
  ::unsetenv("FDBROKER_TEST_NO_PIDFD");
  return broker;
}

}  // namespace

TEST(BrokerIdentity, HelloReportsTheCallersCgroupAndUnit) {
  if (!kernel_has_peer_pidfd()) GTEST_SKIP() << "this kernel has no SO_PEERPIDFD (Linux 6.5+)";
  BrokerProcess broker;
  std::size_t baseline = broker.fd_count();
  {
    auto c = broker.connect();
    auto hello = call(c.get(), {{"op", "hello"}});
    ASSERT_TRUE(hello.ok()) << hello.raw;
    EXPECT_EQ(hello.body["peer"]["cgroup"], own_cgroup()) << hello.raw;
    EXPECT_FALSE(own_cgroup().empty());
    // null when this test runs in no unit (a container without systemd).
    EXPECT_EQ(hello.body["peer"]["unit"], own_unit()) << hello.raw;
  }
  // The pidfd was not kept with the connection, nor anything else.
  EXPECT_TRUE(broker.settles_at(baseline));
}

TEST(BrokerIdentity, AnotherUsersCgroupIsReportedToo) {
  if (!kernel_has_peer_pidfd()) GTEST_SKIP() << "this kernel has no SO_PEERPIDFD (Linux 6.5+)";
  BrokerProcess broker;
  std::string result = as_user_expect(broker, nobody, nogroup, {}, [&](Expectations& c) {
    auto hello = c.expect({{"op", "hello"}}, "", "hello");
    if (hello.body["peer"]["cgroup"] != own_cgroup() || hello.body["peer"]["unit"] != own_unit())
      c.fail("hello reports " + hello.body["peer"].dump());
  });
  EXPECT_EQ(result, "");
}

TEST(BrokerIdentity, WithoutAPidfdHelloReportsNoUnitAndTheCgroupOfThePid) {
  auto broker = broker_without_pidfd();
  std::size_t baseline = broker->fd_count();
  {
    auto c = broker->connect();
    auto hello = call(c.get(), {{"op", "hello"}});
    ASSERT_TRUE(hello.ok()) << hello.raw;
    EXPECT_TRUE(hello.body["peer"]["unit"].is_null()) << hello.raw;
    EXPECT_EQ(hello.body["peer"]["cgroup"], own_cgroup()) << hello.raw;
  }
  EXPECT_TRUE(broker->settles_at(baseline));
}

TEST(BrokerIdentity, WithoutAPidfdARuleNamingUnitsNeverMatches) {
  // The caller's own unit, if it has one; else a name: neither may match.
  json unit = own_unit();
  json config = {{"rules",
                  {{{"prefix", "u/"},
                    {"users", {"nobody"}},
                    {"units", {unit.is_null() ? "x.service" : unit}},
                    {"allow", {"put", "get"}}},
                   {{"prefix", "any/"}, {"users", {"nobody"}}, {"allow", {"put"}}}}}};
  auto broker = broker_without_pidfd(config);
  std::string result = as_user_expect(*broker, nobody, nogroup, {}, [&](Expectations& c) {
    c.put("u/a", "EACCES", "put under a rule naming units");
    c.put("any/a", "", "put under a rule without units");
  });
  EXPECT_EQ(result, "");
}
