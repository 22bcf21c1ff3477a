"""Templates: InfraKit's template functions in Jinja2 form, sandboxed, bounded, reaching only what they may.

InfraKit's templates are Go templates; their syntax does not carry over, their helpers
do, as Jinja2 globals (and filters where that reads better):

* ``var("name")`` reads a variable (``--var name=value``, or set earlier in the
  template with ``var("name", value)``); a variable never set is an error naming it;
* ``include("other.tpl", extra=...)`` renders another template, found relative to this one;
* ``env("NAME", default)`` an environment variable (an error naming it if unset, without default);
* ``metadata("group/specs/cattle/Properties/Allocation/Size")`` reads a metadata path
  (:mod:`infrakit.cli.metadata`), when the caller provides a reader;
* ``json(value)`` / ``yaml(value)`` encode (also as filters), ``from_json(text)`` / ``from_yaml(text)`` decode.

Every name used must be defined (``StrictUndefined``: the error names it), and the
environment is Jinja2's immutable sandbox.  Rendering never runs a command.

**Bounds** (:data:`BOUNDS`): a render runs in a forked child the kernel limits in CPU
time and memory, its output counted as it streams (:mod:`infrakit.cli.sandboxing`);
every fetch has a deadline and a size for all of it (:mod:`infrakit.cli.fetching`),
and one render's fetches together a deadline and a size too.

**Reach**: a template read from this machine (a path, ``file://``, ``-``) may include
anything, read environment variables and metadata, as before.  A template fetched over
``http(s)://``, and everything it includes, may include only from its own origin
(scheme, host and port; redirects elsewhere are refused) and reaches local files,
environment variables and metadata only as the user grants (:mod:`infrakit.cli.grants`);
``--var`` values are the user's to give.  A local template that includes a remote one
does not lend it its powers.  A playbook added from a URL is remote from its index on.

Errors are :class:`~infrakit.cli.render.Usage` (the template's fault: exit 2) or
:class:`~infrakit.cli.render.Failure` (a fetch that failed: exit 1).
"""

from __future__ import annotations

import dataclasses
import os
import time
import urllib.parse
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Final

from infrakit.cli import fetching
from infrakit.cli.grants import Grants
from infrakit.cli.render import Failure, Usage

__all__ = ["BOUNDS", "MAX_BYTES", "Bounds", "Grants", "fetch", "join", "origin", "parse_vars", "render"]


@dataclasses.dataclass(frozen=True, kw_only=True)
class Bounds:
    """What one render may spend.  A Group is kilobytes: these leave templates room to spare."""

    cpu_seconds: float = 10.0  # CPU time of the render (the child's)
    memory_bytes: int = 256 << 20  # what the render may add to the process's address space
    output_bytes: int = 4 << 20  # what it renders (each include too)
    seconds: float = 60.0  # wall-clock time of the whole render, its fetches included
    fetch_seconds: float = 30.0  # one fetch, whole: connect, headers and body
    fetch_bytes: int = 4 << 20  # one template, index, or helper answer
    total_bytes: int = 16 << 20  # every template one render fetches (each counted once)


BOUNDS = Bounds()
MAX_BYTES: Final = BOUNDS.fetch_bytes


def origin(source: str) -> str | None:
    """The origin (``scheme://host:port``) of an ``http(s)://`` template; ``None`` for one on this machine."""
    return fetching.origin(source)


def join(base: str | None, reference: str) -> str:
    """``reference`` as seen from the template at ``base`` (a URL or a path)."""
    if reference == "-" or "://" in reference or base is None or base == "-":
        return reference
    if "://" in base:
        return urllib.parse.urljoin(base, reference)
    if os.path.isabs(reference):
        return reference
    return str(Path(base).parent / reference)


def fetch(source: str) -> str:
    """The text at ``source``: ``-`` (stdin), a path, ``file://``, ``http(s)://``, within :data:`BOUNDS`."""
    return fetching.read(source, seconds=BOUNDS.fetch_seconds, limit=BOUNDS.fetch_bytes)


def parse_vars(given: tuple[str, ...] | list[str]) -> dict[str, Any]:
    """``--var name=value``: the value as YAML reads a scalar (``3`` a number, ``true`` a boolean), else text."""
    import yaml

    found: dict[str, Any] = {}
    for item in given:
        name, sep, text = item.partition("=")
        if not sep or not name.strip():
            raise Usage(f"--var {item!r}: expected name=value")
        try:
            value = yaml.safe_load(text) if text else ""
        except yaml.YAMLError:
            value = text
        found[name.strip()] = value if isinstance(value, str | int | float | bool) or value is None else text
    return found


