// SPDX-License-Identifier: LGPL-2.1-or-later
// The daemon's one clock: monotonic, for deadlines, expiries and timers (never
// the wall clock, which jumps).
#pragma once

#include <chrono>

namespace fdbroker::daemon {

using Clock = std::chrono::steady_clock;

}  // namespace fdbroker::daemon
