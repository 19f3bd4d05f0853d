// SPDX-License-Identifier: LGPL-2.1-or-later
#include "fd_passing.hpp"

#include <fdbroker/error.hpp>
#include <fdbroker/scm_rights.hpp>
#include <fdbroker/unique_fd.hpp>

#include <poll.h>

#include <array>
#include <cerrno>
#include <iterator>
#include <system_error>
#include <vector>

#include "binding_support.hpp"

namespace fdbroker::python {

namespace {

// Set once at import by add_recv_result_type(); the module keeps the type alive.
PyTypeObject* recv_result_type = nullptr;
// RecvResult's fields in all (n_fields) and those in the tuple (n_sequence_fields).
constexpr Py_ssize_t recv_result_size = 4;
constexpr Py_ssize_t recv_result_visible_size = 2;
// Whether the type's layout is the one new_recv_result() mirrors (checked at import).
bool recv_result_layout_known = false;

PyStructSequence_Field recv_result_fields[] = {
    {"msg", "the payload bytes (b'' at end of stream)"},
    {"fds", "the received file descriptors, new and owned by the caller, close-on-exec"},
    {"msg_truncated",
     "True if a SOCK_DGRAM/SOCK_SEQPACKET message was longer than the buffer (MSG_TRUNC): "
     "the rest of it is lost"},
    {"fds_truncated",
     "True if descriptors were dropped by the kernel (MSG_CTRUNC); only seen with "
     "accept_truncated=True, otherwise the call raises EMSGSIZE"},
    {nullptr, nullptr}};

static_assert(std::size(recv_result_fields) == recv_result_size + 1);

PyStructSequence_Desc recv_result_desc = {
    "fdbroker.RecvResult",
    "RecvResult(msg, fds): what recvfds() received.\n\n"
    "A tuple of two, so `msg, fds = recvfds(...)` works; msg_truncated and fds_truncated\n"
    "are extra attributes, as with os.stat_result. The fds belong to the caller.",
    recv_result_fields, recv_result_visible_size};

// A new RecvResult with every field set (references stolen), or nullptr with an
// exception set. PyStructSequence_New() looks both sizes up in the type's __dict__ by
// name, each time: a third of a receive's own cost. On the CPython versions whose
// struct sequences this mirrors (3.8 to 3.13: a tuple of n_fields items whose visible
// size is n_sequence_fields, allocated and not tracked by PyStructSequence_New) the
// object is built the same way from the sizes known here; elsewhere, by the API.
PyObject* new_recv_result(PyObject* msg, PyObject* fds, bool msg_truncated, bool fds_truncated) {
  PyObject* const fields[recv_result_size] = {msg, fds, PyBool_FromLong(msg_truncated),
                                              PyBool_FromLong(fds_truncated)};
  PyObject* result = nullptr;
#if PY_VERSION_HEX >= 0x03080000 && PY_VERSION_HEX < 0x030E0000
  if (recv_result_layout_known) {
    PyTupleObject* tuple = PyObject_GC_NewVar(PyTupleObject, recv_result_type, recv_result_size);
    if (tuple != nullptr) Py_SET_SIZE(tuple, recv_result_visible_size);
    result = reinterpret_cast<PyObject*>(tuple);
  } else
#endif
  {
    result = PyStructSequence_New(recv_result_type);
  }
  if (result == nullptr) {
    for (PyObject* field : fields) Py_DECREF(field);
    return nullptr;
  }
  // PyStructSequence_SetItem's own body, which takes any index below n_fields.
  for (Py_ssize_t i = 0; i < recv_result_size; ++i) {
    reinterpret_cast<PyTupleObject*>(result)->ob_item[i] = fields[i];
  }
  return result;
}

// A contiguous read-only view of a bytes-like object, released on scope exit. A
// bytes object, immutable and the usual case, is read directly: the buffer
// protocol's acquire and release cost more than the rest of the conversion.
class byte_view {
 public:
  explicit byte_view(py::handle obj) {
    if (PyBytes_CheckExact(obj.ptr())) {
      data_ = PyBytes_AS_STRING(obj.ptr());
      size_ = static_cast<std::size_t>(PyBytes_GET_SIZE(obj.ptr()));
      return;
    }
    if (PyObject_GetBuffer(obj.ptr(), &view_, PyBUF_SIMPLE) != 0) throw py::error_already_set();
    data_ = view_.buf;
    size_ = static_cast<std::size_t>(view_.len);
  }
  byte_view(const byte_view&) = delete;
  byte_view& operator=(const byte_view&) = delete;
  ~byte_view() {
    if (view_.obj != nullptr) PyBuffer_Release(&view_);
  }
  [[nodiscard]] const void* data() const noexcept { return data_; }
  [[nodiscard]] std::size_t size() const noexcept { return size_; }

