# SPDX-License-Identifier: LGPL-2.1-or-later
"""Python ping-pong: fdbroker.sendfds/recvfds vs socket.send_fds/recv_fds vs raw C.

The same round trip as bench/scm_rights_bench.cpp, on one thread over a
socketpair: A sends a 17-byte payload and N descriptors, B receives them, sends
the same back and closes its copies (os.close), A receives and closes them.

  fdbroker  fdbroker.sendfds(sock, msg, fds) / fdbroker.recvfds(sock, 64),
            socket objects passed as a user would
  cpython   socket.send_fds(sock, [msg], fds) /
            socket.recv_fds(sock, 64, 253, MSG_CMSG_CLOEXEC)
            (CLOEXEC asked for, so that both do the same work)
  raw       the whole loop in C++ (_fdbroker_bench_raw, built from
            bench/raw_pingpong.hpp): the same syscalls with no Python in between
  thin      the same Python loop over the thinnest binding there can be
            (_fdbroker_bench_raw.send/recv: raw_send/raw_recv behind
            METH_FASTCALL, int sockets, bytes and int lists only, no checks, a
            plain tuple back): what any binding costs at the least, os.close and
            the interpreter included

Each sample times ITER round trips of one implementation with the thread's CPU
clock (time.thread_time_ns: time spent descheduled is not ours). One round runs
one sample of each implementation back to back, in rotating order; the ratio
impl/raw is taken within each round, so that load from other processes divides
out, and the median over rounds is reported, with the medians of the absolute
times and their spread. The garbage collector is off while timing, as in timeit.

Usage:
  PYTHONPATH=<build>/python:<build>/bench/python /usr/bin/python3 bench/python_pingpong.py
      [--rounds 41] [--sample-ms 4] [--nfds 1,16,253] [--types seqpacket,stream]
      [--json out.json]

thin/raw is the least a real binding can reach here (it still makes each call,
converts its arguments and builds the objects a caller needs).
floor/raw is (raw + floor) / raw, floor being the same Python loop with every
call replaced by a C builtin that does no I/O: the best ratio any binding could
reach on this machine, since the interpreter's own share is in it.
Exit status 0 when fdbroker/raw is within --target (1.15) in every case.
"""

import argparse
import gc
import json
import os
import socket
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_stats import median, print_table, spread, verdict  # noqa: E402

import _fdbroker_bench_raw  # noqa: E402
import fdbroker  # noqa: E402

PAYLOAD = b"ping-pong 16 byte"  # the C++ benchmark's payload
BUFSIZE = 64
MAXFDS = 253
TYPES = {"seqpacket": socket.SOCK_SEQPACKET, "stream": socket.SOCK_STREAM}


def run_fdbroker(a, b, fds, iterations):
    sendfds, recvfds, close = fdbroker.sendfds, fdbroker.recvfds, os.close
    msg, got = b"", []
    for _ in range(iterations):
        sendfds(a, PAYLOAD, fds)
        msg, got = recvfds(b, BUFSIZE)
        sendfds(b, msg, got)
        for fd in got:
            close(fd)
        msg, got = recvfds(a, BUFSIZE)
        for fd in got:
            close(fd)
    return msg, got


def run_cpython(a, b, fds, iterations):
    send_fds, recv_fds = socket.send_fds, socket.recv_fds
    close, flags = os.close, socket.MSG_CMSG_CLOEXEC
    msg, got = b"", []
    for _ in range(iterations):
        send_fds(a, [PAYLOAD], fds)
        msg, got, _, _ = recv_fds(b, BUFSIZE, MAXFDS, flags)
        send_fds(b, [msg], got)
        for fd in got:
            close(fd)
        msg, got, _, _ = recv_fds(a, BUFSIZE, MAXFDS, flags)
        for fd in got:
            close(fd)
    return msg, got


def run_thin(a, b, fds, iterations):
    send, recv, close = _fdbroker_bench_raw.send, _fdbroker_bench_raw.recv, os.close
    a, b = a.fileno(), b.fileno()  # the socket objects stay alive in bench_case
    msg, got = b"", []
    for _ in range(iterations):
        send(a, PAYLOAD, fds)
        msg, got = recv(b)
        send(b, msg, got)
        for fd in got:
            close(fd)
        msg, got = recv(a)
        for fd in got:
            close(fd)
    return msg, got


def run_raw(a, b, fds, iterations):
    _fdbroker_bench_raw.run(a.fileno(), b.fileno(), fds, iterations, PAYLOAD)
    return PAYLOAD, fds


