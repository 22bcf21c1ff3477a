"""The Group CRD (crds/) behaves as designed on a real kube-apiserver.

Printer columns, category and short name, the scale and status subresources,
and verbatim preservation of plugin ``properties``.
"""

from __future__ import annotations

import json
from typing import Any

import yaml

from tests.clusterfixtures import REPO_ROOT, Cluster

EXAMPLE = REPO_ROOT / "examples" / "cattle.yaml"
STATUS = {"desiredReplicas": 5, "replicas": 3, "updatedReplicas": 2, "readyReplicas": 1, "configHash": "abc123def"}
COLUMNS = ["NAME", "DESIRED", "CURRENT", "UP-TO-DATE", "HEALTHY", "READY", "REASON", "AGE"]


def _group(cluster: Cluster, namespace: str, name: str = "cattle") -> dict[str, Any]:
    out = cluster.kubectl("get", "group.infrakit.io", name, "-n", namespace, "-o", "json").stdout
    obj: dict[str, Any] = json.loads(out)
    return obj


def _apply_example(cluster: Cluster, namespace: str) -> None:
    cluster.kubectl("apply", "-n", namespace, "-f", str(EXAMPLE))


def _table(text: str) -> tuple[list[str], list[dict[str, str]]]:
    """Parse kubectl's table output by column position (cells may be blank)."""
    header, *lines = text.rstrip("\n").splitlines()
    names = header.split()
    starts = [header.index(f" {n} ") + 1 if i else 0 for i, n in enumerate(names[:-1])]
    starts.append(header.rindex(" " + names[-1]) + 1 if len(names) > 1 else 0)
    bounds = list(zip(starts, [*starts[1:], None], strict=True))
    rows = [{n: line[a:b].strip() for n, (a, b) in zip(names, bounds, strict=True)} for line in lines]
    return names, rows


def test_apply_crds_and_example(crd_installed: Cluster, namespace: str) -> None:
    _apply_example(crd_installed, namespace)
    group = _group(crd_installed, namespace)
    assert group["kind"] == "Group"
    assert group["apiVersion"] == "infrakit.io/v1alpha1"
    assert group["spec"]["allocation"]["size"] == 5


def test_printer_columns(crd_installed: Cluster, namespace: str) -> None:
    _apply_example(crd_installed, namespace)
    names, rows = _table(crd_installed.kubectl("get", "groups", "-n", namespace).stdout)
    assert names == COLUMNS
    assert [row["NAME"] for row in rows] == ["cattle"]

    names, rows = _table(crd_installed.kubectl("get", "groups", "-n", namespace, "-o", "wide").stdout)
    assert names == [*COLUMNS, "CONFIG-HASH", "PAUSED", "MESSAGE"]


def test_category_and_short_name(crd_installed: Cluster, namespace: str) -> None:
    _apply_example(crd_installed, namespace)
    by_category = crd_installed.kubectl("get", "infrakit", "-n", namespace, "-o", "name").stdout.split()
    assert by_category == ["group.infrakit.io/cattle"]
    by_short = crd_installed.kubectl("get", "ig", "cattle", "-n", namespace, "-o", "name").stdout.split()
    assert by_short == ["group.infrakit.io/cattle"]
    singular = crd_installed.kubectl("get", "group", "cattle", "-n", namespace, "-o", "name").stdout.split()
    assert singular == ["group.infrakit.io/cattle"]


def test_scale_subresource(crd_installed: Cluster, namespace: str) -> None:
    _apply_example(crd_installed, namespace)
    crd_installed.kubectl("scale", "group", "cattle", "-n", namespace, "--replicas=7")
    assert _group(crd_installed, namespace)["spec"]["allocation"]["size"] == 7

    crd_installed.kubectl(
        "patch",
        "group",
        "cattle",
        "-n",
        namespace,
        "--subresource=status",
        "--type=merge",
        "-p",
        json.dumps({"status": {"replicas": 4, "selector": "infrakit.io/group=cattle"}}),
    )
    path = f"/apis/infrakit.io/v1alpha1/namespaces/{namespace}/groups/cattle/scale"
    scale = json.loads(crd_installed.kubectl("get", "--raw", path).stdout)
    assert scale["kind"] == "Scale"
    assert scale["spec"]["replicas"] == 7
    assert scale["status"]["replicas"] == 4
    assert scale["status"]["selector"] == "infrakit.io/group=cattle"


