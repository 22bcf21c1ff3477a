"""The local adapter: the engine over the YAML store and the instance directory.

What ``infrakit-local`` does without a cluster: commit (validate, record, converge),
free, destroy, describe, and one reconcile of every stored group for the ``run`` loop
(``infrakit.local.watching``).  All store access happens under the store's lock; the
engine and the core do the deciding.
"""

from __future__ import annotations

import dataclasses
import datetime
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

from infrakit import engine, plugins
from infrakit.core import planning, specs, status
from infrakit.local import store as stores

__all__ = ["CommitResult", "Controller", "GroupNotFound", "Timeout"]

log = logging.getLogger(__name__)


class GroupNotFound(LookupError):
    """No such group in the store."""

    def __init__(self, name: str) -> None:
        super().__init__(f"group {name!r} not found; `infrakit-local ls` lists the committed groups")


class Timeout(RuntimeError):
    """A commit did not converge in time (instances not becoming healthy)."""


@dataclasses.dataclass(frozen=True, kw_only=True)
class CommitResult:
    name: str
    plan_text: str
    members: list[planning.Member]
    paused: bool = False


class Controller:
    """Local operations on groups; ``settings`` says where instances live."""

    def __init__(self, *, store: stores.Store, settings: plugins.Settings) -> None:
        self.store = store
        self.settings = settings
        self.owners: dict[str, str] = {}  # instance ID -> group, from the last reconciles

    # -- commit ---------------------------------------------------------------------------

    def commit(
        self,
        spec: specs.GroupSpec,
        *,
        pretend: bool = False,
        timeout: float = 300.0,
        on_step: Callable[[engine.Step], None] | None = None,
        on_start: Callable[[int], None] | None = None,
    ) -> CommitResult:
        """Validate, record and converge ``spec``; with ``pretend``, only say what it would do."""
        resolved = engine.resolve(spec, self.settings)
        with self.store.lock():
            previous = self.store.load(spec.name)
            members = engine.observe(spec, resolved)
            text = planning.describe_change(spec, members, managed=previous is not None)
            if pretend:
                return CommitResult(name=spec.name, plan_text=text, members=members, paused=spec.paused)
            recorded = stores.StoredGroup(spec=spec, status=previous.status if previous else {})
            self.store.save(recorded.spec, recorded.status)  # the intent first, then the instances
            if on_start is not None:
                first = planning.plan(spec, members)
                on_start(sum(len(r.provisions) + len(r.destroys) for r in first.rounds))
            # Still under the lock: what was just observed is what is there; no second look.
            outcome = self._reconcile(recorded, resolved, on_step=on_step, members=members)
        final = outcome.members
        if not (outcome.plan.converged or spec.paused):
            final = self._converge(spec, resolved, deadline=time.monotonic() + timeout, on_step=on_step)
        return CommitResult(name=spec.name, plan_text=text, members=final, paused=spec.paused)

    def _converge(
        self,
        spec: specs.GroupSpec,
        resolved: engine.Plugins,
        *,
        deadline: float,
        on_step: Callable[[engine.Step], None] | None,
    ) -> list[planning.Member]:
        while True:
            with self.store.lock():
                stored = self.store.load(spec.name)
                if stored is None or stored.spec != spec:
                    # Freed, destroyed or recommitted meanwhile: the newer intent wins.
                    return engine.observe(spec, resolved)
                outcome = self._reconcile(stored, resolved, on_step=on_step)
            if outcome.plan.converged or spec.paused:
                return outcome.members
            if time.monotonic() > deadline:
                waiting = sum(1 for m in outcome.members if not m.healthy)
                raise Timeout(
                    f"group {spec.name!r} did not converge: waiting for {waiting} instances to become healthy; "
                    "`infrakit-local run` keeps reconciling it"
                )
            time.sleep(0.2)

    # -- the run loop's unit of work ------------------------------------------------------

    def reconcile_all(self, names: set[str] | None = None) -> dict[str, engine.Outcome | Exception]:
        """Reconcile the named groups (default: every stored group), each under the lock."""
        results: dict[str, engine.Outcome | Exception] = {}
        if names is None:
            self.owners.clear()  # a full pass rebuilds it: no stale IDs pile up
        for name in sorted(names if names is not None else self.store.names()):
            try:
                with self.store.lock():
                    stored = self.store.load(name)
                    if stored is None:
                        continue
                    resolved = engine.resolve(stored.spec, self.settings)
                    results[name] = self._reconcile(stored, resolved, on_step=_log_step(name))
            except (specs.SpecError, plugins.PluginError, OSError) as error:
                log.error("group %s: %s", name, error)
                results[name] = error
        return results

    def _reconcile(
        self,
        stored: stores.StoredGroup,
        resolved: engine.Plugins,
        *,
        on_step: Callable[[engine.Step], None] | None,
        members: list[planning.Member] | None = None,
    ) -> engine.Outcome:
        spec = stored.spec
        outcome = engine.reconcile(spec, resolved, members=members, on_step=on_step)
        for member in outcome.members:
            self.owners[member.id] = spec.name
        new_status = status.compute(spec, outcome.members, outcome.plan, now=_now(), previous=stored.status)
        if _changed(stored.status, new_status):
            self.store.save(spec, new_status)
        return outcome

    # -- free, destroy, read --------------------------------------------------------------

    def free(self, name: str) -> None:
        """Stop managing ``name``; its instances are left untouched."""
        with self.store.lock():
            if not self.store.delete(name):
                raise GroupNotFound(name)

    def destroy(self, name: str, *, on_step: Callable[[engine.Step], None] | None = None) -> list[engine.Step]:
        """Destroy exactly the group's instances, then forget the group."""
        with self.store.lock():
            stored = self._require(name)
            resolved = engine.resolve(stored.spec, self.settings, validate=False)
            steps = engine.teardown(stored.spec, resolved, on_step=on_step)
            self.store.delete(name)
        return steps

    def get(self, name: str) -> stores.StoredGroup:
        with self.store.lock():
            return self._require(name)

    def observe(self, name: str) -> tuple[stores.StoredGroup, list[planning.Member]]:
        stored = self.get(name)
        resolved = engine.resolve(stored.spec, self.settings, validate=False)
        return stored, engine.observe(stored.spec, resolved)

    def _require(self, name: str) -> stores.StoredGroup:
        stored = self.store.load(name)
        if stored is None:
            raise GroupNotFound(name)
        return stored


def _changed(old: Mapping[str, Any], new: Mapping[str, Any]) -> bool:
    return dict(old) != dict(new)


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _log_step(name: str) -> Callable[[engine.Step], None]:
    def report(step: engine.Step) -> None:
        log.info("group %s: %s %s (%s)", name, step.action, step.instance_id, step.reason.value)

    return report
