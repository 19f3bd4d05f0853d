#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# Measures fdbrokerd against the minimal baseline server in the same run: starts both
# on temporary sockets, puts the entry `bench` (holding /dev/null) into the broker,
# then runs loadgen at each point against each server, alternating which goes first,
# several times, and prints the table of medians (report.py). Stops only the servers
# it started, by PID.
#
# Usage: bench/broker/run.sh [BUILD_DIR] [options]
#   BUILD_DIR            a build with FDBROKER_BUILD_BENCH=ON (default: build/release;
#                        `cmake --preset release` makes one)
#   --repeats N          runs per point and server (default 3)
#   --duration S         measured seconds per run (default 3)
#   --warmup S           unmeasured seconds before each run (default 1)
#   --clients "1 8 64"   kept-open connection counts
#   --connect-clients N  concurrency of the connect-get-close point (default 8)
#   --threads T          loadgen threads (default 1; see loadgen.cpp for why)
#   --pin                server on CPU 0, loadgen on CPU 1 (taskset); off by default
#                        because on a shared machine the other helpers' work moves
#   --log-level L        the broker's log_level (default info, the configured default:
#                        the broker is measured as it runs out of the box)
#   --baseline-only      do not start fdbrokerd
#   --also LABEL=PATH    also measure another fdbrokerd binary under LABEL (repeatable;
#                        to A/B a change to the daemon in the same run)
#   --syscalls           afterwards, count each server's system calls per get with
#                        `perf stat` tracepoints (needs perf): exact, whatever the noise
#   --keep FILE          also keep the raw JSON lines in FILE
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=bench/broker/common.sh
source "$here/common.sh"
build=$(cd "$here/../.." && pwd)/build/release
repeats=3 duration=3 warmup=1 clients="1 8 64" connect_clients=8 threads=1
pin=0 baseline_only=0 keep= log_level=info also=() syscalls=0
bench_options "repeats duration warmup clients connect_clients threads log_level also keep" "pin baseline_only syscalls" "$@"

loadgen=$build/bench/broker/loadgen
baseline_server=$build/bench/broker/baseline_server
fdbrokerd=$build/daemon/fdbrokerd
bench_need "build with FDBROKER_BUILD_BENCH=ON" "$loadgen" "$baseline_server"
if [[ $baseline_only == 0 && ! -x $fdbrokerd ]]; then
  echo "run.sh: $fdbrokerd missing (use --baseline-only to measure the baseline alone)" >&2
  exit 111
fi

server_cpu= loadgen_cpu=
if [[ $pin == 1 ]]; then server_cpu="taskset -c 0" loadgen_cpu="taskset -c 1"; fi

bench_tmp fdbroker-bench.XXXXXX

declare -A socket pid
socket[baseline]=$tmp/baseline.sock
# shellcheck disable=SC2086 # $server_cpu: empty or "taskset -c 0"
bench_start "${socket[baseline]}" "" $server_cpu "$baseline_server" --socket "${socket[baseline]}"
pid[baseline]=$started_pid
labels=(baseline)

# Built-in defaults (only root and our own uid may use it) but for the log level.
echo "{ \"log_level\": \"$log_level\" }" >"$tmp/broker.json"
start_broker() {  # label binary
  socket[$1]=$tmp/$1.sock
  # shellcheck disable=SC2086 # $server_cpu: empty or "taskset -c 0"
  bench_start "${socket[$1]}" "$tmp/$1.log" $server_cpu "$2" --socket "${socket[$1]}" \
    --config "$tmp/broker.json"
  pid[$1]=$started_pid
  "$loadgen" --socket "${socket[$1]}" --put bench --fd-path /dev/null >/dev/null ||
    { echo "run.sh: put of 'bench' into $1 failed" >&2; exit 1; }
  labels+=("$1")
}
brokers=()
if [[ $baseline_only == 0 ]]; then start_broker broker "$fdbrokerd"; brokers+=(broker); fi
for spec in "${also[@]}"; do start_broker "${spec%%=*}" "${spec#*=}"; brokers+=("${spec%%=*}"); done

