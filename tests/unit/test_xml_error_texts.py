"""A refusal names the element's path and the rule it broke, never the value (issue 11, 1).

Refusal texts travel in dead-letter headers, REFUSE reasons and the operations dashboard;
a value there may be a war-material licence number or a trader's EORI.
"""

from __future__ import annotations

from xml.sax.saxutils import escape, quoteattr

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lxml import etree

from gun_hub.xml.declaration_codec import DECLARATION_NS, DeclarationCodec, _to_declaration
from gun_hub.xml.safe_parse import XmlRejected, XmlRejectionKind
from tests.builders import declaration_xml

LICENCE = "LEMG-SECRET-42"  # a war-material licence reference


@pytest.fixture(scope="module")
def codec() -> DeclarationCodec:
    return DeclarationCodec()


def _change(old: str, new: str) -> bytes:
    data = declaration_xml()
    assert old.encode() in data, old
    return data.replace(old.encode(), new.encode(), 1)


# name -> (document, hidden value, path, fragments of the rule that must be named)
CASES: dict[str, tuple[bytes, str, str, tuple[str, ...]]] = {
    "licence-as-eori": (
        _change("<Eori>FR12345678901234</Eori>", f"<Eori>{LICENCE}</Eori>"),
        LICENCE,
        "/Declaration/Declarant/Eori",
        ("Eori", "[facet 'pattern']", "[A-Z]{2}[0-9A-Za-z]{1,15}"),
    ),
    "eori-failing-its-pattern": (
        _change("<Eori>FR12345678901234</Eori>", "<Eori>fr1234567890123</Eori>"),
        "fr1234567890123",
        "/Declaration/Declarant/Eori",
        ("[facet 'pattern']",),
    ),
    "licence-reference-with-a-space": (
        _change("CHEDP.FR.2026.0001234", "LEMG SECRET 42"),
        "SECRET",
        "/Declaration/GoodsItem/Document/Reference",
        ("[facet 'pattern']",),
    ),
    "licence-as-document-code": (
        _change("<Code>N853</Code>", f"<Code>{LICENCE}</Code>"),
        LICENCE,
        "/Declaration/GoodsItem/Document/Code",
        ("[facet 'pattern']", "[A-Z][0-9A-Z]{3}"),
    ),
    "licence-as-version": (
        _change("<Version>1</Version>", f"<Version>{LICENCE}</Version>"),
        LICENCE,
        "/Declaration/Version",
        ("type 'VersionType'",),
    ),
    "licence-as-stage": (
        _change("<Stage>LODGED</Stage>", f"<Stage>{LICENCE}</Stage>"),
        LICENCE,
        "/Declaration/Stage",
        ("[facet 'enumeration']", "'PRELODGED'"),
    ),
    "licence-as-country": (
        _change(
            "<CountryOfOrigin>NO</CountryOfOrigin>",
            f"<CountryOfOrigin>{LICENCE}</CountryOfOrigin>",
        ),
        LICENCE,
        "/Declaration/GoodsItem/CountryOfOrigin",
        ("[facet 'enumeration']",),
    ),
    "licence-as-unit": (
        _change('<Quantity unit="KGM">', f'<Quantity unit="{LICENCE}">'),
        LICENCE,
        "/Declaration/GoodsItem/Document/Quantity",
        ("attribute 'unit'", "[facet 'enumeration']"),
    ),
    "licence-as-quantity": (
        _change('<Quantity unit="KGM">1200.5', f'<Quantity unit="KGM">{LICENCE}'),
        LICENCE,
        "/Declaration/GoodsItem/Document/Quantity",
        ("type",),
    ),
    "licence-as-lodging-time": (
        _change("2026-11-22T10:00:00Z", LICENCE),
        LICENCE,
        "/Declaration/LodgedAt",
        ("type 'UtcDateTimeType'",),
    ),
    "licence-repeated-as-name": (
        _change("<Name>Example SARL</Name>", f"<Name>{LICENCE * 6}</Name>"),
        LICENCE,
        "/Declaration/Declarant/Name",
        ("[facet 'maxLength']", "'70'"),
    ),
    "licence-number-as-line": (
        _change("<Line>1</Line>", "<Line>424242</Line>"),
        "424242",
        "/Declaration/GoodsItem/Document/Line",
        ("[facet 'maxInclusive']", "'9999'"),
    ),
    "licence-number-as-quantity-fraction": (
        _change('<Quantity unit="KGM">1200.5', '<Quantity unit="KGM">4242.4242424'),
        "4242.4242424",
        "/Declaration/GoodsItem/Document/Quantity",
        ("[facet 'fractionDigits']", "'6'"),
    ),
    "licence-number-as-too-many-digits": (
        _change('<Quantity unit="KGM">1200.5', '<Quantity unit="KGM">4242424242424242424'),
        "4242424242424242424",
        "/Declaration/GoodsItem/Document/Quantity",
        ("[facet 'totalDigits']",),
    ),
    "licence-as-text-of-an-element-only-element": (
        _change("<Declarant>", f"<Declarant>{LICENCE}"),
        LICENCE,
        "/Declaration/Declarant",
        ("character content",),
    ),
    "licence-in-an-xsi-type": (
        _change(
            "<Stage>",
            f'<Stage xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xsi:type="{LICENCE}">',
        ),
        LICENCE,
        "/Declaration/Stage",
        ("xsi:type",),
    ),
    "value-that-mimics-the-message": (
        _change(
            "CHEDP.FR.2026.0001234",
            "LEMG' is not accepted by the pattern 'SECRET-42",
        ),
        "SECRET-42",
        "/Declaration/GoodsItem/Document/Reference",
        ("[facet 'pattern']", "[0-9A-Za-z][0-9A-Za-z._/\\-]{0,69}"),
    ),
    "value-that-mimics-an-enumeration": (
        _change(
            "<Stage>LODGED</Stage>",
            "<Stage>x' is not an element of the set {'SECRET-42'}, '</Stage>",
        ),
        "SECRET-42",
        "/Declaration/Stage",
        ("[facet 'enumeration']",),
    ),
}


