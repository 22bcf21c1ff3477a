"""``make image``: the operator image from the project's Dockerfile, with or without a registry.

Where ``python:3.11-slim-bookworm`` is present or can be pulled (a user's machine, GitHub's
runners), it is the ordinary ``docker build .`` every user runs, with the user's builder. Where it
cannot be (our machines: no registry of images is reachable), the build is FROM the stand-in
(:func:`tools.docker.images.python_image`) and offline:

- every dependency is built into a wheel **on the host** (``pip wheel`` with the host's pip
  configuration and trusted CAs, which the build could not see), cached under the state directory
  and keyed by the dependency pins;
- the build context is a tar made here: the files ``.dockerignore`` lets in, plus ``wheels/``;
  the Dockerfile installs from ``/wheels`` with ``--no-index`` when it finds any;
- ``DOCKER_BUILDKIT=0 docker build --network none``: the classic builder (no buildx here), and no
  network at all, which proves nothing is fetched.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import tomllib
from pathlib import Path

from tools.docker.engine import DockerError, Engine, default_state_dir
from tools.docker.images import (
    BUILD_TIMEOUT,
    CONTEXT_PATHS,
    CONTEXT_SKIP,
    IMAGE_PYTHON,
    OFFICIAL_PYTHON,
    OPERATOR_IMAGE,
    PULL_TIMEOUT,
    PYTHON_IMAGE,
    REPO_ROOT,
    Timings,
    cache_key,
    python_image,
)

__all__ = ["build_context", "operator_image", "wheelhouse"]


def _pullable(engine: Engine, ref: str) -> bool:
    if engine.image_exists(ref):
        return True
    try:
        return engine.docker("pull", "--quiet", ref, timeout=PULL_TIMEOUT, check=False).returncode == 0
    except DockerError:
        return False  # the pull hung: as good as unreachable


def wheelhouse(pyproject: Path, *, timings: Timings | None = None) -> Path:
    """Wheels of the project's pinned dependencies and build requirements, built on the host (cached)."""
    timings = timings or Timings()
    if sys.version_info[:2] != IMAGE_PYTHON:
        wanted = ".".join(map(str, IMAGE_PYTHON))
        raise DockerError(f"the image's wheels need Python {wanted} on the host (this is {sys.version.split()[0]})")
    meta = tomllib.loads(pyproject.read_text())
    requirements = [*meta["project"]["dependencies"], *meta["build-system"]["requires"]]
    key = cache_key("wheels", sys.platform, os.uname().machine, *requirements)
    target = default_state_dir() / "wheels" / key
    if (target / ".complete").is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with timings.step("wheels"), tempfile.TemporaryDirectory(prefix=".tmp-", dir=target.parent) as tmp:
        built = Path(tmp) / "wheels"
        command = [sys.executable, "-m", "pip", "wheel", "--quiet", "--wheel-dir", str(built), *requirements]
        proc = subprocess.run(command, capture_output=True, text=True, timeout=900, check=False)
        if proc.returncode != 0:
            raise DockerError(f"pip wheel failed: {(proc.stdout + proc.stderr).strip()[-2000:]}")
        (built / ".complete").touch()
        shutil.rmtree(target, ignore_errors=True)  # an incomplete one
        os.replace(built, target)
    return target


def _skipped(info: tarfile.TarInfo) -> tarfile.TarInfo | None:
    name = Path(info.name).name
    return None if any(name == s or name.endswith(s) for s in CONTEXT_SKIP) else info


def build_context(out: Path, *, root: Path = REPO_ROOT, wheels: Path | None = None) -> None:
    """Write the build context as a tar: the Dockerfile, what .dockerignore admits, and ``wheels/``."""
    # GNU, not PAX: the CLI tells a tar from a Dockerfile by parsing its first 512 bytes as a tar
    # header, and a PAX header (Python writes one for every sub-second mtime) fails that test.
    with tarfile.open(out, "w", format=tarfile.GNU_FORMAT) as tar:
        tar.add(root / "Dockerfile", arcname="Dockerfile")
        for name in CONTEXT_PATHS:
            tar.add(root / name, arcname=name, filter=_skipped)
        if wheels is not None:
            for wheel in sorted(wheels.glob("*.whl")):
                tar.add(wheel, arcname=f"wheels/{wheel.name}")


def operator_image(
    engine: Engine,
    *,
    tag: str = OPERATOR_IMAGE,
    base: str | None = None,
    root: Path = REPO_ROOT,
    timings: Timings | None = None,
) -> str:
    """Build the operator image and return its ID (tests run it by ID: a tag can move under them).

    ``base`` (or ``$PYTHON_IMAGE``) names the Python image; by default the official one when it can
    be had, else the stand-in. Only the stand-in builds offline from host-built wheels.
    """
    timings = timings or Timings()
    base = base or os.environ.get("PYTHON_IMAGE") or None
    if base is None:
        with timings.step(f"look for {OFFICIAL_PYTHON}"):
            base = OFFICIAL_PYTHON if _pullable(engine, OFFICIAL_PYTHON) else python_image(engine, timings=timings)
    with tempfile.TemporaryDirectory(prefix="image-") as tmp:
        iidfile = Path(tmp) / "iid"
        common = ["build", "--build-arg", f"PYTHON_IMAGE={base}", "--iidfile", str(iidfile), "--tag", tag]
        if base != PYTHON_IMAGE:
            with timings.step(f"operator image FROM {base}"):
                network = ["--network=host"] if engine.own else []  # our engine has no bridge for RUN
                engine.docker(*common, *network, str(root), timeout=BUILD_TIMEOUT)
        else:
            wheels = wheelhouse(root / "pyproject.toml", timings=timings)
            context = Path(tmp) / "context.tar"
            build_context(context, root=root, wheels=wheels)
            with timings.step(f"operator image FROM {base} (offline)"), context.open("rb") as stdin:
                engine.docker(
                    *common, "--network=none", "-",
                    stdin=stdin, env={"DOCKER_BUILDKIT": "0"}, timeout=BUILD_TIMEOUT,
                )  # fmt: skip
        return iidfile.read_text().strip()
