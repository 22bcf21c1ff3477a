"""The rest of the CLI: pets, machine output, inspect, the per-plugin commands, logging."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path

import yaml

from tests.conftest import EXAMPLES
from tests.local.conftest import Local


def pets_file(tmp_path: Path) -> Path:
    document = yaml.safe_load((EXAMPLES / "cattle.yaml").read_text())
    document["metadata"]["name"] = "pets"
    document["spec"]["allocation"] = {"logicalIDs": ["10.0.0.1", "10.0.0.2", "10.0.0.3"]}
    path = tmp_path / "pets.yaml"
    path.write_text(yaml.safe_dump(document))
    return path


def test_pets_keep_their_logical_ids_when_healed(
    local: Local, tmp_path: Path, runner_factory: Callable[[], subprocess.Popen[str]]
) -> None:
    assert local("commit", str(pets_file(tmp_path))).stdout == "Committed pets: Managing 3 instances\n"
    rows = local.rows("describe", "pets")
    assert sorted(r[1] for r in rows) == ["10.0.0.1", "10.0.0.2", "10.0.0.3"]
    assert all(f"infrakit.logical_id={r[1]}" in r[2] for r in rows)
    lost = next(r for r in rows if r[1] == "10.0.0.2")
    runner = runner_factory()
    (local.instances / lost[0]).unlink()
    for _ in range(200):
        again = local.rows("describe", "pets")
        if len(again) == 3:
            break
        subprocess.run(["sleep", "0.05"], check=True)
    assert sorted(r[1] for r in again) == ["10.0.0.1", "10.0.0.2", "10.0.0.3"]
    assert lost[0] not in {r[0] for r in again}
    runner.send_signal(2)
    assert runner.wait(timeout=10) == 0


def test_machine_output_and_inspect(local: Local) -> None:
    local("commit", str(EXAMPLES / "cattle.yaml"))
    described = json.loads(local("describe", "cattle", "-o", "json").stdout)
    assert len(described) == 5
    assert {d["Tags"]["infrakit.config_sha"] for d in described} == {"x4nrsdaibscmj7awpkxzx5vvpt6pilw2"}
    assert yaml.safe_load(local("describe", "cattle", "-o", "yaml").stdout) == described
    assert json.loads(local("ls", "-o", "json").stdout) == [{"ID": "cattle"}]
    inspected = yaml.safe_load(local("inspect", "cattle").stdout)
    assert inspected["spec"]["allocation"] == {"size": 5}
    assert inspected["status"]["replicas"] == 5
    assert inspected["status"]["conditions"][0] | {"lastTransitionTime": "-"} == {
        "type": "Ready",
        "status": "True",
        "reason": "Converged",
        "message": "5 of 5 instances up to date and healthy",
        "lastTransitionTime": "-",
        "observedGeneration": 1,
    }
    assert inspected["metadata"]["generation"] == inspected["status"]["observedGeneration"] == 1
    assert json.loads(local("inspect", "cattle", "-o", "json").stdout) == inspected


def test_instance_plugin_commands(local: Local, tmp_path: Path) -> None:
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps({"Properties": {"a": 1}, "Tags": {"team": "x"}, "Init": "echo", "LogicalID": "one"}))
    iid = local("instance-file", "provision", str(spec)).stdout.strip()
    assert (local.instances / iid).exists()
    assert local.rows("instance-file", "describe", "--tags", "team=x") == [[iid, "one", "team=x"]]
    assert local.rows("instance-file", "describe", "--tags", "team=y") == []
    assert local("instance-file", "validate", str(spec)).stdout == "OK\n"
    assert local("instance-file", "destroy", iid).stdout == f"Destroyed {iid}\n"
    assert local.files() == set()
    from_stdin = local("instance-file", "provision", "-", input=b'{"Tags": {"a": "b"}}').stdout.strip()
    assert local.files() == {from_stdin}


def test_flavor_validate_and_version(local: Local, tmp_path: Path) -> None:
    good = tmp_path / "good.yaml"
    good.write_text("Init: [echo hi]\nTags: {a: b}\n")
    assert local("flavor-vanilla", "validate", str(good)).stdout == "OK\n"
    bad = tmp_path / "bad.yaml"
    bad.write_text("Init: echo hi\n")
    assert "spec.flavor.properties.Init" in local("flavor-vanilla", "validate", str(bad), code=2).stderr
    assert local("version").stdout.startswith("infrakit-local 0.1.0")


def test_dir_option(local: Local, tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    local("--dir", str(elsewhere), "commit", str(EXAMPLES / "cattle.yaml"))
    assert len(list(elsewhere.iterdir())) == 5
    assert local.files() == set()


def test_json_logs_on_stderr(local: Local) -> None:
    result = local("--log", "5", "--log-format", "json", "commit", str(EXAMPLES / "cattle.yaml"))
    assert result.stdout == "Committed cattle: Managing 5 instances\n"
    lines = [json.loads(line) for line in result.stderr.splitlines() if line.startswith("{")]
    assert lines
    assert {"time", "level", "logger", "msg"} <= set(lines[0])


def test_paused_commit_changes_nothing(local: Local, tmp_path: Path) -> None:
    local("commit", str(EXAMPLES / "cattle.yaml"))
    before = local.files()
    paused = tmp_path / "paused.yaml"
    paused.write_text((EXAMPLES / "cattle2.yaml").read_text() + "  paused: true\n")
    out = local("commit", str(paused)).stdout
    assert out.startswith("Committed cattle: Performing a rolling update on 5 instances")
    assert "paused" in out
    assert local.files() == before
