"""Our server against the protocol, raw: every method of every interface, every error path.

Requests are made as InfraKit's Go client makes them (``POST http://rpc/`` on the
socket, a JSON-RPC 2.0 body); answers are checked as gorilla/rpc's json2 server gives
them: HTTP 200, ``{"jsonrpc", "result"|"error", "id"}``, code -32000 with the error text.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from infrakit.core import instances, specs
from infrakit.plugins import spi
from infrakit.plugins.flavor_vanilla import VanillaPlugin
from infrakit.plugins.instance_file import FilePlugin
from infrakit.rpc import server
from tests.rpc.conftest import http_request, rpc, serving

SPEC = {
    "Properties": {"Note": "n"},
    "Tags": {"infrakit.group": "g", "tier": "web"},
    "Init": "echo hi",
    "LogicalID": "db-1",
    "Attachments": [{"ID": "vol", "Type": "ebs"}],
}


class FakeGroups:
    """A tiny GroupService: groups in a dict, instances described from the spec's size."""

    def __init__(self) -> None:
        self.groups: dict[str, dict[str, Any]] = {}

    def commit(self, document: Mapping[str, Any], *, pretend: bool) -> str:
        spec = specs.parse_document(document)
        if not pretend:
            self.groups[spec.name] = dict(document)
        return f"Managing {spec.desired_size} instances"

    def free(self, group_id: str) -> None:
        self._known(group_id)
        del self.groups[group_id]

    def describe(self, group_id: str) -> tuple[list[instances.Description], bool]:
        self._known(group_id)
        return [instances.Description(id="instance-1", tags={"infrakit.group": group_id})], True

    def destroy(self, group_id: str) -> None:
        self.free(group_id)

    def inspect(self) -> list[dict[str, Any]]:
        return list(self.groups.values())

    def metadata_list(self, path: tuple[str, ...]) -> list[str]:
        if path == ():
            return ["specs"] if self.groups else []
        if path == ("specs",):
            return list(self.groups)
        return []

    def metadata_get(self, path: tuple[str, ...]) -> Any:
        if len(path) == 2 and path[0] == "specs":
            return self.groups.get(path[1])
        return None

    def _known(self, group_id: str) -> None:
        if group_id not in self.groups:
            raise spi.PluginError(f"Group '{group_id}' is not being watched")


class Broken:
    """An instance plugin that fails in every way a plugin can."""

    name = "broken"

    def validate(self, properties: Any) -> None:
        raise specs.SpecError("spec.instance.properties.Size", "must be small, medium or large")

    def provision(self, spec: instances.InstanceSpec) -> str:
        raise spi.PluginError("quota exceeded")

    def label(self, instance_id: str, labels: Mapping[str, str]) -> None:
        raise spi.InstanceNotFound(instance_id)

    def destroy(self, instance_id: str) -> None:
        raise ZeroDivisionError("division by zero")  # a bug: must not take the server down

    def describe(self, tags: Mapping[str, str]) -> list[instances.Description]:
        raise RuntimeError("")


@pytest.fixture
def instance_socket(sockdir: Path, tmp_path: Path) -> Iterator[str]:
    with serving([server.instance_service(FilePlugin(directory=tmp_path / "inst"))], directory=sockdir) as address:
        yield address


@pytest.fixture
def flavor_socket(sockdir: Path) -> Iterator[str]:
    with serving([server.flavor_service(VanillaPlugin())], directory=sockdir, name="flavor") as address:
        yield address


@pytest.fixture
def group_socket(sockdir: Path) -> Iterator[str]:
    with serving(server.group_services(FakeGroups()), directory=sockdir, name="group") as address:
        yield address


@pytest.fixture
def broken_socket(sockdir: Path) -> Iterator[str]:
    with serving([server.instance_service(Broken())], directory=sockdir, name="broken") as address:
        yield address


def result(answer: dict[str, Any]) -> Any:
    assert set(answer) == {"jsonrpc", "result", "id"}, answer
    assert answer["jsonrpc"] == "2.0"
    return answer["result"]


