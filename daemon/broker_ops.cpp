// SPDX-License-Identifier: LGPL-2.1-or-later
// The Broker's operations: hello, get/take (and waiting for an entry), put,
// delete, list, stats and upgrade, each checked against the Policy.
#include <fdbroker/version.hpp>

#include <unistd.h>

#include <spdlog/spdlog.h>
#include <algorithm>
#include <cerrno>
#include <nlohmann/json.hpp>

#include "broker.hpp"
#include "json_text.hpp"
#include "logging.hpp"

namespace fdbroker::daemon {

namespace {

std::int64_t ms_until(Clock::time_point when, Clock::time_point now) {
  auto left = std::chrono::ceil<std::chrono::milliseconds>(when - now).count();
  return left > 0 ? left : 0;
}

// The audit event of a put by `peer` that ends with `err` (0: stored).
AuditEvent put_event(const ClientIdentity& peer, const Request& req, int err,
                     spdlog::level::level_enum level = spdlog::level::info) {
  AuditEvent event;
  event.level = level;
  event.op = "put";
  event.peer = &peer;
  event.name = req.name;
  event.result = err == 0 ? "ok" : errno_name_or_eio(err);
  return event;
}

}  // namespace

bool Broker::allowed(Connection& c, unsigned perm, const Request& req, const StoredEntry* entry) {
  const uid_t* owner = entry != nullptr && !entry->is_static ? &entry->owner : nullptr;
  const ClientIdentity& peer = units_named_ ? identify(c) : c.peer();
  Decision d = policy_.check(peer, perm, req.name, owner);
  AuditEvent event;
  event.op = perm_name(perm);
  event.peer = &peer;
  event.name = req.name;
  if (d.by_rule) event.rule = d.reason;
  if (!d.allowed) {
    event.result = "EACCES";
    audit(event, "denied {} '{}' to {}: {}", perm_name(perm), req.name, peer.label, d.reason);
    return false;
  }
  // Grants that change the store are worth an audit line; reads are the hot
  // path (100k+/s) and only show at debug.
  event.result = "ok";
  event.level = perm == perm_get || perm == perm_stats ? spdlog::level::debug : spdlog::level::info;
  audit(event, "granted {} '{}' to {}: {}", perm_name(perm), req.name, peer.label, d.reason);
  return true;
}

// ---------------------------------------------------------------- operations

void Broker::do_hello(Connection& c, const Request& req) {
  const ClientIdentity& peer = identify(c);
  counters_.count(req, 0);
  std::string& reply = replies_.begin(req.id);
  reply += "\"ok\":true,\"server\":\"fdbrokerd\",\"version\":\"" FDBROKER_VERSION_STRING
           "\",\"protocol\":1,\"peer\":{\"uid\":";
  append_uint(reply, peer.uid);
  reply += ",\"gid\":";
  append_uint(reply, peer.gid);
  reply += ",\"pid\":";
  append_int(reply, peer.pid);
  reply += ",\"unit\":";
  if (peer.unit) {
    append_json_string(reply, *peer.unit);
  } else {
    reply += "null";
  }
  reply += ",\"cgroup\":";
  append_json_string(reply, peer.cgroup);
  reply += "}}";
  send_reply(c);
}

void Broker::do_get(Connection& c, Request& req, bool may_wait) {
  bool take = req.op == Op::take;
  auto now = Clock::now();
  const StoredEntry* e = store_.find(req.name, now);
  // Access first, existence after: a peer refused the name learns nothing about
  // whether it exists (EACCES either way), nor waits for an entry it could not get.
  if (!allowed(c, take ? perm_take : perm_get, req, e)) {
    send_error(c, req, EACCES,
               std::string(take ? "take" : "get") + " of '" + req.name + "' not allowed");
    return;
  }
  if (e == nullptr) {
    if (may_wait && req.wait_ms > 0 && config_.limits.max_wait_ms > 0) {
      if (c.winding_down) {
        refuse_waiting(c, req);  // this broker will not be there when the entry comes
        return;
      }
      auto wait = std::min<std::int64_t>(req.wait_ms,
                                         static_cast<std::int64_t>(config_.limits.max_wait_ms));
      park(c, req, std::chrono::milliseconds(wait));
      return;
    }
    send_error(c, req, req.wait_ms > 0 ? ETIMEDOUT : ENOENT,
               req.wait_ms > 0 ? "no entry named '" + req.name + "' appeared in time"
                               : "no entry named '" + req.name + "'");
    return;
  }
  if (take && e->is_static) {
    send_error(c, req, EPERM,
               "'" + req.name + "' is declared in the configuration: it cannot be taken");
    return;
  }
  counters_.count(req, 0);
  std::string& reply = replies_.begin(req.id);
  if (e->expiry) {
    reply += "\"expires_ms\":";
    append_int(reply, ms_until(*e->expiry, now));
    reply += ',';
  }
  reply += e->reply_body;
  if (!take) {
    send_reply(c, e->fds);
    return;
  }
  // take: the store lets go of the entry only once the reply has left, or is
  // queued holding the entry so that it comes back if it never leaves.
  std::shared_ptr<const FdSet> fds = e->fds;
  if (durable_acks()) {
    // Out of the store now, so that the turn's state no longer names it; the
    // reply waits for that state (release_held), holding the entry meanwhile.
    replies_.hold(c, fds);
    c.back().taken = store_.extract(req.name);
    return;
  }
  ReplyWriter::Delivery d = replies_.send(c, fds);
  if (!d.replaced) {  // replaced: the entry stays, it was not delivered
    if (d.sent == Connection::Sent::now) {
      if (auto gone = store_.extract(req.name)) drop_entry(std::move(*gone), nullptr);
    } else if (d.sent == Connection::Sent::queued) {
      c.back().taken = store_.extract(req.name);
    }
  }
  settle(c, d);
}

void Broker::do_put(Connection& c, const Request& req) {
  if (fds_.empty()) {
    send_error(c, req, EINVAL, "put needs 1 to 253 descriptors attached");
    return;
  }
  auto now = Clock::now();
  const StoredEntry* old = store_.find(req.name, now);
  if (!allowed(c, perm_put, req, old)) {  // before existence: see do_get()
    send_error(c, req, EACCES, "put of '" + req.name + "' not allowed");
    return;
  }
  // Each descriptor is probed once: for the FUSE check, then for its description.
  facts_.clear();
  for (const auto& fd : fds_) facts_.push_back(probe_fd(fd.get()));
  if (!config_.accept_fuse_fds) {
    // A FUSE daemon decides how long closing its files takes (forever, if it
    // stops answering): such descriptors are not kept, nor handed to PID 1's fd store.
    for (std::size_t i = 0; i < fds_.size(); ++i) {
      std::string why = fuse_reason(facts_[i], mount_table());
      if (why.empty()) continue;
      audit(put_event(c.peer(), req, EOPNOTSUPP),
            "put of '{}' by {} refused: descriptor {} is on {}", req.name, c.peer().label, i, why);
      send_error(c, req, EOPNOTSUPP,
                 "descriptor " + std::to_string(i) + " is on a FUSE file system (" + why +
                     "), which the configuration does not accept (accept_fuse_fds)");
      return;
    }
  }
  if (old != nullptr && old->is_static) {
    send_error(c, req, EPERM,
               "'" + req.name + "' is declared in the configuration: it cannot be replaced");
    return;
  }
  if (req.expect_generation >= 0) {
    std::uint64_t current = old != nullptr ? old->generation : 0;
    if (current != static_cast<std::uint64_t>(req.expect_generation)) {
      send_error(c, req, ESTALE,
                 "'" + req.name + "' is at generation " + std::to_string(current) + ", not " +
                     std::to_string(req.expect_generation));
      return;
    }
  } else if (old != nullptr && !req.replace) {
    send_error(c, req, EEXIST, "'" + req.name + "' exists (use replace or expect_generation)");
    return;
  }
  uid_t uid = c.peer().uid;
  std::uint64_t n = fds_.size();
  Usage usage = store_.usage(uid);
  bool replacing_own = old != nullptr && old->owner == uid;
  std::uint64_t entries_after = usage.entries + 1 - (replacing_own ? 1 : 0);
  std::uint64_t fds_after = usage.fds + n - (replacing_own ? old->fds->size() : 0);
  if (entries_after > config_.limits.max_entries_per_uid ||
      fds_after > config_.limits.max_fds_per_uid) {
    audit(put_event(c.peer(), req, EDQUOT),
          "quota: put of '{}' by {} refused ({} entries, {} fds after it)", req.name,
          c.peer().label, entries_after, fds_after);
    send_error(c, req, EDQUOT,
               "quota of uid " + std::to_string(uid) + " exceeded (entries " +
                   std::to_string(config_.limits.max_entries_per_uid) + ", fds " +
                   std::to_string(config_.limits.max_fds_per_uid) + ")");
    return;
  }
  std::uint64_t freed = old != nullptr ? old->fds->size() : 0;
  if (store_.fds_held() + n - freed > limits_.max_fds) {
    audit(put_event(c.peer(), req, ENOSPC, spdlog::level::warn),
          "put of '{}' by {} refused: {} fds held, the limit is {}", req.name, c.peer().label,
          store_.fds_held(), limits_.max_fds);
    send_error(
        c, req, ENOSPC,
        "the broker holds its maximum of descriptors (" + std::to_string(limits_.max_fds) + ")");
    return;
  }

  StoredEntry e;
  e.name = req.name;
  e.meta = req.meta;
  e.owner = uid;
  e.fds = std::make_shared<const FdSet>(std::move(fds_));
  fds_.clear();
  e.fds_json = describe_fds(*e.fds, facts_);
  e.generation = store_.next_generation();
  if (req.ttl_ms > 0) e.expiry = now + std::chrono::milliseconds(req.ttl_ms);
  e.render();
  if (e.reply_body.size() > max_entry_body) {
    send_error(c, req, EMSGSIZE,
               "the entry's description (meta and fds) would not fit in one message");
    return;  // `e` and its fds go
  }
  std::uint64_t generation = e.generation;
  audit(put_event(c.peer(), req, 0), "put '{}' generation {} by {}: {} fds{}", req.name, generation,
        c.peer().label, n,
        req.ttl_ms > 0 ? ", ttl " + std::to_string(req.ttl_ms) + " ms" : std::string());
  if (auto replaced = store_.insert(std::move(e))) drop_entry(std::move(*replaced), nullptr);
  if (req.ttl_ms > 0) schedule_expiry();

  counters_.count(req, 0);
  std::string& reply = replies_.begin(req.id);
  reply += "\"ok\":true,\"name\":";
  append_json_string(reply, req.name);
  reply += ",\"generation\":";
  append_uint(reply, generation);
  reply += '}';
  acknowledge(c);
  wake_waiters(req.name);
}

void Broker::do_delete(Connection& c, const Request& req) {
  const StoredEntry* e = store_.find(req.name, Clock::now());
  if (!allowed(c, perm_delete, req, e)) {  // before existence: see do_get()
    send_error(c, req, EACCES, "delete of '" + req.name + "' not allowed");
    return;
  }
  if (e == nullptr) {
    send_error(c, req, ENOENT, "no entry named '" + req.name + "'");
    return;
  }
  if (e->is_static) {
    send_error(c, req, EPERM,
               "'" + req.name + "' is declared in the configuration: it cannot be deleted");
    return;
  }
  if (auto gone = store_.extract(req.name)) drop_entry(std::move(*gone), nullptr);
  counters_.count(req, 0);
  std::string& reply = replies_.begin(req.id);
  reply += "\"ok\":true,\"name\":";
  append_json_string(reply, req.name);
  reply += '}';
  acknowledge(c);
}

void Broker::do_list(Connection& c, const Request& req) {
  auto now = Clock::now();
  const auto& entries = store_.entries();
  auto it = entries.lower_bound(req.prefix);
  if (!req.cursor.empty()) {
    auto after = entries.upper_bound(req.cursor);
    if (after != entries.end() && (it == entries.end() || after->first > it->first)) it = after;
    if (after == entries.end()) it = after;
  }
  const ClientIdentity& peer = units_named_ ? identify(c) : c.peer();
  auto visible = [&](const StoredEntry& e) {
    if (e.expiry && *e.expiry <= now) return false;
    const uid_t* owner = e.is_static ? nullptr : &e.owner;
    return policy_.check(peer, perm_get, e.name, owner).allowed;
  };
  counters_.count(req, 0);
  std::string& reply = replies_.begin(req.id);
  reply += "\"ok\":true,\"entries\":[";
  // What must still fit after the entries: "]", a cursor of up to 255 bytes, "}".
  constexpr std::size_t tail_room = 300;
  std::int64_t listed = 0;
  std::string_view last;
  bool more = false;
  for (; it != entries.end() && it->first.compare(0, req.prefix.size(), req.prefix) == 0; ++it) {
    const StoredEntry& e = it->second;
    if (!visible(e)) continue;
    std::size_t item = e.list_head.size() + 1 + (e.expiry ? 32 : 0) + 1;
    if (listed == req.limit || reply.size() + item + tail_room > max_message_bytes) {
      more = true;
      break;
    }
    if (listed > 0) reply += ',';
    reply += e.list_head;
    if (e.expiry) {
      reply += ",\"expires_ms\":";
      append_int(reply, ms_until(*e.expiry, now));
    }
    reply += '}';
    last = e.name;
    ++listed;
  }
  reply += ']';
  if (more && listed > 0) {
    reply += ",\"cursor\":";
    append_json_string(reply, last);
  }
  reply += '}';
  spdlog::debug("list '{}' by {}: {} entries", req.prefix, c.peer().label, listed);
  send_reply(c);
}

void Broker::do_stats(Connection& c, const Request& req) {
  if (!allowed(c, perm_stats, req, nullptr)) {
    send_error(c, req, EACCES, "stats not allowed");
    return;
  }
  counters_.count(req, 0);
  nlohmann::json body = {
      {"uptime_ms",
       std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - counters_.started)
           .count()},
      {"connections",
       {{"current", connections_.size()},
        {"total", counters_.connections.total},
        {"dropped", counters_.connections.dropped},
        {"limit", limits_.max_connections},
        {"limit_per_uid", limits_.max_connections_per_uid},
        {"refused_per_uid", counters_.connections.refused_per_uid},
        {"refused_no_fds", counters_.connections.refused_no_fds}}},
      {"entries", store_.size()},
      {"fds_held", store_.fds_held()},
      {"fds_limit", limits_.max_fds},
      {"requests", counters_.requests_json()},
  };
  std::string& reply = replies_.begin(req.id);
  reply += "\"ok\":true,";
  std::string text = body.dump();
  reply.append(text, 1, std::string::npos);  // without its opening brace
  send_reply(c);
}
void Broker::do_upgrade(Connection& c, const Request& req) {
  // Only root and the broker's own user may replace the broker.
  if (c.peer().uid != 0 && c.peer().uid != ::geteuid()) {
    send_error(c, req, EACCES, "upgrade is for root and the broker's own user");
    return;
  }
  if (shutting_down_ || !acceptor_.listening()) {
    send_error(c, req, ESHUTDOWN, "the broker is shutting down");
    return;
  }
  if (!upgrade_handler_) {
    send_error(c, req, EOPNOTSUPP, "this broker cannot upgrade itself");
    return;
  }
  counters_.count(req, 0);
  spdlog::info("upgrade to '{}' requested by {}", req.binary.empty() ? "(this binary)" : req.binary,
               c.peer().label);
  upgrade_handler_(c.id(), req.id, req.binary);
}

