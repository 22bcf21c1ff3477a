"""The standalone mode: groups in a local YAML store, no cluster needed.

``store`` keeps the groups, ``documents`` reads Group files, ``records`` adapts the
store to the runtime, ``controller`` is what the CLI's commands do, ``running`` is the
``run`` loop (the runtime in the foreground).
"""

# Submodules are imported by their users, not here: the CLI imports only what a command needs.

# The Group schema, for the core to validate every Group of this mode against: the
# packaged CRD's (read, and cached, by this adapter; the core reads no file).
from infrakit import schemas as schemas
