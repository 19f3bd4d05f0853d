// SPDX-License-Identifier: LGPL-2.1-or-later
#include <fdbroker/error.hpp>
#include <fdbroker/listen_url.hpp>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cstddef>
#include <cstring>
#include <new>
#include <optional>
#include <string>

namespace fdbroker {
namespace {

std::optional<std::uint16_t> parse_port(std::string_view text) noexcept {
  if (text.empty() || text.size() > 5) return std::nullopt;
  unsigned value = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc{} || end != text.data() + text.size() || value > 65535) return std::nullopt;
  return static_cast<std::uint16_t>(value);
}

// Fills url.address for an inet URL whose host/port/family are set. False if the
// host is not a numeric address of that family.
bool fill_inet_address(ListenUrl& url) noexcept {
  if (url.family == AF_INET) {
    sockaddr_in sin{};
    sin.sin_family = AF_INET;
    sin.sin_port = htons(url.port);
    if (::inet_pton(AF_INET, url.host.c_str(), &sin.sin_addr) != 1) return false;
    std::memcpy(&url.address, &sin, sizeof sin);
    url.address_length = sizeof sin;
    return true;
  }
  sockaddr_in6 sin6{};
  sin6.sin6_family = AF_INET6;
  sin6.sin6_port = htons(url.port);
  if (::inet_pton(AF_INET6, url.host.c_str(), &sin6.sin6_addr) != 1) return false;
  // One spelling per address ("0:0::1" -> "::1"), so that URLs compare as text.
  char text[INET6_ADDRSTRLEN] = {};
  if (::inet_ntop(AF_INET6, &sin6.sin6_addr, text, sizeof text) != nullptr) url.host = text;
  std::memcpy(&url.address, &sin6, sizeof sin6);
  url.address_length = sizeof sin6;
  return true;
}

// "HOST:PORT" or "[HOST]:PORT" after tcp:// or tcp6://.
bool parse_inet(std::string_view rest, bool tcp6, ListenUrl& url) {
  auto colon = rest.rfind(':');
  if (colon == std::string_view::npos) return false;
  auto port = parse_port(rest.substr(colon + 1));
  if (!port) return false;
  std::string_view host = rest.substr(0, colon);
  bool bracketed = host.size() >= 2 && host.front() == '[' && host.back() == ']';
  if (bracketed) host = host.substr(1, host.size() - 2);
  // An unbracketed host may not contain ':' (an IPv6 address needs brackets, or the
  // port would be ambiguous).
  if (!bracketed && host.find(':') != std::string_view::npos) return false;

  url.port = *port;
  bool inet6 = tcp6 || bracketed;
  url.family = inet6 ? AF_INET6 : AF_INET;
  url.v6only = tcp6;
  if (host.empty() || host == "*") {
    url.host = inet6 ? "::" : "0.0.0.0";
  } else if (host == "localhost") {
    url.host = inet6 ? "::1" : "127.0.0.1";
  } else {
    url.host = std::string(host);
  }
  return fill_inet_address(url);
}

// A filesystem path (absolute or relative) or "@name" (abstract).
bool fill_unix(std::string_view path, ListenUrl& url) {
  if (path.empty() || (path.size() == 1 && path.front() == '@')) return false;
  sockaddr_un sun{};
  // sun_path needs room for the terminating NUL of a path; an abstract name uses
  // the leading NUL instead of '@' and is not terminated.
  if (path.size() >= sizeof sun.sun_path) return false;
  if (path.find('\0') != std::string_view::npos) return false;
  url.family = AF_UNIX;
  url.path = std::string(path);
  sun.sun_family = AF_UNIX;
  std::memcpy(sun.sun_path, path.data(), path.size());
  if (path.front() == '@') {
    sun.sun_path[0] = '\0';
    url.address_length = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + path.size());
  } else {
    url.address_length = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + path.size() + 1);
  }
  std::memcpy(&url.address, &sun, sizeof sun);
  return true;
}

