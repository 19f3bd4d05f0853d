// SPDX-License-Identifier: LGPL-2.1-or-later
// The kernel-contained open of the `open` operation (daemon/open_beneath.cpp
// open_beneath) on a fixed small tree in a temp dir: <tmp>/root holds files,
// directories, symlinks pointing inside, outside, absolute and dangling, a FIFO,
// two hard links, a socket file and (as root) a /dev/null twin; <tmp>/outside holds
// what must never be reached. The input is
//   byte 0: access (bits 0-1: rdonly, wronly, rdwr, invalid), append, create, excl,
//           trunc, nonblock, and bit 7: the walk instead of openat2
//   byte 1: the rule's types (bits 0-3), same_mount (bit 4), a requested mode (bit 5)
//   byte 2: the requested mode's bits (shifted left by 1, bit 6 of byte 1 the lowest)
//   rest:   the relative path, as is (NULs, '..', control characters included)
//
// Invariants:
//  - a path or request the parser would refuse is EINVAL, and nothing else is;
//  - every descriptor returned is the file at that very path under root (found by a
//    walk of the tree that follows no symlink), of a type the rule allows, never a directory or
//    O_PATH, close-on-exec, with the access, O_APPEND and O_NONBLOCK asked for; a
//    writable one has one link; a created one has the rule's mode;
//  - failures are errno values the header documents;
//  - nothing changes outside root, nothing is left in root but what was there
//    (a created file is removed after each input), and no descriptor leaks.
#include <fcntl.h>
#include <ftw.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <set>
#include <sstream>
#include <string>
#include <utility>

#include "fuzz_check.hpp"
#include "open_beneath.hpp"

using fdbroker::unique_fd;
using namespace fdbroker::daemon;

namespace {

constexpr mode_t rule_mode = 0640;

struct Entry {
  std::string path;  // relative to the tree's base
  dev_t dev;
  ino_t ino;
  bool operator<(const Entry& o) const { return path < o.path; }
  bool operator==(const Entry& o) const = default;
};

std::set<Entry>* walked = nullptr;
std::size_t base_length = 0;

int collect(const char* path, const struct stat* st, int, FTW*) {
  walked->insert(Entry{std::string(path + base_length), st->st_dev, st->st_ino});
  return 0;
}

// Every name under `dir`, symlinks as themselves (FTW_PHYS), with its inode.
std::set<Entry> tree_of(const std::string& dir) {
  std::set<Entry> out;
  walked = &out;
  base_length = dir.size();
  FUZZ_CHECK(::nftw(dir.c_str(), collect, 16, FTW_PHYS) == 0, "nftw");
  walked = nullptr;
  return out;
}

std::string content_of(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream out;
  out << in.rdbuf();
  return out.str();
}

int remove_entry(const char* path, const struct stat*, int, FTW*) { return ::remove(path); }

struct Tree {
  std::string base, root, outside;
  unique_fd root_fd;
  std::set<Entry> root_entries, outside_entries;
  std::string secret;

