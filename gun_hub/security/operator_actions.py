"""What an officer did through the hub that the audit trail must show (ADR 0010).

A dead letter's payload read, a redrive, a rollout mode set. The officer listener
authenticates the officer; the audit chains are written by the hub in
event context only, by the worker owning each partition (audit.py). So the listener
publishes the action on the hub-internal ``hub.operator-actions`` topic, on the partition
of the dead letter it concerns, and waits for the broker's acknowledgement *before* it
acts: an action whose record the broker did not take is not done. The audit keeper chains
each record it reads there (pipeline/audit_keeper.py).

Unlike a dead letter's headers (any party's word), an action is sealed with the hub's
state key (AES-256-GCM, bound to the topic and the record key): only a hub worker can
write one the keeper believes, so the officer it names is the one the listener
authenticated, not a claim.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field

from gun_contract.security.state_cipher import StateCipher

OPERATOR_ACTIONS_STATE = "operator-actions"
_MAX_ACTION_BYTES = 16 * 1024


class ActionKind(StrEnum):
    DLQ_PAYLOAD_READ = "DLQ_PAYLOAD_READ"  # a dead letter's value was shown to the officer
    DLQ_REDRIVE = "DLQ_REDRIVE"  # a dead letter's original was republished
    ROLLOUT_SET = "ROLLOUT_SET"  # an authority's rollout mode was set (rollout.py)


class OperatorAction(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    action: ActionKind
    officer: str = Field(max_length=64)
    dead_letter: str | None = Field(
        None, max_length=300, description="topic/partition/offset of the dead letter"
    )
    setting: str | None = Field(
        None, max_length=800, description="the rollout setting: scope, mode and reason"
    )
    origin: str | None = Field(None, max_length=300, description="the original's position")
    reference: str | None = Field(None, max_length=64)
    at: datetime

    def audit_body(self, record: str) -> dict[str, object]:
        """The audit record of this action, read at ``record`` (topic/partition/offset)."""
        body: dict[str, object] = {
            "kind": "OPERATOR_ACTION",
            "action": self.action.value,
            "officer": self.officer,
            "dead_letter": self.dead_letter,
            "origin": self.origin,
            "reference": self.reference,
            "requested_at": self.at.isoformat(),
            "record": record,
        }
        if self.setting is not None:
            body["setting"] = self.setting
        return body


def seal_action(cipher: StateCipher, key: bytes, action: OperatorAction) -> bytes:
    """``action`` as the value of the record keyed ``key``."""
    return cipher.seal(OPERATOR_ACTIONS_STATE, key, action.model_dump_json().encode())


def open_action(cipher: StateCipher, key: bytes, sealed: bytes) -> OperatorAction:
    """The action a hub worker sealed under ``key``; raises ``StateUnreadable`` for anything
    else, ``ValueError`` for a sealed value that is no action."""
    if len(sealed) > _MAX_ACTION_BYTES:
        raise ValueError(f"an operator action of {len(sealed)} bytes")
    return OperatorAction.model_validate_json(cipher.open(OPERATOR_ACTIONS_STATE, key, sealed))
