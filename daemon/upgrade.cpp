// SPDX-License-Identifier: LGPL-2.1-or-later
#include "upgrade.hpp"

#include <fcntl.h>
#include <signal.h>
#include <spdlog/spdlog.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstdlib>
#include <cstring>
#include <fdbroker/error.hpp>

#include "closer.hpp"
#include "fdstore_sync.hpp"

extern char** environ;

namespace fdbroker::daemon {

namespace {

// Bytes on the readiness pipe: 'R' ready; 'X' + errno (int) the exec failed.
constexpr char ready_byte = 'R';
constexpr char exec_failed_byte = 'X';

bool starts_with(const char* s, const char* prefix) {
  return std::strncmp(s, prefix, std::strlen(prefix)) == 0;
}

// Decimal digits of `v` into `out` (async-signal-safe: used between fork and exec).
void format_pid(char* out, long v) {
  char digits[24];
  int n = 0;
  do {
    digits[n++] = static_cast<char>('0' + v % 10);
    v /= 10;
  } while (v > 0);
  while (n > 0) *out++ = digits[--n];
  *out = '\0';
}

std::string describe_status(int status) {
  if (WIFEXITED(status)) return "exited with status " + std::to_string(WEXITSTATUS(status));
  if (WIFSIGNALED(status)) return std::string("killed by ") + ::strsignal(WTERMSIG(status));
  return "stopped";
}

}  // namespace

std::string own_binary() {
  char buf[PATH_MAX];
  ssize_t n = ::readlink("/proc/self/exe", buf, sizeof buf - 1);
  if (n <= 0) return {};
  return std::string(buf, static_cast<std::size_t>(n));
}

void report_upgrade_ready() {
  const char* value = std::getenv(upgrade_ready_env);
  if (value == nullptr) return;
  int fd = std::atoi(value);
  ::unsetenv(upgrade_ready_env);
  if (fd < 3) return;
  char byte = ready_byte;
  if (::write(fd, &byte, 1) != 1)
    spdlog::warn("upgrade: cannot tell the old broker: {}", std::strerror(errno));
  ::close(fd);
}

Upgrader::Upgrader(EventLoop& loop, Broker& broker, std::vector<std::string> argv,
                   std::string default_binary, bool under_systemd)
    : loop_(loop),
      broker_(broker),
      argv_(std::move(argv)),
      default_binary_(std::move(default_binary)),
      under_systemd_(under_systemd) {
  broker_.set_upgrade_handler([this](int conn_fd, const std::string& id,
                                     const std::string& binary) { start(conn_fd, id, binary); });
}

Upgrader::~Upgrader() {
  broker_.set_upgrade_handler(nullptr);
  if (timer_ != 0) loop_.cancel(timer_);
  if (ready_.valid()) loop_.unwatch(ready_.get());
  if (reap_timer_ != 0) loop_.cancel(reap_timer_);
  if (child_ > 0) {
    ::kill(child_, SIGKILL);
    ::waitpid(child_, nullptr, WNOHANG);  // never wait: see reap_later()
  }
}

void Upgrader::reap_later(pid_t pid) {
  spdlog::warn("upgrade: pid {} was killed but has not ended (waiting in a close on a file system that "
               "does not answer?); it is reaped once it ends", pid);
  unreaped_.push_back(pid);
  if (reap_timer_ == 0) reap_timer_ = loop_.add_timer(Clock::now() + std::chrono::seconds(1), [this] { reap_poll(); });
}

void Upgrader::reap_poll() {
  reap_timer_ = 0;
  std::erase_if(unreaped_, [](pid_t p) { return ::waitpid(p, nullptr, WNOHANG) != 0; });
  if (!unreaped_.empty()) {
    reap_timer_ = loop_.add_timer(Clock::now() + std::chrono::seconds(1), [this] { reap_poll(); });
  }
}

void Upgrader::start(int conn_fd, const std::string& id, const std::string& binary) {
  if (running_) {
    if (conn_fd >= 0) broker_.reply_to(conn_fd, id, EBUSY, "an upgrade is already under way");
    return;
  }
  if (under_systemd_) {
    if (conn_fd >= 0) {
      broker_.reply_to(conn_fd, id, EOPNOTSUPP,
                       "run by systemd: use systemctl restart (the fd store keeps every entry)");
    }
    spdlog::warn("upgrade refused: run by systemd, use systemctl restart");
    return;
  }
  if (Closer* closer = Closer::current(); closer != nullptr) {
    if (std::size_t stuck = closer->queued_behind_slow(); stuck > 0) {
      // The child that becomes the new broker gets a copy of every descriptor
      // still open here and closes those it does not pass on: it would hang on
      // these as the closer does (closer.hpp).
      std::string why = std::to_string(stuck) +
                        " descriptors wait to be closed behind a close that does not return (a FUSE daemon that "
                        "stopped answering?): the new broker would hang on them; try again once it answers";
      spdlog::warn("upgrade refused: {}", why);
      if (conn_fd >= 0) broker_.reply_to(conn_fd, id, EBUSY, why);
      return;
    }
  }
  std::string target = binary.empty() ? default_binary_ : binary;
  if (target.empty()) {
    if (conn_fd >= 0)
      broker_.reply_to(conn_fd, id, ENOENT, "cannot tell which binary runs (/proc/self/exe)");
    return;
  }
  running_ = true;
  conn_fd_ = conn_fd;
  id_ = id;
  binary_ = target;
  spdlog::info("upgrade to '{}': going quiet", binary_);
  if (!broker_.begin_handover(conn_fd, [this] { launch(); })) {
    running_ = false;
    if (conn_fd >= 0) broker_.reply_to(conn_fd, id, ESHUTDOWN, "the broker is shutting down");
  }
}

void Upgrader::launch() {
  auto state = make_state_memfd(broker_.state_json());
  if (!state) {
    fail(state.error().value(), "cannot write the state memfd: " + state.error().message());
    return;
  }
  std::vector<std::pair<std::string, int>> fds = broker_.handover_fds();
  fds.emplace_back("state.1", state->get());
  int pipe_fds[2];
  if (::pipe2(pipe_fds, O_CLOEXEC) < 0) {
    fail(errno, std::string("pipe: ") + std::strerror(errno));
    return;
  }
  unique_fd ready_read(pipe_fds[0]);
  unique_fd ready_write(pipe_fds[1]);

  // Everything the child needs is built before fork(): after it, only
  // async-signal-safe calls.
  std::vector<int> sources;
  std::string names;
  for (const auto& [name, fd] : fds) {
    if (!names.empty()) names += ':';
    names += name;
    sources.push_back(fd);
  }
  const int n = static_cast<int>(fds.size());
  sources.push_back(ready_write.get());  // lands at 3 + n, outside LISTEN_FDS
  const int m = n + 1;
  std::vector<std::string> env_strings;
  for (char** e = environ; *e != nullptr; ++e) {
    if (starts_with(*e, "LISTEN_FDS=") || starts_with(*e, "LISTEN_PID=") ||
        starts_with(*e, "LISTEN_FDNAMES=") || starts_with(*e, "FDBROKER_UPGRADE_READY_FD=")) {
      continue;
    }
    env_strings.emplace_back(*e);
  }
  env_strings.push_back("LISTEN_FDS=" + std::to_string(n));
  env_strings.push_back("LISTEN_FDNAMES=" + names);
  env_strings.push_back(std::string(upgrade_ready_env) + "=" + std::to_string(3 + n));
  env_strings.push_back("LISTEN_PID=" + std::string(24, '0'));  // filled in by the child
  std::vector<char*> envp;
  for (auto& s : env_strings) envp.push_back(s.data());
  envp.push_back(nullptr);
  char* pid_digits = env_strings.back().data() + std::strlen("LISTEN_PID=");
  std::vector<std::string> args = argv_;
  if (args.empty()) args.push_back(binary_);
  std::vector<char*> argvp;
  for (auto& a : args) argvp.push_back(a.data());
  argvp.push_back(nullptr);
  const char* path = binary_.c_str();
  // Where each source sits, by fd number, for the moves in the child; and the
  // sources in order, for closing everything else there.
  rlimit rl{};
  ::getrlimit(RLIMIT_NOFILE, &rl);
  const std::size_t table = rl.rlim_cur == RLIM_INFINITY || rl.rlim_cur > (1u << 20)
                                ? (1u << 20)
                                : static_cast<std::size_t>(rl.rlim_cur);
  std::vector<int> owner(table, -1);
  for (int i = 0; i < m; ++i)
    owner[static_cast<std::size_t>(sources[static_cast<std::size_t>(i)])] = i;
  std::vector<int> sorted = sources;
  std::sort(sorted.begin(), sorted.end());

  pid_t pid = ::fork();
  if (pid < 0) {
    fail(errno, std::string("fork: ") + std::strerror(errno));
    return;
  }
  if (pid == 0) {
    // The child: only async-signal-safe calls, no allocation. First everything
    // but the sources (and 0-2) goes, so that moving each source into place
    // needs at most one spare descriptor: a broker holding most of its
    // RLIMIT_NOFILE can still hand over.
    int err = 0;
    unsigned next = 3;
    for (int fd : sorted) {
      if (static_cast<unsigned>(fd) > next) ::close_range(next, static_cast<unsigned>(fd) - 1, 0);
      next = static_cast<unsigned>(fd) + 1;
    }
    ::close_range(next, ~0u, 0);
    // Then source i to fd 3 + i; a source sitting where another must go moves
    // out of the way first (above the target range).
    auto at = [&](int fd) -> int& { return owner[static_cast<std::size_t>(fd)]; };
    for (int i = 0; i < m && err == 0; ++i) {
      int target = 3 + i;
      int src = sources[static_cast<std::size_t>(i)];
      if (src == target) {
        if (::fcntl(target, F_SETFD, 0) < 0) err = errno;  // keep it across exec
        continue;
      }
      if (int j = at(target); j >= 0) {
        int moved = ::fcntl(target, F_DUPFD_CLOEXEC, 3 + m);
        if (moved < 0 || static_cast<std::size_t>(moved) >= table) {
          err = moved < 0 ? errno : EMFILE;
          break;
        }
        ::close(target);
        at(target) = -1;
        at(moved) = j;
        sources[static_cast<std::size_t>(j)] = moved;
      }
      if (::dup2(src, target) < 0) {  // the copy has no close-on-exec
        err = errno;
        break;
      }
      ::close(src);
      at(src) = -1;
      at(target) = i;
      sources[static_cast<std::size_t>(i)] = target;
    }
    if (err == 0) {
      sigset_t none;
      ::sigemptyset(&none);
      ::sigprocmask(SIG_SETMASK, &none, nullptr);  // the old broker's signalfd mask
      ::signal(SIGPIPE, SIG_DFL);
      format_pid(pid_digits, static_cast<long>(::getpid()));
      ::execve(path, argvp.data(), envp.data());
      err = errno;
    }
    char msg[1 + sizeof(int)];
    msg[0] = exec_failed_byte;
    std::memcpy(msg + 1, &err, sizeof err);
    // The readiness pipe, wherever the moves left it.
    ssize_t ignored = ::write(sources[static_cast<std::size_t>(m - 1)], msg, sizeof msg);
    (void)ignored;
    ::_exit(127);
  }
  child_ = pid;
  ready_write.reset();  // the child's copy is the only writer: EOF when it dies
  ready_ = std::move(ready_read);
  spdlog::info("upgrade: started '{}' as pid {} with {} descriptors", binary_, pid, n);
  if (auto ec = loop_.watch(ready_.get(), EPOLLIN, [this](std::uint32_t) { on_ready_pipe(); })) {
    fail(ec.value(), "watching the readiness pipe: " + ec.message());
    return;
  }
  timer_ = loop_.add_timer(Clock::now() + upgrade_timeout, [this] {
    timer_ = 0;
    fail(ETIMEDOUT, "the new fdbrokerd was not ready within " +
                        std::to_string(upgrade_timeout.count()) + " s");
  });
}

void Upgrader::on_ready_pipe() {
  char buf[1 + sizeof(int)] = {};
  ssize_t got = ::read(ready_.get(), buf, sizeof buf);
  if (got < 0 && (errno == EINTR || errno == EAGAIN)) return;
  if (got >= 1 && buf[0] == ready_byte) {
    pid_t pid = child_;
    child_ = -1;  // it lives on: not ours to reap or kill any more
    if (timer_ != 0) loop_.cancel(timer_);
    timer_ = 0;
    loop_.unwatch(ready_.get());
    ready_.reset();
    spdlog::info("upgrade: pid {} is ready; handing over and exiting", pid);
    broker_.release_socket_file();
    if (conn_fd_ >= 0) broker_.reply_to(conn_fd_, id_, 0, "\"pid\":" + std::to_string(pid));
    if (handed_over_) handed_over_();
    return;
  }
  if (got == static_cast<ssize_t>(sizeof buf) && buf[0] == exec_failed_byte) {
    int err = 0;
    std::memcpy(&err, buf + 1, sizeof err);
    fail(err != 0 ? err : ENOEXEC, "cannot execute '" + binary_ + "': " + std::strerror(err));
    return;
  }
  fail(ECHILD, "the new fdbrokerd ended before it was ready");
}

void Upgrader::fail(int err, const std::string& why) {
  std::string message = why;
  if (child_ > 0) {
    int status = 0;
    pid_t r = ::waitpid(child_, &status, WNOHANG);
    if (r == 0) {
      ::kill(child_, SIGKILL);
      // It usually dies at once; one that waits in the kernel (a FUSE close
      // that does not return) is not waited for here, on the loop.
      for (int i = 0; i < 50 && r == 0; ++i) {
        ::usleep(2000);
        r = ::waitpid(child_, &status, WNOHANG);
      }
    }
    if (r == child_) {
      message += " (pid " + std::to_string(child_) + " " + describe_status(status) + ")";
    } else if (r == 0) {
      message += " (pid " + std::to_string(child_) + " killed, not yet ended)";
      reap_later(child_);
    }
    child_ = -1;
  }
  if (timer_ != 0) loop_.cancel(timer_);
  timer_ = 0;
  if (ready_.valid()) {
    loop_.unwatch(ready_.get());
    ready_.reset();
  }
  spdlog::error("upgrade to '{}' failed: {}; carrying on", binary_, message);
  broker_.end_handover();
  if (conn_fd_ >= 0) broker_.reply_to(conn_fd_, id_, err, message);
  running_ = false;
  conn_fd_ = -1;
}

}  // namespace fdbroker::daemon
