"""``python -m infrakit.controlplane``: same as the ``infrakit-controlplane`` command."""

from infrakit.controlplane.cli import main

if __name__ == "__main__":
    main()