bool parse_unix(std::string_view rest, ListenUrl& url) {
  // unix:///path is the same as unix:/path.
  if (rest.substr(0, 3) == "///") rest.remove_prefix(2);
  // A URL names absolute paths only: "unix:x.sock" is too easily a typo.
  if (rest.empty() || (rest.front() != '/' && rest.front() != '@')) return false;
  return fill_unix(rest, url);
}

bool parse(std::string_view text, ListenUrl& url) {
  if (text.substr(0, 6) == "tcp://") return parse_inet(text.substr(6), false, url);
  if (text.substr(0, 7) == "tcp6://") return parse_inet(text.substr(7), true, url);
  if (text.substr(0, 5) == "unix:") return parse_unix(text.substr(5), url);
  return false;
}

int set_int_option(int sock, int level, int option, int value) noexcept {
  return ::setsockopt(sock, level, option, &value, sizeof value);
}

// Whether the existing file at a unix path may be removed to bind there: only a
// socket file that refuses connections (ECONNREFUSED: nobody has it bound). A live
// listener answers otherwise whatever its type: it accepts, or its backlog is full (EAGAIN),
// or is of another type than the probe (EPROTOTYPE). connect() to a file that is
// not a socket is refused too, hence the lstat first. Returns 0 if removed, else
// the errno for the caller: EADDRINUSE (kept), EEXIST (not a socket).
int remove_stale_unix_socket(const ListenUrl& url) noexcept {
  struct stat st {};
  if (::lstat(url.path.c_str(), &st) < 0) return EADDRINUSE;
  if (!S_ISSOCK(st.st_mode)) return EEXIST;
  // Non-blocking: a live listener whose backlog is full answers EAGAIN at once
  // instead of holding the caller (the broker's event loop, at a reload) until it
  // accepts.
  unique_fd probe(::socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (!probe.valid()) return EADDRINUSE;
  if (::connect(probe.get(), reinterpret_cast<const sockaddr*>(&url.address), url.address_length) ==
          0 ||
      errno != ECONNREFUSED)
    return EADDRINUSE;
  if (::unlink(url.path.c_str()) < 0 && errno != ENOENT) return EADDRINUSE;
  return 0;
}

void create_parent_directories(const std::string& path) noexcept {
  for (std::size_t slash = path.find('/', 1); slash != std::string::npos;
       slash = path.find('/', slash + 1)) {
    // EEXIST and the like are fine; a real problem shows up at bind().
    ::mkdir(path.substr(0, slash).c_str(), 0755);
  }
}

// bind(), under options.bind_umask if set (restored whatever bind did).
int bind_with_umask(int sock, const ListenUrl& url, const BindOptions& options) noexcept {
  const auto* address = reinterpret_cast<const sockaddr*>(&url.address);
  if (!options.bind_umask) return ::bind(sock, address, url.address_length) < 0 ? errno : 0;
  mode_t old = ::umask(*options.bind_umask);
  int err = ::bind(sock, address, url.address_length) < 0 ? errno : 0;
  ::umask(old);
  return err;
}

}  // namespace

std::string ListenUrl::str() const {
  // "unix:///x" reads as "unix:/x": a path that starts with "///" itself needs
  // that form, with its own slashes behind it, to read back the same.
  if (family == AF_UNIX) return (path.compare(0, 3, "///") == 0 ? "unix://" : "unix:") + path;
  if (family == AF_INET) return "tcp://" + host + ":" + std::to_string(port);
  return std::string(v6only ? "tcp6" : "tcp") + "://[" + host + "]:" + std::to_string(port);
}

bool ListenUrl::wildcard_host() const noexcept {
  return (family == AF_INET && host == "0.0.0.0") || (family == AF_INET6 && host == "::");
}

result<ListenUrl> try_parse_listen_url(std::string_view text) noexcept {
  try {
    ListenUrl url;
    if (!parse(text, url)) return errno_code(EINVAL);
    return url;
  } catch (const std::bad_alloc&) {
    return errno_code(ENOMEM);
  }
}

