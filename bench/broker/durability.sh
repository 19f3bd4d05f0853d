#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# What durable acknowledgements cost (docs/protocol.md, "When put, take and delete
# are answered"): put/delete throughput of fdbrokerd with systemd's fd store off and
# on, in the same run. "on" is FDBROKER_FDSTORE=1 with a notify socket that receives
# and discards (durability_load --sink, standing in for systemd), so every put and
# delete waits for the state memfd's sd_notify. Medians over the repeats, and each
# server's ratio to "off". Stops only the processes it started, by PID.
#
# Usage: bench/broker/durability.sh [BUILD_DIR] [options]
#   BUILD_DIR          a build with FDBROKER_BUILD_BENCH=ON (default: build/release)
#   --repeats N        runs per point and server (default 3)
#   --duration S       measured seconds per run (default 3)
#   --clients "1 8 64" kept-open connection counts
#   --log-level L      the brokers' log_level (default warning: put and delete log at
#                      info, which would weigh on both sides alike and hide the cost)
#   --also LABEL=PATH  also measure another fdbrokerd binary with the fd store on
#                      (e.g. one that answers before the state is written)
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=bench/broker/common.sh
source "$here/common.sh"
build=$(cd "$here/../.." && pwd)/build/release
repeats=3 duration=3 clients="1 8 64" log_level=warning also=()
bench_options "repeats duration clients log_level also" "" "$@"

load=$build/bench/broker/durability_load
fdbrokerd=$build/daemon/fdbrokerd
bench_need "build with FDBROKER_BUILD_BENCH=ON" "$load" "$fdbrokerd"

bench_tmp fdbroker-durability.XXXXXX
bench_start "$tmp/notify.sock" "" "$load" --sink "$tmp/notify.sock"

echo "{ \"log_level\": \"$log_level\" }" >"$tmp/broker.json"
declare -A socket pid
labels=()
start_broker() {  # label binary fdstore(0|1)
  local env=(env -u NOTIFY_SOCKET FDBROKER_FDSTORE=0)
  [[ $3 == 1 ]] && env=(env NOTIFY_SOCKET="$tmp/notify.sock" FDBROKER_FDSTORE=1)
  socket[$1]=$tmp/$1.sock
  bench_start "${socket[$1]}" "$tmp/$1.log" \
    "${env[@]}" "$2" --socket "${socket[$1]}" --config "$tmp/broker.json"
  pid[$1]=$started_pid
  labels+=("$1")
}
start_broker off "$fdbrokerd" 0
start_broker on "$fdbrokerd" 1
for spec in "${also[@]}"; do start_broker "${spec%%=*}" "${spec#*=}" 1; done

echo "# $(date -u '+%F %T UTC') on $(nproc) cores; load: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "# build: $build; $repeats runs x ${duration}s (+1s warm-up) per point and server; log_level $log_level"
declare -A fds_before
for label in "${labels[@]}"; do fds_before[$label]=$(bench_fd_count "${pid[$label]}"); done
results=$tmp/results.jsonl
for ((r = 1; r <= repeats; r++)); do
  bench_rotate "$r" "${labels[@]}"
  for n in $clients; do
    for label in "${order[@]}"; do
      "$load" --socket "${socket[$label]}" --label "$label" --clients "$n" --warmup 1 \
        --duration "$duration" >>"$results" || echo "durability.sh: $label/$n had errors" >&2
    done
  done
  echo "# run $r of $repeats done; load: $(cut -d' ' -f1-3 /proc/loadavg)" >&2
done

/usr/bin/python3 - "$results" <<'PY'
import collections, json, statistics, sys
runs = collections.defaultdict(list)
for line in open(sys.argv[1]):
    r = json.loads(line)
    runs[(r["clients"], r["label"])].append(r)
labels = list(dict.fromkeys(label for _, label in runs))
print("\n| clients | fd store | put+delete/s (median, min-max) | ratio to off | p50 µs | p99 µs |")
print("|---|---|---|---|---|---|")
for n in sorted({n for n, _ in runs}):
    off = statistics.median(r["ops_per_s"] for r in runs[(n, "off")])
    for label in labels:
        rs = runs[(n, label)]
        rate = statistics.median(r["ops_per_s"] for r in rs)
        lo, hi = min(r["ops_per_s"] for r in rs), max(r["ops_per_s"] for r in rs)
        p50 = statistics.median(r["p50_us"] for r in rs)
        p99 = statistics.median(r["p99_us"] for r in rs)
        print(f"| {n} | {label} | {rate:,.0f} ({lo:,.0f}-{hi:,.0f}) | {rate / off:.2f} | {p50:.0f} | {p99:.0f} |")
PY
sleep 0.3
for label in "${labels[@]}"; do
  bench_server_end "$label" "${pid[$label]}" "${fds_before[$label]} at the start" "$tmp/$label.log"
done
echo "# end $(date -u '+%T UTC'); load: $(cut -d' ' -f1-3 /proc/loadavg)"
