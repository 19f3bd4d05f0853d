// SPDX-License-Identifier: LGPL-2.1-or-later
#include "cli_options.hpp"

#include <charconv>
#include <cmath>
#include <set>
#include <string_view>

namespace fdbrokerctl {

const char* const usage_text =
    R"(Usage: fdbrokerctl [--socket PATH] [--timeout SECONDS] [--json] COMMAND [ARGS]

Talk to fdbrokerd, the file-descriptor broker.

Commands:
  hello                     show the broker's version and who it thinks you are
  list [PREFIX] [--limit N] list the entries you may get (all pages; N per request)
  get NAME [--wait MS]      fetch an entry's descriptors and describe them
  take NAME [--wait MS]     like get, and remove the entry from the broker
  put NAME SOURCE... [--meta JSON] [--ttl MS] [--replace] [--expect-generation N]
                            store descriptors under NAME; SOURCE, in order:
      --fd N                    a descriptor fdbrokerctl inherited
      --file PATH [--mode M]    PATH opened by fdbrokerctl: M = r (default), w (append,
                                created if missing) or rw (created if missing)
      --listen URL              a socket fdbrokerctl binds and listens on:
                                tcp://ADDR:PORT (ADDR: IPv4, *, localhost or [IPv6]),
                                tcp6://[ADDR]:PORT (IPv6 only), unix:/PATH,
                                unix:@ABSTRACT; or udp://, udp6:// (bound only).
                                PORT 0 picks a free port (see get).
  delete NAME               remove an entry
  stats [--format F]        show the broker's counters; F = text (default), json
                            (as --json) or prometheus (the Prometheus text
                            exposition format, for node_exporter's textfile
                            collector: fdbroker_* gauges and counters)
  upgrade [--binary PATH]   make the broker run a new fdbrokerd (PATH, absolute;
                            default: its own binary) and hand it every entry;
                            prints the new broker's pid once it is ready
  open PATH [--mode M] [--create] [--excl] [--trunc] [--perm OCTAL]
                            ask the broker to open PATH (absolute) by its `files`
                            rules and describe what it opened (the descriptor is
                            closed on exit; see exec to hand it to a program).
                            M = r (default), w (write only), rw, or a (append);
                            --create makes a missing file (--excl: only a new one)
                            with permission bits OCTAL (e.g. 0640) masked by the
                            rule's mode; --trunc empties it (not with r)
  exec SOURCE... [--wait MS] -- PROGRAM [ARGS...]
                            run PROGRAM with the SOURCEs' descriptors at 3, 4, ...
                            in command-line order, and LISTEN_FDS, LISTEN_PID,
                            LISTEN_FDNAMES set (systemd socket activation):
      --get NAME                every fd of the entry NAME, each named NAME
      --take NAME               the same, and the entry is removed from the broker
      --open PATH[:M]           PATH opened by the broker (M = r, w, rw or a, as for
                                open; no create), named by PATH's last component
      --bind URL                a socket the broker binds to URL (tcp://ADDR:PORT,
                                tcp6://, udp://, udp6://; by its `bind` rules),
                                listening for tcp, named by URL
                            In LISTEN_FDNAMES ':' (not allowed in systemd fd names)
                            becomes '_': --bind tcp://127.0.0.1:443 is named
                            "tcp_//127.0.0.1_443". No other descriptor above 2
                            reaches PROGRAM. --wait MS waits for missing entries.
                            If PROGRAM cannot be executed: exit 111.

Options:
  --socket PATH   the broker's socket (default: $FDBROKER_SOCKET, else
                  /run/fdbroker/fdbroker.sock)
  --timeout SECONDS
                  give up on a broker that does not answer (stopped, wedged)
                  after SECONDS (e.g. 0.5) beyond any --wait: exit 111 with
                  ETIMEDOUT; default: wait as long as it takes
  --json          print replies as JSON, for scripts
  --help          show this text
  --version       show the version

Exit status: 0 ok, 1 the broker refused (its errno name and message on stderr),
100 usage error, 111 system or transport error.
)";

namespace {

template <class T>
T parse_number(std::string_view option, std::string_view text, T min) {
  T value{};
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc() || end != text.data() + text.size() || value < min) {
    throw UsageError(std::string(option) + ": not a number >= " + std::to_string(min) + ": '" +
                     std::string(text) + "'");
  }
  return value;
}

// --timeout's SECONDS (a decimal number > 0, e.g. 0.5) as whole milliseconds,
// rounded up: a timeout is never shorter than asked.
std::chrono::milliseconds parse_seconds(std::string_view option, std::string_view text) {
  double seconds = 0;
  auto [end, ec] =
      std::from_chars(text.data(), text.data() + text.size(), seconds, std::chars_format::fixed);
  // Up to a million seconds (11 days): beyond that, leave --timeout out.
  if (ec != std::errc() || end != text.data() + text.size() || !(seconds > 0) || seconds > 1e6) {
    throw UsageError(std::string(option) + ": not a number of seconds > 0 (up to 1000000): '" +
                     std::string(text) + "'");
  }
  return std::chrono::milliseconds(static_cast<std::int64_t>(std::ceil(seconds * 1000)));
}

