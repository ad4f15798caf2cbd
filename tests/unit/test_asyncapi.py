"""The AsyncAPI document: generated from the registry, valid AsyncAPI 3.0, true to the wire.

Validation is offline: the official AsyncAPI 3.0.0 meta-schema is vendored in
``schemas/vendor`` and any reference it would need from the network fails the test.
"""

from __future__ import annotations

import base64
import copy
import json
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

import pytest
import xmlschema
import yaml
from jsonschema import Draft7Validator
from jsonschema.validators import validator_for
from referencing import Registry, Resource
from referencing.exceptions import NoSuchResource
from typer.testing import CliRunner

from gun_contract.dead_letter import SourcePosition
from gun_contract.effects import Effects, OutgoingRecord
from gun_contract.envelope import ContentType
from gun_contract.model.exchange import AuthorityRequest
from gun_contract.model.verdicts import Verdict
from gun_contract.security.entitlements import CLEARANCE_PARTY, HUB_PARTY, Entitlements
from gun_contract.security.keystore import PartyKeys
from gun_contract.security.state_cipher import StateCipher
from gun_contract.settings import SecuritySettings, Settings
from gun_contract.topics import Payload, TopicRegistry, TopicSpec, topic_registry
from gun_hub.cli import app as cli_app
from gun_hub.cli.asyncapi import deployment_of, document_for
from gun_hub.cli.kafka import registry_for
from gun_hub.domain.risk import RiskRules
from gun_hub.domain.routing import RoutingTable
from gun_hub.pipeline.admission import Claim
from gun_hub.pipeline.audit_keeper import AuditKeeper
from gun_hub.pipeline.correlation import Correlation
from gun_hub.pipeline.deadlines import Deadlines
from gun_hub.pipeline.hub_context import HubContext
from gun_hub.pipeline.intake import Intake
from gun_hub.security.audit import AuditTrail, record_hash
from gun_hub.xml.declaration_codec import DeclarationCodec
from gun_tools.asyncapi import UndocumentedTopic, build_document, render_yaml
from gun_tools.asyncapi.payloads import JOSE, JSON, XML
from tests.adapter_fixtures import adapter_runner
from tests.builders import answer_to, declaration_xml, goods_item
from tests.builders import document as quoted
from tests.conftest import REPO, envelope_of

COMMITTED = REPO / "schemas" / "asyncapi.yaml"
META_SCHEMA = REPO / "schemas" / "vendor" / "asyncapi-3.0.0.schema.json"
NOW = datetime(2026, 11, 22, 10, 0, tzinfo=UTC)


# referencing's stubs mark its attrs classes with a decorator only pyright reads
# (``__dataclass_transform__``), so mypy sees no constructor arguments:
# ``NoSuchResource``'s one (``ref``) is given by position, and ``Registry``'s
# ``retrieve`` (its fourth) through Any.
def _no_network(uri: str) -> Resource[Any]:
    raise NoSuchResource(uri)


OFFLINE: Registry[Any] = cast(Any, Registry)(retrieve=_no_network)


@pytest.fixture(scope="module")
def default_settings() -> Iterator[Settings]:
    """The settings of a machine with no GUN_HUB_ variable set: the committed document's."""
    with pytest.MonkeyPatch.context() as patch:
        for name in [name for name in os.environ if name.startswith("GUN_HUB_")]:
            patch.delenv(name)
        yield Settings()


@pytest.fixture(scope="module")
def registry(default_settings: Settings) -> TopicRegistry:
    return registry_for(default_settings)


@pytest.fixture(scope="module")
def document(default_settings: Settings) -> dict[str, Any]:
    return document_for(default_settings)


@pytest.fixture(scope="module")
def meta_validator() -> Draft7Validator:
    meta = json.loads(META_SCHEMA.read_text(encoding="utf-8"))
    cls = validator_for(meta)
    assert cls is Draft7Validator  # the 3.0.0 meta-schema is written in draft-07
    cls.check_schema(meta)
    return Draft7Validator(meta, registry=OFFLINE, format_checker=Draft7Validator.FORMAT_CHECKER)


