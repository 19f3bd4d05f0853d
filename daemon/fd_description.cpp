// SPDX-License-Identifier: LGPL-2.1-or-later
#include "fd_description.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>

// Debian 12's glibc (2.36) declares statx(); these may be missing from older headers.
#ifndef AT_STATX_DONT_SYNC
#define AT_STATX_DONT_SYNC 0x4000
#endif
#ifndef STATX_MNT_ID
#define STATX_MNT_ID 0x1000U
#endif

namespace fdbroker::daemon {

namespace {

std::string proc_link(int fd) {
  char path[64];
  std::snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
  char target[4096];
  ssize_t n = ::readlink(path, target, sizeof target);
  if (n < 0) return {};
  return std::string(target, static_cast<std::size_t>(n));
}

const char* access_of(int fd) {
  int flags = ::fcntl(fd, F_GETFL);
  if (flags < 0) return nullptr;
  switch (flags & O_ACCMODE) {
    case O_RDONLY:
      return "r";
    case O_WRONLY:
      return "w";
    case O_RDWR:
      return "rw";
    default:
      return nullptr;  // O_PATH descriptors
  }
}

nlohmann::json family_name(int family) {
  switch (family) {
    case AF_UNIX:
      return "unix";
    case AF_INET:
      return "inet";
    case AF_INET6:
      return "inet6";
    case AF_NETLINK:
      return "netlink";
    case AF_PACKET:
      return "packet";
    case AF_VSOCK:
      return "vsock";
    default:
      return family;
  }
}

nlohmann::json type_name(int type) {
  switch (type) {
    case SOCK_STREAM:
      return "stream";
    case SOCK_DGRAM:
      return "dgram";
    case SOCK_SEQPACKET:
      return "seqpacket";
    case SOCK_RAW:
      return "raw";
    default:
      return type;
  }
}

// Reads a small /proc file whole (fdinfo, mountinfo: the kernel composes them
// from its own state, never from the file system behind the descriptor).
std::string read_proc(const char* path) {
  std::string text;
  int fd = ::open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return text;
  char buf[8192];
  for (;;) {
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    text.append(buf, static_cast<std::size_t>(n));
  }
  ::close(fd);
  return text;
}

std::optional<std::uint64_t> fdinfo_mount_id(int fd) {
  char path[64];
  std::snprintf(path, sizeof path, "/proc/self/fdinfo/%d", fd);
  std::string text = read_proc(path);
  std::size_t at = text.find("\nmnt_id:");
  if (at == std::string::npos) return std::nullopt;
  return std::strtoull(text.c_str() + at + 8, nullptr, 10);
}

// Files that live on no file system a user can mount: sockets, pipes, memfds,
// anonymous inodes (eventfd, epoll, pidfd, …: their link is not a path).
bool internal_file(const FdFacts& f) {
  if (f.has_mode && (S_ISSOCK(f.mode) || S_ISFIFO(f.mode))) return true;
  if (f.link.empty() || f.link[0] != '/') return true;
  return f.link.compare(0, 7, "/memfd:") == 0;
}

bool fuse_unless_known(const std::optional<std::string>& fstype, const FdFacts& f) {
  if (fstype) return is_fuse_type(*fstype);
  return f.dev_major == 0;  // an unknown file system on no block device could be FUSE
}

int int_sockopt(int fd, int option) {
  int value = -1;
  socklen_t len = sizeof value;
  if (::getsockopt(fd, SOL_SOCKET, option, &value, &len) < 0) return -1;
  return value;
}

}  // namespace

FdFacts probe_fd(int fd, Probe how) {
  FdFacts f;
  f.link = proc_link(fd);
  if (how != Probe::no_statx) {
    struct statx stx {};
    unsigned mask = STATX_TYPE | STATX_MODE | (how == Probe::statx ? STATX_MNT_ID : 0u);
    // AT_STATX_DONT_SYNC: what the kernel has cached, never a round trip to the
    // file system (FUSE's GETATTR), which fstat() would make.
    if (::statx(fd, "", AT_EMPTY_PATH | AT_STATX_DONT_SYNC, mask, &stx) == 0) {
      f.has_mode = (stx.stx_mask & STATX_TYPE) != 0;
      f.mode = stx.stx_mode;
      f.dev_major = stx.stx_dev_major;
      f.dev_minor = stx.stx_dev_minor;
      if (stx.stx_mask & STATX_MNT_ID) f.mount_id = stx.stx_mnt_id;  // Linux >= 5.8
      if (!f.mount_id) f.mount_id = fdinfo_mount_id(fd);
      return f;
    }
    if (errno != ENOSYS) return f;  // not a descriptor: nothing to tell
  }
  // No statx (Linux < 4.11): fstat is safe only where no FUSE file system is.
  f.mount_id = fdinfo_mount_id(fd);
  bool safe = f.link.empty() || f.link[0] != '/' || f.link.compare(0, 7, "/memfd:") == 0;
  if (!safe) {
    std::optional<std::string> type = mount_table().fstype(f.mount_id, 0, 0);
    safe = type && !is_fuse_type(*type);
  }
  struct stat st {};
  if (safe && ::fstat(fd, &st) == 0) {
    f.has_mode = true;
    f.mode = st.st_mode;
    f.dev_major = major(st.st_dev);
    f.dev_minor = minor(st.st_dev);
  }
  return f;
}

std::optional<std::uint64_t> mount_id_of(int fd) {
  struct statx stx {};
  if (::statx(fd, "", AT_EMPTY_PATH | AT_STATX_DONT_SYNC, STATX_MNT_ID, &stx) == 0 &&
      (stx.stx_mask & STATX_MNT_ID)) {
    return stx.stx_mnt_id;
  }
  return fdinfo_mount_id(fd);
}

bool is_fuse_type(std::string_view fstype) noexcept {
  return fstype == "fuse" || fstype == "fuseblk" || fstype.substr(0, 5) == "fuse.";
}

void MountTable::load(std::string_view mountinfo) {
  by_id_.clear();
  by_dev_.clear();
  // "36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw,errors=continue"
  while (!mountinfo.empty()) {
    std::size_t eol = mountinfo.find('\n');
    std::string_view line = mountinfo.substr(0, eol);
    mountinfo = eol == std::string_view::npos ? std::string_view() : mountinfo.substr(eol + 1);
    std::size_t dash = line.find(" - ");
    if (dash == std::string_view::npos) continue;
    std::string_view type = line.substr(dash + 3);
    type = type.substr(0, type.find(' '));
    unsigned long long id = 0;
    unsigned major_no = 0, minor_no = 0;
    std::string head(line.substr(0, dash));
    if (std::sscanf(head.c_str(), "%llu %*u %u:%u", &id, &major_no, &minor_no) != 3) continue;
    by_id_[id] = std::string(type);
    by_dev_[(std::uint64_t{major_no} << 32) | minor_no] = std::string(type);
  }
  read_ = true;
  read_at_ = std::chrono::steady_clock::now();
}

void MountTable::reread() {
  auto now = std::chrono::steady_clock::now();
  if (read_ && now - read_at_ < std::chrono::seconds(1)) return;
  load(read_proc("/proc/self/mountinfo"));
}

std::optional<std::string> MountTable::fstype(std::optional<std::uint64_t> mount_id,
                                              std::uint32_t major_no, std::uint32_t minor_no) {
  std::uint64_t dev = (std::uint64_t{major_no} << 32) | minor_no;
  bool by_dev = major_no != 0 || minor_no != 0;
  for (int attempt = 0; attempt < 2; ++attempt) {
    if (mount_id) {
      if (auto it = by_id_.find(*mount_id); it != by_id_.end()) return it->second;
    }
    if (by_dev) {
      if (auto it = by_dev_.find(dev); it != by_dev_.end()) return it->second;
    }
    if (attempt == 0) reread();
  }
  return std::nullopt;
}

MountTable& mount_table() {
  static MountTable table;
  return table;
}

std::string fuse_reason(int fd, MountTable& mounts, Probe how) {
  return fuse_reason(probe_fd(fd, how), mounts);
}

std::string fuse_reason(const FdFacts& f, MountTable& mounts) {
  if (internal_file(f)) return {};
  std::optional<std::string> type = mounts.fstype(f.mount_id, f.dev_major, f.dev_minor);
  if (!fuse_unless_known(type, f)) return {};
  if (type) return *type;
  return "unknown file system on device " + std::to_string(f.dev_major) + ":" +
         std::to_string(f.dev_minor);
}

std::string format_sockaddr(const sockaddr_storage& addr, socklen_t len) {
  char host[INET6_ADDRSTRLEN];
  switch (addr.ss_family) {
    case AF_INET: {
      const auto& in = reinterpret_cast<const sockaddr_in&>(addr);
      ::inet_ntop(AF_INET, &in.sin_addr, host, sizeof host);
      return std::string(host) + ":" + std::to_string(ntohs(in.sin_port));
    }
    case AF_INET6: {
      const auto& in6 = reinterpret_cast<const sockaddr_in6&>(addr);
      ::inet_ntop(AF_INET6, &in6.sin6_addr, host, sizeof host);
      return "[" + std::string(host) + "]:" + std::to_string(ntohs(in6.sin6_port));
    }
    case AF_UNIX: {
      const auto& un = reinterpret_cast<const sockaddr_un&>(addr);
      std::size_t path_len =
          len > offsetof(sockaddr_un, sun_path) ? len - offsetof(sockaddr_un, sun_path) : 0;
      if (path_len == 0) return "";
      if (un.sun_path[0] == '\0') return "@" + std::string(un.sun_path + 1, path_len - 1);
      return std::string(un.sun_path, strnlen(un.sun_path, path_len));
    }
    default:
      return "";
  }
}

nlohmann::json describe_fd(int fd, Probe how) { return describe_fd(fd, probe_fd(fd, how)); }

nlohmann::json describe_fd(int fd, const FdFacts& facts) {
  nlohmann::json d = nlohmann::json::object();
  if (!facts.has_mode) {
    d["kind"] = "other";
    if (!facts.link.empty()) d["path"] = facts.link;
    if (const char* access = access_of(fd)) d["access"] = access;
    return d;
  }
  if (S_ISSOCK(facts.mode)) {
    d["kind"] = "socket";
    int family = int_sockopt(fd, SO_DOMAIN);
    d["family"] = family_name(family);
    d["type"] = type_name(int_sockopt(fd, SO_TYPE));
    d["listening"] = int_sockopt(fd, SO_ACCEPTCONN) == 1;
    sockaddr_storage addr{};
    socklen_t len = sizeof addr;
    if (::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0) {
      d["local"] = format_sockaddr(addr, len);
    } else {
      d["local"] = "";
    }
    return d;
  }
  const std::string& link = facts.link;
  const char* access = access_of(fd);
  if (S_ISFIFO(facts.mode)) {
    d["kind"] = "pipe";
    if (access != nullptr) d["access"] = access;
    return d;
  }
  if (S_ISDIR(facts.mode)) {
    d["kind"] = "directory";
    d["path"] = link;
    return d;
  }
  constexpr std::string_view memfd_prefix = "/memfd:";
  if (S_ISREG(facts.mode) && link.compare(0, memfd_prefix.size(), memfd_prefix) == 0) {
    d["kind"] = "memfd";
    std::string name = link.substr(memfd_prefix.size());
    constexpr std::string_view deleted = " (deleted)";
    if (name.size() >= deleted.size() &&
        name.compare(name.size() - deleted.size(), deleted.size(), deleted) == 0) {
      name.resize(name.size() - deleted.size());
    }
    d["name"] = name;
    if (access != nullptr) d["access"] = access;
    return d;
  }
  if (S_ISREG(facts.mode)) {
    d["kind"] = "file";
    d["path"] = link;
    if (access != nullptr) d["access"] = access;
    return d;
  }
  d["kind"] = "other";
  d["path"] = link;
  if (access != nullptr) d["access"] = access;
  return d;
}

}  // namespace fdbroker::daemon
