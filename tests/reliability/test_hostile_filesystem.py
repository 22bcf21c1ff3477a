"""A hostile instance directory: links, FIFOs, garbage, other groups' files, directories.

Never followed, never written through, never deleted unless ours; each oddity warned.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from click.testing import CliRunner

from infrakit import cli
from tests.conftest import EXAMPLES, snapshot


def run(home: Path, *args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli.cli, ["--home", str(home), *args])
    return result.exit_code, result.stdout, result.stderr


def test_hostile_directory(tmp_path: Path) -> None:
    home = tmp_path / "home"
    instances = home / "instances"
    instances.mkdir(parents=True)
    outside = tmp_path / "outside"
    outside.mkdir()
    # A valid-looking member of our group, outside the directory, reached through a link.
    decoy = outside / "decoy.json"
    decoy.write_text(json.dumps({"ID": "instance-111", "Tags": {"infrakit.group": "cattle"}}))
    (instances / "instance-111").symlink_to(decoy)
    (instances / "instance-112").symlink_to(outside)  # a link to a directory
    os.mkfifo(instances / "instance-222")  # would block a naive reader forever
    (instances / "instance-333").write_bytes(b"\x00\xffgarbage")
    (instances / "instance-444").mkdir()
    other = {"ID": "instance-555", "LogicalID": None, "Tags": {"infrakit.group": "other"}, "Spec": {}}
    (instances / "instance-555").write_text(json.dumps(other))
    (instances / "notes.txt").write_text("somebody else's file")
    before_outside = snapshot(outside)
    foreign = {n: snapshot(instances).get(n) for n in ("instance-333", "instance-555", "notes.txt")}

    code, out, err = run(home, "commit", str(EXAMPLES / "cattle.yaml"))
    assert code == 0, err
    assert out == "Committed cattle: Managing 5 instances\n"  # the decoy was not counted as a member
    for name in ("instance-111", "instance-112", "instance-222", "instance-333", "instance-444"):
        assert name in err, f"no warning about {name}: {err}"

    code, out, err = run(home, "destroy", "cattle")
    assert code == 0, err
    assert out == "Destroyed cattle: 5 instances\n"
    left = {p.name for p in instances.iterdir()}
    assert left == {
        "instance-111",
        "instance-112",
        "instance-222",
        "instance-333",
        "instance-444",
        "instance-555",
        "notes.txt",
    }
    assert (instances / "instance-111").is_symlink()
    assert snapshot(outside) == before_outside
    assert {n: snapshot(instances).get(n) for n in foreign} == foreign
    assert hashlib.sha256(decoy.read_bytes()).hexdigest() == before_outside["decoy.json"]


def test_instance_dir_that_is_a_symlink_elsewhere_is_still_ours_only(tmp_path: Path) -> None:
    """--dir may itself be a link (a mounted volume); files inside it are still never followed."""
    real = tmp_path / "volume"
    real.mkdir()
    (tmp_path / "link").symlink_to(real)
    home = tmp_path / "home"
    code, _, err = run(home, "--dir", str(tmp_path / "link"), "commit", str(EXAMPLES / "cattle.yaml"))
    assert code == 0, err
    assert len(list(real.iterdir())) == 5