@pytest.mark.parametrize("name", list(CASES))
def test_the_refusal_names_path_and_rule_but_not_the_value(
    codec: DeclarationCodec, name: str
) -> None:
    data, hidden, path, rule = CASES[name]
    with pytest.raises(XmlRejected) as refused:
        codec.decode(data)
    rejection = refused.value
    assert rejection.kind is XmlRejectionKind.SCHEMA
    assert rejection.path == path
    assert path in str(rejection)
    for fragment in rule:
        assert fragment in rejection.message, (fragment, rejection.message)
    assert hidden not in str(rejection)
    assert hidden not in rejection.message


def test_a_duplicate_goods_item_number_is_not_quoted(codec: DeclarationCodec) -> None:
    text = declaration_xml().decode().replace("<Number>1</Number>", "<Number>427</Number>")
    item = text[text.index("<GoodsItem>") : text.index("</GoodsItem>") + len("</GoodsItem>")]
    with pytest.raises(XmlRejected) as refused:
        codec.decode(text.replace(item, item + item).encode())
    assert refused.value.path == "/Declaration/GoodsItem[2]"
    assert "UniqueGoodsItemNumber" in refused.value.message
    assert "427" not in str(refused.value)


def test_a_value_refused_after_the_schema_is_not_quoted_either() -> None:
    root = etree.fromstring(declaration_xml())
    lodged_at = root.find(f"{{{DECLARATION_NS}}}LodgedAt")
    assert lodged_at is not None
    lodged_at.text = "2026-13-45T10:00:00Z"  # bypasses the XSD on purpose
    with pytest.raises(XmlRejected) as refused:
        _to_declaration(root)
    assert refused.value.kind is XmlRejectionKind.VALUE
    assert refused.value.path == "/Declaration/LodgedAt"
    assert "2026-13-45" not in str(refused.value)


# --- any value, anywhere: never quoted ------------------------------------------------

# Where a value goes: (old text, template of the new text, escape for the place).
PLACES = {
    "eori": ("<Eori>FR12345678901234</Eori>", "<Eori>{}</Eori>", escape),
    "name": ("<Name>Example SARL</Name>", "<Name>{}</Name>", escape),
    "reference": ("CHEDP.FR.2026.0001234", "{}", escape),
    "code": ("<Code>N853</Code>", "<Code>{}</Code>", escape),
    "stage": ("<Stage>LODGED</Stage>", "<Stage>{}</Stage>", escape),
    "version": ("<Version>1</Version>", "<Version>{}</Version>", escape),
    "lodged-at": ("2026-11-22T10:00:00Z", "{}", escape),
    "quantity": ('<Quantity unit="KGM">1200.5', '<Quantity unit="KGM">{}', escape),
    "unit": ('<Quantity unit="KGM">', "<Quantity unit={}>", quoteattr),
    "country": ("<CountryOfOrigin>NO", "<CountryOfOrigin>{}", escape),
}
# A marker no schema text contains, then anything XML can carry (quotes, braces, the
# words of libxml2's messages...).
PIECES = st.text(
    alphabet=st.characters(blacklist_categories=("Cs", "Cc"), blacklist_characters="\ufffe\uffff"),
    max_size=12,
) | st.sampled_from(
    [
        "'",
        '"',
        "{",
        "}",
        ", ",
        " ",
        "' is not accepted by the pattern '",
        "' must be greater than '",
        "' is not an element of the set {'",
        "' is not a valid value of the atomic type '",
        "] in unique identity-constraint '",
    ]
)
secrets = st.lists(PIECES, max_size=6).map(lambda pieces: "Zq9" + "".join(pieces))
CODEC = DeclarationCodec()


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(place=st.sampled_from(sorted(PLACES)), secret=secrets)
def test_no_refusal_ever_quotes_the_value(place: str, secret: str) -> None:
    old, template, quote = PLACES[place]
    data = declaration_xml().decode().replace(old, template.format(quote(secret)), 1)
    text = _refusal_text(data.encode())
    assert "Zq9" not in text, text


def _refusal_text(data: bytes) -> str:
    try:
        CODEC.decode(data)
    except XmlRejected as rejection:
        return str(rejection)
    return ""