def error(answer: dict[str, Any], *, code: int = -32000) -> str:
    assert set(answer) == {"jsonrpc", "error", "id"}, answer
    assert answer["error"]["code"] == code, answer
    message: str = answer["error"]["message"]
    return message


# -- handshake and info ---------------------------------------------------------------------


def test_handshake_names_the_interfaces(instance_socket: str, group_socket: str) -> None:
    assert result(rpc(instance_socket, "Handshake.Implements", {})) == {
        "APIs": [{"Name": "Instance", "Version": "0.5.0"}]
    }
    assert result(rpc(instance_socket, "Handshake.Types", {})) == {"Types": {"Instance/0.5.0": ["."]}}
    assert result(rpc(group_socket, "Handshake.Implements", {})) == {
        "APIs": [{"Name": "Group", "Version": "0.1.0"}, {"Name": "Metadata", "Version": "0.1.0"}]
    }
    assert result(rpc(group_socket, "Handshake.Types", {})) == {
        "Types": {"Group/0.1.0": ["."], "Metadata/0.1.0": ["."]}
    }


def test_the_v01_handshake_is_unknown_as_in_v05(instance_socket: str) -> None:
    assert error(rpc(instance_socket, "Plugin.Implements", {})) == 'rpc: can\'t find service "Plugin.Implements"'


def test_info_api_lists_every_method_with_examples(flavor_socket: str) -> None:
    status, _, body = http_request(flavor_socket, method="GET", path="/info/api.json")
    assert status == 200
    info = json.loads(body)
    assert info["Vendor"] is None
    assert info["Implements"] == [{"Name": "Flavor", "Version": "0.1.0"}]
    (interface,) = info["Interfaces"]
    assert (interface["Name"], interface["Version"]) == ("Flavor", "0.1.0")
    methods = [m["Request"]["method"] for m in interface["Methods"]]
    assert methods == ["Flavor.Drain", "Flavor.Healthy", "Flavor.Prepare", "Flavor.Validate"]
    prepare = interface["Methods"][2]
    assert prepare["Request"]["params"]["Index"] == {"Group": "", "Sequence": 0}
    assert prepare["Request"]["id"] == prepare["Response"]["id"]
    assert prepare["Response"]["result"]["Spec"]["Attachments"] is None
    status, _, body = http_request(flavor_socket, method="GET", path="/info/functions.json")
    assert (status, json.loads(body)) == (200, {})


# -- Instance/0.5.0 -------------------------------------------------------------------------


def test_instance_methods(instance_socket: str, tmp_path: Path) -> None:
    assert result(rpc(instance_socket, "Instance.Validate", {"Properties": {"any": "thing"}})) == {
        "Type": "",
        "OK": True,
    }
    provisioned = result(rpc(instance_socket, "Instance.Provision", {"Spec": SPEC}))
    iid = provisioned["ID"]
    assert provisioned == {"Type": "", "ID": iid}
    stored = json.loads((tmp_path / "inst" / iid).read_text())
    assert stored["Spec"] == SPEC and stored["LogicalID"] == "db-1"

    described = result(
        rpc(instance_socket, "Instance.DescribeInstances", {"Tags": {"tier": "web"}, "Properties": True})
    )
    assert described == {"Type": "", "Descriptions": [{"ID": iid, "LogicalID": "db-1", "Tags": SPEC["Tags"]}]}

    assert result(rpc(instance_socket, "Instance.Label", {"Instance": iid, "Labels": {"extra": "1"}})) == {
        "Type": "",
        "OK": True,
    }
    (labelled,) = result(rpc(instance_socket, "Instance.DescribeInstances", {"Tags": {"extra": "1"}}))["Descriptions"]
    assert labelled["Tags"] == {**SPEC["Tags"], "extra": "1"}

    assert result(rpc(instance_socket, "Instance.Destroy", {"Instance": iid})) == {"Type": "", "OK": True}
    # No instance: Go's nil slice.
    assert result(rpc(instance_socket, "Instance.DescribeInstances", {"Tags": {}})) == {
        "Type": "",
        "Descriptions": None,
    }


