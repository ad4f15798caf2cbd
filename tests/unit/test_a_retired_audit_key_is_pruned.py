"""A retired audit key's private part is removed by ``gun-hub keys prune`` like a retired
signing key's, and the last audit key the hub has is never removed.

Stop 39 pruned envelope keys only (open item: "the hub's audit keys are not pruned"), so
every audit key the hub ever had stayed in ``hub.audit.jwk``: a key store stolen years
later could sign checkpoints dated inside any old key's validity. A retired audit key
serves nothing private: its checkpoints from its retirement on are refused, its links'
MACs count no more (gun_hub/security/audit.py: only active keys vouch for a link), and
what it signed before is verified with its public part, which stays in ``jwks.json``.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

from typer.testing import CliRunner

from gun_contract.security.keystore import (
    AUDITING_PARTY,
    AuditSigner,
    KeyStatus,
    KeystoreFolder,
    NoKnownSpan,
)
from gun_hub.cli import app

KEEP = timedelta(days=14)


def audit_file(folder: Path) -> dict[str, object]:
    data = json.loads(KeystoreFolder(folder).audit_file().read_text())
    assert isinstance(data, dict)
    return data


def audit_kids(folder: Path) -> set[str]:
    return {entry["kid"] for entry in audit_file(folder)["keys"]}  # type: ignore[attr-defined]


def rotated_audit_key(folder: Path) -> tuple[str, str]:
    """The hub gets a new audit key and retires the one it had: (old, new) key ids."""
    keystore = KeystoreFolder(folder)
    [old] = audit_kids(folder)
    [new] = keystore.rotate(AUDITING_PARTY, audit=True)
    keystore.retire(old)
    return old, new


def test_a_retired_audit_keys_private_part_is_pruned_and_the_active_one_signs_on(
    own_keys_dir: Path,
) -> None:
    folder = own_keys_dir
    old, new = rotated_audit_key(folder)
    decisions = KeystoreFolder(folder).prune(AUDITING_PARTY, keep_for=KEEP, apply=True)
    by_kid = {d.kid: d for d in decisions}
    assert by_kid[old].prunable
    assert "retired" in by_kid[old].reason
    assert not by_kid[new].prunable
    assert audit_kids(folder) == {new}
    assert [p["kid"] for p in audit_file(folder)["pruned_keys"]] == [old]  # type: ignore[attr-defined]
    public = KeystoreFolder(folder).public_keys()
    assert public[old].status is KeyStatus.RETIRED  # its checkpoints still verify
    signer = AuditSigner.load(folder)
    assert str(signer.key_for(datetime.now(UTC)).kid) == new
    assert [str(k.kid) for k in signer.every_key()] == [new]


def test_the_last_audit_key_is_kept_even_retired(own_keys_dir: Path) -> None:
    folder = own_keys_dir
    """Retired with no successor, it still signs the checkpoints (which then do not
    verify, as an auditor must see): removed, the hub could not start at all."""
    [only] = audit_kids(folder)
    KeystoreFolder(folder).retire(only)
    decisions = KeystoreFolder(folder).prune(
        AUDITING_PARTY, keep_for=NoKnownSpan("no broker"), force=True, apply=True
    )
    [decision] = [d for d in decisions if d.kid == only]
    assert not decision.prunable
    assert "gun-hub keys rotate hub --audit" in decision.reason
    assert audit_kids(folder) == {only}
    AuditSigner.load(folder).key_for(datetime.now(UTC))


def test_a_dry_run_names_the_audit_key_and_writes_nothing(own_keys_dir: Path) -> None:
    folder = own_keys_dir
    old, _ = rotated_audit_key(folder)
    before = KeystoreFolder(folder).audit_file().read_bytes()
    result = CliRunner().invoke(
        app, ["keys", "prune", "--party", AUDITING_PARTY, "--dir", str(folder)]
    )
    assert f"would prune hub audit {old}:" in result.output
    assert KeystoreFolder(folder).audit_file().read_bytes() == before


def test_a_new_audit_key_keeps_the_record_of_pruned_ones(own_keys_dir: Path) -> None:
    folder = own_keys_dir
    old, _ = rotated_audit_key(folder)
    KeystoreFolder(folder).prune(AUDITING_PARTY, keep_for=KEEP, apply=True)
    KeystoreFolder(folder).rotate(AUDITING_PARTY, audit=True)
    assert [p["kid"] for p in audit_file(folder)["pruned_keys"]] == [old]  # type: ignore[attr-defined]
