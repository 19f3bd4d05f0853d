// SPDX-License-Identifier: LGPL-2.1-or-later
#include <fdbroker/error.hpp>
#include <fdbroker/listen_fds.hpp>

#include <fcntl.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <climits>
#include <cstring>
#include <new>
#include <string>

namespace fdbroker {
namespace {

template <class Int>
bool parse_decimal(const char* text, Int& ret_value) noexcept {
  std::string_view view(text);
  Int value{};
  auto [end, ec] = std::from_chars(view.data(), view.data() + view.size(), value);
  if (view.empty() || ec != std::errc{} || end != view.data() + view.size()) return false;
  ret_value = value;
  return true;
}

}  // namespace

result<std::vector<InheritedFd>> parse_listen_fds(const char* listen_pid, const char* listen_fds,
                                                  const char* listen_fdnames, pid_t self) noexcept {
  try {
    std::vector<InheritedFd> out;
    if (listen_pid == nullptr || listen_fds == nullptr) return out;
    pid_t pid = 0;
    if (!parse_decimal(listen_pid, pid) || pid <= 0) return errno_code(EINVAL);
    // Meant for another process (our parent, before it spawned us): not ours.
    if (pid != self) return out;
    int count = 0;
    if (!parse_decimal(listen_fds, count) || count < 0 || count > INT_MAX - listen_fds_start)
      return errno_code(EINVAL);
    // The fds are 3..3+count-1 of this process: a count past its hard limit on open
    // files cannot be true, and would only make us allocate (LISTEN_FDS=2000000000).
    rlimit nofile{};
    if (::getrlimit(RLIMIT_NOFILE, &nofile) == 0 && nofile.rlim_max != RLIM_INFINITY &&
        static_cast<rlim_t>(count) + listen_fds_start > nofile.rlim_max)
      return errno_code(EINVAL);

    std::vector<std::string> names;
    if (listen_fdnames != nullptr) {
      std::string_view rest(listen_fdnames);
      // "" is one empty name, as systemd splits it.
      for (;;) {
        auto colon = rest.find(':');
        names.emplace_back(rest.substr(0, colon));
        if (colon == std::string_view::npos) break;
        rest.remove_prefix(colon + 1);
      }
      if (count == 0 && names.size() == 1 && names.front().empty()) names.clear();
      if (names.size() != static_cast<std::size_t>(count)) return errno_code(EINVAL);
    }
    out.reserve(static_cast<std::size_t>(count));
    for (int i = 0; i < count; ++i) {
      out.push_back(InheritedFd{listen_fds_start + i, names.empty() ? "unknown" : names[i]});
    }
    return out;
  } catch (const std::bad_alloc&) {
    return errno_code(ENOMEM);
  }
}

InheritedFds::InheritedFds(std::vector<InheritedFd> fds) : fds_(std::move(fds)) {}

InheritedFds::~InheritedFds() {
  for (auto& inherited : fds_) unique_fd closer(inherited.fd);
}

InheritedFds InheritedFds::from_environment() {
  auto parsed = parse_listen_fds(::getenv("LISTEN_PID"), ::getenv("LISTEN_FDS"),
                                 ::getenv("LISTEN_FDNAMES"), ::getpid());
  if (!parsed.ok()) throw std::system_error(parsed.error(), "LISTEN_PID/LISTEN_FDS/LISTEN_FDNAMES");
  auto fds = std::move(parsed).value();
  for (const auto& inherited : fds) {
    // Inherited fds come without CLOEXEC (they crossed an exec); mark them now, so
    // none leaks into a program this process starts. Like sd_listen_fds().
    int flags = ::fcntl(inherited.fd, F_GETFD);
    if (flags < 0 || ::fcntl(inherited.fd, F_SETFD, flags | FD_CLOEXEC) < 0) {
      throw std::system_error(
          errno, std::system_category(),
          "inherited fd " + std::to_string(inherited.fd) + " ('" + inherited.name + "')");
    }
  }
  return InheritedFds(std::move(fds));
}

std::optional<unique_fd> InheritedFds::take(std::string_view name) {
  std::lock_guard lock(mutex_);
  for (auto it = fds_.begin(); it != fds_.end(); ++it) {
    if (it->name == name) {
      unique_fd fd(it->fd);
      fds_.erase(it);
      return fd;
    }
  }
  return std::nullopt;
}

std::vector<InheritedFd> InheritedFds::remaining() const {
  std::lock_guard lock(mutex_);
  return fds_;
}

InheritedFds& inherited_fds() {
  // A function-local static: initialised once, thread-safely, on first use.
  static InheritedFds fds = InheritedFds::from_environment();
  return fds;
}

void unset_listen_environment() {
  (void)inherited_fds();
  ::unsetenv("LISTEN_PID");
  ::unsetenv("LISTEN_FDS");
  ::unsetenv("LISTEN_FDNAMES");
}

std::vector<std::string> listen_fds_variables(const std::vector<std::string>& names) {
  std::string joined;
  for (const auto& name : names) {
    if (!joined.empty()) joined += ':';
    joined += name;
  }
  return {"LISTEN_FDS=" + std::to_string(names.size()), "LISTEN_FDNAMES=" + joined};
}

std::string listen_pid_variable(pid_t pid) { return "LISTEN_PID=" + std::to_string(pid); }

std::vector<std::string> environment_without_listen_fds(const char* const* environment) {
  std::vector<std::string> out;
  for (const char* const* e = environment; e != nullptr && *e != nullptr; ++e) {
    std::string_view var(*e);
    if (var.rfind("LISTEN_PID=", 0) == 0 || var.rfind("LISTEN_FDS=", 0) == 0 ||
        var.rfind("LISTEN_FDNAMES=", 0) == 0)
      continue;
    out.emplace_back(var);
  }
  return out;
}

std::error_code try_place_listen_fds(std::vector<unique_fd>& fds) noexcept {
  const int count = static_cast<int>(fds.size());
  const int first_free = listen_fds_start + count;
  // An fd may already sit where another must go: move every misplaced one above
  // the range first (close-on-exec), then dup2 each into place. dup2 leaves the
  // copy without FD_CLOEXEC, which is what passes it on.
  for (int i = 0; i < count; ++i) {
    auto& fd = fds[static_cast<std::size_t>(i)];
    if (fd.get() == listen_fds_start + i) continue;
    unique_fd high(::fcntl(fd.get(), F_DUPFD_CLOEXEC, first_free));
    if (!high.valid()) return std::error_code(errno, std::system_category());
    fd = std::move(high);
  }
  for (int i = 0; i < count; ++i) {
    auto& fd = fds[static_cast<std::size_t>(i)];
    const int target = listen_fds_start + i;
    if (fd.get() == target) {
      int flags = ::fcntl(target, F_GETFD);
      if (flags < 0 || ::fcntl(target, F_SETFD, flags & ~FD_CLOEXEC) < 0)
        return std::error_code(errno, std::system_category());
      continue;
    }
    if (::dup2(fd.get(), target) < 0) return std::error_code(errno, std::system_category());
    fd.reset(target);  // closes the high copy; the vector owns the placed one
  }
  return {};
}

void set_listen_environment(const std::vector<std::string>& names) {
  auto vars = listen_fds_variables(names);
  vars.push_back(listen_pid_variable(::getpid()));
  for (const auto& var : vars) {
    auto equals = var.find('=');
    ::setenv(var.substr(0, equals).c_str(), var.c_str() + equals + 1, 1);
  }
}

}  // namespace fdbroker