std::string SocketUrl::str() const {
  std::string text = url.str();
  if (socket_type == SOCK_DGRAM && text.rfind("tcp", 0) == 0) text.replace(0, 3, "udp");
  return text;
}

result<SocketUrl> try_parse_socket_url(std::string_view text) noexcept {
  try {
    SocketUrl socket;
    std::string twin;
    if (text.substr(0, 6) == "udp://") {
      twin = "tcp://" + std::string(text.substr(6));
      socket.socket_type = SOCK_DGRAM;
    } else if (text.substr(0, 7) == "udp6://") {
      twin = "tcp6://" + std::string(text.substr(7));
      socket.socket_type = SOCK_DGRAM;
    } else {
      twin = std::string(text);
    }
    if (!parse(twin, socket.url)) return errno_code(EINVAL);
    // A datagram socket has no unix: form here ("udp://" is inet only).
    return socket;
  } catch (const std::bad_alloc&) {
    return errno_code(ENOMEM);
  }
}

SocketUrl parse_socket_url(std::string_view text) {
  auto url = try_parse_socket_url(text);
  if (!url.ok()) {
    throw std::system_error(url.error(), "bad socket URL '" + std::string(text) +
                                             "' (want tcp://HOST:PORT, tcp6://[ADDR]:PORT, "
                                             "udp://HOST:PORT, udp6://[ADDR]:PORT, unix:/PATH or "
                                             "unix:@NAME)");
  }
  return std::move(url).value();
}

result<ListenUrl> try_unix_listen_url(std::string_view path) noexcept {
  try {
    ListenUrl url;
    if (!fill_unix(path, url)) return errno_code(EINVAL);
    return url;
  } catch (const std::bad_alloc&) {
    return errno_code(ENOMEM);
  }
}

ListenUrl parse_listen_url(std::string_view text) {
  auto url = try_parse_listen_url(text);
  if (!url.ok()) {
    throw std::system_error(
        url.error(), "bad listen URL '" + std::string(text) +
                         "' (want tcp://HOST:PORT, tcp6://[ADDR]:PORT, unix:/PATH or unix:@NAME)");
  }
  return std::move(url).value();
}

result<unique_fd> try_bind_listener(const ListenUrl& url, const BindOptions& options) noexcept {
  if (url.family != AF_INET && url.family != AF_INET6 && url.family != AF_UNIX)
    return errno_code(EINVAL);
  const bool stream = options.socket_type == SOCK_STREAM;
  const bool listens = options.socket_type != SOCK_DGRAM;
  int type = options.socket_type | SOCK_CLOEXEC | (options.nonblocking ? SOCK_NONBLOCK : 0);
  unique_fd sock(::socket(url.family, type, 0));
  if (!sock.valid()) return errno_code(errno);

  if (url.family != AF_UNIX) {
    if (stream && set_int_option(sock.get(), SOL_SOCKET, SO_REUSEADDR, 1) < 0)
      return errno_code(errno);
    if (options.reuse_port && set_int_option(sock.get(), SOL_SOCKET, SO_REUSEPORT, 1) < 0)
      return errno_code(errno);
    if (url.family == AF_INET6 &&
        set_int_option(sock.get(), IPPROTO_IPV6, IPV6_V6ONLY, url.v6only ? 1 : 0) < 0)
      return errno_code(errno);
  }

  const bool unix_path = url.family == AF_UNIX && !url.path.empty() && url.path.front() != '@';
  if (unix_path && options.create_parent_directories) create_parent_directories(url.path);
  if (int err = bind_with_umask(sock.get(), url, options); err != 0) {
    if (err != EADDRINUSE || !unix_path) return errno_code(err);
    if (int kept = remove_stale_unix_socket(url); kept != 0) return errno_code(kept);
    if ((err = bind_with_umask(sock.get(), url, options)) != 0) return errno_code(err);
  }
  if (unix_path && options.unix_mode != 0 && ::chmod(url.path.c_str(), options.unix_mode) < 0)
    return errno_code(errno);
  if (unix_path &&
      (options.unix_owner != static_cast<uid_t>(-1) ||
       options.unix_group != static_cast<gid_t>(-1)) &&
      ::lchown(url.path.c_str(), options.unix_owner, options.unix_group) < 0)
    return errno_code(errno);
  if (listens && ::listen(sock.get(), options.backlog) < 0) return errno_code(errno);
  return sock;
}

