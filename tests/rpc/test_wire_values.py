"""Only what can be written and read back crosses the wire (issue 19, J16).

In: params holding values JSON parsers accept but JSON cannot carry (a lone surrogate
``\\ud800``, ``NaN``, ``Infinity``, ``1e400``), sent raw to every method that takes a
document (``Instance.Provision``/``Label``/``Validate``, ``Flavor.Prepare``/``Healthy``,
``Group.CommitGroup``, ``Metadata.Get``), and the same values given to our clients.
Out: JSON-RPC -32602 naming the field, nothing written (the instance directory stays
empty, no group is committed); our clients refuse to send them at all (the plugin never
sees the call).  And the file plugin's warning for such a tag read from disk says what
is wrong with it.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from infrakit.core import instances, specs
from infrakit.plugins import spi
from infrakit.plugins.flavor_vanilla import VanillaPlugin
from infrakit.plugins.instance_file import FilePlugin
from infrakit.rpc import client, server
from tests.rpc.conftest import FakeHandler, fake_plugin, handshaking, http_request, serving
from tests.rpc.test_conformance import SPEC, FakeGroups

# Raw JSON text: each parses in Python (and Go's decoder takes the surrogate as U+FFFD), none
# can be written by a strict encoder nor read back as the same value.
BAD = {
    "surrogate": ('"a\\ud800b"', "unpaired surrogate"),
    "nan": ("NaN", "not a finite number"),
    "infinity": ("-Infinity", "not a finite number"),
    "1e400": ("1e400", "not a finite number"),
    "huge-integer": ("1" + "0" * 400, "too large"),
}


@pytest.fixture
def instance_dir(tmp_path: Path) -> Path:
    return tmp_path / "inst"


@pytest.fixture
def instance_socket(sockdir: Path, instance_dir: Path) -> Iterator[str]:
    with serving([server.instance_service(FilePlugin(directory=instance_dir))], directory=sockdir) as address:
        yield address


@pytest.fixture
def flavor_socket(sockdir: Path) -> Iterator[str]:
    with serving([server.flavor_service(VanillaPlugin())], directory=sockdir, name="flavor") as address:
        yield address


@pytest.fixture
def groups() -> FakeGroups:
    return FakeGroups()


@pytest.fixture
def group_socket(sockdir: Path, groups: FakeGroups) -> Iterator[str]:
    with serving(server.group_services(groups), directory=sockdir, name="group") as address:
        yield address


def call_raw(address: str, method: str, params: str) -> dict[str, Any]:
    body = f'{{"jsonrpc":"2.0","method":"{method}","params":{params},"id":3}}'.encode()
    status, _, data = http_request(address, body=body)
    assert status == 200, data
    answer: dict[str, Any] = json.loads(data)
    return answer


def refused(answer: dict[str, Any], *, field: str, words: str) -> None:
    assert "result" not in answer, answer
    assert answer["error"]["code"] == -32602, answer
    message = answer["error"]["message"]
    assert message.startswith(f"invalid params: {field}: "), message
    assert words in message and "\n" not in message


def spec_with(*, tags: str = '{"infrakit.group":"g"}', properties: str = "null", init: str = '""') -> str:
    return f'{{"Spec":{{"Properties":{properties},"Tags":{tags},"Init":{init},"LogicalID":null}}}}'


@pytest.mark.parametrize("kind", list(BAD))
def test_provision_refuses_what_it_could_not_read_back(instance_socket: str, instance_dir: Path, kind: str) -> None:
    value, words = BAD[kind]
    refused(
        call_raw(instance_socket, "Instance.Provision", spec_with(properties=f'{{"Zone":[1,{value}]}}')),
        field="Spec.Properties.Zone[1]",
        words=words,
    )
    if kind == "surrogate":
        tags = f'{{"infrakit.group":"g","tier":{value}}}'
        refused(
            call_raw(instance_socket, "Instance.Provision", spec_with(tags=tags)), field="Spec.Tags.tier", words=words
        )
        refused(call_raw(instance_socket, "Instance.Provision", spec_with(init=value)), field="Spec.Init", words=words)
        bad_key = '{"a\\udfff":"x"}'
        refused(
            call_raw(instance_socket, "Instance.Provision", spec_with(tags=bad_key)), field="Spec.Tags", words=words
        )
    assert not instance_dir.exists() or os.listdir(instance_dir) == []  # nothing written


def test_label_refuses_a_lone_surrogate_and_leaves_the_file_as_it_was(instance_socket: str, instance_dir: Path) -> None:
    made = call_raw(instance_socket, "Instance.Provision", json.dumps({"Spec": SPEC}))["result"]["ID"]
    before = (instance_dir / made).read_bytes()
    answer = call_raw(instance_socket, "Instance.Label", f'{{"Instance":"{made}","Labels":{{"x":"\\ud800"}}}}')
    refused(answer, field="Labels.x", words="unpaired surrogate")
    assert (instance_dir / made).read_bytes() == before
    listed = call_raw(instance_socket, "Instance.DescribeInstances", '{"Tags":{}}')["result"]["Descriptions"]
    assert [d["ID"] for d in listed] == [made]  # still a member, still readable


def test_validate_refuses_them_too(instance_socket: str) -> None:
    refused(
        call_raw(instance_socket, "Instance.Validate", '{"Properties":{"a":NaN}}'), field="Properties.a", words="finite"
    )


def test_flavor_prepare_and_healthy_refuse_them(flavor_socket: str) -> None:
    prepare = (
        '{"Properties":{"Init":["echo \\ud800"]},"Spec":{"Tags":{}},'
        '"Allocation":{"Size":1},"Index":{"Group":"g","Sequence":0}}'
    )
    refused(call_raw(flavor_socket, "Flavor.Prepare", prepare), field="Properties.Init[0]", words="surrogate")
    healthy = '{"Properties":null,"Instance":{"ID":"i-1","Tags":{"t":Infinity}}}'
    refused(call_raw(flavor_socket, "Flavor.Healthy", healthy), field="Instance.Tags.t", words="finite")


def test_commit_group_and_metadata_refuse_them(group_socket: str, groups: FakeGroups) -> None:
    document = (
        '{"Spec":{"ID":"g","Properties":{"Allocation":{"Size":1},'
        '"Instance":{"Plugin":"instance-file","Properties":{"Size":1e400}},'
        '"Flavor":{"Plugin":"flavor-vanilla"}}},"Pretend":false}'
    )
    refused(
        call_raw(group_socket, "Group.CommitGroup", document),
        field="Spec.Properties.Instance.Properties.Size",
        words="finite",
    )
    assert groups.groups == {}
    refused(call_raw(group_socket, "Metadata.Get", '{"Path":"specs/\\ud800"}'), field="Path", words="surrogate")


# -- our clients do not send them -------------------------------------------------------------


def _never_called(sockdir: Path, interface: tuple[str, str] = ("Instance", "0.5.0")) -> Any:
    def respond(handler: FakeHandler, request: dict[str, Any]) -> None:
        raise AssertionError(f"the plugin was called: {request['method']}")

    return fake_plugin(sockdir / "p", handshaking(respond, interface=interface))


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        (instances.InstanceSpec(properties={"Zone": float("nan")}), "Spec.Properties.Zone"),
        (instances.InstanceSpec(properties=[1, float("inf")]), "Spec.Properties[1]"),
        (instances.InstanceSpec(tags={"tier": "a\ud800"}), "Spec.Tags.tier"),
        (instances.InstanceSpec(init="echo \udfff"), "Spec.Init"),
    ],
    ids=["nan", "inf", "surrogate-tag", "surrogate-init"],
)
def test_the_instance_client_refuses_to_send_them(sockdir: Path, spec: instances.InstanceSpec, field: str) -> None:
    with _never_called(sockdir) as fake:
        remote = client.RemoteInstancePlugin(name="instance-p", address=str(sockdir / "p"))
        with pytest.raises(spi.PluginError) as failed:
            remote.provision(spec)
    message = str(failed.value)
    assert f"Instance.Provision: {field}: " in message and "not sent" in message and "\n" not in message
    assert [r["method"] for r in fake.requests] in ([], ["Handshake.Implements"])


def test_the_clients_refuse_to_label_or_prepare_them(sockdir: Path) -> None:
    with _never_called(sockdir) as fake:
        remote = client.RemoteInstancePlugin(name="instance-p", address=str(sockdir / "p"))
        with pytest.raises(spi.PluginError, match=r"Instance.Label: Labels.x: .*unpaired surrogate.*not sent"):
            remote.label("i-1", {"x": "\ud800"})
    assert {r["method"] for r in fake.requests} <= {"Handshake.Implements"}
    with _never_called(sockdir, ("Flavor", "0.1.0")) as fake:
        flavor = client.RemoteFlavorPlugin(name="flavor-p", address=str(sockdir / "p"))
        with pytest.raises(spi.PluginError, match=r"Flavor.Prepare: Properties.Init: .*finite.*not sent"):
            flavor.prepare({"Init": float("-inf")}, instances.InstanceSpec(), specs.Allocation(size=1))
    assert {r["method"] for r in fake.requests} <= {"Handshake.Implements"}


# -- the words of the file plugin's warning ---------------------------------------------------


def test_the_warning_for_an_unwritable_tag_says_what_is_wrong(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    (tmp_path / "instance-1").write_text(
        '{"ID":"instance-1","LogicalID":"\\ud800","Tags":{"infrakit.group":"g"}}', encoding="ascii"
    )
    (tmp_path / "instance-2").write_text('{"ID":"instance-2","Tags":{"infrakit.group":"\\udfff"}}', encoding="ascii")
    with caplog.at_level(logging.WARNING):
        assert FilePlugin(directory=tmp_path).describe({}) == []
    text = caplog.text
    assert "a string, not a string" not in text
    assert "instance-1 has a LogicalID that holds an unpaired surrogate (not valid Unicode)" in text
    assert "instance-2 has a tag 'infrakit.group' whose value holds an unpaired surrogate (not valid Unicode)" in text
