"""Declaration XML (contract section 3) to :class:`~gun_contract.model.declaration.Declaration`."""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal
from xml.sax.saxutils import escape, quoteattr

from lxml import etree
from pydantic import ValidationError
from pydantic_core import ErrorDetails

from gun_contract.model.declaration import Declaration
from gun_contract.resources import schema_path
from gun_hub.xml.safe_parse import (
    SafeXmlParser,
    XmlLimits,
    XmlRejected,
    XmlRejectionKind,
    load_schema,
)

DECLARATION_NS = "urn:gun-hub:declaration:v1"
_NS = "{" + DECLARATION_NS + "}"

# Used only to address a REFUSE to a declaration too broken to parse, and only by the
# declaration's own reference: the one declaration.xsd places first under the root, never
# a Document's (which may be another declaration's: refusing under it superseded that
# declaration's case; found by review, stop 36). Between the root start tag, its
# Reference and its Version: only white space, comments and processing instructions.
# Every part is bounded by its terminator and the pattern is anchored at the start, so it
# runs in one pass over the window, safe on exactly the inputs the parser refused.
_GAP = rb"(?:\s|<!--(?:(?!-->).)*-->|<\?(?:(?!\?>).)*\?>)*"
_NAME = rb"[A-Za-z_][\w.-]*"
_ATTRIBUTES = rb"(?:\s+[^\s=/>]+\s*=\s*(?:\"[^\"]*\"|'[^']*'))*\s*"
_IDENTITY_SNIFF = re.compile(
    # The prolog: anything but an element (declaration, comments, a DOCTYPE, which is
    # refused but does not hide the reference): the first element must be the root.
    rb"\A(?:[^<]|<[!?])*"
    + rb"<(?:"
    + _NAME
    + rb":)?Declaration"
    + _ATTRIBUTES
    + rb">"
    + _GAP
    + rb"<(?P<r>(?:"
    + _NAME
    + rb":)?)Reference>\s*(?P<reference>[0-9A-Z][0-9A-Z._/-]{5,34})\s*"
    + rb"</(?P=r)Reference>"
    + rb"(?:"
    + _GAP
    # VersionType: xs:positiveInteger (a sign, leading zeros, collapsed white space)
    # up to 999999. Anything else is unreadable: version 0.
    + rb"<(?P<v>(?:"
    + _NAME
    + rb":)?)Version>\s*\+?0*(?P<version>[1-9][0-9]{0,5})\s*"
    + rb"</(?P=v)Version>"
    + rb")?",
    re.DOTALL,
)
_SNIFF_WINDOW = 4096


@dataclass(frozen=True, slots=True)
class Identity:
    """What could be read of a rejected declaration, to address the REFUSE decision."""

    reference: str
    version: int


def sniff_identity(data: bytes) -> Identity | None:
    """Best-effort reference (and version) of a declaration that failed to parse.

    Looks only at the first few kilobytes with a bounded pattern, never parses: it must be
    safe on exactly the inputs the parser refused. None when the declaration's own
    reference cannot be told (it is then dead-lettered only, contract section 6).
    """
    found = _IDENTITY_SNIFF.match(data[:_SNIFF_WINDOW])
    if found is None:
        return None
    version = found.group("version")
    return Identity(
        reference=found.group("reference").decode("ascii"),
        version=int(version) if version else 0,
    )


class DeclarationCodec:
    """Turns declaration bytes into a validated :class:`Declaration`.

    One instance per worker: it holds the precompiled schema.
    """

    def __init__(self, limits: XmlLimits | None = None) -> None:
        self._xml = SafeXmlParser(
            load_schema(schema_path("declaration.xsd")), DECLARATION_NS, limits or XmlLimits()
        )

    def decode(self, data: bytes) -> Declaration:
        """Parse, validate and convert, or raise :class:`XmlRejected`."""
        root = self._xml.parse(data)
        return _to_declaration(root)


_NS_LEN = len(_NS)
# Model field -> contract element, to point a late (post-XSD) value error at its element.
_ELEMENT_OF_FIELD = {
    "lodged_at": "LodgedAt",
    "version": "Version",
    "goods_items": "GoodsItem",
    "documents": "Document",
    "quantity": "Quantity",
    "net_mass": "NetMass",
    "additional_information": "AdditionalInformation",
}


def _text(element: etree._Element) -> str:
    return (element.text or "").strip()


def _quantity(element: etree._Element) -> dict[str, str | None]:
    return {"value": _text(element), "unit": element.get("unit")}


def _document(element: etree._Element) -> dict[str, object]:
    document: dict[str, object] = {}
    for child in element:
        tag = child.tag[_NS_LEN:]
        if tag == "Code":
            document["code"] = _text(child)
        elif tag == "Reference":
            document["reference"] = _text(child)
        elif tag == "Line":
            document["line"] = _text(child)
        elif tag == "Quantity":
            document["quantity"] = _quantity(child)
    return document


def _additional_information(element: etree._Element) -> dict[str, str]:
    return {child.tag[_NS_LEN:].lower(): _text(child) for child in element}


def _goods_item(element: etree._Element) -> dict[str, object]:
    item: dict[str, object] = {}
    documents: list[dict[str, object]] = []
    mentions: list[dict[str, str]] = []
    for child in element:
        tag = child.tag[_NS_LEN:]
        if tag == "Document":
            documents.append(_document(child))
        elif tag == "AdditionalInformation":
            mentions.append(_additional_information(child))
        elif tag == "NetMass":
            item["net_mass"] = _quantity(child)
        elif tag == "Number":
            item["number"] = _text(child)
        elif tag == "CommodityCode":
            item["commodity_code"] = _text(child)
        elif tag == "Description":
            item["description"] = _text(child)
        elif tag == "CountryOfOrigin":
            item["country_of_origin"] = _text(child)
    item["documents"] = documents
    item["additional_information"] = mentions
    return item


