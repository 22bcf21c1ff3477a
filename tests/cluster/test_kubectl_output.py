"""What a kubectl user sees of a Group, on a real kube-apiserver (no operator running).

``kubectl get groups`` reads DESIRED from the spec and READY/REASON from the Ready
condition, PAUSED says false when unset, ``kubectl explain`` describes every field,
and scaling a pets group is refused with a message saying what to do instead.
The schema walk at the top needs no API server.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from typing import Any

import pytest
import yaml

from tests.cluster.test_crd_server import _table
from tests.clusterfixtures import CRD_DIR, REPO_ROOT, Cluster

EXAMPLE = REPO_ROOT / "examples" / "cattle.yaml"
SCALE_PETS = "a pets group (allocation.logicalIDs) cannot be scaled: edit its logical IDs"
PETS = {
    "apiVersion": "infrakit.io/v1alpha1",
    "kind": "Group",
    "metadata": {"name": "pets"},
    "spec": {
        "allocation": {"logicalIDs": ["db-1", "db-2"]},
        "instance": {"plugin": "instance-file"},
        "flavor": {"plugin": "flavor-vanilla"},
    },
}


def _crd() -> dict[str, Any]:
    crd: dict[str, Any] = yaml.safe_load((CRD_DIR / "infrakit.io_groups.yaml").read_text())
    return crd


def _schema() -> dict[str, Any]:
    schema: dict[str, Any] = _crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return schema


def _fields(schema: Mapping[str, Any], path: str = "group") -> Iterator[tuple[str, Mapping[str, Any]]]:
    """Every property under ``schema`` as (kubectl explain path, its schema), items included."""
    for name, child in (schema.get("properties") or {}).items():
        yield f"{path}.{name}", child
        yield from _fields(child.get("items") or child, f"{path}.{name}")


def _objects(schema: Mapping[str, Any], path: str = "group") -> Iterator[str]:
    """The explain paths of every node that has fields (each ``kubectl explain`` of one shows them all)."""
    if schema.get("properties"):
        yield path
    for name, child in (schema.get("properties") or {}).items():
        yield from _objects(child.get("items") or child, f"{path}.{name}")


# -- no API server needed --------------------------------------------------------------------


def test_every_field_of_the_schema_has_a_description() -> None:
    schema = _schema()
    assert schema.get("description")
    # metadata is ObjectMeta: the API server forbids describing it, kubectl explain has its own text.
    missing = [path for path, field in _fields(schema) if path != "group.metadata" and not field.get("description")]
    assert missing == []
    for path in ("group.spec", "group.status"):
        assert len([p for p, _ in _fields(schema) if p.startswith(path + ".")]) > 5  # the walk went down


def test_every_printer_column_has_a_description() -> None:
    columns = _crd()["spec"]["versions"][0]["additionalPrinterColumns"]
    assert [c["name"] for c in columns if not c.get("description") and c["name"] != "Age"] == []


# -- kubectl get -----------------------------------------------------------------------------


def _apply(cluster: Cluster, namespace: str, manifest: Mapping[str, Any]) -> None:
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(manifest))


def _status(cluster: Cluster, namespace: str, name: str, status: Mapping[str, Any]) -> None:
    cluster.kubectl(
        "patch", "group", name, "-n", namespace, "--subresource=status", "--type=merge",
        "-p", json.dumps({"status": status}),
    )  # fmt: skip


def _rows(cluster: Cluster, namespace: str, *extra: str) -> dict[str, dict[str, str]]:
    _, rows = _table(cluster.kubectl("get", "groups", "-n", namespace, *extra).stdout)
    return {row["NAME"]: row for row in rows}


def test_desired_is_the_spec_even_before_the_operator_saw_it(crd_installed: Cluster, namespace: str) -> None:
    _apply(crd_installed, namespace, yaml.safe_load(EXAMPLE.read_text()))
    _status(crd_installed, namespace, "cattle", {"desiredReplicas": 5, "replicas": 5, "updatedReplicas": 5})
    crd_installed.kubectl("scale", "group", "cattle", "-n", namespace, "--replicas=8")
    row = _rows(crd_installed, namespace)["cattle"]
    # The spec says 8 at once; the observed counts stay what the operator last saw.
    assert (row["DESIRED"], row["CURRENT"], row["UP-TO-DATE"]) == ("8", "5", "5")


def test_ready_and_reason_come_from_the_ready_condition(crd_installed: Cluster, namespace: str) -> None:
    _apply(crd_installed, namespace, yaml.safe_load(EXAMPLE.read_text()))
    message = "spec.flavor.properties: unknown property 'Inits'"
    conditions = [
        {"type": "Paused", "status": "False", "reason": "Active", "lastTransitionTime": "2030-01-01T00:00:00Z"},
        {
            "type": "Ready",
            "status": "False",
            "reason": "InvalidSpec",
            "message": message,
            "lastTransitionTime": "2030-01-01T00:00:00Z",
        },
    ]
    _status(crd_installed, namespace, "cattle", {"replicas": 5, "readyReplicas": 4, "conditions": conditions})
    row = _rows(crd_installed, namespace)["cattle"]
    assert (row["HEALTHY"], row["READY"], row["REASON"]) == ("4", "False", "InvalidSpec")
    assert _rows(crd_installed, namespace, "-o", "wide")["cattle"]["MESSAGE"] == message


def test_paused_says_false_when_unset(crd_installed: Cluster, namespace: str) -> None:
    manifest = yaml.safe_load(EXAMPLE.read_text())
    assert "paused" not in manifest["spec"]
    _apply(crd_installed, namespace, manifest)
    assert _rows(crd_installed, namespace, "-o", "wide")["cattle"]["PAUSED"] == "false"
    crd_installed.kubectl("patch", "group", "cattle", "-n", namespace, "--type=merge", "-p", '{"spec":{"paused":true}}')
    assert _rows(crd_installed, namespace, "-o", "wide")["cattle"]["PAUSED"] == "true"


def test_a_pets_group_has_no_desired_size_to_show(crd_installed: Cluster, namespace: str) -> None:
    _apply(crd_installed, namespace, PETS)
    _status(crd_installed, namespace, "pets", {"desiredReplicas": 2, "replicas": 2})
    row = _rows(crd_installed, namespace)["pets"]
    assert (row["DESIRED"], row["CURRENT"]) == ("", "2")


# -- /scale of pets --------------------------------------------------------------------------


def test_scaling_a_pets_group_is_refused_with_what_to_do(crd_installed: Cluster, namespace: str) -> None:
    _apply(crd_installed, namespace, PETS)
    before = json.loads(crd_installed.kubectl("get", "group", "pets", "-n", namespace, "-o", "json").stdout)

    scaled = crd_installed.kubectl("scale", "group", "pets", "-n", namespace, "--replicas=3", check=False)
    assert scaled.returncode == 1
    assert SCALE_PETS in scaled.stderr
    assert "InternalError" not in scaled.stderr
    # The same through a patch of the spec (what kubectl scale does when it cannot use /scale).
    patched = crd_installed.kubectl(
        "patch", "group", "pets", "-n", namespace, "--type=merge", "-p", '{"spec":{"allocation":{"size":3}}}',
        check=False,
    )  # fmt: skip
    assert patched.returncode == 1
    assert SCALE_PETS in patched.stderr

    after = json.loads(crd_installed.kubectl("get", "group", "pets", "-n", namespace, "-o", "json").stdout)
    assert after["spec"] == before["spec"]
    assert after["metadata"]["generation"] == before["metadata"]["generation"]

    # A GET of /scale (kubectl scale --current-replicas, an autoscaler) is answered by the API
    # server itself, which cannot find spec.allocation.size: not ours to change (see the CRD).
    path = f"/apis/infrakit.io/v1alpha1/namespaces/{namespace}/groups/pets/scale"
    read = crd_installed.kubectl("get", "--raw", path, check=False)
    assert read.returncode == 1
    assert ".spec.allocation.size" in read.stderr


@pytest.mark.parametrize(
    ("allocation", "name"),
    [({"size": 2, "logicalIDs": ["a", "b"]}, "both"), ({}, "neither")],
)
def test_a_new_group_with_a_wrong_allocation_keeps_the_plain_message(
    crd_installed: Cluster, namespace: str, allocation: dict[str, Any], name: str
) -> None:
    manifest = {**PETS, "metadata": {"name": name}, "spec": {**PETS["spec"], "allocation": allocation}}
    applied = crd_installed.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(manifest), check=False)
    assert applied.returncode == 1
    assert "set exactly one of allocation.size or allocation.logicalIDs" in applied.stderr
    assert SCALE_PETS not in applied.stderr


def test_a_cattle_group_still_scales_and_pets_can_become_cattle(crd_installed: Cluster, namespace: str) -> None:
    _apply(crd_installed, namespace, PETS)
    cattle = {**PETS, "spec": {**PETS["spec"], "allocation": {"size": 4}}}
    _apply(crd_installed, namespace, cattle)  # apply removes logicalIDs and sets size in one write
    crd_installed.kubectl("scale", "group", "pets", "-n", namespace, "--replicas=6")
    got = json.loads(crd_installed.kubectl("get", "group", "pets", "-n", namespace, "-o", "json").stdout)
    assert got["spec"]["allocation"] == {"size": 6}


# -- kubectl explain -------------------------------------------------------------------------


def test_kubectl_explain_describes_every_field(crd_installed: Cluster) -> None:
    schema = _schema()
    for path in _objects(schema):
        text = crd_installed.kubectl("explain", path).stdout
        assert "<no description>" not in text, f"kubectl explain {path}:\n{text}"
    recursive = crd_installed.kubectl("explain", "group", "--recursive").stdout
    assert "<no description>" not in recursive
    listed = {line.split()[0] for line in recursive.splitlines() if line.startswith(" ") and line.strip()}
    assert {path.rsplit(".", 1)[1] for path, _ in _fields(schema)} <= listed
    plugin = crd_installed.kubectl("explain", "group.spec.flavor.plugin").stdout
    assert "flavor-vanilla" in plugin
