"""The plugin daemons of InfraKit's tutorial: ``infrakit-instance-file``, ``infrakit-flavor-vanilla``.

Each serves one of our built-in plugins over the plugin protocol
(:mod:`infrakit.rpc.server`) on a unix socket in the plugins directory, named as in
InfraKit (``instance-file``, ``flavor-vanilla``) or ``--name``; ``--listen host:port``
serves on TCP instead and writes the ``<name>.listen`` discovery file.  Exit codes: 0
stopped by SIGTERM/SIGINT, 1 cannot listen (a live daemon has the name...), 2 bad
options.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

__all__ = ["flavor_vanilla", "flavor_vanilla_main", "instance_file", "instance_file_main"]


def _listen(ctx: click.Context, param: click.Parameter, value: str | None) -> tuple[str, int] | None:
    if value is None:
        return None
    from infrakit.rpc import server

    try:
        return server.parse_listen(value)
    except ValueError as error:
        raise click.BadParameter(str(error)) from None


def _common(default_name: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    def decorate(function: Callable[..., Any]) -> Callable[..., Any]:
        options = [
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
                help="Listen on TCP instead of a unix socket (a bare port binds 127.0.0.1); no authentication.",
            ),
            click.option(
                "--log",
                "log_level",
                type=click.IntRange(0, 5),
                default=4,
                show_default=True,
                help="0 panic .. 5 debug.",
            ),
            click.option(
                "--log-format",
                type=click.Choice(["term", "json"]),
                default="term",
                show_default=True,
                help="Log format.",
            ),
        ]
        for option in reversed(options):
            function = option(function)
        return function

    return decorate


def _serve(*, services: Any, name: str, listen: tuple[str, int] | None, log_level: int, log_format: str) -> None:
    from infrakit import logs
    from infrakit.rpc import server

    logs.configure(level=log_level, fmt=log_format, frameworks=("aiohttp",))
    raise SystemExit(server.run(services, name=name, listen=listen))


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--dir",
    "directory",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Directory of the instance files, created on first use (default: the temporary directory, as InfraKit).",
)
@_common("instance-file")
def instance_file(
    directory: Path | None, name: str, listen: tuple[str, int] | None, log_level: int, log_format: str
) -> None:
    """Serve the file instance plugin (Instance/0.5.0): one JSON file per instance in --dir."""
    import tempfile

    from infrakit.plugins import instance_file as plugin
    from infrakit.rpc import server

    folder = Path(tempfile.gettempdir()) if directory is None else directory.absolute()
    services = [server.instance_service(plugin.FilePlugin(directory=folder, durable=True))]
    _serve(services=services, name=name, listen=listen, log_level=log_level, log_format=log_format)


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@_common("flavor-vanilla")
def flavor_vanilla(name: str, listen: tuple[str, int] | None, log_level: int, log_format: str) -> None:
    """Serve the vanilla flavor plugin (Flavor/0.1.0): init lines, tags and attachments."""
    from infrakit.plugins import flavor_vanilla as plugin
    from infrakit.rpc import server

    _serve(
        services=[server.flavor_service(plugin.VanillaPlugin())],
        name=name,
        listen=listen,
        log_level=log_level,
        log_format=log_format,
    )


def instance_file_main() -> None:
    instance_file(prog_name="infrakit-instance-file")


def flavor_vanilla_main() -> None:
    flavor_vanilla(prog_name="infrakit-flavor-vanilla")


if __name__ == "__main__":  # python -m infrakit.daemons instance-file|flavor-vanilla [options]
    import sys

    commands = {"instance-file": instance_file_main, "flavor-vanilla": flavor_vanilla_main}
    if len(sys.argv) < 2 or sys.argv[1] not in commands:
        sys.exit("usage: python -m infrakit.daemons instance-file|flavor-vanilla [options]")
    chosen = commands[sys.argv.pop(1)]
    chosen()
