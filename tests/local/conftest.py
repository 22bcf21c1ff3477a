"""Fixtures for the local mode: the CLI run in-process on a private ``$INFRAKIT_HOME``.

In: command lines, as a user types them. Out: exit codes, stdout/stderr, and the files
in the store and the instance directory.
"""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from infrakit import cli


@dataclasses.dataclass
class Local:
    home: Path

    @property
    def instances(self) -> Path:
        return self.home / "instances"

    def __call__(self, *args: str, code: int = 0, input: bytes | None = None) -> Result:
        result = CliRunner().invoke(cli.cli, list(args), input=input, catch_exceptions=False)
        assert result.exit_code == code, f"exit {result.exit_code}, stdout={result.stdout!r} stderr={result.stderr!r}"
        return result

    def rows(self, *args: str) -> list[list[str]]:
        """A table command's rows (no header), split into columns."""
        return [line.split() for line in self(*args, "-q").stdout.splitlines()]

    def files(self) -> set[str]:
        return {p.name for p in self.instances.iterdir()} if self.instances.exists() else set()


@pytest.fixture
def local(home: Path) -> Local:
    return Local(home=home)


def start_runner(home: Path) -> subprocess.Popen[str]:
    """``infrakit-local run`` in the background; returns once it says it is ready."""
    process = subprocess.Popen(
        [sys.executable, "-m", "infrakit.cli", "run", "--resync", "60"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert process.stdout is not None
    for line in process.stdout:
        if line.rstrip().endswith("ready"):
            return process
    raise AssertionError(f"infrakit-local run exited with {process.wait()} before it was ready")


@pytest.fixture
def runner_factory(home: Path) -> Iterator[Callable[[], subprocess.Popen[str]]]:
    """Start ``infrakit-local run`` on demand; killed at teardown if still running."""
    started: list[subprocess.Popen[str]] = []

    def start() -> subprocess.Popen[str]:
        started.append(start_runner(home))
        return started[-1]

    yield start
    for process in started:
        if process.poll() is None:
            process.kill()
            process.wait()
