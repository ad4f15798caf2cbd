"""A malformed declaration's refusal names the rule and the position, never the content.

libxml2's well-formedness messages quote up to 50 characters of the document for some
errors (an unfinished CDATA section, ``--`` in a comment, an unfinished processing
instruction, a namespace URI, an undeclared entity's name...). Copied as the refusal's
text, a DGA licence reference written as CDATA and cut short reached the dead letter's
clear ``gun.error.reason`` header, every officer's dead-letter desk, the dashboard and
the REFUSE decision (review stop 39, C1). The text is now built from libxml2's error code
and position only (:mod:`gun_hub.xml.syntax_errors`).

Each document below plants a canary where the fault is, in every form libxml2 quotes:
text, a name, an attribute value, a namespace URI; the refusal must name the fault's code
and position and never hold any part of the canary.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lxml import etree

from gun_contract.dead_letter import HEADER_ERROR_REASON, SourcePosition, header_value
from gun_contract.model.verdicts import Outcome
from gun_hub.domain.routing import RoutingTable
from gun_hub.xml.declaration_codec import DeclarationCodec
from gun_hub.xml.safe_parse import XmlRejected, XmlRejectionKind
from gun_hub.xml.syntax_errors import malformed_text
from tests.builders import declaration_xml
from tests.unit.test_pipeline import Hub

CANARY = "Zq9LEMGSECRET4242"  # stands for a war-material licence reference
# Any piece of the canary long enough to mean something, in any letter case (not its
# digits alone: a column may be 4242).
PIECES = ("zq9lemg", "lemgsecret", "secret4242")
CODEC = DeclarationCodec()
DOCUMENT = declaration_xml().decode()
LICENCE_PLACE = "CHEDP.FR.2026.0001234"  # the document's reference, inside <Reference>
NAME_PLACE = "<Name>Example SARL</Name>"
ROOT_END = "</Declaration>"


def quotes_the_canary(text: str) -> bool:
    lowered = text.lower()
    return any(piece in lowered for piece in PIECES)


def at(fragment: str, place: str = LICENCE_PLACE) -> bytes:
    """The declaration with ``fragment`` where ``place`` was."""
    assert place in DOCUMENT, place
    return DOCUMENT.replace(place, fragment, 1).encode()


def cut_at(fragment: str, place: str = LICENCE_PLACE) -> bytes:
    """The declaration cut short right after ``fragment``, written where ``place`` was (a
    truncated record)."""
    return DOCUMENT[: DOCUMENT.index(place)].encode() + fragment.encode()


# name -> (document, the libxml2 error its refusal must name)
CORPUS: dict[str, tuple[bytes, str]] = {
    # the three the reviewer reproduced
    "cdata-cut-short": (cut_at(f"<![CDATA[{CANARY} "), "ERR_CDATA_NOT_FINISHED"),
    "double-hyphen-in-comment": (at(f"<!-- {CANARY} -- note -->"), "ERR_HYPHEN_IN_COMMENT"),
    "unfinished-pi": (at(f"<?x{CANARY}{ROOT_END}", ROOT_END), "ERR_SPACE_REQUIRED"),
    # text and sections
    "cdata-never-closed": (at(f"<![CDATA[{CANARY}]]"), "ERR_CDATA_NOT_FINISHED"),
    "double-hyphen-right-after-the-opening": (
        at(f"<!--{CANARY}--->"),
        "ERR_HYPHEN_IN_COMMENT",
    ),
    "double-hyphen-after-the-root": (
        DOCUMENT.encode() + f"<!-- {CANARY} -- -->".encode(),
        "ERR_HYPHEN_IN_COMMENT",
    ),
    "comment-cut-short": (cut_at(f"<!-- {CANARY}"), "ERR_COMMENT_NOT_FINISHED"),
    "pi-cut-short": (cut_at(f"<?x {CANARY}"), "ERR_PI_NOT_FINISHED"),
    "pi-named-by-the-canary-cut-short": (cut_at(f"<?{CANARY} "), "ERR_PI_NOT_FINISHED"),
    "pi-named-by-the-canary-without-space": (cut_at(f"<?{CANARY}"), "ERR_SPACE_REQUIRED"),
    "pi-named-xml": (at(f"<?xml {CANARY}?>"), "ERR_RESERVED_XML_NAME"),
    "cdata-end-in-text": (at(f"{CANARY}]]>"), "ERR_MISPLACED_CDATA_END"),
    "lt-in-text": (at(f"{CANARY} < 5"), "ERR_NAME_REQUIRED"),
    "ampersand-in-text": (at(f"{CANARY} & co"), "ERR_NAME_REQUIRED"),
    "control-character-in-text": (at(f"{CANARY}\x0c"), "ERR_INVALID_CHAR"),
    "text-cut-short": (cut_at(CANARY), "ERR_TAG_NOT_FINISHED"),
    "text-after-the-root": (DOCUMENT.encode() + CANARY.encode(), "ERR_DOCUMENT_END"),
    "element-after-the-root": (
        DOCUMENT.encode() + f"<{CANARY}/>".encode(),
        "ERR_DOCUMENT_END",
    ),
    # references
    "undeclared-entity": (at(f"&{CANARY};"), "ERR_UNDECLARED_ENTITY"),
    "undeclared-entity-in-an-attribute": (
        at(f'<Note a="&{CANARY};"/>', NAME_PLACE),
        "ERR_UNDECLARED_ENTITY",
    ),
    "entity-reference-without-semicolon": (at(f"&{CANARY} x"), "ERR_ENTITYREF_SEMICOL_MISSING"),
    "hexadecimal-reference-to-the-canary": (at(f"&#x{CANARY};"), "ERR_INVALID_HEX_CHARREF"),
    "decimal-reference-to-the-canary": (at(f"&#{CANARY};"), "ERR_INVALID_DEC_CHARREF"),
    "reference-out-of-bounds": (at(f"&#x110000;{CANARY}"), "ERR_INVALID_CHAR"),
    # names and tags
    "mismatched-end-tag": (at(f"<{CANARY}></Other>"), "ERR_TAG_NAME_MISMATCH"),
    "end-tag-named-by-the-canary": (at(f"x</{CANARY}>"), "ERR_TAG_NAME_MISMATCH"),
    "start-tag-run-into-the-next": (at(f"<{CANARY} a='1'</Reference>"), "ERR_SPACE_REQUIRED"),
    "element-cut-short": (cut_at(f"<{CANARY}"), "ERR_GT_REQUIRED"),
    "name-too-long": (at(f"<{CANARY}{'x' * 50_001}/>"), "ERR_NAME_TOO_LONG"),
    "end-tag-with-more": (
        at(f"x</Reference {CANARY}>", LICENCE_PLACE + "</Reference>"),
        "ERR_GT_REQUIRED",
    ),
    # attributes
    "attribute-twice": (
        at(f'<Note {CANARY}="1" {CANARY}="2"/>', NAME_PLACE),
        "ERR_ATTRIBUTE_REDEFINED",
    ),
    "attribute-without-value": (at(f"<Note {CANARY}/>", NAME_PLACE), "ERR_ATTRIBUTE_WITHOUT_VALUE"),
    "attribute-value-unquoted": (
        at(f"<Note a={CANARY}/>", NAME_PLACE),
        "ERR_ATTRIBUTE_NOT_STARTED",
    ),
    "attribute-value-cut-short": (
        cut_at(f'<Note a="{CANARY}', NAME_PLACE),
        "ERR_ATTRIBUTE_NOT_FINISHED",
    ),
    "lt-in-an-attribute-value": (at(f'<Note a="{CANARY}<"/>', NAME_PLACE), "ERR_LT_IN_ATTRIBUTE"),
    "attributes-without-space": (
        at(f"<Note a='{CANARY}'b='2'/>", NAME_PLACE),
        "ERR_SPACE_REQUIRED",
    ),
    # namespaces
    "undeclared-element-prefix": (at(f"<{CANARY}:x/>", NAME_PLACE), "NS_ERR_UNDEFINED_NAMESPACE"),
    "undeclared-attribute-prefix": (
        at(f'<Note {CANARY}:a="1"/>', NAME_PLACE),
        "NS_ERR_UNDEFINED_NAMESPACE",
    ),
    "namespace-uri-not-a-uri": (
        at(f'<Note xmlns:p="urn:x/{CANARY}%zz"/>', NAME_PLACE),
        "WAR_NS_URI",
    ),
    "prefix-bound-to-nothing": (
        at(f'<Note xmlns:{CANARY}=""/>', NAME_PLACE),
        "NS_ERR_XML_NAMESPACE",
    ),
    "xml-prefix-rebound": (
        at(f'<Note xmlns:xml="urn:{CANARY}"/>', NAME_PLACE),
        "NS_ERR_XML_NAMESPACE",
    ),
    "name-with-two-colons": (at(f'<Note xmlns:a:{CANARY}="u"/>', NAME_PLACE), "NS_ERR_QNAME"),
    "namespaced-attribute-twice": (
        at(f'<Note xmlns:p="u" xmlns:q="u" p:{CANARY}="1" q:{CANARY}="2"/>', NAME_PLACE),
        "NS_ERR_ATTRIBUTE_REDEFINED",
    ),
}


@pytest.mark.parametrize("name", sorted(CORPUS))
def test_a_malformed_declaration_is_refused_by_rule_and_position_never_quoted(name: str) -> None:
    data, error = CORPUS[name]
    with pytest.raises(XmlRejected) as refused:
        CODEC.decode(data)
    rejection = refused.value
    assert not quotes_the_canary(str(rejection)), str(rejection)
    assert rejection.kind is XmlRejectionKind.MALFORMED, str(rejection)
    assert rejection.message.startswith("not well-formed XML: "), rejection.message
    assert re.search(r"line \d+, column \d+\)\Z", rejection.message), rejection.message
    assert f"[{error}]" in rejection.message, rejection.message


def test_the_corpus_covers_the_errors_whose_messages_quote_the_document() -> None:
    """Every libxml2 message found quoting the document has a case above (the cases'
    errors are checked against what libxml2 raises, so the list cannot drift)."""
    quoting = {
        "ERR_CDATA_NOT_FINISHED",
        "ERR_HYPHEN_IN_COMMENT",
        "ERR_SPACE_REQUIRED",
        "ERR_PI_NOT_FINISHED",
        "ERR_TAG_NAME_MISMATCH",
        "ERR_GT_REQUIRED",
        "ERR_ATTRIBUTE_REDEFINED",
        "ERR_ATTRIBUTE_WITHOUT_VALUE",
        "ERR_UNDECLARED_ENTITY",
        "NS_ERR_UNDEFINED_NAMESPACE",
        "NS_ERR_XML_NAMESPACE",
        "NS_ERR_QNAME",
        "NS_ERR_ATTRIBUTE_REDEFINED",
        "WAR_NS_URI",
    }
    assert quoting <= {error for _, error in CORPUS.values()}


# Well-formed places for the canary, each a way a record may carry a licence reference.
CARRIERS = {
    "text": CANARY,
    "cdata": f"<![CDATA[{CANARY}]]>",
    "comment": f"<!-- {CANARY} -->",
    "pi": f"<?note {CANARY}?>",
    "attribute": f'<Note ref="{CANARY}"/>',
    "element-name": f"<{CANARY}/>",
    "prefixed-name": f'<p:{CANARY} xmlns:p="urn:{CANARY}"/>',
}


@pytest.mark.parametrize("carrier", sorted(CARRIERS))
def test_no_cut_of_a_record_carrying_the_canary_quotes_it(carrier: str) -> None:
    """A record cut short anywhere from the canary's carrier to the end (a truncated
    record, the reviewer's case) is refused without any part of the canary."""
    data = at(CARRIERS[carrier])
    start = data.index(CANARY.encode()) - 12
    for end in range(start, len(data)):
        text = _refusal(data[:end])
        assert not quotes_the_canary(text), (end, text)


