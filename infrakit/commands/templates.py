"""``infrakit-local template FILE|URL|-``: render a template (:mod:`infrakit.commands.rendering`) and print it."""

from __future__ import annotations

import click

from infrakit.commands import _common, grants
from infrakit.commands._common import Context

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
    allow_local: bool,
    allow_env: tuple[str, ...],
    allow_metadata: bool,
) -> None:
    """Render an infrakit template at FILE or URL (- reads stdin) and print it."""
    with _common.errors():
        from infrakit.commands import metadata, rendering

        given = grants.Grants.given(allow_local=allow_local, allow_env=allow_env, allow_metadata=allow_metadata)
        text = rendering.render(
            source, variables=rendering.parse_vars(variables), metadata=metadata.reader(obj), grants=given
        )
        click.echo(text, nl=not text.endswith("\n"))
