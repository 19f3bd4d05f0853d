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
    groups = defaultdict(list)  # (step, label, size, repeat) -> runs, in order
    for r in runs:
        groups[(r["step"], r["label"], r["size"], r["repeat"])].append(r)
    repeats = sorted({r["repeat"] for r in runs})
    sizes = sorted({r["size"] for r in runs if r["step"] == "put" and r["label"] == "broker"})
    if not sizes:
        sys.exit("report_scale.py: no broker puts in the results")
    first = sizes[0]

    # One value per repeat; `value` gets the runs of that repeat.
    def per_repeat(step, label, size, value):
        out = []
        for rep in repeats:
            got = groups.get((step, label, size, rep))
            out.append(value(got) if got else None)
        return out

    def within(step_a, label_a, size_a, step_b, label_b, size_b, value):
        """Ratios a/b of value(runs) taken within each repeat."""
        out = []
        for rep in repeats:
            a, b = groups.get((step_a, label_a, size_a, rep)), groups.get((step_b, label_b, size_b, rep))
            if a and b and value(b):
                out.append(value(a) / value(b))
        return out

    def count(run):
        return run["to"] - run["from"]

    def put_rate(chunks):
        return sum(count(c) for c in chunks) / sum(c["seconds"] for c in chunks)

    def put_cpu(chunks):
        return sum(c["server_cpu_us"] * count(c) for c in chunks) / sum(count(c) for c in chunks)

    def put_pairs(n):
        """Per repeat, the median over chunks of broker puts/s / baseline puts/s,
        each chunk against the baseline's chunk that came right after it."""
        out = []
        for rep in repeats:
            b, base = groups.get(("put", "broker", n, rep), []), groups.get(("put", "baseline", n, rep), [])
            pairs = [x["puts_per_s"] / y["puts_per_s"] for x, y in zip(b, base) if y["puts_per_s"]]
            if pairs:
                out.append(statistics.median(pairs))
        return out

    def one(key):
        return lambda got: got[0][key]

    def list_ms(got):
        return statistics.median(r["ms"] for r in got)

    def list_per_entry(got):
        return min(r["ms"] * 1e3 / r["entries"] for r in got)

    rows = []

    def row(name, fmt, per_size):
        rows.append([name] + [cell(per_size(n), fmt) for n in sizes])

    row("puts/s (broker, filling up to N)", "{:.0f}", lambda n: per_repeat("put", "broker", n, put_rate))
    row("puts/s (baseline server, same puts)", "{:.0f}", lambda n: per_repeat("put", "baseline", n, put_rate))
    row("puts/s broker / baseline (chunk by chunk)", "{:.2f}", put_pairs)
    row(f"puts/s / puts/s filling up to {first}", "{:.2f}", lambda n: within("put", "broker", n, "put", "broker", first, put_rate))
    row("put: server CPU µs per put (broker)", "{:.1f}", lambda n: per_repeat("put", "broker", n, put_cpu))
    row("put: server CPU µs (baseline server)", "{:.1f}", lambda n: per_repeat("put", "baseline", n, put_cpu))
    row("put: server CPU broker / baseline", "{:.2f}", lambda n: within("put", "broker", n, "put", "baseline", n, put_cpu))
    row(f"put: server CPU / at {first}", "{:.2f}", lambda n: within("put", "broker", n, "put", "broker", first, put_cpu))
    row(
        "put p50 µs (broker, median of chunks)",
        "{:.0f}",
        lambda n: per_repeat("put", "broker", n, lambda got: statistics.median(c["p50_us"] for c in got)),
    )
    row("get p50 µs (broker)", "{:.1f}", lambda n: per_repeat("get", "broker", n, one("p50_us")))
    row("get p99 µs (broker)", "{:.1f}", lambda n: per_repeat("get", "broker", n, one("p99_us")))
    row(f"get p50 / p50 at {first} entries", "{:.2f}", lambda n: within("get", "broker", n, "get", "broker", first, one("p50_us")))
    row(f"get p99 / p99 at {first} entries", "{:.2f}", lambda n: within("get", "broker", n, "get", "broker", first, one("p99_us")))
    row("get p50 µs (baseline server)", "{:.1f}", lambda n: per_repeat("get", "baseline", n, one("p50_us")))
    row("get p99 µs (baseline server)", "{:.1f}", lambda n: per_repeat("get", "baseline", n, one("p99_us")))
    row("get p50 broker / baseline", "{:.2f}", lambda n: within("get", "broker", n, "get", "baseline", n, one("p50_us")))
    row("gets/s broker / baseline", "{:.2f}", lambda n: within("get", "broker", n, "get", "baseline", n, one("gets_per_s")))
    row("get: server CPU µs per get (broker)", "{:.1f}", lambda n: per_repeat("get", "broker", n, one("server_cpu_us")))
    row("get: server CPU µs (baseline server)", "{:.1f}", lambda n: per_repeat("get", "baseline", n, one("server_cpu_us")))
    row("get: server CPU broker / baseline", "{:.2f}", lambda n: within("get", "broker", n, "get", "baseline", n, one("server_cpu_us")))
    row(f"get: server CPU / at {first} entries", "{:.2f}", lambda n: within("get", "broker", n, "get", "broker", first, one("server_cpu_us")))
    row("list: all pages, ms (median of the lists)", "{:.1f}", lambda n: per_repeat("list", "broker", n, list_ms))
    # A fixed amount of work of a few ms: a preemption by other work on the machine
    # can double it, so the fastest of the lists is the undisturbed cost.
    row("list: all pages, ms (fastest)", "{:.1f}", lambda n: per_repeat("list", "broker", n, lambda got: min(r["ms"] for r in got)))
    row("list: pages", "{:.0f}", lambda n: per_repeat("list", "broker", n, one("pages")))
    row("list: µs per entry (fastest)", "{:.2f}", lambda n: per_repeat("list", "broker", n, list_per_entry))
    row(f"list: per entry / per entry at {first} (fastest)", "{:.2f}", lambda n: within("list", "broker", n, "list", "broker", first, list_per_entry))

    # RSS per entry: the growth of VmRSS over the put chunks only (gets and lists in
    # between are not counted), from the empty broker up to N entries.
    def rss_per_entry(n):
        out = []
        for rep in repeats:
            chunks = [c for s in sizes if s <= n for c in groups.get(("put", "broker", s, rep), [])]
            if chunks:
                grown = sum(c["rss_kb_after"] - c["rss_kb_before"] for c in chunks)
                out.append(grown * 1024 / sum(count(c) for c in chunks))
        return out

    row("broker RSS per entry, bytes (0 → N)", "{:.0f}", rss_per_entry)
    row(
        "broker fds held per entry",
        "{:.3f}",
        lambda n: per_repeat(
            "put", "broker", n, lambda got: sum(c["fds_after"] - c["fds_before"] for c in got) / sum(count(c) for c in got)
        ),
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
