#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# Scale figures for fdbrokerd (issue 9): puts/s, get p50/p99 and a full paginated
# `list` at each size (default 1k, 10k, 100k entries), N idle connections each
# answered (default 10k), and the broker's RSS per entry and per connection. Every
# speed figure is also a ratio to a baseline measured in the same repeat: puts/s and
# gets against baseline_server (the least a server can do per request), get latency
# at each size against the same broker at the first size, hellos against the
# baseline. Prints the table (report_scale.py); see bench/README.md, "Scale".
#
# The descriptor limit is raised as far as the machine allows (hard limit up to
# /proc/sys/fs/nr_open, which needs CAP_SYS_RESOURCE); a size that does not fit in
# the broker's resulting limits.max_fds is replaced by the largest multiple of 1000
# that does, and the script says so.
#
# Usage: bench/broker/scale.sh [BUILD_DIR] [options]
#   BUILD_DIR             a build with FDBROKER_BUILD_BENCH=ON (default: build/release)
#   --repeats N           fresh brokers and runs per figure (default 3); medians reported
#   --sizes "1000 10000 100000"   entry counts (cumulative: one broker filled step by step)
#   --connections N       idle connections (default 10000)
#   --put-clients C       connections putting at once (default 8)
#   --chunk K             puts per chunk (default 250): broker and baseline alternate
#   --lists L             full listings per size and repeat (default 9)
#   --get-clients C       connections getting at once (default 1: latency without queueing)
#   --duration S          measured seconds per get run (default 2, plus 0.5 s warm-up)
#   --log-level L         the broker's log_level (default info, as shipped)
#   --keep FILE           also keep the raw JSON lines in FILE
# Exit status 0, or 1 if a step failed its checks (the report says which).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=bench/broker/common.sh
source "$here/common.sh"
build=$(cd "$here/../.." && pwd)/build/release
repeats=3 sizes="1000 10000 100000" connections=10000 put_clients=8 get_clients=1
duration=2 log_level=info keep= chunk=250 lists=9
bench_options "repeats sizes connections put_clients chunk lists get_clients duration log_level keep" "" "$@"

scale=$build/bench/broker/scale
baseline_server=$build/bench/broker/baseline_server
fdbrokerd=$build/daemon/fdbrokerd
bench_need "build with the release preset" "$scale" "$baseline_server" "$fdbrokerd"

# Raise the descriptor limit as far as it goes. Children (both servers and the
# clients) inherit it; fdbrokerd raises its soft limit to the hard one itself.
hard_before=$(ulimit -Hn) nr_open=$(cat /proc/sys/fs/nr_open)
ulimit -Hn "$nr_open" 2>/dev/null || true
ulimit -Sn "$(ulimit -Hn)"
nofile=$(ulimit -Hn)
cap_sys_resource=no
(( ($(awk '/^CapEff/ { print "0x" $2 }' /proc/self/status) >> 24) & 1 )) && cap_sys_resource=yes

bench_wait_tries=200  # 10 s for a server to appear, as scale.sh always waited
bench_tmp fdbroker-scale.XXXXXX
bench_start "$tmp/baseline.sock" "" "$baseline_server" --socket "$tmp/baseline.sock"
baseline_pid=$started_pid

# Two configurations: one for entries (few connections, so that the descriptor
# table is theirs: limits.max_fds = RLIMIT_NOFILE - max_connections - 317) and one
# for connections (max_connections is capped at half of RLIMIT_NOFILE). Quotas are
# lifted (all the clients are one uid); the rest is as shipped.
max_connections=$(( connections < nofile / 2 ? connections : nofile / 2 ))
write_config() {  # file max_connections
  cat >"$1" <<EOF
{ "log_level": "$log_level",
  "limits": { "max_connections": $2, "max_connections_per_uid": 0,
              "max_entries_per_uid": 100000000, "max_fds_per_uid": 100000000 } }
EOF
}
write_config "$tmp/entries.json" 64
write_config "$tmp/connections.json" "$max_connections"

# bench_cleanup() (common.sh) stops the baseline and the running broker; a stopped broker's PID is
# forgotten at once, so that nothing is ever sent to a PID reused by another process.
broker_pid=
start_broker() {  # config
  rm -f "$tmp/broker.sock"
  pids=("$baseline_pid")
  bench_start "$tmp/broker.sock" "$tmp/broker.log" "$fdbrokerd" --socket "$tmp/broker.sock" --config "$1"
  broker_pid=$started_pid
}
stop_broker() {
  kill -TERM "$broker_pid"
  local status=0
  wait "$broker_pid" || status=$?
  pids=("$baseline_pid")
  (( status == 0 )) || { echo "scale.sh: broker $broker_pid exited with $status" >&2; exit 1; }
}

