// SPDX-License-Identifier: LGPL-2.1-or-later
// The "files" decision (FilePolicy::decide) and the checks of a rule's root at
// load (open_rule_root, write_problem), over real directories.
#include "file_rules.hpp"

#include <fcntl.h>
#include <ftw.h>
#include <grp.h>
#include <gtest/gtest.h>
#include <sched.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <string>
#include <vector>

#include "policy.hpp"
#include "test_util.hpp"

using namespace fdbroker::daemon;
using fdbroker::test::open_fd_count;

namespace {

// A scratch directory tree, removed with everything in it.
class Tree {
 public:
  Tree() {
    const char* base = ::getenv("TMPDIR");
    std::string pattern =
        std::string(base != nullptr && *base != '\0' ? base : "/tmp") + "/fdbroker-rules-XXXXXX";
    if (::mkdtemp(pattern.data()) == nullptr)
      throw std::system_error(errno, std::system_category());
    path_ = pattern;
  }
  Tree(const Tree&) = delete;
  Tree& operator=(const Tree&) = delete;
  ~Tree() {
    ::nftw(
        path_.c_str(),
        [](const char* p, const struct stat*, int, FTW*) { return ::remove(p) < 0 ? 0 : 0; }, 16,
        FTW_DEPTH | FTW_PHYS);
  }
  [[nodiscard]] const std::string& path() const noexcept { return path_; }
  std::string dir(const std::string& rel, mode_t mode = 0755) const {
    std::string p = path_ + "/" + rel;
    EXPECT_EQ(::mkdir(p.c_str(), mode), 0) << p;
    EXPECT_EQ(::chmod(p.c_str(), mode), 0) << p;  // past the umask
    return p;
  }

 private:
  std::string path_;
};

ClientIdentity peer(uid_t uid, std::optional<std::string> unit = std::nullopt) {
  ClientIdentity p;
  p.uid = uid;
  p.gid = uid;
  p.unit = std::move(unit);
  return p;
}

Principals anyone() {
  Principals who;
  who.any = true;
  return who;
}

Principals uid(uid_t u) {
  Principals who;
  who.users = {u};
  return who;
}

FileRule rule(std::string name, std::string root, std::vector<std::string> match, Principals who,
              unsigned allow, unsigned deny = 0) {
  FileRule r;
  r.origin = "files[" + name + "]";
  r.name = std::move(name);
  r.root = std::move(root);
  r.match = std::move(match);
  r.who = std::move(who);
  r.allow = allow;
  r.deny = deny;
  return r;
}

std::shared_ptr<const FilePolicy> load(std::vector<FileRule> rules) {
  std::vector<std::string> warnings;
  auto policy = FilePolicy::open(std::move(rules), warnings);
  EXPECT_TRUE(policy.ok()) << (policy.ok() ? "" : policy.failure().why);
  if (!policy.ok()) return nullptr;
  return *policy;
}

// The rule name decide() grants, or "EACCES: why".
std::string decision(const FilePolicy& policy, const ClientIdentity& who, const std::string& path,
                     unsigned rights) {
  auto grant = policy.decide(who, path, rights);
  if (!grant.ok()) {
    EXPECT_EQ(grant.failure().err, EACCES);
    return "EACCES: " + grant.failure().why;
  }
  return grant->rule->name;
}

constexpr unsigned rw = right_read | right_write;
constexpr unsigned all = right_read | right_write | right_create;
const std::string nothing = "EACCES: no files rule grants it";

}  // namespace

TEST(RightsNeeded, EachFlagNeedsItsRight) {
  EXPECT_EQ(rights_needed(O_RDONLY, false, false, false), right_read);
  EXPECT_EQ(rights_needed(O_WRONLY, false, false, false), right_write);
  EXPECT_EQ(rights_needed(O_RDWR, false, false, false), rw);
  EXPECT_EQ(rights_needed(O_WRONLY, false, true, false), right_write);
  EXPECT_EQ(rights_needed(O_WRONLY, false, false, true), right_write);
  // trunc and append need write whatever the access mode says.
  EXPECT_EQ(rights_needed(O_RDONLY, false, false, true), rw);
  EXPECT_EQ(rights_needed(O_RDONLY, false, true, false), rw);
  EXPECT_EQ(rights_needed(O_WRONLY, true, false, false), right_write | right_create);
  EXPECT_EQ(rights_needed(O_RDWR, true, false, false), all);
}

