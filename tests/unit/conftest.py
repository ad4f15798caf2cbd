"""Fixtures the unit tests share: the hub's audit keys and what an auditor holds (the audit
trail's tests), the key store's clocks moved by the test (the key store's)."""

from __future__ import annotations

from pathlib import Path

import pytest

from gun_contract.security.keystore import (
    PUBLIC_JWKS,
    AuditSigner,
    PublicKey,
    read_public_keys,
)
from tests.keystore_fixtures import KeystoreClocks


@pytest.fixture
def public(keys_dir: Path) -> dict[str, PublicKey]:
    """What an auditor holds: the public JWKS, nothing private."""
    return read_public_keys(keys_dir / PUBLIC_JWKS)


@pytest.fixture
def signer(keys_dir: Path) -> AuditSigner:
    """The hub's audit keys, as the hub loads them."""
    return AuditSigner.load(keys_dir)


@pytest.fixture
def keystore_clocks(monkeypatch: pytest.MonkeyPatch) -> KeystoreClocks:
    """The key store's clocks, moved by the test only (its monotonic one stands still)."""
    return KeystoreClocks(monkeypatch)
