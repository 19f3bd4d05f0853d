// SPDX-License-Identifier: LGPL-2.1-or-later
#include "fd_store.hpp"

#include "closer.hpp"
#include "json_text.hpp"

namespace fdbroker::daemon {

FdSet::FdSet(std::vector<unique_fd> fds) : fds_(std::move(fds)) {
  raw_.reserve(fds_.size());
  for (const auto& fd : fds_) raw_.push_back(fd.get());
  live_ += fds_.size();
}

// A client's descriptors: closed on the closer's threads, never here (a close
// can hang in a FUSE file system: closer.hpp).
FdSet::~FdSet() {
  live_ -= fds_.size();
  close_later(fds_);
}

void StoredEntry::render() {
  std::string owner_json = "{\"uid\":";
  append_uint(owner_json, owner);
  if (is_static) owner_json += ",\"static\":true";
  owner_json += "}";

  std::string common = "\"name\":";
  append_json_string(common, name);
  common += ",\"generation\":";
  append_uint(common, generation);
  common += ",\"meta\":";
  common += meta;
  common += ",\"owner\":";
  common += owner_json;
  common += ",\"fds\":";
  common += fds_json;

  reply_body = "\"ok\":true,";
  reply_body += common;
  reply_body += "}";

  list_head = "{";
  list_head += common;
  list_head += is_static ? ",\"static\":true" : ",\"static\":false";
}

const StoredEntry* FdStore::find(std::string_view name, Clock::time_point now) const {
  auto it = entries_.find(name);
  if (it == entries_.end()) return nullptr;
  if (it->second.expiry && *it->second.expiry <= now) return nullptr;
  return &it->second;
}

void FdStore::account(const StoredEntry& e, bool add) {
  if (observer_ != nullptr) {
    if (add) {
      observer_->entry_added(e);
    } else {
      observer_->entry_removed(e);
    }
  }
  std::size_t n = e.fds ? e.fds->size() : 0;
  if (add) {
    fds_held_ += n;
  } else {
    fds_held_ -= n;
  }
  if (e.expiry) {
    if (add) {
      by_expiry_.emplace(*e.expiry, e.name);
    } else {
      by_expiry_.erase({*e.expiry, e.name});
    }
  }
  if (e.is_static) return;
  if (add) {
    Usage& u = usage_[e.owner];
    u.entries += 1;
    u.fds += n;
  } else {
    auto it = usage_.find(e.owner);
    if (it == usage_.end()) return;
    it->second.entries -= 1;
    it->second.fds -= n;
    if (it->second.entries == 0) usage_.erase(it);
  }
}

std::optional<StoredEntry> FdStore::insert(StoredEntry entry) {
  std::optional<StoredEntry> old = extract(entry.name);
  account(entry, true);
  std::string key = entry.name;
  entries_.emplace(std::move(key), std::move(entry));
  return old;
}

std::optional<StoredEntry> FdStore::extract(std::string_view name) {
  auto it = entries_.find(name);
  if (it == entries_.end()) return std::nullopt;
  account(it->second, false);
  StoredEntry e = std::move(it->second);
  entries_.erase(it);
  return e;
}

std::vector<StoredEntry> FdStore::expire(Clock::time_point now) {
  std::vector<StoredEntry> gone;
  while (!by_expiry_.empty() && by_expiry_.begin()->first <= now) {
    auto first = by_expiry_.begin();
    std::string name = first->second;
    if (auto e = extract(name)) {
      gone.push_back(std::move(*e));
    } else {
      by_expiry_.erase(first);  // cannot happen; never loop forever if it does
    }
  }
  return gone;
}

std::optional<Clock::time_point> FdStore::next_expiry() const {
  if (by_expiry_.empty()) return std::nullopt;
  return by_expiry_.begin()->first;
}

Usage FdStore::usage(uid_t uid) const {
  auto it = usage_.find(uid);
  return it == usage_.end() ? Usage{} : it->second;
}

}  // namespace fdbroker::daemon
