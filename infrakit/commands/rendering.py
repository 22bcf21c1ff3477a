"""Templates: InfraKit's template functions in Jinja2 form, sandboxed, fetched from a path or URL.

InfraKit's templates are Go templates; their syntax does not carry over, their helpers
do, as Jinja2 globals (and filters where that reads better):

* ``var("name")`` reads a variable (``--var name=value``, or set earlier in the
  template with ``var("name", value)``); a variable never set is an error naming it;
* ``include("other.tpl", extra=...)`` renders another template, found relative to this one;
* ``env("NAME", default)`` an environment variable (an error naming it if unset, without default);
* ``metadata("group/specs/cattle/Properties/Allocation/Size")`` reads a metadata path
  (:mod:`infrakit.commands.metadata`), when the caller provides a reader;
* ``json(value)`` / ``yaml(value)`` encode (also as filters), ``from_json(text)`` / ``from_yaml(text)`` decode.

Every name used must be defined (``StrictUndefined``: the error names it), and the
environment is Jinja2's immutable sandbox: no attribute access to Python internals, no
mutation of the values passed in.  A template is fetched from ``-`` (stdin), a plain
path, ``file://``, ``http://`` or ``https://`` (size and time bounded).  Rendering never
runs a command.  Errors are :class:`~infrakit.commands._common.Usage` (a bad template or
variable: exit 2) or :class:`~infrakit.commands._common.Failure` (a fetch that failed).
"""

from __future__ import annotations

import json
import os
import sys
import urllib.parse
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Final

from infrakit.commands import _common

__all__ = ["MAX_BYTES", "fetch", "join", "parse_vars", "render"]

MAX_BYTES: Final = 4 << 20  # a template or an index is kilobytes
TIMEOUT: Final = 30.0  # seconds for one fetch
_MAX_DEPTH: Final = 16  # includes within includes


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
    """The text at ``source``: ``-`` (stdin), a path, ``file://``, ``http(s)://``."""
    scheme = urllib.parse.urlsplit(source).scheme if "://" in source else ""
    if source == "-":
        data = sys.stdin.buffer.read(MAX_BYTES + 1)
    elif scheme in ("", "file"):
        path = urllib.parse.unquote(urllib.parse.urlsplit(source).path) if scheme == "file" else source
        try:
            with open(path, "rb") as stream:
                data = stream.read(MAX_BYTES + 1)
        except OSError as error:
            raise _common.Failure(f"{source}: cannot read it ({error.strerror or error})") from None
    elif scheme in ("http", "https"):
        data = _download(source)
    else:
        raise _common.Usage(f"{source}: a template is a path, file://, http:// or https:// URL, or - for stdin")
    if len(data) > MAX_BYTES:
        raise _common.Usage(f"{source}: larger than {MAX_BYTES >> 20} MiB")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise _common.Usage(f"{source}: not UTF-8 text") from None


def _download(url: str) -> bytes:
    import urllib.error
    import urllib.request

    request = urllib.request.Request(url, headers={"User-Agent": "infrakit-local"})  # noqa: S310 - http(s) only
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT) as response:  # noqa: S310 - http(s) only
            data: bytes = response.read(MAX_BYTES + 1)
            return data
    except urllib.error.HTTPError as error:
        raise _common.Failure(f"{url}: HTTP {error.code} {error.reason}") from None
    except urllib.error.URLError as error:
        raise _common.Failure(f"{url}: cannot fetch it ({error.reason})") from None
    except (OSError, ValueError) as error:
        raise _common.Failure(f"{url}: cannot fetch it ({error})") from None


def parse_vars(given: tuple[str, ...] | list[str]) -> dict[str, Any]:
    """``--var name=value``: the value as YAML reads a scalar (``3`` a number, ``true`` a boolean), else text."""
    import yaml

    found: dict[str, Any] = {}
    for item in given:
        name, sep, text = item.partition("=")
        if not sep or not name.strip():
            raise _common.Usage(f"--var {item!r}: expected name=value")
        try:
            value = yaml.safe_load(text) if text else ""
        except yaml.YAMLError:
            value = text
        found[name.strip()] = value if isinstance(value, str | int | float | bool) or value is None else text
    return found


class _Renderer:
    def __init__(self, *, variables: Mapping[str, Any], metadata: Callable[[str], Any] | None) -> None:
        import jinja2
        import jinja2.sandbox

        self.variables = dict(variables)
        self.metadata_reader = metadata
        self.environment = jinja2.sandbox.ImmutableSandboxedEnvironment(
            undefined=jinja2.StrictUndefined, autoescape=False, keep_trailing_newline=True
        )
        self.environment.filters.update({"json": _to_json, "yaml": _to_yaml})
        self.stack: list[str] = []

    def render(self, source: str, text: str, extra: Mapping[str, Any]) -> str:
        import jinja2

        if len(self.stack) >= _MAX_DEPTH:
            raise _common.Usage(f"{source}: includes nest deeper than {_MAX_DEPTH} ({' -> '.join(self.stack)})")
        self.stack.append(source)
        try:
            template = self.environment.from_string(text, globals=self._globals(source))
            return template.render({**self.variables, **extra})
        except jinja2.TemplateSyntaxError as error:
            raise _common.Usage(f"{source}:{error.lineno}: {error.message}") from None
        except jinja2.UndefinedError as error:
            raise _common.Usage(f"{source}: {error.message}; pass it with --var name=value") from None
        except jinja2.exceptions.SecurityError as error:
            raise _common.Usage(f"{source}: refused by the sandbox: {error}") from None
        finally:
            self.stack.pop()

    def _globals(self, source: str) -> dict[str, Any]:
        def var(name: str, *value: Any) -> Any:
            if value:
                self.variables[name] = value[0]
                return ""
            if name not in self.variables:
                raise _common.Usage(f"{source}: variable {name!r} is not set; pass it with --var {name}=VALUE")
            return self.variables[name]

        def include(reference: str, **extra: Any) -> str:
            target = join(source, reference)
            return self.render(target, fetch(target), extra)

        def env(name: str, *default: Any) -> Any:
            if name in os.environ:
                return os.environ[name]
            if default:
                return default[0]
            raise _common.Usage(f"{source}: environment variable {name!r} is not set (env({name!r}, default))")

        def metadata(path: str) -> Any:
            if self.metadata_reader is None:
                raise _common.Usage(f"{source}: metadata({path!r}): no metadata here")
            return self.metadata_reader(path)

        return {
            "var": var,
            "include": include,
            "env": env,
            "metadata": metadata,
            "json": _to_json,
            "yaml": _to_yaml,
            "from_json": _from_json,
            "from_yaml": _from_yaml,
        }


def render(
    source: str,
    *,
    variables: Mapping[str, Any] | None = None,
    metadata: Callable[[str], Any] | None = None,
    text: str | None = None,
) -> str:
    """The template at ``source`` (or ``text``, named ``source``) rendered with ``variables``."""
    renderer = _Renderer(variables=variables or {}, metadata=metadata)
    return renderer.render(source, fetch(source) if text is None else text, {})


def _to_json(value: Any) -> str:
    return json.dumps(value)


def _to_yaml(value: Any) -> str:
    import yaml

    return str(yaml.safe_dump(value, default_flow_style=False, sort_keys=False)).rstrip("\n")


def _from_json(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError as error:
        raise _common.Usage(f"from_json: not JSON ({error})") from None


def _from_yaml(text: str) -> Any:
    import yaml

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise _common.Usage(f"from_yaml: not YAML ({' '.join(str(error).split())})") from None
