// SPDX-License-Identifier: LGPL-2.1-or-later
#include "prometheus.hpp"

#include <cstdint>
#include <cstdio>

namespace fdbrokerctl {

std::string prometheus_label_value(std::string_view value) {
  std::string out;
  out.reserve(value.size());
  for (char c : value) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '"') {
      out += "\\\"";
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out += c;
    }
  }
  return out;
}

namespace {

// HELP texts are fixed here and hold no `\` or newline, so need no escaping.
void family(std::ostream& out, std::string_view name, std::string_view type,
            std::string_view help) {
  out << "# HELP " << name << ' ' << help << '\n' << "# TYPE " << name << ' ' << type << '\n';
}

void sample(std::ostream& out, std::string_view name, std::string_view type, std::string_view help,
            std::int64_t value) {
  family(out, name, type, help);
  out << name << ' ' << value << '\n';
}

// Milliseconds as seconds, exactly: "5000" -> "5.000".
std::string seconds_text(std::int64_t ms) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%s%lld.%03lld", ms < 0 ? "-" : "",
                static_cast<long long>((ms < 0 ? -ms : ms) / 1000),
                static_cast<long long>((ms < 0 ? -ms : ms) % 1000));
  return buf;
}

}  // namespace

void print_prometheus(std::ostream& out, const fdbroker::Stats& s) {
  sample(out, "fdbroker_entries", "gauge", "Entries in the broker's named store.", s.entries);
  sample(out, "fdbroker_fds_held", "gauge", "Descriptors the broker's store holds.", s.fds_held);
  sample(out, "fdbroker_fds_limit", "gauge", "Most descriptors the broker's store may hold.",
         s.fds_limit);
  sample(out, "fdbroker_connections", "gauge", "Client connections open now.",
         s.connections_current);
  family(out, "fdbroker_uptime_seconds", "gauge", "Seconds since the broker started.");
  out << "fdbroker_uptime_seconds " << seconds_text(s.uptime_ms) << '\n';
  sample(out, "fdbroker_connections_accepted_total", "counter",
         "Client connections accepted since the broker started.", s.connections_total);
  sample(out, "fdbroker_connections_dropped_total", "counter",
         "Clients dropped for leaving replies unread.", s.connections_dropped);
  family(out, "fdbroker_requests_total", "counter",
         "Requests answered, by operation and result (ok or the errno name).");
  for (const auto& [op, results] : s.requests) {
    for (const auto& [result, count] : results) {
      out << "fdbroker_requests_total{op=\"" << prometheus_label_value(op) << "\",result=\""
          << prometheus_label_value(result) << "\"} " << count << '\n';
    }
  }
}

}  // namespace fdbrokerctl
