"""``gun-hub dlq redrive --kind K --since 6h`` reads the dead-letter list page by page,
each page with the same ``since``: the moment "6 hours back" is taken once, when the
command starts. Taken again for each page, the window's start moved on by the time the
pages took, and a dead letter at its edge, inside it on the first page, fell out of it on
the next (a review of stop 58).
"""

from __future__ import annotations

import urllib.parse
from typing import Any

from gun_hub.cli.dlq import _redrive_kind


class PagedDesk:
    """The officer listener's dead-letter list, two pages of dead letters that cannot be
    redriven, remembering each query it was asked."""

    def __init__(self) -> None:
        self.queries: list[dict[str, list[str]]] = []

    def get(self, path: str) -> tuple[int, Any]:
        query = urllib.parse.parse_qs(urllib.parse.urlparse(path).query)
        self.queries.append(query)
        row = {"id": f"0:{len(self.queries)}", "redrivable": False, "not_redrivable": "no"}
        following = "c1" if len(self.queries) == 1 else None
        return 200, {"dead_letters": [row], "next_after": following, "next_offset": None}

    def post(self, path: str, body: dict[str, Any] | None = None) -> tuple[int, Any]:
        raise AssertionError(f"nothing here can be redriven: {path}")

    try_post = post


def test_every_page_of_a_bulk_redrive_asks_since_the_same_moment() -> None:
    desk = PagedDesk()
    _redrive_kind(desk, "ENVELOPE_UNKNOWN_KID", "6h", None)  # type: ignore[arg-type]
    assert len(desk.queries) == 2
    assert desk.queries[1]["after"] == ["c1"]
    assert desk.queries[0]["since"] == desk.queries[1]["since"]
