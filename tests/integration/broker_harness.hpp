// SPDX-License-Identifier: LGPL-2.1-or-later
// A real fdbrokerd for integration tests: started from $FDBROKERD (set by CMake)
// on a socket in a fresh temp directory, with a config written from the test, and
// ready once it sent READY=1 to a notify socket the test holds (as under systemd).
// Plus raw protocol helpers: one JSON request out, one reply (with fds) back.
#pragma once

#include <dirent.h>
#include <fcntl.h>
#include <grp.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <fdbroker/scm_rights.hpp>
#include <fdbroker/unique_fd.hpp>
#include <filesystem>
#include <fstream>
#include <functional>
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "test_util.hpp"

namespace fdbroker::test {

using nlohmann::json;

inline std::size_t fd_count_of(pid_t pid) {
  std::string path = "/proc/" + std::to_string(pid) + "/fd";
  DIR* dir = ::opendir(path.c_str());
  if (dir == nullptr) return 0;
  std::size_t n = 0;
  while (const dirent* e = ::readdir(dir)) {
    if (e->d_name[0] != '.') ++n;
  }
  ::closedir(dir);
  return n;
}

// One reply: the parsed JSON and the descriptors that came with it.
struct Reply {
  json body;
  std::vector<unique_fd> fds;
  std::string raw;
  [[nodiscard]] bool ok() const { return body.value("ok", false); }
  [[nodiscard]] std::string error() const { return body.value("error", std::string()); }
};

// Receives one reply (blocking, with a timeout). Throws on timeout or EOF.
inline Reply receive(int sock, int timeout_ms = 5000) {
  pollfd pfd{sock, POLLIN, 0};
  if (::poll(&pfd, 1, timeout_ms) != 1) throw std::runtime_error("no reply within timeout");
  auto m = recvfds(sock, 65536 + 1, 253);
  if (m.empty()) throw std::runtime_error("connection closed by the broker");
  Reply r;
  r.raw = m.payload;
  r.body = json::parse(m.payload);
  r.fds = std::move(m.fds);
  return r;
}

inline void send_raw(int sock, std::string_view payload, const std::vector<int>& fds = {}) {
  sendfds(sock, payload, fds);
}

inline Reply call_raw(int sock, std::string_view payload, const std::vector<int>& fds = {}) {
  send_raw(sock, payload, fds);
  return receive(sock);
}

inline Reply call(int sock, const json& request, const std::vector<int>& fds = {}) {
  return call_raw(sock, request.dump(), fds);
}

// True if nothing arrives on `sock` within `ms`.
inline bool silent_for(int sock, int ms) {
  pollfd pfd{sock, POLLIN, 0};
  return ::poll(&pfd, 1, ms) == 0;
}

class BrokerProcess {
 public:
  // `config` is completed with the socket path (unless it sets one) and written to
  // a file; `env` entries ("K=V") are added to the broker's environment.
  explicit BrokerProcess(json config = json::object(), std::vector<std::string> args = {}) {
    char tmpl[] = "/tmp/fdbrokerd-test-XXXXXX";
    if (::mkdtemp(tmpl) == nullptr) throw std::runtime_error("mkdtemp");
    dir_ = tmpl;
    ::chmod(dir_.c_str(), 0755);  // tests connect as other users too
    socket_ = dir_ + "/broker.sock";
    config_path_ = dir_ + "/fdbroker.json";
    if (!config.contains("socket")) config["socket"] = {{"path", socket_}, {"mode", "0666"}};
    if (!config.contains("log_level")) config["log_level"] = "warning";
    write_config(config);
    args_ = std::move(args);
    start();
  }

  ~BrokerProcess() {
    if (pid_ > 0) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
    }
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }

  BrokerProcess(const BrokerProcess&) = delete;
  BrokerProcess& operator=(const BrokerProcess&) = delete;

  void write_config(const json& config) { std::ofstream(config_path_) << config.dump(2); }
  void write_config_text(const std::string& text) { std::ofstream(config_path_) << text; }

  [[nodiscard]] const std::string& socket_path() const { return socket_; }
  [[nodiscard]] const std::string& dir() const { return dir_; }
  [[nodiscard]] pid_t pid() const { return pid_; }
  [[nodiscard]] std::size_t fd_count() const { return fd_count_of(pid_); }

