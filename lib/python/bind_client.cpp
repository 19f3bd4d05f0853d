// SPDX-License-Identifier: LGPL-2.1-or-later
// _fdbroker.Client: a thin binding of fdbroker::Client. Replies cross as the structs
// of client.hpp (bind_client_types.cpp; fdbroker/client.py builds the public objects
// from them); an Entry keeps its descriptors until Entry.release_fds().
#include <fdbroker/client.hpp>

#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <poll.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <climits>
#include <cstdint>
#include <mutex>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "binding_support.hpp"
#include "bindings.hpp"

namespace fdbroker::python {

namespace {

// One connection shared by Python threads: the GIL is released during each call,
// so the calls are serialised here (a reply must be read by whoever sent its request).
class PyClient {
 public:
  PyClient(const std::string& path, std::optional<std::int64_t> timeout_ms) {
    client_.set_io_waiter(&wait_for);
    set_timeout_ms(timeout_ms);  // before connecting: it bounds the connect too
    py::gil_scoped_release nogil;
    client_.connect(path);
  }

  // Waits with poll(), which a signal interrupts (EINTR) whatever SA_RESTART says,
  // so that Python's handlers run during a long wait_ms or a full send queue:
  // Ctrl-C interrupts a get() as it would a socket.recv(). After handlers that did
  // not raise it returns false, and the Client calls it again with the time still
  // left before its timeout. Called without the GIL.
  static bool wait_for(int sock, short events, std::optional<std::chrono::milliseconds> time_left) {
    int ms = time_left ? static_cast<int>(std::min<std::int64_t>(time_left->count(), INT_MAX)) : -1;
    pollfd watched{sock, events, 0};
    int ready = ::poll(&watched, 1, ms);
    if (ready >= 0) return ready > 0;
    if (errno != EINTR) throw_os_error(errno, "poll");
    py::gil_scoped_acquire gil;
    run_signal_handlers();  // raises what a handler raised; the Client then disconnects
    return false;
  }

  // Milliseconds, as the Client counts them (fdbroker/client.py converts seconds);
  // None: no timeout. ValueError (std::invalid_argument) unless > 0.
  void set_timeout_ms(std::optional<std::int64_t> timeout_ms) {
    std::optional<std::chrono::milliseconds> timeout;
    if (timeout_ms) timeout = std::chrono::milliseconds(*timeout_ms);
    client_.set_timeout(timeout);
  }
  std::optional<std::int64_t> timeout_ms() const {
    auto timeout = client_.timeout();
    return timeout ? std::optional<std::int64_t>(timeout->count()) : std::nullopt;
  }

  template <class F>
  auto locked(F&& f) {
    py::gil_scoped_release nogil;
    std::lock_guard lock(mutex_);
    return f(client_);
  }

  std::mutex mutex_;
  Client client_;
};

}  // namespace

void bind_client(py::module_& m) {
  // A refusal's OSError carries the broker's own message as its strerror, not the
  // libc text that std::system_error appends. Registered after the generic
  // translator, so it is tried first.
  py::register_local_exception_translator([](std::exception_ptr pending) {
    try {
      if (pending) std::rethrow_exception(pending);
    } catch (const BrokerError& error) {
      py::object exception = py::reinterpret_steal<py::object>(PyObject_CallFunction(
          PyExc_OSError, "is", error.code().value(), error.message().c_str()));
      if (!exception) return;
      PyErr_SetObject(reinterpret_cast<PyObject*>(Py_TYPE(exception.ptr())), exception.ptr());
    }
  });

  m.attr("DEFAULT_SOCKET_PATH") = default_socket_path;
  m.def("socket_path_from_env", &socket_path_from_env);

  py::class_<PyClient>(m, "Client")
      .def(py::init<const std::string&, std::optional<std::int64_t>>(), py::arg("path") = "",
           py::arg("timeout_ms") = py::none())
      .def_property(
          "timeout_ms",
          [](PyClient& c) { return c.locked([&](Client&) { return c.timeout_ms(); }); },
          [](PyClient& c, std::optional<std::int64_t> timeout_ms) {
            c.locked([&](Client&) { c.set_timeout_ms(timeout_ms); });
          })
      .def("fileno", [](PyClient& c) { return c.client_.fd(); })
      .def("close", [](PyClient& c) { c.locked([](Client& cl) { cl.close(); }); })
      .def("hello", [](PyClient& c) { return c.locked([](Client& cl) { return cl.hello(); }); })
      .def("stats", [](PyClient& c) { return c.locked([](Client& cl) { return cl.stats(); }); })
      .def(
          "get",
          [](PyClient& c, const std::string& name, std::optional<std::int64_t> wait_ms) {
            return c.locked([&](Client& cl) { return cl.get(name, wait_ms); });
          },
          py::arg("name"), py::arg("wait_ms") = py::none())
      .def(
          "take",
          [](PyClient& c, const std::string& name, std::optional<std::int64_t> wait_ms) {
            return c.locked([&](Client& cl) { return cl.take(name, wait_ms); });
          },
          py::arg("name"), py::arg("wait_ms") = py::none())
      .def(
          "put",
          [](PyClient& c, const std::string& name, const py::iterable& fd_objects,
             const std::string& meta_json, std::optional<std::int64_t> ttl_ms, bool replace,
             std::optional<std::uint64_t> expect_generation) {
            std::vector<int> fds;
            for (py::handle obj : fd_objects) fds.push_back(fd_of(obj));  // borrowed
            PutOptions options;
            options.meta_json = meta_json;
            options.ttl_ms = ttl_ms;
            options.replace = replace;
            options.expect_generation = expect_generation;
            return c.locked([&](Client& cl) { return cl.put(name, fds, options); });
          },
          py::arg("name"), py::arg("fds"), py::arg("meta_json") = "",
          py::arg("ttl_ms") = py::none(), py::arg("replace") = false,
          py::arg("expect_generation") = py::none())
      .def(
          "remove",
          [](PyClient& c, const std::string& name) {
            c.locked([&](Client& cl) { cl.remove(name); });
          },
          py::arg("name"))
      .def(
          "list",
          [](PyClient& c, const std::string& prefix, unsigned page_size) {
            return c.locked([&](Client& cl) { return cl.list(prefix, page_size); });
          },
          py::arg("prefix") = "", py::arg("page_size") = 0)
      .def(
          "list_page",
          [](PyClient& c, const std::string& prefix, unsigned limit,
             std::optional<std::string> cursor) {
            return c.locked([&](Client& cl) { return cl.list_page(prefix, limit, cursor); });
          },
          py::arg("prefix") = "", py::arg("limit") = 0, py::arg("cursor") = py::none())
      .def(
          "open",
          [](PyClient& c, const std::string& path, int oflags, std::optional<unsigned> mode) {
            OpenFlags flags = open_flags_from_posix(oflags);  // ValueError before sending
            return c.locked([&](Client& cl) { return cl.open(path, flags, mode); });
          },
          py::arg("path"), py::arg("oflags"), py::arg("mode") = py::none())
      .def(
          "bind",
          [](PyClient& c, const std::string& url, std::optional<int> backlog, bool reuseport) {
            BrokerBindOptions options;
            options.backlog = backlog;
            options.reuseport = reuseport;
            return c.locked([&](Client& cl) { return cl.bind(url, options); });
          },
          py::arg("url"), py::arg("backlog") = py::none(), py::arg("reuseport") = false);
}

}  // namespace fdbroker::python
