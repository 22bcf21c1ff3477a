"""The images made here: what their tags promise, kept when current, from the mirror apt uses."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.docker.conftest import fetch, free_port
from tests.dockerfixtures import DockerImages
from tests.e2e.conftest import wait_until
from tools.docker import engine as engines
from tools.docker import images


def _run(engine: engines.Engine, image: str, *command: str) -> str:
    return engine.docker("run", "--rm", "--network=none", image, *command, timeout=60).stdout


def test_busybox_versions_serve_pages_that_tell_them_apart(
    docker_engine: engines.Engine, busybox_images: dict[str, str]
) -> None:
    assert busybox_images == {"1": "infrakit-test/busybox:1", "2": "infrakit-test/busybox:2"}
    ports = {version: free_port() for version in busybox_images}
    started = []
    try:
        for version, tag in busybox_images.items():
            serve = ["httpd", "-f", "-p", f"127.0.0.1:{ports[version]}", "-h", "/www"]
            started.append(docker_engine.docker("run", "--detach", "--network=host", tag, *serve).stdout.strip())
        for version, port in ports.items():
            page = wait_until(lambda port=port: fetch(f"http://127.0.0.1:{port}/"), timeout=30, what="httpd")
            assert page == f"infrakit-test/busybox:{version}\n"
    finally:
        if started:
            docker_engine.docker("rm", "--force", *started)
    # What InfraKit's docker plugin needs to copy its Init script in, and the default command.
    assert _run(docker_engine, busybox_images["2"], "ls", "-d", "/tmp", "/var/lib").split() == ["/tmp", "/var/lib"]
    config = docker_engine.docker("image", "inspect", "--format", "{{json .Config.Cmd}}", busybox_images["1"])
    assert config.stdout.strip() == '["httpd","-f","-p","127.0.0.1:8080","-h","/www"]'


def test_python_stand_in_is_bookworms_python_with_venv_pip_and_cas(
    docker_engine: engines.Engine, docker_images: DockerImages
) -> None:
    assert docker_images.python == "infrakit-base/python:3.11-slim-bookworm"
    script = (
        "set -e; python --version; python -m venv /tmp/v; "
        "/tmp/v/bin/python -c 'import ssl; print(ssl.OPENSSL_VERSION)'; "
        "pip --version >/dev/null; test -s /etc/ssl/certs/ca-certificates.crt; "
        "ls /var/lib/apt/lists | grep -v -x -e partial -e lock | wc -l; "
        "find /usr/share/doc -type f ! -name copyright | wc -l; ls /usr/share/locale | wc -l"
    )
    lines = _run(docker_engine, docker_images.python, "sh", "-c", script).split("\n")
    assert lines[0].startswith("Python 3.11.")
    assert lines[1].startswith("OpenSSL")
    assert lines[2:5] == ["0", "0", "0"], "apt lists, documentation or translations were kept"
    release = _run(docker_engine, docker_images.base, "cat", "/etc/debian_version")
    assert release.startswith("12.")


def test_current_images_are_kept(docker_engine: engines.Engine, docker_images: DockerImages) -> None:
    def ids() -> list[str]:
        refs = [*docker_images.busybox.values(), docker_images.base, docker_images.python]
        return docker_engine.docker("image", "inspect", "--format", "{{.Id}}", *refs).stdout.split()

    before = ids()
    timings = images.Timings(log=lambda _: None)
    assert images.busybox_images(docker_engine, timings=timings) == docker_images.busybox
    assert images.python_image(docker_engine, timings=timings) == docker_images.python
    assert timings.steps == {}, "a current image was made again"
    assert ids() == before


def test_the_mirror_is_the_one_apt_uses(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("INFRAKIT_DEBIAN_MIRROR", raising=False)
    apt = tmp_path / "apt"
    (apt / "sources.list.d").mkdir(parents=True)
    assert images.debian_mirror(etc=tmp_path) == "http://deb.debian.org/debian"  # nothing configured
    (apt / "sources.list").write_text(
        "# deb http://commented.example/debian bookworm main\n"
        "deb [signed-by=/usr/share/keyrings/k.gpg arch=amd64] http://list.example/debian bookworm main contrib\n"
    )
    assert images.debian_mirror(etc=tmp_path) == "http://list.example/debian"
    (apt / "sources.list.d" / "debian.sources").write_text(
        "Types: deb\nURIs: http://security.example/debian-security\nSuites: bookworm-security\nComponents: main\n\n"
        "Types: deb-src\nURIs: http://src.example/debian\nSuites: bookworm\nComponents: main\n\n"
        "Types: deb\n# a comment\nURIs: http://sources.example/debian\nSuites: bookworm bookworm-updates\n"
        "Components: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n"
    )
    assert images.debian_mirror(etc=tmp_path) == "http://sources.example/debian"
    monkeypatch.setenv("INFRAKIT_DEBIAN_MIRROR", "http://override.example/debian")
    assert images.debian_mirror(etc=tmp_path) == "http://override.example/debian"


def test_the_base_is_made_from_the_mirror_this_machine_uses(
    docker_engine: engines.Engine, docker_images: DockerImages
) -> None:
    mirror = images.debian_mirror()
    assert docker_engine.label(docker_images.base, "io.infrakit.mirror") == mirror
    sources = _run(docker_engine, docker_images.base, "cat", "/etc/apt/sources.list").split()
    assert sources[:3] == ["deb", mirror, "bookworm"]
    proc = subprocess.run(["dpkg", "--print-architecture"], capture_output=True, text=True, check=True)
    assert _run(docker_engine, docker_images.base, "dpkg", "--print-architecture").strip() == proc.stdout.strip()
