# SPDX-License-Identifier: LGPL-2.1-or-later
"""The bash completion (client/completion/fdbrokerctl.bash) in a real bash with
Debian's bash-completion loaded: the completion function is called the way bash
calls it on TAB (COMP_WORDS, COMP_CWORD, COMP_LINE, COMP_POINT set) and COMPREPLY
is read back. Entry names come from a real fdbrokerd; the commands and options
the script knows are compared with `fdbrokerctl --help`, so they cannot drift."""

from __future__ import annotations

import os
import re
import shlex
import subprocess

import pytest
from broker_fixture import Broker, binary

SCRIPT = os.path.join(
    os.path.dirname(os.path.abspath(__file__)), "..", "..", "client", "completion", "fdbrokerctl.bash"
)
# Where Debian's bash-completion keeps its main script (scripts/install-deps installs it).
BASH_COMPLETION = "/usr/share/bash-completion/bash_completion"


def bash(body: str) -> subprocess.CompletedProcess[str]:
    """Runs `body` in a non-interactive bash with bash-completion and the script loaded."""
    assert os.path.exists(BASH_COMPLETION), f"{BASH_COMPLETION} missing: run scripts/install-deps"
    script = f"source {shlex.quote(BASH_COMPLETION)}\nsource {shlex.quote(SCRIPT)}\n{body}"
    return subprocess.run(
        ["bash", "--norc", "--noprofile", "-c", script],
        capture_output=True,
        text=True,
        timeout=60,
        env={k: v for k, v in os.environ.items() if k != "FDBROKER_SOCKET"},
    )


def complete(*words: str, line: str | None = None) -> tuple[list[str], str]:
    """COMPREPLY (and bash's stderr) for a TAB after `words`, the last one being the
    word under the cursor ("" for a fresh word): the words as bash splits the line
    (at blanks, and at ':' and '=' too), `line` the line itself when that is not the
    words joined by blanks."""
    line = " ".join(words) if line is None else line
    body = f"""
COMP_WORDS=({" ".join(shlex.quote(w) for w in words)})
COMP_CWORD={len(words) - 1}
COMP_LINE={shlex.quote(line)}
COMP_POINT={len(line)}
COMPREPLY=()
_fdbrokerctl fdbrokerctl {shlex.quote(words[-1])} {shlex.quote(words[-2])}
printf '%s\\n' "${{COMPREPLY[@]}}"
"""
    result = bash(body)
    assert result.returncode == 0, result
    return [w for w in result.stdout.split("\n") if w], result.stderr


def put(broker: Broker, name: str) -> None:
    subprocess.run(
        [binary("FDBROKERCTL"), "--socket", broker.socket, "put", name, "--file", "/dev/null"],
        check=True,
        capture_output=True,
        timeout=60,
    )


def test_command() -> None:
    assert complete(binary("FDBROKERCTL"), "g") == (["get"], "")
    commands, _ = complete(binary("FDBROKERCTL"), "")
    assert "exec" in commands and "upgrade" in commands and "open" in commands


def test_entry_names_from_the_broker_on_the_command_line(broker: Broker) -> None:
    for name in ["web/http", "web/https", "db"]:
        put(broker, name)
    ctl = binary("FDBROKERCTL")
    replies, stderr = complete(ctl, "--socket", broker.socket, "get", "we")
    assert sorted(replies) == ["web/http", "web/https"] and stderr == ""
    assert complete(ctl, "--socket", broker.socket, "delete", "d")[0] == ["db"]
    # --socket after the command, and exec's --take NAME
    assert complete(ctl, "exec", "--socket", broker.socket, "--take", "d")[0] == ["db"]
    # only one NAME: nothing after it
    assert complete(ctl, "--socket", broker.socket, "get", "db", "")[0] == []


def test_entry_names_with_a_colon(broker: Broker) -> None:
    """bash splits `svc:w` into three words; the completion must still match the whole
    name and reply with what follows the colon (what bash inserts after it)."""
    put(broker, "svc:web")
    ctl = binary("FDBROKERCTL")
    line = f"{ctl} --socket {broker.socket} get svc:w"
    replies, _ = complete(ctl, "--socket", broker.socket, "get", "svc", ":", "w", line=line)
    assert replies == ["web"]


