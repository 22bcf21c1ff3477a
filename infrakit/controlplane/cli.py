"""``infrakit-controlplane``: run a local kube-apiserver + etcd in the background.

``up`` starts it detached and prints the kubeconfig path, ``down`` stops it and
removes its state, ``status`` reports on it, ``build`` only builds the binary.
State lives in ``--state-dir`` (default ``${INFRAKIT_HOME:-~/.infrakit}/controlplane``).
"""

from __future__ import annotations

import os
import shlex
import sys
import time
from pathlib import Path

import click

from infrakit.controlplane.build import ControlPlaneError, build
from infrakit.controlplane.server import load, remove_state_dir, start


def _home(sub: str) -> Path:
    home = os.environ.get("INFRAKIT_HOME") or str(Path.home() / ".infrakit")
    return Path(home).expanduser() / sub


def default_state_dir() -> Path:
    return _home("controlplane")


state_dir_option = click.option(
    "--state-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=default_state_dir,
    show_default="${INFRAKIT_HOME:-~/.infrakit}/controlplane",
    help="Directory for certs, etcd data, kubeconfig, log and pid file.",
)


@click.group()
def main() -> None:
    """Run a real local Kubernetes control plane (kube-apiserver + etcd)."""


@main.command("build")
@click.option("--force", is_flag=True, help="Rebuild even if a cached binary exists.")
def build_cmd(force: bool) -> None:
    """Build (or find cached) the control-plane binary and print its path."""
    try:
        click.echo(build(force=force))
    except ControlPlaneError as err:
        raise click.ClickException(str(err)) from err


@main.command()
@state_dir_option
@click.option("--timeout", default=120.0, show_default=True, help="Seconds to wait for readiness.")
def up(state_dir: Path, timeout: float) -> None:
    """Start the control plane in the background and print its kubeconfig path."""
    existing = load(state_dir)
    if existing is not None and existing.alive():
        click.echo(f"already running (pid {existing.pid}) at {existing.server}", err=True)
        cp = existing
    else:
        try:
            binary = build()
            started = time.monotonic()
            cp = start(state_dir=state_dir, binary=binary, detach=True, timeout=timeout)
        except ControlPlaneError as err:
            raise click.ClickException(str(err)) from err
        click.echo(f"started (pid {cp.pid}) at {cp.server} in {time.monotonic() - started:.1f}s", err=True)
    click.echo(f"export KUBECONFIG={shlex.quote(str(cp.kubeconfig))}", err=True)
    click.echo(cp.kubeconfig)


@main.command()
@state_dir_option
def down(state_dir: Path) -> None:
    """Stop the control plane and remove its state directory."""
    cp = load(state_dir)
    try:
        if cp is not None:
            was_running = cp.alive()
            cp.stop(remove=True)
            click.echo(f"stopped (pid {cp.pid})" if was_running else "was not running; state removed", err=True)
        else:
            remove_state_dir(state_dir)
            click.echo("not running", err=True)
    except ControlPlaneError as err:
        raise click.ClickException(str(err)) from err


@main.command()
@state_dir_option
def status(state_dir: Path) -> None:
    """Report whether the control plane runs and is ready (exit 1 if not)."""
    cp = load(state_dir)
    if cp is None or not cp.alive():
        click.echo("stopped")
        sys.exit(1)
    ready = cp.ready()
    click.echo(f"{'running' if ready else 'not ready'} pid={cp.pid} server={cp.server}")
    click.echo(f"kubeconfig={cp.kubeconfig}")
    sys.exit(0 if ready else 1)


def default_node_dir() -> Path:
    return _home("node")


node_dir_option = click.option(
    "--state-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=default_node_dir,
    show_default="${INFRAKIT_HOME:-~/.infrakit}/node",
    help="Directory of the node's control plane (controlplane/) and node (node/).",
)


@main.group("node")
def node_group() -> None:
    """A control plane with a node (containerd, kubelet, controller manager, scheduler); needs root."""


@node_group.command("up")
@node_dir_option
@click.option("--timeout", default=120.0, show_default=True, help="Seconds to wait for each part.")
def node_up(state_dir: Path, timeout: float) -> None:
    """Start a control plane (with ServiceAccount tokens) and a node in the background."""
    from infrakit.controlplane import node

    existing = node.load(state_dir / "node")
    cp = load(state_dir / "controlplane")
    if existing is not None and existing.alive() and cp is not None and cp.alive():
        click.echo(f"already running: node {existing.name}", err=True)
    else:
        started = time.monotonic()
        try:
            if existing is not None:
                existing.stop()
            if cp is not None:
                cp.stop(remove=True)
            cp = start(state_dir=state_dir / "controlplane", detach=True, timeout=timeout, service_accounts=True)
            try:
                existing = node.start(cp, state_dir=state_dir / "node", detach=True, timeout=timeout)
            except BaseException:
                cp.stop(remove=True)
                raise
        except ControlPlaneError as err:
            raise click.ClickException(str(err)) from err
        click.echo(f"node {existing.name} Ready in {time.monotonic() - started:.1f}s", err=True)
    click.echo(f"export KUBECONFIG={shlex.quote(str(cp.kubeconfig))}", err=True)
    click.echo(cp.kubeconfig)


@node_group.command("down")
@node_dir_option
def node_down(state_dir: Path) -> None:
    """Stop the node and its control plane; remove their state."""
    from infrakit.controlplane import node

    found = node.load(state_dir / "node")
    cp = load(state_dir / "controlplane")
    try:
        if found is not None:
            found.stop()
        if cp is not None:
            cp.stop(remove=True)
    except ControlPlaneError as err:
        raise click.ClickException(str(err)) from err
    if state_dir.is_dir() and not any(state_dir.iterdir()):
        state_dir.rmdir()
    click.echo("stopped" if found or cp else "not running", err=True)
