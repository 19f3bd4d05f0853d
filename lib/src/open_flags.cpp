// SPDX-License-Identifier: LGPL-2.1-or-later
// OpenFlags to and from open(2)'s bits and the protocol's flag names.
#include <fdbroker/client.hpp>

#include <fcntl.h>

#include <cstdio>
#include <stdexcept>

namespace fdbroker {

OpenFlags open_flags_from_posix(int oflags) {
  // Applied by the broker to every open whatever the caller says.
  constexpr int always = O_CLOEXEC | O_NOCTTY | O_NOFOLLOW;
  constexpr int known = O_ACCMODE | O_APPEND | O_CREAT | O_EXCL | O_TRUNC | O_NONBLOCK | always;
  if ((oflags & ~known) != 0) {
    char bits[16];
    std::snprintf(bits, sizeof bits, "%#o", static_cast<unsigned>(oflags & ~known));
    throw std::invalid_argument(std::string("open flags the broker cannot apply: ") + bits);
  }
  OpenFlags flags;
  switch (oflags & O_ACCMODE) {
    case O_RDONLY:
      flags.access = OpenAccess::read;
      break;
    case O_WRONLY:
      flags.access = OpenAccess::write;
      break;
    case O_RDWR:
      flags.access = OpenAccess::read_write;
      break;
    default:
      throw std::invalid_argument("open flags name no access mode (O_ACCMODE is 3)");
  }
  flags.append = (oflags & O_APPEND) != 0;
  flags.create = (oflags & O_CREAT) != 0;
  flags.excl = (oflags & O_EXCL) != 0;
  flags.trunc = (oflags & O_TRUNC) != 0;
  flags.nonblock = (oflags & O_NONBLOCK) != 0;
  // open(2) takes these too (O_APPEND is moot for reading, O_EXCL without O_CREAT
  // undefined); the broker refuses them with EINVAL: say so before sending.
  if (flags.access == OpenAccess::read && (flags.append || flags.trunc)) {
    throw std::invalid_argument("O_APPEND and O_TRUNC need O_WRONLY or O_RDWR");
  }
  if (flags.excl && !flags.create) throw std::invalid_argument("O_EXCL needs O_CREAT");
  return flags;
}

std::vector<std::string> open_flag_names(const OpenFlags& flags) {
  std::vector<std::string> names;
  switch (flags.access) {
    case OpenAccess::read:
      names.emplace_back("rdonly");
      break;
    case OpenAccess::write:
      names.emplace_back("wronly");
      break;
    case OpenAccess::read_write:
      names.emplace_back("rdwr");
      break;
  }
  if (flags.append) names.emplace_back("append");
  if (flags.create) names.emplace_back("create");
  if (flags.excl) names.emplace_back("excl");
  if (flags.trunc) names.emplace_back("trunc");
  if (flags.nonblock) names.emplace_back("nonblock");
  return names;
}

}  // namespace fdbroker
