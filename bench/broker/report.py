#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""Turns loadgen's JSON lines into the broker-vs-baseline table.

Usage: report.py RESULTS.jsonl

Each (mode, clients) point was run several times against each server, alternating;
the table shows medians, the spread of throughput (min-max over the repeats, so a
reader can see how noisy the shared machine was) and the ratio of the broker's median
throughput to the baseline's. The target (issue 3) is a ratio of at least 0.85 for
kept-open connections at 8 and 64 clients.
"""

import json
import statistics
import sys
from collections import defaultdict

TARGET = 0.85
TARGET_POINTS = {("keepalive", 8), ("keepalive", 64)}


def load(path):
    runs = defaultdict(list)  # (mode, clients, label) -> [run]
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if line.startswith("{"):
                run = json.loads(line)
                runs[(run["mode"], run["clients"], run["label"])].append(run)
    return runs


def median(runs, key):
    return statistics.median(r[key] for r in runs)


def describe(runs):
    rates = [r["gets_per_s"] for r in runs]
    return {
        "rate": statistics.median(rates),
        "low": min(rates),
        "high": max(rates),
        "p50": median(runs, "p50_us"),
        "p99": median(runs, "p99_us"),
        "cpu": median(runs, "server_cpu"),
        # Server CPU time per get: what a get costs the server, whoever limited the
        # rate (the generator can be the limit for the baseline; see README.md).
        "cost": statistics.median(
            r["server_cpu"] / r["gets_per_s"] * 1e6 for r in runs if r["gets_per_s"] > 0
        ),
        "gen": median(runs, "loadgen_cpu"),
        "other": median(runs, "other_cpu"),
        "errors": sum(r["errors"] for r in runs),
        "n": len(runs),
    }


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    runs = load(sys.argv[1])
    points = sorted({(m, c) for (m, c, _) in runs}, key=lambda p: (p[0] != "keepalive", p[1]))
    labels = ["baseline", "broker"]
    header = (
        "| mode | clients | baseline gets/s (min-max) | broker gets/s (min-max) | broker/baseline "
        "| p50 µs base / broker | p99 µs base / broker | server CPU base / broker "
        "| server CPU µs/get base / broker "
        "| loadgen CPU | other CPU | runs |"
    )
    print(header)
    print("|" + "---|" * (header.count("|") - 1))
    verdicts = []
    for mode, clients in points:
        d = {l: describe(runs[(mode, clients, l)]) for l in labels if (mode, clients, l) in runs}
        b, k = d.get("baseline"), d.get("broker")

        def rate(x):
            if x is None:
                return "-"
            return f"{x['rate']:,.0f} ({x['low']:,.0f}-{x['high']:,.0f})"

        def pair(key, fmt):
            return " / ".join("-" if x is None else format(x[key], fmt) for x in (b, k))

        ratio = k["rate"] / b["rate"] if b and k and b["rate"] > 0 else None
        others = [x for x in (b, k) if x]
        print(
            f"| {mode} | {clients} | {rate(b)} | {rate(k)} | "
            f"{'-' if ratio is None else f'{ratio:.2f}'} | {pair('p50', '.1f')} | "
            f"{pair('p99', '.1f')} | {pair('cpu', '.2f')} | {pair('cost', '.2f')} | "
            f"{' / '.join(format(x['gen'], '.2f') for x in others)} | "
            f"{' / '.join(format(x['other'], '.2f') for x in others)} | "
            f"{' / '.join(str(x['n']) for x in others)} |"
        )
        for name, x in (("baseline", b), ("broker", k)):
            if x and x["errors"]:
                verdicts.append(f"{name} {mode}/{clients}: {x['errors']} errors (see loadgen stderr)")
        if (mode, clients) in TARGET_POINTS and ratio is not None:
            verdicts.append(
                f"target {mode}/{clients}: broker at {ratio:.0%} of baseline "
                f"({'meets' if ratio >= TARGET else 'MISSES'} the {TARGET:.0%} target)"
            )
    print()
    print("CPU columns are cores used during the measured window (1.00 = one core busy);")
    print("'other' is everything else on the machine, i.e. the noise from other work.")
    for v in verdicts:
        print(v)


if __name__ == "__main__":
    main()
