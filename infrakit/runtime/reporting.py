"""What a sync tells: the store's events (Kubernetes Events, log lines locally) and the
broker's topics (``group/<name>/instance/lost`` ...), from what the sync saw and did.

Kept apart from the sync, which decides and acts: a report is computed from the
difference between what was known before and what is now, so it fires on a change
only.  Two memories, each where it is true:

* *lost* instances come from the members memory that every controller of the group
  shares (:mod:`infrakit.runtime.owners`): a sync is given them;
* *unhealthy* instances are news to this process's subscribers: :class:`Reporter`
  remembers which it announced, per group, and announces an instance again only after
  it was seen healthy (or gone) in between.

A report never fails a sync: a broker that cannot publish is logged and skipped.
"""

from __future__ import annotations

import collections
import dataclasses
import logging
import threading
from collections.abc import Mapping, Sequence
from typing import Any, Final

from infrakit import logs
from infrakit.core import instances, planning, specs, status
from infrakit.runtime import engine, events, stores

__all__ = ["LOGGED_IDS", "Reporter", "Synced"]

log = logging.getLogger("infrakit.runtime.syncing")

LOGGED_IDS: Final = 20
"""Instance IDs named in one structured log field (the counts are exact past them)."""


@dataclasses.dataclass(frozen=True, kw_only=True)
class Synced:
    """What one sync saw and did: all a report is made from."""

    record: stores.Record
    spec: specs.GroupSpec
    observed: Sequence[planning.Member]  # as the sync found them
    final: Sequence[planning.Member]  # as it left them
    steps: Sequence[engine.Step]
    lost: Sequence[str]


