"""Sealing the state a party keeps at rest (issue 11, item 2).

What the hub keeps in its ``cases`` table (RocksDB and the compacted changelog topic) and
what an adapter keeps in its queue of pending operations (SQLite) quote the documents of
a declaration, war-material licences included. Those values are sealed with the party's
state key (:func:`gun_contract.security.keystore.read_state_keys`) before they are stored:

* AES-256-GCM (pyca ``AESGCM``), a random 96-bit nonce per value;
* the associated data binds each value to where it is stored (table name and record
  key): a value copied under another key, or into another table, does not open;
* each value names the key id that sealed it, so that after a rotation
  (``gun-hub keys rotate P --state``) the newest key in use seals and the older ones still
  open what they sealed. A rotated key opens from the moment a process reads it and seals
  only from its use time (ADR 0020's addendum of stop 41): the party's processes are all
  given it before then, and none meets a value sealed with a key it lacks.

A sealed value::

    b"GS1" | len(kid) (1 byte) | kid (ASCII) | nonce (12 bytes) | ciphertext | tag (16 bytes)

A value that does not open raises :class:`StateUnreadable`, naming the table, the record
key and the key id, never the content, and carrying the table and key (its reader forgets
the value by them: ADR 0022); one sealed with a key id the party does not hold raises its
subclass :class:`StateKeyMissing` (a key not deployed yet: not the value's fault), unless
the key id reads as another party's key or a key of another kind (no deployment brings it:
refused as any value that does not open). Random nonces bound a key to 2**32 values (NIST
SP 800-38D): rotate the state key well before that (the hub writes a case a few times per
declaration).
"""

from __future__ import annotations

import functools
import os
import struct
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from gun_contract.security import keystore
from gun_contract.security.keystore import (
    KEY_RECHECK_S,
    StateKey,
    follow_state_keys,
    is_key_id,
    never_a_state_key_of,
    sealing_state_key,
)

# How long a process that meets a value sealed with a state key it does not hold reads it
# again (its key file looked at each time) before it stops, naming the key: about as long
# as the agents wait for one (gun_hub/runtime/app.py ``_handled``), a few of the key file's
# rechecks. A key file being deployed arrives within it; a process left without the key
# stops rather than take for bad data what the others sealed (the decision publisher, the
# rollout follower: ADR 0022, stop 41).
KEY_MISSING_PATIENCE_S = 4 * KEY_RECHECK_S

MAGIC = b"GS1"
NONCE_BYTES = 12
TAG_BYTES = 16
_LABEL = b"gun-hub state v1"


class StateUnreadable(RuntimeError):
    """A stored value that cannot be opened; the message names table, key and key id.
    ``table`` and ``key`` say where it is stored (empty where a caller did not say)."""

    def __init__(self, message: str, *, table: str = "", key: bytes | str = b"") -> None:
        super().__init__(message)
        self.table = table
        self.key = _text(key)


class StateKeyMissing(StateUnreadable):
    """A value sealed with a state key id (``kid``) the party does not hold, even after
    reading its key file again: another of its processes sealed with a key rotated since
    and not deployed here yet (or removed from the file). The value may be sound: a worker
    that meets one stops, naming the key, rather than taking the value for bad data."""

    def __init__(self, message: str, *, table: str, key: bytes | str, kid: str) -> None:
        super().__init__(message, table=table, key=key)
        self.kid = kid


def _describe(key: bytes | str) -> str:
    text = key if isinstance(key, str) else key.decode("utf-8", errors="backslashreplace")
    return repr(text if len(text) <= 120 else text[:120] + "...")


def _where(table: str, key: bytes | str) -> str:
    """Where a value that does not open was found (said only then: the key's text is
    made for the message, never at every open)."""
    return f"{table}: the value of key {_describe(key)}"


def _text(key: bytes | str) -> bytes:
    return key.encode() if isinstance(key, str) else key


def _associated(table: str, key: bytes | str, header: bytes) -> bytes:
    """What a value is bound to: its table, its record key and its header (key id)."""
    return _bound_to_table(table) + _bound_to_record(key, header)