TEST(FilePolicy, ARootMatchesSegmentWiseNeverAsAStringPrefix) {
  Tree t;
  std::string data = t.dir("data");
  t.dir("data-evil");
  auto policy = load({rule("data", data, {"**"}, anyone(), right_read)});
  ASSERT_TRUE(policy);
  EXPECT_EQ(decision(*policy, peer(1000), data + "/x", right_read), "data");
  EXPECT_EQ(decision(*policy, peer(1000), data + "/a/b/c", right_read), "data");
  EXPECT_EQ(decision(*policy, peer(1000), t.path() + "/data-evil/x", right_read), nothing);
  EXPECT_EQ(decision(*policy, peer(1000), data + "x/y", right_read), nothing);
  // The root itself is no file under it.
  EXPECT_EQ(decision(*policy, peer(1000), data, right_read), nothing);
  EXPECT_EQ(decision(*policy, peer(1000), t.path(), right_read), nothing);
}

TEST(FilePolicy, ARootOfSlashAppliesToEveryAbsolutePath) {
  auto policy = load({rule("all", "/", {"etc/*", "tmp/**"}, anyone(), right_read)});
  ASSERT_TRUE(policy);
  auto grant = policy->decide(peer(1000), "/etc/hostname", right_read);
  ASSERT_TRUE(grant.ok()) << grant.failure().why;
  EXPECT_EQ(grant->relative, "etc/hostname");
  EXPECT_EQ(decision(*policy, peer(1000), "/tmp/a/b", right_read), "all");
  EXPECT_EQ(decision(*policy, peer(1000), "/etc/ssl/x", right_read), nothing);
}

TEST(FilePolicy, AnUncheckedPathIsInvalid) {
  auto policy = load({rule("all", "/", {"**"}, anyone(), right_read)});
  ASSERT_TRUE(policy);
  for (const char* path : {"", "/", "etc/passwd", "/etc/../etc/passwd", "/etc/./passwd",
                           "/etc//passwd", "/etc/", "/etc/.."}) {
    auto refused = policy->decide(peer(1000), path, right_read);
    ASSERT_FALSE(refused.ok()) << path;
    EXPECT_EQ(refused.failure().err, EINVAL) << path;
    EXPECT_EQ(refused.failure().why, "not a normalized absolute path");
  }
  auto nul = policy->decide(peer(1000), std::string_view("/etc/passwd\0x", 14), right_read);
  ASSERT_FALSE(nul.ok());
  EXPECT_EQ(nul.failure().err, EINVAL);
}

TEST(FilePolicy, TheDecisionDoesNotLookAtTheFileSystem) {
  Tree t;
  std::string data = t.dir("data");
  fdbroker::unique_fd f(::open((data + "/exists").c_str(), O_CREAT | O_WRONLY | O_CLOEXEC, 0600));
  ASSERT_TRUE(f.valid());
  auto policy = load({rule("1000", data, {"**"}, uid(1000), right_read)});
  ASSERT_TRUE(policy);
  // Refused alike whether the file exists or not: nothing to learn from it.
  EXPECT_EQ(decision(*policy, peer(1001), data + "/exists", right_read), nothing);
  EXPECT_EQ(decision(*policy, peer(1001), data + "/missing", right_read), nothing);
  // Granted alike too: whether it exists is for the open to find out.
  EXPECT_EQ(decision(*policy, peer(1000), data + "/exists", right_read), "1000");
  EXPECT_EQ(decision(*policy, peer(1000), data + "/missing/deeper", right_read), "1000");
  // Even with the root gone from under its path (the rule holds its fd).
  ASSERT_EQ(::unlink((data + "/exists").c_str()), 0);
  ASSERT_EQ(::rmdir(data.c_str()), 0);
  EXPECT_EQ(decision(*policy, peer(1000), data + "/x", right_read), "1000");
}

