// SPDX-License-Identifier: LGPL-2.1-or-later
// The protocol's operations and the permissions a rule grants, in one table: the
// request parser reads op names from it, the config parser permission names, and
// the logs and stats print both from it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace fdbroker::daemon {

enum class Op : std::uint8_t { hello, get, take, put, del, list, stats, upgrade, open, bind };
inline constexpr std::size_t op_count = 10;

// Operations a rule can grant or deny (bit set).
enum Perm : unsigned {
  perm_get = 1u << 0,
  perm_take = 1u << 1,
  perm_put = 1u << 2,
  perm_delete = 1u << 3,
  perm_stats = 1u << 4,
  perm_all = perm_get | perm_take | perm_put | perm_delete | perm_stats,
};

// The wire name: "hello", "get", ..., "delete", ...
const char* op_name(Op op) noexcept;

// The Op whose wire name is `name`, if any.
std::optional<Op> op_named(std::string_view name) noexcept;

// Permission names ("get", ...), for logs and messages; "?" for anything but one bit.
const char* perm_name(unsigned perm) noexcept;

// The permission a rule names: "get", "take", "put", "delete", "stats", or "*"
// for all of them.
std::optional<unsigned> perm_named(std::string_view name) noexcept;

// "get, take, put, delete, stats, *": what perm_named() accepts, for messages.
std::string perm_names();

}  // namespace fdbroker::daemon
