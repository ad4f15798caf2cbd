"""Routing by document code: which authority checks which quoted document.

The table is data (``config/routing.toml``), validated once at start-up. Routing a
declaration is a pure function: per authority, the goods items and documents it must see
(data minimisation); locally, the documents no authority checks (EXEMPT, UNROUTED).
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from gun_contract.model.decision import DocumentResult
from gun_contract.model.declaration import Declaration, Stage
from gun_contract.model.exchange import Operation
from gun_contract.model.verdicts import Verdict

_CODE = re.compile(r"^[A-Z][0-9A-Z]{3}$")
_AUTHORITY_ID = re.compile(r"^[a-z][a-z0-9_]{1,31}$")


class RoutingTableError(ValueError):
    """The routing table cannot be used; the message names the fault."""


class AuthorityEntry(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1)
    codes: tuple[str, ...] = Field(min_length=1)
    confidential: bool = False
    # The write-off after release is a check of its own (war material): a negative
    # answer raises a post-clearance alert instead of passing silently.
    post_release_check: bool = False
    # What the declarant's override (mention 73000 on a goods item, gun_hub/domain/override.py)
    # may cover for this authority's documents: refusals, or UNAVAILABLE. Empty: the
    # override covers nothing (war material: a DGA refusal is never overridden).
    override_covers: tuple[Verdict, ...] = ()

    @field_validator("override_covers")
    @classmethod
    def _only_refusals_or_degraded(cls, verdicts: tuple[Verdict, ...]) -> tuple[Verdict, ...]:
        bad = [v.value for v in verdicts if not (v.is_refusal or v is Verdict.UNAVAILABLE)]
        if bad:
            raise ValueError(
                f"an override covers refusals or UNAVAILABLE (no answer) only, not {bad}"
            )
        return verdicts

    @field_validator("codes")
    @classmethod
    def _codes_are_well_formed(cls, codes: tuple[str, ...]) -> tuple[str, ...]:
        bad = [code for code in codes if not _CODE.match(code)]
        if bad:
            raise ValueError(f"malformed document code(s) {bad}: expected a letter and 3 more")
        return codes


class _TableFile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    exempt_prefixes: tuple[str, ...] = ("Y",)
    authorities: dict[str, AuthorityEntry] = Field(min_length=1)


@dataclass(frozen=True, slots=True)
class RoutingTable:
    """Document code to authority, plus the declared-exemption prefixes."""

    authorities: Mapping[str, AuthorityEntry]
    authority_by_code: Mapping[str, str]
    exempt_prefixes: tuple[str, ...]

    def authority_for(self, code: str) -> str | None:
        return self.authority_by_code.get(code)

    def is_exempt(self, code: str) -> bool:
        return code.startswith(self.exempt_prefixes)

    def is_confidential(self, authority: str) -> bool:
        entry = self.authorities.get(authority)
        return entry is not None and entry.confidential

    def checks_after_release(self, authority: str) -> bool:
        entry = self.authorities.get(authority)
        return entry is not None and entry.post_release_check

    def override_covers(self, authority: str | None, verdict: Verdict) -> bool:
        """Whether the declarant's override may cover ``verdict`` on a document of
        ``authority`` (None: a document no authority checks, which nothing covers)."""
        entry = self.authorities.get(authority) if authority is not None else None
        return entry is not None and verdict in entry.override_covers


def build_routing_table(
    raw: Mapping[str, object], extra_routes: Mapping[str, str] | None = None
) -> RoutingTable:
    """Validate a parsed table (and run-time extra routes) into a :class:`RoutingTable`."""
    try:
        parsed = _TableFile.model_validate(raw)
    except ValidationError as err:
        raise RoutingTableError(f"routing table is invalid: {err}") from None
    by_code: dict[str, str] = {}
    for authority, entry in parsed.authorities.items():
        if not _AUTHORITY_ID.match(authority):
            raise RoutingTableError(
                f"authority id {authority!r} must be lower-case letters, digits or _"
            )
        for code in entry.codes:
            if code in by_code:
                raise RoutingTableError(
                    f"document code {code} is routed to both {by_code[code]} and {authority}"
                )
            by_code[code] = authority
    for code, authority in (extra_routes or {}).items():
        if not _CODE.match(code):
            raise RoutingTableError(f"extra route {code!r} is not a document code")
        if authority not in parsed.authorities:
            raise RoutingTableError(f"extra route {code} names unknown authority {authority!r}")
        by_code[code] = authority
    for code in by_code:
        if code.startswith(parsed.exempt_prefixes):
            raise RoutingTableError(f"document code {code} is both routed and exempt")
    return RoutingTable(
        authorities=dict(parsed.authorities),
        authority_by_code=by_code,
        exempt_prefixes=parsed.exempt_prefixes,
    )


def load_routing_table(path: Path, extra_routes: Mapping[str, str] | None = None) -> RoutingTable:
    """Read and validate the routing table file."""
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as err:
        raise RoutingTableError(f"cannot read routing table {path}: {err}") from None
    return build_routing_table(raw, extra_routes)


@dataclass(frozen=True, slots=True)
class ExpectedDocument:
    """A quoted document and who answers for it (``None``: decided locally)."""

    goods_item: int
    code: str
    reference: str
    authority: str | None
    local_verdict: Verdict | None = None
    commodity_code: str = ""
    # What the declaration charges to the document (statistics of quantities written off).
    line: int | None = None
    quantity: Decimal | None = None
    unit: str | None = None


@dataclass(frozen=True, slots=True)
class RoutedDeclaration:
    """Where each quoted document of a declaration goes."""

    documents: tuple[ExpectedDocument, ...]
    authorities: tuple[str, ...]

    def local_results(self) -> list[DocumentResult]:
        return [
            DocumentResult(
                goods_item=d.goods_item,
                code=d.code,
                reference=d.reference,
                authority=None,
                verdict=d.local_verdict,
            )
            for d in self.documents
            if d.local_verdict is not None
        ]


def route_documents(declaration: Declaration, table: RoutingTable) -> RoutedDeclaration:
    """Assign every quoted document to its authority, or decide it locally."""
    documents: list[ExpectedDocument] = []
    authorities: set[str] = set()
    for item in declaration.goods_items:
        for document in item.documents:
            authority = table.authority_for(document.code)
            if authority is not None:
                authorities.add(authority)
                documents.append(
                    ExpectedDocument(
                        item.number,
                        document.code,
                        document.reference,
                        authority,
                        commodity_code=item.commodity_code,
                        line=document.line,
                        quantity=document.quantity.value if document.quantity else None,
                        unit=document.quantity.unit if document.quantity else None,
                    )
                )
            else:
                verdict = Verdict.EXEMPT if table.is_exempt(document.code) else Verdict.UNROUTED
                documents.append(
                    ExpectedDocument(item.number, document.code, document.reference, None, verdict)
                )
    return RoutedDeclaration(documents=tuple(documents), authorities=tuple(sorted(authorities)))


OPERATION_FOR_STAGE = {
    Stage.PRELODGED: Operation.CHECK,
    Stage.LODGED: Operation.RESERVE,
    Stage.CANCELLED: Operation.DELETE,
    Stage.RELEASED_AFTER_CONTROL: Operation.WRITE_OFF,
    Stage.INVALIDATED: Operation.GIVE_BACK,
}


def restates_reservations(stage: Stage) -> bool:
    """Whether a version at ``stage`` restates or follows up itself the reservations it
    quotes (a lodging, a cancellation, a release after control): a pre-lodged version
    asks a CHECK whatever the mode, and an invalidation gives back what was written off,
    neither restating anything (review stop 46; stop 52)."""
    return OPERATION_FOR_STAGE[stage] not in (Operation.CHECK, Operation.GIVE_BACK)
