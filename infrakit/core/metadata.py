"""Metadata paths (InfraKit's ``Metadata/0.1.0``): a tree of readable values, walked by path.

A node is a mapping (its keys are its children), a list (indexes are children), a
zero-argument callable (computed only when reached: a group's description asks its
instance plugin), or a value.  :func:`children` lists a path, :func:`get` reads one
(``None`` when there is nothing there, as InfraKit answers), :func:`value` computes a
node fully.  Pure: the callables are the sources' business.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["MISSING", "children", "get", "lookup", "value"]

MISSING: Any = object()


def lookup(root: Any, path: tuple[str, ...]) -> Any:
    """The node at ``path`` (callables on the way are computed), or :data:`MISSING`."""
    node = _force(root)
    for key in path:
        if isinstance(node, Mapping) and key in node:
            node = _force(node[key])
        elif isinstance(node, list) and key.isdigit() and int(key) < len(node):
            node = _force(node[int(key)])
        else:
            return MISSING
    return node


def children(root: Any, path: tuple[str, ...]) -> list[str]:
    """The names under ``path``: sorted keys of a mapping, indexes of a list; ``[]`` for a leaf."""
    node = lookup(root, path)
    if isinstance(node, Mapping):
        return sorted(str(key) for key in node)
    if isinstance(node, list):
        return [str(i) for i in range(len(node))]
    return []


def get(root: Any, path: tuple[str, ...]) -> Any:
    """The value at ``path``, computed fully (JSON-ready); ``None`` if there is none."""
    node = lookup(root, path)
    return None if node is MISSING else value(node)


def value(node: Any) -> Any:
    node = _force(node)
    if isinstance(node, Mapping):
        return {str(k): value(v) for k, v in node.items()}
    if isinstance(node, list | tuple):
        return [value(item) for item in node]
    return node


def _force(node: Any) -> Any:
    while callable(node):
        node = node()
    return node
