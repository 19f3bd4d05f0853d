// SPDX-License-Identifier: LGPL-2.1-or-later
// limits.max_connections_per_uid: the config key, its derived default, the
// per-uid count and the rate limit of its warnings.
#include <gtest/gtest.h>
#include <sys/resource.h>

#include "broker.hpp"
#include "config.hpp"
#include "connection.hpp"

using namespace fdbroker::daemon;
using namespace std::chrono_literals;

TEST(ConfigPerUidLimit, UnsetNullZeroAndValues) {
  auto unset = parse_config("{}");
  ASSERT_TRUE(unset.config);
  EXPECT_FALSE(unset.config->limits.max_connections_per_uid.has_value());
  auto null = parse_config(R"({"limits": {"max_connections_per_uid": null}})");
  ASSERT_TRUE(null.config);
  EXPECT_FALSE(null.config->limits.max_connections_per_uid.has_value());
  auto off = parse_config(R"({"limits": {"max_connections_per_uid": 0}})");
  ASSERT_TRUE(off.config);
  EXPECT_EQ(off.config->limits.max_connections_per_uid, 0u);
  auto ten = parse_config(R"({"limits": {"max_connections_per_uid": 10}})");
  ASSERT_TRUE(ten.config);
  EXPECT_EQ(ten.config->limits.max_connections_per_uid, 10u);
  for (const char* bad : {"-1", "1000001", "\"64\"", "1.5", "true"}) {
    auto r = parse_config(std::string(R"({"limits": {"max_connections_per_uid": )") + bad + "}}");
    EXPECT_FALSE(r.config) << bad;
    ASSERT_EQ(r.errors.size(), 1u) << bad;
    EXPECT_EQ(r.errors[0].rfind("limits.max_connections_per_uid: ", 0), 0u) << r.errors[0];
  }
}

TEST(ConfigPerUidLimit, DefaultIsTheLargerOf64AndAQuarterOfTheEffectiveMaxConnections) {
  Limits l;
  l.max_connections = 100;
  EXPECT_EQ(derive_limits(l).max_connections_per_uid, 64u);
  l.max_connections = 1000;
  EXPECT_EQ(derive_limits(l).max_connections_per_uid, 250u);
  // The effective max_connections: capped at half of RLIMIT_NOFILE.
  rlimit rl{};
  ASSERT_EQ(::getrlimit(RLIMIT_NOFILE, &rl), 0);
  l.max_connections = 1000000;
  auto derived = derive_limits(l);
  EXPECT_LT(derived.max_connections, 1000000u);
  EXPECT_EQ(derived.max_connections_per_uid,
            std::max<std::uint64_t>(64, derived.max_connections / 4));
  l.max_connections_per_uid = 0;
  EXPECT_EQ(derive_limits(l).max_connections_per_uid, 0u);
  l.max_connections_per_uid = 7;
  EXPECT_EQ(derive_limits(l).max_connections_per_uid, 7u);
}

TEST(UidConnections, AdmitsUpToTheLimitExceptExemptUids) {
  UidConnections counts;
  auto now = Clock::now();
  for (int i = 0; i < 3; ++i) EXPECT_TRUE(counts.admit(1000, 3, false));
  EXPECT_FALSE(counts.admit(1000, 3, false));
  EXPECT_EQ(counts.of(1000), 3u);
  EXPECT_TRUE(counts.admit(1001, 3, false));  // per uid
  for (int i = 0; i < 5; ++i) EXPECT_TRUE(counts.admit(0, 3, true));
  EXPECT_EQ(counts.of(0), 5u);
  for (int i = 0; i < 5; ++i) EXPECT_TRUE(counts.admit(1002, 0, false));  // 0: no limit
  counts.release(1000, now);
  EXPECT_EQ(counts.of(1000), 2u);
  EXPECT_TRUE(counts.admit(1000, 3, false));
  EXPECT_FALSE(counts.admit(1000, 3, false));
  for (int i = 0; i < 3; ++i) counts.release(1000, now);
  EXPECT_EQ(counts.of(1000), 0u);
  counts.release(1000, now);  // more releases than admissions: stays at 0
  EXPECT_EQ(counts.of(1000), 0u);
}

TEST(UidConnections, RefusalWarningsAreOnePerUidPerInterval) {
  UidConnections counts;
  auto t = Clock::now();
  EXPECT_EQ(counts.note_refusal(1000, t), 1u);  // the first is reported
  EXPECT_EQ(counts.note_refusal(1000, t + 1s), 0u);
  EXPECT_EQ(counts.note_refusal(1000, t + 2s), 0u);
  EXPECT_EQ(counts.note_refusal(1001, t + 2s), 1u);  // another uid has its own
  // After the interval: this one and the two held back.
  EXPECT_EQ(counts.note_refusal(1000, t + UidConnections::warning_interval), 3u);
  EXPECT_EQ(counts.note_refusal(1000, t + UidConnections::warning_interval + 1s), 0u);
  // Held back and not refused again: sweep() reports it once the interval passed.
  EXPECT_TRUE(counts.sweep(t + UidConnections::warning_interval + 2s).empty());
  auto due = counts.sweep(t + 3 * UidConnections::warning_interval);
  ASSERT_EQ(due.size(), 1u);
  EXPECT_EQ(due[0], std::make_pair(uid_t{1000}, std::uint64_t{1}));
}

TEST(UidConnections, LeavingAndComingBackDoesNotBuyAFreshWarning) {
  UidConnections counts;
  auto t = Clock::now();
  ASSERT_TRUE(counts.admit(1000, 1, false));
  EXPECT_EQ(counts.note_refusal(1000, t), 1u);
  counts.release(1000, t);
  ASSERT_TRUE(counts.admit(1000, 1, false));
  EXPECT_EQ(counts.note_refusal(1000, t + 1s), 0u);  // still within the interval
  counts.release(1000, t + 1s);
  // A uid with no connection and nothing left to say is forgotten by sweep().
  auto due = counts.sweep(t + 2 * UidConnections::warning_interval);
  ASSERT_EQ(due.size(), 1u);
  EXPECT_TRUE(counts.sweep(t + 4 * UidConnections::warning_interval).empty());
  EXPECT_EQ(counts.note_refusal(1000, t + 4 * UidConnections::warning_interval), 1u);
}

TEST(ReportLimiter, CountsWhatItHeldBack) {
  ReportLimiter limiter(10s);
  auto t = Clock::now();
  EXPECT_EQ(limiter.note(t, 4), 4u);
  EXPECT_FALSE(limiter.note(t + 1s, 2).has_value());
  EXPECT_FALSE(limiter.note(t + 2s, 3).has_value());
  EXPECT_EQ(limiter.due(t + 5s), 0u);  // too early
  EXPECT_EQ(limiter.held_back(), 5u);
  EXPECT_EQ(limiter.note(t + 10s, 1), 6u);
  EXPECT_EQ(limiter.due(t + 30s), 0u);      // nothing held back
  EXPECT_EQ(limiter.note(t + 30s, 0), 0u);  // a report with no new events
}
