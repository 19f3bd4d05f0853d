// SPDX-License-Identifier: LGPL-2.1-or-later
// fdbrokerctl: argv -> Options -> one Client call -> printed reply and an exit code.
#include "cli_options.hpp"
#include "exec.hpp"
#include "fd_sources.hpp"
#include "open_flags.hpp"
#include "output.hpp"
#include "prometheus.hpp"

#include <fdbroker/client.hpp>
#include <fdbroker/error.hpp>
#include <fdbroker/version.hpp>

#include <cerrno>
#include <iostream>
#include <stdexcept>
#include <string>
#include <vector>

namespace {

// Exit codes (STYLE §3, as s6-fdholder-retrieve).
constexpr int exit_ok = 0;
constexpr int exit_refused = 1;
constexpr int exit_usage = 100;
constexpr int exit_system = 111;

int run(const fdbrokerctl::Options& o) {
  using namespace fdbrokerctl;
  // put's descriptors first: a bad --file or --listen is reported as such even
  // when the broker is unreachable.
  PreparedFds prepared;
  if (o.command == "put") prepared = prepare_fds(o.sources);
  fdbroker::Client client(o.socket, o.timeout);
  const std::string& c = o.command;
  if (c == "hello") {
    print_hello(std::cout, client.hello(), o.json);
  } else if (c == "list") {
    print_list(std::cout, client.list(o.prefix, o.limit), o.json);
  } else if (c == "get") {
    print_entry(std::cout, client.get(o.name, o.wait_ms), o.json);
  } else if (c == "take") {
    print_entry(std::cout, client.take(o.name, o.wait_ms), o.json);
  } else if (c == "put") {
    fdbroker::PutOptions options;
    options.meta_json = o.meta;
    options.ttl_ms = o.ttl_ms;
    options.replace = o.replace;
    options.expect_generation = o.expect_generation;
    print_put(std::cout, o.name, client.put(o.name, prepared.fds, options), o.json);
  } else if (c == "delete") {
    client.remove(o.name);
    print_deleted(std::cout, o.name, o.json);
  } else if (c == "stats") {
    if (o.prometheus) {
      print_prometheus(std::cout, client.stats());
    } else {
      print_stats(std::cout, client.stats(), o.json);
    }
  } else if (c == "upgrade") {
    std::int64_t pid = client.upgrade(o.binary);
    if (o.json) {
      std::cout << "{\"pid\":" << pid << "}\n";
    } else {
      std::cout << "upgraded: the new broker is pid " << pid << '\n';
    }
  } else if (c == "open") {
    print_opened(std::cout, client.open(o.name, open_flags_for(o.open), o.open.perm), o.json);
  } else if (c == "exec") {
    exec_with_entries(o, client);
  }
  std::cout.flush();
  return std::cout ? exit_ok : exit_system;
}

}  // namespace

int main(int argc, char** argv) {
  fdbrokerctl::Options options;
  try {
    options = fdbrokerctl::parse_options(std::vector<std::string>(argv + 1, argv + argc));
  } catch (const fdbrokerctl::UsageError& e) {
    std::cerr << "fdbrokerctl: " << e.what() << "\nTry 'fdbrokerctl --help'.\n";
    return exit_usage;
  }
  if (options.help) {
    std::cout << fdbrokerctl::usage_text;
    return exit_ok;
  }
  if (options.version) {
    std::cout << "fdbrokerctl " << FDBROKER_VERSION_STRING << '\n';
    return exit_ok;
  }
  try {
    return run(options);
  } catch (const fdbroker::BrokerError& e) {
    std::cerr << "fdbrokerctl: " << options.command << ": " << e.error_name() << ": " << e.message()
              << '\n';
    return exit_refused;
  } catch (const fdbrokerctl::UsageError& e) {
    std::cerr << "fdbrokerctl: " << e.what() << '\n';
    return exit_usage;
  } catch (const std::invalid_argument& e) {
    // Arguments the client library refused before sending (e.g. --meta not an object).
    std::cerr << "fdbrokerctl: " << e.what() << '\n';
    return exit_usage;
  } catch (const std::system_error& e) {
    const char* name = fdbroker::errno_name(e.code().value());
    std::cerr << "fdbrokerctl: " << options.command << ": " << (name ? name : "error") << ": "
              << e.what() << '\n';
    if (e.code().value() == ETIMEDOUT && options.timeout) {
      // Not the broker's own ETIMEDOUT for --wait: that one is a refusal (exit 1).
      std::cerr
          << "fdbrokerctl: no answer within --timeout; is the broker stopped or overloaded?\n";
    }
    return exit_system;
  } catch (const std::exception& e) {
    std::cerr << "fdbrokerctl: " << options.command << ": " << e.what() << '\n';
    return exit_system;
  }
}
