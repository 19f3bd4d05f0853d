#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""Turns scale.sh's JSON lines into the scale table (Markdown).

Usage: report_scale.py RESULTS.jsonl

Each figure is the median over the repeats, with the min-max over the repeats in
brackets. Ratios are taken within a repeat (both sides measured minutes apart at
most, on the same machine state) and their median is reported: on a shared machine
that is the figure to compare, the absolute values move with the load.
"""

import json
import statistics
import sys
from collections import defaultdict


def load(path):
    meta, runs = [], []
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if not line.startswith("{"):
                continue
            run = json.loads(line)
            if "meta" in run:
                meta.append(run["meta"])
            else:
                runs.append(run)
    return meta, runs


def size_of(run):
    return run["to"] if run["step"] == "put" else run.get("entries")


def cell(values, fmt):
    values = [v for v in values if v is not None]
    if not values:
        return "-"
    text = fmt.format(statistics.median(values))
    if len(values) > 1:
        text += " (" + fmt.format(min(values)) + "–" + fmt.format(max(values)) + ")"
    return text


def main():
    meta, runs = load(sys.argv[1])
    for m in meta:
        print("#", m)
    by = {}  # (step, label, size, repeat) -> run
    for r in runs:
        by[(r["step"], r["label"], size_of(r), r["repeat"])] = r
    repeats = sorted({r["repeat"] for r in runs})
    sizes = sorted({size_of(r) for r in runs if r["step"] == "put" and r["label"] == "broker"})
    if not sizes:
        sys.exit("report_scale.py: no broker puts in the results")
    first = sizes[0]

    def series(step, label, size, value):
        out = []
        for rep in repeats:
            run = by.get((step, label, size, rep))
            out.append(value(run) if run else None)
        return out

    def ratio(step_a, label_a, size_a, step_b, label_b, size_b, key):
        out = []
        for rep in repeats:
            a, b = by.get((step_a, label_a, size_a, rep)), by.get((step_b, label_b, size_b, rep))
            if a and b and b[key]:
                out.append(a[key] / b[key])
        return out

    rows = []

    def row(name, fmt, per_size):
        rows.append([name] + [cell(per_size(n), fmt) for n in sizes])

    row("puts/s (broker, filling up to N)", "{:.0f}", lambda n: series("put", "broker", n, lambda r: r["puts_per_s"]))
    row("puts/s (baseline server, same puts)", "{:.0f}", lambda n: series("put", "baseline", n, lambda r: r["puts_per_s"]))
    row("puts/s broker / baseline", "{:.2f}", lambda n: ratio("put", "broker", n, "put", "baseline", n, "puts_per_s"))
    row(f"puts/s / puts/s filling up to {first}", "{:.2f}", lambda n: ratio("put", "broker", n, "put", "broker", first, "puts_per_s"))
    row("put: server CPU µs per put (broker)", "{:.1f}", lambda n: series("put", "broker", n, lambda r: r.get("server_cpu_us")))
    row("put: server CPU µs (baseline server)", "{:.1f}", lambda n: series("put", "baseline", n, lambda r: r.get("server_cpu_us")))
    row("put: server CPU broker / baseline", "{:.1f}", lambda n: ratio("put", "broker", n, "put", "baseline", n, "server_cpu_us"))
    row("put p50 µs (broker)", "{:.1f}", lambda n: series("put", "broker", n, lambda r: r["p50_us"]))
    row("get p50 µs (broker)", "{:.1f}", lambda n: series("get", "broker", n, lambda r: r["p50_us"]))
    row("get p99 µs (broker)", "{:.1f}", lambda n: series("get", "broker", n, lambda r: r["p99_us"]))
    row(f"get p50 / p50 at {first} entries", "{:.2f}", lambda n: ratio("get", "broker", n, "get", "broker", first, "p50_us"))
    row(f"get p99 / p99 at {first} entries", "{:.2f}", lambda n: ratio("get", "broker", n, "get", "broker", first, "p99_us"))
    row("get p50 µs (baseline server)", "{:.1f}", lambda n: series("get", "baseline", n, lambda r: r["p50_us"]))
    row("get p50 broker / baseline", "{:.2f}", lambda n: ratio("get", "broker", n, "get", "baseline", n, "p50_us"))
    row("gets/s broker / baseline", "{:.2f}", lambda n: ratio("get", "broker", n, "get", "baseline", n, "gets_per_s"))
    row("get: server CPU µs per get (broker)", "{:.1f}", lambda n: series("get", "broker", n, lambda r: r.get("server_cpu_us")))
    row("get: server CPU µs (baseline server)", "{:.1f}", lambda n: series("get", "baseline", n, lambda r: r.get("server_cpu_us")))
    row("get: server CPU broker / baseline", "{:.2f}", lambda n: ratio("get", "broker", n, "get", "baseline", n, "server_cpu_us"))
    row(f"get: server CPU / at {first} entries", "{:.2f}", lambda n: ratio("get", "broker", n, "get", "broker", first, "server_cpu_us"))
    row("list: all pages, ms", "{:.1f}", lambda n: series("list", "broker", n, lambda r: r["ms"]))
    row("list: pages", "{:.0f}", lambda n: series("list", "broker", n, lambda r: r["pages"]))
    row("list: µs per entry", "{:.2f}", lambda n: series("list", "broker", n, lambda r: r["ms"] * 1e3 / r["entries"]))

    def list_per_entry_ratio(n):
        out = []
        for rep in repeats:
            a, b = by.get(("list", "broker", n, rep)), by.get(("list", "broker", first, rep))
            if a and b and b["ms"]:
                out.append((a["ms"] / a["entries"]) / (b["ms"] / b["entries"]))
        return out

    row(f"list: per entry / per entry at {first}", "{:.2f}", list_per_entry_ratio)

    # RSS per entry: the growth of VmRSS over the put steps only (gets and lists in
    # between are not counted), from the empty broker up to N entries.
    def rss_per_entry(n):
        out = []
        for rep in repeats:
            grown, count = 0, 0
            for s in sizes:
                if s > n:
                    break
                run = by.get(("put", "broker", s, rep))
                if not run:
                    break
                grown += run["rss_kb_after"] - run["rss_kb_before"]
                count += run["to"] - run["from"]
            if count:
                out.append(grown * 1024 / count)
        return out

    row("broker RSS per entry, bytes (0 → N)", "{:.0f}", rss_per_entry)
    row(
        "broker fds held per entry",
        "{:.3f}",
        lambda n: series("put", "broker", n, lambda r: (r["fds_after"] - r["fds_before"]) / (r["to"] - r["from"])),
    )

    print()
    print("| entries N | " + " | ".join(str(n) for n in sizes) + " |")
    print("|---|" + "---|" * len(sizes))
    for r in rows:
        print("| " + " | ".join(r) + " |")

    idle = defaultdict(dict)  # label -> repeat -> run
    for r in runs:
        if r["step"] == "idle":
            idle[r["label"]][r["repeat"]] = r
    if idle.get("broker"):
        b = idle["broker"]
        base = idle.get("baseline", {})
        n = next(iter(b.values()))["clients"]

        def col(runs_, value):
            return [value(runs_[rep]) for rep in repeats if rep in runs_]

        def rat(key):
            return [b[rep][key] / base[rep][key] for rep in repeats if rep in b and rep in base and base[rep][key]]

        print()
        print(f"| {n} idle connections, then a hello on each | broker | baseline server | broker / baseline |")
        print("|---|---|---|---|")
        lines = [
            ("answered (of each run's clients)", "{:.0f}", lambda r: r["answered"], None),
            ("unanswered or errors", "{:.0f}", lambda r: r["unanswered"] + r["errors"], None),
            ("connect all, s", "{:.3f}", lambda r: r["connect_s"], "connect_s"),
            ("until all accepted, s", "{:.3f}", lambda r: r["accepted_s"], "accepted_s"),
            ("all hellos answered, s", "{:.3f}", lambda r: r["answer_s"], "answer_s"),
            ("hello p50 µs", "{:.0f}", lambda r: r["p50_us"], "p50_us"),
            ("hello p99 µs", "{:.0f}", lambda r: r["p99_us"], "p99_us"),
            ("fds held per connection", "{:.3f}", lambda r: (r["fds_idle"] - r["fds_before"]) / r["clients"], None),
            ("RSS per idle connection, bytes", "{:.0f}", lambda r: (r["rss_kb_idle"] - r["rss_kb_before"]) * 1024 / r["clients"], None),
            (
                "RSS per connection after its hello, bytes",
                "{:.0f}",
                lambda r: (r["rss_kb_answered"] - r["rss_kb_before"]) * 1024 / r["clients"],
                None,
            ),
        ]
        for name, fmt, value, key in lines:
            print(
                f"| {name} | {cell(col(b, value), fmt)} | {cell(col(base, value), fmt)} | "
                + (cell(rat(key), "{:.2f}") if key else "")
                + " |"
            )


if __name__ == "__main__":
    main()
