"""A corpus of bad Group documents, shared by the local and the API-server tests.

Each case is the bytes of a file a user might hand to ``infrakit-local commit`` or
``kubectl apply -f``, the field the error must name, and what the API server does with
it: ``"reject"`` (kubectl apply fails), or the reason it cannot (the operator then
reports the problem as a condition instead).
"""

from __future__ import annotations

import copy
import dataclasses
import json
from typing import Any

import yaml

SERVER_REJECTS = "reject"


@dataclasses.dataclass(frozen=True)
class Case:
    id: str
    text: bytes
    field: str  # substring the one-line error must contain
    server: str = SERVER_REJECTS


def good() -> dict[str, Any]:
    return {
        "apiVersion": "infrakit.io/v1alpha1",
        "kind": "Group",
        "metadata": {"name": "bad"},
        "spec": {
            "allocation": {"size": 2},
            "instance": {"plugin": "instance-file", "properties": {"Note": "x"}},
            "flavor": {"plugin": "flavor-vanilla", "properties": {"Tags": {"tier": "web"}}},
        },
    }


def _with(path: str, value: Any) -> bytes:
    document = copy.deepcopy(good())
    *parents, last = path.split(".")
    node = document
    for key in parents:
        node = node[key]
    if value is _DELETE:
        del node[last]
    else:
        node[last] = value
    return yaml.safe_dump(document).encode()


_DELETE = object()


def _nested(depth: int) -> Any:
    value: Any = "deep"
    for _ in range(depth):
        value = {"x": value}
    return value


_BOMB = b"""apiVersion: infrakit.io/v1alpha1
kind: Group
metadata: {name: bomb}
spec:
  allocation: {size: 1}
  instance:
    plugin: instance-file
    properties:
      a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]
      b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]
      c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]
      d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]
      e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]
      f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]
      g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]
      h: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]
      i: &i [*h,*h,*h,*h,*h,*h,*h,*h,*h]
  flavor: {plugin: flavor-vanilla}
"""

_DUPLICATE_KEY = b"""apiVersion: infrakit.io/v1alpha1
kind: Group
metadata: {name: dup}
spec:
  allocation: {size: 1}
  allocation: {size: 2}
  instance: {plugin: instance-file}
  flavor: {plugin: flavor-vanilla}
"""


def _property(value: str) -> bytes:
    """A manifest whose instance property ``Keys`` is ``value``, verbatim YAML (tags and all)."""
    return f"""apiVersion: infrakit.io/v1alpha1
kind: Group
metadata: {{name: bad}}
spec:
  allocation: {{size: 2}}
  instance:
    plugin: instance-file
    properties:
      Keys: {value}
  flavor: {{plugin: flavor-vanilla}}
""".encode()


def _json_property(value: str) -> bytes:
    """The same as JSON text, ``value`` verbatim (NaN, 1e400: what json.dumps cannot write)."""
    return json.dumps(good()).replace('{"Note": "x"}', '{"Keys": ' + value + "}").encode()


_KEYS = "spec.instance.properties.Keys"
_KUBECTL_YAML = "kubectl converts YAML to JSON before the server sees it: "
_NOT_JSON_TO_KUBECTL = "kubectl reads text that is not JSON as YAML, where NaN and -Infinity are strings"
_GO_JSON = "Go's JSON decoder (kubectl, the server) turns an unpaired surrogate into U+FFFD"

