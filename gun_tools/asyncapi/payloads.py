"""The schemas of the AsyncAPI document (``components/schemas``): what record values are.

JSON payloads are the JSON Schemas of the pydantic models that write them (serialization
mode: what is on the wire), their ``$defs`` hoisted here and their references rewritten.
Audit records have no model (the audit chain writes dicts), so their schema is written
here, as are the XML documents (the XSDs are the authority), the sealed envelopes and the
signed heartbeats.
"""

from __future__ import annotations

from typing import Any

from pydantic import TypeAdapter

from gun_contract.health import PartnerHealth
from gun_contract.model.exchange import AuthorityRequest, AuthorityResponse
from gun_contract.model.verdicts import Outcome
from gun_contract.security.entitlements import CLEARANCE_PARTY, GATEWAY_PARTY, HUB_PARTY
from gun_contract.security.jose_envelope import SIGNED_TYPE
from gun_contract.security.keystore import CONTENT_ALG, CURVE, KEY_WRAP_ALG, SIGNING_ALG
from gun_hub.domain.status_events import StatusEvent
from gun_hub.ops.facts import FACT
from gun_hub.ops.lag import LagSnapshot
from gun_hub.xml.decision_codec import DECISION_NS
from gun_hub.xml.declaration_codec import DECLARATION_NS
from gun_tools.asyncapi import examples

JsonObject = dict[str, Any]

SCHEMA_REF = "#/components/schemas/{model}"

JSON = "application/json"
XML = "application/xml"
JOSE = "application/jose"
BYTES = "application/octet-stream"

_JWE_COMPACT = r"^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]*){4}$"
_JWS_COMPACT = r"^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*\.[A-Za-z0-9_-]+$"
_SHA256_HEX = r"^[0-9a-f]{64}$"


def ref(name: str) -> JsonObject:
    """A reference to the schema ``name`` of the document."""
    return {"$ref": SCHEMA_REF.format(model=name)}


def text(description: str, **constraints: Any) -> JsonObject:
    """A string, described."""
    return {"type": "string", **constraints, "description": description}


def _xml_document(title: str, namespace: str, root: str, xsd: str) -> JsonObject:
    return {
        "title": title,
        "type": "string",
        "contentMediaType": XML,
        "description": f"An XML document, root element `{root}` in namespace `{namespace}`, "
        f"valid against `schemas/{xsd}` (the authority on types and bounds; it sits next "
        "to this document). UTF-8.",
        "x-xsd": xsd,
        "x-xml-namespace": namespace,
    }


def _sealed(title: str, sender: str, recipient: str, plaintext: str, what: str) -> JsonObject:
    return {
        "title": title,
        "type": "string",
        "contentMediaType": JOSE,
        "pattern": _JWE_COMPACT,
        "description": f"From {sender} to {recipient}. A JWE compact serialization "
        f"({KEY_WRAP_ALG}, {CONTENT_ALG}, curve {CURVE}; `kid` of the recipient's encryption "
        f"key) whose plaintext is a JWS compact serialization ({SIGNING_ALG}, `kid` of the "
        "sender's signing key; protected header `typ`, `cty`, `iss` the sender, `aud` the "
        "recipient, `iat`, `exp`, a unique `jti` and `topic` the topic it is meant for) whose "
        f"payload is the exact bytes of {what}: `x-plaintext`. Receivers verify the signature "
        "before using anything (docs/security.md).",
        "x-plaintext": ref(plaintext),
    }


def _signed(title: str, sender: str, payload: str, what: str, believed: str) -> JsonObject:
    return {
        "title": title,
        "type": "string",
        "contentMediaType": JOSE,
        "pattern": _JWS_COMPACT,
        "description": f"From {sender}, to any reader of the topic: signed, not encrypted. A "
        f"JWS compact serialization ({SIGNING_ALG}, `kid` of the sender's signing key; "
        f"protected header `typ` `{SIGNED_TYPE}`, `cty` application/json, `iss` the sender, "
        "`iat` and `topic` the topic it is meant for) whose payload is "
        f"{what}: `x-payload`. Readers verify the signature before using anything; "
        f"{believed} (docs/security.md).",
        "x-payload": ref(payload),
    }


