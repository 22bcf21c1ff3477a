"""The pure core: specs, the config hash, the planner and status.

No I/O, no kopf, no Kubernetes client, no CLI: the adapters (``infrakit.engine``,
``infrakit.local``, ``infrakit.operator``) import this, never the other way round
(an import-linter contract in ``pyproject.toml`` keeps it so).
"""

from infrakit.core import hashing, instances, planning, specs, status

__all__ = ["hashing", "instances", "planning", "specs", "status"]
