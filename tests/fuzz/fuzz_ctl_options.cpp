// SPDX-License-Identifier: LGPL-2.1-or-later
// fdbrokerctl's command line (client/cli_options.cpp parse_options), on any
// arguments: the input is argv[1..], separated by NUL bytes.
//
// Invariants:
//  - bad usage is a UsageError (exit 100), nothing else escapes;
//  - parsed options are in their documented ranges: a known command, the NAME of
//    get/take/put/delete, --limit >= 1, --wait >= 0, --ttl >= 1, --timeout > 0,
//    --fd >= 0, --mode r/w/rw, --binary absolute, put with a source, exec with an
//    entry and a program; open with an absolute PATH, --mode r/w/rw/a, --perm and
//    --excl only with --create, --perm <= 0777, --trunc not with r; exec --open
//    with an absolute path and a mode of r/w/rw/a; --format prometheus only for
//    stats, and not with --json.
#include <algorithm>
#include <set>
#include <string>
#include <vector>

#include "cli_options.hpp"
#include "fuzz_check.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string_view text = fuzz::as_text(data, size);
  std::vector<std::string> args;
  if (!text.empty()) {
    for (std::size_t start = 0;;) {
      std::size_t nul = text.find('\0', start);
      args.emplace_back(text.substr(start, nul == std::string_view::npos ? nul : nul - start));
      if (nul == std::string_view::npos) break;
      start = nul + 1;
    }
  }
  fdbrokerctl::Options o;
  try {
    o = fdbrokerctl::parse_options(args);
  } catch (const fdbrokerctl::UsageError& e) {
    FUZZ_CHECK(e.what()[0] != '\0', "a usage error says what");
    return 0;
  }
  if (o.help || o.version) return 0;
  static const std::set<std::string> commands{"hello",  "list",  "get",  "take",    "put",
                                              "delete", "stats", "exec", "upgrade", "open"};
  FUZZ_CHECK(commands.count(o.command) == 1, "a known command");
  const std::string& c = o.command;
  if (c == "get" || c == "take" || c == "put" || c == "delete") {
    FUZZ_CHECK(std::find(args.begin(), args.end(), o.name) != args.end(),
               "NAME is one of the arguments");
  }
  if (o.timeout) FUZZ_CHECK(o.timeout->count() > 0, "--timeout > 0");
  FUZZ_CHECK(o.limit == 0 || c == "list", "--limit only for list");
  if (o.wait_ms)
    FUZZ_CHECK(*o.wait_ms >= 0 && (c == "get" || c == "take" || c == "exec"), "--wait >= 0");
  if (o.ttl_ms) FUZZ_CHECK(*o.ttl_ms >= 1 && c == "put", "--ttl >= 1, for put");
  FUZZ_CHECK(o.binary.empty() || (o.binary.front() == '/' && c == "upgrade"),
             "--binary absolute, for upgrade");
  FUZZ_CHECK(c != "put" || !o.sources.empty(), "put has a source");
  FUZZ_CHECK(o.sources.empty() || c == "put", "sources only for put");
  for (const auto& s : o.sources) {
    FUZZ_CHECK(s.kind != fdbrokerctl::FdSource::Kind::inherited || s.fd >= 0, "--fd >= 0");
    FUZZ_CHECK(s.mode == "r" || s.mode == "w" || s.mode == "rw", "--mode r, w or rw");
  }
  FUZZ_CHECK(c != "exec" || (!o.exec_entries.empty() && !o.program.empty()),
             "exec has entries and a program");
  FUZZ_CHECK(o.program.empty() || c == "exec", "a program only for exec");
  FUZZ_CHECK(o.exec_entries.empty() || c == "exec", "exec entries only for exec");
  for (const auto& e : o.exec_entries) {
    if (e.kind == fdbrokerctl::ExecEntry::Kind::open) {
      FUZZ_CHECK(!e.name.empty() && e.name.front() == '/', "--open absolute");
      FUZZ_CHECK(e.mode == "r" || e.mode == "w" || e.mode == "rw" || e.mode == "a",
                 "--open mode r, w, rw or a");
    }
  }
  FUZZ_CHECK(!o.prometheus || (c == "stats" && !o.json), "--format prometheus: stats, no --json");
  if (c == "open") {
    FUZZ_CHECK(!o.name.empty() && o.name.front() == '/', "open PATH absolute");
    const auto& m = o.open.mode;
    FUZZ_CHECK(m == "r" || m == "w" || m == "rw" || m == "a", "open --mode r, w, rw or a");
    FUZZ_CHECK(!o.open.perm || (*o.open.perm <= 0777 && o.open.create), "--perm <= 0777, created");
    FUZZ_CHECK(!o.open.excl || o.open.create, "--excl with --create");
    FUZZ_CHECK(!o.open.trunc || m != "r", "--trunc not with r");
  }
  return 0;
}
