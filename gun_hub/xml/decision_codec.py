"""Decision XML (contract section 4): rendered on the hot path, parsed by readers."""

from __future__ import annotations

from datetime import UTC, datetime
from xml.sax.saxutils import escape, quoteattr

from lxml import etree

from gun_contract.model.decision import Decision, DocumentResult, Reason
from gun_contract.model.verdicts import Outcome, Verdict
from gun_contract.resources import schema_path
from gun_hub.xml.safe_parse import SafeXmlParser, XmlLimits, load_schema

DECISION_NS = "urn:gun-hub:decision:v1"
_NS = "{" + DECISION_NS + "}"


def _timestamp(moment: datetime) -> str:
    """UTC with millisecond precision and a ``Z``, as in the contract's example."""
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def encode_decision(decision: Decision) -> bytes:
    """Render a decision. String building (escaped) is several times faster than a tree."""
    parts = [
        f'<?xml version="1.0" encoding="UTF-8"?>\n<Decision xmlns="{DECISION_NS}">',
        f"<Reference>{escape(decision.reference)}</Reference>",
        f"<Version>{decision.version}</Version>",
        f"<Outcome>{decision.outcome.value}</Outcome>",
        f"<DecidedAt>{_timestamp(decision.decided_at)}</DecidedAt>",
    ]
    parts.extend(
        f"<Reason code={quoteattr(reason.code)}>{escape(reason.text)}</Reason>"
        for reason in decision.reasons
    )
    for result in decision.documents:
        parts.append(
            "<DocumentResult>"
            f"<GoodsItem>{result.goods_item}</GoodsItem>"
            f"<Code>{escape(result.code)}</Code>"
            f"<Reference>{escape(result.reference)}</Reference>"
        )
        if result.authority:
            parts.append(f"<Authority>{escape(result.authority)}</Authority>")
        parts.append(f"<Verdict>{result.verdict.value}</Verdict>")
        if result.partner_code:
            parts.append(f"<PartnerCode>{escape(result.partner_code)}</PartnerCode>")
        parts.append("</DocumentResult>")
    parts.append("</Decision>")
    return "".join(parts).encode("utf-8")


class DecisionCodec:
    """Parses decisions safely and against ``decision.xsd`` (for readers and tests)."""

    def __init__(self, limits: XmlLimits | None = None) -> None:
        self._xml = SafeXmlParser(
            load_schema(schema_path("decision.xsd")), DECISION_NS, limits or XmlLimits()
        )

    def decode(self, data: bytes) -> Decision:
        root = self._xml.parse(data)
        return Decision(
            reference=_text(root, "Reference"),
            version=int(_text(root, "Version")),
            outcome=Outcome(_text(root, "Outcome")),
            decided_at=datetime.fromisoformat(_text(root, "DecidedAt")),
            reasons=tuple(
                Reason(code=r.get("code", ""), text=r.text or "")
                for r in root.iterfind(_NS + "Reason")
            ),
            documents=tuple(_document_result(d) for d in root.iterfind(_NS + "DocumentResult")),
        )


def _text(element: etree._Element, tag: str) -> str:
    return (element.findtext(_NS + tag) or "").strip()


def _document_result(element: etree._Element) -> DocumentResult:
    return DocumentResult(
        goods_item=int(_text(element, "GoodsItem")),
        code=_text(element, "Code"),
        reference=_text(element, "Reference"),
        authority=_text(element, "Authority") or None,
        verdict=Verdict(_text(element, "Verdict")),
        partner_code=_text(element, "PartnerCode") or None,
    )
