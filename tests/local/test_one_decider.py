"""One sync decides, once: a commit parses, validates, loads, resolves and plans once (issue 20).

In: ``infrakit-local commit`` (in-process, as a user types it) and the group daemon's
``CommitGroup``, with counters on the functions that decide.  Out: how many times each
ran, and the words printed, which are the words of the plan that was carried out.
Before: a first commit planned 3 times, validated each plugin 3 times, loaded the store
3 times and parsed the document 3 times.
"""

from __future__ import annotations

import asyncio
import collections
import functools
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from infrakit import plugins
from infrakit.core import planning, specs
from infrakit.local import controller as controllers
from infrakit.local import serving
from infrakit.local import store as stores
from infrakit.plugins import flavor_vanilla, instance_file
from infrakit.runtime import engine, running
from tests.conftest import EXAMPLES
from tests.local.conftest import Local

Counts = collections.Counter[str]


@pytest.fixture
def counts(monkeypatch: pytest.MonkeyPatch) -> Iterator[Counts]:
    found: Counts = collections.Counter()

    def counting(name: str, original: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(original)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            found[name] += 1
            return original(*args, **kwargs)

        return wrapper

    for owner, attribute, name in [
        (planning, "plan", "plan"),
        (specs, "parse_document", "parse"),
        (engine, "resolve", "resolve"),
        (engine, "observe", "observe"),
        (stores.Store, "load", "load"),
        (instance_file.FilePlugin, "validate", "validate instance"),
        (flavor_vanilla.VanillaPlugin, "validate", "validate flavor"),
    ]:
        monkeypatch.setattr(owner, attribute, counting(name, getattr(owner, attribute)))
    return found


ONCE = {"plan": 1, "parse": 1, "resolve": 1, "observe": 1, "load": 1, "validate instance": 1, "validate flavor": 1}


def test_a_first_commit_decides_once(local: Local, counts: Counts) -> None:
    result = local("commit", str(EXAMPLES / "cattle.yaml"))
    assert result.stdout == "Committed cattle: Managing 5 instances\n"
    assert len(local.files()) == 5
    assert dict(counts) == ONCE


def test_a_pretend_commit_is_the_same_sync_without_acting(local: Local, counts: Counts) -> None:
    local("commit", str(EXAMPLES / "cattle.yaml"))
    before = local.files()
    counts.clear()
    result = local("commit", "--pretend", str(EXAMPLES / "cattle2.yaml"))
    assert result.stdout == (
        "Committing cattle would involve: Performing a rolling update on 5 instances, "
        "then adding 5 instances to increase the group size to 10\n"
    )
    assert local.files() == before
    assert dict(counts) == {**ONCE, "parse": 2}  # the file's document, and the record it would replace


def test_a_roll_decides_once_and_says_what_it_did(local: Local, counts: Counts) -> None:
    local("commit", str(EXAMPLES / "cattle.yaml"))
    counts.clear()
    result = local("commit", str(EXAMPLES / "cattle2.yaml"))
    assert result.stdout == (
        "Committed cattle: Performing a rolling update on 5 instances, "
        "then adding 5 instances to increase the group size to 10\n"
    )
    assert len(local.files()) == 10
    assert dict(counts) == {**ONCE, "parse": 2}  # the file's document, and the record it replaces


def test_the_group_daemons_commit_decides_once(home: Path, counts: Counts) -> None:
    """Was: CommitGroup made a pretend commit (a whole decision) before the real one."""
    registry = plugins.Registry(defaults={"instance-file": {"dir": str(home / "instances")}})
    controller = controllers.Controller(store=stores.Store(home), registry=registry)

    async def main() -> str:
        runtime = running.Runtime(syncer=controller.syncer)
        groups = serving.LocalGroups(
            controller=controller,
            runtime=runtime,
            loop=asyncio.get_running_loop(),
            options=registry.options,
        )
        import json

        document = json.loads((EXAMPLES / "cattle.json").read_text())
        counts.clear()
        return await asyncio.to_thread(groups.commit, document, pretend=False)

    assert asyncio.run(main()) == "Managing 5 instances"
    assert dict(counts) == ONCE
