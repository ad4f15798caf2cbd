"""``gun-hub status`` and ``gun-hub stats`` present credentials, and keep working.

Everything a person would run: the portal stand-in issues a trader's token, an officer
is added with a generated password, and the commands ask the listeners with them.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from gun_contract.settings import WebSettings
from gun_hub.cli import app
from gun_hub.cli.ops import _print_statistics
from gun_hub.ops.lag_metrics import OpsState
from gun_hub.ops.view import OpsView
from gun_hub.security.web_auth import Unauthenticated
from gun_hub.web import HubWeb, build_web, trader_tokens
from gun_tools.processes import free_port
from tests.unit.test_web_listeners import MINE, OTHER, THEIRS, TOPICS, TRADER, fill


async def gun_hub(*args: str) -> Result:
    return await asyncio.to_thread(CliRunner().invoke, app, list(args))


@pytest.fixture
async def listening(tmp_path: Path) -> AsyncIterator[tuple[HubWeb, WebSettings, Path]]:
    view = OpsView(tmp_path / "view.sqlite3", TOPICS)
    fill(view)
    portal = tmp_path / "portal"
    assert (await gun_hub("portal", "init", "--dir", str(portal))).exit_code == 0
    officers, credentials = tmp_path / "officers", tmp_path / "alice.credentials"
    added = await gun_hub(
        "officers", "add", "alice", "--file", str(officers), "--credentials-out", str(credentials)
    )
    assert added.exit_code == 0, added.output
    settings = WebSettings(
        trader_port=free_port(),
        officer_port=free_port(),
        portal_jwks=portal / "portal-jwks.json",
        officers_file=officers,
    )
    web = build_web(settings, view.path, OpsState(), {"dga"})
    assert web is not None
    await web.start()
    try:
        yield web, settings, tmp_path
    finally:
        await web.stop()
        view.close()


async def test_a_trader_and_an_officer_use_the_commands(
    listening: tuple[HubWeb, WebSettings, Path],
) -> None:
    _, settings, work = listening
    trader_url = f"http://127.0.0.1:{settings.trader_port}"
    officer_url = f"http://127.0.0.1:{settings.officer_port}"
    token = work / "trader.token"
    issued = await gun_hub(
        "portal", "token", "--eori", TRADER, "--key", str(work / "portal" / "portal.jwk"),
        "--out", str(token),
    )  # fmt: skip
    assert issued.exit_code == 0, issued.output
    assert token.stat().st_mode & 0o077 == 0
    credentials = str(work / "alice.credentials")

    shown = await gun_hub("status", MINE, "--token-file", str(token), "--hub-url", trader_url)
    assert shown.exit_code == 0, shown.output
    assert f"{MINE} version 1: DECIDED RELEASE" in shown.output
    assert "[dga]" not in shown.output
    assert "post-release alert" not in shown.output
    # Another trader's declaration: unknown, as any reference the trader did not lodge.
    theirs = await gun_hub("status", THEIRS, "--token-file", str(token), "--hub-url", trader_url)
    assert theirs.exit_code == 1
    # The officer sees it all.
    full = await gun_hub(
        "status", MINE, "--credentials-file", credentials, "--hub-url", officer_url
    )
    assert full.exit_code == 0, full.output
    assert "post-release alert raised" in full.output
    figures = await gun_hub(
        "stats", "--json", "--credentials-file", credentials, "--hub-url", officer_url
    )
    assert figures.exit_code == 0, figures.output
    assert json.loads(figures.output)["decisions"]["total"] == 27
    documents = await gun_hub(
        "stats", "--declarant", OTHER, "--limit", "5", "--credentials-file", credentials,
        "--hub-url", officer_url,
    )  # fmt: skip
    assert documents.exit_code == 0, documents.output
    assert "(more: --after " in documents.output  # a cursor: rows arriving shift no page


async def test_the_stand_in_portal_issues_lodging_tokens_on_request(
    listening: tuple[HubWeb, WebSettings, Path],
) -> None:
    """``gun-hub portal token`` gives a lookup token; with ``--lodge``, one that may also lodge
    over HTTP (the ``gun:lodge`` scope, review stop 37-i, 4)."""
    _, settings, work = listening
    key = str(work / "portal" / "portal.jwk")
    tokens = trader_tokens(settings, "this test")
    lookup = await gun_hub("portal", "token", "--eori", TRADER, "--key", key)
    lodging = await gun_hub("portal", "token", "--eori", TRADER, "--key", key, "--lodge")
    assert lookup.exit_code == lodging.exit_code == 0, (lookup.output, lodging.output)
    assert tokens.verify(lookup.stdout.strip()) == TRADER
    with pytest.raises(Unauthenticated) as refused:
        tokens.verify(lookup.stdout.strip(), scope="gun:lodge")
    assert refused.value.reason == "scope"
    assert tokens.verify(lodging.stdout.strip(), scope="gun:lodge") == TRADER


async def test_the_commands_say_when_credentials_are_missing_or_wrong(
    listening: tuple[HubWeb, WebSettings, Path],
) -> None:
    _, settings, work = listening
    officer_url = f"http://127.0.0.1:{settings.officer_port}"
    assert (await gun_hub("status", MINE, "--hub-url", officer_url)).exit_code == 2
    assert (await gun_hub("stats", "--hub-url", officer_url)).exit_code == 2
    wrong = work / "wrong.credentials"
    wrong.write_text("alice:not-her-password\n")
    wrong.chmod(0o600)
    refused = await gun_hub("stats", "--credentials-file", str(wrong), "--hub-url", officer_url)
    assert refused.exit_code == 4
    assert "not authenticated" in refused.output
    wrong.chmod(0o644)  # a password file others may read is refused before use
    shared = await gun_hub("stats", "--credentials-file", str(wrong), "--hub-url", officer_url)
    assert shared.exit_code == 2
    assert "readable by others" in shared.output
    forged = work / "forged.token"
    forged.write_text("eyJhbGciOiJub25lIn0.eyJzdWIiOiJGUjEyMyJ9.\n")
    trader_url = f"http://127.0.0.1:{settings.trader_port}"
    bad = await gun_hub("status", MINE, "--token-file", str(forged), "--hub-url", trader_url)
    assert bad.exit_code == 4


async def test_the_stand_in_portal_says_how_long_its_token_lasts_and_issues_none_the_hub_refuses(
    listening: tuple[HubWeb, WebSettings, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """``--lifetime 3600`` wrote a token the hub refuses for good (over its 900 s), without
    a word, and the default 5 minutes were said nowhere (review stop 39-O, O8)."""
    _, _, work = listening
    key = str(work / "portal" / "portal.jwk")
    token = work / "trader.token"
    issued = await gun_hub("portal", "token", "--eori", TRADER, "--key", key, "--out", str(token))
    assert issued.exit_code == 0, issued.output
    assert "valid for 300 s" in issued.output
    assert "expired" in issued.output  # what the hub will answer, and what to do then

    too_long = work / "long.token"
    refused = await gun_hub(
        "portal", "token", "--eori", TRADER, "--key", key, "--lifetime", "3600",
        "--out", str(too_long),
    )  # fmt: skip
    assert refused.exit_code == 2
    assert not too_long.exists()
    [line] = refused.output.strip().splitlines()
    assert "--lifetime 3600" in line
    assert "900 s" in line
    assert "GUN_HUB_WEB__TOKEN_MAX_LIFETIME_S" in line

    # The hub's limit and the command's agree wherever the hub's is set.
    monkeypatch.setenv("GUN_HUB_WEB__TOKEN_MAX_LIFETIME_S", "3600")
    longer = await gun_hub(
        "portal", "token", "--eori", TRADER, "--key", key, "--lifetime", "3600",
        "--out", str(too_long),
    )  # fmt: skip
    assert longer.exit_code == 0, longer.output


def test_the_statistics_call_the_overrides_columns_what_the_json_and_the_docs_call_them(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """``stats`` printed "not accepted" where the JSON and operations.md say ``declined``
    (review stop 39-O, O9)."""
    counts = {"declared": 3, "applied": 1, "declined": 2}
    _print_statistics(
        {
            "from": "2026-12-01",
            "to": "2026-12-05",
            "decisions": {"total": 0, "by_outcome": {}},
            "overrides": {**counts, "by_declarant": {TRADER: counts}},
            "dead_letters": {"total": 0, "by_kind": {}},
        }
    )
    printed = capsys.readouterr().out
    assert "3 declared, 1 applied, 2 declined" in printed
    assert "not accepted" not in printed
    [heading] = [line for line in printed.splitlines() if line.startswith("declarant")]
    assert heading.split() == ["declarant", "declared", "applied", "declined"]


def test_lag_says_its_json_is_the_clusters_measurement_not_a_hubs_answer() -> None:
    """``gun-hub lag`` asks the cluster, no hub needed (operations.md)."""
    shown = CliRunner().invoke(app, ["lag", "--help"], terminal_width=200)
    assert shown.exit_code == 0
    assert "hub's JSON answer" not in shown.output
    assert "measurement" in shown.output
