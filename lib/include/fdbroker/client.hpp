// SPDX-License-Identifier: LGPL-2.1-or-later
// fdbroker::Client: a blocking client of fdbrokerd speaking wire protocol v1
// (docs/protocol.md) over one AF_UNIX SOCK_SEQPACKET connection.
//
// Errors: every method throws std::system_error carrying an errno.
//   - BrokerError (a std::system_error) when the broker refused the request: the
//     code is the errno the reply named (ENOENT, EEXIST, EACCES, ...), what() starts
//     with the broker's message. message() returns the broker's message alone.
//   - plain std::system_error for the transport: connect() failures (ENOENT,
//     ECONNREFUSED, EACCES), ECONNRESET when the broker closed the connection, EPROTO
//     for a reply that is not valid protocol v1, EMSGSIZE for a request over 64 KiB,
//     ETIMEDOUT when the client's own timeout ran out (set_timeout()). The broker's
//     ETIMEDOUT for a wait_ms that ran out is a BrokerError instead, and leaves the
//     connection usable; the client's own closes it.
//   - std::invalid_argument for arguments rejected before anything is sent (meta
//     that is not a JSON object, no fds or more than 253 on put).
//
// A Client is not thread-safe: use one per thread (the broker handles thousands of
// connections), or serialise calls.
#pragma once

#include <fdbroker/export.hpp>
#include <fdbroker/unique_fd.hpp>

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>
#include <vector>

namespace fdbroker {

// Where fdbrokerd listens unless configured otherwise.
inline constexpr const char* default_socket_path = "/run/fdbroker/fdbroker.sock";

// $FDBROKER_SOCKET if set and non-empty, else default_socket_path.
FDBROKER_API std::string socket_path_from_env();

// The broker refused a request: code() is the errno the reply named, message() the
// broker's own words. Transport failures are plain std::system_error instead, so a
// caller (fdbrokerctl's exit codes) can tell "refused" from "could not ask".
class FDBROKER_API BrokerError : public std::system_error {
 public:
  BrokerError(int err, std::string error_name, std::string message);
  // The errno name as the broker sent it ("ENOENT"), even if this libc lacks it.
  [[nodiscard]] const std::string& error_name() const noexcept { return error_name_; }
  // The broker's human-readable message.
  [[nodiscard]] const std::string& message() const noexcept { return message_; }

