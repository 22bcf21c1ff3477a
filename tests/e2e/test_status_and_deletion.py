"""The operator on a real API server: status never lies, deletion never leaks, kopf scans.

Each test reproduces a defect of the operator's old hand-built runtime (docstrings).
"""

from __future__ import annotations

import concurrent.futures
import json
from collections.abc import Callable

import pytest

from tests.clusterfixtures import _delete_namespace
from tests.conftest import EXAMPLES
from tests.e2e.conftest import EXTERNAL, Groups, Operator, wait_until
from tests.volumes import full, read_only

pytestmark = [pytest.mark.cluster, pytest.mark.skipif(EXTERNAL, reason="breaks the operator's own volume")]


def ready(groups: Groups, name: str = "cattle") -> dict[str, str]:
    return groups.condition(name, "Ready")


def converged(groups: Groups, operator: Operator, size: int) -> bool:
    status = groups.status("cattle")
    return (
        ready(groups).get("status") == "True"
        and status.get("replicas") == size
        and status.get("observedGeneration") == groups.get("cattle")["metadata"]["generation"]
        and len(operator.instances("cattle")) == size
    )


def test_a_read_only_volume_is_ready_false_with_a_warning_and_recovers(operator: Operator, groups: Groups) -> None:
    """Was: Ready=True, Converged and no Warning event while every write failed."""
    groups.apply(EXAMPLES / "cattle.yaml")
    wait_until(lambda: converged(groups, operator, 5), what="5 instances")
    with read_only(operator.instance_dir):
        groups.kubectl("scale", "group", "cattle", "--replicas=7")
        wait_until(lambda: ready(groups).get("reason") == "ReconcileError", timeout=15, what="Ready=False")
        condition = ready(groups)
        assert condition["status"] == "False" and "Operation not permitted" in condition["message"]
        assert groups.status("cattle")["replicas"] == 5  # observed, not planned
        warnings = [e for e in groups.events() if e["reason"] == "ReconcileError" and e["type"] == "Warning"]
        assert warnings and "Operation not permitted" in warnings[0]["message"]
    wait_until(lambda: converged(groups, operator, 7), timeout=45, what="recovery by itself")


def test_a_full_volume_is_ready_false_and_recovers(operator: Operator, groups: Groups) -> None:
    groups.apply(EXAMPLES / "cattle.yaml")
    wait_until(lambda: converged(groups, operator, 5), what="5 instances")
    with full(operator.instance_dir):
        groups.kubectl("scale", "group", "cattle", "--replicas=6")
        wait_until(lambda: ready(groups).get("reason") == "ReconcileError", timeout=15, what="Ready=False")
        assert "No space left on device" in ready(groups)["message"]
    wait_until(lambda: converged(groups, operator, 6), timeout=45, what="recovery by itself")


def test_groups_deleted_right_after_creation_leave_no_instance(operator: Operator, groups: Groups) -> None:
    """Was: 11-18 of 20 Groups created and deleted within milliseconds left their instances forever."""
    import yaml
    from kubernetes import client, config

    api = client.CustomObjectsApi(config.new_client_from_config(config_file=groups.cluster.kubeconfig))
    template = yaml.safe_load((EXAMPLES / "cattle.yaml").read_text())
    names = [f"quick-{i}" for i in range(20)]

    def create_then_delete(name: str) -> None:
        body = {**template, "metadata": {"name": name}}
        api.create_namespaced_custom_object("infrakit.io", "v1alpha1", groups.namespace, "groups", body)
        api.delete_namespaced_custom_object("infrakit.io", "v1alpha1", groups.namespace, "groups", name)

    with concurrent.futures.ThreadPoolExecutor(max_workers=4) as pool:
        list(pool.map(create_then_delete, names))
    groups.apply(EXAMPLES / "cattle.yaml")  # a survivor, to show the others were acted on too
    wait_until(lambda: converged(groups, operator, 5), what="the survivor")
    wait_until(lambda: not [n for n in names if operator.instances(n)], timeout=30, what="nothing left behind")
    listed = json.loads(groups.kubectl("get", "groups", "-o", "json").stdout)["items"]
    assert [g["metadata"]["name"] for g in listed] == ["cattle"]


def test_namespace_globs_serve_namespaces_made_after_the_start(
    operator_factory: Callable[..., Operator], groups: Groups, namespace: str
) -> None:
    """Was: `-n 'team-*'` (promised by --help) watched nothing: kopf's scanning was switched off."""
    operator = operator_factory("--namespace", f"{namespace}-g*", "--namespace", namespace)
    made = f"{namespace}-glob"
    groups.cluster.kubectl("create", "namespace", made)
    try:
        groups.cluster.kubectl("apply", "-n", made, "-f", str(EXAMPLES / "cattle.yaml"))

        def served() -> bool:
            return any(
                json.loads(path.read_text())["Tags"].get("infrakit.namespace") == made
                for path in operator.instance_dir.glob("instance-*")
            )

        try:
            # kopf sees the namespace through its namespace watch, then starts one on its Groups.
            wait_until(served, timeout=60, what="the group in the namespace made after the start")
        except AssertionError as error:
            raise AssertionError(f"{error}\noperator log (tail):\n{operator.log.read_text()[-3000:]}") from None
    finally:
        _delete_namespace(groups.cluster, made)
