// SPDX-License-Identifier: LGPL-2.1-or-later
// What a restarted broker takes back (daemon/restore.cpp restore_from): named
// descriptors from systemd's fd store or a predecessor, among them the sealed
// state memfd. The input is
//   line 1: the descriptor names, separated by spaces ("listen state.3 e1.0 e1.1")
//   rest:   the state text, the content of every "state.<seq>" descriptor
// and the descriptors are real: "listen" a listening AF_UNIX SOCK_SEQPACKET socket,
// "state.*" a sealed memfd (make_state_memfd), the others by turns a pipe's read
// end, a memfd and a socket, as the fd store would hand them back.
//
// Invariants:
//  - the result is the restored set, or EINVAL/ENOTSOCK/EPROTOTYPE when there is no
//    proper listening socket; every descriptor passed is either restored (the
//    listener, an entry's) or closed: none leaks;
//  - every restored entry is one the broker could have stored: a valid name, once;
//    1-253 open descriptors, none shared; meta a JSON object; fds a JSON array
//    describing each descriptor; a unique serial;
//  - the restored set, written back as state (with the same fdnames), restores to
//    the same set.
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <vector>

#include "config.hpp"
#include "entry_name.hpp"
#include "fuzz_check.hpp"
#include "restore.hpp"
#include "systemd_fd_store.hpp"

using fdbroker::unique_fd;
using fdbroker::daemon::NamedFd;
using fdbroker::daemon::Restored;
using nlohmann::json;

namespace {

constexpr std::size_t max_names = 300;
constexpr std::size_t max_fds_per_entry = 253;

unique_fd listening_seqpacket() {
  unique_fd sock(::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0));
  FUZZ_CHECK(sock.valid(), "socket()");
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  // Autobind: an abstract address the kernel picks, nothing on disk.
  FUZZ_CHECK(::bind(sock.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(sa_family_t)) == 0,
             "bind()");
  FUZZ_CHECK(::listen(sock.get(), 4) == 0, "listen()");
  return sock;
}

unique_fd state_memfd(std::string_view text) {
  auto fd = fdbroker::daemon::make_state_memfd(text);
  FUZZ_CHECK(fd.ok(), "make_state_memfd");
  return std::move(fd).value();
}

unique_fd entry_fd(std::size_t i) {
  switch (i % 3) {
    case 0: {
      int p[2];
      FUZZ_CHECK(::pipe2(p, O_CLOEXEC) == 0, "pipe2()");
      ::close(p[1]);
      return unique_fd(p[0]);
    }
    case 1: {
      unique_fd fd(::memfd_create("fuzz", MFD_CLOEXEC));
      FUZZ_CHECK(fd.valid(), "memfd_create()");
      return fd;
    }
    default: {
      int s[2];
      FUZZ_CHECK(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, s) == 0, "socketpair()");
      ::close(s[1]);
      return unique_fd(s[0]);
    }
  }
}

bool is_open(int fd) { return ::fcntl(fd, F_GETFD) >= 0; }

// A restored entry holds what the state said of it: integers as written, not
// converted from floats or negative numbers.
void check_as_written(const Restored& r, std::string_view state) {
  json doc = json::parse(state, nullptr, false);
  FUZZ_CHECK(doc.is_object() && doc.contains("entries"), "entries came from a state");
  auto same_uint = [](const json& item, const char* key, std::uint64_t value) {
    return item.contains(key) && item[key].is_number_unsigned() &&
           item[key].get<std::uint64_t>() == value;
  };
  for (const auto& re : r.entries) {
    bool found = false;
    for (const auto& item : doc["entries"]) {
      // An earlier item of that name may have been damaged, hence skipped.
      if (item.is_object() && item.value("name", json()) == re.entry.name &&
          same_uint(item, "serial", re.serial) &&
          same_uint(item, "generation", re.entry.generation) &&
          same_uint(item, "owner", re.entry.owner) &&
          same_uint(item, "nfds", re.entry.fds->size())) {
        found = true;
        break;
      }
    }
    FUZZ_CHECK(found, "a restored entry is one of the state's, as written");
  }
}

void check_restored(const Restored& r) {
  FUZZ_CHECK(r.listener.valid() && is_open(r.listener.get()), "a restored set has its listener");
  std::set<int> fds{r.listener.get()};
  std::set<std::string> names;
  std::set<std::uint64_t> serials;
  for (const auto& re : r.entries) {
    const auto& e = re.entry;
    FUZZ_CHECK(fdbroker::daemon::valid_name(e.name), "a restored entry has a valid name");
    FUZZ_CHECK(names.insert(e.name).second, "a restored name is unique");
    FUZZ_CHECK(serials.insert(re.serial).second, "a restored serial is unique");
    FUZZ_CHECK(e.fds != nullptr && e.fds->size() >= 1 && e.fds->size() <= max_fds_per_entry,
               "a restored entry holds 1-253 fds");
    for (std::size_t i = 0; i < e.fds->size(); ++i) {
      FUZZ_CHECK(is_open((*e.fds)[i]), "a restored fd is open");
      FUZZ_CHECK(fds.insert((*e.fds)[i]).second, "a restored fd belongs to one entry");
    }
    json meta = json::parse(e.meta, nullptr, false);
    FUZZ_CHECK(meta.is_object(), "a restored meta is a JSON object");
    json descriptions = json::parse(e.fds_json, nullptr, false);
    FUZZ_CHECK(descriptions.is_array() && descriptions.size() == e.fds->size(),
               "a restored entry describes each of its fds");
    for (const auto& d : descriptions) FUZZ_CHECK(d.is_object(), "an fd description is an object");
  }
}