 private:
  std::string error_name_;
  std::string message_;
};

// One descriptor of an entry as the broker describes it (docs/protocol.md,
// "Descriptor descriptions"). Fields that do not apply to the kind are empty.
struct FdDescription {
  std::string kind;        // "socket", "file", "directory", "pipe", "memfd", "other"
  std::string family;      // socket: "unix", "inet", "inet6", ...
  std::string type;        // socket: "stream", "dgram", "seqpacket", "raw"
  bool listening = false;  // socket
  std::string local;       // socket: local address ("127.0.0.1:8080", "/run/x.sock")
  std::string path;        // file, directory, other
  std::string access;      // file, pipe, other: "r", "w", "rw"
  std::string name;        // memfd
  std::string json;        // the whole description as the broker sent it
};

// What the broker reports about an entry (get/take/list), without descriptors.
struct EntryInfo {
  std::string name;
  std::uint64_t generation = 0;
  std::string meta_json = "{}";  // the entry's meta object, as JSON text
  uid_t owner_uid = 0;
  bool is_static = false;                  // declared in the broker's configuration
  std::optional<std::int64_t> expires_ms;  // time left, if the entry has a TTL
  std::vector<FdDescription> fd_descriptions;
  std::string json;  // the entry object as the broker sent it
};

// An entry received by get/take: its description and the descriptors themselves,
// owned by the caller (close-on-exec), in the order of fd_descriptions.
struct Entry : EntryInfo {
  std::vector<unique_fd> fds;
};

// One page of a list.
struct ListPage {
  std::vector<EntryInfo> entries;
  std::optional<std::string> cursor;  // present while more entries remain
};

struct Peer {
  uid_t uid = 0;
  gid_t gid = 0;
  pid_t pid = 0;
  // The systemd unit the broker found this client in when it accepted the
  // connection ("nginx.service"); none if it runs in no unit, or the broker had
  // no pidfd to verify it (Linux < 6.5), or it is older than this field.
  std::optional<std::string> unit;
  // Its cgroup v2 path ("/system.slice/nginx.service"); "" if unknown.
  std::string cgroup;
};

// The broker's hello reply.
struct Hello {
  std::string server;
  std::string version;
  int protocol = 0;
  Peer peer;         // this client, as the broker sees it
  std::string json;  // the reply as sent, without "id" and "ok"
};

// The broker's stats reply. `json` carries everything (per-op counters included).
struct Stats {
  std::int64_t uptime_ms = 0;
  std::int64_t connections_current = 0;
  std::int64_t connections_total = 0;
  std::int64_t connections_dropped = 0;
  std::int64_t entries = 0;
  std::int64_t fds_held = 0;
  std::int64_t fds_limit = 0;
  // Requests by op, then by outcome ("ok" or an errno name): requests["get"]["ENOENT"].
  std::map<std::string, std::map<std::string, std::int64_t>> requests;
  std::string json;  // the reply as sent, without "id" and "ok"
};

struct PutOptions {
  std::string meta_json;                           // a JSON object; empty = none
  std::optional<std::int64_t> ttl_ms;              // >= 1: the entry expires after this
  bool replace = false;                            // replace an existing entry
  std::optional<std::uint64_t> expect_generation;  // compare-and-swap (0: must not exist)
};

// What `open` asks for: one access mode plus modifiers (docs/protocol.md, `open`).
// The broker adds O_CLOEXEC and O_NOCTTY itself and never follows a symlink.
enum class OpenAccess { read, write, read_write };  // rdonly, wronly, rdwr

struct OpenFlags {
  OpenAccess access = OpenAccess::read;
  bool append = false;
  bool create = false;
  bool excl = false;   // only with create
  bool trunc = false;  // not with read
  bool nonblock = false;
};

// `oflags` as for open(2) (O_RDONLY/O_WRONLY/O_RDWR plus O_APPEND, O_CREAT, O_EXCL,
// O_TRUNC, O_NONBLOCK) as OpenFlags. O_CLOEXEC, O_NOCTTY and O_NOFOLLOW are accepted
// and dropped: the broker always applies them. Throws std::invalid_argument for any
// other bit (O_DIRECTORY, O_PATH, O_TMPFILE, O_DIRECT, O_ASYNC, O_SYNC, ...): the
// broker could not honour them, and silently dropping one would change what the
// caller gets; and for what the broker refuses with EINVAL although open(2) takes
// it: O_APPEND or O_TRUNC with O_RDONLY, O_EXCL without O_CREAT.
FDBROKER_API OpenFlags open_flags_from_posix(int oflags);

// The protocol's names for `flags`, access mode first: {"wronly", "create", "trunc"}.
FDBROKER_API std::vector<std::string> open_flag_names(const OpenFlags& flags);

// A file the broker opened for this client (`open`): the descriptor is the caller's
// (close-on-exec); the broker keeps no copy.
struct Opened {
  unique_fd fd;
  FdDescription description;  // as in get: kind "file", path, access
  std::string path;           // the path as requested
  std::string rule;           // the `files` rule that allowed it
  bool created = false;       // the broker created the file
  std::string json;           // the reply as sent, without "id" and "ok"
};

// What the broker's `bind` takes besides the URL. (Not BindOptions: that one binds a
// socket in this process, listen_url.hpp.)
struct BrokerBindOptions {
  std::optional<int> backlog;  // listen() backlog for stream sockets; none: the broker's
  bool reuseport = false;      // SO_REUSEPORT: only where the rule allows it, else EACCES
};

// A socket the broker made and bound for this client (`bind`), listening if it is a
// stream socket. The descriptor is the caller's (close-on-exec).
struct Bound {
  unique_fd fd;
  FdDescription description;  // kind "socket", family, type, listening, local
  std::string address;        // the address as the broker reports it
  std::string rule;           // the `bind` rule that allowed it
  std::string json;           // the reply as sent, without "id" and "ok"
};

class FDBROKER_API Client {
 public:
  // Not connected; call connect().
  Client() noexcept = default;
  // Connects to `path` (see connect()).
  explicit Client(const std::string& path);
  // Sets the timeout (see set_timeout()), then connects to `path`: the timeout
  // bounds the connect too.
  Client(const std::string& path, std::optional<std::chrono::milliseconds> timeout);
  Client(Client&&) noexcept = default;
  Client& operator=(Client&&) noexcept = default;
  ~Client() = default;