# Markup libxml2 reads as the start or end of something: put around the canary, anywhere.
MARKUP = st.sampled_from(
    [
        "<",
        "</",
        ">",
        "/>",
        "&",
        "&#",
        "&#x",
        ";",
        "<!--",
        "--",
        "-->",
        "<![CDATA[",
        "]]>",
        "<?",
        "?>",
        "<?xml ",
        '="',
        "='",
        '"',
        "'",
        " ",
        ":",
        "xmlns:",
        'xmlns="',
        "\x0c",
        "x",
    ]
)
AROUND = st.lists(MARKUP, max_size=4).map("".join)
# Where a licence may sit: in text, in a tag, between elements.
SPOTS = [m.end() for m in re.finditer(r"<Reference>|<Name>|<Declarant>|<Quantity |\?>\n", DOCUMENT)]


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(spot=st.sampled_from(SPOTS), before=AROUND, after=AROUND, cut=st.booleans())
def test_no_malformed_refusal_quotes_the_canary_wherever_it_is(
    spot: int, before: str, after: str, cut: bool
) -> None:
    inserted = before + CANARY + after
    text = DOCUMENT[:spot] + inserted + ("" if cut else DOCUMENT[spot:])
    _, reason = _refused_as(text.encode())
    # A schema refusal too: it names only the schema's own words (stop 40).
    assert not quotes_the_canary(reason), reason


