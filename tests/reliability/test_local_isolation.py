"""The local mode keeps to its own instances: namespaces and ``--dir`` (issue 11, items 7 and 8).

In: instance files of cluster groups (carrying ``infrakit.namespace``) in the directory a
local group of the same name uses; manifests naming a namespace; groups committed with
``--dir``.  Out, through the CLI only: a local group never adopts, rolls or destroys an
instance that carries a namespace (its file byte-identical), a namespaced manifest is
refused (exit 2, naming ``metadata.namespace``, nothing written), and a group committed
with ``--dir X`` is found in X by every later command without ``--dir``, never
duplicated elsewhere, and cannot be re-committed with another directory.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml
from click.testing import CliRunner, Result

from infrakit import cli
from infrakit.core import instances
from tests.conftest import EXAMPLES, snapshot


def run(*args: str, code: int = 0) -> Result:
    result = CliRunner().invoke(cli.cli, list(args))
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert result.exit_code == code, f"exit {result.exit_code}: {result.stdout!r} {result.stderr!r}"
    assert "Traceback" not in result.stdout + result.stderr
    return result


def cattle(tmp_path: Path, *, size: int = 2, note: str = "v1", **metadata: Any) -> Path:
    document = yaml.safe_load((EXAMPLES / "cattle.yaml").read_text())
    document["spec"]["allocation"] = {"size": size}
    document["spec"]["instance"]["properties"] = {"Note": note}
    document["metadata"].update(metadata)
    path = tmp_path / f"cattle-{size}-{note}-{len(metadata)}.yaml"
    path.write_text(yaml.safe_dump(document))
    return path


def files(directory: Path) -> set[str]:
    return {p.name for p in directory.iterdir()} if directory.exists() else set()


def described(*args: str) -> set[str]:
    return {row["ID"] for row in json.loads(run(*args, "-o", "json").stdout)}


# -- item 7: namespaces ----------------------------------------------------------------------


def cluster_instances(tmp_path: Path, count: int) -> set[str]:
    """``count`` instances of the cluster group ``b/cattle``, made with ``instance-file provision``."""
    spec = tmp_path / "cluster-instance.json"
    tags = {instances.TAG_GROUP: "cattle", instances.TAG_NAMESPACE: "b", instances.TAG_CONFIG_SHA: "clusterhash"}
    spec.write_text(json.dumps({"Properties": {"Note": "the cluster's"}, "Tags": tags}))
    return {run("instance-file", "provision", str(spec)).stdout.strip() for _ in range(count)}


def test_a_local_group_never_adopts_rolls_or_destroys_a_cluster_groups_instances(home: Path, tmp_path: Path) -> None:
    theirs = cluster_instances(tmp_path, 5)
    directory = home / "instances"
    before = {name: (directory / name).read_bytes() for name in theirs}

    run("commit", str(cattle(tmp_path, size=2)))
    ours = files(directory) - theirs
    assert len(ours) == 2  # its own two, not adopted from the five
    assert described("describe", "cattle") == ours

    run("commit", str(cattle(tmp_path, size=2, note="v2")))  # a roll: only its own
    rolled = files(directory) - theirs
    assert len(rolled) == 2 and not rolled & ours
    assert described("describe", "cattle") == rolled

    assert run("destroy", "cattle").stdout == "Destroyed cattle: 2 instances\n"
    assert files(directory) == theirs
    assert {name: (directory / name).read_bytes() for name in theirs} == before  # never relabelled


def test_a_local_manifest_naming_a_namespace_is_refused_and_nothing_is_written(home: Path, tmp_path: Path) -> None:
    good = cattle(tmp_path, size=1)
    namespaced = cattle(tmp_path, size=1, namespace="b")
    both = tmp_path / "both.yaml"
    both.write_text(good.read_text() + "---\n" + namespaced.read_text().replace("cattle", "other"))
    for args in (("commit", str(namespaced)), ("commit", "--pretend", str(namespaced)), ("commit", str(both))):
        result = run(*args, code=2)
        assert "metadata.namespace" in result.stderr and len(result.stderr.splitlines()) == 1
        assert snapshot(home) == {}, args  # no group, no instance, nothing
    assert run("ls", "-q").stdout == ""


# -- item 8: the store remembers --dir -------------------------------------------------------


def test_a_group_committed_with_dir_is_found_there_by_every_later_command(home: Path, tmp_path: Path) -> None:
    x, default = tmp_path / "x", home / "instances"
    run("--dir", str(x), "commit", str(cattle(tmp_path, size=3)))
    made = files(x)
    assert len(made) == 3

    assert described("describe", "cattle") == made  # no --dir: the recorded one
    run("commit", str(cattle(tmp_path, size=3)))  # re-commit without --dir: nothing new anywhere
    assert files(x) == made and files(default) == set()
    run("--dir", str(x), "commit", str(cattle(tmp_path, size=3)))  # the same --dir again is fine
    assert files(x) == made

    assert run("destroy", "cattle").stdout == "Destroyed cattle: 3 instances\n"
    assert files(x) == set() and files(default) == set()


def test_a_group_committed_with_dir_cannot_be_recommitted_with_another(home: Path, tmp_path: Path) -> None:
    x, y = tmp_path / "x", tmp_path / "y"
    run("--dir", str(x), "commit", str(cattle(tmp_path, size=2)))
    before = snapshot(home), snapshot(x)
    for args in (("commit",), ("commit", "--pretend")):
        result = run("--dir", str(y), *args, str(cattle(tmp_path, size=4)), code=2)
        assert "--dir" in result.stderr and str(x) in result.stderr and len(result.stderr.splitlines()) == 1
        assert (snapshot(home), snapshot(x)) == before and files(y) == set()
