"""A declaration over a size limit that got no refusal is redriven once the limit is raised.

303dc55 made ``XML_OVERSIZED`` not redrivable from the clearance channel: "the REFUSE
stands and the clearance system sends a new version" (operations.md). That holds only
where the intake could sniff the reference and decide the REFUSE (``Intake._reject``).
The sniff looks at the first 4 KiB only (declaration_codec.py ``_SNIFF_WINDOW``); a
declaration whose Reference comes later (a prolog comment the clearance system's
generator writes, a long XML declaration) is dead-lettered with no decision at all: the
clearance system has no answer, there is no REFUSE to stand, and no new version is coming.
Once the operator raises ``GUN_HUB_HUB__MAX_DECLARATION_BYTES`` the redrive is the one way
to have it decided, and the desk now refuses it.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from gun_contract.dead_letter import HEADER_ERROR_KIND, HEADER_ERROR_REASON, header_value
from gun_hub.domain.routing import RoutingTable
from gun_hub.pipeline.intake import Intake
from gun_hub.pipeline.redrive import not_redrivable
from gun_hub.xml.declaration_codec import DeclarationCodec, sniff_identity
from gun_hub.xml.safe_parse import XmlLimits
from tests.builders import declaration_xml
from tests.unit.test_pipeline import SOURCE, Hub
from tests.unit.test_versions_and_recovery import REF


def test_an_oversized_declaration_refused_unread_is_offered_for_a_redrive(
    routing_table: RoutingTable, keys_dir: Path
) -> None:
    hub = Hub(routing_table, keys_dir)
    plain = declaration_xml(version=1)
    prolog, _, rest = plain.partition(b"\n")
    assert prolog.startswith(b"<?xml")
    # The same declaration, a generator's comment between its XML declaration and root.
    xml = prolog + b"\n<!-- " + b"x" * 5000 + b" -->\n" + rest
    assert sniff_identity(xml) is None  # its reference past the sniff's window
    where = replace(SOURCE, key=REF.encode())
    strict = Intake(
        hub.context, DeclarationCodec(XmlLimits(max_bytes=2000)), hub.cases, accept_plain=True
    )
    refused = strict.handle(xml, where)
    [dead] = refused.to(hub.topics.dlq)
    kind = header_value(dead.headers, HEADER_ERROR_KIND)
    assert kind == "XML_OVERSIZED"
    assert hub.decisions(refused) == [], "no REFUSE: the clearance system had no answer"

    # The limit raised (the hub's own intake: 1 MiB), the redrive would decide it...
    redriven = hub.intake_as_keyed(xml, where)
    assert redriven.to(hub.topics.requests("dgal")), "read again, it is decided"
    # ... and the desk does not offer it.
    why_not = not_redrivable(
        "hub.intake",
        hub.topics.declarations,
        hub.topics,
        kind,
        header_value(dead.headers, HEADER_ERROR_REASON) or "",
    )
    assert why_not is None, why_not
