// SPDX-License-Identifier: LGPL-2.1-or-later
#include "binding_support.hpp"

#include <poll.h>

#include <climits>
#include <cstring>
#include <exception>
#include <string>

namespace fdbroker::python {

namespace {

// The errno a std::error_code stands for, or 0 if it is not an OS error at all.
int errno_of(const std::error_code& code) noexcept {
  if (code.category() == std::system_category() || code.category() == std::generic_category()) {
    return code.value();
  }
  // A custom category (say, the broker's protocol errors) that maps onto errno.
  const std::error_condition condition = code.default_error_condition();
  return condition.category() == std::generic_category() ? condition.value() : 0;
}

// Sets the Python error for `error`: OSError(errno, what) through the OSError
// constructor itself, which is what selects the subclass (BlockingIOError, ...).
void set_os_error(const std::system_error& error) {
  const int err = errno_of(error.code());
  const char* what = error.what();
  if (err == 0) {
    PyErr_SetString(PyExc_RuntimeError, what);
    return;
  }
  // what() is ours or the OS's; "replace" so that odd bytes can never turn an
  // OSError into a UnicodeDecodeError.
  PyObject* message = PyUnicode_DecodeUTF8(what, static_cast<Py_ssize_t>(std::strlen(what)), "replace");
  if (message == nullptr) return;
  PyObject* exception = PyObject_CallFunction(PyExc_OSError, "iN", err, message);
  if (exception == nullptr) return;
  PyErr_SetObject(reinterpret_cast<PyObject*>(Py_TYPE(exception)), exception);
  Py_DECREF(exception);
}

}  // namespace

void register_error_translator() {
  // Local to this module: other pybind11 extensions in the process keep their own
  // idea of what a std::system_error becomes.
  py::register_local_exception_translator([](std::exception_ptr pending) {
    try {
      if (pending) std::rethrow_exception(pending);
    } catch (const std::system_error& error) {
      set_os_error(error);
    }
  });
}

void throw_os_error(int err, const char* what) {
  throw std::system_error(err, std::system_category(), what);
}

int fd_of(py::handle obj) {
  py::object from_fileno;
  PyObject* number = obj.ptr();
  if (!PyLong_Check(number)) {
    py::object fileno = py::getattr(obj, "fileno", py::none());
    if (fileno.is_none()) {
      throw py::type_error(std::string("expected a file descriptor (an int or an object with a "
                                       "fileno() method), not ") +
                           Py_TYPE(number)->tp_name);
    }
    from_fileno = fileno();
    number = from_fileno.ptr();
    if (!PyLong_Check(number)) {
      throw py::type_error(std::string("fileno() returned ") + Py_TYPE(number)->tp_name +
                           ", not int");
    }
  }
  int overflow = 0;
  const long value = PyLong_AsLongAndOverflow(number, &overflow);
  if (value == -1 && PyErr_Occurred() != nullptr) throw py::error_already_set();
  if (overflow != 0 || value > INT_MAX || value < INT_MIN) {
    PyErr_SetString(PyExc_OverflowError, "file descriptor out of range for a C int");
    throw py::error_already_set();
  }
  return static_cast<int>(value);
}

std::optional<std::chrono::duration<double>> socket_timeout(py::handle obj) {
  if (PyLong_Check(obj.ptr())) return std::nullopt;
  py::object gettimeout = py::getattr(obj, "gettimeout", py::none());
  if (gettimeout.is_none()) return std::nullopt;
  py::object timeout = gettimeout();
  if (timeout.is_none()) return std::nullopt;
  const double seconds = timeout.cast<double>();
  if (!(seconds > 0)) return std::nullopt;
  return std::chrono::duration<double>(seconds);
}

void run_signal_handlers() {
  if (PyErr_CheckSignals() != 0) throw py::error_already_set();
}

void wait_ready(int fd, short events, std::chrono::steady_clock::time_point deadline) {
  using std::chrono::milliseconds;
  for (;;) {
    const auto left = deadline - std::chrono::steady_clock::now();
    if (left <= std::chrono::steady_clock::duration::zero()) {
      PyErr_SetString(PyExc_TimeoutError, "timed out");
      throw py::error_already_set();
    }
    // Round up: polling for 0 ms when 0.4 ms remain would spin.
    auto ms = std::chrono::ceil<milliseconds>(left).count();
    if (ms > INT_MAX) ms = INT_MAX;
    int ready;
    int err;
    {
      py::gil_scoped_release nogil;
      pollfd watched{fd, events, 0};
      ready = ::poll(&watched, 1, static_cast<int>(ms));
      err = errno;
    }
    // Ready, or an error/hang-up condition: either way the retried call reports it.
    if (ready > 0) return;
    if (ready == 0) continue;  // the loop head raises TimeoutError
    if (err != EINTR) throw_os_error(err, "poll");
    run_signal_handlers();
  }
}

}  // namespace fdbroker::python