// Which options each command accepts, so that a misplaced one is an error rather
// than silently ignored.
const std::set<std::string_view>& allowed_options(const std::string& command) {
  static const std::set<std::string_view> none;
  static const std::set<std::string_view> list{"--limit"};
  static const std::set<std::string_view> get{"--wait"};
  static const std::set<std::string_view> put{
      "--fd",   "--file", "--mode",    "--listen",
      "--meta", "--ttl",  "--replace", "--expect-generation"};
  static const std::set<std::string_view> exec{"--get", "--take", "--open", "--bind", "--wait"};
  static const std::set<std::string_view> upgrade{"--binary"};
  static const std::set<std::string_view> stats{"--format"};
  static const std::set<std::string_view> open{"--mode", "--create", "--excl", "--trunc", "--perm"};
  if (command == "upgrade") return upgrade;
  if (command == "stats") return stats;
  if (command == "open") return open;
  if (command == "list") return list;
  if (command == "get" || command == "take") return get;
  if (command == "put") return put;
  if (command == "exec") return exec;
  return none;
}

bool takes_value(std::string_view option) {
  static const std::set<std::string_view> switches{"--json",   "--help", "--version", "--replace",
                                                   "--create", "--excl", "--trunc"};
  return switches.count(option) == 0;
}

bool is_open_mode(std::string_view mode) {
  return mode == "r" || mode == "w" || mode == "rw" || mode == "a";
}

// --perm's OCTAL: permission bits only (0 to 0777), in octal digits.
unsigned parse_perm(std::string_view text) {
  unsigned value = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value, 8);
  if (text.empty() || ec != std::errc() || end != text.data() + text.size() || value > 0777) {
    throw UsageError("--perm: not octal permission bits (0 to 0777): '" + std::string(text) + "'");
  }
  return value;
}

// --open PATH[:MODE]: the mode suffix is split off only when it is one (a path may
// hold ':'; write PATH:r to open such a path that ends in a mode's letters).
ExecEntry parse_exec_open(const std::string& value) {
  ExecEntry e;
  e.kind = ExecEntry::Kind::open;
  e.name = value;
  if (auto colon = value.rfind(':'); colon != std::string::npos) {
    std::string mode = value.substr(colon + 1);
    if (is_open_mode(mode)) {
      e.name = value.substr(0, colon);
      e.mode = mode;
    }
  }
  if (e.name.empty() || e.name.front() != '/') {
    throw UsageError("--open needs an absolute path: '" + value + "'");
  }
  return e;
}

}  // namespace