def schema_validator(document: dict[str, Any], schema: dict[str, Any]) -> Draft7Validator:
    """Validates against ``schema``, its ``#/components/...`` references resolved in the
    document (AsyncAPI schemas are a superset of draft-07)."""
    root = {**schema, "components": document["components"]}
    return Draft7Validator(root, registry=OFFLINE, format_checker=Draft7Validator.FORMAT_CHECKER)


def resolve(document: dict[str, Any], pointer: str) -> Any:
    assert pointer.startswith("#/"), pointer
    node: Any = document
    for part in pointer[2:].split("/"):
        node = node[part.replace("~1", "/").replace("~0", "~")]
    return node


def errors(validator: Draft7Validator, instance: Any) -> list[str]:
    return [
        f"{'/'.join(map(str, error.absolute_path))}: {error.message[:200]}"
        for error in validator.iter_errors(instance)
    ]


# -- the document and the file ----------------------------------------------------------


def test_the_committed_file_is_what_the_registry_generates(document: dict[str, Any]) -> None:
    committed = COMMITTED.read_text(encoding="utf-8")
    assert committed == render_yaml(document), "regenerate it: gun-hub asyncapi"
    assert yaml.safe_load(committed) == document


def test_generation_is_deterministic_and_writes_no_yaml_aliases(
    default_settings: Settings,
) -> None:
    def aliases(text: str) -> int:
        return sum(isinstance(event, yaml.AliasEvent) for event in yaml.parse(text))

    document = document_for(default_settings)
    text = render_yaml(document)
    assert text == render_yaml(document_for(default_settings))
    # The messages share their key schemas: plain safe_dump would write them as aliases.
    assert aliases(yaml.safe_dump(document)) > 0
    assert aliases(text) == 0


def test_the_document_is_valid_asyncapi_3(
    document: dict[str, Any], meta_validator: Draft7Validator
) -> None:
    assert errors(meta_validator, document) == []


@pytest.mark.parametrize(
    ("where", "breakage"),
    [
        ("a channel address that is a number", lambda d: d["channels"]["status"].update(address=7)),
        (
            "partitions written as text",
            lambda d: d["channels"]["status"]["bindings"]["kafka"].update(partitions="four"),
        ),
        (
            "retention as a string, as the broker takes it",
            lambda d: d["channels"]["audit"]["bindings"]["kafka"]["topicConfiguration"].update(
                {"retention.ms": "-1"}
            ),
        ),
        (
            "an AsyncAPI 2 action",
            lambda d: d["operations"]["hubReceivesDeclarations"].update(action="subscribe"),
        ),
        ("an unknown field on a channel", lambda d: d["channels"]["dlq"].update(topic="gun.dlq")),
        ("no version in info", lambda d: d["info"].pop("version")),
        (
            "an OpenAPI discriminator object",
            lambda d: d["components"]["schemas"]["Fact"].update(
                discriminator={"propertyName": "kind"}
            ),
        ),
    ],
)
def test_a_broken_document_is_rejected(
    document: dict[str, Any], meta_validator: Draft7Validator, where: str, breakage: Any
) -> None:
    broken = copy.deepcopy(document)
    breakage(broken)
    assert errors(meta_validator, broken), f"{where} was accepted"


def test_every_reference_points_at_something(document: dict[str, Any]) -> None:
    refs: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            refs.extend(value for key, value in node.items() if key == "$ref")
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(document)
    assert len(refs) > 50
    for pointer in refs:
        assert resolve(document, pointer) is not None, pointer


def test_payload_schemas_use_no_keyword_newer_than_draft_07(document: dict[str, Any]) -> None:
    text = json.dumps(document["components"]["schemas"])
    for keyword in ("$defs", "prefixItems", "unevaluatedProperties", "dependentSchemas"):
        assert f'"{keyword}"' not in text


# -- topics, channels, operations -------------------------------------------------------


