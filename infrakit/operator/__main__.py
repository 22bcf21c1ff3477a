"""``infrakit-operator``: run the kopf operator (``python -m infrakit.operator`` too)."""

from __future__ import annotations

import asyncio
import os
import socket
from pathlib import Path

import click
import kopf

from infrakit import logs
from infrakit.operator import handlers

__all__ = ["main"]


@click.command(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option(
    "--dir",
    "instance_dir",
    envvar="INFRAKIT_INSTANCE_DIR",
    type=click.Path(path_type=Path),
    default="/var/lib/infrakit/instances",
    show_default=True,
    help="Instance directory of the file plugin (the mounted volume).",
)
@click.option(
    "-n", "--namespace", "namespaces", multiple=True, help="Watch this namespace (repeatable; globs allowed)."
)
@click.option("-A", "--all-namespaces", is_flag=True, help="Watch every namespace (the default with no --namespace).")
@click.option(
    "--plugins-dir",
    envvar="INFRAKIT_PLUGINS_DIR",
    type=click.Path(path_type=Path),
    default=None,
    help="Where plugin daemons listen (a sidecar's shared emptyDir, say): a plugin name with a socket "
    "or address file there is used through the plugin protocol, else the built-in.",
)
@click.option(
    "--scanning/--no-scanning",
    default=True,
    show_default=True,
    help="Let kopf watch the CRD (served once installed, even after the start) and the namespaces (for "
    "--namespace globs); needs cluster-wide list/watch on both. Without it, the API is listed once at start.",
)
@click.option(
    "--liveness",
    default="http://0.0.0.0:8080/healthz",
    show_default=True,
    help="Liveness endpoint URL ('' to disable).",
)
@click.option(
    "--metrics-port", type=int, default=9090, show_default=True, help="Prometheus metrics port (0 to disable)."
)
@click.option(
    "--resync", type=click.FloatRange(min=1), default=30.0, show_default=True, help="Seconds between full resyncs."
)
@click.option("--workers", type=click.IntRange(min=1), default=2, show_default=True, help="Groups synced in parallel.")
@click.option(
    "--leader-election/--no-leader-election", default=True, show_default=True, help="Act only while holding the Lease."
)
@click.option("--lease-namespace", envvar="POD_NAMESPACE", default="default", show_default=True)
@click.option("--lease-name", default="infrakit-operator", show_default=True)
@click.option(
    "--lease-duration", type=click.FloatRange(min=1), default=15.0, show_default=True, help="Seconds a Lease holds."
)
@click.option(
    "--identity", envvar="POD_NAME", default=None, help="This replica's name in the Lease [default: host-pid]."
)
@click.option(
    "--fsync/--no-fsync",
    "durable",
    envvar="INFRAKIT_FSYNC",
    default=False,
    show_default=True,
    help="fsync every instance file.",
)
@click.option(
    "--log", "log_level", type=click.IntRange(0, 5), default=4, show_default=True, help="0 panic ... 4 info, 5 debug."
)
@click.option("--log-format", type=click.Choice(["term", "json"]), default="term", show_default=True)
def main(
    instance_dir: Path,
    namespaces: tuple[str, ...],
    all_namespaces: bool,
    plugins_dir: Path | None,
    scanning: bool,
    liveness: str,
    metrics_port: int,
    resync: float,
    workers: int,
    leader_election: bool,
    lease_namespace: str,
    lease_name: str,
    lease_duration: float,
    identity: str | None,
    durable: bool,
    log_level: int,
    log_format: str,
) -> None:
    """Reconcile infrakit.io Groups: provision, heal, roll and destroy their instances."""
    logs.configure(level=log_level, fmt=log_format, frameworks=("kopf", "aiohttp"))
    clusterwide = all_namespaces or not namespaces
    config = handlers.Config(
        plugin_options={"instance-file": {"dir": str(instance_dir.absolute()), "fsync": durable}},
        namespaces=() if clusterwide else namespaces,
        scanning=scanning,
        plugins_dir=plugins_dir,
        resync=resync,
        workers=workers,
        metrics_port=metrics_port,
        leader_election=leader_election,
        lease_namespace=lease_namespace,
        lease_name=lease_name,
        lease_duration=lease_duration,
        identity=identity or f"{socket.gethostname()}-{os.getpid()}",
    )
    asyncio.run(
        kopf.operator(
            standalone=True,  # one acting replica is ensured by our Lease, not kopf's peering
            # Our identity, or kopf asks getpass, which fails for a UID with no passwd entry.
            # (kopf's Identity is a NewType of str that kopf does not export.)
            identity=config.identity,  # type: ignore[arg-type]
            clusterwide=clusterwide,
            namespaces=() if clusterwide else namespaces,
            liveness_endpoint=liveness or None,
            memo=kopf.Memo(operator=handlers.Operator(config)),
        )
    )


if __name__ == "__main__":
    main()
