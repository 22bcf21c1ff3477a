"""Group specs: the one document both modes accept, parsed and validated.

A Group arrives as a dict (a Kubernetes manifest or InfraKit's own JSON) and leaves as a
frozen :class:`GroupSpec`.  Validation uses the CRD's own openAPIV3Schema, plus the
rules the CRD states in CEL, so the local store and the API server reject the same
documents and name the same fields.

Rooms, each with its ``__all__``; the names users need are re-exported here, so
``from infrakit.core import specs`` and ``specs.GroupSpec`` are the way in:

* :mod:`.types`       ``GroupSpec`` and its parts, and the API's names;
* :mod:`.parsing`     documents to specs (``parse_document``, ``validate_name``);
* :mod:`.values`      JSON's values only (``check_json``), for documents and plugins alike;
* :mod:`.schema`      a fast check compiled from an already-loaded schema;
* :mod:`.validation`  where the schema comes from: given by an adapter (``provide``);
* :mod:`.errors`      ``SpecError`` and the wording of every refusal.

No I/O: the CRD file, its cache and ``jsonschema`` are ``infrakit.schemas``'s, which
provides them (an import-linter contract in ``pyproject.toml`` keeps the core pure).
"""

from __future__ import annotations

from infrakit.core.specs import errors, parsing, schema, types, validation, values
from infrakit.core.specs.errors import SpecError, Violation, field_path
from infrakit.core.specs.parsing import MAX_PROPERTY_DEPTH, parse_document, validate_name
from infrakit.core.specs.schema import compile_check
from infrakit.core.specs.types import API_GROUP, API_VERSION, KIND, Allocation, GroupSpec, PluginSpec, UpdateStrategy
from infrakit.core.specs.validation import provide
from infrakit.core.specs.values import MAX_VALUES, check_json, json_type

__all__ = [
    "API_GROUP",
    "API_VERSION",
    "KIND",
    "MAX_PROPERTY_DEPTH",
    "MAX_VALUES",
    "Allocation",
    "GroupSpec",
    "PluginSpec",
    "SpecError",
    "UpdateStrategy",
    "Violation",
    "check_json",
    "compile_check",
    "errors",
    "field_path",
    "json_type",
    "parse_document",
    "parsing",
    "provide",
    "schema",
    "types",
    "validate_name",
    "validation",
    "values",
]
