// SPDX-License-Identifier: LGPL-2.1-or-later
// open_beneath over real files, FIFOs, device nodes, sockets, bind mounts and /proc,
// each test once per resolver (openat2 and the component walk). A tree per test:
// <tmp>/root is the rule's root, <tmp>/outside is what must never be reached.
// Tests that need a namespace, a seccomp filter or another user namespace run in a
// forked child that reports by its exit status (its gtest failures are printed).
// Needs root (mknod, mount namespaces).
#include "open_beneath.hpp"

#include <fcntl.h>
#include <ftw.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sched.h>
#include <stddef.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <csignal>
#include <cstdio>
#include <fstream>
#include <functional>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "test_util.hpp"

using namespace fdbroker;
using namespace fdbroker::daemon;
using fdbroker::test::open_fd_count;

namespace {

std::string resolver_name(const ::testing::TestParamInfo<Resolver>& info) {
  return info.param == Resolver::walk ? "Walk" : "Openat2";
}

::testing::AssertionResult fails_with(const Outcome<Opened>& outcome, int err) {
  if (outcome.ok()) return ::testing::AssertionFailure() << "opened, expected errno " << err;
  if (outcome.failure().err != err)
    return ::testing::AssertionFailure() << "errno " << outcome.failure().err << " ("
                                         << outcome.failure().why << "), expected " << err;
  return ::testing::AssertionSuccess() << outcome.failure().why;
}

struct FileId {
  dev_t dev = 0;
  ino_t ino = 0;
  bool operator==(const FileId&) const = default;
  bool operator<(const FileId& o) const { return dev != o.dev ? dev < o.dev : ino < o.ino; }
};

FileId id_of_fd(int fd) {
  struct stat st {};
  EXPECT_EQ(::fstat(fd, &st), 0);
  return {st.st_dev, st.st_ino};
}

FileId id_of_path(const std::string& path) {
  struct stat st {};
  EXPECT_EQ(::lstat(path.c_str(), &st), 0) << path;
  return {st.st_dev, st.st_ino};
}

bool exists(const std::string& path) {
  struct stat st {};
  return ::lstat(path.c_str(), &st) == 0;
}

std::string content_of(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream out;
  out << in.rdbuf();
  return out.str();
}

std::string read_all(int fd) {
  std::string out;
  char buf[256];
  ssize_t got;
  while ((got = ::pread(fd, buf, sizeof buf, static_cast<off_t>(out.size()))) > 0)
    out.append(buf, static_cast<std::size_t>(got));
  return out;
}

// What every handed-out descriptor must be: close-on-exec, never O_PATH, the access
// asked for, O_NONBLOCK exactly when asked.
void expect_handed_out(int fd, const OpenSpec& spec) {
  int fd_flags = ::fcntl(fd, F_GETFD);
  int status = ::fcntl(fd, F_GETFL);
  ASSERT_GE(fd_flags, 0);
  ASSERT_GE(status, 0);
  EXPECT_NE(fd_flags & FD_CLOEXEC, 0);
  EXPECT_EQ(status & O_PATH, 0);
  EXPECT_EQ(status & O_ACCMODE, spec.access);
  EXPECT_EQ((status & O_NONBLOCK) != 0, spec.nonblock);
  EXPECT_EQ((status & O_APPEND) != 0, spec.append);
}

OpenSpec reading() { return {}; }
OpenSpec writing(int access = O_WRONLY) {
  OpenSpec spec;
  spec.access = access;
  return spec;
}
OpenSpec creating(bool excl, int access = O_WRONLY) {
  OpenSpec spec;
  spec.access = access;
  spec.create = true;
  spec.excl = excl;
  return spec;
}
Containment allowing(unsigned types) {
  Containment rule;
  rule.types = types;
  return rule;
}

int remove_entry(const char* path, const struct stat*, int, FTW*) { return ::remove(path); }

// Runs `body` in a forked child (which may unshare namespaces or install a seccomp
// filter without touching this process) and expects it to pass: the child's exit
// status is whether its own EXPECTs held; their messages go to the same stderr.
void run_in_child(const std::function<void()>& body) {
  ASSERT_FALSE(::testing::Test::HasFailure()) << "the child would inherit a failure";
  std::fflush(nullptr);
  pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    body();
    std::fflush(nullptr);
    ::_exit(::testing::Test::HasFailure() ? 1 : 0);
  }
  int status = 0;
  ASSERT_EQ(::waitpid(pid, &status, 0), pid);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0)
      << "the child failed (its messages are above), status " << status;
}

