"""The local store: one YAML file per group under ``$INFRAKIT_HOME/groups``.

Each file holds the group's manifest (what was committed), its last status, and what
the API server would keep for a Group object: ``metadata.generation`` (bumped when the
spec changes, so ``status.observedGeneration`` tells whether the status is about the
current spec), ``metadata.deletionTimestamp`` while a deletion is under way (the runtime
finishes it, even after a crash), the orphan annotation of a group freed with its
instances left in place, and the instance plugin's options it was committed with
(``instancePluginOptions``: the file plugin's directory, relative to the home when it is
inside it, so that a home can be moved), so that later commands find its instances
without being told ``--dir`` again.

Writes are atomic and durable (temp file, fsync, rename, fsync of the directory); every
reader and writer of the store serialises on an exclusive ``flock`` of
``$INFRAKIT_HOME/.lock`` (re-entrant within a thread), so concurrent ``infrakit-local``
invocations and the workers of ``run`` never interleave their changes.

The files are YAML, written in its JSON form (indented JSON is valid YAML): every
command reads the store and every sync rewrites a status that lists up to thousands of
instances, and the C JSON codec does that ten to twenty times faster than PyYAML, which
builds its objects in Python even over libyaml.  Any YAML is still read (a file edited
by hand, or written before); a document JSON cannot carry exactly (non-string keys,
NaN) is written as block YAML.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import datetime
import errno
import fcntl
import functools
import hashlib
import json
import os
import re
import struct
import threading
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, Final

from infrakit import files, schemas
from infrakit.core import specs

__all__ = ["ORPHAN_ANNOTATION", "Damaged", "Store", "StoredGroup"]

ORPHAN_ANNOTATION: Final = "infrakit.io/orphan-instances"
_OPTIONS: Final = "instancePluginOptions"
# A writer's temp file: ".NAME.yaml.<hex>.tmp" (a record) or ".NAME.members.<hex>.tmp" (a ledger).
_TEMP: Final = re.compile(r"\.\.?([^.].*)\.(?:yaml|members)\.[0-9a-f]{8}" + re.escape(files.TEMP_SUFFIX))


@functools.cache
def _record_loaders() -> tuple[Any, Any]:
    """PyYAML's safe loaders without implicit timestamps (a hand-edited, unquoted time stays
    a string, as in the manifest the user committed): libyaml's, and the pure-Python twin
    for text nested too deeply for libyaml (see :func:`_may_nest_deeply`).  Made on first
    use: the files we write are JSON, read without PyYAML."""
    import yaml

    class RecordLoader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]
        pass

    class DeepRecordLoader(yaml.SafeLoader):
        pass

    RecordLoader.yaml_implicit_resolvers = DeepRecordLoader.yaml_implicit_resolvers = {
        first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
        for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
    }
    return RecordLoader, DeepRecordLoader


# libyaml's composer recurses in C: some 30,000 nested "[" overflow the stack and kill the
# process (a segfault, no exception). Text that might nest that deep goes to the Python
# loader, whose recursion ends in RecursionError. A record we wrote nests a dozen levels.
_LIBYAML_DEPTH = 1000
_LINE_NESTING = re.compile(rb"^[ ?:-]*", re.MULTILINE)


def _may_nest_deeply(data: bytes) -> bool:
    """An over-estimate of the nesting of YAML text (brackets in strings count too)."""
    flow = data.count(b"[") + data.count(b"{")
    if flow >= _LIBYAML_DEPTH:
        return True
    block = max(map(len, _LINE_NESTING.findall(data)), default=0)  # indentation, "- - -", "? "
    return flow + 2 * block >= _LIBYAML_DEPTH


def _read_document(path: Path, data: bytes) -> Any:
    """The record's document: JSON as we write it (the C codec), else any YAML."""
    if data.lstrip()[:1] == b"{":
        try:
            return json.loads(data, parse_constant=_no_constant)
        except RecursionError:
            raise Damaged(path, "not valid JSON (nested too deeply)") from None
        except ValueError:
            pass  # YAML's flow style, or damaged: the YAML parser says which
    import yaml

    shallow, deep = _record_loaders()
    try:
        return yaml.load(data, Loader=deep if _may_nest_deeply(data) else shallow)  # noqa: S506 - a safe loader
    except yaml.YAMLError as error:
        text = " ".join(str(error).replace('in "<byte string>", ', "").replace('in "<unicode string>", ', "").split())
        raise Damaged(path, f"not valid YAML ({text})") from None
    except RecursionError:
        raise Damaged(path, "not valid YAML (nested too deeply)") from None
    except (ValueError, OverflowError) as error:
        # int() refuses more than 4,300 digits; an explicit !!timestamp may be no date at all.
        problem = "an integer has too many digits" if "integer string conversion" in str(error) else str(error)
        raise Damaged(path, f"not valid YAML ({problem})") from None


