"""What each topic carries, for the AsyncAPI document: record keys, headers and payloads.

:func:`messages_by_topic` gives one :class:`Message` per topic of the registry. A topic
missing here, or described with another payload kind than the registry's, stops the
generation of the document (``document.py``).
"""

from __future__ import annotations

from dataclasses import dataclass

from gun_contract.dead_letter import (
    HEADER_COMPONENT,
    HEADER_ERROR_CLASS,
    HEADER_ERROR_KIND,
    HEADER_ERROR_REASON,
    HEADER_ORIGINAL_KEY_SHA256,
    HEADER_ORIGINAL_SHA256,
    HEADER_ORIGINAL_SIZE,
    HEADER_ORIGINAL_TRUNCATED,
    HEADER_REFERENCE,
    HEADER_SOURCE_OFFSET,
    HEADER_SOURCE_PARTITION,
    HEADER_SOURCE_TOPIC,
    ErrorClass,
)
from gun_contract.topics import Payload, TopicRegistry
from gun_contract.trace import TRACE_HEADER
from gun_hub.pipeline.decision_outbox import HEADER_DECLARANT, HEADER_ORIGIN, HEADER_VERSION
from gun_hub.pipeline.redrive import HEADER_REDRIVE_DEAD_LETTER, HEADER_REDRIVE_OF
from gun_tools.asyncapi import examples
from gun_tools.asyncapi.examples import example
from gun_tools.asyncapi.payloads import BYTES, JOSE, JSON, JsonObject, ref, text

KAFKA_BINDING_VERSION = "0.5.0"


@dataclass(frozen=True, slots=True)
class Message:
    """One kind of record: what a reader of its topic finds in key, headers and value."""

    id: str
    payload_kind: Payload  # must be what the registry says the topic carries
    title: str
    summary: str
    content_type: str
    payload: JsonObject
    key: JsonObject
    headers: JsonObject | None = None
    examples: tuple[JsonObject, ...] = ()

    def to_asyncapi(self) -> JsonObject:
        message: JsonObject = {
            "name": self.id,
            "title": self.title,
            "summary": self.summary,
            "contentType": self.content_type,
        }
        if self.headers is not None:
            message["headers"] = self.headers
        message["payload"] = self.payload
        message["bindings"] = {"kafka": {"key": self.key, "bindingVersion": KAFKA_BINDING_VERSION}}
        if self.examples:
            message["examples"] = list(self.examples)
        return message


# -- record keys ------------------------------------------------------------------------

REFERENCE_KEY: JsonObject = {
    "type": "string",
    "pattern": r"^[0-9A-Z][0-9A-Z._/\-]{5,34}$",  # ReferenceType, schemas/common-types.xsd
    "description": "The declaration reference (MRN or LRN), UTF-8: every record of one "
    "declaration lands on the same partition number of every topic, in order.",
    "examples": [examples.REFERENCE],
}

_NO_KEY: JsonObject = {
    "type": "null",
    "description": "No key: the records are not about one declaration.",
}

_MESSAGE_ID_KEY: JsonObject = {
    "type": "string",
    "description": "The envelope's message id (`jti`) the record is about, after its "
    "sender and a `/` (`clearance/5f0c...`): an id is unique for its issuer only.",
}

_AUDIT_KEY: JsonObject = {
    "type": "null",
    "description": "No key: the hub writes each record to an explicit partition, the one "
    "whose hash chain it extends (the partition of the declaration's other records).",
}

_DEAD_LETTER_KEY: JsonObject = {
    "type": ["string", "null"],
    "description": "The declaration reference (UTF-8) when it could be read, otherwise the "
    "failed record's own key, unchanged (possibly none).",
}


def _authority_key(authorities: tuple[str, ...]) -> JsonObject:
    return {
        "type": "string",
        "enum": list(authorities),
        "description": "The authority id of the adapter (UTF-8): one partner per key.",
    }


# -- headers ----------------------------------------------------------------------------

