"""Parse plus validate time of declarations (safe parser, precompiled XSD).

Run: ./tasks bench-parse
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from functools import partial

from benchmarks.common import calls_made, save, summary_us, time_per_call
from gun_contract.model.decision import DocumentResult
from gun_contract.model.declaration import (
    Declarant,
    Declaration,
    Direction,
    DocumentRef,
    GoodsItem,
    Quantity,
    Stage,
)
from gun_contract.model.verdicts import Verdict
from gun_hub.cli.progress import progress_bar
from gun_hub.domain.decide import decide
from gun_hub.xml.decision_codec import encode_decision
from gun_hub.xml.declaration_codec import DeclarationCodec, encode_declaration


def declaration_with(items: int, documents_per_item: int) -> Declaration:
    return Declaration(
        reference="26FR000690I0000012",
        version=1,
        stage=Stage.LODGED,
        direction=Direction.IMPORT,
        procedure="4000",
        lodged_at=datetime(2026, 11, 22, 10, tzinfo=UTC),
        customs_office="FR000690",
        declarant=Declarant(eori="FR12345678901234", name="Example SARL"),
        country_of_dispatch="NO",
        country_of_destination="FR",
        goods_items=tuple(
            GoodsItem(
                number=n,
                commodity_code="0302130000",
                description="Fresh Atlantic salmon, whole, gutted, on ice",
                country_of_origin="NO",
                net_mass=Quantity(value=Decimal("1200.5"), unit="KGM"),
                documents=tuple(
                    DocumentRef(
                        code="N853",
                        reference=f"CHEDP.FR.2026.{n:03d}{d:04d}",
                        line=d + 1,
                        quantity=Quantity(value=Decimal("1200.5"), unit="KGM"),
                    )
                    for d in range(documents_per_item)
                ),
            )
            for n in range(1, items + 1)
        ),
    )


# label: (goods items, documents per item, calls per repeat)
SHAPES = {
    "typical (3 items, 2 documents each)": (3, 2, 2000),
    "large (99 items, 3 documents each)": (99, 3, 40),
}
RENDER_CALLS = 5000


def main() -> None:
    codec = DeclarationCodec()
    result: dict[str, object] = {}
    total = sum(calls_made(calls) for _, _, calls in SHAPES.values()) + calls_made(RENDER_CALLS)
    with progress_bar("bench-parse", total=total, unit="calls") as bar:
        for label, (items, documents, calls) in SHAPES.items():
            data = encode_declaration(declaration_with(items, documents))
            parsing = summary_us(
                time_per_call(partial(codec.decode, data), calls=calls, progress=bar)
            )
            result[label] = {"bytes": len(data), **parsing}
            print(f"parse + validate, {label}: {len(data)} bytes, {parsing['median_us']} us median")
        decision = decide(
            reference="26FR000690I0000012",
            version=1,
            stage=Stage.LODGED,
            results=[
                DocumentResult(
                    goods_item=n,
                    code="N853",
                    reference=f"R{n}",
                    authority="dgal",
                    verdict=Verdict.VALID,
                )
                for n in range(1, 7)
            ],
            decided_at=datetime.now(UTC),
        )
        figures = time_per_call(lambda: encode_decision(decision), calls=RENDER_CALLS, progress=bar)
        rendering = summary_us(figures)
        result["render decision (6 documents)"] = rendering
        print(f"render decision XML (6 documents): {rendering['median_us']} us median")
    print(f"saved {save('parse', result)}")


if __name__ == "__main__":
    main()