def test_every_topic_has_its_channel_with_the_registry_layout(
    document: dict[str, Any], registry: TopicRegistry, default_settings: Settings
) -> None:
    channels = {channel["address"]: channel for channel in document["channels"].values()}
    assert sorted(channels) == sorted(registry.names())
    partitions = default_settings.kafka.partitions
    for spec in registry.specs():
        kafka = channels[spec.name]["bindings"]["kafka"]
        assert kafka["partitions"] == (partitions if spec.keyed else 1), spec.name
        assert kafka["replicas"] == default_settings.kafka.replication_factor
        config = spec.broker_config()
        assert kafka["topicConfiguration"]["cleanup.policy"] == [config["cleanup.policy"]]
        assert kafka["topicConfiguration"]["retention.ms"] == int(config["retention.ms"])
        assert spec.description in channels[spec.name]["description"]


def test_every_topic_has_a_sender_and_a_receiver(
    document: dict[str, Any], registry: TopicRegistry
) -> None:
    address_of = {f"#/channels/{cid}": c["address"] for cid, c in document["channels"].items()}
    actions: dict[str, set[str]] = {name: set() for name in registry.names()}
    for operation in document["operations"].values():
        actions[address_of[operation["channel"]["$ref"]]].add(operation["action"])
        for message in operation["messages"]:
            assert message["$ref"].startswith(operation["channel"]["$ref"] + "/messages/")
    assert {name: sorted(found) for name, found in actions.items()} == {
        name: ["receive", "send"] for name in registry.names()
    }


def test_operations_are_named_by_who_does_what(document: dict[str, Any]) -> None:
    operations = document["operations"]
    assert operations["clearanceSystemSendsDeclarations"]["action"] == "send"
    # The intake gateway is a second sender (ADR 0011).
    assert operations["intakeGatewaySendsDeclarations"]["channel"] == {
        "$ref": "#/channels/declarations"
    }
    assert operations["hubReceivesDeclarations"]["action"] == "receive"
    assert operations["adapterDgalReceivesRequestsDgal"]["bindings"]["kafka"]["groupId"] == {
        "type": "string",
        "enum": ["gun-adapter-dgal"],
    }
    assert operations["clearanceSystemReceivesDecisions"]["channel"] == {
        "$ref": "#/channels/decisions"
    }


def test_payloads_follow_the_registry_kind(
    document: dict[str, Any], registry: TopicRegistry
) -> None:
    expected = {
        Payload.JSON: JSON,
        Payload.DECLARATION_XML: XML,
        Payload.ENVELOPE: JOSE,
        Payload.SIGNED: JOSE,
        Payload.ORIGINAL_BYTES: "application/octet-stream",
        Payload.STATE_SEALED: "application/octet-stream",
        Payload.TICKS: "application/octet-stream",
    }
    for spec in registry.specs():
        message = _message_of(document, spec.name)
        assert message["contentType"] == expected[spec.payload], spec.name
        payload = resolve(document, message["payload"]["$ref"])
        if spec.payload is Payload.ENVELOPE:
            assert re.fullmatch(payload["pattern"], "hdr.key.iv.ciphertext.tag"), spec.name
            assert not re.fullmatch(payload["pattern"], "hdr.payload.signature"), spec.name
            plaintext = resolve(document, payload["x-plaintext"]["$ref"])
            assert plaintext["title"] in (
                "AuthorityRequest",
                "AuthorityResponse",
                "DeclarationXml",
                "DecisionXml",
            )
            if "x-xsd" in plaintext:
                assert (REPO / "schemas" / plaintext["x-xsd"]).is_file()
        if spec.payload is Payload.SIGNED:
            assert re.fullmatch(payload["pattern"], "hdr.payload.signature"), spec.name
            assert not re.fullmatch(payload["pattern"], "hdr.key.iv.ciphertext.tag"), spec.name
            assert resolve(document, payload["x-payload"]["$ref"])["title"] == "PartnerHealth"


