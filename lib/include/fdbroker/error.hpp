// SPDX-License-Identifier: LGPL-2.1-or-later
// One error vocabulary: errno. OS failures throw std::system_error with the
// system category; protocol errors use errno names ("ENOENT") on the wire.
#pragma once

#include <fdbroker/export.hpp>

#include <string>
#include <string_view>
#include <system_error>

namespace fdbroker {

// std::error_code for an errno value (system category).
inline std::error_code errno_code(int err) noexcept { return {err, std::system_category()}; }

// Throws std::system_error(err, system_category, what).
[[noreturn]] FDBROKER_API void throw_errno(int err, const std::string& what);

// The symbolic name of an errno value ("ENOENT"), or nullptr if unknown.
FDBROKER_API const char* errno_name(int err) noexcept;

// The errno value for a symbolic name ("ENOENT" -> 2), or 0 if unknown. The
// aliases EWOULDBLOCK, EDEADLOCK and ENOTSUP are accepted too.
FDBROKER_API int errno_from_name(std::string_view name) noexcept;

}  // namespace fdbroker
