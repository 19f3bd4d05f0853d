// SPDX-License-Identifier: LGPL-2.1-or-later
// fdbroker::handoff::Upgrader: Upgrade -> Ready -> Exit through broker entries.
#include <fdbroker/error.hpp>
#include <fdbroker/handoff.hpp>
#include <fdbroker/listen_fds.hpp>

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <climits>
#include <condition_variable>
#include <cstring>
#include <fstream>
#include <iterator>
#include <mutex>
#include <string>
#include <thread>

#include <nlohmann/json.hpp>

extern char** environ;

namespace fdbroker::handoff {
namespace {

using std::chrono::milliseconds;
using std::chrono::steady_clock;

// The broker caps wait_ms (limits.max_wait_ms); long waits are made of slices.
constexpr milliseconds wait_slice{60000};

bool broker_refused(const std::system_error& e, int err) {
  return dynamic_cast<const BrokerError*>(&e) != nullptr && e.code().value() == err;
}

// A pidfd: a handle on a process that polls readable when it exits, and, unlike a
// pid, cannot be recycled. Close-on-exec by default.
unique_fd pidfd_open(pid_t pid) {
  unique_fd fd(static_cast<int>(::syscall(SYS_pidfd_open, pid, 0)));
  if (!fd.valid()) throw_errno(errno, "pidfd_open(" + std::to_string(pid) + ")");
  return fd;
}

pid_t meta_pid(const std::string& meta_json) {
  auto meta = nlohmann::json::parse(meta_json, nullptr, false);
  if (meta.is_object() && meta.contains("pid") && meta["pid"].is_number_integer())
    return meta["pid"].get<pid_t>();
  return 0;
}

std::string read_link(const char* path) {
  std::string buf(PATH_MAX, '\0');
  ssize_t n = ::readlink(path, buf.data(), buf.size());
  if (n < 0) throw_errno(errno, std::string("readlink ") + path);
  buf.resize(static_cast<std::size_t>(n));
  // The binary was replaced on disk since we started: its path now names the new
  // one, which is exactly what an upgrade wants to run.
  constexpr std::string_view deleted = " (deleted)";
  if (buf.size() > deleted.size() &&
      buf.compare(buf.size() - deleted.size(), deleted.size(), deleted) == 0)
    buf.resize(buf.size() - deleted.size());
  return buf;
}

std::vector<std::string> own_arguments() {
  std::ifstream in("/proc/self/cmdline", std::ios::binary);
  std::string all((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::vector<std::string> args;
  std::size_t start = 0;
  while (start < all.size()) {
    auto end = all.find('\0', start);
    if (end == std::string::npos) end = all.size();
    args.emplace_back(all, start, end - start);
    start = end + 1;
  }
  return args;
}

// This environment without the socket-activation variables: they describe this
// process's inheritance, not the successor's.
std::vector<std::string> successor_environment() { return environment_without_listen_fds(environ); }

std::vector<char*> c_strings(std::vector<std::string>& strings) {
  std::vector<char*> out;
  for (auto& s : strings) out.push_back(s.data());
  out.push_back(nullptr);
  return out;
}

int poll_ms(steady_clock::time_point deadline) {
  auto left = std::chrono::duration_cast<milliseconds>(deadline - steady_clock::now()).count();
  if (left <= 0) return 0;
  return left > INT_MAX ? INT_MAX : static_cast<int>(left);
}

}  // namespace

class Upgrader::Impl {
 public:
  Impl(std::string service, Options options);
  Impl(const Impl&) = delete;
  Impl& operator=(const Impl&) = delete;
  ~Impl();

  [[nodiscard]] bool has_broker() const noexcept { return client_.connected(); }
  bool wait_for_predecessor_exit(milliseconds timeout);
  std::uint64_t put_state(const std::vector<int>& fds, const std::string& meta_json);
  std::optional<Entry> get_state(milliseconds wait);
  std::optional<Entry> take_state(milliseconds wait);
  void ready();
  int exit_fd();
  bool wait_for_exit(milliseconds timeout);
  pid_t upgrade(std::vector<std::string> argv);

  std::string service_;
  Options options_;
  std::string executable_;  // /proc/self/exe at construction
  std::string broker_error_;
  std::mutex mutex_;  // client_, generation_, exit_event_ and the watcher
  Client client_;
  std::uint64_t predecessor_generation_ = 0;
  pid_t predecessor_pid_ = 0;
  unique_fd predecessor_pidfd_;
  std::uint64_t generation_ = 0;
  unique_fd exit_event_;
  std::atomic<bool> exit_requested_{false};
  std::atomic<pid_t> successor_pid_{0};

 private:
  void watch();
  void signal_exit(pid_t successor) noexcept;
  [[nodiscard]] std::string name(std::string_view suffix) const;

  // The watcher: blocks in take(S/retire/<generation>) on its own connection.
  std::thread watcher_;
  std::mutex watcher_mutex_;
  std::condition_variable watcher_wakeup_;
  bool stopping_ = false;
  std::unique_ptr<Client> watcher_client_;
};

Upgrader::Impl::Impl(std::string service, Options options)
    : service_(std::move(service)), options_(std::move(options)) {
  if (service_.empty() || service_.back() == '/')
    throw std::system_error(errno_code(EINVAL), "handoff: bad service name '" + service_ + "'");
  executable_ = read_link("/proc/self/exe");
  try {
    client_.connect(options_.broker_socket);
  } catch (const std::system_error& e) {
    broker_error_ = e.what();
    return;
  }
  if (auto leader = client_.try_get(name("leader"))) {
    predecessor_generation_ = leader->generation;
    predecessor_pid_ = meta_pid(leader->meta_json);
    if (!leader->fds.empty()) predecessor_pidfd_ = std::move(leader->fds[0]);
  }
}

Upgrader::Impl::~Impl() {
  {
    std::lock_guard lock(watcher_mutex_);
    stopping_ = true;
    // The watcher blocks in recv() on its connection: shutting it down wakes it.
    if (watcher_client_ && watcher_client_->connected())
      ::shutdown(watcher_client_->fd(), SHUT_RDWR);
  }
  watcher_wakeup_.notify_all();
  if (watcher_.joinable()) watcher_.join();
}

std::string Upgrader::Impl::name(std::string_view suffix) const {
  return service_ + "/" + std::string(suffix);
}

bool Upgrader::Impl::wait_for_predecessor_exit(milliseconds timeout) {
  if (!predecessor_pidfd_.valid()) return true;
  pollfd pfd{predecessor_pidfd_.get(), POLLIN, 0};
  auto deadline = steady_clock::now() + timeout;
  for (;;) {
    int r = ::poll(&pfd, 1, poll_ms(deadline));
    if (r > 0) return true;
    if (r == 0) return false;
    if (errno != EINTR) throw_errno(errno, "poll(pidfd)");
  }
}

std::uint64_t Upgrader::Impl::put_state(const std::vector<int>& fds, const std::string& meta_json) {
  std::lock_guard lock(mutex_);
  if (!has_broker())
    throw std::system_error(errno_code(ENOTCONN), "handoff: no broker: " + broker_error_);
  PutOptions put;
  put.meta_json = meta_json;
  put.replace = true;
  return client_.put(name("state"), fds, put);
}

std::optional<Entry> Upgrader::Impl::get_state(milliseconds wait) {
  std::lock_guard lock(mutex_);
  if (!has_broker()) return std::nullopt;
  try {
    if (wait.count() > 0) return client_.get(name("state"), wait.count());
    return client_.try_get(name("state"));
  } catch (const std::system_error& e) {
    if (broker_refused(e, ETIMEDOUT) || broker_refused(e, ENOENT)) return std::nullopt;
    throw;
  }
}

std::optional<Entry> Upgrader::Impl::take_state(milliseconds wait) {
  std::lock_guard lock(mutex_);
  if (!has_broker()) return std::nullopt;
  try {
    if (wait.count() > 0) return client_.take(name("state"), wait.count());
    return client_.try_take(name("state"));
  } catch (const std::system_error& e) {
    if (broker_refused(e, ETIMEDOUT) || broker_refused(e, ENOENT)) return std::nullopt;
    throw;
  }
}

void Upgrader::Impl::ready() {
  std::lock_guard lock(mutex_);
  if (!has_broker() || generation_ != 0) return;
  auto self = pidfd_open(::getpid());
  nlohmann::json meta = {{"pid", ::getpid()}};

  // Compare-and-swap: only if the leader is still the one we found. Of two
  // successors started at once, one wins; the other gets ESTALE and should exit.
  PutOptions leader;
  leader.meta_json = meta.dump();
  leader.expect_generation = predecessor_generation_;
  auto generation = client_.put(name("leader"), {self.get()}, leader);

  if (predecessor_generation_ != 0) {
    meta["generation"] = generation;
    PutOptions retire;
    retire.meta_json = meta.dump();
    retire.replace = true;
    retire.ttl_ms = options_.retire_ttl.count();
    client_.put(name("retire/" + std::to_string(predecessor_generation_)), {self.get()}, retire);
  }
  generation_ = generation;
}

void Upgrader::Impl::signal_exit(pid_t successor) noexcept {
  successor_pid_.store(successor);
  exit_requested_.store(true);
  std::uint64_t one = 1;
  // The eventfd's counter cannot overflow from one write; nothing to handle.
  (void)!::write(exit_event_.get(), &one, sizeof one);
}

void Upgrader::Impl::watch() {
  const std::string retire = name("retire/" + std::to_string(generation_));
  std::unique_lock lock(watcher_mutex_);
  while (!stopping_) {
    Client* client = watcher_client_.get();
    lock.unlock();
    try {
      auto entry = client->take(retire, wait_slice.count());
      signal_exit(meta_pid(entry.meta_json));
      return;
    } catch (const std::system_error& e) {
      lock.lock();
      if (stopping_) return;
      if (broker_refused(e, ETIMEDOUT)) continue;
      // Lost the connection (the broker restarts, say): reconnect after a pause.
      // Entries survive broker restarts, so the request is not lost.
      watcher_wakeup_.wait_for(lock, milliseconds(500), [this] { return stopping_; });
      if (stopping_) return;
      try {
        watcher_client_->connect(options_.broker_socket);
      } catch (const std::system_error&) {
        continue;  // not back yet; try again after the next pause
      }
      continue;
    }
  }
}

int Upgrader::Impl::exit_fd() {
  std::lock_guard lock(mutex_);
  if (exit_event_.valid()) return exit_event_.get();
  unique_fd event(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  if (!event.valid()) throw_errno(errno, "eventfd");
  exit_event_ = std::move(event);
  // Standalone (no broker): nobody can ask us to exit; the fd never fires.
  if (!has_broker()) return exit_event_.get();
  if (generation_ == 0)
    throw std::system_error(errno_code(EINVAL), "handoff: exit_fd() before ready()");
  {
    std::lock_guard watcher_lock(watcher_mutex_);
    watcher_client_ = std::make_unique<Client>(options_.broker_socket);
  }
  watcher_ = std::thread([this] { watch(); });
  return exit_event_.get();
}

bool Upgrader::Impl::wait_for_exit(milliseconds timeout) {
  pollfd pfd{exit_fd(), POLLIN, 0};
  auto deadline = steady_clock::now() + timeout;
  for (;;) {
    if (exit_requested_.load()) return true;
    int r = ::poll(&pfd, 1, poll_ms(deadline));
    if (r > 0) return exit_requested_.load();
    if (r == 0) return exit_requested_.load();
    if (errno != EINTR) throw_errno(errno, "poll(exit_fd)");
  }
}

pid_t Upgrader::Impl::upgrade(std::vector<std::string> argv) {
  if (!has_broker())
    throw std::system_error(errno_code(ENOTCONN),
                            "handoff: upgrade without a broker: " + broker_error_);
  int exit_event = exit_fd();
  std::string program;
  if (argv.empty()) {
    argv = own_arguments();
    if (argv.empty())
      throw std::system_error(errno_code(EINVAL), "handoff: cannot read /proc/self/cmdline");
    program = executable_;
  } else {
    program = argv[0];
  }

  auto env = successor_environment();
  auto c_argv = c_strings(argv);
  auto c_env = c_strings(env);
  // The successor starts with a clean signal state: servers often block signals to
  // read them from a signalfd, and a blocked or ignored SIGTERM would be inherited.
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  sigset_t none, all;
  sigemptyset(&none);
  sigfillset(&all);
  posix_spawnattr_setsigmask(&attr, &none);
  posix_spawnattr_setsigdefault(&attr, &all);
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
  pid_t child = 0;
  // posix_spawn (vfork+exec underneath) is safe in a threaded process, unlike
  // fork() followed by anything but exec.
  int err =
      program.find('/') != std::string::npos
          ? ::posix_spawn(&child, program.c_str(), nullptr, &attr, c_argv.data(), c_env.data())
          : ::posix_spawnp(&child, program.c_str(), nullptr, &attr, c_argv.data(), c_env.data());
  posix_spawnattr_destroy(&attr);
  if (err != 0) throw_errno(err, "handoff: spawn " + program);
  auto child_fd = pidfd_open(child);

  pollfd pfds[2] = {{exit_event, POLLIN, 0}, {child_fd.get(), POLLIN, 0}};
  auto deadline = steady_clock::now() + options_.ready_timeout;
  for (;;) {
    if (exit_requested_.load()) return child;
    int r = ::poll(pfds, 2, poll_ms(deadline));
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) throw_errno(errno, "poll");
    if (exit_requested_.load()) return child;
    if (r == 0) {
      ::kill(child, SIGKILL);
      int status = 0;
      while (::waitpid(child, &status, 0) < 0 && errno == EINTR) {
      }
      throw std::system_error(errno_code(ETIMEDOUT),
                              "handoff: successor " + std::to_string(child) +
                                  " was not ready within " +
                                  std::to_string(options_.ready_timeout.count()) + " ms; killed");
    }
    if ((pfds[1].revents & POLLIN) != 0) {
      // It may have become ready just before exiting, and the watcher not have
      // seen the retire request yet: that still counts as ready.
      if (::poll(pfds, 1, 1000) > 0 && exit_requested_.load()) return child;
      int status = 0;
      while (::waitpid(child, &status, 0) < 0 && errno == EINTR) {
      }
      std::string how = WIFEXITED(status)
                            ? "exited with status " + std::to_string(WEXITSTATUS(status))
                            : "was killed by signal " + std::to_string(WTERMSIG(status));
      throw std::system_error(errno_code(ECHILD), "handoff: successor " + std::to_string(child) +
                                                      " " + how + " before it was ready");
    }
  }
}

Upgrader::Upgrader(std::string service, Options options)
    : impl_(std::make_unique<Impl>(std::move(service), std::move(options))) {}

Upgrader::~Upgrader() = default;

const std::string& Upgrader::service() const noexcept { return impl_->service_; }
bool Upgrader::has_broker() const noexcept { return impl_->has_broker(); }
const std::string& Upgrader::broker_error() const noexcept { return impl_->broker_error_; }
std::uint64_t Upgrader::predecessor_generation() const noexcept {
  return impl_->predecessor_generation_;
}
pid_t Upgrader::predecessor_pid() const noexcept { return impl_->predecessor_pid_; }
bool Upgrader::wait_for_predecessor_exit(milliseconds timeout) {
  return impl_->wait_for_predecessor_exit(timeout);
}
std::uint64_t Upgrader::put_state(const std::vector<int>& fds, const std::string& meta_json) {
  return impl_->put_state(fds, meta_json);
}
std::optional<Entry> Upgrader::get_state(milliseconds wait) { return impl_->get_state(wait); }
std::optional<Entry> Upgrader::take_state(milliseconds wait) { return impl_->take_state(wait); }
void Upgrader::ready() { impl_->ready(); }
bool Upgrader::is_ready() const noexcept { return impl_->generation_ != 0 || !has_broker(); }
std::uint64_t Upgrader::generation() const noexcept { return impl_->generation_; }
int Upgrader::exit_fd() { return impl_->exit_fd(); }
bool Upgrader::wait_for_exit(milliseconds timeout) { return impl_->wait_for_exit(timeout); }
bool Upgrader::exit_requested() const noexcept { return impl_->exit_requested_.load(); }
pid_t Upgrader::successor_pid() const noexcept { return impl_->successor_pid_.load(); }
pid_t Upgrader::upgrade(std::vector<std::string> argv) { return impl_->upgrade(std::move(argv)); }

}  // namespace fdbroker::handoff
