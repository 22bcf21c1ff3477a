"""The Group schema's adapter: the packaged CRD, read once and cached as JSON, given to the core.

The core validates against a schema it is given (``specs.provide``) and reads no file;
``infrakit.schemas`` reads the CRD, keeps its schema under ``$INFRAKIT_CACHE`` so a
command needs no YAML parser, and words violations with jsonschema.  These tests read the
CRD and the cache as files, so they are not among the core's.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from infrakit import schemas
from infrakit.core import specs
from infrakit.core.specs import validation
from tests.conftest import REPO_ROOT
from tests.corpus import good

# -- the CRD schema, cached as JSON ------------------------------------------------------------


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.setenv("INFRAKIT_CACHE", str(tmp_path))
    schemas.crd_schema.cache_clear()
    yield tmp_path / "schema"
    schemas.crd_schema.cache_clear()


def parsed_crd() -> dict[str, Any]:
    crd = yaml.safe_load(Path(schemas.CRD_PATH).read_text("utf-8"))
    schema: dict[str, Any] = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return schema


def test_the_schema_is_cached_and_read_back_without_yaml(cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert schemas.crd_schema() == parsed_crd()
    (written,) = cache.iterdir()
    assert written.name.startswith("crd-") and written.suffix == ".json"
    schemas.crd_schema.cache_clear()
    expected = parsed_crd()
    monkeypatch.setitem(sys.modules, "yaml", None)  # importing yaml now fails: no YAML parse possible
    assert schemas.crd_schema() == expected


@pytest.mark.parametrize(
    "content",
    ["", "not json", "{}", '{"source": "other", "schema": {"properties": {"spec": {}}}}', '{"source": "%s"}', "[]"],
)
def test_a_bad_cache_is_not_used(cache: Path, content: str) -> None:
    schemas.crd_schema()
    (written,) = cache.iterdir()
    source = json.loads(written.read_text())["source"]
    written.write_text(content.replace("%s", source))
    schemas.crd_schema.cache_clear()
    assert schemas.crd_schema() == parsed_crd()
    assert json.loads(written.read_text())["source"] == source  # and it is written again


def test_an_unwritable_cache_is_not_needed(cache: Path) -> None:
    cache.parent.mkdir(parents=True, exist_ok=True)
    cache.write_text("a file where the directory should be")
    assert schemas.crd_schema() == parsed_crd()
    document = good()
    document["spec"]["allocation"] = {"size": -1}
    with pytest.raises(specs.SpecError, match=r"spec\.allocation\.size: must be at least 0"):
        specs.parse_document(document)


def test_the_packaged_schema_is_the_repositorys_crd() -> None:
    crd = yaml.safe_load((REPO_ROOT / "crds" / "infrakit.io_groups.yaml").read_text())
    assert schemas.crd_schema() == crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]


# -- the core is given its schema ----------------------------------------------------------------


@pytest.fixture
def restore_schema() -> Iterator[None]:
    yield
    specs.provide(load=schemas.crd_schema, violations=schemas.violations)


def test_the_core_validates_against_the_schema_it_is_given(restore_schema: None) -> None:
    crd = schemas.crd_schema()
    smaller = json.loads(json.dumps(crd))
    smaller["properties"]["spec"]["properties"]["allocation"]["properties"]["size"]["maximum"] = 3
    specs.provide(load=lambda: smaller, violations=schemas.violations)
    document = good()
    document["spec"]["allocation"] = {"size": 4}
    with pytest.raises(specs.SpecError, match=r"^spec\.allocation\.size: must be at most 3, got 4$"):
        specs.parse_document(document)
    specs.provide(load=schemas.crd_schema, violations=schemas.violations)
    assert specs.parse_document(document).desired_size == 4  # what was derived from the first is forgotten


def test_without_a_schema_the_core_says_so(restore_schema: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(validation, "_load", None)
    for cached in (validation.spec_schema, validation._fast_check, validation._violations):
        cached.cache_clear()
    with pytest.raises(LookupError, match=r"no Group schema was provided to the core: import infrakit\.schemas"):
        specs.parse_document(good())


def test_every_mode_has_the_schema_from_its_adapter() -> None:
    """A fresh process that imports only a mode's package (and the core) parses a Group."""
    import subprocess

    probe = (
        "import json, sys\n"
        "from infrakit.core import specs\n"
        "import {mode}\n"
        "print(specs.parse_document(json.loads(sys.argv[1])).name)\n"
    )
    for mode in ("infrakit.local", "infrakit.cluster"):
        done = subprocess.run(
            [sys.executable, "-c", probe.format(mode=mode), json.dumps(good())],
            capture_output=True,
            timeout=120,
            check=False,
        )
        assert done.returncode == 0, done.stderr.decode()
        assert done.stdout.decode().strip() == good()["metadata"]["name"]


def test_violations_are_jsonschemas_in_the_cores_words() -> None:
    listing = schemas.violations(validation.spec_schema())
    spec: dict[str, Any] = good()["spec"]
    spec["allocation"] = {"size": -1}
    spec["paused"] = "no"
    found = sorted((v.rule, v.path) for v in listing(spec))
    assert found == [("minimum", ("allocation", "size")), ("type", ("paused",))]
