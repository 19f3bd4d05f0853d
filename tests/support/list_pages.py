# SPDX-License-Identifier: LGPL-2.1-or-later
"""A broker's whole `list`, page by page, for the harnesses that empty a broker
between tests (tests/python's fixture, the black-box fuzzer)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def names_to_delete(request: Callable[[dict[str, Any]], dict[str, Any]]) -> list[str]:
    """The name of every entry that is not static, following the list cursor 1000
    entries at a time. `request(message)` sends one request and returns its reply; a
    failed list raises ValueError with the reply."""
    cursor = None
    names: list[str] = []
    while True:
        message: dict[str, Any] = {"op": "list", "limit": 1000}
        if cursor:
            message["cursor"] = cursor
        reply = request(message)
        if not reply.get("ok"):
            raise ValueError(f"list failed: {reply}")
        names += [e["name"] for e in reply["entries"] if not e.get("static")]
        cursor = reply.get("cursor")
        if not cursor:
            return names