unique_fd bind_listener(const ListenUrl& url, const BindOptions& options) {
  auto sock = try_bind_listener(url, options);
  if (!sock.ok()) throw std::system_error(sock.error(), "cannot listen on " + url.str());
  return std::move(sock).value();
}

result<ListenUrl> try_socket_listen_url(int sock) noexcept {
  try {
    sockaddr_storage address{};
    socklen_t length = sizeof address;
    if (::getsockname(sock, reinterpret_cast<sockaddr*>(&address), &length) < 0)
      return errno_code(errno);
    ListenUrl url;
    url.family = address.ss_family;
    std::memcpy(&url.address, &address, length);
    url.address_length = length;
    char text[INET6_ADDRSTRLEN] = {};
    if (address.ss_family == AF_INET) {
      const auto* sin = reinterpret_cast<const sockaddr_in*>(&address);
      ::inet_ntop(AF_INET, &sin->sin_addr, text, sizeof text);
      url.host = text;
      url.port = ntohs(sin->sin_port);
    } else if (address.ss_family == AF_INET6) {
      const auto* sin6 = reinterpret_cast<const sockaddr_in6*>(&address);
      ::inet_ntop(AF_INET6, &sin6->sin6_addr, text, sizeof text);
      url.host = text;
      url.port = ntohs(sin6->sin6_port);
      int v6only = 0;
      socklen_t len = sizeof v6only;
      if (::getsockopt(sock, IPPROTO_IPV6, IPV6_V6ONLY, &v6only, &len) == 0)
        url.v6only = v6only != 0;
    } else if (address.ss_family == AF_UNIX) {
      const auto* sun = reinterpret_cast<const sockaddr_un*>(&address);
      auto path_length = length - static_cast<socklen_t>(offsetof(sockaddr_un, sun_path));
      if (path_length > 0 && sun->sun_path[0] == '\0') {
        url.path = "@" + std::string(sun->sun_path + 1, path_length - 1);
      } else {
        url.path = std::string(sun->sun_path, ::strnlen(sun->sun_path, path_length));
      }
    } else {
      return errno_code(EAFNOSUPPORT);
    }
    return url;
  } catch (const std::bad_alloc&) {
    return errno_code(ENOMEM);
  }
}

bool socket_matches_url(int sock, const ListenUrl& wanted) noexcept {
  int value = 0;
  socklen_t len = sizeof value;
  if (::getsockopt(sock, SOL_SOCKET, SO_TYPE, &value, &len) < 0 || value != SOCK_STREAM)
    return false;
  len = sizeof value;
  if (::getsockopt(sock, SOL_SOCKET, SO_ACCEPTCONN, &value, &len) < 0 || value == 0) return false;
  auto actual = try_socket_listen_url(sock);
  if (!actual.ok() || actual->family != wanted.family) return false;
  if (wanted.family == AF_UNIX) return actual->path == wanted.path;
  if (wanted.port != 0 && actual->port != wanted.port) return false;
  // Compare binary addresses: text forms of one IPv6 address can differ.
  if (wanted.family == AF_INET) {
    return std::memcmp(&reinterpret_cast<const sockaddr_in*>(&actual->address)->sin_addr,
                       &reinterpret_cast<const sockaddr_in*>(&wanted.address)->sin_addr,
                       sizeof(in_addr)) == 0;
  }
  return std::memcmp(&reinterpret_cast<const sockaddr_in6*>(&actual->address)->sin6_addr,
                     &reinterpret_cast<const sockaddr_in6*>(&wanted.address)->sin6_addr,
                     sizeof(in6_addr)) == 0;
}

}  // namespace fdbroker
