"""The keystore folder: a party's own private keys, and the public JWKS of every party.

Layout::

    DIR/<party>.jwk        private JWK Set of that party (mode 0600): its signing and
                           encryption keys, every generation still in service; and,
                           under ``state_keys``, its state keys (below)
    DIR/hub.audit.jwk      the hub's audit keys (mode 0600): they sign the audit trail's
                           checkpoints and nothing else
    DIR/jwks.json          public JWK Set; each key carries ``party``, ``status``
                           (``active`` or ``retired``) and ``created``; a rotated
                           envelope key ``use_from`` (below); audit keys also
                           ``purpose: audit`` and their validity (``not_before``,
                           ``not_after``)

Each party generates its private keys on its own machine (``gun-hub keys init --party P``)
and hands out its public keys only (``keys export-public``); the others add them to their
own JWKS (``keys import-public FILE --party P``), which refuses private material, a
different key under a key id it already knows, and anything in the file in another
party's name than P: each party vouches for its own keys only. The file may be a standard
JWKS (RFC 7517), as a partner's JOSE library writes it: no ``party`` (P is the party),
any key id that cannot read as another party's, ``use`` or ``alg`` inferred from the
other (security.md, "Keys"). ``keys init`` without
``--party`` makes every party's keys in one folder, for the demo and the tests.

Each party has separate keys per use (ANSSI key separation): an ``ES256`` key that signs
(``use: sig``) and an ``ECDH-ES+A256KW`` key others encrypt to (``use: enc``), both on
P-256; the hub has a third, its audit key, which the envelope never sees. Rotation adds a
new generation, published at once and used (to sign, and by the others to encrypt to)
only from its ``use_from`` time, ``ROTATION_GRACE`` later unless the rotation says when:
every reader accepts it from the moment it reads it, so nothing it seals is refused by a
reader that has not read ``jwks.json`` yet, nor by a partner that has not imported it
(ADR 0020). Older keys keep verifying and decrypting until they are retired, and after
it for what the broker accepted before the retirement (a backlog read late: the envelope
judges by the record's log-append time). So a party
keeps a retired encryption key in its private file until every record encrypted to it
has left the topics, then removes it with ``keys prune`` (``KeystoreFolder.prune``): its
key id stays, in ``jwks.json`` and the private file's ``pruned_keys``, so a late record is
refused as sealed to a pruned key (security.md, "Keys").

Each party also has **state keys**: symmetric AES-256-GCM keys (JWK ``oct``, ``use: enc``,
``purpose: state``) that seal what it keeps at rest (the hub's case table, an adapter's
queue of pending operations; :mod:`gun_contract.security.state_cipher`). They are secrets of
that party alone: kept in the ``state_keys`` member of its private file (a JWK Set member
that every other reader ignores, RFC 7517 section 5), so they travel wherever the private
file is deployed, and never in ``jwks.json``, never exported. ``keys rotate P --state``
adds a generation, which opens at once and seals only from its ``use_from`` time,
``ROTATION_GRACE`` later unless the rotation says when (ADR 0020's addendum of stop 41):
the new file is handed to every process of the party, and each restarted, before then, so
none ever meets a value sealed with a key it does not hold. The newest key in use seals,
every one kept still opens what it sealed; a state key with no ``use_from`` (every one
written before stop 41, and a party's first) is in use.

A running process sees a rotation or retirement without a restart: :class:`PartyKeys` and
:class:`AuditSigner` look at their files again at most once every ``KEY_RECHECK_S``
seconds and read them again when one was replaced or written; and :class:`PartyKeys` looks
at once when the envelope meets a key id it does not know, each time: a look is a ``stat``
of its two files, and only a changed one makes it read them (ADR 0020). A file that cannot
be read then leaves the keys read before in place and is logged with its name.

Nothing here ever writes key material to a log or an error message; errors name files and
key ids only, never the JSON or JOSE library's own message.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import fcntl
import functools
import json
import logging
import os
import re
import secrets
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Any, Concatenate, Generic, ParamSpec, Protocol, TypeVar

from joserfc.errors import JoseError
from joserfc.jwk import ECKey

from gun_contract.private_files import refuse_if_shared
from gun_contract.security.entitlements import CLEARANCE_PARTY, GATEWAY_PARTY, HUB_PARTY

log = logging.getLogger(__name__)

SIGNING_ALG = "ES256"
KEY_WRAP_ALG = "ECDH-ES+A256KW"
CONTENT_ALG = "A256GCM"
CURVE = "P-256"
PUBLIC_JWKS = "jwks.json"
AUDIT_PURPOSE = "audit"
STATE_PURPOSE = "state"
STATE_ALG = "A256GCM"
STATE_KEY_BYTES = 32
# The member of a party's private file that holds its state keys.
STATE_MEMBER = "state_keys"
# The member of a party's private file that says which of its keys' private parts were
# pruned, and when (key ids and times only: ``keys prune``).
PRUNED_MEMBER = "pruned_keys"
# The party that writes the audit trail, and so the only one with an audit key.
AUDITING_PARTY = "hub"
# A new audit key makes the links' MACs this long after its creation (AuditSigner).
MAC_KEY_SETTLES_S = 600.0
# An audit key signs checkpoints for this long after it is made; then a new one is needed
# (``gun-hub keys rotate hub --audit``), so that a key is never trusted for ever.
AUDIT_VALIDITY_DAYS = 730
# A running process looks at its key files at most this often.
KEY_RECHECK_S = 5.0
# A rotated envelope key is published at once and used (signs, is encrypted to) only this
# long after, unless ``keys rotate`` says when: time for every process to read jwks.json
# and for the other machines to import it (ADR 0020).
ROTATION_GRACE = timedelta(minutes=10)
# Read through the module so that tests can move time instead of sleeping.
_monotonic: Callable[[], float] = time.monotonic

# JWK members that only a private (or symmetric) key has (RFC 7518, section 6).
PRIVATE_MEMBERS = frozenset({"d", "p", "q", "dp", "dq", "qi", "oth", "k"})
_META = (
    "party",
    "status",
    "created",
    "retired",
    "purpose",
    "not_before",
    "not_after",
    "use_from",
)
_PARTY = re.compile(r"[a-z0-9][a-z0-9_-]{0,62}")
# A key id: printable, no spaces; it may start with "-" or "_", as about 3 % of RFC 7638
# thumbprints (base64url) do, the key ids of partners who make their keys with a JOSE library.
_KID = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._:-]{0,127}")


def is_key_id(text: str) -> bool:
    """Whether ``text`` has the form of a key id a keystore may hold."""
    return _KID.fullmatch(text) is not None


# The form of every key id ``keys init`` and ``rotate`` give (``_new_kid``), and its party.
_MADE_HERE_KID = re.compile(
    r"(?P<party>[a-z0-9][a-z0-9_-]{0,62})-(?P<kind>sig|enc|audit|state)-[0-9]{8}T[0-9]{6}"
    r"-[0-9a-f]{6}"
)


def never_a_state_key_of(kid: str, party: str) -> bool:
    """Whether ``kid`` has the form ``keys init`` and ``rotate`` give and names a key that
    is not a state key of ``party`` (another party's, or a key of another kind): no key
    file of ``party`` ever holds it as one, however late it is deployed."""
    made = _MADE_HERE_KID.fullmatch(kid)
    return made is not None and (made["party"], made["kind"]) != (party, STATE_PURPOSE)


# The parties the contract names whatever the topic registry holds: a key id starting with
# one of their names reads as theirs.
_CONTRACT_PARTIES = frozenset({HUB_PARTY, CLEARANCE_PARTY, GATEWAY_PARTY})


class KeyUse(StrEnum):
    SIG = "sig"
    ENC = "enc"


ALG_FOR_USE = {KeyUse.SIG: SIGNING_ALG, KeyUse.ENC: KEY_WRAP_ALG}
# What an algorithm says of a key's use, when a standard JWKS leaves ``use`` out.
_USE_FOR_ALG = {alg: use.value for use, alg in ALG_FOR_USE.items()}


class KeyStatus(StrEnum):
    ACTIVE = "active"
    RETIRED = "retired"


class KeystoreError(RuntimeError):
    """The keystore is missing, unreadable or inconsistent; the message says which file."""


class NoEncryptionKey(KeystoreError):
    """No active encryption key of a party: nothing can be sealed to it. The keys'
    fault, never a record's: a worker meeting it handles the record again, then stops
    naming it (runtime/app.py), rather than dead-letter sound records as bugs."""


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
    purpose: str = ""
    not_before: datetime | None = None
    not_after: datetime | None = None
    # An envelope key signs and is encrypted to from this time on (None: since it was
    # published); every reader accepts it before, from the moment it reads it.
    use_from: datetime | None = None

    @property
    def retired_at(self) -> datetime | None:
        return _parse_time(self.retired) if self.retired else None

    def in_use_at(self, when: datetime) -> bool:
        """Whether its party signs with it, or is encrypted to with it, at ``when``."""
        return self.use_from is None or self.use_from <= when

    def invalid_at(self, when: datetime) -> str | None:
        """Why this key may not vouch for something signed at ``when``; None if it may.

        A key retired later still vouches for what it signed before its retirement.
        """
        if self.not_before is not None and when < self.not_before:
            return f"before the validity of {self.kid} (from {_iso(self.not_before)})"
        if self.not_after is not None and when > self.not_after:
            return f"after the validity of {self.kid} (until {_iso(self.not_after)})"
        retired = self.retired_at if self.status is KeyStatus.RETIRED else None
        if self.status is KeyStatus.RETIRED and (retired is None or when > retired):
            since = f" on {_iso(retired)}" if retired else ""
            return f"after {self.kid} was retired{since}"
        return None

    def thumbprint(self) -> str:
        """RFC 7638 thumbprint: what two parties compare over the phone."""
        return str(self.key.thumbprint())


def _iso(when: datetime) -> str:
    return when.isoformat(timespec="seconds")


def _now() -> datetime:
    return datetime.now(UTC)


def now() -> datetime:
    """The wall clock the key store judges use times by (a test moves it: ``_now``)."""
    return _now()


def _parse_time(text: str) -> datetime:
    """An ISO 8601 time; one without a zone is UTC. Raises ValueError."""
    parsed = datetime.fromisoformat(text)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def check_party_name(party: str) -> str:
    """A party name is also a file name: lower-case letters, digits, ``-`` and ``_``."""
    if not _PARTY.fullmatch(party):
        raise KeystoreError(
            f"{party!r} is not a party name (lower-case letters, digits, '-' and '_')"
        )
    return party


# -- generating keys -------------------------------------------------------------------


def _new_kid(party: str, kind: str) -> str:
    stamp = _now().strftime("%Y%m%dT%H%M%S")
    return f"{party}-{kind}-{stamp}-{secrets.token_hex(3)}"


def _generate(party: str, use: KeyUse, purpose: str = "") -> ECKey:
    return ECKey.generate_key(
        CURVE,
        parameters={
            "kid": _new_kid(party, purpose or use.value),
            "use": use.value,
            "alg": ALG_FOR_USE[use],
        },
        private=True,
    )


def _new_state_key(party: str) -> dict[str, Any]:
    """A fresh 256-bit state key as a private JWK (``oct``)."""
    secret = secrets.token_bytes(STATE_KEY_BYTES)
    return {
        "kty": "oct",
        "kid": _new_kid(party, STATE_PURPOSE),
        "use": KeyUse.ENC.value,
        "alg": STATE_ALG,
        "purpose": STATE_PURPOSE,
        "k": base64.urlsafe_b64encode(secret).rstrip(b"=").decode(),
        "created": _iso(_now()),
    }


def _public_entry(
    key: ECKey,
    party: str,
    *,
    purpose: str = "",
    valid_days: int | None = None,
    use_from: datetime | None = None,
) -> dict[str, Any]:
    now = _now()
    entry = dict(key.as_dict(private=False))
    entry.update({"party": party, "status": KeyStatus.ACTIVE.value, "created": _iso(now)})
    if purpose:
        entry["purpose"] = purpose
    if use_from is not None:
        entry["use_from"] = _iso(use_from)
    if valid_days is not None:
        entry["not_before"] = _iso(now)
        entry["not_after"] = _iso(now + timedelta(days=valid_days))
    return entry


def _write_private(path: Path, data: dict[str, Any]) -> None:
    """Write a private key file readable by its owner only, atomically."""
    _write_durably(path, json.dumps(data, indent=2), 0o600)


def _write_public(path: Path, data: dict[str, Any]) -> None:
    _write_durably(path, json.dumps(data, indent=2) + "\n", 0o644)


def _write_durably(path: Path, text: str, mode: int) -> None:
    """``text`` in ``path``, whole or not at all, on the disk before the call returns: a
    temporary file of its own (a name shared by two writers let one truncate the other's),
    synced before it replaces the old file, and the folder synced after (a power loss
    just after a rotation could leave the key file empty, every key in it lost: review
    of stop 47)."""
    descriptor, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    temporary = Path(name)
    try:
        os.fchmod(descriptor, mode)
        with os.fdopen(descriptor, "w") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        temporary.replace(path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    folder = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(folder)
    finally:
        os.close(folder)


# -- reading files, with errors that name them ------------------------------------------


def _read_json_value(path: Path) -> object:
    try:
        text = path.read_bytes().decode("utf-8")
    except FileNotFoundError:
        raise KeystoreError(f"{path} does not exist") from None
    except OSError as err:
        raise KeystoreError(f"{path} cannot be read ({err.strerror or 'I/O error'})") from None
    except UnicodeDecodeError:
        raise KeystoreError(f"{path} is not UTF-8 text") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise KeystoreError(
            f"{path} is not valid JSON (line {err.lineno}, column {err.colno})"
        ) from None
    except RecursionError:
        raise KeystoreError(f"{path} is not valid JSON (nested too deeply)") from None


def _read_json(path: Path) -> dict[str, Any]:
    if not path.exists() and path.name == PUBLIC_JWKS:
        raise KeystoreError(
            f"{path} does not exist (create keys with: gun-hub keys init --dir {path.parent})"
        )
    data = _read_json_value(path)
    return _as_jwks(data, str(path))


def _as_jwks(data: object, source: str) -> dict[str, Any]:
    if not isinstance(data, dict) or not isinstance(data.get("keys"), list):
        raise KeystoreError(f'{source} is not a JWK Set (a JSON object with a "keys" list)')
    return data


def _kid_of(entry: object) -> str:
    kid = entry.get("kid") if isinstance(entry, dict) else None
    return f" ({kid!r})" if isinstance(kid, str) and len(kid) <= 128 else ""


def _parse_public(entry: object, where: str) -> PublicKey:
    """One entry of a public JWKS, checked member by member; errors start with ``where``."""
    if not isinstance(entry, dict):
        raise KeystoreError(f"{where} is not a JSON object")
    if PRIVATE_MEMBERS & set(entry):
        raise KeystoreError(f"{where} holds private key material")

    def text(name: str, default: str | None = None) -> str:
        value = entry.get(name, default)
        if not isinstance(value, str):
            raise KeystoreError(f"{where} has no {name!r} text")
        return value

    kid = text("kid")
    if not _KID.fullmatch(kid):
        raise KeystoreError(f"{where} has a key id that is not plain text")
    party = text("party")
    if not _PARTY.fullmatch(party):
        raise KeystoreError(f"{where} names no valid party")
    try:
        use = KeyUse(text("use"))
    except ValueError:
        raise KeystoreError(f"{where} has an unknown use (sig or enc)") from None
    alg = text("alg")
    if alg != ALG_FOR_USE[use]:
        raise KeystoreError(f"{where}: algorithm {alg!r} is not allowed for use {use.value!r}")
    purpose = text("purpose", "")
    if purpose not in ("", AUDIT_PURPOSE) or (purpose and use is not KeyUse.SIG):
        raise KeystoreError(f"{where} has an unknown purpose")
    try:
        status = KeyStatus(text("status", KeyStatus.ACTIVE.value))
    except ValueError:
        raise KeystoreError(f"{where} has an unknown status (active or retired)") from None
    times: dict[str, datetime | None] = {}
    for name in ("created", "retired", "not_before", "not_after", "use_from"):
        value = text(name, "")
        try:
            times[name] = _parse_time(value) if value else None
        except ValueError:
            raise KeystoreError(f"{where} has a {name!r} that is not an ISO 8601 time") from None
    if entry.get("kty") != "EC" or entry.get("crv") != CURVE:
        raise KeystoreError(f"{where} is not an EC key on {CURVE}")
    material = {name: entry[name] for name in ("kty", "crv", "x", "y") if name in entry}
    for name in ("x", "y"):
        # RFC 7518 6.2.1.2: the full size, 32 bytes on P-256. The same point written
        # shorter or padded with zeros is the same key under another RFC 7638 thumbprint,
        # which the one-key-one-party check compares: the hub's signing key was imported
        # as the clearance system's (review stop 56). Read in the full size, so a key an
        # earlier import kept in a minimal length still loads, under its one thumbprint.
        full = _full_size_coordinate(material.get(name))
        if full is None:
            raise KeystoreError(
                f"{where} is not a valid {CURVE} public key ({name!r} is not a "
                f"{_COORDINATE_BYTES}-byte coordinate in base64url)"
            )
        material[name] = full
    try:
        key = ECKey.import_key(
            material, parameters={"kid": kid, "use": use.value, "alg": ALG_FOR_USE[use]}
        )
    except (JoseError, ValueError, TypeError, KeyError):
        raise KeystoreError(f"{where} is not a valid {CURVE} public key") from None
    return PublicKey(
        kid=kid,
        party=party,
        use=use,
        alg=alg,
        status=status,
        created=text("created", ""),
        key=key,
        retired=text("retired", ""),
        purpose=purpose,
        not_before=times["not_before"],
        not_after=times["not_after"],
        use_from=times["use_from"],
    )


def _public_keys(jwks: dict[str, Any], source: str) -> dict[str, PublicKey]:
    keys: dict[str, PublicKey] = {}
    for number, entry in enumerate(jwks["keys"], start=1):
        public = _parse_public(entry, f"{source}: key {number}{_kid_of(entry)}")
        if public.kid in keys:
            raise KeystoreError(f"{source}: two keys under the key id {public.kid!r}")
        keys[public.kid] = public
    return keys


def read_public_keys(path: Path) -> dict[str, PublicKey]:
    """Every public key of a JWKS file (envelope and audit keys), checked; by key id.
    A retirement dated after the reading is taken as a retirement with no time."""
    return _no_retirement_ahead(_public_keys(_read_json(path), str(path)), str(path), _now())


def _no_retirement_ahead(
    keys: dict[str, PublicKey], source: str, loaded_at: datetime
) -> dict[str, PublicKey]:
    """``keys``, a retired key whose retirement is dated after ``loaded_at`` made a key
    retired with no time, which serves nothing (jose_envelope.retired_for); logged, by
    its key id. A retirement is stamped when it is made, so no honest one is ahead: a
    JWKS written by an import before stop 38 kept a partner's stated time (a tool's
    error, a typo, an export edited by a leaked key's holder), and taken at its word it
    let a key retired until then vouch again until that date (review stop 38-s, S4)."""
    for kid, key in keys.items():
        retired = key.retired_at
        if key.status is not KeyStatus.RETIRED or retired is None or retired <= loaded_at:
            continue
        keys[kid] = replace(key, retired="")
        said = (source, kid, key.retired)
        if said not in _RETIREMENTS_AHEAD_SAID:  # a process reads a JWKS several times
            _RETIREMENTS_AHEAD_SAID.add(said)
            log.warning(
                "%s: key %s is retired with a retirement dated %s, after it was read (%s): "
                "taken as retired with no time, it serves nothing; set its retirement with "
                "'gun-hub keys retire %s --since TIME' if a backlog signed or encrypted "
                "before it must still open",
                source,
                kid,
                _iso(retired),
                _iso(loaded_at),
                kid,
            )
    return keys


# The retirements dated ahead already logged, by JWKS file, key id and stated time.
_RETIREMENTS_AHEAD_SAID: set[tuple[str, str, str]] = set()


def _private_json(path: Path, party: str) -> dict[str, Any]:
    """A private key file of ``party`` as a JWK Set, refused if others may read it."""
    try:
        refuse_if_shared(path, KeystoreError)
    except FileNotFoundError:
        raise KeystoreError(
            f"{path} does not exist (make {party}'s keys on its own machine with: "
            f"gun-hub keys init --party {party} --dir {path.parent})"
        ) from None
    except OSError as err:
        raise KeystoreError(f"{path} cannot be read ({err.strerror or 'I/O error'})") from None
    data = _read_json(path)
    if data.get("party", party) != party:
        raise KeystoreError(f"{path} holds the keys of {data.get('party')!r}, not {party!r}")
    return data


def _read_private(path: Path, party: str) -> list[ECKey]:
    """The private keys of a private key file, refused if others may read it."""
    return _private_keys(_private_json(path, party), path)


def _private_keys(data: dict[str, Any], path: Path) -> list[ECKey]:
    """The private keys of the private key file ``path`` holding ``data``."""
    keys: list[ECKey] = []
    for number, entry in enumerate(data["keys"], start=1):
        where = f"{path}: key {number}{_kid_of(entry)}"
        if not isinstance(entry, dict) or entry.get("kty") != "EC" or entry.get("crv") != CURVE:
            raise KeystoreError(f"{where} is not an EC key on {CURVE}")
        if "d" not in entry:
            raise KeystoreError(f"{where} is no private key (no 'd')")
        if not isinstance(entry.get("kid"), str) or entry.get("use") not in ("sig", "enc"):
            raise KeystoreError(f"{where} has no key id or no use")
        material = dict(entry)
        for name in ("x", "y"):
            # In the full size, as the public keys (_parse_public): a pair an exporter
            # wrote shorter matches its public key's thumbprint (review of stop 56).
            if name in material:
                full = _full_size_coordinate(material[name])
                if full is None:
                    raise KeystoreError(f"{where} is not a valid {CURVE} private key")
                material[name] = full
        try:
            key = ECKey.import_key(material)
        except (JoseError, ValueError, TypeError, KeyError):
            raise KeystoreError(f"{where} is not a valid {CURVE} private key") from None
        keys.append(key)
    if not keys:
        raise KeystoreError(f"{path} holds no private key")
    return keys


@dataclass(frozen=True, slots=True)
class StateKey:
    """One state key of a party: its id (kept in every value it seals), its secret, and
    from when it seals (None: since it was written); it opens from the moment it is read."""

    kid: str
    secret: bytes = field(repr=False)
    use_from: datetime | None = None

    def in_use_at(self, when: datetime) -> bool:
        """Whether its party seals with it at ``when`` (the newest such key does)."""
        return self.use_from is None or self.use_from <= when


def sealing_state_key(keys: Sequence[StateKey], at: datetime) -> tuple[StateKey, datetime | None]:
    """The key of ``keys`` (oldest first) that seals at ``at``: the newest in use then (with
    none in use yet, the newest: a file edited by hand; every process holding it opens what
    it seals); and when that may change (the next use time after ``at``, None: never)."""
    sealing = _current(keys, lambda key: key, at)
    ahead = [key.use_from for key in keys if key.use_from is not None and key.use_from > at]
    return sealing, min(ahead, default=None)


_COORDINATE_BYTES = 32  # P-256


def _full_size_coordinate(value: object) -> str | None:
    """The P-256 coordinate ``value`` as RFC 7518 writes it (32 bytes, base64url without
    padding): a shorter one zero-filled, leading zero bytes past 32 dropped; None if it
    is no coordinate (not base64url, or more than 32 bytes of value)."""
    if not isinstance(value, str) or not re.fullmatch(r"[A-Za-z0-9_-]{1,128}", value):
        return None
    try:
        decoded = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
    except binascii.Error:
        return None
    stripped = decoded.lstrip(b"\0")
    if len(stripped) > _COORDINATE_BYTES:
        return None
    full = stripped.rjust(_COORDINATE_BYTES, b"\0")
    return base64.urlsafe_b64encode(full).rstrip(b"=").decode()


def _parse_state_key(entry: object, where: str) -> StateKey:
    if not isinstance(entry, dict):
        raise KeystoreError(f"{where} is not a JSON object")
    kid = entry.get("kid")
    if not isinstance(kid, str) or not _KID.fullmatch(kid):
        raise KeystoreError(f"{where} has no key id in plain text")
    expected = {
        "kty": "oct",
        "use": KeyUse.ENC.value,
        "alg": STATE_ALG,
        "purpose": STATE_PURPOSE,
    }
    for name, value in expected.items():
        if entry.get(name) != value:
            raise KeystoreError(f"{where} is not a state key ({name} must be {value!r})")
    encoded = entry.get("k")
    if not isinstance(encoded, str) or not re.fullmatch(r"[A-Za-z0-9_-]+", encoded):
        raise KeystoreError(f"{where} has no key material ('k', base64url)")
    try:
        secret = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4))
    except binascii.Error:
        # 4n+1 characters of the alphabet decode to no bytes: a key copied a character
        # short or long (review stop 56: a traceback naming no file, and at a reload the
        # record in hand dead-lettered as a bug).
        raise KeystoreError(f"{where} has key material ('k') that is not base64url") from None
    if len(secret) != STATE_KEY_BYTES:
        raise KeystoreError(f"{where} is not a {STATE_KEY_BYTES * 8}-bit key")
    use_from = entry.get("use_from")
    if use_from is None:
        return StateKey(kid, secret)
    try:
        return StateKey(kid, secret, _parse_time(str(use_from)))
    except ValueError:
        raise KeystoreError(f"{where}: 'use_from' is not an ISO 8601 time") from None


def read_state_keys(folder: Path, party: str) -> list[StateKey]:
    """``party``'s state keys from its private file, oldest first (the last one seals)."""
    path = folder / f"{check_party_name(party)}.jwk"
    entries = _private_json(path, party).get(STATE_MEMBER)
    if entries is None:
        raise KeystoreError(
            f"{path} holds no state key (the key that seals {party}'s data at rest); "
            f"add one with: gun-hub keys rotate {party} --state"
        )
    if not isinstance(entries, list) or not entries:
        raise KeystoreError(f"{path}: {STATE_MEMBER!r} is not a non-empty list of keys")
    keys: list[StateKey] = []
    for number, entry in enumerate(entries, start=1):
        key = _parse_state_key(entry, f"{path}: state key {number}{_kid_of(entry)}")
        if any(k.kid == key.kid for k in keys):
            raise KeystoreError(f"{path}: two state keys under the key id {key.kid!r}")
        keys.append(key)
    return keys


def follow_state_keys(
    folder: Path, party: str, recheck_s: float = KEY_RECHECK_S
) -> tuple[Callable[[], list[StateKey]], Callable[[], bool]]:
    """``party``'s state keys as a running process sees them: read again when its private
    file changes (looked at once every ``recheck_s`` seconds), and a function that looks
    at once (a value sealed with a key id not known yet: rotated by another worker) and
    says whether they changed."""
    view = _Reloading(
        lambda: read_state_keys(folder, party),
        [folder / f"{check_party_name(party)}.jwk"],
        recheck_s,
        f"state keys of {party} in {folder}",
    )
    return view.get, view.check_now


def _check_matches(own: Iterable[ECKey], public: Mapping[str, PublicKey], path: Path) -> None:
    for key in own:
        entry = public.get(str(key.kid))
        if entry is not None and entry.thumbprint() != key.thumbprint():
            raise KeystoreError(
                f"{path}: key {key.kid!r} does not match the public key of that id in "
                f"{path.parent / PUBLIC_JWKS}"
            )
        if entry is not None and key.get("use") != entry.use.value:
            # Each key one use, as published: swapped in a private file edited by hand,
            # one key both signed and decrypted (no key separation) and every message was
            # refused as signed by a key "not registered" (review stop 56).
            raise KeystoreError(
                f"{path}: key {key.kid!r} is for {key.get('use')!r} here and for "
                f"{entry.use.value!r} in {path.parent / PUBLIC_JWKS}"
            )


def _status(public: Mapping[str, PublicKey], kid: str) -> KeyStatus:
    entry = public.get(kid)
    return entry.status if entry else KeyStatus.RETIRED


# -- a view of files that reads them again when they change ---------------------------

T = TypeVar("T")
K = TypeVar("K")


def _stamp(paths: Iterable[Path]) -> tuple[tuple[int, ...] | None, ...]:
    """What tells a file changed: its inode, times, size, and its mode and owner (a file
    refused as readable by others, then narrowed by ``chmod``, changed none of the first
    three and was never read again: review of stop 47)."""
    stamps: list[tuple[int, ...] | None] = []
    for path in paths:
        try:
            stat = path.stat()
        except OSError:
            stamps.append(None)
        else:
            stamps.append(
                (
                    stat.st_ino,
                    stat.st_mtime_ns,
                    stat.st_ctime_ns,
                    stat.st_size,
                    stat.st_mode,
                    stat.st_uid,
                )
            )
    return tuple(stamps)


class _Reloading(Generic[T]):
    """What ``load`` read from ``paths``; read again when one of them has changed, looked
    at (a ``stat`` of each) every ``recheck_s`` seconds, or at once when asked. Only a
    changed stat makes it read the files, so a look costs two ``stat`` calls and reading
    happens no more often than the files change. Every writer of these files writes a file
    beside them and renames it into place, so a read never meets one half-written. A
    failed reading is logged and leaves the previous value in place, narrowed by
    ``from_public`` when given (what the public key set alone can still tell)."""

    def __init__(
        self,
        load: Callable[[], T],
        paths: list[Path],
        recheck_s: float,
        what: str,
        from_public: Callable[[T], T] | None = None,
    ) -> None:
        self._load = load
        self._from_public = from_public
        self._paths = paths
        self._recheck_s = recheck_s
        self._what = what
        # Stat before reading: a change made during the read is then seen at the next look.
        self._stamp = _stamp(paths)
        self._value = load()
        self._checked = _monotonic()
        self.read_at = _now()  # wall clock, of the reading the value comes from

    def get(self) -> T:
        now = _monotonic()
        if now - self._checked >= self._recheck_s:
            self.check_now()
        return self._value

    def check_now(self) -> bool:
        """Look at the files now, whenever they were last looked at, and read them if they
        changed since; whether what is held changed."""
        self._checked = _monotonic()
        stamp = _stamp(self._paths)
        if stamp == self._stamp:
            return False
        self._stamp = stamp  # a broken file is reported once, until it changes again
        try:
            value = self._load()
        except KeystoreError as err:
            problem: KeystoreError | None = err  # logged below: its text names the file
        else:
            problem = None
        if problem is not None:
            return self._keep_what_was_loaded(problem)
        self._value = value
        self.read_at = _now()
        log.info("%s: read again after a change", self._what)
        return True

    def _keep_what_was_loaded(self, problem: KeystoreError) -> bool:
        """The files read badly: keep the keys loaded before, applying what the public key
        set still says when it reads well. A private file refused (a rotation run as
        another user) kept the whole previous view: another party's key retired because
        it leaked was accepted until someone mended the private file (review of stop 47)."""
        if self._from_public is None:
            log.error("%s: %s; keeping the keys loaded before", self._what, problem)
            return False
        try:
            value = self._from_public(self._value)
        except KeystoreError as err:
            public_problem: KeystoreError | None = err  # logged below, as in check_now
        else:
            public_problem = None
        if public_problem is not None:
            log.error(
                "%s: %s; and %s; keeping the keys loaded before",
                self._what,
                problem,
                public_problem,
            )
            return False
        log.error(
            "%s: %s; applying what %s says of the other parties' keys and of the "
            "retirement of our own, keeping our own private keys loaded before",
            self._what,
            problem,
            PUBLIC_JWKS,
        )
        changed = value != self._value
        self._value = value
        self.read_at = _now()  # of jwks.json, what a refusal of an unknown key id names
        return changed


@dataclass(frozen=True, slots=True)
class RetiredDecryptionKey:
    """One of our own encryption keys, retired: it still decrypts what the broker accepted
    before ``public``'s retirement time, and nothing after (the envelope judges)."""

    key: ECKey
    public: PublicKey


@dataclass(frozen=True, slots=True)
class PrunedDecryptionKey:
    """One of our own encryption keys whose private part is gone (``keys prune``, or
    removed by hand: ``pruned`` is then ''): what was encrypted to it is refused, saying
    so, rather than as a key nobody knows."""

    public: PublicKey
    pruned: str = ""

    def describe(self) -> str:
        """Why a record encrypted to it before its retirement no longer opens."""
        retired = self.public.retired_at
        when = f" on {_iso(retired)}" if retired is not None else ""
        state = "was retired" + when if self.public.status is KeyStatus.RETIRED else "is active"
        gone = (
            f"its private part was pruned on {self.pruned} (gun-hub keys prune)"
            if self.pruned
            else f"its private part is no longer in {self.public.party}.jwk"
        )
        return f"{state} and {gone}: nothing encrypted to it can be decrypted any more"


class _InUse(Protocol):
    def in_use_at(self, when: datetime) -> bool: ...


def _current(keys: Sequence[K], public: Callable[[K], _InUse | None], at: datetime) -> K:
    """The key of ``keys`` (active, oldest first) its party uses at ``at``: the newest in
    use then; with none in use yet (the keys before them retired early: a leak), the
    newest, which every reader that has read it accepts."""
    in_use = [k for k in keys if (entry := public(k)) is None or entry.in_use_at(at)]
    return (in_use or keys)[-1]


@dataclass(frozen=True, slots=True)
class _PartyView:
    signing_keys: tuple[ECKey, ...]  # active, oldest first
    decryption_keys: dict[str, ECKey]
    public: dict[str, PublicKey]
    audit_keys: dict[str, PublicKey] = field(default_factory=dict)
    retired_decryption_keys: dict[str, RetiredDecryptionKey] = field(default_factory=dict)
    pruned_decryption_keys: dict[str, PrunedDecryptionKey] = field(default_factory=dict)
    # Each party's active encryption keys, oldest first, gathered once per reading of the
    # keys: every seal asks for one, and scanning the whole JWKS each time cost more than
    # the look-up (stop 39). Which of them is in use is still judged at each seal (a
    # rotated key from its ``use_from`` on). A view is never changed once made.
    encryption_keys: dict[str, list[PublicKey]] = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "encryption_keys", active_encryption_keys(self.public))

    def signing_key_at(self, at: datetime) -> ECKey:
        return _current(self.signing_keys, lambda k: self.public.get(str(k.kid)), at)


def active_encryption_keys(public: Mapping[str, PublicKey]) -> dict[str, list[PublicKey]]:
    """Each party's active encryption keys in ``public``, in the order listed (rotation
    appends: the last is the newest)."""
    keys: dict[str, list[PublicKey]] = {}
    for key in public.values():
        if key.use is KeyUse.ENC and key.status is KeyStatus.ACTIVE:
            keys.setdefault(key.party, []).append(key)
    return keys


def _load_party(folder: Path, party: str) -> _PartyView:
    path = folder / f"{party}.jwk"
    data = _private_json(path, party)
    own = _private_keys(data, path)
    everything = read_public_keys(folder / PUBLIC_JWKS)
    _check_matches(own, everything, path)
    public = {kid: k for kid, k in everything.items() if k.purpose != AUDIT_PURPOSE}
    usable = [k for k in own if _status(public, str(k.kid)) is KeyStatus.ACTIVE]
    signing = [k for k in usable if k.get("use") == KeyUse.SIG.value]
    if not signing:
        raise KeystoreError(f"{party} has no active signing key in {folder}")
    # A retired key of ours still decrypts a backlog encrypted to it before its retirement;
    # one missing from the JWKS has no retirement time to judge by, and decrypts nothing.
    retired = {
        str(k.kid): RetiredDecryptionKey(k, public[str(k.kid)])
        for k in own
        if k.get("use") == KeyUse.ENC.value
        and str(k.kid) in public
        and public[str(k.kid)].status is KeyStatus.RETIRED
    }
    # Our encryption keys the JWKS knows whose private part is gone: pruned, or removed
    # by hand before ``keys prune`` existed.
    pruned_on = _pruned_members(data, path)
    kept = {str(k.kid) for k in own}
    pruned = {
        kid: PrunedDecryptionKey(key, pruned_on.get(kid, ""))
        for kid, key in public.items()
        if key.party == party and key.use is KeyUse.ENC and kid not in kept
    }
    return _PartyView(
        # The newest generation in use signs; older ones only keep verifying until retired.
        signing_keys=tuple(signing),
        decryption_keys={str(k.kid): k for k in usable if k.get("use") == KeyUse.ENC.value},
        public=public,
        audit_keys={kid: k for kid, k in everything.items() if k.purpose == AUDIT_PURPOSE},
        retired_decryption_keys=retired,
        pruned_decryption_keys=pruned,
    )


def _narrowed(known: PublicKey, read: PublicKey | None) -> PublicKey:
    """Our own key ``known`` as a public key set read without our private file may change
    it: retired, or retired earlier, and nothing else (a retirement only narrows what is
    accepted; anything else about our keys waits for a complete reading)."""
    if read is None or not _same_key(read, known) or read.status is not KeyStatus.RETIRED:
        return known
    if known.status is KeyStatus.RETIRED and not _retired_earlier(read, known):
        return known
    return read


def _party_view_from_public(folder: Path, party: str, before: _PartyView) -> _PartyView:
    """``before`` updated by the public key set alone: every other party's keys as a
    complete reading gives them, our own keys' retirements, our private keys unchanged.

    Only when it is our private file that does not read, and the public key set still
    lists our keys as we hold them, one of our signing keys active: another keystore's
    ``jwks.json`` restored by mistake failed the complete reading too ("no active
    signing key"), and its keys were taken (review of stop 48's own commits)."""
    path = folder / f"{party}.jwk"
    try:
        _private_keys(_private_json(path, party), path)
    except KeystoreError:
        pass  # the private file is what failed: the public key set may still be read
    else:
        raise KeystoreError(f"{path} reads, so {PUBLIC_JWKS} is what does not fit it")
    everything = read_public_keys(folder / PUBLIC_JWKS)
    held = [
        *before.signing_keys,
        *before.decryption_keys.values(),
        *(retired.key for retired in before.retired_decryption_keys.values()),
    ]
    _check_matches(held, everything, path)
    if not any(_status(everything, str(k.kid)) is KeyStatus.ACTIVE for k in before.signing_keys):
        raise KeystoreError(f"{folder / PUBLIC_JWKS} lists none of our signing keys as active")
    public = {
        kid: k for kid, k in everything.items() if k.purpose != AUDIT_PURPOSE and k.party != party
    }
    for kid, known in before.public.items():
        if known.party == party:
            public[kid] = _narrowed(known, everything.get(kid))
    decryption: dict[str, ECKey] = {}
    retired = {
        kid: RetiredDecryptionKey(old.key, public.get(kid, old.public))
        for kid, old in before.retired_decryption_keys.items()
    }
    for kid, key in before.decryption_keys.items():
        if kid in public and public[kid].status is KeyStatus.RETIRED:
            retired[kid] = RetiredDecryptionKey(key, public[kid])
        else:
            decryption[kid] = key
    signing = tuple(
        k for k in before.signing_keys if _status(public, str(k.kid)) is KeyStatus.ACTIVE
    )
    return _PartyView(
        signing_keys=signing or before.signing_keys,  # none left: the newest, as a last resort
        decryption_keys=decryption,
        public=public,
        audit_keys={kid: k for kid, k in everything.items() if k.purpose == AUDIT_PURPOSE},
        retired_decryption_keys=retired,
        pruned_decryption_keys=before.pruned_decryption_keys,
    )


def _pruned_members(data: dict[str, Any], path: Path) -> dict[str, str]:
    """Key id -> when its private part was pruned, from the ``pruned_keys`` member."""
    entries = data.get(PRUNED_MEMBER, [])
    if not isinstance(entries, list):
        raise KeystoreError(f"{path}: {PRUNED_MEMBER!r} is not a list")
    pruned: dict[str, str] = {}
    for number, entry in enumerate(entries, start=1):
        if not (
            isinstance(entry, dict)
            and isinstance(entry.get("kid"), str)
            and isinstance(entry.get("pruned"), str)
        ):
            raise KeystoreError(f"{path}: {PRUNED_MEMBER} entry {number} has no kid or time")
        pruned[entry["kid"]] = entry["pruned"]
    return pruned


class PartyKeys:
    """One party's keys as its process uses them: its private keys and everyone's public
    keys (the audit keys apart: the envelope never sees them).

    ``PartyKeys.load`` gives a view that follows the folder: a rotation or retirement
    written there reaches the running process within ``KEY_RECHECK_S`` seconds, through
    the same object the envelope holds. Built directly, it is fixed.
    """

    def __init__(
        self,
        party: str,
        signing_key: ECKey,
        decryption_keys: dict[str, ECKey],
        public: dict[str, PublicKey],
        audit_keys: dict[str, PublicKey] | None = None,
        retired_decryption_keys: dict[str, RetiredDecryptionKey] | None = None,
    ) -> None:
        self.party = party
        fixed = _PartyView(
            (signing_key,),
            decryption_keys,
            public,
            audit_keys or {},
            retired_decryption_keys or {},
        )
        self._view: Callable[[], _PartyView] = lambda: fixed
        self._files: _Reloading[_PartyView] | None = None
        self._warned_invalid: set[str] = set()  # parties with no encryption key valid now

    @classmethod
    def load(cls, folder: Path, party: str, *, recheck_s: float = KEY_RECHECK_S) -> PartyKeys:
        check_party_name(party)
        view = _Reloading(
            lambda: _load_party(folder, party),
            [folder / f"{party}.jwk", folder / PUBLIC_JWKS],
            recheck_s,
            f"keys of {party} in {folder}",
            lambda before: _party_view_from_public(folder, party, before),
        )
        first = view.get()
        keys = cls(party, first.signing_key_at(_now()), first.decryption_keys, first.public)
        keys._view = view.get
        keys._files = view
        return keys

    @property
    def signing_key(self) -> ECKey:
        """Our newest signing key in use now (a rotated one from its ``use_from`` on)."""
        return self._view().signing_key_at(_now())

    def look_again(self) -> bool:
        """Look at the key files now: the envelope met a key id it does not know (one
        published a moment ago); whether what is held changed. Done for every such key id,
        with no limit in time, so that a record under a made-up one cannot use up the look
        a genuine one needs (review stop 39-S, S1): it costs a ``stat`` of the two files,
        and they are read only if one of them changed."""
        if self._files is None:
            return False
        return self._files.check_now()

    @property
    def read_at(self) -> datetime | None:
        """When the keys held were read from the files (None: keys given, not read)."""
        return self._files.read_at if self._files is not None else None

    @property
    def decryption_keys(self) -> dict[str, ECKey]:
        """Our active encryption keys' private parts, by key id."""
        return self._view().decryption_keys

    @property
    def retired_decryption_keys(self) -> dict[str, RetiredDecryptionKey]:
        """Our retired encryption keys still in our private file, by key id."""
        return self._view().retired_decryption_keys

    @property
    def pruned_decryption_keys(self) -> dict[str, PrunedDecryptionKey]:
        """Our encryption keys whose private part is gone (``keys prune``), by key id."""
        return self._view().pruned_decryption_keys

    @property
    def public(self) -> dict[str, PublicKey]:
        """Every party's envelope keys, by key id."""
        return self._view().public

    @property
    def audit_keys(self) -> dict[str, PublicKey]:
        """The public keys that may sign audit checkpoints, by key id."""
        return self._view().audit_keys

    def encryption_key_for(self, party: str) -> PublicKey:
        """The newest active encryption key of ``party`` in use now (rotation appends: the
        last one is the newest; a rotated one is used from its ``use_from`` on)."""
        candidates = self._view().encryption_keys.get(party)
        if not candidates:
            raise NoEncryptionKey(f"no active encryption key for {party!r} in the JWKS")
        now = _now()
        # A validity its entry states is kept to, as for signatures (review of stop 48's
        # own commits: a key past its not_after was still encrypted to). With none valid,
        # the newest is used and the error logged once: the partner decides what it opens.
        valid = [k for k in candidates if k.invalid_at(now) is None]
        if not valid and party not in self._warned_invalid:
            self._warned_invalid.add(party)
            log.error(
                "no encryption key of %s is valid at %s (its not_before/not_after in %s): "
                "encrypting to %s; ask %s for a new one",
                party,
                _iso(now),
                PUBLIC_JWKS,
                candidates[-1].kid,
                party,
            )
        return _current(valid or candidates, lambda k: k, now)


@dataclass(frozen=True, slots=True)
class _AuditView:
    keys: list[ECKey]
    public: dict[str, PublicKey]

    def valid_at(self, at: datetime) -> list[ECKey]:
        """The active keys whose validity covers ``at``, oldest first."""
        return [
            key
            for key in self.keys
            if self.public[str(key.kid)].status is KeyStatus.ACTIVE
            and self.public[str(key.kid)].invalid_at(at) is None
        ]


def _load_audit(folder: Path, party: str) -> _AuditView:
    path = folder / f"{party}.audit.jwk"
    own = _read_private(path, party)
    public = read_public_keys(folder / PUBLIC_JWKS)
    _check_matches(own, public, path)
    listed = [k for k in own if str(k.kid) in public]
    for key in listed:
        if public[str(key.kid)].purpose != AUDIT_PURPOSE or key.get("use") != KeyUse.SIG.value:
            raise KeystoreError(f"{path}: key {key.kid!r} is not an audit signing key")
    if not listed:
        raise KeystoreError(
            f"no key of {path} is in {folder / PUBLIC_JWKS} "
            f"(make one with: gun-hub keys rotate {party} --audit)"
        )
    return _AuditView(listed, public)


def _audit_view_from_public(folder: Path, party: str, before: _AuditView) -> _AuditView:
    """``before`` with its keys' retirements read from the public key set alone, when it
    is the audit key file that does not read (as :func:`_party_view_from_public`)."""
    path = folder / f"{party}.audit.jwk"
    try:
        _read_private(path, party)
    except KeystoreError:
        pass
    else:
        raise KeystoreError(f"{path} reads, so {PUBLIC_JWKS} is what does not fit it")
    everything = read_public_keys(folder / PUBLIC_JWKS)
    _check_matches(before.keys, everything, path)
    public = dict(before.public)
    for key in before.keys:
        kid = str(key.kid)
        public[kid] = _narrowed(before.public[kid], everything.get(kid))
    return _AuditView(before.keys, public)


class AuditSigner:
    """The hub's audit keys: which one signs a checkpoint made at a given time.

    Follows its files like :class:`PartyKeys`, so a new audit key is used without a restart.
    """

    def __init__(self, view: Callable[[], _AuditView], party: str) -> None:
        self._view = view
        self.party = party
        self._warned: set[str] = set()

    @classmethod
    def load(
        cls, folder: Path, party: str = AUDITING_PARTY, *, recheck_s: float = KEY_RECHECK_S
    ) -> AuditSigner:
        check_party_name(party)
        path = folder / f"{party}.audit.jwk"
        if not path.exists():
            raise KeystoreError(
                f"{path} does not exist: the audit trail's checkpoints are signed with an "
                f"audit key of their own (make it with: gun-hub keys rotate {party} --audit)"
            )
        view = _Reloading(
            lambda: _load_audit(folder, party),
            [path, folder / PUBLIC_JWKS],
            recheck_s,
            f"audit keys of {party} in {folder}",
            lambda before: _audit_view_from_public(folder, party, before),
        )
        return cls(view.get, party)

    def every_key(self) -> list[ECKey]:
        """Every active audit key the hub holds, oldest first: a link whose MAC was made
        with one of them is the hub's (gun_hub/security/audit.py). A retired key's are
        not: retiring a key is how a leaked one is revoked."""
        view = self._view()
        return [k for k in view.keys if view.public[str(k.kid)].status is KeyStatus.ACTIVE]

    def mac_key_for(self, at: datetime) -> ECKey:
        """The key a link made at ``at`` carries the MAC of: the newest active audit key
        valid then that has existed for ``MAC_KEY_SETTLES_S``, else the oldest valid one,
        else (none valid) the one :meth:`key_for` falls back to, its error logged.

        A new audit key is valid from its creation, but each worker reads it only when
        its key files reach it (a mounted secret takes a minute or more); a worker taking
        a partition over must know the key of every link it finds there, or it leaves the
        links behind as not the hub's and forks the chain (found by review in stop 34).
        """
        view = self._view()
        valid = view.valid_at(at)
        settled = [
            key
            for key in valid
            if (since := view.public[str(key.kid)].not_before) is None
            or since <= at - timedelta(seconds=MAC_KEY_SETTLES_S)
        ]
        if settled:
            return settled[-1]
        return valid[0] if valid else self.key_for(at)

    def key_for(self, at: datetime) -> ECKey:
        """The newest active audit key whose validity covers ``at``.

        With none, the newest is used and the error logged: the checkpoint will not
        verify, which is what an auditor must see, but the hub goes on deciding.
        """
        view = self._view()
        valid = view.valid_at(at)
        if valid:
            return valid[-1]
        key = view.keys[-1]
        if str(key.kid) not in self._warned:
            self._warned.add(str(key.kid))
            log.error(
                "no audit key of %s is valid at %s: checkpoints signed with %s will not "
                "verify; make a new one (gun-hub keys rotate %s --audit)",
                self.party,
                _iso(at),
                key.kid,
                self.party,
            )
        return key


# -- the keys command ---------------------------------------------------------------------


@dataclass
class ImportReport:
    """What ``keys import-public`` did, key id by key id."""

    added: list[PublicKey] = field(default_factory=list)
    retired: list[PublicKey] = field(default_factory=list)
    unchanged: list[PublicKey] = field(default_factory=list)
    kept_retired: list[PublicKey] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class PruneDecision:
    """Whether a key's private part may be removed (``prunable``), and why."""

    kid: str
    party: str
    use: KeyUse
    retired: str  # as jwks.json says ('': active, or retired with no time)
    prunable: bool
    reason: str
    purpose: str = ""  # AUDIT_PURPOSE for the hub's audit keys

    @property
    def kind(self) -> str:
        """What the key is, as ``keys prune`` prints it: sig, enc or audit."""
        return self.purpose or self.use.value


@dataclass(frozen=True, slots=True)
class NoKnownSpan:
    """No span is known after which a retired encryption key serves nothing: a topic
    addressed to its party keeps records for ever, or how long they are kept could not be
    learnt (``why`` says which, and what to do). Such a key is kept, forced or not."""

    why: str


def prune_decision(
    key: PublicKey, *, now: datetime, keep_for: timedelta | NoKnownSpan, force: bool = False
) -> PruneDecision:
    """Whether the private part of our key ``key`` may be removed at ``now``.

    A key still current never (retire it first, even forced: everything sealed to it now
    would be refused). A retired signing key at once: what it signs from its retirement on
    is refused, and what it signed before is verified with its public part. An encryption
    key retired with no time only with ``force``: it decrypts nothing, but dated with
    ``keys retire --since`` it opens a backlog again. A retired encryption key once
    ``keep_for`` has passed since its retirement: it decrypts what the broker accepted
    before the retirement, and such a record stays readable at most that long after (twice
    the longest retention of the topics addressed to the party, the registry's or the
    broker's: ``gun_hub.security.key_retention``); earlier only with ``force``, and those
    records are then refused; never while no such span is known (:class:`NoKnownSpan`).
    """

    def decided(prunable: bool, reason: str) -> PruneDecision:
        return PruneDecision(key.kid, key.party, key.use, key.retired, prunable, reason)

    if key.status is not KeyStatus.RETIRED:
        return decided(False, "still current: retire it first (gun-hub keys retire KID)")
    retired = key.retired_at
    if key.use is KeyUse.SIG:
        since = f" on {_iso(retired)}" if retired is not None else ""
        return decided(True, f"retired{since}: what it signs from then on is refused")
    if retired is None:
        # Serves nothing now, but ``keys retire KID --since TIME`` (a retirement dated
        # ahead, an old file) makes it decrypt the backlog before TIME again.
        return decided(
            force,
            "retired with no time: it decrypts nothing now, unless dated with 'gun-hub keys "
            "retire KID --since TIME'" + (" (forced)" if force else " (--force to prune)"),
        )
    since = f"retired on {_iso(retired)}"
    if isinstance(keep_for, NoKnownSpan):
        return decided(False, f"{since}: {keep_for.why}")
    needed = _days(keep_for)
    if now - retired >= keep_for:
        return decided(
            True,
            f"{since}, more than {needed} ago: no record encrypted to it before can be "
            "left in the log",
        )
    until = f"a record encrypted to it before may stay readable until {_iso(retired + keep_for)}"
    if force:
        return decided(True, f"{since} (forced: {until}, and is then refused)")
    return decided(False, f"{since}, less than {needed} ago: {until} (--force to prune now)")


def _audit_prune_decisions(
    own: Sequence[ECKey], public: Mapping[str, PublicKey], *, now: datetime, party: str
) -> list[PruneDecision]:
    """Whether each of the hub's audit keys may go: a retired one at once, like a retired
    signing key (its checkpoints from its retirement on are refused, its links' MACs count
    no more, what it signed before is verified with its public part), unless no active one
    is left: the hub signs with the newest until a new one is made, and could not start
    without any."""
    active = [k for k in own if _status(public, str(k.kid)) is KeyStatus.ACTIVE]
    decisions = []
    for key in own:
        entry = public.get(str(key.kid))
        if entry is None:
            decisions.append(
                PruneDecision(
                    str(key.kid),
                    party,
                    KeyUse.SIG,
                    "",
                    False,
                    "not in the JWKS: nothing to judge its retirement by; left alone",
                    AUDIT_PURPOSE,
                )
            )
            continue
        decision = prune_decision(entry, now=now, keep_for=NoKnownSpan("never encrypted to"))
        if decision.prunable and not active:
            decision = replace(
                decision,
                prunable=False,
                reason=f"{decision.reason}; but the hub has no active audit key to sign "
                f"with instead: make one first (gun-hub keys rotate {party} --audit)",
            )
        decisions.append(replace(decision, purpose=AUDIT_PURPOSE))
    return decisions


def _remove_pruned(
    path: Path,
    data: dict[str, Any],
    own: Sequence[ECKey],
    decisions: Sequence[PruneDecision],
    now: datetime,
) -> None:
    """Remove from the private file ``path`` (holding ``data``) the keys ``decisions`` let
    go, and note their key ids and the time in its ``pruned_keys``."""
    gone = {d.kid for d in decisions if d.prunable}
    if not gone:
        return
    data[PRUNED_MEMBER] = [
        *data.get(PRUNED_MEMBER, []),
        *(
            {"kid": d.kid, "use": d.use.value, "retired": d.retired, "pruned": _iso(now)}
            for d in decisions
            if d.prunable
        ),
    ]
    data["keys"] = [k.as_dict(private=True) for k in own if str(k.kid) not in gone]
    _write_private(path, data)


def _days(span: timedelta) -> str:
    days = span.total_seconds() / 86_400
    return f"{days:g} day{'s' if days != 1 else ''}"


def _use_time(use_from: datetime | None) -> datetime:
    """When a rotated key comes into use: ``use_from``, now if that is past, or
    ``ROTATION_GRACE`` from now by default."""
    now = _now()
    return max(use_from, now) if use_from is not None else now + ROTATION_GRACE


# Held (``flock``, exclusive) by every command that changes a keystore folder, for the
# whole of its reading and writing: two at once each wrote back what it had read, and the
# other's new keys were lost (``keys prune --apply`` from cron during a rotation lost the
# new private keys ``jwks.json`` published: review of stop 47).
LOCK_FILE = ".keystore.lock"

_P = ParamSpec("_P")
_R = TypeVar("_R")


def _one_at_a_time(
    change: Callable[Concatenate[KeystoreFolder, _P], _R],
) -> Callable[Concatenate[KeystoreFolder, _P], _R]:
    """``change`` runs holding the folder's lock (:meth:`KeystoreFolder._holding`)."""

    @functools.wraps(change)
    def held(self: KeystoreFolder, /, *args: _P.args, **kwargs: _P.kwargs) -> _R:
        with self._holding():
            return change(self, *args, **kwargs)

    return held


class KeystoreFolder:
    """Create, rotate, retire, prune, export and import the keys of a keystore folder."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._held = threading.local()  # how deep this thread holds the lock

    @contextlib.contextmanager
    def _holding(self) -> Iterator[None]:
        """The folder's lock, held by this thread until the outermost change ends (a
        change calling another takes it once). A folder not made yet is made first."""
        depth = getattr(self._held, "depth", 0)
        if depth:
            self._held.depth = depth + 1
            try:
                yield
            finally:
                self._held.depth = depth
            return
        self.folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        try:
            lock = os.open(self.folder / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as err:
            # A folder this user cannot write (a read-only mount): nothing here can be
            # changed either, and what only reads (a prune without --apply) goes on.
            log.debug("keystore %s not locked: %s", self.folder, err)
            yield
            return
        try:
            fcntl.flock(lock, fcntl.LOCK_EX)  # released when closed
            self._held.depth = 1
            try:
                yield
            finally:
                self._held.depth = 0
        finally:
            os.close(lock)

    def private_file(self, party: str) -> Path:
        return self.folder / f"{check_party_name(party)}.jwk"

    def audit_file(self, party: str = AUDITING_PARTY) -> Path:
        return self.folder / f"{check_party_name(party)}.audit.jwk"

    @property
    def public_file(self) -> Path:
        return self.folder / PUBLIC_JWKS

    def local_parties(self) -> set[str]:
        """Parties whose private keys are in this folder."""
        if not self.folder.is_dir():
            return set()
        names = (p.name.removesuffix(".jwk") for p in self.folder.glob("*.jwk"))
        return {name for name in names if _PARTY.fullmatch(name)}

    def _prepare(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        self.folder.chmod(0o700)

    def _generate_party(
        self, party: str, audit_valid_days: int
    ) -> tuple[list[ECKey], list[ECKey], list[dict[str, Any]]]:
        """Envelope keys, audit keys (hub) and public entries; the state key is made when
        the private file is written (it has no public part)."""
        keys = [_generate(party, KeyUse.SIG), _generate(party, KeyUse.ENC)]
        public = [_public_entry(k, party) for k in keys]
        audit: list[ECKey] = []
        if party == AUDITING_PARTY:
            audit = [_generate(party, KeyUse.SIG, AUDIT_PURPOSE)]
            public += [
                _public_entry(k, party, purpose=AUDIT_PURPOSE, valid_days=audit_valid_days)
                for k in audit
            ]
        return keys, audit, public

    def _write_party(
        self,
        party: str,
        keys: list[ECKey],
        audit: list[ECKey],
        state_kept: Sequence[object] = (),
    ) -> None:
        """``state_kept``: the state keys of the file replaced, kept before the new one
        (what they sealed still opens)."""
        _write_private(
            self.private_file(party),
            {
                "party": party,
                "keys": [k.as_dict(private=True) for k in keys],
                STATE_MEMBER: [*state_kept, _new_state_key(party)],
            },
        )
        if audit:
            _write_private(
                self.audit_file(party),
                {
                    "party": party,
                    "purpose": AUDIT_PURPOSE,
                    "keys": [k.as_dict(private=True) for k in audit],
                },
            )

    @_one_at_a_time
    def init(
        self,
        parties: Iterable[str],
        *,
        force: bool = False,
        audit_valid_days: int = AUDIT_VALIDITY_DAYS,
    ) -> list[str]:
        """Every party's keys in this one folder (the demo, the tests): one signing and one
        encryption key per party, the hub's audit key, and a JWKS of all of them."""
        parties = [check_party_name(p) for p in parties]
        existing = [p for p in parties if self.private_file(p).exists()]
        if existing and not force:
            raise KeystoreError(
                f"keys already exist for {', '.join(existing)} in {self.folder}; "
                "rotate them instead (gun-hub keys rotate PARTY)"
            )
        self._prepare()
        public: list[dict[str, Any]] = []
        for party in parties:
            private = self.private_file(party)
            state_kept = self._state_keys_of(private) if private.exists() else []
            keys, audit, entries = self._generate_party(party, audit_valid_days)
            self._write_party(party, keys, audit, state_kept)
            public += entries
        _write_public(self.public_file, {"keys": public})
        return parties

    @_one_at_a_time
    def init_party(
        self, party: str, *, force: bool = False, audit_valid_days: int = AUDIT_VALIDITY_DAYS
    ) -> list[str]:
        """``party``'s own keys, made here, and only them; its public keys join this
        folder's JWKS (the others' come by ``import_public``). Returns the new key ids."""
        private = self.private_file(party)
        jwks = self._read_public() if self.public_file.exists() else {"keys": []}
        theirs = [e for e in jwks["keys"] if isinstance(e, dict) and e.get("party") == party]
        if private.exists() and not force:
            raise KeystoreError(
                f"keys of {party} already exist in {self.folder}; rotate them instead "
                f"(gun-hub keys rotate {party})"
            )
        if theirs and not private.exists() and not force:
            raise KeystoreError(
                f"{self.public_file} already holds public keys of {party}, imported from its "
                f"own machine; {party}'s private keys are made there, not here"
            )
        state_kept = self._state_keys_of(private) if private.exists() else []
        self._prepare()
        keys, audit, entries = self._generate_party(party, audit_valid_days)
        self._write_party(party, keys, audit, state_kept)
        others = [e for e in jwks["keys"] if not (isinstance(e, dict) and e.get("party") == party)]
        _write_public(self.public_file, {**jwks, "keys": others + entries})
        return [str(k.kid) for k in keys + audit]

    @staticmethod
    def _state_keys_of(private: Path) -> list[object]:
        """The state keys of a private file replaced by force (``init_party``): dropped,
        whatever they sealed (cases, the outbox, operator actions, rollout settings) never
        opened again, every worker stopping on them (review of stop 47). A file that does
        not read keeps none: said."""
        try:
            data = _read_json_value(private)
        except KeystoreError as err:
            log.warning("%s; its state keys, if any, are not kept", err)
            return []
        kept = data.get(STATE_MEMBER) if isinstance(data, dict) else None
        return list(kept) if isinstance(kept, list) else []

    @_one_at_a_time
    def rotate(
        self,
        party: str,
        *,
        audit: bool = False,
        state: bool = False,
        audit_valid_days: int = AUDIT_VALIDITY_DAYS,
        use_from: datetime | None = None,
    ) -> list[str]:
        """Add a new key generation for ``party`` (``audit``: a new audit key of the hub;
        ``state``: a new state key); return the new key ids. The old keys keep verifying
        until retired; old state keys keep opening what they sealed.

        New envelope keys are published now and used (they sign, the others encrypt to
        them) from ``use_from`` on, ``ROTATION_GRACE`` from now by default: every process
        reads them before then, and they are exported for the other machines to import
        (ADR 0020). ``use_from`` now or earlier: in use at once (one machine whose every
        process looks again on an unknown key id, or a leaked key). A new state key is
        the same: it opens at once and seals from ``use_from`` on, time for the private
        file to reach every process of the party (ADR 0020's addendum of stop 41)."""
        if audit and state:
            raise KeystoreError("rotate either the audit key or the state key, not both")
        if use_from is not None and use_from.tzinfo is None:
            use_from = use_from.replace(tzinfo=UTC)
        if use_from is not None and audit:
            raise KeystoreError(
                "a use time is for envelope and state keys only (an audit key settles on its own)"
            )
        if state:
            return [self._rotate_state(party, use_from)]
        jwks = self._read_public()
        data: dict[str, Any]
        if audit:
            if party != AUDITING_PARTY:
                raise KeystoreError(f"only {AUDITING_PARTY} has audit keys")
            path = self.audit_file(party)
            new = [_generate(party, KeyUse.SIG, AUDIT_PURPOSE)]
            entries = [
                _public_entry(k, party, purpose=AUDIT_PURPOSE, valid_days=audit_valid_days)
                for k in new
            ]
            # The other members kept as they are (the record of pruned keys).
            data = (
                {
                    **_private_json(path, party),
                    "keys": [k.as_dict(private=True) for k in _read_private(path, party)],
                }
                if path.exists()
                else {"keys": []}
            )
            data.update(party=party, purpose=AUDIT_PURPOSE)
        else:
            path = self.private_file(party)
            new = [_generate(party, KeyUse.SIG), _generate(party, KeyUse.ENC)]
            in_use = _use_time(use_from)
            entries = [_public_entry(k, party, use_from=in_use) for k in new]
            # The other members kept as they are: the state keys seal data at rest, the
            # record of pruned keys names what a late record was encrypted to.
            data = {
                **_private_json(path, party),
                "party": party,
                "keys": [k.as_dict(private=True) for k in _read_private(path, party)],
            }
        data["keys"] += [k.as_dict(private=True) for k in new]
        jwks["keys"] += entries
        _write_private(path, data)
        _write_public(self.public_file, jwks)
        return [str(k.kid) for k in new]

    def _rotate_state(self, party: str, use_from: datetime | None) -> str:
        """A new state key for ``party``, which opens at once and seals from ``use_from``
        (:func:`_use_time`); a file made before state keys existed gets its first one, in
        use at once (there is nothing else to seal with, and no value sealed before)."""
        path = self.private_file(party)
        _read_private(path, party)  # the envelope keys are checked before any change
        data = _private_json(path, party)
        kept = data.get(STATE_MEMBER, [])
        new = _new_state_key(party)
        if kept:
            read_state_keys(self.folder, party)  # the ones kept are checked too
            new["use_from"] = _iso(_use_time(use_from))
        data[STATE_MEMBER] = [*kept, new]
        _write_private(path, data)
        return str(new["kid"])

    @_one_at_a_time
    def retire(self, kid: str, *, since: datetime | None = None, last: bool = False) -> str:
        """Mark a key retired as of ``since`` (default now): it is no longer encrypted to,
        nor signs, and serves only records the broker accepted before that time; returns
        its party. ``since`` earlier than now is for a leaked key: everything accepted
        since the leak is refused too. A key already retired keeps the earlier time: a
        second retirement never lets through what the first refused.

        The last active signing key of a party whose private keys are in this folder is
        retired only with ``last``: its running processes could no longer load their keys
        and keep those loaded before, every later retirement ignored, another party's
        leaked key among them (review of stop 47). Rotate first."""
        now = _now()
        if since is not None and since.tzinfo is None:
            since = since.replace(tzinfo=UTC)
        if since is not None and since > now:
            raise KeystoreError(f"a retirement cannot be dated in the future ({_iso(since)})")
        when = since or now
        jwks = self._read_public()
        for entry in jwks["keys"]:
            if entry.get("kid") == kid:
                if not last:
                    self._refuse_a_last_signing_key(jwks, entry)
                    self._refuse_a_last_encryption_key(jwks, entry)
                if entry.get("status") == KeyStatus.RETIRED.value:
                    before = entry.get("retired")
                    if not before:  # retired with no time: it serves nothing already
                        return str(entry["party"])
                    when = min(when, _parse_time(str(before)))
                entry["status"] = KeyStatus.RETIRED.value
                entry["retired"] = _iso(when)
                _write_public(self.public_file, jwks)
                return str(entry["party"])
        raise KeystoreError(f"no key {kid!r} in {self.public_file}")

    def _refuse_a_last_signing_key(self, jwks: dict[str, Any], entry: dict[str, Any]) -> None:
        party = str(entry.get("party", ""))

        def signs(key: dict[str, Any]) -> bool:
            return (
                key.get("party") == party
                and key.get("use") == KeyUse.SIG.value
                and key.get("purpose", "") != AUDIT_PURPOSE
                and key.get("status", KeyStatus.ACTIVE.value) == KeyStatus.ACTIVE.value
            )

        if not signs(entry) or party not in self.local_parties():
            return
        if any(signs(other) and other.get("kid") != entry.get("kid") for other in jwks["keys"]):
            return
        raise KeystoreError(
            f"{entry.get('kid')} is {party}'s last active signing key: retired, {party}'s "
            "running processes could no longer load their keys and would keep those loaded "
            "before, every later retirement ignored; rotate first "
            f"(gun-hub keys rotate {party}), then retire it, or retire it all the same "
            "with --last"
        )

    def _refuse_a_last_encryption_key(self, jwks: dict[str, Any], entry: dict[str, Any]) -> None:
        """Any party's: retired, nothing could be encrypted to it any more, and every
        message for it stops its sender (review stop 56: dead-lettered as a bug before)."""
        party = str(entry.get("party", ""))

        def encrypted_to(key: dict[str, Any]) -> bool:
            return (
                key.get("party") == party
                and key.get("use") == KeyUse.ENC.value
                and key.get("purpose", "") != AUDIT_PURPOSE
                and key.get("status", KeyStatus.ACTIVE.value) == KeyStatus.ACTIVE.value
            )

        if not encrypted_to(entry):
            return
        if any(encrypted_to(o) and o.get("kid") != entry.get("kid") for o in jwks["keys"]):
            return
        raise KeystoreError(
            f"{entry.get('kid')} is {party}'s last active encryption key: retired, nothing "
            f"could be encrypted to {party} any more; rotate first (gun-hub keys rotate "
            f"{party}, or import {party}'s new key), then retire it, or retire it all the "
            "same with --last"
        )

    @_one_at_a_time
    def prune(
        self,
        party: str,
        *,
        keep_for: timedelta | NoKnownSpan,
        now: datetime | None = None,
        force: bool = False,
        apply: bool = False,
    ) -> list[PruneDecision]:
        """What to do with each envelope key in ``party``'s private file (``prune_decision``);
        with ``apply``, remove the private parts of those that may go, and note their key
        ids and the time in the file's ``pruned_keys`` (their public parts stay in
        jwks.json: a late record is refused as sealed to a pruned key, not an unknown one).
        Without ``apply`` nothing is written. Running processes follow within seconds."""
        now = now or _now()
        path = self.private_file(party)
        data = _private_json(path, party)
        own = _private_keys(data, path)
        public = self.public_keys()
        decisions = [
            prune_decision(public[str(k.kid)], now=now, keep_for=keep_for, force=force)
            if str(k.kid) in public
            else PruneDecision(
                str(k.kid),
                party,
                KeyUse(str(k.get("use"))),
                "",
                False,
                f"not in {self.public_file}: nothing to judge its retirement by; left alone",
            )
            for k in own
        ]
        if apply:
            _remove_pruned(path, data, own, decisions, now)
        audit = self.audit_file(party)
        if party == AUDITING_PARTY and audit.exists():
            audit_data = _private_json(audit, party)
            audit_keys = _private_keys(audit_data, audit)
            judged = _audit_prune_decisions(audit_keys, public, now=now, party=party)
            if apply:
                _remove_pruned(audit, audit_data, audit_keys, judged, now)
            decisions += judged
        return decisions

    def public_keys(self) -> dict[str, PublicKey]:
        return read_public_keys(self.public_file)

    def export_public(self, party: str) -> dict[str, Any]:
        """The JWKS ``party`` hands to the others: its public keys, retired ones included
        (so that a retirement travels too), and nothing private."""
        check_party_name(party)
        jwks = self._read_public()
        keys = [entry for entry in jwks["keys"] if entry.get("party") == party]
        if not keys:
            raise KeystoreError(f"no public key of {party!r} in {self.public_file}")
        return {"keys": [{k: v for k, v in e.items() if k not in PRIVATE_MEMBERS} for e in keys]}

    @_one_at_a_time
    def import_public_file(self, path: Path, *, party: str) -> ImportReport:
        return self.import_public(_read_json_value(path), party=party, source=str(path))

    @_one_at_a_time
    def import_public(self, data: object, *, party: str, source: str) -> ImportReport:
        """Add ``party``'s public keys, as it exported them, to this folder's JWKS.

        A standard JWKS is taken as ``party``'s (:func:`_as_partys`). Refuses, importing
        nothing: anything private; any key (or retirement) in another party's name than
        ``party``, or whose key id reads as another party's; a key in the name of a party
        whose private keys are in this folder; a different key under a key id already
        known; a key already registered under another key id. A key already known is
        left as it is, except that a retirement is taken over (a retired key is never
        made active again)."""
        check_party_name(party)
        jwks_in = _as_jwks(data, source)
        for number, entry in enumerate(jwks_in["keys"], start=1):
            if isinstance(entry, dict) and PRIVATE_MEMBERS & set(entry):
                raise KeystoreError(
                    f"{source} holds private key material (key {number}{_kid_of(entry)}): "
                    "only public keys are exchanged; nothing imported"
                )
        jwks_in = {
            **jwks_in,
            "keys": [
                _as_partys(entry, party, f"{source}: key {number}{_kid_of(entry)}")
                for number, entry in enumerate(jwks_in["keys"], start=1)
            ],
        }
        incoming = _public_keys(jwks_in, source)
        if not incoming:
            raise KeystoreError(f"{source} holds no key")
        # A file vouches for its sender's keys only: a key labelled as another party's
        # (the gateway's, to sign declarations; the hub's, to be encrypted to) or a
        # retirement of another's key would otherwise be taken on the sender's word.
        for kid, key in incoming.items():
            if key.party != party:
                raise KeystoreError(
                    f"{source}: key {kid!r} is in the name of {key.party!r}, not of "
                    f"{party!r} whose keys this file is to hold; nothing imported"
                )
        jwks = self._read_public() if self.public_file.exists() else {"keys": []}
        known = _public_keys(jwks, str(self.public_file))
        local = self.local_parties()
        # The contract sets no key id format: a partner's library names its keys as it
        # will (RFC 7638 thumbprints). A key id of another form than ``party-`` is taken
        # only if it cannot read as another party's key: none begins with the name of a
        # party known here or named by the contract, nor has the form ``keys init`` gives
        # another party's keys. The key id stays the one key of one party (a known id
        # under another key is refused below), and a key is registered once only.
        others = ({k.party for k in known.values()} | local | _CONTRACT_PARTIES) - {party}
        for kid in incoming:
            if kid.startswith(f"{party}-"):
                continue
            made_here = _MADE_HERE_KID.fullmatch(kid)
            if made_here or any(kid.startswith(f"{other}-") for other in others):
                whose = made_here.group("party") if made_here else kid.split("-", 1)[0]
                raise KeystoreError(
                    f"{source}: key id {kid!r} reads as a key of {whose!r}, not of {party!r} "
                    f"(whose key ids start with {party + '-'!r} or name no other party); "
                    "nothing imported"
                )
        thumbprints = {key.thumbprint(): key for key in known.values()}
        for kid, key in incoming.items():
            same = thumbprints.setdefault(key.thumbprint(), key)
            if same.kid != kid:
                raise KeystoreError(
                    f"{source}: key {kid!r} is already registered as {same.kid!r} of "
                    f"{same.party!r}: one key, one key id, one party; nothing imported"
                )
        report = ImportReport()
        for kid, key in incoming.items():
            old = known.get(kid)
            if old is not None and not _same_key(old, key):
                raise KeystoreError(
                    f"{source}: key id {kid!r} already names a different key in "
                    f"{self.public_file}; nothing imported"
                )
            if key.party in local and (
                old is None or key.status is not old.status or _retired_earlier(key, old)
            ):
                raise KeystoreError(
                    f"{source}: key {kid!r} is in the name of {key.party!r}, whose keys are "
                    f"made here (gun-hub keys init/rotate/retire); nothing imported"
                )
            if old is None:
                report.added.append(key)
            elif key.status is KeyStatus.RETIRED and (
                old.status is KeyStatus.ACTIVE or _retired_earlier(key, old)
            ):
                # An earlier retirement time is taken over too: the party dated it back
                # to when its key leaked.
                report.retired.append(key)
            elif key.status is KeyStatus.ACTIVE and old.status is KeyStatus.RETIRED:
                report.kept_retired.append(old)
            else:
                report.unchanged.append(old)
        entries = {str(e.get("kid")): e for e in jwks["keys"]}
        for key in report.retired:
            entries[key.kid]["status"] = KeyStatus.RETIRED.value
            entries[key.kid]["retired"] = _retirement_known_here(key)
        for key in report.added:
            [entry] = [e for e in jwks_in["keys"] if e.get("kid") == key.kid]
            entry = _clean_public(entry)
            if key.status is KeyStatus.RETIRED:
                entry["retired"] = _retirement_known_here(key)
            jwks["keys"].append(entry)
        if report.added or report.retired:
            self._prepare()
            _write_public(self.public_file, jwks)
        return report

    def _read_public(self) -> dict[str, Any]:
        jwks = _read_json(self.public_file)
        _public_keys(jwks, str(self.public_file))  # every entry checked before any change
        return jwks


