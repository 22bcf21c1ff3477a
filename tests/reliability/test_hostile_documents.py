"""Hostile documents and hand-edited store files (issue 11, items 5 and 6).

In: a multi-document file whose later document is bad; a store record edited by
hand. Out: exit code 2 with a one-line message, nothing written; the damaged group's
commands fail alone, every other group's work.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner, Result

from infrakit import cli
from infrakit.local import store
from tests.conftest import EXAMPLES, snapshot


def invoke(*args: str) -> Result:
    return CliRunner().invoke(cli.cli, list(args), catch_exceptions=False)


def manifest(name: str, *, size: int = 1, keys: str = "1") -> str:
    return f"""apiVersion: infrakit.io/v1alpha1
kind: Group
metadata: {{name: {name}}}
spec:
  allocation: {{size: {size}}}
  instance:
    plugin: instance-file
    properties:
      Keys: {keys}
  flavor: {{plugin: flavor-vanilla}}
"""


# --- a multi-document file is all or nothing ----------------------------------------------------


@pytest.mark.parametrize(
    ("second", "field"),
    [
        (manifest("second", keys=".inf"), "spec.instance.properties.Keys"),
        (manifest("second", keys="[.nan]"), "spec.instance.properties.Keys[0]"),
        (manifest("second", keys="1" * 400), "spec.instance.properties.Keys"),
        (manifest("second", keys='"\\udfff"'), "spec.instance.properties.Keys"),
        (manifest("second", keys="!!binary aGVsbG8="), "spec.instance.properties.Keys"),
        (manifest("second", keys="!!set {a}"), "spec.instance.properties.Keys"),
        (manifest("second", keys="{1: a}"), "spec.instance.properties.Keys"),
        (manifest('"second\\n"'), "metadata.name"),
    ],
    ids=["inf", "nan", "huge-int", "surrogate", "binary", "set", "number-key", "name-newline"],
)
@pytest.mark.parametrize("pretend", [False, True], ids=["commit", "pretend"])
def test_a_bad_second_document_commits_nothing(
    home: Path, tmp_path: Path, second: str, field: str, pretend: bool
) -> None:
    assert invoke("commit", str(EXAMPLES / "cattle.yaml")).exit_code == 0
    before = snapshot(home)
    path = tmp_path / "two.yaml"
    path.write_text(manifest("first", size=2) + "---\n" + second)

    result = invoke("commit", str(path), *(["--pretend"] if pretend else []))

    assert result.exit_code == 2
    assert result.stdout == ""
    message = result.stderr.strip()
    assert "\n" not in message and message.startswith("Error: "), message
    assert field in message
    assert snapshot(home) == before


# --- a damaged store record is that group's problem only -------------------------------------------


def _edit(change: Callable[[dict[str, object]], object]) -> Callable[[str], str]:
    def edit(text: str) -> str:
        record = yaml.safe_load(text)
        change(record)
        return yaml.safe_dump(record)

    return edit


def _raw(path: str, value: str) -> Callable[[str], str]:
    """Set ``path`` (dotted) to a placeholder, then write ``value`` verbatim in its place."""

    def edit(text: str) -> str:
        record = yaml.safe_load(text)
        *parents, last = path.split(".")
        node = record
        for key in parents:
            node = node.setdefault(key, {})
        node[last] = "PLACEHOLDER"
        return yaml.safe_dump(record).replace("PLACEHOLDER", value)

    return edit


DAMAGE: dict[str, tuple[Callable[[str], str], str]] = {
    "status-not-mapping": (_edit(lambda r: r.update(status="oops")), "status: 'oops' is not of type 'object'"),
    "status-list": (_edit(lambda r: r.update(status=[1, 2])), "status: [1, 2] is not of type 'object'"),
    "status-inf": (_raw("status.replicas", ".inf"), "status.replicas: inf is not a finite number"),
    "status-nan-deep": (_raw("status.instances", "[{id: x, extra: [.nan]}]"), "status.instances[0].extra[0]"),
    "status-binary": (_raw("status.message", "!!binary aGVsbG8="), "status.message: binary data"),
    "status-set": (_raw("status.message", "!!set {a}"), "status.message: a set"),
    "status-number-key": (_raw("status.message", "{1: a}"), "status.message: the key 1 is not a string"),
    "status-conditions-number": (_edit(lambda r: r["status"].update(conditions=5)), "status.conditions: 5"),
    "status-condition-not-mapping": (_edit(lambda r: r["status"].update(conditions=["Ready"])), "status.conditions[0]"),
    "status-huge-int": (_raw("status.replicas", "9" * 5000), "not valid YAML (an integer has too many digits)"),
    "bad-timestamp": (_raw("status.message", "!!timestamp 2001-13-45"), "not valid YAML (month must be in 1..12)"),
    "properties-inf": (_raw("spec.instance.properties.Keys", ".inf"), "spec.instance.properties.Keys"),
    "properties-timestamp": (_raw("spec.instance.properties.Keys", "!!timestamp 2001-12-14"), "a timestamp"),
    "no-spec": (_edit(lambda r: r.pop("spec")), "spec: is required"),
    "size-string": (_raw("spec.allocation.size", "many"), "spec.allocation.size"),
    "other-name": (_edit(lambda r: r["metadata"].update(name="cattle")), "it holds group 'cattle', not 'bad'"),
    "a-list": (lambda text: "- 1\n- 2\n", "it holds a list, not a Group record"),
    "empty": (lambda text: "", "it is empty"),
    "invalid-yaml": (lambda text: text + "\n  : [unclosed\n", "not valid YAML"),
    "nested": (lambda text: "[" * 100_000, "not valid YAML (nested too deeply)"),
    "nested-block": (lambda text: "- " * 100_000 + "x\n", "not valid YAML (nested too deeply)"),
}


@pytest.fixture
def two_groups(home: Path, tmp_path: Path) -> Path:
    """Groups 'good' and 'bad', committed; returns bad's store file."""
    for name in ("good", "bad"):
        path = tmp_path / f"{name}.yaml"
        path.write_text(manifest(name))
        assert invoke("commit", str(path)).exit_code == 0
    return home / "groups" / "bad.yaml"


