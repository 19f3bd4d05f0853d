# SPDX-License-Identifier: LGPL-2.1-or-later
"""`fdbrokerctl stats --format prometheus` against a real fdbrokerd: the output parses
with Debian's python3-prometheus-client, every family has its HELP and TYPE lines,
and each gauge and counter is the number `stats --json` reports."""

from __future__ import annotations

import json
import subprocess

from broker_fixture import Broker, binary
from prometheus_client.parser import text_string_to_metric_families

GAUGES = {
    "fdbroker_entries",
    "fdbroker_fds_held",
    "fdbroker_fds_limit",
    "fdbroker_connections",
    "fdbroker_uptime_seconds",
}
COUNTERS = {
    "fdbroker_connections_accepted_total",
    "fdbroker_connections_dropped_total",
    "fdbroker_requests_total",
}


def ctl(broker: Broker, *args: str, expect: int = 0) -> str:
    result = subprocess.run(
        [binary("FDBROKERCTL"), "--socket", broker.socket, *args],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == expect, result
    return result.stdout


def test_prometheus_output_parses_and_matches_json(broker: Broker) -> None:
    ctl(broker, "put", "a", "--file", "/dev/null")
    ctl(broker, "put", "b", "--file", "/dev/null", "--file", "/dev/null")
    ctl(broker, "get", "a")
    ctl(broker, "get", "missing", expect=1)  # ENOENT
    ctl(broker, "delete", "b")
    ctl(broker, "put", "a", "--file", "/dev/null", expect=1)  # EEXIST
    # No `files` or `bind` rules: the broker refuses both.
    ctl(broker, "open", "/etc/passwd", expect=1)
    ctl(broker, "exec", "--bind", "tcp://127.0.0.1:0", "--", "/bin/true", expect=1)

    text = ctl(broker, "stats", "--format", "prometheus")
    # The --json request comes after: it adds its own connection and stats request.
    reply = json.loads(ctl(broker, "stats", "--json"))

    lines = text.splitlines()
    families = {f.name: f for f in text_string_to_metric_families(text)}
    for name in GAUGES | COUNTERS:
        # The parser strips "_total" from a counter family's name.
        key = name[: -len("_total")] if name in COUNTERS else name
        assert key in families, (name, text)
        assert families[key].type == ("counter" if name in COUNTERS else "gauge")
        assert families[key].documentation
        assert any(line.startswith(f"# HELP {name} ") for line in lines), name
        ctype = "counter" if name in COUNTERS else "gauge"
        assert f"# TYPE {name} {ctype}" in lines, name

    def value(name: str) -> float:
        key = name[: -len("_total")] if name in COUNTERS else name
        (sample,) = [s for s in families[key].samples if s.name == name]
        return sample.value

    assert value("fdbroker_entries") == reply["entries"] == 1
    assert value("fdbroker_fds_held") == reply["fds_held"] == 1
    assert value("fdbroker_fds_limit") == reply["fds_limit"]
    assert value("fdbroker_connections") == reply["connections"]["current"]
    assert value("fdbroker_connections_dropped_total") == reply["connections"]["dropped"]
    assert value("fdbroker_connections_accepted_total") + 1 == reply["connections"]["total"]
    assert 0 < value("fdbroker_uptime_seconds") <= reply["uptime_ms"] / 1000

    requests: dict[tuple[str, str], float] = {}
    for s in families["fdbroker_requests"].samples:
        assert s.name == "fdbroker_requests_total"
        assert set(s.labels) == {"op", "result"}
        requests[(s.labels["op"], s.labels["result"])] = s.value
    expected = {
        (op, result): count
        for op, results in reply["requests"].items()
        for result, count in results.items()
    }
    expected[("stats", "ok")] -= 1  # the --json request itself
    if expected[("stats", "ok")] == 0:
        del expected[("stats", "ok")]
    assert requests == expected
    # What the test did is there, refusals by their errno name.
    assert requests[("get", "ENOENT")] == 1
    assert requests[("put", "EEXIST")] == 1
    assert requests[("get", "ok")] == 1
    assert requests[("open", "EACCES")] == 1
    assert ("bind", "ok") not in requests and any(op == "bind" for op, _ in requests)


def test_format_is_checked(broker: Broker) -> None:
    assert json.loads(ctl(broker, "stats", "--format", "json"))["entries"] == 0
    assert "entries:" in ctl(broker, "stats", "--format", "text")
    ctl(broker, "stats", "--format", "yaml", expect=100)
    ctl(broker, "--json", "stats", "--format", "prometheus", expect=100)
    ctl(broker, "get", "x", "--format", "prometheus", expect=100)
