"""The Docker instance plugin against its SPI, on a real engine: what it makes, lists, labels and removes,
and how it fails (one line, nothing half-made)."""

from __future__ import annotations

import socket
import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from infrakit.core import instances, specs
from infrakit.plugins import flavor_vanilla, instance_docker, spi
from tests.docker_plugin.conftest import FENCE, Docker, wait_for

GROUP = {instances.TAG_GROUP: "g", instances.TAG_CONFIG_SHA: "abc"}


def spec(properties: Any, **changes: Any) -> instances.InstanceSpec:
    return instances.InstanceSpec(properties=properties, tags=dict(GROUP), **changes)


def test_provision_describe_destroy(
    plugin: instance_docker.DockerPlugin, busybox: dict[str, Any], docker: Docker
) -> None:
    first = plugin.provision(spec(busybox))
    second = plugin.provision(spec({**busybox, "Tags": {"tier": "web"}}))
    assert len(first) == 12 and len(second) == 12
    found = {d.id: d for d in plugin.describe({instances.TAG_GROUP: "g"})}
    assert set(found) == {first, second}
    assert found[second].tags["tier"] == "web" and instances.TAG_GROUP in found[second].tags
    assert found[first].tags[spi.TAG_HEALTH] == "healthy"
    assert found[first].created > 0
    labels = docker.inspect(first)["Config"]["Labels"]
    assert labels[instances.TAG_CONFIG_SHA] == "abc"  # the spec's tags are the container's labels
    assert [d.id for d in plugin.describe({"tier": "web"})] == [second]
    plugin.destroy(first)
    assert [d.id for d in plugin.describe({instances.TAG_GROUP: "g"})] == [second]
    assert docker.ids(first) == [] or not any(i.startswith(first) for i in docker.ids())
    with pytest.raises(spi.InstanceNotFound):
        plugin.destroy(first)


def test_init_runs_inside_the_container_not_on_the_host(
    plugin: instance_docker.DockerPlugin, busybox: dict[str, Any], docker: Docker
) -> None:
    marker = Path("/var/lib") / f"infrakit-test-init-{uuid.uuid4().hex}"  # a directory both have
    made = plugin.provision(spec(busybox, init=f"echo ran > /www/init.txt\necho ran > {marker}"))
    assert docker("exec", made, "cat", "/www/init.txt") == "ran"
    assert docker("exec", made, "cat", str(marker)) == "ran"
    assert not marker.exists()  # the host never ran it


def test_a_failing_init_is_one_line_and_leaves_no_container(
    plugin: instance_docker.DockerPlugin, busybox: dict[str, Any], docker: Docker, fence: str
) -> None:
    with pytest.raises(spi.PluginError) as failure:
        plugin.provision(spec(busybox, init="echo 'cannot configure the widget' >&2\nexit 3"))
    message = str(failure.value)
    assert "\n" not in message
    assert "exit code 3" in message and "cannot configure the widget" in message
    assert docker.ids(f"{FENCE}={fence}") == []


def test_an_image_without_a_var_lib_cannot_take_an_init(
    plugin: instance_docker.DockerPlugin, busybox: dict[str, Any], docker: Docker, fence: str
) -> None:
    # An Init needs /var/lib, as v0.5's; a read-only root filesystem refuses the copy the same way.
    properties = {**busybox, "HostConfig": {"NetworkMode": "none", "ReadonlyRootfs": True}}
    with pytest.raises(spi.PluginError, match="Init script"):
        plugin.provision(spec(properties, init="true"))
    assert docker.ids(f"{FENCE}={fence}") == []


def test_an_image_that_cannot_be_pulled_is_one_line(
    plugin: instance_docker.DockerPlugin, busybox: dict[str, Any], docker: Docker, fence: str
) -> None:
    missing = {**busybox, "Config": {"Image": "infrakit-test/never-made:1"}}
    with pytest.raises(spi.PluginError) as failure:
        plugin.provision(spec(missing))
    message = str(failure.value)
    assert "\n" not in message
    assert message.startswith("image infrakit-test/never-made:1 is not on the Docker engine and cannot be pulled")
    assert "Config.Image" in message
    assert docker.ids(f"{FENCE}={fence}") == []


