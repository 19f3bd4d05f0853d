// SPDX-License-Identifier: LGPL-2.1-or-later
// The listen-URL parser (lib/src/listen_url.cpp), on any text a user gives
// (fdbrokerctl put --listen, the handoff API).
//
// Invariants:
//  - try_parse_listen_url never throws (noexcept) and fails only with EINVAL or
//    ENOMEM; parse_listen_url throws only std::system_error;
//  - a parsed URL is of one family, with an address of that family ready for
//    bind() (length within sockaddr_storage, no NUL inside a unix path);
//  - its canonical form str() parses back to the same URL, byte for byte;
//  - try_parse_socket_url agrees: a listen URL as a stream socket, udp:// and
//    udp6:// as their tcp twins' addresses with a datagram socket.
#include <netinet/in.h>
#include <sys/un.h>

#include <cerrno>
#include <cstring>
#include <fdbroker/listen_url.hpp>
#include <stdexcept>
#include <string>
#include <utility>

#include "fuzz_check.hpp"

using fdbroker::ListenUrl;

namespace {

bool same_url(const ListenUrl& a, const ListenUrl& b) {
  return a.family == b.family && a.host == b.host && a.port == b.port && a.v6only == b.v6only &&
         a.path == b.path && a.address_length == b.address_length &&
         std::memcmp(&a.address, &b.address, a.address_length) == 0;
}

void check_url(const ListenUrl& url) {
  FUZZ_CHECK(url.address_length > 0 && url.address_length <= sizeof(sockaddr_storage),
             "an address length within sockaddr_storage");
  FUZZ_CHECK(url.address.ss_family == url.family, "the address is of the URL's family");
  switch (url.family) {
    case AF_INET:
      FUZZ_CHECK(url.address_length == sizeof(sockaddr_in) && url.path.empty() && !url.v6only,
                 "inet");
      break;
    case AF_INET6:
      FUZZ_CHECK(url.address_length == sizeof(sockaddr_in6) && url.path.empty(), "inet6");
      break;
    case AF_UNIX:
      FUZZ_CHECK(!url.path.empty() && url.path.size() < sizeof(sockaddr_un::sun_path),
                 "a unix path fits");
      FUZZ_CHECK(url.path.find('\0') == std::string::npos, "no NUL in a unix path");
      FUZZ_CHECK(url.path.front() == '/' || url.path.front() == '@',
                 "a unix path or an abstract name");
      FUZZ_CHECK(url.host.empty() && url.port == 0, "unix");
      break;
    default:
      FUZZ_CHECK(false, "a known family");
  }
}

// try_parse_socket_url: a listen URL as it is (stream), udp:// and udp6:// as
// their tcp twins (datagram), nothing else.
void check_socket_url(std::string_view text) {
  auto socket = fdbroker::try_parse_socket_url(text);
  std::string twin(text);
  int type = SOCK_STREAM;
  for (auto [udp, tcp] : {std::pair<std::string_view, std::string_view>{"udp://", "tcp://"},
                          {"udp6://", "tcp6://"}}) {
    if (text.substr(0, udp.size()) == udp) {
      twin = std::string(tcp) + std::string(text.substr(udp.size()));
      type = SOCK_DGRAM;
    }
  }
  auto listen = fdbroker::try_parse_listen_url(twin);
  FUZZ_CHECK(socket.ok() == listen.ok(), "a socket URL parses where its twin does");
  if (!socket.ok()) {
    FUZZ_CHECK(socket.error() == listen.error(), "the same errno");
    return;
  }
  FUZZ_CHECK(socket.value().socket_type == type, "udp is a datagram socket, the rest stream");
  FUZZ_CHECK(same_url(socket.value().url, listen.value()), "the twin's address");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string_view text = fuzz::as_text(data, size);
  check_socket_url(text);
  auto url = fdbroker::try_parse_listen_url(text);
  if (!url.ok()) {
    FUZZ_CHECK(url.error().value() == EINVAL || url.error().value() == ENOMEM, "EINVAL or ENOMEM");
    try {
      (void)fdbroker::parse_listen_url(text);
      FUZZ_CHECK(false, "parse_listen_url throws where try_parse_listen_url fails");
    } catch (const std::system_error& e) {
      FUZZ_CHECK(e.code().value() == url.error().value(), "the same errno");
    }
    return 0;
  }
  check_url(*url);
  FUZZ_CHECK(same_url(*url, fdbroker::parse_listen_url(text)), "both parsers agree");
  std::string canonical = url->str();
  auto again = fdbroker::try_parse_listen_url(canonical);
  FUZZ_CHECK(again.ok(), "the canonical form parses");
  FUZZ_CHECK(same_url(*url, *again), "the canonical form parses to the same URL");
  FUZZ_CHECK(again->str() == canonical, "the canonical form is stable");
  return 0;
}
