// SPDX-License-Identifier: LGPL-2.1-or-later
#include "glob.hpp"

#include <gtest/gtest.h>

#include <string>

using fdbroker::daemon::glob_match;
using fdbroker::daemon::glob_problem;

TEST(Glob, WildcardsMatchWithinOneSegment) {
  EXPECT_TRUE(glob_match("*.key", "site.key"));
  EXPECT_FALSE(glob_match("*.key", "site.pem"));
  EXPECT_FALSE(glob_match("*.key", "d/site.key"));  // '*' never crosses '/'
  EXPECT_TRUE(glob_match("?.txt", "a.txt"));
  EXPECT_FALSE(glob_match("?.txt", "ab.txt"));
  EXPECT_TRUE(glob_match("[ab].txt", "b.txt"));
  EXPECT_FALSE(glob_match("[ab].txt", "c.txt"));
  EXPECT_TRUE(glob_match("[!ab].txt", "c.txt"));
  EXPECT_TRUE(glob_match("d/*.txt", "d/a.txt"));
  EXPECT_FALSE(glob_match("d/*.txt", "e/a.txt"));
  EXPECT_TRUE(glob_match("plain", "plain"));
  EXPECT_FALSE(glob_match("plain", "plain/x"));
  EXPECT_FALSE(glob_match("plain/x", "plain"));
}

TEST(Glob, NothingMatchesASlash) {
  EXPECT_FALSE(glob_match("a?b", "a/b"));
  EXPECT_FALSE(glob_match("a[/]b", "a/b"));
  EXPECT_FALSE(glob_match("a[!x]b", "a/b"));
  EXPECT_FALSE(glob_match("a*b", "a/b"));
}

TEST(Glob, DoubleStarIsZeroOrMoreWholeSegments) {
  EXPECT_TRUE(glob_match("**/*.txt", "a.txt"));
  EXPECT_TRUE(glob_match("**/*.txt", "d/e/a.txt"));
  EXPECT_FALSE(glob_match("**/*.txt", "d/e/a.txy"));
  EXPECT_TRUE(glob_match("**", "a"));
  EXPECT_TRUE(glob_match("**", "a/b/c"));
  EXPECT_TRUE(glob_match("a/**/z", "a/z"));
  EXPECT_TRUE(glob_match("a/**/z", "a/b/c/z"));
  EXPECT_FALSE(glob_match("a/**/z", "b/c/z"));
  EXPECT_TRUE(glob_match("a/**", "a/b"));
  EXPECT_TRUE(glob_match("**/**/x", "x"));
  EXPECT_TRUE(glob_match("**/**/x", "a/b/x"));
  // "**" inside a segment is just two '*': one segment.
  EXPECT_TRUE(glob_match("a**b", "axxb"));
  EXPECT_FALSE(glob_match("a**b", "ax/xb"));
}

TEST(Glob, NoWildcardMatchesALeadingDot) {
  EXPECT_FALSE(glob_match("*", ".hidden"));
  EXPECT_FALSE(glob_match("?hidden", ".hidden"));
  EXPECT_FALSE(glob_match("[.]hidden", ".hidden"));
  EXPECT_FALSE(glob_match("**", ".git/config"));
  EXPECT_FALSE(glob_match("**", "a/.git/config"));
  EXPECT_FALSE(glob_match("**/*", "a/.env"));
  EXPECT_FALSE(glob_match("**/config", ".git/config"));
  // A pattern segment that starts with '.' matches one.
  EXPECT_TRUE(glob_match(".*", ".hidden"));
  EXPECT_TRUE(glob_match(".hidden", ".hidden"));
  EXPECT_TRUE(glob_match("**/.git/*", "a/.git/config"));
  EXPECT_TRUE(glob_match(".git/**", ".git/objects/ab"));
  // Not leading: matched as any other character.
  EXPECT_TRUE(glob_match("*", "a.b"));
  EXPECT_TRUE(glob_match("a?b", "a.b"));
}

TEST(Glob, ManyDoubleStarsStayFast) {
  // A backtracking matcher is exponential here; this one compares each pattern
  // segment with each path segment once.
  std::string pattern;
  for (int i = 0; i < 40; ++i) pattern += "**/";
  pattern += "nomatch";
  std::string path;
  for (int i = 0; i < 1000; ++i) path += "a/";
  path += "b";
  EXPECT_FALSE(glob_match(pattern, path));
}

TEST(Glob, ProblemsOfAPattern) {
  EXPECT_EQ(glob_problem("**/*.txt"), "");
  EXPECT_EQ(glob_problem(".git/**"), "");
  EXPECT_EQ(glob_problem(""), "must not be empty");
  EXPECT_EQ(glob_problem("/etc/*"), "must be relative to the rule's root (no leading '/')");
  EXPECT_EQ(glob_problem("a//b"), "has an empty segment (\"//\" or a trailing '/')");
  EXPECT_EQ(glob_problem("a/"), "has an empty segment (\"//\" or a trailing '/')");
  EXPECT_EQ(glob_problem("../x"), "has a \".\" or \"..\" segment, which no path has");
  EXPECT_EQ(glob_problem("a/./x"), "has a \".\" or \"..\" segment, which no path has");
  EXPECT_EQ(glob_problem(std::string("a\0b", 3)), "must not contain a NUL byte");
}
