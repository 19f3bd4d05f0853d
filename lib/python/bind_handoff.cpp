// SPDX-License-Identifier: LGPL-2.1-or-later
// _fdbroker.open_listener and _fdbroker.Upgrader: a thin binding of handoff.hpp.
// fdbroker/handoff.py wraps them (socket objects, Entry objects, waits that honour
// signals). State arrives as an _fdbroker.Entry (bind_client_types.cpp), which keeps
// its descriptors until release_fds(); blocking calls drop the GIL.
#include <fdbroker/handoff.hpp>

#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <chrono>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "binding_support.hpp"
#include "bindings.hpp"

namespace fdbroker::python {
namespace {

using std::chrono::milliseconds;

}  // namespace

void bind_handoff(py::module_& m) {
  m.def(
      "open_listener",
      [](const std::string& name, const std::string& url, const std::string& broker_socket,
         bool require_broker, int backlog, bool nonblocking, const std::string& meta_json,
         std::int64_t race_wait_ms) {
        ListenOptions options;
        options.broker_socket = broker_socket;
        options.require_broker = require_broker;
        options.bind.backlog = backlog;
        options.bind.nonblocking = nonblocking;
        options.meta_json = meta_json;
        options.race_wait = milliseconds(race_wait_ms);
        Listener listener;
        {
          py::gil_scoped_release nogil;
          listener = open_listener(name, url, options);
        }
        py::tuple result = py::make_tuple(listener.fd.get(), to_string(listener.origin),
                                          listener.generation, listener.broker_error);
        // Only once the tuple exists: a failure above closed the socket with `listener`.
        static_cast<void>(listener.fd.release());  // the caller's now
        return result;
      },
      py::arg("name"), py::arg("url"), py::arg("broker_socket") = "",
      py::arg("require_broker") = false, py::arg("backlog") = 4096, py::arg("nonblocking") = false,
      py::arg("meta_json") = "", py::arg("race_wait_ms") = 5000,
      "open_listener(name, url, broker_socket='', require_broker=False, backlog=4096, "
      "nonblocking=False, meta_json='', race_wait_ms=5000)\n--\n\n"
      "fdbroker::open_listener(): (fd, origin, generation, broker_error); the fd is yours.");

  using handoff::Upgrader;
  py::class_<Upgrader>(m, "Upgrader")
      .def(py::init([](const std::string& service, const std::string& broker_socket,
                       std::int64_t ready_timeout_ms) {
             handoff::Options options;
             options.broker_socket = broker_socket;
             options.ready_timeout = milliseconds(ready_timeout_ms);
             py::gil_scoped_release nogil;
             return std::make_unique<Upgrader>(service, options);
           }),
           py::arg("service"), py::arg("broker_socket") = "", py::arg("ready_timeout_ms") = 30000)
      .def_property_readonly("service", &Upgrader::service)
      .def_property_readonly("has_broker", &Upgrader::has_broker)
      .def_property_readonly("broker_error", &Upgrader::broker_error)
      .def_property_readonly("predecessor_generation", &Upgrader::predecessor_generation)
      .def_property_readonly("predecessor_pid", &Upgrader::predecessor_pid)
      .def_property_readonly("generation", &Upgrader::generation)
      .def_property_readonly("is_ready", &Upgrader::is_ready)
      .def_property_readonly("exit_requested", &Upgrader::exit_requested)
      .def_property_readonly("successor_pid", &Upgrader::successor_pid)
      .def(
          "wait_for_predecessor_exit",
          [](Upgrader& self, std::int64_t timeout_ms) {
            return self.wait_for_predecessor_exit(milliseconds(timeout_ms));
          },
          py::arg("timeout_ms"), py::call_guard<py::gil_scoped_release>())
      .def(
          "put_state",
          [](Upgrader& self, const py::list& fds, const std::string& meta_json) {
            std::vector<int> raw;
            for (auto fd : fds) raw.push_back(fd_of(fd));
            py::gil_scoped_release nogil;
            return self.put_state(raw, meta_json);
          },
          py::arg("fds"), py::arg("meta_json") = "")
      .def(
          "get_state",
          [](Upgrader& self, std::int64_t wait_ms) {
            return self.get_state(milliseconds(wait_ms));
          },
          py::arg("wait_ms") = 0, py::call_guard<py::gil_scoped_release>())
      .def(
          "take_state",
          [](Upgrader& self, std::int64_t wait_ms) {
            return self.take_state(milliseconds(wait_ms));
          },
          py::arg("wait_ms") = 0, py::call_guard<py::gil_scoped_release>())
      .def("ready", &Upgrader::ready, py::call_guard<py::gil_scoped_release>())
      .def("exit_fd", &Upgrader::exit_fd, py::call_guard<py::gil_scoped_release>())
      .def("upgrade", &Upgrader::upgrade, py::arg("argv") = std::vector<std::string>{},
           py::call_guard<py::gil_scoped_release>());
}

}  // namespace fdbroker::python
