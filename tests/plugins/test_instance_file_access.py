"""Who the file plugin trusts in its directory, and the modes it writes (issue 19, B5).

In: instance files and directories as other local users leave them (simulated as root
with ``chown`` to another UID: CI runs as root; elsewhere the tests that need it skip,
and fail under ``$CI`` so that CI never silently covers less), world-writable files and
directories, hard links, and a process umask of 0 (so that the modes are the plugin's
own, not the umask's).  Out: another user's file is never a member (describe skips it
with one warning naming it, ``label`` and ``destroy`` refuse it, whichever way describe
learnt of it: a fresh listing, the journal, timestamps, the change feed); a directory
others may write is refused naming it and the fix; what the plugin creates is private
(directory 0700, files and temp files 0600) unless ``file_mode`` says otherwise.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from infrakit import faults, files
from infrakit.core import instances
from infrakit.plugins import InstanceNotFound, PluginError, instance_file, permissions
from infrakit.plugins.instance_file import FilePlugin
from tests.plugins.test_instance_file_changes import PATIENCE, Changes, until, watch

OTHER = 4242  # another local user (a UID nobody on the test machine is)
GROUP = {instances.TAG_GROUP: "g"}
SPEC = instances.InstanceSpec(properties={"Note": "n"}, tags={**GROUP, instances.TAG_CONFIG_SHA: "abc"})


def as_another_user(path: Path, *, uid: int = OTHER, gid: int | None = None) -> None:
    """``path`` now belongs to another user (root only: chown)."""
    if os.geteuid() != 0:
        if os.environ.get("CI"):
            pytest.fail("these tests play another user with chown, which needs root (CI runs as root)")
        pytest.skip("playing another user needs root (chown)")
    os.chown(path, uid, uid if gid is None else gid, follow_symlinks=False)


def forged(directory: Path, name: str = "instance-1234", **tags: str) -> Path:
    """A well-formed instance document claiming the group, as an attacker would write it."""
    path = directory / name
    document = {"CreatedAt": 1.0, "ID": name, "LogicalID": None, "Spec": {}, "Tags": {**GROUP, **tags}}
    path.write_text(json.dumps(document, indent=2, sort_keys=True))
    return path


def mode(path: Path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


@pytest.fixture
def no_umask() -> Iterator[None]:
    """A umask of 0: the modes observed are the plugin's own choice."""
    old = os.umask(0)
    try:
        yield
    finally:
        os.umask(old)


@pytest.fixture
def temp_modes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The modes of the files being written under ``tmp_path``, seen at the ``atomic-write`` failpoint
    (before the rename or the link that names them): temp files and ``O_TMPFILE`` files alike."""
    seen: list[int] = []

    def hit(name: str) -> None:
        if name != "atomic-write":
            return
        for fd in os.listdir("/proc/self/fd"):  # an unnamed file (O_TMPFILE), still open
            with contextlib.suppress(OSError):
                target = os.readlink(f"/proc/self/fd/{fd}")
                if target.startswith(f"{tmp_path}/") and "/#" in target:  # not pytest's own capture files
                    seen.append(stat.S_IMODE(os.stat(f"/proc/self/fd/{fd}").st_mode))
        for directory, _, names in os.walk(tmp_path):  # a temp file, written and closed, not yet renamed
            seen.extend(mode(Path(directory, n)) for n in names if n.endswith(files.TEMP_SUFFIX))

    monkeypatch.setattr(faults, "hit", hit)
    return seen


# -- what the plugin creates -------------------------------------------------------------------


@pytest.mark.parametrize("unnamed", [True, False], ids=["O_TMPFILE", "temp-and-rename"])
def test_the_directory_and_files_are_private(
    tmp_path: Path, no_umask: None, temp_modes: list[int], monkeypatch: pytest.MonkeyPatch, unnamed: bool
) -> None:
    """Before: files 0644 (0666 under umask 0) and the directory 0755 (0777): every local user read
    every instance's spec, Init secrets included."""
    monkeypatch.setattr(files, "_tmpfile", unnamed and files._tmpfile)
    directory = tmp_path / "made" / "here"
    plugin = FilePlugin(directory=directory)
    made = plugin.provision(SPEC)
    plugin.label(made, {"more": "tags"})  # rewritten through a temp file and a rename
    assert mode(directory) == 0o700
    assert mode(directory / made) == 0o600
    assert temp_modes and set(temp_modes) == {0o600}, temp_modes  # never readable, not even while written


@pytest.mark.parametrize(("file_mode", "directory_mode"), [(0o640, 0o750), (0o644, 0o755), (0o604, 0o705)])
def test_file_mode_lets_others_read_never_write(
    tmp_path: Path, no_umask: None, temp_modes: list[int], file_mode: int, directory_mode: int
) -> None:
    plugin = instance_file.create({"dir": str(tmp_path / "shared"), "file_mode": file_mode})
    made = plugin.provision(SPEC)
    plugin.label(made, {"more": "tags"})
    assert mode(tmp_path / "shared") == directory_mode
    assert mode(tmp_path / "shared" / made) == file_mode
    assert set(temp_modes) == {file_mode}
    assert [d.id for d in plugin.describe(GROUP)] == [made]


