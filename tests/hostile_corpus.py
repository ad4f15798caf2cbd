"""Hostile and malformed declarations, each with the reason it must be refused for.

One corpus drives both the parser's unit tests and the end-to-end test that proves the
worker survives all of them and then decides a valid declaration.
"""

from __future__ import annotations

from dataclasses import dataclass

from gun_hub.xml.safe_parse import XmlRejectionKind as Kind
from tests.builders import declaration_xml

NS = "urn:gun-hub:declaration:v1"


@dataclass(frozen=True)
class HostileCase:
    name: str
    data: bytes
    kind: Kind
    reason: str  # a fragment the refusal message must contain
    identifiable: bool  # whether the reference can be read to address a REFUSE
    path: str | None = None  # the element path the refusal must name, when it names one
    hidden: str | None = None  # the offending value, which the refusal must never quote


def _valid(reference: str) -> str:
    return declaration_xml(reference=reference).decode()


def _replace(reference: str, old: str, new: str, count: int = 1) -> bytes:
    text = _valid(reference)
    assert old in text, old
    return text.replace(old, new, count).encode()


def _with_doctype(
    reference: str, doctype: str, body_change: tuple[str, str] | None = None
) -> bytes:
    text = _valid(reference)
    if body_change:
        text = text.replace(*body_change, 1)
    head, rest = text.split("\n", 1)
    return f"{head}\n{doctype}\n{rest}".encode()


def in_encoding(
    text: str,
    codec: str,
    declared: str | None,
    *,
    bom: bool = False,
    doctype: str | None = None,
) -> bytes:
    """The declaration ``text``, as the builder writes it, in ``codec`` instead: its own
    XML declaration replaced by one declaring ``declared`` (or by none), ``doctype`` (if
    any) before the root, a byte order mark first if ``bom``."""
    _, body = text.split("\n", 1)
    prolog = f'<?xml version="1.0" encoding="{declared}"?>\n' if declared else ""
    document = prolog + (doctype + "\n" if doctype else "") + body
    return (("\ufeff" if bom else "") + document).encode(codec)


def _encoded(
    reference: str,
    codec: str,
    declared: str | None,
    *,
    bom: bool = False,
    doctype: str | None = None,
) -> bytes:
    """The valid declaration in another encoding, declaring ``declared`` (or nothing)."""
    return in_encoding(_valid(reference), codec, declared, bom=bom, doctype=doctype)


