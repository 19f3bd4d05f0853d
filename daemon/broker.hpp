// SPDX-License-Identifier: LGPL-2.1-or-later
// The broker: reads clients' requests, decides (Policy), keeps the books
// (FdStore) and answers, on one EventLoop. Its parts, each in its own file:
// Acceptor (taking clients in), Waiters (requests waiting for an entry),
// ReplyWriter (every reply), RequestCounters (stats). The Broker itself keeps the
// connections, dispatch and the operations (broker.cpp, broker_ops.cpp), the
// drain shared by shutdown and upgrade (broker_drain.cpp) and persistence
// (broker_persist.cpp).
#pragma once

#include <chrono>
#include <cstdint>
#include <fdbroker/unique_fd.hpp>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "acceptor.hpp"
#include "bind_rules.hpp"
#include "config.hpp"
#include "connection.hpp"
#include "event_loop.hpp"
#include "failure.hpp"
#include "fd_description.hpp"
#include "fd_store.hpp"
#include "file_rules.hpp"
#include "open_beneath.hpp"
#include "peer_unit.hpp"
#include "policy.hpp"
#include "reply_writer.hpp"
#include "request.hpp"
#include "request_counters.hpp"
#include "waiters.hpp"
#include "worker_pool.hpp"

namespace fdbroker::daemon {

class SystemdFdStore;
struct Restored;

// The limits actually in force, derived from the config and RLIMIT_NOFILE.
struct EffectiveLimits {
  std::uint64_t max_connections = 0;
  std::uint64_t max_connections_per_uid = 0;  // 0: no limit
  std::uint64_t max_fds = 0;                  // descriptors held in entries, all owners together
};

// Raises RLIMIT_NOFILE's soft limit to the hard limit (best effort) and derives
// what the broker may use: connections and stored fds, keeping headroom for the
// broker's own fds and one incoming message's worth (253). Connections per uid:
// as configured, else the larger of 64 and a quarter of max_connections.
EffectiveLimits derive_limits(const Limits& configured);

// Room left in a message for what is spliced around an entry's precomputed body
// (an id of up to max_id_bytes, expires_ms, and list framing with a cursor).
inline constexpr std::size_t max_entry_body = max_message_bytes - 2048;

// The JSON array describing `fds` (fd_description.hpp). `facts`: probe_fd() of
// each descriptor, if already done (else probed here).
std::string describe_fds(const FdSet& fds, const std::vector<FdFacts>& facts = {});

class Broker {
 public:
  // `listener`: a listening SOCK_SEQPACKET socket (non-blocking). `unlink_path`:
  // the socket file to remove at shutdown (empty if systemd owns it).
  Broker(EventLoop& loop, unique_fd listener, std::string unlink_path, const Config& config,
         EffectiveLimits limits);
  ~Broker();
  Broker(const Broker&) = delete;
  Broker& operator=(const Broker&) = delete;

  // Opens the static entries and the roots of "files" rules and starts
  // accepting. Returns the problems (one per static entry that cannot be opened,
  // the refused roots, or the socket that cannot be watched); empty: started.
  [[nodiscard]] std::vector<Failure> start();

  // Applies `config` atomically: static entries are all opened (unchanged ones
  // keep their fds) and the roots of "files" rules re-opened before anything changes. Returns the
  // problems, and then nothing changed; empty: applied.
  [[nodiscard]] std::vector<Failure> reload(const Config& config, EffectiveLimits limits);

  // The rules of open and bind requests in force (never null after start()).
  [[nodiscard]] std::shared_ptr<const FilePolicy> file_policy() const { return files_; }
  [[nodiscard]] std::shared_ptr<const BindPolicy> bind_policy() const { return binds_; }

  // Lame duck (SIGTERM): accepts what is already in the listener's backlog (when
  // the broker owns the socket), stops accepting and drains every connection
  // (drain()), for at most limits.shutdown_timeout_ms, then calls `done`.
  void shutdown(std::function<void()> done);

  // Persistence (broker_persist.cpp). attach(): `sync` (borrowed, outlives the
  // broker) follows every change of the store and renders state from it.
  // adopt(): before start(), takes in entries restored from a previous broker
  // (restore.hpp); static ones whose declaration is unchanged keep their fds.
  // state_json(): the state memfd's text (names, meta, owners, expiry, fdnames).
  void attach(SystemdFdStore& sync);
  void adopt(Restored&& restored);
  [[nodiscard]] std::string state_json() const;

