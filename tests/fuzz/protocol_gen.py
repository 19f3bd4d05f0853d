# SPDX-License-Identifier: LGPL-2.1-or-later
"""What the protocol fuzzer sends: requests and the descriptors attached to them.

Every choice comes from the one random.Random the fuzzer was seeded with, so the
same seed gives the same messages in the same order. A request is generated
together with what the broker must answer to it (`Expect`), as far as that can be
told without knowing the broker's state: the exact error where the protocol fixes
it (EINVAL for a bad field, EACCES for a name the rules refuse, EPROTO for bytes
that are not JSON, EMSGSIZE above 65536 bytes, ...), the set of errors the state
may explain otherwise (ENOENT, EEXIST, ...), and nothing at all for mutated bytes
whose meaning is not known.
"""

from __future__ import annotations

import ctypes
import errno
import json
import math
import os
import random
import select
import socket
from dataclasses import dataclass
from typing import Any, Callable

MAX_MESSAGE = 65536
MAX_FDS = 253
MAX_ID_BYTES = 1024
MAX_META_DEPTH = 128
INT64_MAX = 2**63 - 1

NAME_CHARS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._:@/-"
# Names many requests share, so that puts, gets, takes and waits meet.
HOT_NAMES = ["f/a", "f/b", "f/c", "f/d", "f/e"]
# The configuration the harness writes (protocol_fuzz.py) gives the fuzzing uid:
#   f/        get take put delete      f/ro/   get only (put, take, delete denied)
#   f/deny    nothing                  w/      put (and, as owner, get take delete)
#   stats     allowed
# and declares static entries f/static (a file, under f/), s/file (a file) and
# s/sock (a listening unix socket), the last two with an access rule for get.
STATIC_NAMES = {"f/static": "file", "s/file": "file", "s/sock": "socket"}
OPS = ["hello", "get", "take", "put", "delete", "list", "stats", "open", "bind"]

# `open`: the tree the harness builds (protocol_fuzz.py make_tree) at <tree>, what is
# where (relative to <tree>), and its `files` rules for the fuzzing uid, in file order:
#   pub-deny  <tree>/pub  deny/**        deny read write create
#   pub-ro    <tree>/pub  **             allow read
#   pub-rw    <tree>/pub  rw/**          allow read write
#   spool     <tree>/spool s[0-7] dir lnk allow read write create, mode 0660
TREE_KINDS = {
    "pub": "dir", "pub/a.txt": "file", "pub/secret.key": "file", "pub/sub": "dir", "pub/sub/c.txt": "file",
    "pub/link": "symlink", "pub/fifo": "fifo", "pub/.hidden": "file", "pub/rw": "dir", "pub/rw/w.txt": "file",
    "pub/rw/hard": "hardlink", "pub/rw/sub": "dir", "pub/rw/link": "symlink", "pub/deny": "dir",
    "pub/deny/x.txt": "file", "spool": "dir", "spool/dir": "dir", "spool/lnk": "symlink", "other": "dir",
    "other/h.txt": "hardlink",
}
SPOOL_FILES = [f"s{i}" for i in range(8)]  # the only names a create may make: the spool stays small
SPOOL_MODE = 0o660
OPEN_PATHS = sorted(TREE_KINDS) + [f"spool/s{i}" for i in range(10)] + [
    "pub/missing", "pub/missing/x", "pub/sub/c.txt/x", "pub/link/x", "pub/fifo/x", "pub/rw/new", "pub/rw/sub/x",
    "pub/rw/link/x", "pub/deny/none", "pub/.hidden/x", "pub/sub/.x", "spool/S1", "spool/s", "spool/s10",
    "spool/s1/x", "spool/dir/x", "spool/lnk/x", "spool/.s1", "pub-evil/a.txt", "pub/\u00e9", "top.txt"]
# <tree>/plant belongs to the fuzzing uid, which plants files, symlinks (to
# /etc/shadow, out of the root, ...), directories, FIFOs and hard links in it while
# opens run (Fuzzer.act_plant), and has a rule there too:
#   plant     <tree>/plant p[0-3] p[0-3]/*  allow read write create, mode 0660
PLANT_NAMES = [f"p{i}" for i in range(4)]
PLANT_TARGETS = PLANT_NAMES + [f"{n}/x" for n in PLANT_NAMES]
PLANT_OUTCOMES = {"ok", "ENOENT", "EEXIST", "ELOOP", "EISDIR", "EOPNOTSUPP", "EACCES", "ENOTDIR"}
OPEN_PATHS += [f"plant/{t}" for t in PLANT_TARGETS] * 2 + ["plant/src", "plant/p4", "plant/p0/.x", "plant/p0/x/y"]
# `bind`: BIND_PORTS ports from the harness's free port LO on 127.0.0.1, rules in order:
#   tcp-deny tcp://127.0.0.1:LO+7 deny (users *), tcp-lo tcp://127.0.0.1:LO-LO+7,
#   udp-lo udp://127.0.0.1:LO-LO+7, tcp-lo-rp tcp://127.0.0.1:LO-LO+1 with reuseport.
BIND_PORTS = 8
OPEN_ERRORS_ANY = ("EAGAIN",)  # too many opens of this uid under way, or a rename race


def open_rule(rel: str, rights: set[str]) -> str | None:
    """The `files` rule that grants `rights` on <tree>/<rel>, or None (EACCES)."""
    segs = rel.split("/")
    rest = segs[1:]
    if not rest or any(s.startswith(".") for s in rest):
        return None  # the root itself, or a dot segment that no glob here matches
    if segs[0] == "pub":
        if rest[0] == "deny":
            return None  # deny/** matches deny itself too, and denies every right
        if rights <= {"read"}:
            return "pub-ro"
        if rights <= {"read", "write"} and rest[0] == "rw":
            return "pub-rw"
        return None
    if segs[0] == "plant" and rest[0] in PLANT_NAMES and len(rest) <= 2:
        return "plant"
    if segs[0] == "spool" and len(rest) == 1 and rest[0] in SPOOL_FILES + ["dir", "lnk"]:
        return "spool"
    return None