@pytest.mark.parametrize(
    ("text", "expected"),
    [("0600", 0o600), ("600", 0o600), ("0o640", 0o640), ("0644", 0o644), ("0604", 0o604)],
)
def test_file_modes_accepted(text: str, expected: int) -> None:
    assert permissions.parse_file_mode(text) == expected


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("0666", "write"),  # others may write: they could forge tags
        ("0660", "write"),
        ("0400", "owner"),  # the plugin must read and write its own files
        ("0700", "executable"),
        ("4600", "0600"),  # setuid, sticky...
        ("rw", "octal"),
        ("", "octal"),
        ("0o6000000", "0600"),
    ],
)
def test_file_modes_refused(text: str, why: str) -> None:
    with pytest.raises(ValueError, match=why) as caught:
        permissions.parse_file_mode(text)
    assert "\n" not in str(caught.value)


def test_create_refuses_a_bad_file_mode(tmp_path: Path) -> None:
    with pytest.raises(PluginError, match="file_mode"):
        instance_file.create({"dir": str(tmp_path), "file_mode": 0o666})


# -- another user's files ----------------------------------------------------------------------


def test_a_file_of_another_user_is_never_a_member(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Before: files planted with the group's tags were members; the next commit destroyed the real
    instances as surplus and left the group made of the planted files, reported Ready."""
    plugin = FilePlugin(directory=tmp_path)
    ours = plugin.provision(SPEC)
    planted = forged(tmp_path, "instance-7", **{instances.TAG_CONFIG_SHA: "abc"})
    as_another_user(planted)
    before = planted.read_bytes()
    with caplog.at_level(logging.WARNING, logger="infrakit.plugins.instance_file"):
        for _ in range(3):
            assert [d.id for d in plugin.describe(GROUP)] == [ours]
            assert [d.id for d in plugin.describe({})] == [ours]
        assert [d.id for d in FilePlugin(directory=tmp_path).describe(GROUP)] == [ours]  # a fresh listing too
    about = [r.getMessage() for r in caplog.records if planted.name in r.getMessage()]
    assert len(about) == 2, about  # once per plugin object, over every pass
    assert f"uid {OTHER}" in about[0] and "not an instance of ours" in about[0]
    with pytest.raises(InstanceNotFound, match=f"uid {OTHER}"):
        plugin.label(planted.name, {"x": "y"})
    with pytest.raises(PluginError, match=f"uid {OTHER}"):
        plugin.destroy(planted.name)
    assert planted.read_bytes() == before and os.lstat(planted).st_uid == OTHER  # never touched


def test_a_member_given_to_another_user_stops_being_one_and_comes_back(tmp_path: Path) -> None:
    """The journal (inotify: a chown is IN_ATTRIB) and the timestamps (ctime) see an owner change."""
    journaled = FilePlugin(directory=tmp_path)
    journaled.describe({})
    journaled.describe({})  # described twice: long-lived, a journal is kept
    made = journaled.provision(SPEC)
    assert [d.id for d in journaled.describe(GROUP)] == [made]
    as_another_user(tmp_path / made)
    assert journaled.describe(GROUP) == []
    os.chown(tmp_path / made, os.geteuid(), os.getegid())
    assert [d.id for d in journaled.describe(GROUP)] == [made]


def test_the_change_feed_may_announce_a_planted_file_but_it_never_becomes_a_member(tmp_path: Path) -> None:
    """Waking the group is harmless (a describe finds nothing new); counting the file is not."""
    plugin = FilePlugin(directory=tmp_path)
    ours = plugin.provision(SPEC)
    plugin.describe({})

    async def scenario(changes: Changes) -> None:
        assert await asyncio.wait_for(anext(changes), PATIENCE) is None
        planted = forged(tmp_path, "instance-99", **{instances.TAG_CONFIG_SHA: "abc"})
        as_another_user(planted)
        await until(changes, planted.name)
        assert [d.id for d in plugin.describe(GROUP)] == [ours]

    watch(plugin, scenario)


def test_a_file_anyone_may_write_is_not_a_member(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Ours, but any user may have rewritten its tags: not trusted until ``chmod o-w``."""
    plugin = FilePlugin(directory=tmp_path)
    made = plugin.provision(SPEC)
    os.chmod(tmp_path / made, 0o666)
    with caplog.at_level(logging.WARNING, logger="infrakit.plugins.instance_file"):
        assert plugin.describe(GROUP) == []
    assert any(made in r.getMessage() and "every user" in r.getMessage() for r in caplog.records)
    with pytest.raises(InstanceNotFound):
        plugin.label(made, {"x": "y"})
    os.chmod(tmp_path / made, 0o660)  # the group may write (Kubernetes' fsGroup does so): still ours
    assert [d.id for d in plugin.describe(GROUP)] == [made]


def test_a_hard_link_under_another_name_is_not_a_member(tmp_path: Path) -> None:
    """A link names the same file twice; the document names itself once (its ID), so only that name counts."""
    plugin = FilePlugin(directory=tmp_path)
    made = plugin.provision(SPEC)
    os.link(tmp_path / made, tmp_path / "instance-5")
    assert [d.id for d in plugin.describe(GROUP)] == [made]
    assert [d.id for d in FilePlugin(directory=tmp_path).describe({})] == [made]


# -- the directory -----------------------------------------------------------------------------


def refused(plugin: FilePlugin, directory: Path, fix: str) -> None:
    """Every operation is refused with one line naming the directory and the fix; nothing written."""
    before = sorted(os.listdir(directory))
    for call in (
        lambda: plugin.describe(GROUP),
        lambda: plugin.provision(SPEC),
        lambda: plugin.label("instance-1", {"a": "b"}),
        lambda: plugin.destroy("instance-1"),
    ):
        with pytest.raises(PluginError) as caught:
            call()
        message = str(caught.value)
        assert str(directory) in message and fix in message and "\n" not in message, message
    assert sorted(os.listdir(directory)) == before


def test_a_directory_every_user_may_write_is_refused(tmp_path: Path) -> None:
    """Before: the default was the temp directory, where anyone may plant or remove files."""
    directory = tmp_path / "open"
    directory.mkdir()
    forged(directory, "instance-1")
    os.chmod(directory, 0o777)
    refused(FilePlugin(directory=directory), directory, f"chmod o-w {directory}")


def test_a_directory_of_another_user_is_refused(tmp_path: Path) -> None:
    directory = tmp_path / "theirs"
    directory.mkdir(mode=0o755)
    forged(directory, "instance-1")
    as_another_user(directory)
    refused(FilePlugin(directory=directory), directory, f"uid {OTHER}")


def test_a_sticky_world_writable_directory_is_used_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Like /tmp: others may add files (never members), but not remove or replace ours."""
    directory = tmp_path / "sticky"
    directory.mkdir()
    os.chmod(directory, 0o1777)
    plugin = FilePlugin(directory=directory)
    with caplog.at_level(logging.WARNING, logger="infrakit.plugins.instance_file"):
        made = plugin.provision(SPEC)
        for _ in range(3):
            assert [d.id for d in plugin.describe(GROUP)] == [made]
    warned = [r.getMessage() for r in caplog.records if str(directory) in r.getMessage()]
    assert len(warned) == 1 and "sticky" in warned[0], warned


def test_a_directory_another_group_may_write_is_warned_about(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    directory = tmp_path / "grouped"
    directory.mkdir()
    as_another_user(directory, uid=os.geteuid(), gid=OTHER)
    os.chmod(directory, 0o770)
    plugin = FilePlugin(directory=directory)
    with caplog.at_level(logging.WARNING, logger="infrakit.plugins.instance_file"):
        made = plugin.provision(SPEC)
        assert [d.id for d in plugin.describe(GROUP)] == [made]
    assert any(f"group {OTHER}" in r.getMessage() for r in caplog.records)


def test_a_directory_of_the_plugins_own_group_is_not_warned_about(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Kubernetes' fsGroup makes the volume group-writable for the pod's own group: nothing to say."""
    directory = tmp_path / "volume"
    directory.mkdir()
    os.chmod(directory, 0o2775)
    with caplog.at_level(logging.WARNING, logger="infrakit.plugins.instance_file"):
        plugin = FilePlugin(directory=directory)
        plugin.provision(SPEC)
        plugin.describe(GROUP)
    assert not [r for r in caplog.records if str(directory) in r.getMessage()]


def test_permissions_rules_are_pure() -> None:
    """The rules on a stat result, without a filesystem: what each owner and mode gets."""

    def info(uid: int, gid: int, mode_bits: int) -> Any:
        return os.stat_result((stat.S_IFDIR | mode_bits, 0, 0, 2, uid, gid, 0, 0, 0, 0))

    me, group = 1000, 1000
    check = permissions.check_directory
    assert check("/d", info(me, group, 0o700), uid=me, gid=group) is None
    assert check("/d", info(0, 0, 0o755), uid=me, gid=group) is None  # root's
    assert "sticky" in (check("/d", info(0, 0, 0o1777), uid=me, gid=group) or "")
    with pytest.raises(PluginError, match="every user"):
        check("/d", info(me, group, 0o777), uid=me, gid=group)
    with pytest.raises(PluginError, match="uid 7"):
        check("/d", info(7, group, 0o700), uid=me, gid=group)
    assert check("/d", info(me, group, 0o770), uid=me, gid=group) is None
    assert "group 5" in (check("/d", info(me, 5, 0o770), uid=me, gid=group) or "")