class OpenBeneath : public ::testing::TestWithParam<Resolver> {
 protected:
  void SetUp() override {
    ASSERT_EQ(::geteuid(), 0u) << "these tests need root: mknod, mount namespaces, chown";
    fds_before_ = open_fd_count();
    const char* tmp = ::getenv("TMPDIR");
    std::string pattern =
        std::string(tmp != nullptr && *tmp != '\0' ? tmp : "/tmp") + "/fdbroker-beneath-XXXXXX";
    ASSERT_NE(::mkdtemp(pattern.data()), nullptr);
    base_ = pattern;
    root_ = base_ + "/root";
    outside_ = base_ + "/outside";
    ASSERT_EQ(::mkdir(root_.c_str(), 0755), 0);
    ASSERT_EQ(::mkdir(outside_.c_str(), 0755), 0);
    root_fd_.reset(::open(root_.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
    ASSERT_TRUE(root_fd_.valid());
  }

  void TearDown() override {
    root_fd_.reset();
    if (!base_.empty()) ::nftw(base_.c_str(), remove_entry, 16, FTW_DEPTH | FTW_PHYS | FTW_MOUNT);
    EXPECT_EQ(open_fd_count(), fds_before_) << "a descriptor leaked";
  }

  Outcome<Opened> open(std::string_view relative, const OpenSpec& spec = {},
                       const Containment& rule = {}) {
    return open_beneath(root_fd_.get(), relative, spec, rule, GetParam());
  }

  std::string in_root(const std::string& relative) const { return root_ + "/" + relative; }
  std::string outside(const std::string& relative) const { return outside_ + "/" + relative; }

  static void write_file(const std::string& path, const std::string& content) {
    std::ofstream(path, std::ios::binary) << content;
  }
  static void make_dir(const std::string& path) { ASSERT_EQ(::mkdir(path.c_str(), 0755), 0); }
  static void make_symlink(const std::string& target, const std::string& path) {
    ASSERT_EQ(::symlink(target.c_str(), path.c_str()), 0) << path;
  }

  // The names in `dir`, to prove nothing was created there.
  static std::set<std::string> names_in(const std::string& dir) {
    std::set<std::string> names;
    if (DIR* d = ::opendir(dir.c_str())) {
      while (const dirent* e = ::readdir(d)) {
        std::string name = e->d_name;
        if (name != "." && name != "..") names.insert(name);
      }
      ::closedir(d);
    }
    return names;
  }

  std::size_t fds_before_ = 0;
  std::string base_, root_, outside_;
  unique_fd root_fd_;
};

INSTANTIATE_TEST_SUITE_P(Resolvers, OpenBeneath,
                         ::testing::Values(Resolver::openat2, Resolver::walk), resolver_name);

// --- Plain opens -----------------------------------------------------------------

TEST_P(OpenBeneath, OpensAFileReadOnly) {
  write_file(in_root("file"), "inside");
  auto opened = open("file");
  ASSERT_TRUE(opened.ok()) << opened.failure().why;
  EXPECT_FALSE(opened->created);
  expect_handed_out(opened->fd.get(), reading());
  EXPECT_EQ(id_of_fd(opened->fd.get()), id_of_path(in_root("file")));
  EXPECT_EQ(read_all(opened->fd.get()), "inside");
}

TEST_P(OpenBeneath, OpensANestedFileForWritingAndAppending) {
  make_dir(in_root("a"));
  make_dir(in_root("a/b"));
  write_file(in_root("a/b/log"), "one\n");
  OpenSpec spec = writing();
  spec.append = true;
  auto opened = open("a/b/log", spec);
  ASSERT_TRUE(opened.ok()) << opened.failure().why;
  expect_handed_out(opened->fd.get(), spec);
  ASSERT_EQ(::write(opened->fd.get(), "two\n", 4), 4);
  EXPECT_EQ(content_of(in_root("a/b/log")), "one\ntwo\n");
}

TEST_P(OpenBeneath, KeepsNonblockOnlyWhenAsked) {
  write_file(in_root("file"), "x");
  OpenSpec spec = writing(O_RDWR);
  spec.nonblock = true;
  auto opened = open("file", spec);
  ASSERT_TRUE(opened.ok()) << opened.failure().why;
  expect_handed_out(opened->fd.get(), spec);
}

// --- Symlinks are never followed ------------------------------------------------------

TEST_P(OpenBeneath, FinalSymlinkIsELOOPEvenWhenItPointsInside) {
  write_file(in_root("file"), "inside");
  make_symlink("file", in_root("link"));
  EXPECT_TRUE(fails_with(open("link"), ELOOP));
  EXPECT_TRUE(fails_with(open("link", writing()), ELOOP));
  Containment everything = allowing(type_file | type_fifo | type_socket | type_device);
  EXPECT_TRUE(fails_with(open("link", reading(), everything), ELOOP));
}

TEST_P(OpenBeneath, IntermediateSymlinkIsELOOP) {
  make_dir(in_root("dir"));
  write_file(in_root("dir/file"), "inside");
  make_symlink("dir", in_root("dirlink"));
  EXPECT_TRUE(fails_with(open("dirlink/file"), ELOOP));
  EXPECT_TRUE(fails_with(open("dirlink/new", creating(true)), ELOOP));
  EXPECT_FALSE(exists(in_root("dir/new")));
}

TEST_P(OpenBeneath, AbsoluteSymlinksAreELOOP) {
  make_symlink("/etc/passwd", in_root("passwd"));
  make_symlink("/etc", in_root("etc"));
  EXPECT_TRUE(fails_with(open("passwd"), ELOOP));
  EXPECT_TRUE(fails_with(open("etc/passwd"), ELOOP));
  EXPECT_TRUE(fails_with(open("etc/passwd"), ELOOP));
}

TEST_P(OpenBeneath, RelativeSymlinksOutOfTheRootAreELOOP) {
  write_file(outside("secret"), "outside");
  make_symlink("../outside/secret", in_root("secret"));
  make_symlink("../outside", in_root("out"));
  EXPECT_TRUE(fails_with(open("secret"), ELOOP));
  EXPECT_TRUE(fails_with(open("out/secret"), ELOOP));
  EXPECT_TRUE(fails_with(open("secret", writing()), ELOOP));
  EXPECT_EQ(content_of(outside("secret")), "outside");
}

// A symlink planted outside the root that points back in: following it would stay
// inside, but the path still leaves the root on the way.
TEST_P(OpenBeneath, SymlinkPlantedOutsidePointingInIsELOOP) {
  make_dir(in_root("sub"));
  write_file(in_root("sub/file"), "inside");
  make_symlink(in_root("sub/file"), outside("back-to-file"));
  make_symlink(in_root("sub"), outside("back-to-sub"));
  make_symlink("../outside/back-to-file", in_root("via-outside"));
  make_symlink("../outside/back-to-sub", in_root("dir-via-outside"));
  EXPECT_TRUE(fails_with(open("via-outside"), ELOOP));
  EXPECT_TRUE(fails_with(open("dir-via-outside/file"), ELOOP));
  EXPECT_TRUE(fails_with(open("dir-via-outside/new", creating(false)), ELOOP));
  EXPECT_FALSE(exists(in_root("sub/new")));
}

// A dangling symlink where a file is to be created: nothing is created anywhere,
// whether it points inside, outside, or through a dangling directory link.
TEST_P(OpenBeneath, DanglingSymlinkWithCreateCreatesNothing) {
  make_dir(in_root("dir"));
  make_symlink("../outside/made", in_root("dangling-out"));
  make_symlink(outside("made-abs"), in_root("dangling-abs"));
  make_symlink("made-in", in_root("dangling-in"));
  make_symlink("../outside/newdir", in_root("dangling-dir"));
  make_symlink("../../outside/made-nested", in_root("dir/dangling"));
  for (const char* name : {"dangling-out", "dangling-abs", "dangling-in", "dir/dangling"}) {
    // The kernel's answer for O_CREAT|O_EXCL on a symlink, and ELOOP otherwise.
    EXPECT_TRUE(fails_with(open(name, creating(true)), EEXIST)) << name;
    EXPECT_TRUE(fails_with(open(name, creating(false)), ELOOP)) << name;
    EXPECT_TRUE(fails_with(open(name, creating(false, O_RDWR)), ELOOP)) << name;
  }
  EXPECT_TRUE(fails_with(open("dangling-dir/x", creating(true)), ELOOP));
  EXPECT_TRUE(fails_with(open("dangling-dir/x", creating(false)), ELOOP));
  EXPECT_EQ(names_in(outside_), std::set<std::string>{});
  EXPECT_EQ(names_in(root_), (std::set<std::string>{"dangling-out", "dangling-abs", "dangling-in",
                                                    "dangling-dir", "dir"}));
  EXPECT_EQ(names_in(in_root("dir")), std::set<std::string>{"dangling"});
}

// --- What the kernel says about the path -----------------------------------------------

TEST_P(OpenBeneath, MissingIsENOENT) {
  make_dir(in_root("dir"));
  EXPECT_TRUE(fails_with(open("missing"), ENOENT));
  EXPECT_TRUE(fails_with(open("dir/missing"), ENOENT));
  EXPECT_TRUE(fails_with(open("nodir/file"), ENOENT));
  EXPECT_TRUE(fails_with(open("nodir/file", creating(false)), ENOENT));
  EXPECT_TRUE(fails_with(open("nodir/deeper/file", creating(true)), ENOENT));
  EXPECT_FALSE(exists(in_root("nodir")));
}

TEST_P(OpenBeneath, DirectoryIsEISDIR) {
  make_dir(in_root("dir"));
  make_dir(in_root("dir/sub"));
  EXPECT_TRUE(fails_with(open("dir"), EISDIR));
  EXPECT_TRUE(fails_with(open("dir/sub", writing()), EISDIR));
  EXPECT_TRUE(fails_with(open("dir/sub", creating(false)), EISDIR));
  EXPECT_TRUE(fails_with(open("dir/sub", creating(true)), EEXIST));
}

TEST_P(OpenBeneath, FileAsDirectoryIsENOTDIR) {
  write_file(in_root("file"), "x");
  EXPECT_TRUE(fails_with(open("file/x"), ENOTDIR));
  EXPECT_TRUE(fails_with(open("file/x/y"), ENOTDIR));
  EXPECT_TRUE(fails_with(open("file/x", creating(false)), ENOTDIR));
  EXPECT_TRUE(fails_with(open("file/x", creating(true)), ENOTDIR));
}

TEST_P(OpenBeneath, MalformedRequestsAreEINVAL) {
  write_file(in_root("file"), "x");
  for (std::string_view bad : {"", "/file", "file/", "a//file", ".", "./file", "..", "../file",
                               "a/../file", "a/./file", "a/.."}) {
    EXPECT_TRUE(fails_with(open(bad), EINVAL)) << "'" << bad << "'";
  }
  EXPECT_TRUE(fails_with(open(std::string_view("file\0/../x", 10)), EINVAL));
  OpenSpec bad_access;
  bad_access.access = O_ACCMODE;
  EXPECT_TRUE(fails_with(open("file", bad_access), EINVAL));
  OpenSpec excl_alone;
  excl_alone.excl = true;
  EXPECT_TRUE(fails_with(open("file", excl_alone), EINVAL));
  OpenSpec trunc_reading;
  trunc_reading.trunc = true;
  EXPECT_TRUE(fails_with(open("file", trunc_reading), EINVAL));
  OpenSpec append_reading;
  append_reading.append = true;
  EXPECT_TRUE(fails_with(open("file", append_reading), EINVAL));
  EXPECT_EQ(content_of(in_root("file")), "x");
}

// --- File types: checked before anything is opened for real ---------------------------

// Waits until `pid` sleeps in openat (the FIFO's open, waiting for a reader).
::testing::AssertionResult sleeps_in_openat(pid_t pid) {
  std::string proc = "/proc/" + std::to_string(pid);
  for (int i = 0; i < 20000; ++i) {
    std::string stat = content_of(proc + "/stat");
    std::string syscall = content_of(proc + "/syscall");
    std::size_t paren = stat.rfind(')');
    char state = paren != std::string::npos && paren + 2 < stat.size() ? stat[paren + 2] : '?';
    if (state == 'S' && syscall.rfind(std::to_string(SYS_openat) + " ", 0) == 0)
      return ::testing::AssertionSuccess();
    if (state == 'Z') return ::testing::AssertionFailure() << "the writer exited";
    ::usleep(500);
  }
  return ::testing::AssertionFailure() << "the writer never blocked in openat";
}

// A writer blocked in open(O_WRONLY) wakes up the moment anybody opens the FIFO for
// reading: that it still sleeps proves the refused open never opened it.
TEST_P(OpenBeneath, FifoWithAWriterWaitingIsNotOpenedUnlessAllowed) {
  std::string fifo = in_root("fifo");
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  pid_t writer = ::fork();
  ASSERT_GE(writer, 0);
  if (writer == 0) {
    int fd = ::open(fifo.c_str(), O_WRONLY);
    ::_exit(fd >= 0 && ::write(fd, "w", 1) == 1 ? 0 : 1);
  }
  ASSERT_TRUE(sleeps_in_openat(writer));

  EXPECT_TRUE(fails_with(open("fifo"), EOPNOTSUPP));
  EXPECT_TRUE(fails_with(open("fifo", writing(O_RDWR)), EOPNOTSUPP));
  EXPECT_TRUE(fails_with(open("fifo", creating(false, O_RDONLY)), EOPNOTSUPP));
  EXPECT_TRUE(fails_with(open("fifo", reading(), allowing(type_device | type_socket)), EOPNOTSUPP));
  EXPECT_TRUE(sleeps_in_openat(writer)) << "a refused open opened the FIFO";

  // Allowed: opened at once for reading (no wait for the writer), and that releases it.
  auto opened = open("fifo", reading(), allowing(type_fifo));
  ASSERT_TRUE(opened.ok()) << opened.failure().why;
  expect_handed_out(opened->fd.get(), reading());
  int status = 0;
  EXPECT_EQ(::waitpid(writer, &status, 0), writer);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
  char byte = 0;
  EXPECT_EQ(::read(opened->fd.get(), &byte, 1), 1);
  EXPECT_EQ(byte, 'w');
}

void ignore_signal(int) {}

// In a child whose blocking calls an alarm interrupts (no SA_RESTART), so that an
// open that did block fails with EINTR instead of hanging the suite; the alarm
// only bounds how long a failure takes.
TEST_P(OpenBeneath, AllowedFifoNeverBlocks) {
  ASSERT_EQ(::mkfifo(in_root("fifo").c_str(), 0600), 0);
  run_in_child([&] {
    struct sigaction interrupt {};
    interrupt.sa_handler = ignore_signal;
    ASSERT_EQ(::sigaction(SIGALRM, &interrupt, nullptr), 0);
    ::alarm(10);
    Containment fifos = allowing(type_fifo);
    // No writer: opened at once, and reads see EOF.
    auto reader = open("fifo", reading(), fifos);
    ASSERT_TRUE(reader.ok()) << reader.failure().why;
    char byte;
    EXPECT_EQ(::read(reader->fd.get(), &byte, 1), 0);
    reader->fd.reset();
    // No reader: the kernel's ENXIO rather than a wait.
    EXPECT_TRUE(fails_with(open("fifo", writing(), fifos), ENXIO));
    // Asked for nonblock: kept.
    OpenSpec nonblocking;
    nonblocking.nonblock = true;
    auto kept = open("fifo", nonblocking, fifos);
    ASSERT_TRUE(kept.ok()) << kept.failure().why;
    expect_handed_out(kept->fd.get(), nonblocking);
  });
}

// A twin of /dev/null beneath the root: refused unless the rule allows devices.
TEST_P(OpenBeneath, DeviceNodeIsRefusedUnlessAllowed) {
  ASSERT_EQ(::mknod(in_root("null").c_str(), S_IFCHR | 0666, makedev(1, 3)), 0);
  EXPECT_TRUE(fails_with(open("null"), EOPNOTSUPP));
  EXPECT_TRUE(fails_with(open("null", writing()), EOPNOTSUPP));
  EXPECT_TRUE(fails_with(open("null", reading(), allowing(type_file | type_fifo | type_socket)),
                         EOPNOTSUPP));
  auto opened = open("null", writing(O_RDWR), allowing(type_device));
  ASSERT_TRUE(opened.ok()) << opened.failure().why;
  expect_handed_out(opened->fd.get(), writing(O_RDWR));
  EXPECT_EQ(::write(opened->fd.get(), "abc", 3), 3);
  char byte;
  EXPECT_EQ(::read(opened->fd.get(), &byte, 1), 0);
  struct stat st {};
  ASSERT_EQ(::fstat(opened->fd.get(), &st), 0);
  EXPECT_TRUE(S_ISCHR(st.st_mode));
}

TEST_P(OpenBeneath, SocketFileIsRefusedAndCannotBeOpened) {
  unique_fd listener = fdbroker::test::raw_unix_listener(in_root("sock"), SOCK_STREAM);
  EXPECT_TRUE(fails_with(open("sock"), EOPNOTSUPP));
  EXPECT_TRUE(fails_with(open("sock", writing(O_RDWR)), EOPNOTSUPP));
  // Allowed by the rule, but open(2) cannot open a socket: the kernel's ENXIO.
  EXPECT_TRUE(fails_with(open("sock", writing(O_RDWR), allowing(type_socket)), ENXIO));
}

// --- Hard links and trunc -----------------------------------------------------------

TEST_P(OpenBeneath, HardLinkIsRefusedForWritingButReadable) {
  write_file(outside("shadow"), "secret");
  ASSERT_EQ(::link(outside("shadow").c_str(), in_root("planted").c_str()), 0);
  EXPECT_TRUE(fails_with(open("planted", writing()), EACCES));
  EXPECT_TRUE(fails_with(open("planted", writing(O_RDWR)), EACCES));
  OpenSpec appending = writing();
  appending.append = true;
  EXPECT_TRUE(fails_with(open("planted", appending), EACCES));
  EXPECT_TRUE(fails_with(open("planted", creating(false)), EACCES));
  auto read = open("planted");
  ASSERT_TRUE(read.ok()) << read.failure().why;
  EXPECT_EQ(read_all(read->fd.get()), "secret");
  EXPECT_EQ(content_of(outside("shadow")), "secret");
}

TEST_P(OpenBeneath, TruncEmptiesTheFileOnlyWhenEveryCheckPassed) {
  write_file(in_root("file"), "content");
  write_file(in_root("linked"), "content");
  ASSERT_EQ(::link(in_root("linked").c_str(), in_root("linked2").c_str()), 0);
  OpenSpec trunc = writing();
  trunc.trunc = true;
  // Refused: a second hard link; a type the rule does not allow; the file left alone.
  EXPECT_TRUE(fails_with(open("linked", trunc), EACCES));
  EXPECT_TRUE(fails_with(open("file", trunc, allowing(type_fifo)), EOPNOTSUPP));
  OpenSpec create_trunc = creating(false);
  create_trunc.trunc = true;
  EXPECT_TRUE(fails_with(open("linked2", create_trunc), EACCES));
  EXPECT_EQ(content_of(in_root("linked")), "content");
  EXPECT_EQ(content_of(in_root("file")), "content");
  // Allowed: empty.
  auto opened = open("file", trunc);
  ASSERT_TRUE(opened.ok()) << opened.failure().why;
  EXPECT_EQ(content_of(in_root("file")), "");
  write_file(in_root("file"), "again");
  auto created_or_not = open("file", create_trunc);
  ASSERT_TRUE(created_or_not.ok()) << created_or_not.failure().why;
  EXPECT_FALSE(created_or_not->created);
  EXPECT_EQ(content_of(in_root("file")), "");
}

// --- Creating -----------------------------------------------------------------------

TEST_P(OpenBeneath, CreatesAFileInTheRootAndBelow) {
  make_dir(in_root("dir"));
  auto top = open("new", creating(true));
  ASSERT_TRUE(top.ok()) << top.failure().why;
  EXPECT_TRUE(top->created);
  expect_handed_out(top->fd.get(), creating(true));
  EXPECT_EQ(id_of_fd(top->fd.get()), id_of_path(in_root("new")));
  OpenSpec spec = creating(false, O_RDWR);
  spec.append = true;
  spec.nonblock = true;
  auto nested = open("dir/new", spec);
  ASSERT_TRUE(nested.ok()) << nested.failure().why;
  EXPECT_TRUE(nested->created);
  expect_handed_out(nested->fd.get(), spec);
  EXPECT_EQ(id_of_fd(nested->fd.get()), id_of_path(in_root("dir/new")));
  ASSERT_EQ(::write(nested->fd.get(), "x", 1), 1);
  EXPECT_EQ(content_of(in_root("dir/new")), "x");
}

TEST_P(OpenBeneath, CreateExclOnAnExistingNameIsEEXIST) {
  write_file(in_root("file"), "kept");
  make_symlink("file", in_root("link"));
  EXPECT_TRUE(fails_with(open("file", creating(true)), EEXIST));
  EXPECT_TRUE(fails_with(open("link", creating(true)), EEXIST));
  EXPECT_TRUE(fails_with(open("link", creating(false)), ELOOP));
  EXPECT_EQ(content_of(in_root("file")), "kept");
}

TEST_P(OpenBeneath, CreateWithoutExclOpensTheExistingFileAsItIs) {
  write_file(in_root("file"), "kept");
  ASSERT_EQ(::chmod(in_root("file").c_str(), 0604), 0);
  Containment rule;
  rule.mode = 0600;
  rule.owner = 65534;
  auto opened = open("file", creating(false, O_RDWR), rule);
  ASSERT_TRUE(opened.ok()) << opened.failure().why;
  EXPECT_FALSE(opened->created);
  EXPECT_EQ(id_of_fd(opened->fd.get()), id_of_path(in_root("file")));
  EXPECT_EQ(read_all(opened->fd.get()), "kept");
  struct stat st {};
  ASSERT_EQ(::stat(in_root("file").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0604u) << "the rule's mode is for created files only";
  EXPECT_EQ(st.st_uid, 0u) << "the rule's owner is for created files only";
}

TEST_P(OpenBeneath, CreateNeedsTheFileType) {
  EXPECT_TRUE(fails_with(open("new", creating(true), allowing(type_fifo)), EOPNOTSUPP));
  EXPECT_TRUE(fails_with(open("new", creating(false), allowing(type_device)), EOPNOTSUPP));
  EXPECT_EQ(names_in(root_), std::set<std::string>{});
}

// The permission bits are the request's masked by the rule's (or the rule's), never
// more than 0777, whatever the umask.
TEST_P(OpenBeneath, CreatedModeIsMaskedByTheRuleNotTheUmask) {
  struct Case {
    const char* name;
    std::optional<mode_t> requested;
    mode_t rule;
    mode_t expected;
  };
  const Case cases[] = {
      {"requested", 0666, 0640, 0640},
      {"rule-only", std::nullopt, 0644, 0644},
      {"narrower", 0600, 0755, 0600},
      {"special-bits", 07777, 07755, 0755},
      {"none", 0, 0644, 0},
  };
  mode_t old_umask = ::umask(077);
  for (const Case& c : cases) {
    OpenSpec spec = creating(true);
    spec.mode = c.requested;
    Containment rule;
    rule.mode = c.rule;
    auto created = open(c.name, spec, rule);
    ASSERT_TRUE(created.ok()) << c.name << ": " << created.failure().why;
    struct stat st {};
    ASSERT_EQ(::stat(in_root(c.name).c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 07777, c.expected) << c.name;
  }
  ::umask(old_umask);
}

TEST_P(OpenBeneath, CreatedFileGetsTheRulesOwnerAndGroup) {
  Containment both;
  both.owner = 65534;
  both.group = 65534;
  auto created = open("both", creating(true), both);
  ASSERT_TRUE(created.ok()) << created.failure().why;
  struct stat st {};
  ASSERT_EQ(::stat(in_root("both").c_str(), &st), 0);
  EXPECT_EQ(st.st_uid, 65534u);
  EXPECT_EQ(st.st_gid, 65534u);
  Containment group_only;
  group_only.group = 65534;
  auto grouped = open("group", creating(true), group_only);
  ASSERT_TRUE(grouped.ok()) << grouped.failure().why;
  ASSERT_EQ(::stat(in_root("group").c_str(), &st), 0);
  EXPECT_EQ(st.st_uid, ::geteuid());
  EXPECT_EQ(st.st_gid, 65534u);
}

// fchown fails for real: in a user namespace that maps only root, uid 65534 does
// not exist (EINVAL). The file created before it must be gone again.
TEST_P(OpenBeneath, CreatedFileIsRemovedWhenChownFails) {
  make_dir(in_root("dir"));
  run_in_child([&] {
    ASSERT_EQ(::unshare(CLONE_NEWUSER), 0) << std::strerror(errno);
    std::ofstream("/proc/self/setgroups") << "deny";
    std::ofstream("/proc/self/uid_map") << "0 0 1";
    std::ofstream("/proc/self/gid_map") << "0 0 1";
    std::size_t before = open_fd_count();
    Containment owned;
    owned.owner = 65534;
    EXPECT_TRUE(fails_with(open("new", creating(true), owned), EINVAL));
    EXPECT_TRUE(fails_with(open("dir/new", creating(false), owned), EINVAL));
    Containment grouped;
    grouped.group = 65534;
    EXPECT_TRUE(fails_with(open("dir/new2", creating(true), grouped), EINVAL));
    EXPECT_EQ(open_fd_count(), before);
    // The same create without an owner works here: the failure was the fchown.
    auto plain = open("dir/plain", creating(true));
    EXPECT_TRUE(plain.ok());
  });
  EXPECT_EQ(names_in(root_), std::set<std::string>{"dir"});
  EXPECT_EQ(names_in(in_root("dir")), std::set<std::string>{"plain"});
}

// --- Descriptor limits ----------------------------------------------------------------

// RLIMIT_NOFILE set so that exactly one more descriptor fits: the O_PATH step gets
// it and the real open fails, or the walk's second step fails. EMFILE, and the
// descriptor that did fit is closed again (the fixture counts).
TEST_P(OpenBeneath, DescriptorLimitIsEMFILEAndLeaksNothing) {
  make_dir(in_root("dir"));
  write_file(in_root("file"), "x");
  write_file(in_root("dir/file"), "x");
  rlimit old{};
  ASSERT_EQ(::getrlimit(RLIMIT_NOFILE, &old), 0);
  unique_fd probe(::fcntl(root_fd_.get(), F_DUPFD_CLOEXEC, 0));  // the lowest free number
  ASSERT_TRUE(probe.valid());
  rlimit one_more = old;
  one_more.rlim_cur = static_cast<rlim_t>(probe.get()) + 1;
  probe.reset();
  ASSERT_EQ(::setrlimit(RLIMIT_NOFILE, &one_more), 0);
  auto top = open("file");
  auto nested = open("dir/file");
  auto create_nested = open("dir/new", creating(true));
  ::setrlimit(RLIMIT_NOFILE, &old);
  EXPECT_TRUE(fails_with(top, EMFILE));
  EXPECT_TRUE(fails_with(nested, EMFILE));
  EXPECT_TRUE(fails_with(create_nested, EMFILE));
  EXPECT_FALSE(exists(in_root("dir/new")));
}

// --- Races ------------------------------------------------------------------------------

// One thread swaps the directory `d` with a symlink to /etc thousands of times while
// this one opens d/passwd: every descriptor returned is root's d/passwd, never
// /etc/passwd, and some opens succeeded (and some were refused: the race was real).
TEST_P(OpenBeneath, RenameRaceNeverLeavesTheRoot) {
  make_dir(in_root("d"));
  write_file(in_root("d/passwd"), "inside");
  make_symlink("/etc", in_root("s"));
  const FileId inside = id_of_path(in_root("d/passwd"));
  std::atomic<bool> stop{false};
  std::atomic<int> swaps{0};
  std::atomic<int> swap_error{0};
  std::thread swapper([&] {
    while (!stop.load()) {
      if (::renameat2(root_fd_.get(), "d", root_fd_.get(), "s", RENAME_EXCHANGE) < 0) {
        swap_error = errno;
        return;
      }
      ++swaps;
    }
  });
  int opened = 0, refused = 0, escaped = 0, unexpected = 0;
  for (int i = 0; i < 2'000'000 && (swaps < 5000 || opened + refused < 5000) && swap_error == 0;
       ++i) {
    auto result = open("d/passwd");
    if (result.ok()) {
      ++opened;
      if (!(id_of_fd(result->fd.get()) == inside)) ++escaped;
    } else if (result.failure().err == ELOOP || result.failure().err == EAGAIN) {
      ++refused;
    } else {
      ++unexpected;
      ADD_FAILURE() << result.failure().why;
      if (unexpected > 5) break;
    }
  }
  stop = true;
  swapper.join();
  EXPECT_EQ(swap_error, 0);
  EXPECT_EQ(escaped, 0);
  EXPECT_GT(opened, 0);
  EXPECT_GT(refused, 0);
  EXPECT_GE(swaps, 5000);
}

// The same race with create: every file made is in the root's directory, and the
// directory outside stays empty.
TEST_P(OpenBeneath, CreateRaceNeverLeavesTheRoot) {
  make_dir(in_root("d"));
  make_symlink(outside_, in_root("s"));
  unique_fd dir(::open(in_root("d").c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
  ASSERT_TRUE(dir.valid());
  std::atomic<bool> stop{false};
  std::atomic<int> swaps{0};
  std::thread swapper([&] {
    while (!stop.load() &&
           ::renameat2(root_fd_.get(), "d", root_fd_.get(), "s", RENAME_EXCHANGE) == 0)
      ++swaps;
  });
  int created = 0, refused = 0, misplaced = 0;
  for (int i = 0; i < 200'000 && (swaps < 2000 || created + refused < 2000); ++i) {
    std::string name = "n" + std::to_string(i);
    auto result = open("d/" + name, creating(true));
    if (result.ok()) {
      ++created;
      struct stat there {};
      if (::fstatat(dir.get(), name.c_str(), &there, AT_SYMLINK_NOFOLLOW) != 0 ||
          !(FileId{there.st_dev, there.st_ino} == id_of_fd(result->fd.get())))
        ++misplaced;
      ::unlinkat(dir.get(), name.c_str(), 0);
    } else if (result.failure().err == ELOOP || result.failure().err == EAGAIN) {
      ++refused;
    } else {
      ADD_FAILURE() << result.failure().why;
      break;
    }
  }
  stop = true;
  swapper.join();
  EXPECT_EQ(misplaced, 0);
  EXPECT_EQ(names_in(outside_), std::set<std::string>{});
  EXPECT_GT(created, 0);
  EXPECT_GT(refused, 0);
}

// Create without excl while another thread creates and removes the same name: the
// name may vanish between the failed create (EEXIST) and the open of the existing
// file; that is retried, never answered ENOENT.
TEST_P(OpenBeneath, CreateWithoutExclRacingWithUnlinkIsRetried) {
  make_dir(in_root("d"));
  unique_fd dir(::open(in_root("d").c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
  ASSERT_TRUE(dir.valid());
  std::atomic<bool> stop{false};
  std::atomic<int> cycles{0};
  std::thread churn([&] {
    while (!stop.load()) {
      int fd = ::openat(dir.get(), "x", O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
      if (fd >= 0) ::close(fd);
      ::unlinkat(dir.get(), "x", 0);
      ++cycles;
    }
  });
  int created = 0, existing = 0, again = 0;
  for (int i = 0; i < 200'000 && (cycles < 2000 || created + existing < 2000); ++i) {
    auto result = open("d/x", creating(false));
    if (result.ok()) {
      ++(result->created ? created : existing);
    } else if (result.failure().err == EAGAIN) {
      ++again;
    } else {
      ADD_FAILURE() << result.failure().why;
      break;
    }
  }
  stop = true;
  churn.join();
  EXPECT_GT(created + existing, 0);
  EXPECT_GE(cycles, 2000);
}

// --- Mounts and /proc, in a private mount namespace ---------------------------------

// Below the root: a bind mount of a directory of the same file system (same st_dev:
// only mount ids tell), a tmpfs, a file bind-mounted over a file, /proc and /sys.
TEST_P(OpenBeneath, MountsBelowTheRootAreEXDEVOnlyWithSameMount) {
  make_dir(outside("same-fs"));
  write_file(outside("same-fs/file"), "bound");
  write_file(outside("bound-file"), "file over file");
  make_dir(in_root("same"));
  make_dir(in_root("other"));
  make_dir(in_root("proc"));
  make_dir(in_root("sys"));
  make_dir(in_root("plain"));
  write_file(in_root("plain/file"), "plain");
  write_file(in_root("over"), "hidden");
  run_in_child([&] {
    ASSERT_EQ(::unshare(CLONE_NEWNS), 0) << std::strerror(errno);
    ASSERT_EQ(::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr), 0);
    ASSERT_EQ(
        ::mount(outside("same-fs").c_str(), in_root("same").c_str(), nullptr, MS_BIND, nullptr), 0);
    ASSERT_EQ(::mount("tmpfs", in_root("other").c_str(), "tmpfs", 0, "size=64k"), 0);
    write_file(in_root("other/file"), "tmpfs");
    ASSERT_EQ(
        ::mount(outside("bound-file").c_str(), in_root("over").c_str(), nullptr, MS_BIND, nullptr),
        0);
    ASSERT_EQ(::mount("/proc", in_root("proc").c_str(), nullptr, MS_BIND | MS_REC, nullptr), 0);
    ASSERT_EQ(::mount("/sys", in_root("sys").c_str(), nullptr, MS_BIND, nullptr), 0);
    // The root descriptor from before unshare() sees the old namespace's mounts.
    root_fd_.reset(::open(root_.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
    ASSERT_TRUE(root_fd_.valid());
    // The premise: the same-fs bind cannot be told apart by st_dev.
    ASSERT_EQ(id_of_path(in_root("same/file")).dev, id_of_path(in_root("plain/file")).dev);
    std::size_t before = open_fd_count();

    Containment anywhere;
    Containment one_mount;
    one_mount.same_mount = true;
    for (const char* path : {"same/file", "other/file", "over"}) {
      auto crossed = open(path, reading(), anywhere);
      EXPECT_TRUE(crossed.ok()) << path << ": " << crossed.failure().why;
      if (crossed.ok()) {
        EXPECT_EQ(id_of_fd(crossed->fd.get()), id_of_path(in_root(path)));
      }
      EXPECT_TRUE(fails_with(open(path, reading(), one_mount), EXDEV)) << path;
    }
    auto plain = open("plain/file", writing(), one_mount);
    EXPECT_TRUE(plain.ok()) << plain.failure().why;
    EXPECT_TRUE(fails_with(open("same", reading(), one_mount), EXDEV));
    EXPECT_TRUE(fails_with(open("same/new", creating(true), one_mount), EXDEV));
    EXPECT_TRUE(fails_with(open("other/new", creating(false), one_mount), EXDEV));
    EXPECT_FALSE(exists(outside("same-fs/new")));
    EXPECT_FALSE(exists(in_root("other/new")));
    auto made = open("same/new", creating(true), anywhere);
    EXPECT_TRUE(made.ok()) << made.failure().why;
    EXPECT_TRUE(exists(outside("same-fs/new")));

    // /proc's magic links (and its `self` symlink) are never followed, as a final
    // component or on the way.
    std::string pid = std::to_string(::getpid());
    std::string root_fd = std::to_string(root_fd_.get());
    for (const std::string& path : std::vector<std::string>{
             "proc/self/status", "proc/thread-self/status", "proc/" + pid + "/root",
             "proc/" + pid + "/root/etc/passwd", "proc/" + pid + "/cwd/x", "proc/" + pid + "/exe",
             "proc/" + pid + "/fd/" + root_fd, "proc/" + pid + "/fd/" + root_fd + "/plain/file",
             "proc/1/root/etc/passwd"}) {
      EXPECT_TRUE(fails_with(open(path, reading(), anywhere), ELOOP)) << path;
    }
    // Its files, and sysfs's, are kernel interfaces: refused like a type not allowed.
    EXPECT_TRUE(fails_with(open("proc/" + pid + "/status", reading(), anywhere), EOPNOTSUPP));
    EXPECT_TRUE(fails_with(open("proc/sys/kernel/hostname", writing(), anywhere), EOPNOTSUPP));
    EXPECT_TRUE(fails_with(open("sys/kernel/uevent_seqnum", reading(), anywhere), EOPNOTSUPP));
    EXPECT_TRUE(fails_with(open("proc/" + pid + "/root/etc/passwd", reading(), one_mount), EXDEV));
    EXPECT_TRUE(fails_with(open("proc/" + pid + "/status", reading(), one_mount), EXDEV));
    EXPECT_EQ(open_fd_count(), before + 2) << "only the two opened above are open";
  });
}

// --- The probe ----------------------------------------------------------------------

TEST(OpenBeneathResolver, DefaultIsTheProbedOne) {
  std::optional<Resolver> probed = probe_resolver();
  ASSERT_TRUE(probed.has_value());
  EXPECT_EQ(default_resolver(), *probed);
  EXPECT_EQ(default_resolver(), *probed);
}

TEST(OpenBeneathResolver, EnvironmentForcesEither) {
  run_in_child([] {
    ::setenv("FDBROKER_RESOLVER", "walk", 1);
    EXPECT_EQ(probe_resolver(), Resolver::walk);
    ::setenv("FDBROKER_RESOLVER", "openat2", 1);
    EXPECT_EQ(probe_resolver(), Resolver::openat2);
    ::setenv("FDBROKER_RESOLVER", "something-else", 1);
    EXPECT_EQ(probe_resolver(), Resolver::openat2);  // this kernel has openat2
  });
}

// A seccomp filter that answers openat2 with `err`, as container runtimes do.
void refuse_openat2(int err) {
  sock_filter filter[] = {
      BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(seccomp_data, nr)),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_openat2, 0, 1),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | (static_cast<unsigned>(err) & 0xffff)),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
  };
  sock_fprog program{static_cast<unsigned short>(std::size(filter)), filter};
  ASSERT_EQ(::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), 0);
  ASSERT_EQ(::prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &program), 0) << std::strerror(errno);
}

TEST(OpenBeneathResolver, WalkWhereSeccompOrTheKernelRefusesOpenat2) {
  for (int err : {EPERM, ENOSYS}) {
    run_in_child([err] {
      ::unsetenv("FDBROKER_RESOLVER");
      refuse_openat2(err);
      EXPECT_EQ(probe_resolver(), Resolver::walk) << err;
      // An explicit openat2 is not silently replaced: the kernel's answer.
      unique_fd root(::open("/", O_PATH | O_DIRECTORY | O_CLOEXEC));
      auto refused = open_beneath(root.get(), "etc/passwd", {}, {}, Resolver::openat2);
      EXPECT_TRUE(fails_with(refused, err));
      auto walked = open_beneath(root.get(), "etc/passwd", {}, {}, Resolver::walk);
      EXPECT_TRUE(walked.ok()) << walked.failure().why;
    });
  }
}

}  // namespace
