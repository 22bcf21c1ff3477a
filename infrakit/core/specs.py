"""Group specs: the one document both modes accept, parsed and validated.

A Group arrives as a dict, from a Kubernetes manifest (``apiVersion: infrakit.io/v1alpha1,
kind: Group``) or from InfraKit's own JSON (``{"ID": ..., "Properties": {"Allocation": ...}}``),
and leaves as a frozen :class:`GroupSpec`.  Validation uses the CRD's own
openAPIV3Schema (``crds/infrakit.io_groups.yaml``) through ``jsonschema``, plus the
rules the CRD states in CEL, so the local store and the API server reject the same
documents and name the same fields.

Every CLI command parses the stored groups, so this is on the start-up path: a valid
document is accepted by a checker compiled from the same schema (:func:`_compile`, no
``jsonschema`` import), and only a document it does not accept goes through
``jsonschema``, which then words the errors as always.

Reading files and YAML text is the adapters' business; this module sees only dicts.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import datetime
import functools
import json
import math
import os
import re
import zlib
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, Final

import infrakit

if TYPE_CHECKING:
    import jsonschema

__all__ = [
    "API_VERSION",
    "KIND",
    "Allocation",
    "GroupSpec",
    "PluginSpec",
    "SpecError",
    "UpdateStrategy",
    "check_json",
    "compile_check",
    "crd_schema",
    "field_path",
    "parse_document",
    "validate_name",
]

API_GROUP: Final = "infrakit.io"
API_VERSION: Final = "infrakit.io/v1alpha1"
KIND: Final = "Group"

# Every pattern here means what it means to the API server (Go's RE2): "$" is the end of
# the text. Python's "$" also matches before a trailing newline, so "cattle\n" would pass
# here and fail there; hence fullmatch (and _end_of_text for the CRD's patterns).
_DNS1123_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
MAX_PROPERTY_DEPTH: Final = 32  # plugin properties nested deeper are a mistake or an attack
# A Group's values once YAML aliases are expanded: a 1 MiB file holds at most ~500,000,
# while a handful of aliases can make billions (each check and the hash walk them all).
MAX_VALUES: Final = 1 << 20


class SpecError(ValueError):
    """A document that is not a valid Group; ``field`` names where, ``message`` what to do."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}" if field else message)
        self.field = field
        self.message = message


@dataclasses.dataclass(frozen=True, kw_only=True)
class PluginSpec:
    """A plugin by name, with its properties passed through verbatim (opaque to us)."""

    plugin: str
    properties: Any = None

    def as_infrakit(self) -> dict[str, Any]:
        """InfraKit's ``{"Plugin", "Properties"}`` form, the input of the config hash."""
        return {"Plugin": self.plugin, "Properties": self.properties}


@dataclasses.dataclass(frozen=True, kw_only=True)
class Allocation:
    """Exactly one of ``size`` (cattle) or ``logical_ids`` (pets)."""

    size: int | None = None
    logical_ids: tuple[str, ...] | None = None

    @property
    def desired(self) -> int:
        return len(self.logical_ids) if self.logical_ids is not None else (self.size or 0)


@dataclasses.dataclass(frozen=True, kw_only=True)
class UpdateStrategy:
    """Bounds of a rolling update, as a Deployment's: never above size+max_surge,
    never fewer than size-max_unavailable healthy instances."""

    max_surge: int = 1
    max_unavailable: int = 0


@dataclasses.dataclass(frozen=True, kw_only=True)
class GroupSpec:
    """The desired state of one group."""

    name: str
    namespace: str | None = None
    # Not part of the document: the identity of the cluster whose controller holds the
    # spec (``infrakit.cluster`` on its instances); ``None`` for the local store.
    cluster: str | None = None
    allocation: Allocation
    instance: PluginSpec
    flavor: PluginSpec
    update_strategy: UpdateStrategy = UpdateStrategy()
    paused: bool = False

    @functools.cached_property
    def config_sha(self) -> str:
        from infrakit.core import hashing  # lazy: hashlib and decimal, for the commands that act only

        return hashing.config_sha(instance=self.instance.as_infrakit(), flavor=self.flavor.as_infrakit())

    @property
    def desired_size(self) -> int:
        return self.allocation.desired

    @property
    def is_pets(self) -> bool:
        return self.allocation.logical_ids is not None

    def to_manifest(self) -> dict[str, Any]:
        """The Kubernetes manifest of this spec; ``parse_document`` of it gives it back."""
        allocation: dict[str, Any] = (
            {"logicalIDs": list(self.allocation.logical_ids)}
            if self.allocation.logical_ids is not None
            else {"size": self.allocation.size}
        )
        metadata: dict[str, Any] = {"name": self.name}
        if self.namespace:
            metadata["namespace"] = self.namespace
        return {
            "apiVersion": API_VERSION,
            "kind": KIND,
            "metadata": metadata,
            "spec": {
                "allocation": allocation,
                "instance": _plugin_manifest(self.instance),
                "flavor": _plugin_manifest(self.flavor),
                "updateStrategy": {
                    "maxSurge": self.update_strategy.max_surge,
                    "maxUnavailable": self.update_strategy.max_unavailable,
                },
                "paused": self.paused,
            },
        }


