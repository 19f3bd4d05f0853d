// SPDX-License-Identifier: LGPL-2.1-or-later
// fdbrokerd: argv → Config, logging, the event loop, the exit code. No logic.
#include <fcntl.h>
#include <getopt.h>
#include <signal.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fdbroker/error.hpp>
#include <fdbroker/version.hpp>
#include <optional>
#include <string>

#include "broker.hpp"
#include "closer.hpp"
#include "config.hpp"
#include "event_loop.hpp"
#include "file_rules.hpp"
#include "listener.hpp"
#include "logging.hpp"
#include "restore.hpp"
#include "spawner.hpp"
#include "systemd.hpp"
#include "systemd_fd_store.hpp"
#include "upgrade.hpp"

using namespace fdbroker::daemon;

namespace {

constexpr int exit_usage = 2;

void usage(std::FILE* out) {
  std::fprintf(
      out,
      "Usage: fdbrokerd [OPTIONS]\n"
      "Holds open file descriptors and hands them to allowed processes (docs/protocol.md).\n\n"
      "  --config PATH      configuration file (default %s; if that is missing,\n"
      "                     built-in defaults are used)\n"
      "  --socket PATH      listen here instead of the configured socket path\n"
      "  --check-config     validate the configuration, print problems, and exit\n"
      "  --log-level LEVEL  trace, debug, info, warning, error, critical, off\n"
      "                     (overrides the configuration)\n"
      "  --help, --version\n\n"
      "Signals: SIGHUP reloads the configuration; SIGTERM/SIGINT shut down cleanly;\n"
      "SIGUSR2 upgrades: runs this binary anew and hands it every entry.\n"
      "Exit status: 0 after a clean shutdown or a valid --check-config, 1 on errors,\n"
      "2 on bad usage.\n",
      std::string(default_config_path).c_str());
}

struct Options {
  std::string config_path = std::string(default_config_path);
  bool config_given = false;
  std::optional<std::string> socket;
  std::optional<std::string> log_level;
  bool check_only = false;
  std::vector<std::string> argv;  // as given: an upgrade runs the new binary with them
};

// Loads the configuration as the options say, applying command-line overrides.
ConfigResult load(const Options& opts) {
  ConfigResult result;
  struct stat st {};
  if (!opts.config_given && ::stat(opts.config_path.c_str(), &st) < 0 && errno == ENOENT) {
    result.config = Config{};  // no config at all: built-in defaults
  } else {
    result = load_config_file(opts.config_path);
  }
  if (result.config) {
    if (opts.socket) result.config->socket_path = *opts.socket;
    if (opts.log_level) result.config->log_level = *opts.log_level;
  }
  return result;
}

void apply_log_level(const Config& config) {
  if (auto level = parse_log_level(config.log_level)) spdlog::set_level(*level);
}

void fail_status(const std::string& why) {
  spdlog::critical("{}", why);
  systemd::notify("STATUS=Failed: " + why);
}

int run(const Options& opts) {
  ConfigResult loaded = load(opts);
  if (!loaded.config) {
    for (const auto& e : loaded.errors) spdlog::critical("config: {}", e);
    fail_status("invalid configuration");
    return EXIT_FAILURE;
  }
  for (const auto& w : loaded.warnings) spdlog::warn("config: {}", w);
  Config config = std::move(*loaded.config);
  apply_log_level(config);
  EffectiveLimits limits = derive_limits(config.limits);
  spdlog::info("fdbrokerd {} starting: up to {} clients, {} stored fds", FDBROKER_VERSION_STRING,
               limits.max_connections, limits.max_fds);

  // The process that forks a new broker on an upgrade (spawner.hpp): forked now,
  // while this process runs one thread and holds no client's descriptor. Not
  // under systemd, which refuses upgrades (upgrade.hpp).
  fdbroker::unique_fd spawner;
  if (!fdstore_wanted()) {
    spawner = start_spawner();
    if (!spawner.valid())
      spdlog::error("cannot start the spawner ({}): upgrades are refused", std::strerror(errno));
  }

  EventLoop loop;
  // Clients' descriptors are closed on its threads, never on the loop's
  // (closer.hpp). Declared before the broker: it takes what the broker drops
  // as it goes. Its destructor joins no thread that hangs in a close, so a
  // shutdown or upgrade finishes its work whatever a FUSE daemon does; the
  // process may then linger in exit until the kernel's close returns.
  Closer closer;
  Closer::make_current(&closer);
  // The socket, and whatever a previous broker left in systemd's fd store or
  // handed over (restore.hpp).
  auto passed = take_passed_fds();
  if (!passed) {
    fail_status(os_failure("socket activation", passed.error().value()).why);
    return EXIT_FAILURE;
  }
  Restored restored = std::move(*passed);
  fdbroker::unique_fd listener = std::move(restored.listener);
  std::string unlink_path;
  if (listener.valid()) {
    // systemd's socket is blocking unless NonBlocking= was set; the loop needs it not to be.
    int flags = ::fcntl(listener.get(), F_GETFL);
    ::fcntl(listener.get(), F_SETFL, flags | O_NONBLOCK);
    spdlog::info("listening on the socket passed by {}",
                 restored.socket_unlink.empty() ? "systemd" : "the previous broker (upgrade)");
  } else {
    auto bound = open_broker_socket(config.socket_path, config.socket_mode, config.socket_group);
    if (!bound) {
      fail_status(bound.failure().why);
      return EXIT_FAILURE;
    }
    listener = std::move(*bound);
    unlink_path = config.socket_path;
    spdlog::info("listening on '{}'", config.socket_path);
  }

  SystemdFdStore fdstore(loop, fdstore_wanted());  // before the broker: it outlives it
  Broker broker(loop, std::move(listener), unlink_path, config, limits);
  broker.attach(fdstore);
  broker.adopt(std::move(restored));
  if (auto problems = broker.start(); !problems.empty()) {
    for (const auto& problem : problems) spdlog::critical("{}", problem.why);
    if (!unlink_path.empty()) ::unlink(unlink_path.c_str());
    fail_status("cannot open the configured entries");
    return EXIT_FAILURE;
  }

  ::signal(SIGPIPE, SIG_IGN);
  auto stop = [&] {
    spdlog::info("shutting down");
    systemd::notify("STOPPING=1");
    broker.shutdown([&] { loop.stop(); });
  };
  loop.on_signal(SIGTERM, stop);
  loop.on_signal(SIGINT, stop);
  // Upgrade without systemd (upgrade.hpp): the `upgrade` op, or SIGUSR2.
  UpgradeRunner upgrader(loop, broker, opts.argv, own_binary(), fdstore.pushing(),
                         std::move(spawner));
  upgrader.on_successor_ready(stop);
  loop.on_signal(SIGUSR2, [&] { upgrader.start(0, "", ""); });  // 0: no connection asked
  loop.on_signal(SIGHUP, [&] {
    auto now = std::chrono::duration_cast<std::chrono::microseconds>(
                   std::chrono::steady_clock::now().time_since_epoch())
                   .count();
    systemd::notify("RELOADING=1\nMONOTONIC_USEC=" + std::to_string(now));
    ConfigResult next = load(opts);
    std::vector<Failure> problems;
    for (const auto& w : next.warnings) spdlog::warn("reload: config: {}", w);
    if (!next.config) {
      for (const auto& e : next.errors) spdlog::error("reload: config: {}", e);
      spdlog::error("reload failed: keeping the running configuration");
    } else if (problems = broker.reload(*next.config, derive_limits(next.config->limits));
               !problems.empty()) {
      for (const auto& problem : problems) spdlog::error("reload: {}", problem.why);
      spdlog::error("reload failed: keeping the running configuration");
    } else {
      apply_log_level(*next.config);
      spdlog::info("configuration reloaded: {}", broker.status());
    }
    systemd::notify("READY=1\nSTATUS=" + broker.status());
  });

  // The watchdog, if systemd asked for one: ping at half the interval.
  std::function<void()> watchdog;
  auto interval = systemd::watchdog_interval();
  if (interval.count() > 0) {
    watchdog = [&] {
      systemd::notify("WATCHDOG=1");
      loop.add_timer(std::chrono::steady_clock::now() + interval / 2, watchdog);
    };
    watchdog();
  }

  // Keep systemctl status current: STATUS= whenever the counts changed, checked
  // every few seconds (only when someone listens).
  std::function<void()> status_update;
  std::string last_status = broker.status();
  if (std::getenv("NOTIFY_SOCKET") != nullptr) {
    status_update = [&] {
      std::string now = broker.status();
      if (now != last_status) systemd::notify("STATUS=" + now);
      last_status = now;
      loop.add_timer(std::chrono::steady_clock::now() + std::chrono::seconds(2), status_update);
    };
    loop.add_timer(std::chrono::steady_clock::now() + std::chrono::seconds(2), status_update);
  }

  systemd::notify("READY=1\nSTATUS=" + last_status);
  report_upgrade_ready();  // to the broker that started us, if one did
  spdlog::info("ready: {}", last_status);
  loop.run();
  fdstore.flush();  // the loop may have stopped with the last change unwritten
  spdlog::info("stopped");
  return EXIT_SUCCESS;
}

}  // namespace

