"""Issue 13, item 6: one trace id per declaration version, in every record header the hub
and adapters write about it, every log line about it and every partner call."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from adapters.base.certex import CertexHttpPartner
from gun_contract.dead_letter import SourcePosition
from gun_contract.effects import Effects
from gun_contract.logs import JsonFormatter, TextFormatter, configure_logging
from gun_contract.model.exchange import Operation
from gun_contract.model.verdicts import Verdict
from gun_contract.settings import AdapterSettings
from gun_contract.trace import (
    TRACE_HEADER,
    is_trace_id,
    trace_id_for,
    trace_in,
    trace_of_traceparent,
    traceparent,
    tracing,
)
from gun_hub.domain.routing import RoutingTable
from tests.adapter_fixtures import partner_request
from tests.builders import declaration_xml, goods_item
from tests.partner_fixtures import running_partner
from tests.unit.test_pipeline import Hub

REF = "26FR000690I0000012"


@pytest.fixture
def hub(routing_table: RoutingTable, keys_dir: Path) -> Hub:
    return Hub(routing_table, keys_dir)


def traces(outbox: Effects, topic: str) -> list[str | None]:
    return [trace_in(record.headers) for record in outbox.to(topic)]


def test_a_trace_id_is_the_w3c_trace_id_format_and_the_same_for_the_same_version() -> None:
    first = trace_id_for(REF, 1)
    assert is_trace_id(first)
    assert first == trace_id_for(REF, 1)
    assert first != trace_id_for(REF, 2)
    assert first != trace_id_for("26FR000690I0000013", 1)


def test_a_traceparent_carries_the_trace_id_with_a_new_span_per_call() -> None:
    trace_id = trace_id_for(REF, 1)
    one, two = traceparent(trace_id), traceparent(trace_id)
    assert one != two
    assert trace_of_traceparent(one) == trace_of_traceparent(two) == trace_id
    assert trace_of_traceparent("00-" + "0" * 32 + "-0123456789abcdef-01") is None
    assert trace_of_traceparent("garbage") is None


def test_a_malformed_trace_header_is_no_trace() -> None:
    assert trace_in([(TRACE_HEADER, b"not-a-trace")]) is None
    assert trace_in([(TRACE_HEADER, None), ("other", b"x")]) is None


def test_every_record_about_a_version_carries_its_trace(hub: Hub) -> None:
    xml = declaration_xml(items=(goods_item(1, mentions=("73000",)),))
    sent = hub.intake.handle(xml, SourcePosition("gun.declarations", 0, 0))
    decided = hub.answer(sent, "dgal", Verdict.NOT_FOUND)
    expected = trace_id_for(REF, 1)
    topics = hub.topics
    for outbox in (sent, decided):
        for topic in (topics.status, topics.facts, topics.requests("dgal")):
            assert set(traces(outbox, topic)) <= {expected}, topic
    assert traces(sent, topics.requests("dgal")) == [expected]
    assert traces(decided, topics.decision_outbox) == [expected]
    # The decision link and the override link; a checkpoint signed along carries none.
    audit = decided.to(topics.audit)
    links = [r for r in audit if json.loads(r.value)["kind"] != "CHECKPOINT"]
    assert [trace_in(r.headers) for r in links] == [expected, expected]
    assert len(traces(sent, topics.status)) >= 2


def test_a_newer_version_has_a_trace_of_its_own(hub: Hub) -> None:
    hub.intake.handle(declaration_xml(version=1), SourcePosition("gun.declarations", 0, 0))
    second = hub.intake.handle(declaration_xml(version=2), SourcePosition("gun.declarations", 0, 1))
    requests = second.to(hub.topics.requests("dgal"))
    assert [trace_in(r.headers) for r in requests] == [trace_id_for(REF, 2)]


def log_line(formatter: logging.Formatter, **extra: object) -> str:
    stream = io.StringIO()
    logger = logging.getLogger("test.trace")
    configure_logging("INFO", component="test", log_format="json", stream=stream)
    logging.getLogger().handlers[0].setFormatter(formatter)
    logger.info("answered RESERVE", extra=extra)
    return stream.getvalue()


@pytest.fixture
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.mark.usefixtures("restore_logging")
def test_a_log_line_made_while_handling_a_version_names_its_trace() -> None:
    trace_id = trace_id_for(REF, 1)
    with tracing(trace_id):
        inside = json.loads(log_line(JsonFormatter("adapter")))
    outside = json.loads(log_line(JsonFormatter("adapter")))
    assert inside["trace_id"] == trace_id
    assert "trace_id" not in outside


@pytest.mark.usefixtures("restore_logging")
def test_a_log_call_may_name_the_trace_itself_and_text_lines_show_it() -> None:
    trace_id = trace_id_for(REF, 3)
    line = log_line(TextFormatter("hub", colour=False), trace_id=trace_id)
    assert line.rstrip().endswith(f"trace={trace_id}")


@pytest.mark.usefixtures("restore_logging")
async def test_a_partner_call_carries_the_trace_and_the_partner_logs_it(
    samples: Path, tmp_path: Path
) -> None:
    stream = io.StringIO()
    configure_logging("INFO", component="partner-sim.dgal", log_format="json", stream=stream)
    trace_id = trace_id_for("26FR000690I0000401", 1)
    async with running_partner(
        samples / "partners" / "dgal-documents.json", tmp_path / "l.db"
    ) as partner:
        adapter = CertexHttpPartner(AdapterSettings(partner_url=partner.url), "dgal")
        try:
            with tracing(trace_id):
                await adapter.answer(partner_request(Operation.RESERVE, version=1))
            await adapter.answer(partner_request(Operation.CHECK, version=1))
        finally:
            await adapter.close()
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    calls = [line for line in lines if line["logger"] == "partner_sim.server"]
    assert [c.get("trace_id") for c in calls] == [trace_id, None]
    assert "PUT reservation of declaration" in calls[0]["message"]
    assert "ACCEPTED" in calls[0]["message"]
    assert "CHEDP" not in calls[0]["message"]  # the declaration, never the document
