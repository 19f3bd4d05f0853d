// SPDX-License-Identifier: LGPL-2.1-or-later
// The store: name → StoredEntry{fds, meta, owner, generation, expiry}, with per-uid
// usage counts and an index by expiry time. Pure bookkeeping: no I/O, no policy,
// no logging (the broker decides and logs; the store keeps the books straight).
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <fdbroker/unique_fd.hpp>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "clock.hpp"

namespace fdbroker::daemon {

// The descriptors of one entry. Shared: the store holds one reference and every
// reply still queued for a slow client holds another, so the fds stay open until
// they are sent even if the entry is deleted meanwhile, without a dup() per reply.
class FdSet {
 public:
  explicit FdSet(std::vector<unique_fd> fds);
  ~FdSet();
  FdSet(const FdSet&) = delete;
  FdSet& operator=(const FdSet&) = delete;

  [[nodiscard]] const int* data() const noexcept { return raw_.data(); }
  [[nodiscard]] std::size_t size() const noexcept { return raw_.size(); }
  [[nodiscard]] int operator[](std::size_t i) const noexcept { return raw_[i]; }

  // Descriptors alive in all FdSets of the process, whoever holds them.
  static std::uint64_t live() noexcept { return live_; }

 private:
  std::vector<unique_fd> fds_;
  std::vector<int> raw_;  // the same fds as ints, laid out for sendmsg
  static inline std::uint64_t live_ = 0;
};

struct StoredEntry {
  std::string name;
  std::shared_ptr<const FdSet> fds;
  std::string meta = "{}";  // compact JSON object
  std::string fds_json;     // JSON array describing fds, in order
  uid_t owner = 0;
  bool is_static = false;
  std::uint64_t generation = 0;
  std::optional<Clock::time_point> expiry;

  // Precomputed reply fragments, so that a get splices instead of serialising:
  // get/take reply = "{" [ "\"id\":" ID "," ] [ "\"expires_ms\":" N "," ] + reply_body
  std::string reply_body;  // "\"ok\":true,\"name\":...,\"fds\":[...]}"
  // list item = list_head [ ",\"expires_ms\":" N ] "}"
  std::string list_head;

  // Fills reply_body and list_head from the fields above.
  void render();
};

// Told of every entry that enters or leaves the store (persistence: systemd's
// fd store and the state memfd follow the store through this; see systemd_fd_store.hpp).
class StoreObserver {
 public:
  virtual ~StoreObserver() = default;
  virtual void entry_added(const StoredEntry& e) = 0;
  virtual void entry_removed(const StoredEntry& e) = 0;
};

struct Usage {
  std::uint64_t entries = 0;
  std::uint64_t fds = 0;
};

class FdStore {
 public:
  using Map = std::map<std::string, StoredEntry, std::less<>>;

  // `first_generation` seeds the generation counter (see next_generation()).
  explicit FdStore(std::uint64_t first_generation = 1) : next_generation_(first_generation) {}

  // The live entry called `name`, or nullptr if there is none or it has expired
  // (an expired entry may linger until expire() runs; it is never handed out).
  [[nodiscard]] const StoredEntry* find(std::string_view name, Clock::time_point now) const;

  // Stores `entry` (generation and rendering are the caller's), replacing any
  // entry of that name. Returns the replaced entry, whose fds the caller drops
  // (or keeps alive through other references).
  std::optional<StoredEntry> insert(StoredEntry entry);

  // Removes and returns the entry called `name` (expired or not).
  std::optional<StoredEntry> extract(std::string_view name);

  // Removes every entry whose expiry is <= now; returns them.
  std::vector<StoredEntry> expire(Clock::time_point now);

  [[nodiscard]] std::optional<Clock::time_point> next_expiry() const;

  // A number larger than any returned before by this store.
  std::uint64_t next_generation() noexcept { return next_generation_++; }
  // The number next_generation() would return, without taking it.
  [[nodiscard]] std::uint64_t peek_generation() const noexcept { return next_generation_; }
  // Never hand out a generation below `at_least` (a restored broker's counter).
  void seed_generation(std::uint64_t at_least) noexcept {
    if (next_generation_ < at_least) next_generation_ = at_least;
  }

  // `observer` (borrowed; nullptr: none) hears of every insert and removal from now on.
  void set_observer(StoreObserver* observer) noexcept { observer_ = observer; }

  [[nodiscard]] std::size_t size() const noexcept { return entries_.size(); }
  [[nodiscard]] std::uint64_t fds_held() const noexcept { return fds_held_; }
  // What non-static entries owned by `uid` hold.
  [[nodiscard]] Usage usage(uid_t uid) const;
  [[nodiscard]] const Map& entries() const noexcept { return entries_; }

 private:
  void account(const StoredEntry& e, bool add);

  Map entries_;
  std::set<std::pair<Clock::time_point, std::string>, std::less<>> by_expiry_;
  std::unordered_map<uid_t, Usage> usage_;
  std::uint64_t fds_held_ = 0;
  std::uint64_t next_generation_;
  StoreObserver* observer_ = nullptr;
};

}  // namespace fdbroker::daemon
