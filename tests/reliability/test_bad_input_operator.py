"""The bad-input corpus through ``kubectl apply``: what the API server cannot reject,
the operator reports as ``Ready=False, reason=InvalidSpec`` without touching instances.
(What the server rejects is checked in tests/cluster/test_bad_specs.py.)
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tests.corpus import _GO_JSON, _KUBECTL_YAML, _NOT_JSON_TO_KUBECTL, CASES, SERVER_REJECTS
from tests.e2e.conftest import Groups, Operator, wait_until

pytestmark = pytest.mark.cluster

# Kubernetes objects the server accepts but we refuse; the InfraKit JSON cases are not
# Kubernetes objects at all, and a duplicate key never reaches anyone (kubectl keeps the last).
OPERATOR_CASES = [
    c
    for c in CASES
    if c.server != SERVER_REJECTS
    and not c.id.startswith("infrakit-json")
    and c.id != "duplicate-key"
    # kubectl turns these into valid JSON before anybody sees them: the operator gets a valid Group
    and not c.server.startswith((_KUBECTL_YAML, _NOT_JSON_TO_KUBECTL, _GO_JSON))
]


def test_operator_reports_what_the_server_cannot_reject(operator: Operator, groups: Groups, tmp_path: Path) -> None:
    assert len(OPERATOR_CASES) == 7
    for case in OPERATOR_CASES:
        document = yaml.safe_load(case.text)
        document["metadata"]["name"] = case.id
        path = tmp_path / f"{case.id}.yaml"
        path.write_text(yaml.safe_dump(document))
        groups.apply(path)
    for case in OPERATOR_CASES:
        ready = wait_until(
            lambda case=case: (c := groups.condition(case.id, "Ready")).get("reason") == "InvalidSpec" and c,
            what=f"InvalidSpec on {case.id}",
        )
        assert ready["status"] == "False"
        assert case.field.split(".")[-1].split("[")[0] in ready["message"] or case.field in ready["message"], ready
        assert operator.instances(case.id) == {}
    assert not operator.instance_dir.exists() or list(operator.instance_dir.iterdir()) == []
