"""Property-based: any declaration within the contract's bounds survives XML and back."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gun_contract.model.declaration import (
    Declarant,
    Declaration,
    Direction,
    DocumentRef,
    GoodsItem,
    Quantity,
    Stage,
)
from gun_hub.domain.routing import RoutingTable, load_routing_table, route_documents
from gun_hub.xml.declaration_codec import DeclarationCodec, encode_declaration
from tests.conftest import REPO

CODEC = DeclarationCodec()
ROUTING_CODES = [
    "C640",
    "N853",
    "C678",
    "C085",
    "N851",
    "C644",
    "C638",
    "C639",
    "C400",
    "C401",
    "C402",
    "LEMG",
    "Y900",
    "Y929",
    "C690",
    "X002",
]
UNITS = ["KGM", "GRM", "TNE", "LTR", "HLT", "MTQ", "MTK", "MTR", "NAR", "NPR", "CEN"]
COUNTRIES = ["FR", "NO", "DE", "CN", "US", "BR", "XK", "XC", "ZA", "JP"]
UPPER_ALNUM = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
REF_CHARS = UPPER_ALNUM + "._/-"

# Text that XML 1.0 can carry: no control characters, no surrogates, no lone CR (the
# parser normalises line ends), no leading/trailing blanks (the codec strips them).
xml_text = (
    st.text(
        alphabet=st.characters(
            blacklist_categories=("Cs", "Cc"), blacklist_characters="\ufffe\uffff"
        ),
        min_size=1,
        max_size=60,
    )
    .map(str.strip)
    .filter(bool)
)

amounts = st.decimals(min_value=Decimal("0.000001"), max_value=Decimal("9999999999"), places=6).map(
    lambda d: d.normalize() if d == d.to_integral() else d
)

quantities = st.builds(Quantity, value=amounts, unit=st.sampled_from(UNITS))

documents = st.builds(
    DocumentRef,
    code=st.sampled_from(ROUTING_CODES),
    reference=st.text(UPPER_ALNUM, min_size=1, max_size=1).flatmap(
        lambda head: st.text(REF_CHARS, max_size=30).map(lambda tail: head + tail)
    ),
    line=st.none() | st.integers(1, 9999),
    quantity=st.none() | quantities,
)

commodity_codes = st.sampled_from([6, 8, 10]).flatmap(
    lambda n: st.text("0123456789", min_size=n, max_size=n)
)


@st.composite
def goods_items(draw: st.DrawFn) -> tuple[GoodsItem, ...]:
    count = draw(st.integers(1, 5))
    numbers = draw(st.lists(st.integers(1, 999), min_size=count, max_size=count, unique=True))
    return tuple(
        GoodsItem(
            number=number,
            commodity_code=draw(commodity_codes),
            description=draw(xml_text),
            country_of_origin=draw(st.none() | st.sampled_from(COUNTRIES)),
            net_mass=draw(st.none() | quantities),
            documents=tuple(draw(st.lists(documents, max_size=4))),
        )
        for number in numbers
    )


declarations = st.builds(
    Declaration,
    reference=st.text(UPPER_ALNUM, min_size=1, max_size=1).flatmap(
        lambda head: st.text(REF_CHARS, min_size=5, max_size=34).map(lambda tail: head + tail)
    ),
    version=st.integers(1, 999999),
    stage=st.sampled_from(Stage),
    direction=st.sampled_from(Direction),
    procedure=st.text("0123456789", min_size=4, max_size=4),
    # hypothesis takes naive bounds and adds the time zone itself.
    lodged_at=st.datetimes(
        min_value=datetime(2000, 1, 1),  # noqa: DTZ001
        max_value=datetime(2099, 12, 31),  # noqa: DTZ001
        timezones=st.just(UTC),
    ),
    customs_office=st.just("FR000690"),
    declarant=st.builds(
        Declarant,
        eori=st.text(UPPER_ALNUM, min_size=3, max_size=15).map(lambda s: "FR" + s[:15]),
        name=xml_text.map(lambda s: s[:70]).filter(bool),
    ),
    country_of_dispatch=st.none() | st.sampled_from(COUNTRIES),
    country_of_destination=st.none() | st.sampled_from(COUNTRIES),
    goods_items=goods_items(),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(declarations)
def test_any_valid_declaration_round_trips_through_xml(declaration: Declaration) -> None:
    assert CODEC.decode(encode_declaration(declaration)) == declaration


@settings(max_examples=100, deadline=None)
@given(declarations)
def test_every_document_is_routed_or_decided_locally(declaration: Declaration) -> None:
    table: RoutingTable = load_routing_table(REPO / "config" / "routing.toml")
    routed = route_documents(declaration, table)
    quoted = sum(len(item.documents) for item in declaration.goods_items)
    assert len(routed.documents) == quoted
    for expected in routed.documents:
        assert (expected.authority is None) == (expected.local_verdict is not None)
