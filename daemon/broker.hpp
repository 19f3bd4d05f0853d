// SPDX-License-Identifier: LGPL-2.1-or-later
// The broker: accepts clients on the listening socket, reads their requests,
// decides (Policy), keeps the books (FdStore) and answers, on one EventLoop.
#pragma once

#include <array>
#include <chrono>
#include <cstdint>
#include <fdbroker/unique_fd.hpp>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "config.hpp"
#include "connection.hpp"
#include "event_loop.hpp"
#include "fd_description.hpp"
#include "fd_store.hpp"
#include "policy.hpp"
#include "request.hpp"

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

// Protocol limit on one message.
inline constexpr std::size_t max_message_bytes = 65536;

class Broker {
 public:
  // `listener`: a listening SOCK_SEQPACKET socket (non-blocking). `unlink_path`:
  // the socket file to remove at shutdown (empty if systemd owns it).
  Broker(EventLoop& loop, unique_fd listener, std::string unlink_path, const Config& config,
         EffectiveLimits limits);
  ~Broker();
  Broker(const Broker&) = delete;
  Broker& operator=(const Broker&) = delete;

  // Opens the static entries and starts accepting. False (with one message per
  // problem) if a static entry cannot be opened.
  bool start(std::vector<std::string>& ret_errors);

  // Applies `config` atomically: static entries are all opened (unchanged ones
  // keep their fds) before anything changes. False (and nothing changed) on error.
  bool reload(const Config& config, EffectiveLimits limits, std::vector<std::string>& ret_errors);

  // Lame duck: accepts what is already in the listener's backlog (when the broker
  // owns the socket), stops accepting, shuts the receiving side of every
  // connection (a client's next send fails with EPIPE), answers the requests
  // clients have already sent, flushes queued replies for at most limits.shutdown_timeout_ms,
  // closes every connection, then calls `done`. A waiting request (wait_ms), and every request
  // behind it on its connection, is answered ESHUTDOWN ("broker shutting down"): the client retries
  // against the next broker.
  void shutdown(std::function<void()> done);

  // Persistence (broker_persist.cpp). attach(): `sync` (borrowed, outlives the
  // broker) follows every change of the store and renders state from it.
  // adopt(): before start(), takes in entries restored from a previous broker
  // (restore.hpp); static ones whose declaration is unchanged keep their fds.
  // state_json(): the state memfd's text (names, meta, owners, expiry, fdnames).
  void attach(SystemdFdStore& sync);
  void adopt(Restored&& restored);
  [[nodiscard]] std::string state_json() const;

  // Upgrade without systemd (broker_handover.cpp, upgrade.hpp). The `upgrade` op
  // calls `handler` with the requester's fd, its request id and the binary asked
  // for ("" = the running one); the handler answers through reply_to().
  using UpgradeHandler =
      std::function<void(int conn_fd, const std::string& id, const std::string& binary)>;
  void set_upgrade_handler(UpgradeHandler handler) { upgrade_handler_ = std::move(handler); }
  // Stops accepting (the listening socket stays open and its backlog waits),
  // shuts the receiving side of every connection but `keep_fd` (a client's next
  // send fails with EPIPE: nothing it sent is ever lost unanswered), answers
  // what they had sent (a waiting get/take and what follows it: ESHUTDOWN, as at
  // shutdown) and closes them; calls `quiet` once none but `keep_fd`
  // is left (or limits.shutdown_timeout_ms passed and the rest were dropped).
  // False (and nothing done) if the broker is shutting down.
  bool begin_handover(int keep_fd, std::function<void()> quiet);
  // The handover failed: accept again.
  void end_handover();
  // What a successor needs, borrowed, with fdnames: "listen", "e<serial>.<i>".
  [[nodiscard]] std::vector<std::pair<std::string, int>> handover_fds() const;
  // The socket file is the successor's now: never remove it at exit.
  void release_socket_file() { unlink_path_.clear(); }
  // Answers the connection on `conn_fd` if it is still open: `err` 0 sends
  // {"ok":true,<fields>} (`text` = fields), else an error with `text` as message.
  void reply_to(int conn_fd, const std::string& id, int err, const std::string& text);

  // "3 entries, 7 fds, 2 clients" for STATUS= lines.
  [[nodiscard]] std::string status() const;

 private:
  using ConnPtr = std::unique_ptr<Connection>;

  // Events.
  void on_listener(std::uint32_t events);
  void on_connection(Connection& c, std::uint32_t events);
  // Reads and answers up to requests_per_wakeup requests (requests_per_drain_round
  // when `draining`: shutdown, upgrade). Returns true if it stopped at that bound
  // (more may be waiting).
  bool read_requests(Connection& c, bool draining = false);
  void write_replies(Connection& c);

  // One message → one reply (or a parked request).
  void handle_message(Connection& c, std::size_t size, bool truncated_payload, bool truncated_fds);
  void dispatch(Connection& c, Request& req);
  void do_hello(Connection& c, const Request& req);
  void do_get(Connection& c, Request& req, bool may_park);
  void do_put(Connection& c, const Request& req);
  void do_delete(Connection& c, const Request& req);
  void do_list(Connection& c, const Request& req);
  void do_stats(Connection& c, const Request& req);
  void do_upgrade(Connection& c, const Request& req);

