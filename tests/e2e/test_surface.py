"""InfraKit's wider surface against a cluster: metadata, events, remotes and a playbook, through the CLI.

One operator and one namespace for the module's tests; every command is `infrakit-local` as a
user runs it, pointed at the cluster with --context (or a kube:// remote).
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import EXAMPLES, REPO_ROOT
from tests.e2e.conftest import Groups, Operator, wait_until

pytestmark = pytest.mark.cluster


def cli_for(groups: Groups, home: Path) -> Callable[..., subprocess.CompletedProcess[str]]:
    context = json.loads(groups.kubectl("config", "view", "--minify", "-o", "json").stdout)["current-context"]
    env = {**groups.cluster.env, "INFRAKIT_HOME": str(home)}

    def cli(
        *args: str, remote: bool = True, extra_env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        where = ["--context", context, "--namespace", groups.namespace] if remote else []
        return subprocess.run(
            [sys.executable, "-m", "infrakit.cli", *where, *args],
            env={**env, **(extra_env or {})}, capture_output=True, text=True, check=False, timeout=60,
        )  # fmt: skip

    return cli, context


def test_metadata_events_remotes_and_a_playbook_on_a_cluster(
    operator: Operator, groups: Groups, tmp_path: Path
) -> None:
    cli, context = cli_for(groups, tmp_path / "home")
    groups.apply(EXAMPLES / "cattle.yaml")
    wait_until(lambda: len(operator.instances("cattle")) == 5 and groups.status("cattle").get("readyReplicas") == 5)

    # Metadata: the group plugin's paths and ours, from the Group objects.
    size = cli("metadata", "cat", "group/specs/cattle/Properties/Allocation/Size")
    assert size.returncode == 0 and size.stdout.strip() == "5", size.stderr
    assert "cattle" in cli("metadata", "ls", "group/status").stdout.split()

    # Events: a heal on the cluster, told as InfraKit's topic.
    tail = subprocess.Popen(
        [sys.executable, "-m", "infrakit.cli", "--context", context, "--namespace", groups.namespace,
         "event", "tail", "group/cattle/instance/lost", "--count", "1", "-o", "json"],
        env={**groups.cluster.env, "INFRAKIT_HOME": str(tmp_path / "home")}, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        # The tail needs a moment to list and start watching: lose one instance, then another
        # (events of a reason are at most one per 5 s), until it tells one; bounded.
        out = err = ""
        lost: list[str] = []
        for _ in range(6):
            victim = sorted(operator.instances("cattle"))[0]
            lost.append(victim)
            (operator.instance_dir / victim).unlink()
            try:
                out, err = tail.communicate(timeout=7)
                break
            except subprocess.TimeoutExpired:
                continue
    finally:
        if tail.poll() is None:
            tail.kill()
    event = json.loads(out.splitlines()[0])
    assert event["Topic"] == "group/cattle/instance/lost", (out, err)  # InfraKit's Go-style keys
    assert any(victim in json.dumps(event) for victim in lost), (out, err)

    # A remote selects the cluster for every command, as --context does.
    assert cli("remote", "add", "here", f"kube://{context}/{groups.namespace}", remote=False).returncode == 0
    listed = cli("ls", "-q", remote=False, extra_env={"INFRAKIT_HOST": "here"})
    assert listed.stdout.split() == ["cattle"], listed.stderr

    # The example playbook commits a web tier and a pets quorum to the cluster, where the operator converges them.
    assert cli("playbook", "add", "stack", str(REPO_ROOT / "examples" / "playbook-stack"), remote=False).returncode == 0
    done = cli("stack", "up", "--var", "size=2", "--var", "prefix=demo")
    assert done.returncode == 0, done.stderr
    wait_until(lambda: len(operator.instances("demo-web")) == 2 and len(operator.instances("demo-quorum")) == 3)
    quorum = sorted(d["LogicalID"] for d in operator.instances("demo-quorum").values())
    assert quorum == ["10.0.0.11", "10.0.0.12", "10.0.0.13"]