CASES: list[Case] = [
    # --- not a document at all -------------------------------------------------------------
    Case("empty-file", b"", "no document"),
    Case("invalid-yaml", b"apiVersion: [unclosed\n", "not valid YAML"),
    Case("invalid-json", b'{"ID": "cattle", "Properties": ', "not valid JSON"),
    Case("non-utf8", b"apiVersion: infrakit.io/v1alpha1\nkind: Group\nmetadata: {name: \xff\xfe}\n", "not UTF-8"),
    Case("a-list", b"- 1\n- 2\n", "must be a mapping"),
    Case("a-scalar", b"hello\n", "must be a mapping"),
    Case("yaml-alias-bomb", _BOMB, "alias"),
    Case(
        "duplicate-key",
        _DUPLICATE_KEY,
        "duplicate key",
        server="kubectl's YAML decoder keeps the last of duplicate keys before the server sees the object",
    ),
    Case(
        "deeply-nested",
        _with("spec.instance.properties", _nested(200)),
        "nested",
        server="opaque properties are kept verbatim by the server; the operator reports InvalidSpec",
    ),
    Case(
        "nested-properties",
        _with("spec.flavor.properties", {"Tags": {}, "Init": [], "Attachments": [], **_nested(40)}),
        "spec.flavor.properties",
        server="opaque properties are kept verbatim by the server; the operator reports InvalidSpec",
    ),
    Case("huge-document", _with("spec.instance.properties", {"blob": "x" * (2 << 20)}), "larger than"),
    # --- the envelope ------------------------------------------------------------------------
    Case("wrong-apiversion", _with("apiVersion", "infrakit.io/v9"), "apiVersion"),
    Case("wrong-kind", _with("kind", "Deployment"), "kind"),
    Case("no-kind-no-id", b"spec: {}\n", "not a Group"),
    Case("missing-metadata", _with("metadata", _DELETE), "metadata"),
    Case("missing-name", _with("metadata", {"labels": {"a": "b"}}), "metadata.name"),
    Case("name-uppercase", _with("metadata.name", "Cattle"), "metadata.name"),
    Case("name-underscore", _with("metadata.name", "my_group"), "metadata.name"),
    Case("name-path-traversal", _with("metadata.name", "../x"), "metadata.name"),
    Case("name-slash", _with("metadata.name", "a/b"), "metadata.name"),
    Case("name-too-long", _with("metadata.name", "a" * 64), "metadata.name"),
    Case("name-dotted", _with("metadata.name", "a.b"), "metadata.name"),
    Case("name-trailing-dash", _with("metadata.name", "cattle-"), "metadata.name"),
    Case("missing-spec", _with("spec", _DELETE), "spec"),
    Case("spec-not-mapping", _with("spec", [1, 2]), "spec"),
    # --- allocation ----------------------------------------------------------------------------
    Case("missing-allocation", _with("spec.allocation", _DELETE), "spec.allocation"),
    Case("allocation-empty", _with("spec.allocation", {}), "spec.allocation"),
    Case("allocation-both", _with("spec.allocation", {"size": 2, "logicalIDs": ["a", "b"]}), "spec.allocation"),
    Case("size-negative", _with("spec.allocation.size", -1), "spec.allocation.size"),
    Case("size-huge", _with("spec.allocation.size", 10**9), "spec.allocation.size"),
    Case("size-string", _with("spec.allocation.size", "five"), "spec.allocation.size"),
    Case("size-float", _with("spec.allocation.size", 2.5), "spec.allocation.size"),
    Case("size-bool", _with("spec.allocation.size", True), "spec.allocation.size"),
    Case("size-null", _with("spec.allocation.size", None), "spec.allocation.size"),
    Case("logical-ids-duplicate", _with("spec.allocation", {"logicalIDs": ["a", "b", "a"]}), "logicalIDs"),
    Case("logical-ids-not-list", _with("spec.allocation", {"logicalIDs": "a,b"}), "spec.allocation.logicalIDs"),
    Case("logical-id-path", _with("spec.allocation", {"logicalIDs": ["../etc"]}), "spec.allocation.logicalIDs[0]"),
    Case("logical-id-empty", _with("spec.allocation", {"logicalIDs": [""]}), "spec.allocation.logicalIDs[0]"),
    Case("logical-id-number", _with("spec.allocation", {"logicalIDs": [1]}), "spec.allocation.logicalIDs[0]"),
    Case(
        "logical-ids-too-many", _with("spec.allocation", {"logicalIDs": [f"p{i}" for i in range(10001)]}), "logicalIDs"
    ),
    Case("allocation-unknown-field", _with("spec.allocation", {"size": 1, "Size": 2}), "spec.allocation.Size"),
    # --- plugins -----------------------------------------------------------------------------------
    Case("missing-instance", _with("spec.instance", _DELETE), "spec.instance"),
    Case("missing-flavor", _with("spec.flavor", _DELETE), "spec.flavor"),
    Case("instance-plugin-missing", _with("spec.instance", {"properties": {}}), "spec.instance.plugin"),
    Case("instance-plugin-number", _with("spec.instance.plugin", 7), "spec.instance.plugin"),
    Case("instance-plugin-path", _with("spec.instance.plugin", "../../bin/sh"), "spec.instance.plugin"),
    Case("instance-properties-list", _with("spec.instance.properties", [1, 2]), "spec.instance.properties"),
    Case("flavor-properties-string", _with("spec.flavor.properties", "Init"), "spec.flavor.properties"),
    Case(
        "unknown-instance-plugin",
        _with("spec.instance.plugin", "instance-nonesuch"),
        "spec.instance.plugin",
        server="plugins are installed in the operator, not known to the API server",
    ),
    Case(
        "unknown-flavor-plugin",
        _with("spec.flavor.plugin", "flavor-nonesuch"),
        "spec.flavor.plugin",
        server="plugins are installed in the operator, not known to the API server",
    ),
    Case(
        "vanilla-init-not-list",
        _with("spec.flavor.properties", {"Init": "echo hi"}),
        "spec.flavor.properties.Init",
        server="flavor properties are opaque to the API server",
    ),
    Case(
        "vanilla-tags-not-strings",
        _with("spec.flavor.properties", {"Tags": {"port": 80}}),
        "spec.flavor.properties.Tags",
        server="flavor properties are opaque to the API server",
    ),
    Case(
        "vanilla-unknown-property",
        _with("spec.flavor.properties", {"Inits": ["x"]}),
        "spec.flavor.properties.Inits",
        server="flavor properties are opaque to the API server",
    ),
    # --- update strategy and the rest ----------------------------------------------------------------
    Case("surge-negative", _with("spec.updateStrategy", {"maxSurge": -1}), "spec.updateStrategy.maxSurge"),
    Case(
        "unavailable-string",
        _with("spec.updateStrategy", {"maxUnavailable": "25%"}),
        "spec.updateStrategy.maxUnavailable",
    ),
    Case(
        "strategy-both-zero", _with("spec.updateStrategy", {"maxSurge": 0, "maxUnavailable": 0}), "spec.updateStrategy"
    ),
    Case("paused-string", _with("spec.paused", "yes please"), "spec.paused"),
    Case("spec-unknown-field", _with("spec.replicas", 3), "spec.replicas"),
    # --- names end at the end of the text: "$" is RE2's, not Python's (issue 11) -----------------
    Case("name-trailing-newline", _with("metadata.name", "cattle\n"), "metadata.name"),
    Case("namespace-trailing-newline", _with("metadata.namespace", "prod\n"), "metadata.namespace"),
    Case("instance-plugin-trailing-newline", _with("spec.instance.plugin", "instance-file\n"), "spec.instance.plugin"),
    Case(
        "logical-id-trailing-newline",
        _with("spec.allocation", {"logicalIDs": ["a", "b\n"]}),
        "spec.allocation.logicalIDs[1]",
    ),
    # --- only JSON's values: YAML-only, non-finite and unencodable ones (issue 11) -------------------
    Case("yaml-binary", _property("!!binary aGVsbG8="), _KEYS, server=_KUBECTL_YAML + "!!binary becomes a string"),
    Case("yaml-set", _property("!!set {a, b}"), _KEYS, server=_KUBECTL_YAML + "a !!set becomes a mapping of nulls"),
    Case("yaml-omap", _property("!!omap [a: 1, b: 2]"), _KEYS, server=_KUBECTL_YAML + "!!omap becomes a list"),
    Case("yaml-pairs", _property("!!pairs [a: 1, a: 2]"), _KEYS, server=_KUBECTL_YAML + "!!pairs becomes a list"),
    Case(
        "yaml-timestamp-tag",
        _property("!!timestamp 2001-12-14"),
        _KEYS,
        server=_KUBECTL_YAML + "a timestamp becomes a string",
    ),
    Case("yaml-number-key", _property("{1: a}"), _KEYS, server=_KUBECTL_YAML + "keys become strings"),
    Case("yaml-boolean-key", _property("{on: a}"), _KEYS, server=_KUBECTL_YAML + "keys become strings"),
    Case(
        "yaml-mixed-keys",
        _property('{1: a, "1": b}'),
        _KEYS,
        server=_KUBECTL_YAML + "keys become strings, and the two keys collapse into one",
    ),
    Case("yaml-inf", _property(".inf"), _KEYS),
    Case("yaml-nan", _property("[1, .nan]"), _KEYS + "[1]"),
    Case(
        "yaml-integer-beyond-float64",
        _property("1" * 401),
        _KEYS,
        server=_KUBECTL_YAML + "an integer beyond float64 becomes a string",
    ),
    Case("yaml-unpaired-surrogate", _property('"\\ud800"'), _KEYS),
    Case("json-nan", _json_property("NaN"), "not valid JSON", server=_NOT_JSON_TO_KUBECTL),
    Case("json-infinity", _json_property("-Infinity"), "not valid JSON", server=_NOT_JSON_TO_KUBECTL),
    Case("json-1e400", _json_property("1e400"), _KEYS),
    Case("json-integer-beyond-float64", _json_property("9" * 400), _KEYS),
    Case("json-unpaired-surrogate", _json_property('"x\\udc00"'), _KEYS, server=_GO_JSON),
    # --- InfraKit's JSON form ----------------------------------------------------------------------------
    Case(
        "infrakit-json-no-properties",
        json.dumps({"ID": "cattle"}).encode(),
        "Properties",
        server="not a Kubernetes object: kubectl refuses it (no apiVersion/kind)",
    ),
    Case(
        "infrakit-json-negative-size",
        json.dumps(
            {
                "ID": "cattle",
                "Properties": {
                    "Allocation": {"Size": -5},
                    "Instance": {"Plugin": "instance-file"},
                    "Flavor": {"Plugin": "flavor-vanilla"},
                },
            }
        ).encode(),
        "spec.allocation.size",
        server="not a Kubernetes object: kubectl refuses it (no apiVersion/kind)",
    ),
    Case(
        "infrakit-json-bad-id",
        json.dumps(
            {
                "ID": "Cattle Herd",
                "Properties": {
                    "Allocation": {"Size": 1},
                    "Instance": {"Plugin": "instance-file"},
                    "Flavor": {"Plugin": "flavor-vanilla"},
                },
            }
        ).encode(),
        "metadata.name",
        server="not a Kubernetes object: kubectl refuses it (no apiVersion/kind)",
    ),
]
