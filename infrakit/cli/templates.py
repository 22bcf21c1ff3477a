"""``infrakit-local template FILE|URL|-``: render a template (:mod:`infrakit.cli.rendering`) and print it."""

from __future__ import annotations

import click

from infrakit.cli import grants, render
from infrakit.cli.context import Context

__all__ = ["template"]


@click.command("template")
@click.argument("source", metavar="FILE|URL|-")
@click.option("--var", "variables", multiple=True, metavar="NAME=VALUE", help="A template variable (repeatable).")
@grants.options
@click.pass_obj
def template(
    obj: Context,
    source: str,
    variables: tuple[str, ...],
    reach: grants.Grants,
) -> None:
    """Render an infrakit template at FILE or URL (- reads stdin) and print it."""
    with render.errors():
        from infrakit.cli import metadata, rendering

        text = rendering.render(
            source, variables=rendering.parse_vars(variables), metadata=metadata.reader(obj), grants=reach
        )
        click.echo(text, nl=not text.endswith("\n"))
