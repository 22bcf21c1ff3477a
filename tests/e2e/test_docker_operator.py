"""instance-docker under the operator (issue 22, item 3): Groups on a real API server, containers
on the test engine, reached as ``manifests/overlays/docker-socket`` reaches the node's (``DOCKER_HOST``).

The operator runs as the other e2e tests run it (a process, its own Lease); its engine is a proxy
of the shared test engine that the test can take away and bring back.  Checked: the Group's
containers carry the cluster's identity and the namespace; a ``docker kill`` is healed from
Docker's own events; an engine that goes is ``Ready=False, PluginUnavailable`` and clears by
itself; deleting the Group removes exactly its containers (the finalizer).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from infrakit.core import instances
from tests.docker_plugin.conftest import Docker, EngineProxy
from tests.docker_plugin.test_modes import group
from tests.e2e.conftest import EXTERNAL, Groups, Operator, wait_until

pytestmark = pytest.mark.skipif(EXTERNAL, reason="the deployed operator reaches no test engine")


def manifest(path: Path, name: str, image: str, size: int) -> Path:
    path.write_text(yaml.safe_dump(group(name, image, size=size)))  # the local modes' Group, applied
    return path


@pytest.fixture
def docker(docker_engine: Any) -> Docker:
    return Docker(docker_engine)


def running(docker: Docker, namespace: str, name: str) -> list[str]:
    return docker.ids(f"{instances.TAG_GROUP}={name}", f"{instances.TAG_NAMESPACE}={namespace}", all_states=False)


@pytest.mark.timeout(240)
def test_the_operator_keeps_heals_and_removes_a_groups_containers(
    operator_factory: Callable[..., Operator],
    groups: Groups,
    namespace: str,
    docker_host: str,
    busybox_images: dict[str, str],
    docker: Docker,
    tmp_path: Path,
) -> None:
    proxy = EngineProxy(docker_host.removeprefix("unix://"), Path(f"/tmp/ik-{namespace[-6:]}.sock"))
    proxy.start()
    name = "web"
    label = f"{instances.TAG_NAMESPACE}={namespace}"
    try:
        operator_factory(env={"DOCKER_HOST": f"unix://{proxy.path}"})
        groups.apply(manifest(tmp_path / "g.yaml", name, busybox_images["1"], 3))
        wait_until(lambda: groups.condition(name, "Ready").get("status") == "True", timeout=90, what="Ready")
        first = running(docker, namespace, name)
        assert len(first) == 3
        labels: dict[str, Any] = docker.inspect(first[0])["Config"]["Labels"]
        assert labels[instances.TAG_GROUP] == name and labels[instances.TAG_NAMESPACE] == namespace
        assert labels.get(instances.TAG_CLUSTER), "a cluster's container carries the cluster's identity"
        assert groups.status(name)["replicas"] == 3

        docker("kill", first[0])
        healed = wait_until(
            lambda: (now := running(docker, namespace, name)) and len(now) == 3 and first[0] not in now and now,
            timeout=30,
            what="the killed container to be replaced",
        )
        assert set(first[1:]) <= set(healed)

        proxy.stop()  # the engine goes: its event stream ends, the group looks at once
        condition = wait_until(
            lambda: (c := groups.condition(name, "Ready")).get("reason") == "PluginUnavailable" and c,
            timeout=30,
            what="Ready=False, PluginUnavailable",
        )
        assert condition["status"] == "False" and "Docker engine" in condition["message"]
        proxy.start()
        wait_until(lambda: groups.condition(name, "Ready").get("status") == "True", timeout=60, what="recovery")
        assert sorted(running(docker, namespace, name)) == sorted(healed)

        groups.kubectl("delete", "group", name, "--wait=true", "--timeout=60s")
        assert docker.ids(label) == [], "the finalizer removes the group's containers"
    finally:
        docker.remove_labelled(label)
        proxy.stop()