def _as_partys(entry: object, party: str, where: str) -> object:
    """A standard JWKS entry (RFC 7517) as ``party``'s key: ``party`` taken from the
    command when the file does not say it (a file that names another is refused later),
    ``use`` and ``alg`` from each other when one is absent. A P-256 key with neither may
    sign or be encrypted to: refused, saying what to add."""
    if not isinstance(entry, dict):
        return entry
    entry = dict(entry)
    entry.setdefault("party", party)
    use, alg = entry.get("use"), entry.get("alg")
    if use is None and alg is None:
        raise KeystoreError(
            f"{where} has neither 'use' nor 'alg': a {CURVE} key may sign ({SIGNING_ALG}) "
            f'or be encrypted to ({KEY_WRAP_ALG}); add "use": "sig" or "use": "enc" to it '
            "in the file; nothing imported"
        )
    if use is None and isinstance(alg, str) and alg in _USE_FOR_ALG:
        entry["use"] = _USE_FOR_ALG[alg]
    if alg is None and isinstance(use, str) and use in ALG_FOR_USE:
        entry["alg"] = ALG_FOR_USE[KeyUse(use)]
    return entry


def _retired_earlier(incoming: PublicKey, known: PublicKey) -> bool:
    """Whether ``incoming`` dates the retirement of a key already retired here earlier."""
    earlier, later = incoming.retired_at, known.retired_at
    # Known retired with no time, it serves nothing: no stated time can be earlier.
    return earlier is not None and later is not None and earlier < later


def _retirement_known_here(key: PublicKey) -> str:
    """The retirement time of an imported retired key: its party's, but never later than
    now (a retirement dated ahead would let the key serve on after it is marked retired),
    and now when its party gave none."""
    now = _now()
    stated = key.retired_at
    return _iso(min(stated, now) if stated is not None else now)


def _same_key(a: PublicKey, b: PublicKey) -> bool:
    return (a.party, a.use, a.alg, a.purpose, a.not_before, a.not_after, a.thumbprint()) == (
        b.party,
        b.use,
        b.alg,
        b.purpose,
        b.not_before,
        b.not_after,
        b.thumbprint(),
    )


def _clean_public(entry: dict[str, Any]) -> dict[str, Any]:
    """An imported entry with only the members a public key of ours has."""
    members = ("kty", "crv", "x", "y", "kid", "use", "alg", *_META)
    return {name: entry[name] for name in members if name in entry}
