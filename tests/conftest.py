"""Shared fixtures.

Tests are grouped by behaviour: ``core/`` (the pure planner, specs, hashes: dicts in,
plans out), ``engine/`` and ``runtime/`` (the one reconcile runtime over test doubles we
own: in milliseconds), ``plugins/`` (each plugin against its SPI), ``rpc/`` (the plugin
protocol, our daemons, a Go plugin), ``local/`` (the CLI and the store, end to end on a
temporary ``$INFRAKIT_HOME``), ``operator/`` (the operator's parts without a cluster),
``cluster/``, ``deploy/`` and ``e2e/`` (against a real API server, see
``tests/clusterfixtures.py``), ``reliability/`` (crashes, faults, hostile input, fuzzing).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

# The core validates Groups against the schema its adapter provides (the packaged CRD's);
# every mode imports it, and so do the tests, which also call the core directly.
from infrakit import schemas  # noqa: F401 - imported for its effect: the core is given the schema

pytest_plugins = ["tests.clusterfixtures", "tests.dockerfixtures"]

REPO_ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = REPO_ROOT / "examples"


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A private ``$INFRAKIT_HOME`` (store and instance directory) for one test."""
    path = tmp_path / "infrakit-home"
    monkeypatch.setenv("INFRAKIT_HOME", str(path))
    monkeypatch.delenv("INFRAKIT_INSTANCE_DIR", raising=False)
    return path


def snapshot(root: Path) -> dict[str, str]:
    """Every file under ``root`` (relative path -> sha256), to prove nothing changed."""
    if not root.exists():
        return {}
    found = {}
    for directory, _, names in os.walk(root):
        for name in names:
            path = Path(directory) / name
            if path.is_symlink():
                found[str(path.relative_to(root))] = "symlink:" + os.readlink(path)
            elif not path.is_file():
                found[str(path.relative_to(root))] = "special"  # a FIFO: never open it
            else:
                found[str(path.relative_to(root))] = hashlib.sha256(path.read_bytes()).hexdigest()
    return found