def test_keys_say_what_they_are(document: dict[str, Any], registry: TopicRegistry) -> None:
    def key(topic: str) -> dict[str, Any]:
        schema: dict[str, Any] = _message_of(document, topic)["bindings"]["kafka"]["key"]
        return schema

    assert "declaration reference" in key(registry.declarations)["description"]
    assert key(registry.requests("dgal"))["pattern"] == key(registry.decisions)["pattern"]
    assert key(registry.ops_lag)["type"] == "null"
    assert key(registry.audit)["type"] == "null"
    assert key(registry.ops_health)["enum"] == list(registry.authorities)


# -- generation fails loudly ------------------------------------------------------------


@dataclass(frozen=True)
class _RegistryWithATopicMore(TopicRegistry):
    extra: TopicSpec | None = None

    def specs(self) -> list[TopicSpec]:
        return [*TopicRegistry.specs(self), *([self.extra] if self.extra else [])]


def test_a_topic_without_a_message_stops_generation(
    registry: TopicRegistry, default_settings: Settings
) -> None:
    alerts = TopicSpec("gun.ops.alerts", "hub", "operations", Payload.JSON, "Alerts.")
    bigger = _RegistryWithATopicMore(registry.prefix, registry.authorities, alerts)
    with pytest.raises(UndocumentedTopic, match=r"gun\.ops\.alerts"):
        build_document(bigger, deployment_of(default_settings))


def test_a_topic_whose_payload_kind_changed_stops_generation(
    registry: TopicRegistry, default_settings: Settings
) -> None:
    class StatusAsXml(TopicRegistry):
        def specs(self) -> list[TopicSpec]:
            return [
                TopicSpec(s.name, s.producer, s.consumer, Payload.DECLARATION_XML, s.description)
                if s.name == self.status
                else s
                for s in TopicRegistry.specs(self)
            ]

    with pytest.raises(UndocumentedTopic, match=r"gun\.status carries 'declaration XML"):
        build_document(
            StatusAsXml(registry.prefix, registry.authorities), deployment_of(default_settings)
        )


# -- examples ---------------------------------------------------------------------------


def test_every_example_validates_against_its_message(document: dict[str, Any]) -> None:
    messages = document["components"]["messages"]
    validated: set[str] = set()
    for name, message in messages.items():
        for example in message.get("examples", []):
            for part in ("payload", "headers"):
                if part in example:
                    validator = schema_validator(document, message[part])
                    assert errors(validator, example[part]) == [], f"{name} {part}"
                    validated.add(f"{name} {part}")
    json_messages = {name for name, m in messages.items() if m["contentType"] == JSON}
    assert {f"{name} payload" for name in json_messages} <= validated
    assert {"DeadLetter headers", "Decision headers"} <= validated
    # The envelopes' plaintexts, the signed heartbeat's payload.
    for name in ("AuthorityRequest", "AuthorityResponse", "PartnerHealth"):
        schema = document["components"]["schemas"][name]
        [example] = schema["examples"]
        assert errors(schema_validator(document, schema), example) == [], name


def test_a_wrong_example_is_caught(document: dict[str, Any]) -> None:
    status = document["components"]["messages"]["StatusEvent"]
    [example] = status["examples"]
    wrong = {**example["payload"], "kind": "TELEPORTED", "version": "one"}
    found = errors(schema_validator(document, status["payload"]), wrong)
    assert len(found) == 2, found


# -- the document against the records the hub really writes ----------------------------


