"""The offline build's context: what .dockerignore admits (and wheels/), in a tar the CLI takes for one."""

from __future__ import annotations

import tarfile
from pathlib import Path

from tools.docker.images import CONTEXT_PATHS, REPO_ROOT
from tools.docker.operator_image import build_context


def test_the_context_holds_what_dockerignore_admits() -> None:
    lines = [line.strip() for line in (REPO_ROOT / ".dockerignore").read_text().splitlines()]
    admitted = {line[1:].rstrip("/") for line in lines if line.startswith("!")}
    assert admitted == set(CONTEXT_PATHS)
    assert "*" in lines  # everything else is left out, as in a plain `docker build .`


def test_the_context_is_a_tar_the_cli_recognizes(tmp_path: Path) -> None:
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    (wheels / "example-1.0-py3-none-any.whl").write_bytes(b"not really a wheel")
    (REPO_ROOT / "infrakit" / "__pycache__").mkdir(exist_ok=True)
    out = tmp_path / "context.tar"
    build_context(out, wheels=wheels)
    with tarfile.open(out) as tar:
        names = tar.getnames()
    assert names[0] == "Dockerfile"
    assert "wheels/example-1.0-py3-none-any.whl" in names
    assert {name.split("/")[0] for name in names} == {"Dockerfile", "wheels", *CONTEXT_PATHS}
    assert not [name for name in names if "__pycache__" in name or name.endswith((".pyc", ".egg-info"))]
    # `docker build -` tells a tar from a Dockerfile by reading its first 512 bytes as one tar
    # header: a PAX header there (Python's default format) made it parse the tar as a Dockerfile.
    header = out.read_bytes()[:512]
    assert header[:11] == b"Dockerfile\0" and header[156:157] == tarfile.REGTYPE  # Dockerfile's own header
