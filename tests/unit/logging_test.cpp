// SPDX-License-Identifier: LGPL-2.1-or-later
#include "logging.hpp"

#include <gtest/gtest.h>
#include <spdlog/sinks/ostream_sink.h>
#include <sys/stat.h>

#include <algorithm>
#include <sstream>

#include "policy.hpp"

namespace fdbroker::daemon {
namespace {

using Fields = std::vector<std::string>;

ClientIdentity www_data() {
  ClientIdentity peer;
  peer.pid = 4242;
  peer.uid = 33;
  peer.gid = 33;
  peer.unit = "nginx.service";
  peer.label = identity_label(peer.pid, peer.uid, peer.gid);
  return peer;
}

TEST(LoggingJournalStream, MatchesOnlyTheDeviceAndInodeOfStderr) {
  struct stat st {};
  ASSERT_EQ(::stat("/", &st), 0);
  std::string dev = std::to_string(st.st_dev);
  std::string ino = std::to_string(st.st_ino);
  EXPECT_TRUE(journal_stream_matches(dev + ":" + ino, st));
  EXPECT_FALSE(journal_stream_matches(dev + ":" + std::to_string(st.st_ino + 1), st));
  EXPECT_FALSE(journal_stream_matches(std::to_string(st.st_dev + 1) + ":" + ino, st));
  for (std::string bad :
       {std::string(), std::string(":"), dev, dev + ":", ":" + ino, dev + ":" + ino + "x",
        dev + ":" + ino + ":1", " " + dev + ":" + ino, dev + ":-" + ino}) {
    EXPECT_FALSE(journal_stream_matches(bad, st)) << bad;
  }
}

TEST(LoggingJournalFields, AnAccessDecisionCarriesThePeerTheEntryTheResultAndTheRule) {
  ClientIdentity peer = www_data();
  AuditEvent event;
  event.op = "get";
  event.peer = &peer;
  event.name = "web/https";
  event.result = "ok";
  event.rule = "rules[1]";
  EXPECT_EQ(
      journal_fields(event, "granted get 'web/https' to pid=4242 uid=33 gid=33: rules[1]"),
      (Fields{"MESSAGE=granted get 'web/https' to pid=4242 uid=33 gid=33: rules[1]", "PRIORITY=6",
              "SYSLOG_IDENTIFIER=fdbrokerd", "FDBROKER_OP=get", "FDBROKER_NAME=web/https",
              "FDBROKER_PEER_PID=4242", "FDBROKER_PEER_UID=33", "FDBROKER_PEER_GID=33",
              "FDBROKER_PEER_UNIT=nginx.service", "FDBROKER_RESULT=ok", "FDBROKER_RULE=rules[1]"}));
}

TEST(LoggingJournalFields, AnOpenAndABindCarryTheirPathOrAddressAndNoEmptyField) {
  ClientIdentity peer = www_data();
  peer.unit.reset();  // in no unit: no FDBROKER_PEER_UNIT
  AuditEvent open;
  open.op = "open";
  open.peer = &peer;
  open.path = "/srv/keys/a.key";
  open.result = "EACCES";
  EXPECT_EQ(
      journal_fields(open, "refused"),
      (Fields{"MESSAGE=refused", "PRIORITY=6", "SYSLOG_IDENTIFIER=fdbrokerd", "FDBROKER_OP=open",
              "FDBROKER_PEER_PID=4242", "FDBROKER_PEER_UID=33", "FDBROKER_PEER_GID=33",
              "FDBROKER_PATH=/srv/keys/a.key", "FDBROKER_RESULT=EACCES"}));
  AuditEvent bind;
  bind.level = spdlog::level::warn;
  bind.op = "bind";
  bind.address = "tcp://127.0.0.1:443";
  bind.result = "EADDRINUSE";
  bind.rule = "https";
  EXPECT_EQ(journal_fields(bind, "failed"),
            (Fields{"MESSAGE=failed", "PRIORITY=4", "SYSLOG_IDENTIFIER=fdbrokerd",
                    "FDBROKER_OP=bind", "FDBROKER_ADDRESS=tcp://127.0.0.1:443",
                    "FDBROKER_RESULT=EADDRINUSE", "FDBROKER_RULE=https"}));
}

TEST(LoggingJournalFields, LevelsMapToSyslogPriorities) {
  auto priority = [](spdlog::level::level_enum level) {
    AuditEvent event;
    event.level = level;
    return journal_fields(event, "m").at(1);
  };
  EXPECT_EQ(priority(spdlog::level::trace), "PRIORITY=7");
  EXPECT_EQ(priority(spdlog::level::debug), "PRIORITY=7");
  EXPECT_EQ(priority(spdlog::level::info), "PRIORITY=6");
  EXPECT_EQ(priority(spdlog::level::warn), "PRIORITY=4");
  EXPECT_EQ(priority(spdlog::level::err), "PRIORITY=3");
  EXPECT_EQ(priority(spdlog::level::critical), "PRIORITY=2");
}

TEST(LoggingJournalFields, AClientsStringsStayInsideTheirOwnField) {
  // Whatever a client puts in a name or a path (newlines, "=", a field
  // assignment) is the value of one field, never a field of its own.
  ClientIdentity peer = www_data();
  AuditEvent event;
  event.op = "open";
  event.peer = &peer;
  event.name = "x\nFDBROKER_PEER_UID=0";
  event.path = "/a\nFDBROKER_RESULT=ok\n";
  event.result = "EACCES";
  Fields fields = journal_fields(event, "open '/a\nFDBROKER_RESULT=ok\n': refused");
  EXPECT_EQ(fields.at(0), "MESSAGE=open '/a\nFDBROKER_RESULT=ok\n': refused");
  EXPECT_EQ(std::count(fields.begin(), fields.end(), "FDBROKER_PEER_UID=33"), 1);
  EXPECT_EQ(std::count_if(fields.begin(), fields.end(),
                          [](const std::string& f) { return f.rfind("FDBROKER_RESULT=", 0) == 0; }),
            1);
  EXPECT_NE(std::find(fields.begin(), fields.end(), "FDBROKER_NAME=x\nFDBROKER_PEER_UID=0"),
            fields.end());
  EXPECT_NE(std::find(fields.begin(), fields.end(), "FDBROKER_PATH=/a\nFDBROKER_RESULT=ok\n"),
            fields.end());
}

TEST(LoggingAudit, OutsideTheJournalTheMessageIsTheLineAtItsLevel) {
  std::ostringstream out;
  auto logger = std::make_shared<spdlog::logger>(
      "test", std::make_shared<spdlog::sinks::ostream_sink_st>(out));
  logger->set_pattern("%l: %v");
  logger->set_level(spdlog::level::info);
  auto previous = spdlog::default_logger();
  spdlog::set_default_logger(logger);
  ClientIdentity peer = www_data();
  AuditEvent event;
  event.op = "get";
  event.peer = &peer;
  event.result = "EACCES";
  audit(event, "denied {} '{}' to {}: {}", "get", "web/https", peer.label, "no rule grants it");
  event.level = spdlog::level::debug;  // below the logger's level: nothing
  audit(event, "granted {} '{}'", "get", "web/https");
  event.level = spdlog::level::warn;
  audit_message(event, "a line");
  spdlog::set_default_logger(previous);
  EXPECT_EQ(out.str(),
            "info: denied get 'web/https' to pid=4242 uid=33 gid=33: no rule grants it\n"
            "warning: a line\n");
}

}  // namespace
}  // namespace fdbroker::daemon
