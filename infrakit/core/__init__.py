"""The pure core: specs, the config hash, the planner and status.

No I/O, no kopf, no Kubernetes client, no CLI: the adapters (``infrakit.engine``,
``infrakit.local``, ``infrakit.operator``) import this, never the other way round
(an import-linter contract in ``pyproject.toml`` keeps it so).
"""

from __future__ import annotations

import importlib
from typing import Any

# Submodules are imported by their users (``from infrakit.core import specs``), not here:
# a command that only reads the store does not load the planner or the hash.
__all__ = ["hashing", "instances", "planning", "specs", "status"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
