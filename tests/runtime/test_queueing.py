"""The work queue: one key at a time, deduplicated, requeue-after and per-key backoff."""

from __future__ import annotations

import asyncio

from infrakit.runtime import queueing


def run(coroutine: object) -> None:
    asyncio.run(coroutine)  # type: ignore[arg-type]


def test_a_key_added_twice_is_processed_once() -> None:
    async def main() -> None:
        queue: queueing.WorkQueue[str] = queueing.WorkQueue()
        queue.add("a")
        queue.add("a")
        queue.add("b")
        assert len(queue) == 2
        assert await queue.get() == "a"
        assert await queue.get() == "b"

    run(main())


def test_a_key_added_while_processing_waits_until_done() -> None:
    async def main() -> None:
        queue: queueing.WorkQueue[str] = queueing.WorkQueue()
        queue.add("a")
        assert await queue.get() == "a"
        queue.add("a")  # changed while being synced: sync again, but not at the same time
        getter = asyncio.ensure_future(queue.get())
        await asyncio.sleep(0)
        assert not getter.done()
        queue.done("a")
        assert await asyncio.wait_for(getter, 1) == "a"

    run(main())


def test_backoff_grows_per_key_and_resets_after_success() -> None:
    async def main() -> None:
        queue: queueing.WorkQueue[str] = queueing.WorkQueue(base=0.001, cap=0.004)
        delays = [queue.fail("a") for _ in range(4)]
        assert delays == [0.001, 0.002, 0.004, 0.004]  # doubling, capped
        assert queue.fail("b") == 0.001  # another key has its own
        queue.forget("a")
        assert queue.fail("a") == 0.001
        assert {await asyncio.wait_for(queue.get(), 1), await asyncio.wait_for(queue.get(), 1)} == {"a", "b"}

    run(main())


def test_the_earliest_requeue_wins_and_drop_cancels() -> None:
    async def main() -> None:
        queue: queueing.WorkQueue[str] = queueing.WorkQueue()
        queue.add("a", after=60)
        queue.add("a", after=0.001)  # sooner: replaces the later timer
        assert await asyncio.wait_for(queue.get(), 1) == "a"
        queue.done("a")
        queue.add("b", after=0.001)
        queue.drop("b")
        await asyncio.sleep(0.01)
        assert len(queue) == 0 and not queue.busy

    run(main())


def test_add_from_another_thread() -> None:
    async def main() -> None:
        queue: queueing.WorkQueue[str] = queueing.WorkQueue()
        queue.add("first")
        await queue.get()
        await asyncio.to_thread(queue.add_threadsafe, "b")
        assert await asyncio.wait_for(queue.get(), 1) == "b"

    run(main())