 private:
  Py_buffer view_{};  // view_.obj is set only when the buffer protocol was used
  const void* data_ = nullptr;
  std::size_t size_ = 0;
};

// The vector that owns the descriptors of one receive until they are handed to
// Python. Allocating and freeing one per message is a sixth of a receive's own
// cost, so each thread reuses one; a receive nested in another (from a signal
// handler run while the outer one waits) gets a vector of its own.
class received_fds {
 public:
  received_fds() : spare_(&thread_spare) {
    if (spare_->in_use)
      spare_ = nullptr;
    else
      spare_->in_use = true;
  }
  received_fds(const received_fds&) = delete;
  received_fds& operator=(const received_fds&) = delete;
  ~received_fds() {
    get().clear();  // closes any still owned: a receive that failed part-way
    if (spare_ != nullptr) spare_->in_use = false;
  }
  std::vector<unique_fd>& get() noexcept { return spare_ != nullptr ? spare_->fds : own_; }

 private:
  struct spare {
    std::vector<unique_fd> fds;
    bool in_use = false;
  };
  static thread_local spare thread_spare;
  spare* spare_;  // nullptr: this receive uses own_
  std::vector<unique_fd> own_;
};

thread_local received_fds::spare received_fds::thread_spare;

// The descriptors to send: on the stack up to the kernel's limit per message, which
// spares an allocation per call; on the heap beyond it (try_sendfds refuses those
// with E2BIG, but only after every element has been checked, as before).
class fd_numbers {
 public:
  void push_back(int fd) {
    if (size_ < on_stack_.size()) {
      on_stack_[size_] = fd;
    } else {
      if (on_heap_.empty()) on_heap_.assign(on_stack_.begin(), on_stack_.end());
      on_heap_.push_back(fd);
    }
    ++size_;
  }
  [[nodiscard]] const int* data() const noexcept {
    return on_heap_.empty() ? on_stack_.data() : on_heap_.data();
  }
  [[nodiscard]] std::size_t size() const noexcept { return size_; }