def _plugin_manifest(spec: PluginSpec) -> dict[str, Any]:
    out: dict[str, Any] = {"plugin": spec.plugin}
    if spec.properties is not None:
        out["properties"] = copy.deepcopy(spec.properties)
    return out


def parse_document(
    document: Any, *, namespace: str | None = None, cluster: str | None = None, hashed: bool = True
) -> GroupSpec:
    """Parse a Group manifest or an InfraKit group config; raise :class:`SpecError`.

    ``namespace`` is the default when the manifest names none (the operator's view);
    the local store passes ``None`` and ignores namespaces.  ``cluster`` is the identity
    of the cluster the spec is held by (see :attr:`GroupSpec.cluster`).  ``hashed=False`` leaves the
    config hash to first use: for a read-only look at a record that was hashed when it
    was committed (``ls`` need not import the hashing code).
    """
    if not isinstance(document, Mapping):
        raise SpecError("", f"a Group must be a mapping, got {_type_name(document)}")
    check_json(document)
    if "apiVersion" in document or "kind" in document:
        group = _parse_manifest(document, default_namespace=namespace)
    elif "ID" in document:
        group = _parse_manifest(_infrakit_to_manifest(document), default_namespace=namespace)
    else:
        raise SpecError(
            "",
            "not a Group: expected a manifest with 'apiVersion: infrakit.io/v1alpha1' and 'kind: Group', "
            "or an InfraKit group config with 'ID' and 'Properties'",
        )
    if cluster:
        group = dataclasses.replace(group, cluster=cluster)
    # The hash is computed now, not on first use: a spec that cannot be hashed must fail
    # here, before any document of a file is committed, never halfway through a commit.
    if not hashed:
        return group
    try:
        group.config_sha  # noqa: B018 - a cached property, computed for its failure
    except (ValueError, TypeError, OverflowError, RecursionError) as error:
        raise SpecError("spec", f"cannot compute the config hash: {error}") from None
    return group


def check_json(value: Any, *, field: str = "") -> None:
    """Refuse anything JSON cannot carry, naming the path of the first offender.

    A Group travels as JSON (to the API server, into the config hash, into instance
    files), so only JSON's values are accepted: mappings with string keys, lists,
    strings of valid Unicode, finite numbers that fit a float64 (the hash converts every
    number to one, as Go does), booleans and null.  YAML can say more (binary, sets,
    ordered maps, timestamps, non-string keys, ``.inf``); those would be saved, then
    crash whatever reads them later.  Iterative, so no depth crashes it; paths are
    spelled out only for the error, so a long (or cyclic) chain costs no more than its
    values.
    """
    stack: list[tuple[Any, _Link | None]] = [(value, None)]
    seen = 0
    while stack:
        node, link = stack.pop()
        seen += 1
        if seen > MAX_VALUES:
            raise SpecError(
                field, f"holds more than {MAX_VALUES} values (after expanding YAML aliases); a Group is far smaller"
            )
        problem = _json_problem(node)
        if problem:
            raise SpecError(_spell(field, link), problem)
        if isinstance(node, Mapping):
            for key, child in node.items():
                if not isinstance(key, str):
                    raise SpecError(
                        _spell(field, link), f"the key {key!r} is not a string; JSON keys are strings: quote it"
                    )
                key_problem = _text_problem(key)
                if key_problem:
                    raise SpecError(_spell(field, link), f"a key {key_problem}")
                stack.append((child, (link, key)))
        elif isinstance(node, list):
            stack.extend((child, (link, index)) for index, child in enumerate(node))


