"""The development tooling (``gun_tools``: demo, local broker, clearance stand-in, AsyncAPI
generator) that a few commands run, imported only when such a command runs.

The production image does not carry ``gun_tools`` (issue 14), so every command that needs
it calls :func:`require_tooling` first: in the image it ends with exit code 2 and says
why, instead of a traceback; the hub, adapter and operator commands never import it.
"""

from __future__ import annotations

import typer

NOT_INSTALLED = "development tooling: not installed in this image"


def require_tooling(command: str) -> None:
    """Exit 2 with a clear message when ``gun_tools`` is not installed."""
    try:
        import gun_tools  # noqa: F401 # only whether it is there
    except ModuleNotFoundError as missing:
        if missing.name != "gun_tools":
            raise
        typer.echo(f"gun-hub {command}: {NOT_INSTALLED}", err=True)
        raise typer.Exit(2) from None
