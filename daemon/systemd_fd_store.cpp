// SPDX-License-Identifier: LGPL-2.1-or-later
#include "systemd_fd_store.hpp"

#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fdbroker/error.hpp>

#include "systemd.hpp"

namespace fdbroker::daemon {

bool fdstore_wanted() {
  if (const char* forced = std::getenv("FDBROKER_FDSTORE"); forced != nullptr && *forced != '\0') {
    return std::strcmp(forced, "0") != 0;
  }
  return std::getenv("NOTIFY_SOCKET") != nullptr && std::getenv("INVOCATION_ID") != nullptr;
}

namespace {

// The file behind `fd`, (0, 0) if unknown. AT_STATX_DONT_SYNC: never waits for a
// (possibly stalled) remote or FUSE file system.
std::pair<std::uint64_t, std::uint64_t> file_id(int fd) {
  struct statx st {};
  if (::statx(fd, "", AT_EMPTY_PATH | AT_STATX_DONT_SYNC, STATX_INO, &st) < 0) return {0, 0};
  return {(static_cast<std::uint64_t>(st.stx_dev_major) << 32) | st.stx_dev_minor, st.stx_ino};
}

}  // namespace

std::string entry_fdname(std::uint64_t serial, std::size_t index) {
  return "e" + std::to_string(serial) + "." + std::to_string(index);
}

result<unique_fd> make_state_memfd(std::string_view text) {
  unique_fd fd(::memfd_create("state", MFD_CLOEXEC | MFD_ALLOW_SEALING));
  if (!fd.valid()) return errno_code(errno);
  std::size_t done = 0;
  while (done < text.size()) {
    ssize_t n = ::write(fd.get(), text.data() + done, text.size() - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      return errno_code(errno);
    }
    done += static_cast<std::size_t>(n);
  }
  // Sealed, so that nobody holding it (systemd, a successor) can change what the
  // next broker will read, and a reader needs no lock.
  if (::fcntl(fd.get(), F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE | F_SEAL_SEAL) <
      0) {
    return errno_code(errno);
  }
  return fd;
}

SystemdFdStore::SystemdFdStore(EventLoop& loop, bool push) : loop_(loop), push_(push) {
  if (push_) turn_hook_ = loop_.add_turn_hook([this] { (void)flush(); });
}

SystemdFdStore::~SystemdFdStore() {
  if (turn_hook_ != 0) loop_.remove_turn_hook(turn_hook_);
}

void SystemdFdStore::expect_restored(const std::string& name, std::uint64_t serial) {
  expected_[name] = serial;
  seed_serial(serial + 1);
}

std::uint64_t SystemdFdStore::serial_of(std::string_view name) const {
  auto it = serials_.find(std::string(name));
  return it == serials_.end() ? 0 : it->second;
}

void SystemdFdStore::adopt_stored_states(const std::vector<std::uint64_t>& seqs) {
  for (std::uint64_t seq : seqs) {
    stored_states_.push_back(seq);
    if (state_seq_ <= seq) state_seq_ = seq + 1;
  }
  if (!seqs.empty()) mark_dirty();
}

void SystemdFdStore::forget(const std::string& fdname) {
  if (push_) notify("FDSTOREREMOVE=1\nFDNAME=" + fdname);
}

int SystemdFdStore::notify_with_fd(const std::string& state, int fd) {
  auto err = systemd::notify_with_fd(state, fd);
  if (err) spdlog::error("fd store: {}: {}", state.substr(0, state.find('\n')), err.message());
  return -err.value();
}

int SystemdFdStore::notify(const std::string& state) {
  auto err = systemd::notify(state);
  if (err) spdlog::error("fd store: {}: {}", state.substr(0, state.find('\n')), err.message());
  return -err.value();
}

void SystemdFdStore::entry_added(const StoredEntry& e) {
  if (auto it = expected_.find(e.name); it != expected_.end()) {
    serials_[e.name] = it->second;  // already in systemd's store under these fdnames
    expected_.erase(it);
    mark_dirty();
    return;
  }
  std::uint64_t serial = next_serial_++;
  serials_[e.name] = serial;
  if (push_ && e.fds && !removals_.empty()) {
    // systemd stores an open file once, under the first fdname it came with: a
    // file still stored for a removed entry would not be stored again, and
    // removing that fdname later would take it away. Such removals go first.
    bool shared = false;
    for (std::size_t i = 0; i < e.fds->size() && !shared; ++i) {
      auto id = file_id((*e.fds)[i]);
      for (const auto& r : removals_) shared = shared || (r.dev == id.first && r.ino == id.second);
    }
    if (shared) send_removals();
  }
  if (push_ && e.fds) {
    // FDPOLL=0: systemd must keep what it would otherwise drop on POLLHUP (a pipe
    // whose writer closed, a socket whose peer left), as the broker's store does.
    for (std::size_t i = 0; i < e.fds->size(); ++i) {
      notify_with_fd("FDSTORE=1\nFDNAME=" + entry_fdname(serial, i) + "\nFDPOLL=0", (*e.fds)[i]);
    }
  }
  mark_dirty();
}

void SystemdFdStore::entry_removed(const StoredEntry& e) {
  auto it = serials_.find(e.name);
  if (it == serials_.end()) return;
  std::uint64_t serial = it->second;
  serials_.erase(it);
  // Not yet: the state in systemd's store still names them (see flush()).
  if (push_ && e.fds) {
    for (std::size_t i = 0; i < e.fds->size(); ++i) {
      auto id = file_id((*e.fds)[i]);
      removals_.push_back(Removal{entry_fdname(serial, i), id.first, id.second});
    }
  }
  mark_dirty();
}

bool SystemdFdStore::flush() {
  if (!push_ || !source_) return true;
  if (!dirty_) return true;
  auto memfd = make_state_memfd(source_());
  if (!memfd) {
    spdlog::error("fd store: cannot write the state memfd: {}", memfd.error().message());
    failing_ = true;
    return false;
  }
  std::uint64_t seq = state_seq_;
  // The new state first, then the old one goes: a crash in between leaves both,
  // and restore takes the newer.
  if (notify_with_fd("FDSTORE=1\nFDNAME=state." + std::to_string(seq) + "\nFDPOLL=0",
                     memfd->get()) < 0) {
    failing_ = true;
    return false;
  }
  ++state_seq_;
  dirty_ = false;
  if (failing_) spdlog::info("fd store: state.{} written", seq);
  failing_ = false;
  for (std::uint64_t old : stored_states_)
    (void)notify("FDSTOREREMOVE=1\nFDNAME=state." + std::to_string(old));
  stored_states_.assign(1, seq);
  // Now no stored state names the entries that went: their fds may go too.
  send_removals();
  return true;
}

void SystemdFdStore::send_removals() {
  for (const auto& r : removals_) (void)notify("FDSTOREREMOVE=1\nFDNAME=" + r.fdname);
  removals_.clear();
}

}  // namespace fdbroker::daemon
