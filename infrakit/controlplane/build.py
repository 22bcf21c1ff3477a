"""Build and cache the control-plane binary (kube-apiserver + embedded etcd).

The Go module lives in ``tools/controlplane`` (or ``$INFRAKIT_CONTROLPLANE_SRC``).
Its binary is built once with ``go build`` and cached under
``${INFRAKIT_CACHE:-~/.cache/infrakit}/controlplane/<sha256>/controlplane``, the
key being a hash of go.mod, go.sum, every ``*.go`` file and the build recipe.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

BINARY_NAME = "controlplane"
# Bump when the build command changes so that cached binaries are rebuilt.
RECIPE_VERSION = "1"


class ControlPlaneError(RuntimeError):
    """The control plane could not be built, started or reached."""


def source_dir() -> Path:
    """Where the Go module is: $INFRAKIT_CONTROLPLANE_SRC or <repo>/tools/controlplane."""
    env = os.environ.get("INFRAKIT_CONTROLPLANE_SRC")
    src = Path(env) if env else Path(__file__).resolve().parents[2] / "tools" / "controlplane"
    if not (src / "go.mod").is_file():
        raise ControlPlaneError(f"control-plane Go module not found at {src} (set INFRAKIT_CONTROLPLANE_SRC)")
    return src


def cache_root() -> Path:
    """``${INFRAKIT_CACHE:-~/.cache/infrakit}/controlplane``."""
    base = os.environ.get("INFRAKIT_CACHE") or str(Path.home() / ".cache" / "infrakit")
    return Path(base).expanduser() / "controlplane"


def kubernetes_version(src: Path) -> str:
    """The k8s.io/kubernetes version the module pins (e.g. ``v1.37.2``)."""
    match = re.search(r"^\s*k8s\.io/kubernetes\s+(v\d+\.\d+\.\d+\S*)", (src / "go.mod").read_text(), re.MULTILINE)
    if not match:
        raise ControlPlaneError(f"no k8s.io/kubernetes requirement in {src / 'go.mod'}")
    return match.group(1)


def source_hash(src: Path) -> str:
    """sha256 over the recipe version, go.mod, go.sum and all .go files."""
    digest = hashlib.sha256(f"recipe {RECIPE_VERSION}\n".encode())
    files = [src / "go.mod", src / "go.sum", *sorted(src.rglob("*.go"))]
    for path in files:
        if path.is_file():
            digest.update(f"{path.relative_to(src).as_posix()}\n".encode())
            digest.update(hashlib.sha256(path.read_bytes()).hexdigest().encode())
    return digest.hexdigest()


def ldflags(version: str) -> str:
    """Strip symbols and stamp the Kubernetes version, as the upstream build does."""
    major, minor = version.lstrip("v").split(".")[:2]
    stamps = {
        "k8s.io/component-base/version.gitVersion": version,
        "k8s.io/component-base/version.gitMajor": major,
        "k8s.io/component-base/version.gitMinor": minor,
        "k8s.io/component-base/version.gitTreeState": "clean",
        "k8s.io/client-go/pkg/version.gitVersion": version,
        "k8s.io/client-go/pkg/version.gitMajor": major,
        "k8s.io/client-go/pkg/version.gitMinor": minor,
    }
    return " ".join(["-s", "-w", *(f"-X {k}={v}" for k, v in stamps.items())])


def cached_binary(*, src: Path | None = None) -> Path:
    """Path the binary has (or would have) in the cache."""
    src = src or source_dir()
    return cache_root() / source_hash(src) / BINARY_NAME


def build(*, src: Path | None = None, force: bool = False, log: Path | None = None) -> Path:
    """Return the cached binary, building it first if needed.

    Concurrent callers serialize on a lock file; the binary appears atomically.
    """
    src = src or source_dir()
    target = cached_binary(src=src)
    if target.is_file() and not force:
        return target
    go = shutil.which("go")
    if go is None:
        raise ControlPlaneError(
            "the `go` toolchain is not on PATH; it is needed once to build the control plane "
            f"from {src} (install Go >= 1.26)"
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target.parent / "build.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if target.is_file() and not force:
            return target
        log = log or target.parent / "build.log"
        tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=".build-")) / BINARY_NAME
        cmd = [go, "build", "-trimpath", f"-ldflags={ldflags(kubernetes_version(src))}", "-o", str(tmp), "."]
        with open(log, "w") as out:
            proc = subprocess.run(cmd, cwd=src, stdout=out, stderr=subprocess.STDOUT, check=False)
        if proc.returncode != 0:
            shutil.rmtree(tmp.parent, ignore_errors=True)
            tail = "".join(log.read_text(errors="replace").splitlines(keepends=True)[-40:])
            raise ControlPlaneError(f"go build failed (exit {proc.returncode}), log {log}:\n{tail}")
        tmp.replace(target)
        shutil.rmtree(tmp.parent, ignore_errors=True)
    return target
