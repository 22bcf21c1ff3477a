"""A group served by a plugin daemon stays with that daemon: when it is gone, the group's
plugin is unavailable, never the built-in of the same name (which lists another place).

Found while testing issue 19, class I: a group daemon whose instance daemon stopped cleanly
(its socket removed) resolved ``instance-file`` to the in-process plugin over its own
``$INFRAKIT_HOME/instances``, found none of the group's instances there, called all of
them lost and made them again in the wrong directory.

In: ``infrakit-instance-file`` as a subprocess in a plugins directory, ``infrakit-local``
commands, and a registry in this process.  Out: exit codes, one-line errors, the files
in both directories.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from infrakit import plugins
from infrakit.rpc import resolving
from tests.conftest import EXAMPLES
from tests.rpc.conftest import start_daemon


def local(home: Path, plugins_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "infrakit.cli", *args],
        env={**os.environ, "INFRAKIT_HOME": str(home), "INFRAKIT_PLUGINS_DIR": str(plugins_dir)},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_a_group_committed_through_a_daemon_never_falls_back_to_the_built_in(sockdir: Path) -> None:
    home, served, plugins_dir = sockdir / "home", sockdir / "served", sockdir / "plugins"
    daemon = start_daemon(
        "instance-file",
        "--dir",
        str(served),
        env={"INFRAKIT_PLUGINS_DIR": str(plugins_dir), "INFRAKIT_HOME": str(home)},
    )
    daemon.wait_for("Listening at:")
    assert local(home, plugins_dir, "commit", str(EXAMPLES / "cattle.yaml")).returncode == 0
    made = sorted(p.name for p in served.iterdir())
    assert len(made) == 5
    assert daemon.stop() == 0  # a clean stop: its socket is gone
    for args in (
        ["describe", "cattle"],
        ["commit", str(EXAMPLES / "cattle.yaml")],
        ["commit", "--pretend", str(EXAMPLES / "cattle2.yaml")],
    ):
        result = local(home, plugins_dir, *args)
        assert result.returncode == 1, (args, result.stdout, result.stderr)
        assert "its daemon is not running" in result.stderr and "Traceback" not in result.stderr
    assert not (home / "instances").exists() or list((home / "instances").iterdir()) == []
    assert sorted(p.name for p in served.iterdir()) == made


def test_a_name_once_a_daemons_stays_its_daemons_in_the_process(sockdir: Path) -> None:
    plugins_dir, served = sockdir / "plugins", sockdir / "served"
    daemon = start_daemon("instance-file", "--dir", str(served), env={"INFRAKIT_PLUGINS_DIR": str(plugins_dir)})
    daemon.wait_for("Listening at:")
    registry = plugins.Registry(
        defaults={"instance-file": {"dir": str(sockdir / "elsewhere")}}, locate=resolving.locator(plugins_dir)
    )
    assert registry.instance("instance-file").describe({}) == []
    daemon.stop()
    with pytest.raises(plugins.PluginUnavailable, match="its daemon is not running"):
        registry.instance("instance-file")
    again = start_daemon("instance-file", "--dir", str(served), env={"INFRAKIT_PLUGINS_DIR": str(plugins_dir)})
    again.wait_for("Listening at:")
    try:
        assert registry.instance("instance-file").describe({}) == []  # back: followed again
    finally:
        again.stop()
    assert not (sockdir / "elsewhere").exists()
