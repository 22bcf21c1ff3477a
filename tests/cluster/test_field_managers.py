"""``infrakit-local --context C commit`` applies as ``infrakit-cli``; no field of another manager unless asked.

In: a Group applied server-side by another manager (a GitOps tool, here kubectl with
``--field-manager=gitops``), then committed by the CLI with a different size. Out: a
one-line error naming the conflict and ``--force-conflicts`` (exit 2, nothing changed),
then with ``--force-conflicts`` the field moves to ``infrakit-cli`` in managedFields.
The operator's managers are checked with a running operator in tests/e2e.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from infrakit import cli
from tests.clusterfixtures import REPO_ROOT, Cluster

pytestmark = pytest.mark.cluster

EXAMPLE = REPO_ROOT / "examples" / "cattle.yaml"


def invoke(cluster: Cluster, namespace: str, *args: str) -> tuple[int, str, str]:
    context = cluster.kubectl("config", "current-context").stdout.strip()
    result = CliRunner(env={"KUBECONFIG": cluster.kubeconfig}).invoke(
        cli.cli, ["--context", context, "--namespace", namespace, *args]
    )
    return result.exit_code, result.stdout, result.stderr


def managers(cluster: Cluster, namespace: str) -> dict[str, list[dict[str, Any]]]:
    body = json.loads(
        cluster.kubectl("get", "group", "cattle", "-n", namespace, "-o", "json", "--show-managed-fields").stdout
    )
    found: dict[str, list[dict[str, Any]]] = {}
    for entry in body["metadata"]["managedFields"]:
        found.setdefault(entry["manager"], []).append(entry)
    return found


def owns_size(entry: dict[str, Any]) -> bool:
    return "f:size" in json.dumps(entry.get("fieldsV1", {}))


def test_commit_is_an_apply_by_infrakit_cli(crd_installed: Cluster, namespace: str, home: Path) -> None:
    code, _, err = invoke(crd_installed, namespace, "commit", str(EXAMPLE))
    assert code == 0, err
    found = managers(crd_installed, namespace)
    assert set(found) == {"infrakit-cli"}
    assert [e["operation"] for e in found["infrakit-cli"]] == ["Apply"]


def test_no_field_of_another_manager_without_force_conflicts(
    crd_installed: Cluster, namespace: str, home: Path, tmp_path: Path
) -> None:
    crd_installed.kubectl(
        "apply", "--server-side", "--field-manager=gitops", "-n", namespace, "-f", str(EXAMPLE)
    )  # a GitOps tool owns the spec
    bigger = tmp_path / "bigger.yaml"
    bigger.write_text(EXAMPLE.read_text().replace("size: 5", "size: 7"))

    code, out, err = invoke(crd_installed, namespace, "commit", str(bigger))
    assert (code, out) == (2, "")
    assert err.count("\n") == 1 and err.startswith(f"Error: {bigger}: --force-conflicts: Apply failed")
    assert "conflict" in err and '"gitops"' in err and "--force-conflicts" in err.split(";", 1)[1]
    body = json.loads(crd_installed.kubectl("get", "group", "cattle", "-n", namespace, "-o", "json").stdout)
    assert body["spec"]["allocation"]["size"] == 5  # nothing changed
    assert owns_size(managers(crd_installed, namespace)["gitops"][0])

    code, out, err = invoke(crd_installed, namespace, "commit", "--force-conflicts", str(bigger))
    assert code == 0, err
    found = managers(crd_installed, namespace)
    assert owns_size(found["infrakit-cli"][0])
    assert not any(owns_size(e) for e in found.get("gitops", []))
