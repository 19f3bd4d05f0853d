// SPDX-License-Identifier: LGPL-2.1-or-later
#include "bind_rules.hpp"

#include <cerrno>
#include <charconv>

#include "policy.hpp"

namespace fdbroker::daemon {

namespace {

std::optional<unsigned> port_number(std::string_view text) {
  unsigned value = 0;
  if (text.empty() || text.size() > 5) return std::nullopt;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc{} || end != text.data() + text.size()) return std::nullopt;
  return value;
}

}  // namespace

std::string read_bind_address(std::string_view address, BindRule& rule) {
  std::string_view scheme;
  for (std::string_view s : {"tcp://", "tcp6://", "udp://", "udp6://"}) {
    if (address.substr(0, s.size()) == s) scheme = s;
  }
  if (scheme.empty()) {
    return "must be tcp://, tcp6://, udp:// or udp6:// HOST:PORT, got \"" + std::string(address) +
           "\"";
  }
  std::string_view rest = address.substr(scheme.size());
  std::size_t colon = rest.rfind(':');
  if (colon == std::string_view::npos) {
    return "needs a port or a port range (\"HOST:443\", \"HOST:8000-8999\"), got \"" +
           std::string(address) + "\"";
  }
  std::string_view host = rest.substr(0, colon);
  std::string_view ports = rest.substr(colon + 1);
  std::size_t dash = ports.find('-');
  auto lo = port_number(ports.substr(0, dash));
  auto hi = dash == std::string_view::npos ? lo : port_number(ports.substr(dash + 1));
  if (!lo || !hi || *lo > 65535 || *hi > 65535) {
    return "bad port or port range \"" + std::string(ports) + "\" (PORT or LO-HI, 1-65535)";
  }
  if (*lo == 0 || *hi == 0) return "port 0 is not a port a rule can allow (a request names one)";
  if (*lo > *hi) return "port range \"" + std::string(ports) + "\" is empty (LO must be <= HI)";
  const bool v6 = scheme == "tcp6://" || scheme == "udp6://";
  const bool udp = scheme[0] == 'u';
  if (host == "*" || (v6 && host == "[*]")) {
    rule.host.reset();
    rule.family = v6 ? AF_INET6 : AF_UNSPEC;
  } else {
    std::string_view bare = host;
    if (bare.size() >= 2 && bare.front() == '[' && bare.back() == ']')
      bare = bare.substr(1, bare.size() - 2);
    // The listen-URL parser's other spellings of a host ("", "localhost", and
    // "[*]" for "::") would be easy to misread in a rule: numeric or "*" only.
    std::optional<SocketUrl> url;
    if (!bare.empty() && bare != "localhost" && bare != "*") {
      auto parsed =
          try_parse_socket_url(std::string(scheme) + std::string(host) + ":" + std::to_string(*lo));
      if (parsed.ok()) url = std::move(parsed).value();
    }
    if (!url) {
      return "bad host \"" + std::string(host) +
             "\": \"*\", a numeric IPv4 address, or an IPv6 address in brackets";
    }
    rule.host = url->url.host;
    rule.family = url->url.family;
  }
  rule.socket_type = udp ? SOCK_DGRAM : SOCK_STREAM;
  rule.v6only = v6;
  rule.port_lo = static_cast<std::uint16_t>(*lo);
  rule.port_hi = static_cast<std::uint16_t>(*hi);
  return {};
}

bool bind_address_matches(const BindRule& rule, int socket_type, const ListenUrl& requested) {
  if (rule.socket_type != socket_type) return false;
  if (requested.family != AF_INET && requested.family != AF_INET6) return false;
  if (requested.port < rule.port_lo || requested.port > rule.port_hi) return false;
  if (rule.family != AF_UNSPEC && rule.family != requested.family) return false;
  if (rule.host && *rule.host != requested.host) return false;
  // A dual-stack "::" also takes IPv4's wildcard: not within an IPv6-only rule.
  if (rule.v6only && requested.family == AF_INET6 && requested.host == "::" && !requested.v6only)
    return false;
  return true;
}

Outcome<const BindRule*> BindPolicy::decide(const ClientIdentity& peer, int socket_type,
                                            const ListenUrl& requested, bool reuseport) const {
  if ((requested.family != AF_INET && requested.family != AF_INET6) || requested.port == 0) {
    return Failure{EINVAL, "bind needs a TCP or UDP address with a port other than 0"};
  }
  const BindRule* granted = nullptr;
  const BindRule* without_reuseport = nullptr;
  for (const BindRule& rule : rules_) {
    if (!principals_match(rule.who, peer)) continue;
    if (!bind_address_matches(rule, socket_type, requested)) continue;
    if (rule.deny) {
      return Failure{EACCES, "denied by bind rule \"" + rule.name + "\" (" + rule.origin + ")"};
    }
    if (!rule.allow || granted != nullptr) continue;
    if (reuseport && !rule.reuseport) {
      if (without_reuseport == nullptr) without_reuseport = &rule;
      continue;
    }
    granted = &rule;
  }
  if (granted != nullptr) return granted;
  if (without_reuseport != nullptr) {
    return Failure{EACCES, "bind rule \"" + without_reuseport->name +
                               "\" allows it without reuseport (it does not say \"reuseport\": "
                               "true)"};
  }
  return Failure{EACCES, "no bind rule grants it"};
}

}  // namespace fdbroker::daemon