  // Connects to the broker's socket at `path`, or socket_path_from_env() if empty.
  // Closes any previous connection first. The socket is blocking and close-on-exec.
  // Errors: ENOENT (no socket there), ECONNREFUSED (nobody listening), EACCES
  // (socket permissions), ENAMETOOLONG (path longer than sun_path), ETIMEDOUT (a
  // timeout is set and the broker's listen backlog stayed full that long: a
  // connect() to a UNIX socket waits for room there, as to a stopped broker).
  void connect(const std::string& path = {});
  [[nodiscard]] bool connected() const noexcept { return sock_.valid(); }
  // The connection's socket, borrowed (for poll() or tests); -1 if not connected.
  [[nodiscard]] int fd() const noexcept { return sock_.get(); }
  // Closes the connection.
  void close() noexcept { sock_.reset(); }

  // Called with the connection's socket (borrowed) after each request is sent and
  // before its reply is read; it must return once the socket is readable, or throw.
  // Without one the read simply blocks (EINTR is retried). It lets a caller keep a
  // long wait (get/take with wait_ms) interruptible, e.g. by running signal
  // handlers there. If it throws, the connection is closed, since the reply still
  // due could no longer be told from the next one; connect() again to go on.
  // With a timeout set, the client first waits for the reply itself, for at most
  // the time left, and calls the waiter once the socket is readable (so it returns
  // at once): the timeout is kept, the waiter is still called before each reply,
  // but it no longer does the waiting. Use an IoWaiter to wait within a timeout.
  // Setting a ReplyWaiter removes any IoWaiter.
  using ReplyWaiter = std::function<void(int sock)>;
  void set_reply_waiter(ReplyWaiter waiter) {
    io_waiter_ = nullptr;
    reply_waiter_ = std::move(waiter);
  }

  // A waiter that also knows the deadline: called with the connection's socket
  // (borrowed), the poll() events it waits for (POLLIN for a reply, POLLOUT while
  // the broker's receive queue is too full to take a request) and the time left
  // before the timeout (nullopt: no timeout set; it is rounded up to a whole
  // millisecond, never 0). Returns true once the socket is ready, false otherwise,
  // e.g. when the time ran out or a signal interrupted poll(): the client then
  // recomputes the time left and calls it again, or throws ETIMEDOUT if none is
  // left. A true that was not ready is harmless (the client reads or sends without
  // blocking and waits again). If it throws, the connection is closed as above.
  // With an IoWaiter, every wait of a request goes through it, timeout or not.
  // Setting an IoWaiter removes any ReplyWaiter. The Python binding uses one to run
  // signal handlers (Ctrl-C) during a wait, within the timeout.
  using IoWaiter = std::function<bool(int sock, short events,
                                      std::optional<std::chrono::milliseconds> time_left)>;
  void set_io_waiter(IoWaiter waiter) {
    reply_waiter_ = nullptr;
    io_waiter_ = std::move(waiter);
  }

  // How long one request may take, from starting to send it to having its reply:
  // nullopt (the default) waits as long as it takes. For get/take with wait_ms the
  // wait is part of the request, so the deadline is the timeout PLUS wait_ms (a long
  // wait is never cut short by a short timeout); for upgrade it is the timeout plus
  // the 10 s the broker gives the new broker to get ready. It also bounds connect().
  // On expiry the call throws a plain std::system_error with ETIMEDOUT (not a
  // BrokerError: the broker did not answer at all) and closes the connection: a
  // reply arriving late could not be told from the next request's; connect()
  // again to go on. It applies from the next request or connect(); list() makes
  // one request per page, each with the whole timeout.
  // Throws std::invalid_argument for a timeout that is not > 0.
  void set_timeout(std::optional<std::chrono::milliseconds> timeout);
  [[nodiscard]] std::optional<std::chrono::milliseconds> timeout() const noexcept {
    return timeout_;
  }

  Hello hello();

  // The entry `name` with new descriptors for its open files. With wait_ms, waits
  // up to that long (capped by the broker) for the entry to appear.
  // Errors: ENOENT, ETIMEDOUT (wait_ms ran out: a BrokerError, unlike the client's
  // own timeout), EACCES, EINVAL, ESHUTDOWN (the broker stopped or was upgraded
  // while waiting: connect() again and retry).
  Entry get(std::string_view name, std::optional<std::int64_t> wait_ms = std::nullopt);
  // get() that returns nullopt instead of throwing ENOENT.
  std::optional<Entry> try_get(std::string_view name);

