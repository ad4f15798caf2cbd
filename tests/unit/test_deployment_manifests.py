"""Deployment files say what the code does: real commands, real settings, real metrics.

Pure checks of ``docker-compose.kafka.yml``, ``deploy/Dockerfile``, ``deploy/k8s/`` and
``deploy/grafana/`` against the code they deploy (the CLI, the settings, the topic
registry, the ACL plan, the exported metrics); no Docker, no cluster, no broker.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import textwrap
import tomllib
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import typer.main
import yaml
from pydantic import BaseModel

from gun_contract.health import CircuitStatus
from gun_contract.kafka.acls import Grant, acl_plan
from gun_contract.kafka.quotas import quota_plan
from gun_contract.resources import config_path
from gun_contract.settings import BrokerSettings, OpsSettings, Settings
from gun_contract.topics import TopicRegistry, topic_registry
from gun_hub.cli import app
from gun_hub.domain.routing import load_routing_table
from gun_tools.deploy_manifests import manifests
from tests.prometheus_series import exported_metric_names, promql_metric_names

REPO = Path(__file__).resolve().parents[2]
COMPOSE = REPO / "docker-compose.kafka.yml"
DOCKERFILE = REPO / "deploy" / "Dockerfile"
K8S = REPO / "deploy" / "k8s"
DASHBOARD = REPO / "deploy" / "grafana" / "gun-hub-dashboard.json"
AUTHORITIES = ("cites", "dga", "dgal")
IMAGE = "gun-hub:local"

# The default single broker as it was before the cluster profile: users rely on it.
DEFAULT_BROKER = {
    "image": "apache/kafka:3.9.2",
    "container_name": "gun-hub-kafka",
    "ports": ["127.0.0.1:9092:9092"],
    "environment": {
        "KAFKA_NODE_ID": "1",
        "KAFKA_PROCESS_ROLES": "broker,controller",
        "KAFKA_CONTROLLER_QUORUM_VOTERS": "1@localhost:9093",
        "KAFKA_LISTENERS": "PLAINTEXT://:9092,CONTROLLER://:9093",
        "KAFKA_ADVERTISED_LISTENERS": "PLAINTEXT://127.0.0.1:9092",
        "KAFKA_INTER_BROKER_LISTENER_NAME": "PLAINTEXT",
        "KAFKA_CONTROLLER_LISTENER_NAMES": "CONTROLLER",
        "KAFKA_LISTENER_SECURITY_PROTOCOL_MAP": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
        "KAFKA_NUM_PARTITIONS": "4",
        "KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR": "1",
        "KAFKA_OFFSETS_TOPIC_NUM_PARTITIONS": "10",
        "KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR": "1",
        "KAFKA_TRANSACTION_STATE_LOG_MIN_ISR": "1",
        "KAFKA_TRANSACTION_STATE_LOG_NUM_PARTITIONS": "4",
        "KAFKA_TRANSACTION_MAX_TIMEOUT_MS": "60000",
        "KAFKA_GROUP_INITIAL_REBALANCE_DELAY_MS": "0",
        "KAFKA_AUTO_CREATE_TOPICS_ENABLE": "false",
        "KAFKA_OFFSETS_RETENTION_MINUTES": "86400",  # stop 35: offsets outlive every record
        "KAFKA_LOG_RETENTION_HOURS": "168",
    },
    "volumes": ["kafka-data:/var/lib/kafka/data"],
    "healthcheck": {
        "test": [
            "CMD-SHELL",
            "/opt/kafka/bin/kafka-topics.sh --bootstrap-server localhost:9092 --list >/dev/null",
        ],
        "interval": "5s",
        "timeout": "10s",
        "retries": 20,
    },
}

Doc = dict[str, Any]


# ---- helpers -----------------------------------------------------------------------------


def parse_cli(args: Sequence[str]) -> dict[str, Any]:
    """Parse ``gun-hub ARGS`` as the real CLI would, without running it: an unknown
    command or option, a missing argument or a missing file raises."""
    command = typer.main.get_command(app)
    words, name = list(args), "gun-hub"
    while hasattr(command, "get_command"):  # a group (typer ships its own click)
        assert words, f"{list(args)} stops at the group {name}"
        name, *words = words
        sub = command.get_command(command.context_class(command), name)
        assert sub is not None, f"gun-hub has no command {name!r} ({list(args)})"
        command = sub
    return dict(command.make_context(name, words).params)


def setting_exists(variable: str) -> bool:
    """Whether ``GUN_HUB_A__B`` names a field of :class:`Settings` (unknown ones are ignored
    silently at start-up, so a misspelt variable would never show)."""
    if not variable.startswith("GUN_HUB_"):
        return False
    model: type[BaseModel] = Settings
    *groups, leaf = variable.removeprefix("GUN_HUB_").lower().split("__")
    for group in groups:
        field = model.model_fields.get(group)
        if field is None or not (
            isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel)
        ):
            return False
        model = field.annotation
    return leaf in model.model_fields


def settings_from(env: Mapping[str, str], monkeypatch: pytest.MonkeyPatch) -> Settings:
    """The settings a process gets from exactly ``env`` (validated by pydantic)."""
    for name in [n for n in os.environ if n.startswith("GUN_HUB_")]:
        monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return Settings()


def shipped_registry() -> TopicRegistry:
    return topic_registry("gun", load_routing_table(config_path("routing.toml")).authorities)


def gun_hub_invocations(service: Doc) -> list[list[str]]:
    """The ``gun-hub`` argument lists a compose service runs (directly or from ``sh -c``)."""
    if "entrypoint" not in service:
        return [list(service["command"])]
    assert service["entrypoint"] == ["/bin/sh", "-c"], service["entrypoint"]
    (script,) = service["command"]
    lexer = shlex.shlex(script, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    runs: list[list[str]] = []
    current: list[str] = []
    for token in [*lexer, ";"]:
        if token in {";", "&&", "||", "|"}:
            if "gun-hub" in current:
                runs.append(current[current.index("gun-hub") + 1 :])
            current = []
        else:
            current.append(token)
    return runs


def env_list(container: Doc) -> dict[str, Doc]:
    return {entry["name"]: entry for entry in container.get("env", [])}


# ---- docker-compose.kafka.yml ------------------------------------------------------------


@pytest.fixture(scope="module")
def compose() -> Doc:
    loaded = yaml.safe_load(COMPOSE.read_text())
    assert isinstance(loaded, dict)
    return loaded


@pytest.fixture(scope="module")
def services(compose: Doc) -> dict[str, Doc]:
    return dict(compose["services"])


def gun_hub_services(services: Mapping[str, Doc]) -> dict[str, Doc]:
    return {name: s for name, s in services.items() if s.get("image") == IMAGE}


def kafka_nodes(services: Mapping[str, Doc]) -> dict[str, Doc]:
    return {
        name: s
        for name, s in services.items()
        if s.get("image", "").startswith("apache/kafka:") and "cluster" in s.get("profiles", [])
    }


def command_of(services: Mapping[str, Doc], *words: str) -> dict[str, list[str]]:
    """Services whose command starts with ``words``, with their full command."""
    return {
        name: run
        for name, service in gun_hub_services(services).items()
        for run in gun_hub_invocations(service)
        if run[: len(words)] == list(words)
    }


def option(run: Sequence[str], name: str) -> str:
    return run[run.index(name) + 1]


def test_the_default_single_broker_is_unchanged(services: dict[str, Doc]) -> None:
    assert services["kafka"] == DEFAULT_BROKER


def test_every_other_service_belongs_to_the_cluster_profile(services: dict[str, Doc]) -> None:
    others = {name: s.get("profiles") for name, s in services.items() if name != "kafka"}
    assert others, "the cluster profile has no services"
    assert all(profiles == ["cluster"] for profiles in others.values()), others


def test_the_cluster_has_three_kraft_nodes_replicating_three_ways(
    services: dict[str, Doc],
) -> None:
    nodes = kafka_nodes(services)
    assert len(nodes) == 3
    envs = {name: node["environment"] for name, node in nodes.items()}
    ids = {name: env["KAFKA_NODE_ID"] for name, env in envs.items()}
    assert sorted(ids.values()) == ["1", "2", "3"]
    voters = {f"{ids[name]}@{name}:9093" for name in nodes}
    for name, env in envs.items():
        assert env["KAFKA_PROCESS_ROLES"] == "broker,controller"
        assert set(env["KAFKA_CONTROLLER_QUORUM_VOTERS"].split(",")) == voters
        assert f"INTERNAL://{name}:19092" in env["KAFKA_ADVERTISED_LISTENERS"]
        assert env["KAFKA_DEFAULT_REPLICATION_FACTOR"] == "3"
        assert env["KAFKA_MIN_INSYNC_REPLICAS"] == "2"
        assert env["KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR"] == "3"
        assert env["KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR"] == "3"
        assert env["KAFKA_TRANSACTION_STATE_LOG_MIN_ISR"] == "2"
        assert env["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false"
    assert len({env["CLUSTER_ID"] for env in envs.values()}) == 1, "one cluster id"
    host_ports = [p.split(":")[1] for node in nodes.values() for p in node["ports"]]
    assert len(set(host_ports)) == 3, host_ports
    assert "9092" not in host_ports, "9092 is the default broker's"


def test_kafka_ui_and_every_client_reach_all_three_nodes(
    services: dict[str, Doc], monkeypatch: pytest.MonkeyPatch
) -> None:
    internal = {f"{name}:19092" for name in kafka_nodes(services)}
    ui = services["kafka-ui"]
    assert ui["image"].split(":")[0] in {"kafbat/kafka-ui", "provectuslabs/kafka-ui"}
    assert set(ui["environment"]["KAFKA_CLUSTERS_0_BOOTSTRAPSERVERS"].split(",")) == internal
    for name, service in gun_hub_services(services).items():
        if "environment" not in service:
            continue
        settings = settings_from(service["environment"], monkeypatch)
        assert set(settings.kafka.bootstrap_servers.split(",")) == internal, name
        assert settings.kafka.replication_factor == 3, name


def test_services_run_real_gun_hub_commands(services: dict[str, Doc]) -> None:
    checked = 0
    for name, service in gun_hub_services(services).items():
        binds = {
            target: REPO / source
            for source, target, *_ in (v.split(":") for v in service.get("volumes", []))
            if source.startswith(".")
        }
        runs = gun_hub_invocations(service)
        assert runs, f"{name} runs no gun-hub command"
        for run in runs:
            local = [
                next((str(b / w[len(t) + 1 :]) for t, b in binds.items() if w.startswith(t)), w)
                for w in run
            ]
            parse_cli(local)
            checked += 1
    assert checked >= 8


def test_the_hub_every_adapter_and_every_partner_simulator_are_services(
    services: dict[str, Doc],
) -> None:
    assert len(command_of(services, "hub")) == 1
    assert len(command_of(services, "keys", "init")) == 1
    for authority in AUTHORITIES:
        assert len(command_of(services, "adapter", authority)) == 1, authority
        assert len(command_of(services, "partner-sim", authority)) == 1, authority


def test_each_adapter_calls_the_simulator_of_its_own_authority(
    services: dict[str, Doc], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, run in command_of(services, "adapter").items():
        url = urlsplit(
            settings_from(services[name]["environment"], monkeypatch).adapter.partner_url
        )
        sim = command_of(services, "partner-sim")[str(url.hostname)]
        assert sim[1] == run[1], f"{name} calls the {sim[1]} partner"
        assert option(sim, "--port") == str(url.port)
        assert option(sim, "--host") == "0.0.0.0"
        assert url.hostname in services[name]["depends_on"]


def test_dependencies_exist_and_keys_are_made_before_anyone_uses_them(
    services: dict[str, Doc],
) -> None:
    (keys_service,) = command_of(services, "keys", "init")
    for name, service in services.items():
        for target, condition in dict(service.get("depends_on", {})).items():
            assert target in services, f"{name} depends on unknown {target}"
            if condition["condition"] == "service_healthy":
                assert "healthcheck" in services[target], f"{target} has no healthcheck"
    for name in [*command_of(services, "hub"), *command_of(services, "adapter")]:
        depends = services[name]["depends_on"]
        assert depends[keys_service] == {"condition": "service_completed_successfully"}, name
        assert all(
            depends[node]["condition"] == "service_healthy" for node in kafka_nodes(services)
        )


def test_volumes_are_declared_and_bind_sources_exist(compose: Doc) -> None:
    declared = set(compose["volumes"])
    used = set()
    for name, service in compose["services"].items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith((".", "/")):
                assert (REPO / source).exists(), f"{name} mounts missing {source}"
            else:
                assert source in declared, f"{name} mounts undeclared volume {source}"
                used.add(source)
    assert used == declared, f"declared but unused: {declared - used}"


def test_hub_and_adapters_read_the_keys_the_one_shot_service_writes(
    services: dict[str, Doc], monkeypatch: pytest.MonkeyPatch
) -> None:
    ((keys_service, run),) = command_of(services, "keys", "init").items()
    keys_dir = option(run, "--dir")
    (volume,) = [v.split(":")[0] for v in services[keys_service]["volumes"] if f":{keys_dir}" in v]
    for name in [*command_of(services, "hub"), *command_of(services, "adapter")]:
        settings = settings_from(services[name]["environment"], monkeypatch)
        assert f"{volume}:{settings.security.keys_dir}:ro" in services[name]["volumes"], name


def test_compose_sets_only_real_settings(services: dict[str, Doc]) -> None:
    variables = {
        variable
        for service in gun_hub_services(services).values()
        for variable in service.get("environment", {})
    }
    assert len(variables) >= 8
    assert [v for v in sorted(variables) if not setting_exists(v)] == []


def test_healthchecks_ask_readyz_on_the_port_each_process_serves(
    services: dict[str, Doc], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in [*command_of(services, "hub"), *command_of(services, "adapter")]:
        settings = settings_from(services[name]["environment"], monkeypatch)
        if name in command_of(services, "hub"):
            host, port = settings.hub.web_host, settings.hub.web_port
        else:
            host, port = settings.adapter.metrics_host, settings.adapter.metrics_port
        assert host == "0.0.0.0", f"{name} must listen beyond its container's loopback"
        assert f"http://127.0.0.1:{port}/readyz" in " ".join(services[name]["healthcheck"]["test"])
        assert any(p.endswith(f":{port}") for p in services[name]["ports"]), name


def test_the_image_installs_the_locked_hashes_then_the_project() -> None:
    text = DOCKERFILE.read_text()
    assert re.findall(r"^FROM (\S+)", text, re.MULTILINE)[0] == "python:3.11-slim"
    assert "--require-hashes -r /src/requirements-runtime.lock" in text
    assert re.search(r'^ENTRYPOINT \["gun-hub"\]$', text, re.MULTILINE)
    user = re.findall(r"^USER (\S+)", text, re.MULTILINE)[-1]
    assert user.split(":")[0] not in {"0", "root"}
    sources = [s for line in re.findall(r"^COPY (?!--from)(.+) \S+$", text, re.MULTILINE)
               for s in line.split()]  # fmt: skip
    assert all((REPO / source).exists() for source in sources), sources
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    wheel = pyproject["tool"]["hatch"]["build"]["targets"]["wheel"]
    needed = {
        *wheel["packages"],
        *wheel["force-include"],
        pyproject["project"]["readme"],
        "pyproject.toml",
        "requirements-runtime.lock",
    }
    assert needed <= set(sources), needed - set(sources)
    # The build context is cut down to what is copied (BuildKit's per-Dockerfile ignore).
    lines = (REPO / "deploy" / "Dockerfile.dockerignore").read_text().splitlines()
    ignore = [line for line in lines if line and not line.startswith("#")]
    kept = {f"!{s}/" if (REPO / s).is_dir() else f"!{s}" for s in sources}
    assert ignore[0] == "*"
    assert kept <= set(ignore), kept - set(ignore)


# ---- deploy/k8s ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def k8s() -> list[Doc]:
    docs = []
    for path in sorted(K8S.glob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        loaded = [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]
        assert loaded, f"{path.name} holds no document"
        docs += loaded
    return docs


def of_kind(docs: list[Doc], kind: str) -> dict[str, Doc]:
    return {doc["metadata"]["name"]: doc for doc in docs if doc["kind"] == kind}


def workloads(k8s: list[Doc]) -> Iterator[tuple[str, Doc, Doc]]:
    """(deployment name, pod spec, main container) of every Deployment."""
    for name, deployment in of_kind(k8s, "Deployment").items():
        pod = deployment["spec"]["template"]["spec"]
        (container,) = pod["containers"]
        yield name, pod, container


def test_every_manifest_names_its_api_kind_and_name(k8s: list[Doc]) -> None:
    assert len(k8s) >= 30
    for doc in k8s:
        assert doc.get("apiVersion"), doc
        assert doc.get("kind"), doc
        assert doc["metadata"].get("name"), doc


def test_the_kustomization_lists_every_manifest() -> None:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    files = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    assert set(kustomization["resources"]) == files
    assert {image["name"] for image in kustomization["images"]} == {"gun-hub"}


def test_generated_topics_and_users_are_up_to_date() -> None:
    for name, content in manifests().items():
        assert (K8S / name).read_text() == content, (
            f"deploy/k8s/{name} is stale: run python -m gun_tools.deploy_manifests"
        )


def test_every_registry_topic_has_a_kafka_topic_with_its_layout(k8s: list[Doc]) -> None:
    registry = shipped_registry()
    assert registry.authorities == AUTHORITIES
    (cluster,) = of_kind(k8s, "Kafka")
    topics = {doc["spec"]["topicName"]: doc for doc in of_kind(k8s, "KafkaTopic").values()}
    assert set(topics) == set(registry.names())
    for spec in registry.specs():
        topic = topics[spec.name]
        assert topic["metadata"]["labels"]["strimzi.io/cluster"] == cluster
        assert topic["spec"]["config"] == spec.broker_config(), spec.name
        assert topic["spec"]["partitions"] == (4 if spec.keyed else 1), spec.name
        assert topic["spec"]["replicas"] == 3


def acl_command_entries(grant: Grant) -> set[tuple[str, str, str, str, str]]:
    """(principal, resource type, name, pattern, operation) from the AclCommand arguments
    that the secured local broker is given, read back independently of the generator."""
    words = iter(grant.arguments())
    principal, pattern, operations, resources = "", "literal", [], []
    kinds = {"--topic": "topic", "--group": "group", "--transactional-id": "transactionalId"}
    for word in words:
        if word == "--allow-principal":
            principal = next(words).removeprefix("User:")
        elif word == "--operation":
            operations.append(next(words))
        elif word in kinds:
            resources.append((kinds[word], next(words)))
        elif word == "--resource-pattern-type":
            pattern = {"prefixed": "prefix"}[next(words)]
    return {(principal, k, n, pattern, op) for k, n in resources for op in operations}


def test_kafka_user_acls_are_exactly_the_acl_plan(k8s: list[Doc]) -> None:
    registry = shipped_registry()
    grants = acl_plan(registry, "gun-hub", OpsSettings().clearance_group)
    plan = set().union(*(acl_command_entries(g) for g in grants))
    users = of_kind(k8s, "KafkaUser")
    assert set(users) == {"hub", "clearance", "gateway", *AUTHORITIES}
    granted = set()
    for name, user in users.items():
        assert user["spec"]["authentication"] == {"type": "scram-sha-512"}
        assert user["spec"]["authorization"]["type"] == "simple"
        for acl in user["spec"]["authorization"]["acls"]:
            assert acl["type"] == "allow"
            resource = acl["resource"]
            granted |= {
                (name, resource["type"], resource["name"], resource["patternType"], operation)
                for operation in acl["operations"]
            }
    assert granted == plan


def test_every_party_outside_the_hub_has_its_quotas_and_the_hub_none(k8s: list[Doc]) -> None:
    """gun_contract/kafka/quotas.py: what ``secure-setup`` applies locally, Strimzi applies."""
    users = of_kind(k8s, "KafkaUser")
    limited = {name: user["spec"].get("quotas") for name, user in users.items()}
    assert limited.pop("hub") is None  # the core is never the one slowed down
    assert limited == {q.principal: q.strimzi() for q in quota_plan(shipped_registry())}
    for quotas in limited.values():
        assert 0 < quotas["producerByteRate"] <= 16 * 1024 * 1024
        assert 0 < quotas["requestPercentage"] <= 100


def test_the_kafka_cluster_is_kraft_with_three_replicas_and_scram_over_tls(
    k8s: list[Doc],
) -> None:
    ((name, kafka),) = of_kind(k8s, "Kafka").items()
    (pool,) = of_kind(k8s, "KafkaNodePool").values()
    assert pool["metadata"]["labels"]["strimzi.io/cluster"] == name
    assert pool["spec"]["replicas"] == 3
    assert set(pool["spec"]["roles"]) == {"broker", "controller"}
    assert kafka["metadata"]["annotations"]["strimzi.io/kraft"] == "enabled"
    spec = kafka["spec"]["kafka"]
    assert str(spec["version"]).startswith("3.9.")
    assert spec["config"]["default.replication.factor"] == 3
    assert spec["config"]["min.insync.replicas"] == 2
    assert spec["authorization"]["type"] == "simple"
    assert [listener["authentication"]["type"] for listener in spec["listeners"]] == [
        "scram-sha-512"
    ]
    assert all(listener["tls"] for listener in spec["listeners"])


# ---- one Kafka version everywhere (issue 11, item 5) --------------------------------------

OLDEST_KAFKA = (3, 9, 2)  # 3.9.1 and older: fixes the project may not run without
_NAMED_IN_PROSE = re.compile(r"\bKafka (\d+\.\d+\.\d+)\b")


def kafka_versions_named() -> dict[str, str]:
    """Every place that names the Apache Kafka release it runs, and the release named."""
    places: dict[str, str] = {"BrokerSettings.kafka_version": BrokerSettings().kafka_version}
    pom = re.search(
        r"<kafka\.version>\s*([^<\s]+)\s*</kafka\.version>",
        (REPO / "deploy" / "kafka" / "pom.xml").read_text(),
    )
    assert pom, "deploy/kafka/pom.xml names no kafka.version"
    places["deploy/kafka/pom.xml"] = pom.group(1)
    compose = yaml.safe_load(COMPOSE.read_text())
    for name, service in {**compose["services"], "x-kafka-node": compose["x-kafka-node"]}.items():
        image = str(service.get("image", ""))
        if image.startswith("apache/kafka"):
            places[f"{COMPOSE.name}: {name}"] = image.partition(":")[2]
    for doc in yaml.safe_load_all((K8S / "kafka-cluster.yaml").read_text()):
        if doc["kind"] == "Kafka":
            places["deploy/k8s/kafka-cluster.yaml: spec.kafka.version"] = str(
                doc["spec"]["kafka"]["version"]
            )
    prose = [REPO / "README.md", *(REPO / "docs").glob("**/*.md"), COMPOSE]
    prose += [path for path in (REPO / "deploy").rglob("*") if path.is_file()]
    for path in prose:
        if path.suffix in {".json", ".p12"}:
            continue
        for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
            for version in _NAMED_IN_PROSE.findall(line):
                places[f"{path.relative_to(REPO)}:{number}"] = version
    return places


def test_every_place_runs_the_same_kafka_release_at_least_3_9_2() -> None:
    places = kafka_versions_named()
    assert {"deploy/kafka/pom.xml", "BrokerSettings.kafka_version"} <= set(places)
    assert any(place.startswith(COMPOSE.name) for place in places)
    assert any(place.startswith("deploy/k8s/kafka-cluster.yaml: spec") for place in places)
    versions = set(places.values())
    assert len(versions) == 1, f"different Kafka releases named: {places}"
    (version,) = versions
    assert tuple(int(part) for part in version.split(".")) >= OLDEST_KAFKA


def test_the_strimzi_metadata_version_is_the_release_s() -> None:
    for doc in yaml.safe_load_all((K8S / "kafka-cluster.yaml").read_text()):
        if doc["kind"] == "Kafka":
            major_minor = ".".join(str(doc["spec"]["kafka"]["version"]).split(".")[:2])
            assert str(doc["spec"]["kafka"]["metadataVersion"]).startswith(f"{major_minor}-IV")


def test_deployments_run_the_hub_and_every_adapter_but_no_simulator(k8s: list[Doc]) -> None:
    runs = sorted(tuple(container["args"]) for _, _, container in workloads(k8s))
    assert runs == sorted([("hub",), *(("adapter", a) for a in AUTHORITIES)])
    for run in runs:
        parse_cli(run)


def test_every_deployment_probes_livez_and_readyz_on_a_declared_port(k8s: list[Doc]) -> None:
    for name, _, container in workloads(k8s):
        ports = {p["name"] for p in container["ports"]} | {
            p["containerPort"] for p in container["ports"]
        }
        for probe, path in (("livenessProbe", "/livez"), ("readinessProbe", "/readyz")):
            get = container[probe]["httpGet"]
            assert get["path"] == path, f"{name} {probe}"
            assert get["port"] in ports, f"{name} {probe} port {get['port']}"


def test_no_pod_is_handed_the_services_variables(k8s: list[Doc]) -> None:
    """The kubelet hands every pod ``<SERVICE>_SERVICE_HOST``, ``<SERVICE>_PORT...`` for
    each Service of its namespace unless told not to: the Services named ``gun-hub...``
    made about twenty ``GUN_HUB_*`` variables that are no setting, each named in a
    warning at every start (found by review of stop 37's change, G3)."""
    deployments = of_kind(k8s, "Deployment")
    assert deployments
    for name, deployment in deployments.items():
        assert deployment["spec"]["template"]["spec"]["enableServiceLinks"] is False, name


def test_every_pod_runs_non_root_read_only_with_resources(k8s: list[Doc]) -> None:
    for name, deployment in of_kind(k8s, "Deployment").items():
        spec = deployment["spec"]
        assert (
            spec["selector"]["matchLabels"].items()
            <= spec["template"]["metadata"]["labels"].items()
        )
        pod = spec["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["runAsUser"] != 0
        for container in [*pod.get("initContainers", []), *pod["containers"]]:
            where = f"{name}/{container['name']}"
            context = container["securityContext"]
            assert context["allowPrivilegeEscalation"] is False, where
            assert context["readOnlyRootFilesystem"] is True, where
            assert context["capabilities"]["drop"] == ["ALL"], where
            for bound in ("requests", "limits"):
                assert {"cpu", "memory"} <= set(container["resources"][bound]), where
            declared = {volume["name"] for volume in pod["volumes"]}
            assert {m["name"] for m in container["volumeMounts"]} <= declared, where


def container_env(k8s: list[Doc], container: Doc) -> dict[str, str]:
    """The environment a container gets: its ConfigMaps, then its own entries (a user's
    password stands as ``from-the-secret``)."""
    config_maps = {name: doc["data"] for name, doc in of_kind(k8s, "ConfigMap").items()}
    users = of_kind(k8s, "KafkaUser")
    env: dict[str, str] = {}
    for source in container["envFrom"]:
        env |= config_maps[source["configMapRef"]["name"]]
    for variable, entry in env_list(container).items():
        ref = entry.get("valueFrom", {})
        if "secretKeyRef" in ref:
            assert ref["secretKeyRef"]["name"] in users, variable
            assert ref["secretKeyRef"]["key"] == "password"
            env[variable] = "from-the-secret"
        elif "configMapKeyRef" in ref:
            env[variable] = config_maps[ref["configMapKeyRef"]["name"]][
                ref["configMapKeyRef"]["key"]
            ]
        else:
            env[variable] = entry["value"]
    return env


def test_deployment_env_is_real_settings_from_configmaps_and_user_secrets(
    k8s: list[Doc], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, _, container in workloads(k8s):
        env = container_env(k8s, container)
        assert [v for v in sorted(env) if not setting_exists(v)] == [], name
        settings = settings_from(env, monkeypatch)
        principal = settings.kafka.sasl_username
        password = env_list(container)["GUN_HUB_KAFKA__SASL_PASSWORD"]["valueFrom"]
        assert password["secretKeyRef"]["name"] == principal, name
        assert settings.kafka.security_protocol == "SASL_SSL"
        assert settings.kafka.replication_factor == 3
        assert principal == ("hub" if container["args"] == ["hub"] else container["args"][1])


def test_pods_hold_their_own_key_and_the_cluster_ca_where_settings_look(
    k8s: list[Doc], monkeypatch: pytest.MonkeyPatch
) -> None:
    config = of_kind(k8s, "ConfigMap")["gun-hub-config"]["data"]
    settings = settings_from(config, monkeypatch)
    ((cluster, kafka),) = of_kind(k8s, "Kafka").items()
    (tls_port,) = [listener["port"] for listener in kafka["spec"]["kafka"]["listeners"]]
    assert settings.kafka.bootstrap_servers == f"{cluster}-kafka-bootstrap:{tls_port}"
    for name, pod, container in workloads(k8s):
        party = env_list(container)["GUN_HUB_KAFKA__SASL_USERNAME"]["value"]
        mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
        volumes = {v["name"]: v for v in pod["volumes"]}
        assert mounts[str(settings.security.keys_dir)] == "keys", name
        assert volumes["keys-secret"]["secret"]["secretName"] == f"gun-keys-{party}", name
        (init,) = pod["initContainers"]
        assert f"cp /run/secrets/gun-keys/{party}.jwk" in init["command"][-1], name
        keys_dir = settings.security.keys_dir
        assert f"chmod 0600 {keys_dir}/{party}.jwk" in init["command"][-1], name
        assert settings.kafka.ssl_cafile is not None
        ca = volumes[mounts[str(settings.kafka.ssl_cafile.parent)]]
        assert ca["secret"]["secretName"] == f"{cluster}-cluster-ca-cert", name
        assert str(settings.hub.data_dir).startswith("/var/lib/gun-hub")
        # Everything the process writes lands on a volume: the root fs is read-only.
        assert {"/var/lib/gun-hub", "/tmp"} <= set(mounts), name  # noqa: S108


DEPLOYMENT_DOC = REPO / "docs" / "deployment.md"


def doc_key_secrets(work: Path) -> dict[str, set[str]]:
    """The key Secrets docs/deployment.md's first Kubernetes step makes, run as written
    (the real ``gun-hub keys init``, a ``kubectl`` that records each Secret's files and
    fails, as kubectl does, on a ``--from-file`` source that does not exist): each Secret's
    name and the file names it holds."""
    text = DEPLOYMENT_DOC.read_text()
    (indented,) = re.findall(r"```bash\n( *gun-hub keys init --dir ./keys\n.*?) *```", text, re.S)
    block = textwrap.dedent(indented)
    bin_dir = work / "bin"
    bin_dir.mkdir()
    made = work / "secrets.jsonl"
    kubectl = bin_dir / "kubectl"
    kubectl.write_text(
        "#!/usr/bin/env python3\n"
        "import json, os, sys\n"
        "args = sys.argv[1:]\n"
        "if 'secret' not in args:\n"
        "    sys.exit(0)\n"
        "name = args[args.index('generic') + 1]\n"
        "files = {}\n"
        "for arg in args:\n"
        "    if arg.startswith('--from-file='):\n"
        "        key, _, source = arg.removeprefix('--from-file=').partition('=')\n"
        "        if not os.path.isfile(source):\n"
        "            sys.exit(f'error: {source}: no such file')\n"
        "        files[key] = source\n"
        f"record = json.dumps({{'name': name, 'files': list(files)}})\n"
        f"open({str(made)!r}, 'a').write(record + '\\n')\n"
    )
    kubectl.chmod(0o755)
    gun_hub = Path(os.environ.get("VIRTUAL_ENV", REPO / ".venv")) / "bin"
    env = {**os.environ, "PATH": f"{bin_dir}:{gun_hub}:{os.environ['PATH']}"}
    subprocess.run(["bash", "-euo", "pipefail", "-c", block], cwd=work, env=env, check=True)
    secrets: dict[str, set[str]] = {}
    for line in made.read_text().splitlines():
        secret = json.loads(line)
        secrets[secret["name"]] = set(secret["files"])
    return secrets


def test_the_key_secrets_the_doc_makes_hold_every_file_each_pod_copies(
    k8s: list[Doc], tmp_path: Path
) -> None:
    """Found by review, stop 41 (R1): the doc's Secret for the hub had no hub.audit.jwk, the
    hub pod's init container failed to copy it and the hub never started."""
    secrets = doc_key_secrets(tmp_path)
    for name, pod, _ in workloads(k8s):
        volumes = {v["name"]: v for v in pod["volumes"]}
        secret = volumes["keys-secret"]["secret"]["secretName"]
        (init,) = pod["initContainers"]
        copied = set(re.findall(r"/run/secrets/gun-keys/([^\s]+)", init["command"][-1]))
        assert copied, name
        held = secrets.get(secret, set())
        assert copied <= held, (name, secret, copied - held)


# ---- the hub's three listeners (ADR 0007) ---------------------------------------------------

# Who may reach each listener: the label a namespace carries to be let in (NetworkPolicy).
ACCESS_LABEL = "gun-hub/access"
AUDIENCES = {"probes": "metrics", "trader": "trader", "officer": "officer"}


def hub_settings(k8s: list[Doc], monkeypatch: pytest.MonkeyPatch) -> tuple[Doc, Doc, Settings]:
    """The hub's pod spec, its container and the settings the container starts with."""
    ((_, pod, container),) = [w for w in workloads(k8s) if w[2]["args"] == ["hub"]]
    return pod, container, settings_from(container_env(k8s, container), monkeypatch)


def listener_ports(settings: Settings) -> dict[str, int]:
    return {
        "probes": settings.hub.web_port,
        "trader": settings.web.trader_port,
        "officer": settings.web.officer_port,
    }


def mounted_from(pod: Doc, container: Doc, path: Path) -> Doc:
    """The volume a file of the container comes from (the mount holding ``path``)."""
    mounts = {Path(m["mountPath"]): m for m in container["volumeMounts"]}
    mount = mounts[path.parent]
    assert mount.get("readOnly") is True, path
    volumes = {v["name"]: v for v in pod["volumes"]}
    volume: Doc = volumes[mount["name"]]
    return volume


def test_the_hub_serves_probes_trader_and_officer_each_on_its_own_port_and_service(
    k8s: list[Doc], monkeypatch: pytest.MonkeyPatch
) -> None:
    pod, container, settings = hub_settings(k8s, monkeypatch)
    ports = listener_ports(settings)
    assert all(ports.values()), ports
    assert len(set(ports.values())) == 3, ports
    assert settings.hub.web_host == settings.web.trader_host == settings.web.officer_host
    assert settings.web.trader_host == "0.0.0.0"  # beyond the pod's loopback
    declared = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert declared == ports
    # The cluster's probes and Prometheus on the probes port, nothing on the others.
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        assert container[probe]["httpGet"]["port"] == "probes", probe
    annotations = of_kind(k8s, "Deployment")["gun-hub"]["spec"]["template"]["metadata"]
    assert annotations["annotations"]["prometheus.io/port"] == str(settings.hub.web_port)
    # One Service per listener, inside the cluster only, exposing that listener alone.
    hub_labels = of_kind(k8s, "Deployment")["gun-hub"]["spec"]["template"]["metadata"]["labels"]
    services = {
        name: service
        for name, service in of_kind(k8s, "Service").items()
        if service["spec"]["selector"].items() <= hub_labels.items()
    }
    exposed = {}
    for name, service in services.items():
        assert service["spec"].get("type", "ClusterIP") == "ClusterIP", name
        (port,) = service["spec"]["ports"]
        assert port["port"] == declared[port["targetPort"]], name
        exposed[port["targetPort"]] = name
    assert exposed == {
        "probes": "gun-hub",
        "trader": "gun-hub-trader",
        "officer": "gun-hub-officer",
    }
    assert of_kind(k8s, "Ingress") == {}  # nothing published beyond the cluster by default
    # Each listener has the credentials it checks, and HTTPS: a bearer token or a password
    # never crosses the network in clear.
    assert settings.web.portal_jwks is not None
    assert settings.web.officers_file is not None
    assert settings.web.tls_cert is not None
    assert settings.web.tls_key is not None
    jwks = mounted_from(pod, container, settings.web.portal_jwks)
    assert jwks["configMap"]["name"] == "gun-hub-portal-jwks"  # public keys only
    cert = mounted_from(pod, container, settings.web.tls_cert)
    assert cert["secret"]["secretName"] == "gun-hub-web-tls"
    # The hashes and the key are refused readable by others: a Secret volume gives a
    # non-root user 0440 at best, so the init container copies them 0600.
    copied_private(pod, container, settings.web.officers_file, "gun-hub-officers", "officers")
    copied_private(pod, container, settings.web.tls_key, "gun-hub-web-tls", "tls.key")
    assert {settings.web.tls_cert.name, settings.web.tls_key.name} == {"tls.crt", "tls.key"}


def copied_private(pod: Doc, container: Doc, path: Path, secret: str, key: str) -> None:
    """``path`` is in a memory volume, where the init container copied ``secret``'s
    ``key`` and made it 0600."""
    volume = mounted_from(pod, container, path)
    assert volume["emptyDir"]["medium"] == "Memory", path
    (init,) = pod["initContainers"]
    mounts = {m["name"]: m["mountPath"] for m in init["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    [source] = [
        mounts[name]
        for name, v in volumes.items()
        if name in mounts and v.get("secret", {}).get("secretName") == secret
    ]
    copied = f"{mounts[volume_name(pod, volume)]}/{path.name}"
    steps = [step.split() for step in init["command"][-1].split("&&")]
    assert any(step[0] == "cp" and f"{source}/{key}" in step for step in steps), path
    assert any(step[:2] == ["chmod", "0600"] and copied in step for step in steps), path


def volume_name(pod: Doc, volume: Doc) -> str:
    [name] = [v["name"] for v in pod["volumes"] if v is volume]
    return str(name)


def test_each_audience_reaches_its_own_listener_and_no_other(
    k8s: list[Doc], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Probes and metrics for the monitoring namespace, the trader lookup for the clearance
    portal's, the officers' pages for the customs intranet's: one NetworkPolicy rule per
    port, each naming who may come in (a rule without ``from`` would let in everyone)."""
    _, container, settings = hub_settings(k8s, monkeypatch)
    hub_labels = of_kind(k8s, "Deployment")["gun-hub"]["spec"]["template"]["metadata"]["labels"]
    policies = [
        policy
        for policy in of_kind(k8s, "NetworkPolicy").values()
        if policy["spec"]["podSelector"]["matchLabels"].items() <= hub_labels.items()
    ]
    (policy,) = policies
    assert policy["spec"]["policyTypes"] == ["Ingress"]
    names = {p["containerPort"]: p["name"] for p in container["ports"]}
    admitted: dict[str, list[Doc]] = {}
    for rule in policy["spec"]["ingress"]:
        (port,) = rule["ports"]
        name = port["port"] if isinstance(port["port"], str) else names[port["port"]]
        assert port.get("protocol", "TCP") == "TCP"
        assert rule.get("from"), f"the {name} port is open to everyone"
        assert name not in admitted, f"two rules for the {name} port"
        admitted[name] = rule["from"]
    assert set(admitted) == set(listener_ports(settings))
    for listener, peers in admitted.items():
        assert peers == [
            {"namespaceSelector": {"matchLabels": {ACCESS_LABEL: AUDIENCES[listener]}}}
        ], listener


# ---- docker-compose: the hub's three listeners ----------------------------------------------


def test_compose_publishes_the_three_listeners_on_the_host_s_loopback_with_credentials(
    services: dict[str, Doc], monkeypatch: pytest.MonkeyPatch
) -> None:
    ((name, _),) = command_of(services, "hub").items()
    hub = services[name]
    settings = settings_from(hub["environment"], monkeypatch)
    ports = listener_ports(settings)
    assert all(ports.values()), ports
    assert len(set(ports.values())) == 3, ports
    assert settings.web.trader_host == settings.web.officer_host == "0.0.0.0"
    published = {int(p.rsplit(":", 1)[1]): p for p in hub["ports"]}
    assert set(published) == set(ports.values())
    assert all(p.startswith("127.0.0.1:") for p in published.values()), published
    # The portal's public keys and the officers file come from a one-shot service, as the
    # keys do, in a volume the hub mounts read-only.
    assert settings.web.portal_jwks is not None
    assert settings.web.officers_file is not None
    ((access, portal),) = command_of(services, "portal", "init").items()
    ((access_too, officers),) = command_of(services, "officers", "add").items()
    assert access == access_too
    assert settings.web.portal_jwks == Path(option(portal, "--dir")) / "portal-jwks.json"
    assert settings.web.officers_file == Path(option(officers, "--file"))
    (volume,) = [v.split(":")[0] for v in services[access]["volumes"]]
    folder = settings.web.officers_file.parent
    assert f"{volume}:{folder}:ro" in hub["volumes"]
    assert settings.web.portal_jwks.is_relative_to(folder)
    assert hub["depends_on"][access] == {"condition": "service_completed_successfully"}


# ---- docs/deployment.md -------------------------------------------------------------------------


def test_the_deployment_page_names_each_listener_with_real_settings(
    k8s: list[Doc], monkeypatch: pytest.MonkeyPatch
) -> None:
    text = (REPO / "docs" / "deployment.md").read_text()
    named = set(re.findall(r"\bGUN_HUB_[A-Z0-9_]+", text))
    assert [v for v in sorted(named) if not setting_exists(v)] == []
    assert {
        "GUN_HUB_HUB__WEB_PORT",
        "GUN_HUB_WEB__TRADER_PORT",
        "GUN_HUB_WEB__OFFICER_PORT",
        "GUN_HUB_WEB__PORTAL_JWKS",
        "GUN_HUB_WEB__OFFICERS_FILE",
        "GUN_HUB_WEB__TLS_CERT",
    } <= named
    _, _, settings = hub_settings(k8s, monkeypatch)
    for port in listener_ports(settings).values():
        assert str(port) in text, port
    for name in ("gun-hub-trader", "gun-hub-officer", "gun-hub-portal-jwks", "gun-hub-officers"):
        assert f"`{name}`" in text, name
    assert ACCESS_LABEL in text


# ---- deploy/grafana -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def dashboard() -> Doc:
    loaded = json.loads(DASHBOARD.read_text())
    assert isinstance(loaded, dict)
    return loaded


def panel_exprs(dashboard: Doc) -> dict[str, list[str]]:
    return {
        panel["title"]: [target["expr"] for target in panel["targets"]]
        for panel in dashboard["panels"]
        if panel["type"] != "row"
    }


def test_the_dashboard_has_unique_panels_on_a_prometheus_variable(dashboard: Doc) -> None:
    assert dashboard["schemaVersion"] >= 36
    (variable,) = dashboard["templating"]["list"]
    assert (variable["type"], variable["query"]) == ("datasource", "prometheus")
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids)) >= 9
    for panel in dashboard["panels"]:
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24, panel["title"]
        if panel["type"] != "row":
            assert panel["datasource"]["uid"] == "${" + variable["name"] + "}", panel["title"]
            assert panel["targets"], panel["title"]


def test_the_metric_name_reader_skips_functions_labels_and_ranges() -> None:
    expr = 'histogram_quantile(0.95, sum by (le) (rate(a_bucket{s="x y"}[$__rate_interval])))'
    assert promql_metric_names(expr) == {"a_bucket"}
    assert promql_metric_names("max by (g) (b) + on (g) c") == {"b", "c"}


def test_the_dashboard_queries_only_metrics_the_processes_export(dashboard: Doc) -> None:
    exported = exported_metric_names()
    used = {
        name for exprs in panel_exprs(dashboard).values() for e in exprs
        for name in promql_metric_names(e)
    }  # fmt: skip
    assert sorted(used - exported) == []
    assert {
        "gun_hub_decisions_total",
        "gun_hub_decision_latency_seconds_bucket",
        "kafka_consumergroup_lag_sum",
        "gun_hub_consumergroup_lag_growing",
        "gun_hub_partner_circuit_state",
        "gun_hub_partner_pending_operations",
        "gun_hub_dead_letters_total",
        "gun_adapter_dead_letters_total",
        "gun_hub_envelope_rejections_total",
    } <= used


def test_the_dashboard_selects_label_values_that_exist(dashboard: Doc) -> None:
    states = {
        state for exprs in panel_exprs(dashboard).values() for e in exprs
        for state in re.findall(r'gun_hub_partner_circuit_state\{state="([^"]+)"\}', e)
    }  # fmt: skip
    assert states == {CircuitStatus.OPEN.value}
    quantiles = {
        float(q) for exprs in panel_exprs(dashboard).values() for e in exprs
        for q in re.findall(r"histogram_quantile\(([0-9.]+),", e)
    }  # fmt: skip
    assert {0.5, 0.95} <= quantiles


def test_every_broker_aborts_a_transaction_left_open_within_a_minute() -> None:
    """The hub reads committed records only: an open transaction holds what follows it on
    its partition, whoever wrote that (a trader's declaration through the gateway, any
    party's dead letters). Kafka lets a producer keep one open up to
    ``transaction.max.timeout.ms``, 15 minutes by default; here a minute, what Java's,
    librdkafka's and aiokafka's producers ask by default (found by review in stop 31)."""
    limits = {}
    for template in sorted((REPO / "deploy" / "kafka").glob("server*.properties.template")):
        found = re.search(r"^transaction\.max\.timeout\.ms=(\d+)$", template.read_text(), re.M)
        limits[template.name] = int(found.group(1)) if found else None
    for doc in yaml.safe_load_all((K8S / "kafka-cluster.yaml").read_text()):
        if doc["kind"] == "Kafka":
            limits["kafka-cluster.yaml"] = doc["spec"]["kafka"]["config"].get(
                "transaction.max.timeout.ms"
            )
    compose = yaml.safe_load((REPO / "docker-compose.kafka.yml").read_text())
    for name, service in compose["services"].items():
        environment = service.get("environment") or {}
        if "KAFKA_PROCESS_ROLES" in environment or "KAFKA_NODE_ID" in environment:
            limits[f"compose {name}"] = int(environment.get("KAFKA_TRANSACTION_MAX_TIMEOUT_MS", 0))
    assert len(limits) > 4  # three templates, Strimzi, and the Compose brokers
    assert limits == dict.fromkeys(limits, 60_000)


def test_the_hub_may_read_the_audit_topic_its_chains_go_on_from() -> None:
    """Each audit chain goes on from the audit topic's last records (runtime/audit_resync.py):
    without the right to read them, on a secured cluster the worker stopped at every
    assignment (found by CI in stop 32, once the resync's failure was no longer swallowed
    by the group's assignment callback)."""
    topics = shipped_registry()
    readable = {
        topic
        for grant in acl_plan(topics, "gun-hub", "gun-clearance")
        if grant.principal == "hub" and "Read" in grant.operations
        for topic in grant.topics
    }
    assert topics.audit in readable


# ---- consumer offsets outlive every record a group reads (found by review in stop 35) ------


# The longest a record of a finite-retention topic can be read: its retention, plus the
# time its segment may stay open before rolling (log.roll.ms, 7 days by default).
def _longest_record_life_min() -> int:
    retentions = [s.retention_ms for s in shipped_registry().specs() if s.retention_ms]
    return max(ms for ms in retentions if ms > 0) // 60_000 + 7 * 24 * 60


def _offsets_retention_minutes_everywhere(k8s: list[Doc]) -> dict[str, int]:
    found: dict[str, int] = {}
    for template in sorted((REPO / "deploy" / "kafka").glob("server*.properties.template")):
        for line in template.read_text().splitlines():
            if line.startswith("offsets.retention.minutes="):
                found[template.name] = int(line.split("=", 1)[1])
    ((_name, kafka),) = of_kind(k8s, "Kafka").items()
    if "offsets.retention.minutes" in kafka["spec"]["kafka"]["config"]:
        found["kafka-cluster.yaml"] = int(
            kafka["spec"]["kafka"]["config"]["offsets.retention.minutes"]
        )
    in_compose = [
        int(line.split(":", 1)[1].strip(' "'))
        for line in COMPOSE.read_text().splitlines()
        if "KAFKA_OFFSETS_RETENTION_MINUTES:" in line
    ]
    if len(in_compose) == 2:  # the cluster's nodes and the single broker
        found["docker-compose.kafka.yml"] = min(in_compose)
    return found


def test_every_broker_keeps_consumer_offsets_longer_than_any_record_lives(
    k8s: list[Doc],
) -> None:
    """Kafka forgets an empty group's offsets after ``offsets.retention.minutes`` (7 days
    by default). A hub down longer then read its topics again from the start: the decision
    publisher, whose memory holds the last 20,000 decisions per partition, published older
    decisions of the outbox a second time. Kept longer than any record lives, a group
    that lost its offsets finds nothing it has read before."""
    found = _offsets_retention_minutes_everywhere(k8s)
    assert set(found) == {
        "server.properties.template",
        "server-cluster.properties.template",
        "server-secure.properties.template",
        "kafka-cluster.yaml",
        "docker-compose.kafka.yml",
    }
    assert all(minutes > _longest_record_life_min() for minutes in found.values()), found


def test_every_key_change_on_kubernetes_ends_with_a_restart_of_the_pods_that_copy_them() -> None:
    """The pods copy their key files out of the Secret once, at start (an init container):
    a rotation, a retirement or a prune reaches a running pod only when it restarts, and a
    pruned private key stays in it until then (review stop 39-U, U2)."""
    copied_once = re.compile(r"cp /run/secrets/gun-keys/\w+\.jwk")
    for manifest in ("adapters.yaml", "hub.yaml"):
        assert copied_once.search((REPO / "deploy" / "k8s" / manifest).read_text()), manifest
    doc = (REPO / "docs" / "deployment.md").read_text()
    step = doc[doc.index("1. Keys, made once") : doc.index("2. What the hub's trader")]
    rotation = step[step.index("Rotation:") : step.index("A retirement")]
    prune = step[step.index("prune --apply") :]
    assert "rollout restart" in rotation
    assert "before that time" in rotation  # before the new keys come into use
    assert "rollout restart" in prune
