"""The keystore folder: one private key file per party, one public JWKS for all.

Layout (``gun-hub keys init --dir DIR``)::

    DIR/<party>.jwk   private JWK Set of that party (mode 0600): its signing and
                      encryption keys, every generation still in service
    DIR/jwks.json     public JWK Set of every party; each key carries ``party`` and
                      ``status`` (``active`` or ``retired``)

Each party has separate keys per use (ANSSI key separation): an ``ES256`` key that signs
(``use: sig``) and an ``ECDH-ES+A256KW`` key others encrypt to (``use: enc``), both on
P-256. Rotation adds a new generation, which becomes the one used to sign and to encrypt
to; older keys keep verifying and decrypting until they are retired. Nothing here ever
writes key material to a log or an error message; errors name files and key ids only.
"""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

from joserfc.jwk import ECKey

SIGNING_ALG = "ES256"
KEY_WRAP_ALG = "ECDH-ES+A256KW"
CONTENT_ALG = "A256GCM"
CURVE = "P-256"
PUBLIC_JWKS = "jwks.json"


class KeyUse(StrEnum):
    SIG = "sig"
    ENC = "enc"


ALG_FOR_USE = {KeyUse.SIG: SIGNING_ALG, KeyUse.ENC: KEY_WRAP_ALG}


class KeyStatus(StrEnum):
    ACTIVE = "active"
    RETIRED = "retired"


class KeystoreError(RuntimeError):
    """The keystore is missing, unreadable or inconsistent; the message says which file."""


@dataclass(frozen=True, slots=True)
class PublicKey:
    """A party's public key as published in ``jwks.json``."""

    kid: str
    party: str
    use: KeyUse
    alg: str
    status: KeyStatus
    created: str
    key: ECKey
    retired: str = ""


def _new_kid(party: str, use: KeyUse) -> str:
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    return f"{party}-{use.value}-{stamp}-{secrets.token_hex(3)}"


def _generate(party: str, use: KeyUse) -> ECKey:
    return ECKey.generate_key(
        CURVE,
        parameters={"kid": _new_kid(party, use), "use": use.value, "alg": ALG_FOR_USE[use]},
        private=True,
    )


