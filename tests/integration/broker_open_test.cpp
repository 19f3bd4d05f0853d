// SPDX-License-Identifier: LGPL-2.1-or-later
// `open` through a real fdbrokerd: the `files` rules decide, the kernel keeps the
// open beneath the rule's root, and nothing leaks. Each test runs with both
// resolvers (openat2, and the component walk that FDBROKER_RESOLVER=walk forces).
// The resolution's own corner cases (races, mounts, every symlink shape) are in
// tests/unit/open_beneath_test.cpp; here is what a client sees.
#include <fcntl.h>
#include <linux/fs.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <thread>

#include "broker_harness.hpp"
#include "test_util.hpp"

using namespace fdbroker;
using namespace fdbroker::test;
namespace fs = std::filesystem;

namespace {

constexpr uid_t nobody = 65534;
constexpr gid_t nogroup = 65534;

std::string read_all(int fd) {
  std::string out;
  char buf[4096];
  for (;;) {
    ssize_t n = ::pread(fd, buf, sizeof buf, static_cast<off_t>(out.size()));
    if (n <= 0) break;
    out.append(buf, static_cast<std::size_t>(n));
  }
  return out;
}

void write_file(const std::string& path, const std::string& text, mode_t mode = 0600) {
  std::ofstream(path) << text;
  ::chmod(path.c_str(), mode);
}

json open_request(const std::string& path, std::vector<std::string> flags = {"rdonly"}) {
  return {{"op", "open"}, {"path", path}, {"flags", flags}};
}

// A directory tree for the rules, removed with everything in it.
class Tree {
 public:
  Tree() {
    root_ = TempDir().path();  // a fresh unique name; TempDir removed it again
    fs::create_directories(root_ + "/data/sub");
    fs::create_directories(root_ + "/data-evil");
    fs::create_directories(root_ + "/spool");
    ::chmod(root_.c_str(), 0755);
    write_file(root_ + "/data/key.pem", "secret key\n");
    write_file(root_ + "/data/sub/deep.pem", "deep\n");
    write_file(root_ + "/data/.hidden.pem", "hidden\n");
    write_file(root_ + "/data/other.txt", "not a pem\n");
    write_file(root_ + "/data-evil/key.pem", "evil\n");
  }
  ~Tree() {
    std::error_code ec;
    fs::remove_all(root_, ec);
  }
  Tree(const Tree&) = delete;
  Tree& operator=(const Tree&) = delete;
  [[nodiscard]] std::string at(const std::string& rel) const { return root_ + "/" + rel; }

 private:
  std::string root_;
};

class BrokerOpen : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    if (GetParam() == "walk") ::setenv("FDBROKER_RESOLVER", "walk", 1);
  }
  void TearDown() override { ::unsetenv("FDBROKER_RESOLVER"); }

  // Keys for nobody; the spool for nobody's group, with a deny below it.
  json config() const {
    return {{"log_level", "info"},
            {"files",
             {{{"name", "keys"},
               {"root", tree.at("data")},
               {"match", {"*.pem", "**/*.pem"}},
               {"users", {"nobody"}},
               {"allow", {"read"}}},
              {{"name", "no-secrets"},
               {"root", tree.at("spool")},
               {"match", {"secret/**"}},
               {"users", {"*"}},
               {"deny", {"read", "write", "create"}}},
              {{"name", "spool"},
               {"root", tree.at("spool")},
               {"match", {"**"}},
               {"groups", {nogroup}},
               {"allow", {"read", "write", "create"}},
               {"mode", "0640"},
               {"owner", "nobody"},
               {"group", nogroup}}}}};
  }

  Tree tree;
};

std::string resolver_name(const ::testing::TestParamInfo<std::string>& info) { return info.param; }

}  // namespace

INSTANTIATE_TEST_SUITE_P(Resolvers, BrokerOpen, ::testing::Values("openat2", "walk"),
                         resolver_name);

