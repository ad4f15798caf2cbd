"""A signing key whose public entry states a validity (``not_before``, ``not_after``: a
partner's JWKS may carry them, and ``keys import`` keeps them) vouches only for what the
broker accepted within it (JOSE review of stop 48: the dates were read, imported, and
then ignored for every key but the audit keys; a partner who limited a key's life
believed it expired while its signatures went on verifying).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from gun_contract.envelope import ContentType, EnvelopeRejected
from gun_contract.envelope import EnvelopeRejectionKind as Kind
from gun_contract.security.keystore import PUBLIC_JWKS, KeystoreFolder, KeyUse, PartyKeys
from gun_contract.topics import topic_registry
from tests.conftest import envelope_of
from tests.keystore_fixtures import active_kid, new_kid

TOPICS = topic_registry("gun", ("dgal", "cites", "dga"))
ANSWERS = TOPICS.responses("dgal")


def state_validity(folder: Path, kid: str, **validity: datetime) -> None:
    path = folder / PUBLIC_JWKS
    jwks = json.loads(path.read_text())
    [entry] = [key for key in jwks["keys"] if key["kid"] == kid]
    entry.update({name: when.isoformat() for name, when in validity.items()})
    path.write_text(json.dumps(jwks))


def answer_to_the_hub(folder: Path) -> bytes:
    return envelope_of("dgal", TOPICS, folder).seal(
        b"{}", recipient="hub", topic=ANSWERS, content_type=ContentType.JSON
    )


def opened_by_the_hub(folder: Path, sealed: bytes, accepted_at: datetime) -> str:
    hub = envelope_of("hub", TOPICS, folder)
    return hub.open(sealed, topic=ANSWERS, accepted_at=accepted_at.timestamp()).sender


@pytest.mark.parametrize(
    ("validity", "said"),
    [
        ({"not_after": timedelta(hours=-1)}, "after the validity"),
        ({"not_before": timedelta(days=1)}, "before the validity"),
    ],
    ids=["accepted after it ended", "accepted before it began"],
)
def test_a_record_the_broker_accepted_outside_the_keys_validity_is_refused(
    own_keys_dir: Path, validity: dict[str, timedelta], said: str
) -> None:
    sealed = answer_to_the_hub(own_keys_dir)
    now = datetime.now(UTC)
    kid = active_kid(own_keys_dir, "dgal", KeyUse.SIG)
    state_validity(own_keys_dir, kid, **{name: now + by for name, by in validity.items()})
    with pytest.raises(EnvelopeRejected) as refusal:
        opened_by_the_hub(own_keys_dir, sealed, accepted_at=now)
    assert refusal.value.kind is Kind.RETIRED_KEY
    assert said in str(refusal.value)


def test_a_record_accepted_within_the_keys_validity_opens(own_keys_dir: Path) -> None:
    sealed = answer_to_the_hub(own_keys_dir)
    now = datetime.now(UTC)
    state_validity(
        own_keys_dir,
        active_kid(own_keys_dir, "dgal", KeyUse.SIG),
        not_before=now - timedelta(days=1),
        not_after=now + timedelta(days=1),
    )
    assert opened_by_the_hub(own_keys_dir, sealed, accepted_at=now) == "dgal"


def test_a_partners_encryption_key_past_its_validity_is_not_encrypted_to(
    own_keys_dir: Path,
) -> None:
    """Review of stop 48's own commits: only signatures kept to a stated validity; the hub
    went on encrypting to a partner's key whose not_after had passed."""
    expired = active_kid(own_keys_dir, "dgal", KeyUse.ENC)
    rotated = KeystoreFolder(own_keys_dir).rotate(
        "dgal", use_from=datetime.now(UTC) + timedelta(days=30)
    )
    newer = new_kid(rotated, KeyUse.ENC)
    hub = PartyKeys.load(own_keys_dir, "hub")
    assert hub.encryption_key_for("dgal").kid == expired  # the newer one not in use yet
    state_validity(own_keys_dir, expired, not_after=datetime.now(UTC) - timedelta(hours=1))
    assert PartyKeys.load(own_keys_dir, "hub").encryption_key_for("dgal").kid == newer