class Damaged(specs.SpecError):
    """A store file that cannot be read back: hand-edited, truncated by a tool, or worse.

    Only that group is affected; the message names the file, the problem and the fix.
    """

    def __init__(self, path: Path, problem: str) -> None:
        super().__init__(
            "", f"the store file {path} is damaged: {problem}; repair it, or delete it and commit the group again"
        )
        self.path = path
        self.problem = problem


@dataclasses.dataclass(frozen=True, kw_only=True)
class StoredGroup:
    spec: specs.GroupSpec
    status: Mapping[str, Any]
    manifest: Mapping[str, Any] = dataclasses.field(default_factory=dict)  # as stored, without status
    generation: int = 1
    deleting: bool = False
    orphan: bool = False
    options: Mapping[str, Any] = dataclasses.field(default_factory=dict)


_MAX_RECORD = 16 << 20


def _parse_record(path: Path, data: bytes, *, name: str) -> StoredGroup:
    """Parse and check a record; every way it can be wrong is :class:`Damaged`."""
    document = _read_document(path, data)
    if document is None:
        raise Damaged(path, "it is empty")
    if not isinstance(document, Mapping):
        raise Damaged(path, f"it holds a {type(document).__name__}, not a Group record")
    manifest = {k: v for k, v in document.items() if k not in ("status", _OPTIONS)}
    try:
        spec = specs.parse_document(manifest, hashed=False)  # hashed when committed; check_json holds
    except specs.SpecError as error:
        raise Damaged(path, f"the manifest is not a valid Group ({error})") from None
    if spec.name != name:
        raise Damaged(path, f"it holds group {spec.name!r}, not {name!r}")
    status = document.get("status")
    if status is None:
        status = {}
    try:
        specs.check_json(status, field="status")
    except specs.SpecError as error:
        raise Damaged(path, str(error)) from None
    fast = _status_check()
    if fast is None or not fast(status):  # the fast check is exact when it accepts; jsonschema words the error
        import jsonschema

        try:
            _status_validator().validate(status)
        except jsonschema.ValidationError as error:
            where = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in error.absolute_path)
            raise Damaged(path, f"status{where}: {error.message}") from None
    metadata = manifest.get("metadata") or {}
    generation = metadata.get("generation", 1)
    if not isinstance(generation, int) or isinstance(generation, bool) or generation < 1:
        raise Damaged(path, f"metadata.generation must be a positive integer, not {generation!r}")
    options = document.get(_OPTIONS) or {}
    if not isinstance(options, Mapping):
        raise Damaged(path, f"{_OPTIONS} is not a mapping")
    try:
        specs.check_json(options, field=_OPTIONS)
    except specs.SpecError as error:
        raise Damaged(path, str(error)) from None
    annotations = metadata.get("annotations") or {}
    return StoredGroup(
        spec=spec,
        status=status,
        manifest=manifest,
        generation=generation,
        deleting=bool(metadata.get("deletionTimestamp")),
        orphan=isinstance(annotations, Mapping) and annotations.get(ORPHAN_ANNOTATION) == "true",
        options=options,
    )


def _status_schema() -> dict[str, Any]:
    """The CRD's status schema: the record keeps the status in the API server's shape.

    Fields it does not know (an older version's ``instances`` list, say) are let through, as
    the API server prunes them on its next write and so does the next sync here.
    """
    schema: dict[str, Any] = _plain(schemas.crd_schema()["properties"]["status"])
    schema.pop("additionalProperties", None)
    return schema


def _plain(schema: Any) -> Any:
    """The schema without what only the API server reads (``x-kubernetes-*``) or what
    jsonschema ignores without a format checker (``format``): so the fast check can take it."""
    if isinstance(schema, Mapping):
        return {k: _plain(v) for k, v in schema.items() if not k.startswith("x-kubernetes") and k != "format"}
    if isinstance(schema, list):
        return [_plain(v) for v in schema]
    return copy.deepcopy(schema)


@functools.cache
def _status_check() -> Any:
    return specs.compile_check(_status_schema())


