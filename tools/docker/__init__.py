"""The Docker harness: an engine for tests and ``make image``, and the images made without a registry.

- :mod:`tools.docker.engine`: find an engine, or start and share our own dockerd (``acquire``).
- :mod:`tools.docker.images`: the bookworm base, the Python stand-in and the busybox images.
- :mod:`tools.docker.operator_image`: the operator image, online or offline.
- ``tools/docker/install.sh``: Debian's docker.io, debootstrap and busybox-static.
- ``python -m tools.docker``: the same from the command line (up, down, env, status, images, image).
"""
