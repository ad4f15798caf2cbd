"""Asking a running hub's trader or officer listener from the command line: its address,
the officer's credentials, one JSON request, and what a refusal exits with.

Exit codes shared by the commands that ask a listener: 2 refused (a bad parameter, the
view off), 3 hub unreachable (or no answer within ``ANSWER_TIMEOUT_S``), 4 not
authenticated.
"""

from __future__ import annotations

import json
import ssl
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Literal

import typer

from gun_hub.cli.startup import settings_or_exit
from gun_hub.cli.terminal import shown
from gun_hub.security.web_auth import (
    AccessConfigError,
    basic_authorization,
    read_officer_credentials,
)

Listener = Literal["trader", "officer"]
NOT_AUTHENTICATED = 4
UNREACHABLE = 3
# How long a command waits for the hub's answer: longer than the hub's own bound on a
# broker read (10 s, gun_contract/kafka/log_reader.py), so that the hub says what it found.
ANSWER_TIMEOUT_S = 30.0

HUB_URL = typer.Option(
    None,
    help="The listener's address (default: the trader or officer listener's, from the settings).",
)
AS_JSON = typer.Option(False, "--json", help="Print the hub's JSON answer as is.")
CREDENTIALS_FILE = typer.Option(
    None, help="As an officer: a file holding NAME:PASSWORD (mode 0600)."
)
CAFILE = typer.Option(
    None, help="CA certificate(s) the listener's HTTPS certificate is checked with."
)


def hub_url_of(hub_url: str | None, listener: Listener) -> str:
    """``hub_url`` as given, else the listener's address from the settings."""
    if hub_url:
        return hub_url.rstrip("/")
    web = settings_or_exit().web
    host, port = (
        (web.trader_host, web.trader_port)
        if listener == "trader"
        else (web.officer_host, web.officer_port)
    )
    if not port:
        typer.echo(
            f"the {listener} listener is off: set GUN_HUB_WEB__{listener.upper()}_PORT "
            "or give --hub-url",
            err=True,
        )
        raise typer.Exit(2)
    host = "127.0.0.1" if host in ("0.0.0.0", "") else host  # noqa: S104
    return f"{'https' if web.tls_cert else 'http'}://{host}:{port}"


class HubUnanswered(Exception):
    """The hub could not be asked, or did not answer in time."""

    def __init__(self, url: str, reason: str) -> None:
        super().__init__(f"{url}: {reason}")
        self.url = url
        self.reason = reason


def call_hub(
    url: str,
    authorization: str,
    cafile: Path | None = None,
    *,
    body: dict[str, Any] | None = None,
) -> tuple[int, Any]:
    """GET ``url`` (POST ``body`` as JSON when given); the status and the JSON answer. A
    hub that cannot be reached, or does not answer in time, ends the command (exit 3)."""
    try:
        return ask_hub(url, authorization, cafile, body=body)
    except HubUnanswered as err:
        typer.echo(f"cannot reach the hub at {err.url}: {err.reason}", err=True)
        raise typer.Exit(UNREACHABLE) from None


def ask_hub(
    url: str,
    authorization: str,
    cafile: Path | None = None,
    *,
    body: dict[str, Any] | None = None,
) -> tuple[int, Any]:
    """As :func:`call_hub`, for a command that goes on without this answer: a hub that
    cannot be reached or does not answer in time raises ``HubUnanswered``."""
    headers = {"Authorization": authorization}
    data = None
    if body is not None:
        headers["Content-Type"] = "application/json"
        data = json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, headers=headers)  # noqa: S310
    context = ssl.create_default_context(cafile=str(cafile) if cafile else None)
    opener = urllib.request.build_opener(
        urllib.request.HTTPSHandler(context=context), _RedirectsNotFollowed()
    )
    try:
        with opener.open(request, timeout=ANSWER_TIMEOUT_S) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as err:
        if 300 <= err.code < 400:
            where = err.headers.get("Location", "nowhere said")  # shown where printed
            return err.code, {
                "error": f"the hub's address redirects (HTTP {err.code}) to {where}: not "
                "followed, the credentials are sent to the address given only; give the "
                "address it redirects to if it is the hub's"
            }
        try:
            return err.code, json.load(err)
        except ValueError:
            return err.code, {"error": err.reason}
    except urllib.error.URLError as err:
        raise HubUnanswered(url, str(err.reason)) from None
    except OSError as err:  # TimeoutError: the answer did not come in time
        raise HubUnanswered(url, str(err) or type(err).__name__) from None


