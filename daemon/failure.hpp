// SPDX-License-Identifier: LGPL-2.1-or-later
// One shape for a failure in the daemon: the errno (for the caller, a reply's
// error name, an exit status) and a line that says what failed (for the log, or
// a reply's message). Functions that can fail return Outcome<T>, or
// std::optional<Failure> when they have no value to give.
#pragma once

#include <fdbroker/error.hpp>

#include <cassert>
#include <cstring>
#include <string>
#include <string_view>
#include <utility>
#include <variant>

namespace fdbroker::daemon {

struct Failure {
  int err = 0;      // an errno value, never 0
  std::string why;  // "bind '/run/x.sock': EADDRINUSE (Address already in use)"
};

// A failed system call: why = "WHAT: ENAME (description)".
inline Failure os_failure(std::string_view what, int err) {
  const char* name = errno_name(err);
  std::string why(what);
  why += ": ";
  why += name != nullptr ? name : std::to_string(err);
  why += " (";
  why += std::strerror(err);
  why += ')';
  return {err, std::move(why)};
}

// A value or the Failure that prevented it.
template <class T>
class [[nodiscard]] Outcome {
 public:
  Outcome(T value) : v_(std::move(value)) {}            // NOLINT: implicit, like expected
  Outcome(Failure failure) : v_(std::move(failure)) {}  // NOLINT
  [[nodiscard]] bool ok() const noexcept { return v_.index() == 0; }
  explicit operator bool() const noexcept { return ok(); }
  // Precondition: ok().
  T& value() & { return std::get<0>(v_); }
  T&& value() && { return std::get<0>(std::move(v_)); }
  T& operator*() & { return value(); }
  T* operator->() { return &value(); }
  // Precondition: !ok().
  [[nodiscard]] const Failure& failure() const& { return std::get<1>(v_); }
  Failure&& failure() && { return std::get<1>(std::move(v_)); }

 private:
  std::variant<T, Failure> v_;
};

}  // namespace fdbroker::daemon
