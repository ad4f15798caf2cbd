"""Parsing untrusted XML without trusting it.

Every document from outside goes through :class:`SafeXmlParser`, which refuses, each with
its own :class:`XmlRejectionKind` and a precise message:

* anything over the size cap, before a single byte is parsed;
* any encoding but UTF-8 (the contract's encoding): a UTF-16/32 byte order mark, a
  declared encoding other than UTF-8, a NUL byte (UTF-16/32 without a byte order mark),
  bytes that are not valid UTF-8. The bytes are decoded here, and the parser is forced
  to UTF-8, so the checks on the text see exactly what libxml2 will see;
* any ``<!DOCTYPE``, ``<!ENTITY`` or other markup declaration in the decoded text: no DTD
  means no entity (XXE, billion laughs, quadratic blow-up) and no external subset;
* malformed XML, with the kind of fault (libxml2's error code) and its line and column,
  never libxml2's message, which quotes the document (see :mod:`gun_hub.xml.syntax_errors`);
* documents deeper or larger (in elements) than the limits;
* XInclude and any element outside the expected namespace;
* anything the (precompiled, locally loaded) XSD refuses, with the path of the element
  and the rule it broke, never the value (see :mod:`gun_hub.xml.schema_errors`).

Every refusal names an element or attribute only by a name the schema declares: a name is
the document's own text as much as a value (an element named after a licence); any other
is a fixed phrase, its path an index (``/Declaration/Declarant/*[3]``) and its line
(:mod:`gun_hub.xml.schema_words`).

The lxml parser itself is configured so that, even if a check above were bypassed, no
entity is expanded and nothing is read from disk or network: no DTD loading (and
``collect_ids`` left True, see :func:`_new_lxml_parser`), no network, and a resolver that
refuses every resolution before libxml2's own loader could open anything.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any, cast

from lxml import etree

from gun_hub.xml.schema_errors import schema_refusal_text
from gun_hub.xml.schema_words import SchemaWords, declared_words
from gun_hub.xml.syntax_errors import malformed_text

XINCLUDE_NS = "http://www.w3.org/2001/XInclude"

# Whitespace as XML 1.0 defines it (``\s`` in a str pattern would admit Unicode spaces).
_WS = "[ \t\r\n]"
# An XML declaration: the only place where a document may name its encoding.
_XML_DECL = re.compile(
    rf"""<\?xml{_WS}+version{_WS}*={_WS}*["']1\.[0-9]["']"""
    rf"""(?:{_WS}+encoding{_WS}*={_WS}*["'](?P<enc>[A-Za-z][A-Za-z0-9._-]*)["'])?"""
    rf"""(?:{_WS}+standalone{_WS}*={_WS}*["'](?:yes|no)["'])?{_WS}*\?>"""
)
_XML_DECL_START = re.compile(rf"<\?xml(?:{_WS}|\?)")
# Without a DTD, "<!" may only open a comment or a CDATA section: anything else is a
# DOCTYPE, an ENTITY or another markup declaration (in any letter case). Refused even
# inside a comment or a CDATA section: no declaration carries such text.
_MARKUP_DECLARATION = re.compile(r"<!(?!--|\[CDATA\[)")
# An XML declaration longer than this is refused as malformed (a real one is < 60 bytes).
_DECLARATION_WINDOW = 512
_UTF8_NAMES = frozenset({"utf-8", "utf8"})
_UTF8_BOM = b"\xef\xbb\xbf"
_FOREIGN_BOMS = {
    b"\xff\xfe\x00\x00": "UTF-32",
    b"\x00\x00\xfe\xff": "UTF-32",
    b"\xff\xfe": "UTF-16",
    b"\xfe\xff": "UTF-16",
}
_ONLY_UTF8 = "only UTF-8 is accepted"
_NO_DTD = "a DOCTYPE or ENTITY declaration is not allowed (no DTD, no entities)"
_NOTHING_LOADED = "an external DTD or entity is not allowed: nothing is ever loaded"


class XmlRejectionKind(StrEnum):
    """Why a document was refused; stable codes for reasons, headers and metrics."""

    OVERSIZED = "OVERSIZED"
    EMPTY = "EMPTY"
    ENCODING = "ENCODING"
    DTD_FORBIDDEN = "DTD_FORBIDDEN"
    MALFORMED = "MALFORMED"
    TOO_DEEP = "TOO_DEEP"
    TOO_MANY_ELEMENTS = "TOO_MANY_ELEMENTS"
    XINCLUDE_FORBIDDEN = "XINCLUDE_FORBIDDEN"
    NAMESPACE = "NAMESPACE"
    SCHEMA = "SCHEMA"
    VALUE = "VALUE"


