"""InfraKit's plugin protocol (v0.5): JSON-RPC 2.0 over HTTP/1.1 on a unix socket or TCP.

Both directions, wire-compatible with InfraKit v0.5's daemons and CLI:

* :mod:`infrakit.rpc.wire` — the shapes on the wire (interface names, methods, JSON
  forms of specs and descriptions); pure, shared by both ends.
* :mod:`infrakit.rpc.client` — blocking SPI clients (``RemoteInstancePlugin``,
  ``RemoteFlavorPlugin``) the engine calls like in-process plugins; every failure is a
  ``PluginError`` (or a ``SpecError`` from ``validate``), never a traceback or a hang.
* :mod:`infrakit.rpc.discovery` — the plugins directory: names to endpoints, and the
  running plugins with their interfaces (``plugin ls``).
* :mod:`infrakit.rpc.server` — serves plugin objects under a name (aiohttp; imported
  only by daemons, so the client path stays cheap to import), with
  :mod:`infrakit.rpc.publishing` (their event streams) and :mod:`infrakit.rpc.listening`
  (the socket or TCP port, and the discovery files).
* :mod:`infrakit.daemons` (outside this package, at the top) — the console scripts (``infrakit-instance-file``,
  ``infrakit-flavor-vanilla``).

Nothing is re-exported here on purpose: importing this package must not import aiohttp.
"""
