// SPDX-License-Identifier: LGPL-2.1-or-later
#include "request_counters.hpp"

#include "json_text.hpp"

namespace fdbroker::daemon {

nlohmann::json RequestCounters::requests_json() const {
  nlohmann::json requests = nlohmann::json::object();
  for (std::size_t op = 0; op <= op_count; ++op) {
    nlohmann::json outcomes = nlohmann::json::object();
    for (std::size_t err = 0; err < 256; ++err) {
      if (requests_[op][err] == 0) continue;
      outcomes[err == 0 ? "ok" : errno_name_or_eio(static_cast<int>(err))] = requests_[op][err];
    }
    if (!outcomes.empty())
      requests[op < op_count ? op_name(static_cast<Op>(op)) : "invalid"] = std::move(outcomes);
  }
  return requests;
}

}  // namespace fdbroker::daemon
