"""Plugins are found by name through entry points, so third parties can add their own."""

from __future__ import annotations

import importlib.metadata
from pathlib import Path

import pytest

from infrakit import plugins
from infrakit.core import specs
from infrakit.plugins.instance_memory import MemoryPlugin


def test_builtins_are_registered_as_entry_points() -> None:
    names = {e.name for e in importlib.metadata.entry_points(group=plugins.INSTANCE_GROUP)}
    assert {"instance-file", "instance-memory"} <= names
    assert "flavor-vanilla" in {e.name for e in importlib.metadata.entry_points(group=plugins.FLAVOR_GROUP)}


def test_a_third_party_entry_point_is_found(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    extra = importlib.metadata.EntryPoint(
        name="instance-thirdparty", value="infrakit.plugins.instance_memory:create", group=plugins.INSTANCE_GROUP
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
        plugin = plugins.instance_plugin("instance-thirdparty", plugins.Settings(instance_dir=tmp_path))
        assert isinstance(plugin, MemoryPlugin)
    finally:
        monkeypatch.undo()
        plugins.refresh()


def test_unknown_plugin_is_a_spec_error_naming_the_field(tmp_path: Path) -> None:
    with pytest.raises(specs.SpecError) as caught:
        plugins.flavor_plugin("flavor-nope", plugins.Settings(instance_dir=tmp_path))
    assert caught.value.field == "spec.flavor.plugin" and "flavor-vanilla" in caught.value.message
