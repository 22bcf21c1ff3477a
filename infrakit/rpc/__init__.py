"""InfraKit's plugin protocol (v0.5): JSON-RPC 2.0 over HTTP/1.1 on a unix socket or TCP.

Both directions, wire-compatible with InfraKit v0.5's daemons and CLI:

* :mod:`infrakit.rpc.wire` — the shapes on the wire (interface names, methods, JSON
  forms of specs and descriptions) and the one parser of a peer's JSON (bounded); pure,
  shared by both ends.
* :mod:`infrakit.rpc.client` — blocking SPI clients (``RemoteInstancePlugin``,
  ``RemoteFlavorPlugin``) the engine calls like in-process plugins; every failure is a
  ``PluginError`` (or a ``SpecError`` from ``validate``), never a traceback or a hang.
  Over :mod:`infrakit.rpc.transport` (one address, kept-open connections, the token);
  event streams read by :mod:`infrakit.rpc.streams` (the one client of ``/events``:
  ``event tail``, and :mod:`infrakit.rpc.feeds`' change feeds of remote plugins).
* :mod:`infrakit.rpc.broker` — the one event broker (topics, bounded subscriptions, one
  overflow rule): the group runtime's events and the plugins' change feeds (no aiohttp).
* :mod:`infrakit.rpc.discovery` — the plugins directory: names to endpoints, and the
  running plugins with their interfaces (``plugin ls``).
* :mod:`infrakit.rpc.services` — plugin objects as JSON-RPC method tables (no aiohttp).
* :mod:`infrakit.rpc.server` — serves them under a name (aiohttp; imported only by
  daemons, so the client path stays cheap to import), with :mod:`infrakit.rpc.guarding`
  (who may call, and the bounds of what a peer may hold), :mod:`infrakit.rpc.publishing`
  (a broker's events as ``/events`` streams) and :mod:`infrakit.rpc.listening` (the socket or TCP port, the
  discovery files).
* :mod:`infrakit.daemons` (outside this package, at the top) — the console scripts (``infrakit-instance-file``,
  ``infrakit-flavor-vanilla``).

Nothing is re-exported here on purpose: importing this package must not import aiohttp.
"""
