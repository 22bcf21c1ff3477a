"""The local store's groups as InfraKit's Group SPI (:class:`infrakit.groups.spi.Groups`).

``infrakit-local`` without a remote works on this, and so does the group daemon
(``infrakit-group-default`` serves it on the wire, :mod:`infrakit.local.serving`).  The
writes (commit, free, destroy) go through :class:`infrakit.local.controller.Controller`
(one sync decides: it plans once and acts on that plan; the words of the answer are that
plan's); the reads (``ls``, ``inspect``, ``describe``) read the store and ask the
instance plugin, and load no part of the runtime's sync: a read-only command starts fast.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any

from infrakit.core import specs
from infrakit.local import store as stores

if TYPE_CHECKING:
    from infrakit import plugins
    from infrakit.groups import spi
    from infrakit.local import controller as controllers
    from infrakit.runtime import engine, syncing

    Progress = Callable[
        [specs.GroupSpec], AbstractContextManager[tuple[Callable[[int], None], Callable[[engine.Step], None]]]
    ]

__all__ = ["StoreGroups"]


@dataclasses.dataclass(kw_only=True)
class StoreGroups:
    """The groups of ``store``, made with ``registry``'s plugins (or a function making it when first needed).

    ``options(plugin)`` are the instance plugin's options a new group is committed with
    (the file plugin's directory); ``explicit`` says the user gave them (``--dir``), so a
    group committed with others is refused rather than moved.  ``wait``: a commit syncs
    until the group converges or ``timeout`` passes (the CLI), or answers after its first
    sync (the group daemon, whose runtime goes on).  ``progress(spec)`` gives a commit's
    ``on_start``/``on_step`` callbacks.  ``writer``: the controller to write through (the
    daemon's, which publishes events), else one made on the first write.
    """

    store: stores.Store
    plugin_registry: plugins.Registry | Callable[[], plugins.Registry]
    options: Callable[[str], Mapping[str, Any]]
    explicit: bool = False
    wait: bool = True
    timeout: float = 300.0
    progress: Progress | None = None
    writer: controllers.Controller | None = None
    _prepared: dict[str, syncing.Prepared] = dataclasses.field(default_factory=dict)

    @property
    def registry(self) -> plugins.Registry:
        """The plugins, made when first needed: listing the groups needs none."""
        from infrakit import plugins

        if not isinstance(self.plugin_registry, plugins.Registry):
            self.plugin_registry = self.plugin_registry()
        return self.plugin_registry

    @property
    def controller(self) -> controllers.Controller:
        if self.writer is None:
            from infrakit.local import controller as controllers  # the runtime's sync: for writes only

            self.writer = controllers.Controller(store=self.store, registry=self.registry)
        return self.writer

    # -- writes ---------------------------------------------------------------------------

    def prepare(self, groups: Sequence[specs.GroupSpec]) -> None:
        self._prepared = self.controller.prepare_all(groups, options=self.options, explicit=self.explicit)

    def commit(self, spec: specs.GroupSpec, *, pretend: bool) -> str:
        with self.progress(spec) if self.progress is not None else _silent() as (on_start, on_step):
            result = self.controller.commit(
                spec,
                prepared=self._prepared.get(spec.name),
                pretend=pretend,
                wait=self.wait,
                timeout=self.timeout,
                options=self.options(spec.instance.plugin),
                explicit=self.explicit,
                on_step=on_step,
                on_start=on_start,
            )
        from infrakit.groups import spi

        return result.plan_text + spi.paused_note(spec)

    def free(self, name: str) -> None:
        with self._found(name):
            self.controller.free(name)

    def destroy(self, name: str) -> spi.Destroyed:
        from infrakit.groups import spi

        with self._found(name):
            result = self.controller.destroy(name)
        return spi.Destroyed(name=name, count=len(result.steps))

    # -- reads ----------------------------------------------------------------------------

    def ls(self) -> list[str]:
        return [name for name in self.store.names() if self._managed(name)]

    def _managed(self, name: str) -> bool:
        """Recorded and not being deleted; a damaged record is listed, so that it can be seen and fixed."""
        try:
            stored = self.store.load(name)
        except specs.SpecError:
            return True
        return stored is not None and not stored.deleting

    def inspect(self, name: str) -> spi.Inspected:
        from infrakit.groups import spi

        stored = self._stored(name)
        document = {**stored.manifest, "status": dict(stored.status)}
        return spi.Inspected(document=document, status=stored.status, parse=lambda: stored.spec)

    def describe(self, name: str) -> spi.Description:
        from infrakit.core import planning
        from infrakit.groups import spi
        from infrakit.runtime import engine  # the plugins as the runtime makes and judges them (not its sync)

        stored = self._stored(name)
        resolved = engine.resolve(stored.spec, self.registry, options=stored.options, validate=False)
        members = engine.observe(stored.spec, resolved)
        return spi.Description(
            instances=[m.description for m in members], converged=planning.plan(stored.spec, members).converged
        )

    def _stored(self, name: str) -> stores.StoredGroup:
        stored = self.store.load(name)
        if stored is None:
            from infrakit.groups import spi

            raise spi.GroupNotFound(_not_found(name))
        return stored

    @contextlib.contextmanager
    def _found(self, name: str) -> Iterator[None]:
        from infrakit.groups import spi
        from infrakit.local import controller as controllers

        try:
            yield
        except controllers.GroupNotFound as error:
            raise spi.GroupNotFound(str(error)) from None


def _not_found(name: str) -> str:
    return f"group {name!r} not found; `infrakit-local ls` lists the committed groups"


@contextlib.contextmanager
def _silent() -> Iterator[tuple[Callable[[int], None] | None, Callable[[Any], None] | None]]:
    yield None, None
