"""``infrakit-operator``'s start: its options, and a clear end when no API server can be reached.

In: the command line and the environment (no kubeconfig, not in a pod). Out: the exit
code and what is printed on stderr (one line, no traceback, in the log format asked).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import click
import pytest

from infrakit.operator import __main__ as operator_main


def run(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KUBERNETES_", "KUBECONFIG"))}
    env.update(HOME=str(tmp_path), KUBECONFIG=str(tmp_path / "no-such-kubeconfig"))
    return subprocess.run(
        [sys.executable, "-m", "infrakit.operator", "--dir", str(tmp_path / "instances"), *args],
        env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


def test_no_kubeconfig_is_one_line_and_exit_2(tmp_path: Path) -> None:
    result = run(tmp_path)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.startswith("Error: no Kubernetes credentials")
    assert "KUBECONFIG" in result.stderr
    assert "Traceback" not in result.stderr


def test_no_kubeconfig_in_json(tmp_path: Path) -> None:
    result = run(tmp_path, "--log-format", "json")
    assert result.returncode == 2
    (line,) = result.stderr.splitlines()
    entry = json.loads(line)
    assert entry["level"] == "error" and entry["exit_code"] == 2
    assert entry["msg"].startswith("no Kubernetes credentials")


@pytest.mark.parametrize("value", ["has space", "-dash-first", "x" * 64, "ünïcode", ""])
def test_a_bad_cluster_id_is_one_line_and_exit_2_before_anything(tmp_path: Path, value: str) -> None:
    result = run(tmp_path, "--cluster-id", value)
    assert result.returncode == 2, result.stderr
    assert "--cluster-id" in result.stderr and "Traceback" not in result.stderr
    assert "credentials" not in result.stderr  # refused before anything else is looked at


@pytest.mark.parametrize(
    ("address", "port", "expected"),
    [
        ("127.0.0.1:9090", None, ("127.0.0.1", 9090)),
        (":9090", None, ("0.0.0.0", 9090)),
        ("[::1]:8443", None, ("::1", 8443)),
        ("0", None, ("", 0)),
        ("127.0.0.1:9090", 0, ("127.0.0.1", 0)),  # the deprecated --metrics-port 0 still turns it off
        ("127.0.0.1:9090", 9191, ("127.0.0.1", 9191)),
    ],
)
def test_metrics_bind_address(address: str, port: int | None, expected: tuple[str, int]) -> None:
    assert operator_main._bind_address(address, port=port) == expected


def test_the_metrics_default_is_loopback() -> None:
    option = next(p for p in operator_main.main.params if p.name == "metrics_address")
    assert option.default == "127.0.0.1:9090"


@pytest.mark.parametrize(
    ("name", "default"), [("liveness", "http://127.0.0.1:8080/healthz"), ("readiness", "http://127.0.0.1:8081/readyz")]
)
def test_the_probe_defaults_are_loopback_too(name: str, default: str) -> None:
    # Issue 19, F12: they were 0.0.0.0; the manifests pass every interface explicitly (test_manifests).
    option = next(p for p in operator_main.main.params if p.name == name)
    assert option.default == default


@pytest.mark.parametrize("address", ["9090", "localhost", "host:port", ":70000"])
def test_a_bad_metrics_bind_address_names_the_option(address: str) -> None:
    with pytest.raises(click.BadParameter, match="expected HOST:PORT"):
        operator_main._bind_address(address, port=None)


def test_the_operator_asks_glibc_for_two_malloc_arenas(monkeypatch: pytest.MonkeyPatch) -> None:
    """Peak RSS at 100,000 instances: ~300 MB with a malloc arena per thread, ~240 MB with two."""
    import ctypes

    from infrakit.operator import __main__ as entry

    calls: list[tuple[int, int]] = []

    class Libc:
        def mallopt(self, option: int, value: int) -> int:
            calls.append((option, value))
            return 1

    monkeypatch.setattr(ctypes, "CDLL", lambda name: Libc())
    monkeypatch.delenv("MALLOC_ARENA_MAX", raising=False)
    entry._fewer_malloc_arenas()
    assert calls == [(-8, 2)]
    monkeypatch.setenv("MALLOC_ARENA_MAX", "4")  # the environment decides
    entry._fewer_malloc_arenas()
    assert calls == [(-8, 2)]