  // The lowest fd number the broker does not use: an RLIMIT_NOFILE soft limit of
  // exactly this makes its next fd allocation fail with EMFILE.
  [[nodiscard]] rlim_t lowest_free_fd() const {
    std::vector<bool> used(65536);
    std::string path = "/proc/" + std::to_string(pid_) + "/fd";
    if (DIR* dir = ::opendir(path.c_str())) {
      while (const dirent* e = ::readdir(dir)) {
        if (e->d_name[0] != '.') used[std::stoul(e->d_name) % used.size()] = true;
      }
      ::closedir(dir);
    }
    rlim_t k = 0;
    while (used[k]) ++k;
    return k;
  }

  // Waits until the broker holds `expected` fds (it closes a client's socket when
  // it notices the hang-up, which is asynchronous to the test).
  [[nodiscard]] ::testing::AssertionResult settles_at(std::size_t expected,
                                                      int timeout_ms = 3000) const {
    auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
    std::size_t now = fd_count();
    while (now != expected && std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
      now = fd_count();
    }
    if (now == expected) return ::testing::AssertionSuccess();
    return ::testing::AssertionFailure() << "broker holds " << now << " fds, expected " << expected;
  }

  // A new connection to the broker (blocking socket).
  [[nodiscard]] unique_fd connect() const {
    unique_fd s(::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0));
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::strncpy(addr.sun_path, socket_.c_str(), sizeof addr.sun_path - 1);
    if (::connect(s.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) < 0) {
      throw std::system_error(errno, std::system_category(), "connect " + socket_);
    }
    return s;
  }

  // Sends `signo` and, for SIGHUP, waits for the READY=1 that ends the reload.
  void reload() {
    ::kill(pid_, SIGHUP);
    wait_notify("READY=1");
    settle();
  }

  // sd_notify() closes its socket just after sending: wait until it has, so that
  // fd counts taken now are stable.
  void settle() const { std::this_thread::sleep_for(std::chrono::milliseconds(20)); }

  // SIGTERM, then the exit status (or -1 on timeout).
  int terminate(int timeout_ms = 5000) {
    ::kill(pid_, SIGTERM);
    return wait_exit(timeout_ms);
  }

  int wait_exit(int timeout_ms) {
    auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
    while (std::chrono::steady_clock::now() < deadline) {
      int status = 0;
      pid_t r = ::waitpid(pid_, &status, WNOHANG);
      if (r == pid_) {
        pid_ = -1;
        return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    return -1;
  }

  // Waits for a notify message containing `what`; returns every message seen.
  std::string wait_notify(const std::string& what, int timeout_ms = 5000) {
    std::string seen;
    auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
    for (;;) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
                      deadline - std::chrono::steady_clock::now())
                      .count();
      if (left <= 0) throw std::runtime_error("no '" + what + "' from the broker; saw: " + seen);
      pollfd pfd{notify_.get(), POLLIN, 0};
      if (::poll(&pfd, 1, static_cast<int>(left)) != 1) continue;
      char buf[4096];
      ssize_t n = ::recv(notify_.get(), buf, sizeof buf, 0);
      if (n <= 0) continue;
      std::string msg(buf, static_cast<std::size_t>(n));
      seen += msg + "|";
      if (msg.find(what) != std::string::npos) return seen;
    }
  }

 private:
  void start() {
    // $FDBROKERD wins (to test an installed binary); else the one CMake built.
    const char* binary = std::getenv("FDBROKERD");
    if (binary == nullptr) binary = FDBROKERD_PATH;
    std::string notify_path = dir_ + "/notify.sock";
    notify_.reset(::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0));
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::strncpy(addr.sun_path, notify_path.c_str(), sizeof addr.sun_path - 1);
    if (::bind(notify_.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) < 0) {
      throw std::runtime_error("bind notify socket");
    }
    std::vector<std::string> argv_s = {binary, "--config", config_path_};
    for (auto& a : args_) argv_s.push_back(a);
    pid_ = ::fork();
    if (pid_ == 0) {
      std::vector<char*> argv;
      for (auto& a : argv_s) argv.push_back(a.data());
      argv.push_back(nullptr);
      ::setenv("NOTIFY_SOCKET", notify_path.c_str(), 1);
      ::unsetenv("JOURNAL_STREAM");
      ::execv(binary, argv.data());
      ::_exit(127);
    }
    wait_notify("READY=1");
    settle();
  }

  std::string dir_, socket_, config_path_;
  std::vector<std::string> args_;
  unique_fd notify_;
  pid_t pid_ = -1;
};

