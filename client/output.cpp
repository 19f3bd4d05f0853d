// SPDX-License-Identifier: LGPL-2.1-or-later
#include "output.hpp"

#include <algorithm>
#include <cstdio>

namespace fdbrokerctl {

std::string json_quote(std::string_view text) {
  std::string out = "\"";
  for (char c : text) {
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\t':
        out += "\\t";
        break;
      case '\r':
        out += "\\r";
        break;
      default:
        if (static_cast<unsigned char>(c) < 0x20) {
          char buf[8];
          std::snprintf(buf, sizeof buf, "\\u%04x", static_cast<unsigned>(c));
          out += buf;
        } else {
          out += c;
        }
    }
  }
  return out + "\"";
}

std::string describe(const fdbroker::FdDescription& d) {
  std::string out = d.kind;
  auto add = [&out](const std::string& part) {
    if (!part.empty()) out += " " + part;
  };
  if (d.kind == "socket") {
    add(d.family);
    add(d.type);
    if (d.listening) add("listening");
    add(d.local.empty() ? std::string("(unbound)") : d.local);
  } else if (d.kind == "memfd") {
    add(d.name);
  } else {
    add(d.path);
    if (!d.access.empty()) add("(" + d.access + ")");
  }
  return out;
}

namespace {

// Prints rows as columns separated by two spaces, the last column unpadded.
void print_table(std::ostream& out, const std::vector<std::vector<std::string>>& rows) {
  std::vector<std::size_t> widths;
  for (const auto& row : rows) {
    widths.resize(std::max(widths.size(), row.size()));
    for (std::size_t i = 0; i < row.size(); ++i) widths[i] = std::max(widths[i], row[i].size());
  }
  for (const auto& row : rows) {
    std::string line;
    for (std::size_t i = 0; i < row.size(); ++i) {
      line += row[i];
      if (i + 1 < row.size()) line += std::string(widths[i] - row[i].size() + 2, ' ');
    }
    out << line << '\n';
  }
}

std::string owner_text(const fdbroker::EntryInfo& e) {
  return e.is_static ? "static" : "uid " + std::to_string(e.owner_uid);
}

std::string expiry_text(const fdbroker::EntryInfo& e) {
  return e.expires_ms ? "in " + std::to_string(*e.expires_ms) + " ms" : "-";
}

}  // namespace

void print_hello(std::ostream& out, const fdbroker::Hello& h, bool json) {
  if (json) {
    out << h.json << '\n';
    return;
  }
  out << h.server << ' ' << h.version << ", protocol " << h.protocol << "; you are uid "
      << h.peer.uid << " gid " << h.peer.gid << " pid " << h.peer.pid
      << (h.peer.unit ? ", unit " + *h.peer.unit : std::string(", in no unit known")) << '\n';
}

void print_entry(std::ostream& out, const fdbroker::Entry& e, bool json) {
  if (json) {
    out << e.json << '\n';
    return;
  }
  print_table(out, {{"name:", e.name},
                    {"generation:", std::to_string(e.generation)},
                    {"owner:", owner_text(e)},
                    {"expires:", expiry_text(e)},
                    {"meta:", e.meta_json}});
  std::vector<std::vector<std::string>> rows{{"FD", "DESCRIPTION"}};
  for (std::size_t i = 0; i < e.fd_descriptions.size(); ++i) {
    rows.push_back({std::to_string(i), describe(e.fd_descriptions[i])});
  }
  print_table(out, rows);
}

void print_list(std::ostream& out, const std::vector<fdbroker::EntryInfo>& entries, bool json) {
  if (json) {
    std::string text = "[";
    for (std::size_t i = 0; i < entries.size(); ++i) text += (i ? "," : "") + entries[i].json;
    out << text << "]\n";
    return;
  }
  std::vector<std::vector<std::string>> rows{{"NAME", "GEN", "OWNER", "EXPIRES", "FDS", "META"}};
  for (const auto& e : entries) {
    std::string fds;
    for (const auto& d : e.fd_descriptions) fds += (fds.empty() ? "" : "; ") + describe(d);
    rows.push_back(
        {e.name, std::to_string(e.generation), owner_text(e), expiry_text(e), fds, e.meta_json});
  }
  print_table(out, rows);
}

void print_put(std::ostream& out, std::string_view name, std::uint64_t generation, bool json) {
  if (json) {
    out << "{\"name\":" << json_quote(name) << ",\"generation\":" << generation << "}\n";
    return;
  }
  out << name << ": generation " << generation << '\n';
}

void print_deleted(std::ostream& out, std::string_view name, bool json) {
  if (json) {
    out << "{\"name\":" << json_quote(name) << "}\n";
    return;
  }
  out << name << ": deleted\n";
}

void print_opened(std::ostream& out, const fdbroker::Opened& o, bool json) {
  if (json) {
    out << o.json << '\n';
    return;
  }
  print_table(out, {{"path:", o.path}, {"rule:", o.rule}, {"created:", o.created ? "yes" : "no"}});
  print_table(out, {{"FD", "DESCRIPTION"}, {"0", describe(o.description)}});
}

void print_stats(std::ostream& out, const fdbroker::Stats& s, bool json) {
  if (json) {
    out << s.json << '\n';
    return;
  }
  print_table(out,
              {{"uptime:", std::to_string(s.uptime_ms) + " ms"},
               {"connections:", std::to_string(s.connections_current) + " now, " +
                                    std::to_string(s.connections_total) + " total, " +
                                    std::to_string(s.connections_dropped) + " dropped"},
               {"entries:", std::to_string(s.entries)},
               {"fds held:", std::to_string(s.fds_held) + " of " + std::to_string(s.fds_limit)}});
  std::vector<std::vector<std::string>> rows{{"OP", "OUTCOME", "REQUESTS"}};
  for (const auto& [op, outcomes] : s.requests) {
    for (const auto& [outcome, count] : outcomes)
      rows.push_back({op, outcome, std::to_string(count)});
  }
  print_table(out, rows);
}

}  // namespace fdbrokerctl
