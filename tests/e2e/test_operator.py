"""The operator on a real API server, driven through kubectl as a user would."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import EXAMPLES
from tests.e2e.conftest import EXTERNAL, Groups, Operator, wait_until

pytestmark = pytest.mark.cluster

SHA1 = "x4nrsdaibscmj7awpkxzx5vvpt6pilw2"
SHA2 = "jpfedp4sefvncwye5b6yre5qoz2odtnd"


def shas(operator: Operator, group: str) -> list[str]:
    return sorted(d["Tags"]["infrakit.config_sha"] for d in operator.instances(group).values())


def converged(groups: Groups, operator: Operator, name: str, *, size: int, sha: str) -> bool:
    if shas(operator, name) != [sha] * size:
        return False
    status = groups.status(name)
    generation = groups.get(name)["metadata"]["generation"]
    return (
        status.get("observedGeneration") == generation
        and status.get("replicas") == size
        and status.get("updatedReplicas") == size
        and status.get("readyReplicas") == size
        and len(operator.instances(name)) == size
    )


def test_tutorial(operator: Operator, groups: Groups, tmp_path: Path) -> None:
    groups.apply(EXAMPLES / "cattle.yaml")
    wait_until(lambda: converged(groups, operator, "cattle", size=5, sha=SHA1), what="5 instances at the first hash")
    uid = groups.cluster.kubectl("get", "namespace", "kube-system", "-o", "jsonpath={.metadata.uid}").stdout.strip()
    for document in operator.instances("cattle").values():
        assert document["Tags"] == {
            "infrakit.cluster": uid,  # this cluster's identity: no other cluster's operator touches it
            "infrakit.config_sha": SHA1,
            "infrakit.group": "cattle",
            "infrakit.namespace": operator.namespace,
            "project": "infrakit",
            "tier": "web",
        }
        assert document["Spec"]["Init"] == "docker pull nginx:alpine\ndocker run -d -p 80:80 nginx-alpine"
    header, row = groups.kubectl("get", "groups").stdout.splitlines()
    assert header.split() == ["NAME", "DESIRED", "CURRENT", "UP-TO-DATE", "HEALTHY", "READY", "REASON", "AGE"]
    assert row.split()[:7] == ["cattle", "5", "5", "5", "5", "True", "Converged"]
    assert groups.condition("cattle", "Ready")["status"] == "True"
    first = set(operator.instances("cattle"))

    # The rolling update to cattle2: 10 instances, all on the new hash.
    groups.apply(EXAMPLES / "cattle2.yaml")
    wait_until(lambda: converged(groups, operator, "cattle", size=10, sha=SHA2), what="10 instances at the new hash")
    second = set(operator.instances("cattle"))
    assert not first & second
    wide = groups.kubectl("get", "groups", "-o", "wide").stdout
    assert SHA2 in wide

    # Self-healing: delete two instance files.
    lost = sorted(second)[:2]
    for name in lost:
        (operator.instance_dir / name).unlink()
    wait_until(lambda: len(operator.instances("cattle")) == 10, timeout=10, what="the lost instances replaced")
    healed = set(operator.instances("cattle"))
    assert not healed & set(lost) and len(healed - second) == 2
    wait_until(lambda: converged(groups, operator, "cattle", size=10, sha=SHA2), what="status back to 10")

    # kubectl scale, up and down.
    groups.kubectl("scale", "group", "cattle", "--replicas=12")
    wait_until(lambda: converged(groups, operator, "cattle", size=12, sha=SHA2), what="scaled to 12")
    groups.kubectl("scale", "group", "cattle", "--replicas=6")
    wait_until(lambda: converged(groups, operator, "cattle", size=6, sha=SHA2), what="scaled to 6")
    assert groups.get("cattle")["spec"]["allocation"]["size"] == 6

    # Paused freezes: no healing, no scaling; unpausing resumes.
    groups.kubectl("patch", "group", "cattle", "--type=merge", "-p", '{"spec":{"paused":true}}')
    wait_until(lambda: groups.condition("cattle", "Paused").get("status") == "True", what="the Paused condition")
    frozen = sorted(operator.instances("cattle"))
    (operator.instance_dir / frozen[0]).unlink()
    groups.kubectl("scale", "group", "cattle", "--replicas=8")
    time.sleep(2)
    assert sorted(operator.instances("cattle")) == frozen[1:]
    groups.kubectl("patch", "group", "cattle", "--type=merge", "-p", '{"spec":{"paused":false}}')
    wait_until(lambda: converged(groups, operator, "cattle", size=8, sha=SHA2), what="resumed to 8")
    assert groups.condition("cattle", "Paused")["status"] == "False"

    reasons = {e["reason"] for e in groups.events()}
    assert {"Provisioned", "RollingUpdate"} <= reasons

    # Deleting the group destroys exactly its instances.
    other = tmp_path / "other.yaml"
    other.write_text(
        (EXAMPLES / "cattle.yaml").read_text().replace("name: cattle", "name: other").replace("size: 5", "size: 2")
    )
    groups.apply(other)
    wait_until(lambda: converged(groups, operator, "other", size=2, sha=SHA1), what="the other group")
    others = set(operator.instances("other"))
    groups.kubectl("delete", "group", "cattle", "--timeout=30s")
    assert operator.instances("cattle") == {}
    assert set(operator.instances("other")) == others
    assert groups.kubectl("get", "group", "cattle", check=False).returncode != 0


def test_finalizer_only_while_instances_exist(operator: Operator, groups: Groups, tmp_path: Path) -> None:
    path = tmp_path / "g.yaml"
    path.write_text((EXAMPLES / "cattle.yaml").read_text().replace("size: 5", "size: 0"))
    groups.apply(path)
    wait_until(lambda: groups.status("cattle").get("observedGeneration") == 1, what="first sync")
    assert "infrakit.io/instances" not in (groups.get("cattle")["metadata"].get("finalizers") or [])
    groups.kubectl("scale", "group", "cattle", "--replicas=1")
    wait_until(lambda: len(operator.instances("cattle")) == 1, what="one instance")
    assert "infrakit.io/instances" in groups.get("cattle")["metadata"]["finalizers"]
    groups.kubectl("scale", "group", "cattle", "--replicas=0")
    wait_until(
        lambda: "infrakit.io/instances" not in (groups.get("cattle")["metadata"].get("finalizers") or []),
        what="the finalizer released",
    )
    assert operator.instances("cattle") == {}


def test_orphan_annotation_keeps_instances(operator: Operator, groups: Groups) -> None:
    groups.apply(EXAMPLES / "cattle.yaml")
    wait_until(lambda: converged(groups, operator, "cattle", size=5, sha=SHA1), what="5 instances")
    kept = set(operator.instances("cattle"))
    groups.kubectl("annotate", "group", "cattle", "infrakit.io/orphan-instances=true")
    groups.kubectl("delete", "group", "cattle", "--timeout=30s")
    assert set(operator.instances("cattle")) == kept


@pytest.mark.skipif(EXTERNAL, reason="stops the operator process; an external deployment restarts by itself")
def test_deletion_waits_for_the_operator(operator_factory: Callable[..., Operator], groups: Groups) -> None:
    operator = operator_factory()
    groups.apply(EXAMPLES / "cattle.yaml")
    wait_until(lambda: converged(groups, operator, "cattle", size=5, sha=SHA1), what="5 instances")
    operator.stop()
    groups.kubectl("delete", "group", "cattle", "--wait=false")
    time.sleep(1)
    assert groups.get("cattle")["metadata"].get("deletionTimestamp")  # Terminating, held by our finalizer
    assert len(operator.instances("cattle")) == 5  # nothing lost
    operator.start()
    wait_until(lambda: groups.kubectl("get", "group", "cattle", check=False).returncode != 0, what="deletion done")
    assert operator.instances("cattle") == {}


def test_invalid_spec_is_a_condition_and_touches_nothing(operator: Operator, groups: Groups, tmp_path: Path) -> None:
    path = tmp_path / "g.yaml"
    path.write_text(
        (EXAMPLES / "cattle.yaml").read_text().replace("plugin: instance-file", "plugin: instance-nonesuch")
    )
    groups.apply(path)
    ready = wait_until(
        lambda: (
            groups.condition("cattle", "Ready").get("reason") == "InvalidSpec" and groups.condition("cattle", "Ready")
        ),
        what="InvalidSpec",
    )
    assert "spec.instance.plugin" in ready["message"] and ready["status"] == "False"
    assert operator.instances("cattle") == {}
    assert any(e["reason"] == "InvalidSpec" and e["type"] == "Warning" for e in groups.events())
    groups.apply(EXAMPLES / "cattle.yaml")
    wait_until(lambda: converged(groups, operator, "cattle", size=5, sha=SHA1), what="fixed spec converges")


@pytest.mark.skipif(EXTERNAL, reason="uses failpoints in a local operator process")
@pytest.mark.parametrize("kill_after", [3, 17, 31])
def test_sigkill_mid_rolling_update_resumes(
    operator_factory: Callable[..., Operator], groups: Groups, kill_after: int
) -> None:
    first = operator_factory()
    groups.apply(EXAMPLES / "cattle.yaml")
    wait_until(lambda: converged(groups, first, "cattle", size=5, sha=SHA1), what="5 instances")
    first.stop()
    # A short Lease: the revived operator waits for the dead one's to lapse, not the default 15 s.
    doomed = operator_factory(
        "--lease-duration", "3", env={"INFRAKIT_FAILPOINTS": f"instance-op=kill-after:{kill_after}"}
    )
    groups.kubectl("scale", "group", "cattle", "--replicas=20")
    groups.apply(EXAMPLES / "cattle2.yaml")  # size 10, new hash: a roll mid-scale
    wait_until(lambda: doomed.process is not None and doomed.process.poll() is not None, what="the failpoint to kill")
    revived = operator_factory(start=False)
    revived.extra += ["--lease-duration", "3"]
    revived.start()
    wait_until(
        lambda: converged(groups, revived, "cattle", size=10, sha=SHA2), timeout=60, what="convergence after the crash"
    )
    files = revived.instances("cattle")
    assert len(files) == 10 and len({d["ID"] for d in files.values()}) == 10
    # No orphans: nothing in the directory that is not a member, no temp files.
    assert {p.name for p in revived.instance_dir.iterdir()} == set(files)


@pytest.mark.skipif(EXTERNAL, reason="uses failpoints in a local operator process")
def test_a_stop_while_a_sync_hangs_waits_its_grace_then_exits(
    operator_factory: Callable[..., Operator], groups: Groups
) -> None:
    """Was: a sync stuck in a plugin call kept a stopped operator alive (its thread was joined at exit)."""
    from infrakit.runtime.running import STOP_GRACE

    operator = operator_factory(env={"INFRAKIT_FAILPOINTS": "instance-op=stall-after:3:600"})
    groups.apply(EXAMPLES / "cattle.yaml")
    wait_until(lambda: len(operator.instances("cattle")) == 3, what="3 instances (then the stall)")
    assert operator.process is not None
    operator.process.send_signal(signal.SIGTERM)
    operator.process.wait(timeout=STOP_GRACE + 20)
    log = operator.log.read_text()
    # The Lease is given up only after: no other replica acts while this one's sync may.
    assert "stuck in a plugin call" in log.split("released the lease")[0], log


@pytest.mark.skipif(EXTERNAL, reason="runs two operator processes side by side")
def test_two_operators_never_both_act(operator_factory: Callable[..., Operator], groups: Groups) -> None:
    a = operator_factory("--lease-duration", "3")
    b = operator_factory("--lease-duration", "3", start=False).start(wait=False)
    groups.apply(EXAMPLES / "cattle.yaml")
    wait_until(lambda: converged(groups, a, "cattle", size=5, sha=SHA1), what="5 instances")
    (a.instance_dir / sorted(a.instances("cattle"))[0]).unlink()
    wait_until(lambda: len(a.instances("cattle")) == 5, what="healed by the leader")
    wait_until(lambda: "instance operations" in a.log.read_text(), what="the leader's report")
    wait_until(lambda: "waiting for the lease" in b.log.read_text(), what="b to stand by")
    assert "acquired the lease" not in b.log.read_text()
    assert "instance operations" not in b.log.read_text()

    a.kill()
    wait_until(lambda: "acquired the lease" in b.log.read_text(), timeout=30, what="b to take over")
    (b.instance_dir / sorted(b.instances("cattle"))[0]).unlink()
    wait_until(lambda: len(b.instances("cattle")) == 5, what="healed by the new leader")
    wait_until(lambda: "instance operations" in b.log.read_text(), what="the new leader's report")
    assert len(b.instances("cattle")) == 5


def test_cli_reaches_the_cluster(operator: Operator, groups: Groups, tmp_path: Path) -> None:
    context = json.loads(groups.kubectl("config", "view", "--minify", "-o", "json").stdout)["current-context"]
    env = {**groups.cluster.env, "INFRAKIT_HOME": str(tmp_path / "home")}

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "infrakit.cli", "--context", context, "--namespace", operator.namespace, *args],
            env=env, capture_output=True, text=True, check=False, timeout=60,
        )  # fmt: skip

    result = cli("commit", str(EXAMPLES / "cattle.yaml"))
    assert result.returncode == 0, result.stderr
    assert result.stdout == "Committed cattle: Managing 5 instances\n"
    wait_until(lambda: converged(groups, operator, "cattle", size=5, sha=SHA1), what="5 instances")
    pretend = cli("commit", str(EXAMPLES / "cattle2.yaml"), "--pretend")
    assert pretend.stdout == (
        "Committing cattle would involve: Performing a rolling update on 5 instances, "
        "then adding 5 instances to increase the group size to 10\n"
    )
    assert groups.get("cattle")["spec"]["allocation"]["size"] == 5
    assert cli("ls").stdout.split() == ["ID", "cattle"]
    current = subprocess.run(  # --context "" is the kubeconfig's current context, as kubectl's
        [sys.executable, "-m", "infrakit.cli", "--context", "", "-n", operator.namespace, "ls", "-q"],
        env=env, capture_output=True, text=True, check=False, timeout=60,
    )  # fmt: skip
    assert current.stdout.split() == ["cattle"], current.stderr
    # Status keeps counts only: describe lists from the instance plugin, here the operator's directory.
    unreachable = cli("describe", "cattle")
    assert unreachable.returncode == 2
    assert unreachable.stderr.startswith("Error: --dir: group 'cattle' has 5 instances (status keeps counts only)")
    rows = [
        line.split()
        for line in cli("--dir", str(operator.instance_dir), "describe", "cattle", "-q").stdout.splitlines()
    ]
    assert {r[0] for r in rows} == set(operator.instances("cattle"))
    assert all(f"infrakit.config_sha={SHA1}" in r[2] for r in rows)
    assert cli("commit", str(EXAMPLES / "cattle2.yaml")).returncode == 0
    wait_until(lambda: converged(groups, operator, "cattle", size=10, sha=SHA2), what="10 instances via the CLI")

    # Who wrote what, as the API server records it: our own managers, never OpenAPI-Generator.
    def managers(*args: str) -> set[tuple[str, str, str]]:
        listing = json.loads(groups.kubectl("get", *args, "-o", "json", "--show-managed-fields").stdout)
        items = listing.get("items", [listing])
        return {
            (e["manager"], e["operation"], e.get("subresource", ""))
            for item in items
            for e in item["metadata"].get("managedFields", [])
        }

    assert managers("group", "cattle") == {
        ("infrakit-cli", "Apply", ""),  # the spec
        ("infrakit-operator", "Update", ""),  # the finalizer
        ("infrakit-operator", "Update", "status"),
    }
    assert {m for m, _, _ in managers("events")} == {"infrakit-operator"}
    if not EXTERNAL:
        assert {m for m, _, _ in managers("lease", "infrakit-operator")} == {"infrakit-operator"}
    assert cli("describe", "nonesuch").returncode == 2

    # Free means what it means locally: the Group is forgotten, its instances stay (marked
    # orphaned, so no collector takes them), and a new commit adopts them.
    kept = set(operator.instances("cattle"))
    assert cli("free", "cattle").stdout == "Freed cattle\n"
    wait_until(lambda: cli("ls", "-q").stdout == "", what="the freed Group gone")
    assert set(operator.instances("cattle")) == kept
    assert all(d["Tags"]["infrakit.orphaned"] == "true" for d in operator.instances("cattle").values())
    assert cli("commit", str(EXAMPLES / "cattle2.yaml")).stdout == "Committed cattle: Managing 10 instances\n"
    wait_until(lambda: converged(groups, operator, "cattle", size=10, sha=SHA2), what="adopted")
    assert set(operator.instances("cattle")) == kept


@pytest.mark.skipif(EXTERNAL, reason="reads the endpoints of a local operator process")
def test_metrics_liveness_and_no_kopf_bookkeeping(operator_factory: Callable[..., Operator], groups: Groups) -> None:
    import socket
    import urllib.error
    import urllib.request

    def free_port() -> int:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            return int(probe.getsockname()[1])

    def readyz(port: int) -> tuple[int, dict[str, Any]]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=5) as response:
                return int(response.status), dict(json.loads(response.read()))
        except urllib.error.HTTPError as error:
            return int(error.code), dict(json.loads(error.read()))
        except OSError:
            return 0, {}  # not listening yet

    metrics_port, liveness_port, ready_port, standby_port = free_port(), free_port(), free_port(), free_port()
    groups.apply(EXAMPLES / "cattle.yaml")  # there before the operator: readiness waits for its first sync
    operator = operator_factory(start=False)
    operator.extra = [
        "--metrics-bind-address", f"127.0.0.1:{metrics_port}",
        "--liveness", f"http://127.0.0.1:{liveness_port}/healthz",
        "--readiness", f"http://127.0.0.1:{ready_port}/readyz",
    ]  # fmt: skip
    operator.start()
    _, body = wait_until(lambda: (r := readyz(ready_port))[0] == 200 and r, what="/readyz 200")
    assert (body["reason"], body["leader"], body["groups"], body["pending"]) == ("leader", True, 1, 0)
    assert groups.status("cattle").get("observedGeneration") == 1  # ready means synced once
    wait_until(lambda: converged(groups, operator, "cattle", size=5, sha=SHA1), what="5 instances")

    # A second replica: not the leader, yet ready, and it says who holds the Lease.
    standby = operator_factory(start=False)
    standby.extra = ["--readiness", f"http://127.0.0.1:{standby_port}/readyz"]
    standby.start(wait=False)
    _, body = wait_until(lambda: (r := readyz(standby_port))[0] == 200 and r, what="the standby's /readyz 200")
    assert body["leader"] is False
    holder = json.loads(groups.kubectl("get", "lease", "infrakit-operator", "-o", "json").stdout)["spec"]
    assert body["reason"] == f"standby: the Lease is held by {holder['holderIdentity']}"
    wait_until(lambda: "waiting for the lease" in standby.log.read_text(), what="the standby's log line")

    def scrape() -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5) as response:
            return str(response.read().decode())

    labels = f'group="cattle",namespace="{operator.namespace}"'
    wanted = f'infrakit_group_instances{{{labels},state="desired"}} 5.0'
    text = wait_until(lambda: wanted in (t := scrape()) and t, what="metrics")
    assert f'infrakit_group_instances{{{labels},state="up_to_date"}} 5.0' in text
    assert f'infrakit_reconciles_total{{{labels},result="ok"}}' in text
    assert "infrakit_reconcile_duration_seconds_count" in text
    assert "infrakit_leader 1.0" in text
    with urllib.request.urlopen(f"http://127.0.0.1:{liveness_port}/healthz", timeout=5) as response:
        assert response.status == 200
        assert json.loads(response.read())  # kopf's probe results, ours included
    annotations = groups.get("cattle")["metadata"].get("annotations") or {}
    assert not [k for k in annotations if "kopf" in k]  # on.event handlers keep no per-object state
