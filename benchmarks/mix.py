"""The benchmark's declarations: a seeded, realistic mix over the three authorities.

Each declaration quotes 1 to 5 documents (most quote one or two), each on a goods item of
its own; each document's authority is drawn by weight (DGAL most, then CITES, then DGA)
and its kind from the families the chaos workload knows (fresh fish, live cattle that a
risk rule inspects, fur skins, war material that is always controlled). Every goods item
claims a line of its own on a partner document that authorises more than the claim, so
no line is hot and no claim is refused for want of quantity: what is measured is the
pipeline, not contention. A declaration's items quote distinct partner documents, drawn
at random among a few open documents of their kind, so the partner systems hold many
documents with few lines each.

Same seed, same declarations, byte for byte: runs are comparable. Pure: no Kafka, no I/O.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Collection
from dataclasses import dataclass, field
from decimal import Decimal

from chaos.checker.model import LODGED, ROUTED, QuotedDocument
from chaos.workload import FAMILIES, UNIT, Family, Item, PartnerDocument, declaration_xml

AUTHORITY_WEIGHTS = {"dgal": 5, "cites": 3, "dga": 2}
# Documents quoted by one declaration: 1 to 5, fewer more often (mean about 2.4).
DOCUMENTS_WEIGHTS = {1: 35, 2: 25, 3: 18, 4: 12, 5: 10}
LINES_PER_DOCUMENT = 10
OPEN_DOCUMENTS = 8  # per kind of document: a declaration's items draw among these
DESCRIPTION_LENGTH = 40


@dataclass(frozen=True, slots=True)
class PlannedDeclaration:
    reference: str
    xml: bytes
    documents: tuple[QuotedDocument, ...]

    @property
    def authorities(self) -> frozenset[str]:
        return frozenset(d.authority for d in self.documents if d.authority)


@dataclass
class Mix:
    """Declarations drawn from one seeded generator, and the partner documents they need.

    Draw every batch (warm-ups, each phase) before starting the partner systems: they
    load their documents once, at start-up (:meth:`documents_by_authority`).
    """

    seed: int
    rng: random.Random = field(init=False)
    documents: dict[str, PartnerDocument] = field(default_factory=dict, init=False)
    _open: dict[tuple[str, str], list[PartnerDocument]] = field(default_factory=dict, init=False)
    _serial: int = field(default=0, init=False)

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)  # noqa: S311 - a seeded mix, not crypto

    def declarations(self, count: int, prefix: str) -> list[PlannedDeclaration]:
        """``count`` declarations with references ``<prefix><serial>`` (LODGED, version 1)."""
        return [self._declaration(f"{prefix}{n:08d}") for n in range(count)]

    def documents_by_authority(
        self, only: Collection[str] | None = None
    ) -> dict[str, list[dict[str, object]]]:
        """The partner documents drawn so far (``only`` those references if given), as
        each simulator's documents file lists them (``{"documents": [...]}``)."""
        found: dict[str, list[dict[str, object]]] = {a: [] for a in AUTHORITY_WEIGHTS}
        for reference, document in self.documents.items():
            if only is None or reference in only:
                found[document.authority].append(document.as_json())
        return found

    def _declaration(self, reference: str) -> PlannedDeclaration:
        rng = self.rng
        count = rng.choices(list(DOCUMENTS_WEIGHTS), list(DOCUMENTS_WEIGHTS.values()))[0]
        items: list[Item] = []
        used: set[str] = set()
        for number in range(1, count + 1):
            authority = rng.choices(list(AUTHORITY_WEIGHTS), list(AUTHORITY_WEIGHTS.values()))[0]
            family = rng.choice(FAMILIES[authority])
            claim = Decimal(rng.randint(10, 200))
            document, line = self._line(family, claim, used)
            used.add(document.reference)
            quoted = QuotedDocument(
                number,
                family.code,
                document.reference,
                ROUTED,
                authority,
                line,
                str(claim),
                UNIT,
            )
            items.append(Item(number, family.commodity, quoted))
        xml = declaration_xml(reference, 1, LODGED, items, DESCRIPTION_LENGTH, rng)
        return PlannedDeclaration(reference, xml, tuple(i.document for i in items))

    def _line(self, family: Family, claim: Decimal, avoid: set[str]) -> tuple[PartnerDocument, int]:
        """A fresh line authorising more than ``claim``, on an open document of the
        family that this declaration does not quote yet (a new one if none is left)."""
        key = (family.authority, family.code)
        open_documents = self._open.setdefault(key, [])
        candidates = [d for d in open_documents if d.reference not in avoid]
        if len(open_documents) < OPEN_DOCUMENTS or not candidates:
            document = self._new(family)
            open_documents.append(document)
        else:
            document = self.rng.choice(candidates)
        line = len(document.lines) + 1
        document.lines[line] = claim + Decimal(self.rng.randint(0, 50))
        if len(document.lines) >= LINES_PER_DOCUMENT:
            open_documents.remove(document)
        return document, line

    def _new(self, family: Family) -> PartnerDocument:
        self._serial += 1
        reference = f"{family.code}.BENCH.{family.authority.upper()}.{self._serial:06d}"
        document = PartnerDocument(family.authority, reference, family.code, family.prefix)
        self.documents[reference] = document
        return document


def describe(planned: list[PlannedDeclaration]) -> dict[str, object]:
    """What a batch holds: documents per declaration, quotes per authority, sizes."""
    per_declaration = Counter(len(p.documents) for p in planned)
    per_authority = Counter(d.authority for p in planned for d in p.documents)
    distinct = {d.reference for p in planned for d in p.documents}
    sizes = sorted(len(p.xml) for p in planned)
    return {
        "declarations": len(planned),
        "documents_per_declaration": {str(k): per_declaration[k] for k in sorted(per_declaration)},
        "quotes_per_authority": dict(sorted(per_authority.items())),
        "distinct_documents": len(distinct),
        "xml_bytes_median": sizes[len(sizes) // 2] if sizes else 0,
    }