TEST_P(BrokerOpen, AnAllowedUserGetsTheFileAndTheBrokerKeepsNoCopy) {
  BrokerProcess broker(config());
  std::size_t baseline = broker.fd_count();
  std::string result = as_user_expect(broker, nobody, nogroup, {}, [&](Expectations& c) {
    // nobody cannot read the file itself (0600 root): only through the broker.
    if (::access(tree.at("data/key.pem").c_str(), R_OK) == 0) c.fail("nobody can read the key");
    Reply r = c.expect(open_request(tree.at("data/key.pem")), "", "open");
    if (r.fds.size() != 1) {
      c.fail("open attached " + std::to_string(r.fds.size()) + " fds");
      return;
    }
    if (read_all(r.fds[0].get()) != "secret key\n") c.fail("the fd reads something else");
    if (r.body["path"] != tree.at("data/key.pem")) c.fail("path " + r.body["path"].dump());
    if (r.body["rule"] != "keys") c.fail("rule " + r.body["rule"].dump());
    if (r.body["created"] != false) c.fail("created " + r.body["created"].dump());
    if (r.body["fds"].size() != 1 || r.body["fds"][0]["kind"] != "file")
      c.fail("fds " + r.body["fds"].dump());
    if (!is_cloexec(r.fds[0].get())) c.fail("not close-on-exec");
    if ((::fcntl(r.fds[0].get(), F_GETFL) & O_ACCMODE) != O_RDONLY) c.fail("not read-only");
    if (::fcntl(r.fds[0].get(), F_GETFL) & O_NONBLOCK) c.fail("left non-blocking");
    // ** matches zero or more segments; no wildcard matches a leading dot.
    c.expect(open_request(tree.at("data/sub/deep.pem")), "", "open below");
    c.expect(open_request(tree.at("data/.hidden.pem")), "EACCES", "dotfile");
    c.expect(open_request(tree.at("data/other.txt")), "EACCES", "no glob matches");
    // Rights the rule does not give.
    c.expect(open_request(tree.at("data/key.pem"), {"rdwr"}), "EACCES", "write");
    // The rule's root is /…/data, never a string prefix of /…/data-evil.
    c.expect(open_request(tree.at("data-evil/key.pem")), "EACCES", "data-evil");
  });
  EXPECT_EQ(result, "");
  EXPECT_TRUE(broker.settles_at(baseline));
}

TEST_P(BrokerOpen, RefusalsLookTheSameForExistingAndMissingFilesAndRootIsNotExempt) {
  BrokerProcess broker(config());
  std::size_t baseline = broker.fd_count();
  // Root has no rule for the keys: refused, as anyone without one.
  auto root = broker.connect();
  EXPECT_EQ(call(root.get(), open_request(tree.at("data/key.pem"))).error(), "EACCES");
  EXPECT_EQ(call(root.get(), open_request(tree.at("data/missing.pem"))).error(), "EACCES");
  // Another uid: EACCES for an existing and a missing file alike.
  std::string result = as_user_expect(broker, 65533, 65533, {}, [&](Expectations& c) {
    c.expect(open_request(tree.at("data/key.pem")), "EACCES", "existing");
    c.expect(open_request(tree.at("data/missing.pem")), "EACCES", "missing");
    c.expect(open_request(tree.at("data/sub")), "EACCES", "a directory");
  });
  EXPECT_EQ(result, "");
  // The allowed user learns what exists only where a rule lets it.
  result = as_user_expect(broker, nobody, nogroup, {}, [&](Expectations& c) {
    c.expect(open_request(tree.at("data/missing.pem")), "ENOENT", "missing, allowed");
  });
  EXPECT_EQ(result, "");
  EXPECT_TRUE(broker.settles_at(baseline + 1));  // + root's connection
}

