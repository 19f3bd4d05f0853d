// SPDX-License-Identifier: LGPL-2.1-or-later
// fdbroker::listen(): inherited fd, else the broker's, else bind and deposit.
#include <fdbroker/error.hpp>
#include <fdbroker/handoff.hpp>

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <string>

#include <nlohmann/json.hpp>

namespace fdbroker {
namespace {

bool broker_refused(const std::system_error& e, int err) {
  return dynamic_cast<const BrokerError*>(&e) != nullptr && e.code().value() == err;
}

// The socket the broker gave us must be what the caller asked for: a listener on
// another port would make the service silently serve the wrong address.
unique_fd checked(Entry entry, std::string_view name, const ListenUrl& url) {
  if (entry.fds.size() != 1 || !socket_matches_url(entry.fds[0].get(), url)) {
    std::string holds = entry.fds.empty() ? "nothing" : "another socket";
    if (entry.fds.size() == 1) {
      auto actual = try_socket_listen_url(entry.fds[0].get());
      if (actual.ok()) holds = actual->str();
    }
    throw std::system_error(errno_code(EEXIST), "broker entry '" + std::string(name) + "' holds " +
                                                    holds + ", not " + url.str() +
                                                    " (delete the entry to rebind)");
  }
  return std::move(entry.fds[0]);
}

std::string entry_meta(const std::string& meta_json, const ListenUrl& url) {
  auto meta = meta_json.empty() ? nlohmann::json::object()
                                : nlohmann::json::parse(meta_json, nullptr, false);
  if (meta.is_discarded() || !meta.is_object())
    throw std::system_error(errno_code(EINVAL), "listen: meta must be a JSON object");
  meta["url"] = url.str();
  meta["pid"] = ::getpid();
  return meta.dump();
}

void apply_nonblocking(int fd, const BindOptions& bind) {
  if (!bind.nonblocking) return;
  int flags = ::fcntl(fd, F_GETFL);
  if (flags < 0 || ::fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0)
    throw_errno(errno, "fcntl(O_NONBLOCK)");
}

Listener from_broker(Client& client, std::string_view name, const ListenUrl& url,
                     const ListenOptions& options) {
  if (auto entry = client.try_get(name)) {
    auto generation = entry->generation;
    return Listener{checked(std::move(*entry), name, url), ListenerOrigin::broker, generation, {}};
  }

  auto bound = try_bind_listener(url, options.bind);
  if (!bound.ok()) {
    // Someone holds the address: most likely another instance that bound it a moment
    // ago and is about to put it. Wait for that entry rather than failing.
    if (bound.error().value() == EADDRINUSE) {
      try {
        auto entry = client.get(name, options.race_wait.count());
        auto generation = entry.generation;
        return Listener{
            checked(std::move(entry), name, url), ListenerOrigin::broker, generation, {}};
      } catch (const std::system_error& e) {
        if (!broker_refused(e, ETIMEDOUT)) throw;
      }
    }
    throw std::system_error(bound.error(), "cannot listen on " + url.str());
  }

  PutOptions put;
  put.meta_json = entry_meta(options.meta_json, url);
  put.expect_generation = 0;  // of racing starters exactly one deposits its socket
  try {
    auto generation = client.put(name, {bound->get()}, put);
    return Listener{std::move(bound).value(), ListenerOrigin::created, generation, {}};
  } catch (const std::system_error& e) {
    if (!broker_refused(e, EEXIST) && !broker_refused(e, ESTALE)) throw;
  }
  // Lost the race (possible with SO_REUSEPORT, or after a put between our get and
  // bind): ours closes, the winner's is the one everybody shares.
  bound->reset();
  auto entry = client.get(name, options.race_wait.count());
  auto generation = entry.generation;
  return Listener{checked(std::move(entry), name, url), ListenerOrigin::broker, generation, {}};
}

}  // namespace

const char* to_string(ListenerOrigin origin) noexcept {
  switch (origin) {
    case ListenerOrigin::inherited:
      return "inherited";
    case ListenerOrigin::broker:
      return "broker";
    case ListenerOrigin::created:
      return "created";
    case ListenerOrigin::private_socket:
      return "private";
  }
  return "?";
}

Listener open_listener(std::string_view name, std::string_view url_text,
                       const ListenOptions& options) {
  auto url = parse_listen_url(url_text);
  InheritedFds& inherited = options.inherited != nullptr ? *options.inherited : inherited_fds();
  if (auto fd = inherited.take(name)) {
    // The supervisor that passed it knows best which address it serves: no check.
    apply_nonblocking(fd->get(), options.bind);
    return Listener{std::move(*fd), ListenerOrigin::inherited, 0, {}};
  }

  Client client;
  try {
    client.connect(options.broker_socket);
  } catch (const std::system_error& e) {
    if (options.require_broker) throw;
    // A service must start even when the broker is down: it then runs on a socket of
    // its own, and the caller can tell from origin/broker_error.
    auto sock = bind_listener(url, options.bind);
    return Listener{std::move(sock), ListenerOrigin::private_socket, 0, e.what()};
  }
  auto listener = from_broker(client, name, url, options);
  apply_nonblocking(listener.fd.get(), options.bind);
  return listener;
}

unique_fd listen(std::string_view name, std::string_view url, const ListenOptions& options) {
  return open_listener(name, url, options).fd;
}

}  // namespace fdbroker
