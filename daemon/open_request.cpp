// SPDX-License-Identifier: LGPL-2.1-or-later
#include "open_request.hpp"

#include <cerrno>
#include <nlohmann/json.hpp>

namespace fdbroker::daemon {

namespace {

constexpr std::size_t max_open_path = 4096;  // PATH_MAX

Failure bad(std::string message) { return {EINVAL, std::move(message)}; }

}  // namespace

std::optional<Failure> check_open_path(std::string_view path) {
  if (path.empty() || path.front() != '/') return bad("field 'path' must be an absolute path");
  if (path.size() > max_open_path) {
    return bad("field 'path' is longer than " + std::to_string(max_open_path) + " bytes");
  }
  for (char ch : path) {
    auto c = static_cast<unsigned char>(ch);
    // Refused rather than escaped: nothing a client sends can forge a log line.
    if (c < 0x20 || c == 0x7f) return bad("field 'path' contains a control character");
  }
  if (path.size() == 1 || path.back() == '/') {
    return bad("field 'path' must name a file, not end in '/'");
  }
  std::size_t start = 1;
  while (start <= path.size()) {
    std::size_t end = path.find('/', start);
    if (end == std::string_view::npos) end = path.size();
    std::string_view segment = path.substr(start, end - start);
    if (segment.empty() || segment == "." || segment == "..") {
      return bad("field 'path' has an empty, '.' or '..' segment");
    }
    start = end + 1;
  }
  return std::nullopt;
}

std::optional<Failure> parse_open_flags(const nlohmann::json& flags, OpenSpec& spec) {
  if (!flags.is_array()) return bad("field 'flags' must be an array of strings");
  int access = -1;
  spec.append = spec.create = spec.excl = spec.trunc = spec.nonblock = false;
  for (const auto& flag : flags) {
    if (!flag.is_string()) return bad("field 'flags' must be an array of strings");
    const auto& f = flag.get_ref<const std::string&>();
    int named_access = f == "rdonly"   ? O_RDONLY
                       : f == "wronly" ? O_WRONLY
                       : f == "rdwr"   ? O_RDWR
                                       : -1;
    if (named_access != -1) {
      if (access != -1 && access != named_access) {
        return bad("field 'flags' names two access modes");
      }
      access = named_access;
    } else if (f == "append") {
      spec.append = true;
    } else if (f == "create") {
      spec.create = true;
    } else if (f == "excl") {
      spec.excl = true;
    } else if (f == "trunc") {
      spec.trunc = true;
    } else if (f == "nonblock") {
      spec.nonblock = true;
    } else {
      return bad("unknown flag '" + f.substr(0, 32) + (f.size() > 32 ? "...'" : "'") +
                 " (rdonly, wronly, rdwr, append, create, excl, trunc, nonblock)");
    }
  }
  if (access == -1) return bad("field 'flags' needs one of rdonly, wronly, rdwr");
  spec.access = access;
  if (spec.excl && !spec.create) return bad("flag 'excl' needs 'create'");
  // As open_beneath() refuses them: malformed, so EINVAL before any rule is asked.
  if (spec.trunc && access == O_RDONLY) return bad("flag 'trunc' needs 'wronly' or 'rdwr'");
  if (spec.append && access == O_RDONLY) return bad("flag 'append' needs 'wronly' or 'rdwr'");
  return std::nullopt;
}

std::optional<Failure> parse_create_mode(std::string_view text, mode_t& mode) {
  bool octal = !text.empty() && text.size() <= 4;
  mode_t value = 0;
  for (char c : text) {
    if (c < '0' || c > '7') {
      octal = false;
      break;
    }
    value = value * 8 + static_cast<mode_t>(c - '0');
  }
  if (!octal || value > 0777) {
    return bad("field 'mode' must be an octal string of permission bits, \"0\" to \"0777\"");
  }
  mode = value;
  return std::nullopt;
}

std::string open_flags_text(const OpenSpec& spec) {
  std::string text = spec.access == O_WRONLY ? "wronly" : spec.access == O_RDWR ? "rdwr" : "rdonly";
  if (spec.append) text += ",append";
  if (spec.create) text += ",create";
  if (spec.excl) text += ",excl";
  if (spec.trunc) text += ",trunc";
  if (spec.nonblock) text += ",nonblock";
  return text;
}

}  // namespace fdbroker::daemon
