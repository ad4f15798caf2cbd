"""Declarations are parsed and validated against declaration.xsd, or refused with a reason."""

from __future__ import annotations

from pathlib import Path

import pytest
from lxml import etree

from gun_contract.model.declaration import Stage
from gun_hub.xml.declaration_codec import (
    DeclarationCodec,
    _to_declaration,
    encode_declaration,
    sniff_identity,
)
from gun_hub.xml.safe_parse import XmlLimits, XmlRejected, XmlRejectionKind
from tests.builders import declaration, declaration_xml, document, goods_item


@pytest.fixture(scope="module")
def codec() -> DeclarationCodec:
    return DeclarationCodec(XmlLimits(max_bytes=64 * 1024))


def test_the_contract_example_parses_into_the_model(codec: DeclarationCodec) -> None:
    parsed = codec.decode(declaration_xml())
    assert parsed == declaration()
    assert parsed.goods_items[0].documents[0].quantity is not None
    assert str(parsed.goods_items[0].documents[0].quantity.value) == "1200.5"


def test_every_valid_sample_parses(codec: DeclarationCodec, samples: Path) -> None:
    valid = [
        p for p in sorted((samples / "declarations").glob("*.xml")) if "negative" not in p.name
    ]
    assert len(valid) >= 7
    stages = {codec.decode(path.read_bytes()).stage for path in valid}
    assert stages == {Stage.LODGED, Stage.PRELODGED, Stage.CANCELLED}


def test_encoding_then_decoding_gives_back_the_same_declaration(codec: DeclarationCodec) -> None:
    original = declaration(
        items=(
            goods_item(1, (document(), document("Y900", "EXEMPT-1", None, None))),
            goods_item(2, (document("C640", "CHEDA.FR.2026.0000042", 1, "3", "NAR"),)),
        )
    )
    assert codec.decode(encode_declaration(original)) == original


def test_a_negative_quantity_is_refused_with_the_path_of_the_element(
    codec: DeclarationCodec,
) -> None:
    data = declaration_xml(items=(goods_item(1, (document(quantity="-10"),)),))
    with pytest.raises(XmlRejected) as refused:
        codec.decode(data)
    assert refused.value.kind is XmlRejectionKind.SCHEMA
    assert refused.value.path == "/Declaration/GoodsItem/Document/Quantity"
    assert "[facet 'minExclusive'] the value must be greater than '0'" in refused.value.message
    assert "-10" not in str(refused.value)  # the value itself is never quoted


def test_the_reference_of_a_broken_declaration_can_still_be_read() -> None:
    data = declaration_xml(reference="26FR000690I0000099", version=3)[:-40]
    identity = sniff_identity(data)
    assert identity is not None
    assert (identity.reference, identity.version) == ("26FR000690I0000099", 3)


def test_no_identity_is_invented_for_garbage() -> None:
    assert sniff_identity(b"\x00\x01 not xml at all") is None


def test_a_value_the_schema_lets_through_is_still_refused_with_its_path() -> None:
    # Bypasses the XSD on purpose: the conversion step must still refuse, not crash.
    root = etree.fromstring(declaration_xml())
    lodged_at = root.find("{urn:gun-hub:declaration:v1}LodgedAt")
    assert lodged_at is not None
    lodged_at.text = "2026-13-45T10:00:00Z"
    with pytest.raises(XmlRejected) as refused:
        _to_declaration(root)
    assert refused.value.kind is XmlRejectionKind.VALUE
    assert refused.value.path == "/Declaration/LodgedAt"


def test_a_broken_declaration_is_identified_only_by_its_own_reference() -> None:
    """Scenario: declaration 26FR000690I0000012 v2 quotes 26FR000690I0000011 as a document
    reference, and its own <Reference> has a typo (lower case). Only the Reference the
    schema places directly under the root names the declaration: none can be read, so no
    identity (dead letter only), never the quoted document's. Found by review, stop 36."""
    quoting = declaration_xml(
        reference="26FR000690I0000012",
        version=2,
        items=(goods_item(documents=(document(reference="26FR000690I0000011"),)),),
    )
    broken = quoting.replace(
        b"<Reference>26FR000690I0000012</Reference>",
        b"<Reference>26fr000690i0000012</Reference>",
        1,
    )
    assert sniff_identity(broken) is None
    # Its own reference missing altogether, or not first: no identity either.
    assert (
        sniff_identity(quoting.replace(b"<Reference>26FR000690I0000012</Reference>", b"", 1))
        is None
    )


@pytest.mark.parametrize(
    ("written", "version"),
    [
        ("0000005", 5),  # leading zeros: xs:positiveInteger admits them (VersionType)
        ("+7", 7),  # a leading plus sign, too
        ("\n  12\n", 12),  # whitespace collapses around an integer
        ("999999", 999999),
        ("1000000", 0),  # over VersionType's maxInclusive: unreadable, not 100000
        ("0", 0),  # not a positive integer
        ("5x", 0),
    ],
)
def test_the_version_of_a_broken_declaration_is_read_as_the_schema_reads_it(
    written: str, version: int
) -> None:
    """Scenario: a broken declaration writes its Version in any lexical form the XSD's
    VersionType (xs:positiveInteger up to 999999) admits; the sniffed version is the
    value the schema would read (``0000005`` is 5, never 0 or 0000), and 0 (unreadable)
    for anything the schema refuses. Found by review, stop 36."""
    data = declaration_xml(reference="26FR000690I0000099", version=3).replace(
        b"<Version>3</Version>", f"<Version>{written}</Version>".encode()
    )[:-40]
    identity = sniff_identity(data)
    assert identity is not None
    assert (identity.reference, identity.version) == ("26FR000690I0000099", version)


def test_a_prefixed_declaration_with_comments_is_still_identified() -> None:
    """Scenario: a broken declaration written with a namespace prefix, an XML declaration
    and comments before its own Reference is identified by that Reference. Found by
    review, stop 36."""
    data = (
        b'<?xml version="1.0" encoding="UTF-8"?>\n<!-- lodged by X -->\n'
        b'<d:Declaration xmlns:d="urn:gun-hub:declaration:v1" a=">">\n  <!-- own -->\n'
        b"  <d:Reference> 26FR000690I0000042 </d:Reference><!-- v -->\n"
        b"  <d:Version>4</d:Version><d:Stage>BROKEN"
    )
    identity = sniff_identity(data)
    assert identity is not None
    assert (identity.reference, identity.version) == ("26FR000690I0000042", 4)
