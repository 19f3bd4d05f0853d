// SPDX-License-Identifier: LGPL-2.1-or-later
#include "static_entry_config.hpp"

#include <fdbroker/listen_url.hpp>

#include <fcntl.h>
#include <sys/socket.h>

#include <string_view>

#include "entry_name.hpp"

namespace fdbroker::daemon {

namespace {

using nlohmann::json;
using Shape = JsonShape;

void file_entry(Shape& shape, const json& obj, const std::string& key, StaticEntry& e) {
  shape.only_keys(obj, key, {"name", "type", "meta", "access", "path", "flags", "mode"});
  shape.string_field(obj, key, "path", e.path, true);
  if (Shape::field(obj, "path") != nullptr && e.path.empty())
    shape.error(Shape::join(key, "path"), "must not be empty");
  int access = -1;
  int flags = 0;
  if (const json* v = Shape::field(obj, "flags")) {
    std::string fkey = Shape::join(key, "flags");
    if (!v->is_array()) {
      shape.error(fkey,
                  "must be an array of open flags (rdonly, wronly, rdwr, append, create, trunc, "
                  "excl, nonblock, noatime, sync, directory)");
    } else {
      for (std::size_t i = 0; i < v->size(); ++i) {
        std::string item = Shape::index(fkey, i);
        const json& f = (*v)[i];
        if (!f.is_string()) {
          shape.error(item, "must be a string");
          continue;
        }
        const std::string& s = f.get_ref<const std::string&>();
        auto set_access = [&](int a) {
          if (access != -1 && access != a)
            shape.error(fkey, "more than one of rdonly, wronly, rdwr");
          access = a;
        };
        if (s == "rdonly")
          set_access(O_RDONLY);
        else if (s == "wronly")
          set_access(O_WRONLY);
        else if (s == "rdwr")
          set_access(O_RDWR);
        else if (s == "append")
          flags |= O_APPEND;
        else if (s == "create")
          flags |= O_CREAT;
        else if (s == "trunc")
          flags |= O_TRUNC;
        else if (s == "excl")
          flags |= O_EXCL;
        else if (s == "nonblock")
          flags |= O_NONBLOCK;
        else if (s == "noatime")
          flags |= O_NOATIME;
        else if (s == "sync")
          flags |= O_SYNC;
        else if (s == "directory")
          flags |= O_DIRECTORY;
        else
          shape.error(item, "unknown open flag \"" + s + "\"");
      }
    }
  }
  e.open_flags = flags | (access == -1 ? O_RDONLY : access);
  e.mode = 0644;
  shape.mode_field(obj, key, "mode", e.mode);
  e.opening = "file " + std::to_string(e.open_flags) + " " + std::to_string(e.mode) + " " + e.path;
}

// "IPv4:PORT" or "[IPv6]:PORT", parsed by lib's listen-URL parser as the
// address of a tcp:// URL, numeric only: the URL's spellings of the wildcard
// and of localhost ("*", "", "localhost") are not config syntax.
std::string check_inet_address(const std::string& address) {
  std::size_t colon = address.rfind(':');
  if (colon == std::string::npos || colon + 1 == address.size()) {
    return "must be \"IPv4:PORT\" or \"[IPv6]:PORT\", got \"" + address + "\"";
  }
  if (!try_parse_listen_url("tcp://0.0.0.0" + address.substr(colon))) {
    return "bad port in \"" + address + "\"";
  }
  std::string_view host(address.data(), colon);
  bool bracketed = host.size() >= 2 && host.front() == '[' && host.back() == ']';
  if (bracketed) host = host.substr(1, host.size() - 2);
  if (host.empty() || host == "*" || host == "localhost" ||
      !try_parse_listen_url("tcp://" + address)) {
    if (bracketed) return "bad IPv6 address in \"" + address + "\"";
    return "bad IPv4 address in \"" + address + "\" (numeric only; IPv6 goes in brackets)";
  }
  return {};
}

void inet_entry(Shape& shape, const json& obj, const std::string& key, StaticEntry& e) {
  bool tcp = e.kind == StaticKind::tcp;
  if (tcp) {
    shape.only_keys(
        obj, key, {"name", "type", "meta", "access", "address", "backlog", "reuseport", "v6only"});
  } else {
    shape.only_keys(obj, key, {"name", "type", "meta", "access", "address", "reuseport", "v6only"});
  }
  if (shape.string_field(obj, key, "address", e.address, true)) {
    std::string why = check_inet_address(e.address);
    if (!why.empty()) shape.error(Shape::join(key, "address"), why);
  }
  if (tcp) shape.uint_field(obj, key, "backlog", e.backlog, 1, 65535);
  shape.bool_field(obj, key, "reuseport", e.reuseport);
  shape.bool_field(obj, key, "v6only", e.v6only);
  e.opening = std::string(tcp ? "tcp " : "udp ") + e.address + " " + std::to_string(e.backlog) +
              " " + (e.reuseport ? "1" : "0") + (e.v6only ? "1" : "0");
}

void unix_entry(Shape& shape, const json& obj, const std::string& key, StaticEntry& e) {
  shape.only_keys(obj, key,
                  {"name", "type", "meta", "access", "path", "socket_type", "backlog", "mode",
                   "owner", "group"});
  shape.string_field(obj, key, "path", e.path, true);
  if (Shape::field(obj, "path") != nullptr) {
    if (e.path.empty()) shape.error(Shape::join(key, "path"), "must not be empty");
    if (e.path.size() >= 108)
      shape.error(Shape::join(key, "path"), "too long for a UNIX socket (at most 107 bytes)");
  }
  std::string type = "stream";
  shape.string_field(obj, key, "socket_type", type, false);
  if (type == "stream")
    e.socket_type = SOCK_STREAM;
  else if (type == "seqpacket")
    e.socket_type = SOCK_SEQPACKET;
  else
    shape.error(Shape::join(key, "socket_type"), "must be \"stream\" or \"seqpacket\"");
  shape.uint_field(obj, key, "backlog", e.backlog, 1, 65535);
  e.mode = 0666;
  shape.mode_field(obj, key, "mode", e.mode);
  if (const json* v = Shape::field(obj, "owner"))
    e.owner = shape.user(*v, Shape::join(key, "owner"));
  if (const json* v = Shape::field(obj, "group"))
    e.group = shape.group(*v, Shape::join(key, "group"));
  e.opening = "unix " + type + " " + std::to_string(e.backlog) + " " + std::to_string(e.mode) +
              " " + (e.owner ? std::to_string(*e.owner) : "-") + " " +
              (e.group ? std::to_string(*e.group) : "-") + " " + e.path;
}

}  // namespace

StaticEntry read_static_entry(JsonShape& shape, const json& obj, const std::string& where,
                              const std::vector<StaticEntry>& earlier) {
  const std::string& key = where;
  StaticEntry e;
  if (shape.string_field(obj, key, "name", e.name, true) && !valid_name(e.name)) {
    shape.error(Shape::join(key, "name"),
                "invalid entry name \"" + e.name +
                    "\" (1-255 bytes of A-Za-z0-9._:@/-, no . or .. segment)");
  }
  for (const auto& other : earlier) {
    if (!e.name.empty() && other.name == e.name) {
      shape.error(Shape::join(key, "name"), "duplicate entry name \"" + e.name + "\"");
      break;  // one error per entry: n copies of a name must not make n² lines
    }
  }
  std::string type;
  if (shape.string_field(obj, key, "type", type, true)) {
    if (type == "file") {
      e.kind = StaticKind::file;
      file_entry(shape, obj, key, e);
    } else if (type == "tcp" || type == "udp") {
      e.kind = type == "tcp" ? StaticKind::tcp : StaticKind::udp;
      inet_entry(shape, obj, key, e);
    } else if (type == "unix") {
      e.kind = StaticKind::unix_socket;
      unix_entry(shape, obj, key, e);
    } else {
      shape.error(Shape::join(key, "type"),
                  "must be \"file\", \"tcp\", \"udp\" or \"unix\", got \"" + type + "\"");
    }
  }
  if (const json* meta = Shape::field(obj, "meta")) {
    if (!meta->is_object()) {
      shape.error(Shape::join(key, "meta"), "must be an object");
    } else {
      e.meta = meta->dump(-1, ' ', false, json::error_handler_t::replace);
    }
  }
  return e;
}

}  // namespace fdbroker::daemon
