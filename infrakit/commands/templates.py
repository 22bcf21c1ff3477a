"""``infrakit-local template FILE|URL|-``: render a template (:mod:`infrakit.commands.rendering`) and print it."""

from __future__ import annotations

import click

from infrakit.commands import _common
from infrakit.commands._common import Context

__all__ = ["template"]


@click.command("template")
@click.argument("source", metavar="FILE|URL|-")
@click.option("--var", "variables", multiple=True, metavar="NAME=VALUE", help="A template variable (repeatable).")
@click.pass_obj
def template(obj: Context, source: str, variables: tuple[str, ...]) -> None:
    """Render an infrakit template at FILE or URL (- reads stdin) and print it."""
    with _common.errors():
        from infrakit.commands import metadata, rendering

        text = rendering.render(source, variables=rendering.parse_vars(variables), metadata=metadata.reader(obj))
        click.echo(text, nl=not text.endswith("\n"))
