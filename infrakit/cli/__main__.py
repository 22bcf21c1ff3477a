"""``python -m infrakit.cli``: ``infrakit-local``."""

from infrakit.cli.main import main

main()
