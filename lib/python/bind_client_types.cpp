// SPDX-License-Identifier: LGPL-2.1-or-later
// The structs of client.hpp as read-only Python classes: what _fdbroker.Client and
// _fdbroker.Upgrader return, converted by pybind11 through these bindings alone.
// fdbroker/client.py builds the public Entry, EntryInfo and dicts from them.
#include <fdbroker/client.hpp>

#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstddef>

#include "binding_support.hpp"
#include "bindings.hpp"

namespace fdbroker::python {

namespace {

// The descriptors as ints the caller owns, all or none: until the list exists the
// Entry keeps every one, so a failure (MemoryError) leaves them to it, and it closes
// them when collected. Afterwards the Entry holds none.
py::object release_fds(Entry& entry) {
  const auto count = static_cast<Py_ssize_t>(entry.fds.size());
  py::object numbers = steal_or_throw(PyList_New(count));
  for (Py_ssize_t i = 0; i < count; ++i) {
    PyObject* number = PyLong_FromLong(entry.fds[static_cast<std::size_t>(i)].get());
    if (number == nullptr) throw py::error_already_set();
    PyList_SET_ITEM(numbers.ptr(), i, number);
  }
  // Nothing can fail any more: the caller owns the descriptors from here.
  for (auto& fd : entry.fds) static_cast<void>(fd.release());
  entry.fds.clear();
  return numbers;
}

// The descriptor as an int the caller owns; the object keeps none afterwards (-1
// if it was released already).
template <class T>
int release_fd(T& holder) {
  return holder.fd.release();
}

}  // namespace

void bind_client_types(py::module_& m) {
  py::class_<FdDescription>(m, "FdDescription")
      .def_readonly("kind", &FdDescription::kind)
      .def_readonly("family", &FdDescription::family)
      .def_readonly("type", &FdDescription::type)
      .def_readonly("listening", &FdDescription::listening)
      .def_readonly("local", &FdDescription::local)
      .def_readonly("path", &FdDescription::path)
      .def_readonly("access", &FdDescription::access)
      .def_readonly("name", &FdDescription::name)
      .def_readonly("json", &FdDescription::json);

  py::class_<EntryInfo>(m, "EntryInfo")
      .def_readonly("name", &EntryInfo::name)
      .def_readonly("generation", &EntryInfo::generation)
      .def_readonly("meta_json", &EntryInfo::meta_json)
      .def_readonly("owner_uid", &EntryInfo::owner_uid)
      .def_readonly("is_static", &EntryInfo::is_static)
      .def_readonly("expires_ms", &EntryInfo::expires_ms)
      .def_readonly("fd_descriptions", &EntryInfo::fd_descriptions)
      .def_readonly("json", &EntryInfo::json);

  py::class_<Entry, EntryInfo>(m, "Entry")
      .def_property_readonly("fd_count", [](const Entry& e) { return e.fds.size(); })
      .def("release_fds", &release_fds,
           "release_fds()\n--\n\n"
           "The descriptors as ints that are now yours, in the order of fd_descriptions;\n"
           "the Entry keeps none. If this raises, the Entry still holds them all (and\n"
           "closes them when it is collected).");

  py::class_<Opened>(m, "Opened")
      .def_readonly("description", &Opened::description)
      .def_readonly("path", &Opened::path)
      .def_readonly("rule", &Opened::rule)
      .def_readonly("created", &Opened::created)
      .def_readonly("json", &Opened::json)
      .def("release_fd", &release_fd<Opened>,
           "release_fd()\n--\n\n"
           "The descriptor as an int that is now yours (-1 if released before); until\n"
           "then the Opened owns it and closes it when it is collected.");

  py::class_<Bound>(m, "Bound")
      .def_readonly("description", &Bound::description)
      .def_readonly("address", &Bound::address)
      .def_readonly("rule", &Bound::rule)
      .def_readonly("json", &Bound::json)
      .def("release_fd", &release_fd<Bound>,
           "release_fd()\n--\n\n"
           "The socket as an int that is now yours (-1 if released before); until\n"
           "then the Bound owns it and closes it when it is collected.");

  py::class_<ListPage>(m, "ListPage")
      .def_readonly("entries", &ListPage::entries)
      .def_readonly("cursor", &ListPage::cursor);

  py::class_<Peer>(m, "Peer")
      .def_readonly("uid", &Peer::uid)
      .def_readonly("gid", &Peer::gid)
      .def_readonly("pid", &Peer::pid)
      .def_readonly("unit", &Peer::unit)
      .def_readonly("cgroup", &Peer::cgroup);

  py::class_<Hello>(m, "Hello")
      .def_readonly("server", &Hello::server)
      .def_readonly("version", &Hello::version)
      .def_readonly("protocol", &Hello::protocol)
      .def_readonly("peer", &Hello::peer)
      .def_readonly("json", &Hello::json);

  py::class_<Stats>(m, "Stats")
      .def_readonly("uptime_ms", &Stats::uptime_ms)
      .def_readonly("connections_current", &Stats::connections_current)
      .def_readonly("connections_total", &Stats::connections_total)
      .def_readonly("connections_dropped", &Stats::connections_dropped)
      .def_readonly("entries", &Stats::entries)
      .def_readonly("fds_held", &Stats::fds_held)
      .def_readonly("fds_limit", &Stats::fds_limit)
      .def_readonly("requests", &Stats::requests)
      .def_readonly("json", &Stats::json);
}

}  // namespace fdbroker::python