def _damage_fails_alone(home: Path, record: Path, needle: str) -> None:
    for command in ("inspect", "describe"):
        result = invoke(command, "bad")
        assert result.exit_code == 2, (command, result.output)
        message = result.stderr.strip()
        assert "\n" not in message, message
        assert message.startswith(f"Error: the store file {record} is damaged: "), message
        assert needle in message, message
        assert "repair it, or delete it and commit the group again" in message
        assert result.stdout == ""
    assert invoke("ls", "-q").stdout.split() == ["bad", "good"]
    assert invoke("inspect", "good").exit_code == 0
    assert len(invoke("describe", "good", "-q").stdout.splitlines()) == 1


@pytest.mark.parametrize("damage", DAMAGE, ids=list(DAMAGE))
def test_a_damaged_record_fails_alone(home: Path, two_groups: Path, damage: str) -> None:
    edit, needle = DAMAGE[damage]
    two_groups.write_text(edit(two_groups.read_text()))
    before = snapshot(home)
    _damage_fails_alone(home, two_groups, needle)
    assert snapshot(home) == before


def test_a_record_that_is_a_symlink_is_damaged(home: Path, two_groups: Path) -> None:
    two_groups.unlink()
    two_groups.symlink_to(home / "groups" / "good.yaml")
    _damage_fails_alone(home, two_groups, "it is a symbolic link")


def test_a_record_that_is_a_directory_is_damaged(home: Path, two_groups: Path) -> None:
    two_groups.unlink()
    two_groups.mkdir()
    _damage_fails_alone(home, two_groups, "it is not a regular file")


def test_damaged_is_a_spec_error_for_one_group() -> None:
    error = store.Damaged(Path("/h/groups/x.yaml"), "status: 'oops' is not of type 'object'")
    assert isinstance(error, ValueError)
    assert error.path == Path("/h/groups/x.yaml")


def test_an_unquoted_time_in_a_hand_edit_stays_a_string(home: Path, two_groups: Path) -> None:
    two_groups.write_text(
        _raw("status.conditions", "[{type: Ready, status: 'True', lastTransitionTime: 2024-01-01}]")(
            two_groups.read_text()
        )
    )
    assert invoke("inspect", "bad", "-o", "json").exit_code == 0
