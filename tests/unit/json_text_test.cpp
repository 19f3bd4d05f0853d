// SPDX-License-Identifier: LGPL-2.1-or-later
// The reply text helpers: error messages are bounded whatever they echo, and the
// output is always valid JSON.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "json_text.hpp"

using namespace fdbroker::daemon;

namespace {

nlohmann::json error_reply(std::string_view message) {
  std::string out = "{";
  append_error(out, EINVAL, message);
  return nlohmann::json::parse(out);
}

}  // namespace

TEST(JsonText, ErrorReplyCarriesTheErrnoNameAndMessage) {
  auto j = error_reply("no entry named 'x'");
  EXPECT_EQ(j["ok"], false);
  EXPECT_EQ(j["error"], "EINVAL");
  EXPECT_EQ(j["message"], "no entry named 'x'");
}

TEST(JsonText, ALongMessageIsCutAndItsEscapedFormStaysBounded) {
  std::string dels(60000, '\x7f');
  std::string out = "{";
  append_error(out, EINVAL, "unknown op '" + dels + "'");
  EXPECT_LE(out.size(), 6 * max_error_text + 64);
  auto j = nlohmann::json::parse(out);
  std::string message = j["message"];
  EXPECT_EQ(message.substr(message.size() - 3), "...");
}

TEST(JsonText, ACutNeverSplitsAUtf8Sequence) {
  // "é" is two bytes; place one across the cut.
  std::string text(max_error_text - 1, 'a');
  text += "\xc3\xa9";
  text += std::string(100, 'b');
  auto j = error_reply(text);  // parse() throws on invalid UTF-8
  std::string message = j["message"];
  EXPECT_EQ(message, std::string(max_error_text - 1, 'a') + "...");
}

TEST(JsonText, AnUnknownErrnoIsEio) {
  std::string out = "{";
  append_error(out, 100000, "x");
  EXPECT_EQ(nlohmann::json::parse(out)["error"], "EIO");
}
