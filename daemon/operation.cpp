// SPDX-License-Identifier: LGPL-2.1-or-later
#include "operation.hpp"

#include <iterator>

namespace fdbroker::daemon {

namespace {

struct OpRow {
  Op op;
  const char* name;
  unsigned perm;  // what a rule grants for it; 0: no rule of `rules` can
};

// In the order of Op, so that a row is found by its Op's value.
constexpr OpRow op_table[] = {
    {Op::hello, "hello", 0},
    {Op::get, "get", perm_get},
    {Op::take, "take", perm_take},
    {Op::put, "put", perm_put},
    {Op::del, "delete", perm_delete},
    {Op::list, "list", 0},
    {Op::stats, "stats", perm_stats},
    {Op::upgrade, "upgrade", 0},
    // Decided by the `files` and `bind` rules, not by `rules`.
    {Op::open, "open", 0},
    {Op::bind, "bind", 0},
};
static_assert(std::size(op_table) == op_count);

constexpr bool in_op_order() {
  for (std::size_t i = 0; i < op_count; ++i) {
    if (static_cast<std::size_t>(op_table[i].op) != i) return false;
  }
  return true;
}
static_assert(in_op_order());

constexpr const char* all_perms = "*";

}  // namespace

const char* op_name(Op op) noexcept {
  auto i = static_cast<std::size_t>(op);
  return i < op_count ? op_table[i].name : "?";
}

std::optional<Op> op_named(std::string_view name) noexcept {
  for (const OpRow& row : op_table) {
    if (name == row.name) return row.op;
  }
  return std::nullopt;
}

const char* perm_name(unsigned perm) noexcept {
  for (const OpRow& row : op_table) {
    if (row.perm != 0 && row.perm == perm) return row.name;
  }
  return "?";
}

std::optional<unsigned> perm_named(std::string_view name) noexcept {
  if (name == all_perms) return perm_all;
  for (const OpRow& row : op_table) {
    if (row.perm != 0 && name == row.name) return row.perm;
  }
  return std::nullopt;
}

std::string perm_names() {
  std::string names;
  for (const OpRow& row : op_table) {
    if (row.perm == 0) continue;
    names += row.name;
    names += ", ";
  }
  return names + all_perms;
}

}  // namespace fdbroker::daemon
