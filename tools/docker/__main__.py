"""``python -m tools.docker``: our Docker engine and the locally made images, from the command line.

    up        start our dockerd (or reuse it) and hold it until ``down``; prints ``export DOCKER_HOST=...``
    down      release ``up``'s hold; the daemon stops once nobody else (a test session) holds it
    env       ``export DOCKER_HOST=...`` for the engine the harness would use now (starts nothing)
    status    which engine, who holds it, its images
    images    make the base, Python stand-in and busybox images (kept when current)
    image     build the operator image (``make image``)

Commands that need an engine and find none running start ours for their own duration only.
"""

from __future__ import annotations

import os
import shlex
import sys
from collections.abc import Callable
from pathlib import Path

import click

from tools.docker import engine as engines
from tools.docker import images
from tools.docker import operator_image as operator


def _fail(err: Exception) -> None:
    click.echo(f"error: {err}", err=True)
    sys.exit(1)


@click.group(help=__doc__.split("\n\n")[0] if __doc__ else None)
@click.option(
    "--state-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Our dockerd's state directory [default: $INFRAKIT_DOCKER_STATE or ~/.cache/infrakit/docker].",
)
@click.pass_context
def main(ctx: click.Context, state_dir: Path | None) -> None:
    ctx.obj = engines.Daemon((state_dir or engines.default_state_dir()).resolve())


@main.command()
@click.pass_obj
def up(daemon: engines.Daemon) -> None:
    """Start our dockerd (or reuse it) and keep it until `down`."""
    try:
        with daemon.locked():
            daemon.holders()
            daemon.ensure_running()
            (daemon.users / engines.MANUAL).touch()
    except (engines.DockerError, OSError) as err:
        _fail(err)
    click.echo(f"export DOCKER_HOST={shlex.quote(daemon.host)}")


@main.command()
@click.option("--force", is_flag=True, help="Stop it even while test sessions hold it.")
@click.pass_obj
def down(daemon: engines.Daemon, force: bool) -> None:
    """Release `up`'s hold; stop the daemon unless a test session still holds it."""
    with daemon.locked():
        (daemon.users / engines.MANUAL).unlink(missing_ok=True)
        others = daemon.holders()
        if others and not force:
            click.echo(f"still held by {len(others)} session(s): left running (--force stops it)", err=True)
            return
        daemon.stop()
    click.echo("stopped", err=True)


@main.command()
@click.pass_obj
def env(daemon: engines.Daemon) -> None:
    """Print `export DOCKER_HOST=...` for the engine in use now."""
    for host in (os.environ.get("DOCKER_HOST"), engines.DEFAULT_HOST, daemon.host):
        if host and engines.ping(host):
            click.echo(f"export DOCKER_HOST={shlex.quote(host)}")
            return
    _fail(engines.DockerError("no engine answers: `python -m tools.docker up` starts ours"))


@main.command()
@click.pass_obj
def status(daemon: engines.Daemon) -> None:
    """Say which engine answers, who holds ours, and list its images."""
    with daemon.locked():
        holders = daemon.holders()
    running = daemon.answering()
    click.echo(f"state dir: {daemon.state_dir}")
    click.echo(f"our dockerd: {'running, pid ' + str(daemon.pid()) if running else 'not running'}")
    click.echo(f"held by: {', '.join(holders) or 'nobody'}")
    if running:
        listing = daemon.engine().docker("image", "ls", "--format", "{{.Repository}}:{{.Tag}}\t{{.Size}}")
        click.echo(listing.stdout, nl=False)


def _with_engine(daemon: engines.Daemon, work: Callable[[engines.Engine], None]) -> None:
    try:
        with engines.acquire(state_dir=daemon.state_dir) as engine:
            work(engine)
    except (engines.DockerError, OSError) as err:
        _fail(err)


@main.command("images")
@click.option("--python/--no-python", "with_python", default=True, help="Also the Python stand-in (debootstrap).")
@click.pass_obj
def make_images(daemon: engines.Daemon, with_python: bool) -> None:
    """Make the locally built images (kept when current) and print their tags."""

    def work(engine: engines.Engine) -> None:
        timings = images.Timings()
        made = list(images.busybox_images(engine, timings=timings).values())
        if with_python:
            made += [images.base_image(engine, timings=timings), images.python_image(engine, timings=timings)]
        click.echo("\n".join(made))

    _with_engine(daemon, work)


@main.command("image")
@click.option("--tag", default=images.OPERATOR_IMAGE, show_default=True)
@click.option("--base", default=None, help="The Python image to build FROM [default: $PYTHON_IMAGE, else auto].")
@click.pass_obj
def make_operator_image(daemon: engines.Daemon, tag: str, base: str | None) -> None:
    """Build the operator image (`make image`)."""

    def work(engine: engines.Engine) -> None:
        image_id = operator.operator_image(engine, tag=tag, base=base)
        click.echo(f"{tag} {image_id}")

    _with_engine(daemon, work)


if __name__ == "__main__":
    main()