class XmlRejected(ValueError):
    """An untrusted document was refused; ``path`` locates the fault when known."""

    def __init__(self, kind: XmlRejectionKind, message: str, path: str | None = None) -> None:
        super().__init__(f"{message} (at {path})" if path else message)
        self.kind = kind
        self.message = message
        self.path = path


@dataclass(frozen=True, slots=True)
class XmlLimits:
    """Resource limits for one untrusted document."""

    max_bytes: int = 1024 * 1024
    max_depth: int = 12
    max_elements: int = 100_000


def readable_path(element: etree._Element, words: SchemaWords) -> str:
    """``/Declaration/GoodsItem[2]/Document[1]/Quantity``: local names, 1-based positions.

    A step whose name the schema does not declare is ``*[n]``, the n-th child element:
    the name is the document's own text (stop 40)."""
    steps: list[str] = []
    node: etree._Element | None = element
    while node is not None:
        name = words.element(etree.QName(node).localname)
        parent = node.getparent()
        if parent is None:
            steps.append(name or "*")
        elif name is None:
            elements = [child for child in parent if isinstance(child.tag, str)]
            steps.append(f"*[{elements.index(node) + 1}]")
        else:
            same = [child for child in parent if child.tag == node.tag]
            steps.append(f"{name}[{same.index(node) + 1}]" if len(same) > 1 else name)
        node = parent
    return "/" + "/".join(reversed(steps))


class RefuseEveryResolution(etree.Resolver):
    """The resolver of the untrusted-document parser: every resolution is refused.

    lxml asks its resolvers before libxml2's own loader; raising here means libxml2 never
    opens the file or URL, so nothing outside the given bytes is read even if every check
    above were bypassed. The refusal never depends on the name asked for (no oracle).
    """

    def resolve(self, system_url: str, public_id: str, context: Any = None) -> Any:
        raise XmlRejected(XmlRejectionKind.DTD_FORBIDDEN, _NOTHING_LOADED)


def _new_lxml_parser() -> etree.XMLParser:
    """The lxml parser of untrusted documents: nothing outside the given bytes is read."""
    parser = etree.XMLParser(
        # The bytes are UTF-8 (checked before): libxml2 neither guesses UTF-16, UTF-32 or
        # EBCDIC from the first bytes nor switches to an encoding the document declares.
        encoding="utf-8",
        resolve_entities=False,
        load_dtd=False,
        dtd_validation=False,
        attribute_defaults=False,  # True would load the DTD to find the defaults
        no_network=True,
        huge_tree=False,  # (decompress keeps its default, False: no gzip input)
        remove_comments=True,
        remove_pis=True,
        remove_blank_text=True,
        # Must stay True: with False, lxml sets XML_SKIP_IDS in the context's loadsubset,
        # and any non-zero loadsubset makes libxml2 (before 2.15) load the external DTD
        # subset despite load_dtd=False: that was the back door of issue 11.
        collect_ids=True,
    )
    parser.resolvers.add(RefuseEveryResolution())
    return parser


class _LocalOnlyResolver(etree.Resolver):
    """Lets a schema include its siblings in ``schemas/`` and nothing else."""

    def __init__(self, folder: Path) -> None:
        super().__init__()
        self._folder = folder.resolve()

    def resolve(self, system_url: str, public_id: str, context: Any = None) -> Any:
        candidate = Path(system_url.removeprefix("file:")).resolve()
        if candidate.parent != self._folder or not candidate.is_file():
            raise XmlRejected(
                XmlRejectionKind.SCHEMA, f"schema tried to load {system_url!r}, refused"
            )
        # lxml-stubs lack resolve_filename; lxml always passes the context argument.
        return self.resolve_filename(str(candidate), context)  # type: ignore[attr-defined]


@dataclass(frozen=True, slots=True)
class LoadedSchema:
    """A compiled XSD and the names it declares (those a refusal may quote)."""

    xsd: etree.XMLSchema
    words: SchemaWords


def load_schema(xsd: Path) -> LoadedSchema:
    """Compile an XSD once; its includes may only come from its own folder."""
    parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False)
    parser.resolvers.add(_LocalOnlyResolver(xsd.parent))
    return LoadedSchema(etree.XMLSchema(etree.parse(str(xsd), parser)), declared_words(xsd))


def _refuse_foreign_byte_order_mark(data: bytes) -> None:
    for bom, name in _FOREIGN_BOMS.items():
        if data.startswith(bom):
            raise XmlRejected(
                XmlRejectionKind.ENCODING, f"document is {name} (byte order mark); {_ONLY_UTF8}"
            )