 private:
  std::array<int, max_fds_per_message> on_stack_;
  std::vector<int> on_heap_;
  std::size_t size_ = 0;
};

void append_fds_of(py::handle items, fd_numbers& ret_fds) {
  if (items.is_none()) return;
  py::object seq = py::reinterpret_steal<py::object>(
      PySequence_Fast(items.ptr(), "fds must be an iterable of file descriptors"));
  if (!seq) throw py::error_already_set();
  // fileno() is Python code that could change a list under us: re-read the size and
  // hold each item while converting it.
  for (Py_ssize_t i = 0; i < PySequence_Fast_GET_SIZE(seq.ptr()); ++i) {
    PyObject* item = PySequence_Fast_GET_ITEM(seq.ptr(), i);
    if (PyLong_CheckExact(item)) {  // cannot run Python code: no reference needed
      ret_fds.push_back(fd_of_fast(item));
    } else {
      ret_fds.push_back(fd_of(py::reinterpret_borrow<py::object>(item)));
    }
  }
}

// Payloads up to this size are received into a stack buffer (see receive_message).
constexpr Py_ssize_t stack_buffer_size = 4096;

}  // namespace

void add_recv_result_type(py::module_& m) {
  PyTypeObject* type = PyStructSequence_NewType(&recv_result_desc);
  if (type == nullptr) throw py::error_already_set();
  recv_result_type = type;
  // new_recv_result() builds instances itself only if they are laid out as it expects.
  recv_result_layout_known =
      type->tp_itemsize == sizeof(PyObject*) &&
      type->tp_basicsize + recv_result_size * type->tp_itemsize ==
          static_cast<Py_ssize_t>(sizeof(PyTupleObject) +
                                  (recv_result_size - 1) * sizeof(PyObject*));
  // The module holds the reference from here on; recv_result_type borrows it.
  m.add_object("RecvResult", py::reinterpret_steal<py::object>(reinterpret_cast<PyObject*>(type)));
}

std::size_t send_message(py::handle sock, py::handle payload, py::handle fds, bool dontwait) {
  const int fd = fd_of(sock);
  const byte_view bytes(payload);
  fd_numbers to_send;
  append_fds_of(fds, to_send);
  const io_flags flags =
      io_flags::no_retry_eintr | (dontwait ? io_flags::dontwait : io_flags::none);
  const auto send_blocking = [&] {
    return call_blocking(sock, fd, POLLOUT, dontwait, [&] {
      return try_sendfds(fd, bytes.data(), bytes.size(), to_send.data(), to_send.size(), flags);
    });
  };

  // The GIL is released around every call that can block. MSG_DONTWAIT cannot, so
  // the first attempt keeps the GIL: when the socket has room, which is nearly always,
  // the message leaves without the cost of releasing and taking the GIL again.
  auto sent = try_sendfds(fd, bytes.data(), bytes.size(), to_send.data(), to_send.size(),
                          flags | io_flags::dontwait);
  if (!sent) {
    const int err = sent.error().value();
    // Nothing was sent: do what the caller asked for (wait, time out, run signal
    // handlers) from the start.
    if (err == EINTR || (!dontwait && (err == EAGAIN || err == EWOULDBLOCK))) {
      sent = send_blocking();
    }
    if (!sent) throw std::system_error(sent.error(), "sendfds");
    return *sent;
  }
  if (*sent < bytes.size() && !dontwait) {
    // Only a stream socket sends part of a message, and MSG_DONTWAIT made it stop
    // where a blocking send would have gone on. Go on as the kernel would: send the
    // rest (the descriptors went with the first byte), blocking, without the GIL, and
    // report what was sent in all, the part alone if the rest fails (a blocking
    // sendmsg interrupted or failing midway reports its partial count the same way).
    const auto* rest = static_cast<const char*>(bytes.data()) + *sent;
    const std::size_t rest_size = bytes.size() - *sent;
    result<std::size_t> more = [&] {
      py::gil_scoped_release nogil;
      return try_sendfds(fd, rest, rest_size, nullptr, 0, io_flags::no_retry_eintr);
    }();
    if (more) return *sent + *more;
  }
  return *sent;
}

py::object receive_message(py::handle sock, Py_ssize_t bufsize, Py_ssize_t numfds,
                           bool accept_truncated, bool dontwait, fd_sequence kind) {
  if (bufsize < 0) throw py::value_error("negative buffer size in recvfds");
  if (numfds < 0) throw py::value_error("negative numfds in recvfds");
  const int fd = fd_of(sock);
  io_flags flags = io_flags::no_retry_eintr;
  if (dontwait) flags = flags | io_flags::dontwait;
  if (accept_truncated) flags = flags | io_flags::accept_truncated_fds;

  // A small payload is received on the stack and copied into a bytes object of the
  // size that arrived, which costs less than allocating bufsize and shrinking it.
  // A larger one goes straight into a new bytes object: nobody else can see it yet,
  // so the kernel may fill it while the GIL is released.
  char stack_buffer[stack_buffer_size];
  py::object payload;
  char* buffer = stack_buffer;
  if (bufsize > stack_buffer_size) {
    payload = steal_or_throw(PyBytes_FromStringAndSize(nullptr, bufsize));
    buffer = PyBytes_AS_STRING(payload.ptr());
  }
  received_fds owner;
  std::vector<unique_fd>& fds = owner.get();
  const auto receive = [&](io_flags with) {
    return try_recvfds_into(fd, buffer, static_cast<std::size_t>(bufsize), fds,
                            static_cast<std::size_t>(numfds), with);
  };

  // The GIL is released around every call that can block. MSG_DONTWAIT cannot, so
  // the first attempt keeps the GIL: when a message is already waiting, it is
  // received without the cost of releasing and taking the GIL again, and the result
  // is the same as a blocking call's (both return what is there). Only when nothing
  // is there does the call release the GIL and wait as the caller asked. (One
  // difference, which nothing here relies on: SO_RCVLOWAT on a SOCK_STREAM socket is
  // not waited for when some bytes are already there, as with a non-blocking socket.)
  auto info = receive(flags | io_flags::dontwait);
  if (!info) {
    const int err = info.error().value();
    if (err == EINTR || (!dontwait && (err == EAGAIN || err == EWOULDBLOCK))) {
      info = call_blocking(sock, fd, POLLIN, dontwait, [&] { return receive(flags); });
    }
    if (!info) throw std::system_error(info.error(), "recvfds");
  }

  // From here `fds` owns what arrived: any exception below closes all of it.
  const auto size = static_cast<Py_ssize_t>(info->size);
  if (!payload) {
    payload = steal_or_throw(PyBytes_FromStringAndSize(stack_buffer, size));
  } else if (size != bufsize) {
    PyObject* resized = payload.release().ptr();
    if (_PyBytes_Resize(&resized, size) != 0) throw py::error_already_set();
    payload = py::reinterpret_steal<py::object>(resized);
  }
  const auto count = static_cast<Py_ssize_t>(fds.size());
  py::object fd_numbers =
      steal_or_throw(kind == fd_sequence::list ? PyList_New(count) : PyTuple_New(count));
  for (Py_ssize_t i = 0; i < count; ++i) {
    PyObject* number = PyLong_FromLong(fds[static_cast<std::size_t>(i)].get());
    if (number == nullptr) throw py::error_already_set();
    if (kind == fd_sequence::list) {
      PyList_SET_ITEM(fd_numbers.ptr(), i, number);
    } else {
      PyTuple_SET_ITEM(fd_numbers.ptr(), i, number);
    }
  }
  py::object result =
      steal_or_throw(new_recv_result(payload.release().ptr(), fd_numbers.release().ptr(),
                                     info->payload_truncated, info->fds_truncated));

  // Nothing can fail any more: the caller owns the descriptors now.
  for (auto& received : fds) static_cast<void>(received.release());
  return result;
}

}  // namespace fdbroker::python
