// SPDX-License-Identifier: LGPL-2.1-or-later
// A successor for the Upgrader::upgrade() tests (tests/unit/handoff_test.cpp):
//   handoff_successor ready SERVICE  becomes SERVICE's leader, waits to be retired
//                                    (at most 20 s), exits 0; exits 7 if it inherited
//                                    LISTEN_* variables (upgrade() must remove them)
//   handoff_successor fail           exits 3 at once, never ready
//   handoff_successor hang           never ready: sleeps until killed
#include <fdbroker/handoff.hpp>

#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <string>

int main(int argc, char** argv) {
  std::string mode = argc > 1 ? argv[1] : "";
  try {
    if (mode == "ready" && argc > 2) {
      if (std::getenv("LISTEN_FDS") != nullptr || std::getenv("LISTEN_PID") != nullptr ||
          std::getenv("LISTEN_FDNAMES") != nullptr)
        return 7;
      fdbroker::handoff::Upgrader upgrader(argv[2]);
      upgrader.ready();
      upgrader.wait_for_exit(std::chrono::seconds(20));
      return 0;
    }
    if (mode == "fail") return 3;
    if (mode == "hang") {
      ::sleep(60);
      return 0;
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "handoff_successor: %s\n", e.what());
    return 1;
  }
  std::fprintf(stderr, "usage: handoff_successor ready SERVICE | fail | hang\n");
  return 100;
}
