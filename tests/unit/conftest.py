"""Fixtures the unit tests of the audit trail share: the hub's audit keys and what an
auditor holds."""

from __future__ import annotations

from pathlib import Path

import pytest

from gun_contract.security.keystore import (
    PUBLIC_JWKS,
    AuditSigner,
    PublicKey,
    read_public_keys,
)


@pytest.fixture
def public(keys_dir: Path) -> dict[str, PublicKey]:
    """What an auditor holds: the public JWKS, nothing private."""
    return read_public_keys(keys_dir / PUBLIC_JWKS)


@pytest.fixture
def signer(keys_dir: Path) -> AuditSigner:
    """The hub's audit keys, as the hub loads them."""
    return AuditSigner.load(keys_dir)