def hostile_cases(prefix: str = "26FRHOSTILE") -> list[HostileCase]:
    """The corpus; references are ``prefix`` plus a number so each case is its own."""
    cases: list[HostileCase] = []

    def ref(n: int) -> str:
        return f"{prefix}{n:04d}"

    def add(
        name: str,
        data: bytes,
        kind: Kind,
        reason: str,
        identifiable: bool = True,
        path: str | None = None,
        hidden: str | None = None,
    ) -> None:
        cases.append(HostileCase(name, data, kind, reason, identifiable, path, hidden))

    dtd = "DOCTYPE or ENTITY declaration is not allowed"
    n = 0

    def nxt() -> str:
        nonlocal n
        n += 1
        return ref(n)

    r = nxt()
    add(
        "xxe-file",
        _with_doctype(
            r,
            '<!DOCTYPE d [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>',
            ("<Name>Example SARL</Name>", "<Name>&xxe;</Name>"),
        ),
        Kind.DTD_FORBIDDEN,
        dtd,
    )
    r = nxt()
    add(
        "xxe-network",
        _with_doctype(
            r,
            '<!DOCTYPE d [<!ENTITY xxe SYSTEM "http://127.0.0.1:9/x">]>',
            ("<Name>Example SARL</Name>", "<Name>&xxe;</Name>"),
        ),
        Kind.DTD_FORBIDDEN,
        dtd,
    )
    r = nxt()
    add(
        "xxe-parameter-entity",
        _with_doctype(r, '<!DOCTYPE d [<!ENTITY % p SYSTEM "http://127.0.0.1:9/evil.dtd"> %p;]>'),
        Kind.DTD_FORBIDDEN,
        dtd,
    )
    r = nxt()
    laughs = "".join(f'<!ENTITY l{i} "{f"&l{i - 1};" * 10}">' for i in range(1, 10))
    add(
        "billion-laughs",
        _with_doctype(
            r,
            f'<!DOCTYPE d [<!ENTITY l0 "lol">{laughs}]>',
            ("<Name>Example SARL</Name>", "<Name>&l9;</Name>"),
        ),
        Kind.DTD_FORBIDDEN,
        dtd,
    )
    r = nxt()
    add(
        "quadratic-blowup",
        _with_doctype(
            r,
            f'<!DOCTYPE d [<!ENTITY a "{"x" * 2000}">]>',
            ("<Name>Example SARL</Name>", "<Name>" + "&a;" * 300 + "</Name>"),
        ),
        Kind.DTD_FORBIDDEN,
        dtd,
    )
    r = nxt()
    add(
        "external-dtd",
        _with_doctype(r, '<!DOCTYPE Declaration SYSTEM "http://127.0.0.1:9/d.dtd">'),
        Kind.DTD_FORBIDDEN,
        dtd,
    )
    r = nxt()
    add(
        "doctype-after-comment",
        _with_doctype(r, "<!-- hello --><!DOCTYPE Declaration>"),
        Kind.DTD_FORBIDDEN,
        dtd,
    )
    r = nxt()
    add(
        "entity-declared-late",
        _replace(r, "<Version>", "<!ENTITY x 'y'><Version>"),
        Kind.DTD_FORBIDDEN,
        dtd,
    )
    r = nxt()
    add(
        "xinclude",
        _replace(
            r,
            "<Name>Example SARL</Name>",
            '<Name>Example SARL</Name><xi:include xmlns:xi="http://www.w3.org/2001/XInclude" '
            'href="file:///etc/passwd" parse="text"/>',
        ),
        Kind.XINCLUDE_FORBIDDEN,
        "XInclude is not allowed",
        # by position: a local name in the XInclude namespace is the document's (stop 40)
        path="/Declaration/Declarant/*[3]",
    )
    r = nxt()
    add(
        "wrong-namespace",
        _replace(r, NS, "urn:someone-else:v1"),
        Kind.NAMESPACE,
        "expected 'urn:gun-hub:declaration:v1'",
        path="/Declaration",
        hidden="someone-else",
    )
    r = nxt()
    add(
        "missing-namespace",
        _replace(r, f' xmlns="{NS}"', ""),
        Kind.NAMESPACE,
        "has no namespace",
        path="/Declaration",
    )
    r = nxt()
    add(
        "foreign-element",
        _replace(r, "<Version>", '<x:Evil xmlns:x="urn:evil">1</x:Evil><Version>'),
        Kind.NAMESPACE,
        # never its namespace (stop 39, C1) nor its name, the schema does not declare
        # it (stop 40): its position
        "an element is in another namespace",
        path="/Declaration/*[2]",
        hidden="urn:evil",
    )
    r = nxt()
    add(
        "utf16-bom",
        "\ufeff".encode("utf-16-le") + _valid(r).replace("UTF-8", "UTF-16").encode("utf-16-le"),
        Kind.ENCODING,
        "only UTF-8 is accepted",
        identifiable=False,
    )
    r = nxt()
    add(
        "declared-latin1",
        _replace(r, 'encoding="UTF-8"', 'encoding="ISO-8859-1"'),
        Kind.ENCODING,
        "declared encoding 'ISO-8859-1' is not accepted",
    )
    r = nxt()
    add(
        "declared-utf16-but-utf8",
        _replace(r, 'encoding="UTF-8"', 'encoding="UTF-16"'),
        Kind.ENCODING,
        "declared encoding 'UTF-16'",
    )
    r = nxt()
    add(
        "invalid-utf8-bytes",
        _replace(r, "Example SARL", "Example @@ SARL").replace(b"@@", b"\xff\xfe"),
        Kind.ENCODING,
        "not valid UTF-8",
    )
    r = nxt()
    add("malformed-unclosed", _replace(r, "</Stage>", ""), Kind.MALFORMED, "not well-formed")
    r = nxt()
    add("truncated", _valid(r).encode()[:-30], Kind.MALFORMED, "not well-formed")
    r = nxt()
    add(
        "undefined-entity", _replace(r, "Example SARL", "&boom;"), Kind.MALFORMED, "not well-formed"
    )
    add("empty", b"", Kind.EMPTY, "empty", identifiable=False)
    add("whitespace-only", b"   \n\t ", Kind.EMPTY, "empty", identifiable=False)
    add(
        "json-not-xml",
        b'{"Reference": "26FRJSON000000001"}',
        Kind.MALFORMED,
        "not well-formed",
        identifiable=False,
    )
    r = nxt()
    add(
        "oversized",
        _replace(r, "Fresh Atlantic salmon", "x" * 600_000),
        Kind.OVERSIZED,
        "over the limit of",
    )
    r = nxt()
    add(
        "too-deep",
        _replace(
            r,
            "<Name>Example SARL</Name>",
            "<Name>" + "<Name>" * 40 + "x" + "</Name>" * 40 + "</Name>",
        ),
        Kind.TOO_DEEP,
        "nested deeper than",
    )
    r = nxt()
    add(
        "too-many-elements",
        _replace(r, "<Name>Example SARL</Name>", "<Name>Example SARL</Name>" + "<X/>" * 120_000),
        Kind.TOO_MANY_ELEMENTS,
        "over the limit of",
    )
    r = nxt()
    add(
        "negative-quantity",
        _replace(r, '<Quantity unit="KGM">1200.5', '<Quantity unit="KGM">-5'),
        Kind.SCHEMA,
        "[facet 'minExclusive'] the value must be greater than '0'",
        path="/Declaration/GoodsItem/Document/Quantity",
        hidden="-5",
    )
    r = nxt()
    add(
        "zero-quantity",
        _replace(r, '<Quantity unit="KGM">1200.5', '<Quantity unit="KGM">0'),
        Kind.SCHEMA,
        "must be greater than '0'",
        path="/Declaration/GoodsItem/Document/Quantity",
    )
    r = nxt()
    add(
        "unknown-unit",
        _replace(r, '<Quantity unit="KGM">', '<Quantity unit="BARREL">'),
        Kind.SCHEMA,
        "attribute 'unit': [facet 'enumeration'] the value is not one of",
        path="/Declaration/GoodsItem/Document/Quantity",
        hidden="BARREL",
    )
    r = nxt()
    add(
        "missing-unit",
        _replace(r, '<Quantity unit="KGM">', "<Quantity>"),
        Kind.SCHEMA,
        "The attribute 'unit' is required",
        path="/Declaration/GoodsItem/Document/Quantity",
    )
    r = nxt()
    add(
        "bad-document-code",
        _replace(r, "<Code>N853</Code>", "<Code>n8-3</Code>"),
        Kind.SCHEMA,
        "[facet 'pattern'] the value does not match the pattern '[A-Z][0-9A-Z]{3}'",
        path="/Declaration/GoodsItem/Document/Code",
        hidden="n8-3",
    )
    r = nxt()
    dup = _valid(r)
    item = dup[dup.index("<GoodsItem>") : dup.index("</GoodsItem>") + len("</GoodsItem>")]
    add(
        "duplicate-goods-item-numbers",
        dup.replace(item, item + item).encode(),
        Kind.SCHEMA,
        "Duplicate key-sequence in unique identity-constraint 'UniqueGoodsItemNumber'",
        path="/Declaration/GoodsItem[2]",
    )
    r = nxt()
    add(
        "too-many-fraction-digits",
        _replace(r, '<Quantity unit="KGM">1200.5', '<Quantity unit="KGM">1.1234567'),
        Kind.SCHEMA,
        "[facet 'fractionDigits']",
        path="/Declaration/GoodsItem/Document/Quantity",
        hidden="1.1234567",
    )
    r = nxt()
    add(
        "unknown-stage",
        _replace(r, "<Stage>LODGED</Stage>", "<Stage>RELEASED</Stage>"),
        Kind.SCHEMA,
        "[facet 'enumeration'] the value is not one of 'PRELODGED', 'LODGED'",
        path="/Declaration/Stage",
        hidden="'RELEASED'",
    )
    r = nxt()
    add(
        "version-zero",
        _replace(r, "<Version>1</Version>", "<Version>0</Version>"),
        Kind.SCHEMA,
        "is not a valid value of the atomic type 'VersionType'",
        path="/Declaration/Version",
        hidden="'0'",
    )
    r = nxt()
    add(
        "date-without-offset",
        _replace(r, "2026-11-22T10:00:00Z", "2026-11-22T10:00:00"),
        Kind.SCHEMA,
        "[facet 'pattern']",
        path="/Declaration/LodgedAt",
        hidden="2026-11-22T10:00:00",
    )
    r = nxt()
    add(
        "impossible-date",
        _replace(r, "2026-11-22T10:00:00Z", "2026-02-30T10:00:00Z"),
        Kind.SCHEMA,
        "is not a valid value of the atomic type 'UtcDateTimeType'",
        path="/Declaration/LodgedAt",
        hidden="2026-02-30",
    )
    r = nxt()
    add(
        "country-not-iso",
        _replace(
            r, "<CountryOfOrigin>NO</CountryOfOrigin>", "<CountryOfOrigin>ZZ</CountryOfOrigin>"
        ),
        Kind.SCHEMA,
        "[facet 'enumeration']",
        path="/Declaration/GoodsItem/CountryOfOrigin",
        hidden="ZZ",
    )
    r = nxt()
    add(
        "commodity-code-length",
        _replace(
            r, "<CommodityCode>0302130000</CommodityCode>", "<CommodityCode>0302</CommodityCode>"
        ),
        Kind.SCHEMA,
        "[facet 'pattern']",
        path="/Declaration/GoodsItem/CommodityCode",
        hidden="0302",
    )
    r = nxt()
    add(
        "missing-declarant",
        _replace(
            r, "<Declarant><Eori>FR12345678901234</Eori><Name>Example SARL</Name></Declarant>", ""
        ),
        Kind.SCHEMA,
        "Expected is ( Declarant )",
        path="/Declaration/CountryOfDispatch",
    )
    r = nxt()
    add(
        "unknown-element",
        _replace(r, "<Version>1</Version>", "<Version>1</Version><Priority>HIGH</Priority>"),
        Kind.SCHEMA,
        # a name the schema does not declare is the document's text: never quoted, the
        # element is located by its position (stop 40)
        "element the schema does not allow here (line 2): [content] This element is not "
        "expected. Expected is ( Stage )",
        path="/Declaration/*[3]",
        hidden="Priority",
    )
    r = nxt()
    text = _valid(r)
    item = text[text.index("<GoodsItem>") : text.index("</Declaration>")]
    many = "".join(
        item.replace("<Number>1</Number>", f"<Number>{i}</Number>") for i in range(1, 1001)
    )
    add(
        "too-many-goods-items",
        text.replace(item, many).encode(),
        Kind.SCHEMA,
        "This element is not expected",
        path="/Declaration/GoodsItem[1000]",
    )
    r = nxt()
    text = _valid(r)
    doc = text[text.index("<Document>") : text.index("</Document>") + len("</Document>")]
    add(
        "too-many-documents-on-an-item",
        text.replace(doc, doc * 100).encode(),
        Kind.SCHEMA,
        "This element is not expected",
        path="/Declaration/GoodsItem/Document[100]",
    )

    # Issue 11, item 4: encodings that slipped past a byte-level UTF-8 check and DOCTYPE
    # scan, after which libxml2 opened the external DTD named (an existence oracle, a read
    # of /proc/self/environ, a FIFO that hangs the worker). Only UTF-8 is read, so each is
    # refused before the parser sees it.
    utf8_only = "only UTF-8 is accepted"
    etc_file = '<!DOCTYPE Declaration SYSTEM "/etc/passwd">'
    environ = '<!DOCTYPE Declaration SYSTEM "/proc/self/environ">'
    for name, codec, declared, bom, doctype in [
        ("utf16le-no-bom-external-dtd", "utf-16-le", "UTF-16", False, etc_file),
        ("utf16be-no-bom-external-dtd", "utf-16-be", "UTF-16", False, etc_file),
        ("utf16le-no-bom-declares-utf8-environ", "utf-16-le", "UTF-8", False, environ),
        ("utf16be-no-bom-no-declaration-environ", "utf-16-be", None, False, environ),
        (
            "utf16le-no-bom-parameter-entity",
            "utf-16-le",
            "UTF-16",
            False,
            '<!DOCTYPE Declaration [<!ENTITY % p SYSTEM "/etc/passwd"> %p;]>',
        ),
        ("utf32le-no-bom-external-dtd", "utf-32-le", "UTF-32", False, etc_file),
        ("utf32be-no-bom-declares-utf8-environ", "utf-32-be", "UTF-8", False, environ),
        ("utf16be-bom-external-dtd", "utf-16-be", "UTF-16", True, etc_file),
        ("utf32le-bom-declares-utf8", "utf-32-le", "UTF-8", True, environ),
    ]:
        add(
            name,
            _encoded(nxt(), codec, declared, bom=bom, doctype=doctype),
            Kind.ENCODING,
            utf8_only,
            identifiable=False,
        )
    r = nxt()
    head, rest = _valid(r).split("\n", 1)
    add(
        "utf8-declaration-then-utf16",
        f"{head}\n".encode() + f"{environ}\n{rest}".encode("utf-16-le"),
        Kind.ENCODING,
        utf8_only,
        identifiable=False,
    )
    r = nxt()
    add(
        "nul-character",
        _replace(r, "Example SARL", "Example \x00 SARL"),
        Kind.ENCODING,
        utf8_only,
    )
    r = nxt()
    add(
        "declared-utf7-hiding-a-doctype",
        _encoded(
            r,
            "ascii",
            "UTF-7",
            doctype="+ADw-!DOCTYPE Declaration SYSTEM +ACI-/etc/passwd+ACI-+AD4-",
        ),
        Kind.ENCODING,
        "declared encoding 'UTF-7' is not accepted",
    )
    r = nxt()
    add(
        "ebcdic-external-dtd",
        _encoded(r, "cp500", "IBM500", doctype=etc_file),
        Kind.ENCODING,
        "not valid UTF-8",
        identifiable=False,
    )
    r = nxt()
    add(
        "latin1-bytes-external-dtd",
        _encoded(r, "latin-1", "ISO-8859-1", doctype=etc_file).replace(
            b"Example SARL", "Exémple SARL".encode("latin-1")
        ),
        Kind.ENCODING,
        "declared encoding 'ISO-8859-1' is not accepted",
    )
    r = nxt()
    add(
        "utf8-bom-declares-utf16",
        _encoded(r, "utf-8", "UTF-16", bom=True, doctype=etc_file),
        Kind.ENCODING,
        "declared encoding 'UTF-16' is not accepted",
    )
    r = nxt()
    add(
        "lowercase-doctype",
        _with_doctype(r, '<!doctype Declaration SYSTEM "/etc/passwd">'),
        Kind.DTD_FORBIDDEN,
        dtd,
    )
    r = nxt()
    add(
        "markup-declaration-without-doctype",
        _with_doctype(r, "<!ELEMENT Declaration ANY>"),
        Kind.DTD_FORBIDDEN,
        dtd,
    )
    r = nxt()
    add(
        "xml-declaration-not-first",
        b"\n" + _replace(r, 'encoding="UTF-8"', 'encoding="UTF-16"'),
        Kind.MALFORMED,
        "not well-formed",
    )
    r = nxt()
    add(
        "licence-number-as-eori",
        _replace(r, "<Eori>FR12345678901234</Eori>", "<Eori>LEMG-SECRET-42</Eori>"),
        Kind.SCHEMA,
        "[facet 'pattern'] the value does not match the pattern '[A-Z]{2}[0-9A-Za-z]{1,15}'",
        path="/Declaration/Declarant/Eori",
        hidden="LEMG-SECRET-42",
    )
    r = nxt()
    add(
        "licence-number-as-version",
        _replace(r, "<Version>1</Version>", "<Version>LEMG-SECRET-43</Version>"),
        Kind.SCHEMA,
        "is not a valid value of the atomic type 'VersionType'",
        path="/Declaration/Version",
        hidden="LEMG-SECRET-43",
    )
    return cases
