# SPDX-License-Identifier: LGPL-2.1-or-later
"""fdbrokerd logs to the journal only when its stderr is the journal: a
JOURNAL_STREAM inherited while stderr goes elsewhere (a service's child started
with its stderr redirected) leaves the plain timestamped lines on stderr."""

from __future__ import annotations

import os
import re

from broker_fixture import running_broker

LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3} fdbrokerd\[(\d+)\] (\w+): (.*)$")


def test_a_journal_stream_that_is_not_stderr_leaves_plain_lines(monkeypatch):
    st = os.stat("/dev/null")  # the broker's stderr is a file, not this
    monkeypatch.setenv("JOURNAL_STREAM", f"{st.st_dev}:{st.st_ino}")
    for broker in running_broker():
        lines = [LINE.match(line) for line in broker.log().splitlines()]
        assert all(lines), broker.log()
        assert {m.group(1) for m in lines} == {str(broker.pid)}, broker.log()
        assert any(m.group(2) == "info" and m.group(3).startswith("ready: ") for m in lines), (
            broker.log())