_TOP_LEVEL_FIELDS = {
    "Reference": "reference",
    "Version": "version",
    "Stage": "stage",
    "Direction": "direction",
    "Procedure": "procedure",
    "LodgedAt": "lodged_at",
    "CustomsOffice": "customs_office",
    "CountryOfDispatch": "country_of_dispatch",
    "CountryOfDestination": "country_of_destination",
}


def _to_declaration(root: etree._Element) -> Declaration:
    """One pass over the validated tree into plain data, then one pydantic validation.

    Building nested models one constructor at a time costs three times as much; the XSD
    has already checked every value, so pydantic only converts types here.
    """
    fields: dict[str, object] = {}
    items: list[dict[str, object]] = []
    for child in root:
        tag = child.tag[_NS_LEN:]
        if tag == "GoodsItem":
            items.append(_goods_item(child))
        elif tag == "Declarant":
            fields["declarant"] = {part.tag[_NS_LEN:].lower(): _text(part) for part in child}
        else:
            fields[_TOP_LEVEL_FIELDS[tag]] = _text(child)
    fields["goods_items"] = items
    try:
        return Declaration.model_validate(fields)
    except ValidationError as err:  # e.g. 2026-02-30, which the XSD pattern lets through
        first = err.errors()[0]
        steps = [_ELEMENT_OF_FIELD.get(str(step), str(step)) for step in first["loc"]]
        path = "/Declaration/" + "/".join(
            f"{steps[i]}[{int(steps[i + 1]) + 1}]"
            if i + 1 < len(steps) and steps[i + 1].isdigit()
            else step
            for i, step in enumerate(steps)
            if not step.isdigit()
        )
        raise XmlRejected(XmlRejectionKind.VALUE, _value_rule(first), path) from None


# pydantic errors whose message is made of the rule and fixed parser texts only; any other
# (a custom validator's text may quote anything) is named by its type alone.
_QUOTABLE_ERRORS = frozenset(
    {
        "bool_parsing",
        "date_from_datetime_parsing",
        "date_parsing",
        "datetime_from_date_parsing",
        "datetime_parsing",
        "decimal_max_digits",
        "decimal_max_places",
        "decimal_parsing",
        "decimal_whole_digits",
        "enum",
        "finite_number",
        "greater_than",
        "greater_than_equal",
        "int_from_float",
        "int_parsing",
        "less_than",
        "less_than_equal",
        "literal_error",
        "missing",
        "string_pattern_mismatch",
        "string_too_long",
        "string_too_short",
        "timezone_aware",
        "timezone_naive",
    }
)


def _value_rule(error: ErrorDetails) -> str:
    """The rule a value broke, in words, never quoting the value (issue 11)."""
    if error["type"] in _QUOTABLE_ERRORS:
        return f"{error['msg']} ({error['type']})"
    return f"the value is not valid ({error['type']})"


def _plain(amount: Decimal) -> str:
    """A decimal in the notation xs:decimal accepts (never ``3.125E+4``)."""
    return format(amount, "f")


def _element(tag: str, value: object, **attributes: str) -> str:
    attrs = "".join(f" {k}={quoteattr(v)}" for k, v in attributes.items())
    return f"<{tag}{attrs}>{escape(str(value))}</{tag}>"


def encode_declaration(declaration: Declaration) -> bytes:
    """The contract XML of a declaration (what a clearance system sends)."""
    parts = [
        f'<?xml version="1.0" encoding="UTF-8"?>\n<Declaration xmlns="{DECLARATION_NS}">',
        _element("Reference", declaration.reference),
        _element("Version", declaration.version),
        _element("Stage", declaration.stage.value),
        _element("Direction", declaration.direction.value),
        _element("Procedure", declaration.procedure),
        _element("LodgedAt", declaration.lodged_at.isoformat().replace("+00:00", "Z")),
        _element("CustomsOffice", declaration.customs_office),
        "<Declarant>",
        _element("Eori", declaration.declarant.eori),
        _element("Name", declaration.declarant.name),
        "</Declarant>",
    ]
    if declaration.country_of_dispatch:
        parts.append(_element("CountryOfDispatch", declaration.country_of_dispatch))
    if declaration.country_of_destination:
        parts.append(_element("CountryOfDestination", declaration.country_of_destination))
    for item in declaration.goods_items:
        parts += [
            "<GoodsItem>",
            _element("Number", item.number),
            _element("CommodityCode", item.commodity_code),
            _element("Description", item.description),
        ]
        if item.country_of_origin:
            parts.append(_element("CountryOfOrigin", item.country_of_origin))
        if item.net_mass:
            parts.append(_element("NetMass", _plain(item.net_mass.value), unit=item.net_mass.unit))
        for document in item.documents:
            parts += [
                "<Document>",
                _element("Code", document.code),
                _element("Reference", document.reference),
            ]
            if document.line is not None:
                parts.append(_element("Line", document.line))
            if document.quantity is not None:
                parts.append(
                    _element(
                        "Quantity", _plain(document.quantity.value), unit=document.quantity.unit
                    )
                )
            parts.append("</Document>")
        for info in item.additional_information:
            parts += ["<AdditionalInformation>", _element("Code", info.code)]
            if info.text is not None:
                parts.append(_element("Text", info.text))
            parts.append("</AdditionalInformation>")
        parts.append("</GoodsItem>")
    parts.append("</Declaration>")
    return "".join(parts).encode("utf-8")