def test_every_code_libxml2_has_gets_a_fixed_text() -> None:
    """The text depends on the code and position only: for every error code lxml knows
    (and one it does not), a text that names it and nothing of the document."""
    codes = {v for k, v in vars(etree.ErrorTypes).items() if k.isupper() and isinstance(v, int)}
    for code in [*sorted(codes), 99_999]:
        text = malformed_text(code, 7, 42)
        assert text.startswith("not well-formed XML: "), text
        assert text.endswith("(line 7, column 42)"), text


def test_a_refused_declaration_tells_no_officer_what_it_holds(
    routing_table: RoutingTable, keys_dir: Path
) -> None:
    """Scenario (the reviewer's, end to end in the hub): a declaration whose licence
    reference is written as CDATA is cut short; the REFUSE's reason and the dead letter's
    clear reason header name the fault and position, not the licence."""
    hub = Hub(routing_table, keys_dir)
    data, _ = CORPUS["cdata-cut-short"]
    out = hub.intake.handle(data, SourcePosition("gun.declarations", 0, 0, b"26FR000690I0000012"))
    [decision] = hub.decision_objects(out)
    assert decision.outcome is Outcome.REFUSE
    [reason] = decision.reasons
    assert "ERR_CDATA_NOT_FINISHED" in reason.text
    assert not quotes_the_canary(reason.text), reason.text
    [dead] = out.to(hub.topics.dlq)
    header = header_value(dead.headers, HEADER_ERROR_REASON)
    assert header is not None
    assert "ERR_CDATA_NOT_FINISHED" in header
    assert not quotes_the_canary(header), header