class _RedirectsNotFollowed(urllib.request.HTTPRedirectHandler):
    """urllib follows a redirect with every header of the request, ``Authorization``
    too, to another host or from https down to http (review stop 46): the clients answer
    a redirect as it is (an HTTPError of its code) and follow none."""

    def redirect_request(self, *_: Any, **__: Any) -> None:
        return None


def refused(code: int, body: Any, what: str) -> None:
    """Exit with what the hub said when it did not answer 200."""
    error = shown(body.get("error", code) if isinstance(body, dict) else code)
    what = shown(what)
    if code == 401:
        typer.echo(f"{what}: not authenticated ({error})", err=True)
        raise typer.Exit(NOT_AUTHENTICATED)
    typer.echo(f"{what}: {error}", err=True)
    raise typer.Exit(2)


def officer_authorization(credentials_file: Path) -> str:
    """The ``Authorization`` header of the officer in ``credentials_file``."""
    try:
        return basic_authorization(*read_officer_credentials(credentials_file))
    except AccessConfigError as err:
        typer.echo(str(err), err=True)
        raise typer.Exit(2) from None


def print_table(headers: list[str], rows: list[list[Any]]) -> None:
    """``rows`` under ``headers``, each column as wide as its widest cell (the headers
    alone when there is no row: the callers say what an empty table means)."""
    # A cell may hold others' words (a kind, a key, a reason): shown escaped, one line each.
    cells = [[shown(c) for c in row] for row in rows]
    widths = [max([len(h), *(len(r[i]) for r in cells)]) for i, h in enumerate(headers)]
    typer.echo("  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip())
    for row in cells:
        typer.echo("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())


NOT_FOUND = 1
NOT_ALLOWED = 5


class OfficerClient:
    """The officer listener to ask and the credentials to ask it with."""

    def __init__(
        self, credentials_file: Path | None, hub_url: str | None, cafile: Path | None, what: str
    ) -> None:
        if credentials_file is None:
            typer.echo(f"{what} are for officers: give --credentials-file", err=True)
            raise typer.Exit(2)
        self.authorization = officer_authorization(credentials_file)
        self.base = hub_url_of(hub_url, "officer")
        self.cafile = cafile

    def get(self, path: str) -> tuple[int, Any]:
        return call_hub(f"{self.base}{path}", self.authorization, self.cafile)

    def post(self, path: str, body: dict[str, Any] | None = None) -> tuple[int, Any]:
        return call_hub(f"{self.base}{path}", self.authorization, self.cafile, body=body or {})

    def try_post(self, path: str, body: dict[str, Any] | None = None) -> tuple[int, Any]:
        """As ``post``; a hub that does not answer raises ``HubUnanswered``."""
        return ask_hub(f"{self.base}{path}", self.authorization, self.cafile, body=body or {})


def fail_as_hub_says(code: int, body: Any, what: str) -> None:
    """Exit as the hub's refusal says (after printing it): 1 not found, 5 not allowed."""
    error = shown(body.get("error", code) if isinstance(body, dict) else code)
    what = shown(what)
    if code == 404:
        typer.echo(f"{what}: {error}", err=True)
        raise typer.Exit(NOT_FOUND)
    if code == 403:
        typer.echo(f"{what}: {error}", err=True)
        raise typer.Exit(NOT_ALLOWED)
    refused(code, body, what)
