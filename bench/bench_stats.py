# SPDX-License-Identifier: LGPL-2.1-or-later
"""Statistics shared by the benchmark reports: medians, spread, ratio tables."""

import statistics


def median(samples):
    return statistics.median(samples)


def spread(samples):
    """Interquartile range relative to the median, in percent: the run's noise."""
    if len(samples) < 4:
        return float("nan")
    q1, _, q3 = statistics.quantiles(samples, n=4)
    return 100.0 * (q3 - q1) / statistics.median(samples)


def verdict(ratio, target):
    return "ok" if ratio <= target else "MISS"


def print_table(headers, rows):
    """Prints rows (lists of str) as an aligned plain-text table."""
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
    line = "  ".join(h.ljust(w) for h, w in zip(headers, widths))
    print(line)
    print("-" * len(line))
    for r in rows:
        print("  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths))))
