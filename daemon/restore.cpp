// SPDX-License-Identifier: LGPL-2.1-or-later
#include "restore.hpp"

#include <sys/socket.h>
#include <sys/stat.h>
#include <systemd/sd-daemon.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstdlib>
#include <fdbroker/error.hpp>
#include <nlohmann/json.hpp>
#include <optional>
#include <unordered_map>

#include "fdstore_sync.hpp"

namespace fdbroker::daemon {

namespace {

using nlohmann::json;

// The state's sequence number from "state.<seq>" (nullopt: not a state fdname).
std::optional<std::uint64_t> state_seq(const std::string& name) {
  constexpr std::string_view prefix = "state.";
  if (name.compare(0, prefix.size(), prefix) != 0) return std::nullopt;
  std::uint64_t seq = 0;
  const char* begin = name.data() + prefix.size();
  const char* end = name.data() + name.size();
  auto [ptr, ec] = std::from_chars(begin, end, seq);
  if (ec != std::errc() || ptr != end || begin == end) return std::nullopt;
  return seq;
}

result<std::string> read_all(int fd) {
  struct stat st {};
  if (::fstat(fd, &st) < 0) return errno_code(errno);
  std::string text(static_cast<std::size_t>(st.st_size), '\0');
  std::size_t done = 0;
  // pread: the offset belongs to the open file description, which others share.
  while (done < text.size()) {
    ssize_t n = ::pread(fd, text.data() + done, text.size() - done, static_cast<off_t>(done));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return errno_code(errno);
    if (n == 0) break;
    done += static_cast<std::size_t>(n);
  }
  text.resize(done);
  return text;
}

std::string compact(const json& j) {
  return j.dump(-1, ' ', false, json::error_handler_t::replace);
}

// Fills `out` from the state text, taking the entries' fds out of `by_name`.
void parse_state(const std::string& text, std::unordered_map<std::string, unique_fd>& by_name,
                 Restored& out) {
  json state = json::parse(text, nullptr, false);
  if (state.is_discarded() || !state.is_object() ||
      state.value("format", "") != "fdbrokerd-state") {
    out.warnings.push_back("the state memfd is not fdbrokerd state: no entry can be restored");
    return;
  }
  if (state.value("version", 0) != 1) {
    out.warnings.push_back("state version " + compact(state.value("version", json())) +
                           " is not 1");
    return;
  }
  try {
    out.next_generation = state.value("next_generation", std::uint64_t{0});
    out.next_serial = state.value("next_serial", std::uint64_t{0});
    out.socket_unlink = state.value("socket_unlink", "");
    const json openings =
        state.value("static_openings", json::object());  // named: items() borrows it
    for (const auto& [name, opening] : openings.items()) {
      out.static_openings[name] = opening.get<std::string>();
    }
    for (const json& item : state.at("entries")) {
      RestoredEntry r;
      Entry& e = r.entry;
      e.name = item.at("name").get<std::string>();
      r.serial = item.at("serial").get<std::uint64_t>();
      auto nfds = item.at("nfds").get<std::size_t>();
      e.meta = compact(item.at("meta"));
      e.fds_json = compact(item.at("fds"));
      e.owner = item.at("owner").get<uid_t>();
      e.is_static = item.value("static", false);
      e.generation = item.at("generation").get<std::uint64_t>();
      if (item.contains("expiry_monotonic_ns")) {
        // steady_clock is CLOCK_MONOTONIC, the same for every process of this
        // boot (and systemd's fd store does not outlive a boot).
        e.expiry = Clock::time_point(
            std::chrono::nanoseconds(item.at("expiry_monotonic_ns").get<std::int64_t>()));
      }
      std::vector<unique_fd> fds;
      std::vector<std::string> missing;
      for (std::size_t i = 0; i < nfds; ++i) {
        auto it = by_name.find(entry_fdname(r.serial, i));
        if (it == by_name.end()) {
          missing.push_back(entry_fdname(r.serial, i));
          continue;
        }
        fds.push_back(std::move(it->second));
        by_name.erase(it);
      }
      if (!missing.empty() || nfds == 0) {
        out.warnings.push_back("entry '" + e.name + "' lost: descriptor " +
                               (missing.empty() ? std::string("count 0") : missing.front()) +
                               " was not passed back");
        for (std::size_t i = 0; i < nfds; ++i) out.orphans.push_back(entry_fdname(r.serial, i));
        continue;  // the fds that did come back close with `fds`
      }
      e.fds = std::make_shared<const FdSet>(std::move(fds));
      out.entries.push_back(std::move(r));
    }
  } catch (const std::exception& ex) {
    out.warnings.push_back(std::string("the state memfd is damaged: ") + ex.what());
  }
}

}  // namespace

result<Restored> restore_from(std::vector<NamedFd> fds) {
  Restored out;
  if (fds.empty()) return out;
  std::unordered_map<std::string, unique_fd> by_name;
  std::optional<std::uint64_t> newest;
  unique_fd state_fd;
  for (std::size_t i = 0; i < fds.size(); ++i) {
    NamedFd& f = fds[i];
    if (f.name == "listen" || (fds.size() == 1 && !state_seq(f.name))) {
      out.listener = std::move(f.fd);
    } else if (auto seq = state_seq(f.name)) {
      out.state_seqs.push_back(*seq);
      if (!newest || *seq > *newest) {
        newest = seq;
        state_fd = std::move(f.fd);
      }
    } else if (!by_name.emplace(f.name, std::move(f.fd)).second) {
      out.warnings.push_back("descriptor name '" + f.name + "' passed twice: the second closed");
    }
  }
  if (!out.listener.valid()) return errno_code(EINVAL);
  int r = ::sd_is_socket_unix(out.listener.get(), SOCK_SEQPACKET, /*listening=*/1, nullptr, 0);
  if (r < 0) return errno_code(-r);
  if (r == 0) return errno_code(EPROTOTYPE);

  if (state_fd.valid()) {
    auto text = read_all(state_fd.get());
    if (!text) {
      out.warnings.push_back("cannot read the state memfd: " + text.error().message());
    } else {
      parse_state(*text, by_name, out);
    }
  } else if (!by_name.empty()) {
    out.warnings.push_back(std::to_string(by_name.size()) +
                           " descriptors passed without a state memfd");
  }
  for (auto& [name, fd] : by_name) out.orphans.push_back(name);  // closed with by_name
  std::sort(out.orphans.begin(), out.orphans.end());
  return out;
}

result<Restored> take_passed_fds() {
  char** names = nullptr;
  int n = ::sd_listen_fds_with_names(/*unset_environment=*/1, &names);
  if (n < 0) return errno_code(-n);
  std::vector<NamedFd> fds;
  for (int i = 0; i < n; ++i) {
    NamedFd f;
    f.fd.reset(SD_LISTEN_FDS_START + i);  // owned from here on, kept or closed
    if (names != nullptr && names[i] != nullptr) f.name = names[i];
    fds.push_back(std::move(f));
  }
  if (names != nullptr) {
    for (int i = 0; i < n; ++i) std::free(names[i]);
    std::free(names);
  }
  return restore_from(std::move(fds));
}

}  // namespace fdbroker::daemon
