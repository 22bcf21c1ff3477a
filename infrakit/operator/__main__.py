"""``infrakit-operator``: run the kopf operator (``python -m infrakit.operator`` too).

Endpoints, each on its own address so that each can be exposed (or not) on its own:

* ``--liveness`` (kopf's health server, ``/healthz``): the process answers;
* ``--readiness`` (``/readyz``, :mod:`infrakit.operator.readiness`): the cache is
  synced, the first pass done, and the Lease known (leader or standby);
* ``--metrics-bind-address`` (Prometheus, ``/metrics``).

All three default to loopback (``127.0.0.1``), safer than the all-interfaces of earlier
versions: a process run by hand on a workstation or a node does not publish its groups'
names and counts, nor its state, to the network.  The Deployment passes all-interfaces
addresses (``:9090``, ``http://0.0.0.0:8080/healthz``...), which its Service and the
kubelet's probes need.

With no credentials (no in-cluster service account, no kubeconfig) it exits at once
with one line and exit code 2: kopf would otherwise log a traceback and retry for ever.
"""

from __future__ import annotations

import asyncio
import os
import re
import socket
from pathlib import Path

import click

from infrakit import logs, options

__all__ = ["main"]


@click.command(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@options.directory(
    default="/var/lib/infrakit/instances", help="Instance directory of the file plugin (the mounted volume)."
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
    default="http://127.0.0.1:8080/healthz",
    show_default=True,
    help="Liveness endpoint URL ('' to disable); loopback by default, as metrics: a pod's probes need "
    "http://0.0.0.0:8080/healthz (the manifests say so).",
)
@click.option(
    "--readiness",
    default="http://127.0.0.1:8081/readyz",
    show_default=True,
    help="Readiness endpoint URL ('' to disable): 200 once the Groups are cached and synced once and the "
    "Lease is known (leader or standby), else 503; the body says why. Loopback by default (the manifests "
    "pass http://0.0.0.0:8081/readyz for the kubelet's probe).",
)
@click.option(
    "--metrics-bind-address",
    "metrics_address",
    default="127.0.0.1:9090",
    show_default=True,
    help="HOST:PORT of the Prometheus metrics server (':9090' for every interface, as a Service needs; "
    "'0' to disable).",
)
@click.option(
    "--metrics-port",
    type=int,
    default=None,
    hidden=True,
    help="Deprecated: the port of --metrics-bind-address (0 to disable).",
)
@options.timers
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
    "--cluster-id",
    envvar="INFRAKIT_CLUSTER_ID",
    default=None,
    callback=lambda context, param, value: _check_cluster_id(value),
    help="This cluster's identity, tagged on every instance its Groups make (infrakit.cluster): an operator "
    "touches no instance of another cluster's, nor one without it [default: read from --cluster-id-source].",
)
@click.option(
    "--cluster-id-source",
    type=click.Choice(["kube-system", "service-account"]),
    default="kube-system",
    show_default=True,
    help="Where the cluster's identity is read when --cluster-id is not given: the UID of the kube-system "
    "namespace (needs get on it), or of the operator's service account (no cluster-wide permission: the "
    "namespaced overlay).",
)
@options.durability(help="fsync every instance file.")
@options.log
def main(
    instance_dir: Path,
    namespaces: tuple[str, ...],
    all_namespaces: bool,
    plugins_dir: Path | None,
    scanning: bool,
    liveness: str,
    readiness: str,
    metrics_address: str,
    metrics_port: int | None,
    resync: float,
    poll: float,
    workers: int,
    leader_election: bool,
    lease_namespace: str,
    lease_name: str,
    lease_duration: float,
    identity: str | None,
    cluster_id: str | None,
    cluster_id_source: str,
    durable: bool,
    log_level: int,
    log_format: str,
) -> None:
    """Reconcile infrakit.io Groups: provision, heal, roll and destroy their instances."""
    _fewer_malloc_arenas()
    logs.configure(level=log_level, fmt=log_format, frameworks=("kopf", "aiohttp"))
    metrics_host, metrics_port = _bind_address(metrics_address, port=metrics_port)
    _check_credentials(log_format)
    cluster = _cluster_identity(cluster_id, cluster_id_source, log_format)
    import kopf  # heavy: after the checks, so that a bad start fails fast

    from infrakit.operator import handlers

    clusterwide = all_namespaces or not namespaces
    config = handlers.Config(
        plugin_options={"instance-file": {"dir": str(instance_dir.absolute()), "fsync": durable}},
        namespaces=() if clusterwide else namespaces,
        scanning=scanning,
        plugins_dir=plugins_dir,
        resync=resync,
        poll=poll,
        workers=workers,
        metrics_host=metrics_host,
        metrics_port=metrics_port,
        readiness=readiness,
        leader_election=leader_election,
        lease_namespace=lease_namespace,
        lease_name=lease_name,
        lease_duration=lease_duration,
        identity=identity or f"{socket.gethostname()}-{os.getpid()}",
        cluster=cluster,
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


def _fewer_malloc_arenas() -> None:
    """Two malloc arenas, as ``MALLOC_ARENA_MAX=2`` (unless the environment sets it): before any thread.

    glibc gives threads their own arenas (up to 8 per core), and memory freed in one is not
    reused by another: the sync workers read and write 100,000 small files, and the peak
    RSS at 1,000 groups x 100 instances measured ~300 MB with the default, ~240 MB with two.
    """
    if "MALLOC_ARENA_MAX" in os.environ:
        return
    try:
        import ctypes

        ctypes.CDLL(None).mallopt(_M_ARENA_MAX, 2)
    except (OSError, AttributeError):  # not glibc
        pass


_M_ARENA_MAX = -8  # glibc's malloc.h


def _bind_address(address: str, *, port: int | None) -> tuple[str, int]:
    """``HOST:PORT``, ``:PORT`` (every interface) or ``0`` (off); ``--metrics-port`` overrides the port."""
    if address.strip() == "0":
        return "", 0 if port is None else port
    host, colon, number = address.rpartition(":")
    if not colon or not number.isdigit() or int(number) > 65535:
        raise click.BadParameter(
            f"{address!r}: expected HOST:PORT, :PORT (every interface) or 0 (off), e.g. 127.0.0.1:9090",
            param_hint="'--metrics-bind-address'",
        )
    host = host.strip("[]") or "0.0.0.0"  # noqa: S104 - ':PORT' asks for every interface, as in controller-runtime
    return host, int(number) if port is None else port


def _check_credentials(log_format: str) -> None:
    """Exit 2 with one line when there is no way to reach an API server."""
    from infrakit.cluster import kubeapi

    try:
        kubeapi.connect().close()  # type: ignore[no-untyped-call]
    except kubeapi.ConfigException as error:
        text = (str(error).strip().splitlines() or ["no configuration"])[0]
        logs.fail(
            f"no Kubernetes credentials: not in a cluster (no service account token) and no usable kubeconfig "
            f"({text}): set KUBECONFIG (or write ~/.kube/config), or run it in a pod",
            code=2,
            fmt=log_format,
        )


_CLUSTER_ID = re.compile(r"[A-Za-z0-9]([A-Za-z0-9._-]{0,61}[A-Za-z0-9])?")
_IDENTITY_TRIES = (1.0, 2.0, 5.0, 10.0, 10.0)  # seconds between reads of kube-system while the API is down


def _check_cluster_id(value: str | None) -> str | None:
    if value is not None and not _CLUSTER_ID.fullmatch(value):
        raise click.BadParameter(
            f"{value!r}: 1-63 letters, digits, '.', '_' or '-', starting and ending with a letter or digit "
            "(it becomes the instances' infrakit.cluster tag)",
            param_hint="'--cluster-id'",
        )
    return value


def _cluster_identity(given: str | None, source: str, log_format: str) -> str:
    """``--cluster-id``, else the UID ``source`` names; exit 2 when neither can be had."""
    if given is not None:
        return given
    import time

    from infrakit.cluster import kubeapi

    for pause in (*_IDENTITY_TRIES, None):
        try:
            api = kubeapi.connect(agent=kubeapi.OPERATOR_FIELD_MANAGER)
            try:
                return kubeapi.cluster_identity(api, source=source)
            finally:
                api.close()  # type: ignore[no-untyped-call]
        except kubeapi.ApiException as error:
            if error.status in (401, 403, 404):
                where = (
                    "the UID of namespace kube-system"
                    if source == "kube-system"
                    else "the UID of the operator's service account"
                )
                fix = (
                    "grant get on namespaces/kube-system, or pass --cluster-id-source=service-account"
                    if source == "kube-system"
                    else "run it as a service account"
                )
                logs.fail(
                    f"cannot read the cluster's identity, {where} ({error.status} {error.reason}): {fix}, or pass "
                    "--cluster-id NAME, a name unique among the clusters whose operators share instance plugins",
                    code=2,
                    fmt=log_format,
                )
            problem = f"{error.status} {error.reason}"
        except Exception as error:  # the API server is not there yet: a pod may start before it
            problem = (str(error).strip().splitlines() or [type(error).__name__])[0][:200]
        if pause is None:
            logs.fail(f"cannot read the cluster's identity ({source}): {problem}", code=1, fmt=log_format)
        time.sleep(pause)
    raise AssertionError("unreachable")


if __name__ == "__main__":
    main()
