"""pytest plugin: a Docker engine and the locally made images, for the tests that ask for them.

Fixtures (all session-scoped):

- ``docker_engine``: a :class:`tools.docker.engine.Engine`: ``.host`` (the ``DOCKER_HOST``),
  ``.env`` (``os.environ`` with it), ``.docker(*args)`` (the CLI, output captured), ``.own``.
  It is ``$DOCKER_HOST`` if set, else a daemon answering on ``/var/run/docker.sock``, else our own
  dockerd (``tools/docker/engine.py``: no bridge, no iptables, no kernel setting touched; use
  ``--network host`` with 127.0.0.1 and distinct ports, or ``--network none``).
- ``docker_host``: that engine's ``DOCKER_HOST`` string.
- ``busybox_images``: ``{"1": "infrakit-test/busybox:1", "2": "infrakit-test/busybox:2"}``; both
  run ``busybox httpd -f -p 127.0.0.1:8080 -h /www`` by default (give another ``-p`` for another
  port), and ``/www/index.html`` says ``infrakit-test/busybox:<n>``.
- ``docker_images``: :class:`DockerImages`: ``.busybox`` as above, ``.base`` (Debian bookworm
  minbase) and ``.python`` (``infrakit-base/python:3.11-slim-bookworm``).
- ``operator_image``: the operator image's ID, built as ``make image`` builds it.

The engine is taken, and the images made, when collection ends if a selected test needs them
(so that no per-test timeout covers a first debootstrap), else at first use. Our dockerd is
released at the end of the session: the last holder removes every container and stops it.
If no engine or image can be had the test is skipped, or fails when ``$CI`` is set. Tests
using these fixtures get the ``docker`` marker (``pytest -m "not docker"`` runs without).

Register with ``pytest_plugins = ["tests.dockerfixtures"]`` in tests/conftest.py.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from typing import Any, NoReturn

import pytest

from tools.docker import engine as engines
from tools.docker import images
from tools.docker.operator_image import operator_image as build_operator_image

FIXTURES = ("docker_engine", "docker_host", "busybox_images", "docker_images", "operator_image")
_ENGINE = pytest.StashKey[engines.Lease]()
_MADE = pytest.StashKey[dict[str, Any]]()
_ERRORS = pytest.StashKey[dict[str, str]]()


@dataclass(frozen=True)
class DockerImages:
    """Tags of the locally made images."""

    busybox: dict[str, str]
    base: str
    python: str


def _unavailable(reason: str) -> NoReturn:
    """Skip, or fail under CI, when Docker or an image cannot be had."""
    if os.environ.get("CI"):
        pytest.fail(reason, pytrace=False)
    pytest.skip(reason)


def _uses(item: pytest.Item, *fixtures: str) -> bool:
    return bool(set(fixtures) & set(getattr(item, "fixturenames", ())))


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if _uses(item, *FIXTURES):
            item.add_marker(pytest.mark.docker)


def _engine(config: pytest.Config) -> engines.Engine:
    errors = config.stash.setdefault(_ERRORS, {})
    if "engine" in errors:
        _unavailable(errors["engine"])
    if _ENGINE not in config.stash:
        try:
            config.stash[_ENGINE] = engines.acquire()
        except (engines.DockerError, OSError) as err:
            errors["engine"] = f"no Docker engine: {err}"
            _unavailable(errors["engine"])
    return config.stash[_ENGINE].engine


def _made(config: pytest.Config, what: str) -> Any:
    """An image (or set of them) made once per session; a failure is remembered, not retried."""
    made = config.stash.setdefault(_MADE, {})
    errors = config.stash.setdefault(_ERRORS, {})
    if what in errors:
        _unavailable(errors[what])
    if what not in made:
        engine = _engine(config)
        reporter = config.pluginmanager.get_plugin("terminalreporter")
        timings = images.Timings(log=reporter.write_line if reporter else (lambda line: None))
        try:
            if what == "busybox":
                made[what] = images.busybox_images(engine, timings=timings)
            elif what == "python":
                made[what] = (images.base_image(engine, timings=timings), images.python_image(engine, timings=timings))
            elif what == "operator":
                made[what] = build_operator_image(engine, tag=images.OPERATOR_IMAGE, timings=timings)
        except (engines.DockerError, OSError) as err:
            errors[what] = f"cannot make the {what} image: {err}"
            _unavailable(errors[what])
    return made[what]


def pytest_collection_finish(session: pytest.Session) -> None:
    """Take the engine and make the images up front if a selected test needs them."""
    if session.config.option.collectonly:
        return
    needed = {
        "busybox": ("busybox_images", "docker_images"),
        "python": ("docker_images",),
        "operator": ("operator_image",),
    }
    wanted = [what for what, fixtures in needed.items() if any(_uses(i, *fixtures) for i in session.items)]
    if not wanted and not any(_uses(i, *FIXTURES) for i in session.items):
        return
    for what in ["engine", *wanted]:
        with contextlib.suppress(pytest.skip.Exception, pytest.fail.Exception):
            # A failure is remembered: each test that needs the engine or image reports it.
            _engine(session.config) if what == "engine" else _made(session.config, what)


def pytest_sessionfinish(session: pytest.Session) -> None:
    lease = session.config.stash.get(_ENGINE, None)
    if lease is not None:
        lease.release()
        del session.config.stash[_ENGINE]


@pytest.fixture(scope="session")
def docker_engine(pytestconfig: pytest.Config) -> engines.Engine:
    return _engine(pytestconfig)


@pytest.fixture(scope="session")
def docker_host(docker_engine: engines.Engine) -> str:
    return docker_engine.host


@pytest.fixture(scope="session")
def busybox_images(pytestconfig: pytest.Config) -> dict[str, str]:
    return dict(_made(pytestconfig, "busybox"))


@pytest.fixture(scope="session")
def docker_images(pytestconfig: pytest.Config, busybox_images: dict[str, str]) -> DockerImages:
    base, python = _made(pytestconfig, "python")
    return DockerImages(busybox=busybox_images, base=base, python=python)


@pytest.fixture(scope="session")
def operator_image(pytestconfig: pytest.Config) -> str:
    return str(_made(pytestconfig, "operator"))
