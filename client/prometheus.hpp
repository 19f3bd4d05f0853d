// SPDX-License-Identifier: LGPL-2.1-or-later
// `stats --format prometheus`: the broker's stats reply in the Prometheus text
// exposition format (version 0.0.4), as node_exporter's textfile collector reads it.
#pragma once

#include <fdbroker/client.hpp>

#include <ostream>
#include <string>
#include <string_view>

namespace fdbrokerctl {

// Every family with its HELP and TYPE lines: the gauges fdbroker_entries,
// fdbroker_fds_held, fdbroker_fds_limit, fdbroker_connections,
// fdbroker_uptime_seconds, and the counters fdbroker_connections_accepted_total,
// fdbroker_connections_dropped_total, fdbroker_requests_total{op,result}.
void print_prometheus(std::ostream& out, const fdbroker::Stats& stats);

// A label value as the exposition format writes it: `\`, `"` and newline escaped.
std::string prometheus_label_value(std::string_view value);

}  // namespace fdbrokerctl