@pytest.fixture
def written(routing_table: RoutingTable, keys_dir: Path) -> tuple[TopicRegistry, list[Any]]:
    """Every record of a few declarations' lives: released (with write-offs), refused as
    unreadable, decided in degraded mode, a later version's takeover notices, plus a
    forged answer and its audit record."""
    topics = topic_registry("gun", routing_table.authorities)
    cases: dict[bytes, bytes] = {}
    clock = [NOW]
    context = HubContext(
        topics=topics,
        routing=routing_table,
        envelope=envelope_of(HUB_PARTY, topics, keys_dir),
        audit=AuditTrail(
            {},
            PartyKeys.load(keys_dir, HUB_PARTY).signing_key,
            checkpoint_every=1,  # a signed checkpoint after every record
            clock=lambda: clock[0],
        ),
        cases=cases,
        open_cases=dict[bytes, bytes](),
        risk_rules=RiskRules(),
        request_deadline_s=30,
        outbox_cipher=StateCipher.load(keys_dir, HUB_PARTY),
        outbox_partitions=4,
        clock=lambda: clock[0],
    )
    intake = Intake(context, DeclarationCodec(), cases)
    correlation = Correlation(context, cases)
    records: list[OutgoingRecord] = []

    def delivered(outbox: Effects) -> list[OutgoingRecord]:
        """The broker acknowledges every record of ``outbox``."""
        for confirm in outbox.after_delivery:
            confirm()
        records.extend(outbox.records)
        return list(outbox.records)

    def answer(pending: list[OutgoingRecord]) -> None:
        """Each authority answers VALID to each request, and to what those answers cause."""
        while pending:
            record = pending.pop(0)
            authority = record.topic.removeprefix(f"{topics.prefix}.requests.")
            if authority == record.topic:
                continue
            adapter = envelope_of(authority, topics, keys_dir)
            request = AuthorityRequest.model_validate_json(
                adapter.open(record.value, topic=record.topic).payload
            )
            sealed = adapter.seal(
                answer_to(request, Verdict.VALID).model_dump_json().encode(),
                recipient=HUB_PARTY,
                topic=topics.responses(authority),
                content_type=ContentType.JSON,
            )
            source = SourcePosition(topics.responses(authority), 0, len(records), record.key)
            records.append(OutgoingRecord(source.topic, record.key, sealed))
            pending.extend(delivered(correlation.handle(sealed, source)))

    clearance = envelope_of(CLEARANCE_PARTY, topics, keys_dir)

    def sealed(xml: bytes) -> bytes:
        return clearance.seal(
            xml, recipient=HUB_PARTY, topic=topics.declarations, content_type=ContentType.XML
        )

    def declare(xml: bytes, reference: str, *, as_the_contract_says: bool = True) -> None:
        value = sealed(xml)
        if as_the_contract_says:  # the document describes what a clearance system must send
            records.append(OutgoingRecord(topics.declarations, reference.encode(), value))
        position = SourcePosition(topics.declarations, 0, len(records), reference.encode())
        answer(delivered(intake.handle(value, position)))

    both = (goods_item(1, (quoted("N853", "CHEDP-1"), quoted("C638", "CITES-1"))),)
    declare(declaration_xml(reference="26FR000690I0000012", items=both), "26FR000690I0000012")
    unreadable = declaration_xml(reference="26FR000690I0000013").replace(b"</Declaration>", b"")
    declare(unreadable, "26FR000690I0000013", as_the_contract_says=False)
    silent = sealed(declaration_xml(reference="26FR000690I0000014"))
    records.append(OutgoingRecord(topics.declarations, b"26FR000690I0000014", silent))
    delivered(intake.handle(silent, SourcePosition(topics.declarations, 2, 0)))  # no answer
    clock[0] = NOW + timedelta(seconds=31)
    delivered(
        Deadlines(context, cases).handle(
            "26FR000690I0000014", 1, SourcePosition(topics.deadlines, 0, 0)
        )
    )
    # A version 2 whose version 1 this partition never read: takeover notices to the others.
    declare(
        declaration_xml(reference="26FR000690I0000015", version=2, items=both),
        "26FR000690I0000015",
    )
    assert any(r.topic == topics.deadlines for r in records)
    forged = SourcePosition(topics.responses("dgal"), 1, 7, b"26FR000690I0000012")
    [dead_letter] = delivered(correlation.handle(b"not.an.envelope", forged))
    delivered(AuditKeeper(context).handle(dead_letter.headers, SourcePosition(topics.dlq, 1, 3)))
    return topics, records


