// SPDX-License-Identifier: LGPL-2.1-or-later
// The Broker's operations on behalf of privilege-separated clients: `open` a file
// and `bind` a socket, each decided by the `files` and `bind` rules (no rule of
// `rules`, and no exemption for root) and handed over with no copy kept.
//
// An open runs on a worker (worker_pool.hpp): resolving a path can wait on a
// file system that never answers. The connection reads no further requests
// until it is answered, so replies keep the order of requests.
#include <spdlog/spdlog.h>

#include <fcntl.h>
#include <cerrno>

#include <fdbroker/listen_url.hpp>

#include "broker.hpp"
#include "closer.hpp"
#include "json_text.hpp"
#include "logging.hpp"
#include "open_request.hpp"

namespace fdbroker::daemon {

namespace {

// "pid=42 uid=1000 gid=1000 unit=nginx.service": who asked, for the audit lines.
std::string audit_label(const ClientIdentity& peer) {
  return peer.label + " unit=" + (peer.unit ? *peer.unit : std::string("-"));
}

// The audit event of an open or a bind by `peer` (its path or address is set
// by the caller).
AuditEvent event_of(const char* op, const ClientIdentity& peer, std::string_view result,
                    std::string_view rule = {}) {
  AuditEvent event;
  event.op = op;
  event.peer = &peer;
  event.result = result;
  event.rule = rule;
  return event;
}

// One open, from the worker back to the loop.
class OpenJob final : public WorkerPool::Job {
 public:
  using Done = std::function<void(OpenJob&)>;

  OpenJob(std::shared_ptr<const FilePolicy> policy, FileGrant grant, OpenSpec spec,
          Resolver resolver, Done done)
      : policy_(std::move(policy)),
        grant_(std::move(grant)),
        spec_(spec),
        resolver_(resolver),
        done_(std::move(done)) {}

  void run() override {
    result_.emplace(
        open_beneath(grant_.root_fd, grant_.relative, spec_, grant_.rule->containment, resolver_));
    if (result_->ok()) facts_ = probe_fd(result_->value().fd.get());
  }
  void finish() override { done_(*this); }

  [[nodiscard]] const FileRule& rule() const noexcept { return *grant_.rule; }
  Outcome<Opened>& result() { return *result_; }
  [[nodiscard]] const FdFacts& facts() const noexcept { return facts_; }