TEST(FilePolicy, EveryRefusedRootIsReportedAndNothingStaysOpen) {
  Tree t;
  std::string good = t.dir("good");
  std::size_t before = open_fd_count();
  std::vector<std::string> warnings;
  auto policy =
      FilePolicy::open({rule("good", good, {"**"}, anyone(), right_read),
                        rule("missing", t.path() + "/missing", {"**"}, anyone(), right_read),
                        rule("proc", "/proc", {"**"}, anyone(), right_read)},
                       warnings);
  ASSERT_FALSE(policy.ok());
  EXPECT_EQ(policy.failure().err, ENOENT);  // the first refusal's
  EXPECT_EQ(policy.failure().why,
            "files[missing].root: open \"" + t.path() +
                "/missing\": ENOENT (No such file or directory)\nfiles[proc].root: \"/proc\" is "
                "on procfs, whose files are kernel interfaces, not files to hand out");
  EXPECT_EQ(open_fd_count(), before);
}

TEST(FilePolicy, TheGrantNamesTheRuleItsRootAndTheRelativePath) {
  Tree t;
  std::string data = t.dir("data");
  auto policy = load({rule("data", data, {"**/*.txt"}, anyone(), right_read)});
  ASSERT_TRUE(policy);
  auto grant = policy->decide(peer(1000), data + "/d/e/a.txt", right_read);
  ASSERT_TRUE(grant.ok()) << grant.failure().why;
  EXPECT_EQ(grant->rule, &policy->rules()[0]);
  EXPECT_EQ(grant->relative, "d/e/a.txt");
  struct stat want {
  }, got{};
  ASSERT_EQ(::stat(data.c_str(), &want), 0);
  ASSERT_EQ(::fstat(grant->root_fd, &got), 0);
  EXPECT_EQ(got.st_dev, want.st_dev);
  EXPECT_EQ(got.st_ino, want.st_ino);
  EXPECT_EQ(::fcntl(grant->root_fd, F_GETFL) & O_PATH, O_PATH);
  EXPECT_EQ(::fcntl(grant->root_fd, F_GETFD) & FD_CLOEXEC, FD_CLOEXEC);
  EXPECT_EQ(decision(*policy, peer(1000), data + "/d/e/a.bin", right_read), nothing);
}

TEST(FilePolicy, DotfilesNeedAPatternThatNamesTheDot) {
  Tree t;
  std::string home = t.dir("home");
  auto policy = load({rule("home", home, {"**"}, anyone(), right_read),
                      rule("git", home, {"src/.git/**"}, anyone(), right_read)});
  ASSERT_TRUE(policy);
  EXPECT_EQ(decision(*policy, peer(1000), home + "/.ssh/id_ed25519", right_read), nothing);
  EXPECT_EQ(decision(*policy, peer(1000), home + "/a/.env", right_read), nothing);
  EXPECT_EQ(decision(*policy, peer(1000), home + "/src/.git/config", right_read), "git");
  EXPECT_EQ(decision(*policy, peer(1000), home + "/src/main.c", right_read), "home");
}

TEST(FilePolicy, ADenyFromAnyMatchingRuleBeatsEveryAllow) {
  Tree t;
  std::string spool = t.dir("spool");
  auto policy = load({rule("spool", spool, {"**"}, anyone(), all),
                      rule("no-secrets", spool, {"secret/**"}, anyone(), 0, right_write)});
  ASSERT_TRUE(policy);
  EXPECT_EQ(decision(*policy, peer(1000), spool + "/secret/k", right_write),
            "EACCES: denied by files rule \"no-secrets\" (files[no-secrets])");
  // Any right it denies refuses the whole request...
  EXPECT_EQ(decision(*policy, peer(1000), spool + "/secret/k", rw),
            "EACCES: denied by files rule \"no-secrets\" (files[no-secrets])");
  // ...and the rights it does not deny are still granted.
  EXPECT_EQ(decision(*policy, peer(1000), spool + "/secret/k", right_read), "spool");
  EXPECT_EQ(decision(*policy, peer(1000), spool + "/public/k", right_write), "spool");
}

