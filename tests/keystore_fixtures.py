"""What the key store's tests share: its clocks moved by the test, the keys a folder holds,
and ``gun-hub keys prune`` with the broker's answer about retention stood in.

The fixtures built on these are ``own_keys_dir`` (tests/conftest.py: a copy of the
session's keys a test may rotate, retire and prune) and ``keystore_clocks``
(tests/unit/conftest.py).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

import gun_hub.cli.keys as keys_cli
from gun_contract.kafka.client import Connect
from gun_contract.security import keystore
from gun_contract.security.keystore import KeyStatus, KeystoreFolder, KeyUse, PublicKey
from gun_contract.topics import TopicRegistry
from gun_hub.cli import app

DAY_MS = 86_400_000


class KeystoreClocks:
    """The key store's monotonic clock (when its files are looked at again) and its wall
    clock (when a key comes into use, when the files were read), moved by the test, never
    slept on. The wall clock starts at the real time and stands still between moves: a
    test naming the time the files were read read it a second late when the real clock
    ticked over a second in between (CI, stop 42)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.monotonic = 1000.0
        self.started = datetime.now(UTC)
        self.offset = timedelta(0)
        monkeypatch.setattr(keystore, "_monotonic", lambda: self.monotonic)
        monkeypatch.setattr(keystore, "_now", self.wall)

    def wall(self) -> datetime:
        return self.started + self.offset

    def advance(self, seconds: float) -> None:
        self.monotonic += seconds
        self.offset += timedelta(seconds=seconds)


# -- what a key folder holds ----------------------------------------------------------------


def key_of(folder: Path, party: str, use: KeyUse, status: KeyStatus) -> PublicKey:
    """``party``'s one key of ``use`` in ``status`` (not an audit or state key)."""
    [key] = [
        k
        for k in KeystoreFolder(folder).public_keys().values()
        if k.party == party and k.use is use and k.status is status and not k.purpose
    ]
    return key


def active_kid(folder: Path, party: str, use: KeyUse) -> str:
    """The key id of ``party``'s key of ``use`` in use now (before a rotation: its only one)."""
    return key_of(folder, party, use, KeyStatus.ACTIVE).kid


def private_kids(folder: Path, party: str) -> set[str]:
    """The key ids whose private part ``party``'s key file still holds."""
    return {entry["kid"] for entry in json.loads((folder / f"{party}.jwk").read_text())["keys"]}


def new_kid(kids: Sequence[str], use: KeyUse) -> str:
    """Of the key ids a rotation made, the one of ``use``."""
    [kid] = [k for k in kids if f"-{use.value}-" in k]
    return kid


def protected_header(compact: bytes) -> dict[str, Any]:
    """The protected header of a compact JWS or JWE (which key signed it, or it is
    encrypted to)."""
    segment = compact.split(b".")[0]
    return dict(json.loads(base64.urlsafe_b64decode(segment + b"=" * (-len(segment) % 4))))


# -- gun-hub keys prune ---------------------------------------------------------------------


def retired_after_a_rotation(
    folder: Path,
    party: str,
    since: datetime | None = None,
    *,
    uses: Sequence[KeyUse] = (KeyUse.ENC, KeyUse.SIG),
    use_from: datetime | None = None,
) -> list[str]:
    """``party`` rotates (its new keys in use from ``use_from``; None: the rotation's
    default) and retires its keys of ``uses`` in use before, as of ``since`` (None: now):
    their key ids, in the order of ``uses``."""
    old = [active_kid(folder, party, use) for use in uses]
    KeystoreFolder(folder).rotate(party, use_from=use_from)
    for kid in old:
        KeystoreFolder(folder).retire(kid, since=since)
    return old


class BrokerRetentions:
    """The broker's answer to ``keys prune`` asking how long it keeps the topics: what
    ``retention_ms`` says (a topic it does not name: 7 days), and what was asked."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, retention_ms: Mapping[str, int | None]):
        self.retention_ms = dict(retention_ms)
        self.asked: list[list[str]] = []

        async def retentions(connect: Connect, names: Sequence[str]) -> dict[str, int | None]:
            self.asked.append(list(names))
            return {name: self.retention_ms.get(name, 7 * DAY_MS) for name in names}

        monkeypatch.setattr(keys_cli, "retentions_on_the_broker", retentions)

    @classmethod
    def as_registered(
        cls, monkeypatch: pytest.MonkeyPatch, topics: TopicRegistry
    ) -> BrokerRetentions:
        """The broker keeps every topic as the registry says."""
        return cls(monkeypatch, {spec.name: spec.retention_ms for spec in topics.specs()})


def keys_prune(party: str, *args: str) -> tuple[int, str, str]:
    """``gun-hub keys prune --party PARTY ARGS``: its exit code, stdout and stderr."""
    ran = CliRunner().invoke(app, ["keys", "prune", "--party", party, *args])
    return ran.exit_code, ran.stdout, ran.stderr
