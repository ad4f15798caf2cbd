"""``?after=`` is checked as any input (a cursor may be written by hand): one whose JSON
is of the right shape but names a string UTF-8 cannot encode (a lone surrogate, which
JSON's ``\\ud800`` escape makes and Python's ``json`` accepts) is no cursor of the list
either. It passed ``gun_hub.web.common.after`` (a ``str`` is a ``str``) and made SQLite's
binding raise ``UnicodeEncodeError`` in the query thread: a 500 where a 400 is due.
"""

from __future__ import annotations

import base64

import pytest

from tests.unit.test_a_list_paged_by_cursor_neither_skips_nor_repeats_a_row_as_rows_arrive import (
    LISTS,
    Hub,
    Officer,
    hub_and_officer,
)

__all__ = ["hub_and_officer"]  # the fixture, shared

# The right number and types of items for each list, the first a lone surrogate.
LONE_SURROGATE = {
    "documents": b'["\\ud800","CHEDP.B.000","dgal"]',
    "written-off": b'["dgal","\\udfff","CHEDP.B.000",1,"KGM"]',
}


@pytest.mark.parametrize("listed", list(LISTS))
async def test_a_cursor_naming_a_lone_surrogate_is_refused_as_no_cursor_of_the_list(
    hub_and_officer: tuple[Hub, Officer], listed: str
) -> None:
    _, officer = hub_and_officer
    path, _ = LISTS[listed]
    crafted = base64.urlsafe_b64encode(LONE_SURROGATE[listed]).decode().rstrip("=")
    code, body = await officer.read(f"{path}&after={crafted}")
    assert code == 400, f"{code}: {body!r}"
    assert body["error"] == "after: not a cursor of this list"
