"""The file instance plugin (InfraKit's ``instance-file``): one JSON file per instance in a directory.

Its rooms: :mod:`.plugin` (the instance SPI, and what it refuses to write),
:mod:`.documents` (what an instance file holds: the format, read and written, and the
recovery of a damaged one), :mod:`.listing` (what ``describe`` keeps of the directory,
and how it stays exact), :mod:`.directory` (the one inotify watch of the directory,
shared by the listing and the change feeds).  Whom it trusts in the directory is
:mod:`infrakit.plugins.permissions`.
"""

from infrakit.plugins.instance_file.documents import MAX_FILE
from infrakit.plugins.instance_file.listing import RACY_NS, REVALIDATE, REVALIDATE_JOURNALED
from infrakit.plugins.instance_file.plugin import MAX_PROPERTIES, NAME, FilePlugin, create, stored_spec

__all__ = [
    "MAX_FILE",
    "MAX_PROPERTIES",
    "NAME",
    "RACY_NS",
    "REVALIDATE",
    "REVALIDATE_JOURNALED",
    "FilePlugin",
    "create",
    "stored_spec",
]
