// SPDX-License-Identifier: LGPL-2.1-or-later
// The globs of "files" rules, matched segment by segment against a path relative
// to the rule's root: within a segment `*`, `?` and `[...]` as in the shell
// (fnmatch(3)), and a segment `**` for zero or more whole segments. As in the
// shell, no wildcard (`**` included) matches a leading '.' of a segment unless
// the pattern's segment starts with '.' itself. Nothing matches across a '/'.
#pragma once

#include <string>
#include <string_view>

namespace fdbroker::daemon {

// Whether `relative_path` ("a/b.txt": no leading '/', segments separated by one
// '/') matches `pattern` ("**/*.txt").
[[nodiscard]] bool glob_match(std::string_view pattern, std::string_view relative_path);

// Why `pattern` cannot be a "match" glob ("" if it can): empty, absolute, an
// empty, "." or ".." segment (a checked request path has none, so such a
// pattern would never match), a NUL byte.
[[nodiscard]] std::string glob_problem(std::string_view pattern);

}  // namespace fdbroker::daemon
