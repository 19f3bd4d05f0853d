// SPDX-License-Identifier: LGPL-2.1-or-later
#include "restore.hpp"

#include <fcntl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstdlib>
#include <fdbroker/error.hpp>
#include <fdbroker/listen_fds.hpp>
#include <fdbroker/scm_rights.hpp>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <stdexcept>
#include <unordered_map>

#include "config.hpp"
#include "entry_name.hpp"
#include "systemd.hpp"
#include "systemd_fd_store.hpp"

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

// A non-negative integer of the state, at most `max`; anything else (a float, a
// negative number, a string) is damage, thrown as such: converting it would be
// undefined (1e300 to an integer) or wrap (-1 to a uid).
std::uint64_t uint_of(const json& v, const char* key, std::uint64_t max) {
  if (!v.is_number_unsigned() || v.get<std::uint64_t>() > max) {
    throw std::invalid_argument(std::string("'") + key + "' is not an integer from 0 to " +
                                std::to_string(max));
  }
  return v.get<std::uint64_t>();
}

constexpr std::uint64_t any_uint = UINT64_MAX;

// One entry of the state, its fds taken from `by_name`; or a warning and nothing
// (its fds stay in `by_name`, closed as orphans).
void parse_entry(const json& item, std::unordered_map<std::string, unique_fd>& by_name,
                 std::set<std::string>& names, Restored& out) {
  RestoredEntry r;
  StoredEntry& e = r.entry;
  e.name = item.at("name").get<std::string>();
  if (!valid_name(e.name)) throw std::invalid_argument("'name' is not a valid entry name");
  r.serial = uint_of(item.at("serial"), "serial", any_uint);
  auto nfds = static_cast<std::size_t>(uint_of(item.at("nfds"), "nfds", max_fds_per_message));
  const json& meta = item.at("meta");
  if (!meta.is_object()) throw std::invalid_argument("'meta' is not an object");
  e.meta = compact(meta);
  const json& descriptions = item.at("fds");
  if (!descriptions.is_array() || descriptions.size() != nfds ||
      !std::all_of(descriptions.begin(), descriptions.end(),
                   [](const json& d) { return d.is_object(); })) {
    throw std::invalid_argument("'fds' does not describe 'nfds' descriptors");
  }
  e.fds_json = compact(descriptions);
  e.owner = static_cast<uid_t>(uint_of(item.at("owner"), "owner", UINT32_MAX - 1));  // -1 is no uid
  const json& is_static = item.value("static", json(false));
  if (!is_static.is_boolean()) throw std::invalid_argument("'static' is not a boolean");
  e.is_static = is_static.get<bool>();
  e.generation = uint_of(item.at("generation"), "generation", any_uint);
  if (item.contains("expiry_monotonic_ns")) {
    const json& expiry = item.at("expiry_monotonic_ns");
    if (!expiry.is_number_integer())
      throw std::invalid_argument("'expiry_monotonic_ns' is not an integer");
    // steady_clock is CLOCK_MONOTONIC, the same for every process of this
    // boot (and systemd's fd store does not outlive a boot).
    e.expiry = Clock::time_point(std::chrono::nanoseconds(expiry.get<std::int64_t>()));
  }
  if (!names.insert(e.name).second)
    throw std::invalid_argument("a second entry named '" + e.name + "'");
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
    return;  // the fds that did come back close with `fds`
  }
  e.fds = std::make_shared<const FdSet>(std::move(fds));
  out.entries.push_back(std::move(r));
}

// Fills `out` from the state text, taking the entries' fds out of `by_name`. The
// text is checked as untrusted: a damaged entry is skipped (its fds closed), not
// restored with values the broker would never have written.
void parse_state(const std::string& text, std::unordered_map<std::string, unique_fd>& by_name,
                 Restored& out) {
  json state = json::parse(text, nullptr, false);
  auto format = state.is_object() ? state.find("format") : state.end();
  if (!state.is_object() || format == state.end() || *format != "fdbrokerd-state") {
    out.warnings.push_back("the state memfd is not fdbrokerd state: no entry can be restored");
    return;
  }
  auto version = state.find("version");
  if (version == state.end() || *version != 1) {
    out.warnings.push_back("state version " +
                           (version == state.end() ? std::string("null") : compact(*version)) +
                           " is not 1");
    return;
  }
  const json* entries = nullptr;
  try {
    out.next_generation =
        uint_of(state.value("next_generation", json(0)), "next_generation", any_uint);
    out.next_serial = uint_of(state.value("next_serial", json(0)), "next_serial", any_uint);
    out.socket_unlink = state.value("socket_unlink", json("")).get<std::string>();
    const json openings =
        state.value("static_openings", json::object());  // named: items() borrows it
    if (!openings.is_object()) throw std::invalid_argument("'static_openings' is not an object");
    for (const auto& [name, opening] : openings.items()) {
      out.static_openings[name] = opening.get<std::string>();
    }
    entries = &state.at("entries");
    if (!entries->is_array()) throw std::invalid_argument("'entries' is not an array");
  } catch (const std::exception& ex) {
    out.warnings.push_back(std::string("the state memfd is damaged: ") + ex.what());
    return;
  }
  std::set<std::string> names;
  for (std::size_t i = 0; i < entries->size(); ++i) {
    try {
      parse_entry((*entries)[i], by_name, names, out);
    } catch (const std::exception& ex) {
      out.warnings.push_back("entry " + std::to_string(i) +
                             " of the state memfd is damaged: " + ex.what());
    }
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
  auto listening = systemd::is_listening_unix_socket(out.listener.get(), SOCK_SEQPACKET);
  if (!listening) return listening.error();
  if (!*listening) return errno_code(EPROTOTYPE);

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
  auto passed = parse_listen_fds(::getenv("LISTEN_PID"), ::getenv("LISTEN_FDS"),
                                 ::getenv("LISTEN_FDNAMES"), ::getpid());
  // Ours alone: a program the broker starts must not take them for its own.
  ::unsetenv("LISTEN_PID");
  ::unsetenv("LISTEN_FDS");
  ::unsetenv("LISTEN_FDNAMES");
  if (!passed) return passed.error();
  std::vector<NamedFd> fds;
  std::error_code first_error;
  for (auto& inherited : *passed) {
    NamedFd f{std::move(inherited.name), unique_fd(inherited.fd)};  // owned: kept or closed
    // Inherited without close-on-exec (they crossed an exec): mark them, as
    // sd_listen_fds() does, so that none leaks into a successor.
    int flags = ::fcntl(f.fd.get(), F_GETFD);
    if ((flags < 0 || ::fcntl(f.fd.get(), F_SETFD, flags | FD_CLOEXEC) < 0) && !first_error) {
      first_error = errno_code(errno);
    }
    fds.push_back(std::move(f));
  }
  if (first_error) return first_error;
  return restore_from(std::move(fds));
}

}  // namespace fdbroker::daemon
