# SPDX-License-Identifier: LGPL-2.1-or-later
# shellcheck shell=bash
# Sourced by run.sh, scale.sh and durability.sh (bash, set -euo pipefail): their
# command line, the programs they need, a temporary directory removed at exit, the
# servers they start, stopped at exit by PID (never by name), waiting for a server's
# socket to appear, and the servers' descriptor counts and logged warnings.
#
#   bench_options "NAME..." "FLAG..." ARGS...
#                                    parses ARGS: an optional build directory first
#                                    (sets $build), then --NAME VALUE (sets $NAME, with
#                                    '-' in the option as '_' in the name; appends to
#                                    $NAME if it is an array) and --FLAG (sets $FLAG=1);
#                                    anything else prints the usage and exits 100
#   bench_need HINT FILE...          exits 111 unless every FILE is executable
#   bench_tmp TEMPLATE               sets $tmp (mktemp -d -t TEMPLATE), $pids, the traps
#   wait_for_socket PATH PID [TRIES] waits 0.05 s x TRIES (default 100) for PATH
#   bench_start SOCKET LOG CMD...    starts CMD in the background, stderr appended to
#                                    LOG (none if LOG is ""), adds it to $pids, sets
#                                    $started_pid and waits for SOCKET (tries:
#                                    $bench_wait_tries, default 100); if it does not
#                                    come, prints LOG and exits 1
#   bench_rotate ROUND LABEL...      sets $order to the LABELs rotated by ROUND - 1, so
#                                    that a slow drift of the machine favours no server
#   bench_fd_count PID               prints how many descriptors PID has open
#   bench_server_end LABEL PID BEFORE LOG
#                                    prints LABEL's descriptor count (BEFORE, and now)
#                                    and the last warnings and errors in LOG

# The usage is the script's header comment, from line 2 to the line before `set -e`.
bench_usage() {
  sed -n '2,/^set -e/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2
  exit 100
}

bench_options() {  # "name..." "flag..." args...
  local names=" $1 " flags=" $2 " name
  shift 2
  if [[ $# -gt 0 && $1 != --* ]]; then build=$(cd "$1" && pwd); shift; fi
  while [[ $# -gt 0 ]]; do
    name=${1#--}
    name=${name//-/_}
    if [[ $1 == --* && $flags == *" $name "* ]]; then
      printf -v "$name" 1
      shift
    elif [[ $1 == --* && $names == *" $name "* && $# -ge 2 ]]; then
      if [[ $(declare -p "$name") == "declare -a"* ]]; then
        local -n list=$name
        list+=("$2")
      else
        printf -v "$name" '%s' "$2"
      fi
      shift 2
    else
      bench_usage
    fi
  done
}

bench_need() {  # hint file...
  local hint=$1 f
  shift
  for f in "$@"; do
    [[ -x $f ]] || { echo "${0##*/}: $f missing: $hint" >&2; exit 111; }
  done
}

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

bench_rotate() {  # round label...
  local by=$((($1 - 1) % ($# - 1)))
  shift
  order=("${@:by+1}" "${@:1:by}")
}

bench_fd_count() {  # pid
  ls "/proc/$1/fd" | wc -l
}

bench_server_end() {  # label pid before log
  echo "$1 fds: $3, $(bench_fd_count "$2") at the end"
  grep -E " (warning|error|critical): " "$4" | tail -5 || true
}
