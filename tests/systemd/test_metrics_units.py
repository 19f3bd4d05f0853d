# SPDX-License-Identifier: LGPL-2.1-or-later
"""fdbroker-metrics.service and .timer, as shipped, under a real systemd with the
shipped fdbroker.socket/.service: the service writes fdbroker.prom into
node_exporter's textfile directory by a rename, with content that parses and
names what the broker holds. The test changes two paths in the unit's text: the
textfile directory (a tmpfs under /run here: the machine's /var is read-only) and
the installed fdbrokerctl (the built one)."""

from __future__ import annotations

import os
import re

from prometheus_client.parser import text_string_to_metric_families

from test_fdbroker_units import broker_machine, sanitizer_environment, unit_dir  # noqa: F401

INSTALLED_DIR = "/var/lib/prometheus/node-exporter"
TEXTFILE_DIR = "/run/node-exporter"


def metrics_units(unit_dir, fdbrokerctl) -> dict[str, str]:
    service = (unit_dir / "fdbroker-metrics.service").read_text()
    assert INSTALLED_DIR in service
    service = service.replace(INSTALLED_DIR, TEXTFILE_DIR)
    service, n = re.subn(r"\S*/fdbrokerctl ", f"{fdbrokerctl} ", service)
    assert n == 1, service
    units = {"fdbroker-metrics.service": service,
             "fdbroker-metrics.timer": (unit_dir / "fdbroker-metrics.timer").read_text()}
    if sanitizer_environment():  # the built fdbrokerctl may be a sanitizer build
        units["fdbroker-metrics.service.d/50-test.conf"] = "[Service]\n" + sanitizer_environment()
    return units


def test_metrics_service_writes_the_prom_file_by_rename(broker_machine, unit_dir, fdbrokerctl):
    machine = broker_machine(files={f"{TEXTFILE_DIR}/README": "node_exporter's textfile dir\n"})
    for name, text in metrics_units(unit_dir, fdbrokerctl).items():
        machine.add_unit(name, text, reload=False)
    machine.systemctl("daemon-reload")
    verify = machine.run("systemd-analyze", "verify", "fdbroker-metrics.service",
                         "fdbroker-metrics.timer", check=False)
    assert (verify.returncode, verify.stdout, verify.stderr) == (0, "", ""), verify
    security = machine.run("systemd-analyze", "security", "--no-pager",
                           "fdbroker-metrics.service", check=False).stdout
    overall = re.search(r"Overall exposure level for fdbroker-metrics\.service: ([0-9.]+) (\w+)",
                        security)
    assert overall and overall.group(2) in ("SAFE", "OK"), security
    print(overall.group(0))

    prom = machine.path(f"{TEXTFILE_DIR}/fdbroker.prom")
    assert not prom.exists()
    machine.systemctl("start", "fdbroker-metrics.service")  # oneshot: returns when done
    first = prom.stat()
    text = prom.read_text()
    assert first.st_mode & 0o777 == 0o644, oct(first.st_mode)  # node_exporter reads it
    families = {f.name: f for f in text_string_to_metric_families(text)}
    (entries,) = families["fdbroker_entries"].samples
    assert entries.value == 2, text  # the two static entries of test_fdbroker_units
    assert families["fdbroker_requests"].type == "counter"
    assert any(s.labels == {"op": "stats", "result": "ok"}
               for s in families["fdbroker_requests"].samples), text

    # Again: a new file renamed over the old one (another inode), no temporary left.
    machine.systemctl("start", "fdbroker-metrics.service")
    second = prom.stat()
    assert (second.st_dev, second.st_ino) != (first.st_dev, first.st_ino)
    assert sorted(os.listdir(machine.path(TEXTFILE_DIR))) == ["README", "fdbroker.prom"]
    state = machine.show("fdbroker-metrics.service", "Result", "User")
    assert state["Result"] == "success", state

    # The timer is valid and schedules the service.
    machine.systemctl("start", "fdbroker-metrics.timer")
    assert machine.show("fdbroker-metrics.timer", "ActiveState")["ActiveState"] == "active"