def test_status_subresource(crd_installed: Cluster, namespace: str) -> None:
    _apply_example(crd_installed, namespace)
    crd_installed.kubectl(
        "patch",
        "group",
        "cattle",
        "-n",
        namespace,
        "--subresource=status",
        "--type=merge",
        "-p",
        json.dumps({"status": STATUS}),
    )
    group = _group(crd_installed, namespace)
    assert {k: group["status"][k] for k in STATUS} == STATUS

    _, rows = _table(crd_installed.kubectl("get", "groups", "-n", namespace, "-o", "wide").stdout)
    shown = {k: rows[0][k] for k in ("DESIRED", "CURRENT", "UP-TO-DATE", "HEALTHY", "CONFIG-HASH")}
    assert shown == {"DESIRED": "5", "CURRENT": "3", "UP-TO-DATE": "2", "HEALTHY": "1", "CONFIG-HASH": "abc123def"}

    # A write to the main resource may change spec but never status.
    manifest = yaml.safe_load(EXAMPLE.read_text())
    manifest["spec"]["allocation"] = {"size": 6}
    manifest["status"] = {"replicas": 99, "readyReplicas": 99, "configHash": "forged"}
    crd_installed.kubectl("apply", "-n", namespace, "-f", "-", input=yaml.safe_dump(manifest))
    group = _group(crd_installed, namespace)
    assert group["spec"]["allocation"]["size"] == 6
    assert {k: group["status"][k] for k in STATUS} == STATUS

    # ...and a status write cannot change spec.
    crd_installed.kubectl(
        "patch",
        "group",
        "cattle",
        "-n",
        namespace,
        "--subresource=status",
        "--type=merge",
        "-p",
        json.dumps({"spec": {"allocation": {"size": 1}}, "status": {"replicas": 6}}),
    )
    group = _group(crd_installed, namespace)
    assert group["spec"]["allocation"]["size"] == 6
    assert group["status"]["replicas"] == 6


def test_plugin_properties_survive_verbatim(crd_installed: Cluster, namespace: str) -> None:
    instance_props = {
        "Note": "kept as written",
        "Tags": {"tier": "web", "Project": "infrakit"},
        "Nested": {"deeper": {"list": [1, "two", {"three": 3.5}, None, True], "empty": {}}},
    }
    flavor_props = {"Init": ["echo hi", "echo bye"], "Attachments": [{"ID": "a", "Type": "disk"}]}
    manifest = {
        "apiVersion": "infrakit.io/v1alpha1",
        "kind": "Group",
        "metadata": {"name": "props"},
        "spec": {
            "allocation": {"size": 1},
            "instance": {"plugin": "instance-memory", "properties": instance_props},
            "flavor": {"plugin": "flavor-vanilla", "properties": flavor_props},
        },
    }
    crd_installed.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(manifest))
    spec = _group(crd_installed, namespace, "props")["spec"]
    assert spec["instance"]["properties"] == instance_props
    assert spec["flavor"]["properties"] == flavor_props


def test_unknown_spec_fields_are_pruned(crd_installed: Cluster, namespace: str) -> None:
    """Outside ``properties`` the schema is structural: unknown fields do not persist."""
    manifest = yaml.safe_load(EXAMPLE.read_text())
    manifest["metadata"]["name"] = "strict"
    manifest["spec"]["bogusField"] = {"x": 1}
    crd_installed.kubectl("apply", "-n", namespace, "--validate=false", "-f", "-", input=yaml.safe_dump(manifest))
    assert "bogusField" not in _group(crd_installed, namespace, "strict")["spec"]
