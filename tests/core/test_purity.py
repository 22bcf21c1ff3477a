"""The core does no I/O: what the import contract cannot see, a look at its code can.

``pyproject.toml`` forbids the core every I/O module (os, io, pathlib, yaml,
jsonschema...), but a builtin needs no import: ``open()`` or ``print()`` in the core
would pass the contract.  So every call in ``infrakit/core`` is read, and the builtins
that read, write or run code are refused by name.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import infrakit.core

CORE = Path(infrakit.core.__file__).parent
# Builtins that do I/O or run code; the core is given its inputs and returns decisions.
IMPURE = frozenset({"open", "print", "input", "exec", "eval", "__import__", "breakpoint"})


def impure_calls(source: str) -> list[str]:
    return sorted(
        f"{node.func.id} (line {node.lineno})"
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in IMPURE
    )


@pytest.mark.parametrize("path", sorted(CORE.rglob("*.py")), ids=lambda p: str(p.relative_to(CORE)))
def test_no_builtin_io_in_the_core(path: Path) -> None:
    assert impure_calls(path.read_text("utf-8")) == []


def test_the_look_finds_what_it_looks_for() -> None:
    assert impure_calls("def f(p):\n    with open(p) as s:\n        print(s.read())\n") == [
        "open (line 2)",
        "print (line 3)",
    ]
