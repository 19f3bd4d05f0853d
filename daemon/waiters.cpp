// SPDX-License-Identifier: LGPL-2.1-or-later
#include "waiters.hpp"

#include <algorithm>

namespace fdbroker::daemon {

Waiters::Waiters(EventLoop& loop, Expired expired) : loop_(loop), expired_(std::move(expired)) {}

Waiters::~Waiters() {
  for (auto& [id, p] : parked_) {
    if (p.timer != 0) loop_.cancel(p.timer);
  }
}

void Waiters::park(ConnectionId id, const Request& req, std::chrono::milliseconds wait) {
  Parked& p = parked_[id];
  p.request = std::make_unique<Request>(req);
  p.timer = loop_.add_timer(Clock::now() + wait, [this, id] {
    auto it = parked_.find(id);
    if (it == parked_.end()) return;
    it->second.timer = 0;  // fired: not to be cancelled
    auto r = unpark(id);
    if (expired_) expired_(id, std::move(r));
  });
  by_name_[req.name].push_back(id);
}

std::unique_ptr<Request> Waiters::unpark(ConnectionId id) {
  auto it = parked_.find(id);
  if (it == parked_.end()) return nullptr;
  Parked p = std::move(it->second);
  parked_.erase(it);
  if (p.timer != 0) loop_.cancel(p.timer);
  auto named = by_name_.find(p.request->name);
  if (named != by_name_.end()) {
    auto& list = named->second;
    list.erase(std::remove(list.begin(), list.end(), id), list.end());
    if (list.empty()) by_name_.erase(named);
  }
  return std::move(p.request);
}

bool Waiters::parked(ConnectionId id) const { return parked_.count(id) != 0; }

std::vector<ConnectionId> Waiters::waiting_for(const std::string& name) const {
  if (by_name_.empty()) return {};
  auto it = by_name_.find(name);
  return it == by_name_.end() ? std::vector<ConnectionId>{} : it->second;
}

}  // namespace fdbroker::daemon
