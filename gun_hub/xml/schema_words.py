"""The names a schema declares: the only names of a document a refusal may quote.

An element or attribute name is the document's own text as much as a value is: a
declaration carrying an element named after a war-material licence (``<LIC-DGA-2026-1>``)
was refused with a reason quoting that name, on ``gun.dlq``'s clear headers and every
officer's desk (stop 40, carried from review stop 39, C1). A refusal quotes a name only
when the schema declares it (then it is the schema's word, whatever the document did with
it); any other is named by a fixed phrase and located by its position.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from lxml import etree

XSD_NS = "http://www.w3.org/2001/XMLSchema"
XSI_NS = "http://www.w3.org/2001/XMLSchema-instance"
# The attributes XML Schema itself defines on any element (xsi:type, ...): its words.
_XSI_ATTRIBUTES = frozenset({"type", "nil", "schemaLocation", "noNamespaceSchemaLocation"})
_INCLUDES = (f"{{{XSD_NS}}}include", f"{{{XSD_NS}}}import", f"{{{XSD_NS}}}redefine")
UNDECLARED_ELEMENT = "an element the schema does not allow here"
UNDECLARED_ATTRIBUTE = "an attribute the schema does not allow here"


@dataclass(frozen=True, slots=True)
class SchemaWords:
    """Element, attribute, type and identity-constraint names a schema declares."""

    elements: frozenset[str] = frozenset()
    attributes: frozenset[str] = frozenset()
    types: frozenset[str] = frozenset()
    constraints: frozenset[str] = frozenset()

    def element(self, local_name: str | None) -> str | None:
        """``local_name`` if the schema declares such an element, else None."""
        return local_name if local_name in self.elements else None

    def attribute(self, local_name: str | None, namespace: str | None = None) -> str | None:
        """How a refusal may name an attribute: ``unit`` (declared, unqualified as every
        attribute of the contract's schemas), ``xsi:type`` (XML Schema's own); else None."""
        if namespace == XSI_NS and local_name in _XSI_ATTRIBUTES:
            return f"xsi:{local_name}"
        if not namespace and local_name in self.attributes:
            return local_name
        return None


def declared_words(xsd: Path) -> SchemaWords:
    """The names declared by ``xsd`` and the schemas it includes (siblings in its folder,
    as :func:`gun_hub.xml.safe_parse.load_schema` allows)."""
    found: dict[str, set[str]] = {"element": set(), "attribute": set(), "type": set(), "key": set()}
    kinds = {
        "element": ("element",),
        "attribute": ("attribute",),
        "type": ("simpleType", "complexType"),
        "key": ("unique", "key", "keyref"),
    }
    pending, seen = [xsd.resolve()], set[Path]()
    while pending:
        path = pending.pop()
        if path in seen:
            continue
        seen.add(path)
        parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False)
        root = etree.parse(str(path), parser).getroot()
        for kind, tags in kinds.items():
            for tag in tags:
                for declaration in root.iter(f"{{{XSD_NS}}}{tag}"):
                    name = declaration.get("name")
                    if name:
                        found[kind].add(name)
        for include in (node for tag in _INCLUDES for node in root.iter(tag)):
            location = include.get("schemaLocation")
            if location:
                sibling = (path.parent / location).resolve()
                if sibling.parent == path.parent and sibling.is_file():
                    pending.append(sibling)
    return SchemaWords(
        frozenset(found["element"]),
        frozenset(found["attribute"]),
        frozenset(found["type"]),
        frozenset(found["key"]),
    )