def run_floor(a, b, fds, iterations):
    """The Python around the calls, with each call replaced by a C builtin that
    does no I/O (slice, divmod, abs): what any Python binding costs at the least.
    (raw + floor) / raw is the best ratio a binding could reach."""
    sendfds, recvfds, close = slice, divmod, abs
    msg, got = b"", fds
    for _ in range(iterations):
        sendfds(a, PAYLOAD, fds)
        msg, _ = recvfds(BUFSIZE, 7)
        sendfds(b, msg, got)
        for fd in got:
            close(fd)
        msg, _ = recvfds(BUFSIZE, 7)
        for fd in got:
            close(fd)
    return PAYLOAD, fds


IMPLS = {"raw": run_raw, "fdbroker": run_fdbroker, "cpython": run_cpython, "thin": run_thin,
         "floor": run_floor}
MEASURED = ("raw", "fdbroker", "cpython", "thin")


def time_sample(run, a, b, fds, iterations):
    start = time.thread_time_ns()
    run(a, b, fds, iterations)
    return (time.thread_time_ns() - start) / iterations


def bench_case(sock_type, nfds, rounds, sample_ms):
    a, b = socket.socketpair(socket.AF_UNIX, sock_type)
    fds = [os.open("/dev/null", os.O_RDONLY | os.O_CLOEXEC) for _ in range(nfds)]
    try:
        for name, run in IMPLS.items():  # warm-up, and a check that each one works
            msg, got = run(a, b, fds, 3)
            if msg != PAYLOAD or len(got) != len(fds):
                raise RuntimeError(f"{name}: round trip lost data")
        # Size a sample from the slowest implementation's cost, so that a sample
        # lasts about sample_ms for it and the clock reads are negligible.
        slowest = max(time_sample(IMPLS[name], a, b, fds, 20) for name in MEASURED)
        iterations = max(5, int(sample_ms * 1e6 / slowest))
        names = list(IMPLS)
        samples = {name: [] for name in names}
        ratios = {name: [] for name in names if name != "raw"}
        ratios["floor"] = []
        gc.disable()
        try:
            for r in range(rounds):
                order = names[r % len(names):] + names[:r % len(names)]
                this_round = {name: time_sample(IMPLS[name], a, b, fds, iterations)
                              for name in order}
                for name, ns in this_round.items():
                    samples[name].append(ns)
                for name in MEASURED[1:]:
                    ratios[name].append(this_round[name] / this_round["raw"])
                ratios["floor"].append(1 + this_round["floor"] / this_round["raw"])
        finally:
            gc.enable()
        return iterations, samples, ratios
    finally:
        for fd in fds:
            os.close(fd)
        a.close()
        b.close()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=41)
    parser.add_argument("--sample-ms", type=float, default=4.0)
    parser.add_argument("--nfds", default="1,16,253")
    parser.add_argument("--types", default="seqpacket,stream")
    parser.add_argument("--target", type=float, default=1.15)
    parser.add_argument("--json", help="write every sample here")
    args = parser.parse_args()

    rows, results, all_ok = [], [], True
    for type_name in args.types.split(","):
        for nfds in (int(n) for n in args.nfds.split(",")):
            iterations, samples, ratios = bench_case(TYPES[type_name], nfds, args.rounds,
                                                     args.sample_ms)
            fdb, cpy = median(ratios["fdbroker"]), median(ratios["cpython"])
            all_ok &= fdb <= args.target
            rows.append([f"{type_name}/{nfds}", str(iterations),
                         f"{median(samples['raw']) / 1000:.2f}", f"{spread(samples['raw']):.1f}",
                         f"{median(samples['fdbroker']) / 1000:.2f}",
                         f"{spread(samples['fdbroker']):.1f}",
                         f"{median(samples['cpython']) / 1000:.2f}",
                         f"{spread(samples['cpython']):.1f}",
                         f"{fdb:.3f} {verdict(fdb, args.target)}",
                         f"{spread(ratios['fdbroker']):.1f}",
                         f"{cpy:.3f}", f"{spread(ratios['cpython']):.1f}",
                         f"{median(ratios['thin']):.3f}", f"{median(ratios['floor']):.3f}"])
            results.append({"case": f"{type_name}/{nfds}", "iterations": iterations,
                            "samples_ns": samples, "ratios": ratios})

    print(f"Python ping-pong, {args.rounds} rounds; median thread CPU time per round trip "
          f"(us); IQR = interquartile range / median (%); ratios = median over rounds of "
          f"impl/raw in the same round; target fdbroker/raw <= {args.target}")
    print(f"python {sys.version.split()[0]}, load avg {os.getloadavg()}")
    print_table(["case", "iter", "raw us", "IQR%", "fdbroker us", "IQR%", "cpython us", "IQR%",
                 "fdbroker/raw", "IQR%", "cpython/raw", "IQR%", "thin/raw", "floor/raw"], rows)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)
    return 0 if all_ok else 1


if __name__ == "__main__":
    sys.exit(main())