TEST(FilePolicy, ADenyForOtherPeersOrPathsDoesNotApply) {
  Tree t;
  std::string spool = t.dir("spool");
  auto policy = load({rule("spool", spool, {"**"}, anyone(), all),
                      rule("not-1001", spool, {"**"}, uid(1001), 0, all)});
  ASSERT_TRUE(policy);
  EXPECT_EQ(decision(*policy, peer(1000), spool + "/x", right_read), "spool");
  EXPECT_EQ(decision(*policy, peer(1001), spool + "/x", right_read),
            "EACCES: denied by files rule \"not-1001\" (files[not-1001])");
}

TEST(FilePolicy, TheFirstRuleThatAllowsEveryRightWinsAndIsReported) {
  Tree t;
  std::string data = t.dir("data");
  auto policy = load({rule("txt", data, {"*.txt"}, anyone(), right_read),
                      rule("all", data, {"**"}, anyone(), right_read),
                      rule("late", data, {"**"}, anyone(), right_read)});
  ASSERT_TRUE(policy);
  EXPECT_EQ(decision(*policy, peer(1000), data + "/a.txt", right_read), "txt");
  EXPECT_EQ(decision(*policy, peer(1000), data + "/a.bin", right_read), "all");
}

TEST(FilePolicy, RightsAreNotCombinedAcrossRules) {
  Tree t;
  std::string data = t.dir("data");
  auto policy = load({rule("reader", data, {"**"}, anyone(), right_read),
                      rule("writer", data, {"**"}, anyone(), right_write),
                      rule("creator", data, {"new/**"}, anyone(), all)});
  ASSERT_TRUE(policy);
  EXPECT_EQ(decision(*policy, peer(1000), data + "/f", right_read), "reader");
  EXPECT_EQ(decision(*policy, peer(1000), data + "/f", right_write), "writer");
  // rdwr: no single rule allows both.
  EXPECT_EQ(decision(*policy, peer(1000), data + "/f", rw), nothing);
  EXPECT_EQ(decision(*policy, peer(1000), data + "/f", right_write | right_create), nothing);
  // create + rdwr needs all three from one rule, which is not the first matching.
  EXPECT_EQ(decision(*policy, peer(1000), data + "/new/f", all), "creator");
  // trunc/append with rdonly need read and write.
  EXPECT_EQ(decision(*policy, peer(1000), data + "/f", rights_needed(O_RDONLY, false, true, false)),
            nothing);
}

TEST(FilePolicy, RootAndTheBrokersUidAreNotExempt) {
  Tree t;
  std::string data = t.dir("data");
  auto policy = load({rule("1000", data, {"**"}, uid(1000), right_read)});
  ASSERT_TRUE(policy);
  EXPECT_EQ(decision(*policy, peer(0), data + "/x", right_read), nothing);
  EXPECT_EQ(decision(*policy, peer(::getuid()), data + "/x", right_read), nothing);
  EXPECT_EQ(decision(*policy, peer(1001), data + "/x", right_read), nothing);
  EXPECT_EQ(decision(*policy, peer(1000), data + "/x", right_read), "1000");
  // No rules at all: nobody.
  auto none = load({});
  ASSERT_TRUE(none);
  EXPECT_EQ(decision(*none, peer(0), "/etc/passwd", right_read), nothing);
}