@functools.lru_cache(maxsize=64)
def _bound_to_table(table: str) -> bytes:
    """The associated data's start, the same for every value of ``table`` (a handful of
    tables: made once each, not at every seal and open)."""
    name = table.encode()
    return _LABEL + struct.pack(">H", len(name)) + name


def _bound_to_record(key: bytes | str, header: bytes) -> bytes:
    record = _text(key)
    return struct.pack(">I", len(record)) + record + header


def _header(kid: str) -> bytes:
    """What a sealed value starts with: the format and the id of the key that sealed it."""
    encoded = kid.encode()
    return MAGIC + bytes((len(encoded),)) + encoded


class StateCipher:
    """Seals and opens one party's values at rest with its state keys."""

    def __init__(
        self,
        keys: Callable[[], Sequence[StateKey]],
        *,
        check_now: Callable[[], bool] | None = None,
        what: str = "the state keys",
        wall_clock: Callable[[], datetime] = keystore.now,
        party: str | None = None,
    ) -> None:
        """``keys``: the party's state keys, oldest first, a new sequence whenever they
        change (what the key file holds as it is read again). ``party``: whose keys they
        are (a value naming a key that is never one of its state keys is not opened as
        a key missing: nothing deployed later would open it)."""
        self._keys = keys
        self._party = party
        self._check_now = check_now
        self._what = what
        self._wall_clock = wall_clock
        # The key that seals, chosen from which keys and valid until when (the next use
        # time; None: until the keys change): the wall clock is read only while a rotated
        # key waits for its use time, not at every seal.
        self._sealing: tuple[Sequence[StateKey], StateKey, datetime | None] | None = None
        # Per key, its AES-GCM object and the header of what it seals: made once, not at
        # every seal and open (keyed by the secret too: a file rewritten with another
        # secret under the same id gets its own).
        self._ciphers: dict[tuple[str, bytes], tuple[AESGCM, bytes]] = {}

    @classmethod
    def of(cls, keys: Sequence[StateKey]) -> StateCipher:
        """A cipher over fixed keys (the newest in use seals: the last, without use times)."""
        if not keys:
            raise ValueError("a state cipher needs at least one key")
        fixed = list(keys)
        return cls(lambda: fixed)

    @classmethod
    def load(cls, folder: Path, party: str, *, recheck_s: float = KEY_RECHECK_S) -> StateCipher:
        """``party``'s state keys from its private file in ``folder``, followed as they
        change; raises :class:`KeystoreError` (naming the file) when there are none."""
        keys, check_now = follow_state_keys(folder, party, recheck_s)
        return cls(
            keys, check_now=check_now, what=f"the state keys of {party} in {folder}", party=party
        )

    @property
    def sealing_kid(self) -> str:
        return self._sealing_key().kid

    def _sealing_key(self) -> StateKey:
        """The newest key in use now: a rotated one only from its use time."""
        keys = self._keys()
        chosen = self._sealing
        if chosen is not None and chosen[0] is keys:
            until = chosen[2]
            if until is None or self._wall_clock() < until:
                return chosen[1]
        key, until = sealing_state_key(keys, self._wall_clock())
        self._sealing = (keys, key, until)
        return key

    def _cipher(self, key: StateKey) -> tuple[AESGCM, bytes]:
        """``key``'s AES-GCM object and the header of the values it seals."""
        cached = self._ciphers.get((key.kid, key.secret))
        if cached is None:
            cached = self._ciphers[(key.kid, key.secret)] = (AESGCM(key.secret), _header(key.kid))
        return cached

    def _find(self, kid: str) -> StateKey | None:
        for key in self._keys():
            if key.kid == kid:
                return key
        return None

    def seal(self, table: str, key: bytes | str, value: bytes) -> bytes:
        """``value`` sealed for record ``key`` of ``table``, with the newest state key in
        use (a rotated one opens at once, and seals only from its use time)."""
        cipher, header = self._cipher(self._sealing_key())
        # A random nonce from the system's generator (a system call, about 0.3 us of the
        # 2 us a seal takes): several workers seal with the same key, and a counter would
        # need a prefix no two processes (or a forked one) ever share; not worth the risk.
        nonce = os.urandom(NONCE_BYTES)
        return header + nonce + cipher.encrypt(nonce, value, _associated(table, key, header))

    def open(self, table: str, key: bytes | str, sealed: bytes) -> bytes:
        """The value sealed for record ``key`` of ``table``; raises :class:`StateUnreadable`."""
        if not sealed.startswith(MAGIC):
            raise StateUnreadable(
                f"{_where(table, key)} is not sealed with a state key (written in clear, or "
                "by something else): refused",
                table=table,
                key=key,
            )
        size = len(MAGIC) + 1 + (sealed[len(MAGIC)] if len(sealed) > len(MAGIC) else 0)
        if len(sealed) < size + NONCE_BYTES + TAG_BYTES:
            raise StateUnreadable(f"{_where(table, key)} is truncated", table=table, key=key)
        header = sealed[:size]
        kid = header[len(MAGIC) + 1 :].decode("ascii", errors="replace")
        state_key = self._find(kid)
        if state_key is None and not is_key_id(kid):
            # No key a party could hold has such an id: bytes that only look sealed.
            raise StateUnreadable(
                f"{_where(table, key)} names no key id (its header is not one a state key "
                "writes): refused",
                table=table,
                key=key,
            )
        if state_key is None and self._party and never_a_state_key_of(kid, self._party):
            # Another party's key, or a key of another kind: no rotation of ours made it,
            # so no deployment will bring it (a value sealed elsewhere, or forged).
            raise StateUnreadable(
                f"{_where(table, key)} is sealed with key {kid!r}, which is not a state key "
                f"of {self._party}: refused",
                table=table,
                key=key,
            )
        if state_key is None and self._check_now is not None:
            self._check_now()  # a key another worker made since the file was last read
            state_key = self._find(kid)
        if state_key is None:
            raise StateKeyMissing(
                f"{_where(table, key)} is sealed with state key {kid!r}, which is not among "
                f"{self._what}",
                table=table,
                key=key,
                kid=kid,
            )
        nonce = sealed[size : size + NONCE_BYTES]
        cipher, _ = self._cipher(state_key)
        try:
            return cipher.decrypt(
                nonce, sealed[size + NONCE_BYTES :], _associated(table, key, header)
            )
        except InvalidTag:
            raise StateUnreadable(
                f"{_where(table, key)} does not decrypt with state key {kid!r}: altered, or "
                "moved there from another key or table",
                table=table,
                key=key,
            ) from None


class _Store(Protocol):
    def get(self, key: bytes) -> bytes | None: ...

    def __setitem__(self, key: bytes, value: bytes) -> None: ...

    def pop(self, key: bytes, default: None, /) -> bytes | None: ...


class SealedStore:
    """A key-value store (``CaseStore``) whose values are sealed on the way in and opened
    on the way out: what is below it (a faust table, its RocksDB files and changelog)
    only ever holds sealed values, and its users see plain bytes."""

    def __init__(self, store: _Store, cipher: StateCipher, table: str) -> None:
        self._store = store
        self._cipher = cipher
        self.table = table

    def get(self, key: bytes) -> bytes | None:
        value = self._store.get(key)
        return None if value is None else self._cipher.open(self.table, key, value)

    def __setitem__(self, key: bytes, value: bytes) -> None:
        self._store[key] = self._cipher.seal(self.table, key, value)

    def pop(self, key: bytes, default: bytes | None = None) -> bytes | None:
        value = self.get(key)
        if value is None:
            return default
        self._store.pop(key, None)
        return value

    def discard(self, key: bytes) -> None:
        """Remove what is stored under ``key`` without opening it: a value that does not
        open (``pop`` would raise) is forgotten this way."""
        self._store.pop(key, None)