class Reporter:
    """Events and topics for the syncs of one runtime."""

    def __init__(self, *, store: stores.Store, publisher: events.Publisher | None = None, verbose: bool = True) -> None:
        self.store = store
        self.publisher = publisher
        self.verbose = verbose  # a controller's log says what each sync did; a one-shot command prints its own
        self._lock = threading.Lock()
        self._unhealthy: dict[stores.Key, frozenset[str]] = {}

    def forget(self, key: stores.Key) -> None:
        with self._lock:
            self._unhealthy.pop(key, None)

    def reset(self) -> None:
        """Forget what was announced (another controller acted meanwhile)."""
        with self._lock:
            self._unhealthy.clear()

    # -- a sync that acted -------------------------------------------------------------------

    def synced(self, sync: Synced) -> None:
        self._events(sync)
        self._topics(sync)

    def failed(self, record: stores.Record, failure: status.Failure) -> None:
        """A failure, told once per distinct cause (the previous status says which was told), not per retry."""
        if _ready_message(record.status) == failure.message:
            return
        self.store.event(record, reason=failure.reason, message=failure.message, warning=True, force=True)
        self.emit(record, "error", "error", {"Reason": failure.reason, "Message": failure.message})

    def torn_down(self, record: stores.Record, steps: Sequence[engine.Step]) -> None:
        message = f"destroyed {len(steps)} instances of the deleted group"
        self.store.event(record, reason="Destroyed", message=message, force=True)
        for done in steps:
            self.emit(record, "instance/destroyed", "Destroyed", instance_data(done, reason="GroupDestroyed"))
        self.forget(record.key)

    def emit(self, record: stores.Record, topic: str, kind: str, data: Mapping[str, Any]) -> None:
        if self.publisher is None:
            return
        extra = {"Namespace": record.key[0]} if record.key[0] else {}
        try:
            self.publisher.publish(f"{record.name}/{topic}", type=kind, data={"Group": record.name, **extra, **data})
        except Exception as error:  # events are news, never a reason for a sync to fail
            log.warning("group %s: publishing %s failed: %s", name(record.key), topic, error)

    # -- the store's events ------------------------------------------------------------------

    def _events(self, sync: Synced) -> None:
        """Events (cluster) or log lines (local) naming what was done, aggregated."""
        record, spec, steps, lost = sync.record, sync.spec, sync.steps, sync.lost
        if steps:
            done = collections.Counter(s.action for s in steps)
            log.log(
                logging.INFO if self.verbose else logging.DEBUG,
                "group %s: %d instance operations (%d provisioned, %d destroyed)",
                name(record.key),
                len(steps),
                done["provision"],
                done["destroy"],
                extra=logs.fields(
                    record.key,
                    count=len(steps),
                    provisioned=done["provision"],
                    destroyed=done["destroy"],
                    plan=_plan_fields(steps),
                ),
            )
        if lost:
            made = [s.instance_id for s in steps if s.action == "provision"][: len(lost)]
            message = f"lost {ids(lost)}; replaced by {ids(made)}" if made else f"lost {ids(lost)}"
            self.store.event(record, reason="InstancesLost", message=message, warning=True)
        counts = collections.Counter((s.action, s.reason) for s in steps)
        rolled = counts[("destroy", planning.Reason.ROLLING_UPDATE)]
        made_count = sum(n for (action, _), n in counts.items() if action == "provision")
        removed = sum(n for (action, _), n in counts.items() if action == "destroy") - rolled
        if labelled := counts[("label", planning.Reason.BOOTSTRAP)]:
            self.store.event(
                record,
                reason="Adopted",
                message=f"adopted {labelled} instances made outside InfraKit "
                f"({instances.TAG_CONFIG_SHA}={instances.BOOTSTRAP_SHA}): labelled with config {spec.config_sha}",
            )
        if readopted := counts[("label", planning.Reason.READOPTED)]:
            self.store.event(
                record,
                reason="Readopted",
                message=f"took back {readopted} instances left in place on purpose "
                f"({instances.TAG_ORPHANED}=true): marked {instances.TAG_ORPHANED}=false",
            )
        if made_count:
            self.store.event(
                record, reason="Provisioned", message=f"provisioned {made_count} instances (config {spec.config_sha})"
            )
        if rolled:
            self.store.event(
                record,
                reason="RollingUpdate",
                message=f"replaced {rolled} outdated instances with config {spec.config_sha}",
            )
        if removed:
            self.store.event(record, reason="Destroyed", message=f"destroyed {removed} instances to reduce the group")

    # -- the broker's topics -----------------------------------------------------------------

    def _topics(self, sync: Synced) -> None:
        """Topics from what this sync computed: its steps, the lost, the newly unhealthy, the roll."""
        record, spec, observed, final, steps = sync.record, sync.spec, sync.observed, sync.final, sync.steps
        unhealthy = frozenset(m.id for m in final if m.health is instances.Health.UNHEALTHY)
        with self._lock:
            announced = self._unhealthy.get(record.key, frozenset())
            self._unhealthy[record.key] = unhealthy
        if self.publisher is None:
            return
        for instance_id in sync.lost:
            self.emit(record, "instance/lost", "Lost", {"InstanceID": instance_id, "LogicalID": None, "Reason": "Lost"})
        for done in steps:
            if done.action == "provision":
                self.emit(record, "instance/provisioned", "Provisioned", instance_data(done))
            elif done.action == "destroy":
                self.emit(record, "instance/destroyed", "Destroyed", instance_data(done))
        for member in final:
            if member.id in unhealthy and member.id not in announced:
                data = {"InstanceID": member.id, "LogicalID": member.logical_id, "Reason": "Unhealthy"}
                self.emit(record, "instance/unhealthy", "Unhealthy", data)
        outdated = [m for m in observed if not m.up_to_date]
        rolled = [s for s in steps if s.reason is planning.Reason.ROLLING_UPDATE and s.action == "destroy"]
        update = {"ConfigHash": spec.config_sha}
        if outdated and not spec.paused and record.status.get("configHash") != spec.config_sha:
            self.emit(record, "update/started", "UpdateStarted", {**update, "Outdated": len(outdated)})
        remaining = sum(1 for m in final if not m.up_to_date)
        if rolled:
            self.emit(
                record, "update/progress", "UpdateProgress", {**update, "Replaced": len(rolled), "Remaining": remaining}
            )
        if (outdated or rolled) and not remaining:
            self.emit(record, "update/completed", "UpdateCompleted", {**update, "Size": len(final)})


def _ready_message(previous: Mapping[str, Any]) -> str | None:
    for condition in previous.get("conditions") or []:
        if isinstance(condition, Mapping) and condition.get("type") == "Ready":
            message = condition.get("message")
            return message if isinstance(message, str) else None
    return None


def instance_data(step: engine.Step, *, reason: str | None = None) -> dict[str, Any]:
    return {"InstanceID": step.instance_id, "LogicalID": step.logical_id, "Reason": reason or step.reason.value}


def _plan_fields(steps: Sequence[engine.Step]) -> dict[str, Any]:
    """What a sync did, for the ``plan`` log field: per action, the count by reason and the first IDs."""
    found: dict[str, Any] = {}
    for action in ("label", "provision", "destroy"):
        done = [s for s in steps if s.action == action]
        if done:
            found[action] = {
                "reasons": dict(collections.Counter(s.reason.value for s in done)),
                "instances": [s.instance_id for s in done[:LOGGED_IDS]],
            }
    return found


def ids(found: Sequence[str]) -> str:
    shown = ", ".join(found[:5])
    return shown + (f" and {len(found) - 5} more" if len(found) > 5 else "")


def name(key: stores.Key) -> str:
    return f"{key[0]}/{key[1]}" if key[0] else key[1]
