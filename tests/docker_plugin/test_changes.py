"""The Docker plugin's change feed: Docker's own events, announced as instance IDs."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from infrakit.core import instances
from infrakit.plugins import instance_docker, spi
from tests.docker_plugin.conftest import Docker, EngineProxy

GROUP = {instances.TAG_GROUP: "feed", instances.TAG_CONFIG_SHA: "abc"}


async def _next(feed: AsyncIterator[frozenset[str] | None]) -> frozenset[str] | None:
    return await asyncio.wait_for(feed.__anext__(), 30)


def test_a_killed_or_removed_container_is_announced_not_our_own_removals(
    plugin: instance_docker.DockerPlugin, busybox: dict[str, Any], docker: Docker
) -> None:
    assert isinstance(plugin, spi.Watching)
    made = [plugin.provision(instances.InstanceSpec(properties=busybox, tags=GROUP)) for _ in range(3)]

    async def main() -> None:
        feed = plugin.changes()
        try:
            assert await _next(feed) is None  # armed: anything may have changed
            await asyncio.to_thread(docker, "kill", made[0])
            assert await _next(feed) == frozenset({made[0]})  # its death
            # The plugin's own removal is not news; the next announcement is the one after it.
            await asyncio.to_thread(plugin.destroy, made[1])
            await asyncio.to_thread(docker, "rm", "-f", made[2])
            seen = await _next(feed)
            assert seen == frozenset({made[2]}), seen
        finally:
            await feed.aclose()

    asyncio.run(main())


def test_a_broken_stream_is_announced_at_once_and_again_when_back(
    make_plugin: Callable[..., instance_docker.DockerPlugin], docker_host: str, tmp_path: Path
) -> None:
    """The engine goes (every connection cut, its socket gone) and comes back: None both times."""
    proxy = EngineProxy(docker_host.removeprefix("unix://"), tmp_path / "docker.sock")
    proxy.start()
    plugin = make_plugin(url=f"unix://{proxy.path}", retries=0)

    async def main() -> None:
        feed = plugin.changes()
        try:
            assert await _next(feed) is None
            await asyncio.to_thread(proxy.stop)
            assert await _next(feed) is None  # gone: its groups look now
            with pytest.raises(spi.PluginUnavailable):
                await asyncio.to_thread(plugin.describe, {})
            proxy.start()
            assert await _next(feed) is None  # back: look again
            await asyncio.to_thread(plugin.describe, {})
        finally:
            await feed.aclose()
            proxy.stop()

    asyncio.run(main())
