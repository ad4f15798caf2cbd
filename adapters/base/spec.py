"""What an authority's adapter package provides, and how the CLI finds it."""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Protocol

from gun_contract.health import CircuitStatus
from gun_contract.model.exchange import AuthorityRequest, DocumentAnswer
from gun_contract.settings import AdapterSettings


class PartnerPort(Protocol):
    """Asks the partner administration's system about one request's documents.

    Implementations never raise for a partner failure: a document they could not get an
    answer for is answered UNAVAILABLE, so the hub can go to degraded mode promptly.
    """

    async def answer(self, request: AuthorityRequest) -> tuple[DocumentAnswer, ...]: ...

    def may_still_apply(self, request: AuthorityRequest) -> bool:
        """Whether the partner may still apply a call of ``request`` that got no answer
        settling it (timed out, or 409 "still being processed"): a reservation in that
        state is kept queued, asked again, so that no later operation of its documents
        overtakes it at the partner. False for a system whose calls cannot outlive their
        answer."""
        ...

    def sent_before(self, request: AuthorityRequest, accepted: Collection[int] = ()) -> None:
        """``request``'s calls were sent by an earlier process or replica and may still be
        applied (the commit's metadata says so): the next attempt is a repeat.
        ``accepted``: the positions of its calls (as :meth:`accepted_calls` gives them)
        the partner answered 202, accepted for processing: a 409 to those is the call
        still processing however late."""
        ...

    def accepted_calls(self, request: AuthorityRequest) -> frozenset[int]:
        """The positions of ``request``'s calls (the system's own order, the same in
        every replica) the partner answered 202 and has not settled since: a commit
        names them for the partition's next owner. Empty for a system that never
        answers so."""
        ...

    async def close(self) -> None: ...

    @property
    def circuit_state(self) -> CircuitStatus:
        """Whether the partner is being called (closed), tried again, or given up on."""
        ...


@dataclass(frozen=True, slots=True)
class AdapterSpec:
    """An authority's adapter: its identity, its guarantee, and how to reach its partner."""

    authority: str
    partner_name: str
    processing_guarantee: str
    # Makes the partner client from the adapter's settings and the authority id (the
    # label of its metrics): called through :meth:`partner`, which names it once.
    build_partner: Callable[[AdapterSettings, str], PartnerPort]

    def partner(self, settings: AdapterSettings) -> PartnerPort:
        """This authority's partner client, asking the system ``settings`` name."""
        return self.build_partner(settings, self.authority)


_AUTHORITY = re.compile(r"^[a-z][a-z0-9_]{1,31}$")


def load_adapter(authority: str) -> AdapterSpec:
    """The ``ADAPTER`` of package ``adapters.<authority>``."""
    if not _AUTHORITY.match(authority) or authority == "base":
        raise LookupError(f"{authority!r} is not an authority id")
    try:
        module = importlib.import_module(f"adapters.{authority}")
    except ModuleNotFoundError:
        raise LookupError(f"no adapter package adapters/{authority}/") from None
    spec = getattr(module, "ADAPTER", None)
    if not isinstance(spec, AdapterSpec) or spec.authority != authority:
        raise LookupError(f"adapters.{authority} does not define ADAPTER for {authority!r}")
    return spec
