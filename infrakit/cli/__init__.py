"""``infrakit-local``: InfraKit's CLI over the local store, a group daemon (a remote) or a cluster.

Rooms, by concern: ``main`` (the root command, its global options, the entry point),
``context`` (where a command works, decided once, and the one choice of the groups'
back end), ``render`` (the one renderer of tables, JSON and YAML, and the one error
mapper), ``names`` (the named URLs of remotes and playbooks, and their add/ls/rm), and
the verb families: ``groups`` (commit, ls, describe, inspect, free, destroy, run),
``plugins`` (plugin ls, each plugin's commands, ``group ...``), ``events``,
``metadata``, ``remotes``, ``playbooks`` and ``templates`` (the template command; the
renderer behind it: ``rendering``, ``sandboxing``, ``templating``, ``fetching``,
``grants``).  A command module is imported when its command is used.
"""

from infrakit.cli.main import cli, main

__all__ = ["cli", "main"]
