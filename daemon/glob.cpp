// SPDX-License-Identifier: LGPL-2.1-or-later
#include "glob.hpp"

#include <fnmatch.h>

#include <vector>

namespace fdbroker::daemon {

namespace {

std::vector<std::string_view> segments(std::string_view path) {
  std::vector<std::string_view> out;
  std::size_t start = 0;
  while (true) {
    std::size_t slash = path.find('/', start);
    if (slash == std::string_view::npos) {
      out.push_back(path.substr(start));
      return out;
    }
    out.push_back(path.substr(start, slash - start));
    start = slash + 1;
  }
}

// One segment against one pattern segment. FNM_PERIOD: a leading '.' only
// matches a '.' in the pattern; the segment holds no '/', so no bracket can
// match one.
bool segment_match(std::string_view pattern, std::string_view segment) {
  std::string p(pattern);
  std::string s(segment);
  return ::fnmatch(p.c_str(), s.c_str(), FNM_PERIOD) == 0;
}

}  // namespace

bool glob_match(std::string_view pattern, std::string_view relative_path) {
  if (pattern.find('\0') != std::string_view::npos ||
      relative_path.find('\0') != std::string_view::npos)
    return false;
  const std::vector<std::string_view> pat = segments(pattern);
  const std::vector<std::string_view> path = segments(relative_path);
  const std::size_t n = path.size();
  // next[j]: whether pat[i+1..] matches path[j..]; built from the last pattern
  // segment backwards, so each segment pair is compared at most once
  // (a backtracking match would be exponential in the number of "**").
  std::vector<char> next(n + 1, 0);
  std::vector<char> cur(n + 1, 0);
  next[n] = 1;
  for (std::size_t i = pat.size(); i-- > 0;) {
    if (pat[i] == "**") {
      cur[n] = next[n];
      for (std::size_t j = n; j-- > 0;) {
        bool hidden = !path[j].empty() && path[j].front() == '.';
        cur[j] = next[j] || (!hidden && cur[j + 1]);
      }
    } else {
      cur[n] = 0;
      for (std::size_t j = 0; j < n; ++j) cur[j] = next[j + 1] && segment_match(pat[i], path[j]);
    }
    cur.swap(next);
  }
  return next[0] != 0;
}

std::string glob_problem(std::string_view pattern) {
  if (pattern.empty()) return "must not be empty";
  if (pattern.find('\0') != std::string_view::npos) return "must not contain a NUL byte";
  if (pattern.front() == '/') return "must be relative to the rule's root (no leading '/')";
  for (std::string_view s : segments(pattern)) {
    if (s.empty()) return "has an empty segment (\"//\" or a trailing '/')";
    if (s == "." || s == "..") return "has a \".\" or \"..\" segment, which no path has";
  }
  return {};
}

}  // namespace fdbroker::daemon