# The sizes that fit: read the broker's own limit.
start_broker "$tmp/entries.json"
fds_limit=$("$scale" stats --socket "$tmp/broker.sock" |
  /usr/bin/python3 -c 'import json, sys; print(json.load(sys.stdin)["fds_limit"])')
stop_broker
fitted=() notes=()
for n in $sizes; do
  if (( n > fds_limit )); then
    m=$(( fds_limit / 1000 * 1000 ))
    notes+=("$n entries do not fit: limits.max_fds is $fds_limit; measured $m instead")
    n=$m
  fi
  fitted+=("$n")
done
if (( max_connections < connections )); then
  notes+=("$connections connections do not fit: max_connections is capped at half of RLIMIT_NOFILE; measured $max_connections")
fi

meta() { echo "{\"meta\":\"$*\"}" >>"$tmp/results.jsonl"; }  # printed by the report
meta "$(date -u '+%F %T UTC') on $(nproc) cores, Linux $(uname -r); load: $(cut -d' ' -f1-3 /proc/loadavg)"
meta "RLIMIT_NOFILE hard: $hard_before before, $nofile now (fs.nr_open $nr_open, CAP_SYS_RESOURCE: $cap_sys_resource); broker limits.max_fds $fds_limit with max_connections 64"
for note in "${notes[@]}"; do meta "$note"; done
meta "build: $build; $repeats repeats; puts by $put_clients connections in chunks of $chunk, gets by $get_clients for ${duration}s, $lists lists per size; log_level $log_level"

# Each step's JSON line, tagged with its repeat. A step that failed its checks
# (errors, entries missing from the list, hellos unanswered) still printed its line:
# the run goes on and the failure is noted in the report.
failed=0
run() {  # repeat size step args...
  local r=$1 n=$2; shift 2
  if ! "$scale" "$@" | sed "s/^{/{\"repeat\":$r,\"size\":$n,/" >>"$tmp/results.jsonl"; then
    meta "FAILED in repeat $r at size $n: scale $1"
    failed=1
  fi
}
for ((r = 1; r <= repeats; r++)); do
  start_broker "$tmp/entries.json"
  prev=0
  for n in "${fitted[@]}"; do
    (( n > prev )) || continue
    # The puts in chunks, each followed by the same puts sent to the baseline: the
    # ratio is taken chunk by chunk, each pair seeing the same moment of the machine.
    for ((from = prev; from < n; from += chunk)); do
      to=$(( from + chunk < n ? from + chunk : n ))
      run "$r" "$n" put --socket "$tmp/broker.sock" --label broker --server-pid "$broker_pid" \
        --from "$from" --to "$to" --clients "$put_clients"
      run "$r" "$n" put --socket "$tmp/baseline.sock" --label baseline --server-pid "$baseline_pid" \
        --from "$from" --to "$to" --clients "$put_clients"
    done
    run "$r" "$n" get --socket "$tmp/broker.sock" --label broker --server-pid "$broker_pid" \
      --entries "$n" --clients "$get_clients" --duration "$duration" --seed "$r"
    run "$r" "$n" get --socket "$tmp/baseline.sock" --label baseline --server-pid "$baseline_pid" \
      --entries "$n" --clients "$get_clients" --duration "$duration" --seed "$r"
    for ((i = 0; i < lists; i++)); do
      run "$r" "$n" list --socket "$tmp/broker.sock" --label broker --server-pid "$broker_pid" --expect "$n"
    done
    prev=$n
  done
  stop_broker

  start_broker "$tmp/connections.json"
  run "$r" 0 idle --socket "$tmp/broker.sock" --label broker --server-pid "$broker_pid" \
    --clients "$max_connections"
  stop_broker
  run "$r" 0 idle --socket "$tmp/baseline.sock" --label baseline --server-pid "$baseline_pid" \
    --clients "$max_connections"
  meta "repeat $r of $repeats done $(date -u '+%T UTC'); load: $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "scale.sh: repeat $r of $repeats done" >&2
done
meta "end $(date -u '+%T UTC'); load: $(cut -d' ' -f1-3 /proc/loadavg)"

echo
/usr/bin/python3 "$here/report_scale.py" "$tmp/results.jsonl"
if grep -E " (error|critical): " "$tmp/broker.log" | tail -5; then
  echo "scale.sh: the broker logged errors (above)" >&2
fi
[[ -n $keep ]] && cp "$tmp/results.jsonl" "$keep"
exit "$failed"