  // Upgrade without systemd (upgrade.hpp). The `upgrade` op calls `handler` with
  // the requester's connection id, its request id and the binary asked for ("" =
  // the running one); the handler answers through reply_to().
  using UpgradeHandler =
      std::function<void(ConnectionId requester, const std::string& id, const std::string& binary)>;
  void set_upgrade_handler(UpgradeHandler handler) { upgrade_handler_ = std::move(handler); }
  // Stops accepting (the listening socket stays open and its backlog waits for
  // the successor), drains every connection but `requester` (drain()), and calls
  // `quiet` once none but it is left (or limits.shutdown_timeout_ms passed and
  // the rest were dropped). False (and nothing done) if the broker is shutting down.
  bool begin_drain_for_successor(ConnectionId requester, std::function<void()> quiet);
  // The successor never became ready: accept again.
  void end_drain_for_successor();
  // What a successor needs, borrowed, with fdnames: "listen", "e<serial>.<i>".
  [[nodiscard]] std::vector<std::pair<std::string, int>> successor_fds() const;
  // The socket file is the successor's now: never remove it at exit.
  void release_socket_file() { unlink_path_.clear(); }
  // Answers connection `requester`, if it is still open, to its request `id`:
  // {"ok":true,<fields>} for a value (the fields' JSON text, may be empty), else
  // the Failure as an error reply.
  void reply_to(ConnectionId requester, const std::string& id, Outcome<std::string> answer);

  // "3 entries, 7 fds, 2 clients" for STATUS= lines.
  [[nodiscard]] std::string status() const;

 private:
  using ConnPtr = std::unique_ptr<Connection>;

  // Connections (broker.cpp).
  bool take_in(unique_fd sock, ClientIdentity peer);
  [[nodiscard]] Connection* find(ConnectionId id) const;
  // `c`'s peer with its unit and cgroup, read the first time they are needed
  // (peer_unit.hpp): for hello, open and bind, and for every decision while a
  // rule names units (units_named_).
  const ClientIdentity& identify(Connection& c);
  void on_connection(Connection& c, std::uint32_t events);
  // Reads and answers up to requests_per_wakeup requests (requests_per_drain_round
  // when `draining`). Returns true if it stopped at that bound (more may be waiting).
  bool read_requests(Connection& c, bool draining = false);
  void write_replies(Connection& c);
  void update_interest(Connection& c);
  void note_queued(Connection& c);
  void close_connection(Connection& c, const char* why);
  // Connections closed during a handler are freed at its end, when nothing on
  // the stack refers to them any more; this is also when their sockets close.
  void reap() { dying_.clear(); }

  // One message → one reply (or a waiting request).
  void handle_message(Connection& c, std::size_t size, bool truncated_payload, bool truncated_fds);
  void dispatch(Connection& c, Request& req);

  // Replies: through replies_; these count the request and settle the delivery
  // (a queued reply arms the client's deadline, a broken socket closes it).
  void send_reply(Connection& c, const std::shared_ptr<const FdSet>& fds = nullptr);
  void send_error(Connection& c, const Request& req, int err, std::string_view message);
  void settle(Connection& c, ReplyWriter::Delivery d);
  // Durability (fd store in use): the reply to a put, take or delete that changed
  // the store is held until the state reflecting the change has been handed to
  // systemd: the end of the loop's turn writes the state once for every change
  // of the turn (SystemdFdStore), then release_held() lets the turn's replies go.
  [[nodiscard]] bool durable_acks() const noexcept;
  void acknowledge(Connection& c);  // the reply built, held if durable_acks()
  void release_held();

  // Operations (broker_ops.cpp).
  bool allowed(Connection& c, unsigned perm, const Request& req, const StoredEntry* entry);
  void do_hello(Connection& c, const Request& req);
  void do_get(Connection& c, Request& req, bool may_wait);
  void do_put(Connection& c, const Request& req);
  void do_delete(Connection& c, const Request& req);
  void do_list(Connection& c, const Request& req);
  void do_stats(Connection& c, const Request& req);
  void do_upgrade(Connection& c, const Request& req);