_DEAD_LETTER_HEADERS: JsonObject = {
    "type": "object",
    "description": "Why the record failed and where it came from; every value is UTF-8 text.",
    "properties": {
        HEADER_ERROR_CLASS: text(
            "How the failure is handled: permanent (the message itself is wrong), security "
            "(it failed verification: also audited), retriable.",
            enum=[error_class.value for error_class in ErrorClass],
        ),
        HEADER_ERROR_KIND: text("Stable code of the fault, e.g. XML_SCHEMA."),
        HEADER_ERROR_REASON: text("What exactly was wrong (at most 2048 bytes)."),
        HEADER_SOURCE_TOPIC: text("Topic of the failed record."),
        HEADER_SOURCE_PARTITION: text("Its partition, in decimal.", pattern=r"^[0-9]+$"),
        HEADER_SOURCE_OFFSET: text("Its offset, in decimal.", pattern=r"^[0-9]+$"),
        HEADER_COMPONENT: text("The component that gave up on it, e.g. hub.intake."),
        HEADER_REFERENCE: text("The declaration reference, when it could be read."),
        HEADER_ORIGINAL_TRUNCATED: text(
            "`true` when the original did not fit: the value is then its head.",
            pattern=r"^true$",
        ),
        HEADER_ORIGINAL_SIZE: text(
            "Size of the original in bytes (with a truncated value).", pattern=r"^[0-9]+$"
        ),
        HEADER_ORIGINAL_SHA256: text(
            "SHA-256 of the whole original, hexadecimal (with a truncated value).",
            pattern=r"^[0-9a-f]{64}$",
        ),
        HEADER_ORIGINAL_KEY_SHA256: text(
            "SHA-256 of an original key too long to keep; the record key is then the digest.",
            pattern=r"^[0-9a-f]{64}$",
        ),
    },
    "required": [
        HEADER_ERROR_CLASS,
        HEADER_ERROR_KIND,
        HEADER_ERROR_REASON,
        HEADER_SOURCE_TOPIC,
        HEADER_SOURCE_PARTITION,
        HEADER_SOURCE_OFFSET,
        HEADER_COMPONENT,
    ],
}

_TRACE: JsonObject = text(
    "The trace id of the declaration version the record is about (32 lowercase hex "
    "digits, derived from its reference and version: docs/operations.md); the same on "
    "every record, log line and partner call about that version.",
    pattern=r"^[0-9a-f]{32}$",
)

_TRACE_HEADERS: JsonObject = {
    "type": "object",
    "description": "Read without opening the value; the value is UTF-8 text.",
    "properties": {TRACE_HEADER: _TRACE},
}

_DECISION_HEADERS: JsonObject = {
    "type": "object",
    "description": "Read without opening the envelope; the value is UTF-8 text.",
    "properties": {
        HEADER_VERSION: text(
            "The declaration version decided, in decimal: with the key, the identity the "
            "decision publisher keeps exactly one decision of.",
            pattern=r"^[0-9]{1,6}$",
        ),
        HEADER_DECLARANT: text(
            "Who the decided version was lodged by: 16 lowercase hex digits of a SHA-256 of "
            "the declarant's EORI, never the EORI (the hub reads it back when a publisher "
            "takes a partition over: it publishes no decision of a reference for another "
            "declarant than the first one published). Absent on the decision of a "
            "declaration refused unread.",
            pattern=r"^[0-9a-f]{16}$",
        ),
        HEADER_ORIGIN: text(
            "The partition of gun.declarations whose case decided it, in decimal: the hub "
            "keeps each partition's latest decisions published apart, so that one announced "
            "again after a partition was stuck for long is not published twice (ADR 0025). "
            "Absent on decisions published before stop 47.",
            pattern=r"^[0-9]{1,6}$",
        ),
        TRACE_HEADER: _TRACE,
    },
    "required": [HEADER_VERSION],
}


_REDRIVE_HEADERS: JsonObject = {
    "type": "object",
    "description": "Only on a redrive (docs/operations.md, ADR 0010): the original record of "
    "a dead letter, republished by the hub once the cause is fixed. The hub handles it as "
    "the original read again, after checking that the original is still in the log, "
    "earlier on this partition, with the same key and bytes. Values are UTF-8 text.",
    "properties": {
        HEADER_REDRIVE_OF: text(
            "topic/partition/offset of the original record.",
            pattern=r"^.+/[0-9]+/[0-9]+$",
        ),
        HEADER_REDRIVE_DEAD_LETTER: text(
            "PARTITION:OFFSET of the dead letter that was redriven.",
            pattern=r"^[0-9]+:[0-9]+$",
        ),
    },
}

_RESPONSE_HEADERS: JsonObject = {
    "type": "object",
    "description": "Read without opening the value; values are UTF-8 text. The redrive "
    "headers only on a redrive (docs/operations.md, ADR 0010): the original record of a "
    "dead letter, republished by the hub once the cause is fixed and handled as the "
    "original read again, once the hub has checked it against the log.",
    "properties": {**_TRACE_HEADERS["properties"], **_REDRIVE_HEADERS["properties"]},
}

