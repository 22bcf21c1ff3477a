"""``infrakit-local --context C describe GROUP`` lists every instance, at 10,000 too, from the plugin.

In: a Group on a real API server whose status counts 10,000 instances, and the 10,000
instance files as the operator's file plugin wrote them (plus others' instances in the
same directory). Out: the CLI's rows (every member, nothing else) with ``--dir``, and
without it a one-line error with exit 2 that names ``--dir`` and the count, rather
than rows from the CLI's own (empty) directory.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from infrakit import cli
from infrakit.core import instances, specs, status
from infrakit.plugins import instance_file
from tests.clusterfixtures import REPO_ROOT, Cluster

pytestmark = pytest.mark.cluster

COUNT = 10_000


def invoke(cluster: Cluster, namespace: str, *args: str) -> tuple[int, str, str]:
    context = cluster.kubectl("config", "current-context").stdout.strip()
    result = CliRunner(env={"KUBECONFIG": cluster.kubeconfig}).invoke(
        cli.cli, ["--context", context, "--namespace", namespace, *args]
    )
    return result.exit_code, result.stdout, result.stderr


def test_describe_lists_ten_thousand_instances_from_the_plugin(
    crd_installed: Cluster, namespace: str, tmp_path: Path, home: Path
) -> None:
    example = REPO_ROOT / "examples" / "cattle.yaml"
    crd_installed.kubectl("apply", "-n", namespace, "-f", str(example))
    body = json.loads(crd_installed.kubectl("get", "group", "cattle", "-n", namespace, "-o", "json").stdout)
    uid = crd_installed.kubectl("get", "namespace", "kube-system", "-o", "jsonpath={.metadata.uid}").stdout.strip()
    manifest = {k: v for k, v in body.items() if k != "status"}
    group = specs.parse_document(manifest, namespace=namespace, cluster=uid)
    plugin = instance_file.create({"dir": str(tmp_path / "volume"), "fsync": False})
    tags = {**status.membership_tags(group), instances.TAG_CONFIG_SHA: group.config_sha}
    made = {plugin.provision(instances.InstanceSpec(properties={}, tags=tags)) for _ in range(COUNT)}
    other = {**tags, instances.TAG_NAMESPACE: "elsewhere"}  # the same name in another namespace: not ours
    plugin.provision(instances.InstanceSpec(properties={}, tags=other))
    plugin.provision(instances.InstanceSpec(properties={}, tags={**tags, instances.TAG_CLUSTER: "another-cluster"}))
    counts = {
        "replicas": COUNT,
        "updatedReplicas": COUNT,
        "readyReplicas": COUNT,
        "configHash": group.config_sha,
        "selector": status.selector(group),  # as the operator writes it: the cluster's identity in it
    }
    crd_installed.kubectl(
        "patch", "group", "cattle", "-n", namespace, "--subresource=status", "--type=merge",
        "--patch-file=/dev/stdin", input=json.dumps({"status": counts}),
    )  # fmt: skip

    code, out, err = invoke(crd_installed, namespace, "--dir", str(tmp_path / "volume"), "describe", "cattle", "-q")
    assert code == 0, err
    rows = [line.split() for line in out.splitlines()]
    assert len(rows) == COUNT
    assert {r[0] for r in rows} == made

    code, out, err = invoke(crd_installed, namespace, "describe", "cattle")
    assert code == 2 and out == ""
    assert err.count("\n") == 1
    assert err.startswith(f"Error: --dir: group 'cattle' has {COUNT} instances (status keeps counts only)")


def test_pretend_is_exact_from_the_counts(crd_installed: Cluster, namespace: str, home: Path) -> None:
    example = REPO_ROOT / "examples" / "cattle.yaml"
    crd_installed.kubectl("apply", "-n", namespace, "-f", str(example))
    counts = {"replicas": COUNT, "updatedReplicas": COUNT - 3, "readyReplicas": COUNT, "configHash": "other"}
    crd_installed.kubectl(
        "patch", "group", "cattle", "-n", namespace, "--subresource=status", "--type=merge",
        "--patch-file=/dev/stdin", input=json.dumps({"status": counts}),
    )  # fmt: skip
    code, out, err = invoke(crd_installed, namespace, "commit", "--pretend", str(example))
    assert code == 0, err
    # Every instance is on another hash than the example's: all 10,000 roll, 9,995 go.
    assert out == (
        "Committing cattle would involve: Terminating 9995 instances to reduce the group size to 5, "
        "then performing a rolling update on 5 instances\n"
    )
