// SPDX-License-Identifier: LGPL-2.1-or-later
// Client::open and Client::bind against a scripted peer (a real AF_UNIX listener
// in the test that answers with a fixed reply and real descriptors): the request
// that goes out, the descriptor handed over, and replies that carry the wrong
// number of descriptors, which must fail with EPROTO and leak nothing. The same
// calls against a real fdbrokerd are in tests/integration/client_privsep_test.cpp.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <fdbroker/client.hpp>
#include <fdbroker/scm_rights.hpp>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "test_util.hpp"

namespace {

using fdbroker::BrokerError;
using fdbroker::Client;
using fdbroker::unique_fd;
using namespace fdbroker::test;
using nlohmann::json;

// A peer that accepts one connection, reads one request and answers `reply` (its
// "id" set to the request's) with `fds` attached.
class ScriptedPeer {
 public:
  ScriptedPeer() : path_(dir_.socket_path("peer.sock")) {
    listener_ = raw_unix_listener(path_, SOCK_SEQPACKET);
  }
  [[nodiscard]] const std::string& path() const { return path_; }

  // Runs the exchange on a thread while `client_side` runs here; returns the
  // request the peer received.
  template <class F>
  json exchange(json reply, const std::vector<int>& fds, F&& client_side) {
    json request;
    std::thread peer([&] {
      unique_fd conn(::accept4(listener_.get(), nullptr, nullptr, SOCK_CLOEXEC));
      if (!conn.valid()) return;
      auto message = fdbroker::recvfds(conn.get(), 65537);
      request = json::parse(message.payload, nullptr, false);
      if (request.is_object() && request.contains("id")) reply["id"] = request["id"];
      fdbroker::sendfds(conn.get(), reply.dump(), fds);
      // Wait for the client to hang up, so its fd count is final before we return.
      fdbroker::recvfds(conn.get(), 1);
    });
    client_side();
    peer.join();
    return request;
  }

 private:
  TempDir dir_;
  std::string path_;
  unique_fd listener_;
};

json open_reply(int described) {
  json fds = json::array();
  for (int i = 0; i < described; ++i) fds.push_back({{"kind", "file"}, {"path", "/srv/a"}});
  return {{"ok", true}, {"path", "/srv/a"}, {"rule", "r1"}, {"created", false}, {"fds", fds}};
}

TEST(ClientOpenBind, OpenSendsTheRequestAndHandsOverTheOneDescriptor) {
  ScriptedPeer peer;
  TempDir files;
  std::string path = files.socket_path("a");
  unique_fd file(::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600));
  ASSERT_TRUE(file.valid());
  fdbroker::Opened opened;
  fdbroker::OpenFlags flags;
  flags.access = fdbroker::OpenAccess::write;
  flags.create = true;
  flags.trunc = true;
  json request = peer.exchange(open_reply(1), {file.get()}, [&] {
    Client client(peer.path());
    opened = client.open("/srv/a", flags, 0640);
  });
  EXPECT_EQ(request["op"], "open");
  EXPECT_EQ(request["path"], "/srv/a");
  EXPECT_EQ(request["flags"], (json{"wronly", "create", "trunc"}));
  EXPECT_EQ(request["mode"], "0640");
  ASSERT_TRUE(opened.fd.valid());
  EXPECT_TRUE(same_file(opened.fd.get(), file.get()));
  EXPECT_TRUE(is_cloexec(opened.fd.get()));
  EXPECT_EQ(opened.rule, "r1");
  EXPECT_EQ(opened.path, "/srv/a");
  EXPECT_EQ(opened.description.path, "/srv/a");
  ::unlink(path.c_str());
}

TEST(ClientOpenBind, ReplyWithNoDescriptorOrTwoIsEprotoAndLeaksNothing) {
  auto pipe = pipe_pair();
  for (std::size_t attached : {0u, 2u}) {
    ScriptedPeer peer;
    std::vector<int> fds(attached, pipe.read.get());
    std::size_t before = open_fd_count();
    int err = 0;
    peer.exchange(open_reply(1), fds, [&] {
      Client client(peer.path());
      try {
        client.open("/srv/a");
      } catch (const BrokerError&) {
        err = -1;
      } catch (const std::system_error& e) {
        err = e.code().value();
      }
    });
    EXPECT_EQ(err, EPROTO) << attached << " fds";
    EXPECT_EQ(open_fd_count(), before) << attached << " fds";
  }
}

TEST(ClientOpenBind, RefusalWithADescriptorAttachedIsTheBrokersErrnoAndLeaksNothing) {
  auto pipe = pipe_pair();
  ScriptedPeer peer;
  std::size_t before = open_fd_count();
  int err = 0;
  peer.exchange({{"ok", false}, {"error", "ELOOP"}, {"message", "a symlink"}}, {pipe.read.get()},
                [&] {
                  Client client(peer.path());
                  try {
                    client.open("/srv/link");
                  } catch (const BrokerError& e) {
                    err = e.code().value();
                  }
                });
  EXPECT_EQ(err, ELOOP);
  EXPECT_EQ(open_fd_count(), before);
}

TEST(ClientOpenBind, BindSendsOptionsAndHandsOverTheSocket) {
  ScriptedPeer peer;
  unique_fd sock(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  ASSERT_TRUE(sock.valid());
  fdbroker::Bound bound;
  fdbroker::BrokerBindOptions options;
  options.backlog = 7;
  json reply{{"ok", true},
             {"address", "tcp://127.0.0.1:844"},
             {"rule", "https"},
             {"fds", {{{"kind", "socket"}, {"family", "inet"}, {"type", "stream"}}}}};
  json request = peer.exchange(reply, {sock.get()}, [&] {
    Client client(peer.path());
    bound = client.bind("tcp://127.0.0.1:844", options);
  });
  EXPECT_EQ(request, (json{{"op", "bind"},
                           {"id", request["id"]},
                           {"address", "tcp://127.0.0.1:844"},
                           {"backlog", 7}}));
  ASSERT_TRUE(bound.fd.valid());
  EXPECT_TRUE(same_file(bound.fd.get(), sock.get()));
  EXPECT_EQ(bound.rule, "https");
  EXPECT_EQ(bound.address, "tcp://127.0.0.1:844");
  EXPECT_EQ(bound.description.family, "inet");
}

TEST(ClientOpenBind, BadModeAndBacklogAreRefusedBeforeSending) {
  ScriptedPeer peer;
  Client client(peer.path());
  EXPECT_THROW(client.open("/srv/a", {}, 01000), std::invalid_argument);
  fdbroker::BrokerBindOptions options;
  options.backlog = -5;
  EXPECT_THROW(client.bind("tcp://127.0.0.1:1", options), std::invalid_argument);
  EXPECT_TRUE(client.connected());  // nothing was sent: the connection is still usable
}

}  // namespace
