// SPDX-License-Identifier: LGPL-2.1-or-later
// LISTEN_PID / LISTEN_FDS / LISTEN_FDNAMES (lib/src/listen_fds.cpp
// parse_listen_fds), as a parent process or systemd sets them. The input is the
// three values separated by '\n'; a value that is absent (fewer lines) is an unset
// variable. This process's pid is 4242.
//
// Invariants:
//  - never throws (noexcept), fails only with EINVAL (never ENOMEM), opens nothing;
//  - when accepted: as many fds as LISTEN_FDS says, numbered 3, 4, ... in order,
//    each named by its LISTEN_FDNAMES field ("unknown" when unset); nothing when
//    LISTEN_PID is not ours; at most as many as this process may have open (the
//    fds are real descriptor numbers);
//  - the names joined again with ':' parse to the same set.
#include <sys/resource.h>

#include <cerrno>
#include <fdbroker/listen_fds.hpp>
#include <string>
#include <vector>

#include "fuzz_check.hpp"

namespace {

constexpr pid_t self = 4242;

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string_view text = fuzz::as_text(data, size);
  std::vector<std::string> values;
  for (std::size_t start = 0; values.size() < 3;) {
    std::size_t nl = text.find('\n', start);
    values.emplace_back(text.substr(start, nl == std::string_view::npos ? nl : nl - start));
    if (nl == std::string_view::npos) break;
    start = nl + 1;
  }
  auto arg = [&](std::size_t i) { return i < values.size() ? values[i].c_str() : nullptr; };

  fuzz::FdCheck fds;
  auto parsed = fdbroker::parse_listen_fds(arg(0), arg(1), arg(2), self);
  fds.same("parse_listen_fds");
  if (!parsed.ok()) {
    // Three short strings never need much memory: ENOMEM would mean a count was believed.
    FUZZ_CHECK(parsed.error().value() == EINVAL, "malformed variables are EINVAL");
    return 0;
  }
  const auto& got = *parsed;
  if (got.empty()) return 0;
  rlimit nofile{};
  ::getrlimit(RLIMIT_NOFILE, &nofile);
  FUZZ_CHECK(got.size() <= nofile.rlim_max, "no more fds than the process may have");
  std::string joined;
  for (std::size_t i = 0; i < got.size(); ++i) {
    FUZZ_CHECK(got[i].fd == fdbroker::listen_fds_start + static_cast<int>(i),
               "fds 3, 4, ... in order");
    FUZZ_CHECK(got[i].name.find(':') == std::string::npos, "a name holds no ':'");
    FUZZ_CHECK(arg(2) != nullptr || got[i].name == "unknown", "unnamed fds are 'unknown'");
    if (i > 0) joined += ':';
    joined += got[i].name;
  }
  auto again =
      fdbroker::parse_listen_fds("4242", std::to_string(got.size()).c_str(), joined.c_str(), self);
  FUZZ_CHECK(again.ok() && again->size() == got.size(), "the names joined parse again");
  for (std::size_t i = 0; i < got.size(); ++i) {
    FUZZ_CHECK((*again)[i].fd == got[i].fd && (*again)[i].name == got[i].name,
               "the same fds and names");
  }
  return 0;
}