 private:
  std::shared_ptr<const FilePolicy> policy_;  // keeps grant_'s rule and root fd alive
  FileGrant grant_;
  OpenSpec spec_;
  Resolver resolver_;
  Done done_;
  std::optional<Outcome<Opened>> result_;
  FdFacts facts_;
};

}  // namespace

void Broker::do_open(Connection& c, const Request& req) {
  const std::string flags = open_flags_text(req.open);
  unsigned rights =
      rights_needed(req.open.access, req.open.create, req.open.trunc, req.open.append);
  // The rules first, the file system after: a refused caller learns nothing
  // about which files exist.
  Outcome<FileGrant> grant = files_->decide(identify(c), req.path, rights);
  if (!grant) {
    AuditEvent event = event_of("open", c.peer(), errno_name(EACCES));
    event.path = req.path;
    audit(event, "open '{}' [{}] by {}: refused: {}", req.path, flags, audit_label(c.peer()),
          grant.failure().why);
    send_error(c, req, EACCES, "open of '" + req.path + "' [" + flags + "] not allowed");
    return;
  }
  ConnectionId id = c.id();
  auto pending = std::make_shared<Request>(req);  // what the reply needs: id, path
  ClientIdentity who = c.peer();                  // the client may be gone by then
  std::unique_ptr<WorkerPool::Job> job = std::make_unique<OpenJob>(
      files_, std::move(grant).value(), req.open, resolver_,
      [this, id, pending, who = std::move(who)](OpenJob& done) {
        finish_open(id, *pending, who, done.rule(), done.result(), done.facts());
      });
  if (!openers_.submit(job, c.peer().uid)) {
    AuditEvent event = event_of("open", c.peer(), errno_name(EAGAIN));
    event.path = req.path;
    audit(event, "open '{}' [{}] by {}: refused: too many opens in progress", req.path, flags,
          audit_label(c.peer()));
    send_error(c, req, EAGAIN, "too many opens in progress for this user; retry later");
    return;
  }
  c.opening = true;
  update_interest(c);  // requests behind this one wait their turn in the socket
}

void Broker::finish_open(ConnectionId id, const Request& req, const ClientIdentity& peer,
                         const FileRule& rule, Outcome<Opened>& result, const FdFacts& facts) {
  Connection* c = find(id);
  const std::string flags = open_flags_text(req.open);
  AuditEvent event = event_of(
      "open", peer, result.ok() ? "ok" : errno_name_or_eio(result.failure().err), rule.name);
  event.path = req.path;
  if (!result.ok()) {
    audit(event, "open '{}' [{}] by {}: rule '{}': failed: {}", req.path, flags, audit_label(peer),
          rule.name, result.failure().why);
  } else {
    audit(event, "open '{}' [{}] by {}: granted by rule '{}'{}{}", req.path, flags,
          audit_label(peer), rule.name, result->created ? " (created)" : "",
          c == nullptr ? "; the client left before the reply" : "");
  }
  if (c == nullptr) {
    // The descriptor goes to the closer (it may be on a file system whose
    // close hangs). A file created for the client stays.
    if (result.ok()) {
      std::vector<unique_fd> fds;
      fds.push_back(std::move(result->fd));
      close_later(fds, Closer::no_uid);
    }
    return;
  }
  c->opening = false;
  if (!result.ok()) {
    send_error(*c, req, result.failure().err, result.failure().why);
  } else {
    std::vector<unique_fd> fds;
    fds.push_back(std::move(result->fd));
    auto set = std::make_shared<const FdSet>(std::move(fds));
    counters_.count(req, 0);
    std::string& reply = replies_.begin(req.id);
    reply += "\"ok\":true,\"path\":";
    append_json_string(reply, req.path);
    reply += ",\"rule\":";
    append_json_string(reply, rule.name);
    reply += result->created ? ",\"created\":true,\"fds\":" : ",\"created\":false,\"fds\":";
    reply += describe_fds(*set, {facts});
    reply += '}';
    send_reply(*c, set);
  }
  if (drained(*c)) {
    // A drain began meanwhile: what the client sent behind the open is
    // answered too, then the connection closes.
    wind_down(*c);
    if (!c->closed && !c->has_queued() && !c->busy()) close_connection(*c, "drained");
  } else {
    after_wait(*c);
  }
  reap();
}

void Broker::do_bind(Connection& c, const Request& req) {
  auto url = try_parse_socket_url(req.address);
  if (!url) {
    send_error(c, req, EINVAL, "field 'address': not a tcp://, tcp6://, udp:// or udp6:// URL");
    return;
  }
  if (url->url.family != AF_INET && url->url.family != AF_INET6) {
    send_error(c, req, EINVAL, "field 'address': only tcp and udp addresses can be bound");
    return;
  }
  if (url->url.port == 0) {
    send_error(c, req, EINVAL, "field 'address': port 0 is not a port a rule can allow");
    return;
  }
  Outcome<const BindRule*> rule =
      binds_->decide(identify(c), url->socket_type, url->url, req.reuseport);
  if (!rule) {
    AuditEvent event = event_of("bind", c.peer(), errno_name(EACCES));
    event.address = req.address;
    audit(event, "bind '{}'{} by {}: refused: {}", req.address, req.reuseport ? " [reuseport]" : "",
          audit_label(c.peer()), rule.failure().why);
    send_error(c, req, EACCES, "bind of '" + req.address + "' not allowed");
    return;
  }
  BindOptions options;
  options.socket_type = url->socket_type;
  options.backlog = static_cast<int>(req.backlog);
  options.reuse_port = req.reuseport;
  auto sock = try_bind_listener(url->url, options);
  if (!sock) {
    int err = sock.error().value();
    Failure failed = os_failure("bind " + url->str(), err);
    AuditEvent event = event_of("bind", c.peer(), errno_name_or_eio(err), (*rule)->name);
    event.address = req.address;
    audit(event, "bind '{}' by {}: rule '{}': failed: {}", req.address, audit_label(c.peer()),
          (*rule)->name, failed.why);
    send_error(c, req, err, failed.why);
    return;
  }
  AuditEvent event = event_of("bind", c.peer(), "ok", (*rule)->name);
  event.address = req.address;
  audit(event, "bind '{}'{} by {}: granted by rule '{}'", req.address,
        req.reuseport ? " [reuseport]" : "", audit_label(c.peer()), (*rule)->name);
  std::vector<unique_fd> fds;
  fds.push_back(std::move(sock).value());
  auto set = std::make_shared<const FdSet>(std::move(fds));
  counters_.count(req, 0);
  std::string& reply = replies_.begin(req.id);
  reply += "\"ok\":true,\"address\":";
  append_json_string(reply, url->str());
  reply += ",\"rule\":";
  append_json_string(reply, (*rule)->name);
  reply += ",\"fds\":";
  reply += describe_fds(*set);
  reply += '}';
  send_reply(c, set);
}

}  // namespace fdbroker::daemon
