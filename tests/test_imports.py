"""The light commands import only what they use: CLI start-up is most of their time.

Each command runs in a fresh interpreter (as a user runs it), and the test reads which
modules it loaded; no timing.  A heavy framework or library on a path that does not use
it (the Kubernetes client, kopf, jsonschema, rich, aiohttp, asyncio, watchfiles...) costs
tens of milliseconds on every call; ``bench/`` measures the latency itself.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import EXAMPLES

# Never needed by a command that works on the local store without a terminal.
FRAMEWORKS = frozenset(
    {
        "kubernetes",
        "kopf",
        "aiohttp",
        "asyncio",
        "watchfiles",
        "rich",
        "prometheus_client",
        "jsonschema",  # only to word the errors of an invalid spec
        "http.client",  # the plugin RPC client: only when a daemon is there
        "ssl",
        "infrakit.cluster",
        "infrakit.operator",
        "infrakit.rpc.client",
        "infrakit.rpc.server",
    }
)
# Not needed to read the store (JSON) and print a table, once the CRD's schema is cached.
READ_ONLY = FRAMEWORKS | {"yaml", "importlib.metadata", "infrakit.core.hashing", "socket"}

PROBE = """
import json, sys
sys.argv = ["infrakit-local", *json.loads(sys.argv[1])]
from infrakit import cli
try:
    cli.main()
except SystemExit as done:
    code = done.code
with open({out!r}, "w") as out:
    json.dump({{"code": code, "modules": sorted(sys.modules)}}, out)
"""


def imported(tmp_path: Path, *args: str, stdin: bytes | None = None) -> set[str]:
    """The modules loaded by ``infrakit-local ARGS`` in a fresh interpreter (exit code 0 asserted)."""
    out = tmp_path / "modules.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith("INFRAKIT_")}
    env |= {"INFRAKIT_HOME": str(tmp_path / "home"), "INFRAKIT_CACHE": str(tmp_path / "cache")}
    done = subprocess.run(
        [sys.executable, "-c", PROBE.format(out=str(out)), json.dumps(list(args))],
        env=env,
        input=stdin,
        capture_output=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr.decode()
    result = json.loads(out.read_text())
    assert result["code"] == 0, done.stderr.decode()
    return set(result["modules"])


def heavy(modules: set[str], forbidden: frozenset[str] | set[str]) -> list[str]:
    return sorted(m for m in modules if m in forbidden or any(m.startswith(f + ".") for f in forbidden))


@pytest.fixture
def committed(tmp_path: Path) -> Path:
    """A home with the tutorial's group committed, and the schema cache filled."""
    imported(tmp_path, "commit", str(EXAMPLES / "cattle.yaml"))
    return tmp_path


@pytest.mark.parametrize(
    "args",
    [("ls",), ("describe", "cattle"), ("describe", "cattle", "-o", "json"), ("ls", "-q"), ("version",)],
    ids=" ".join,
)
def test_read_only_commands_load_no_framework_no_yaml(committed: Path, args: tuple[str, ...]) -> None:
    modules = imported(committed, *args)
    # describe resolves the group's plugins (an entry-point scan: importlib.metadata, which
    # needs socket) and judges each instance against the config hash.
    allowed_here = {"importlib.metadata", "socket", "infrakit.core.hashing"} if args[0] == "describe" else set()
    assert heavy(modules, READ_ONLY - allowed_here) == []


# The runtime's sync and the local controller decide and act: a command that only reads needs neither.
SYNC = frozenset(
    {
        "infrakit.local.controller",
        "infrakit.local.records",
        "infrakit.local.ledger",
        "infrakit.runtime.syncing",
        "infrakit.runtime.running",
        "infrakit.runtime.queueing",
        "infrakit.runtime.events",
        "infrakit.runtime.reporting",
        "infrakit.runtime.owners",
        "infrakit.runtime.stores",
    }
)


@pytest.fixture
def furnished(committed: Path) -> Path:
    """The committed home, with two remotes and a playbook added (as a user's home has them)."""
    imported(committed, "remote", "add", "lab", "unix:///tmp")
    imported(committed, "remote", "add", "daemon", "tcp://127.0.0.1:24864")
    imported(committed, "playbook", "add", "stack", str(EXAMPLES / "playbook-stack"))
    return committed


@pytest.mark.parametrize("args", [("ls",), ("describe", "cattle"), ("inspect", "cattle")], ids=" ".join)
def test_read_only_commands_load_no_sync(furnished: Path, args: tuple[str, ...]) -> None:
    """Was: ls and describe imported the local controller and with it the whole runtime (issue 20)."""
    assert heavy(imported(furnished, *args), SYNC) == []


def test_ls_reads_the_store_alone(furnished: Path) -> None:
    """Was: every command read the playbooks file (PyYAML) at start-up, and loaded the plugins for ls."""
    modules = imported(furnished, "ls")
    assert heavy(modules, READ_ONLY | {"infrakit.plugins", "infrakit.cli.playbooks", "infrakit.cli.remotes"}) == []
    assert [m for m in modules if m.startswith("infrakit.runtime.")] == []


def test_ls_does_not_scan_entry_points(committed: Path) -> None:
    # The per-plugin command groups are added only when a name is not a built-in command.
    assert "importlib.metadata" not in imported(committed, "ls")
    assert "importlib.metadata" in imported(committed, "instance-file", "describe")


def test_commit_and_inspect_load_no_framework(tmp_path: Path) -> None:
    assert heavy(imported(tmp_path, "commit", str(EXAMPLES / "cattle.yaml")), FRAMEWORKS) == []
    assert heavy(imported(tmp_path, "inspect", "cattle"), FRAMEWORKS) == []
    assert heavy(imported(tmp_path, "free", "cattle"), FRAMEWORKS) == []


def test_a_cold_schema_cache_still_needs_no_jsonschema(tmp_path: Path) -> None:
    (tmp_path / "home").mkdir()
    modules = imported(tmp_path, "commit", "-", stdin=(EXAMPLES / "cattle.yaml").read_bytes())
    assert "yaml" in modules  # the CRD parsed once, then cached
    assert heavy(modules, FRAMEWORKS) == []
    assert list((tmp_path / "cache" / "schema").iterdir())


def test_an_invalid_spec_is_still_worded_by_jsonschema(tmp_path: Path) -> None:
    bad = (EXAMPLES / "cattle.yaml").read_text().replace("size: 5", "size: -1")
    assert bad != (EXAMPLES / "cattle.yaml").read_text()
    out = tmp_path / "modules.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith("INFRAKIT_")}
    env |= {"INFRAKIT_HOME": str(tmp_path / "home"), "INFRAKIT_CACHE": str(tmp_path / "cache")}
    done = subprocess.run(
        [sys.executable, "-c", PROBE.format(out=str(out)), json.dumps(["commit", "-"])],
        env=env,
        input=bad.encode(),
        capture_output=True,
        timeout=120,
        check=False,
    )
    result = json.loads(out.read_text())
    assert result["code"] == 2
    assert b"spec.allocation.size: must be at least 0, got -1" in done.stderr
    assert "jsonschema" in result["modules"]