def test_unreachable_broker_completes_nothing_quietly(broker: Broker) -> None:
    put(broker, "db")
    replies, stderr = complete(binary("FDBROKERCTL"), "--socket", broker.socket + ".missing", "get", "")
    assert (replies, stderr) == ([], "")


def test_options_and_their_values() -> None:
    ctl = binary("FDBROKERCTL")
    assert complete(ctl, "open", "/x", "--m")[0] == ["--mode"]
    assert complete(ctl, "open", "/x", "--mode", "")[0] == ["r", "w", "rw", "a"]
    assert complete(ctl, "put", "x", "--file", "/dev/null", "--mode", "")[0] == ["r", "w", "rw"]
    assert sorted(complete(ctl, "put", "x", "--e")[0]) == ["--expect-generation"]
    assert complete(ctl, "--j")[0] == ["--json"]
    # options of another command are not offered
    assert complete(ctl, "get", "x", "--b")[0] == []
    assert "--" in complete(ctl, "exec", "--get", "x", "--")[0]


def test_file_paths(tmp_path) -> None:
    (tmp_path / "broker.log").write_text("")
    ctl = binary("FDBROKERCTL")
    replies, _ = complete(ctl, "put", "x", "--file", str(tmp_path / "bro"))
    assert replies == [str(tmp_path / "broker.log")]


def test_loaded_on_demand_by_its_installed_name(tmp_path) -> None:
    """Installed as bash-completion/completions/fdbrokerctl under a data directory
    (what cmake --install does), bash-completion finds and loads it the first time
    fdbrokerctl is completed."""
    completions = tmp_path / "bash-completion" / "completions"
    completions.mkdir(parents=True)
    (completions / "fdbrokerctl").write_text(open(SCRIPT).read())
    body = f"""
source {shlex.quote(BASH_COMPLETION)}
XDG_DATA_DIRS={shlex.quote(str(tmp_path))}
complete -p fdbrokerctl 2>/dev/null && exit 1  # not loaded yet
__load_completion fdbrokerctl
complete -p fdbrokerctl
"""
    result = subprocess.run(["bash", "--norc", "--noprofile", "-c", body], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result
    assert result.stdout.strip() == "complete -F _fdbrokerctl fdbrokerctl"


def help_tables() -> dict[str, set[str]]:
    """From `fdbrokerctl --help`: each command's options ("" for the global ones):
    every --option its paragraph mentions."""
    text = subprocess.run([binary("FDBROKERCTL"), "--help"], capture_output=True, text=True, check=True).stdout
    commands_part, options_part = text.split("\nCommands:\n", 1)[1].split("\nOptions:\n", 1)
    tables: dict[str, set[str]] = {}
    command = None
    for line in commands_part.splitlines():
        if m := re.match(r"  ([a-z]+)\b", line):
            command = m.group(1)
            tables[command] = set()
        if command:
            tables[command] |= set(re.findall(r"--[a-z][a-z-]*", line))
    tables[""] = set(re.findall(r"^  (--[a-z][a-z-]*)", options_part, re.M))
    # A command's paragraph may name a global option ("json (as --json)"): that
    # one is offered everywhere already, not as the command's own.
    for command in tables:
        if command:
            tables[command] -= tables[""]
    return tables


def test_script_knows_what_help_prints() -> None:
    tables = help_tables()
    assert {"hello", "get", "put", "exec", "open", "upgrade"} <= tables.keys()
    assert "--timeout" in tables[""] and "--expect-generation" in tables["put"]
    script_commands = bash('echo "$_fdbrokerctl_commands"').stdout.split()
    assert sorted(script_commands) == sorted(c for c in tables if c)
    for command, options in tables.items():
        known = bash(f"_fdbrokerctl_options {shlex.quote(command)}").stdout.split()
        assert sorted(known) == sorted(options), command