_Link = tuple[Any, str | int]  # (parent link or None, key): a path, spelled out on demand


def _spell(field: str, link: _Link | None) -> str:
    keys: list[str | int] = []
    while link is not None:
        link, key = link
        keys.append(key)
    return functools.reduce(field_path, reversed(keys), field)


_PATH_SPECIAL: Final = frozenset(".[]'\" \\")


def field_path(path: str, key: str | int) -> str:
    """``path.key``, ``path[3]``, or ``path['odd key']`` for a key that is not plain text.

    Keys come from the user: a key holding a newline or a dot must not break the one-line
    error, nor pass for two levels.
    """
    if isinstance(key, int):
        return f"{path}[{key}]"
    if not key or not key.isprintable() or any(c in _PATH_SPECIAL for c in key):
        return f"{path}[{key!r}]"
    return f"{path}.{key}" if path else key


def _json_problem(value: Any) -> str | None:
    """Why ``value`` itself (not its children) is not JSON, or None."""
    if value is None or isinstance(value, bool | list | Mapping):
        return None
    if isinstance(value, str):
        return _text_problem(value)
    if isinstance(value, int):
        try:
            float(value)
        except OverflowError:
            return f"the integer {_short(str(value))} is too large: numbers must fit in a 64-bit float"
        return None
    if isinstance(value, float):
        if math.isfinite(value):
            return None
        return f"{value!r} is not a finite number; JSON has no NaN or infinity"
    if isinstance(value, bytes | bytearray):
        return "binary data (YAML !!binary) is not JSON; use a base64 string"
    if isinstance(value, set | frozenset):
        return "a set (YAML !!set) is not JSON; use a list"
    if isinstance(value, tuple):
        return "pairs (YAML !!omap or !!pairs) are not JSON; use a mapping"
    if isinstance(value, datetime.date | datetime.time):
        return "a timestamp is not JSON; quote it as a string"
    return f"a {type(value).__name__} is not JSON; use a string, number, boolean, null, list or mapping"


def _text_problem(text: str) -> str | None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as error:
        return (
            f"holds an unpaired surrogate {text[error.start]!r} at character {error.start}, "
            "which is not valid Unicode; remove it"
        )
    return None


def validate_name(name: Any, *, field: str = "metadata.name") -> str:
    """Group names are DNS-1123 labels: they tag instances and name store files."""
    if not isinstance(name, str) or not name:
        raise SpecError(field, "is required: a DNS-1123 label such as 'cattle'")
    if len(name) > 63 or not _DNS1123_LABEL.fullmatch(name):
        raise SpecError(
            field,
            f"{name!r} is not a DNS-1123 label: use at most 63 lowercase letters, digits and '-', "
            "starting and ending with a letter or digit",
        )
    return name


def _parse_manifest(document: Mapping[str, Any], *, default_namespace: str | None) -> GroupSpec:
    if document.get("apiVersion") != API_VERSION:
        raise SpecError("apiVersion", f"must be {API_VERSION!r}, got {document.get('apiVersion')!r}")
    if document.get("kind") != KIND:
        raise SpecError("kind", f"must be {KIND!r}, got {document.get('kind')!r}")
    metadata = document.get("metadata")
    if not isinstance(metadata, Mapping):
        raise SpecError("metadata", "is required: a mapping with at least 'name'")
    name = validate_name(metadata.get("name"))
    namespace = metadata.get("namespace", default_namespace)
    if namespace is not None:
        validate_name(namespace, field="metadata.namespace")
    spec = document.get("spec")
    if spec is None:
        raise SpecError("spec", "is required: allocation, instance and flavor")
    _validate_spec_schema(spec)
    return _build(spec, name=name, namespace=namespace)