def test_instance_not_found_is_an_error_flagged_for_clients(instance_socket: str) -> None:
    answer = rpc(instance_socket, "Instance.Destroy", {"Instance": "instance-42"})
    assert "instance instance-42 not found" in error(answer)
    assert answer["error"]["data"] == {"NotFound": True}
    assert "not found" in error(rpc(instance_socket, "Instance.Label", {"Instance": "instance-42", "Labels": {}}))


def test_a_sub_type_we_do_not_serve(instance_socket: str) -> None:
    # InfraKit's words first (a client may match them), then what they mean.
    message = error(rpc(instance_socket, "Instance.DescribeInstances", {"Type": "ec2", "Tags": {}}))
    assert message == "no-plugin:ec2: this plugin has no sub-type 'ec2' (it serves: .)"


def test_params_keys_match_case_insensitively_as_go_does(instance_socket: str) -> None:
    iid = result(rpc(instance_socket, "Instance.Provision", {"spec": {"tags": {"k": "v"}}}))["ID"]
    (found,) = result(rpc(instance_socket, "Instance.DescribeInstances", {"TAGS": {"k": "v"}}))["Descriptions"]
    assert found["ID"] == iid


def test_params_as_a_one_element_array_as_gorilla_accepts(instance_socket: str) -> None:
    assert result(rpc(instance_socket, "Instance.Validate", [{"Properties": {}}]))["OK"] is True


def test_missing_params_are_go_zero_values(instance_socket: str) -> None:
    assert result(rpc(instance_socket, "Instance.DescribeInstances", None)) == {"Type": "", "Descriptions": None}


# -- Flavor/0.1.0 ---------------------------------------------------------------------------


def test_flavor_methods(flavor_socket: str) -> None:
    properties = {"Init": ["echo flavor"], "Tags": {"role": "worker"}, "Attachments": [{"ID": "a", "Type": "t"}]}
    allocation = {"Size": 3, "LogicalIDs": None}
    assert result(rpc(flavor_socket, "Flavor.Validate", {"Properties": properties, "Allocation": allocation})) == {
        "Type": "",
        "OK": True,
    }
    prepared = result(
        rpc(
            flavor_socket,
            "Flavor.Prepare",
            {
                "Properties": properties,
                "Spec": {"Properties": {"x": 1}, "Tags": {"t": "1"}, "Init": "first", "LogicalID": None},
                "Allocation": allocation,
                "Index": {"Group": "workers", "Sequence": 2},
            },
        )
    )
    assert prepared == {
        "Type": "",
        "Spec": {
            "Properties": {"x": 1},
            "Tags": {"t": "1", "role": "worker"},
            "Init": "first\necho flavor",
            "LogicalID": None,
            "Attachments": [{"ID": "a", "Type": "t"}],
        },
    }
    instance = {"ID": "instance-1", "LogicalID": None, "Tags": {}}
    assert result(rpc(flavor_socket, "Flavor.Healthy", {"Properties": properties, "Instance": instance})) == {
        "Type": "",
        "Health": 1,
    }
    assert result(rpc(flavor_socket, "Flavor.Drain", {"Properties": properties, "Instance": instance})) == {
        "Type": "",
        "OK": True,
    }


def test_flavor_validation_error_names_the_field(flavor_socket: str) -> None:
    answer = rpc(flavor_socket, "Flavor.Validate", {"Properties": {"Init": "not a list"}, "Allocation": {"Size": 1}})
    assert error(answer) == "spec.flavor.properties.Init: must be a list of strings (shell lines)"


def test_pets_allocation(flavor_socket: str) -> None:
    allocation = {"Size": 0, "LogicalIDs": ["a", "b"]}
    assert result(rpc(flavor_socket, "Flavor.Validate", {"Properties": None, "Allocation": allocation}))["OK"] is True


# -- Group/0.1.0 and Metadata/0.1.0 ---------------------------------------------------------


