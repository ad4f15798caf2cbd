"""Schema refusals that name the element and the rule, never the value.

libxml2 quotes the offending value in most schema errors (``The value 'LEMG-0042' is not
accepted by the pattern ...``). Refusal texts go to dead-letter headers, REFUSE reasons and
the operations dashboard, and a value may be a war-material licence number or a trader's
EORI (issue 11). So a refusal text is *built* here, never copied: from the error's type
(which rule failed), the element and attribute names, and only those parts of libxml2's
message that come from the schema (a pattern, a bound, an enumeration, a type name).

Names are the document's text too (an element named after a licence): an element,
attribute, type or identity-constraint name is quoted only when the schema declares it
(:mod:`gun_hub.xml.schema_words`); any other is "an element (an attribute) the schema does
not allow here", with its line.

Each schema part is taken by a pattern anchored at the end of the message, where libxml2
writes it after the value, and may not contain a quote: a value made to look like a
message ("x' is not accepted by the pattern 'y") cannot be taken for it. A message longer
than libxml2 ever writes untruncated is not mined at all. An error of a type not listed
here gets a generic text naming only the rule's code.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from gun_hub.xml.schema_words import (
    UNDECLARED_ATTRIBUTE,
    UNDECLARED_ELEMENT,
    XSD_NS,
    SchemaWords,
)


def _name(group: str) -> str:
    """A name as libxml2 prints it, maybe in Clark notation (its namespace in the group
    ``<group>_ns``); no quote, brace or blank."""
    return r"(?:\{(?P<" + group + r"_ns>[^{}']*)\})?(?P<" + group + r">[^{}'\s]+)"


_HEAD = re.compile(
    r"\AElement '" + _name("element") + "'"
    r"(?:, attribute '" + _name("attribute") + "')?: (?P<rest>.*)\\Z",
    re.DOTALL,
)
_FACET = re.compile(r"\A\[facet '(?P<facet>[A-Za-z]+)'\] ")
_BOUND = "'(?P<bound>[^']*)'"
# facet -> (the schema's bound at the end of the message, the text with that bound)
_FACETS: dict[str, tuple[re.Pattern[str], str]] = {
    "pattern": (
        re.compile(rf"is not accepted by the pattern {_BOUND}\.?\Z"),
        "the value does not match the pattern '{bound}'",
    ),
    "minInclusive": (
        re.compile(rf"is less than the minimum value allowed \({_BOUND}\)\.?\Z"),
        "the value is less than the minimum value allowed ('{bound}')",
    ),
    "maxInclusive": (
        re.compile(rf"is greater than the maximum value allowed \({_BOUND}\)\.?\Z"),
        "the value is greater than the maximum value allowed ('{bound}')",
    ),
    "minExclusive": (
        re.compile(rf"must be greater than {_BOUND}\.?\Z"),
        "the value must be greater than '{bound}'",
    ),
    "maxExclusive": (
        re.compile(rf"must be less than {_BOUND}\.?\Z"),
        "the value must be less than '{bound}'",
    ),
    "totalDigits": (
        re.compile(rf"has more digits than are allowed \({_BOUND}\)\.?\Z"),
        "the value has more digits than allowed ('{bound}')",
    ),
    "fractionDigits": (
        re.compile(rf"has more fractional digits than are allowed \({_BOUND}\)\.?\Z"),
        "the value has more fractional digits than allowed ('{bound}')",
    ),
    "length": (
        re.compile(rf"differs from the allowed length of {_BOUND}\.?\Z"),
        "the value's length differs from the allowed length of '{bound}'",
    ),
    "minLength": (
        re.compile(rf"underruns the allowed minimum length of {_BOUND}\.?\Z"),
        "the value is shorter than the allowed minimum length of '{bound}'",
    ),
    "maxLength": (
        re.compile(rf"exceeds the allowed maximum length of {_BOUND}\.?\Z"),
        "the value is longer than the allowed maximum length of '{bound}'",
    ),
}
_ENUMERATION = re.compile(r"is not an element of the set \{(?P<set>'[^']*'(?:, '[^']*')*)\}\.?\Z")
_ENUMERATION_LISTED = 16  # longer sets (countries, units) are counted, not listed
_DATATYPE = re.compile(
    r"is not a valid value of the (?P<variety>(?:local )?(?:atomic|list|union)) type"
    r"(?: '" + _name("type") + r"')?\.?\Z"
)
_IDENTITY = re.compile(
    r"\A(?P<what>Duplicate key-sequence|No match found for key-sequence) \[.*\] in "
    r"(?P<kind>unique|key|keyref) identity-constraint '" + _name("name") + r"'\.?\Z",
    re.DOTALL,
)
_CONTENT = re.compile(
    r"\A(?P<what>This element is not expected\.|Missing child element\(s\)\.)"
    r"(?: Expected is (?P<one_of>one of )?\( (?P<expected>[^()']*) \)\.)?\Z"
)
_REQUIRED_ATTRIBUTE = re.compile(
    r"\AThe attribute '" + _name("name") + r"' is required but missing\.?\Z"
)
_CLARK = re.compile(r"\{[^{}']*\}")
# libxml2 cuts its messages at 64,000 bytes: past this length, nothing is taken from one.
_MINED_AT_MOST = 8192

# Errors whose text is fixed by their type: nothing of the message is used.
_FIXED = {
    "SCHEMAV_CVC_COMPLEX_TYPE_2_1": "[content] the element must be empty",
    "SCHEMAV_CVC_COMPLEX_TYPE_2_2": "[content] child elements are not allowed (simple content)",
    "SCHEMAV_CVC_COMPLEX_TYPE_2_3": (
        "[content] character content other than whitespace is not allowed (element-only content)"
    ),
    "SCHEMAV_CVC_COMPLEX_TYPE_2_4": "[content] this element is not allowed here",
    "SCHEMAV_CVC_COMPLEX_TYPE_3_2_1": "[attribute] this attribute is not allowed",
    "SCHEMAV_CVC_COMPLEX_TYPE_3_2_2": "[attribute] this attribute is not allowed",
    "SCHEMAV_CVC_ELT_1": "[declaration] no declaration matches this element",
    "SCHEMAV_CVC_ELT_4_1": "[xsi:type] the xsi:type attribute does not name a type",
    "SCHEMAV_CVC_ELT_4_2": "[xsi:type] the type named by xsi:type does not exist",
    "SCHEMAV_CVC_ELT_4_3": "[xsi:type] the type named by xsi:type cannot replace this one",
    "SCHEMAV_CVC_ELT_3_1": "[xsi:nil] the element is not nillable",
    "SCHEMAV_CVC_ELT_3_2_1": "[xsi:nil] a nil element must be empty",
}


def _facet(rest: str) -> str | None:
    found = _FACET.match(rest)
    if found is None:
        return None
    facet = found.group("facet")
    prefix = f"[facet '{facet}'] "
    if facet == "enumeration":
        allowed = _ENUMERATION.search(rest)
        if allowed is None:
            return prefix + "the value is not one of the values allowed by its type"
        values = re.findall(r"'[^']*'", allowed.group("set"))
        if len(values) <= _ENUMERATION_LISTED:
            return prefix + "the value is not one of " + ", ".join(values)
        return prefix + f"the value is not one of the {len(values)} values allowed by its type"
    known = _FACETS.get(facet)
    bound = known[0].search(rest) if known else None
    if known is None or bound is None:
        return f"{prefix}the value does not satisfy this facet of its type"
    return prefix + known[1].format(bound=bound.group("bound"))


def _datatype(rest: str, words: SchemaWords) -> str:
    found = _DATATYPE.search(rest)
    if found is None:
        return "[type] the value is not a valid value of its type"
    name = found.group("type")
    kind = found.group("variety")
    # A type of XML Schema's own (xs:decimal) or of the contract's: never one the
    # document named (an xsi:type naming no type of the schema is refused before).
    if name is None or (found.group("type_ns") != XSD_NS and name not in words.types):
        return f"[type] the value is not a valid value of the {kind} type"
    return f"[type] the value is not a valid value of the {kind} type '{name}'"


def _identity(rest: str, words: SchemaWords) -> str | None:
    found = _IDENTITY.match(rest)
    if found is None or found["name"] not in words.constraints:
        return None
    return f"{found['what']} in {found['kind']} identity-constraint '{found['name']}'"


def _content(rest: str, words: SchemaWords) -> str | None:
    found = _CONTENT.match(_CLARK.sub("", rest))
    if found is None:
        return None
    text = "[content] " + found.group("what")
    expected = found.group("expected")
    # The names libxml2 lists come from the content model: the schema's, checked all the
    # same (a name not declared drops the list, it is never quoted).
    names = expected.split(", ") if expected else []
    if names and all(words.element(name) for name in names):
        text += f" Expected is {found.group('one_of') or ''}( {', '.join(names)} )."
    return text


def _required_attribute(rest: str, words: SchemaWords) -> str | None:
    found = _REQUIRED_ATTRIBUTE.match(rest)
    named = words.attribute(found["name"], found["name_ns"]) if found else None
    if named is None:
        return None
    return f"[attribute] The attribute '{named}' is required but missing"


_BY_TYPE: dict[str, Callable[[str, SchemaWords], str | None]] = {
    "SCHEMAV_CVC_DATATYPE_VALID_1_2_1": _datatype,
    "SCHEMAV_CVC_DATATYPE_VALID_1_2_2": _datatype,
    "SCHEMAV_CVC_DATATYPE_VALID_1_2_3": _datatype,
    "SCHEMAV_CVC_IDC": _identity,
    "SCHEMAV_ELEMENT_CONTENT": _content,
    "SCHEMAV_CVC_COMPLEX_TYPE_4": _required_attribute,
}


def _subject(
    words: SchemaWords,
    element: str | None,
    attribute: tuple[str, str | None] | None,
    line: int | None,
) -> str:
    """What the refusal is about: the element and attribute by their declared names, any
    other as a fixed phrase with its line; never a name of the document's own."""
    if element is None:
        subject = "The document"
    elif words.element(element):
        subject = f"Element '{element}'"
    else:
        where = f" (line {line})" if line else ""
        subject = UNDECLARED_ELEMENT[0].upper() + UNDECLARED_ELEMENT[1:] + where
    if attribute is not None:
        named = words.attribute(*attribute)
        subject += f", attribute '{named}'" if named else f", {UNDECLARED_ATTRIBUTE}"
    return subject


def schema_refusal_text(
    type_name: str,
    message: str,
    words: SchemaWords,
    element: str | None = None,
    line: int | None = None,
) -> str:
    """The text of a schema refusal: element, attribute and rule; never the value, never
    a name the schema does not declare.

    ``type_name``, ``message`` and ``line`` are those of libxml2's error (lxml's
    ``_LogEntry``); ``words`` what the schema declares; ``element`` is the element's local
    name when the caller found it in the tree.
    """
    head = _HEAD.match(message) if len(message) <= _MINED_AT_MOST else None
    attribute: tuple[str, str | None] | None = None
    if head is not None:
        element = head.group("element")
        if head.group("attribute"):
            attribute = (head.group("attribute"), head.group("attribute_ns"))
        rest = head.group("rest").strip()
    else:
        rest = ""
    subject = _subject(words, element, attribute, line)
    text: str | None = _FIXED.get(type_name)
    if text is None and rest:
        handler = _BY_TYPE.get(type_name)
        text = handler(rest, words) if handler is not None else _facet(rest)
    if text is None:
        rule = type_name.removeprefix("SCHEMAV_") or "unknown"
        text = f"[rule {rule}] not valid against the schema"
    return f"{subject}: {text.rstrip('.')}."
