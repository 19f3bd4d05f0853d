// SPDX-License-Identifier: LGPL-2.1-or-later
// result<T>: a value or a std::error_code, the non-throwing return type used by
// event loops (where EAGAIN is routine). A small stand-in for C++23 std::expected.
#pragma once

#include <cassert>
#include <system_error>
#include <utility>
#include <variant>

namespace fdbroker {

template <class T>
class [[nodiscard]] result {
 public:
  result(T value) : v_(std::move(value)) {}                     // NOLINT: implicit, like expected
  result(std::error_code error) : v_(error) { assert(error); }  // NOLINT

  [[nodiscard]] bool ok() const noexcept { return v_.index() == 0; }
  explicit operator bool() const noexcept { return ok(); }

  // Precondition: ok().
  T& value() & { return std::get<0>(v_); }
  const T& value() const& { return std::get<0>(v_); }
  T&& value() && { return std::get<0>(std::move(v_)); }
  T& operator*() & { return value(); }
  T&& operator*() && { return std::move(*this).value(); }
  T* operator->() { return &value(); }

  // The error, or a default (success) error_code when ok().
  [[nodiscard]] std::error_code error() const noexcept {
    return ok() ? std::error_code{} : std::get<1>(v_);
  }

  // The value, or throws std::system_error carrying the errno.
  T value_or_throw(const char* what) && {
    if (!ok()) throw std::system_error(std::get<1>(v_), what);
    return std::get<0>(std::move(v_));
  }

 private:
  std::variant<T, std::error_code> v_;
};

}  // namespace fdbroker
