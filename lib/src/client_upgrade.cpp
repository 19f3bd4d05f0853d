// SPDX-License-Identifier: LGPL-2.1-or-later
// Client::upgrade: the `upgrade` operation (docs/protocol.md).
#include <cerrno>
#include <chrono>
#include <fdbroker/client.hpp>
#include <nlohmann/json.hpp>
#include <system_error>

#include "client_protocol.hpp"

namespace fdbroker {

namespace {

// How long the broker gives the new broker to get ready (docs/protocol.md,
// `upgrade`; fdbrokerd's upgrade_timeout): waiting on purpose, like wait_ms, so it
// is added to the client's timeout.
constexpr std::chrono::milliseconds upgrade_ready_wait{10000};

}  // namespace

// Client::Reply as client.cpp defines it: the same tokens, or ODR breaks.
struct Client::Reply {
  std::string payload;
  std::vector<unique_fd> fds;
};

std::int64_t Client::upgrade(std::string_view binary) {
  std::int64_t id = next_id_++;
  nlohmann::json request = {{"op", "upgrade"}, {"id", id}};
  if (!binary.empty()) request["binary"] = std::string(binary);
  Reply reply = call(request.dump(), {}, upgrade_ready_wait);
  detail::parse_empty_reply(reply.payload, id);  // throws BrokerError on a refusal
  nlohmann::json parsed = nlohmann::json::parse(reply.payload, nullptr, false);
  if (parsed.is_discarded() || !parsed.is_object() || !parsed.contains("pid") ||
      !parsed["pid"].is_number_integer()) {
    throw std::system_error(EPROTO, std::system_category(),
                            "upgrade: reply without the new broker's pid");
  }
  return parsed["pid"].get<std::int64_t>();
}

}  // namespace fdbroker
