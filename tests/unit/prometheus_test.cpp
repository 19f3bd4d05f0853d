// SPDX-License-Identifier: LGPL-2.1-or-later
// fdbrokerctl's Prometheus formatter (client/prometheus.cpp) on a Stats built by
// hand: the whole text for a known reply, and label values escaped as the text
// exposition format says (backslash, double quote, newline), whatever the broker
// sends as an op or result name.
#include "prometheus.hpp"

#include <gtest/gtest.h>

#include <sstream>

namespace {

std::string format(const fdbroker::Stats& s) {
  std::ostringstream out;
  fdbrokerctl::print_prometheus(out, s);
  return out.str();
}

TEST(Prometheus, EveryFamilyWithHelpAndType) {
  fdbroker::Stats s;
  s.uptime_ms = 5007;
  s.connections_current = 3;
  s.connections_total = 17;
  s.connections_dropped = 1;
  s.entries = 4;
  s.fds_held = 7;
  s.fds_limit = 1000000;
  s.requests["get"]["ok"] = 120;
  s.requests["get"]["ENOENT"] = 2;
  s.requests["open"]["EACCES"] = 1;
  EXPECT_EQ(format(s),
            "# HELP fdbroker_entries Entries in the broker's named store.\n"
            "# TYPE fdbroker_entries gauge\n"
            "fdbroker_entries 4\n"
            "# HELP fdbroker_fds_held Descriptors the broker's store holds.\n"
            "# TYPE fdbroker_fds_held gauge\n"
            "fdbroker_fds_held 7\n"
            "# HELP fdbroker_fds_limit Most descriptors the broker's store may hold.\n"
            "# TYPE fdbroker_fds_limit gauge\n"
            "fdbroker_fds_limit 1000000\n"
            "# HELP fdbroker_connections Client connections open now.\n"
            "# TYPE fdbroker_connections gauge\n"
            "fdbroker_connections 3\n"
            "# HELP fdbroker_uptime_seconds Seconds since the broker started.\n"
            "# TYPE fdbroker_uptime_seconds gauge\n"
            "fdbroker_uptime_seconds 5.007\n"
            "# HELP fdbroker_connections_accepted_total Client connections accepted since the "
            "broker started.\n"
            "# TYPE fdbroker_connections_accepted_total counter\n"
            "fdbroker_connections_accepted_total 17\n"
            "# HELP fdbroker_connections_dropped_total Clients dropped for leaving replies "
            "unread.\n"
            "# TYPE fdbroker_connections_dropped_total counter\n"
            "fdbroker_connections_dropped_total 1\n"
            "# HELP fdbroker_requests_total Requests answered, by operation and result (ok or "
            "the errno name).\n"
            "# TYPE fdbroker_requests_total counter\n"
            "fdbroker_requests_total{op=\"get\",result=\"ENOENT\"} 2\n"
            "fdbroker_requests_total{op=\"get\",result=\"ok\"} 120\n"
            "fdbroker_requests_total{op=\"open\",result=\"EACCES\"} 1\n");
}

TEST(Prometheus, LabelValuesAreEscaped) {
  EXPECT_EQ(fdbrokerctl::prometheus_label_value("plain"), "plain");
  EXPECT_EQ(fdbrokerctl::prometheus_label_value("a\\b\"c\nd"), "a\\\\b\\\"c\\nd");
  fdbroker::Stats s;
  s.requests["we\"ird"]["x\\y\n"] = 1;
  EXPECT_NE(format(s).find("fdbroker_requests_total{op=\"we\\\"ird\",result=\"x\\\\y\\n\"} 1\n"),
            std::string::npos);
}

TEST(Prometheus, UptimeIsExactSeconds) {
  fdbroker::Stats s;
  s.uptime_ms = 42;
  EXPECT_NE(format(s).find("\nfdbroker_uptime_seconds 0.042\n"), std::string::npos);
}

}  // namespace
