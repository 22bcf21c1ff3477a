"""The file instance plugin: one JSON file per instance in a directory.

InfraKit's ``instance-file``: an instance is a file named by its ID
(``instance-<random 63-bit integer>``) holding ``ID``, ``LogicalID``, ``Tags`` and the
full ``Spec`` it was provisioned from.  Deleting the file is losing the instance, which
is how the tutorial demonstrates self-healing.

The directory may be shared with other groups and other programs, so the plugin is
careful: it never follows a symlink, never writes outside the directory, only
destroys files whose name is an instance ID, and skips (warning once) files it cannot
use.  One file never stops anything: whatever one file holds (nesting 200,000 deep, a
401-digit number, bytes that are not UTF-8, a list where a string belongs), it is a
warning about that file and describe goes on with the others; only well-typed
descriptions (string IDs, logical IDs and tags) ever reach the planner.

What it writes it reads back (limits agree end to end, or a group would provision again
on every pass and fill the disk):

* ``validate`` refuses properties whose rendering in an instance file would take more
  than ``MAX_PROPERTIES`` bytes (measured as ``provision`` renders them: indented JSON,
  where every nesting level costs two bytes on every line), nested deeper than the core
  allows, or that are not JSON;
* ``provision`` and ``label`` refuse (``PluginError``, nothing written) a file larger
  than ``MAX_FILE``, the read limit, which leaves ``MAX_FILE - MAX_PROPERTIES`` for what
  the flavor adds (init script, tags, attachments: at most
  ``infrakit.core.instances.MAX_FLAVOR_BYTES`` as compact JSON, which a flavor's
  ``validate`` checks; indented, and the tags twice, they take at most 3.5 times that);
  ``provision`` refuses a spec of the wrong types (``SpecError`` naming the field).

An undecodable file that still is one of ours is described from its two ends
(:mod:`.documents`); what ``describe`` parsed is kept and kept exact (:mod:`.listing`);
``changes`` tells the runtime which instances changed, from the same one watch of the
directory that keeps the listing exact (:mod:`.directory`), and survives the directory
being removed and re-created.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import stat
import time
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any, Final

from infrakit import files
from infrakit.core import instances, specs
from infrakit.plugins import permissions, spi
from infrakit.plugins.instance_file import directory as directories
from infrakit.plugins.instance_file import documents, listing
from infrakit.plugins.instance_file.documents import MAX_FILE

__all__ = ["MAX_PROPERTIES", "NAME", "FilePlugin", "create", "stored_spec"]

NAME: Final = "instance-file"

MAX_PROPERTIES: Final = 4 << 20  # bytes the properties may take in a file; the rest is the flavor's
STALE_TEMP_SECONDS: Final = 300.0  # a temp file this old is no live writer's

_MAX_WARNED: Final = 4096  # (file, problem) pairs remembered so each is warned about once
_PROPERTIES: Final = "spec.instance.properties"

log = logging.getLogger("infrakit.plugins.instance_file")


def create(options: Mapping[str, Any]) -> FilePlugin:
    """``options``: ``dir`` (the instance directory, required), ``fsync`` (bool) and ``file_mode``
    (an int or octal text: ``0600`` unless given, see :mod:`infrakit.plugins.permissions`).

    The registry (``infrakit.plugins.Registry``) keeps the plugin for the process, so
    its describe cache and its warnings live as long as it does.
    """
    directory = options.get("dir")
    if not directory:
        raise spi.PluginError("instance-file needs a directory: give --dir (or $INFRAKIT_INSTANCE_DIR)")
    file_mode = options.get("file_mode", permissions.DEFAULT_FILE_MODE)
    try:
        if isinstance(file_mode, str):
            file_mode = permissions.parse_file_mode(file_mode)
        elif type(file_mode) is int:
            permissions.check_file_mode(file_mode)
        else:
            raise ValueError(f"{file_mode!r} is not a mode; give one such as 0600 or 0640")
    except ValueError as error:
        raise spi.PluginError(f"instance-file option file_mode: {error}") from None
    # What writers killed mid-write left (the directory is shared: only what is old enough
    # to be no live writer's).
    with contextlib.suppress(OSError):
        files.remove_stale_temps(Path(directory), older_than=STALE_TEMP_SECONDS)
    return FilePlugin(directory=Path(directory), durable=bool(options.get("fsync", False)), file_mode=file_mode)


def stored_spec(directory: Path, instance_id: str) -> Any:
    """The ``Spec`` an instance's file holds (v0.5's ``Properties`` of a description), or None.

    None too for a file that is not an instance of ours (see :mod:`~infrakit.plugins.permissions`),
    a symlink (never followed), or one gone or being rewritten since it was listed.
    """
    if not isinstance(instance_id, str) or not documents.INSTANCE_ID.fullmatch(instance_id):
        return None
    try:
        data, info = files.read_nofollow_stat(os.path.join(directory, instance_id), limit=MAX_FILE)
        if permissions.file_problem(info, uid=os.geteuid()) is not None:
            return None
        document = json.loads(data)
    except Exception:  # gone, unreadable, not JSON: no properties to tell
        return None
    return document.get("Spec") if type(document) is dict and document.get("ID") == instance_id else None


class FilePlugin:
    """Instances as files in ``directory`` (created on first use).

    Long-lived: one object per directory per process keeps what ``describe`` parsed and
    the one watch of the directory (:meth:`close` lets it go).  Safe to share between
    threads.  Only files of the process's own user are instances, in a directory others
    cannot rewrite; ``file_mode`` is what files are written with (see
    :mod:`infrakit.plugins.permissions`).
    """

    name = NAME

    def __init__(
        self, *, directory: Path, durable: bool = False, file_mode: int = permissions.DEFAULT_FILE_MODE
    ) -> None:
        permissions.check_file_mode(file_mode)
        self.directory = Path(directory)
        self.durable = durable
        self.file_mode = file_mode
        self._directory_mode = permissions.directory_mode(file_mode)
        self._uid = os.geteuid()
        self._gid = os.getegid()
        self._root = os.path.abspath(self.directory)
        self._warned: set[tuple[str, str]] = set()
        self._watch = directories.Directory(self._root)  # the one watch: listing and change feeds
        self._catalog = listing.Catalog(
            self._watch, shown=self.directory, mode=self._directory_mode, warn=self._warn, check=self._check_directory
        )
        self._spec: _Rendering | None = None  # the spec provision rendered last
        self._renderings: dict[str, str] = {}  # compact JSON -> its indented rendering, nested one level
        self._validated: tuple[str, int] = ("", 0)  # the compact JSON validate measured last, and its size

    def validate(self, properties: Any) -> None:
        """Any JSON document is a valid property set (stored verbatim) if the plugin can read it back."""
        try:
            depth, indentation = documents.measure(properties, base=documents.PROPERTIES_INDENT)
            if depth > documents.MAX_DEPTH:
                raise specs.SpecError(
                    _PROPERTIES, f"nested more than {documents.MAX_DEPTH} levels deep; flatten the properties"
                )
            compact = documents.compact.encode(properties)
        except specs.SpecError:
            raise
        except Exception as error:  # not JSON: a set, bytes, keys of mixed types, a cycle...
            raise specs.SpecError(_PROPERTIES, f"cannot be written as JSON ({documents.reason(error)})") from None
        if compact == self._validated[0]:
            size = self._validated[1]
        else:
            size = len(compact) + indentation
            if size <= MAX_PROPERTIES:  # (else refused below, for their size)
                instances.check_json(properties, field=_PROPERTIES)  # no NaN, no 1e400, no lone surrogate
            self._validated = (compact, size)
        if size > MAX_PROPERTIES:
            raise specs.SpecError(
                _PROPERTIES,
                f"take {size} bytes in an instance file, more than the {MAX_PROPERTIES} the instance-file "
                "plugin allows (every nesting level costs 2 bytes of indentation on each line); make them smaller",
            )

    def provision(self, spec: instances.InstanceSpec) -> str:
        import secrets  # lazy: hmac and OpenSSL (~3 ms) only for a command that provisions

        rendering = self._render(spec)
        watched = self._catalog.watching()
        for _ in range(4):
            instance_id = f"instance-{secrets.randbits(63)}"
            created = time.time()
            data = documents.encode_new(
                created=created,
                instance_id=instance_id,
                logical_id=spec.logical_id,
                spec=rendering.spec_text,
                tags=rendering.tags_text,
            )
            if len(data) > MAX_FILE:
                raise spi.PluginError(_too_large(len(data), "instance spec (properties, init script, tags)"))
            # Said to the watch before the file exists: its creation event is then known for
            # ours when it is read, by whichever thread reads it (see directory.py), and the
            # listing takes this entry rather than reading the file back.
            announced = watched and self._watch.creating(
                instance_id,
                listing.Entry(
                    key=listing.UNKNOWN,
                    description=instances.Description(
                        id=instance_id, logical_id=spec.logical_id, tags=dict(rendering.tags), created=created
                    ),
                    trusted=False,
                ),
            )
            try:
                self._write(instance_id, data, new=True)
            except BaseException as error:
                if announced:
                    # What is there, if anything, is someone else's (one chance in 2**63): read it.
                    self._watch.abandon(instance_id)
                    self._catalog.reread(instance_id)
                if isinstance(error, FileExistsError):  # one chance in 2**63: draw another ID
                    continue
                raise
            return instance_id
        raise spi.PluginError(f"cannot find a free instance ID in {self.directory}")

    def label(self, instance_id: str, labels: Mapping[str, str]) -> None:
        path = self._path(instance_id)
        instances.check_spec(instances.InstanceSpec(tags=labels))  # never write what describe would skip
        instances.check_json(dict(labels), field="Tags")
        self._checked_directory()
        document = self._read(path)
        if document is None:
            raise spi.InstanceNotFound(f"instance {instance_id} not found in {self.directory}")
        document["Tags"] = {**(document.get("Tags") or {}), **labels}
        data = json.dumps(document, indent=2, sort_keys=True).encode("utf-8")
        if len(data) > MAX_FILE:
            raise spi.PluginError(_too_large(len(data), "labels"))
        self._write(instance_id, data)

    def destroy(self, instance_id: str) -> None:
        if not isinstance(instance_id, str) or not documents.INSTANCE_ID.fullmatch(instance_id):
            raise spi.InstanceNotFound(f"{instance_id!r} is not an instance ID (instance-<digits>)")
        path = os.path.join(self._root, instance_id)  # strings: a roll destroys as often as it provisions
        self._checked_directory()
        try:
            info = os.lstat(path)
        except FileNotFoundError:
            raise spi.InstanceNotFound(f"instance {instance_id} not found in {self.directory}") from None
        if not stat.S_ISREG(info.st_mode):
            raise spi.PluginError(f"refusing to destroy {path}: not a regular file (symlinks are never followed)")
        problem = permissions.file_problem(info, uid=self._uid)
        if problem is not None:
            raise spi.PluginError(f"refusing to destroy {path}: it {problem}")
        try:
            os.unlink(path)
        except FileNotFoundError:
            raise spi.InstanceNotFound(f"instance {instance_id} not found in {self.directory}") from None
        if self.durable:
            files.fsync_dir(self.directory)

    def describe(self, tags: Mapping[str, str]) -> list[instances.Description]:
        return self._catalog.describe(tags)

    def changes(self) -> AsyncIterator[frozenset[str] | None]:
        """The IDs of the instances whose files changed (created, modified, deleted), as they change.

        The creation of an instance this plugin provisioned while in use (it described
        before) is not reported (its caller knows: the sync that made it), unless something
        else happened to it in the same burst (a deletion, an edit; a rename over it in the
        same burst cannot be told from the creation, and is seen at the next describe).

        ``None`` means anything may have changed (list everything again): it comes first,
        once the watch is armed, and again each time the watch had to be re-established
        because the directory was removed, replaced or renamed (the directory's parent,
        or the nearest ancestor that exists, is watched until it is back).  Changes come
        in debounced bursts; temp files and the ``#<inode>`` names of unnamed files being
        written are not instances and never reported.  Ends when the consumer stops
        iterating (``aclose``), letting its watch go.  The same watch keeps ``describe``'s
        listing exact (:mod:`.directory`).
        """
        return directories.changes(self._watch, warn=lambda problem: self._warn(self._root, problem))

    def close(self) -> None:
        """Let the directory's watch go (the registry closes its plugins)."""
        self._catalog.close()
        self._watch.close()

    # -- helpers -------------------------------------------------------------------------

    def _render(self, spec: instances.InstanceSpec) -> _Rendering:
        """The spec's JSON, rendered once for all the instances provisioned from it."""
        rendering = self._spec
        if rendering is not None and rendering.spec is spec and rendering.tags == spec.tags:
            return rendering  # the engine provisions a reconcile's instances from one (frozen) spec
        instances.check_spec(spec)
        if documents.measure(spec.properties, base=documents.PROPERTIES_INDENT)[0] > documents.MAX_DEPTH:
            raise specs.SpecError("Properties", f"nested more than {documents.MAX_DEPTH} levels deep; flatten them")
        documents.check_readable(spec)
        tags = dict(spec.tags)
        try:
            rendering = _Rendering(
                spec=spec, tags=tags, spec_text=self._nested(spec.to_json()), tags_text=self._nested(tags)
            )
        except Exception as error:  # not JSON: a set, bytes, keys of mixed types, a cycle...
            raise specs.SpecError("Properties", f"cannot be written as JSON ({documents.reason(error)})") from None
        self._spec = rendering
        return rendering

    def _nested(self, value: dict[str, Any]) -> str:
        """``value`` as ``json.dumps(indent=2, sort_keys=True)`` renders it one level deep."""
        compact = documents.compact.encode(value)
        text = self._renderings.get(compact)
        if text is None:
            # Inside the document, every line of a member's rendering is indented once more
            # (JSON strings never contain a raw newline, so these are all structural).
            text = json.dumps(value, indent=2, sort_keys=True).replace("\n", "\n  ")
            if len(self._renderings) >= 256:
                self._renderings.clear()
            self._renderings[compact] = text
        return text

    def _path(self, instance_id: str) -> Path:
        if not isinstance(instance_id, str) or not documents.INSTANCE_ID.fullmatch(instance_id):
            raise spi.InstanceNotFound(f"{instance_id!r} is not an instance ID (instance-<digits>)")
        return self.directory / instance_id

    def _write(self, instance_id: str, data: bytes, *, new: bool = False) -> None:
        """Write the instance file atomically: ``new`` ones are created, never replaced.

        Created with the plugin's file mode (``0600``): the temp or unnamed file is never
        readable by more users than the file will be.
        """
        path = os.path.join(self._root, instance_id)
        write = files.create_new if new else files.atomic_write
        self._checked_directory(create=True)
        try:
            try:
                write(path, data, durable=self.durable, mode=self.file_mode)
            except FileNotFoundError:  # the directory was removed meanwhile: made again
                self._checked_directory(create=True)
                write(path, data, durable=self.durable, mode=self.file_mode)
        except FileExistsError:
            raise
        except OSError as error:
            raise spi.PluginError(f"cannot write instance {instance_id} in {self.directory}: {error}") from error

    def _checked_directory(self, *, create: bool = False) -> None:
        """Refuse a directory others could rewrite (see :mod:`~infrakit.plugins.permissions`); ``create``
        it (private) if missing.  A missing one is left to the operation to report."""
        try:
            info = os.stat(self._root)
        except FileNotFoundError:
            if not create:
                return
            try:
                os.makedirs(self._root, mode=self._directory_mode, exist_ok=True)
                info = os.stat(self._root)
            except OSError as error:
                raise spi.PluginError(f"cannot create the instance directory {self.directory}: {error}") from None
        except OSError as error:
            raise spi.PluginError(f"cannot use the instance directory {self.directory}: {error}") from None
        self._check_directory(info)

    def _check_directory(self, info: os.stat_result) -> None:
        if stat.S_ISDIR(info.st_mode):  # not a directory: listing or writing says so
            warning = permissions.check_directory(str(self.directory), info, uid=self._uid, gid=self._gid)
            if warning is not None:
                self._warn_once(("", warning), f"instance directory {self.directory}: {warning}")

    def _read(self, path: Path) -> dict[str, Any] | None:
        """The instance document at ``path`` if it is one describe would list, else None (warned).

        ``InstanceNotFound`` for a file that is not ours (another user's, or anyone's to rewrite).
        """
        try:
            data, info = files.read_nofollow_stat(path, limit=MAX_FILE)
        except FileNotFoundError:
            return None
        except Exception as error:  # one file's content never stops anything
            self._warn(path.name, f"cannot be read as an instance ({documents.reason(error)}); ignored")
            return None
        problem = permissions.file_problem(info, uid=self._uid)
        if problem is not None:
            raise spi.InstanceNotFound(f"{path.name} in {self.directory} {problem}")
        try:
            document = json.loads(data)
        except Exception as error:
            self._warn(path.name, f"cannot be read as an instance ({documents.reason(error)}); ignored")
            return None
        found = documents.read_description(path.name, document)
        if isinstance(found, str):
            self._warn(path.name, f"{found}; ignored")
            return None
        result: dict[str, Any] = document
        return result

    def _warn(self, name: str, problem: str) -> None:
        self._warn_once((name, problem), f"instance directory {self.directory}: {name} {problem}")

    def _warn_once(self, key: tuple[str, str], message: str) -> None:
        if key not in self._warned:
            if len(self._warned) >= _MAX_WARNED:  # a long-lived plugin on a churning directory
                self._warned.clear()
            self._warned.add(key)
            log.warning("%s", message)


# -- helpers -------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class _Rendering:
    spec: instances.InstanceSpec
    tags: dict[str, str]  # a copy: what the spec's tags were when rendered
    spec_text: str
    tags_text: str


def _too_large(size: int, what: str) -> str:
    return (
        f"the instance file would be {size} bytes, larger than the {MAX_FILE} the instance-file plugin "
        f"reads back; make the {what} smaller"
    )
