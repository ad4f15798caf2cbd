"""Parsing untrusted XML without trusting it.

Every document from outside goes through :class:`SafeXmlParser`, which refuses, each with
its own :class:`XmlRejectionKind` and a precise message:

* anything over the size cap, before a single byte is parsed;
* any encoding but UTF-8 (the contract's encoding), a mis-declared encoding, and bytes
  that are not valid UTF-8;
* any ``<!DOCTYPE``: no DTD means no entity (XXE, billion laughs, quadratic blow-up) and
  no external subset can ever be loaded;
* malformed XML, with line and column;
* documents deeper or larger (in elements) than the limits;
* XInclude and any element outside the expected namespace;
* anything the (precompiled, locally loaded) XSD refuses, with the path of the element.

The lxml parser itself is configured so that, even if a check above were bypassed, no
entity is expanded and nothing is fetched from disk or network.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any, cast

from lxml import etree

XINCLUDE_NS = "http://www.w3.org/2001/XInclude"

# An XML declaration: the only place where a document may name its encoding.
_XML_DECL = re.compile(
    rb"""^<\?xml\s+version\s*=\s*["']1\.[0-9]["']"""
    rb"""(?:\s+encoding\s*=\s*["'](?P<enc>[A-Za-z][A-Za-z0-9._-]*)["'])?"""
    rb"""(?:\s+standalone\s*=\s*["'](?:yes|no)["'])?\s*\?>"""
)
# What may precede the root element: whitespace, comments and processing instructions.
_PROLOG_ITEM = re.compile(rb"\s+|<!--.*?-->|<\?(?!xml[\s?]).*?\?>", re.DOTALL)
_UTF8_NAMES = frozenset({"utf-8", "utf8"})
_BOMS = {
    b"\xef\xbb\xbf": "UTF-8",
    b"\xff\xfe\x00\x00": "UTF-32",
    b"\x00\x00\xfe\xff": "UTF-32",
    b"\xff\xfe": "UTF-16",
    b"\xfe\xff": "UTF-16",
}


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


def readable_path(element: etree._Element) -> str:
    """``/Declaration/GoodsItem[2]/Document[1]/Quantity``: local names, 1-based positions."""
    steps: list[str] = []
    node: etree._Element | None = element
    while node is not None:
        name = etree.QName(node).localname
        parent = node.getparent()
        if parent is None:
            steps.append(name)
        else:
            same = [child for child in parent if child.tag == node.tag]
            steps.append(f"{name}[{same.index(node) + 1}]" if len(same) > 1 else name)
        node = parent
    return "/" + "/".join(reversed(steps))


def _new_lxml_parser() -> etree.XMLParser:
    # Every switch that could make lxml reach outside the bytes it was given is off.
    return etree.XMLParser(
        resolve_entities=False,
        load_dtd=False,
        dtd_validation=False,
        no_network=True,
        huge_tree=False,
        remove_comments=True,
        remove_pis=True,
        remove_blank_text=True,
        collect_ids=False,
    )


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


def load_schema(xsd: Path) -> etree.XMLSchema:
    """Compile an XSD once; its includes may only come from its own folder."""
    parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False)
    parser.resolvers.add(_LocalOnlyResolver(xsd.parent))
    return etree.XMLSchema(etree.parse(str(xsd), parser))


class SafeXmlParser:
    """Parses and schema-validates untrusted documents of one namespace.

    Build one per worker (schema compilation is the expensive part) and reuse it: parsing
    a typical declaration then costs tens of microseconds.
    """

    def __init__(self, schema: etree.XMLSchema, namespace: str, limits: XmlLimits) -> None:
        self._schema = schema
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
        self._check_encoding(data)
        self._check_no_doctype(data)
        root = self._parse_tree(data)
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

    @staticmethod
    def _check_encoding(data: bytes) -> None:
        for bom, name in _BOMS.items():
            if data.startswith(bom) and name != "UTF-8":
                raise XmlRejected(
                    XmlRejectionKind.ENCODING,
                    f"document is {name} (byte order mark); only UTF-8 is accepted",
                )
        body = data.removeprefix(b"\xef\xbb\xbf")
        declaration = _XML_DECL.match(body)
        if body.startswith(b"<?xml") and declaration is None:
            raise XmlRejected(XmlRejectionKind.MALFORMED, "the XML declaration is malformed")
        if declaration is not None and declaration.group("enc") is not None:
            declared = declaration.group("enc").decode("ascii")
            if declared.lower() not in _UTF8_NAMES:
                raise XmlRejected(
                    XmlRejectionKind.ENCODING,
                    f"declared encoding {declared!r} is not accepted; the contract is UTF-8",
                )
        try:
            body.decode("utf-8")
        except UnicodeDecodeError as err:
            raise XmlRejected(
                XmlRejectionKind.ENCODING,
                f"bytes are not valid UTF-8 at offset {err.start}: {err.reason}",
            ) from None

    @staticmethod
    def _check_no_doctype(data: bytes) -> None:
        body = data.removeprefix(b"\xef\xbb\xbf")
        declaration = _XML_DECL.match(body)
        position = declaration.end() if declaration else 0
        while (item := _PROLOG_ITEM.match(body, position)) is not None:
            position = item.end()
        if body.startswith(b"<!DOCTYPE", position) or b"<!ENTITY" in body:
            raise XmlRejected(
                XmlRejectionKind.DTD_FORBIDDEN,
                "a DOCTYPE or ENTITY declaration is not allowed (no DTD, no entities)",
            )

    def _parse_tree(self, data: bytes) -> etree._Element:
        try:
            root = etree.fromstring(data, self._parser)
        except etree.XMLSyntaxError as err:
            line, column = err.position
            raise XmlRejected(
                XmlRejectionKind.MALFORMED,
                f"not well-formed XML: {err.msg} (line {line}, column {column})",
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
            found = f"namespace {root_ns!r}" if root_ns else "no namespace"
            raise XmlRejected(
                XmlRejectionKind.NAMESPACE,
                f"root element {etree.QName(root).localname!r} has {found}; "
                f"expected {self._namespace!r}",
                "/" + etree.QName(root).localname,
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
                    readable_path(element),
                )
            raise XmlRejected(
                XmlRejectionKind.NAMESPACE,
                f"element {qname.localname!r} is in namespace {qname.namespace!r}; "
                f"expected {self._namespace!r}",
                readable_path(element),
            )

    def _validate(self, root: etree._Element) -> None:
        if self._schema.validate(root):
            return
        # The XSD admits no foreign element, so this scan only runs on failure: it turns
        # "element not expected" into the precise reason (XInclude, foreign namespace).
        self._refuse_foreign_elements(root)
        # The first fault is the one to fix first (lxml-stubs do not declare indexing).
        error = cast(Any, self._schema.error_log)[0]
        path = None
        if error.path:
            found = root.getroottree().xpath(error.path)
            if isinstance(found, list) and found and isinstance(found[0], etree._Element):
                path = readable_path(found[0])
        message = error.message.replace("{" + self._namespace + "}", "")
        raise XmlRejected(XmlRejectionKind.SCHEMA, message, path)