TEST_P(BrokerOpen, MalformedRequestsAreEinvalBeforeAnyRule) {
  BrokerProcess broker(config());
  auto s = broker.connect();
  ASSERT_TRUE(call(s.get(), {{"op", "hello"}}).ok());  // accepted: in the baseline
  std::size_t baseline = broker.fd_count();
  std::string key = tree.at("data/key.pem");
  const std::vector<json> bad = {
      {{"op", "open"}},
      {{"op", "open"}, {"path", 7}},
      {{"op", "open"}, {"path", "relative/key.pem"}},
      {{"op", "open"}, {"path", ""}},
      {{"op", "open"}, {"path", "/"}},
      {{"op", "open"}, {"path", tree.at("data/../data/key.pem")}},
      {{"op", "open"}, {"path", tree.at("data/./key.pem")}},
      {{"op", "open"}, {"path", tree.at("data//key.pem")}},
      {{"op", "open"}, {"path", tree.at("data/")}},
      {{"op", "open"}, {"path", tree.at("data/key\n.pem")}},
      {{"op", "open"}, {"path", tree.at("data/key\x7f.pem")}},
      {{"op", "open"}, {"path", "/" + std::string(4096, 'a')}},
      {{"op", "open"}, {"path", key}, {"flags", "rdonly"}},
      {{"op", "open"}, {"path", key}, {"flags", json::array()}},
      {{"op", "open"}, {"path", key}, {"flags", {"rdonly", "wronly"}}},
      {{"op", "open"}, {"path", key}, {"flags", {"rdonly", "directory"}}},
      {{"op", "open"}, {"path", key}, {"flags", {"rdonly", 1}}},
      {{"op", "open"}, {"path", key}, {"flags", {"wronly", "excl"}}},
      {{"op", "open"}, {"path", key}, {"flags", {"rdonly", "trunc"}}},
      {{"op", "open"}, {"path", key}, {"flags", {"rdonly", "append"}}},
      {{"op", "open"}, {"path", key}, {"flags", {"wronly"}}, {"mode", "0600"}},
      {{"op", "open"}, {"path", key}, {"flags", {"wronly", "create"}}, {"mode", "01000"}},
      {{"op", "open"}, {"path", key}, {"flags", {"wronly", "create"}}, {"mode", "0x1"}},
      {{"op", "open"}, {"path", key}, {"flags", {"wronly", "create"}}, {"mode", 384}},
  };
  for (const json& request : bad) {
    Reply r = call(s.get(), request);
    EXPECT_EQ(r.error(), "EINVAL") << request.dump();
    EXPECT_TRUE(r.fds.empty());
  }
  EXPECT_TRUE(broker.settles_at(baseline));
}