@functools.cache
def _status_validator() -> Any:
    import jsonschema  # lazy: only to word what the fast check refused

    return jsonschema.Draft4Validator(_status_schema())


class Store:
    """Groups on disk, under ``home``."""

    def __init__(self, home: Path) -> None:
        self.home = Path(home)
        self.groups_dir = self.home / "groups"
        self._held = threading.local()

    @contextlib.contextmanager
    def lock(self, name: str) -> Iterator[None]:
        """Hold group ``name``'s exclusive lock (blocking); clean up after killed writers.

        One lock per group: a sync stuck in a slow plugin call holds its own group only;
        other groups' syncs and commits go on, and readers (``ls``, ``describe``,
        ``inspect``) take no lock at all, as every write is an atomic rename.  The locks
        are byte ranges of one file, ``$INFRAKIT_HOME/.lock`` (open-file-description locks:
        per open, so threads exclude each other too, and a killed holder's lock goes with
        it), one byte per group at an offset hashed from its name: no file per group to
        create or leave behind.  Re-entrant in one thread: a commit holds it across its
        first sync.
        """
        self.path(name)  # validates the name
        held: dict[str, int] = self._held.__dict__.setdefault("depth", {})
        if held.get(name):
            held[name] += 1
            try:
                yield
            finally:
                held[name] -= 1
            return
        self.groups_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.home / ".lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
        try:
            _range_lock(fd, name, wait=True)
            held[name] = 1
            self._sweep_temps(name)
            yield
        finally:
            held.pop(name, None)
            os.close(fd)  # releases the lock

    def _sweep_temps(self, holding: str) -> None:
        """Remove the temp files of writers that were killed: this group's (we hold its
        lock), and another group's when its lock is free (no writer of it is alive)."""
        try:
            entries = [e.name for e in os.scandir(self.groups_dir) if e.name.endswith(files.TEMP_SUFFIX)]
        except FileNotFoundError:
            return
        for temp in entries:
            match = _TEMP.fullmatch(temp)
            if match is None:
                continue
            owner = match.group(1)
            if owner != holding:
                fd = os.open(self.home / ".lock", os.O_RDWR | os.O_CLOEXEC | os.O_NOFOLLOW)
                try:
                    if not _range_lock(fd, owner, wait=False):
                        continue  # its writer is alive
                finally:
                    os.close(fd)
            (self.groups_dir / temp).unlink(missing_ok=True)

    def path(self, name: str) -> Path:
        return self.groups_dir / f"{specs.validate_name(name, field='group')}.yaml"

    def names(self) -> list[str]:
        try:
            entries = sorted(os.scandir(self.groups_dir), key=lambda e: e.name)
        except FileNotFoundError:
            return []
        return [e.name[: -len(".yaml")] for e in entries if e.name.endswith(".yaml") and not e.name.startswith(".")]

    def load(self, name: str) -> StoredGroup | None:
        """The group's record, None if there is none; :class:`Damaged` if it cannot be read back."""
        path = self.path(name)
        try:
            data = files.read_nofollow(path, limit=_MAX_RECORD)
        except FileNotFoundError:
            return None
        except OSError as error:
            if error.errno not in (None, errno.ELOOP):
                raise  # EACCES, EIO ...: the machine's trouble, not the record's
            problem = str(error).removeprefix(f"{path} ") if error.errno is None else "a symbolic link"
            raise Damaged(path, f"it is {problem.removeprefix('is ')}") from None
        stored = _parse_record(path, data, name=name)
        if isinstance(stored.options.get("dir"), str):
            # A directory inside the home is kept relative to it, so a home can be moved or copied.
            stored = dataclasses.replace(
                stored, options={**stored.options, "dir": str(self.home.absolute() / stored.options["dir"])}
            )
        return stored

    def generation(self, name: str) -> int | None:
        """The generation of the stored record of ``name`` (None: none, or not readable), read
        without checking the record whole: for a writer that holds the group's lock and the
        record it read, to know that record is still the one stored."""
        path = self.path(name)
        try:
            document = _read_document(path, files.read_nofollow(path, limit=_MAX_RECORD))
        except (OSError, Damaged):
            return None
        metadata = document.get("metadata") if isinstance(document, Mapping) else None
        found = metadata.get("generation", 1) if isinstance(metadata, Mapping) else None
        return found if isinstance(found, int) and not isinstance(found, bool) else None

    def _relative(self, options: Mapping[str, Any]) -> dict[str, Any]:
        out = dict(options)
        directory = out.get("dir")
        if isinstance(directory, str) and os.path.isabs(directory):
            with contextlib.suppress(ValueError):
                out["dir"] = str(Path(directory).relative_to(self.home.absolute()))
        return out

    def save(
        self,
        spec: specs.GroupSpec,
        status: Mapping[str, Any],
        *,
        generation: int = 1,
        deleting: bool = False,
        orphan: bool = False,
        options: Mapping[str, Any] | None = None,
    ) -> None:
        manifest = spec.to_manifest()
        metadata = manifest["metadata"]
        metadata["generation"] = generation
        if deleting:
            metadata["deletionTimestamp"] = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        if orphan:
            metadata["annotations"] = {ORPHAN_ANNOTATION: "true"}
        self.write(spec.name, manifest, status, options=options)

    def write(
        self, name: str, manifest: Mapping[str, Any], status: Mapping[str, Any], *, options: Mapping[str, Any] | None
    ) -> None:
        """Replace the record of ``name`` with ``manifest`` (metadata as it is to be kept) and ``status``."""
        document = {**manifest, "status": dict(status)}
        if options:
            document[_OPTIONS] = self._relative(options)
        files.atomic_write(self.path(name), _encode(document), durable=True)

    def update(self, stored: StoredGroup, **changes: Any) -> None:
        """Save ``stored`` with some of its fields changed."""
        merged = dataclasses.replace(stored, **changes)
        self.save(
            merged.spec,
            merged.status,
            generation=merged.generation,
            deleting=merged.deleting,
            orphan=merged.orphan,
            options=merged.options,
        )

    def delete(self, name: str) -> bool:
        self.ledger_path(name).unlink(missing_ok=True)  # a group committed anew starts a new memory
        try:
            self.path(name).unlink()
        except FileNotFoundError:
            return False
        files.fsync_dir(self.groups_dir)
        return True

    def ledger_path(self, name: str) -> Path:
        """The group's members ledger (:mod:`infrakit.local.ledger`)."""
        return self.groups_dir / f".{specs.validate_name(name, field='group')}.members"


