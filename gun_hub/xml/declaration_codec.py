"""Declaration XML (contract section 3) to :class:`~gun_hub.model.declaration.Declaration`."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal, InvalidOperation
from xml.sax.saxutils import escape, quoteattr

from lxml import etree

from gun_hub.model.declaration import (
    Declarant,
    Declaration,
    Direction,
    DocumentRef,
    GoodsItem,
    Quantity,
    Stage,
)
from gun_hub.resources import schema_path
from gun_hub.xml.safe_parse import (
    SafeXmlParser,
    XmlLimits,
    XmlRejected,
    XmlRejectionKind,
    load_schema,
    readable_path,
)

DECLARATION_NS = "urn:gun-hub:declaration:v1"
_NS = "{" + DECLARATION_NS + "}"

# Used only to address a REFUSE to a declaration too broken to parse: the first
# <Reference> of the document is the declaration's own (document references come later).
_REFERENCE_SNIFF = re.compile(
    rb"<(?:[A-Za-z_][\w.-]*:)?Reference>\s*([0-9A-Z][0-9A-Z._/-]{5,34})\s*<"
)
_VERSION_SNIFF = re.compile(rb"<(?:[A-Za-z_][\w.-]*:)?Version>\s*([0-9]{1,6})\s*<")
_SNIFF_WINDOW = 4096


@dataclass(frozen=True, slots=True)
class Identity:
    """What could be read of a rejected declaration, to address the REFUSE decision."""

    reference: str
    version: int


def sniff_identity(data: bytes) -> Identity | None:
    """Best-effort reference (and version) of a declaration that failed to parse.

    Looks only at the first few kilobytes with a bounded pattern, never parses: it must be
    safe on exactly the inputs the parser refused.
    """
    head = data[:_SNIFF_WINDOW]
    reference = _REFERENCE_SNIFF.search(head)
    if reference is None:
        return None
    version = _VERSION_SNIFF.search(head)
    return Identity(
        reference=reference.group(1).decode("ascii"),
        version=int(version.group(1)) if version else 0,
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


def _text(element: etree._Element, tag: str) -> str:
    child = element.find(_NS + tag)
    if child is None or child.text is None:  # the schema makes this unreachable
        raise XmlRejected(XmlRejectionKind.SCHEMA, f"missing {tag}", readable_path(element))
    return child.text.strip()


def _optional_text(element: etree._Element, tag: str) -> str | None:
    child = element.find(_NS + tag)
    return None if child is None or child.text is None else child.text.strip()


def _quantity(element: etree._Element | None) -> Quantity | None:
    if element is None:
        return None
    try:
        value = Decimal((element.text or "").strip())
    except InvalidOperation:  # the schema makes this unreachable
        raise XmlRejected(
            XmlRejectionKind.VALUE, "quantity is not a decimal", readable_path(element)
        ) from None
    return Quantity(value=value, unit=element.get("unit", ""))


def _document(element: etree._Element) -> DocumentRef:
    line = _optional_text(element, "Line")
    return DocumentRef(
        code=_text(element, "Code"),
        reference=_text(element, "Reference"),
        line=int(line) if line is not None else None,
        quantity=_quantity(element.find(_NS + "Quantity")),
    )


def _goods_item(element: etree._Element) -> GoodsItem:
    return GoodsItem(
        number=int(_text(element, "Number")),
        commodity_code=_text(element, "CommodityCode"),
        description=_text(element, "Description"),
        country_of_origin=_optional_text(element, "CountryOfOrigin"),
        net_mass=_quantity(element.find(_NS + "NetMass")),
        documents=tuple(_document(d) for d in element.iterfind(_NS + "Document")),
    )


def _to_declaration(root: etree._Element) -> Declaration:
    lodged_at_element = root.find(_NS + "LodgedAt")
    try:
        lodged_at = datetime.fromisoformat(_text(root, "LodgedAt"))
    except ValueError as err:  # e.g. 2026-02-30, which the XSD pattern lets through
        path = readable_path(lodged_at_element) if lodged_at_element is not None else None
        raise XmlRejected(XmlRejectionKind.VALUE, f"LodgedAt is not a date: {err}", path) from None
    declarant = root.find(_NS + "Declarant")
    if declarant is None:  # the schema makes this unreachable
        raise XmlRejected(XmlRejectionKind.SCHEMA, "missing Declarant", "/Declaration")
    return Declaration(
        reference=_text(root, "Reference"),
        version=int(_text(root, "Version")),
        stage=Stage(_text(root, "Stage")),
        direction=Direction(_text(root, "Direction")),
        procedure=_text(root, "Procedure"),
        lodged_at=lodged_at,
        customs_office=_text(root, "CustomsOffice"),
        declarant=Declarant(eori=_text(declarant, "Eori"), name=_text(declarant, "Name")),
        country_of_dispatch=_optional_text(root, "CountryOfDispatch"),
        country_of_destination=_optional_text(root, "CountryOfDestination"),
        goods_items=tuple(_goods_item(g) for g in root.iterfind(_NS + "GoodsItem")),
    )


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
        parts.append("</GoodsItem>")
    parts.append("</Declaration>")
    return "".join(parts).encode("utf-8")
