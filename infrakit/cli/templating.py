"""The Jinja2 side of a render: the sandboxed environment, InfraKit's helpers, the output bound.

This runs in the bounded child of :mod:`infrakit.cli.sandboxing`.  What a helper
needs from outside (``include``'s text, ``env``, ``metadata``) it asks of the parent
through a channel, naming the template that asks (its ticket), so the parent can apply
that template's reach.  The rest is here:

* ``var`` (set and read), ``json``/``yaml`` (encode, also as filters), ``range``;
* ``from_json``/``from_yaml`` decode with the Group parser's bounds
  (:func:`infrakit.local.documents.parse_text`: 1 MiB, 64 aliases, 64 levels, JSON
  values only) and refuse a value that aliases expand beyond :data:`MAX_VALUES`;
* every template is rendered streaming (``generate()``), its output counted as it comes.

Errors are ``Usage`` naming the template (exit 2), or ``Failure`` from the parent.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Final, Protocol

from infrakit.cli.render import Failure, Usage

__all__ = ["MAX_DEPTH", "MAX_VALUES", "prepare", "render"]

MAX_DEPTH: Final = 16  # includes within includes
MAX_VALUES: Final = 100_000  # values a from_yaml/from_json result may hold, aliases expanded


class Channel(Protocol):
    def call(self, method: str, /, **arguments: Any) -> Any: ...


class Limits(Protocol):
    @property
    def output_bytes(self) -> int: ...


def prepare() -> None:
    """Import and build once what every render needs (Jinja2, its lexer, the YAML parser): before a fork."""
    import jinja2.sandbox

    from infrakit.local import documents  # noqa: F401 - from_yaml/from_json's parser

    _environment(jinja2.sandbox).from_string("{{ x }}")


def _environment(sandbox: Any) -> Any:
    import jinja2

    made = sandbox.ImmutableSandboxedEnvironment(
        undefined=jinja2.StrictUndefined, autoescape=False, keep_trailing_newline=True
    )
    made.filters.update({"json": _to_json, "yaml": _to_yaml})
    return made


def render(source: str, text: str, variables: Mapping[str, Any], channel: Channel, limits: Limits) -> str:
    """Template ``source`` (ticket 0) rendered; raises ``Usage``/``Failure`` (``MemoryError`` passes)."""
    renderer = _Renderer(variables=variables, channel=channel, limit=limits.output_bytes)
    output = renderer.render(0, source, text, {})
    try:
        output.encode("utf-8")
    except UnicodeEncodeError as error:
        raise Usage(f"{source}: renders text that is not Unicode ({error.reason})") from None
    return output


class _Renderer:
    def __init__(self, *, variables: Mapping[str, Any], channel: Channel, limit: int) -> None:
        import jinja2.sandbox

        self.variables = dict(variables)
        self.channel = channel
        self.limit = limit
        self.environment = _environment(jinja2.sandbox)
        self.stack: list[str] = []

    def render(self, ticket: int, source: str, text: str, extra: Mapping[str, Any]) -> str:
        import jinja2

        if len(self.stack) >= MAX_DEPTH:
            raise Usage(f"{source}: includes nest deeper than {MAX_DEPTH} ({' -> '.join(self.stack)})")
        self.stack.append(source)
        try:
            template = self.environment.from_string(text, globals=self._globals(ticket, source))
            return self._stream(source, template.generate({**self.variables, **extra}))
        except (Usage, Failure, MemoryError):
            raise
        except jinja2.TemplateSyntaxError as error:
            raise Usage(f"{source}:{error.lineno}: {error.message}") from None
        except jinja2.UndefinedError as error:
            raise Usage(f"{source}: {error.message}; pass it with --var name=value") from None
        except jinja2.exceptions.SecurityError as error:
            raise Usage(f"{source}: refused by the sandbox: {error}") from None
        except RecursionError:
            raise Usage(f"{source}: recursion too deep (a macro or include that calls itself?)") from None
        except Exception as error:  # a template's own failure: 1 + 'a', 1 // 0, a method's ValueError ...
            first = (str(error).strip().splitlines() or [""])[0][:200]
            raise Usage(f"{source}: {type(error).__name__}: {first}".rstrip(": ")) from None
        finally:
            self.stack.pop()

    def _stream(self, source: str, chunks: Any) -> str:
        """The chunks joined, refused as soon as they pass the output bound (a chunk is counted in bytes)."""
        parts, size = [], 0
        for chunk in chunks:
            # A character is at least one byte: only a chunk that might fit is encoded to be measured.
            size += len(chunk) if len(chunk) > self.limit else len(chunk.encode("utf-8", "surrogatepass"))
            if size > self.limit:
                raise Usage(
                    f"{source}: renders more than {self.limit >> 20} MiB of output; a template renders Groups, "
                    "which are far smaller"
                )
            parts.append(chunk)
        return "".join(parts)

    def _globals(self, ticket: int, source: str) -> dict[str, Any]:
        def var(name: str, *value: Any) -> Any:
            if value:
                self.variables[name] = value[0]
                return ""
            if name not in self.variables:
                raise Usage(f"{source}: variable {name!r} is not set; pass it with --var {name}=VALUE")
            return self.variables[name]

        def include(reference: str, **extra: Any) -> str:
            found, target, text = self.channel.call("include", ticket=ticket, reference=str(reference))
            return self.render(int(found), str(target), str(text), extra)

        def env(name: str, *default: Any) -> Any:
            value = self.channel.call("env", ticket=ticket, name=str(name))
            if value is not None:
                return value
            if default:
                return default[0]
            raise Usage(f"{source}: environment variable {name!r} is not set (env({name!r}, default))")

        def metadata(path: str) -> Any:
            return self.channel.call("metadata", ticket=ticket, path=str(path))

        return {
            "var": var,
            "include": include,
            "env": env,
            "metadata": metadata,
            "range": _range,
            "json": _to_json,
            "yaml": _to_yaml,
            "from_json": _from_json,
            "from_yaml": _from_yaml,
        }


def _range(*arguments: int) -> range:
    import jinja2.sandbox

    try:
        return jinja2.sandbox.safe_range(*arguments)
    except OverflowError:
        raise Usage(f"range(): more than {jinja2.sandbox.MAX_RANGE} items; a template needs far fewer") from None


def _to_json(value: Any) -> str:
    try:
        return json.dumps(value)
    except (TypeError, ValueError) as error:
        raise Usage(f"json: cannot encode it ({error})") from None


def _to_yaml(value: Any) -> str:
    import yaml

    try:
        return str(yaml.safe_dump(value, default_flow_style=False, sort_keys=False)).rstrip("\n")
    except yaml.YAMLError as error:
        raise Usage(f"yaml: cannot encode it ({' '.join(str(error).split())})") from None


def _from_json(text: str) -> Any:
    return _decode("from_json", text, source="from_json.json")  # the name makes the parser read JSON


def _from_yaml(text: str) -> Any:
    if isinstance(text, str) and text.lstrip().startswith("{"):
        # The Group parser reads text that starts with "{" as JSON; a comment line keeps it YAML ({a: 1}).
        text = "#\n" + text
    return _decode("from_yaml", text, source="from_yaml.yaml")


def _decode(helper: str, text: str, *, source: str) -> Any:
    from infrakit.core import specs
    from infrakit.local import documents

    if not isinstance(text, str):
        raise Usage(f"{helper}: expected text, got {type(text).__name__}")
    data = text.encode("utf-8", "surrogatepass")
    if len(data) > documents.MAX_BYTES:
        raise Usage(f"{helper}: the text is larger than {documents.MAX_BYTES >> 20} MiB")
    try:
        found = documents.parse_text(data, source=source)
    except specs.SpecError as error:
        raise Usage(f"{helper}: {error}") from None
    if len(found) > 1:
        raise Usage(f"{helper}: {len(found)} documents; expected one")
    value = found[0] if found else None
    if _expanded(value, {}) > MAX_VALUES:
        raise Usage(f"{helper}: aliases expand it to more than {MAX_VALUES} values; refusing a possible alias bomb")
    return value


def _expanded(value: Any, seen: dict[int, int]) -> int:
    """How many values ``value`` holds once shared parts (YAML aliases) are counted each time they appear."""
    if not isinstance(value, list | dict):
        return 1
    known = seen.get(id(value))
    if known is not None:
        return known
    children = value.values() if isinstance(value, dict) else value
    total = 1
    for child in children:
        total += _expanded(child, seen)
        if total > MAX_VALUES:
            break
    seen[id(value)] = total
    return total