int main(int argc, char** argv) {
  setup_logging();
  Options opts;
  opts.argv.assign(argv, argv + argc);
  static const option long_options[] = {{"config", required_argument, nullptr, 'c'},
                                        {"socket", required_argument, nullptr, 's'},
                                        {"check-config", no_argument, nullptr, 'C'},
                                        {"log-level", required_argument, nullptr, 'l'},
                                        {"help", no_argument, nullptr, 'h'},
                                        {"version", no_argument, nullptr, 'V'},
                                        {nullptr, 0, nullptr, 0}};
  int opt;
  while ((opt = ::getopt_long(argc, argv, "", long_options, nullptr)) != -1) {
    switch (opt) {
      case 'c':
        opts.config_path = optarg;
        opts.config_given = true;
        break;
      case 's':
        opts.socket = optarg;
        break;
      case 'C':
        opts.check_only = true;
        break;
      case 'l':
        if (!parse_log_level(optarg)) {
          std::fprintf(stderr, "fdbrokerd: unknown log level '%s'\n", optarg);
          return exit_usage;
        }
        opts.log_level = optarg;
        break;
      case 'h':
        usage(stdout);
        return EXIT_SUCCESS;
      case 'V':
        std::printf("fdbrokerd %s (protocol 1)\n", FDBROKER_VERSION_STRING);
        return EXIT_SUCCESS;
      default:
        usage(stderr);
        return exit_usage;
    }
  }
  if (optind < argc) {
    std::fprintf(stderr, "fdbrokerd: unexpected argument '%s'\n", argv[optind]);
    usage(stderr);
    return exit_usage;
  }
  if (opts.log_level) {
    if (auto level = parse_log_level(*opts.log_level)) spdlog::set_level(*level);
  }

  if (opts.check_only) {
    ConfigResult loaded = load(opts);
    if (!loaded.config) {
      for (const auto& e : loaded.errors) std::fprintf(stderr, "%s\n", e.c_str());
      return EXIT_FAILURE;
    }
    // The roots of "files" rules, checked on the file system as a start would
    // (in this process's mount namespace: run it where the broker runs).
    std::vector<std::string> root_warnings;
    auto files = FilePolicy::open(loaded.config->files, root_warnings);
    for (const auto& w : root_warnings) loaded.warnings.push_back(opts.config_path + ": " + w);
    for (const auto& w : loaded.warnings) std::fprintf(stderr, "warning: %s\n", w.c_str());
    if (!files) {
      // One line per refused root, each naming the file as the parse errors do.
      std::string why = files.failure().why;
      for (std::size_t start = 0; start <= why.size();) {
        std::size_t end = std::min(why.find('\n', start), why.size());
        std::fprintf(stderr, "%s: %s\n", opts.config_path.c_str(),
                     why.substr(start, end - start).c_str());
        start = end + 1;
      }
      return EXIT_FAILURE;
    }
    std::printf("%s: OK (%zu rules, %zu static entries, %zu files rules, %zu bind rules)\n",
                opts.config_path.c_str(), loaded.config->rules.size(),
                loaded.config->entries.size(), loaded.config->files.size(),
                loaded.config->binds.size());
    const Limits& limits = loaded.config->limits;
    if (!limits.max_connections_per_uid) {
      std::printf(
          "limits.max_connections_per_uid: %u (default: the larger of 64 and a quarter of "
          "max_connections, after RLIMIT_NOFILE caps it at start; root and the broker's uid "
          "exempt)\n",
          std::max(64u, limits.max_connections / 4));
    } else if (*limits.max_connections_per_uid == 0) {
      std::printf("limits.max_connections_per_uid: 0 (no limit)\n");
    } else {
      std::printf("limits.max_connections_per_uid: %u (root and the broker's uid exempt)\n",
                  *limits.max_connections_per_uid);
    }
    std::printf("accept_fuse_fds: %s (descriptors on FUSE file systems %s by put)\n",
                loaded.config->accept_fuse_fds ? "true" : "false",
                loaded.config->accept_fuse_fds ? "accepted" : "refused");
    return EXIT_SUCCESS;
  }

  try {
    return run(opts);
  } catch (const std::exception& e) {
    fail_status(e.what());
    return EXIT_FAILURE;
  }
}
