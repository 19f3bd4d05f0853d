// SPDX-License-Identifier: LGPL-2.1-or-later
#include "fd_description.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstring>

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
    case O_RDONLY: return "r";
    case O_WRONLY: return "w";
    case O_RDWR: return "rw";
    default: return nullptr;  // O_PATH descriptors
  }
}

nlohmann::json family_name(int family) {
  switch (family) {
    case AF_UNIX: return "unix";
    case AF_INET: return "inet";
    case AF_INET6: return "inet6";
    case AF_NETLINK: return "netlink";
    case AF_PACKET: return "packet";
    case AF_VSOCK: return "vsock";
    default: return family;
  }
}

nlohmann::json type_name(int type) {
  switch (type) {
    case SOCK_STREAM: return "stream";
    case SOCK_DGRAM: return "dgram";
    case SOCK_SEQPACKET: return "seqpacket";
    case SOCK_RAW: return "raw";
    default: return type;
  }
}

int int_sockopt(int fd, int option) {
  int value = -1;
  socklen_t len = sizeof value;
  if (::getsockopt(fd, SOL_SOCKET, option, &value, &len) < 0) return -1;
  return value;
}

}  // namespace

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
      std::size_t path_len = len > offsetof(sockaddr_un, sun_path) ? len - offsetof(sockaddr_un, sun_path) : 0;
      if (path_len == 0) return "";
      if (un.sun_path[0] == '\0') return "@" + std::string(un.sun_path + 1, path_len - 1);
      return std::string(un.sun_path, strnlen(un.sun_path, path_len));
    }
    default:
      return "";
  }
}

nlohmann::json describe_fd(int fd) {
  nlohmann::json d = nlohmann::json::object();
  struct stat st {};
  if (::fstat(fd, &st) < 0) {
    d["kind"] = "other";
    return d;
  }
  if (S_ISSOCK(st.st_mode)) {
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
  std::string link = proc_link(fd);
  const char* access = access_of(fd);
  if (S_ISFIFO(st.st_mode)) {
    d["kind"] = "pipe";
    if (access != nullptr) d["access"] = access;
    return d;
  }
  if (S_ISDIR(st.st_mode)) {
    d["kind"] = "directory";
    d["path"] = link;
    return d;
  }
  constexpr std::string_view memfd_prefix = "/memfd:";
  if (S_ISREG(st.st_mode) && link.compare(0, memfd_prefix.size(), memfd_prefix) == 0) {
    d["kind"] = "memfd";
    std::string name = link.substr(memfd_prefix.size());
    constexpr std::string_view deleted = " (deleted)";
    if (name.size() >= deleted.size() && name.compare(name.size() - deleted.size(), deleted.size(), deleted) == 0) {
      name.resize(name.size() - deleted.size());
    }
    d["name"] = name;
    if (access != nullptr) d["access"] = access;
    return d;
  }
  if (S_ISREG(st.st_mode)) {
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
