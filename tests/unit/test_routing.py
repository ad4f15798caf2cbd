"""Document codes route to their authority; requests carry only what that authority checks."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from gun_contract.model.exchange import Operation
from gun_contract.model.verdicts import Verdict
from gun_hub.domain.requests import build_requests
from gun_hub.domain.routing import (
    RoutingTable,
    RoutingTableError,
    build_routing_table,
    route_documents,
)
from tests.builders import declaration, document, goods_item

EXPECTED_ROUTES = {
    "C640": "dgal",
    "N853": "dgal",
    "C678": "dgal",
    "C085": "dgal",
    "N851": "dgal",
    "C644": "dgal",
    "C638": "cites",
    "C639": "cites",
    "C400": "cites",
    "C401": "cites",
    "C402": "cites",
    "LEMG": "dga",
}


@pytest.mark.parametrize(("code", "authority"), sorted(EXPECTED_ROUTES.items()))
def test_every_domain_code_routes_to_its_authority(
    routing_table: RoutingTable, code: str, authority: str
) -> None:
    assert routing_table.authority_for(code) == authority


def test_the_table_routes_no_code_beyond_the_domain_list(routing_table: RoutingTable) -> None:
    assert dict(routing_table.authority_by_code) == EXPECTED_ROUTES


def test_war_material_is_confidential(routing_table: RoutingTable) -> None:
    assert routing_table.is_confidential("dga")
    assert not routing_table.is_confidential("dgal")


def test_y_codes_are_exempt_and_unknown_codes_unrouted(routing_table: RoutingTable) -> None:
    routed = route_documents(
        declaration(
            items=(
                goods_item(1, (document("Y900", "X1", None, None),)),
                goods_item(2, (document("C690", "FLEGT-1", None, None),)),
            )
        ),
        routing_table,
    )
    assert routed.authorities == ()
    assert [r.verdict for r in routed.local_results()] == [Verdict.EXEMPT, Verdict.UNROUTED]


def test_each_authority_gets_only_its_own_items_and_documents(
    routing_table: RoutingTable,
) -> None:
    decl = declaration(
        items=(
            goods_item(1, (document("N853", "CHEDP-1"), document("C638", "CITES-1"))),
            goods_item(2, (document("LEMG", "LIC-1", 1, "2", "NAR"),)),
            goods_item(3, (document("Y900", "EX-1", None, None),)),
        )
    )
    routed = route_documents(decl, routing_table)
    requests = build_requests(
        decl, routing_table, routed.authorities, Operation.RESERVE, datetime.now(UTC)
    )
    by_authority = {r.authority: r for r in requests}
    assert sorted(by_authority) == ["cites", "dga", "dgal"]
    assert [(i.number, [d.reference for d in i.documents]) for i in by_authority["dgal"].items] == [
        (1, ["CHEDP-1"])
    ]
    assert [
        (i.number, [d.reference for d in i.documents]) for i in by_authority["cites"].items
    ] == [(1, ["CITES-1"])]
    assert [i.number for i in by_authority["dga"].items] == [2]
    assert {r.request_id for r in requests} == {
        f"{decl.reference}/1/{a}/RESERVE" for a in ("cites", "dga", "dgal")
    }


def test_extra_routes_add_codes_at_run_time() -> None:
    table = build_routing_table(
        {"authorities": {"dga": {"name": "DGA", "codes": ["LEMG"]}}}, {"E999": "dga"}
    )
    assert table.authority_for("E999") == "dga"


@pytest.mark.parametrize(
    ("raw", "extra", "message"),
    [
        ({"authorities": {}}, None, "routing table is invalid"),
        (
            {
                "authorities": {
                    "a1": {"name": "A", "codes": ["C640"]},
                    "b1": {"name": "B", "codes": ["C640"]},
                }
            },
            None,
            "routed to both a1 and b1",
        ),
        (
            {"authorities": {"dgal": {"name": "D", "codes": ["c64"]}}},
            None,
            "malformed document code",
        ),
        ({"authorities": {"Bad-Id": {"name": "D", "codes": ["C640"]}}}, None, "authority id"),
        (
            {"authorities": {"dgal": {"name": "D", "codes": ["Y640"]}}},
            None,
            "both routed and exempt",
        ),
        (
            {"authorities": {"dgal": {"name": "D", "codes": ["C640"]}}},
            {"E999": "nobody"},
            "unknown authority",
        ),
        (
            {"authorities": {"dgal": {"name": "D", "codes": ["C640"]}}, "surprise": 1},
            None,
            "invalid",
        ),
    ],
)
def test_a_bad_table_is_refused_with_a_message_naming_the_fault(
    raw: dict[str, object], extra: dict[str, str] | None, message: str
) -> None:
    with pytest.raises(RoutingTableError, match=message):
        build_routing_table(raw, extra)
