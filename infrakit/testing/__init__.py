"""Test doubles we own, shipped with the package but never installed as plugins.

Like httpx's ``MockTransport``: real implementations of our own interfaces, with no
I/O, for the tests of the core, the runtime and the adapters:

* ``memory`` -- an in-memory instance plugin (``MemoryPlugin``);
* ``stores`` -- an in-memory group store for the runtime (``MemoryStore``).

Nothing in the product imports this package (an import-linter contract says so); the
test suite registers the memory plugin by name where it needs it.
"""

from infrakit.testing import memory, stores

__all__ = ["memory", "stores"]
