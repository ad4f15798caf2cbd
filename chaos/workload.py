"""The seeded workload: partner documents, declaration stories and their XML.

Every reference follows a *story* (a plain LODGED declaration, an amendment, a version
race, a stale version, pre-lodged advice, a cancellation, an invalidation, an unreadable
version, a large, oversized or 999-item declaration). The first version of every story is
sent on the submission schedule; later versions are the clearance office's reactions to
the decision it reads (a control ends in RELEASED_AFTER_CONTROL or CANCELLED, a release
may be INVALIDATED, a refusal amended...), see :meth:`Story.react`.

Partner documents: mostly private lines (one claimant, ample quantity), some contended
lines whose claims exceed what they authorise (racing claims), a suspended document, and
references no partner knows. The XML is written here from the contract (section 3).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from decimal import Decimal
from xml.sax.saxutils import escape

from chaos.checker.model import (
    ADVICE,
    CANCELLED,
    CONTROLS,
    EXEMPT,
    EXEMPTION,
    INVALIDATED,
    LODGED,
    NO_ROUTE,
    PRELODGED,
    REFUSE,
    RELEASE,
    RELEASED_AFTER_CONTROL,
    ROUTED,
    VALID,
    DecisionSeen,
    QuotedDocument,
    Submission,
)

NS = "urn:gun-hub:declaration:v1"
EORI = "FR12345678901234"
UNIT = "KGM"
CLIENTS = ("aiokafka", "confluent")
AUTHORITY_WEIGHTS = {"dgal": 5, "cites": 3, "dga": 2}
LINES_PER_DOCUMENT = 20


@dataclass(frozen=True, slots=True)
class Family:
    """A kind of document of one authority and the goods it covers."""

    authority: str
    code: str
    commodity: str  # what goods items declare
    prefix: str  # what the partner's line covers

    @property
    def mismatched_commodity(self) -> str:
        return "8471300000"  # computers: covered by no line of any partner


FAMILIES = {
    "dgal": [
        Family("dgal", "N853", "0302130000", "0302"),  # fresh fish, CHED-P
        Family("dgal", "C640", "0102290000", "0102"),  # live cattle: a risk rule inspects
    ],
    "cites": [Family("cites", "C400", "4303101000", "4303")],  # fur skins
    "dga": [Family("dga", "LEMG", "9301100000", "9301")],  # war material: always controlled
}


@dataclass
class PartnerDocument:
    authority: str
    reference: str
    code: str
    prefix: str
    status: str = "VALIDATED"
    lines: dict[int, Decimal] = field(default_factory=dict)

    def as_json(self) -> dict[str, object]:
        return {
            "reference": self.reference,
            "type": self.code,
            "status": self.status,
            "lines": [
                {"line": n, "commodity_code": self.prefix, "quantity": str(q), "unit": UNIT}
                for n, q in sorted(self.lines.items())
            ],
        }


class DocumentPool:
    """Partner documents, handed out line by line as the stories need them."""

    def __init__(self, rng: random.Random, declarations: int) -> None:
        self._rng = rng
        self.documents: dict[str, PartnerDocument] = {}
        self._open: dict[tuple[str, str], PartnerDocument] = {}
        self._serial = 0
        self.contended: dict[str, list[tuple[Family, str, int]]] = {}
        contended = max(3, declarations // 150)
        for authority, families in FAMILIES.items():
            pool = []
            for n in range(contended):
                family = families[n % len(families)]
                ref, line = self._line(family, Decimal(100))
                pool.append((family, ref, line))
            self.contended[authority] = pool
        self.suspended = {
            authority: self._new(families[0], status="SUSPENDED")
            for authority, families in FAMILIES.items()
        }
        for document in self.suspended.values():
            document.lines = {n: Decimal(1000) for n in range(1, 4)}

    def _new(self, family: Family, status: str = "VALIDATED") -> PartnerDocument:
        self._serial += 1
        reference = f"{family.code}.CHAOS.{family.authority.upper()}.{self._serial:06d}"
        document = PartnerDocument(family.authority, reference, family.code, family.prefix, status)
        self.documents[reference] = document
        return document

    def _line(self, family: Family, authorised: Decimal) -> tuple[str, int]:
        key = (family.authority, family.code)
        document = self._open.get(key)
        if document is None or len(document.lines) >= LINES_PER_DOCUMENT:
            document = self._open[key] = self._new(family)
        line = len(document.lines) + 1
        document.lines[line] = authorised
        return document.reference, line

    def private(self, family: Family, claim: Decimal) -> tuple[str, int]:
        """A line only this claim uses, with room to spare."""
        return self._line(family, claim + Decimal(self._rng.randint(0, 50)))

    def dedicated(self, family: Family, authorised: Decimal) -> tuple[str, int]:
        """A document of its own (large declarations)."""
        document = self._new(family)
        document.lines[1] = authorised
        return document.reference, 1

    def by_authority(self) -> dict[str, list[dict[str, object]]]:
        found: dict[str, list[dict[str, object]]] = {a: [] for a in FAMILIES}
        for document in self.documents.values():
            found[document.authority].append(document.as_json())
        return found


@dataclass(frozen=True, slots=True)
class Item:
    number: int
    commodity: str
    document: QuotedDocument


STORY_WEIGHTS = {
    "simple": 40,
    "amend": 8,
    "raced": 5,
    "stale": 4,
    "prelodged": 8,
    "cancel": 8,
    "invalidate": 6,
    "unreadable_next": 5,
    "unreadable_first": 2,
    "large": 1,
}


@dataclass
class Version:
    """One version to send: its manifest line and its bytes."""

    submission: Submission
    data: bytes


@dataclass
class Story:
    reference: str
    client: str
    kind: str
    items: list[Item]
    rng: random.Random
    version: int = 0
    reactions: int = 0
    amended: bool = False
    spoiled: bool = False
    description_length: int = 40

    # -- versions ----------------------------------------------------------------------

    def _version(
        self,
        stage: str,
        *,
        items: list[Item] | None = None,
        unreadable: bool = False,
        oversized: bool = False,
        version: int | None = None,
        may_be_superseded: bool = False,
    ) -> Version:
        if version is None:
            self.version += 1
            version = self.version
        items = items if items is not None else self.items
        data = declaration_xml(
            self.reference, version, stage, items, self.description_length, self.rng
        )
        if unreadable:
            data = spoil(data, self.rng)
        if oversized:
            data = pad(data, 1_600_000)
        return Version(
            Submission(
                seq=0,
                reference=self.reference,
                version=version,
                stage=stage,
                client=self.client,
                documents=tuple(i.document for i in items),
                unreadable=unreadable,
                oversized=oversized,
                large=len(data) >= 100_000 and not oversized,
                size=len(data),
                may_be_superseded=may_be_superseded,
                story=self.kind,
            ),
            data,
        )

    def first(self) -> list[Version]:
        """What is sent on the schedule (one or two versions back to back)."""
        if self.kind == "raced":
            first = self._version(LODGED, may_be_superseded=True)
            self.items = halved(self.items)
            return [first, self._version(LODGED)]
        if self.kind == "stale":
            newer = self._version(LODGED, version=2)
            older = self._version(LODGED, version=1)
            self.version = 2
            return [newer, older]
        if self.kind == "prelodged":
            return [self._version(PRELODGED)]
        if self.kind == "unreadable_first":
            return [self._version(LODGED, unreadable=True)]
        if self.kind == "oversized":
            return [self._version(LODGED, oversized=True)]
        return [self._version(LODGED)]

    def react(self, decision: DecisionSeen) -> list[Version]:
        """The clearance office reads the decision of the latest version and acts."""
        if decision.version != self.version or self.reactions >= 3:
            return []
        self.reactions += 1
        outcome = decision.outcome
        vouched = all(d.verdict in (VALID, EXEMPT) for d in decision.documents)
        if self.kind == "unreadable_next" and not self.spoiled:
            self.spoiled = True
            return [self._version(LODGED, unreadable=True)]
        if outcome in CONTROLS:
            if self.kind == "amend" and not self.amended:
                self.amended = True
                self.items = halved(self.items)
                return [self._version(LODGED)]
            if vouched and self.rng.random() < 0.7:
                return [self._version(RELEASED_AFTER_CONTROL)]
            return [self._version(CANCELLED)]  # the office refused the goods at the control
        if outcome == RELEASE and self.kind in ("invalidate", "cancel"):
            return [self._version(INVALIDATED)]
        if outcome == REFUSE:
            if self.kind == "amend" and not self.amended:
                self.amended = True
                self.items = halved(self.items)
                return [self._version(LODGED)]
            if self.kind == "cancel":
                return [self._version(CANCELLED)]
        if outcome == ADVICE and self.rng.random() < 0.6:
            return [self._version(LODGED)]
        return []


def halved(items: list[Item]) -> list[Item]:
    changed = []
    for item in items:
        doc = item.document
        if doc.quantity is not None and doc.kind == ROUTED:
            quantity = max(Decimal(1), (Decimal(doc.quantity) / 2).quantize(Decimal(1)))
            doc = QuotedDocument(
                doc.goods_item,
                doc.code,
                doc.reference,
                doc.kind,
                doc.authority,
                doc.line,
                str(quantity),
                doc.unit,
            )
        changed.append(Item(item.number, item.commodity, doc))
    return changed


class Workload:
    """Stories for ``declarations`` references, and the partner documents they quote."""

    def __init__(self, declarations: int, seed: int) -> None:
        self.rng = random.Random(seed)
        self.pool = DocumentPool(self.rng, declarations)
        self.stories: list[Story] = []
        self._exempt = 0
        kinds = list(STORY_WEIGHTS)
        weights = list(STORY_WEIGHTS.values())
        planned = [self.rng.choices(kinds, weights)[0] for _ in range(declarations)]
        # Every kind at least once; one 999-item declaration; oversized ones.
        specials = ["giant", "oversized", "large", "large", *kinds]
        if declarations >= 2000:
            specials += ["oversized", "giant", "large", "large"]
        for n, kind in enumerate(specials[:declarations]):
            planned[(n * 37 + 11) % declarations] = kind
        for n, kind in enumerate(planned):
            self.stories.append(self._story(n, kind))

    def _story(self, n: int, kind: str) -> Story:
        rng = self.rng
        reference = f"26FRCH{n:06d}{rng.randrange(16**6):06X}"
        client = CLIENTS[rng.randrange(2)]
        story = Story(reference, client, kind, [], random.Random(rng.random()))
        if kind in ("giant", "large"):
            count = 999 if kind == "giant" else rng.randint(260, 360)
            family = FAMILIES["dgal"][0]
            doc_ref, line = self.pool.dedicated(family, Decimal(count * 2))
            story.description_length = 200
            story.items = [
                Item(
                    i,
                    family.commodity,
                    QuotedDocument(i, family.code, doc_ref, ROUTED, "dgal", line, "1", UNIT),
                )
                for i in range(1, count + 1)
            ]
            return story
        authorities = list(AUTHORITY_WEIGHTS)
        primary = rng.choices(authorities, list(AUTHORITY_WEIGHTS.values()))[0]
        quoted = [primary]
        if rng.random() < 0.15:
            quoted.append(rng.choice([a for a in authorities if a != primary]))
        for authority in quoted:
            for _ in range(rng.choice((1, 1, 1, 2))):
                story.items.append(self._routed_item(len(story.items) + 1, authority))
        if rng.random() < 0.10:
            self._exempt += 1
            story.items.append(
                Item(
                    len(story.items) + 1,
                    "0302130000",
                    QuotedDocument(
                        len(story.items) + 1, "Y900", f"EXEMPT.{self._exempt}", EXEMPTION
                    ),
                )
            )
        if rng.random() < 0.02:
            story.items.append(
                Item(
                    len(story.items) + 1,
                    "0302130000",
                    QuotedDocument(len(story.items) + 1, "X999", f"NOROUTE.{n}", NO_ROUTE),
                )
            )
        return story

    def _routed_item(self, number: int, authority: str) -> Item:
        rng = self.rng
        family = rng.choice(FAMILIES[authority])
        commodity = family.commodity
        draw = rng.random()
        if draw < 0.12:  # racing claims on a contended line
            family, doc_ref, line = rng.choice(self.pool.contended[authority])
            commodity = family.commodity
            quantity = Decimal(rng.randint(30, 60))
        elif draw < 0.14:
            doc_ref, line, quantity = (
                f"NOTFOUND.{authority.upper()}.{number}.{rng.randrange(10**6)}",
                1,
                Decimal(5),
            )
        elif draw < 0.16:
            document = self.pool.suspended[authority]
            family = FAMILIES[authority][0]
            commodity = family.commodity
            doc_ref, line, quantity = document.reference, 1, Decimal(5)
        else:
            quantity = Decimal(rng.randint(10, 200))
            doc_ref, line = self.pool.private(family, quantity)
            if draw < 0.18:
                commodity = family.mismatched_commodity
        return Item(
            number,
            commodity,
            QuotedDocument(
                number, family.code, doc_ref, ROUTED, authority, line, str(quantity), UNIT
            ),
        )


# -- XML ----------------------------------------------------------------------------------

_WORDS = (
    "fresh",
    "chilled",
    "frozen",
    "whole",
    "fillets",
    "skins",
    "hides",
    "live",
    "breeding",
    "cattle",
    "salmon",
    "trout",
    "parts",
    "accessories",
    "packed",
    "boxed",
    "crates",
    "pallets",
    "grade",
    "export",
    "import",
    "lot",
    "batch",
)


def _description(length: int, rng: random.Random) -> str:
    words: list[str] = []
    while sum(len(w) + 1 for w in words) < length:
        words.append(rng.choice(_WORDS))
    return " ".join(words)[:length].strip() or "goods"


def declaration_xml(
    reference: str,
    version: int,
    stage: str,
    items: list[Item],
    description_length: int,
    rng: random.Random,
) -> bytes:
    parts = [
        f'<?xml version="1.0" encoding="UTF-8"?>\n<Declaration xmlns="{NS}">',
        f"<Reference>{reference}</Reference>",
        f"<Version>{version}</Version>",
        f"<Stage>{stage}</Stage>",
        "<Direction>IMPORT</Direction><Procedure>4000</Procedure>",
        "<LodgedAt>2026-11-22T10:00:00Z</LodgedAt><CustomsOffice>FR000690</CustomsOffice>",
        f"<Declarant><Eori>{EORI}</Eori><Name>Chaos Import SARL</Name></Declarant>",
        "<CountryOfDispatch>NO</CountryOfDispatch><CountryOfDestination>FR</CountryOfDestination>",
    ]
    for item in items:
        doc = item.document
        parts.append(
            f"<GoodsItem><Number>{item.number}</Number>"
            f"<CommodityCode>{item.commodity}</CommodityCode>"
            f"<Description>{escape(_description(description_length, rng))}</Description>"
            "<CountryOfOrigin>NO</CountryOfOrigin>"
            f'<NetMass unit="{UNIT}">{doc.quantity or "1"}</NetMass>'
            f"<Document><Code>{doc.code}</Code><Reference>{escape(doc.reference)}</Reference>"
        )
        if doc.line is not None:
            parts.append(f"<Line>{doc.line}</Line>")
        if doc.quantity is not None:
            parts.append(f'<Quantity unit="{doc.unit or UNIT}">{doc.quantity}</Quantity>')
        parts.append("</Document></GoodsItem>")
    parts.append("</Declaration>")
    return "".join(parts).encode()


def spoil(data: bytes, rng: random.Random) -> bytes:
    """Unreadable but identifiable: Reference and Version stay readable at the head."""
    if rng.random() < 0.5:
        return data.replace(b"<Procedure>4000</Procedure>", b"<Procedure>40X0</Procedure>")
    return data[: max(400, len(data) // 2)]  # cut in the middle: not well-formed


def pad(data: bytes, size: int) -> bytes:
    """A declaration above the intake limit (a comment of filler before the end)."""
    filler = b"<!--" + b"chaos padding " * (size // 14) + b"-->"
    return data.replace(b"</Declaration>", filler + b"</Declaration>")
