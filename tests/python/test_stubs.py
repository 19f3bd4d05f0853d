# SPDX-License-Identifier: LGPL-2.1-or-later
"""The .pyi stubs shipped with the extension describe what it really has: every public
name on both sides, and the same parameters wherever the runtime can tell them."""

from __future__ import annotations

import ast
import inspect
import os

import pytest

import fdbroker
from fdbroker import _fdbroker

STUB = os.path.join(os.path.dirname(fdbroker.__file__), "_fdbroker.pyi")
STUB_ONLY = {"_Fdsend"}  # the type of the fdsend submodule, not a runtime name


def stub_tree() -> ast.Module:
    with open(STUB, encoding="utf-8") as f:
        return ast.parse(f.read(), STUB)


def declared(body: list[ast.stmt]) -> dict[str, ast.stmt]:
    names: dict[str, ast.stmt] = {}
    for node in body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            names[node.name] = node
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names[node.target.id] = node
    return names


def public(names) -> set[str]:
    return {n for n in names if not n.startswith("_")}


def stub_parameters(node: ast.FunctionDef) -> list[tuple[str, str]]:
    """(name, kind) of each parameter, as inspect names the kinds."""
    args = node.args
    params = [(a.arg, "POSITIONAL_ONLY") for a in args.posonlyargs]
    params += [(a.arg, "POSITIONAL_OR_KEYWORD") for a in args.args]
    params += [(a.arg, "KEYWORD_ONLY") for a in args.kwonlyargs]
    return params


def test_the_stub_declares_every_public_name_of_the_extension_and_no_other():
    stub = declared(stub_tree().body)
    assert public(stub) - STUB_ONLY == public(vars(_fdbroker))


BOUND_CLASSES = ["Client", "Upgrader", "FdDescription", "EntryInfo", "Entry", "ListPage", "Peer",
                 "Hello", "Stats", "Opened", "Bound"]


@pytest.mark.parametrize("cls", BOUND_CLASSES)
def test_the_stub_declares_every_public_member_of_a_bound_class(cls):
    classes = declared(stub_tree().body)
    stub = declared(classes[cls].body)
    for base in classes[cls].bases:  # what it inherits from a class of the stub
        if isinstance(base, ast.Name) and base.id in classes:
            stub |= declared(classes[base.id].body)
    assert public(stub) == public(dir(getattr(_fdbroker, cls)))


def test_recv_result_fields_are_declared():
    stub = declared(declared(stub_tree().body)["RecvResult"].body)
    assert public(stub) == {"msg", "fds", "msg_truncated", "fds_truncated"}
    assert public(stub) <= set(dir(_fdbroker.RecvResult))


def test_functions_have_the_stub_parameters_where_the_runtime_tells_them():
    checked = 0
    for name, node in declared(stub_tree().body).items():
        if not isinstance(node, ast.FunctionDef):
            continue
        try:
            signature = inspect.signature(getattr(_fdbroker, name))
        except (TypeError, ValueError):  # pybind11 functions without a text signature
            continue
        runtime = [(p.name, p.kind.name) for p in signature.parameters.values()]
        assert stub_parameters(node) == runtime, name
        checked += 1
    # sendfds, recvfds, socketpair, peer_credentials, peer_groups, open_listener
    assert checked >= 6