TEST(FilePolicy, UnitRulesMatchThePeersUnit) {
  Tree t;
  std::string keys = t.dir("keys");
  Principals in_nginx;  // "units" alone: any uid in the unit
  in_nginx.any = true;
  in_nginx.units = {"nginx.service"};
  Principals www_in_nginx;  // users and units: both
  www_in_nginx.users = {33};
  www_in_nginx.units = {"nginx.service"};
  auto policy = load({rule("nginx", keys, {"*.key"}, in_nginx, right_read),
                      rule("www", keys, {"*.pem"}, www_in_nginx, right_read)});
  ASSERT_TRUE(policy);
  EXPECT_EQ(decision(*policy, peer(1000, "nginx.service"), keys + "/a.key", right_read), "nginx");
  EXPECT_EQ(decision(*policy, peer(0, "nginx.service"), keys + "/a.key", right_read), "nginx");
  EXPECT_EQ(decision(*policy, peer(1000, "apache2.service"), keys + "/a.key", right_read), nothing);
  EXPECT_EQ(decision(*policy, peer(1000), keys + "/a.key", right_read), nothing);  // no unit known
  EXPECT_EQ(decision(*policy, peer(33, "nginx.service"), keys + "/a.pem", right_read), "www");
  EXPECT_EQ(decision(*policy, peer(34, "nginx.service"), keys + "/a.pem", right_read), nothing);
  EXPECT_EQ(decision(*policy, peer(33, "other.scope"), keys + "/a.pem", right_read), nothing);
}

TEST(FilePolicy, RootsAreOpenedOnceAndClosedWithThePolicy) {
  Tree t;
  std::string a = t.dir("a");
  std::string b = t.dir("b");
  std::size_t before = open_fd_count();
  {
    auto policy = load({rule("a1", a, {"**"}, anyone(), right_read),
                        rule("b", b, {"**"}, anyone(), right_read),
                        rule("a2", a, {"x"}, anyone(), right_read)});
    ASSERT_TRUE(policy);
    EXPECT_EQ(open_fd_count(), before + 2);  // a's root shared by two rules
    auto g1 = policy->decide(peer(1), a + "/q", right_read);
    auto g2 = policy->decide(peer(1), a + "/x", right_read);
    ASSERT_TRUE(g1.ok() && g2.ok());
    EXPECT_EQ(g1->root_fd, g2->root_fd);
  }
  EXPECT_EQ(open_fd_count(), before);
}

TEST(FilePolicy, AGrantOutlivesAReloadWhileThePolicyIsHeld) {
  Tree t;
  std::string a = t.dir("a");
  auto held = load({rule("a", a, {"**"}, anyone(), right_read)});
  ASSERT_TRUE(held);
  auto grant = held->decide(peer(1), a + "/x", right_read);
  ASSERT_TRUE(grant.ok());
  auto current = held;
  current = load({});  // the broker swaps in the reloaded policy
  struct stat st {};
  EXPECT_EQ(::fstat(grant->root_fd, &st), 0);  // still the worker's
  EXPECT_EQ(grant->rule->name, "a");
}

TEST(RuleRoot, ASymlinkAnywhereInTheRootIsRefused) {
  Tree t;
  std::string real = t.dir("real");
  t.dir("real/sub");
  ASSERT_EQ(::symlink(real.c_str(), (t.path() + "/link").c_str()), 0);
  std::vector<std::string> warnings;
  std::size_t before = open_fd_count();
  auto last = open_rule_root(t.path() + "/link", "files[0].root", warnings);
  ASSERT_FALSE(last.ok());
  EXPECT_EQ(last.failure().err, ELOOP);
  EXPECT_EQ(last.failure().why, "files[0].root: \"" + t.path() + "/link\" is a symlink (to \"" +
                                    real +
                                    "\"); name the real directory: the broker follows no "
                                    "symlink");
  auto middle = open_rule_root(t.path() + "/link/sub", "files[0].root", warnings);
  ASSERT_FALSE(middle.ok());
  EXPECT_EQ(middle.failure().err, ELOOP);
  EXPECT_EQ(open_fd_count(), before);
  // The policy refuses to load.
  auto policy =
      FilePolicy::open({rule("l", t.path() + "/link", {"**"}, anyone(), right_read)}, warnings);
  ASSERT_FALSE(policy.ok());
  EXPECT_EQ(policy.failure().err, ELOOP);
  EXPECT_EQ(open_fd_count(), before);
}

