// SPDX-License-Identifier: LGPL-2.1-or-later
// The Broker's side of persistence: what goes into the state memfd, and taking
// restored entries back in (systemd_fd_store.hpp, restore.hpp).
#include <spdlog/spdlog.h>

#include "broker.hpp"
#include "json_text.hpp"
#include "restore.hpp"
#include "systemd_fd_store.hpp"

namespace fdbroker::daemon {

void Broker::attach(SystemdFdStore& sync) {
  sync_ = &sync;
  store_.set_observer(&sync);
  sync.set_state_source([this] { return state_json(); });
  if (sync.pushing()) release_hook_ = loop_.add_turn_hook([this] { release_held(); });
}

void Broker::adopt(Restored&& restored) {
  store_.seed_generation(restored.next_generation);
  if (sync_ != nullptr) {
    sync_->seed_serial(restored.next_serial);
    sync_->adopt_stored_states(restored.state_seqs);
    for (const auto& fdname : restored.orphans) sync_->forget(fdname);
  }
  for (const auto& w : restored.warnings) spdlog::error("restore: {}", w);
  if (unlink_path_.empty()) unlink_path_ = restored.socket_unlink;
  std::size_t n = 0;
  for (auto& r : restored.entries) {
    StoredEntry& e = r.entry;
    e.render();
    if (sync_ != nullptr) sync_->expect_restored(e.name, r.serial);
    spdlog::debug("restored '{}' generation {}: {}", e.name, e.generation, e.fds_json);
    store_.insert(std::move(e));
    ++n;
  }
  // Static entries come back with their declarations, so that start() keeps the
  // fds of unchanged ones (a listening socket must not be bound again) and
  // reopens or drops the rest.
  static_openings_ = std::move(restored.static_openings);
  for (auto it = static_openings_.begin(); it != static_openings_.end();) {
    auto found = store_.entries().find(it->first);
    it = found == store_.entries().end() || !found->second.is_static ? static_openings_.erase(it)
                                                                     : std::next(it);
  }
  schedule_expiry();
  if (n > 0 || !restored.orphans.empty()) {
    spdlog::info("restored {} entries ({} fds); {} descriptors closed unclaimed", n,
                 store_.fds_held(), restored.orphans.size());
  }
}

// ---------------------------------------------------------------- durable acknowledgements

bool Broker::durable_acks() const noexcept { return sync_ != nullptr && sync_->pushing(); }

void Broker::acknowledge(Connection& c) {
  if (!durable_acks()) {
    send_reply(c);
    return;
  }
  replies_.hold(c);
}

// The turn hook (fd store in use): the state of this turn's changes first, then
// the replies that acknowledge them, in order on each connection.
void Broker::release_held() {
  // Dirty with nothing held: a take whose reply could not be delivered gave its
  // entry back while releasing; write that too before the loop sleeps.
  while (replies_.has_held() || sync_->dirty()) {
    if (!sync_->flush()) {
      // Logged by the sync. The replies wait: retry shortly (the timer's turn
      // ends with this hook again).
      if (held_retry_timer_ == 0) {
        held_retry_timer_ = loop_.add_timer(Clock::now() + std::chrono::milliseconds(100),
                                            [this] { held_retry_timer_ = 0; });
      }
      return;
    }
    for (ConnectionId id : replies_.take_held()) {
      Connection* held = find(id);
      if (held == nullptr) continue;  // closed: its takes were given back
      Connection& c = *held;
      c.release();
      write_replies(c);
      if (!c.closed && c.has_queued() && c.stuck_timer == 0) note_queued(c);
    }
    reap();
  }
}

std::string Broker::state_json() const {
  std::string out = "{\"format\":\"fdbrokerd-state\",\"version\":1,\"next_generation\":";
  append_uint(out, store_.peek_generation());
  out += ",\"next_serial\":";
  append_uint(out, sync_ != nullptr ? sync_->next_serial() : 1);
  out += ",\"socket_unlink\":";
  append_json_string(out, unlink_path_);
  out += ",\"static_openings\":{";
  bool first = true;
  for (const auto& [name, opening] : static_openings_) {
    if (!first) out += ',';
    first = false;
    append_json_string(out, name);
    out += ':';
    append_json_string(out, opening);
  }
  out += "},\"entries\":[";
  first = true;
  for (const auto& [name, e] : store_.entries()) {
    if (!first) out += ',';
    first = false;
    out += "{\"name\":";
    append_json_string(out, name);
    out += ",\"serial\":";
    append_uint(out, sync_ != nullptr ? sync_->serial_of(name) : 0);
    out += ",\"nfds\":";
    append_uint(out, e.fds ? e.fds->size() : 0);
    out += ",\"meta\":";
    out += e.meta;
    out += ",\"fds\":";
    out += e.fds_json;
    out += ",\"owner\":";
    append_uint(out, e.owner);
    out += e.is_static ? ",\"static\":true" : ",\"static\":false";
    out += ",\"generation\":";
    append_uint(out, e.generation);
    if (e.expiry) {
      out += ",\"expiry_monotonic_ns\":";
      append_int(out,
                 std::chrono::duration_cast<std::chrono::nanoseconds>(e.expiry->time_since_epoch())
                     .count());
    }
    out += '}';
  }
  out += "]}";
  return out;
}

}  // namespace fdbroker::daemon
