#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""Turns loadgen's JSON lines into the broker-vs-baseline table.

Usage: report.py RESULTS.jsonl

Each (mode, clients) point was run several times against each server, alternating;
the table has one row per point and server with medians, the spread of throughput
(min-max over the repeats, so that a reader sees how noisy the shared machine was)
and the ratio of the server's median throughput to the baseline's. The target
(issue 3) is a ratio of at least 0.85 for `broker` with kept-open connections at 8
and 64 clients.
"""

import json
import statistics
import sys
from collections import defaultdict

TARGET = 0.85
TARGET_POINTS = {("keepalive", 8), ("keepalive", 64)}
BASELINE = "baseline"


def load(path):
    runs = defaultdict(list)  # (mode, clients, label) -> [run]
    order = []  # labels in order of first appearance
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if line.startswith("{"):
                run = json.loads(line)
                runs[(run["mode"], run["clients"], run["label"])].append(run)
                if run["label"] not in order:
                    order.append(run["label"])
    return runs, order


def describe(runs):
    rates = [r["gets_per_s"] for r in runs]
    return {
        "rate": statistics.median(rates),
        "low": min(rates),
        "high": max(rates),
        "p50": statistics.median(r["p50_us"] for r in runs),
        "p99": statistics.median(r["p99_us"] for r in runs),
        "cpu": statistics.median(r["server_cpu"] for r in runs),
        # Server CPU time per get: what a get costs the server, whoever limited the
        # rate (the generator can be the limit for the baseline; see README.md).
        "cost": statistics.median(
            r["server_cpu"] / r["gets_per_s"] * 1e6 if r["gets_per_s"] > 0 else 0 for r in runs
        ),
        "gen": statistics.median(r["loadgen_cpu"] for r in runs),
        "other": statistics.median(r["other_cpu"] for r in runs),
        "errors": sum(r["errors"] for r in runs),
        "n": len(runs),
    }


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    runs, order = load(sys.argv[1])
    labels = sorted(order, key=lambda l: l != BASELINE)  # baseline first, then as run
    points = sorted({(m, c) for (m, c, _) in runs}, key=lambda p: (p[0] != "keepalive", p[1]))
    columns = [
        "mode", "clients", "server", "gets/s median (min-max)", "vs baseline",
        "p50 µs", "p99 µs", "server CPU", "server CPU µs/get", "vs baseline",
        "loadgen CPU", "other CPU", "runs",
    ]
    print("| " + " | ".join(columns) + " |")
    print("|" + "---|" * len(columns))
    verdicts = []
    for mode, clients in points:
        base = runs.get((mode, clients, BASELINE))
        b = describe(base) if base else None
        for label in labels:
            if (mode, clients, label) not in runs:
                continue
            x = describe(runs[(mode, clients, label)])
            ratio = x["rate"] / b["rate"] if b and b["rate"] > 0 else None
            cost_ratio = x["cost"] / b["cost"] if b and b["cost"] > 0 else None
            print(
                f"| {mode} | {clients} | {label} | "
                f"{x['rate']:,.0f} ({x['low']:,.0f}-{x['high']:,.0f}) | "
                f"{'' if ratio is None else f'{ratio:.2f}'} | {x['p50']:.1f} | {x['p99']:.1f} | "
                f"{x['cpu']:.2f} | {x['cost']:.2f} | "
                f"{'' if cost_ratio is None else f'{cost_ratio:.2f}'} | "
                f"{x['gen']:.2f} | {x['other']:.2f} | {x['n']} |"
            )
            if x["errors"]:
                verdicts.append(f"{label} {mode}/{clients}: {x['errors']} errors (see stderr)")
            if label == "broker" and (mode, clients) in TARGET_POINTS and ratio is not None:
                verdicts.append(
                    f"target {mode}/{clients}: broker at {ratio:.0%} of the baseline's gets/s "
                    f"({'meets' if ratio >= TARGET else 'MISSES'} the {TARGET:.0%} target); "
                    f"a get costs it {cost_ratio:.2f}x the baseline's server CPU"
                )
    print()
    print("CPU columns: cores used during the measured window (1.00 = one core busy);")
    print("'other CPU' is everything else on the machine, i.e. the noise from other work.")
    for v in verdicts:
        print(v)


if __name__ == "__main__":
    main()