def render(
    source: str,
    *,
    variables: Mapping[str, Any] | None = None,
    metadata: Callable[[str], Any] | None = None,
    text: str | None = None,
    grants: Grants | None = None,
    within: str | None = None,
) -> str:
    """The template at ``source`` (or ``text``, named ``source``) rendered with ``variables``.

    ``within`` is the origin the template is reached from (a remote playbook's index):
    ``source`` is then held to that origin's reach, as an include would be.
    """
    from infrakit.cli import sandboxing

    bounds = BOUNDS
    broker = _Broker(grants=grants or Grants(), metadata=metadata, bounds=bounds)
    if within is not None:
        reached = broker.reach(source, trust=within, where=source, call="the playbook's command")
    else:
        reached = origin(source)
    if text is None:
        text = broker.fetch(source)
    broker.templates.append((source, reached))
    return sandboxing.render(source=source, text=text, variables=variables or {}, broker=broker, limits=bounds)


class _Broker:
    """The parent's side of a render: each template's origin, what it may reach, the fetches and their bounds."""

    def __init__(self, *, grants: Grants, metadata: Callable[[str], Any] | None, bounds: Bounds) -> None:
        self.grants = grants
        self.metadata_reader = metadata
        self.bounds = bounds
        self.deadline = time.monotonic() + bounds.seconds
        self.templates: list[tuple[str, str | None]] = []  # ticket -> (source, the origin it is held to)
        self.fetched: dict[str, str] = {}
        self.total = 0

    def reach(self, target: str, *, trust: str | None, where: str, call: str) -> str | None:
        """The origin ``target`` is held to, reached by ``call`` in a template held to ``trust``; else ``Usage``."""
        found = origin(target)
        if trust is None:
            return found  # a local template reaches anything; a remote one it includes has its own origin's reach
        if found is None:
            if not self.grants.local:
                raise Usage(
                    f"{where}: {call} reads {target}, a file of this machine; a template from {trust} may not "
                    "unless you pass --allow-local"
                )
            return trust
        if found != trust:
            raise Usage(
                f"{where}: {call} reaches {found}; a template from {trust} may include only from its own origin"
            )
        return trust

    def fetch(self, source: str) -> str:
        if source in self.fetched:
            return self.fetched[source]
        remaining = self.deadline - time.monotonic()
        if remaining <= 0:
            raise Failure(f"{source}: the render took more than {self.bounds.seconds:g} s, fetches included")
        text = fetching.read(
            source, seconds=self.bounds.fetch_seconds, limit=self.bounds.fetch_bytes, deadline=self.deadline
        )
        self.total += len(text.encode("utf-8", "surrogatepass"))
        if self.total > self.bounds.total_bytes:
            raise Usage(
                f"{source}: this render fetched more than {self.bounds.total_bytes >> 20} MiB of templates in all"
            )
        self.fetched[source] = text
        return text

    # -- sandboxing.Broker: the child's helper calls ---------------------------------------------------

    def include(self, ticket: int, reference: str) -> tuple[int, str, str]:
        source, trust = self.templates[ticket]
        target = join(source, reference)
        held = self.reach(target, trust=trust, where=source, call=f"include({reference!r})")
        text = self.fetch(target)
        self.templates.append((target, held))
        return len(self.templates) - 1, target, text

    def env(self, ticket: int, name: str) -> str | None:
        source, trust = self.templates[ticket]
        if trust is not None and name not in self.grants.env:
            raise Usage(
                f"{source}: env({name!r}): a template from {trust} may not read environment variables; "
                f"pass --allow-env {name}, or give the value with --var"
            )
        return os.environ.get(name)

    def metadata(self, ticket: int, path: str) -> Any:
        import json

        source, trust = self.templates[ticket]
        if trust is not None and not self.grants.metadata:
            raise Usage(
                f"{source}: metadata({path!r}): a template from {trust} may not read this machine's groups "
                "unless you pass --allow-metadata"
            )
        if self.metadata_reader is None:
            raise Usage(f"{source}: metadata({path!r}): no metadata here")
        if time.monotonic() >= self.deadline:
            raise Failure(f"{source}: the render took more than {self.bounds.seconds:g} s")
        value = self.metadata_reader(path)  # a daemon's answer: bounded by the RPC client's own timeout
        if len(json.dumps(value, default=str)) > self.bounds.fetch_bytes:
            raise Usage(f"{source}: metadata({path!r}) is larger than {self.bounds.fetch_bytes >> 20} MiB")
        return value
