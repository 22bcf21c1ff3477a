"""A remote instance plugin reports changes: from the daemon's event stream, or by polling.

In: our server with the file plugin (which publishes ``instance/changes`` on
``/events``), or a plugin that publishes nothing (answered as InfraKit's Go server
does: only POST).  Out: what :meth:`RemoteInstancePlugin.changes` yields (``None``
first and after every reconnection, then the IDs that changed), within bounded waits.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

from infrakit.core import instances
from infrakit.plugins import instance_file
from infrakit.rpc import client, server
from infrakit.testing import memory
from tests.rpc.conftest import http_request, serving

SPEC = instances.InstanceSpec(tags={"infrakit.group": "g"})


async def next_item(changes: AsyncIterator[frozenset[str] | None], *, limit: float = 10.0) -> frozenset[str] | None:
    return await asyncio.wait_for(changes.__anext__(), limit)


async def until_named(changes: AsyncIterator[frozenset[str] | None], instance_id: str) -> None:
    while True:
        item = await next_item(changes)
        if item is not None and instance_id in item:
            return


def test_the_event_stream(sockdir: Path, tmp_path: Path) -> None:
    (tmp_path / "inst").mkdir()  # watched from the start (a directory made later is reported as "anything")
    plugin = instance_file.FilePlugin(directory=tmp_path / "inst")
    service = server.instance_service(plugin)

    async def scenario(address: str) -> None:
        remote = client.RemoteInstancePlugin(name="instance-file", address=address)
        changes = remote.changes()
        try:
            assert await next_item(changes) is None  # subscribed: anything may have changed
            made = await asyncio.to_thread(remote.provision, SPEC)
            await until_named(changes, made)
            (tmp_path / "inst" / made).unlink()  # behind the plugin's back: reported too
            await until_named(changes, made)
        finally:
            await changes.aclose()
            remote.close()

    with serving([service], directory=sockdir, name="instance-file") as address:
        status, _headers, body = http_request(address, method="GET", path="/events?topic=nothing/here")
        assert status == 404 and b"instance/changes" in body
        answer = json.loads(
            http_request(
                address,
                body=b'{"jsonrpc":"2.0","method":"Event.List","params":{"Topic":"instance"},"id":1}',
            )[2]
        )
        assert answer["result"] == {"Nodes": ["changes"]}
        asyncio.run(scenario(address))


def test_the_stream_is_reopened_after_the_daemon_restarts(sockdir: Path, tmp_path: Path) -> None:
    (tmp_path / "inst").mkdir()
    service = server.instance_service(instance_file.FilePlugin(directory=tmp_path / "inst"))

    async def scenario() -> None:
        address = str(sockdir / "instance-file")
        remote = client.RemoteInstancePlugin(name="instance-file", address=address)
        changes = remote.changes()
        try:
            with serving([service], directory=sockdir, name="instance-file"):
                assert await next_item(changes) is None
            # The daemon is gone: "anything may have changed" (its groups look, and see it gone),
            # and no failure (it keeps trying).
            assert await next_item(changes) is None
            with serving([service], directory=sockdir, name="instance-file"):
                # Reconnected at some point (another None): a change made once it is, is named.
                seen: set[str] = set()

                async def read() -> None:
                    async for item in changes:
                        seen.update(item or ())

                reader = asyncio.ensure_future(read())
                deadline = asyncio.get_running_loop().time() + 10
                made: list[str] = []
                while not seen & set(made):
                    assert asyncio.get_running_loop().time() < deadline, "the stream was never reopened"
                    made.append(await asyncio.to_thread(remote.provision, SPEC))
                    for _ in range(100):  # up to a second for the change to be named
                        if made[-1] in seen:
                            break
                        await asyncio.sleep(0.01)
                reader.cancel()
                await asyncio.gather(reader, return_exceptions=True)
        finally:
            await changes.aclose()
            remote.close()

    asyncio.run(scenario())


class Plain:
    """An instance plugin that cannot report changes (as InfraKit's own daemons)."""

    name = "plain"

    def __init__(self) -> None:
        self.inner = memory.MemoryPlugin()

    def validate(self, properties: Any) -> None:
        self.inner.validate(properties)

    def provision(self, spec: instances.InstanceSpec) -> str:
        return self.inner.provision(spec)

    def label(self, instance_id: str, labels: Mapping[str, str]) -> None:
        self.inner.label(instance_id, labels)

    def destroy(self, instance_id: str) -> None:
        self.inner.destroy(instance_id)

    def describe(self, tags: Mapping[str, str]) -> list[instances.Description]:
        return self.inner.describe(tags)


def test_a_plugin_without_events_is_polled(sockdir: Path) -> None:
    service = server.instance_service(Plain())
    assert service.feeds == {}

    async def scenario(address: str) -> None:
        remote = client.RemoteInstancePlugin(name="plain", address=address)
        changes = remote.changes()
        try:
            assert await next_item(changes) is None
            made = await asyncio.to_thread(remote.provision, SPEC)
            await until_named(changes, made)  # within a poll interval or two
        finally:
            await changes.aclose()
            remote.close()

    with serving([service], directory=sockdir, name="plain") as address:
        assert http_request(address, method="GET", path="/events?topic=instance/changes")[0] == 405
        asyncio.run(scenario(address))
