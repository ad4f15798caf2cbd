"""Well-formedness refusals built from libxml2's error code and position, never its text.

libxml2's well-formedness messages quote the document: up to 50 characters of an
unfinished CDATA section (``CData section not finished\\n<content>``), a comment holding
``--``, an unfinished processing instruction, a namespace URI, an entity's, an element's
or an attribute's name. Refusal texts go to the dead letter's clear ``gun.error.reason``
header, every officer's dead-letter desk, the dashboard and the REFUSE decision, and the
content quoted may be a war-material licence reference written as CDATA in a record cut
short (review stop 39, C1). So the text is chosen here from a closed vocabulary, by the
error's code (libxml2's ``xmlParserErrors``, a number): nothing of the message is used,
and the only variable parts are the code's name (a libxml2 constant) and two integers.
A code not listed gets a generic text naming it.
"""

from __future__ import annotations

from lxml import etree

# libxml2's constant names by code (lxml's ErrorTypes holds one attribute per code).
_CODE_NAMES: dict[int, str] = {
    value: name
    for name, value in vars(etree.ErrorTypes).items()
    if name.isupper() and isinstance(value, int)
}

_XML_DECLARATION = "the XML declaration is malformed"
_CHARACTER_REFERENCE = "a character reference is not a valid XML character"
_UNDECLARED_ENTITY = (
    "a reference to an entity that is not declared (without a DTD only &lt; &gt; &amp; "
    "&quot; &apos; and character references exist)"
)