@pytest.fixture
def silent_registry() -> Iterator[int]:
    """A registry that takes connections and never answers: a pull from it would hang."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(server.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield server.getsockname()[1]
    finally:
        stop.set()
        thread.join(5)
        for connection in held:
            connection.close()
        server.close()


@pytest.mark.timeout(60)
def test_a_pull_that_hangs_is_bounded(
    make_plugin: Callable[..., instance_docker.DockerPlugin],
    busybox: dict[str, Any],
    silent_registry: int,
    docker: Docker,
    fence: str,
) -> None:
    plugin = make_plugin(pull_timeout=1.0)
    image = f"127.0.0.1:{silent_registry}/never/answers:1"
    with pytest.raises(spi.PluginError) as failure:
        plugin.provision(spec({**busybox, "Config": {"Image": image}}))
    assert "\n" not in str(failure.value)
    assert f"image {image} is not on the Docker engine and cannot be pulled" in str(failure.value)
    assert "not done within 1 s" in str(failure.value)
    assert docker.ids(f"{FENCE}={fence}") == []


@pytest.mark.parametrize(
    ("properties", "field", "words"),
    [
        (None, "spec.instance.properties", "must be a mapping"),
        ({"Config": {}}, "spec.instance.properties.Config.Image", "must name an image"),
        ({"Config": {"Image": "x"}, "Cofnig": {}}, "spec.instance.properties.Cofnig", "unknown property"),
        ({"Config": "busybox"}, "spec.instance.properties.Config", "container config"),
        ({"Config": {"Image": "x"}, "HostConfig": []}, "spec.instance.properties.HostConfig", "host config"),
        (
            {"Config": {"Image": "x"}, "Tags": {"infrakit.group": "other"}},
            "spec.instance.properties.Tags.infrakit.group",
            "group's own",
        ),
        ({"Config": {"Image": "x", "Labels": {"a": 1}}}, "spec.instance.properties.Config.Labels", "strings"),
        ({"Config": {"Image": "x"}, "NetworkAttachments": [{}]}, "NetworkAttachments[0].Name", "network"),
        ({"Config": {"Image": "x", "Env": [float("nan")]}}, "spec.instance.properties.Config.Env[0]", ""),
    ],
)
def test_invalid_properties_name_the_field(
    plugin: instance_docker.DockerPlugin, properties: Any, field: str, words: str
) -> None:
    with pytest.raises(specs.SpecError) as failure:
        plugin.validate(properties)
    assert failure.value.field.endswith(field) or field in failure.value.field
    assert words in str(failure.value)


def test_validate_needs_no_engine(make_plugin: Callable[..., instance_docker.DockerPlugin], tmp_path: Path) -> None:
    plugin = make_plugin(url=f"unix://{tmp_path}/no-such.sock")
    plugin.validate({"Config": {"Image": "busybox:1"}})  # a commit validates while the engine may be down


def test_a_config_docker_refuses_is_one_line_and_leaves_nothing(
    plugin: instance_docker.DockerPlugin, busybox: dict[str, Any], docker: Docker, fence: str
) -> None:
    refused = {**busybox, "Config": {**busybox["Config"], "Cmd": 3}}
    with pytest.raises(spi.PluginError) as failure:
        plugin.provision(spec(refused))
    assert "\n" not in str(failure.value)
    assert str(failure.value).startswith("Docker refused the container (")
    assert docker.ids(f"{FENCE}={fence}") == []


def test_a_missing_network_is_one_line_and_leaves_nothing(
    plugin: instance_docker.DockerPlugin, busybox: dict[str, Any], docker: Docker, fence: str
) -> None:
    with pytest.raises(spi.PluginError, match="network 'no-such-net'"):
        plugin.provision(spec({**busybox, "NetworkAttachments": [{"Name": "no-such-net"}]}))
    assert docker.ids(f"{FENCE}={fence}") == []


def test_label_is_recorded_beside_the_immutable_labels(
    make_plugin: Callable[..., instance_docker.DockerPlugin], busybox: dict[str, Any], docker: Docker
) -> None:
    plugin = make_plugin()
    made = plugin.provision(spec({**busybox}, logical_id=None))
    plugin.label(made, {instances.TAG_CONFIG_SHA: "new", instances.TAG_ORPHANED: "true"})
    (found,) = plugin.describe({instances.TAG_GROUP: "g"})
    assert found.tags[instances.TAG_CONFIG_SHA] == "new" and found.tags[instances.TAG_ORPHANED] == "true"
    # Docker's own label is unchanged; the describe filter sees the recorded one.
    assert docker.inspect(made)["Config"]["Labels"][instances.TAG_CONFIG_SHA] == "abc"
    assert [d.id for d in plugin.describe({instances.TAG_CONFIG_SHA: "new"})] == [made]
    assert plugin.describe({instances.TAG_CONFIG_SHA: "abc"}) == []
    # Another process sharing the directory (a new plugin object) sees the same labels.
    assert make_plugin().describe({instances.TAG_ORPHANED: "true"})[0].id == made
    with pytest.raises(spi.InstanceNotFound):
        plugin.label("0123456789ab", {"a": "b"})


def test_destroy_refuses_a_container_no_group_made(
    plugin: instance_docker.DockerPlugin, busybox_images: dict[str, str], docker: Docker, fence: str
) -> None:
    foreign = docker("run", "-d", "--network", "none", "-l", f"{FENCE}={fence}", busybox_images["1"], "sleep", "600")
    with pytest.raises(spi.PluginError, match="not an InfraKit instance"):
        plugin.destroy(foreign[:12])
    assert docker.inspect(foreign)["State"]["Running"]


def test_a_pet_is_named_and_its_dead_predecessor_makes_way(
    plugin: instance_docker.DockerPlugin, busybox: dict[str, Any], docker: Docker, fence: str
) -> None:
    name = f"pet-{fence}"
    tags = {**GROUP, instances.TAG_LOGICAL_ID: name}
    first = plugin.provision(instances.InstanceSpec(properties=busybox, tags=tags, logical_id=name))
    assert docker.inspect(first)["Name"] == f"/{name}"
    (found,) = plugin.describe({instances.TAG_GROUP: "g"})
    assert found.logical_id == name
    docker("kill", first)
    assert plugin.describe({instances.TAG_GROUP: "g"}) == []  # an exited container is no instance
    second = plugin.provision(instances.InstanceSpec(properties=busybox, tags=tags, logical_id=name))
    assert second != first
    assert [d.id for d in plugin.describe({instances.TAG_GROUP: "g"})] == [second]
    assert not any(i.startswith(first) for i in docker.ids(f"{FENCE}={fence}"))  # the remains went


def test_a_live_container_holding_a_pets_name_is_not_touched(
    plugin: instance_docker.DockerPlugin, busybox: dict[str, Any], busybox_images: dict[str, str], docker: Docker,
    fence: str,
) -> None:  # fmt: skip
    name = f"taken-{fence}"
    other = docker("run", "-d", "--name", name, "--network", "none", "-l", f"{FENCE}={fence}", busybox_images["1"],
                   "sleep", "600")  # fmt: skip
    with pytest.raises(spi.PluginError) as failure:
        plugin.provision(instances.InstanceSpec(properties=busybox, tags=GROUP, logical_id=name))
    assert "\n" not in str(failure.value) and f"cannot create container {name}" in str(failure.value)
    assert docker.inspect(other)["State"]["Running"]


def test_health_comes_from_the_state_and_the_healthcheck(
    plugin: instance_docker.DockerPlugin, busybox: dict[str, Any]
) -> None:
    def with_check(test: list[str]) -> dict[str, Any]:
        check = {"Test": test, "Interval": 100_000_000, "Timeout": 1_000_000_000, "Retries": 1}
        return {**busybox, "Config": {**busybox["Config"], "Healthcheck": check}}

    sick = plugin.provision(spec(with_check(["CMD", "false"])))
    well = plugin.provision(spec(with_check(["CMD", "true"])))
    vanilla = flavor_vanilla.VanillaPlugin()

    def verdicts() -> dict[str, instances.Health] | None:
        found = {d.id: vanilla.healthy(None, d) for d in plugin.describe({instances.TAG_GROUP: "g"})}
        settled = found.get(sick) is instances.Health.UNHEALTHY and found.get(well) is instances.Health.HEALTHY
        return found if settled else None

    wait_for(verdicts, what="the healthchecks' verdicts")


def test_without_an_engine_it_is_unavailable_in_one_line(
    make_plugin: Callable[..., instance_docker.DockerPlugin], busybox: dict[str, Any], tmp_path: Path
) -> None:
    plugin = make_plugin(url=f"unix://{tmp_path}/docker.sock", retries=0)
    for call in (
        lambda: plugin.describe({}),
        lambda: plugin.provision(spec(busybox)),
        lambda: plugin.destroy("a" * 12),
    ):
        with pytest.raises(spi.PluginUnavailable) as failure:
            call()
        assert "\n" not in str(failure.value)
        assert f"Docker engine at unix://{tmp_path}/docker.sock" in str(failure.value)
        assert "is dockerd running?" in str(failure.value)
