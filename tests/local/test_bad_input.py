"""Bad input: a one-line error naming the field, exit code 2, nothing changed on disk."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import EXAMPLES, snapshot
from tests.corpus import CASES, Case
from tests.local.conftest import Local


@pytest.fixture
def populated(local: Local) -> Local:
    """A store with a group and its instances, so 'unchanged' means something."""
    local("commit", str(EXAMPLES / "cattle.yaml"))
    return local


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
@pytest.mark.parametrize("pretend", [False, True], ids=["commit", "pretend"])
def test_rejected_with_field_and_nothing_changed(populated: Local, tmp_path: Path, case: Case, pretend: bool) -> None:
    path = tmp_path / ("group.json" if case.text.lstrip().startswith(b"{") else "group.yaml")
    path.write_bytes(case.text)
    before = snapshot(populated.home)

    result = populated("commit", str(path), *(["--pretend"] if pretend else []), code=2)

    assert result.stdout == ""
    message = result.stderr.strip()
    assert "\n" not in message, message
    assert message.startswith("Error: "), message
    assert case.field in message, f"{case.field!r} not named in {message!r}"
    assert snapshot(populated.home) == before


def test_corpus_is_large_enough() -> None:
    assert len(CASES) >= 50
    assert len({c.id for c in CASES}) == len(CASES)


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["describe", "nonesuch"], "group 'nonesuch' not found"),
        (["free", "nonesuch"], "group 'nonesuch' not found"),
        (["destroy", "nonesuch"], "group 'nonesuch' not found"),
        (["inspect", "nonesuch"], "group 'nonesuch' not found"),
        (["describe", "../etc"], "not a DNS-1123 label"),
        (["commit", "/no/such/file.yaml"], "/no/such/file.yaml: cannot read the file"),
        (["instance-file", "destroy", "instance-42"], "instance instance-42 not found"),
        (["instance-file", "destroy", "../../etc/passwd"], "is not an instance ID"),
        (["instance-file", "describe", "--tags", "novalue"], "--tags"),
    ],
)
def test_bad_arguments(populated: Local, args: list[str], needle: str) -> None:
    before = snapshot(populated.home)
    result = populated(*args, code=2)
    assert needle in result.stderr
    assert snapshot(populated.home) == before


def test_multi_document_file_is_all_or_nothing(local: Local, tmp_path: Path) -> None:
    good = (EXAMPLES / "cattle.yaml").read_text()
    bad = good.replace("name: cattle", "name: second").replace("size: 5", "size: -1")
    path = tmp_path / "two.yaml"
    path.write_text(good + "\n---\n" + bad)
    result = local("commit", str(path), code=2)
    assert "document 2" in result.stderr and "spec.allocation.size" in result.stderr
    assert snapshot(local.home) == {}
