"""The group daemon's ``Group/0.1.0`` and ``Metadata/0.1.0``: the local store's groups, served as they are.

``infrakit-group-default`` (:mod:`infrakit.daemons`) serves :class:`LocalGroups` with
:func:`infrakit.rpc.services.group_services` and runs, in the same event loop, the same
runtime as ``infrakit-local run`` (:mod:`infrakit.runtime.running`) over the same store:
groups committed through the daemon, or by ``infrakit-local`` on the same
``$INFRAKIT_HOME``, are reconciled continuously, healed within milliseconds (the
instance plugin's change feed, in process or through a daemon's event stream).

What is served is the local store's Group SPI (:class:`infrakit.local.groups.StoreGroups`),
the very object ``infrakit-local`` works on, through the one SPI-to-wire adapter
(:class:`infrakit.groups.serving.Served`).  The daemon adds two things only:

* a real ``CommitGroup`` records the group and makes its first sync *before* answering
  (the instances it needs exist when the answer comes: what a script expects after
  ``group commit``), then leaves waiting for health and later rounds to the runtime,
  answering at once as InfraKit does rather than holding the call for minutes.  A first
  sync that fails answers the failure: the commit is recorded and the runtime keeps
  retrying, as the group's status (``inspect``) says;
* every commit, free and destroy wakes the runtime for that group.

Blocking methods: the server runs them in worker threads; the store's lock serialises
them with the runtime's syncs.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from typing import Any

from infrakit import plugins
from infrakit.groups import serving
from infrakit.local import controller as controllers
from infrakit.local import groups
from infrakit.runtime import running

__all__ = ["LocalGroups"]


class LocalGroups(serving.Served):
    """:class:`infrakit.rpc.services.GroupService` over a local controller and its runtime."""

    def __init__(
        self,
        *,
        controller: controllers.Controller,
        runtime: running.Runtime,
        loop: asyncio.AbstractEventLoop,
        options: Callable[[str], Mapping[str, Any]],
    ) -> None:
        store = groups.StoreGroups(
            store=controller.store, plugin_registry=controller.registry, options=options, wait=False, writer=controller
        )

        def wake(name: str) -> None:
            loop.call_soon_threadsafe(runtime.enqueue, ("", name))

        super().__init__(store, on_change=wake)

    def commit(self, document: Mapping[str, Any], *, pretend: bool) -> str:
        try:
            return super().commit(document, pretend=pretend)
        except controllers.CommitFailed as error:
            if pretend:
                raise
            raise plugins.PluginError(f"{error}; the commit is recorded and the group daemon keeps retrying") from None
