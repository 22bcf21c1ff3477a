"""The standalone mode: groups in a local YAML store, no cluster needed.

``store`` keeps the groups, ``documents`` reads Group files, ``controller`` runs the
engine over them, ``watching`` is the ``run`` loop.
"""

from infrakit.local import controller, documents, store, watching

__all__ = ["controller", "documents", "store", "watching"]