def test_records_the_hub_writes_match_their_channel(
    document: dict[str, Any], written: tuple[TopicRegistry, list[Any]], keys_dir: Path
) -> None:
    topics, records = written
    entitlements = Entitlements.from_registry(topics)
    seen: dict[str, int] = {}
    for record in records:
        message = _message_of(document, record.topic)
        where = f"{record.topic} record {seen.get(record.topic, 0)}"
        seen[record.topic] = seen.get(record.topic, 0) + 1
        key = None if record.key is None else record.key.decode()
        assert errors(schema_validator(document, message["bindings"]["kafka"]["key"]), key) == []
        headers = {name: value.decode() for name, value in record.headers}
        if "headers" in message:
            assert errors(schema_validator(document, message["headers"]), headers) == [], where
        else:
            assert headers == {}, f"{where} has headers the document does not describe"
        value = _decoded(record.value, message["contentType"])
        assert errors(schema_validator(document, message["payload"]), value) == [], where
        payload = resolve(document, message["payload"]["$ref"])
        xml = value
        if "x-plaintext" in payload:
            # Decisions wait in the outbox sealed to the hub (publisher.py).
            recipient = entitlements.recipient_of(record.topic)
            assert recipient is not None
            opened = envelope_of(recipient, topics, keys_dir).open(record.value, topic=record.topic)
            plaintext = resolve(document, payload["x-plaintext"]["$ref"])
            xml = _decoded(opened.payload, opened.content_type.value)
            assert errors(schema_validator(document, plaintext), xml) == [], where
            payload = plaintext
        if "x-xsd" in payload:
            xsd = xmlschema.XMLSchema(REPO / "schemas" / payload["x-xsd"])
            assert xsd.is_valid(xml), where
    expected = {
        topics.declarations,
        topics.requests("dgal"),
        topics.requests("cites"),
        topics.responses("dgal"),
        topics.decision_outbox,
        topics.status,
        topics.audit,
        topics.dlq,
    }
    assert expected <= set(seen), sorted(expected - set(seen))


def test_a_heartbeat_an_adapter_writes_matches_its_channel(
    document: dict[str, Any], keys_dir: Path, tmp_path: Path
) -> None:
    topics = topic_registry("gun", ("cites", "dga", "dgal"))
    settings = Settings(security=SecuritySettings(keys_dir=keys_dir, state_dir=tmp_path / "state"))
    runner = adapter_runner("dgal", settings, topics)
    try:
        value = runner.heartbeat()
    finally:
        runner.pending.close()
    message = _message_of(document, topics.ops_health)
    assert message["contentType"] == JOSE
    assert errors(schema_validator(document, message["bindings"]["kafka"]["key"]), "dgal") == []
    assert errors(schema_validator(document, message["payload"]), value.decode()) == []
    payload = resolve(document, message["payload"]["$ref"])
    signed = json.loads(base64.urlsafe_b64decode(value.split(b".")[1] + b"=="))
    content = resolve(document, payload["x-payload"]["$ref"])
    assert errors(schema_validator(document, content), signed) == []


def test_every_kind_of_audit_record_is_documented(
    document: dict[str, Any], written: tuple[TopicRegistry, list[Any]], keys_dir: Path
) -> None:
    topics, records = written
    kinds = {json.loads(r.value)["kind"] for r in records if r.topic == topics.audit}
    assert kinds == {"DECISION", "SECURITY_REJECTION", "CHECKPOINT"}
    # The fourth is chained only when a worker taking a partition over finds records that
    # are not the hub's at its head (security/audit.py): made here the same way.
    trail = AuditTrail({}, PartyKeys.load(keys_dir, HUB_PARTY).signing_key)
    [decided, *_] = trail.append(0, {"kind": "DECISION", "reference": "26FR000690I0000001"})
    forged = json.loads(decided) | {"seq": 2, "prev": json.loads(decided)["hash"]}
    del forged["mac"], forged["hash"]
    forged["hash"] = record_hash(forged)
    trail.resync(0, [decided, json.dumps(forged).encode()])
    [foreign, *_] = trail.tick(0)
    assert json.loads(foreign)["kind"] == "FOREIGN_RECORDS"
    audit = resolve(document, "#/components/schemas/AuditRecord")
    assert errors(schema_validator(document, audit), json.loads(foreign)) == []
    documented = {
        resolve(document, v["$ref"])["properties"]["kind"]["const"] for v in audit["oneOf"]
    }
    assert documented == kinds | {"FOREIGN_RECORDS"}