def _build(spec: Mapping[str, Any], *, name: str, namespace: str | None) -> GroupSpec:
    allocation = spec["allocation"]
    has_size, has_ids = "size" in allocation, "logicalIDs" in allocation
    if has_size == has_ids:
        raise SpecError(
            "spec.allocation",
            "set exactly one of allocation.size or allocation.logicalIDs"
            + (" (both are set)" if has_size else " (neither is set)"),
        )
    logical_ids: tuple[str, ...] | None = None
    if has_ids:
        logical_ids = tuple(allocation["logicalIDs"])
        seen: set[str] = set()
        for index, logical_id in enumerate(logical_ids):
            if logical_id in seen:
                raise SpecError(f"spec.allocation.logicalIDs[{index}]", f"duplicate logical ID {logical_id!r}")
            seen.add(logical_id)
    for kind in ("instance", "flavor"):
        _check_depth(spec[kind].get("properties"), field=f"spec.{kind}.properties")
    strategy_doc = spec.get("updateStrategy") or {}
    strategy = UpdateStrategy(
        max_surge=strategy_doc.get("maxSurge", 1),
        max_unavailable=strategy_doc.get("maxUnavailable", 0),
    )
    if strategy.max_surge + strategy.max_unavailable == 0:
        raise SpecError(
            "spec.updateStrategy",
            "updateStrategy.maxSurge and updateStrategy.maxUnavailable cannot both be 0",
        )
    return GroupSpec(
        name=name,
        namespace=namespace,
        allocation=Allocation(size=allocation.get("size"), logical_ids=logical_ids),
        instance=PluginSpec(plugin=spec["instance"]["plugin"], properties=spec["instance"].get("properties")),
        flavor=PluginSpec(plugin=spec["flavor"]["plugin"], properties=spec["flavor"].get("properties")),
        update_strategy=strategy,
        paused=bool(spec.get("paused", False)),
    )


def _check_depth(value: Any, *, field: str) -> None:
    """Refuse properties nested deeper than MAX_PROPERTY_DEPTH (iteratively: no recursion)."""
    stack = [(value, 0)]
    while stack:
        node, depth = stack.pop()
        if depth > MAX_PROPERTY_DEPTH:
            raise SpecError(field, f"nested more than {MAX_PROPERTY_DEPTH} levels deep; flatten the properties")
        if isinstance(node, Mapping):
            stack.extend((child, depth + 1) for child in node.values())
        elif isinstance(node, list):
            stack.extend((child, depth + 1) for child in node)


def _infrakit_to_manifest(document: Mapping[str, Any]) -> dict[str, Any]:
    """Translate InfraKit's ``{"ID", "Properties": {"Allocation", "Instance", "Flavor"}}``."""
    properties = document.get("Properties")
    if not isinstance(properties, Mapping):
        raise SpecError("Properties", "is required: a mapping with Allocation, Instance and Flavor")
    allocation_doc = properties.get("Allocation")
    if not isinstance(allocation_doc, Mapping):
        raise SpecError("Properties.Allocation", 'is required: {"Size": N} or {"LogicalIDs": [...]}')
    allocation: dict[str, Any] = {}
    if allocation_doc.get("Size") is not None:
        allocation["size"] = allocation_doc["Size"]
    if allocation_doc.get("LogicalIDs") is not None:
        allocation["logicalIDs"] = allocation_doc["LogicalIDs"]
    spec: dict[str, Any] = {"allocation": allocation}
    for key in ("Instance", "Flavor"):
        plugin_doc = properties.get(key)
        if not isinstance(plugin_doc, Mapping):
            raise SpecError(f"Properties.{key}", 'is required: {"Plugin": name, "Properties": {...}}')
        plugin: dict[str, Any] = {"plugin": plugin_doc.get("Plugin")}
        if plugin_doc.get("Properties") is not None:
            plugin["properties"] = plugin_doc["Properties"]
        spec[key.lower()] = plugin
    return {"apiVersion": API_VERSION, "kind": KIND, "metadata": {"name": document.get("ID")}, "spec": spec}


# --- the schema, shared with the API server -------------------------------------------------


CRD_PATH: Final = os.path.join(os.path.dirname(infrakit.__file__), "crds", "infrakit.io_groups.yaml")


@functools.cache
def crd_schema() -> dict[str, Any]:
    """The CRD's openAPIV3Schema (of the served version) as shipped in the package.

    Parsed once per CRD: the schema is kept as JSON in the user's cache directory
    (``${INFRAKIT_CACHE:-~/.cache/infrakit}/schema``) under the CRD's size and CRC, so a
    command does not import and run a YAML parser to validate a group.  A cache that is
    missing, unreadable, unwritable or not about this CRD is simply not used.
    """
    with open(CRD_PATH, "rb") as stream:
        data = stream.read()
    source = f"{len(data)}-{zlib.crc32(data):08x}"
    path = os.path.join(_cache_dir(), "schema", f"crd-{source}.json")
    cached = _read_cache(path, source=source)
    if cached is not None:
        return cached
    import yaml  # lazy: only when the cache has no copy of this CRD

    # libyaml when PyYAML has it: the same document, ten times faster than the Python parser.
    crd = yaml.load(data, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))  # noqa: S506 - a safe loader
    schema: dict[str, Any] = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    _write_cache(path, {"source": source, "schema": schema})
    return schema


