"""One corpus of bad Groups, checked twice: by the local validator and by the API server.

Every case must fail ``infrakit-local commit`` (exit 2, naming the field) and
``kubectl apply`` (non-zero, nothing created), except the cases whose ``server`` field
says why the API server cannot see the problem: those are listed here and left to the
operator, which reports them as an InvalidSpec condition (tests/e2e).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from infrakit import cli
from tests.clusterfixtures import Cluster
from tests.corpus import CASES, SERVER_REJECTS, Case

pytestmark = pytest.mark.cluster

SERVER_BLIND = {c.id: c.server for c in CASES if c.server != SERVER_REJECTS}


def test_the_cases_the_server_cannot_reject_are_known() -> None:
    assert set(SERVER_BLIND) == {
        "duplicate-key",
        "deeply-nested",
        "nested-properties",
        "unknown-instance-plugin",
        "unknown-flavor-plugin",
        "vanilla-init-not-list",
        "vanilla-tags-not-strings",
        "vanilla-unknown-property",
        "infrakit-json-no-properties",
        "infrakit-json-negative-size",
        "infrakit-json-bad-id",
        # YAML's own values: kubectl converts them to JSON ones (tests/corpus.py says how).
        "yaml-binary",
        "yaml-set",
        "yaml-omap",
        "yaml-pairs",
        "yaml-timestamp-tag",
        "yaml-number-key",
        "yaml-boolean-key",
        "yaml-mixed-keys",
        "yaml-integer-beyond-float64",
        "json-nan",
        "json-infinity",
        "json-unpaired-surrogate",
    }


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_rejected_locally_and_by_the_api_server(
    case: Case, crd_installed: Cluster, namespace: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / ("group.json" if case.text.lstrip().startswith(b"{") else "group.yaml")
    path.write_bytes(case.text)

    monkeypatch.setenv("INFRAKIT_HOME", str(tmp_path / "home"))
    local = CliRunner().invoke(cli.cli, ["commit", str(path)])
    assert local.exit_code == 2, local.output
    assert case.field in local.stderr

    if case.id in SERVER_BLIND:
        return
    applied = crd_installed.kubectl("apply", "-n", namespace, "-f", str(path), check=False)
    message = applied.stderr + applied.stdout
    assert applied.returncode != 0, f"the API server accepted {case.id}: {message}"
    server_validated = "is invalid" in message or "strict decoding error" in message
    if server_validated and case.field.startswith(("spec", "metadata")):
        # Validated by the server: it names the field (or, for a pruned null, its parent).
        parent = case.field.rsplit(".", 1)[0].split("[")[0]
        assert case.field in message or parent in message, message
    listed = crd_installed.kubectl("get", "groups", "-n", namespace, "-o", "name").stdout
    assert listed == "", f"{case.id} created {listed}"
