"""The images made here without a registry, and the operator image (``make image``).

- :func:`base_image`: ``infrakit-base/bookworm:<key>``, a Debian bookworm root filesystem made by
  ``debootstrap --variant=minbase`` from the mirror apt uses, then ``docker import``-ed.
- :func:`python_image`: ``infrakit-base/python:3.11-slim-bookworm``, FROM that base with
  bookworm's python3 (3.11), venv and pip: the stand-in for the official ``python:3.11-slim-bookworm``.
- :func:`busybox_images`: ``infrakit-test/busybox:1`` and ``:2``, Debian's static busybox alone,
  serving ``/www`` with ``busybox httpd`` (the index page names the tag, so a roll is visible).
- :func:`operator_image`: the project's Dockerfile. Where ``python:3.11-slim-bookworm`` is present or
  can be pulled, a plain ``docker build`` as every user runs it; elsewhere FROM the stand-in, with
  every dependency built into wheels on the host first (the host's pip configuration and CA reach
  the index; the build itself runs with ``--network none``).

Each image carries a label ``io.infrakit.key``, a hash of what it is made from: an image whose key
matches is kept (a warm run costs a few ``docker image inspect`` calls), any other is rebuilt.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import platform
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from tools.docker.engine import DockerError, Engine, default_state_dir

__all__ = [
    "BUSYBOX_REPO",
    "OFFICIAL_PYTHON",
    "OPERATOR_IMAGE",
    "PYTHON_IMAGE",
    "Timings",
    "base_image",
    "busybox_images",
    "cache_key",
    "debian_mirror",
    "python_image",
]

REPO_ROOT = Path(__file__).resolve().parents[2]
RECIPE = "2"  # part of every key: bump it to rebuild the images after changing how they are made
KEY_LABEL = "io.infrakit.key"
SUITE = "bookworm"
BASE_REPO = "infrakit-base/bookworm"
PYTHON_IMAGE = "infrakit-base/python:3.11-slim-bookworm"
PYTHON_PACKAGES = ("python3", "python3-venv", "python3-pip", "python-is-python3", "ca-certificates")
IMAGE_PYTHON = (3, 11)  # bookworm's, and the official image's
OFFICIAL_PYTHON = "python:3.11-slim-bookworm"
BUSYBOX_REPO = "infrakit-test/busybox"
BUSYBOX_VERSIONS = ("1", "2")
BUSYBOX_PORT = 8080
OPERATOR_IMAGE = "infrakit-operator:dev"
# What the operator image is built from: the `!` lines of .dockerignore (tests/image checks both agree).
CONTEXT_PATHS = ("pyproject.toml", "README.md", "crds", "infrakit")
CONTEXT_SKIP = ("__pycache__", ".pyc", ".pyo", ".egg-info")
PULL_TIMEOUT = 120.0
# As Debian's own slim images: no documentation, manual pages or translations (48 MB of the
# 117 MB), now and in every package installed later (dpkg's path-exclude); no apt caches or lists.
DPKG_EXCLUDES = """\
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/groff/*
path-exclude /usr/share/lintian/*
path-exclude /usr/share/locale/*
"""
SLIM = f"""set -e
cd "$1"
printf '%s' '{DPKG_EXCLUDES}' > etc/dpkg/dpkg.cfg.d/infrakit-slim
find usr/share/doc -mindepth 1 ! -name copyright ! -type d -delete
find usr/share/doc -mindepth 1 -type d -empty -delete
rm -rf usr/share/man/* usr/share/info/* usr/share/groff/* usr/share/lintian/* usr/share/locale/*
rm -rf var/cache/apt/archives/*.deb var/cache/apt/*.bin var/lib/apt/lists/* var/log/*.log
"""
BUILD_TIMEOUT = 1800.0


@dataclass
class Timings:
    """Wall time of each step, reported as it ends (``log``) and kept for a summary."""

    log: Callable[[str], None] = lambda line: print(line, file=sys.stderr, flush=True)
    steps: dict[str, float] = field(default_factory=dict)

    @contextlib.contextmanager
    def step(self, name: str) -> Iterator[None]:
        started = time.monotonic()
        self.log(f"{name} ...")
        yield
        self.steps[name] = time.monotonic() - started
        self.log(f"{name}: {self.steps[name]:.1f} s")


def cache_key(*parts: str) -> str:
    return hashlib.sha256("\0".join((RECIPE, *parts)).encode()).hexdigest()[:12]


def _current(engine: Engine, ref: str, key: str) -> bool:
    return engine.label(ref, KEY_LABEL) == key


def _work_dir() -> Path:
    path = default_state_dir() / "build"
    path.mkdir(parents=True, exist_ok=True)
    return path


def _as_root(command: list[str]) -> list[str]:
    if os.geteuid() == 0:
        return command
    if shutil.which("sudo") is None:
        raise DockerError(f"{command[0]} needs root (and there is no sudo)")
    return ["sudo", "-n", *command]


def debian_mirror(*, etc: Path = Path("/etc")) -> str:
    """``$INFRAKIT_DEBIAN_MIRROR``, else the first mirror apt is configured with for bookworm main."""
    if os.environ.get("INFRAKIT_DEBIAN_MIRROR"):
        return os.environ["INFRAKIT_DEBIAN_MIRROR"]
    sources = etc / "apt" / "sources.list.d"
    for path in sorted(sources.glob("*.sources")) if sources.is_dir() else []:
        for stanza in path.read_text(errors="replace").split("\n\n"):
            fields = {}
            for line in stanza.splitlines():
                name, sep, value = line.partition(":")
                if sep and not line.startswith(("#", " ")):
                    fields[name.strip().lower()] = value.split()
            wanted = "deb" in fields.get("types", []) and SUITE in fields.get("suites", [])
            if wanted and "main" in fields.get("components", []) and fields.get("uris"):
                return fields["uris"][0]
    for path in [etc / "apt" / "sources.list", *(sorted(sources.glob("*.list")) if sources.is_dir() else [])]:
        for line in path.read_text(errors="replace").splitlines() if path.is_file() else []:
            words = re.sub(r"\[[^\]]*\]", " ", line.split("#", 1)[0]).split()  # without [options]
            if len(words) >= 4 and words[0] == "deb" and words[2] == SUITE and "main" in words[3:]:
                return words[1]
    return "http://deb.debian.org/debian"


def base_image(engine: Engine, *, timings: Timings | None = None) -> str:
    """``infrakit-base/bookworm:<key>``: debootstrap minbase, apt caches and lists dropped, imported."""
    timings = timings or Timings()
    mirror = debian_mirror()
    arch = platform.machine()
    key = cache_key("base", SUITE, "minbase", mirror, arch)
    tag = f"{BASE_REPO}:{key}"
    if _current(engine, tag, key):
        return tag
    if shutil.which("debootstrap") is None:
        raise DockerError("debootstrap not found: run tools/docker/install.sh")
    debs = default_state_dir() / "debs"  # downloaded packages, kept for the next rebuild
    debs.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="rootfs-", dir=_work_dir()) as tmp:
        rootfs = Path(tmp) / "rootfs"
        with timings.step("debootstrap"):
            # In a mount namespace of its own: the /proc and /sys it mounts in the target die with it.
            command = [
                "unshare", "--mount", "--propagation", "private", "--",
                "debootstrap", "--variant=minbase", f"--cache-dir={debs}", SUITE, str(rootfs), mirror,
            ]  # fmt: skip
            proc = subprocess.run(_as_root(command), capture_output=True, text=True, timeout=900, check=False)
            if proc.returncode != 0:
                raise DockerError(f"debootstrap {SUITE} {mirror} failed: {(proc.stdout + proc.stderr)[-2000:]}")
            subprocess.run(_as_root(["sh", "-c", SLIM, "slim", str(rootfs)]), check=True, timeout=300)
        with timings.step("import base"):
            _import(
                engine,
                ["tar", "--numeric-owner", "-C", str(rootfs), "-cf", "-", "."],
                tag,
                changes=['CMD ["bash"]', "ENV LANG=C.UTF-8", f"LABEL {KEY_LABEL}={key} io.infrakit.mirror={mirror}"],
            )
        with timings.step("remove rootfs"):
            subprocess.run(_as_root(["rm", "-rf", "--one-file-system", str(rootfs)]), check=False, timeout=300)
    listing = engine.docker("image", "ls", "--format", "{{.Repository}}:{{.Tag}}", BASE_REPO).stdout.split()
    stale = [ref for ref in listing if ref != tag]
    if stale:
        engine.docker("image", "rm", *stale, check=False)  # bases made from an older recipe or mirror
    return tag


def _import(engine: Engine, tar_command: list[str], tag: str, *, changes: list[str]) -> None:
    flags = [arg for change in changes for arg in ("--change", change)]
    with subprocess.Popen(_as_root(tar_command), stdout=subprocess.PIPE) as tar:
        try:
            engine.docker("import", *flags, "-", tag, stdin=tar.stdout, timeout=600)
        finally:
            if tar.stdout is not None:
                tar.stdout.close()
        if tar.wait(timeout=60) != 0:
            raise DockerError(f"{' '.join(tar_command[:3])} failed while importing {tag}")


def python_image(engine: Engine, *, timings: Timings | None = None) -> str:
    """``infrakit-base/python:3.11-slim-bookworm``: the base with python3, venv, pip, CA certificates."""
    timings = timings or Timings()
    base = base_image(engine, timings=timings)
    key = cache_key("python", base, *PYTHON_PACKAGES)
    if _current(engine, PYTHON_IMAGE, key):
        return PYTHON_IMAGE
    dockerfile = "\n".join(
        [
            f"FROM {base}",
            "ENV LANG=C.UTF-8",
            "RUN apt-get update \\",
            f" && apt-get install -y --no-install-recommends {' '.join(PYTHON_PACKAGES)} \\",
            " && apt-get clean && rm -rf /var/lib/apt/lists/*",
            f"LABEL {KEY_LABEL}={key}",
            'CMD ["python3"]',
            "",
        ]
    )
    with timings.step("python image"):
        # apt reaches the same mirror as the host, on the host's network (our engine has no bridge).
        engine.docker(
            "build", "--network=host", "--force-rm", "--tag", PYTHON_IMAGE, "-",
            input=dockerfile, env={"DOCKER_BUILDKIT": "0"}, timeout=BUILD_TIMEOUT,
        )  # fmt: skip
    return PYTHON_IMAGE


def _busybox_binary() -> tuple[Path, str]:
    """Debian's static busybox and its package version."""
    query = ["dpkg-query", "--show", "--showformat=${Version}", "busybox-static"]
    proc = subprocess.run(query, capture_output=True, text=True, check=False)
    binary = Path("/bin/busybox")
    if proc.returncode != 0 or not binary.is_file():
        raise DockerError("busybox-static is not installed: run tools/docker/install.sh")
    return binary, proc.stdout.strip()


def _busybox_tar(binary: Path, version: str, applets: list[str]) -> bytes:
    """A root filesystem of busybox alone; /www/index.html names the image's version."""
    buffer = io.BytesIO()
    mtime = 1_700_000_000  # fixed: the same files make the same layer

    def add(name: str, *, data: bytes | None = None, mode: int = 0o644, kind: bytes = tarfile.REGTYPE) -> None:
        info = tarfile.TarInfo(name)
        info.mtime, info.mode, info.type = mtime, mode, kind
        if kind == tarfile.SYMTYPE:
            info.linkname = "busybox"
        info.size = len(data or b"")
        tar.addfile(info, io.BytesIO(data) if data else None)

    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for directory, mode in (("bin", 0o755), ("etc", 0o755), ("tmp", 0o1777), ("var", 0o755), ("www", 0o755)):
            add(directory, mode=mode, kind=tarfile.DIRTYPE)
        add("var/lib", mode=0o755, kind=tarfile.DIRTYPE)  # InfraKit's docker plugin copies Init there
        add("bin/busybox", data=binary.read_bytes(), mode=0o755)
        for applet in applets:
            add(f"bin/{applet}", kind=tarfile.SYMTYPE, mode=0o777)
        add("etc/passwd", data=b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n")
        add("etc/group", data=b"root:x:0:\nnogroup:x:65534:\n")
        add("www/index.html", data=f"infrakit-test/busybox:{version}\n".encode())
        add("www/version", data=f"{version}\n".encode())
    return buffer.getvalue()


def busybox_images(engine: Engine, *, timings: Timings | None = None) -> dict[str, str]:
    """``{"1": "infrakit-test/busybox:1", "2": ...:2}``: busybox httpd on 127.0.0.1:8080 serving /www."""
    timings = timings or Timings()
    binary, package = _busybox_binary()
    applets = subprocess.run([str(binary), "--list"], capture_output=True, text=True, check=True).stdout.split()
    applets = [a for a in applets if a and "/" not in a and a != "busybox"]
    made = {}
    for version in BUSYBOX_VERSIONS:
        tag = f"{BUSYBOX_REPO}:{version}"
        key = cache_key("busybox", package, version, hashlib.sha256(binary.read_bytes()).hexdigest())
        made[version] = tag
        if _current(engine, tag, key):
            continue
        with timings.step(f"busybox image {version}"), tempfile.TemporaryFile() as tar:
            tar.write(_busybox_tar(binary, version, applets))
            tar.seek(0)
            changes = [
                "ENV PATH=/bin",
                f'CMD ["httpd", "-f", "-p", "127.0.0.1:{BUSYBOX_PORT}", "-h", "/www"]',
                f"LABEL {KEY_LABEL}={key} io.infrakit.test.version={version}",
            ]
            engine.docker("import", *[a for c in changes for a in ("--change", c)], "-", tag, stdin=tar, timeout=120)
    return made
