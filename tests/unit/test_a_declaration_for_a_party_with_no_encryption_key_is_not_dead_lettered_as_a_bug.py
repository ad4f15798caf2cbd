"""A jwks.json in which a party the hub seals to has no active encryption key (its only
one retired: ``keys retire`` guards a party's last signing key, not its last encryption
key; or a partner's export carrying the retirement imported before its new key) is a key
set deployed wrong: the hub must say so, naming the party and jwks.json, and never take
the sound records that meet it for bad ones.

Nothing checks it when the hub starts (``PartyKeys.load`` needs a signing key only), and
``PartyKeys.encryption_key_for`` raises ``KeystoreError`` at the first seal: inside the
intake's handling, ``_handled`` (runtime/app.py) takes it for the record's fault and
dead-letters every genuine declaration that quotes a DGAL document as PERMANENT
``UNHANDLED``, undecided, while the worker goes on as if nothing were wrong. The
decision publisher meets the same for the clearance system's key: its lane raises, "a
bug stops the publisher" (publisher.py ``_note_failure``), the worker ends, and at every
start again on the same outbox record: a crash loop.
Here the declaration must not be dead-lettered: handled again as for a key not deployed
yet, or stopped naming the key, but not thrown away as a bug.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from gun_contract.dead_letter import HEADER_ERROR_KIND, SourcePosition, header_value
from gun_contract.envelope import ContentType
from gun_contract.security.entitlements import CLEARANCE_PARTY, HUB_PARTY
from gun_contract.security.keystore import KeystoreError, KeystoreFolder, KeyUse
from gun_hub.domain.routing import RoutingTable
from gun_hub.runtime.app import _handled
from tests.builders import declaration_xml
from tests.keystore_fixtures import active_kid
from tests.unit.test_pipeline import Hub

REF = "26FR000690I0000012"
AT = SourcePosition("gun.declarations", 0, 0, REF.encode())


def test_a_declaration_met_by_a_party_without_an_encryption_key_is_not_dead_lettered(
    routing_table: RoutingTable, own_keys_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    KeystoreFolder(own_keys_dir).retire(active_kid(own_keys_dir, "dgal", KeyUse.ENC), last=True)
    hub = Hub(routing_table, own_keys_dir).sealed_only()  # starts: nothing says a word
    declaration = declaration_xml(reference=REF)
    sealed = hub.envelope(CLEARANCE_PARTY).seal(
        declaration,
        recipient=HUB_PARTY,
        topic=hub.topics.declarations,
        content_type=ContentType.XML,
    )
    monkeypatch.setattr(asyncio, "sleep", _no_wait)  # the retries of _handled, if any

    stopped: KeystoreError | None = None
    try:
        out = asyncio.run(
            _handled(lambda: hub.intake.handle(sealed, AT), sealed, AT, hub.topics.dlq, "intake")
        )
    except KeystoreError as error:  # stopped, naming what is missing: not the record's fault
        stopped = error
    if stopped is not None:
        assert "dgal" in str(stopped)
        return
    kinds = [header_value(dead.headers, HEADER_ERROR_KIND) for dead in out.to(hub.topics.dlq)]
    assert kinds == [], "a sound declaration dead-lettered for a key the hub lacks"


async def _no_wait(_: float) -> None:
    return None


def test_a_partys_last_encryption_key_is_retired_only_on_purpose(own_keys_dir: Path) -> None:
    """``keys retire`` refuses it, as a party's last signing key, unless ``--last``."""
    folder = KeystoreFolder(own_keys_dir)
    last = active_kid(own_keys_dir, "dgal", KeyUse.ENC)
    with pytest.raises(KeystoreError, match="last active encryption key"):
        folder.retire(last)
    assert folder.retire(last, last=True) == "dgal"
