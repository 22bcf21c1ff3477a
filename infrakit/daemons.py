"""The plugin daemons of InfraKit's tutorial: ``infrakit-group-default``, ``infrakit-instance-file``,
``infrakit-flavor-vanilla``; and ``infrakit-instance-docker``, InfraKit's docker example, with its flags.

``infrakit-group-default`` serves ``Group/0.1.0`` and ``Metadata/0.1.0`` as ``group``
over the local store (``--home``, as ``infrakit-local``) and runs the reconcile runtime
in the same process (:mod:`infrakit.local.serving`): it replaces ``infrakit-local run``.
The others each serve one of our built-in plugins over the plugin protocol
(:mod:`infrakit.rpc.server`) on a unix socket in the plugins directory, named as in
InfraKit (``instance-file``, ``flavor-vanilla``) or ``--name``; ``--listen host:port``
serves on TCP instead and writes the ``<name>.listen`` discovery file, and
``--token-file`` (``$INFRAKIT_TOKEN_FILE``) makes TCP callers show a token
(:mod:`infrakit.rpc.guarding` says what is and is not protected).  Exit codes: 0
stopped by SIGTERM/SIGINT, 1 cannot listen (a live daemon has the name...), 2 bad
options.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from infrakit import options

__all__ = [
    "flavor_vanilla",
    "flavor_vanilla_main",
    "group_default",
    "group_default_main",
    "instance_docker",
    "instance_docker_main",
    "instance_file",
    "instance_file_main",
]


def _listen(ctx: click.Context, param: click.Parameter, value: str | None) -> tuple[str, int] | None:
    if value is None:
        return None
    from infrakit.rpc import server

    try:
        return server.parse_listen(value)
    except ValueError as error:
        raise click.BadParameter(str(error)) from None


def _token(ctx: click.Context, param: click.Parameter, value: Path | None) -> str | None:
    if value is None:
        return None
    import logging
    import stat

    from infrakit.rpc import client

    try:
        token = client.read_token(value)
    except ValueError as error:
        raise click.BadParameter(str(error)) from None
    try:
        if value.stat().st_mode & (stat.S_IRWXG | stat.S_IRWXO):
            logging.getLogger("infrakit.rpc").warning(
                "the token file %s is readable by other users: chmod 600 it", value
            )
    except OSError:
        pass
    return token


def _common(default_name: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    def decorate(function: Callable[..., Any]) -> Callable[..., Any]:
        made = [
            click.option(
                "--name",
                default=default_name,
                show_default=True,
                help="Serve under this name (the socket's file name).",
            ),
            click.option(
                "--listen",
                metavar="HOST:PORT",
                callback=_listen,
                help="Listen on TCP instead of a unix socket (a bare port binds 127.0.0.1); "
                "no authentication unless --token-file.",
            ),
            click.option(
                "--token-file",
                "token",
                envvar="INFRAKIT_TOKEN_FILE",
                type=click.Path(dir_okay=False, path_type=Path),
                callback=_token,
                help="With --listen: require the token in this file (Authorization: Bearer) from every TCP "
                "caller ($INFRAKIT_TOKEN_FILE; our clients send the one that variable names). InfraKit's "
                "own CLI sends none.",
            ),
        ]
        function = options.log(function)  # listed last
        for option in reversed(made):
            function = option(function)
        return function

    return decorate


def _serve(
    *, services: Any, name: str, listen: tuple[str, int] | None, token: str | None, log_level: int, log_format: str
) -> None:
    from infrakit import logs
    from infrakit.rpc import server

    logs.configure(level=log_level, fmt=log_format, frameworks=("aiohttp",))
    raise SystemExit(server.run(services, name=name, listen=listen, access=server.Access(token=token)))


def _file_mode(ctx: click.Context, param: click.Parameter, value: str) -> int:
    from infrakit.plugins import permissions

    try:
        return permissions.parse_file_mode(value)
    except ValueError as error:
        raise click.BadParameter(str(error)) from None


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@options.directory(
    name="directory",
    file_okay=False,
    help="Directory of the instance files, created (0700) on first use ($INFRAKIT_INSTANCE_DIR) "
    "[default: $INFRAKIT_HOME/instances, as infrakit-local; never a shared temporary directory]. "
    "Refused if other users may write in it.",
)
@click.option(
    "--file-mode",
    envvar="INFRAKIT_FILE_MODE",
    default="0600",
    show_default=True,
    callback=_file_mode,
    help="Mode of the instance files ($INFRAKIT_FILE_MODE): 0640 or 0644 let the group or others read them "
    "(their Init scripts too); only the owner ever writes.",
)
@_common("instance-file")
def instance_file(
    directory: Path | None,
    file_mode: int,
    name: str,
    listen: tuple[str, int] | None,
    token: str | None,
    log_level: int,
    log_format: str,
) -> None:
    """Serve the file instance plugin (Instance/0.5.0): one JSON file per instance in --dir."""
    import functools

    from infrakit.plugins import instance_file as plugin
    from infrakit.rpc import resolving, server

    folder = options.instance_dir() if directory is None else directory.absolute()
    services = [
        server.instance_service(
            plugin.FilePlugin(directory=folder, durable=True, file_mode=file_mode),
            properties=functools.partial(resolving.file_properties, folder),
        )
    ]
    _serve(services=services, name=name, listen=listen, token=token, log_level=log_level, log_format=log_format)


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--url",
    envvar="DOCKER_HOST",
    default="unix:///var/run/docker.sock",
    show_default=True,
    help="Docker API URL ($DOCKER_HOST): unix:///path or tcp://host:port (TLS with $DOCKER_TLS_VERIFY).",
)
@click.option("--version", "api_version", default="1.25", show_default=True, help="Docker API version.")
@click.option(
    "--namespace-tags",
    multiple=True,
    metavar="KEY=VALUE",
    help="Tags every container carries and every describe filters by (repeatable, or comma-separated).",
)
@click.option(
    "--retries",
    type=click.IntRange(0, 10),
    default=2,
    show_default=True,
    help="Retries of an idempotent Docker API call while the engine cannot be reached.",
)
@click.option(
    "--labels-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Where labels added after creation are recorded (Docker's are immutable) "
    "[default: $INFRAKIT_HOME/instance-docker].",
)
@click.option(
    "--pull-timeout", type=click.FloatRange(min=0.1), default=300.0, show_default=True, help="Seconds a pull may take."
)
@click.option(
    "--init-timeout",
    type=click.FloatRange(min=0.1),
    default=60.0,
    show_default=True,
    help="Seconds the Init script may run in a new container.",
)
@_common("instance-docker")
def instance_docker(
    url: str,
    api_version: str,
    namespace_tags: tuple[str, ...],
    retries: int,
    labels_dir: Path | None,
    pull_timeout: float,
    init_timeout: float,
    name: str,
    listen: tuple[str, int] | None,
    token: str | None,
    log_level: int,
    log_format: str,
) -> None:
    """Serve the Docker instance plugin (Instance/0.5.0): each instance a container."""
    from infrakit.plugins import instance_docker as plugin
    from infrakit.plugins import spi
    from infrakit.rpc import server

    try:
        made = plugin.create(
            {
                "url": url,
                "version": api_version,
                "namespace": plugin.parse_namespace(",".join(namespace_tags)),
                "labels_dir": str(labels_dir.absolute()) if labels_dir is not None else None,
                "pull_timeout": pull_timeout,
                "init_timeout": init_timeout,
                "retries": retries,
            }
        )
    except (ValueError, spi.PluginError) as error:
        raise click.UsageError(str(error)) from None
    services = [server.instance_service(made, concurrent=True)]
    _serve(services=services, name=name, listen=listen, token=token, log_level=log_level, log_format=log_format)


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@_common("flavor-vanilla")
def flavor_vanilla(
    name: str, listen: tuple[str, int] | None, token: str | None, log_level: int, log_format: str
) -> None:
    """Serve the vanilla flavor plugin (Flavor/0.1.0): init lines, tags and attachments."""
    from infrakit.plugins import flavor_vanilla as plugin
    from infrakit.rpc import server

    _serve(
        services=[server.flavor_service(plugin.VanillaPlugin())],
        name=name,
        listen=listen,
        token=token,
        log_level=log_level,
        log_format=log_format,
    )


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@options.home(what=": the store shared with infrakit-local")
@options.directory(
    help="Instance directory of the built-in file plugin for groups committed here "
    "($INFRAKIT_INSTANCE_DIR) [default: HOME/instances]; a running instance-file daemon has its own.",
)
@options.timers
@_common("group")
def group_default(
    home: Path,
    instance_dir: Path | None,
    resync: float,
    poll: float,
    name: str,
    listen: tuple[str, int] | None,
    token: str | None,
    log_level: int,
    log_format: str,
) -> None:
    """Serve the group plugin (Group/0.1.0, Metadata/0.1.0) and reconcile every group continuously."""
    import os

    from infrakit import logs

    logs.configure(level=log_level, fmt=log_format, frameworks=("aiohttp",))
    home = home.expanduser()
    explicit = os.environ.get("INFRAKIT_PLUGINS_DIR")
    plugins_dir = Path(explicit).expanduser() if explicit else home / "plugins"
    folder = (instance_dir or home / "instances").expanduser().absolute()
    raise SystemExit(
        _run_group(
            home=home,
            folder=folder,
            plugins_dir=plugins_dir,
            name=name,
            listen=listen,
            token=token,
            resync=resync,
            poll=poll,
        )
    )


def _run_group(
    *,
    home: Path,
    folder: Path,
    plugins_dir: Path,
    name: str,
    listen: tuple[str, int] | None,
    token: str | None,
    resync: float,
    poll: float,
) -> int:
    import asyncio
    import contextlib
    import logging
    import signal

    from infrakit import plugins
    from infrakit.local import controller as controllers
    from infrakit.local import serving, store
    from infrakit.rpc import resolving, server
    from infrakit.runtime import events, running

    log = logging.getLogger("infrakit.local")
    registry = plugins.Registry(defaults={"instance-file": {"fsync": False}}, locate=resolving.locator(plugins_dir))
    controller = controllers.Controller(store=store.Store(home), registry=registry)
    controller.verbose = True  # the daemon's log is what a foreground controller shows
    broker = events.Broker(catalog=lambda: [t for n in controller.store.names() for t in events.group_topics(n)])
    controller.syncer.publisher = broker  # its syncs (the runtime's and the calls') publish to the event endpoint

    def options(plugin: str) -> dict[str, Any]:
        return {"dir": str(folder)} if plugin == "instance-file" else {}

    async def main() -> list[str]:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        runtime = running.Runtime(syncer=controller.syncer, resync=resync, poll=poll, may_act=lambda: not stop.is_set())
        groups = serving.LocalGroups(controller=controller, runtime=runtime, loop=loop, options=options)
        tasks: list[asyncio.Task[None]] = []

        def start(address: str) -> None:  # the name is ours: only now reconcile
            groups = controller.store.groups_dir
            log.info("reconciling the groups of %s (resync every %ss, poll every %ss)", groups, resync, poll)
            tasks.append(asyncio.ensure_future(runtime.run(ready=asyncio.Event())))

        try:
            await server.serve(
                server.group_services(groups, events=broker),
                name=name,
                stop=stop,
                directory=plugins_dir,
                listen=listen,
                on_ready=start,
                access=server.Access(token=token),
            )
        finally:
            for task in tasks:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        return await runtime.drain(running.STOP_GRACE)

    try:
        stuck = asyncio.run(main())
    except server.ListenError as error:
        log.error("%s", error)
        return 1
    finally:
        registry.close()
    if stuck:
        log.warning("stopped after %gs without %s: stuck in a plugin call", running.STOP_GRACE, ", ".join(stuck))
        return 1
    return 0


def group_default_main() -> None:
    group_default(prog_name="infrakit-group-default")


def instance_file_main() -> None:
    instance_file(prog_name="infrakit-instance-file")


def instance_docker_main() -> None:
    instance_docker(prog_name="infrakit-instance-docker")


def flavor_vanilla_main() -> None:
    flavor_vanilla(prog_name="infrakit-flavor-vanilla")


if __name__ == "__main__":  # python -m infrakit.daemons group-default|instance-file|instance-docker|flavor-vanilla
    import sys

    commands = {
        "group-default": group_default_main,
        "instance-file": instance_file_main,
        "instance-docker": instance_docker_main,
        "flavor-vanilla": flavor_vanilla_main,
    }
    if len(sys.argv) < 2 or sys.argv[1] not in commands:
        sys.exit(
            "usage: python -m infrakit.daemons group-default|instance-file|instance-docker|flavor-vanilla [options]"
        )
    chosen = commands[sys.argv.pop(1)]
    chosen()
