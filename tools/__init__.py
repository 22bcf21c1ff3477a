"""Developer and CI tooling that is not part of the shipped package (``infrakit*`` only ships).

``tools/controlplane`` is the Go source of the test control plane; ``tools/docker`` is the
Docker engine harness and the locally made images (``python -m tools.docker --help``).
"""
