// SPDX-License-Identifier: LGPL-2.1-or-later
// The glob matcher of "files" rules (daemon/glob.cpp), on any pattern a config
// gives and any path a request gives. Input: PATTERN, a NUL byte, PATH.
//
// Invariants:
//  - a pattern without a "**" segment, a backslash, or a bracket before a later
//    '/', matches exactly where fnmatch(3) with FNM_PATHNAME | FNM_PERIOD
//    matches it (the oracle: no wildcard crosses a '/' or matches a leading '.');
//  - "**" matches a path exactly when no segment of it starts with '.';
//  - a "**" segment added to a pattern never makes a matching path stop matching
//    when that path has no dot segment;
//  - a pattern matches itself when it has no wildcard and no dot segment.
#include <fnmatch.h>

#include <string>
#include <string_view>

#include "fuzz_check.hpp"
#include "glob.hpp"

using fdbroker::daemon::glob_match;

namespace {

bool has_double_star_segment(std::string_view pattern) {
  std::size_t start = 0;
  while (start <= pattern.size()) {
    std::size_t slash = pattern.find('/', start);
    if (slash == std::string_view::npos) slash = pattern.size();
    if (pattern.substr(start, slash - start) == "**") return true;
    start = slash + 1;
  }
  return false;
}

bool has_dot_segment(std::string_view path) {
  if (!path.empty() && path.front() == '.') return true;
  return path.find("/.") != std::string_view::npos;
}

// Where the segment-wise matcher and fnmatch(FNM_PATHNAME) may differ by design:
// a bracket expression that would contain the '/' the segments are split at,
// and a backslash (fnmatch lets "\/" match a '/').
bool oracle_applies(std::string_view pattern) {
  if (has_double_star_segment(pattern)) return false;
  if (pattern.find('\\') != std::string_view::npos) return false;
  std::size_t bracket = pattern.find('[');
  return bracket == std::string_view::npos || pattern.find('/', bracket) == std::string_view::npos;
}

bool plain(std::string_view pattern) {
  return pattern.find_first_of("*?[\\") == std::string_view::npos;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string_view input = fuzz::as_text(data, size);
  std::size_t nul = input.find('\0');
  if (nul == std::string_view::npos) return 0;
  std::string pattern(input.substr(0, nul));
  std::string path(input.substr(nul + 1));
  if (path.find('\0') != std::string::npos) return 0;

  bool got = glob_match(pattern, path);
  if (oracle_applies(pattern)) {
    bool want = ::fnmatch(pattern.c_str(), path.c_str(), FNM_PATHNAME | FNM_PERIOD) == 0;
    FUZZ_CHECK(got == want, "a pattern without ** matches as fnmatch(FNM_PATHNAME|FNM_PERIOD)");
  }
  FUZZ_CHECK(glob_match("**", path) == !has_dot_segment(path),
             "** matches every path without a dot segment");
  if (got && !has_dot_segment(path)) {
    FUZZ_CHECK(glob_match("**/" + pattern, path) && glob_match(pattern + "/**", path),
               "a ** segment around a matching pattern still matches");
  }
  if (plain(pattern) && !has_dot_segment(pattern)) {
    FUZZ_CHECK(glob_match(pattern, pattern), "a plain pattern matches itself");
  }
  return 0;
}
