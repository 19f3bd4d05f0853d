// SPDX-License-Identifier: LGPL-2.1-or-later
// The Broker's entries outside requests: the static ones the configuration
// declares (opened at start and reload), and expiry.
#include <spdlog/spdlog.h>

#include <algorithm>
#include <cerrno>
#include <nlohmann/json.hpp>

#include "broker.hpp"
#include "static_entries.hpp"

namespace fdbroker::daemon {

std::string describe_fds(const FdSet& fds, const std::vector<FdFacts>& facts) {
  nlohmann::json list = nlohmann::json::array();
  for (std::size_t i = 0; i < fds.size(); ++i) {
    list.push_back(i < facts.size() ? describe_fd(fds[i], facts[i]) : describe_fd(fds[i]));
  }
  return list.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

std::vector<Failure> Broker::prepare_static(const Config& config,
                                            std::vector<StoredEntry>& ret_entries) {
  std::vector<StoredEntry> prepared;
  std::vector<Failure> problems;
  for (std::size_t i = 0; i < config.entries.size(); ++i) {
    const StaticEntry& decl = config.entries[i];
    StoredEntry e;
    e.name = decl.name;
    e.meta = decl.meta;
    e.owner = 0;
    e.is_static = true;
    const StoredEntry* existing = nullptr;
    auto it = static_openings_.find(decl.name);
    if (it != static_openings_.end() && it->second == decl.opening) {
      auto found = store_.entries().find(decl.name);
      if (found != store_.entries().end() && found->second.is_static) existing = &found->second;
    }
    if (existing != nullptr) {
      // Unchanged declaration: the same fds (a listening socket is never re-bound).
      e.fds = existing->fds;
      e.fds_json = existing->fds_json;
      e.generation = existing->meta == e.meta ? existing->generation : 0;
    } else {
      auto fd = open_static_entry(decl);
      if (!fd) {
        problems.push_back({fd.failure().err, "entries[" + std::to_string(i) + "] '" + decl.name +
                                                  "': " + fd.failure().why});
        continue;
      }
      std::vector<unique_fd> one;
      one.push_back(std::move(*fd));
      e.fds = std::make_shared<const FdSet>(std::move(one));
      e.fds_json = describe_fds(*e.fds);
    }
    if (e.generation == 0) e.generation = store_.next_generation();
    e.render();
    if (e.reply_body.size() > max_entry_body) {
      problems.push_back({EMSGSIZE, "entries[" + std::to_string(i) + "] '" + decl.name +
                                        "': meta too large for one message"});
      continue;
    }
    prepared.push_back(std::move(e));
  }
  if (!problems.empty()) return problems;  // the new fds in `prepared` close here
  ret_entries = std::move(prepared);
  return problems;
}

void Broker::install_static(std::vector<StoredEntry> entries) {
  // Static entries no longer declared go; declared ones replace whatever is there.
  std::vector<std::string> gone;
  for (const auto& declared : static_openings_) {
    const std::string& name =
        declared.first;  // not a structured binding: clang 14 cannot capture one
    bool still = std::any_of(entries.begin(), entries.end(),
                             [&](const StoredEntry& e) { return e.name == name; });
    if (!still) gone.push_back(name);
  }
  for (const auto& name : gone) {
    if (auto old = store_.extract(name))
      drop_entry(std::move(*old), "no longer in the configuration");
  }
  static_openings_.clear();
  for (const auto& decl : config_.entries) static_openings_[decl.name] = decl.opening;
  std::vector<std::string> names;
  for (auto& e : entries) {
    names.push_back(e.name);
    const StoredEntry* current = store_.find(e.name, Clock::now());
    if (current != nullptr && !current->is_static) {
      spdlog::warn("static entry '{}' replaces the entry put by uid {}", e.name, current->owner);
    }
    store_.insert(std::move(e));
  }
  for (const auto& name : names) wake_waiters(name);
}

// ---------------------------------------------------------------- expiry

void Broker::drop_entry(StoredEntry&& e, const char* why) {
  if (why != nullptr)
    spdlog::info("entry '{}' generation {} removed: {}", e.name, e.generation, why);
  StoredEntry gone = std::move(e);  // its fds close here unless a queued reply still holds them
}

void Broker::schedule_expiry() {
  auto next = store_.next_expiry();
  if (!next || (expiry_timer_ != 0 && *next >= expiry_at_)) return;
  if (expiry_timer_ != 0) loop_.cancel(expiry_timer_);
  expiry_at_ = *next;
  expiry_timer_ = loop_.add_timer(*next, [this] {
    expiry_timer_ = 0;
    expiry_at_ = Clock::time_point::max();
    expire_entries();
  });
}

void Broker::expire_entries() {
  for (auto& e : store_.expire(Clock::now())) drop_entry(std::move(e), "expired");
  schedule_expiry();
}
}  // namespace fdbroker::daemon