  // On behalf of privilege-separated clients (broker_open_bind.cpp).
  void do_open(Connection& c, const Request& req);
  // `who`: the client as the audit lines name it (audit_label).
  void finish_open(ConnectionId id, const Request& req, const ClientIdentity& peer,
                   const FileRule& rule, Outcome<Opened>& result, const FdFacts& facts);
  void do_bind(Connection& c, const Request& req);

  // Waiting (get/take with wait_ms; broker_ops.cpp).
  void park(Connection& c, const Request& req, std::chrono::milliseconds wait);
  std::unique_ptr<Request> unpark(Connection& c);
  void wake_waiters(const std::string& name);
  void on_wait_expired(ConnectionId id, std::unique_ptr<Request> req);
  // After a waiting request was answered: closes `c` if the peer is done, else
  // reads on.
  void after_wait(Connection& c);

  // The drain (broker_drain.cpp): stop reading every connection but `keep`
  // (SHUT_RD: a client's next send fails with EPIPE, so nothing it sent is lost
  // unanswered), answer what they had sent (a waiting get/take, and every request
  // behind it, gets ESHUTDOWN and `farewell`: the client retries against the next
  // broker), close each once its replies are out, and call `quiet` (from the
  // loop) once none but `keep` is left, or at limits.shutdown_timeout_ms after
  // dropping the rest.
  void drain(ConnectionId keep, std::string farewell, std::function<void()> quiet);
  [[nodiscard]] bool drained(const Connection& c) const noexcept {
    return drain_.active && c.id() != drain_.keep;
  }
  void check_drained();
  void end_drain();
  // Answers what `c` already sent, refusing a waiting request and those behind it.
  void wind_down(Connection& c);
  void refuse_waiting(Connection& c, const Request& req);

  // Entries.
  std::vector<Failure> prepare_static(const Config& config, std::vector<StoredEntry>& ret_entries);
  void install_static(std::vector<StoredEntry> entries);
  void schedule_expiry();
  void expire_entries();
  void drop_entry(StoredEntry&& e, const char* why);

  EventLoop& loop_;
  SystemdFdStore* sync_ = nullptr;
  EventLoop::HookId release_hook_ = 0;
  EventLoop::TimerId held_retry_timer_ = 0;
  UpgradeHandler upgrade_handler_;
  std::string unlink_path_;
  Config config_;
  EffectiveLimits limits_;
  Policy policy_;
  bool units_named_ = false;  // some rule of any kind names units (names_units())
  PidfdUse pidfd_use_ = pidfd_use_from_environment();
  // The rules of open and bind requests, swapped whole at a reload. Shared: an
  // open running on a worker thread keeps the rules and root fds it decided by.
  std::shared_ptr<const FilePolicy> files_;
  std::shared_ptr<const BindPolicy> binds_;
  Resolver resolver_ = default_resolver();
  FdStore store_;
  // name → StaticEntry::opening
  std::map<std::string, std::string, std::less<>> static_openings_;

  RequestCounters counters_;  // before acceptor_, which counts into it
  Acceptor acceptor_;
  std::unordered_map<ConnectionId, ConnPtr> connections_;
  ConnectionId next_connection_id_ = 1;
  std::vector<ConnPtr> dying_;  // closed during this handler; freed at the next one
  Waiters waiters_;
  ReplyWriter replies_;
  WorkerPool openers_;  // runs opens (broker_open_bind.cpp)
  EventLoop::TimerId expiry_timer_ = 0;
  Clock::time_point expiry_at_ = Clock::time_point::max();
  EventLoop::TimerId closer_timer_ = 0;  // rechecks connections paused by closes_over_quota()

  bool shutting_down_ = false;  // shutdown() was called: the broker is on its way out
  struct DrainState {
    bool active = false;
    ConnectionId keep = 0;  // the upgrade's requester, served on (0: none)
    std::string farewell;   // the message of ESHUTDOWN replies
    std::function<void()> quiet;
    EventLoop::TimerId deadline_timer = 0;
    EventLoop::TimerId quiet_timer = 0;
  } drain_;

  // Scratch space reused for every message: no allocation per request.
  std::vector<char> buffer_;
  std::vector<unique_fd> fds_;
  std::vector<FdFacts> facts_;  // a put's descriptors, probed once (fd_description.hpp)
  Request request_;
};

}  // namespace fdbroker::daemon
