// SPDX-License-Identifier: LGPL-2.1-or-later
// The "bind" rules: which peers may have the broker create and bind which TCP
// and UDP sockets, and the decision for one `bind` request. Root and the
// broker's own uid are not exempt: only a rule grants.
#pragma once

#include <fdbroker/listen_url.hpp>

#include <sys/socket.h>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "failure.hpp"
#include "principals.hpp"

namespace fdbroker::daemon {

struct ClientIdentity;  // policy.hpp

struct BindRule {
  std::string name;                 // reported in replies and logs
  int socket_type = SOCK_STREAM;    // SOCK_STREAM: tcp://, tcp6://; SOCK_DGRAM: udp://, udp6://
  std::optional<std::string> host;  // numeric and normalized ("::1"); nullopt: "*"
  // With a host: its family. Without: AF_UNSPEC for "*" with tcp:// or udp://
  // (any address of either family), AF_INET6 for tcp6://* or udp6://* (any IPv6
  // address).
  int family = AF_UNSPEC;
  // Written with tcp6:// or udp6://: an IPv6-only socket. Such a rule does not
  // allow a dual-stack bind of "::" (which takes IPv4's wildcard too).
  bool v6only = false;
  std::uint16_t port_lo = 0;
  std::uint16_t port_hi = 0;
  bool reuseport = false;  // may a request ask for SO_REUSEPORT
  Principals who;
  bool allow = false;
  bool deny = false;
  std::string origin;  // "bind[1]"
};

// Reads a rule's "address" ("tcp://*:443", "tcp://127.0.0.1:8000-8999",
// "udp6://[::1]:53") into rule.socket_type, host, family, v6only and the port
// range. Returns why it cannot ("" if it can): another scheme, a host that is
// neither "*" nor a numeric address, a port 0, above 65535, or a range lo > hi.
[[nodiscard]] std::string read_bind_address(std::string_view address, BindRule& rule);

class BindPolicy {
 public:
  BindPolicy() = default;
  explicit BindPolicy(std::vector<BindRule> rules) : rules_(std::move(rules)) {}

  // May `peer` have a socket of `socket_type` bound to `requested` (an inet URL
  // with a concrete port), with SO_REUSEPORT if `reuseport`? A rule applies
  // when the peer is one of its principals and the request's protocol, address
  // and port are within its "address". Any applying rule that denies: EACCES.
  // Otherwise the first applying rule that allows it and, if `reuseport`, says
  // "reuseport": true; none: EACCES (an allowing rule without reuseport is named
  // in why). EINVAL for a requested URL that is not inet or has port 0.
  [[nodiscard]] Outcome<const BindRule*> decide(const ClientIdentity& peer, int socket_type,
                                                const ListenUrl& requested, bool reuseport) const;

  [[nodiscard]] const std::vector<BindRule>& rules() const noexcept { return rules_; }

 private:
  std::vector<BindRule> rules_;
};

// Whether `requested` is within `rule`'s address (protocol, host, port range),
// whoever asks.
[[nodiscard]] bool bind_address_matches(const BindRule& rule, int socket_type,
                                        const ListenUrl& requested);

}  // namespace fdbroker::daemon