echo "# $(date -u '+%F %T UTC') on $(nproc) cores; load: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "# build: $build; $repeats runs x ${duration}s (+${warmup}s warm-up) per point and server;" \
  "loadgen threads: $threads; pinned: $([[ $pin == 1 ]] && echo yes || echo no)"
for label in "${labels[@]}"; do
  echo "# $label reply: $("$loadgen" --socket "${socket[$label]}" --show)"
done
declare -A fds_before
for label in "${brokers[@]}"; do fds_before[$label]=$(bench_fd_count "${pid[$label]}"); done

results=$tmp/results.jsonl
points=()
for c in $clients; do points+=("keepalive $c"); done
points+=("connect $connect_clients")
for ((r = 1; r <= repeats; r++)); do
  # Rotate who goes first, so that a slow drift of the machine favours no server.
  bench_rotate "$r" "${labels[@]}"
  for point in "${points[@]}"; do
    read -r mode n <<<"$point"
    for label in "${order[@]}"; do
      $loadgen_cpu "$loadgen" --socket "${socket[$label]}" --label "$label" --mode "$mode" \
        --clients "$n" --threads "$threads" --warmup "$warmup" --duration "$duration" \
        --server-pid "${pid[$label]}" >>"$results" ||
        echo "run.sh: $label $mode/$n had errors" >&2
    done
  done
  echo "# run $r of $repeats done; load: $(cut -d' ' -f1-3 /proc/loadavg)" >&2
done

echo
/usr/bin/python3 "$here/report.py" "$results"
# System calls per get: a count, not a time, so the shared machine cannot blur it.
# Each server's calls during one short run, divided by its sendmsg calls (one per reply).
if [[ $syscalls == 1 ]]; then
  events=raw_syscalls:sys_enter
  for call in recvmsg sendmsg epoll_wait epoll_ctl accept4 getsockopt close; do
    events+=,syscalls:sys_enter_$call
  done
  echo
  echo "| mode | clients | server | syscalls/get | recvmsg | sendmsg | epoll_wait | epoll_ctl | accept4 | getsockopt | close |"
  echo "|---|---|---|---|---|---|---|---|---|---|---|"
  for point in "${points[@]}"; do
    read -r mode n <<<"$point"
    for label in "${labels[@]}"; do
      perf stat -x, -e "$events" -p "${pid[$label]}" -o "$tmp/perf.csv" -- sleep 1.3 &
      perf_pid=$!
      sleep 0.2  # perf attaches
      "$loadgen" --socket "${socket[$label]}" --label "$label" --mode "$mode" --clients "$n" \
        --warmup 0 --duration 1 >/dev/null || true
      wait "$perf_pid"
      awk -F, -v m="$mode" -v n="$n" -v l="$label" '
        /sys_enter/ { split($3, e, ":"); sub("sys_enter_", "", e[2]); c[e[2]] = $1 }
        END {
          g = c["sendmsg"] + 0
          if (g == 0) { printf "| %s | %s | %s | perf counted nothing: rerun |\n", m, n, l; exit }
          printf "| %s | %s | %s | %.2f", m, n, l, c["sys_enter"] / g
          split("recvmsg sendmsg epoll_wait epoll_ctl accept4 getsockopt close", k, " ")
          for (i = 1; i <= 7; i++) printf " | %.2f", c[k[i]] / g
          print " |"
        }' "$tmp/perf.csv"
    done
  done
fi
sleep 0.5  # let the brokers see the last connections close
for label in "${brokers[@]}"; do
  bench_server_end "$label" "${pid[$label]}" "${fds_before[$label]} after the put" "$tmp/$label.log"
done
echo "# end $(date -u '+%T UTC'); load: $(cut -d' ' -f1-3 /proc/loadavg)"
[[ -n $keep ]] && cp "$results" "$keep"
exit 0