def open_outcomes(rel: str, create: bool, excl: bool, writes: bool) -> set[str]:
    """What the file system may answer to an open the rules grant: "ok" or errors."""
    segs = rel.split("/")
    if segs[0] == "plant":
        return set(PLANT_OUTCOMES)  # whatever the fuzzer planted
    for i in range(1, len(segs)):
        kind = TREE_KINDS.get("/".join(segs[:i]))
        if kind is None and "/".join(segs[:i]) in [f"spool/{n}" for n in SPOOL_FILES]:
            kind = "maybe-file"
        if kind is None:
            return {"ENOENT"}
        if kind == "symlink":
            return {"ELOOP"}
        if kind == "maybe-file":
            return {"ENOTDIR", "ENOENT"}
        if kind != "dir":
            return {"ENOTDIR"}
    kind = TREE_KINDS.get(rel)
    if rel in [f"spool/{n}" for n in SPOOL_FILES]:
        return {"ok", "EEXIST"} if excl else {"ok"} if create else {"ok", "ENOENT"}
    if kind is None:
        return {"ok"} if create else {"ENOENT"}
    if kind == "symlink":
        return {"EEXIST", "ELOOP"} if create and excl else {"ELOOP"}
    if kind == "dir":
        return {"EISDIR", "EEXIST"} if create else {"EISDIR"}
    if kind == "fifo":
        return {"EOPNOTSUPP"}
    if kind == "hardlink":
        return {"EACCES"} if writes else {"ok"}
    return {"ok"}


def parse_bind_url(text: str) -> tuple[str, str, str, int] | None:
    """(kind "tcp"/"udp", family "4"/"6", normal host, port) as the broker reads a
    bind address; None if it is not one (EINVAL)."""
    import ipaddress
    schemes = {"tcp://": ("tcp", False), "tcp6://": ("tcp", True), "udp://": ("udp", False),
               "udp6://": ("udp", True)}
    for scheme, (kind, six) in schemes.items():
        if text.startswith(scheme):
            rest = text[len(scheme):]
            break
    else:
        return None
    host, colon, port_text = rest.rpartition(":")
    if not colon or not (1 <= len(port_text) <= 5) or not port_text.isascii() or not port_text.isdigit():
        return None
    port = int(port_text)
    if port > 65535:
        return None
    bracketed = len(host) >= 2 and host[0] == "[" and host[-1] == "]"
    if bracketed:
        host = host[1:-1]
    elif ":" in host:
        return None
    inet6 = six or bracketed
    if host in ("", "*"):
        host = "::" if inet6 else "0.0.0.0"
    elif host == "localhost":
        host = "::1" if inet6 else "127.0.0.1"
    try:
        if inet6:
            host = str(ipaddress.IPv6Address(host)) if "%" not in host else host
        else:
            if host.count(".") != 3 or not all(p.isdigit() and len(p) <= 3 for p in host.split(".")):
                return None
            ipaddress.IPv4Address(host)
    except ValueError:
        return None
    return kind, "6" if inet6 else "4", host, port


def valid_prefix(s: str) -> bool:
    return len(s.encode("utf-8", "surrogatepass")) <= 255 and all(c in NAME_CHARS for c in s)


def valid_name(s: str) -> bool:
    return bool(s) and valid_prefix(s) and not any(seg in (".", "..") for seg in s.split("/"))


def visible_name(name: str) -> bool:
    """Whether the fuzzing uid may `get` an entry of this name (if it owns w/ ones)."""
    if name == "f/deny":
        return False
    return name.startswith("f/") or name.startswith("w/") or name in STATIC_NAMES


@dataclass
class Expect:
    """What a reply must be. `errors`: the errors it may carry; `ok`: whether success
    is allowed. ok=False with errors={...}: must fail with one of them. `anything`:
    only the generic checks apply (mutated bytes)."""

    anything: bool = False
    ok: bool = True
    errors: frozenset[str] = frozenset()

    @staticmethod
    def fail(*errors: str) -> "Expect":
        return Expect(ok=False, errors=frozenset(errors))

    @staticmethod
    def state(*errors: str) -> "Expect":
        return Expect(ok=True, errors=frozenset(errors))

    def describe(self) -> str:
        if self.anything:
            return "anything"
        parts = (["ok"] if self.ok else []) + sorted(self.errors)
        return " or ".join(parts) if parts else "nothing"


@dataclass
class Request:
    data: bytes
    label: str                      # "valid", "mutated:bitflip", "empty", ...
    expect: Expect
    op: str | None = None           # the operation, when the bytes are known to mean one
    name: str | None = None
    # id_mode: "exact" (the reply's id must equal id_value), "absent" (no id in the
    # reply), "any" (not known).
    id_mode: str = "any"
    id_value: Any = None
    wait_ms: int | None = None
    ttl_ms: int | None = None
    meta: Any = None
    prefix: str = ""
    limit: int = 100
    cursor: str | None = None
    replace: bool = False
    expect_generation: bool = False
    invalid: bool = False           # a field makes it EINVAL whatever else
    fixed: bool = False             # the outcome does not depend on descriptors (EPROTO, EMSGSIZE)
    nfds: int = 0                   # how many descriptors to attach
    optional_reply: bool = False    # set by the sender: an empty record before SHUT_WR
    # open and bind, when well-formed: what a success must show.
    path: str | None = None
    flags: frozenset[str] = frozenset()   # the open's flags, "rdonly" etc. included
    mode: int | None = None               # the create mode asked for
    address: str | None = None            # the canonical URL a bind's reply must give
    port: int = 0
    reuseport: bool = False
    rule: str | None = None               # the rule that must grant it
    op_expect: Expect | None = None       # open/bind without descriptors
    plants: int = -1                      # Fuzzer.plants when it was sent


def json_text_len(value: Any) -> int:
    """Length of `value` as nlohmann's dump() writes it (also the raw text of a plain
    string): UTF-8, control characters escaped, DEL and non-ASCII raw."""
    return len(json.dumps(value, ensure_ascii=False).encode("utf-8"))