def _write_private(path: Path, data: dict[str, Any]) -> None:
    """Write a private key file readable by its owner only, atomically."""
    temporary = path.with_name(path.name + ".tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        json.dump(data, handle, indent=2)
    temporary.replace(path)


def _write_public(path: Path, data: dict[str, Any]) -> None:
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(json.dumps(data, indent=2) + "\n")
    temporary.replace(path)


def _public_entry(key: ECKey, party: str) -> dict[str, Any]:
    entry = dict(key.as_dict(private=False))
    entry.update({"party": party, "status": KeyStatus.ACTIVE.value, "created": _now_iso()})
    return entry


def _now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


class KeystoreFolder:
    """Create, rotate and retire the keys of a keystore folder (the ``keys`` command)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def private_file(self, party: str) -> Path:
        return self.folder / f"{party}.jwk"

    @property
    def public_file(self) -> Path:
        return self.folder / PUBLIC_JWKS

    def init(self, parties: Iterable[str], *, force: bool = False) -> list[str]:
        """One signing and one encryption key per party; refuses to overwrite keys."""
        self.folder.mkdir(parents=True, exist_ok=True)
        self.folder.chmod(0o700)
        parties = list(parties)
        existing = [p for p in parties if self.private_file(p).exists()]
        if existing and not force:
            raise KeystoreError(
                f"keys already exist for {', '.join(existing)} in {self.folder}; "
                "rotate them instead (gun-hub keys rotate PARTY)"
            )
        public: list[dict[str, Any]] = []
        for party in parties:
            keys = [_generate(party, KeyUse.SIG), _generate(party, KeyUse.ENC)]
            _write_private(
                self.private_file(party),
                {"party": party, "keys": [k.as_dict(private=True) for k in keys]},
            )
            public += [_public_entry(k, party) for k in keys]
        _write_public(self.public_file, {"keys": public})
        return parties

    def rotate(self, party: str) -> list[str]:
        """Add a new signing and encryption key for ``party``; return the new key ids."""
        private = self._read_private(party)
        jwks = self._read_public()
        new = [_generate(party, KeyUse.SIG), _generate(party, KeyUse.ENC)]
        private["keys"] += [k.as_dict(private=True) for k in new]
        jwks["keys"] += [_public_entry(k, party) for k in new]
        _write_private(self.private_file(party), private)
        _write_public(self.public_file, jwks)
        return [str(k.kid) for k in new]

    def retire(self, kid: str) -> str:
        """Mark a key retired: it no longer verifies, nor is encrypted to; returns its party."""
        jwks = self._read_public()
        for entry in jwks["keys"]:
            if entry.get("kid") == kid:
                entry["status"] = KeyStatus.RETIRED.value
                entry["retired"] = _now_iso()
                _write_public(self.public_file, jwks)
                return str(entry["party"])
        raise KeystoreError(f"no key {kid!r} in {self.public_file}")

    def _read_private(self, party: str) -> dict[str, Any]:
        return _read_json(self.private_file(party))

    def _read_public(self) -> dict[str, Any]:
        return _read_json(self.public_file)


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise KeystoreError(
            f"{path} does not exist (create keys with: gun-hub keys init --dir {path.parent})"
        ) from None
    except (OSError, ValueError) as err:
        raise KeystoreError(f"{path} is unreadable: {type(err).__name__}") from None
    if not isinstance(data, dict) or not isinstance(data.get("keys"), list):
        raise KeystoreError(f"{path} is not a JWK Set")
    return data


@dataclass(frozen=True, slots=True)
class PartyKeys:
    """What one party's process loads once at start-up: its private keys and the JWKS."""

    party: str
    signing_key: ECKey
    decryption_keys: dict[str, ECKey]
    public: dict[str, PublicKey]

    @classmethod
    def load(cls, folder: Path, party: str) -> PartyKeys:
        private = _read_json(folder / f"{party}.jwk")
        path = folder / f"{party}.jwk"
        mode = path.stat().st_mode & 0o777
        if mode & 0o077:
            raise KeystoreError(f"{path} is readable by others (mode {mode:o}); chmod 600 it")
        public = {entry.kid: entry for entry in _public_keys(_read_json(folder / PUBLIC_JWKS))}
        own = [ECKey.import_key(data) for data in private["keys"]]
        usable = [k for k in own if _status(public, str(k.kid)) is KeyStatus.ACTIVE]
        signing = [k for k in usable if k.get("use") == KeyUse.SIG.value]
        if not signing:
            raise KeystoreError(f"{party} has no active signing key in {folder}")
        return cls(
            party=party,
            # The newest generation signs; older ones only keep verifying until retired.
            signing_key=signing[-1],
            decryption_keys={str(k.kid): k for k in usable if k.get("use") == KeyUse.ENC.value},
            public=public,
        )

    def encryption_key_for(self, party: str) -> PublicKey:
        """The newest active encryption key of ``party``."""
        candidates = [
            k
            for k in self.public.values()
            if k.party == party and k.use is KeyUse.ENC and k.status is KeyStatus.ACTIVE
        ]
        if not candidates:
            raise KeystoreError(f"no active encryption key for {party!r} in the JWKS")
        return candidates[-1]  # rotation appends: the last one is the newest


def _status(public: dict[str, PublicKey], kid: str) -> KeyStatus:
    entry = public.get(kid)
    return entry.status if entry else KeyStatus.RETIRED


def _public_keys(jwks: dict[str, Any]) -> list[PublicKey]:
    keys = []
    for entry in jwks["keys"]:
        material = {
            k: v for k, v in entry.items() if k not in ("party", "status", "created", "retired")
        }
        keys.append(
            PublicKey(
                kid=str(entry["kid"]),
                party=str(entry["party"]),
                use=KeyUse(entry["use"]),
                alg=str(entry["alg"]),
                status=KeyStatus(entry.get("status", KeyStatus.ACTIVE.value)),
                created=str(entry.get("created", "")),
                key=ECKey.import_key(material),
                retired=str(entry.get("retired", "")),
            )
        )
    return keys