// A connection the broker has accepted and answered (a hello), so that a baseline of
// its descriptors taken afterwards counts it. Throws if the hello is not answered.
inline unique_fd connect_answered(const BrokerProcess& broker) {
  auto c = broker.connect();
  auto hello = call(c.get(), {{"op", "hello"}});
  if (!hello.ok()) throw std::runtime_error("hello not answered: " + hello.raw);
  return c;
}

// Expects each field of `expected` in the object `got`, with the same value (other
// fields of `got` are not looked at).
inline void expect_fields(const json& got, const json& expected) {
  for (const auto& [key, value] : expected.items()) {
    EXPECT_EQ(got.value(key, json()), value) << key << " in " << got.dump();
  }
}

// Puts a new pipe's write end as `name`, expecting the broker to refuse it with
// `error` and to close the descriptor it refused: the pipe reaches EOF once our own
// write end is closed.
inline void expect_put_refused(int sock, const std::string& name, const std::string& error) {
  auto p = pipe_pair();
  auto refused = call(sock, {{"op", "put"}, {"name", name}}, {p.write.get()});
  EXPECT_EQ(refused.error(), error) << refused.raw;
  p.write.reset();
  EXPECT_TRUE(reaches_eof(p.read.get())) << "the refused descriptor of '" << name << "'";
}

// Runs `body` in a child process with the given identity (the test runs as
// root) and returns what it returned: "" for success, else a description of the
// first failure. The child connects to the broker itself, after dropping privileges,
// so the broker sees the new identity through SO_PEERCRED.
inline std::string as_user(uid_t uid, gid_t gid, const std::vector<gid_t>& groups,
                           const std::function<std::string()>& body) {
  int p[2];
  if (::pipe2(p, O_CLOEXEC) < 0) return "pipe2 failed";
  pid_t pid = ::fork();
  if (pid == 0) {
    ::close(p[0]);
    std::string result;
    if (::setgroups(groups.size(), groups.data()) < 0 || ::setresgid(gid, gid, gid) < 0 ||
        ::setresuid(uid, uid, uid) < 0) {
      result = "dropping privileges failed";
    } else {
      try {
        result = body();
      } catch (const std::exception& e) {
        result = std::string("exception: ") + e.what();
      }
    }
    (void)!::write(p[1], result.data(), result.size());
    ::_exit(0);
  }
  ::close(p[1]);
  std::string result;
  char buf[1024];
  ssize_t n;
  while ((n = ::read(p[0], buf, sizeof buf)) > 0) result.append(buf, static_cast<std::size_t>(n));
  ::close(p[0]);
  int status = 0;
  ::waitpid(pid, &status, 0);
  return result;
}

// For bodies of as_user(): "" if the reply has the expected error ("" = ok).
inline std::string expect_outcome(const Reply& r, const std::string& expected,
                                  const std::string& what) {
  std::string got = r.ok() ? "" : r.error();
  if (got == expected) return "";
  return what + ": expected " + (expected.empty() ? "ok" : expected) + ", got " + r.raw + "; ";
}

// One connection of a child that as_user_expect() runs: each expect() sends a request
// and notes, in failures(), a reply that did not come out as expected.
class Expectations {
 public:
  explicit Expectations(const BrokerProcess& broker) : sock_(broker.connect()) {}
  [[nodiscard]] int sock() const { return sock_.get(); }
  // Sends `request` with `fds` attached; the reply must carry `error` ("" = ok).
  Reply expect(const json& request, const std::string& error, const std::string& what,
               const std::vector<int>& fds = {}) {
    Reply r = call(sock_.get(), request, fds);
    failures_ += expect_outcome(r, error, what);
    return r;
  }
  // A put of a pipe's write end (this connection's own pipe) as `name`.
  Reply put(const std::string& name, const std::string& error, const std::string& what) {
    return expect({{"op", "put"}, {"name", name}}, error, what, {pipe_.write.get()});
  }
  void fail(const std::string& what) { failures_ += what + "; "; }
  [[nodiscard]] const std::string& failures() const { return failures_; }

 private:
  unique_fd sock_;
  Pipe pipe_ = pipe_pair();
  std::string failures_;
};

// as_user() with a connection made after dropping privileges: `steps` makes its
// requests through it. Returns "" if every reply came as expected, else what did not.
inline std::string as_user_expect(const BrokerProcess& broker, uid_t uid, gid_t gid,
                                  const std::vector<gid_t>& groups,
                                  const std::function<void(Expectations&)>& steps) {
  return as_user(uid, gid, groups, [&] {
    Expectations e(broker);
    steps(e);
    return e.failures();
  });
}

}  // namespace fdbroker::test
