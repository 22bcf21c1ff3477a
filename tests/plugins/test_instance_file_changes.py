"""``FilePlugin.changes``: which instances changed, even after the directory is removed and re-created.

Issue 11, item 10: the watcher died with its directory and healing fell back to the
periodic resync.  Timeouts here only keep a broken watcher from hanging the suite
(10 s), they assert no speed.
"""

from __future__ import annotations

import asyncio
import shutil
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from infrakit.core import instances
from infrakit.plugins.instance_file import FilePlugin

SPEC = instances.InstanceSpec(properties={"Note": "n"}, tags={instances.TAG_GROUP: "g"})
PATIENCE = 10.0  # seconds: an upper bound against hanging, never a speed assertion

Changes = AsyncIterator[frozenset[str] | None]


async def until(changes: Changes, wanted: str | None) -> list[frozenset[str] | None]:
    """What ``changes`` yields up to (and including) a set holding ``wanted`` (or None if None is wanted)."""
    seen: list[frozenset[str] | None] = []

    async def collect() -> None:
        async for change in changes:
            seen.append(change)
            if (change is None and wanted is None) or (change is not None and wanted in change):
                return

    await asyncio.wait_for(collect(), PATIENCE)
    return seen


def watch(plugin: FilePlugin, scenario: Callable[[Changes], Awaitable[None]]) -> None:
    async def main() -> None:
        changes = plugin.changes()
        try:
            await scenario(changes)
        finally:
            await changes.aclose()

    asyncio.run(main())
    assert not [t.name for t in threading.enumerate() if t.name.startswith("infrakit-watch")]


def test_a_deleted_or_created_instance_is_named(tmp_path: Path) -> None:
    plugin = FilePlugin(directory=tmp_path)
    first = plugin.provision(SPEC)

    async def scenario(changes: Changes) -> None:
        assert await asyncio.wait_for(anext(changes), PATIENCE) is None  # armed: re-list everything
        (tmp_path / first).unlink()
        seen = await until(changes, first)
        assert all(change is not None for change in seen)
        (tmp_path / ".instance-1.0123abcd.tmp").write_text("a temp file")  # never reported
        second = plugin.provision(SPEC)
        seen = await until(changes, second)
        reported = set().union(*(change for change in seen if change is not None))
        assert reported <= {first, second}

    watch(plugin, scenario)


def test_its_own_creations_are_not_reported_but_what_befalls_them_is(tmp_path: Path) -> None:
    """The sync that provisions knows: a wake for its own creations was a second sync of every group, for nothing."""
    plugin = FilePlugin(directory=tmp_path)
    plugin.describe({})  # a plugin in use (a runtime's): it knows what it creates

    async def scenario(changes: Changes) -> None:
        assert await asyncio.wait_for(anext(changes), PATIENCE) is None
        ours = plugin.provision(SPEC)
        foreign = "instance-12345"
        (tmp_path / foreign).write_text("{}")  # another program's
        seen = await until(changes, foreign)
        assert ours not in set().union(*(change for change in seen if change is not None))
        (tmp_path / ours).unlink()
        await until(changes, ours)  # its loss is reported

    watch(plugin, scenario)


@pytest.mark.parametrize("away", ["rm -rf", "mv"])
def test_the_watch_survives_the_directory_being_removed_and_recreated(tmp_path: Path, away: str) -> None:
    """Before: after ``rm -rf`` and ``mkdir`` of the directory no change was ever reported again."""
    directory = tmp_path / "instances"
    plugin = FilePlugin(directory=directory)
    doomed = plugin.provision(SPEC)

    async def scenario(changes: Changes) -> None:
        assert await asyncio.wait_for(anext(changes), PATIENCE) is None
        if away == "mv":
            directory.rename(tmp_path / "old")
        else:
            shutil.rmtree(directory)
        directory.mkdir()
        later = plugin.provision(SPEC)
        await until(changes, None)  # the watch is back on the new directory: re-list everything
        (directory / later).unlink()
        seen = await until(changes, later)
        assert None not in seen
        assert seen[-1] is not None and doomed not in seen[-1]

    watch(plugin, scenario)


def test_the_watch_waits_for_a_missing_directory(tmp_path: Path) -> None:
    directory = tmp_path / "not" / "yet"
    plugin = FilePlugin(directory=directory)

    async def scenario(changes: Changes) -> None:
        waiting = asyncio.ensure_future(anext(changes))
        await asyncio.sleep(0)
        assert not directory.exists()  # watching does not create the directory
        iid = await asyncio.to_thread(plugin.provision, SPEC)  # creates it
        assert await asyncio.wait_for(waiting, PATIENCE) is None  # a new directory: re-list
        (directory / iid).unlink()
        await until(changes, iid)

    watch(plugin, scenario)


def test_cancelling_a_wait_stops_the_watch_thread(tmp_path: Path) -> None:
    plugin = FilePlugin(directory=tmp_path)

    async def scenario(changes: Changes) -> None:
        assert await anext(changes) is None
        waiting = asyncio.ensure_future(anext(changes))
        await asyncio.sleep(0.05)  # let it reach the watch thread (not needed for correctness)
        waiting.cancel()
        await asyncio.gather(waiting, return_exceptions=True)
        assert waiting.cancelled()

    watch(plugin, scenario)
