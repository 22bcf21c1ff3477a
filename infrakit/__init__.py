"""InfraKit's Group / Instance / Flavor system as a Kubernetes operator, with a local mode.

Layers, lowest first (every module is in one; the import-linter contracts in
``pyproject.toml`` keep each importing only downwards):

* ``core`` | ``faults`` | ``logs``  pure decisions (specs, the config hash, the planner,
  status); failpoints for the crash tests; log set-up;
* ``files`` | ``schemas``  atomic, symlink-safe files; the CRD's schema, read, cached and
  given to the core;
* ``plugins``   the instance and flavor SPIs and the built-in plugins;
* ``rpc``       InfraKit's plugin protocol, both ends;
* ``runtime``   the one reconcile runtime: the sync of a group, its queue and engine;
* ``local`` | ``cluster``  the two adapters (the YAML store; the Kubernetes API);
* ``options``   the click options of the long-running controllers;
* ``operator``  kopf's handlers over the runtime;
* ``commands``, then ``cli`` | ``daemons``  ``infrakit-local`` and the plugin daemons;
* ``controlplane`` | ``testing``  test tooling (the product imports neither).
"""

import atexit
import gc

__version__ = "0.1.0"

__all__ = ["__version__"]

# A short-lived command spends ~10 ms at exit in a last garbage collection over every
# module and object it loaded, which frees nothing the operating system would not free
# anyway.  Frozen objects are skipped by it; the other exit steps (atexit handlers, flushing
# and closing files) still run.  Registered first, so it runs after every other handler.
atexit.register(gc.freeze)