TEST(RuleRoot, AFileOrAMissingRootIsRefused) {
  Tree t;
  std::string file = t.path() + "/file";
  fdbroker::unique_fd f(::open(file.c_str(), O_CREAT | O_WRONLY | O_CLOEXEC, 0600));
  ASSERT_TRUE(f.valid());
  std::vector<std::string> warnings;
  auto not_dir = open_rule_root(file, "files[1].root", warnings);
  ASSERT_FALSE(not_dir.ok());
  EXPECT_EQ(not_dir.failure().err, ENOTDIR);
  EXPECT_EQ(not_dir.failure().why, "files[1].root: \"" + file + "\" is not a directory");
  auto below_file = open_rule_root(file + "/x", "files[1].root", warnings);
  ASSERT_FALSE(below_file.ok());
  EXPECT_EQ(below_file.failure().err, ENOTDIR);
  auto missing = open_rule_root(t.path() + "/missing", "files[1].root", warnings);
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.failure().err, ENOENT);
  EXPECT_EQ(
      missing.failure().why.rfind("files[1].root: open \"" + t.path() + "/missing\": ENOENT", 0),
      0u)
      << missing.failure().why;
  auto relative = open_rule_root("srv/data", "files[1].root", warnings);
  ASSERT_FALSE(relative.ok());
  EXPECT_EQ(relative.failure().err, EINVAL);
  EXPECT_EQ(relative.failure().why, "files[1].root: must be an absolute path");
}

TEST(RuleRoot, KernelInterfaceFileSystemsAreRefused) {
  std::vector<std::string> warnings;
  for (const char* root : {"/proc", "/proc/sys", "/sys", "/sys/kernel"}) {
    struct stat st {};
    if (::lstat(root, &st) < 0 || !S_ISDIR(st.st_mode)) continue;  // not in this sandbox
    auto refused = open_rule_root(root, "files[0].root", warnings);
    ASSERT_FALSE(refused.ok()) << root;
    EXPECT_EQ(refused.failure().err, EINVAL) << root;
    EXPECT_NE(
        refused.failure().why.find(std::string(root)[1] == 'p' ? "is on procfs" : "is on sysfs"),
        std::string::npos)
        << refused.failure().why;
  }
  struct stat st {};
  ASSERT_EQ(::stat("/proc/self", &st), 0) << "the test needs /proc";
}

TEST(RuleRoot, AWorldWritableDirectoryWithoutTheStickyBitWarns) {
  Tree t;
  t.dir("open", 0777);
  std::string in_open = t.dir("open/root");
  t.dir("sticky", 01777);
  std::string in_sticky = t.dir("sticky/root");
  std::string itself = t.dir("itself", 0777);
  std::string quiet = t.dir("quiet");

  std::vector<std::string> warnings;
  ASSERT_TRUE(open_rule_root(in_open, "files[0].root", warnings).ok());
  ASSERT_EQ(warnings.size(), 1u);
  EXPECT_EQ(warnings[0], "files[0].root: ancestor \"" + t.path() +
                             "/open\" is writable by every user and not sticky: anyone can move "
                             "the root away and put another directory in its place before the "
                             "next reload");
  warnings.clear();
  ASSERT_TRUE(open_rule_root(in_sticky, "files[0].root", warnings).ok());
  EXPECT_TRUE(warnings.empty()) << warnings[0];
  ASSERT_TRUE(open_rule_root(itself, "files[0].root", warnings).ok());
  ASSERT_EQ(warnings.size(), 1u);
  EXPECT_EQ(warnings[0], "files[0].root: \"" + itself +
                             "\" is writable by every user and not sticky: anyone can replace or "
                             "plant the files its globs match");
  warnings.clear();
  ASSERT_TRUE(open_rule_root(quiet, "files[0].root", warnings).ok());
  EXPECT_TRUE(warnings.empty());
  // Through FilePolicy::open, as at load and in --check-config.
  auto policy = FilePolicy::open({rule("o", in_open, {"**"}, anyone(), right_read)}, warnings);
  ASSERT_TRUE(policy.ok());
  EXPECT_EQ(warnings.size(), 1u);
}