TEST_P(BrokerOpen, CreateAppliesTheRulesModeOwnerAndGroup) {
  BrokerProcess broker(config());
  std::size_t baseline = broker.fd_count();
  std::string job = tree.at("spool/job-42.tmp");
  std::string result = as_user_expect(broker, 65533, 65533, {nogroup}, [&](Expectations& c) {
    Reply r = c.expect(
        {{"op", "open"}, {"path", job}, {"flags", {"wronly", "create", "excl"}}, {"mode", "0666"}},
        "", "create");
    if (r.body["created"] != true) c.fail("created " + r.body["created"].dump());
    if (r.fds.size() == 1 && ::write(r.fds[0].get(), "x", 1) != 1) c.fail("cannot write");
    // excl on what exists now: EEXIST; without excl the same file, not created.
    c.expect({{"op", "open"}, {"path", job}, {"flags", {"wronly", "create", "excl"}}}, "EEXIST",
             "excl again");
    Reply again = c.expect({{"op", "open"}, {"path", job}, {"flags", {"rdwr", "create"}}}, "",
                           "create without excl");
    if (again.body["created"] != false) c.fail("created again");
    // Below a deny: refused whatever the allow says, and nothing created.
    c.expect({{"op", "open"}, {"path", tree.at("spool/secret/x")}, {"flags", {"wronly", "create"}}},
             "EACCES", "denied");
  });
  EXPECT_EQ(result, "");
  struct stat st {};
  ASSERT_EQ(::stat(job.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0640u);  // 0666 masked by the rule's 0640
  EXPECT_EQ(st.st_uid, nobody);
  EXPECT_EQ(st.st_gid, nogroup);
  EXPECT_EQ(st.st_size, 1);
  EXPECT_FALSE(fs::exists(tree.at("spool/secret")));
  EXPECT_TRUE(broker.settles_at(baseline));
}

TEST_P(BrokerOpen, SymlinksHardLinksAndTruncAreRefusedAndChangeNothing) {
  BrokerProcess broker(config());
  std::size_t baseline = broker.fd_count();
  write_file(tree.at("spool/log"), "keep me\n", 0644);
  ASSERT_EQ(::link(tree.at("spool/log").c_str(), tree.at("spool/log-link").c_str()), 0);
  ASSERT_EQ(::symlink("/etc/shadow", tree.at("spool/shadow").c_str()), 0);
  ASSERT_EQ(::symlink(tree.at("data").c_str(), tree.at("spool/to-data").c_str()), 0);
  ASSERT_EQ(::symlink("/nonexistent/x", tree.at("spool/dangling").c_str()), 0);
  std::string result = as_user_expect(broker, 65533, 65533, {nogroup}, [&](Expectations& c) {
    c.expect(open_request(tree.at("spool/shadow")), "ELOOP", "final symlink");
    c.expect(open_request(tree.at("spool/to-data/key.pem")), "ELOOP", "intermediate symlink");
    c.expect({{"op", "open"}, {"path", tree.at("spool/dangling")}, {"flags", {"wronly", "create"}}},
             "ELOOP", "dangling symlink with create");
    c.expect({{"op", "open"},
              {"path", tree.at("spool/dangling")},
              {"flags", {"wronly", "create", "excl"}}},
             "EEXIST", "dangling symlink with create and excl");
    // A second hard link: refused for writing (it may be a file from elsewhere),
    // allowed for reading.
    c.expect({{"op", "open"}, {"path", tree.at("spool/log")}, {"flags", {"wronly", "trunc"}}},
             "EACCES", "writable hard link");
    c.expect(open_request(tree.at("spool/log")), "", "readable hard link");
    c.expect(open_request(tree.at("spool")), "EACCES", "the root itself");
  });
  EXPECT_EQ(result, "");
  EXPECT_FALSE(fs::exists("/nonexistent/x"));
  std::ifstream log(tree.at("spool/log"));
  std::string content((std::istreambuf_iterator<char>(log)), std::istreambuf_iterator<char>());
  EXPECT_EQ(content, "keep me\n");  // the refused trunc left it as it was
  EXPECT_TRUE(broker.settles_at(baseline));
}

TEST_P(BrokerOpen, AFifoIsNotOpenedUnlessTheRuleAllowsFifosAndNothingStalls) {
  json cfg = config();
  cfg["files"].push_back({{"name", "fifos"},
                          {"root", tree.at("spool")},
                          {"match", {"fifos/*"}},
                          {"users", {"root"}},
                          {"allow", {"read", "write"}},
                          {"types", {"file", "fifo"}}});
  fs::create_directories(tree.at("spool/fifos"));
  ASSERT_EQ(::mkfifo(tree.at("spool/a-fifo").c_str(), 0666), 0);
  ASSERT_EQ(::mkfifo(tree.at("spool/fifos/ok").c_str(), 0666), 0);
  BrokerProcess broker(cfg);
  std::size_t baseline = broker.fd_count();
  // A writer waits on the FIFO: if the broker opened it for reading, the
  // writer's open would return. It must stay blocked.
  pid_t writer = ::fork();
  if (writer == 0) {
    int fd = ::open(tree.at("spool/a-fifo").c_str(), O_WRONLY);
    ::_exit(fd >= 0 ? 1 : 2);
  }
  std::string result = as_user_expect(broker, 65533, 65533, {nogroup}, [&](Expectations& c) {
    c.expect(open_request(tree.at("spool/a-fifo")), "EOPNOTSUPP", "a fifo, type file only");
  });
  EXPECT_EQ(result, "");
  int status = 0;
  EXPECT_EQ(::waitpid(writer, &status, WNOHANG), 0) << "the writer's open returned";
  ::kill(writer, SIGKILL);
  ::waitpid(writer, &status, 0);
  // Where the rule allows FIFOs: opened without blocking (no writer there), and
  // the broker answers the next request at once.
  auto root = broker.connect();
  Reply r = call(root.get(), open_request(tree.at("spool/fifos/ok")));
  EXPECT_TRUE(r.ok()) << r.body.dump();
  ASSERT_EQ(r.fds.size(), 1u);
  EXPECT_EQ(r.body["fds"][0]["kind"], "pipe");
  EXPECT_TRUE(call(root.get(), {{"op", "hello"}}).ok());
  r.fds.clear();
  root.reset();
  EXPECT_TRUE(broker.settles_at(baseline));
}

TEST_P(BrokerOpen, PipelinedRequestsAreAnsweredInOrderAndStatsCountOpens) {
  BrokerProcess broker(config());
  auto root = broker.connect();
  std::string result = as_user_expect(broker, nobody, nogroup, {}, [&](Expectations& c) {
    // Three requests in one go: the open runs on a worker, the hello and the
    // second open behind it are answered after it, in order.
    send_raw(c.sock(), json({{"op", "open"}, {"id", 1}, {"path", tree.at("data/key.pem")}}).dump());
    send_raw(c.sock(), json({{"op", "hello"}, {"id", 2}}).dump());
    send_raw(c.sock(), json({{"op", "open"}, {"id", 3}, {"path", tree.at("data/x.pem")}}).dump());
    for (int id = 1; id <= 3; ++id) {
      Reply r = receive(c.sock());
      if (r.body["id"] != id) c.fail("reply " + r.body.dump() + " where id " + std::to_string(id));
    }
  });
  EXPECT_EQ(result, "");
  Reply stats = call(root.get(), {{"op", "stats"}});
  EXPECT_EQ(stats.body["requests"]["open"]["ok"], 1) << stats.body.dump();
  EXPECT_EQ(stats.body["requests"]["open"]["ENOENT"], 1) << stats.body.dump();
}

TEST_P(BrokerOpen, AReloadSwapsTheRules) {
  BrokerProcess broker(config());
  auto root = broker.connect();
  EXPECT_EQ(call(root.get(), open_request(tree.at("data/key.pem"))).error(), "EACCES");
  json cfg = config();
  cfg["files"][0]["users"] = {"root"};
  broker.write_config(cfg);
  broker.reload();
  Reply r = call(root.get(), open_request(tree.at("data/key.pem")));
  EXPECT_TRUE(r.ok()) << r.body.dump();
  EXPECT_EQ(r.fds.size(), 1u);
}

TEST(BrokerOpenConfig, RootsOnProcOrSysfsOrSymlinksAreRefusedAtLoad) {
  for (const char* root : {"/proc/self", "/sys/kernel"}) {
    TempDir dir;
    std::string path = dir.path() + "/config.json";
    std::ofstream(path) << json({{"files",
                                  {{{"name", "bad"},
                                    {"root", root},
                                    {"match", {"*"}},
                                    {"users", {"*"}},
                                    {"allow", {"read"}}}}}})
                               .dump();
    std::string command = std::string(std::getenv("FDBROKERD") != nullptr ? std::getenv("FDBROKERD")
                                                                          : FDBROKERD_PATH) +
                          " --check-config --config " + path + " >/dev/null 2>&1";
    EXPECT_NE(std::system(command.c_str()), 0) << root;
    ::unlink(path.c_str());
  }
}

TEST_P(BrokerOpen, ARenameRaceNeverHandsOutAFileFromOutsideTheRoot) {
  // race/d is a directory holding f, race/x a symlink to a directory outside the
  // root holding another f; a thread swaps the two names (RENAME_EXCHANGE) as
  // fast as it can while a client opens race/d/f through the broker.
  fs::create_directories(tree.at("spool/race/d"));
  fs::create_directories(tree.at("outside"));
  write_file(tree.at("spool/race/d/f"), "inside\n", 0644);
  write_file(tree.at("outside/f"), "outside\n", 0644);
  ASSERT_EQ(::symlink(tree.at("outside").c_str(), tree.at("spool/race/x").c_str()), 0);
  struct stat inside {};
  ASSERT_EQ(::stat(tree.at("spool/race/d/f").c_str(), &inside), 0);
  json cfg = config();
  cfg["files"].push_back({{"name", "race"},
                          {"root", tree.at("spool/race")},
                          {"match", {"d/f"}},
                          {"users", {"root"}},
                          {"allow", {"read"}}});
  BrokerProcess broker(cfg);
  auto s = broker.connect();
  ASSERT_TRUE(call(s.get(), {{"op", "hello"}}).ok());
  std::size_t baseline = broker.fd_count();
  std::atomic<bool> stop{false};
  std::atomic<int> swaps{0};
  std::thread swapper([&] {
    int dir = ::open(tree.at("spool/race").c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC);
    while (!stop) {
      if (::syscall(SYS_renameat2, dir, "d", dir, "x", RENAME_EXCHANGE) == 0) ++swaps;
    }
    ::close(dir);
  });
  int granted = 0, refused = 0;
  for (int i = 0; i < 2000; ++i) {
    Reply r = call(s.get(), open_request(tree.at("spool/race/d/f")));
    if (r.ok()) {
      ASSERT_EQ(r.fds.size(), 1u);
      struct stat got {};
      ASSERT_EQ(::fstat(r.fds[0].get(), &got), 0);
      EXPECT_EQ(got.st_dev, inside.st_dev);
      EXPECT_EQ(got.st_ino, inside.st_ino) << "a file from outside the root";
      ++granted;
    } else {
      // The symlink in the path (ELOOP), a missing name mid-swap (ENOENT), or a
      // resolution that kept changing (EAGAIN).
      EXPECT_TRUE(r.error() == "ELOOP" || r.error() == "ENOENT" || r.error() == "EAGAIN" ||
                  r.error() == "ENOTDIR")
          << r.body.dump();
      ++refused;
    }
  }
  stop = true;
  swapper.join();
  EXPECT_GT(swaps.load(), 1000);
  EXPECT_GT(granted, 0);
  EXPECT_GT(refused, 0);
  EXPECT_TRUE(broker.settles_at(baseline));
}
