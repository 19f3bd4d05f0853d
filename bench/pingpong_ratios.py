# SPDX-License-Identifier: LGPL-2.1-or-later
"""Turns scm_rights_bench's JSON (--benchmark_out) into lib/raw ratios.

For each PingPong/<type>/<nfds>/<impl> it takes the median over the repetitions
(per-repetition rows, not Google Benchmark's aggregates, so that the spread can be
shown too) of the CPU time per round trip, and divides the library's median by the
raw median measured in the same run.

For each Paired/<type>/<nfds>/<impl> (lib and raw blocks timed back to back, see
scm_rights_bench.cpp) it takes the median over repetitions of the per-repetition
"ratio" counter. On a loaded machine this is the trustworthy figure, and the exit
status is decided on it (on the plain medians when no Paired rows were run).

Usage: /usr/bin/python3 bench/pingpong_ratios.py RESULT.json [--target 1.05]
Exit status 0 when every library variant is within the target, 1 otherwise.
"""

import argparse
import collections
import json
import sys

from bench_stats import median, print_table, spread, verdict

IMPLS = ("try", "into", "throw")


def load(path):
    with open(path) as f:
        data = json.load(f)
    times = collections.defaultdict(lambda: {"cpu": [], "real": []})
    paired = collections.defaultdict(list)  # Paired/<case>/<impl> -> per-repetition ratios
    for b in data["benchmarks"]:
        if b.get("run_type") != "iteration":
            continue
        name = b.get("run_name", b["name"])
        if name.startswith("Paired/"):
            paired[name.replace("Paired/", "PingPong/", 1)].append(b["ratio"])
        else:
            times[name]["cpu"].append(b["cpu_time"])
            times[name]["real"].append(b["real_time"])
    return data.get("context", {}), times, paired


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("json")
    parser.add_argument("--target", type=float, default=1.05)
    args = parser.parse_args()
    context, times, paired = load(args.json)

    cases = sorted({n.rsplit("/", 1)[0] for n in [*times, *paired]},
                   key=lambda c: (c.split("/")[1], int(c.split("/")[2])))
    rows = []
    all_ok = True
    paired_rows = []
    for case in cases:
        prow = [case.replace("PingPong/", "")]
        for impl in IMPLS:
            ratios = paired.get(f"{case}/{impl}")
            if not ratios:
                prow += ["-", "-"]
                continue
            ratio = median(ratios)
            all_ok &= ratio <= args.target
            prow += [f"{ratio:.3f} {verdict(ratio, args.target)}",
                     f"{min(ratios):.3f}..{max(ratios):.3f} ({len(ratios)})"]
        paired_rows.append(prow)
    for case in cases:
        raw = times.get(case + "/raw")
        if raw is None:
            continue
        raw_med = median(raw["cpu"])
        row = [case.replace("PingPong/", ""), str(len(raw["cpu"])),
               f"{raw_med / 1000:.2f}", f"{spread(raw['cpu']):.1f}"]
        for impl in IMPLS:
            lib = times.get(f"{case}/{impl}")
            if lib is None:
                row += ["-", "-", "-"]
                continue
            ratio = median(lib["cpu"]) / raw_med
            if not paired:  # the verdict falls to the plain medians
                all_ok &= ratio <= args.target
            row += [f"{median(lib['cpu']) / 1000:.2f}", f"{spread(lib['cpu']):.1f}",
                    f"{ratio:.3f} {verdict(ratio, args.target)}"]
        rows.append(row)

    print(f"C++ ping-pong, median CPU time per round trip (us); IQR = interquartile "
          f"range / median (%); target lib/raw <= {args.target}")
    print(f"host: {context.get('host_name', '?')}, {context.get('num_cpus', '?')} cpus, "
          f"load avg {context.get('load_avg', '?')}")
    if rows:
        print_table(["case", "reps", "raw us", "IQR%",
                     *[h for impl in IMPLS for h in (f"{impl} us", "IQR%", f"{impl}/raw")]],
                    rows)
    if any(cell != "-" for row in paired_rows for cell in row[1:]):
        print()
        print("Paired (the verdict): lib/raw from back-to-back blocks, median over pairs per "
              "repetition, then median over repetitions (min..max over repetitions)")
        print_table(["case", *[h for impl in IMPLS for h in (f"{impl}/raw", "range (reps)")]],
                    paired_rows)
    return 0 if all_ok else 1


if __name__ == "__main__":
    sys.exit(main())