// The restored set as the broker would write it back (broker_persist.cpp state_json).
std::string state_text(const Restored& r) {
  json j{{"format", "fdbrokerd-state"},
         {"version", 1},
         {"next_generation", r.next_generation},
         {"next_serial", r.next_serial},
         {"socket_unlink", r.socket_unlink},
         {"static_openings", json::object()},
         {"entries", json::array()}};
  for (const auto& [name, opening] : r.static_openings) j["static_openings"][name] = opening;
  for (const auto& re : r.entries) {
    const auto& e = re.entry;
    json item{{"name", e.name},
              {"serial", re.serial},
              {"nfds", e.fds->size()},
              {"meta", json::parse(e.meta)},
              {"fds", json::parse(e.fds_json)},
              {"owner", e.owner},
              {"static", e.is_static},
              {"generation", e.generation}};
    if (e.expiry) item["expiry_monotonic_ns"] = e.expiry->time_since_epoch().count();
    j["entries"].push_back(std::move(item));
  }
  return j.dump(-1, ' ', false, json::error_handler_t::replace);
}

void check_round_trip(const Restored& r) {
  std::vector<NamedFd> fds;
  fds.push_back(NamedFd{"listen", listening_seqpacket()});
  fds.push_back(NamedFd{"state.1", state_memfd(state_text(r))});
  for (const auto& re : r.entries) {
    for (std::size_t i = 0; i < re.entry.fds->size(); ++i) {
      unique_fd copy(::fcntl((*re.entry.fds)[i], F_DUPFD_CLOEXEC, 3));
      FUZZ_CHECK(copy.valid(), "dup of a restored fd");
      fds.push_back(NamedFd{fdbroker::daemon::entry_fdname(re.serial, i), std::move(copy)});
    }
  }
  auto again = fdbroker::daemon::restore_from(std::move(fds));
  FUZZ_CHECK(again.ok(), "a written-back state restores");
  FUZZ_CHECK(again->warnings.empty() && again->orphans.empty(),
             "a written-back state restores whole");
  FUZZ_CHECK(again->next_generation == r.next_generation && again->next_serial == r.next_serial &&
                 again->socket_unlink == r.socket_unlink &&
                 again->static_openings == r.static_openings,
             "a written-back state keeps its counters");
  FUZZ_CHECK(again->entries.size() == r.entries.size(), "a written-back state keeps every entry");
  for (std::size_t k = 0; k < r.entries.size(); ++k) {
    const auto& a = r.entries[k];
    const auto& b = again->entries[k];
    FUZZ_CHECK(a.serial == b.serial && a.entry.name == b.entry.name &&
                   a.entry.meta == b.entry.meta && a.entry.fds_json == b.entry.fds_json &&
                   a.entry.owner == b.entry.owner && a.entry.is_static == b.entry.is_static &&
                   a.entry.generation == b.entry.generation && a.entry.expiry == b.entry.expiry &&
                   a.entry.fds->size() == b.entry.fds->size(),
               "a written-back entry restores the same");
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string_view input = fuzz::as_text(data, size);
  std::size_t nl = input.find('\n');
  std::string_view names_line = input.substr(0, nl);
  std::string_view state = nl == std::string_view::npos ? std::string_view() : input.substr(nl + 1);

  std::vector<std::string> names;
  for (std::size_t start = 0; start <= names_line.size();) {
    std::size_t space = names_line.find(' ', start);
    if (space == std::string_view::npos) space = names_line.size();
    if (space > start) names.emplace_back(names_line.substr(start, space - start));
    start = space + 1;
  }
  if (names.size() > max_names) return -1;

  fuzz::FdCheck fd_check;
  {
    std::vector<NamedFd> fds;
    for (std::size_t i = 0; i < names.size(); ++i) {
      unique_fd fd;
      if (names[i] == "listen") {
        fd = listening_seqpacket();
      } else if (names[i].compare(0, 6, "state.") == 0) {
        fd = state_memfd(state);
      } else {
        fd = entry_fd(i);
      }
      fds.push_back(NamedFd{names[i], std::move(fd)});
    }
    auto restored = fdbroker::daemon::restore_from(std::move(fds));
    if (!restored.ok()) {
      int err = restored.error().value();
      FUZZ_CHECK(err == EINVAL || err == ENOTSOCK || err == EPROTOTYPE,
                 "EINVAL, ENOTSOCK or EPROTOTYPE");
    } else if (!names.empty()) {
      check_restored(*restored);
      if (!restored->entries.empty()) check_as_written(*restored, state);
      check_round_trip(*restored);
    } else {
      FUZZ_CHECK(!restored->listener.valid() && restored->entries.empty(),
                 "nothing passed, nothing restored");
    }
  }
  fd_check.same("restore_from: every fd passed is kept by the result or closed");
  return 0;
}
