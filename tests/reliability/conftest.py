"""Reliability suites: crashes, concurrency, API faults, hostile input, fuzzing.

Deterministic and bounded: crash points are chosen by count of instance operations
(failpoints, ``infrakit/faults.py``), never by sleeping; random inputs are seeded.
In: a scenario and a fault. Out: the invariants after recovery (exactly the desired
instances on the desired hash, no duplicates, no orphans, no temp files, a store that
parses, status that matches).

``.ci/run`` uses small sizes; ``INFRAKIT_RELIABILITY_FULL=1 make test`` (or
``pytest tests/reliability``) runs the full sizes of the issue (groups of 200).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

FULL = os.environ.get("INFRAKIT_RELIABILITY_FULL") == "1"
SIZE = 200 if FULL else 40
POINTS = 20
# Every kill point is covered in-process by tests/runtime/test_crash_points.py (the same
# runtime, milliseconds each); the real SIGKILLs here take representative points: the
# first operation, the middle of a round (a surge made, its old instance not yet gone),
# the middle of the work, and the last operation.
LOCAL_POINTS = POINTS if FULL else 8


def representative(total_ops: int) -> list[int]:
    """First, mid-round, middle, last: the kill points that stand for all (full: ``kill_points``)."""
    if FULL:
        return kill_points(total_ops)
    return sorted({1, min(2, total_ops), total_ops // 2 + 1, total_ops})


def kill_points(total_ops: int, count: int = POINTS) -> list[int]:
    """``count`` distinct kill points spread over 1..total_ops (first and last included)."""
    if total_ops <= count:
        return list(range(1, total_ops + 1))
    step = (total_ops - 1) / (count - 1)
    return sorted({1 + round(i * step) for i in range(count)})


def instance_files(directory: Path) -> dict[str, dict[str, Any]]:
    """Every file in ``directory``: instance documents by name; torn files fail loudly."""
    found = {}
    for path in sorted(directory.iterdir()):
        assert not path.name.endswith(".tmp"), f"temp file left behind: {path.name}"
        found[path.name] = json.loads(path.read_text())  # a torn write would not parse
    return found


# The operator fixtures of the e2e suite, shared (imported fixtures are registered here too).
from tests.e2e.conftest import groups, operator, operator_factory  # noqa: E402, F401