class Gen:
    """Generates requests. Consumes the rng the same way whatever the broker does."""

    def __init__(self, rng: random.Random, uid: int, max_wait_ms: int, tree: str = "/nonexistent",
                 port_lo: int = 1) -> None:
        self.rng = rng
        self.tree = tree
        self.port_lo = port_lo
        self.uid = uid
        self.max_wait_ms = max_wait_ms
        self.seq = 0
        # The generation last seen for a name (0: none); the fuzzer sets it.
        self.generation_of: Callable[[str], int] = lambda name: 0

    # ------------------------------------------------------------ field values

    def rand_string(self, n: int, alphabet: str | None = None) -> str:
        r = self.rng
        if alphabet is None:
            alphabet = r.choice([NAME_CHARS, "abc", " \t\"\\/\x7f\u00e9\u4e2d\U0001f600\x00\x01\x1f",
                                 "".join(chr(c) for c in range(32, 127))])
        return "".join(r.choice(alphabet) for _ in range(n))

    def name(self) -> str:
        r = self.rng
        x = r.random()
        if x < 0.45:
            return r.choice(HOT_NAMES)
        if x < 0.55:
            return "f/" + self.rand_string(r.randint(1, 12), NAME_CHARS)
        if x < 0.62:
            return r.choice(["w/a", "w/b", "w/c"])
        if x < 0.74:
            return r.choice(["f/deny", "f/ro/a", "f/ro/b", "f/static", "s/file", "s/sock", "r/x", "x",
                             "web/http", "f", "f/", "/f/a", "f//a", "f/a/", "s/"])
        if x < 0.80:
            n = r.choice([254, 255, 256, 300, 1000])
            return "f/" + "n" * (n - 2)
        if x < 0.95:
            return r.choice(["", ".", "..", "f/..", "f/./a", "f/../f/a", "./f", "f/a b", "f/\u00e9",
                             "f/\x00", "f/a\x7f", "f/\n", "f/a\"", "f/a\\b", "f/*", "f/\U0001f600",
                             "f/a\x00b", "F/A", "f/%2e%2e"])
        return self.rand_string(r.randint(0, 20))

    def int_value(self, lo: int, hi: int) -> tuple[str, bool]:
        """(JSON text, in range [lo, hi] as the broker reads integers)."""
        r = self.rng
        x = r.random()
        if x < 0.6:
            v = r.choice([lo, lo + 1, r.randint(lo, min(hi, lo + 5000)), min(hi, 100), hi])
            return str(v), lo <= v <= hi
        choices = [
            (str(lo - 1), False), (str(hi), True), (str(hi + 1), False), ("-1", lo <= -1),
            (str(INT64_MAX), lo <= INT64_MAX <= hi), (str(INT64_MAX + 1), False),
            (str(2**64), False), ("1" + "0" * 40, False), ("1.0", False), ("1e3", False),
            ("0.5", False), ('"10"', False), ("true", False), ("null", False), ("[1]", False),
            ("{}", False), (str(-(2**63)), False), (str(r.randint(0, 10**12)), None),
        ]
        text, ok = r.choice(choices)
        if ok is None:
            ok = lo <= int(text) <= hi
        return text, ok

    def id_field(self) -> tuple[str | None, str, Any]:
        """(JSON text or None for no id, mode, value)."""
        r = self.rng
        self.seq += 1
        seq = self.seq
        x = r.random()
        if x < 0.45:
            return str(seq), "exact", seq
        if x < 0.6:
            v = f"r{seq}-" + self.rand_string(r.randint(0, 8), NAME_CHARS)
            return json.dumps(v), "exact", v
        if x < 0.65:
            return f"{seq}.50", "exact", seq + 0.5
        if x < 0.7:
            text = r.choice(["true", "false", "null"])
            return text, "exact", json.loads(text)
        if x < 0.75:
            return None, "absent", None
        if x < 0.82:
            # Around the 1024-byte bound, in a plain string or with characters that
            # JSON escapes (the bound counts the JSON text).
            n = r.choice([1021, 1022, 1023, 1024, 1025, r.randint(0, 3000)])
            filler = r.choice(["x", "\x7f", "\u00e9", "\x01", "\""])
            v = filler * n
            text = json.dumps(v, ensure_ascii=r.random() < 0.3)
            if json_text_len(v) <= MAX_ID_BYTES:
                return text, "exact", v
            return text, "absent-einval", v
        if x < 0.86:
            text = r.choice(["123456789012345678901234567890", "-0", "1e400", "-1e400", "1E-7", "-0.0",
                             "0.1e1", str(2**64), str(-(2**63)), "1" * 1024, "1" * 300, "1e-400", "2.5E+309"])
            if math.isinf(float(text)):
                return text, "absent-eproto", None  # no double holds it: not JSON to the broker
            return text, "number", json.loads(text)
        if x < 0.9:
            v = self.rand_string(r.randint(0, 40))
            if "\ud800" <= v[:1] <= "\udfff":
                v = "x" + v
            return json.dumps(v, ensure_ascii=r.random() < 0.5), "exact", v
        if x < 0.94:
            text = r.choice(["{}", "[]", "[1]", '{"a":1}', "[[[]]]"])
            return text, "absent-einval", None
        return str(seq), "exact", seq

    def meta(self) -> tuple[str, Any]:
        """(JSON text, value) of meta: an object (value None when too deep to compare),
        or something else (invalid)."""
        r = self.rng
        x = r.random()
        if x < 0.4:
            v: Any = {"k": r.randint(0, 1000), "s": self.rand_string(r.randint(0, 20))}
        elif x < 0.5:
            v = {}
        elif x < 0.6:
            v = {"nested": {"a": [1, 2.5, None, True, {"b": "\u00e9\x7f"}]}, "dup": 1}
        elif x < 0.7:
            # Nesting: meta may be 128 levels deep (itself included), EINVAL beyond.
            depth = r.choice([10, 100, 126, 127, 128, 1000, 5000, 20000])
            inner = r.choice([("[", "]"), ('{"a":', "}")])
            text = '{"deep":' + inner[0] * depth + "0" + inner[1] * depth + "}"
            return text, None if depth + 1 > MAX_META_DEPTH else json.loads(text)
        elif x < 0.8:
            v = {"big": "x" * r.choice([100, 1000, 30000, 60000, 63000, 64000, 65400])}
        elif x < 0.85:
            return '{"a":1,"a":2}', {"a": 2}
        elif x < 0.9:
            return r.choice(['"meta"', "[]", "1", "null", "true"]), None
        else:
            v = {self.rand_string(r.randint(0, 5)): self.rand_string(r.randint(0, 5)) for _ in range(r.randint(0, 20))}
        return json.dumps(v, ensure_ascii=r.random() < 0.5), v

    # ------------------------------------------------------------ open and bind

    def open_path(self) -> tuple[str, str | None, bool]:
        """(path, its part below the tree or None if outside it, well-formed)."""
        r = self.rng
        x = r.random()
        if x < 0.8:
            rel = r.choice(OPEN_PATHS)
            return f"{self.tree}/{rel}", rel, True
        if x < 0.86:
            p = r.choice(["/etc/passwd", "/etc/shadow", "/proc/self/status", "/dev/null", self.tree,
                          self.tree + "-evil/pub/a.txt", "/" + self.rand_string(r.randint(1, 20), NAME_CHARS[:-2])])
            return p, None, True
        if x < 0.89:
            # Around the 4096-byte bound, in segments the kernel takes (a missing directory).
            n = r.choice([4095, 4096, 4096, 4097, 5000])
            head = f"{self.tree}/pub/"
            body = "/".join(["d" * 200] * 30)[: n - len(head)]
            body = body.rstrip("/")
            p = head + body
            while len(p.encode()) < n:
                p += "e"
            return p, (p[len(self.tree) + 1:] if len(p.encode()) <= 4096 else None), len(p.encode()) <= 4096
        if x < 0.91:
            seg = "n" * r.choice([255, 256, 300])
            return f"{self.tree}/pub/{seg}", "pub/" + seg, True
        rel = r.choice(OPEN_PATHS)
        bad = r.choice([
            rel, "", "/", "//", f"{self.tree}/{rel}/", f"{self.tree}//{rel}", f"{self.tree}/./{rel}",
            f"{self.tree}/pub/../{rel}", f"{self.tree}/{rel}/.", f"{self.tree}/{rel}/..", f"{self.tree}/pub/a\x01",
            f"{self.tree}/pub/a\x7f", f"{self.tree}/pub/\n", f"{self.tree}/pub/a\x1f.txt", "./" + rel,
            f"{self.tree}/pub/a.txt\x00", "~/x"])
        return bad, None, False

    FLAG_WORDS = ["rdonly", "wronly", "rdwr", "append", "create", "excl", "trunc", "nonblock"]

    def open_fields(self, req: Request, fields: list[tuple[str, str]]) -> bool:
        """Adds path, flags, mode; sets what a reply must be. Returns: malformed."""
        r = self.rng
        invalid = False
        path, rel, ok = self.open_path()
        x = r.random()
        if x < 0.97:
            fields.append(("path", json.dumps(path, ensure_ascii=r.random() < 0.5)))
        elif x < 0.99:
            fields.append(("path", r.choice(["1", "null", "[]", "true", json.dumps([path])])))
            ok = False
        else:
            ok = False  # missing
        invalid |= not ok
        req.path = path
        # Flags: creates mostly where they can be made.
        creating = rel is not None and rel.startswith(("spool/", "plant/")) and r.random() < 0.6
        x = r.random()
        flags: list[str]
        if x < 0.15:
            flags = ["rdonly"]
            text = None  # absent: the default
        elif x < 0.9:
            access = r.choice(["rdonly", "rdonly", "wronly", "rdwr"])
            flags = [access] + [f for f in ("append", "create", "excl", "trunc", "nonblock")
                                if r.random() < (0.5 if creating and f in ("create", "trunc") else 0.12)]
            if creating and "create" not in flags and r.random() < 0.7:
                flags.append("create")
            if r.random() < 0.8:
                # Mostly well-formed: no excl without create, no trunc or append read-only.
                flags = [f for f in flags if not (f == "excl" and "create" not in flags)
                         and not (f in ("trunc", "append") and access == "rdonly")]
            if r.random() < 0.05:
                flags.append(access)  # the same access twice: fine
            r.shuffle(flags)
            text = json.dumps(flags)
        elif x < 0.96:
            flags = r.choice([[], ["rdonly", "wronly"], ["rdwr", "rdonly"], ["RDONLY"], ["read"], ["create"],
                              ["rdonly", "excl"], ["rdonly", "trunc"], ["wronly", "excl"], ["rdonly", "o_cloexec"],
                              ["rdonly", ""], ["rdonly", "create", "x"]])
            text = json.dumps(flags)
        else:
            flags = []
            text = r.choice(['"rdonly"', "null", "1", '["rdonly", 1]', '[["rdonly"]]', '{"rdonly":true}'])
            invalid = True
        if text is not None:
            fields.append(("flags", text))
        access = [f for f in flags if f in ("rdonly", "wronly", "rdwr")]
        well = (len(set(access)) == 1 and all(f in self.FLAG_WORDS for f in flags)
                and ("excl" not in flags or "create" in flags)
                and (not {"trunc", "append"} & set(flags) or access[0] != "rdonly"))
        invalid |= not well
        # Mode: only with create; "0" to "0777" in at most 4 octal digits.
        mode = None
        if r.random() < (0.5 if "create" in flags else 0.05):
            mtext = r.choice(["0640", "0777", "0600", "644", "0", "0020", "7", "0666"] * 3 +
                             ["0778", "01000", "00777", "8", "", "0o644", "-1", "0x1ff", " 0644", "\u0030"])
            if r.random() < 0.05:
                fields.append(("mode", r.choice(["420", "null", "true", "[]"])))
                invalid = True
            else:
                fields.append(("mode", json.dumps(mtext)))
                good = 1 <= len(mtext) <= 4 and all(c in "01234567" for c in mtext) and int(mtext, 8) <= 0o777
                invalid |= not good or "create" not in flags
                mode = int(mtext, 8) if good else None
        req.mode = mode
        req.flags = frozenset(flags)
        if invalid:
            req.op_expect = Expect.fail("EINVAL")
            return True
        rights = set()
        if "rdonly" in flags or "rdwr" in flags:
            rights.add("read")
        if "wronly" in flags or "rdwr" in flags or "trunc" in flags or "append" in flags:
            rights.add("write")
        if "create" in flags:
            rights.add("create")
        rule = open_rule(rel, rights) if rel is not None else None
        if rule is None:
            req.op_expect = Expect.fail("EACCES")
            return False
        req.rule = rule
        outcomes = open_outcomes(rel, "create" in flags, "excl" in flags, "write" in rights)
        if any(len(seg.encode()) > 255 for seg in rel.split("/")):
            outcomes.add("ENAMETOOLONG")  # the kernel's answer (not in docs/protocol.md's list)
        errors = (outcomes - {"ok"}) | set(OPEN_ERRORS_ANY)
        req.op_expect = Expect(ok="ok" in outcomes, errors=frozenset(errors))
        return False

    def bind_fields(self, req: Request, fields: list[tuple[str, str]]) -> bool:
        """Adds address, backlog, reuseport; sets what a reply must be. Returns: malformed."""
        r = self.rng
        lo = self.port_lo
        x = r.random()
        scheme = r.choice(["tcp://"] * 5 + ["udp://"] * 4 + ["tcp6://", "udp6://"]) if x < 0.93 else \
            r.choice(["TCP://", "http://", "unix:", "unix://", "sctp://", "tcp:/", "tcp:", "", "udp4://"])
        x = r.random()
        host = "127.0.0.1" if x < 0.85 else r.choice(
            ["localhost", "*", "", "0.0.0.0", "127.0.0.2", "[::1]", "[::ffff:127.0.0.1]", "127.1", "::1",
             "host.example", "[127.0.0.1]", "[::]", "127.0.0.1 ", "1.2.3.4.5", "[::1"])
        x = r.random()
        if x < 0.88:
            port = str(lo + r.randint(-1, BIND_PORTS))
        else:
            port = r.choice(["0", "00", "65535", "65536", "-1", "", "+1", "99999", "1e3", " 80",
                             str(lo) + "x", "0" + str(lo), str(lo) + "-" + str(lo + 1)])
        if scheme in ("tcp6://", "udp6://") and r.random() < 0.8:
            host = r.choice(["[::1]", "[::]", "*", "[::ffff:127.0.0.1]"])
        address = scheme + host + ":" + port
        if scheme == "unix:" and r.random() < 0.5:
            address = r.choice(["unix:/tmp/fdbroker-fuzz-bind.sock", "unix:@fuzz", "unix:"])
        invalid = False
        x = r.random()
        if x < 0.96:
            fields.append(("address", json.dumps(address)))
        elif x < 0.985:
            fields.append(("address", r.choice(["1", "null", "[]", '{"host":"x"}', json.dumps([address])])))
            invalid = True
        elif x < 0.99:
            fields.append(("address", json.dumps("tcp://127.0.0.1:" + "1" * 300)))
            invalid = True
        else:
            invalid = True  # missing
        if r.random() < 0.2:
            text, ok = self.int_value(1, 65535)
            fields.append(("backlog", text))
            invalid |= not ok
        reuseport = False
        if r.random() < 0.3:
            v = r.choice(["true", "false", "true"]) if r.random() < 0.85 else r.choice(["1", '"true"', "null", "0"])
            fields.append(("reuseport", v))
            invalid |= v not in ("true", "false")
            reuseport = v == "true"
        req.reuseport = reuseport
        parsed = parse_bind_url(address) if len(address.encode()) <= 256 else None
        if invalid or parsed is None or parsed[3] == 0:
            req.op_expect = Expect.fail("EINVAL")
            return True
        kind, family, host_norm, port_n = parsed
        rule = None
        if family == "4" and host_norm == "127.0.0.1" and lo <= port_n < lo + BIND_PORTS:
            if kind == "tcp":
                if port_n == lo + BIND_PORTS - 1:
                    rule = None  # tcp-deny
                elif reuseport:
                    rule = "tcp-lo-rp" if port_n <= lo + 1 else None
                else:
                    rule = "tcp-lo"
            elif not reuseport:
                rule = "udp-lo"
        if rule is None:
            req.op_expect = Expect.fail("EACCES")
            return False
        req.rule, req.port = rule, port_n
        req.address = f"{kind}://127.0.0.1:{port_n}"
        req.op_expect = Expect.state("EADDRINUSE")
        return False

    def open_request(self) -> Request:
        """An open with an id, mostly well-formed (for act_opens)."""
        self.seq += 1
        fields = [("op", '"open"'), ("id", str(self.seq))]
        req = Request(b"", "opens", Expect(), op="open", id_mode="exact", id_value=self.seq)
        invalid = self.open_fields(req, fields)
        req.data = self.render(fields)
        req.invalid = invalid
        req.expect = self.expectation(req, invalid, 0)
        return req

    # ------------------------------------------------------------ requests

    def key_text(self, key: str) -> str:
        """A key, sometimes with needless escapes (same key once decoded)."""
        if self.rng.random() < 0.05:
            return '"' + "".join(f"\\u{ord(c):04x}" if self.rng.random() < 0.5 else c for c in key) + '"'
        return json.dumps(key)

    def render(self, fields: list[tuple[str, str]]) -> bytes:
        r = self.rng
        sep = r.choice([",", ", ", ",\n  ", " ,"])
        colon = r.choice([":", ": ", " : "])
        body = sep.join(f"{self.key_text(k)}{colon}{v}" for k, v in fields)
        lead, trail = r.choice([("{", "}"), ("{ ", " }"), (" {", "}\n"), ("\n{\n", "\n}")])
        return (lead + body + trail).encode("utf-8", "surrogatepass")

    def valid(self) -> Request:
        """A request that is well-formed JSON, with random field values, and its
        expected outcome."""
        r = self.rng
        op = r.choice(OPS + ["get", "put", "take", "get", "put", "delete"])
        fields: list[tuple[str, str]] = []
        req = Request(b"", "valid", Expect(), op=op)
        invalid = False  # some field makes it EINVAL
        id_text, mode, value = self.id_field()
        if id_text is not None:
            fields.append(("id", id_text))
        proto_error = mode == "absent-eproto"
        if mode == "absent-einval":
            req.id_mode = "absent"
            invalid = True
        elif proto_error:
            req.id_mode = "absent"
        elif mode == "number":
            req.id_mode, req.id_value = "number", value
        else:
            req.id_mode, req.id_value = mode, value

        x = r.random()
        if x < 0.92:
            fields.append(("op", json.dumps(op, ensure_ascii=r.random() < 0.8)))
        elif x < 0.95:
            bad = r.choice(["GET", "upgrade ", "nop", "", "get\x00", self.rand_string(r.randint(1, 50))])
            if bad == "upgrade":
                bad = "upgrade!"
            fields.append(("op", json.dumps(bad)))
            req.op = None
            invalid = True
        elif x < 0.97:
            fields.append(("op", r.choice(["1", "null", "true", "[]", '{"op":"get"}'])))
            req.op = None
            invalid = True
        else:
            req.op = None
            invalid = True  # no op at all

        nfds = 0
        if op in ("get", "take", "delete", "put"):
            if r.random() < 0.97:
                name = self.name()
                fields.append(("name", json.dumps(name, ensure_ascii=r.random() < 0.5)))
                req.name = name
                if not valid_name(name):
                    invalid = True
            else:
                fields.append(("name", r.choice(["1", "null", "[]", '{"n":"f/a"}'])))
                invalid = True
        if op in ("get", "take"):
            if r.random() < 0.35:
                text, ok = self.int_value(0, INT64_MAX)
                if ok:
                    wait = int(text)
                    # Mostly short waits, so that they end during the run.
                    if r.random() < 0.8 and wait > 3000:
                        wait = r.choice([1, 20, 150, 600, 2500])
                        text = str(wait)
                    req.wait_ms = wait
                invalid |= not ok
                fields.append(("wait_ms", text))
        if op == "put":
            if r.random() < 0.3:
                text, ok = self.int_value(1, INT64_MAX)
                if ok:
                    req.ttl_ms = int(text)
                invalid |= not ok
                fields.append(("ttl_ms", text))
            if r.random() < 0.4:
                v = r.choice(["true", "false", "true", "1", '"yes"', "null"])
                fields.append(("replace", v))
                invalid |= v not in ("true", "false")
                req.replace = v == "true"
            if r.random() < 0.2:
                x = r.random()
                if x < 0.4:
                    # The generation last seen for the name (from the broker's replies,
                    # so the value depends on the run, not only on the seed).
                    text, ok = str(self.generation_of(req.name or "")), True
                elif x < 0.6:
                    text, ok = "0", True
                else:
                    text, ok = self.int_value(0, INT64_MAX)
                fields.append(("expect_generation", text))
                invalid |= not ok
                req.expect_generation = True
            if r.random() < 0.5:
                text, value = self.meta()
                fields.append(("meta", text))
                req.meta = value
                if not text.startswith("{") or value is None:
                    invalid = True
            x = r.random()
            nfds = 0 if x < 0.04 else r.randint(1, 4) if x < 0.85 else r.randint(5, 40) if x < 0.95 else r.randint(200, MAX_FDS)
        elif r.random() < 0.06:
            nfds = r.choice([1, 2, r.randint(1, MAX_FDS)])
        if op == "open":
            invalid |= self.open_fields(req, fields)
        if op == "bind":
            invalid |= self.bind_fields(req, fields)
        if op == "list":
            if r.random() < 0.6:
                p = r.choice(["", "f/", "f/a", "w/", "s/", "f/ro/", "zz", "f/../", "f/\u00e9", "f/" + "p" * 254])
                fields.append(("prefix", json.dumps(p) if r.random() < 0.95 else "1"))
                req.prefix = p
                invalid |= not valid_prefix(p) or fields[-1][1] == "1"
            if r.random() < 0.5:
                text, ok = self.int_value(1, 1000)
                fields.append(("limit", text))
                invalid |= not ok
                if ok:
                    req.limit = int(text)
            if r.random() < 0.2:
                c = r.choice(["f/a", "f/c", "", "..", "w/"])
                fields.append(("cursor", json.dumps(c)))
                invalid |= not valid_name(c)
                req.cursor = c
        if r.random() < 0.1:
            # Fields the broker does not know are ignored; some share a prefix with known ones.
            fields.append((r.choice(["x", "names", "opx", "wait", "Op", "ID", "meta2", "binary"]),
                           r.choice(["1", '"v"', "null", "[1,2]", '{"a":{}}'])))
        if r.random() < 0.5:
            r.shuffle(fields)
        if r.random() < 0.05 and fields:
            # A duplicate key: the last one counts, so the harmless one goes first.
            k, _ = r.choice(fields)
            fields.insert(0, (k, {"op": '"hello"', "id": "0", "name": '"f/zz"'}.get(k, "null")))
        req.data = self.render(fields)
        req.nfds = nfds
        req.invalid, req.fixed = invalid, proto_error
        req.expect = Expect.fail("EPROTO") if proto_error else self.expectation(req, invalid, nfds)
        self.expect_bytes(req)
        return req

    def expectation(self, req: Request, invalid: bool, nfds: int) -> Expect:
        op, name = req.op, req.name
        if invalid:
            return Expect.fail("EINVAL")
        if nfds > 0 and op != "put":
            return Expect.fail("EINVAL")
        if op == "put" and nfds == 0:
            return Expect.fail("EINVAL")
        if op in ("hello", "stats", "list"):
            return Expect()
        if op in ("open", "bind"):
            assert req.op_expect is not None
            return req.op_expect
        assert name is not None
        waits = req.wait_ms is not None and req.wait_ms > 0
        miss = "ETIMEDOUT" if waits else "ENOENT"
        if name == "f/deny" or not (name.startswith("f/") or name.startswith("w/") or name in STATIC_NAMES):
            return Expect.fail("EACCES")
        if name in ("s/file", "s/sock"):
            return Expect() if op == "get" else Expect.fail("EACCES")
        if name.startswith("f/ro/") and op != "get":
            return Expect.fail("EACCES")
        if name == "f/static":
            return Expect() if op == "get" else Expect.fail("EPERM")
        if name.startswith("w/"):
            if op == "put":
                return self.put_errors(req)
            return Expect.state("EACCES")  # only an entry the uid put itself
        if op in ("get", "take"):
            return Expect.state(miss)
        if op == "delete":
            return Expect.state("ENOENT")
        return self.put_errors(req)

    def with_fds(self, req: Request) -> Expect:
        """The expectation once req.nfds changed: parse errors come first, then
        descriptors on an operation that takes none (or none on a put) are EINVAL."""
        if req.expect.anything or req.fixed:
            return req.expect
        if req.op is None:
            return Expect.fail("EINVAL")
        return self.expectation(req, req.invalid, req.nfds)

    def put_errors(self, req: Request) -> Expect:
        errors = {"EDQUOT", "ENOSPC", "EMSGSIZE"}
        if req.expect_generation:
            errors.add("ESTALE")
        elif not req.replace:
            errors.add("EEXIST")
        return Expect.state(*errors)

    # ------------------------------------------------------------ mutations

    INTERESTING = [b"\x00", b"\x7f", b"\x80", b"\xff", b"\xc0\xaf", b"\xed\xa0\x80", b"\xf4\x90\x80\x80",
                   b"\xe2\x82", b"\\u0000", b"\\ud800", b"\\udc00x", b"\\", b'"', b"{", b"[", b"]}",
                   b"\xef\xbb\xbf", b",", b":", b"\t", b"\\u007f", b"\x7f" * 64, b"}", b"1e999", b"-",
                   b"/*c*/", b"\\x41", b"\r\n"]

    def mutate(self, base: Request) -> Request:
        r = self.rng
        data = bytearray(base.data)
        kinds = []
        for _ in range(r.choice([1, 1, 1, 2, 3])):
            kind = r.choice(["bitflip", "byte", "truncate", "insert", "delete", "dupspan", "dupkey",
                             "nest", "wrap", "trail", "pad"])
            kinds.append(kind)
            n = len(data)
            pos = r.randint(0, n)
            if kind == "bitflip" and n:
                for _ in range(r.randint(1, 4)):
                    i = r.randrange(n)
                    data[i] ^= 1 << r.randrange(8)
            elif kind == "byte" and n:
                data[r.randrange(n)] = r.choice([0, 0x7F, 0x80, 0xFF, 0x22, 0x5C, 0x7B, 0x7D, 0x2C, 0x3A, 0x20])
            elif kind == "truncate":
                del data[pos:]
            elif kind == "insert":
                data[pos:pos] = r.choice(self.INTERESTING)
            elif kind == "delete" and n:
                del data[pos:pos + r.randint(1, 10)]
            elif kind == "dupspan" and n:
                span = bytes(data[pos:pos + r.randint(1, 30)])
                data[pos:pos] = span * r.randint(1, 50)
            elif kind == "dupkey":
                i = data.find(b"{")
                if i >= 0:
                    data[i + 1:i + 1] = r.choice([b'"op":"hello",', b'"id":1,', b'"name":"f/a",', b'"op":1,',
                                                  b'"wait_ms":1,', b'"meta":{},'])
            elif kind == "nest":
                depth = r.choice([50, 1000, 10000, 30000])
                o, c = r.choice([(b"[", b"]"), (b'{"a":', b"}")])
                data[pos:pos] = o * depth + c * depth
            elif kind == "wrap":
                data[:0], data[len(data):] = b"[", b"]"
            elif kind == "trail":
                data += r.choice([b"x", b"{}", b"\x00", b" ", b"}"])
            elif kind == "pad":
                target = r.choice([MAX_MESSAGE - 1, MAX_MESSAGE, MAX_MESSAGE + 1, r.randint(1, 70000)])
                if len(data) < target:
                    data[pos:pos] = b" " * (target - len(data))
        req = Request(bytes(data), "mutated:" + "+".join(kinds), Expect(anything=True), nfds=base.nfds)
        self.expect_bytes(req)
        return req

    def expect_bytes(self, req: Request) -> None:
        """What is known of any bytes: too long, a NUL, or not UTF-8."""
        data = req.data
        if not data:
            req.expect, req.id_mode, req.fixed = Expect.fail("EPROTO"), "absent", True
        elif len(data) > MAX_MESSAGE:
            req.expect, req.id_mode, req.fixed = Expect.fail("EMSGSIZE"), "absent", True
        elif b"\x00" in data:
            req.expect, req.id_mode, req.fixed = Expect.fail("EPROTO"), "absent", True
        else:
            try:
                data.decode("utf-8")
            except UnicodeDecodeError:
                req.expect, req.id_mode, req.fixed = Expect.fail("EPROTO"), "absent", True

    def special(self) -> Request:
        """Messages at the edges: empty, exactly at and around the size limit, an unknown
        op that would be echoed, non-objects."""
        r = self.rng
        self.seq += 1
        seq = self.seq
        kind = r.choice(["empty", "empty", "size", "size", "size", "bigop", "bigop", "nonobject", "deep",
                         "biglist", "huge", "ws"])
        if kind == "empty":
            return Request(b"", "empty", Expect.fail("EPROTO"), id_mode="absent", fixed=True)
        if kind == "size":
            target = r.choice([MAX_MESSAGE - 1, MAX_MESSAGE, MAX_MESSAGE, MAX_MESSAGE + 1, MAX_MESSAGE + 2])
            op = r.choice(["hello", "get"])
            head = f'{{"op":"{op}","id":{seq},' + ('"name":"f/a",' if op == "get" else "") + '"pad":"'
            filler = r.choice(["x", "\x7f"])
            data = (head + filler * (target - len(head) - 2) + '"}').encode()
            assert len(data) == target
            if target > MAX_MESSAGE:
                return Request(data, f"size:{target}", Expect.fail("EMSGSIZE"), id_mode="absent", fixed=True)
            expect = Expect() if op == "hello" else Expect.state("ENOENT")
            return Request(data, f"size:{target}", expect, op=op, name="f/a" if op == "get" else None,
                           id_mode="exact", id_value=seq)
        if kind == "bigop":
            # An unknown op full of characters that JSON escapes into six bytes each.
            target = r.choice([200, 11000, 20000, 40000, MAX_MESSAGE])
            head = f'{{"id":{seq},"op":"'
            filler = r.choice(["\x7f", "\x7f", "x", "\\u0001", "\u00e9"])
            count = (target - len(head) - 2) // len(filler.encode())
            data = (head + filler * count + '"}').encode()
            return Request(data, f"bigop:{len(data)}", Expect.fail("EINVAL"), id_mode="exact", id_value=seq,
                           invalid=True)
        if kind == "nonobject":
            data = r.choice([b"[]", b"null", b"1", b'"op"', b"[{\"op\":\"hello\"}]", b"{", b"}", b" ",
                             b"\n", b"{}{}", b'{"op":"hello"} x'])
            return Request(data, "nonobject", Expect.fail("EPROTO"), id_mode="absent", fixed=True)
        if kind == "deep":
            depth = r.choice([100, 1000, 10000, 32000])
            data = (b'{"op":"hello","id":%d,"x":' % seq) + b"[" * depth + b"]" * depth + b"}"
            if len(data) > MAX_MESSAGE:
                return Request(data, "deep", Expect.fail("EMSGSIZE"), id_mode="absent", fixed=True)
            return Request(data, f"deep:{depth}", Expect(), op="hello", id_mode="exact", id_value=seq)
        if kind == "biglist":
            data = b'{"op":"list","id":%d,"limit":1000}' % seq
            return Request(data, "biglist", Expect(), op="list", id_mode="exact", id_value=seq, limit=1000)
        if kind == "huge":
            data = b'{"op":"hello","pad":"' + b"y" * r.choice([70000, 150000]) + b'"}'
            return Request(data, "huge", Expect.fail("EMSGSIZE"), id_mode="absent", fixed=True)
        # Whitespace only, or an object with whitespace around.
        data = r.choice([b" " * 10, b"\t\n\r ", b' \n{ "op" : "hello" , "id" : %d }\n ' % seq])
        if b"{" in data:
            return Request(data, "ws", Expect(), op="hello", id_mode="exact", id_value=seq)
        return Request(data, "ws", Expect.fail("EPROTO"), id_mode="absent", fixed=True)

    def request(self) -> Request:
        x = self.rng.random()
        if x < 0.70:
            return self.valid()
        if x < 0.93:
            return self.mutate(self.valid())
        return self.special()


