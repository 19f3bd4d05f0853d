# SPDX-License-Identifier: LGPL-2.1-or-later
# shellcheck shell=bash
# Sourced by run.sh, scale.sh and durability.sh (bash, set -euo pipefail): a temporary
# directory removed at exit, the servers they start, stopped at exit by PID (never by
# name), and waiting for a server's socket to appear.
#
#   bench_tmp TEMPLATE               sets $tmp (mktemp -d -t TEMPLATE), $pids, the traps
#   wait_for_socket PATH PID [TRIES] waits 0.05 s x TRIES (default 100) for PATH
#   bench_start SOCKET LOG CMD...    starts CMD in the background, stderr appended to
#                                    LOG (none if LOG is ""), adds it to $pids, sets
#                                    $started_pid and waits for SOCKET (tries:
#                                    $bench_wait_tries, default 100); if it does not
#                                    come, prints LOG and exits 1

bench_tmp() {  # template
  tmp=$(mktemp -d -t "$1")
  pids=()
  trap bench_cleanup EXIT
  trap 'exit 130' INT TERM
}

bench_cleanup() {
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$tmp"
}

wait_for_socket() {  # path pid [tries]
  for _ in $(seq "${3:-100}"); do
    [[ -S $1 ]] && return 0
    kill -0 "$2" 2>/dev/null || { echo "${0##*/}: server $2 exited" >&2; return 1; }
    sleep 0.05
  done
  echo "${0##*/}: $1 did not appear" >&2
  return 1
}

bench_start() {  # socket log command...
  local socket=$1 log=$2
  shift 2
  if [[ -n $log ]]; then "$@" 2>>"$log" & else "$@" & fi
  started_pid=$!; pids+=("$started_pid")
  wait_for_socket "$socket" "$started_pid" "${bench_wait_tries:-100}" ||
    { [[ -z $log ]] || cat "$log" >&2; exit 1; }
}
