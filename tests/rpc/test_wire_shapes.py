"""Wire shapes against recorded InfraKit v0.5 examples, both directions.

The literals below are v0.5's own examples (its plugin docs' curl sessions and method
pages, and the request/response structs of ``pkg/rpc/*/types.go``), written out here
so that no test fetches InfraKit.  Server side: our answers to v0.5's requests, byte
for byte where v0.5 documents the bytes.  Client side: the requests our client sends,
key for key, as v0.5's Go structs encode them.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from infrakit.core import instances, specs
from infrakit.plugins.flavor_vanilla import VanillaPlugin
from infrakit.rpc import client, server
from infrakit.testing.memory import MemoryPlugin
from tests.rpc.conftest import FakeHandler, fake_plugin, handshaking, http_request, serving
from tests.rpc.test_conformance import FakeGroups


@pytest.fixture
def group(sockdir: Path) -> Iterator[str]:
    with serving(server.group_services(FakeGroups()), directory=sockdir, name="group") as address:
        yield address


@pytest.fixture
def instance(sockdir: Path) -> Iterator[str]:
    with serving([server.instance_service(MemoryPlugin())], directory=sockdir, name="instance-memory") as address:
        yield address


@pytest.fixture
def flavor(sockdir: Path) -> Iterator[str]:
    with serving([server.flavor_service(VanillaPlugin())], directory=sockdir, name="flavor-vanilla") as address:
        yield address


def exchange(address: str, request: str) -> bytes:
    status, headers, body = http_request(address, body=request.encode())
    assert status == 200 and headers["Content-Type"] == "application/json; charset=utf-8"
    return body


# -- the server answers v0.5's documented requests as v0.5 does ------------------------------


def test_docs_curl_inspect_groups_byte_for_byte(group: str) -> None:
    request = '{"jsonrpc":"2.0","method":"Group.InspectGroups","params":{},"id":1}'
    assert exchange(group, request) == b'{"jsonrpc":"2.0","result":{"Groups":null},"id":1}\n'


def test_docs_curl_commit_error_byte_for_byte(group: str) -> None:
    request = '{"jsonrpc":"2.0","method":"Group.CommitGroup","params":{},"id":1}'
    assert exchange(group, request) == (
        b'{"jsonrpc":"2.0","error":{"code":-32000,"message":"Group ID must not be blank","data":null},"id":1}\n'
    )


def test_v05_handshake_byte_for_byte(group: str) -> None:
    implements = '{"jsonrpc":"2.0","method":"Handshake.Implements","params":{},"id":1}'
    assert exchange(group, implements) == (
        b'{"jsonrpc":"2.0","result":{"APIs":[{"Name":"Group","Version":"0.1.0"},'
        b'{"Name":"Metadata","Version":"0.1.0"}]},"id":1}\n'
    )
    types = '{"jsonrpc":"2.0","method":"Handshake.Types","params":{},"id":1}'
    assert exchange(group, types) == (
        b'{"jsonrpc":"2.0","result":{"Types":{"Group/0.1.0":["."],"Metadata/0.1.0":["."]}},"id":1}\n'
    )


def call(address: str, method: str, params: str) -> dict[str, Any]:
    body = exchange(address, f'{{"jsonrpc":"2.0","method":"{method}","params":{params},"id":1}}')
    answer: dict[str, Any] = json.loads(body)
    assert "error" not in answer, answer
    result: dict[str, Any] = answer["result"]
    return result


def test_docs_instance_examples(instance: str) -> None:
    # docs/plugins/instance.md (the docs omit "Type"; v0.5's structs add it to every answer)
    assert call(instance, "Instance.Validate", '{"Properties": {}}') == {"Type": "", "OK": True}
    provisioned = call(
        instance,
        "Instance.Provision",
        """{"Spec": {"Properties": {}, "Tags": {"tag_key": "tag_value"}, "Init": "", "LogicalID": "logical_id",
            "Attachments": [{"ID": "attachment_id", "Type": "block-device"}]}}""",
    )
    assert set(provisioned) == {"Type", "ID"} and isinstance(provisioned["ID"], str)
    assert call(
        instance,
        "Instance.Label",
        f'{{"Instance": "{provisioned["ID"]}", "Labels": {{"label1": "value1", "label2": "value2"}}}}',
    ) == {"Type": "", "OK": True}
    described = call(instance, "Instance.DescribeInstances", '{"Tags": {"tag_key": "tag_value"}, "Properties": true}')
    assert described == {
        "Type": "",
        "Descriptions": [
            {
                "ID": provisioned["ID"],
                "LogicalID": "logical_id",
                "Tags": {"tag_key": "tag_value", "label1": "value1", "label2": "value2"},
            }
        ],
    }
    assert call(instance, "Instance.Destroy", f'{{"Instance": "{provisioned["ID"]}"}}') == {"Type": "", "OK": True}


def test_docs_flavor_examples(flavor: str) -> None:
    # docs/plugins/flavor.md
    allocation = '{"Size": 1, "LogicalIDs": ["logical_id_1"]}'
    assert call(flavor, "Flavor.Validate", f'{{"Properties": {{}}, "Allocation": {allocation}}}') == {
        "Type": "",
        "OK": True,
    }
    prepared = call(
        flavor,
        "Flavor.Prepare",
        f"""{{"Properties": {{}}, "Spec": {{"Properties": {{}}, "Tags": {{"tag_key": "tag_value"}},
            "Init": "init script", "LogicalID": "logical_id"}},
            "Allocation": {allocation}, "Index": {{"Group": "workers", "Sequence": 100}}}}""",
    )
    assert prepared == {
        "Type": "",
        "Spec": {
            "Properties": {},
            "Tags": {"tag_key": "tag_value"},
            "Init": "init script",
            "LogicalID": "logical_id",
            "Attachments": None,
        },
    }
    instance = '{"ID": "instance_id", "LogicalID": "logical_id", "Tags": {"tag_key": "tag_value"}}'
    assert call(flavor, "Flavor.Healthy", f'{{"Properties": {{}}, "Instance": {instance}}}') == {
        "Type": "",
        "Health": 1,
    }
    assert call(flavor, "Flavor.Drain", f'{{"Properties": {{}}, "Instance": {instance}}}') == {"Type": "", "OK": True}


def test_docs_group_examples(group: str) -> None:
    # docs/plugins/group.md, docs/cattle.json's shape
    spec = (
        '{"ID": "workers", "Properties": {"Allocation": {"Size": 5}, '
        '"Instance": {"Plugin": "instance-file", "Properties": {"Note": "Instance properties"}}, '
        '"Flavor": {"Plugin": "flavor-vanilla", "Properties": {"Init": ["docker pull nginx:alpine"]}}}}'
    )
    assert call(group, "Group.CommitGroup", f'{{"Spec": {spec}, "Pretend": false}}') == {
        "Details": "Managing 5 instances"
    }
    assert call(group, "Group.DescribeGroup", '{"ID": "workers"}') == {
        "Description": {
            "Instances": [{"ID": "instance-1", "LogicalID": None, "Tags": {"infrakit.group": "workers"}}],
            "Converged": True,
        }
    }
    assert call(group, "Group.InspectGroups", "{}") == {"Groups": [json.loads(spec)]}
    assert call(group, "Group.FreeGroup", '{"ID": "workers"}') == {"OK": True}


# -- our client sends what v0.5's servers decode ---------------------------------------------

V05_REQUEST_KEYS = {
    # pkg/rpc/instance/types.go and pkg/rpc/flavor/types.go, field for field
    "Instance.Validate": {"Type", "Properties"},
    "Instance.Provision": {"Type", "Spec"},
    "Instance.Label": {"Type", "Instance", "Labels"},
    "Instance.Destroy": {"Type", "Instance"},
    "Instance.DescribeInstances": {"Type", "Tags", "Properties"},
    "Flavor.Validate": {"Type", "Properties", "Allocation"},
    "Flavor.Prepare": {"Type", "Properties", "Spec", "Allocation", "Index"},
    "Flavor.Healthy": {"Type", "Properties", "Instance"},
    "Flavor.Drain": {"Type", "Properties", "Instance"},
}
V05_RESULTS = {
    "Instance.Validate": {"Type": "", "OK": True},
    "Instance.Provision": {"Type": "", "ID": "instance-1"},
    "Instance.Label": {"Type": "", "OK": True},
    "Instance.Destroy": {"Type": "", "OK": True},
    "Instance.DescribeInstances": {"Type": "", "Descriptions": None},
    "Flavor.Validate": {"Type": "", "OK": True},
    "Flavor.Prepare": {
        "Type": "",
        "Spec": {"Properties": None, "Tags": None, "Init": "", "LogicalID": None, "Attachments": None},
    },
    "Flavor.Healthy": {"Type": "", "Health": 2},
    "Flavor.Drain": {"Type": "", "OK": True},
}


def test_client_requests_have_v05_shapes(sockdir: Path) -> None:
    def respond(handler: FakeHandler, request: dict[str, Any]) -> None:
        assert request["jsonrpc"] == "2.0" and isinstance(request["id"], int)
        handler.result(request, V05_RESULTS[request["method"]])

    spec = instances.InstanceSpec(properties={"p": 1}, tags={"infrakit.group": "g"}, logical_id="a")
    description = instances.Description(id="instance-1", logical_id="a", tags={"k": "v"})
    with (
        fake_plugin(sockdir / "i", handshaking(respond)) as instance_fake,
        fake_plugin(sockdir / "f", handshaking(respond, interface=("Flavor", "0.1.0"))) as flavor_fake,
    ):
        remote = client.RemoteInstancePlugin(name="i", address=str(sockdir / "i"))
        remote.validate({"p": 1})
        assert remote.provision(spec) == "instance-1"
        remote.label("instance-1", {"l": "v"})
        remote.destroy("instance-1")
        assert remote.describe({"k": "v"}) == []
        flavor = client.RemoteFlavorPlugin(name="f", address=str(sockdir / "f"))
        allocation = specs.Allocation(size=3)
        flavor.validate({"Init": []}, allocation)
        assert flavor.prepare(None, spec, allocation) == instances.InstanceSpec()
        assert flavor.healthy(None, description) is instances.Health.UNHEALTHY
        flavor.drain(None, description)
        sent = {r["method"]: r["params"] for r in instance_fake.requests + flavor_fake.requests}
    assert sent.pop("Handshake.Implements") == {}
    assert {method: set(params) for method, params in sent.items()} == V05_REQUEST_KEYS
    assert sent["Instance.Provision"]["Spec"] == {
        "Properties": {"p": 1},
        "Tags": {"infrakit.group": "g"},
        "Init": "",
        "LogicalID": "a",
        "Attachments": None,
    }
    assert sent["Instance.DescribeInstances"] == {"Type": "", "Tags": {"k": "v"}, "Properties": False}
    assert sent["Flavor.Prepare"]["Allocation"] == {"Size": 3, "LogicalIDs": None}
    assert sent["Flavor.Prepare"]["Index"] == {"Group": "g", "Sequence": 0}
    assert sent["Flavor.Healthy"]["Instance"] == {"ID": "instance-1", "LogicalID": "a", "Tags": {"k": "v"}}
