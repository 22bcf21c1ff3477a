"""What ``infrakit-local`` does without a cluster, over the one runtime.

Commit (validate, record, converge), free, destroy, describe: each records the intent
in the store, then drives the runtime's sync (``infrakit.runtime.syncing``) directly, in
this process, until the group converges (or a timeout); ``run`` (``infrakit.local.running``)
runs the same sync from the runtime's queue.  The sync writes status, failures included,
so a commit that fails or is interrupted leaves a status that says so.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from infrakit import plugins
from infrakit.core import planning, specs
from infrakit.local import records
from infrakit.local import store as stores
from infrakit.runtime import engine, owners, syncing

__all__ = ["CommitFailed", "CommitResult", "Controller", "GroupNotFound", "Timeout"]

log = logging.getLogger(__name__)


class GroupNotFound(LookupError):
    """No such group in the store."""

    def __init__(self, name: str) -> None:
        super().__init__(f"group {name!r} not found; `infrakit-local ls` lists the committed groups")


class Timeout(RuntimeError):
    """A commit did not converge in time (instances not becoming healthy)."""


class CommitFailed(RuntimeError):
    """The sync failed; the group's status says so too (``inspect``)."""


@dataclasses.dataclass(frozen=True, kw_only=True)
class CommitResult:
    name: str
    plan_text: str
    members: list[planning.Member]
    paused: bool = False


class Controller:
    """Local operations on groups; ``registry`` holds the plugins (and their default options)."""

    def __init__(self, *, store: stores.Store, registry: plugins.Registry) -> None:
        self.store = store
        self.registry = registry
        self.records = records.LocalStore(store)
        self.owners = owners.Owners()
        self.syncer = syncing.Syncer(store=self.records, registry=registry, index=self.owners)
        self.verbose = False

    @property
    def verbose(self) -> bool:
        """Whether syncs log what they did (``run``, the group daemon) or stay quiet (one-shot commands)."""
        return self.records.verbose

    @verbose.setter
    def verbose(self, value: bool) -> None:
        self.records.verbose = self.syncer.verbose = value

    # -- commit ---------------------------------------------------------------------------

    def prepare(
        self, spec: specs.GroupSpec, *, options: Mapping[str, Any] | None = None, explicit: bool = False
    ) -> syncing.Prepared:
        """Everything a commit checks before it records anything; raise ``SpecError``.

        A file of several Groups is prepared whole before any is committed; each commit
        then uses what was prepared (its plugins validated once).
        """
        _local_only(spec)
        try:
            previous = self.store.load(spec.name)
        except stores.Damaged:
            previous = None
        chosen = _chosen(spec, previous, options, explicit=explicit, daemon=self._daemon(spec))
        return self.syncer.prepare(spec, options=chosen)

    def _daemon(self, spec: specs.GroupSpec) -> bool:
        return self.registry.daemon(plugins.INSTANCE_GROUP, spec.instance.plugin)

    def prepare_all(
        self,
        groups: Sequence[specs.GroupSpec],
        *,
        options: Callable[[str], Mapping[str, Any]],
        explicit: bool = False,
    ) -> dict[str, syncing.Prepared]:
        """Every group of a file checked before any is committed (``options`` per plugin name).

        One group needs no separate look: its commit checks it before recording anything.
        """
        if len(groups) < 2:
            return {}
        return {
            spec.name: self.prepare(spec, options=options(spec.instance.plugin), explicit=explicit) for spec in groups
        }

    def commit(
        self,
        spec: specs.GroupSpec,
        *,
        prepared: syncing.Prepared | None = None,
        pretend: bool = False,
        wait: bool = True,
        timeout: float = 300.0,
        options: Mapping[str, Any] | None = None,
        explicit: bool = False,
        on_step: Callable[[engine.Step], None] | None = None,
        on_start: Callable[[int], None] | None = None,
    ) -> CommitResult:
        """Validate, record and converge ``spec``; with ``pretend``, only say what it would do.

        One sync decides: it observes, plans once, and (unless ``pretend``) acts on that
        plan; the words printed are that plan's.  ``options`` are the instance plugin's
        for this group (the file plugin's ``dir``), recorded with it.  A group committed
        before keeps its recorded ones, unless ``explicit`` options (the user's ``--dir``)
        differ: that is refused, as it would lose track of the instances.  ``wait=False``
        returns after the first sync (the group daemon's answer); else the commit syncs
        until the group converges or ``timeout`` passes.
        """
        _local_only(spec)
        key = ("", spec.name)
        # A pretend commit only reads (the record is replaced atomically): it never waits for a sync.
        with contextlib.nullcontext() if pretend else self.store.lock(spec.name):
            try:
                previous = self.store.load(spec.name)
            except stores.Damaged:
                previous = None  # a damaged record is replaced by this commit: that repairs it
            managed = previous is not None and not previous.deleting
            chosen = _chosen(spec, previous, options, explicit=explicit, daemon=self._daemon(spec))
            if prepared is None or prepared.spec != spec or dict(prepared.options) != chosen:
                prepared = self.syncer.prepare(spec, options=chosen)
            generation = 1
            if previous is not None:
                generation = previous.generation + (0 if managed and previous.spec == spec else 1)
            status = previous.status if previous is not None else {}
            record = self.records.record(spec, status=status, generation=generation, options=chosen)

            def planned(decided: planning.Plan) -> None:
                # Observed and planned, nothing done yet: the intent first, then the instances.
                # A crash from here on resumes from the store; a plugin that cannot even list
                # the instances failed the commit before it recorded anything.
                self.store.save(spec, status, generation=generation, options=chosen)
                if on_start is not None:
                    on_start(sum(len(r.labels) + len(r.provisions) + len(r.destroys) for r in decided.rounds))

            result = self.syncer.sync(
                key, record=record, prepared=prepared, act=not pretend, on_step=on_step, on_plan=planned
            )
        decided = result.decided or planning.Plan()
        text = decided.explain(managed=managed)
        if not pretend and wait:
            result = self._converge(key, spec, result, deadline=time.monotonic() + timeout, on_step=on_step)
        elif result.failure is not None:
            raise CommitFailed(f"group {spec.name!r}: {result.failure.message}")
        return CommitResult(name=spec.name, plan_text=text, members=result.members, paused=spec.paused)

    def _converge(
        self,
        key: tuple[str, str],
        spec: specs.GroupSpec,
        result: syncing.Result,
        *,
        deadline: float,
        on_step: Callable[[engine.Step], None] | None,
    ) -> syncing.Result:
        while True:
            if result.failure is not None:
                raise CommitFailed(f"group {spec.name!r}: {result.failure.message}")
            if result.gone or result.converged or spec.paused or result.spec != spec:
                return result  # done; or freed, destroyed or recommitted meanwhile: the newer intent wins
            if time.monotonic() > deadline:
                waiting = sum(1 for m in result.members if not m.healthy)
                raise Timeout(
                    f"group {spec.name!r} did not converge: waiting for {waiting} instances to become healthy; "
                    "`infrakit-local run` keeps reconciling it"
                )
            time.sleep(result.requeue_after or syncing.WAIT_FOR_HEALTH)
            result = self.syncer.sync(key, on_step=on_step)

    def sync_all(self) -> dict[str, syncing.Result]:
        """One sync of every stored group (what ``run`` does first), by name."""
        return {key[1]: self.syncer.sync(key) for key in self.store_keys()}

    def store_keys(self) -> list[tuple[str, str]]:
        return [("", name) for name in self.store.names()]

    # -- free, destroy, read --------------------------------------------------------------

    def free(self, name: str) -> syncing.Result:
        """Stop managing ``name``; its instances are left untouched (a new commit adopts them)."""
        return self._delete(name, orphan=True)

    def destroy(self, name: str, *, on_step: Callable[[engine.Step], None] | None = None) -> syncing.Result:
        """Destroy exactly the group's instances, then forget the group."""
        return self._delete(name, orphan=False)

    def _delete(self, name: str, *, orphan: bool) -> syncing.Result:
        with self.store.lock(name):
            stored = self._require(name)
            # Recorded first: if this is interrupted, `run` or the next destroy finishes it.
            self.store.update(stored, deleting=True, orphan=orphan)
            result = self.syncer.sync(("", name))
        if result.failure is not None:
            raise CommitFailed(f"group {name!r}: {result.failure.message}")
        return result

    def observe(self, name: str) -> tuple[stores.StoredGroup, list[planning.Member]]:
        """The group's record and its members as the plugins show them now (no lock, nothing changed)."""
        stored = self._require(name)
        resolved = engine.resolve(stored.spec, self.registry, options=stored.options, validate=False)
        return stored, engine.observe(stored.spec, resolved)

    def _require(self, name: str) -> stores.StoredGroup:
        stored = self.store.load(name)
        if stored is None:
            raise GroupNotFound(name)
        return stored