_OFD_LOCK: Final = getattr(fcntl, "F_OFD_SETLKW", None)
_OFD_TRY: Final = getattr(fcntl, "F_OFD_SETLK", None)


def _range_lock(fd: int, name: str, *, wait: bool) -> bool:
    """Lock group ``name``'s byte of the lock file; ``False`` if ``wait`` is off and it is held.

    Where open-file-description locks are missing (not Linux), the whole file is locked:
    one group at a time, as before there were per-group locks.
    """
    if _OFD_LOCK is None or _OFD_TRY is None:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            return False
        return True
    offset = int.from_bytes(hashlib.blake2b(name.encode(), digest_size=7).digest(), "big")
    request = struct.pack("hhqqi4x", fcntl.F_WRLCK, os.SEEK_SET, offset, 1, 0)
    try:
        fcntl.fcntl(fd, _OFD_LOCK if wait else _OFD_TRY, request)
    except (BlockingIOError, PermissionError):  # EAGAIN / EACCES: held by another
        return False
    return True


def _encode(document: Mapping[str, Any]) -> bytes:
    """The document as indented JSON, if YAML reads that text back as the same document; else block YAML."""
    try:
        text = json.dumps(document, indent=2, ensure_ascii=False, allow_nan=False)
        exact = re.search(_NOT_YAML, text) is None and json.loads(text, parse_float=_yaml_float) == document
    except (TypeError, ValueError):  # a type JSON lacks, NaN, a float YAML would read as a string
        exact = False
    if not exact:  # non-string keys or tuples (JSON changes them), characters YAML must escape
        import yaml

        dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)  # libyaml's when PyYAML has it: the same text
        text = yaml.dump(document, Dumper=dumper, sort_keys=False, default_flow_style=False, allow_unicode=True)
    return (text if text.endswith("\n") else text + "\n").encode("utf-8")


# What YAML 1.1 (PyYAML) would not read back as JSON meant it: raw characters it refuses
# (JSON escapes only those below 0x20), and floats with an exponent but no dot ("1e+16",
# a string to YAML).  Either sends the document to the YAML dumper instead.
_NOT_YAML: Final = "[^\t\n\r\x20-\x7e\x85\xa0-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]"


def _yaml_float(token: str) -> float:
    if "." not in token and ("e" in token or "E" in token):
        raise ValueError(f"{token}: YAML 1.1 reads it as a string")
    return float(token)


def _no_constant(name: str) -> None:
    raise ValueError(f"{name} is not JSON we wrote")
