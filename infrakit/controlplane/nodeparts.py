"""Build and cache what a node needs besides the control-plane binary: CNI plugins and pause.

- the CNI plugins ``bridge``, ``host-local`` and ``loopback``, from the pinned
  ``github.com/containernetworking/plugins`` module (``go install pkg@version``, ~10 s);
- the pause binary, from ``build/pause/linux/pause.c`` in the pinned ``k8s.io/kubernetes``
  module, with ``gcc -Os -static``;
- the pause image: a ``docker save``-format tar of that one binary, for ``ctr images import``
  (no registry, no Docker engine needed).

They are cached under ``${INFRAKIT_CACHE:-~/.cache/infrakit}/node/<sha256>/``, the key a hash of
the recipe, the plugins' version and pause.c. kubelet, kube-controller-manager and kube-scheduler
are in the control-plane binary itself (``controlplane kubelet ...``, build.py). containerd and
runc are Debian's (``tools/docker/install.sh``).
"""

from __future__ import annotations

import fcntl
import hashlib
import io
import json
import os
import shutil
import subprocess
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

from infrakit.controlplane.build import ControlPlaneError, cache_root, kubernetes_version, source_dir

CNI_MODULE = "github.com/containernetworking/plugins"
CNI_VERSION = "v1.10.0"
CNI_PLUGINS = ("plugins/main/bridge", "plugins/ipam/host-local", "plugins/main/loopback")
PAUSE_IMAGE = "infrakit.local/pause:3.10"
# Bump when a recipe below changes so that cached parts are rebuilt.
RECIPE_VERSION = "1"


@dataclass(frozen=True)
class NodeParts:
    """The cached parts: ``cni`` (a directory of plugins), ``pause`` and ``pause_image`` (a tar)."""

    root: Path

    @property
    def cni(self) -> Path:
        return self.root / "cni"

    @property
    def pause(self) -> Path:
        return self.root / "pause"

    @property
    def pause_image(self) -> Path:
        return self.root / "pause-image.tar"


def _module_dir(version: str) -> Path:
    gomodcache = subprocess.run(["go", "env", "GOMODCACHE"], capture_output=True, text=True, check=True).stdout.strip()
    return Path(gomodcache) / f"k8s.io/kubernetes@{version}"


def _pause_source(version: str) -> Path:
    path = _module_dir(version) / "build" / "pause" / "linux" / "pause.c"
    if not path.is_file():
        subprocess.run(["go", "mod", "download", f"k8s.io/kubernetes@{version}"], check=True, capture_output=True)
    if not path.is_file():
        raise ControlPlaneError(f"no pause.c at {path}")
    return path


def parts_hash(pause_c: Path) -> str:
    digest = hashlib.sha256(f"recipe {RECIPE_VERSION}\ncni {CNI_MODULE}@{CNI_VERSION}\n".encode())
    digest.update(" ".join(CNI_PLUGINS).encode())
    digest.update(hashlib.sha256(pause_c.read_bytes()).hexdigest().encode())
    return digest.hexdigest()


def build_parts() -> NodeParts:
    """Return the cached parts, building them first if needed (serialized on a lock file)."""
    for tool in ("go", "gcc"):
        if shutil.which(tool) is None:
            raise ControlPlaneError(f"`{tool}` is not on PATH; it is needed once to build the node's parts")
    version = kubernetes_version(source_dir())
    pause_c = _pause_source(version)
    root = cache_root().parent / "node" / parts_hash(pause_c)
    parts = NodeParts(root)
    if parts.pause_image.is_file():
        return parts
    root.mkdir(parents=True, exist_ok=True)
    with open(root / "build.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if parts.pause_image.is_file():
            return parts
        tmp = Path(tempfile.mkdtemp(dir=root, prefix=".build-"))
        try:
            _build_into(tmp, pause_c, version, root / "build.log")
            for name in ("cni", "pause"):
                dest = root / name
                if dest.is_dir():
                    shutil.rmtree(dest)
                (tmp / name).replace(dest)
            (tmp / "pause-image.tar").replace(parts.pause_image)  # last: it marks the parts complete
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return parts


def _build_into(out: Path, pause_c: Path, version: str, log: Path) -> None:
    env = {**os.environ, "GOBIN": str(out / "cni"), "CGO_ENABLED": "0"}
    commands = [
        (
            ["go", "install", "-trimpath", "-ldflags=-s -w", *(f"{CNI_MODULE}/{p}@{CNI_VERSION}" for p in CNI_PLUGINS)],
            env,
        ),
        (["gcc", "-Os", "-static", "-s", f"-DVERSION={version}", "-o", str(out / "pause"), str(pause_c)], None),
    ]
    with open(log, "w") as output:
        for cmd, cmd_env in commands:
            output.write(f"$ {' '.join(cmd)}\n")
            output.flush()
            proc = subprocess.run(cmd, env=cmd_env, stdout=output, stderr=subprocess.STDOUT, check=False, cwd=out)
            if proc.returncode != 0:
                tail = "".join(log.read_text(errors="replace").splitlines(keepends=True)[-30:])
                raise ControlPlaneError(f"{cmd[0]} failed (exit {proc.returncode}), log {log}:\n{tail}")
    (out / "pause-image.tar").write_bytes(image_tar(PAUSE_IMAGE, {"pause": (out / "pause").read_bytes()}, ["/pause"]))


def image_tar(tag: str, files: dict[str, bytes], entrypoint: list[str]) -> bytes:
    """A one-layer image in ``docker save`` format: ``files`` (all executable) at the root."""
    layer = io.BytesIO()
    with tarfile.open(fileobj=layer, mode="w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), 0o755, 0
            tar.addfile(info, io.BytesIO(data))
    layer_bytes = layer.getvalue()
    config = {
        "architecture": "amd64",
        "os": "linux",
        "config": {"Entrypoint": entrypoint, "User": "65535:65535"},
        "rootfs": {"type": "layers", "diff_ids": [f"sha256:{hashlib.sha256(layer_bytes).hexdigest()}"]},
        "history": [{"created_by": "infrakit nodeparts"}],
    }
    config_bytes = json.dumps(config).encode()
    config_name = f"{hashlib.sha256(config_bytes).hexdigest()}.json"
    manifest = [{"Config": config_name, "RepoTags": [tag], "Layers": ["layer.tar"]}]
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        for name, data in (
            ("layer.tar", layer_bytes),
            (config_name, config_bytes),
            ("manifest.json", json.dumps(manifest).encode()),
        ):
            info = tarfile.TarInfo(name)
            info.size, info.mtime = len(data), 0
            tar.addfile(info, io.BytesIO(data))
    return out.getvalue()
