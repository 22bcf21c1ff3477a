"""``--log-format json``: one JSON object a line, with what a line is about as keys of its own.

In: a sync over the in-memory store and plugin (the operator's code path), and the CLI
through click's runner. Out: the log lines on stderr, parsed as JSON: ``namespace``,
``group``, ``reason``, ``plan``... are keys, and ``msg`` keeps the whole text.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from infrakit import cli, logs, plugins
from infrakit.cluster import records
from infrakit.core import specs
from infrakit.runtime import owners, syncing
from infrakit.runtime import stores as stores_api
from infrakit.testing import memory, stores
from tests.conftest import EXAMPLES


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    yield
    logs.configure(level=4, fmt="term")


def lines(text: str) -> list[dict[str, Any]]:
    parsed = [json.loads(line) for line in text.splitlines() if line.strip()]
    assert parsed
    return parsed


def spec(*, plugin: str = "instance-memory", size: int = 3) -> specs.GroupSpec:
    return specs.GroupSpec(
        name="web",
        namespace="team",
        allocation=specs.Allocation(size=size),
        instance=specs.PluginSpec(plugin=plugin, properties={}),
        flavor=specs.PluginSpec(plugin="flavor-vanilla", properties={}),
    )


def syncer() -> tuple[syncing.Syncer, stores.MemoryStore]:
    plugin = memory.MemoryPlugin()
    registry = plugins.Registry(instances={"instance-memory": lambda options: plugin})
    store = stores.MemoryStore()
    return syncing.Syncer(store=store, registry=registry, index=owners.Owners(), clock=lambda: "T"), store


def test_a_sync_logs_its_group_and_plan_as_keys(capsys: pytest.CaptureFixture[str]) -> None:
    logs.configure(level=4, fmt="json")
    sync, store = syncer()
    key = store.apply(spec())
    sync.sync(key)
    (entry,) = [e for e in lines(capsys.readouterr().err) if "instance operations" in e["msg"]]
    assert entry["msg"] == "group team/web: 3 instance operations (3 provisioned, 0 destroyed)"
    assert (entry["level"], entry["namespace"], entry["group"]) == ("info", "team", "web")
    assert (entry["count"], entry["provisioned"], entry["destroyed"]) == (3, 3, 0)
    assert entry["plan"]["provision"]["reasons"] == {"ScaleUp": 3}
    assert len(entry["plan"]["provision"]["instances"]) == 3


class Events:
    """The part of ``kubeapi.Groups`` that posts events: it keeps them."""

    def __init__(self) -> None:
        self.posted: list[dict[str, Any]] = []

    def post_event(self, body: Any, **event: Any) -> None:
        self.posted.append(event)


def test_an_operator_warning_logs_its_group_and_reason(capsys: pytest.CaptureFixture[str]) -> None:
    logs.configure(level=4, fmt="json")
    events = Events()
    store = records.ClusterStore(events, cluster="c1", namespaces=("team",))  # type: ignore[arg-type]
    record = stores_api.Record(
        key=("team", "web"), manifest={"metadata": {"name": "web", "namespace": "team"}}, status={}
    )
    store.event(record, reason="InvalidSpec", message="spec.instance.plugin: unknown", warning=True, force=True)
    (entry,) = lines(capsys.readouterr().err)
    assert (entry["level"], entry["namespace"], entry["group"], entry["reason"]) == (
        "warning",
        "team",
        "web",
        "InvalidSpec",
    )
    assert entry["msg"] == "group team/web: InvalidSpec: spec.instance.plugin: unknown"
    assert events.posted[0]["reason"] == "InvalidSpec"


def test_kopf_object_references_become_keys(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    logs.configure(level=4, fmt="json", frameworks=("kopf",))
    reference = {"kind": "Group", "name": "web", "namespace": "team", "uid": "u"}
    # Once kopf is imported, its event poster sits on this logger and wants real settings: not ours to test.
    monkeypatch.setattr(logging.getLogger("kopf.objects"), "handlers", [])
    logging.getLogger("kopf.objects").warning("handler failed", extra={"k8s_ref": reference, "settings": object()})
    (entry,) = lines(capsys.readouterr().err)
    assert (entry["namespace"], entry["group"], entry["msg"]) == ("team", "web", "handler failed")
    assert "settings" not in entry


def test_the_term_format_keeps_the_text(capsys: pytest.CaptureFixture[str]) -> None:
    logs.configure(level=4, fmt="term")
    logging.getLogger("infrakit.x").info("group %s: hello", "web", extra=logs.fields(("team", "web")))
    assert capsys.readouterr().err.rstrip().endswith("group web: hello")


def test_cli_logs_and_errors_in_json(home: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    # --log 5: a one-shot command logs its syncs at debug (it prints its own result line).
    done = runner.invoke(cli.cli, ["--log-format", "json", "--log", "5", "commit", str(EXAMPLES / "cattle.yaml")])
    assert done.exit_code == 0, done.stderr
    assert done.stdout == "Committed cattle: Managing 5 instances\n"
    (entry,) = [e for e in lines(done.stderr) if "instance operations" in e["msg"]]
    assert entry["group"] == "cattle" and "namespace" not in entry  # a local group has none
    assert entry["plan"]["provision"]["reasons"] == {"ScaleUp": 5}

    bad = tmp_path / "bad.yaml"
    bad.write_text((EXAMPLES / "cattle.yaml").read_text().replace("size: 5", "size: -1"))
    failed = runner.invoke(cli.cli, ["--log-format", "json", "commit", str(bad)])
    assert failed.exit_code == 2
    (error,) = lines(failed.stderr)
    assert error["level"] == "error" and error["exit_code"] == 2
    assert "spec.allocation.size" in error["msg"]


def test_cli_errors_stay_plain_text_on_a_terminal(home: Path) -> None:
    failed = CliRunner().invoke(cli.cli, ["describe", "nonesuch"])
    assert failed.exit_code == 2
    assert failed.stderr.startswith("Error: ") and failed.stderr.count("\n") == 1
