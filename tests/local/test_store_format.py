"""The store's files: JSON text (fast to read and write), the same document to any YAML reader.

A sync rewrites a status listing every instance and every command reads the store, so
the files are indented JSON (the C codec), which is YAML too.  These tests pin down that
nothing is lost on the way: what is saved is what is loaded, by us and by a YAML
parser; documents JSON cannot carry exactly fall back to block YAML; files in block YAML
(written before, or edited by hand) still load.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
import yaml

from infrakit.core import specs
from infrakit.local import store as stores
from tests.corpus import good

TRICKY_STRINGS = [
    "plain",
    "2001-12-14",  # a YAML timestamp when unquoted
    "yes",
    "null",
    "1e5",
    "0x1F",
    "é ü 中文 😀",
    "tab\tnewline\ncr\rnul\x00bell\x07esc\x1b",
    "del\x7f c1\x85\x86\x9f nbsp\xa0 bom\ufeff ffff\ufffe",
    '"quoted" \\ back / slash',
    "- not a list",
    "key: value",
    "",
    " leading and trailing ",
]
TRICKY_NUMBERS: list[Any] = [0, -1, 2**70, 1.5, -0.0, 1e16, 1.5e16, 1e-7, 123456789.123, True, False, None]


def save_and_load(
    tmp_path: Path, properties: Any, status: dict[str, Any] | None = None
) -> tuple[stores.StoredGroup, str]:
    document = good()
    document["spec"]["instance"]["properties"] = properties
    spec = specs.parse_document(document)
    store = stores.Store(tmp_path)
    with store.lock("bad"):
        store.save(spec, status or {"replicas": 1}, generation=3, options={"dir": "/tmp/x"})
        loaded = store.load("bad")
    assert loaded is not None
    assert loaded.spec == spec
    assert loaded.status == (status or {"replicas": 1})
    assert loaded.generation == 3 and dict(loaded.options) == {"dir": "/tmp/x"}
    return loaded, store.path("bad").read_text("utf-8")


def test_a_big_status_is_written_as_json(tmp_path: Path) -> None:
    status = {
        "replicas": 1000,
        "instances": [{"id": f"instance-{i}", "upToDate": True, "healthy": "Healthy"} for i in range(1000)],
    }
    _, text = save_and_load(tmp_path, {"Note": "x"}, status)
    assert text.startswith("{\n")
    assert yaml.safe_load(text)["status"] == status  # still YAML, the same document


@pytest.mark.parametrize("value", TRICKY_STRINGS + TRICKY_NUMBERS, ids=repr)
def test_any_value_round_trips_for_us_and_for_yaml(tmp_path: Path, value: Any) -> None:
    properties = {"Value": value, "List": [value], "Nested": {"k": value}}
    _, text = save_and_load(tmp_path, properties)
    assert yaml.safe_load(text)["spec"]["instance"]["properties"] == properties


def test_a_spec_json_cannot_carry_never_reaches_the_store() -> None:
    """Non-string keys and non-finite numbers are refused at parse time (issue 11), so every
    record the store writes is JSON; the YAML fallback of the writer is for what may come."""
    for properties in ({1: "one"}, {"Big": math.inf}, {"NaN": math.nan}):
        document = good()
        document["spec"]["instance"]["properties"] = properties
        with pytest.raises(specs.SpecError):
            specs.parse_document(document)


def test_block_yaml_files_still_load(tmp_path: Path) -> None:
    document = {**good(), "status": {"replicas": 2}, "instancePluginOptions": {"dir": "/d"}}
    document["metadata"]["generation"] = 4
    (tmp_path / "groups").mkdir()
    (tmp_path / "groups" / "bad.yaml").write_text(yaml.safe_dump(document, sort_keys=False))
    loaded = stores.Store(tmp_path).load("bad")
    assert loaded is not None
    assert loaded.spec == specs.parse_document(good())
    assert loaded.status == {"replicas": 2} and loaded.generation == 4 and dict(loaded.options) == {"dir": "/d"}


def test_yaml_flow_style_starting_with_a_brace_still_loads(tmp_path: Path) -> None:
    (tmp_path / "groups").mkdir()
    text = yaml.safe_dump(good(), default_flow_style=True)  # {apiVersion: infrakit.io/v1alpha1, ...}: not JSON
    assert text.startswith("{")
    (tmp_path / "groups" / "bad.yaml").write_text(text)
    loaded = stores.Store(tmp_path).load("bad")
    assert loaded is not None and loaded.spec == specs.parse_document(good())


def test_json_constants_are_not_read_as_numbers(tmp_path: Path) -> None:
    # We never write NaN; in a hand-edited file it is what YAML says it is (a string), or damage.
    (tmp_path / "groups").mkdir()
    document = good()
    text = yaml.safe_dump(document, default_flow_style=True, width=10_000).replace("Note: x", "Note: NaN")
    (tmp_path / "groups" / "bad.yaml").write_text(text)
    loaded = stores.Store(tmp_path).load("bad")
    assert loaded is not None and loaded.spec.instance.properties == {"Note": "NaN"}


def test_a_damaged_json_file_is_reported_as_damaged(tmp_path: Path) -> None:
    (tmp_path / "groups").mkdir()
    (tmp_path / "groups" / "bad.yaml").write_text('{"apiVersion": "infrakit.io/v1alpha1", "kind": ')
    with pytest.raises(stores.Damaged, match="is damaged"):
        stores.Store(tmp_path).load("bad")