  // get() and remove the entry atomically: of concurrent takers exactly one wins.
  // Errors: as get(), plus EPERM for a static entry.
  Entry take(std::string_view name, std::optional<std::int64_t> wait_ms = std::nullopt);
  // take() that returns nullopt instead of throwing ENOENT.
  std::optional<Entry> try_take(std::string_view name);

  // Stores `fds` (borrowed: the caller keeps its own; 1-253 of them) under `name`.
  // Returns the entry's new generation.
  // Errors: EEXIST, ESTALE (expect_generation mismatch), EPERM (static), EACCES,
  // EDQUOT, ENOSPC, EINVAL.
  std::uint64_t put(std::string_view name, const std::vector<int>& fds,
                    const PutOptions& options = {});

  // Deletes the entry (the protocol's "delete"). Errors: ENOENT, EPERM, EACCES.
  void remove(std::string_view name);

  // Every entry whose name starts with `prefix` that this client may get, sorted by
  // name: follows the cursor, asking for `page_size` entries per request
  // (0 = the broker's default).
  std::vector<EntryInfo> list(std::string_view prefix = {}, unsigned page_size = 0);
  // One page: the protocol's list request as is.
  ListPage list_page(std::string_view prefix = {}, unsigned limit = 0,
                     const std::optional<std::string>& cursor = std::nullopt);

  Stats stats();

  // Asks the broker to open `path` (absolute) with `flags`; `mode` (permission bits,
  // at most 0777) is for a file it creates, masked by the rule's mode, and only
  // allowed with create. Errors (BrokerError): EINVAL (malformed path or flags),
  // EACCES (no `files` rule allows it: decided before the file system is touched),
  // ENOENT, EEXIST, ELOOP (a symlink on the way), EXDEV, EISDIR, ENOTDIR,
  // EOPNOTSUPP (a file type the rule does not allow), EAGAIN, EMFILE, ENFILE.
  // std::invalid_argument for a mode above 0777, before anything is sent.
  Opened open(std::string_view path, const OpenFlags& flags = {},
              std::optional<unsigned> mode = std::nullopt);

  // Asks the broker for a socket bound to `url` (tcp://, tcp6://, udp://, udp6://
  // as in fdbrokerctl put --listen; a concrete port, not 0). Errors (BrokerError):
  // EINVAL, EACCES (no `bind` rule allows it, or reuseport without the rule's
  // consent), EADDRINUSE, EADDRNOTAVAIL. std::invalid_argument for a backlog < 0.
  Bound bind(std::string_view url, const BrokerBindOptions& options = {});

  // Asks the broker to upgrade itself (docs/protocol.md, `upgrade`): run `binary`
  // (an absolute path; empty: the broker's own) and hand it every entry. Returns
  // the new broker's pid once it is ready; the old one then exits. Only root and
  // the broker's own user may. Throws BrokerError (EACCES, EBUSY, EOPNOTSUPP under
  // systemd, ECHILD if it exited before ready, ETIMEDOUT, the exec's errno such
  // as ENOENT) or std::system_error (transport).
  std::int64_t upgrade(std::string_view binary = {});

 private:
  struct Reply;
  using Deadline = std::optional<std::chrono::steady_clock::time_point>;
  // Sends one request (JSON text) with `fds`, returns the reply; throws BrokerError
  // if the broker refused. `server_wait` is how long the broker may take on purpose
  // (wait_ms), added to the timeout.
  Reply call(const std::string& request, const std::vector<int>& fds = {},
             std::chrono::milliseconds server_wait = std::chrono::milliseconds(0));
  void send_request(const std::string& request, const std::vector<int>& fds,
                    const Deadline& deadline);
  Reply receive_reply(const Deadline& deadline);
  // Waits until the socket is ready for `events`; false once `deadline` passed.
  bool wait_ready(short events, const Deadline& deadline);
  // Closes the connection and throws ETIMEDOUT, saying what the client waited for.
  [[noreturn]] void timed_out(const char* waiting_for);
  std::int64_t next_id_ = 1;
  ReplyWaiter reply_waiter_;
  IoWaiter io_waiter_;
  std::optional<std::chrono::milliseconds> timeout_;
  std::chrono::milliseconds server_wait_{0};  // of the request under way
  unique_fd sock_;
};

}  // namespace fdbroker
