"""Documents to specs: a Group manifest or an InfraKit group config in, a :class:`GroupSpec` out.

A Group arrives as a dict, from a Kubernetes manifest (``apiVersion: infrakit.io/v1alpha1,
kind: Group``) or from InfraKit's own JSON (``{"ID": ..., "Properties": {"Allocation": ...}}``).
It must be JSON (:func:`.values.check_json`), its ``spec`` must pass the CRD's schema
(:func:`.validation.validate_spec`), and the rules the CRD states in CEL are checked here;
every refusal is a :class:`SpecError` naming the field.

Reading files and YAML text is the adapters' business; this module sees only dicts.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from typing import Any, Final

from infrakit.core.specs.errors import SpecError, type_name
from infrakit.core.specs.types import API_VERSION, KIND, Allocation, GroupSpec, PluginSpec, UpdateStrategy
from infrakit.core.specs.validation import validate_spec
from infrakit.core.specs.values import check_json

__all__ = ["MAX_PROPERTY_DEPTH", "parse_document", "validate_name"]

# Every pattern here means what it means to the API server (Go's RE2): "$" is the end of
# the text. Python's "$" also matches before a trailing newline, so "cattle\n" would pass
# here and fail there; hence fullmatch (and end_of_text for the CRD's patterns).
_DNS1123_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
MAX_PROPERTY_DEPTH: Final = 32  # plugin properties nested deeper are a mistake or an attack


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
        raise SpecError("", f"a Group must be a mapping, got {type_name(document)}")
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
    validate_spec(spec)
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
