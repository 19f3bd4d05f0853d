// SPDX-License-Identifier: LGPL-2.1-or-later
#include "binding_support.hpp"

#include <poll.h>

#include <algorithm>
#include <climits>
#include <cstring>
#include <exception>
#include <optional>
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

}  // namespace

void set_os_error(const std::system_error& error) {
  const int err = errno_of(error.code());
  const char* what = error.what();
  if (err == 0) {
    PyErr_SetString(PyExc_RuntimeError, what);
    return;
  }
  // what() is ours or the OS's; "replace" so that odd bytes can never turn an
  // OSError into a UnicodeDecodeError.
  PyObject* message =
      PyUnicode_DecodeUTF8(what, static_cast<Py_ssize_t>(std::strlen(what)), "replace");
  if (message == nullptr) return;
  PyObject* exception = PyObject_CallFunction(PyExc_OSError, "iN", err, message);
  if (exception == nullptr) return;
  PyErr_SetObject(reinterpret_cast<PyObject*>(Py_TYPE(exception)), exception);
  Py_DECREF(exception);
}

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

bool parse_fastcall_args(const char* fname, PyObject* const* args, Py_ssize_t nargs,
                         PyObject* kwnames, const char* const* names, Py_ssize_t n, Py_ssize_t npos,
                         Py_ssize_t nrequired, PyObject** ret_args) {
  if (nargs > npos) {
    PyErr_Format(PyExc_TypeError, "%s() takes at most %zd positional arguments (%zd given)", fname,
                 npos, nargs);
    return false;
  }
  if (kwnames == nullptr && nargs >= nrequired) {  // the common case: all positional
    std::copy(args, args + nargs, ret_args);
    std::fill(ret_args + nargs, ret_args + n, nullptr);
    return true;
  }
  PyObject* got[16] = {};  // ret_args is written only on success
  if (n > 16) {
    PyErr_SetString(PyExc_SystemError, "parse_fastcall_args: too many parameters");
    return false;
  }
  for (Py_ssize_t i = 0; i < nargs; ++i) got[i] = args[i];
  const Py_ssize_t nkw = kwnames == nullptr ? 0 : PyTuple_GET_SIZE(kwnames);
  for (Py_ssize_t k = 0; k < nkw; ++k) {
    PyObject* key = PyTuple_GET_ITEM(kwnames, k);
    Py_ssize_t i = 0;
    while (i < n && PyUnicode_CompareWithASCIIString(key, names[i]) != 0) ++i;
    if (i == n) {
      PyErr_Format(PyExc_TypeError, "%s() got an unexpected keyword argument '%U'", fname, key);
      return false;
    }
    if (got[i] != nullptr) {
      PyErr_Format(PyExc_TypeError, "%s() got multiple values for argument '%s'", fname, names[i]);
      return false;
    }
    got[i] = args[nargs + k];
  }
  for (Py_ssize_t i = 0; i < nrequired; ++i) {
    if (got[i] == nullptr) {
      PyErr_Format(PyExc_TypeError, "%s() missing required argument '%s' (pos %zd)", fname,
                   names[i], i + 1);
      return false;
    }
  }
  std::copy(got, got + n, ret_args);
  return true;
}

void throw_os_error(int err, const char* what) {
  throw std::system_error(err, std::system_category(), what);
}

namespace {

// Interned once; a vectorcall method call creates no bound method object.
PyObject* fileno_name() {
  static PyObject* const name = PyUnicode_InternFromString("fileno");
  return name;
}

// socket.socket objects, read directly: calling their fileno() is most of the cost
// of converting one, and fdbroker.sendfds/recvfds convert one per call. CPython's
// socket module publishes its C socket type in the capsule "_socket.CAPI" (the
// first member of socketmodule.h's PySocketModule_APIObject), and its instances
// start with the object header followed by the descriptor (SOCKET_T, an int on
// POSIX). That layout is private to CPython, so it is only trusted after it has
// given the same answer as fileno() on the first socket seen; if it ever does not,
// or the capsule is missing, every socket goes through fileno().
struct socket_object_prefix {
  PyObject_HEAD int sock_fd;
};

class socket_fd_reader {
 public:
  // The descriptor of `obj` if it is a _socket.socket whose fileno() is the C one;
  // nullopt otherwise (fd_of() then calls fileno()). Never leaves an error set.
  std::optional<int> read(PyObject* obj) {
    if (state_ == state::disabled) return std::nullopt;
    if (state_ == state::unknown && !load()) return std::nullopt;
    // obj.fileno must resolve to the C method: no override in a subclass, no
    // __getattr(ibute)__ and no instance __dict__ that could hold another one.
    PyTypeObject* type = Py_TYPE(obj);
    if (!is_plain_socket_type(type)) return std::nullopt;
    const int fd = reinterpret_cast<socket_object_prefix*>(obj)->sock_fd;
    if (state_ == state::trusted) return fd;
    // The first socket seen: check the layout against fileno() itself.
    PyObject* got = PyObject_VectorcallMethod(fileno_name(), &obj, 1, nullptr);
    if (got == nullptr) {
      PyErr_Clear();
      state_ = state::disabled;
      return std::nullopt;
    }
    const long expected = PyLong_Check(got) ? PyLong_AsLong(got) : -2;
    Py_DECREF(got);
    PyErr_Clear();
    state_ = expected == fd ? state::trusted : state::disabled;
    return state_ == state::trusted ? std::optional<int>(fd) : std::nullopt;
  }

