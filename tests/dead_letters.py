"""What the tests read of the dead letters a handling wrote to its outbox."""

from __future__ import annotations

from gun_contract.dead_letter import (
    HEADER_COMPONENT,
    HEADER_ERROR_KIND,
    HEADER_ERROR_REASON,
    HEADER_REFERENCE,
    header_value,
)
from gun_contract.effects import Effects

_NAMED = (
    ("kind", HEADER_ERROR_KIND),
    ("reason", HEADER_ERROR_REASON),
    ("component", HEADER_COMPONENT),
    ("reference", HEADER_REFERENCE),
)


def dead_letters_in(outbox: Effects, dlq: str) -> list[dict[str, str | None]]:
    """Each dead letter ``outbox`` holds for ``dlq``: its kind, reason, component and
    reference headers, by those names."""
    return [
        {name: header_value(record.headers, header) for name, header in _NAMED}
        for record in outbox.to(dlq)
    ]
