// SPDX-License-Identifier: LGPL-2.1-or-later
// _fdbroker_bench_raw: the raw C ping-pong (raw_pingpong.hpp) callable from Python,
// so that python_pingpong.py can time "no Python in between" with the same clock,
// the same sockets and the same descriptors as the Python variants. One call runs
// the whole loop in C++.
//
// It also holds the thinnest binding there can be, send() and recv(): raw_send and
// raw_recv behind METH_FASTCALL with no checks, taking only an int socket, bytes
// and a list of ints, returning a plain tuple, never releasing the GIL. Not usable
// as an API (no errors but OSError, no timeouts, nothing but exact types): it is
// the yardstick for what any Python binding must cost on top of raw C.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstddef>
#include <string>
#include <vector>

#include "raw_pingpong.hpp"

namespace py = pybind11;

namespace {

using fdbroker_bench::raw_max_fds;

// thin send(sock: int, msg: bytes, fds: list[int]) -> int
PyObject* thin_send(PyObject*, PyObject* const* args, Py_ssize_t nargs) {
  if (nargs != 3 || !PyLong_CheckExact(args[0]) || !PyBytes_CheckExact(args[1]) ||
      !PyList_CheckExact(args[2]) || PyList_GET_SIZE(args[2]) > Py_ssize_t{raw_max_fds}) {
    PyErr_SetString(PyExc_TypeError, "send(int, bytes, list of at most 253 ints)");
    return nullptr;
  }
  int fds[raw_max_fds];
  const Py_ssize_t nfds = PyList_GET_SIZE(args[2]);
  for (Py_ssize_t i = 0; i < nfds; ++i) {
    fds[i] = static_cast<int>(PyLong_AsLong(PyList_GET_ITEM(args[2], i)));
  }
  const ssize_t sent = fdbroker_bench::raw_send(
      static_cast<int>(PyLong_AsLong(args[0])), PyBytes_AS_STRING(args[1]),
      static_cast<std::size_t>(PyBytes_GET_SIZE(args[1])), fds, static_cast<std::size_t>(nfds));
  if (sent < 0) return PyErr_SetFromErrno(PyExc_OSError);
  return PyLong_FromSsize_t(sent);
}

// thin recv(sock: int) -> (bytes, list[int]), at most 64 payload bytes and 253 fds
PyObject* thin_recv(PyObject*, PyObject* const* args, Py_ssize_t nargs) {
  if (nargs != 1 || !PyLong_CheckExact(args[0])) {
    PyErr_SetString(PyExc_TypeError, "recv(int)");
    return nullptr;
  }
  char buf[64];
  int fds[raw_max_fds];
  std::size_t nfds = 0;
  const ssize_t got = fdbroker_bench::raw_recv(static_cast<int>(PyLong_AsLong(args[0])), buf,
                                               sizeof buf, fds, raw_max_fds, &nfds);
  if (got < 0) return PyErr_SetFromErrno(PyExc_OSError);
  // Allocation failures would leak the fds: a benchmark can live with that.
  PyObject* list = PyList_New(static_cast<Py_ssize_t>(nfds));
  for (std::size_t i = 0; i < nfds; ++i) {
    PyList_SET_ITEM(list, static_cast<Py_ssize_t>(i), PyLong_FromLong(fds[i]));
  }
  PyObject* pair = PyTuple_New(2);
  PyTuple_SET_ITEM(pair, 0, PyBytes_FromStringAndSize(buf, got));
  PyTuple_SET_ITEM(pair, 1, list);
  return pair;
}

PyMethodDef thin_defs[] = {
    {"send", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(thin_send)), METH_FASTCALL,
     "The thinnest binding of raw_send (benchmark yardstick)."},
    {"recv", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(thin_recv)), METH_FASTCALL,
     "The thinnest binding of raw_recv (benchmark yardstick)."},
};

}  // namespace

PYBIND11_MODULE(_fdbroker_bench_raw, m) {
  m.doc() = "Raw sendmsg/recvmsg ping-pong for python_pingpong.py (benchmark only).";
  m.def(
      "run",
      [](int a, int b, const std::vector<int>& fds, std::size_t iterations,
         const std::string& payload) {
        for (std::size_t i = 0; i < iterations; ++i) {
          fdbroker_bench::raw_round_trip(a, b, payload.data(), payload.size(), fds.data(),
                                         fds.size());
        }
      },
      py::arg("a"), py::arg("b"), py::arg("fds"), py::arg("iterations"), py::arg("payload"),
      "Runs `iterations` round trips a -> b -> a carrying `payload` and `fds`; the "
      "descriptors received on either side are closed.");

  py::object module_name = m.attr("__name__");
  for (PyMethodDef& def : thin_defs) {
    PyObject* function = PyCFunction_NewEx(&def, nullptr, module_name.ptr());
    if (function == nullptr) throw py::error_already_set();
    m.add_object(def.ml_name, py::reinterpret_steal<py::object>(function));
  }
}
