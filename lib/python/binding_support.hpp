// SPDX-License-Identifier: LGPL-2.1-or-later
// What every part of the _fdbroker extension shares: the error contract
// (std::system_error -> OSError), turning Python objects into fds, and the loop that
// runs a blocking call without the GIL while honouring signals (PEP 475) and
// socket timeouts.
#pragma once

#include <fdbroker/result.hpp>

#include <pybind11/pybind11.h>

#include <cerrno>
#include <chrono>
#include <climits>
#include <exception>
#include <new>
#include <optional>
#include <system_error>
#include <utility>

namespace fdbroker::python {

namespace py = pybind11;

// Registers, once per module, the translator that turns a std::system_error escaping
// any bound function into OSError(errno, what()). Python's OSError constructor then
// picks the subclass from the errno: EAGAIN -> BlockingIOError, ENOENT ->
// FileNotFoundError, EPERM -> PermissionError, EPIPE -> BrokenPipeError, ...
void register_error_translator();

// Sets the Python error for `error`: OSError(errno, what) through the OSError
// constructor itself, which is what selects the subclass (BlockingIOError, ...).
void set_os_error(const std::system_error& error);

// Runs `body` (returning a new reference, or nullptr with a Python error set) as the
// body of a plain CPython function: any C++ exception escaping it becomes the Python
// exception pybind11 would have raised, and nullptr is returned.
template <class Body>
PyObject* guarded(Body&& body) noexcept {
  try {
    return body();
  } catch (py::error_already_set& e) {
    e.restore();
  } catch (const py::builtin_exception& e) {
    e.set_error();
  } catch (const std::system_error& e) {
    set_os_error(e);
  } catch (const std::bad_alloc&) {
    PyErr_NoMemory();
  } catch (const std::exception& e) {
    PyErr_SetString(PyExc_RuntimeError, e.what());
  }
  return nullptr;
}

// Argument parsing for a METH_FASTCALL | METH_KEYWORDS function `fname` whose
// parameters are names[0..n), the first `npos` positional-or-keyword and the rest
// keyword-only; the first `nrequired` are required. Fills ret_args[0..n) with
// borrowed references, nullptr for those not given. Returns false with TypeError set
// (too many positional, unknown or repeated keyword, missing required argument).
bool parse_fastcall_args(const char* fname, PyObject* const* args, Py_ssize_t nargs,
                         PyObject* kwnames, const char* const* names, Py_ssize_t n, Py_ssize_t npos,
                         Py_ssize_t nrequired, PyObject** ret_args);

// Throws std::system_error for `err`, which the translator above turns into OSError.
[[noreturn]] void throw_os_error(int err, const char* what);

// `obj`, a new reference from the C API, owned; if it is nullptr (a Python error is
// set, e.g. MemoryError) throws it. pybind11's own wrappers (py::int_, py::list(n),
// ...) abort on a failed allocation in debug builds: code that must survive one, such
// as code holding received descriptors, builds its objects with the C API and this.
inline py::object steal_or_throw(PyObject* obj) {
  if (obj == nullptr) throw py::error_already_set();
  return py::reinterpret_steal<py::object>(obj);
}

// The descriptor behind a Python object, borrowed for the call: an int is taken as is
// (a negative or closed one reaches the kernel, which answers EBADF, so callers see one
// errno for "not an open fd"); anything else must have a fileno() returning an int.
// Raises TypeError otherwise, OverflowError if it does not fit an int.
int fd_of(py::handle obj);

// fd_of() for the common case, inline: an int that fits (the fds of a message are
// converted one by one, so the call itself counts). Anything else goes to fd_of().
inline int fd_of_fast(py::handle obj) {
  if (PyLong_CheckExact(obj.ptr())) {
    int overflow = 0;
    const long value = PyLong_AsLongAndOverflow(obj.ptr(), &overflow);
    if (overflow == 0 && value >= INT_MIN && value <= INT_MAX) return static_cast<int>(value);
  }
  return fd_of(obj);
}

// The timeout of a socket.socket-like object (obj.gettimeout()), if it has a positive
// one; nullopt for ints, objects without gettimeout(), None and 0.
std::optional<std::chrono::duration<double>> socket_timeout(py::handle obj);

// Raises any exception a Python signal handler raised (PyErr_CheckSignals); returns
// if the handlers ran quietly. Call with the GIL held.
void run_signal_handlers();

// Waits, without the GIL, until `fd` is ready for `events` (POLLIN/POLLOUT) or the
// deadline passes, in which case it raises TimeoutError("timed out") as socket does.
// EINTR runs the signal handlers and waits again for the time that remains.
void wait_ready(int fd, short events, std::chrono::steady_clock::time_point deadline);

// Runs `attempt` (a callable returning result<T>, called without the GIL and with
// io_flags::no_retry_eintr) until it gives something other than EINTR or EAGAIN:
//  - EINTR: re-acquire the GIL, run the signal handlers (an exception one raises
//    propagates and ends the call), retry. This is PEP 475.
//  - EAGAIN, if the call may block (!dontwait) and `owner` is a socket object with a
//    timeout: wait for readiness (`events`) up to that timeout, then retry; raise
//    TimeoutError when it runs out. Python sockets with a timeout are non-blocking
//    underneath, so without this their timeout would surface as BlockingIOError.
//    Otherwise EAGAIN is returned (and raised as BlockingIOError by the caller).
// `attempt` must leave its outputs untouched when it fails, so that retrying is safe.
template <class Attempt>
auto call_blocking(py::handle owner, int fd, short events, bool dontwait, Attempt&& attempt)
    -> decltype(attempt()) {
  std::optional<std::chrono::steady_clock::time_point> deadline;
  for (;;) {
    auto outcome = [&] {
      py::gil_scoped_release nogil;
      return attempt();
    }();
    if (outcome.ok()) return outcome;
    const int err = outcome.error().value();
    if (err == EINTR) {
      run_signal_handlers();
      continue;
    }
    if ((err == EAGAIN || err == EWOULDBLOCK) && !dontwait) {
      if (!deadline) {
        auto timeout = socket_timeout(owner);
        if (!timeout) return outcome;
        deadline = std::chrono::steady_clock::now() +
                   std::chrono::duration_cast<std::chrono::steady_clock::duration>(*timeout);
      }
      wait_ready(fd, events, *deadline);
      continue;
    }
    return outcome;
  }
}

}  // namespace fdbroker::python
