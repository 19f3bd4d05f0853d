// SPDX-License-Identifier: LGPL-2.1-or-later
#include "upgrade.hpp"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spdlog/spdlog.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstdlib>
#include <cstring>
#include <fdbroker/error.hpp>
#include <fdbroker/listen_fds.hpp>
#include <fdbroker/scm_rights.hpp>

#include "spawner.hpp"
#include "systemd_fd_store.hpp"

extern char** environ;

namespace fdbroker::daemon {

namespace {

// Bytes on the readiness pipe: 'R' ready; 'X' + errno (int) the exec failed.
constexpr char ready_byte = 'R';
constexpr char exec_failed_byte = 'X';  // written by spawner.cpp

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

UpgradeRunner::UpgradeRunner(EventLoop& loop, Broker& broker, std::vector<std::string> argv,
                             std::string default_binary, bool under_systemd, unique_fd spawner)
    : loop_(loop),
      broker_(broker),
      argv_(std::move(argv)),
      default_binary_(std::move(default_binary)),
      under_systemd_(under_systemd),
      spawner_(std::move(spawner)) {
  if (spawner_.valid()) {
    if (auto ec = loop_.watch(spawner_.get(), EPOLLIN,
                              [this](std::uint32_t) { on_spawner_readable(); })) {
      spdlog::error("upgrade: watching the spawner: {}", ec.message());
      spawner_.reset();
    }
  }
  broker_.set_upgrade_handler([this](ConnectionId requester, const std::string& id,
                                     const std::string& binary) { start(requester, id, binary); });
}

UpgradeRunner::~UpgradeRunner() {
  broker_.set_upgrade_handler(nullptr);
  if (timer_ != 0) loop_.cancel(timer_);
  if (ready_.valid()) loop_.unwatch(ready_.get());
  if (spawner_.valid()) loop_.unwatch(spawner_.get());
  if (child_ > 0) ::kill(child_, SIGKILL);  // the spawner reaps it
}

void UpgradeRunner::on_spawner_readable() {
  SpawnerReport report;
  ssize_t got = ::recv(spawner_.get(), &report, sizeof report, MSG_DONTWAIT);
  if (got < 0 && (errno == EINTR || errno == EAGAIN)) return;
  if (got != static_cast<ssize_t>(sizeof report)) {
    spawner_lost();
    return;
  }
  on_report(report);
}

void UpgradeRunner::on_report(const SpawnerReport& report) {
  if (report.kind == 'E') {
    spdlog::info("upgrade: pid {} {}", report.pid, describe_status(report.value));
  }
}

void UpgradeRunner::spawner_lost() {
  spdlog::error("upgrade: the spawner process is gone; upgrades are refused from now on");
  loop_.unwatch(spawner_.get());
  spawner_.reset();
}

void UpgradeRunner::start(ConnectionId requester, const std::string& id,
                          const std::string& binary) {
  // Refused at once: the requester (if any) gets `refusal`.
  auto refuse = [&](Failure refusal) {
    if (requester != 0) broker_.reply_to(requester, id, std::move(refusal));
  };
  if (running_) {
    refuse({EBUSY, "an upgrade is already under way"});
    return;
  }
  if (under_systemd_) {
    refuse({EOPNOTSUPP, "run by systemd: use systemctl restart (the fd store keeps every entry)"});
    spdlog::warn("upgrade refused: run by systemd, use systemctl restart");
    return;
  }
  if (!spawner_.valid()) {
    refuse({ESRCH, "no spawner process (see the log at start)"});
    return;
  }
  std::string target = binary.empty() ? default_binary_ : binary;
  if (target.empty()) {
    refuse({ENOENT, "cannot tell which binary runs (/proc/self/exe)"});
    return;
  }
  running_ = true;
  requester_ = requester;
  id_ = id;
  binary_ = target;
  spdlog::info("upgrade to '{}': draining", binary_);
  if (!broker_.begin_drain_for_successor(requester, [this] { launch(); })) {
    running_ = false;
    requester_ = 0;
    refuse({ESHUTDOWN, "the broker is shutting down"});
  }
}

void UpgradeRunner::launch() {
  auto state = make_state_memfd(broker_.state_json());
  if (!state) {
    fail({state.error().value(), "cannot write the state memfd: " + state.error().message()});
    return;
  }
  std::vector<std::pair<std::string, int>> fds = broker_.successor_fds();
  fds.emplace_back("state.1", state->get());
  int pipe_fds[2];
  if (::pipe2(pipe_fds, O_CLOEXEC) < 0) {
    fail(os_failure("pipe", errno));
    return;
  }
  unique_fd ready_read(pipe_fds[0]);
  unique_fd ready_write(pipe_fds[1]);

  // The spawner (spawner.hpp) forks and execs the new broker, so that no
  // descriptor of this process (one queued behind a close that hangs, say) is
  // copied into it. Sent to it: the environment and arguments, and a channel on
  // which the descriptors follow once the child exists.
  std::vector<int> sources;
  std::vector<std::string> names;
  for (const auto& [name, fd] : fds) {
    names.push_back(name);
    sources.push_back(fd);
  }
  const int n = static_cast<int>(fds.size());
  sources.push_back(ready_write.get());  // lands at 3 + n, outside LISTEN_FDS
  const int m = n + 1;
  const std::string ready_prefix = std::string(upgrade_ready_env) + "=";
  std::vector<std::string> env_strings = environment_without_listen_fds(environ);
  std::erase_if(env_strings, [&](const std::string& e) { return e.rfind(ready_prefix, 0) == 0; });
  for (auto& var : listen_fds_variables(names)) env_strings.push_back(std::move(var));
  env_strings.push_back(ready_prefix + std::to_string(3 + n));
  // LISTEN_PID: added by the child, which knows its pid.
  std::vector<std::string> args = argv_;
  if (args.empty()) args.push_back(binary_);

  int pair[2];
  if (::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, pair) < 0) {
    fail(os_failure("socketpair", errno));
    return;
  }
  unique_fd channel(pair[0]);
  unique_fd channel_peer(pair[1]);
  if (int err =
          send_spawn_request(spawner_.get(), channel_peer.get(), binary_, args, env_strings, m)) {
    fail({err, std::string("cannot reach the spawner: ") + std::strerror(err)});
    return;
  }
  channel_peer.reset();
  // Its answer comes at once (it forks and reports): waited for here, briefly.
  auto deadline = Clock::now() + spawner_timeout;
  pid_t pid = -1;
  int fork_err = 0;
  while (pid < 0 && fork_err == 0) {
    auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
    pollfd pfd{spawner_.get(), POLLIN, 0};
    int r = left > 0 ? ::poll(&pfd, 1, static_cast<int>(left)) : 0;
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) {
      fail({ETIMEDOUT, "the spawner did not answer"});
      return;
    }
    SpawnerReport report;
    ssize_t got = ::recv(spawner_.get(), &report, sizeof report, 0);
    if (got != static_cast<ssize_t>(sizeof report)) {
      spawner_lost();
      fail({ESRCH, "the spawner process is gone"});
      return;
    }
    if (report.kind == 'P') {
      pid = report.pid;
    } else if (report.kind == 'F') {
      fork_err = report.value;
    } else {
      on_report(report);
    }
  }
  if (pid < 0) {
    fail({fork_err, std::string("the spawner cannot fork: ") + std::strerror(fork_err)});
    return;
  }
  child_ = pid;
  // The descriptors, at most max_fds_per_message a message; the child takes
  // them as they come. A send timeout, so that a child that stopped reading
  // does not hold the loop for long.
  timeval tv{static_cast<time_t>(spawner_timeout.count()), 0};
  ::setsockopt(channel.get(), SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  for (std::size_t i = 0; i < sources.size(); i += max_fds_per_message) {
    std::size_t k = std::min(max_fds_per_message, sources.size() - i);
    char byte = 'F';
    auto sent = try_sendfds(channel.get(), &byte, 1, sources.data() + i, k);
    if (!sent) {
      int err = sent.error().value();
      fail({err,
            std::string("sending the descriptors to the new fdbrokerd: ") + std::strerror(err)});
      return;
    }
  }
  channel.reset();
  ready_write.reset();  // the child's copy is the only writer: EOF when it dies
  ready_ = std::move(ready_read);
  spdlog::info("upgrade: started '{}' as pid {} with {} descriptors", binary_, pid, n);
  if (auto ec = loop_.watch(ready_.get(), EPOLLIN, [this](std::uint32_t) { on_ready_pipe(); })) {
    fail({ec.value(), "watching the readiness pipe: " + ec.message()});
    return;
  }
  timer_ = loop_.add_timer(Clock::now() + upgrade_timeout, [this] {
    timer_ = 0;
    fail({ETIMEDOUT, "the new fdbrokerd was not ready within " +
                         std::to_string(upgrade_timeout.count()) + " s"});
  });
}

void UpgradeRunner::on_ready_pipe() {
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
    spdlog::info("upgrade: pid {} is ready; leaving everything to it and exiting", pid);
    broker_.release_socket_file();
    if (requester_ != 0) broker_.reply_to(requester_, id_, "\"pid\":" + std::to_string(pid));
    if (successor_ready_) successor_ready_();
    return;
  }
  if (got == static_cast<ssize_t>(sizeof buf) && buf[0] == exec_failed_byte) {
    int err = 0;
    std::memcpy(&err, buf + 1, sizeof err);
    fail({err != 0 ? err : ENOEXEC, "cannot execute '" + binary_ + "': " + std::strerror(err)});
    return;
  }
  fail({ECHILD, "the new fdbrokerd ended before it was ready"});
}

void UpgradeRunner::fail(Failure failure) {
  std::string& message = failure.why;
  if (child_ > 0) {
    // The spawner reaps it and reports its end (on_report); one that waits in
    // the kernel (a FUSE close that does not return) ends later.
    ::kill(child_, SIGKILL);
    message += " (pid " + std::to_string(child_) + " killed)";
    child_ = -1;
  }
  if (timer_ != 0) loop_.cancel(timer_);
  timer_ = 0;
  if (ready_.valid()) {
    loop_.unwatch(ready_.get());
    ready_.reset();
  }
  spdlog::error("upgrade to '{}' failed: {}; carrying on", binary_, message);
  broker_.end_drain_for_successor();
  if (requester_ != 0) broker_.reply_to(requester_, id_, std::move(failure));
  running_ = false;
  requester_ = 0;
}

}  // namespace fdbroker::daemon