  Tree() {
    const char* tmp = std::getenv("TMPDIR");
    std::string pattern = std::string(tmp != nullptr && *tmp != '\0' ? tmp : "/tmp") +
                          "/fdbroker-fuzz-open-beneath-XXXXXX";
    FUZZ_CHECK(::mkdtemp(pattern.data()) != nullptr, "mkdtemp");
    base = pattern;
    root = base + "/root";
    outside = base + "/outside";
    for (const std::string& dir :
         {root, outside, outside + "/dir", root + "/dir", root + "/dir/sub"})
      FUZZ_CHECK(::mkdir(dir.c_str(), 0755) == 0, "mkdir");
    secret = "outside";
    std::ofstream(outside + "/secret") << secret;
    std::ofstream(root + "/file") << "file";
    std::ofstream(root + "/dir/file2") << "file2";
    std::ofstream(root + "/hard1") << "hard";
    FUZZ_CHECK(::link((root + "/hard1").c_str(), (root + "/hard2").c_str()) == 0, "link");
    const std::pair<const char*, const char*> links[] = {
        {"file", "link_in"},
        {"dir", "link_dir"},
        {"../outside/secret", "link_out"},
        {"../outside", "link_outdir"},
        {"/etc/passwd", "link_abs"},
        {"/etc", "link_etc"},
        {"../outside/new", "dangling"},
        {"../../outside/dir", "dir/sub/up"},
    };
    for (const auto& [target, name] : links)
      FUZZ_CHECK(::symlink(target, (root + "/" + name).c_str()) == 0, "symlink");
    FUZZ_CHECK(::mkfifo((root + "/fifo").c_str(), 0600) == 0, "mkfifo");
    // Not as an unprivileged user; the other types still run.
    ::mknod((root + "/null").c_str(), S_IFCHR | 0666, makedev(1, 3));
    unique_fd sock(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::string sock_path = root + "/sock";
    FUZZ_CHECK(sock_path.size() < sizeof addr.sun_path, "socket path fits");
    std::memcpy(addr.sun_path, sock_path.c_str(), sock_path.size() + 1);
    FUZZ_CHECK(::bind(sock.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0, "bind");
    root_fd.reset(::open(root.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
    FUZZ_CHECK(root_fd.valid(), "open root");
    root_entries = tree_of(root);
    outside_entries = tree_of(outside);
  }
  ~Tree() {
    root_fd.reset();
    ::nftw(base.c_str(), remove_entry, 16, FTW_DEPTH | FTW_PHYS);
  }
};

Tree* tree = nullptr;

void remove_tree() { delete tree; }

// What the request parser lets through (daemon/open_beneath.hpp's precondition),
// control characters aside: open_beneath does not depend on their absence.
bool parser_accepts(std::string_view path, const OpenSpec& spec) {
  if (spec.access == O_ACCMODE) return false;
  if (spec.excl && !spec.create) return false;
  if ((spec.trunc || spec.append) && spec.access == O_RDONLY) return false;
  if (path.empty() || path.find('\0') != std::string_view::npos) return false;
  std::size_t start = 0;
  while (true) {
    std::size_t end = path.find('/', start);
    std::string_view segment = path.substr(start, end - start);
    if (segment.empty() || segment == "." || segment == "..") return false;
    if (end == std::string_view::npos) return true;
    start = end + 1;
  }
}

bool documented(int err) {
  switch (err) {
    case ENOENT:
    case ENOTDIR:
    case ELOOP:
    case EEXIST:
    case EXDEV:
    case EISDIR:
    case EOPNOTSUPP:
    case EACCES:
    case ENXIO:
    case EAGAIN:
    case ENAMETOOLONG:  // the kernel's, for a component or path too long
      return true;
    default:
      return false;
  }
}

unsigned type_bit(mode_t mode) {
  if (S_ISREG(mode)) return type_file;
  if (S_ISFIFO(mode)) return type_fifo;
  if (S_ISSOCK(mode)) return type_socket;
  if (S_ISCHR(mode) || S_ISBLK(mode)) return type_device;
  return 0;
}

void check_opened(const Opened& opened, std::string_view relative, const OpenSpec& spec,
                  const Containment& rule) {
  int fd = opened.fd.get();
  struct stat st {};
  FUZZ_CHECK(::fstat(fd, &st) == 0, "fstat of the returned fd");
  // The file at exactly that path, found by a walk that follows no symlink.
  std::string physical = "/" + std::string(relative);
  bool found = false;
  for (const Entry& e : tree_of(tree->root)) {
    if (e.path == physical) found = e.dev == st.st_dev && e.ino == st.st_ino;
  }
  FUZZ_CHECK(found, "the returned fd is the file at that path under root");
  FUZZ_CHECK((type_bit(st.st_mode) & rule.types) != 0, "a type the rule allows");
  int fd_flags = ::fcntl(fd, F_GETFD);
  int status = ::fcntl(fd, F_GETFL);
  FUZZ_CHECK(fd_flags >= 0 && (fd_flags & FD_CLOEXEC) != 0, "close-on-exec");
  FUZZ_CHECK(status >= 0 && (status & O_PATH) == 0, "not O_PATH");
  FUZZ_CHECK((status & O_ACCMODE) == spec.access, "the access asked for");
  FUZZ_CHECK(((status & O_NONBLOCK) != 0) == spec.nonblock, "O_NONBLOCK as asked");
  FUZZ_CHECK(((status & O_APPEND) != 0) == spec.append, "O_APPEND as asked");
  if (spec.access != O_RDONLY) FUZZ_CHECK(st.st_nlink == 1, "a writable file has one link");
  if (spec.trunc && S_ISREG(st.st_mode)) FUZZ_CHECK(st.st_size == 0, "truncated");
  if (opened.created) {
    FUZZ_CHECK(spec.create, "created only when asked");
    mode_t expected = (spec.mode ? *spec.mode & rule_mode : rule_mode) & 0777;
    FUZZ_CHECK((st.st_mode & 07777) == expected, "a created file has the rule's mode");
    std::string path = tree->root + physical;
    FUZZ_CHECK(::unlink(path.c_str()) == 0, "remove the created file");
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (tree == nullptr) {
    tree = new Tree();
    std::atexit(remove_tree);
  }
  if (size < 3) return 0;
  OpenSpec spec;
  spec.access = data[0] & 3;  // O_RDONLY, O_WRONLY, O_RDWR, and 3 (O_ACCMODE): invalid
  spec.append = (data[0] & 4) != 0;
  spec.create = (data[0] & 8) != 0;
  spec.excl = (data[0] & 16) != 0;
  spec.trunc = (data[0] & 32) != 0;
  spec.nonblock = (data[0] & 64) != 0;
  Resolver resolver = (data[0] & 128) != 0 ? Resolver::walk : Resolver::openat2;
  Containment rule;
  rule.types = data[1] & 15;
  rule.same_mount = (data[1] & 16) != 0;
  rule.mode = rule_mode;
  if ((data[1] & 32) != 0) spec.mode = static_cast<mode_t>((data[2] << 1) | ((data[1] >> 6) & 1));
  std::string_view relative = fuzz::as_text(data + 3, size - 3);

  fuzz::FdCheck fds;
  {
    Outcome<Opened> result = open_beneath(tree->root_fd.get(), relative, spec, rule, resolver);
    if (!parser_accepts(relative, spec)) {
      FUZZ_CHECK(!result.ok() && result.failure().err == EINVAL, "malformed: EINVAL");
    } else if (result.ok()) {
      check_opened(*result, relative, spec, rule);
    } else {
      FUZZ_CHECK(result.failure().err != EINVAL, "well-formed: not EINVAL");
      FUZZ_CHECK(documented(result.failure().err), "a documented errno");
      FUZZ_CHECK(!result.failure().why.empty(), "a reason");
    }
  }
  fds.same("open_beneath");
  FUZZ_CHECK(tree_of(tree->root) == tree->root_entries, "root holds what it held");
  FUZZ_CHECK(tree_of(tree->outside) == tree->outside_entries, "nothing changed outside");
  FUZZ_CHECK(content_of(tree->outside + "/secret") == tree->secret, "the secret is untouched");
  return 0;
}
