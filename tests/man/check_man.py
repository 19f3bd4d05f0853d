#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""Checks the built man pages (docs/man), one check per invocation:

  check_man.py render PAGE
      PAGE formats without a warning, through groff -ww and through man-db.
  check_man.py options PAGE PROGRAM
      every --option that `PROGRAM --help` prints appears in PAGE, and every
      --option PAGE names is one the help prints (so that neither drifts).
  check_man.py config-keys PAGE CONFIG...
      every key of each CONFIG, at any depth except inside "meta" objects (a
      client's data), appears in PAGE. A CONFIG is JSON with // comments (the
      example configuration) or Markdown, whose ```json blocks are fragments of
      one (docs/configuration.md: `"files": [...]`).
"""

import json
import os
import re
import subprocess
import sys

OPTION = re.compile(r"(?<![\w-])--[a-z][a-z0-9-]*")


def fail(why):
    print(f"FAIL: {why}", file=sys.stderr)
    sys.exit(1)


def run(argv, env=None):
    return subprocess.run(argv, capture_output=True, text=True, env=env, check=False)


def page_text(page):
    """PAGE as plain text: one very long line per paragraph, no hyphenation, no
    overstriking, so that a word is never split."""
    r = run(["groff", "-Tascii", "-P-cbou", "-rLL=5000n", "-rHY=0", "-man", page])
    if r.returncode != 0 or r.stderr:
        fail(f"groff could not format {page}: {r.stderr}")
    return r.stdout


def render(page):
    problems = []
    r = run(["groff", "-ww", "-z", "-man", page])
    if r.returncode != 0 or r.stderr:
        problems.append(f"groff -ww -z -man {page} (status {r.returncode}):\n{r.stderr}")
    env = dict(os.environ, MANWIDTH="80", LC_ALL="C.UTF-8")
    r = run(["man", "--warnings", "-l", page], env=env)
    if r.returncode != 0 or r.stderr:
        problems.append(f"man --warnings -l {page} (status {r.returncode}):\n{r.stderr}")
    elif len(r.stdout.splitlines()) < 10:
        problems.append(f"man -l {page} printed almost nothing:\n{r.stdout}")
    if problems:
        fail("\n".join(problems))
    print(f"{page}: no warnings")


def options(page, program):
    r = run([program, "--help"])
    if r.returncode != 0:
        fail(f"{program} --help exited {r.returncode}: {r.stderr}")
    helped = set(OPTION.findall(r.stdout))
    if len(helped) < 3:
        fail(f"{program} --help names too few options to be its usage text: {sorted(helped)}")
    documented = set(OPTION.findall(page_text(page)))
    missing = sorted(helped - documented)
    invented = sorted(documented - helped)
    if missing:
        fail(f"{page} does not mention these options of {program} --help: {missing}")
    if invented:
        fail(f"{page} names options {program} --help does not print: {invented}")
    print(f"{page}: all {len(helped)} options of {os.path.basename(program)} --help, no others")


def strip_comments(text):
    """JSON with // and /* */ comments as plain JSON (strings kept whole)."""
    out, i, n = [], 0, len(text)
    while i < n:
        c = text[i]
        if c == '"':
            j = i + 1
            while j < n and text[j] != '"':
                j += 2 if text[j] == "\\" else 1
            out.append(text[i : j + 1])
            i = j + 1
        elif text.startswith("//", i):
            i = text.find("\n", i)
            i = n if i < 0 else i
        elif text.startswith("/*", i):
            i = text.find("*/", i + 2)
            i = n if i < 0 else i + 2
        else:
            out.append(c)
            i += 1
    return "".join(out)


def keys_of(value, found):
    if isinstance(value, dict):
        for k, v in value.items():
            found.add(k)
            if k != "meta":
                keys_of(v, found)
    elif isinstance(value, list):
        for v in value:
            keys_of(v, found)


def config_documents(path):
    with open(path, encoding="utf-8") as f:
        text = f.read()
    if not path.endswith(".md"):
        return [json.loads(strip_comments(text))]
    blocks = re.findall(r"^```json\n(.*?)^```", text, re.S | re.M)
    if not blocks:
        fail(f"{path} has no ```json block")
    return [json.loads("{" + strip_comments(b) + "}") for b in blocks]


def config_keys(page, configs):
    text = page_text(page)
    for config in configs:
        found = set()
        for doc in config_documents(config):
            keys_of(doc, found)
        if len(found) < 10:
            fail(f"{config} has too few keys to be a configuration: {sorted(found)}")
        missing = sorted(
            k for k in found if not re.search(rf"(?<![\w.-]){re.escape(k)}(?![\w-])", text)
        )
        if missing:
            fail(f"{page} does not describe these keys of {config}: {missing}")
        print(f"{page}: all {len(found)} keys of {config}")


def main(argv):
    if len(argv) == 3 and argv[1] == "render":
        render(argv[2])
    elif len(argv) == 4 and argv[1] == "options":
        options(argv[2], argv[3])
    elif len(argv) >= 4 and argv[1] == "config-keys":
        config_keys(argv[2], argv[3:])
    else:
        print(__doc__, file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main(sys.argv)
