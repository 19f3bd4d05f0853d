// SPDX-License-Identifier: LGPL-2.1-or-later
// fdbrokerctl's command line, parsed into one struct before anything is done.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

namespace fdbrokerctl {

// Bad usage: exit code 100 (STYLE §3, as s6-fdholder-retrieve).
struct UsageError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// One descriptor `put` stores, in command-line order.
struct FdSource {
  enum class Kind { inherited, file, listen };
  Kind kind = Kind::inherited;
  int fd = -1;             // inherited: the descriptor number (--fd N)
  std::string path;        // file: --file PATH
  std::string mode = "r";  // file: --mode r|w|rw
  std::string url;         // listen: --listen URL
};

// One descriptor `exec` asks the broker for, in command-line order.
struct ExecEntry {
  enum class Kind { get, take, open, bind };
  Kind kind = Kind::get;   // --take removes the entry from the broker, --get leaves it
  std::string name;        // get, take: the entry; open: the PATH; bind: the URL
  std::string mode = "r";  // open: r, w, rw or a (--open PATH:MODE)
};

// `open` and `exec --open`: what --mode r|w|rw|a means, plus the flags given.
struct OpenOptions {
  std::string mode = "r";  // r: rdonly, w: wronly, rw: rdwr, a: wronly + append
  bool create = false;
  bool excl = false;
  bool trunc = false;
  std::optional<unsigned> perm;  // --perm OCTAL, at most 0777; only with --create
};

struct Options {
  std::string socket;  // empty: $FDBROKER_SOCKET or the default path
  bool json = false;
  // stats --format prometheus: the Prometheus text exposition format instead.
  bool prometheus = false;
  // --timeout SECONDS: how long the request may take beyond any --wait (and the
  // connect); none by default. Expiry is a transport error: exit 111.
  std::optional<std::chrono::milliseconds> timeout;
  bool help = false;
  bool version = false;
  std::string command;  // hello, list, get, take, put, delete, stats, exec, upgrade, open

  std::string name;                     // get, take, put, delete; open: the PATH
  std::string prefix;                   // list
  unsigned limit = 0;                   // list: page size asked of the broker (0: its default)
  std::optional<std::int64_t> wait_ms;  // get, take, exec

  // put
  std::vector<FdSource> sources;
  std::string meta;
  std::optional<std::int64_t> ttl_ms;
  bool replace = false;
  std::optional<std::uint64_t> expect_generation;

  std::string binary;  // upgrade: --binary PATH (empty: the broker's own)

  OpenOptions open;  // open

  // exec
  std::vector<ExecEntry> exec_entries;
  std::vector<std::string> program;  // PROGRAM ARGS... after "--"
};

// Throws UsageError, with a message naming the offending argument.
Options parse_options(const std::vector<std::string>& args);

// The --help text.
extern const char* const usage_text;

}  // namespace fdbrokerctl