  // Replies.
  // Starts reply_ with the id; reply_head_ marks where the fields begin.
  void begin_reply(const std::string& id);
  // Replaces the reply being built by a short EMSGSIZE error with the same id.
  void reply_too_large();
  void send_error(Connection& c, const Request& req, int err, std::string_view message);
  void send_reply(Connection& c, const std::shared_ptr<const FdSet>& fds = nullptr);
  // Durability (fd store in use): the reply to a put, take or delete that changed
  // the store is held until the state reflecting the change has been handed to
  // systemd: the end of the loop's turn writes the state once for every change
  // of the turn (SystemdFdStore), then release_held() lets the turn's replies go.
  [[nodiscard]] bool durable_acks() const noexcept;
  void acknowledge(Connection& c);  // reply_, held if durable_acks()
  void release_held();
  void count(const Request& req, int err);
  bool allowed(Connection& c, unsigned perm, const Request& req, const StoredEntry* entry);

  // Waiting (get/take with wait_ms).
  void park(Connection& c, const Request& req, std::chrono::milliseconds wait);
  // Stops `c` waiting and hands back its waiting request (null: none).
  std::unique_ptr<Request> unpark(Connection& c);
  void wake_waiters(const std::string& name);
  // Shutdown and upgrade: answers what `c` already sent, refusing a waiting
  // request and those behind it with ESHUTDOWN and farewell_ (refuse_waiting).
  void wind_down(Connection& c);
  void refuse_waiting(Connection& c, const Request& req);

  // Connection lifecycle.
  void update_interest(Connection& c);
  void note_queued(Connection& c);
  void close_connection(Connection& c, const char* why);
  void reap();
  void pause_listener(std::chrono::milliseconds for_how_long);
  void resume_listener();
  // The fd table is full at accept (EMFILE/ENFILE): refuse what waits in the backlog.
  void shed_backlog(int err);

  // Entries.
  bool prepare_static(const Config& config, std::vector<StoredEntry>& ret_entries,
                      std::vector<std::string>& ret_errors);
  void install_static(std::vector<StoredEntry> entries);
  void schedule_expiry();
  void expire_entries();
  void drop_entry(StoredEntry&& e, const char* why);

  EventLoop& loop_;
  SystemdFdStore* sync_ = nullptr;
  EventLoop::HookId release_hook_ = 0;
  std::vector<int> held_;  // connections (by fd) with held replies
  EventLoop::TimerId held_retry_timer_ = 0;
  UpgradeHandler upgrade_handler_;
  bool handing_over_ = false;
  EventLoop::TimerId handover_timer_ = 0;
  int handover_keep_fd_ = -1;
  Clock::time_point handover_deadline_;
  std::function<void()> handover_quiet_;
  void handover_check();
  unique_fd listener_;
  // Two fds kept in reserve, released for the moment the broker must do something
  // when its table is full (EMFILE at accept): the first takes in a waiting client
  // to close it at once (shed_backlog); logging, and sanitizer runtimes, may need
  // descriptors of their own (UBSan probes memory through a pipe: two).
  unique_fd reserve_[2];
  std::string unlink_path_;
  Config config_;
  EffectiveLimits limits_;
  Policy policy_;
  FdStore store_;
  std::map<std::string, std::string, std::less<>> static_openings_;  // name → StaticEntry::opening

  std::unordered_map<int, ConnPtr> connections_;
  UidConnections uid_connections_;  // limits_.max_connections_per_uid
  ReportLimiter no_fds_warnings_{UidConnections::warning_interval};
  std::vector<ConnPtr> dying_;  // closed during this handler; freed at the next one
  std::unordered_map<std::string, std::vector<Connection*>> waiters_;
  bool listener_paused_ = false;
  EventLoop::TimerId listener_timer_ = 0;
  EventLoop::TimerId expiry_timer_ = 0;
  Clock::time_point expiry_at_ = Clock::time_point::max();
  bool shutting_down_ = false;
  std::string farewell_;  // the message of ESHUTDOWN replies (shutdown, upgrade)
  std::function<void()> shutdown_done_;
  EventLoop::TimerId shutdown_timer_ = 0;
  EventLoop::TimerId closer_timer_ = 0;  // rechecks connections paused by closes_over_quota()

  // Scratch space reused for every message: no allocation per request.
  std::vector<char> buffer_;
  std::vector<unique_fd> fds_;
  std::vector<FdFacts> facts_;  // a put's descriptors, probed once (fd_description.hpp)
  Request request_;
  std::string reply_;
  std::size_t reply_head_ = 0;

  // Counters for `stats`.
  Clock::time_point started_ = Clock::now();
  std::uint64_t connections_total_ = 0;
  std::uint64_t connections_dropped_ = 0;
  std::uint64_t connections_refused_per_uid_ = 0;  // over limits.max_connections_per_uid
  std::uint64_t connections_refused_no_fds_ = 0;   // accepted and closed at once: EMFILE/ENFILE
  // [op][0] = ok, [op][errno] = that error; the last row counts requests with no valid op.
  std::array<std::array<std::uint64_t, 256>, op_count + 1> requests_{};
};

}  // namespace fdbroker::daemon