namespace {

// Runs `body` in a child process and returns its exit status (or -1).
template <class F>
int in_child(F body) {
  pid_t pid = ::fork();
  if (pid == 0) ::_exit(body());
  int status = 0;
  if (pid < 0 || ::waitpid(pid, &status, 0) != pid || !WIFEXITED(status)) return -1;
  return WEXITSTATUS(status);
}

constexpr int skipped = 77;

}  // namespace

TEST(RuleRoot, WriteOnAReadOnlyMountWarns) {
  Tree t;
  std::string root = t.dir("ro");
  int status = in_child([&] {
    // A private mount namespace with `root` bound read-only onto itself, as
    // ProtectSystem=strict leaves /etc.
    if (::unshare(CLONE_NEWNS) < 0 ||
        ::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) < 0 ||
        ::mount(root.c_str(), root.c_str(), nullptr, MS_BIND, nullptr) < 0 ||
        ::mount(nullptr, root.c_str(), nullptr, MS_REMOUNT | MS_BIND | MS_RDONLY, nullptr) < 0)
      return skipped;
    std::vector<std::string> warnings;
    auto reader = FilePolicy::open({rule("r", root, {"**"}, anyone(), right_read)}, warnings);
    if (!reader.ok() || !warnings.empty()) return 1;
    auto writer = FilePolicy::open({rule("w", root, {"**"}, anyone(), right_write)}, warnings);
    if (!writer.ok() || warnings.size() != 1) return 2;
    const std::string want = "files[w] (\"w\"): \"" + root +
                             "\" is on a read-only mount where the broker runs, so write and "
                             "create fail with EROFS (under the shipped unit's "
                             "ProtectSystem=strict: add it to ReadWritePaths= in a drop-in)";
    return warnings[0] == want ? 0 : 3;
  });
  if (status == skipped) GTEST_SKIP() << "no mount namespace here (needs CAP_SYS_ADMIN)";
  EXPECT_EQ(status, 0);
}

TEST(RuleRoot, CreateWithoutWritePermissionWarns) {
  Tree t;
  ASSERT_EQ(::chmod(t.path().c_str(), 0755), 0);
  std::string root = t.dir("root-only", 0755);
  int status = in_child([&] {
    // As a user who may not write there, as a broker not running as root would be.
    if (::getuid() == 0 && (::setgroups(0, nullptr) < 0 || ::setresgid(65534, 65534, 65534) < 0 ||
                            ::setresuid(65534, 65534, 65534) < 0))
      return skipped;
    if (::access(root.c_str(), W_OK) == 0) return skipped;  // a file system that ignores modes
    std::vector<std::string> warnings;
    auto writer = FilePolicy::open({rule("w", root, {"**"}, anyone(), right_write)}, warnings);
    if (!writer.ok() || !warnings.empty()) return 1;  // writing existing files may still work
    auto creator = FilePolicy::open({rule("c", root, {"**"}, anyone(), right_create)}, warnings);
    if (!creator.ok() || warnings.size() != 1) return 2;
    return warnings[0] == "files[c] (\"c\"): the broker may not write in \"" + root +
                              "\", so create fails with EACCES"
               ? 0
               : 3;
  });
  if (status == skipped) GTEST_SKIP() << "cannot drop to a user without write permission";
  EXPECT_EQ(status, 0);
}

TEST(RuleRoot, SyntaxProblems) {
  EXPECT_EQ(root_syntax_problem("/srv/data"), "");
  EXPECT_EQ(root_syntax_problem("/"), "");
  EXPECT_EQ(root_syntax_problem(""), "must be an absolute path");
  EXPECT_EQ(root_syntax_problem("srv"), "must be an absolute path");
  EXPECT_EQ(root_syntax_problem("/srv/"), "must not end in '/'");
  EXPECT_EQ(root_syntax_problem("/srv//data"), "must not contain \"//\"");
  EXPECT_EQ(root_syntax_problem("/srv/../etc"), "must not contain a \".\" or \"..\" segment");
  EXPECT_EQ(root_syntax_problem("/srv/./data"), "must not contain a \".\" or \"..\" segment");
  EXPECT_EQ(root_syntax_problem(std::string("/a\0b", 4)), "must not contain a NUL byte");
}
