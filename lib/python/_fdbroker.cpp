// SPDX-License-Identifier: LGPL-2.1-or-later
// The private extension module fdbroker._fdbroker: a thin binding of libfdbroker.
// The public surface, with the Pythonic wrappers, is fdbroker/__init__.py.
#include <fdbroker/version.hpp>

#include <pybind11/pybind11.h>

#include "binding_support.hpp"
#include "bindings.hpp"

PYBIND11_MODULE(_fdbroker, m) {
  namespace fp = fdbroker::python;
  // Our docstrings carry their own "name(signature)\n--\n\n" header, which CPython
  // turns into __text_signature__; pybind11's generated one would come first.
  pybind11::options options;
  options.disable_function_signatures();

  m.doc() = "Private binding of libfdbroker; import fdbroker instead.";
  m.attr("__version__") = FDBROKER_VERSION_STRING;
  fp::register_error_translator();
  fp::bind_scm_rights(m);
  fp::bind_fdsend(m);
  fp::bind_client_types(m);
  fp::bind_client(m);
  fp::bind_handoff(m);
}