GROUP_SPEC = {
    "ID": "cattle",
    "Properties": {
        "Allocation": {"Size": 5},
        "Instance": {"Plugin": "instance-file", "Properties": {"Note": "hi"}},
        "Flavor": {"Plugin": "flavor-vanilla", "Properties": {"Init": ["echo hi"]}},
    },
}


def test_group_methods(group_socket: str) -> None:
    assert result(rpc(group_socket, "Group.InspectGroups", {})) == {"Groups": None}
    assert result(rpc(group_socket, "Metadata.List", {"Path": "."})) == {"Nodes": None}
    assert result(rpc(group_socket, "Group.CommitGroup", {"Spec": GROUP_SPEC, "Pretend": True})) == {
        "Details": "Managing 5 instances"
    }
    assert result(rpc(group_socket, "Group.InspectGroups", {})) == {"Groups": None}  # pretend changed nothing
    assert result(rpc(group_socket, "Group.CommitGroup", {"Spec": GROUP_SPEC, "Pretend": False})) == {
        "Details": "Managing 5 instances"
    }
    assert result(rpc(group_socket, "Group.InspectGroups", {})) == {"Groups": [GROUP_SPEC]}
    assert result(rpc(group_socket, "Group.DescribeGroup", {"ID": "cattle"})) == {
        "Description": {
            "Instances": [{"ID": "instance-1", "LogicalID": None, "Tags": {"infrakit.group": "cattle"}}],
            "Converged": True,
        }
    }
    assert result(rpc(group_socket, "Metadata.List", {"Path": "."})) == {"Nodes": ["specs"]}
    assert result(rpc(group_socket, "Metadata.List", {"Path": "specs"})) == {"Nodes": ["cattle"]}
    assert result(rpc(group_socket, "Metadata.Get", {"Path": "specs/cattle"})) == {"Value": GROUP_SPEC}
    assert result(rpc(group_socket, "Metadata.Get", {"Path": ["specs", "cattle"]})) == {"Value": GROUP_SPEC}
    assert result(rpc(group_socket, "Group.FreeGroup", {"ID": "cattle"})) == {"OK": True}
    assert result(rpc(group_socket, "Group.CommitGroup", {"Spec": GROUP_SPEC})) == {"Details": "Managing 5 instances"}
    assert result(rpc(group_socket, "Group.DestroyGroup", {"ID": "cattle"})) == {"OK": True}
    assert result(rpc(group_socket, "Group.InspectGroups", {})) == {"Groups": None}


def test_group_errors(group_socket: str) -> None:
    # v0.5's documented answer to a commit without an ID.
    assert error(rpc(group_socket, "Group.CommitGroup", {})) == "Group ID must not be blank"
    assert error(rpc(group_socket, "Group.DescribeGroup", {"ID": "nope"})) == "Group 'nope' is not being watched"
    bad = {"ID": "cattle", "Properties": {"Allocation": {"Size": 1}}}
    assert error(rpc(group_socket, "Group.CommitGroup", {"Spec": bad})).startswith("Properties.Instance: is required")


# -- errors: requests -----------------------------------------------------------------------


def test_unknown_methods_answer_as_gorilla_does(instance_socket: str) -> None:
    assert error(rpc(instance_socket, "Instance.Nope", {})) == 'rpc: can\'t find method "Instance.Nope"'
    assert error(rpc(instance_socket, "Group.CommitGroup", {})) == 'rpc: can\'t find service "Group.CommitGroup"'
    assert error(rpc(instance_socket, "nodot", {})) == 'rpc: service/method request ill-formed: "nodot"'
    assert error(rpc(instance_socket, "a.b.c", {})) == 'rpc: service/method request ill-formed: "a.b.c"'


def test_the_answer_carries_the_request_id_verbatim(instance_socket: str) -> None:
    assert rpc(instance_socket, "Handshake.Types", {}, request_id="abc")["id"] == "abc"
    assert rpc(instance_socket, "Instance.Nope", {}, request_id=7)["id"] == 7