# ---------------------------------------------------------------- descriptors

_libc = ctypes.CDLL(None, use_errno=True)
O_CLOEXEC = 0o2000000


def _check(fd: int) -> int:
    if fd < 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e))
    return fd


def new_socket(family: int, type_: int, address: Any = None, backlog: int | None = None) -> int:
    """A socket's fd (ours to close): bound to `address` if one is given, listening
    with `backlog` if one is given."""
    s = socket.socket(family, type_)
    if address is not None:
        s.bind(address)
    if backlog is not None:
        s.listen(backlog)
    return s.detach()


class FdPool:
    """Descriptors of every kind, made by the fuzzing uid, to attach to requests.
    Never anything on a FUSE file system (another test covers those)."""

    KINDS = ["file_r", "file_w", "file_rw", "file_append", "file_weird", "dir", "opath_file", "opath_dir",
             "opath_sock", "pipe", "unix_stream", "unix_dgram", "unix_seqpacket", "unix_bound", "unix_abstract",
             "unix_listen", "tcp_listen", "tcp_unbound", "udp_bound", "tcp6_listen", "memfd", "memfd_weird",
             "epoll", "eventfd", "pidfd", "inotify", "timerfd", "signalfd", "devnull", "broker_conn",
             "unix_inflight", "proc_file"]

    def __init__(self, rng: random.Random, files_dir: str, broker_path: str, size: int = 48) -> None:
        self.rng = rng
        self.dir = files_dir
        self.broker_path = broker_path
        self.items: list[tuple[str, int]] = []
        self.serial = 0
        for _ in range(size):
            self.add(rng.choice(self.KINDS))

    def path(self, suffix: str = "") -> str:
        self.serial += 1
        return os.path.join(self.dir, f"f{self.serial}{suffix}")

    def add(self, kind: str) -> None:
        for k, fd in self.make(kind):
            self.items.append((k, fd))

    def make(self, kind: str) -> list[tuple[str, int]]:
        r = self.rng
        try:
            return self._make(kind, r)
        except OSError:
            # What this uid cannot make (e.g. no IPv6): a plain pipe instead.
            a, b = os.pipe2(os.O_CLOEXEC)
            return [("pipe", a), ("pipe", b)]

    def _make(self, kind: str, r: random.Random) -> list[tuple[str, int]]:
        flags = os.O_CLOEXEC | os.O_CREAT
        if kind == "file_r":
            p = self.path()
            open(p, "w").close()
            return [(kind, os.open(p, os.O_RDONLY | os.O_CLOEXEC))]
        if kind == "file_w":
            return [(kind, os.open(self.path(), os.O_WRONLY | flags, 0o600))]
        if kind == "file_rw":
            return [(kind, os.open(self.path(), os.O_RDWR | flags, 0o600))]
        if kind == "file_append":
            return [(kind, os.open(self.path(), os.O_WRONLY | os.O_APPEND | flags, 0o600))]
        if kind == "file_weird":
            # A path that is not UTF-8 and holds characters JSON must escape.
            self.serial += 1
            name = r.choice([b"\xff\xfe", b'q"uote\\', b"new\nline", b"\x7f\x01", b"\xc3\xa9", b"sp ace", b"%s"])
            p = os.path.join(self.dir.encode(), b"w%d" % self.serial + name)
            return [(kind, os.open(p, os.O_RDWR | flags, 0o600))]
        if kind == "dir":
            return [(kind, os.open(self.dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC))]
        if kind == "opath_file":
            p = self.path()
            open(p, "w").close()
            return [(kind, os.open(p, os.O_PATH | os.O_CLOEXEC))]
        if kind == "opath_dir":
            return [(kind, os.open(r.choice([self.dir, "/", "/proc"]), os.O_PATH | os.O_CLOEXEC))]
        if kind == "opath_sock":
            p = self.path(".sock")
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.bind(p)
            fd = os.open(p, os.O_PATH | os.O_CLOEXEC)
            s.close()
            return [(kind, fd)]
        if kind == "pipe":
            a, b = os.pipe2(os.O_CLOEXEC | (os.O_NONBLOCK if r.random() < 0.5 else 0))
            return [("pipe_r", a), ("pipe_w", b)]
        if kind in ("unix_stream", "unix_dgram", "unix_seqpacket"):
            t = {"unix_stream": socket.SOCK_STREAM, "unix_dgram": socket.SOCK_DGRAM,
                 "unix_seqpacket": socket.SOCK_SEQPACKET}[kind]
            a, b = socket.socketpair(socket.AF_UNIX, t)
            return [(kind, a.detach()), (kind, b.detach())]
        if kind == "unix_bound":
            return [(kind, new_socket(socket.AF_UNIX, socket.SOCK_DGRAM, self.path(".sock")))]
        if kind == "unix_abstract":
            address = b"\0fdbroker-fuzz-%d-%d" % (os.getpid(), self.serial)
            self.serial += 1
            type_ = r.choice([socket.SOCK_STREAM, socket.SOCK_DGRAM])
            return [(kind, new_socket(socket.AF_UNIX, type_, address))]
        if kind == "unix_listen":
            type_ = r.choice([socket.SOCK_STREAM, socket.SOCK_SEQPACKET])
            return [(kind, new_socket(socket.AF_UNIX, type_, self.path(".sock"), backlog=4))]
        if kind == "tcp_listen":
            return [(kind, new_socket(socket.AF_INET, socket.SOCK_STREAM, ("127.0.0.1", 0), backlog=8))]
        if kind == "tcp_unbound":
            return [(kind, new_socket(socket.AF_INET, socket.SOCK_STREAM))]
        if kind == "udp_bound":
            return [(kind, new_socket(socket.AF_INET, socket.SOCK_DGRAM, ("127.0.0.1", 0)))]
        if kind == "tcp6_listen":
            return [(kind, new_socket(socket.AF_INET6, socket.SOCK_STREAM, ("::1", 0), backlog=1))]
        if kind == "memfd":
            return [(kind, os.memfd_create(f"fuzz{self.serial}", os.MFD_CLOEXEC))]
        if kind == "memfd_weird":
            name = r.choice(["", "a\"b\\c", "\x7f\x01\n", "\udcff\udcfe", "\u00e9" * 100, "m" * 249, "/x/y",
                             "x (deleted)"])
            return [(kind, os.memfd_create(name, os.MFD_CLOEXEC))]
        if kind == "epoll":
            e = select.epoll()
            fd = os.dup(e.fileno())
            os.set_inheritable(fd, False)
            e.close()
            return [(kind, fd)]
        if kind == "eventfd":
            return [(kind, os.eventfd(r.randint(0, 5), os.EFD_CLOEXEC))]
        if kind == "pidfd":
            return [(kind, os.pidfd_open(os.getpid()))]
        if kind == "inotify":
            return [(kind, _check(_libc.inotify_init1(O_CLOEXEC)))]
        if kind == "timerfd":
            return [(kind, _check(_libc.timerfd_create(1, O_CLOEXEC)))]  # CLOCK_MONOTONIC
        if kind == "signalfd":
            mask = ctypes.create_string_buffer(128)
            return [(kind, _check(_libc.signalfd(-1, mask, 8, O_CLOEXEC)))]
        if kind == "devnull":
            return [(kind, os.open("/dev/null", os.O_RDWR | os.O_CLOEXEC))]
        if kind == "proc_file":
            return [(kind, os.open(r.choice(["/proc/self/status", "/proc/self/stat"]), os.O_RDONLY | os.O_CLOEXEC))]
        if kind == "broker_conn":
            # A socket connected to the broker itself.
            s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
            s.settimeout(2.0)
            s.connect(self.broker_path)
            return [(kind, s.detach())]
        if kind == "unix_inflight":
            # A socket with descriptors of its own waiting unread in it.
            a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
            p1, p2 = os.pipe2(os.O_CLOEXEC)
            socket.send_fds(a, [b"x"], [p1, p2, a.fileno()])
            os.close(p1)
            os.close(p2)
            a.close()
            return [(kind, b.detach())]
        raise ValueError(kind)

    def pick(self, n: int) -> list[int]:
        return [self.rng.choice(self.items)[1] for _ in range(n)]

    def refresh(self, count: int) -> None:
        for _ in range(count):
            if not self.items:
                break
            i = self.rng.randrange(len(self.items))
            _, fd = self.items.pop(i)
            os.close(fd)
            self.add(self.rng.choice(self.KINDS))

    def close(self) -> None:
        for _, fd in self.items:
            os.close(fd)
        self.items.clear()


def errno_name(e: int) -> str:
    return errno.errorcode.get(e, str(e))
