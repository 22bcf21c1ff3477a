"""InfraKit's Group / Instance / Flavor system as a Kubernetes operator, with a local mode.

Layers, lowest first (kept so by the import-linter contracts in ``pyproject.toml``):

* ``infrakit.core``     pure decisions: specs, the config hash, the planner, status;
* ``infrakit.plugins``  the instance and flavor SPIs and the built-in plugins;
* ``infrakit.engine``   carries the core's plans out through the plugins;
* ``infrakit.local`` / ``infrakit.operator``  the two adapters (YAML store, kopf);
* ``infrakit.cli``      ``infrakit-local``, over either adapter.
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
