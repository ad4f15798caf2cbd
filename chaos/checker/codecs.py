"""Reading the payloads: decision XML (namespace ``urn:gun-hub:decision:v1``) and the
adapters' JSON answers, parsed here from the contract, not with the hub's codecs."""

from __future__ import annotations

import json
from datetime import datetime

from lxml import etree

from chaos.checker.model import AnswerSeen, DecisionSeen, DocumentResultSeen

DECISION_NS = "urn:gun-hub:decision:v1"
_NS = "{" + DECISION_NS + "}"
_PARSER = etree.XMLParser(
    resolve_entities=False, no_network=True, load_dtd=False, huge_tree=True, remove_comments=True
)


class PayloadError(ValueError):
    """The opened payload is not what the contract says it is."""


def _text(element: etree._Element, tag: str) -> str:
    return (element.findtext(_NS + tag) or "").strip()


def parse_decision(payload: bytes, *, partition: int = 0, offset: int = 0) -> DecisionSeen:
    try:
        root = etree.fromstring(payload, _PARSER)
    except etree.XMLSyntaxError as err:
        raise PayloadError(f"decision is not XML: {err}") from None
    if root.tag != _NS + "Decision":
        raise PayloadError(f"root element is {root.tag!r}, not a {DECISION_NS} Decision")
    try:
        decided_at = datetime.fromisoformat(_text(root, "DecidedAt").replace("Z", "+00:00"))
        return DecisionSeen(
            reference=_text(root, "Reference"),
            version=int(_text(root, "Version")),
            outcome=_text(root, "Outcome"),
            decided_at=decided_at.timestamp(),
            reasons=tuple(
                (str(r.get("code", "")), (r.text or "").strip())
                for r in root.iterfind(_NS + "Reason")
            ),
            documents=tuple(
                DocumentResultSeen(
                    goods_item=int(_text(d, "GoodsItem")),
                    code=_text(d, "Code"),
                    reference=_text(d, "Reference"),
                    authority=_text(d, "Authority") or None,
                    verdict=_text(d, "Verdict"),
                    partner_code=_text(d, "PartnerCode") or None,
                )
                for d in root.iterfind(_NS + "DocumentResult")
            ),
            partition=partition,
            offset=offset,
        )
    except ValueError as err:
        raise PayloadError(f"decision field unreadable: {err}") from None


def parse_answer(
    payload: bytes, *, timestamp: float = 0.0, partition: int = 0, offset: int = 0
) -> AnswerSeen:
    """An adapter's answer (JSON): reference, version, authority, operation, answers."""
    try:
        data = json.loads(payload)
        return AnswerSeen(
            reference=str(data["reference"]),
            version=int(data["version"]),
            authority=str(data["authority"]),
            operation=str(data["operation"]),
            verdicts=tuple(
                (int(a["goods_item"]), str(a["code"]), str(a["reference"]), str(a["verdict"]))
                for a in data["answers"]
            ),
            timestamp=timestamp,
            partition=partition,
            offset=offset,
        )
    except (ValueError, KeyError, TypeError, RecursionError) as err:
        raise PayloadError(f"answer unreadable: {type(err).__name__}: {err}"[:300]) from None