_ROLLOUT_SCOPE = r"[a-z][a-z0-9_]{1,31}\|([A-Z]{2}[0-9A-Z]{6}|\*)"
_ACTION_KEY: JsonObject = {
    "type": "string",
    "pattern": rf"^([0-9]+:[0-9]+|{_ROLLOUT_SCOPE})$",
    "description": "The id (PARTITION:OFFSET) of the dead letter the action concerns (the "
    "record is on that partition, whose audit chain it joins), or the scope of a rollout "
    "setting (AUTHORITY|OFFICE, * for everywhere).",
}
_ROLLOUT_KEY: JsonObject = {
    "type": "string",
    "pattern": rf"^{_ROLLOUT_SCOPE}$",
    "description": "The setting's scope: AUTHORITY|OFFICE, or AUTHORITY|* for everywhere; "
    "the topic keeps the latest setting of each.",
}


# -- the messages -----------------------------------------------------------------------


def messages_by_topic(registry: TopicRegistry) -> dict[str, Message]:
    """The message of every topic this module knows how to describe, by topic name."""
    request = Message(
        "AuthorityRequest",
        Payload.ENVELOPE,
        "Request to an authority",
        "Check, reserve, write off or delete: one question about one declaration version, "
        "holding only that authority's goods items and documents; sealed to it.",
        JOSE,
        ref("SealedAuthorityRequest"),
        REFERENCE_KEY,
        _TRACE_HEADERS,
    )
    response = Message(
        "AuthorityResponse",
        Payload.ENVELOPE,
        "Answer of an authority",
        "Per-document verdicts on one request, signed by the authority's adapter and "
        "sealed to the hub.",
        JOSE,
        ref("SealedAuthorityResponse"),
        REFERENCE_KEY,
        _RESPONSE_HEADERS,
    )
    decision = Message(
        "Decision",
        Payload.ENVELOPE,
        "Decision",
        "The release or control decision of one declaration version, signed by the hub "
        "and sealed to the clearance system.",
        JOSE,
        ref("SealedDecision"),
        REFERENCE_KEY,
        _DECISION_HEADERS,
        (example("version", "The header of a version 1 decision.", headers={HEADER_VERSION: "1"}),),
    )
    by_topic = {
        registry.declarations: Message(
            "Declaration",
            Payload.ENVELOPE,
            "Customs declaration",
            "One version of a customs declaration, signed by the clearance system and sealed "
            "to the hub (plain XML only where the hub's local-development setting "
            "GUN_HUB_HUB__ACCEPT_PLAIN_DECLARATIONS allows it).",
            JOSE,
            ref("SealedDeclaration"),
            REFERENCE_KEY,
            _REDRIVE_HEADERS,
        ),
        registry.decisions: decision,
        registry.status: Message(
            "StatusEvent",
            Payload.JSON,
            "Status event",
            "One step of a declaration's history; no confidential content.",
            JSON,
            ref("StatusEvent"),
            REFERENCE_KEY,
            _TRACE_HEADERS,
            examples=(
                example("decided", "Version 1 was released.", payload=examples.status_event()),
            ),
        ),
        registry.audit: Message(
            "AuditRecord",
            Payload.JSON,
            "Audit record",
            "A link of the tamper-evident hash chain of a partition: a decision, a security "
            "rejection, or a checkpoint signed by the hub.",
            JSON,
            ref("AuditRecord"),
            _AUDIT_KEY,
            _TRACE_HEADERS,
            examples=(
                example(
                    "decision", "The first link of partition 0.", payload=examples.audit_record()
                ),
            ),
        ),
        registry.dlq: Message(
            "DeadLetter",
            Payload.ORIGINAL_BYTES,
            "Dead letter",
            "A record that could not be processed: its original bytes, and why in headers.",
            BYTES,
            ref("OriginalBytes"),
            _DEAD_LETTER_KEY,
            _DEAD_LETTER_HEADERS,
            (examples.dead_letter(registry.declarations),),
        ),
        registry.decision_outbox: Message(
            "DecisionAtRest",
            Payload.STATE_SEALED,
            "Decision waiting for the publisher",
            "A decision the agents announced, sealed with the hub's state key (AES-256-GCM, "
            "bound to its reference and version); the publisher opens it and seals it to "
            "the clearance system as it publishes it. Internal to the hub.",
            BYTES,
            ref("StateSealedBytes"),
            REFERENCE_KEY,
            _DECISION_HEADERS,
            (
                example(
                    "version", "The header of a version 1 decision.", headers={HEADER_VERSION: "1"}
                ),
            ),
        ),
        registry.claims: Message(
            "ClaimsRecord",
            Payload.JSON,
            "Message-id claim or verdict",
            "A sealed declaration is acted on only once its message id is claimed at the one "
            "partition that owns it (a crc32 of the id): a copy on another partition of the "
            "declarations topic is a replay there too. Internal to the hub.",
            JSON,
            ref("ClaimsRecord"),
            _MESSAGE_ID_KEY,
            examples=(
                example(
                    "claim",
                    "The declaration read at gun.declarations/3/1041 claims its id.",
                    payload=examples.claim(registry.declarations),
                ),
                example(
                    "verdict",
                    "First sighting: the declaration is admitted.",
                    payload=examples.claim_verdict(registry.declarations),
                ),
            ),
        ),
        registry.operator_actions: Message(
            "OperatorAction",
            Payload.STATE_SEALED,
            "Officer's action",
            "What an officer did through the hub's officer listener (a dead letter's payload "
            "read, a redrive, a rollout mode set), sealed with the hub's state key "
            "(AES-256-GCM, bound to the record key); the audit keeper chains it. Internal to "
            "the hub.",
            BYTES,
            ref("StateSealedBytes"),
            _ACTION_KEY,
        ),
        registry.rollout: Message(
            "RolloutSetting",
            Payload.STATE_SEALED,
            "Rollout setting",
            "An authority's rollout mode (off, shadow, advice, enforce), everywhere or at one "
            "customs office, with the officer who set it, when and why; sealed with the hub's "
            "state key (AES-256-GCM, bound to the record key) by the officer listener; every "
            "hub worker reads the whole topic (never cleaned: ADR 0023), the newest setting of "
            "each scope in force. Internal to the hub.",
            BYTES,
            ref("StateSealedBytes"),
            _ROLLOUT_KEY,
        ),
        registry.deadlines: Message(
            "DeadlineTick",
            Payload.TICKS,
            "Deadline tick",
            "A case's deadline has passed: the deadlines agent decides it in degraded mode "
            "(a stale or early tick is ignored). Or a later version of the reference was read "
            "on another partition: a lower version's case here is taken over by it (the "
            "notice sealed with the hub's state key, a TakeoverNotice inside). Or the "
            "decision publisher did not publish this partition's decision of a version, "
            "another partition's case having decided it first (a DecisionNotPublishedNotice "
            "inside, sealed likewise). Internal to the hub.",
            BYTES,
            ref("DeadlineTick"),
            REFERENCE_KEY,
            _TRACE_HEADERS,
            examples=(
                example("version-1", "Version 1's deadline has passed.", payload="1"),
                example("retention", "The case's retention is due.", payload="retention"),
            ),
        ),
        registry.ops_lag: Message(
            "LagSnapshot",
            Payload.JSON,
            "Lag snapshot",
            "Consumer lag of every watched group, per group and per partition.",
            JSON,
            ref("LagSnapshot"),
            _NO_KEY,
            examples=(
                example(
                    "behind",
                    "The hub is 45 records behind.",
                    payload=examples.lag_snapshot(registry.declarations),
                ),
            ),
        ),
        registry.ops_health: Message(
            "PartnerHealth",
            Payload.SIGNED,
            "Partner health",
            "An adapter replica's heartbeat: its partner's circuit state and the operations "
            "it holds, signed with its authority's key; believed only in that authority's "
            "name. Operations take the worst circuit and the sum of pending operations of "
            "an authority's replicas with a fresh heartbeat.",
            JOSE,
            ref("SignedPartnerHealth"),
            _authority_key(registry.authorities),
        ),
        registry.facts: Message(
            "Fact",
            Payload.JSON,
            "Statistics fact",
            "A declaration version accepted at intake with its declarant (whom the trader "
            "lookup shows it to), a decision, or a write-off confirmed by an authority, with "
            "the declarant and documents the statistics count (never a confidential "
            "authority's reference).",
            JSON,
            ref("Fact"),
            REFERENCE_KEY,
            _TRACE_HEADERS,
            examples=(
                example(
                    "received",
                    "A declaration version accepted for checking, and who lodged it.",
                    payload=examples.received_fact(),
                ),
                example(
                    "decided",
                    "A released declaration quoting one DGAL document.",
                    payload=examples.decision_fact(),
                ),
            ),
        ),
    }
    for authority in registry.authorities:
        by_topic[registry.requests(authority)] = request
        by_topic[registry.responses(authority)] = response
    return by_topic