def _local_only(spec: specs.GroupSpec) -> None:
    if spec.namespace:
        raise specs.SpecError(
            "metadata.namespace",
            f"{spec.namespace!r}: the local store has no namespaces; remove it, or commit with --context",
        )


def _chosen(
    spec: specs.GroupSpec,
    previous: stores.StoredGroup | None,
    given: Mapping[str, Any] | None,
    *,
    explicit: bool,
    daemon: bool,
) -> dict[str, Any]:
    """The instance plugin's options a commit uses: the recorded ones, if the group has any.

    A group whose plugin is a daemon's records that (``via: daemon``): later commands use
    that daemon or none, never the built-in of the same name with options of its own.
    """
    managed = previous is not None and not previous.deleting
    recorded = dict(previous.options) if previous is not None and managed else {}
    chosen = {plugins.VIA: "daemon"} if daemon and not explicit else dict(given or {})
    if recorded and explicit and chosen != recorded:
        raise specs.SpecError(
            "--dir" if "dir" in recorded else "instance plugin options",
            f"group {spec.name!r} was committed with {_options(recorded)}; "
            "commit it with the same, or destroy or free it first",
        )
    return recorded or chosen


def _options(options: Mapping[str, Any]) -> str:
    if options.get(plugins.VIA) == "daemon":
        return "its plugin's daemon"
    if set(options) <= {"dir", "fsync"} and "dir" in options:
        return f"--dir {options['dir']}"
    return ", ".join(f"{k}={v!r}" for k, v in sorted(options.items()))
