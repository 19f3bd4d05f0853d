# SPDX-License-Identifier: LGPL-2.1-or-later
"""The README's Python example runs as written."""
import pathlib
import re

README = pathlib.Path(__file__).resolve().parents[2] / "README.md"


def readme_example(lang):
    text = README.read_text()
    match = re.search(r"<!-- example: %s -->\s*```%s\n(.*?)```" % (lang, lang), text, re.S)
    assert match, "README.md has no '<!-- example: %s -->' block" % lang
    return match.group(1)


def test_readme_python_example_runs():
    exec(compile(readme_example("python"), str(README), "exec"), {})
