"""``FilePlugin.changes``: which instances changed, even after the directory is removed and re-created.

Issue 11, item 10: the watcher died with its directory and healing fell back to the
periodic resync.  Timeouts here only keep a broken watcher from hanging the suite
(10 s), they assert no speed.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import os
import random
import shutil
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from infrakit.core import instances
from infrakit.plugins.instance_file import FilePlugin
from infrakit.plugins.instance_file import directory as directories

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


def watching(plugin: FilePlugin) -> bool:
    """Whether the plugin holds an inotify descriptor (the one watch of its directory)."""
    return plugin._watch._notify is not None


def watch(plugin: FilePlugin, scenario: Callable[[Changes], Awaitable[None]]) -> None:
    """Run ``scenario`` on the plugin's change feed; once it ends, nothing of the watch is left."""
    threads = set(threading.enumerate())

    async def main() -> None:
        changes = plugin.changes()
        try:
            await scenario(changes)
        finally:
            await changes.aclose()

    asyncio.run(main())
    assert set(threading.enumerate()) <= threads, "a watch thread outlived its feed"
    listing = plugin._catalog._listing
    journaled = listing is not None and listing.journal is not None
    assert watching(plugin) == journaled, "the feed's watch outlived it (only the listing's journal keeps it)"


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


# -- one watch, many listeners (issue 20, item 4) ------------------------------------------------


def inotify_descriptors() -> int:
    """The inotify descriptors this process holds (collect first: a plugin dropped by a test holds one)."""
    gc.collect()
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):  # the listing's own descriptor, closed by now
            count += os.readlink(f"/proc/self/fd/{fd}") == "anon_inode:inotify"
    return count


def foreign(directory: Path) -> str:
    """An instance file another program wrote (not announced by the plugin)."""
    name = f"instance-{random.randrange(2**63)}"
    body = {"ID": name, "LogicalID": None, "Tags": {instances.TAG_GROUP: "g"}, "Spec": {}}
    (directory / name).write_text(json.dumps(body, indent=2, sort_keys=True))
    return name


def test_the_listing_and_the_feed_share_one_watch_and_each_sees_every_event(tmp_path: Path) -> None:
    """Was: two inotify readers (a watchfiles thread and the listing's journal) consumed each event."""
    plugin = FilePlugin(directory=tmp_path)
    first, second = foreign(tmp_path), foreign(tmp_path)
    plugin.describe({})
    plugin.describe({})  # long-lived: the listing listens
    assert watching(plugin)
    held = inotify_descriptors()

    async def scenario(changes: Changes) -> None:
        assert await asyncio.wait_for(anext(changes), PATIENCE) is None
        assert inotify_descriptors() == held, "the feed opened a second watch"
        (tmp_path / first).unlink()
        # The describe reads the event first (the loop is not running meanwhile): the feed still gets it.
        assert [d.id for d in plugin.describe({})] == [second]
        await until(changes, first)
        (tmp_path / second).unlink()
        await until(changes, second)  # the feed reads this one first: the listing still gets it
        assert plugin.describe({}) == []

    watch(plugin, scenario)


def test_a_listener_nobody_drains_holds_a_bounded_number_of_names(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The feed reads every event, also for a listing that does not describe for a while: past the bound
    its listener is lost (memory stays bounded), and its next describe lists everything, exactly."""
    monkeypatch.setattr(directories, "MAX_PENDING", 5)
    plugin = FilePlugin(directory=tmp_path)
    plugin.describe({})
    plugin.describe({})

    async def scenario(changes: Changes) -> None:
        assert await asyncio.wait_for(anext(changes), PATIENCE) is None
        made = [foreign(tmp_path) for _ in range(8)]
        seen: set[str] = set()
        while not set(made) <= seen:  # (the feed's own listener may be lost too: "anything changed")
            item = await asyncio.wait_for(anext(changes), PATIENCE)
            if item is None:
                break
            seen |= item
        listing = plugin._catalog._listing
        assert listing is not None and listing.journal is not None and listing.journal.lost
        assert sorted(d.id for d in plugin.describe({})) == sorted(made)

    watch(plugin, scenario)


def test_without_inotify_the_feed_compares_listings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Not Linux (no inotify): the feed still names what changed, from a listing every second."""
    monkeypatch.setattr(directories.Directory, "attach", lambda self, loop, wake: False)
    plugin = FilePlugin(directory=tmp_path)
    doomed = foreign(tmp_path)

    async def scenario(changes: Changes) -> None:
        assert await asyncio.wait_for(anext(changes), PATIENCE) is None
        (tmp_path / doomed).unlink()
        made = foreign(tmp_path)
        seen: set[str] = set()
        while not {doomed, made} <= seen:
            seen |= await asyncio.wait_for(anext(changes), PATIENCE) or set()

    watch(plugin, scenario)


def test_a_directory_that_cannot_be_watched_leaves_no_descriptor_open(tmp_path: Path) -> None:
    """(Its listing then goes by timestamps.)  Was: the descriptor stayed open, with no watch, for ever."""
    plugin = FilePlugin(directory=tmp_path / ("x" * 300))  # a name too long to watch
    with pytest.raises(OSError, match="too long"):
        plugin._watch.listen()
    assert not watching(plugin)
