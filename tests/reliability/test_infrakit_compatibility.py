"""What InfraKit v0.5 did, found by running it side by side (issue 11, item 12).

(b) An instance made outside InfraKit to join a group (the first manager of a swarm)
carries ``infrakit.config_sha=bootstrap``; InfraKit adopted it as up to date and labelled
it with the group's hash through the instance plugin's ``Label`` on every look at the
group (``pkg/plugin/group/scaled.go``, ``labelAndList``).  In: such a file made with
``infrakit-local instance-file provision``.  Out: ``commit`` keeps it (same ID, same
spec), relabels it with the group's hash, and provisions only the rest.
"""

from __future__ import annotations

import json
from pathlib import Path

import yaml
from click.testing import CliRunner, Result

from infrakit import cli
from infrakit.core import instances
from tests.conftest import EXAMPLES


def run(*args: str, code: int = 0) -> Result:
    result = CliRunner().invoke(cli.cli, list(args))
    assert result.exit_code == code, f"exit {result.exit_code}: {result.stdout!r} {result.stderr!r}"
    assert "Traceback" not in result.stdout + result.stderr
    return result


def test_commit_adopts_a_bootstrap_instance_and_relabels_it(home: Path, tmp_path: Path) -> None:
    made_outside = tmp_path / "manager.json"
    tags = {instances.TAG_GROUP: "cattle", instances.TAG_CONFIG_SHA: "bootstrap", "role": "first"}
    made_outside.write_text(json.dumps({"Properties": {"Note": "made by hand"}, "Tags": tags}))
    boot = run("instance-file", "provision", str(made_outside)).stdout.strip()
    path = home / "instances" / boot
    spec_before = json.loads(path.read_text())["Spec"]

    group = tmp_path / "cattle.yaml"
    document = yaml.safe_load((EXAMPLES / "cattle.yaml").read_text())
    document["spec"]["allocation"] = {"size": 3}
    group.write_text(yaml.safe_dump(document))
    assert run("commit", str(group)).stdout == "Committed cattle: Managing 3 instances\n"

    config_hash = yaml.safe_load(run("inspect", "cattle").stdout)["status"]["configHash"]
    adopted = json.loads(path.read_text())
    assert adopted["Tags"] == {**tags, instances.TAG_CONFIG_SHA: config_hash}  # relabelled, nothing else
    assert adopted["Spec"] == spec_before and adopted["ID"] == boot
    rows = json.loads(run("describe", "cattle", "-o", "json").stdout)
    assert len(rows) == 3 and boot in {r["ID"] for r in rows}
    assert {r["Tags"][instances.TAG_CONFIG_SHA] for r in rows} == {config_hash}

    assert run("commit", str(group)).stdout == "Committed cattle: Noop\n"  # an ordinary member now
    assert boot in {r["ID"] for r in json.loads(run("describe", "cattle", "-o", "json").stdout)}
