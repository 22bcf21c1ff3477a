"""The CLI's commands beyond the group and plugin verbs: ``event``, ``metadata``, ``remote``,
``template`` and ``playbook`` (InfraKit's names), one module each.

Each module exposes click commands that take ``infrakit.cli.Context`` as their object
(``click.pass_obj``) and imports what it needs inside the command (CLI start-up time
matters); :data:`COMMANDS` names them for ``infrakit.cli`` to register.
"""

from __future__ import annotations

__all__ = ["COMMANDS"]

COMMANDS = {
    "event": "infrakit.commands.events:event",
    "metadata": "infrakit.commands.metadata:metadata",
    "remote": "infrakit.commands.remotes:remote",
    "template": "infrakit.commands.templates:template",
    "playbook": "infrakit.commands.playbooks:playbook",
}
"""Command name -> ``module:attribute`` of its click command, for lazy registration."""
