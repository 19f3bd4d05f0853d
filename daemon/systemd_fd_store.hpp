// SPDX-License-Identifier: LGPL-2.1-or-later
// Keeps systemd's fd store in step with the broker's store, so that a crash
// (kill -9) or `systemctl restart` loses no entry: every held fd is pushed with
// FDSTORE=1 under a short fdname, removed with FDSTOREREMOVE=1 when its entry
// goes, and the entries' state (names, meta, owners, generations, expiry, which
// fdname is which fd of which entry) is kept in a sealed memfd stored too.
//
// fdnames: "e<serial>.<index>" for entries (serial: unique per stored entry in
// this broker's lineage; names travel in the state, never raw in FDNAME, which
// allows only 255 printable characters and no ':'), "state.<seq>" for the state.
// The state is replaced by storing the new memfd before removing the old one, so
// a crash in between leaves two, and restore takes the higher <seq>.
//
// Order, so that a crash at any point loses nothing acknowledged: an entry's fds
// are stored at once (entry_added), before any state names them; the state is
// written once per loop turn (a turn hook: group commit), and the broker answers
// put, take and delete only after it (Broker::release_held); the fds of removed
// entries leave systemd's store only after a state without them was written (a
// crash in between leaves fds no state claims: restore closes them). One
// exception: systemd keeps one copy of an open file however many fdnames it is
// stored under, so an entry added with a file whose removal is still pending
// (a replace with the same descriptor) sends the removals first.
#pragma once

#include <cstdint>
#include <fdbroker/result.hpp>
#include <fdbroker/unique_fd.hpp>
#include <functional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "event_loop.hpp"
#include "fd_store.hpp"

namespace fdbroker::daemon {

// Whether this broker should use systemd's fd store: $NOTIFY_SOCKET is set and a
// service manager started us ($INVOCATION_ID). $FDBROKER_FDSTORE=1/0 overrides
// (a notify socket alone, as the tests' fixtures set, is no fd store).
bool fdstore_wanted();

// The fdname of fd `index` of the entry stored under `serial`.
std::string entry_fdname(std::uint64_t serial, std::size_t index);

// A sealed (no grow/shrink/write, seals sealed), close-on-exec memfd named
// "state" holding `text`. Errors: memfd_create's, write's, fcntl's.
result<unique_fd> make_state_memfd(std::string_view text);

class SystemdFdStore final : public StoreObserver {
 public:
  // `push`: talk to systemd (fdstore_wanted()). Without it the sync still
  // assigns serials, which an upgrade uses as fdnames for the successor.
  SystemdFdStore(EventLoop& loop, bool push);
  ~SystemdFdStore() override;
  SystemdFdStore(const SystemdFdStore&) = delete;
  SystemdFdStore& operator=(const SystemdFdStore&) = delete;

  // Renders the current state as JSON (the broker provides it: restore.hpp reads it).
  void set_state_source(std::function<std::string()> source) { source_ = std::move(source); }

  // The next entry_added() for `name` is one restored under `serial`: its fds are
  // in systemd's store already, under that serial's fdnames.
  void expect_restored(const std::string& name, std::uint64_t serial);
  // Serials handed out from now on are at least `at_least` (restored lineage).
  void seed_serial(std::uint64_t at_least) noexcept {
    if (next_serial_ < at_least) next_serial_ = at_least;
  }
  // The state memfds systemd passed back (their sequence numbers): the next
  // state write removes them, and numbering goes on after them.
  void adopt_stored_states(const std::vector<std::uint64_t>& seqs);
  // Removes an fd systemd passed back that no restored entry claims.
  void forget(const std::string& fdname);

  // The serial of the stored entry `name` (0: unknown).
  [[nodiscard]] std::uint64_t serial_of(std::string_view name) const;
  [[nodiscard]] std::uint64_t next_serial() const noexcept { return next_serial_; }
  [[nodiscard]] bool pushing() const noexcept { return push_; }

  void entry_added(const StoredEntry& e) override;
  void entry_removed(const StoredEntry& e) override;

  // Marks the state changed; it is written at the end of the loop's turn (at
  // most once per turn, however many changes the turn made).
  void mark_dirty() noexcept { dirty_ = true; }
  [[nodiscard]] bool dirty() const noexcept { return push_ && dirty_; }
  // Writes the state now if it changed, then removes the fds of entries gone
  // since the last write. True when systemd holds the current state (the
  // sd_notify call carrying it returned success, now or earlier, or there is no
  // fd store); false if writing it failed (logged; it stays dirty for a retry).
  bool flush();

 private:
  // sd_notify's result: 0 or a negative errno (logged).
  int notify_with_fd(const std::string& state, int fd);
  int notify(const std::string& state);

  EventLoop& loop_;
  bool push_;
  std::function<std::string()> source_;
  std::unordered_map<std::string, std::uint64_t> serials_;   // entry name → serial
  std::unordered_map<std::string, std::uint64_t> expected_;  // restored, not yet re-added
  std::uint64_t next_serial_ = 1;
  std::uint64_t state_seq_ = 1;
  std::vector<std::uint64_t> stored_states_;  // in systemd's store now
  // fdnames to remove once the state no longer names them, with the file
  // (device, inode) each stands for: see entry_added().
  struct Removal {
    std::string fdname;
    std::uint64_t dev;
    std::uint64_t ino;
  };
  std::vector<Removal> removals_;
  void send_removals();
  bool dirty_ = false;
  bool failing_ = false;  // the last write failed (log the next success)
  EventLoop::HookId turn_hook_ = 0;
};

}  // namespace fdbroker::daemon
