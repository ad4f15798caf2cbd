"""A declaration the clearance system lodged, refused ``XML_OVERSIZED`` (over
``GUN_HUB_HUB__MAX_DECLARATION_BYTES``), is offered for a redrive "a limit of the
settings" the operator may raise (operations.md, "Dead letters"; redrive.py,
``REFUSED_AS_IT_IS`` leaves it out on purpose). But its reference could be read, so the
intake decided REFUSE at the original's position (``Intake._reject``), and a redrive is
that position read again: a redelivery of a decided case. Once the limit is raised, the
redrive decides nothing, asks nothing, says nothing: the desk answered "redriven", the
declaration stays refused, and the operator believes it fixed.

Either the desk does not offer it (as for the other ``XML_*`` kinds the clearance system had
its REFUSE for), or the redrive does what it is offered for.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from gun_contract.dead_letter import HEADER_ERROR_KIND, HEADER_ERROR_REASON, header_value
from gun_contract.model.verdicts import Outcome
from gun_hub.domain.routing import RoutingTable
from gun_hub.pipeline.intake import Intake
from gun_hub.pipeline.redrive import not_redrivable
from gun_hub.xml.declaration_codec import DeclarationCodec, sniff_identity
from gun_hub.xml.safe_parse import XmlLimits
from tests.builders import declaration_xml
from tests.unit.test_pipeline import SOURCE, Hub


def test_a_redrive_offered_after_a_size_limit_is_raised_is_not_a_redrive_that_does_nothing(
    routing_table: RoutingTable, keys_dir: Path
) -> None:
    hub = Hub(routing_table, keys_dir)
    xml = declaration_xml(version=1)
    identity = sniff_identity(xml)
    assert identity is not None
    where = replace(SOURCE, key=identity.reference.encode())
    # The limit of the settings, lower than this declaration.
    strict = Intake(
        hub.context, DeclarationCodec(XmlLimits(max_bytes=200)), hub.cases, accept_plain=True
    )
    refused = strict.handle(xml, where)
    [dead] = refused.to(hub.topics.dlq)
    kind = header_value(dead.headers, HEADER_ERROR_KIND)
    assert kind == "XML_OVERSIZED"
    assert hub.decisions(refused) == [(identity.reference, 1, Outcome.REFUSE)]

    offered = (
        not_redrivable(
            "hub.intake",
            hub.topics.declarations,
            hub.topics,
            kind,
            header_value(dead.headers, HEADER_ERROR_REASON) or "",
        )
        is None
    )
    # The operator raises the limit (the hub's own intake: the default 1 MiB) and
    # redrives: the original read again at its position.
    redriven = hub.intake_as_keyed(xml, where)
    did_something = bool(
        hub.decisions(redriven)
        or redriven.to(hub.topics.requests("dgal"))
        or hub.statuses(redriven)
    )
    assert not offered or did_something, (
        "XML_OVERSIZED from the clearance channel is offered for a redrive that, once the "
        "limit is raised, decides, asks and says nothing (its REFUSE stands)"
    )
