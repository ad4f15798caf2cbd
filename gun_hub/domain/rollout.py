"""Pilot, then generalise: how far each authority's checks count, per customs office.

A partner administration is switched on the way the French single window was: a pilot
("expérimentation") at a few offices, then the generalisation. The mode of an authority
at an office is data (ADR 0012), changed while the hub runs (``gun-hub rollout set``,
audited) and read by every hub worker from the ``hub.rollout`` topic, kept whole (ADR
0023):

* ``off``: the authority is not asked. Its documents are checked at the office, as before
  the single window: the decision is a documentary control (verdict UNROUTED, reason
  AUTHORITY_NOT_CONNECTED), and nothing is reserved.
* ``shadow``: the authority is asked to check (a CHECK, which reserves nothing) and its
  answers are recorded, but the decision is taken as if it were off; what it would have
  decided is kept beside the decision for the pilot report.
* ``advice``: the authority is asked as in ``enforce`` (a lodged declaration reserves), but
  its refusals and its silence only warn: they are named in the reasons (ADVISORY_ONLY)
  and never refuse or hold the declaration.
* ``enforce``: the contract's rules (section 4), the default.

The mode that applied is fixed on the case when a version is opened, so a change takes
effect for the versions received after it, and a version read again after a crash is
decided as it was first read. What an earlier version reserved is always followed up
(written off, deleted or given back) whatever the mode is now: switching an authority
off never leaves a reservation behind.

Pure, except :class:`RolloutBoard`, the live table a worker keeps (rollout_follower.py
fills it).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from enum import StrEnum

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator

from gun_contract.security.state_cipher import StateCipher

ROLLOUT_STATE = "rollout"
AUTHORITY_NOT_CONNECTED = "AUTHORITY_NOT_CONNECTED"
ADVISORY_ONLY = "ADVISORY_ONLY"
# A customs office reference number (data element 17 09): two letters, six characters.
_OFFICE = re.compile(r"^[A-Z]{2}[0-9A-Z]{6}$")
_MAX_SETTING_BYTES = 4096


class RolloutMode(StrEnum):
    OFF = "off"
    SHADOW = "shadow"
    ADVICE = "advice"
    ENFORCE = "enforce"

    @property
    def asked(self) -> bool:
        """Whether the authority is asked at all."""
        return self is not RolloutMode.OFF

    @property
    def reserves(self) -> bool:
        """Whether its requests carry the stage's own operation (a lodged declaration
        reserves), rather than a CHECK that leaves the ledger alone."""
        return self in (RolloutMode.ADVICE, RolloutMode.ENFORCE)

    @property
    def counts(self) -> bool:
        """Whether its verdicts decide (refuse, hold) the declaration."""
        return self is RolloutMode.ENFORCE


class RolloutSetting(BaseModel):
    """One mode, for an authority everywhere (``office`` None) or at one office; the value
    of a ``hub.rollout`` record keyed :func:`setting_key`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    authority: str = Field(pattern=r"^[a-z][a-z0-9_]{1,31}$")
    office: str | None = None
    mode: RolloutMode
    officer: str = Field(max_length=64)
    reason: str = Field(min_length=1, max_length=500)
    at: AwareDatetime  # compared with the setting in force (RolloutBoard.apply)

    @field_validator("office")
    @classmethod
    def _office_reference(cls, office: str | None) -> str | None:
        if office is not None and not _OFFICE.match(office):
            raise ValueError(f"{office!r} is not a customs office reference (e.g. FR000690)")
        return office

    @property
    def key(self) -> bytes:
        return setting_key(self.authority, self.office)

    @property
    def scope(self) -> str:
        return f"{self.authority} at {self.office}" if self.office else f"{self.authority}"


def setting_key(authority: str, office: str | None) -> bytes:
    """One record per scope: the compacted topic keeps the latest mode of each."""
    return f"{authority}|{office or '*'}".encode()


def seal_setting(cipher: StateCipher, setting: RolloutSetting) -> bytes:
    """Sealed with the hub's state key: only the hub's officer listener can set a mode a
    worker believes (a party that could write the topic could otherwise switch DGA off)."""
    return cipher.seal(ROLLOUT_STATE, setting.key, setting.model_dump_json().encode())


def open_setting(cipher: StateCipher, key: bytes, sealed: bytes) -> RolloutSetting:
    """The setting sealed under ``key``; raises ``StateUnreadable`` or ``ValueError``."""
    if len(sealed) > _MAX_SETTING_BYTES:
        raise ValueError(f"a rollout setting of {len(sealed)} bytes")
    setting = RolloutSetting.model_validate_json(cipher.open(ROLLOUT_STATE, key, sealed))
    if setting.key != key:
        raise ValueError(f"a setting for {setting.scope} under key {key!r}")
    return setting


class RolloutBoard:
    """The modes in force: the newest setting of each scope; an authority's office
    setting wins over its own; no setting at all is ``enforce`` (the contract's rules)."""

    def __init__(self, settings: Iterable[RolloutSetting] = ()) -> None:
        self._settings: dict[bytes, RolloutSetting] = {}
        for setting in settings:
            self.apply(setting)

    def apply(self, setting: RolloutSetting) -> bool:
        """Whether ``setting`` is now in force: not if its scope holds one set after it.

        Newest by the date it was set, not by where it stands in the topic (ADR 0023): a
        hub-sealed setting copied back onto the topic opens like the original, and must
        not bring an earlier mode back. The desk dates each setting after the one it
        replaces (web/rollout.py), so the officers' own order is kept; of two equally
        dated, the one read last wins, as every worker reads them in the same order."""
        held = self._settings.get(setting.key)
        if held is not None and setting.at < held.at:
            return False
        self._settings[setting.key] = setting
        return True

    def setting_for(self, authority: str, office: str | None) -> RolloutSetting | None:
        """The setting of exactly this scope (None: never set)."""
        return self._settings.get(setting_key(authority, office))

    def mode_for(self, authority: str, office: str | None) -> RolloutMode:
        if office:
            at_office = self._settings.get(setting_key(authority, office))
            if at_office is not None:
                return at_office.mode
        everywhere = self._settings.get(setting_key(authority, None))
        return everywhere.mode if everywhere is not None else RolloutMode.ENFORCE

    def modes_for(self, authorities: Iterable[str], office: str | None) -> dict[str, RolloutMode]:
        return {authority: self.mode_for(authority, office) for authority in authorities}

    def settings(self) -> list[RolloutSetting]:
        """Every setting held, by authority then office (the authority-wide one first)."""
        return sorted(
            self._settings.values(), key=lambda s: (s.authority, s.office is not None, s.office)
        )


def describe_modes(modes: Mapping[str, RolloutMode]) -> str:
    return ", ".join(f"{authority} {mode.value}" for authority, mode in sorted(modes.items()))
