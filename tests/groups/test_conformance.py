"""One Group SPI, three back ends: the same scenarios on the local store, a group daemon and a cluster (issue 20).

In: InfraKit's verbs (``prepare``+``commit`` as the CLI sends them, ``describe``,
``inspect``, ``free``, ``destroy``, ``ls``) on :class:`infrakit.local.groups.StoreGroups`
over a private home, :class:`infrakit.groups.client.GroupClient` against
``infrakit-group-default`` run as a subprocess, and :class:`infrakit.cluster.remote.Remote`
against the Go-built control plane with an operator.  Out: the answers' words (the
same plan text everywhere), the errors' classes, and the instance files.

Where the back ends differ by nature, the test says so: a cluster destroys after
answering (its operator's finalizer), a daemon answers ``DestroyGroup`` with OK only,
and the wire cannot say that a refusal was bad input (a daemon's refusal is a
``PluginError`` with the same words as the ``SpecError`` of the other two).
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from infrakit import plugins
from infrakit.core import specs
from infrakit.groups import spi
from infrakit.local import documents
from tests.conftest import EXAMPLES
from tests.rpc.conftest import start_daemon

CATTLE = documents.load_groups(str(EXAMPLES / "cattle.json"))[0]
CATTLE2 = documents.load_groups(str(EXAMPLES / "cattle2.json"))[0]
ROLL = "Performing a rolling update on 5 instances, then adding 5 instances to increase the group size to 10"


@dataclasses.dataclass
class Backend:
    """One back end: its groups, where its instance files are, and how it says a spec is bad."""

    kind: str
    groups: spi.Groups
    directory: Path
    namespace: str | None = None

    def files(self, group: str) -> set[str]:
        """The instance files of ``group`` (in this back end's namespace), as its file plugin wrote them."""
        found = set()
        for path in self.directory.glob("instance-*"):
            try:
                tags = json.loads(path.read_text()).get("Tags") or {}
            except (OSError, ValueError):
                continue  # being replaced
            if tags.get("infrakit.group") == group and tags.get("infrakit.namespace") == self.namespace:
                found.add(path.name)
        return found

    def commit(self, *groups: specs.GroupSpec, pretend: bool = False) -> list[str]:
        """As ``infrakit-local commit`` does: every group checked, then each committed."""
        self.groups.prepare(groups)
        return [self.groups.commit(spec, pretend=pretend) for spec in groups]

    @property
    def refusal(self) -> type[Exception]:
        return plugins.PluginError if self.kind == "daemon" else specs.SpecError


def wait_until(condition: Callable[[], Any], *, what: str, timeout: float = 90.0) -> Any:
    deadline = time.monotonic() + timeout
    while not (found := condition()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)
    return found


def local_backend(home: Path) -> Backend:
    from infrakit.local import groups, store

    directory = home / "instances"
    kept = groups.StoreGroups(
        store=store.Store(home),
        plugin_registry=plugins.Registry(),
        options=lambda name: {"dir": str(directory)} if name == "instance-file" else {},
        timeout=60.0,
    )
    return Backend(kind="local", groups=kept, directory=directory)


@pytest.fixture(params=["local", "daemon", pytest.param("cluster", marks=pytest.mark.cluster)])
def backend(request: pytest.FixtureRequest, sockdir: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Backend]:
    home = sockdir / "home"
    if request.param == "local":
        yield local_backend(home)
        return
    if request.param == "daemon":
        from infrakit.groups import client

        daemon = start_daemon("group-default", "--resync", "60", env={"INFRAKIT_HOME": str(home)})
        try:
            daemon.wait_for("Listening at:")
            remote = client.GroupClient(str(home / "plugins" / "group"))
            yield Backend(kind="daemon", groups=remote, directory=home / "instances")
            remote.close()
        finally:
            assert daemon.stop() == 0
        return
    from infrakit.cluster import remote as cluster

    running = request.getfixturevalue("operator")
    monkeypatch.setenv("KUBECONFIG", running.cluster.kubeconfig)
    directory = running.instance_dir
    kept = cluster.Remote(
        context=None,
        namespace=running.namespace,
        registry=plugins.Registry(),
        options=lambda name: {"dir": str(directory)} if name == "instance-file" else {},
        explicit=True,  # the operator's volume, as --dir names it
    )
    yield Backend(kind="cluster", groups=kept, directory=directory, namespace=running.namespace)


def converged(backend: Backend, name: str, size: int) -> spi.Description | None:
    found = backend.groups.describe(name)
    return found if found.converged and len(found.instances) == size else None


def test_commit_describe_inspect_free_and_destroy_say_the_same(backend: Backend) -> None:
    assert backend.groups.ls() == []
    assert backend.commit(CATTLE, pretend=True) == ["Managing 5 instances"]
    assert backend.groups.ls() == []  # a pretend commit records nothing
    assert backend.commit(CATTLE) == ["Managing 5 instances"]
    assert backend.groups.ls() == ["cattle"]
    described = wait_until(lambda: converged(backend, "cattle", 5), what="5 instances, converged")
    assert {d.id for d in described.instances} == backend.files("cattle")
    inspected = backend.groups.inspect("cattle")
    assert spi.to_infrakit(inspected.spec) == json.loads((EXAMPLES / "cattle.json").read_text())

    # The words of a plan are the plan's, whoever decides it.
    assert backend.commit(CATTLE2, pretend=True) == [ROLL]

    before = backend.files("cattle")
    backend.groups.free("cattle")
    wait_until(lambda: backend.groups.ls() == [], what="the group forgotten")
    assert backend.files("cattle") == before  # freed: the instances are left as they are
    assert backend.commit(CATTLE) == ["Managing 5 instances"]  # and a new commit adopts them
    wait_until(lambda: converged(backend, "cattle", 5), what="the instances adopted")
    assert backend.files("cattle") == before

    destroyed = backend.groups.destroy("cattle")
    expected = {"local": (5, False), "daemon": (None, False), "cluster": (None, True)}[backend.kind]
    assert (destroyed.count, destroyed.pending) == expected
    wait_until(lambda: not backend.files("cattle") and backend.groups.ls() == [], what="the instances destroyed")


@pytest.mark.parametrize("verb", ["describe", "inspect", "free", "destroy"])
def test_a_group_that_is_not_there_is_group_not_found(backend: Backend, verb: str) -> None:
    with pytest.raises(spi.GroupNotFound) as missing:
        getattr(backend.groups, verb)("nothing")
    assert "group 'nothing' not found" in str(missing.value)


def test_a_file_with_one_bad_group_commits_none(backend: Backend) -> None:
    bad = dataclasses.replace(
        CATTLE2, name="broken", flavor=specs.PluginSpec(plugin="flavor-vanilla", properties={"Init": 3})
    )
    with pytest.raises(backend.refusal) as refused:
        backend.commit(CATTLE, bad)
    assert "spec.flavor.properties.Init: must be a list of strings" in str(refused.value)
    assert backend.groups.ls() == []
    assert backend.files("cattle") == set()


def test_an_unknown_plugin_is_refused_before_anything_is_recorded(backend: Backend) -> None:
    stray = dataclasses.replace(CATTLE, instance=specs.PluginSpec(plugin="instance-nowhere"))
    with pytest.raises(backend.refusal) as refused:
        backend.commit(stray)
    assert "unknown instance plugin 'instance-nowhere'" in str(refused.value)
    assert backend.groups.ls() == []


def test_the_metadata_tree_is_the_same_from_every_back_end(backend: Backend) -> None:
    from infrakit.core import metadata as paths
    from infrakit.groups import metadata

    backend.commit(CATTLE)
    wait_until(lambda: converged(backend, "cattle", 5), what="5 instances, converged")
    root = metadata.root(backend.groups)
    assert paths.children(root, ()) == ["groups", "specs", "status"]
    assert paths.get(root, ("specs", "cattle", "Properties", "Allocation", "Size")) == 5
    assert paths.get(root, ("groups", "cattle", "Converged")) is True
    assert len(paths.get(root, ("groups", "cattle", "Instances"))) == 5
    backend.groups.destroy("cattle")
    wait_until(lambda: not backend.files("cattle"), what="the instances destroyed")


def test_a_paused_group_says_so_everywhere(backend: Backend) -> None:
    """Was: a cluster's commit of a paused Group said nothing of it (the local store's and a daemon's did)."""
    paused = dataclasses.replace(CATTLE, paused=True)
    assert backend.commit(paused, pretend=True) == [
        "Managing 5 instances (paused: no changes until spec.paused is false)"
    ]
    assert backend.groups.ls() == []
