// SPDX-License-Identifier: LGPL-2.1-or-later
// _fdbroker_bench_raw: the raw C ping-pong (raw_pingpong.hpp) callable from Python,
// so that python_pingpong.py can time "no Python in between" with the same clock,
// the same sockets and the same descriptors as the Python variants. One call runs
// the whole loop in C++.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstddef>
#include <string>
#include <vector>

#include "raw_pingpong.hpp"

namespace py = pybind11;

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
}