 private:
  enum class state { unknown, checking, trusted, disabled };

  // Whether instances of `type` are _socket.socket objects whose obj.fileno is the
  // C method: no override in a subclass, no __getattr(ibute)__ and no instance
  // __dict__ that could hold another one. The answer for the last type checked is
  // kept until that type (or a base) changes, which gives it a new version tag.
  bool is_plain_socket_type(PyTypeObject* type) {
    const bool versioned = PyType_HasFeature(type, Py_TPFLAGS_VALID_VERSION_TAG);
    if (versioned && type == checked_type_ && type->tp_version_tag == checked_version_) {
      return true;
    }
    if (!PyType_IsSubtype(type, socket_type_) || type->tp_dictoffset != 0 ||
        type->tp_getattro != PyObject_GenericGetAttr ||
        _PyType_Lookup(type, fileno_name()) != c_fileno_) {
      return false;
    }
    // _PyType_Lookup() has just given the type a valid tag if it can have one.
    if (PyType_HasFeature(type, Py_TPFLAGS_VALID_VERSION_TAG)) {
      checked_type_ = type;
      checked_version_ = type->tp_version_tag;
    }
    return true;
  }

  bool load() {
    state_ = state::disabled;
    auto* api = static_cast<PyTypeObject**>(PyCapsule_Import("_socket.CAPI", 0));
    if (api == nullptr || *api == nullptr) {
      PyErr_Clear();
      return false;
    }
    socket_type_ = *api;
    c_fileno_ = _PyType_Lookup(socket_type_, fileno_name());
    if (c_fileno_ == nullptr ||
        socket_type_->tp_basicsize < static_cast<Py_ssize_t>(sizeof(socket_object_prefix))) {
      return false;
    }
    state_ = state::checking;
    return true;
  }

  state state_ = state::unknown;
  PyTypeObject* socket_type_ = nullptr;  // kept alive by the _socket module
  PyObject* c_fileno_ = nullptr;         // borrowed from socket_type_'s __dict__
  // The last type is_plain_socket_type() accepted, compared by address and version
  // tag only (a type freed and another allocated at its address gets a new tag).
  PyTypeObject* checked_type_ = nullptr;
  unsigned int checked_version_ = 0;
};

socket_fd_reader socket_fds;  // used with the GIL held only

}  // namespace

int fd_of(py::handle obj) {
  py::object from_fileno;
  PyObject* number = obj.ptr();
  if (!PyLong_Check(number)) {
    if (const std::optional<int> fd = socket_fds.read(number)) return *fd;
    PyObject* const fileno_name = fdbroker::python::fileno_name();
    PyObject* self = obj.ptr();
    // nargsf 1, no PY_VECTORCALL_ARGUMENTS_OFFSET: there is no writable args[-1].
    PyObject* got = PyObject_VectorcallMethod(fileno_name, &self, 1, nullptr);
    if (got == nullptr) {
      if (PyErr_ExceptionMatches(PyExc_AttributeError) && !PyObject_HasAttr(self, fileno_name)) {
        PyErr_Clear();
        throw py::type_error(std::string("expected a file descriptor (an int or an object with a "
                                         "fileno() method), not ") +
                             Py_TYPE(number)->tp_name);
      }
      throw py::error_already_set();
    }
    from_fileno = py::reinterpret_steal<py::object>(got);
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