# Encodings a refusal may name (IANA's preferred names): what a sender declares otherwise
# is not quoted.
_KNOWN_ENCODINGS = {
    name.lower(): name
    for name in (
        "US-ASCII", "ISO-8859-1", "ISO-8859-2", "ISO-8859-15", "UTF-7", "UTF-16",
        "UTF-16BE", "UTF-16LE", "UTF-32", "UTF-32BE", "UTF-32LE", "windows-1250",
        "windows-1252", "Shift_JIS", "EUC-JP", "GB2312", "GBK", "GB18030", "Big5",
        "KOI8-R", "IBM037", "IBM500", "IBM1047",
    )
}  # fmt: skip


def _check_xml_declaration(body: bytes) -> None:
    """Refuse a declared encoding other than UTF-8 (before decoding, for a precise reason).

    The declaration is ASCII; its window is read as Latin-1, which any byte decodes, so a
    Latin-1 document declaring ISO-8859-1 is told so rather than "not UTF-8".
    """
    head = body[:_DECLARATION_WINDOW].decode("latin-1")
    if not _XML_DECL_START.match(head):
        return
    declaration = _XML_DECL.match(head)
    if declaration is None:
        raise XmlRejected(XmlRejectionKind.MALFORMED, "the XML declaration is malformed")
    declared = declaration.group("enc")
    if declared is not None and declared.lower() not in _UTF8_NAMES:
        # Named only in this hub's own spelling of a registered encoding: the name is the
        # sender's bytes, and a refusal copies none (review stop 40-S, S2).
        known = _KNOWN_ENCODINGS.get(declared.lower())
        named = f"declared encoding {known!r}" if known else "the declared encoding"
        raise XmlRejected(
            XmlRejectionKind.ENCODING, f"{named} is not accepted; the contract is UTF-8"
        )


def _utf8_text(body: bytes, skipped: int) -> str:
    """The document as text, read as UTF-8 and nothing else.

    A UTF-16 or UTF-32 document without a byte order mark is mostly ASCII with NUL bytes
    in between: valid UTF-8, but NUL is no XML character, so any NUL refuses it. Checks on
    the decoded text then see exactly what the parser (forced to UTF-8) will see.
    """
    nul = body.find(b"\x00")
    if nul >= 0:
        raise XmlRejected(
            XmlRejectionKind.ENCODING,
            f"NUL byte at offset {nul + skipped} (UTF-16 or UTF-32?); {_ONLY_UTF8}",
        )
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError as err:
        raise XmlRejected(
            XmlRejectionKind.ENCODING,
            f"bytes are not valid UTF-8 at offset {err.start + skipped}: {err.reason}; "
            f"{_ONLY_UTF8}",
        ) from None


def _check_no_markup_declaration(text: str) -> None:
    # Most declarations hold no "!" at all, found with memchr in a microsecond; the
    # pattern stops at every "<" and costs a hundred times more, but stays linear
    # (about 3 ms for 1 MiB), unlike a Python loop over every "!" of a hostile document.
    if "!" in text and _MARKUP_DECLARATION.search(text) is not None:
        raise XmlRejected(XmlRejectionKind.DTD_FORBIDDEN, _NO_DTD)


def _named(words: SchemaWords, element: etree._Element, phrase: str) -> str:
    """``phrase`` ("element", "root element") with the element's name when the schema
    declares it; a name of the document's own is not quoted."""
    name = words.element(etree.QName(element).localname)
    if name:
        return f"{phrase} {name!r}"
    return f"the {phrase}" if phrase == "root element" else f"an {phrase}"


def _namespace_of(found: str | None) -> str:
    """Which namespace an element is in, never its name: the name is the document's own
    text (an attribute value), which a refusal does not quote (stop 39, C1)."""
    return "another namespace" if found else "no namespace"


def _element_at(root: etree._Element, node_path: str) -> etree._Element | None:
    """The element libxml2 names by ``node_path`` (its ``xmlGetNodePath``, as lxml's
    ``getpath``). Not evaluated as XPath: an element written with a prefix of the
    document's is ``/*/*[8]/p:Eori``, whose prefix no XPath context knows (the refusal
    was an ``XPathEvalError`` instead, found in stop 40)."""
    if not node_path:
        return None
    tree = root.getroottree()
    return next(
        (node for node in root.iter(tag=etree.Element) if tree.getpath(node) == node_path), None
    )