@pytest.mark.parametrize(
    "data",
    [
        DOCUMENT.replace("urn:gun-hub:declaration:v1", f"urn:{CANARY}").encode(),
        at(f'<Note xmlns="urn:{CANARY}"/>', NAME_PLACE),
        at(f'<p:Note xmlns:p="urn:{CANARY}"/>', NAME_PLACE),
    ],
    ids=["root", "default-namespace", "prefixed"],
)
def test_a_namespace_refusal_names_the_expected_namespace_never_the_one_written(
    data: bytes,
) -> None:
    """A namespace name is the document's own text, like a value (a well-formed one
    reaches the namespace checks after libxml2): the refusal says the element is in
    another namespace, and which one is expected."""
    with pytest.raises(XmlRejected) as refused:
        CODEC.decode(data)
    rejection = refused.value
    assert rejection.kind is XmlRejectionKind.NAMESPACE
    assert not quotes_the_canary(str(rejection)), str(rejection)
    assert "urn:gun-hub:declaration:v1" in rejection.message


def _refused_as(data: bytes) -> tuple[XmlRejectionKind | None, str]:
    """The kind and text of ``data``'s refusal; (None, "") when it is accepted."""
    try:
        CODEC.decode(data)
    except XmlRejected as rejection:
        return rejection.kind, str(rejection)
    return None, ""


def _refusal(data: bytes) -> str:
    return _refused_as(data)[1]
