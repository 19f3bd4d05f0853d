#!/bin/sh
# SPDX-License-Identifier: LGPL-2.1-or-later
# Builds the release preset and runs the libfdbroker benchmarks: the C++ ping-pong
# (lib vs raw sendmsg/recvmsg) and the Python ping-pong (fdbroker vs
# socket.send_fds/recv_fds vs raw C), printing medians and ratios. See bench/README.md.
#
#   bench/run_lib.sh [BUILD_DIR]        default build/release
#   REPS=20 MIN_TIME=0.2 ROUNDS=41 bench/run_lib.sh build/h-bench
#
# Exit status: 0 if every target was met, 1 if one was missed (the figures are
# printed either way), 2 if something failed to build or run.
set -eu

src=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$src/build/release}
reps=${REPS:-15}            # Google Benchmark repetitions per benchmark
min_time=${MIN_TIME:-0.2}   # seconds per repetition
rounds=${ROUNDS:-41}        # Python rounds (one sample of each implementation)
python=/usr/bin/python3     # Debian's: the one the binding is built for
out=$build/bench/results
mkdir -p "$out"

if [ ! -f "$build/CMakeCache.txt" ]; then
  cmake -S "$src" -B "$build" --preset release
fi
cmake --build "$build" -j2 --target scm_rights_bench _fdbroker_bench_raw _fdbroker || exit 2

echo "machine: $(nproc) cpus; $(uptime)"
echo

status=0
"$build/bench/scm_rights_bench" \
  --benchmark_repetitions="$reps" --benchmark_min_time="$min_time" \
  --benchmark_enable_random_interleaving=true \
  --benchmark_out="$out/scm_rights_bench.json" --benchmark_out_format=json \
  >"$out/scm_rights_bench.txt" || exit 2
"$python" "$src/bench/pingpong_ratios.py" "$out/scm_rights_bench.json" || status=1
echo

PYTHONPATH=$build/python:$build/bench/python \
  "$python" "$src/bench/python_pingpong.py" --rounds "$rounds" \
  --json "$out/python_pingpong.json" || status=$(( $? == 1 ? 1 : 2 ))

echo
echo "raw results: $out"
exit "$status"