Options parse_options(const std::vector<std::string>& args) {
  static const std::set<std::string_view> commands{"hello",  "list",  "get",  "take",    "put",
                                                   "delete", "stats", "exec", "upgrade", "open"};
  static const std::set<std::string_view> known{
      "--socket", "--timeout", "--json",   "--help",    "--version",
      "--limit",  "--wait",    "--fd",     "--file",    "--mode",
      "--listen", "--meta",    "--ttl",    "--replace", "--expect-generation",
      "--get",    "--take",    "--binary", "--open",    "--bind",
      "--create", "--excl",    "--trunc",  "--perm",    "--format"};
  Options o;
  std::vector<std::string> positional;
  for (std::size_t i = 0; i < args.size(); ++i) {
    std::string arg = args[i];
    if (arg == "--") {
      if (o.command != "exec") throw UsageError("'--' is only for exec");
      o.program.assign(args.begin() + static_cast<std::ptrdiff_t>(i) + 1, args.end());
      break;
    }
    if (arg.size() < 2 || arg.compare(0, 2, "--") != 0) {
      if (o.command.empty()) {
        if (commands.count(arg) == 0) throw UsageError("unknown command '" + arg + "'");
        o.command = arg;
      } else {
        positional.push_back(arg);
      }
      continue;
    }
    // --option=value or --option value
    std::string value;
    bool has_inline_value = false;
    if (auto eq = arg.find('='); eq != std::string::npos) {
      value = arg.substr(eq + 1);
      arg.resize(eq);
      has_inline_value = true;
    }
    if (known.count(arg) == 0) throw UsageError("unknown option '" + arg + "'");
    if (takes_value(arg)) {
      if (!has_inline_value) {
        if (i + 1 >= args.size()) throw UsageError(arg + " needs a value");
        value = args[++i];
      }
    } else if (has_inline_value) {
      throw UsageError(arg + " takes no value");
    }

    if (arg == "--socket") {
      o.socket = value;
    } else if (arg == "--timeout") {
      o.timeout = parse_seconds(arg, value);
    } else if (arg == "--json") {
      o.json = true;
    } else if (arg == "--help") {
      o.help = true;
    } else if (arg == "--version") {
      o.version = true;
    } else {
      if (o.command.empty()) throw UsageError(arg + " before the command");
      if (allowed_options(o.command).count(arg) == 0) {
        throw UsageError(arg + " does not apply to " + o.command);
      }
      if (arg == "--limit") {
        o.limit = parse_number<unsigned>(arg, value, 1);
      } else if (arg == "--wait") {
        o.wait_ms = parse_number<std::int64_t>(arg, value, 0);
      } else if (arg == "--fd") {
        FdSource s;
        s.kind = FdSource::Kind::inherited;
        s.fd = parse_number<int>(arg, value, 0);
        o.sources.push_back(std::move(s));
      } else if (arg == "--file") {
        FdSource s;
        s.kind = FdSource::Kind::file;
        s.path = value;
        o.sources.push_back(std::move(s));
      } else if (arg == "--mode" && o.command == "open") {
        if (!is_open_mode(value)) {
          throw UsageError("--mode: expected r, w, rw or a, not '" + value + "'");
        }
        o.open.mode = value;
      } else if (arg == "--mode") {
        if (o.sources.empty() || o.sources.back().kind != FdSource::Kind::file) {
          throw UsageError("--mode must follow the --file it applies to");
        }
        if (value != "r" && value != "w" && value != "rw") {
          throw UsageError("--mode: expected r, w or rw, not '" + value + "'");
        }
        o.sources.back().mode = value;
      } else if (arg == "--listen") {
        FdSource s;
        s.kind = FdSource::Kind::listen;
        s.url = value;
        o.sources.push_back(std::move(s));
      } else if (arg == "--meta") {
        o.meta = value;
      } else if (arg == "--ttl") {
        o.ttl_ms = parse_number<std::int64_t>(arg, value, 1);
      } else if (arg == "--replace") {
        o.replace = true;
      } else if (arg == "--expect-generation") {
        o.expect_generation = parse_number<std::uint64_t>(arg, value, 0);
      } else if (arg == "--binary") {
        if (value.empty() || value.front() != '/')
          throw UsageError("--binary needs an absolute path");
        o.binary = value;
      } else if (arg == "--get" || arg == "--take") {
        ExecEntry e;
        e.kind = arg == "--take" ? ExecEntry::Kind::take : ExecEntry::Kind::get;
        e.name = value;
        o.exec_entries.push_back(std::move(e));
      } else if (arg == "--open") {
        o.exec_entries.push_back(parse_exec_open(value));
      } else if (arg == "--bind") {
        ExecEntry e;
        e.kind = ExecEntry::Kind::bind;
        e.name = value;
        o.exec_entries.push_back(std::move(e));
      } else if (arg == "--format") {
        if (value == "json") {
          o.json = true;
        } else if (value == "prometheus") {
          o.prometheus = true;
        } else if (value != "text") {
          throw UsageError("--format: expected text, json or prometheus, not '" + value + "'");
        }
      } else if (arg == "--create") {
        o.open.create = true;
      } else if (arg == "--excl") {
        o.open.excl = true;
      } else if (arg == "--trunc") {
        o.open.trunc = true;
      } else if (arg == "--perm") {
        o.open.perm = parse_perm(value);
      }
    }
  }
  if (o.help || o.version) return o;
  if (o.command.empty()) throw UsageError("no command given");

  const std::string& c = o.command;
  if (c == "list") {
    if (positional.size() > 1) throw UsageError("list takes at most one PREFIX");
    if (!positional.empty()) o.prefix = positional[0];
  } else if (c == "get" || c == "take" || c == "put" || c == "delete") {
    if (positional.size() != 1) throw UsageError(c + " takes exactly one NAME");
    o.name = positional[0];
  } else if (c == "open") {
    if (positional.size() != 1) throw UsageError("open takes exactly one PATH");
    o.name = positional[0];
    if (o.name.empty() || o.name.front() != '/')
      throw UsageError("open needs an absolute PATH: '" + o.name + "'");
    if (o.open.excl && !o.open.create) throw UsageError("--excl needs --create");
    if (o.open.perm && !o.open.create) throw UsageError("--perm needs --create");
    if (o.open.trunc && o.open.mode == "r") throw UsageError("--trunc needs --mode w, rw or a");
  } else if (!positional.empty()) {
    throw UsageError(c + " takes no arguments, got '" + positional[0] + "'");
  }
  if (o.prometheus && o.json) throw UsageError("--format prometheus and --json exclude each other");
  if (c == "put" && o.sources.empty()) {
    throw UsageError("put needs at least one --fd, --file or --listen");
  }
  if (c == "exec") {
    if (o.exec_entries.empty()) {
      throw UsageError("exec needs at least one --get, --take, --open or --bind");
    }
    if (o.program.empty()) throw UsageError("exec needs '-- PROGRAM [ARGS...]'");
  }
  return o;
}

}  // namespace fdbrokerctl
