"""The pure core: specs, the config hash, the planner and status.

Values in, decisions out: no I/O (no os, io, pathlib, sockets, subprocesses, threads,
clocks or logs), no YAML, no jsonschema, no kopf, no Kubernetes client, no CLI.  What it
needs from outside it is given: the CRD's schema by ``infrakit.schemas``
(:func:`infrakit.core.specs.provide`), the time as a parameter.  Everything above it
(``infrakit.plugins``, ``infrakit.runtime``, the adapters) imports it, never the other
way round: an import-linter contract in ``pyproject.toml`` keeps it so, and
``tests/core/test_purity.py`` looks for the builtins no import shows (``open``, ``print``).
"""

from __future__ import annotations

import importlib
from typing import Any

# Submodules are imported by their users (``from infrakit.core import specs``), not here:
# a command that only reads the store does not load the planner or the hash.
__all__ = ["hashing", "instances", "metadata", "planning", "specs", "status"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
