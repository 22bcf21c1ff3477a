"""Plugins are found by name through entry points, and a registry keeps one object per name and options."""

from __future__ import annotations

import importlib.metadata
from pathlib import Path

import pytest

from infrakit import plugins
from infrakit.core import specs
from infrakit.plugins.instance_file import FilePlugin
from infrakit.testing.memory import MemoryPlugin


def test_builtins_are_registered_as_entry_points() -> None:
    names = {e.name for e in importlib.metadata.entry_points(group=plugins.INSTANCE_GROUP)}
    assert "instance-file" in names
    assert "flavor-vanilla" in {e.name for e in importlib.metadata.entry_points(group=plugins.FLAVOR_GROUP)}


def test_the_memory_plugin_is_not_an_installed_plugin() -> None:
    """It reports instances that do not exist: tests register it, users never get it."""
    assert "instance-memory" not in plugins.available(plugins.INSTANCE_GROUP)
    with pytest.raises(specs.SpecError):
        plugins.Registry().instance("instance-memory")
    registry = plugins.Registry(instances={"instance-memory": lambda options: MemoryPlugin()})
    assert isinstance(registry.instance("instance-memory"), MemoryPlugin)


def test_a_third_party_entry_point_is_found(monkeypatch: pytest.MonkeyPatch) -> None:
    extra = importlib.metadata.EntryPoint(
        name="instance-thirdparty", value="infrakit.testing.memory:create", group=plugins.INSTANCE_GROUP
    )
    real = importlib.metadata.entry_points

    def entry_points(**kwargs: str) -> importlib.metadata.EntryPoints:
        found = real(**kwargs)
        if kwargs.get("group") == plugins.INSTANCE_GROUP:
            return importlib.metadata.EntryPoints([*found, extra])
        return found

    monkeypatch.setattr(importlib.metadata, "entry_points", entry_points)
    plugins.refresh()
    try:
        assert isinstance(plugins.Registry().instance("instance-thirdparty"), MemoryPlugin)
    finally:
        monkeypatch.undo()
        plugins.refresh()


def test_unknown_plugin_is_a_spec_error_naming_the_field() -> None:
    with pytest.raises(specs.SpecError) as caught:
        plugins.Registry().flavor("flavor-nope")
    assert caught.value.field == "spec.flavor.plugin" and "flavor-vanilla" in caught.value.message


def test_plugins_are_long_lived_one_per_name_and_options(tmp_path: Path) -> None:
    registry = plugins.Registry(defaults={"instance-file": {"fsync": False}})
    made: list[plugins.InstancePlugin] = []
    registry.subscribe(made.append)
    a = registry.instance("instance-file", {"dir": str(tmp_path / "a")})
    assert registry.instance("instance-file", {"dir": str(tmp_path / "a")}) is a
    b = registry.instance("instance-file", {"dir": str(tmp_path / "b")})
    assert b is not a and isinstance(b, FilePlugin) and b.directory == tmp_path / "b"
    assert registry.flavor("flavor-vanilla") is registry.flavor("flavor-vanilla")
    assert made == [a, b]  # subscribers hear of each plugin once, when it is made
    assert registry.instance_plugins() == [a, b]


def test_the_file_plugin_needs_a_directory() -> None:
    with pytest.raises(plugins.PluginError, match="--dir"):
        plugins.Registry().instance("instance-file")


def test_a_daemon_started_or_stopped_while_the_process_runs_is_followed(tmp_path: Path) -> None:
    """The registry asks its locator at every resolve: a long-lived process follows the daemons.
    A daemon that stops is not replaced by the built-in of its name (which lists another place):
    it is unavailable until it is back."""
    daemon = MemoryPlugin()
    running: list[MemoryPlugin] = []
    registry = plugins.Registry(
        defaults={"instance-file": {"dir": str(tmp_path)}},
        locate=lambda group, name: running[0] if running and group == plugins.INSTANCE_GROUP else None,
    )
    made: list[plugins.InstancePlugin] = []
    registry.subscribe(made.append)
    builtin = registry.instance("instance-file")
    assert isinstance(builtin, FilePlugin)
    running.append(daemon)  # a daemon of that name starts
    assert registry.instance("instance-file") is daemon
    assert registry.instance("instance-file") is daemon
    running.clear()  # ... and stops cleanly (its socket removed)
    with pytest.raises(plugins.PluginUnavailable, match="its daemon is not running"):
        registry.instance("instance-file")
    running.append(daemon)  # back
    assert registry.instance("instance-file") is daemon
    assert made == [builtin, daemon]  # each watched once
