"""Opening the contract's envelopes with jwcrypto, an implementation the hub does not use.

Contract section 5: a JWE compact serialization (ECDH-ES+A256KW, A256GCM) encrypted to the
recipient, whose plaintext is a JWS compact serialization (ES256) signed by the sender,
whose protected header names ``iss``, ``aud`` and ``topic``. The keys are read from the
keystore folder's files (``<party>.jwk`` private JWK Sets, ``jwks.json`` the public one);
nothing of the hub's keystore code is used. Freshness and replay are the receivers'
business, not the checker's: it opens every record, however old.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jwcrypto import jwe, jwk, jws
from jwcrypto.common import JWException

KEY_WRAP_ALG = "ECDH-ES+A256KW"
CONTENT_ALG = "A256GCM"
SIGNING_ALG = "ES256"
_KEYSTORE_FIELDS = ("party", "status", "created", "retired")


class EnvelopeError(ValueError):
    """The record is not a well-formed, well-signed envelope for the expected parties."""


@dataclass(frozen=True, slots=True)
class Opened:
    payload: bytes
    header: dict[str, Any]


def _key(entry: dict[str, Any]) -> Any:
    return jwk.JWK(**{k: v for k, v in entry.items() if k not in _KEYSTORE_FIELDS})


class KeyFolder:
    """The keys the checker needs, read from a keystore folder."""

    def __init__(self, folder: Path) -> None:
        self._folder = folder
        self._public = json.loads((folder / "jwks.json").read_text())["keys"]

    def decryption_keys(self, party: str) -> Any:
        keys = jwk.JWKSet()
        for entry in json.loads((self._folder / f"{party}.jwk").read_text())["keys"]:
            if entry.get("use") == "enc":
                keys.add(_key(entry))
        return keys

    def signing_keys(self, party: str) -> Any:
        keys = jwk.JWKSet()
        for entry in self._public:
            if entry.get("party") == party and entry.get("use") == "sig":
                keys.add(_key(entry))
        return keys


class EnvelopeOpener:
    """Opens what ``sender`` sealed for ``recipient`` on one topic."""

    def __init__(self, keys: KeyFolder, *, sender: str, recipient: str, topic: str) -> None:
        self._decrypt_with = keys.decryption_keys(recipient)
        self._verify_with = keys.signing_keys(sender)
        self.sender = sender
        self.recipient = recipient
        self.topic = topic

    def open(self, data: bytes) -> Opened:
        try:
            outer = jwe.JWE()
            outer.allowed_algs = [KEY_WRAP_ALG, CONTENT_ALG]
            outer.deserialize(data.decode("ascii"), key=self._decrypt_with)
            inner = jws.JWS()
            inner.allowed_algs = [SIGNING_ALG]
            inner.deserialize(bytes(outer.payload).decode("ascii"))
            inner.verify(self._verify_with)
            header: dict[str, Any] = dict(inner.jose_header)
            payload = bytes(inner.payload)
        except (JWException, ValueError, KeyError, TypeError, RecursionError) as err:
            raise EnvelopeError(f"cannot open: {type(err).__name__}: {err}"[:300]) from None
        expected = {"iss": self.sender, "aud": self.recipient, "topic": self.topic}
        for claim, value in expected.items():
            if header.get(claim) != value:
                raise EnvelopeError(f"{claim} is {header.get(claim)!r}, expected {value!r}")
        return Opened(payload, header)
