"""Parsing never opens a file or a URL, whatever a document says (issue 11, item 4).

The attack: a declaration in UTF-16 or UTF-32 (with or without a byte order mark, declaring
its own encoding, UTF-8 or none) names an external DTD, an external parameter entity or an
external general entity. Before the fix its bytes passed the UTF-8 check and the byte-level
DOCTYPE scan, and libxml2 opened the path: the error kind told whether a file existed,
``/proc/self/environ`` was read and a FIFO hung the worker's event loop.

How "no file was opened" is shown without strace: the system identifier names a FIFO made
in ``tmp_path`` and a witness thread blocks in ``open(fifo, O_WRONLY)``. On Linux that call
returns only when someone opens the FIFO for reading (the kernel wakes writers on the
reader counter, so even an open-and-close is seen), and a parser that opened it would in
turn block until the witness had opened and closed its end; so the witness always knows
before the parse can return. Access times are not used (relatime and noatime mounts, and
an open without a read, leave them unchanged); ``sys.addaudithook`` is not used either (it
is process-wide, cannot be removed, and libxml2's own ``open()`` raises no audit event).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from lxml import etree

from gun_hub.xml.declaration_codec import DECLARATION_NS, DeclarationCodec
from gun_hub.xml.safe_parse import XmlRejected, XmlRejectionKind, _new_lxml_parser
from tests.builders import declaration_xml
from tests.hostile_corpus import in_encoding

# Long enough for a loaded 2-core machine; a parse takes well under a millisecond.
PROMPTLY_S = 5.0


class FifoWitness:
    """A FIFO at ``path`` and a thread that notices any open of it for reading."""

    def __init__(self, path: Path) -> None:
        os.mkfifo(path)
        self.path = path
        self._opened = threading.Event()
        self._releasing = threading.Event()
        self._thread = threading.Thread(target=self._wait_for_a_reader, daemon=True)
        self._thread.start()

    def _wait_for_a_reader(self) -> None:
        fd = os.open(self.path, os.O_WRONLY)  # returns once a reader has opened the FIFO
        if not self._releasing.is_set():
            self._opened.set()
        os.close(fd)  # the reader sees end of file

    def was_opened(self) -> bool:
        """Whether anything opened the FIFO; then lets the witness thread end."""
        self._opened.wait(0.05)  # a reader that opened without blocking: give it time
        opened = self._opened.is_set()
        self._releasing.set()
        fd = os.open(self.path, os.O_RDONLY | os.O_NONBLOCK)
        self._thread.join(PROMPTLY_S)
        os.close(fd)
        return opened


@dataclass(frozen=True)
class Outcome:
    finished: bool
    error: BaseException | None = None


def run_with_timeout(parse: Callable[[], object], release: Path | None = None) -> Outcome:
    """Run ``parse`` in a thread; a hang fails the test instead of hanging it.

    ``release`` is a FIFO the parse may be blocked on: opening its other end lets the
    blocked thread go, so that it does not hold the parser for the tests after this one.
    """
    result: list[BaseException | None] = []

    def target() -> None:
        try:
            parse()
            result.append(None)
        except BaseException as error:  # noqa: BLE001 - reported to the test thread
            result.append(error)

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(PROMPTLY_S)
    if thread.is_alive():
        if release is not None:
            os.close(os.open(release, os.O_WRONLY | os.O_NONBLOCK))
            thread.join(PROMPTLY_S)
        return Outcome(finished=False)
    return Outcome(finished=True, error=result[0])


# --- the hostile documents --------------------------------------------------------------

VECTORS: dict[str, Callable[[str], tuple[str, tuple[str, str] | None]]] = {
    # name -> (system id -> (DOCTYPE, change to the body))
    "external-dtd": lambda sid: (f'<!DOCTYPE Declaration SYSTEM "{sid}">', None),
    "public-external-dtd": lambda sid: (
        f'<!DOCTYPE Declaration PUBLIC "-//GUN//Evil//EN" "{sid}">',
        None,
    ),
    "external-parameter-entity": lambda sid: (
        f'<!DOCTYPE Declaration [<!ENTITY % p SYSTEM "{sid}"> %p;]>',
        None,
    ),
    "external-general-entity": lambda sid: (
        f'<!DOCTYPE Declaration [<!ENTITY e SYSTEM "{sid}">]>',
        ("<Name>Example SARL</Name>", "<Name>&e;</Name>"),
    ),
}


@dataclass(frozen=True)
class Encoding:
    codec: str  # Python codec of the bytes
    declared: str | None  # what the XML declaration says (None: no declaration)
    bom: bool


ENCODINGS = {
    "utf16le-nobom-declares-utf16": Encoding("utf-16-le", "UTF-16", bom=False),
    "utf16be-nobom-declares-utf16": Encoding("utf-16-be", "UTF-16", bom=False),
    "utf16le-nobom-declares-utf8": Encoding("utf-16-le", "UTF-8", bom=False),
    "utf16be-nobom-no-declaration": Encoding("utf-16-be", None, bom=False),
    "utf16le-bom": Encoding("utf-16-le", "UTF-16", bom=True),
    "utf16be-bom-declares-utf8": Encoding("utf-16-be", "UTF-8", bom=True),
    "utf32le-nobom-declares-utf32": Encoding("utf-32-le", "UTF-32", bom=False),
    "utf32be-nobom-declares-utf8": Encoding("utf-32-be", "UTF-8", bom=False),
    "utf32le-bom": Encoding("utf-32-le", "UTF-32", bom=True),
    "utf8": Encoding("utf-8", "UTF-8", bom=False),
    "utf8-bom": Encoding("utf-8", "UTF-8", bom=True),
}


def hostile(vector: str, encoding: Encoding, system_id: str) -> bytes:
    doctype, change = VECTORS[vector](system_id)
    text = declaration_xml().decode()
    if change is not None:
        text = text.replace(*change, 1)
    return in_encoding(text, encoding.codec, encoding.declared, bom=encoding.bom, doctype=doctype)


CASES = [(vector, name) for vector in VECTORS for name in ENCODINGS]
IDS = [f"{vector}-{name}" for vector, name in CASES]


@pytest.fixture(scope="module")
def codec() -> DeclarationCodec:
    return DeclarationCodec()


# --- (c) nothing is opened ----------------------------------------------------------------


@pytest.mark.parametrize(("vector", "encoding"), CASES, ids=IDS)
def test_the_named_path_is_never_opened(
    codec: DeclarationCodec, tmp_path: Path, vector: str, encoding: str
) -> None:
    witness = FifoWitness(tmp_path / "witness")
    data = hostile(vector, ENCODINGS[encoding], str(witness.path))
    outcome = run_with_timeout(lambda: codec.decode(data))
    assert not witness.was_opened(), "parsing opened the file the document named"
    assert outcome.finished
    assert isinstance(outcome.error, XmlRejected)


# --- (b) a FIFO does not hang the parser ------------------------------------------------


@pytest.mark.parametrize(("vector", "encoding"), CASES, ids=IDS)
def test_a_fifo_path_is_refused_promptly(tmp_path: Path, vector: str, encoding: str) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    codec = DeclarationCodec()  # its own: a hung parse must not hold the shared one
    data = hostile(vector, ENCODINGS[encoding], str(fifo))
    outcome = run_with_timeout(lambda: codec.decode(data), release=fifo)
    assert outcome.finished, f"parsing hung for {PROMPTLY_S} s on a FIFO"
    assert isinstance(outcome.error, XmlRejected)
    assert outcome.error.kind in {XmlRejectionKind.ENCODING, XmlRejectionKind.DTD_FORBIDDEN}


# --- (a) no existence oracle --------------------------------------------------------------


def _refusal(codec: DeclarationCodec, data: bytes) -> tuple[str, str, str | None]:
    with pytest.raises(XmlRejected) as refused:
        codec.decode(data)
    return (refused.value.kind.value, str(refused.value), refused.value.path)


@pytest.mark.parametrize(("vector", "encoding"), CASES, ids=IDS)
def test_whether_a_file_exists_cannot_be_told_from_the_refusal(
    codec: DeclarationCodec, tmp_path: Path, vector: str, encoding: str
) -> None:
    junk = tmp_path / "exists.txt"
    junk.write_text("not a DTD, not XML: <<<\n")
    dtd = tmp_path / "exists.dtd"
    dtd.write_text('<!ENTITY e "entity text">\n')
    paths = {
        "missing": str(tmp_path / "missing.dtd"),
        "missing-folder": str(tmp_path / "no" / "such" / "folder.dtd"),
        "file": str(junk),
        "dtd": str(dtd),
        "folder": str(tmp_path),
        "environ": "/proc/self/environ",
        "file-url": junk.as_uri(),
    }
    refusals = {
        name: _refusal(codec, hostile(vector, ENCODINGS[encoding], path))
        for name, path in paths.items()
    }
    assert len(set(refusals.values())) == 1, refusals
    for name, (_, text, _) in refusals.items():
        assert paths[name] not in text


# --- documents the schema accepts may still name files: none is opened ----------------

XSI = "http://www.w3.org/2001/XMLSchema-instance"
BENIGN_LOOKING: dict[str, Callable[[str], bytes]] = {
    "xsi-schema-location": lambda sid: declaration_xml().replace(
        f'<Declaration xmlns="{DECLARATION_NS}">'.encode(),
        f'<Declaration xmlns="{DECLARATION_NS}" xmlns:xsi="{XSI}" '
        f'xsi:schemaLocation="{DECLARATION_NS} {sid}">'.encode(),
    ),
    "xsi-no-namespace-schema-location": lambda sid: declaration_xml().replace(
        f'<Declaration xmlns="{DECLARATION_NS}">'.encode(),
        f'<Declaration xmlns="{DECLARATION_NS}" xmlns:xsi="{XSI}" '
        f'xsi:noNamespaceSchemaLocation="{sid}">'.encode(),
    ),
    "oasis-catalog-pi": lambda sid: declaration_xml().replace(
        b"?>\n", f'?>\n<?oasis-xml-catalog catalog="file://{sid}"?>\n'.encode(), 1
    ),
    "xml-stylesheet-pi": lambda sid: declaration_xml().replace(
        b"?>\n", f'?>\n<?xml-stylesheet type="text/xsl" href="{sid}"?>\n'.encode(), 1
    ),
    "xinclude": lambda sid: declaration_xml().replace(
        b"<Name>Example SARL</Name>",
        f'<Name>Example SARL</Name><xi:include xmlns:xi="http://www.w3.org/2001/XInclude" '
        f'href="{sid}" parse="text"/>'.encode(),
    ),
}


@pytest.mark.parametrize("vector", list(BENIGN_LOOKING))
def test_a_file_named_outside_a_dtd_is_never_opened(
    codec: DeclarationCodec, tmp_path: Path, vector: str
) -> None:
    witness = FifoWitness(tmp_path / "witness")
    data = BENIGN_LOOKING[vector](str(witness.path))
    assert str(witness.path).encode() in data
    outcome = run_with_timeout(lambda: codec.decode(data))
    assert not witness.was_opened()
    assert outcome.finished


# --- the floor: the lxml parser alone, checks on the text bypassed ---------------------


@pytest.mark.parametrize(("vector", "encoding"), CASES, ids=IDS)
def test_the_lxml_parser_alone_opens_nothing(tmp_path: Path, vector: str, encoding: str) -> None:
    """Even if every check on the text were bypassed, libxml2 itself must open nothing."""
    parser = _new_lxml_parser()
    witness = FifoWitness(tmp_path / "witness")
    data = hostile(vector, ENCODINGS[encoding], str(witness.path))
    outcome = run_with_timeout(lambda: etree.fromstring(data, parser))
    assert not witness.was_opened()
    assert outcome.finished


def test_the_refusing_resolver_stops_a_parser_that_would_load_a_dtd(tmp_path: Path) -> None:
    """The resolver is the last floor: even ``load_dtd=True`` then loads nothing."""
    from gun_hub.xml.safe_parse import RefuseEveryResolution

    parser = etree.XMLParser(load_dtd=True, no_network=True, resolve_entities=False)
    parser.resolvers.add(RefuseEveryResolution())
    witness = FifoWitness(tmp_path / "witness")
    data = hostile("external-dtd", ENCODINGS["utf8"], str(witness.path))
    outcome = run_with_timeout(lambda: etree.fromstring(data, parser))
    assert not witness.was_opened()
    assert outcome.finished
    assert isinstance(outcome.error, XmlRejected)
    assert outcome.error.kind is XmlRejectionKind.DTD_FORBIDDEN