class SafeXmlParser:
    """Parses and schema-validates untrusted documents of one namespace.

    Build one per worker (schema compilation is the expensive part) and reuse it: parsing
    a typical declaration then costs tens of microseconds.
    """

    def __init__(self, schema: LoadedSchema, namespace: str, limits: XmlLimits) -> None:
        self._schema = schema.xsd
        self._words = schema.words
        self._namespace = namespace
        self._limits = limits
        self._parser = _new_lxml_parser()
        self._too_deep = etree.XPath("boolean(" + "/*" * (limits.max_depth + 1) + ")")
        self._count = etree.XPath("count(//*)")
        self._foreign = etree.XPath("//*[namespace-uri() != $ns][1]")

    @property
    def limits(self) -> XmlLimits:
        return self._limits

    def parse(self, data: bytes) -> etree._Element:
        """Return the validated root element, or raise :class:`XmlRejected`."""
        self._check_size(data)
        _refuse_foreign_byte_order_mark(data)
        body = data.removeprefix(_UTF8_BOM)
        _check_xml_declaration(body)
        text = _utf8_text(body, skipped=len(data) - len(body))
        _check_no_markup_declaration(text)
        root = self._parse_tree(body)
        self._check_shape(root)
        self._validate(root)
        return root

    def _check_size(self, data: bytes) -> None:
        if not data.strip():
            raise XmlRejected(XmlRejectionKind.EMPTY, "the message is empty")
        if len(data) > self._limits.max_bytes:
            raise XmlRejected(
                XmlRejectionKind.OVERSIZED,
                f"document is {len(data)} bytes, over the limit of {self._limits.max_bytes}",
            )

    def _parse_tree(self, data: bytes) -> etree._Element:
        try:
            root = etree.fromstring(data, self._parser)
        except etree.XMLSyntaxError as err:
            # Built from the error's code and position, never its message: libxml2 quotes
            # the document in it (a licence in a CDATA section cut short; stop 39, C1).
            line, column = err.position
            code = cast(Any, err).code  # lxml-stubs do not declare it
            raise XmlRejected(
                XmlRejectionKind.MALFORMED, malformed_text(int(code), line, column)
            ) from None
        if root is None:
            raise XmlRejected(XmlRejectionKind.MALFORMED, "no root element")
        docinfo = root.getroottree().docinfo
        if getattr(docinfo, "doctype", "") or docinfo.internalDTD is not None:
            # Belt and braces: the prolog scan above should already have refused it.
            raise XmlRejected(XmlRejectionKind.DTD_FORBIDDEN, "a DOCTYPE is not allowed")
        return root

    def _check_shape(self, root: etree._Element) -> None:
        if self._too_deep(root):
            raise XmlRejected(
                XmlRejectionKind.TOO_DEEP,
                f"elements are nested deeper than {self._limits.max_depth} levels",
            )
        count = int(cast(float, self._count(root)))
        if count > self._limits.max_elements:
            raise XmlRejected(
                XmlRejectionKind.TOO_MANY_ELEMENTS,
                f"{count} elements, over the limit of {self._limits.max_elements}",
            )
        root_ns = etree.QName(root).namespace
        if root_ns != self._namespace:
            raise XmlRejected(
                XmlRejectionKind.NAMESPACE,
                f"{_named(self._words, root, 'root element')} has {_namespace_of(root_ns)}; "
                f"expected {self._namespace!r}",
                readable_path(root, self._words),
            )

    def _refuse_foreign_elements(self, root: etree._Element) -> None:
        foreign = cast(list[etree._Element], self._foreign(root, ns=self._namespace))
        if foreign:
            element = foreign[0]
            qname = etree.QName(element)
            if qname.namespace == XINCLUDE_NS:
                raise XmlRejected(
                    XmlRejectionKind.XINCLUDE_FORBIDDEN,
                    "XInclude is not allowed",
                    readable_path(element, self._words),
                )
            raise XmlRejected(
                XmlRejectionKind.NAMESPACE,
                f"{_named(self._words, element, 'element')} is in "
                f"{_namespace_of(qname.namespace)}; expected {self._namespace!r}",
                readable_path(element, self._words),
            )

    def _validate(self, root: etree._Element) -> None:
        if self._schema.validate(root):
            return
        # The XSD admits no foreign element, so this scan only runs on failure: it turns
        # "element not expected" into the precise reason (XInclude, foreign namespace).
        self._refuse_foreign_elements(root)
        # The first fault is the one to fix first (lxml-stubs do not declare indexing).
        error = cast(Any, self._schema.error_log)[0]
        path = element = None
        found = _element_at(root, str(error.path or ""))
        if found is not None:
            path = readable_path(found, self._words)
            element = etree.QName(found).localname
        # Built from the rule and the declared names, never copied: libxml2 quotes the
        # value, and names the element as the document wrote it.
        message = schema_refusal_text(
            str(error.type_name), str(error.message), self._words, element, int(error.line) or None
        )
        raise XmlRejected(XmlRejectionKind.SCHEMA, message, path)