def _audit_record_schemas() -> dict[str, JsonObject]:
    """The hash-chained records of ``security/audit.py`` (written as dicts, no model)."""
    chain: JsonObject = {
        "partition": {
            "type": "integer",
            "minimum": 0,
            "description": "Partition of the audit topic: one chain per partition.",
        },
        "seq": {"type": "integer", "minimum": 1, "description": "Position in the chain."},
        "prev": text("`hash` of the previous record (64 zeros first).", pattern=_SHA256_HEX),
        "at": text("When the hub appended the record (UTC).", format="date-time"),
        "mac": text(
            "`<kid>.<MAC>`: HMAC-SHA-256 (base64url, no padding) over the record's canonical "
            "JSON without `hash` and `mac`, keyed by a secret the hub derives from its audit "
            "key `kid`. The hub's check that a link is its own when a worker takes the "
            "partition over; an auditor needs none of it (docs/security.md).",
            pattern=r"^[^.]+\.[A-Za-z0-9_-]{43}$",
        ),
        "hash": text(
            "SHA-256 of the record's canonical JSON (sorted keys, no spaces) without `hash` "
            "(its `mac` included).",
            pattern=_SHA256_HEX,
        ),
    }
    optional_text: JsonObject = {"type": ["string", "null"]}

    def record(kind: str, description: str, body: JsonObject) -> JsonObject:
        return {
            "title": f"Audit{kind.title().replace('_', '')}",
            "description": description,
            "type": "object",
            "properties": {"kind": {"type": "string", "const": kind}, **body, **chain},
            # Links written before stop 34 carry no MAC.
            "required": ["kind", *body, *(name for name in chain if name != "mac")],
            # Evidence: its fields are fixed; a new one is a deliberate change of format.
            "additionalProperties": False,
        }

    return {
        "AuditDecision": record(
            "DECISION",
            "A decision announced to the clearance system.",
            {
                "reference": {"type": "string"},
                "version": {"type": "integer", "minimum": 0},
                "outcome": {"type": "string", "enum": [outcome.value for outcome in Outcome]},
                "reasons": {"type": "array", "items": {"type": "string"}},
                "decision_sha256": text(
                    "SHA-256 of the decision XML inside the envelope.", pattern=_SHA256_HEX
                ),
            },
        ),
        "AuditSecurityRejection": record(
            "SECURITY_REJECTION",
            "An unauthenticated report of a message that failed verification, from its dead "
            "letter's headers: only checked fields (a kind from a fixed vocabulary, a known "
            "component, a valid origin and reference), never the writer's own text.",
            {
                "rejection": optional_text,
                "reason": optional_text,
                "component": optional_text,
                "origin": text("topic/partition/offset of the rejected message."),
                "reference": optional_text,
                "dead_letter": text("topic/partition/offset of its dead letter."),
            },
        ),
        "AuditCheckpoint": record(
            "CHECKPOINT",
            "Seals the chain so far: rewriting, cutting or extending it would need the hub's "
            "private audit key; verified with public keys only (`gun-hub audit verify`).",
            {
                "signature": text(
                    f"JWS compact serialization ({SIGNING_ALG}, the hub's audit key, separate "
                    'from its envelope key) over the canonical JSON of {"partition", "seq", '
                    '"prev", "count", "at"} of this record: the chain head, the number of '
                    "records and the time it signs.",
                    pattern=_JWS_COMPACT,
                )
            },
        ),
        "AuditForeignRecords": record(
            "FOREIGN_RECORDS",
            "Records a worker taking the partition over found above where its chain goes "
            "on (the hub's own last link, or the head its table holds) without a MAC of the "
            "hub's active audit keys: written by someone else to the audit topic, or with "
            "an audit key retired since; left off the chain.",
            {
                "count": {"type": "integer", "minimum": 1},
                "first_seq": {"type": "integer", "minimum": 1},
                "last_seq": {"type": "integer", "minimum": 1},
                "hashes": {
                    "type": "array",
                    "maxItems": 10,
                    "items": {"type": "string", "pattern": _SHA256_HEX},
                    "description": "The `hash` of the first ten of them.",
                },
            },
        ),
        "AuditRecord": {
            "title": "AuditRecord",
            "description": "One link of the audit hash chain of a partition.",
            "oneOf": [
                ref("AuditDecision"),
                ref("AuditSecurityRejection"),
                ref("AuditCheckpoint"),
                ref("AuditForeignRecords"),
            ],
        },
    }


def _without_openapi_discriminators(schema: Any) -> Any:
    """pydantic writes OpenAPI's discriminator object; AsyncAPI's is a property name whose
    values are schema names. The ``oneOf`` alternatives fix ``kind`` already: drop it."""
    if isinstance(schema, dict):
        return {
            key: _without_openapi_discriminators(value)
            for key, value in schema.items()
            if not (key == "discriminator" and isinstance(value, dict))
        }
    if isinstance(schema, list):
        return [_without_openapi_discriminators(item) for item in schema]
    return schema


