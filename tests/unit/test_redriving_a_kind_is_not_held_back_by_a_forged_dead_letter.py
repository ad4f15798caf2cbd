"""``gun-hub dlq redrive --kind K`` redrives each original once: of the dead letters about
one original, the first the listing shows (``_redrive_kind``: ``chosen.setdefault(source,
id)``). Every party may write ``gun.dlq`` and a dead letter's source is its writer's word:
one forged about the same original, of the same kind, with other bytes, listed first, is
the one tried. The desk refuses it ("the dead letter's bytes are not those of ..."), and
the genuine dead letter about that original is never tried: the original is not redriven,
and the summary counts one refusal, as if nothing else were there to redrive.

A forger needs no read access to do it: a dead letter per position of a range of
``gun.declarations`` (positions are numbers) written ahead, or on a ``gun.dlq`` partition
the view lists first, holds back every bulk redrive of that kind after a key rotation.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from typer.testing import CliRunner

from gun_hub.cli import app
from gun_hub.security.web_auth import write_officer_credentials
from tests.unit.test_dead_letter_desk import PLAIN, REFERENCE, SECRETS, TOPICS, Desk, desk

__all__ = ["desk"]  # the fixture, used below


async def test_a_forged_dead_letter_listed_first_does_not_keep_the_original_from_its_redrive(
    desk: Desk, tmp_path: Path
) -> None:
    desk.broker.put(TOPICS.declarations, 1, 5, REFERENCE.encode(), PLAIN)
    # Forged: same kind, same original, other bytes; listed first.
    desk.dead_letter(0, b"<declaration>forged</declaration>", kind="ENVELOPE_UNKNOWN_KID")
    # The hub's own, about that original, with its bytes.
    desk.dead_letter(1, PLAIN, kind="ENVELOPE_UNKNOWN_KID")

    credentials = tmp_path / "alice.credentials"
    write_officer_credentials(credentials, "alice", SECRETS["alice"])
    done = await asyncio.to_thread(
        CliRunner().invoke,
        app,
        [
            "dlq",
            "redrive",
            "--kind",
            "ENVELOPE_UNKNOWN_KID",
            "--credentials-file",
            str(credentials),
            "--hub-url",
            desk.url,
        ],
    )
    redriven = desk.broker.to(TOPICS.declarations)
    assert len(redriven) == 1, (
        f"the original was redriven {len(redriven)} times; the command said:\n"
        f"{done.stdout}{done.stderr}"
    )