# -- the command ------------------------------------------------------------------------


def test_the_command_writes_the_file_and_check_tells_when_it_is_stale(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in [name for name in os.environ if name.startswith("GUN_HUB_")]:
        monkeypatch.delenv(name)
    runner = CliRunner()
    assert runner.invoke(cli_app, ["asyncapi", "--check"]).exit_code == 0
    target = tmp_path / "asyncapi.yaml"
    missing = runner.invoke(cli_app, ["asyncapi", "--check", "--output", str(target)])
    assert missing.exit_code == 1
    written = runner.invoke(cli_app, ["asyncapi", "--output", str(target)])
    assert written.exit_code == 0, written.output
    assert target.read_text(encoding="utf-8") == COMMITTED.read_text(encoding="utf-8")
    target.write_text(target.read_text(encoding="utf-8").replace("gun.status", "gun.state"))
    stale = runner.invoke(cli_app, ["asyncapi", "--check", "--output", str(target)])
    assert stale.exit_code == 1
    assert "out of date" in stale.output
    monkeypatch.setenv("GUN_HUB_KAFKA__TOPIC_PREFIX", "acme")
    assert runner.invoke(cli_app, ["asyncapi", "--check"]).exit_code == 1
    assert runner.invoke(cli_app, ["asyncapi", "--output", str(target)]).exit_code == 0
    assert "address: acme.declarations" in target.read_text(encoding="utf-8")


def _message_of(document: dict[str, Any], topic: str) -> dict[str, Any]:
    [channel] = [c for c in document["channels"].values() if c["address"] == topic]
    [reference] = channel["messages"].values()
    message: dict[str, Any] = resolve(document, reference["$ref"])
    return message


def _decoded(value: bytes, content_type: str) -> Any:
    if content_type == JSON:
        return json.loads(value)
    if content_type in (XML, JOSE):
        return value.decode()
    return value.decode("latin-1")  # original bytes: any content


def test_a_redrive_claim_matches_the_claims_schema_and_a_forged_one_does_not(
    document: dict[str, Any],
) -> None:
    """A redrive's claim names the original's position (``read_as``), which the schema
    refused until stop 34; a number past what Kafka holds it refuses, as the reader does."""
    schema = resolve(document, "#/components/schemas/ClaimsRecord")
    validator = schema_validator(document, schema)
    claim = Claim(
        message_id="0f6c",
        accept_until=1_800_000_000,
        source=SourcePosition("gun.declarations", 1, 5),
        accepted_at=1_799_999_000.5,
        read_as="gun.declarations/2/40",
    )
    assert errors(validator, json.loads(claim.to_bytes())) == []
    forged = json.loads(claim.to_bytes()) | {"partition": 2**31, "read_as": "x|y"}
    assert len(errors(validator, forged)) > 0


def test_a_claim_saying_how_far_its_partition_can_be_read_again_matches_the_claims_schema(
    document: dict[str, Any],
) -> None:
    """Stop 36 (found by review): a claim carries ``readable_from``, the broker time below
    which its partition can no longer be read again."""
    schema = resolve(document, "#/components/schemas/ClaimsRecord")
    validator = schema_validator(document, schema)
    claim = Claim(
        message_id="0f6c",
        accept_until=1_800_000_000,
        source=SourcePosition("gun.declarations", 1, 5),
        accepted_at=1_799_999_000.5,
        readable_from=1_799_998_000.0,
    )
    assert errors(validator, json.loads(claim.to_bytes())) == []
    assert len(errors(validator, json.loads(claim.to_bytes()) | {"readable_from": 1e300})) > 0
