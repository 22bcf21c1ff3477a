"""A plugin name with a sub-type (``instance-mycloud/large``) on a real kube-apiserver (issue 19, K17).

In: Groups applied with ``kubectl`` naming sub-typed plugins, well and badly formed.
Out: the API server takes what ``infrakit-local commit`` takes (the CRD's pattern is the
local schema's) and refuses the rest naming the field.
"""

from __future__ import annotations

import json

import pytest

from infrakit.core import specs
from tests.clusterfixtures import Cluster


def _manifest(name: str, instance: str, flavor: str = "flavor-vanilla") -> str:
    return json.dumps(
        {
            "apiVersion": "infrakit.io/v1alpha1",
            "kind": "Group",
            "metadata": {"name": name},
            "spec": {"allocation": {"size": 1}, "instance": {"plugin": instance}, "flavor": {"plugin": flavor}},
        }
    )


@pytest.mark.parametrize(
    ("instance", "accepted"),
    [
        ("instance-mycloud/large", True),
        ("instance-aws/ec2-instance", True),
        ("i/B_1.x", True),
        ("instance-mycloud/", False),
        ("instance-mycloud/a/b", False),
        ("instance-mycloud/..", False),
        ("../../bin/sh", False),
    ],
)
def test_the_api_server_takes_what_commit_takes(
    crd_installed: Cluster, namespace: str, instance: str, accepted: bool
) -> None:
    done = crd_installed.kubectl(
        "apply", "-n", namespace, "-f", "-", input=_manifest("sub", instance, "flavor-x/web"), check=False
    )
    assert (done.returncode == 0) is accepted, done.stderr
    if not accepted:
        assert "spec.instance.plugin" in done.stderr
    local = json.loads(_manifest("sub", instance, "flavor-x/web"))
    try:
        specs.parse_document(local)
        locally = True
    except specs.SpecError as error:
        assert error.field == "spec.instance.plugin"
        locally = False
    assert locally is accepted