def payload_schemas() -> dict[str, JsonObject]:
    """Every schema the messages refer to, by name (``components/schemas``)."""
    models: list[tuple[str, TypeAdapter[Any]]] = [
        ("AuthorityRequest", TypeAdapter(AuthorityRequest)),
        ("AuthorityResponse", TypeAdapter(AuthorityResponse)),
        ("StatusEvent", TypeAdapter(StatusEvent)),
        ("LagSnapshot", TypeAdapter(LagSnapshot)),
        ("PartnerHealth", TypeAdapter(PartnerHealth)),
        ("Fact", FACT),
    ]
    # What the records are when written (serialization mode: decimals as strings).
    tops, definitions = TypeAdapter.json_schemas(
        [(name, "serialization", adapter) for name, adapter in models],
        ref_template=SCHEMA_REF,
    )
    schemas: dict[str, JsonObject] = dict(definitions.get("$defs", {}))
    for name, _ in models:
        top = tops[(name, "serialization")]
        if top != ref(name):  # a union, not a model: it is its own schema
            schemas[name] = {"title": name, **top}
    schemas["AuthorityRequest"] = {
        **schemas["AuthorityRequest"],
        "examples": [examples.authority_request()],
    }
    schemas["AuthorityResponse"] = {
        **schemas["AuthorityResponse"],
        "examples": [examples.authority_response()],
    }
    schemas["PartnerHealth"] = {
        **schemas["PartnerHealth"],
        "examples": [examples.partner_health()],
    }
    written_here: dict[str, JsonObject] = {
        "DeclarationXml": _xml_document(
            "DeclarationXml", DECLARATION_NS, "Declaration", "declaration.xsd"
        ),
        "DecisionXml": _xml_document("DecisionXml", DECISION_NS, "Decision", "decision.xsd"),
        "SealedDeclaration": _sealed(
            "SealedDeclaration",
            f"the clearance system (party `{CLEARANCE_PARTY}`) or the single window's intake "
            f"gateway (party `{GATEWAY_PARTY}`, for what is lodged over HTTP or as files)",
            f"the {HUB_PARTY}",
            "DeclarationXml",
            "the declaration XML (`cty` application/xml)",
        ),
        "SealedAuthorityRequest": _sealed(
            "SealedAuthorityRequest",
            f"the {HUB_PARTY}",
            "the authority of the topic",
            "AuthorityRequest",
            "an AuthorityRequest in JSON (`cty` application/json)",
        ),
        "SealedAuthorityResponse": _sealed(
            "SealedAuthorityResponse",
            "the authority of the topic's adapter",
            f"the {HUB_PARTY}",
            "AuthorityResponse",
            "an AuthorityResponse in JSON (`cty` application/json)",
        ),
        "SealedDecision": _sealed(
            "SealedDecision",
            f"the {HUB_PARTY}",
            f"the clearance system (party `{CLEARANCE_PARTY}`)",
            "DecisionXml",
            "the decision XML (`cty` application/xml; `topic` is the decisions topic; while "
            "it waits on the hub's decision outbox it is sealed to the hub itself, and the "
            "publisher seals it to the clearance system as it publishes it)",
        ),
        "SignedPartnerHealth": _signed(
            "SignedPartnerHealth",
            "an authority's adapter (party: the authority id it names in `authority`)",
            "PartnerHealth",
            "a PartnerHealth in JSON",
            "the hub believes it only if `authority` is the signer's and `at` is later than "
            "the last heartbeat it believed for that authority",
        ),
        "DeadlineTick": {
            "title": "DeadlineTick",
            "description": "What the deadlines agent does for the case of the record's key "
            "on the record's partition (the same partition number as its declaration's). "
            "One of: a deadline tick, the version of the declaration whose case is due as "
            "decimal text; a retention tick, the bare text `retention` "
            "(gun_hub/pipeline/retention.py); a takeover notice, sealed with the hub's "
            "state key (StateSealedBytes, bound to the reference: it names the documents a "
            "version quotes), whose plaintext is a TakeoverNotice, or a "
            "DecisionNotPublishedNotice written by the decision publisher. Workers before "
            "stop 56 wrote the takeover notice's JSON in clear; it is still read.",
        },
        "TakeoverNotice": {
            "title": "TakeoverNotice",
            "type": "object",
            "description": "A takeover notice's plaintext (gun_hub/pipeline/takeover.py): a "
            "version of the reference read on another partition, whose case takes over what "
            "a lower version's case on this partition holds.",
            "required": ["superseded_by", "stage"],
            "properties": {
                "superseded_by": {"type": "integer", "minimum": 1},
                "read_at": {
                    "type": "string",
                    "description": "Where that version was read (topic/partition/offset).",
                },
                "stage": {"type": "string", "description": "That version's stage."},
                "declarant": {
                    "type": "string",
                    "description": "16 hex digits of a SHA-256 of its declarant's EORI: a "
                    "case of another declarant is not taken over.",
                },
                "quotes": {
                    "type": "array",
                    "description": "The [authority, document reference] pairs it restates or "
                    "follows up itself; what the case taken over holds beyond them is written "
                    "off or deleted from its partition.",
                    "items": {
                        "type": "array",
                        "items": {"type": "string"},
                        "minItems": 2,
                        "maxItems": 2,
                    },
                },
            },
        },
        "DecisionNotPublishedNotice": {
            "title": "DecisionNotPublishedNotice",
            "type": "object",
            "description": "Written by the decision publisher's lane on the partition of a "
            "case whose decision of a version it did not publish, the case of the reference "
            "on another partition having decided it first (gun_hub/pipeline/"
            "published_elsewhere.py, ADR 0028): a control of that version held here holds "
            "nothing any more.",
            "required": ["not_published", "published_from"],
            "properties": {
                "not_published": {"type": "integer", "minimum": 1},
                "published_from": {
                    "type": "integer",
                    "minimum": 0,
                    "description": "The partition whose case's decision was published.",
                },
            },
        },
        "ClaimsRecord": {
            "title": "ClaimsRecord",
            "description": "A declaration's message id claimed at the partition that owns "
            "it, or the owner's verdict sent back to the declaration's partition "
            "(gun_hub/pipeline/admission.py).",
            "oneOf": [
                {
                    "type": "object",
                    "required": ["kind", "jti", "accept_until", "topic", "partition", "offset"],
                    "properties": {
                        "kind": {"const": "claim"},
                        "jti": {
                            "type": "string",
                            "description": "The envelope's sender, `/`, its `jti`.",
                        },
                        "accept_until": {
                            "type": "integer",
                            "minimum": 0,
                            "maximum": 2**63 - 1,
                            "description": "Envelope exp plus the allowed skew (epoch s).",
                        },
                        "topic": {"type": "string"},
                        "partition": {"type": "integer", "minimum": 0, "maximum": 2**31 - 1},
                        "offset": {"type": "integer", "minimum": 0, "maximum": 2**63 - 1},
                        "accepted_at": {
                            "type": ["number", "null"],
                            "exclusiveMinimum": -(2**33),
                            "exclusiveMaximum": 2**33,
                            "description": "The declaration record's log-append time (epoch s).",
                        },
                        "read_as": {
                            "type": "string",
                            "pattern": r"^.{1,249}/(0|[1-9][0-9]{0,18})/(0|[1-9][0-9]{0,18})$",
                            "description": "A redrive: the original's position "
                            "(topic/partition/offset), where it is claimed.",
                        },
                        "readable_from": {
                            "type": "number",
                            "exclusiveMinimum": -(2**33),
                            "exclusiveMaximum": 2**33,
                            "description": "The log-append time (epoch s) below which the "
                            "declaration's partition can no longer be read again: of the "
                            "record at the offset the broker confirmed committed. What moves "
                            "the claims memory's clock for that partition (ADR 0008, stop "
                            "36). Absent when unknown, for a redrive, and from a worker "
                            "before stop 36 (its claims move no clock).",
                        },
                    },
                    "additionalProperties": False,
                },
                {
                    "type": "object",
                    "required": ["kind", "jti", "topic", "partition", "offset", "first"],
                    "properties": {
                        "kind": {"const": "verdict"},
                        "jti": {"type": "string"},
                        "topic": {"type": "string"},
                        "partition": {"type": "integer", "minimum": 0},
                        "offset": {"type": "integer", "minimum": 0},
                        "first": {
                            "type": "boolean",
                            "description": "First sighting (or the same position again); "
                            "false: a replay, read first at `held_at`.",
                        },
                        "held_at": {"type": "string"},
                    },
                    "additionalProperties": False,
                },
            ],
        },
        "StateSealedBytes": {
            "title": "StateSealedBytes",
            "description": "A value sealed with its writer's state key: a magic prefix, the "
            "key id, a 96-bit nonce, then AES-256-GCM ciphertext and tag. Only the writer "
            "opens it (gun_contract/security/state_cipher.py).",
        },
        "OriginalBytes": {
            "title": "OriginalBytes",
            "description": "The failed record's value, byte for byte: any content, possibly "
            "not UTF-8, possibly hostile. Never parse it without the care of its source.",
        },
        **_audit_record_schemas(),
    }
    clash = sorted(set(schemas) & set(written_here))
    if clash:
        raise ValueError(f"schema names {clash} are both a model and written by hand")
    schemas.update(written_here)
    return {name: _without_openapi_discriminators(schemas[name]) for name in sorted(schemas)}