@pytest.mark.parametrize(
    ("method", "params", "where"),
    [
        ("Instance.Provision", {"Spec": "x"}, "Spec"),
        ("Instance.Provision", {"Spec": {"Tags": {"a": 1}}}, "Spec.Tags.a"),
        ("Instance.Provision", {"Spec": {"Attachments": [{"ID": 1}]}}, "Spec.Attachments[0].ID"),
        ("Instance.Destroy", {"Instance": 12}, "Instance"),
        ("Instance.DescribeInstances", {"Tags": ["a"]}, "Tags"),
        ("Instance.DescribeInstances", {"Properties": "yes"}, "Properties"),
        ("Flavor.Validate", {"Allocation": {"Size": -1}}, "Allocation.Size"),
        ("Instance.Validate", "a string", "request object"),
        ("Instance.Validate", [1, 2], "request object"),
    ],
)
def test_bad_params_are_invalid_requests(
    instance_socket: str, flavor_socket: str, method: str, params: Any, where: str
) -> None:
    address = flavor_socket if method.startswith("Flavor") else instance_socket
    answer = rpc(address, method, params)
    message = error(answer, code=-32600)
    assert message.startswith("json: ") and where in message


def test_malformed_requests(instance_socket: str) -> None:
    def raw(body: bytes) -> dict[str, Any]:
        status, headers, data = http_request(instance_socket, body=body)
        assert status == 200 and headers["Content-Type"].startswith("application/json")
        answer: dict[str, Any] = json.loads(data)
        return answer

    assert error(raw(b"{not json"), code=-32700).startswith("parse error")
    assert raw(b"{not json")["id"] is None
    assert error(raw(b"[]"), code=-32600).startswith("invalid request")
    assert error(raw(b'{"jsonrpc":"1.0","method":"Handshake.Types","id":1}'), code=-32600) == "jsonrpc must be 2.0"
    assert error(raw(b'{"jsonrpc":"2.0","method":5,"id":1}'), code=-32600).startswith("invalid request")


def test_notifications_get_no_body(instance_socket: str) -> None:
    body = json.dumps({"jsonrpc": "2.0", "method": "Handshake.Types", "params": {}}).encode()
    assert http_request(instance_socket, body=body)[::2] == (200, b"")


def test_http_level_refusals(instance_socket: str) -> None:
    status, _, body = http_request(instance_socket, method="GET")
    assert (status, body) == (405, b"rpc: POST method required, received GET")
    status, _, body = http_request(instance_socket, body=b"{}", headers={"Content-Type": "text/xml"})
    assert (status, body) == (415, b"rpc: unrecognized Content-Type: text/xml; send application/json")
    # No content type at all is refused too (gorilla took it as JSON-RPC, as a web page may send it:
    # issue 19, F12); application/json with parameters is taken.
    message = json.dumps({"jsonrpc": "2.0", "method": "Handshake.Types", "params": {}, "id": 1}).encode()
    status, _, body = http_request(instance_socket, body=message, headers={})
    assert (status, body) == (415, b"rpc: unrecognized Content-Type: (none); send application/json")
    headers = {"Content-Type": "Application/JSON; charset=utf-8"}
    status, _, body = http_request(instance_socket, body=message, headers=headers)
    assert status == 200 and json.loads(body)["result"] == {"Types": {"Instance/0.5.0": ["."]}}


# -- errors: plugins ------------------------------------------------------------------------


def test_plugin_failures_become_error_objects_and_the_server_lives_on(broken_socket: str) -> None:
    assert (
        error(rpc(broken_socket, "Instance.Validate", {"Properties": {}}))
        == "spec.instance.properties.Size: must be small, medium or large"
    )
    assert error(rpc(broken_socket, "Instance.Provision", {"Spec": SPEC})) == "quota exceeded"
    assert rpc(broken_socket, "Instance.Label", {"Instance": "i", "Labels": {}})["error"]["data"] == {"NotFound": True}
    assert error(rpc(broken_socket, "Instance.Destroy", {"Instance": "i"})) == "division by zero"
    assert error(rpc(broken_socket, "Instance.DescribeInstances", {})) == "RuntimeError"
    assert result(rpc(broken_socket, "Handshake.Types", {})) == {"Types": {"Instance/0.5.0": ["."]}}