# What each error means, in words that name the construct, never its content.
_TEXTS: dict[str, str] = {
    # the document as a whole
    "ERR_DOCUMENT_EMPTY": "the document is empty or does not start with an element",
    "ERR_DOCUMENT_START": "the document does not start with an element",
    "ERR_DOCUMENT_END": "there is content after the root element",
    "ERR_EXTRA_CONTENT": "there is content after the root element",
    "ERR_NOT_WELL_BALANCED": "start and end tags are not balanced",
    # characters and references
    "ERR_INVALID_CHAR": "a character XML does not allow",
    "ERR_INVALID_CHARREF": _CHARACTER_REFERENCE,
    "ERR_INVALID_DEC_CHARREF": "a decimal character reference is not a valid number",
    "ERR_INVALID_HEX_CHARREF": "a hexadecimal character reference is not a valid number",
    "ERR_CHARREF_AT_EOF": "a character reference at the end of the document",
    "ERR_CHARREF_IN_PROLOG": "a character reference before the root element",
    "ERR_CHARREF_IN_EPILOG": "a character reference after the root element",
    "ERR_ENTITYREF_AT_EOF": "an entity reference at the end of the document",
    "ERR_ENTITYREF_IN_PROLOG": "an entity reference before the root element",
    "ERR_ENTITYREF_IN_EPILOG": "an entity reference after the root element",
    "ERR_ENTITYREF_NO_NAME": "an entity reference without a name (an unescaped '&'?)",
    "ERR_ENTITYREF_SEMICOL_MISSING": "an entity or character reference lacks its ';'",
    "ERR_UNDECLARED_ENTITY": _UNDECLARED_ENTITY,
    "WAR_UNDECLARED_ENTITY": _UNDECLARED_ENTITY,
    "ERR_UNPARSED_ENTITY": "a reference to an unparsed entity",
    "ERR_ENTITY_IS_EXTERNAL": "a reference to an external entity",
    "ERR_ENTITY_LOOP": "an entity refers to itself",
    "ERR_INVALID_ENCODING": "bytes that are not valid in the document's encoding",
    "ERR_UNSUPPORTED_ENCODING": "an encoding the parser does not support",
    "ERR_UNKNOWN_ENCODING": "an encoding the parser does not know",
    # names, tags and attributes
    "ERR_NAME_REQUIRED": (
        "a name is missing or invalid (an element, attribute or entity name; an unescaped "
        "'<' or '&'?)"
    ),
    "ERR_NAME_TOO_LONG": "a name is longer than the parser allows",
    "ERR_NMTOKEN_REQUIRED": "a name token is missing",
    "ERR_TAG_NAME_MISMATCH": "an end tag does not match the start tag it closes",
    "ERR_TAG_NOT_FINISHED": "an element is not closed before the document ends",
    "ERR_GT_REQUIRED": "'>' is missing at the end of a tag",
    "ERR_LT_REQUIRED": "'<' is missing",
    "ERR_LTSLASH_REQUIRED": "'</' is missing",
    "ERR_SPACE_REQUIRED": (
        "a space is missing (between attributes, or after a processing instruction's name)"
    ),
    "ERR_EQUAL_REQUIRED": "'=' is missing after an attribute name",
    "ERR_ATTRIBUTE_NOT_STARTED": "an attribute value does not start with a quote",
    "ERR_ATTRIBUTE_NOT_FINISHED": "an attribute value is not closed by its quote",
    "ERR_ATTRIBUTE_WITHOUT_VALUE": "an attribute has no value",
    "ERR_ATTRIBUTE_REDEFINED": "an attribute appears twice in one element",
    "ERR_LT_IN_ATTRIBUTE": "an unescaped '<' in an attribute value",
    "ERR_LITERAL_NOT_STARTED": "a quoted string does not start with a quote",
    "ERR_LITERAL_NOT_FINISHED": "a quoted string is not closed by its quote",
    "ERR_STRING_NOT_STARTED": "a quoted string does not start with a quote",
    "ERR_STRING_NOT_CLOSED": "a quoted string is not closed by its quote",
    "ERR_VALUE_REQUIRED": "a value is missing",
    # comments, processing instructions, CDATA sections
    "ERR_COMMENT_NOT_FINISHED": "a comment is not closed by '-->'",
    "ERR_COMMENT_ABRUPTLY_ENDED": "a comment ends abruptly ('<!-->' or '<!--->')",
    "ERR_HYPHEN_IN_COMMENT": "a comment contains '--'",
    "ERR_PI_NOT_STARTED": "a processing instruction is malformed",
    "ERR_PI_NOT_FINISHED": "a processing instruction is not closed by '?>'",
    "ERR_RESERVED_XML_NAME": (
        "a processing instruction is named 'xml' (in any letter case): the XML declaration "
        "may only open the document"
    ),
    "ERR_CDATA_NOT_FINISHED": "a CDATA section is not closed by ']]>'",
    "ERR_MISPLACED_CDATA_END": "']]>' outside a CDATA section",
    # the XML declaration (the hub's own check refuses most of these before libxml2)
    "ERR_XMLDECL_NOT_STARTED": _XML_DECLARATION,
    "ERR_XMLDECL_NOT_FINISHED": _XML_DECLARATION,
    "ERR_VERSION_MISSING": _XML_DECLARATION,
    "ERR_UNKNOWN_VERSION": _XML_DECLARATION,
    "WAR_UNKNOWN_VERSION": _XML_DECLARATION,
    "ERR_VERSION_MISMATCH": _XML_DECLARATION,
    "ERR_STANDALONE_VALUE": _XML_DECLARATION,
    "ERR_ENCODING_NAME": _XML_DECLARATION,
    "ERR_MISSING_ENCODING": _XML_DECLARATION,
    # namespaces
    "ERR_NS_DECL_ERROR": "a namespace declaration is malformed",
    "NS_ERR_UNDEFINED_NAMESPACE": "a namespace prefix is used but not declared",
    "NS_ERR_QNAME": "a name is not a valid qualified name (more than one ':'?)",
    "NS_ERR_COLON": "a name has more than one ':'",
    "NS_ERR_EMPTY": "a namespace name is empty",
    "NS_ERR_XML_NAMESPACE": (
        "a namespace declaration XML forbids (a prefix bound to an empty name, or the "
        "'xml' or 'xmlns' prefix redeclared)"
    ),
    "NS_ERR_ATTRIBUTE_REDEFINED": "an attribute appears twice in one element (by namespace)",
    "WAR_NS_URI": "a namespace name is not a valid URI",
    "WAR_NS_URI_RELATIVE": "a namespace name is a relative URI",
    # limits
    "ERR_RESOURCE_LIMIT": "the document exceeds a limit of the parser",
}


def malformed_text(code: int, line: int, column: int) -> str:
    """The refusal of a document libxml2 found not well-formed: what kind of fault (by
    libxml2's ``code``) and where, e.g. ``not well-formed XML: a CDATA section is not
    closed by ']]>' [ERR_CDATA_NOT_FINISHED] (line 2, column 694)``."""
    name = _CODE_NAMES.get(code, f"code {code}")
    what = _TEXTS.get(name, "the document is not well-formed")
    return f"not well-formed XML: {what} [{name}] (line {line}, column {column})"
