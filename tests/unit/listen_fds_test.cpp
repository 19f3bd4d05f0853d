// SPDX-License-Identifier: LGPL-2.1-or-later
// LISTEN_PID/LISTEN_FDS/LISTEN_FDNAMES: the pure parser, then real inheritance: a
// forked child gets real fds at 3, 4, ... and real environment variables, exactly
// as after systemd's or fdbrokerctl exec's exec().
#include <fdbroker/listen_fds.hpp>

#include <fcntl.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <functional>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "test_util.hpp"

namespace fdbroker {
namespace {

std::vector<InheritedFd> parse_ok(const char* pid, const char* count, const char* names,
                                  pid_t self) {
  auto fds = parse_listen_fds(pid, count, names, self);
  EXPECT_TRUE(fds.ok()) << (fds.ok() ? "" : fds.error().message());
  return fds.ok() ? std::move(fds).value() : std::vector<InheritedFd>{};
}

TEST(ParseListenFds, NamesFdsFromThreeOn) {
  auto fds = parse_ok("42", "3", "http:https:state", 42);
  ASSERT_EQ(fds.size(), 3u);
  EXPECT_EQ(fds[0].fd, 3);
  EXPECT_EQ(fds[0].name, "http");
  EXPECT_EQ(fds[1].fd, 4);
  EXPECT_EQ(fds[1].name, "https");
  EXPECT_EQ(fds[2].fd, 5);
  EXPECT_EQ(fds[2].name, "state");
}

TEST(ParseListenFds, MissingNamesAreUnknown) {
  auto fds = parse_ok("42", "2", nullptr, 42);
  ASSERT_EQ(fds.size(), 2u);
  EXPECT_EQ(fds[0].name, "unknown");
  EXPECT_EQ(fds[1].name, "unknown");
}

TEST(ParseListenFds, EmptyNamesAreKept) {
  auto fds = parse_ok("42", "2", ":b", 42);
  ASSERT_EQ(fds.size(), 2u);
  EXPECT_EQ(fds[0].name, "");
  EXPECT_EQ(fds[1].name, "b");
}

TEST(ParseListenFds, OtherPidOrUnsetMeansNothingInherited) {
  EXPECT_TRUE(parse_ok("41", "3", "a:b:c", 42).empty());
  EXPECT_TRUE(parse_ok(nullptr, "3", "a:b:c", 42).empty());
  EXPECT_TRUE(parse_ok("42", nullptr, nullptr, 42).empty());
  EXPECT_TRUE(parse_ok("42", "0", nullptr, 42).empty());
  EXPECT_TRUE(parse_ok("42", "0", "", 42).empty());
}

TEST(ParseListenFds, MalformedValuesAreEinval) {
  struct Case {
    const char* pid;
    const char* count;
    const char* names;
  };
  for (auto c :
       {Case{"x", "1", nullptr}, Case{"", "1", nullptr}, Case{"0", "1", nullptr},
        Case{"-42", "1", nullptr}, Case{"42 ", "1", nullptr}, Case{"42", "one", nullptr},
        Case{"42", "-1", nullptr}, Case{"42", "", nullptr}, Case{"42", "99999999999", nullptr},
        Case{"42", "2", "a"}, Case{"42", "1", "a:b"}}) {
    auto fds = parse_listen_fds(c.pid, c.count, c.names, 42);
    ASSERT_FALSE(fds.ok()) << c.pid << " " << c.count;
    EXPECT_EQ(fds.error().value(), EINVAL);
  }
}

// Runs `body` in a forked child whose fds 3.. are the write ends of fresh pipes (as
// inherited: without CLOEXEC) and whose environment says so. `body` returns 0 for
// success or prints what went wrong and returns non-zero. The parent keeps the read
// ends in `reads`.
int run_inheriting(const std::vector<std::string>& names, const char* fdnames, bool own_pid,
                   std::vector<unique_fd>& reads, const std::function<int()>& body) {
  std::vector<unique_fd> writes;
  for (std::size_t i = 0; i < names.size(); ++i) {
    auto pipe = test::pipe_pair();
    reads.push_back(std::move(pipe.read));
    writes.push_back(std::move(pipe.write));
  }
  std::fflush(nullptr);
  pid_t child = ::fork();
  if (child < 0) return -1;
  if (child == 0) {
    // Move the write ends out of the way first, then to 3, 4, ...: dup2 clears
    // FD_CLOEXEC, which is what crossing an exec does.
    std::vector<int> high;
    for (auto& w : writes) high.push_back(::fcntl(w.get(), F_DUPFD_CLOEXEC, 100));
    for (std::size_t i = 0; i < high.size(); ++i) {
      if (::dup2(high[i], listen_fds_start + static_cast<int>(i)) < 0) ::_exit(90);
      ::close(high[i]);
    }
    std::string pid = std::to_string(own_pid ? ::getpid() : ::getppid());
    ::setenv("LISTEN_PID", pid.c_str(), 1);
    ::setenv("LISTEN_FDS", std::to_string(names.size()).c_str(), 1);
    if (fdnames != nullptr)
      ::setenv("LISTEN_FDNAMES", fdnames, 1);
    else
      ::unsetenv("LISTEN_FDNAMES");
    std::fflush(nullptr);
    ::_exit(body());
  }
  writes.clear();
  int status = 0;
  while (::waitpid(child, &status, 0) < 0 && errno == EINTR) {
  }
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

#define CHILD_CHECK(cond)                                       \
  do {                                                          \
    if (!(cond)) {                                              \
      std::fprintf(stderr, "child: check failed: %s\n", #cond); \
      return __LINE__ % 200 + 1;                                \
    }                                                           \
  } while (0)

TEST(InheritedFds, FromEnvironmentTakesByNameAndMarksCloexec) {
  std::vector<unique_fd> reads;
  int code = run_inheriting({"http", "state", "http"}, "http:state:http", true, reads, [] {
    auto fds = InheritedFds::from_environment();
    CHILD_CHECK(fds.remaining().size() == 3);
    for (int fd = 3; fd <= 5; ++fd) CHILD_CHECK(test::is_cloexec(fd));
    auto state = fds.take("state");
    CHILD_CHECK(state && state->get() == 4);
    auto first = fds.take("http");
    auto second = fds.take("http");
    CHILD_CHECK(first && first->get() == 3);
    CHILD_CHECK(second && second->get() == 5);
    CHILD_CHECK(!fds.take("http"));
    CHILD_CHECK(!fds.take("nope"));
    CHILD_CHECK(fds.remaining().empty());
    // The environment is left as it was.
    CHILD_CHECK(::getenv("LISTEN_FDS") != nullptr);
    CHILD_CHECK(::write(state->get(), "s", 1) == 1);
    return 0;
  });
  EXPECT_EQ(code, 0);
  char byte = 0;
  ASSERT_EQ(::read(reads[1].get(), &byte, 1), 1);  // the child wrote through "state"
  EXPECT_EQ(byte, 's');
  for (auto& r : reads) EXPECT_TRUE(test::reaches_eof(r.get()));
}

TEST(InheritedFds, UntakenFdsAreClosedWithTheSet) {
  std::vector<unique_fd> reads;
  int code = run_inheriting({"a", "b"}, "a:b", true, reads, [] {
    std::optional<unique_fd> kept;
    {
      auto fds = InheritedFds::from_environment();
      kept = fds.take("b");
    }
    CHILD_CHECK(!test::is_open(3));
    CHILD_CHECK(kept && test::is_open(kept->get()));
    return 0;
  });
  EXPECT_EQ(code, 0);
}

TEST(InheritedFds, OtherProcessesFdsAreLeftAlone) {
  std::vector<unique_fd> reads;
  int code = run_inheriting({"a"}, "a", false, reads, [] {
    auto fds = InheritedFds::from_environment();
    CHILD_CHECK(fds.remaining().empty());
    CHILD_CHECK(test::is_open(3));
    CHILD_CHECK(!test::is_cloexec(3));  // untouched: not ours
    return 0;
  });
  EXPECT_EQ(code, 0);
}

TEST(InheritedFds, ClosedInheritedFdIsEbadf) {
  std::vector<unique_fd> reads;
  int code = run_inheriting({"a", "b"}, "a:b", true, reads, [] {
    ::close(4);
    try {
      (void)InheritedFds::from_environment();
    } catch (const std::system_error& e) {
      CHILD_CHECK(e.code().value() == EBADF);
      return 0;
    }
    return 2;
  });
  EXPECT_EQ(code, 0);
}

TEST(InheritedFds, MalformedEnvironmentThrowsEinval) {
  std::vector<unique_fd> reads;
  int code = run_inheriting({"a", "b"}, "only-one-name", true, reads, [] {
    try {
      (void)InheritedFds::from_environment();
    } catch (const std::system_error& e) {
      CHILD_CHECK(e.code().value() == EINVAL);
      return 0;
    }
    return 2;
  });
  EXPECT_EQ(code, 0);
}

TEST(InheritedFds, ProcessWideSetSurvivesUnsettingTheEnvironment) {
  std::vector<unique_fd> reads;
  int code = run_inheriting({"web"}, nullptr, true, reads, [] {
    unset_listen_environment();
    CHILD_CHECK(::getenv("LISTEN_PID") == nullptr);
    CHILD_CHECK(::getenv("LISTEN_FDS") == nullptr);
    CHILD_CHECK(::getenv("LISTEN_FDNAMES") == nullptr);
    auto fd = inherited_fds().take("unknown");
    CHILD_CHECK(fd && fd->get() == 3);
    CHILD_CHECK(!inherited_fds().take("unknown"));
    return 0;
  });
  EXPECT_EQ(code, 0);
}

TEST(ListenFdsVariables, DescribeTheFdsByCountAndNames) {
  EXPECT_EQ(listen_fds_variables({"http", "state.1", "http"}),
            (std::vector<std::string>{"LISTEN_FDS=3", "LISTEN_FDNAMES=http:state.1:http"}));
  EXPECT_EQ(listen_fds_variables({}),
            (std::vector<std::string>{"LISTEN_FDS=0", "LISTEN_FDNAMES="}));
  EXPECT_EQ(listen_pid_variable(42), "LISTEN_PID=42");
  // What one side writes, the other reads back.
  auto vars = listen_fds_variables({"a", "b"});
  auto parsed = parse_listen_fds("7", vars[0].c_str() + 11, vars[1].c_str() + 15, 7);
  ASSERT_TRUE(parsed.ok());
  ASSERT_EQ(parsed->size(), 2u);
  EXPECT_EQ((*parsed)[1].fd, 4);
  EXPECT_EQ((*parsed)[1].name, "b");
}

TEST(EnvironmentWithoutListenFds, DropsExactlyTheThreeVariables) {
  const char* env[] = {"PATH=/bin",        "LISTEN_PID=1", "LISTEN_FDS=2", "LISTEN_FDNAMES=a:b",
                       "LISTEN_FDSX=kept", "HOME=/root",   nullptr};
  EXPECT_EQ(environment_without_listen_fds(env),
            (std::vector<std::string>{"PATH=/bin", "LISTEN_FDSX=kept", "HOME=/root"}));
  EXPECT_TRUE(environment_without_listen_fds(nullptr).empty());
}

// In a child: its fds 3.. are its own to rearrange.
TEST(PlaceListenFds, PutsEachAtThreePlusIndexForExec) {
  auto pipes = test::pipes(3);
  pid_t child = ::fork();
  if (child == 0) {
    // Scramble: the first fd to place sits on 4 (where the second goes), the
    // third is already at 5, its place.
    std::vector<unique_fd> fds;
    int first = ::fcntl(pipes[0].write.get(), F_DUPFD_CLOEXEC, 100);
    int second = ::fcntl(pipes[1].write.get(), F_DUPFD_CLOEXEC, 100);
    int third = ::fcntl(pipes[2].write.get(), F_DUPFD_CLOEXEC, 100);
    if (::dup3(first, 4, O_CLOEXEC) < 0 || ::dup3(third, 5, O_CLOEXEC) < 0) ::_exit(90);
    ::close(first);
    ::close(third);
    fds.emplace_back(4);
    fds.emplace_back(second);
    fds.emplace_back(5);
    if (try_place_listen_fds(fds)) ::_exit(91);
    for (int i = 0; i < 3; ++i) {
      if (fds[static_cast<std::size_t>(i)].get() != 3 + i) ::_exit(92);
      if (test::is_cloexec(3 + i)) ::_exit(93);
      char byte = static_cast<char>('a' + i);
      if (::write(3 + i, &byte, 1) != 1) ::_exit(94);
    }
    // Nothing left over: the fd moved from its old number is closed there.
    if (test::is_open(second)) ::_exit(95);
    ::_exit(0);
  }
  int status = 0;
  ASSERT_EQ(::waitpid(child, &status, 0), child);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0);
  for (int i = 0; i < 3; ++i) {
    char byte = 0;
    ASSERT_EQ(::read(pipes[static_cast<std::size_t>(i)].read.get(), &byte, 1), 1);
    EXPECT_EQ(byte, 'a' + i);  // each pipe's own fd went to its own place
  }
}

}  // namespace
}  // namespace fdbroker
