// SPDX-License-Identifier: LGPL-2.1-or-later
// errno names on the wire, std::system_error in C++, result<T> for event loops.
#include <fdbroker/error.hpp>
#include <fdbroker/result.hpp>

#include <cerrno>
#include <cstring>
#include <string>
#include <system_error>

#include <gtest/gtest.h>

namespace {

using fdbroker::errno_from_name;
using fdbroker::errno_name;

TEST(ErrnoName, KnowsCommonValues) {
  EXPECT_STREQ(errno_name(ENOENT), "ENOENT");
  EXPECT_STREQ(errno_name(EPERM), "EPERM");
  EXPECT_STREQ(errno_name(EMSGSIZE), "EMSGSIZE");
  EXPECT_STREQ(errno_name(E2BIG), "E2BIG");
  EXPECT_STREQ(errno_name(EAGAIN), "EAGAIN");
}

TEST(ErrnoName, UnknownValuesHaveNoName) {
  EXPECT_EQ(errno_name(0), nullptr);
  EXPECT_EQ(errno_name(-1), nullptr);
  EXPECT_EQ(errno_name(-ENOENT), nullptr);
  EXPECT_EQ(errno_name(4095), nullptr);
  EXPECT_EQ(errno_name(1 << 30), nullptr);
}

TEST(ErrnoName, EveryNamedValueRoundTrips) {
  int named = 0;
  for (int err = 1; err < 4096; ++err) {
    const char* name = errno_name(err);
    if (name == nullptr) continue;
    ++named;
    EXPECT_EQ(name[0], 'E') << err;
    EXPECT_EQ(errno_from_name(name), err) << name;
  }
  // Linux defines errno values 1..133, all named except the unused 41 and 58.
  EXPECT_GE(named, 131);
}

TEST(ErrnoFromName, AcceptsTheLinuxAliases) {
  // Other systems' code and peers may spell these the other way.
  EXPECT_EQ(errno_from_name("EWOULDBLOCK"), EWOULDBLOCK);
  EXPECT_EQ(errno_from_name("EDEADLOCK"), EDEADLOCK);
  EXPECT_EQ(errno_from_name("ENOTSUP"), ENOTSUP);
}

TEST(ErrnoFromName, UnknownNamesGiveZero) {
  EXPECT_EQ(errno_from_name(""), 0);
  EXPECT_EQ(errno_from_name("E"), 0);
  EXPECT_EQ(errno_from_name("ENOSUCHERROR"), 0);
  EXPECT_EQ(errno_from_name("enoent"), 0);  // names are case-sensitive, like C
  EXPECT_EQ(errno_from_name("ENOENT "), 0);
  EXPECT_EQ(errno_from_name(std::string("ENOENT\0", 7)), 0);
  EXPECT_EQ(errno_from_name("2"), 0);
}

TEST(ErrnoFromName, DoesNotReadPastTheView) {
  const char text[] = "ENOENTX";
  EXPECT_EQ(errno_from_name(std::string_view(text, 6)), ENOENT);
}

TEST(ThrowErrno, ThrowsSystemErrorWithTheErrno) {
  try {
    fdbroker::throw_errno(EACCES, "opening the store");
    FAIL() << "did not throw";
  } catch (const std::system_error& e) {
    EXPECT_EQ(e.code(), std::error_code(EACCES, std::system_category()));
    EXPECT_EQ(e.code(), std::errc::permission_denied);
    EXPECT_NE(std::string(e.what()).find("opening the store"), std::string::npos) << e.what();
  }
}

TEST(ErrnoCode, IsInTheSystemCategory) {
  auto code = fdbroker::errno_code(EAGAIN);
  EXPECT_EQ(code.value(), EAGAIN);
  EXPECT_EQ(&code.category(), &std::system_category());
  EXPECT_EQ(code, std::errc::resource_unavailable_try_again);
}

TEST(Result, HoldsAValue) {
  fdbroker::result<int> r(7);
  ASSERT_TRUE(r.ok());
  EXPECT_TRUE(static_cast<bool>(r));
  EXPECT_EQ(*r, 7);
  EXPECT_FALSE(r.error());
  EXPECT_EQ(std::move(r).value_or_throw("unused"), 7);
}

TEST(Result, HoldsAnErrorAndThrowsIt) {
  fdbroker::result<std::string> r(fdbroker::errno_code(ENOENT));
  EXPECT_FALSE(r.ok());
  EXPECT_EQ(r.error(), std::errc::no_such_file_or_directory);
  try {
    (void)std::move(r).value_or_throw("lookup");
    FAIL() << "did not throw";
  } catch (const std::system_error& e) {
    EXPECT_EQ(e.code().value(), ENOENT);
    EXPECT_NE(std::string(e.what()).find("lookup"), std::string::npos);
  }
}

}  // namespace
