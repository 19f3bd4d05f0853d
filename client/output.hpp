// SPDX-License-Identifier: LGPL-2.1-or-later
// How fdbrokerctl prints replies: aligned tables for people, one JSON document per
// command (on one line) for scripts.
#pragma once

#include <fdbroker/client.hpp>

#include <cstdint>
#include <ostream>
#include <string>
#include <string_view>
#include <vector>

namespace fdbrokerctl {

void print_hello(std::ostream& out, const fdbroker::Hello& hello, bool json);
// get/take: the entry and what arrived (the descriptors are closed on exit).
void print_entry(std::ostream& out, const fdbroker::Entry& entry, bool json);
void print_list(std::ostream& out, const std::vector<fdbroker::EntryInfo>& entries, bool json);
void print_put(std::ostream& out, std::string_view name, std::uint64_t generation, bool json);
void print_deleted(std::ostream& out, std::string_view name, bool json);
// open: the reply and the descriptor's description (the descriptor is closed on exit).
void print_opened(std::ostream& out, const fdbroker::Opened& opened, bool json);
void print_stats(std::ostream& out, const fdbroker::Stats& stats, bool json);

// One line describing a descriptor: "socket inet stream listening 127.0.0.1:80".
std::string describe(const fdbroker::FdDescription& d);

// `text` as a JSON string literal, quotes included.
std::string json_quote(std::string_view text);

}  // namespace fdbrokerctl