def _cache_dir() -> str:
    return os.environ.get("INFRAKIT_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "infrakit")


def _read_cache(path: str, *, source: str) -> dict[str, Any] | None:
    try:
        with open(path, "rb") as stream:
            cached = json.loads(stream.read())
    except (OSError, ValueError, RecursionError):
        return None
    if not isinstance(cached, dict) or cached.get("source") != source:
        return None
    schema = cached.get("schema")
    if not isinstance(schema, dict) or not isinstance((schema.get("properties") or {}).get("spec"), dict):
        return None
    return schema


def _write_cache(path: str, content: dict[str, Any]) -> None:
    """Atomically (temp file, rename), best effort: a cache is never worth a failure."""
    try:
        text = json.dumps(content, allow_nan=False)
        if json.loads(text) != content:
            return  # not JSON-exact (a YAML-only type): parse the CRD each time instead
        os.makedirs(os.path.dirname(path), exist_ok=True)
    except (OSError, TypeError, ValueError):
        return
    temp = f"{path}.{os.urandom(6).hex()}.tmp"
    try:
        with open(temp, "x", encoding="utf-8") as stream:
            stream.write(text)
        os.replace(temp, path)
    except OSError:
        with contextlib.suppress(OSError):
            os.unlink(temp)


@functools.cache
def _spec_schema() -> dict[str, Any]:
    return _strict(crd_schema()["properties"]["spec"])


@functools.cache
def _spec_validator() -> Any:
    """jsonschema's Draft 4 validator of the spec, with the API server's ``pattern``.

    Lazy: jsonschema costs ~30 ms to import and is needed only to word the errors of a
    spec the fast path (:func:`_fast_check`) did not accept.
    """
    import jsonschema
    import jsonschema.validators

    def pattern(validator: Any, regex: str, instance: Any, schema: Mapping[str, Any]) -> Iterable[Any]:
        """The ``pattern`` keyword as the API server runs it: a search, with "$" the end of text."""
        if isinstance(instance, str) and not _end_of_text(regex).search(instance):
            yield jsonschema.ValidationError(f"{instance!r} does not match {regex!r}")

    draft4_re2 = jsonschema.validators.extend(jsonschema.Draft4Validator, validators={"pattern": pattern})  # type: ignore[no-untyped-call]
    return draft4_re2(_spec_schema())


@functools.cache
def _fast_check() -> Callable[[Any], bool] | None:
    return _compile(_spec_schema())


@functools.cache
def _end_of_text(pattern: str) -> re.Pattern[str]:
    """Compile ``pattern`` with RE2's meaning of "$" (end of text, never before a final newline).

    Every "$" outside a character class and not escaped becomes ``\\Z``; ``\\d``, ``\\w`` and
    ``\\s`` match ASCII only, as in RE2.
    """
    out: list[str] = []
    in_class = escaped = False
    for char in pattern:
        if escaped:
            escaped = False
        elif char == "\\":
            escaped = True
        elif in_class:
            in_class = char != "]" or out[-1] == "["
        elif char == "[":
            in_class = True
        elif char == "$":
            out.append(r"\Z")
            continue
        out.append(char)
    return re.compile("".join(out), re.ASCII)


def _strict(schema: Mapping[str, Any]) -> dict[str, Any]:
    """Forbid unknown fields, as kubectl's strict field validation does on the server."""
    out: dict[str, Any] = {k: v for k, v in schema.items() if not k.startswith("x-kubernetes")}
    out.pop("format", None)  # int32/int64/date-time: bounds are stated separately
    if "properties" in schema:
        out["properties"] = {k: _strict(v) for k, v in schema["properties"].items()}
        if not schema.get("x-kubernetes-preserve-unknown-fields"):
            out["additionalProperties"] = False
    if "items" in schema:
        out["items"] = _strict(schema["items"])
    return out


def _validate_spec_schema(spec: Any) -> None:
    fast = _fast_check()
    if fast is not None and fast(spec):
        return  # exactly what jsonschema accepts: nothing to explain
    errors = sorted(
        _spec_validator().iter_errors(spec), key=lambda e: (len(e.absolute_path), list(map(str, e.absolute_path)))
    )
    if errors:
        raise _explain(errors[0], more=len(errors) - 1)


def _explain(error: jsonschema.ValidationError, *, more: int) -> SpecError:
    path = functools.reduce(field_path, error.absolute_path, "spec")
    value: Any = error.validator_value
    got: Any = error.instance
    schema: Any = error.schema
    rule = error.validator
    message: str
    if rule == "type":
        message = f"must be {_article(str(value))}, got {_type_name(got)}"
    elif rule == "required":
        missing = next((k for k in value if isinstance(got, Mapping) and k not in got), "?")
        path, message = field_path(path, missing), "is required"
    elif rule == "additionalProperties":
        allowed = ", ".join(sorted(schema.get("properties", {})))
        unknown = sorted(set(got) - set(schema.get("properties", {}))) if isinstance(got, Mapping) else []
        path = field_path(path, unknown[0]) if unknown else path
        message = f"unknown field; allowed here: {allowed}"
    elif rule == "minimum":
        message = f"must be at least {value}, got {got}"
    elif rule == "maximum":
        message = f"must be at most {value}, got {got}"
    elif rule == "pattern":
        message = f"{got!r} is not allowed: {_PATTERNS.get(value, f'it must match {value}')}"
    elif rule == "minLength":
        message = "must not be empty" if value == 1 else f"must be at least {value} characters"
    elif rule == "maxLength":
        message = f"must be at most {value} characters, got {len(got)}"
    elif rule == "maxItems":
        message = f"must have at most {value} items, got {len(got)}"
    elif rule == "enum":
        message = f"must be one of {', '.join(map(repr, value))}, got {got!r}"
    else:  # pragma: no cover - rules the CRD does not use yet
        message = error.message
    if more:
        message += f" (and {more} more problem{'s' if more > 1 else ''})"
    return SpecError(path, message)


# -- the fast path: a checker compiled from the schema ---------------------------------------
#
# It only has to say "valid" exactly when ``jsonschema.Draft4Validator`` finds no error;
# "not valid" (or "not sure") hands the document to jsonschema.  So it implements the
# keywords the CRD uses with Draft 4's own rules, and gives up (returns None: always
# jsonschema) on a schema with any keyword it does not know.

_ANNOTATIONS: Final = frozenset({"description", "default", "title", "example", "nullable"})
_CHECKED: Final = frozenset(
    {
        "type",
        "properties",
        "additionalProperties",
        "required",
        "items",
        "minimum",
        "maximum",
        "minLength",
        "maxLength",
        "maxItems",
        "pattern",
        "enum",
    }
)
Check = Callable[[Any], bool]


def compile_check(schema: Any) -> Check | None:
    """A fast check for a Draft 4 ``schema`` (the subset the CRD uses): True exactly when
    jsonschema finds no error; None when the schema uses what it does not implement."""
    return _compile(schema)


def _compile(schema: Any) -> Check | None:
    """A function that is True for exactly the instances ``schema`` accepts (Draft 4); or None."""
    if not isinstance(schema, dict) or not set(schema) <= _CHECKED | _ANNOTATIONS:
        return None
    checks: list[Check] = []
    kind = schema.get("type")
    if kind is not None:
        type_check = _TYPES.get(kind) if isinstance(kind, str) else None
        if type_check is None:
            return None  # a list of types, an unknown type
        checks.append(type_check)
    if "properties" in schema or "additionalProperties" in schema or "required" in schema:
        object_check = _compile_object(schema)
        if object_check is None:
            return None
        checks.append(object_check)
    if "items" in schema or "maxItems" in schema:
        array_check = _compile_array(schema)
        if array_check is None:
            return None
        checks.append(array_check)
    if "minimum" in schema or "maximum" in schema:
        number_check = _compile_bounds(schema)
        if number_check is None:
            return None
        checks.append(number_check)
    if "minLength" in schema or "maxLength" in schema or "pattern" in schema:
        string_check = _compile_string(schema)
        if string_check is None:
            return None
        checks.append(string_check)
    if "enum" in schema:
        allowed = schema["enum"]
        if not isinstance(allowed, list) or not all(_is_scalar(v) for v in allowed):
            return None
        # jsonschema's equality: True is not 1, 1 is 1.0; scalars only (anything else: jsonschema).
        keys = {_scalar_key(v) for v in allowed}
        checks.append(lambda value: _is_scalar(value) and _scalar_key(value) in keys)
    return lambda value: all(check(value) for check in checks)


def _compile_object(schema: dict[str, Any]) -> Check | None:
    properties = schema.get("properties", {})
    required = schema.get("required", [])
    extra = schema.get("additionalProperties", True)
    if not isinstance(properties, dict) or not isinstance(required, list) or not isinstance(extra, bool):
        return None  # additionalProperties as a schema: not used by the CRD
    compiled: dict[str, Check] = {}
    for name, subschema in properties.items():
        check = _compile(subschema)
        if check is None:
            return None
        compiled[name] = check
    needed = tuple(required)

    def check_object(value: Any) -> bool:
        if not isinstance(value, dict):
            return True  # these keywords ignore other types (``type`` judges them)
        if not extra and not value.keys() <= compiled.keys():
            return False
        if any(name not in value for name in needed):
            return False
        return all(check(value[name]) for name, check in compiled.items() if name in value)

    return check_object


def _compile_array(schema: dict[str, Any]) -> Check | None:
    items = schema.get("items")
    item_check = _compile(items) if items is not None else (lambda value: True)
    limit = schema.get("maxItems")
    if item_check is None or (limit is not None and type(limit) is not int):
        return None

    def check_array(value: Any) -> bool:
        if not isinstance(value, list):
            return True
        if limit is not None and len(value) > limit:
            return False
        return all(item_check(item) for item in value)

    return check_array


def _compile_bounds(schema: dict[str, Any]) -> Check | None:
    low, high = schema.get("minimum"), schema.get("maximum")
    if any(bound is not None and type(bound) not in (int, float) for bound in (low, high)):
        return None

    def check_number(value: Any) -> bool:
        if isinstance(value, bool) or not isinstance(value, int | float):
            # Not a number for Draft 4 (bool), or another kind of number (Decimal...): jsonschema decides.
            return isinstance(value, bool) or not _is_number(value)
        return (low is None or value >= low) and (high is None or value <= high)

    return check_number


def _compile_string(schema: dict[str, Any]) -> Check | None:
    shortest, longest, pattern = schema.get("minLength"), schema.get("maxLength"), schema.get("pattern")
    if any(n is not None and type(n) is not int for n in (shortest, longest)):
        return None
    if pattern is not None and not isinstance(pattern, str):
        return None
    regex = _end_of_text(pattern) if pattern is not None else None  # RE2's "$", as the API server

    def check_string(value: Any) -> bool:
        if not isinstance(value, str):
            return True
        if shortest is not None and len(value) < shortest:
            return False
        if longest is not None and len(value) > longest:
            return False
        return regex is None or regex.search(value) is not None

    return check_string


def _is_scalar(value: Any) -> bool:
    return value is None or type(value) in (str, int, float, bool)


def _is_number(value: Any) -> bool:
    import numbers

    return isinstance(value, numbers.Number)


def _scalar_key(value: Any) -> tuple[str, Any]:
    if isinstance(value, bool) or value is None:
        return ("literal", value)
    if isinstance(value, int | float):
        return ("number", value)
    return (type(value).__name__, value)


_TYPES: Final[dict[str, Check]] = {
    "object": lambda value: isinstance(value, dict),
    "array": lambda value: isinstance(value, list),
    "string": lambda value: isinstance(value, str),
    "integer": lambda value: isinstance(value, int) and not isinstance(value, bool),
    # Draft 4's number is any numbers.Number but bool; only int and float are decided here.
    "number": lambda value: isinstance(value, int | float) and not isinstance(value, bool),
    "boolean": lambda value: isinstance(value, bool),
    "null": lambda value: value is None,
}


_PATTERNS: Final = {
    "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$": (
        "use lowercase letters, digits and '-', starting and ending with a letter or digit"
    ),
    "^[A-Za-z0-9]([A-Za-z0-9._-]{0,61}[A-Za-z0-9])?$": (
        "use at most 63 letters, digits, '.', '_' and '-', starting and ending with a letter or digit"
    ),
}


def _article(type_name: str) -> str:
    return {"integer": "an integer", "object": "a mapping", "array": "a list", "boolean": "true or false"}.get(
        type_name, f"a {type_name}"
    )


def _type_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"boolean {value!r}"
    if isinstance(value, int | float):
        return f"number {value!r}"
    if isinstance(value, str):
        return f"string {_short(value)!r}"
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, Iterable):
        return "a list"
    return type(value).__name__


def _short(text: str, limit: int = 40) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."