// ---------------------------------------------------------------- waiting

void Broker::park(Connection& c, const Request& req, std::chrono::milliseconds wait) {
  waiters_.park(c.id(), req, wait);
  c.waiting = true;
  update_interest(c);  // requests behind this one wait their turn in the socket
}

std::unique_ptr<Request> Broker::unpark(Connection& c) {
  if (!c.waiting) return nullptr;
  c.waiting = false;
  return waiters_.unpark(c.id());
}

void Broker::on_wait_expired(ConnectionId id, std::unique_ptr<Request> req) {
  Connection* c = find(id);
  if (c == nullptr) return;  // not reached: a closing connection stops waiting first
  c->waiting = false;
  send_error(*c, *req, ETIMEDOUT, "no entry named '" + req->name + "' appeared in time");
  after_wait(*c);
  reap();
}

void Broker::after_wait(Connection& c) {
  if (c.closed) return;
  if (c.eof && !c.has_queued()) {
    close_connection(c, "end of requests");
  } else {
    // Requests pipelined behind the waiting one are read on the next wakeup
    // (level-triggered epoll reports the socket readable again).
    update_interest(c);
  }
}

void Broker::wake_waiters(const std::string& name) {
  for (ConnectionId id : waiters_.waiting_for(name)) {
    if (store_.find(name, Clock::now()) == nullptr) break;  // taken by an earlier waiter
    Connection* c = find(id);
    if (c == nullptr || !c->waiting) continue;
    auto r = unpark(*c);
    do_get(*c, *r, false);
    after_wait(*c);
  }
}

}  // namespace fdbroker::daemon
