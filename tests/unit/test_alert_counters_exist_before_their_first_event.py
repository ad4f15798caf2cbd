"""Every counter an alert judges by its increase is on ``/metrics`` at 0 as soon as its
process started, before any event (review stop 39-O, O1).

Prometheus' ``increase()`` needs two samples of a series: a labelled counter of
prometheus_client has no series until its first ``inc()``, so the step from "no series"
to its first value is never counted, and an alert on a counter's first increment stays
silent (the aged-out pages, the first degraded decision of an authority). Each component
is built in a process of its own as its command builds it at start-up
(tests/started_components.py), and its registry read before anything happened.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections import defaultdict
from functools import cache
from pathlib import Path

import promql_parser
import pytest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from gun_contract.envelope import EnvelopeRejectionKind
from gun_contract.settings import HubSettings, OpsSettings
from gun_contract.topics import topic_registry
from gun_hub.domain.routing import load_routing_table
from gun_hub.ops.lag_monitor import not_counted_here, watched_groups
from gun_hub.runtime.aged_out import INPUT_AGED_OUT
from tests.conftest import REPO
from tests.started_components import COMPONENTS
from tests.unit.test_alert_rules import alert_rules

ROUTING = load_routing_table(REPO / "config" / "routing.toml")
TOPICS = topic_registry("gun", ROUTING.authorities)
Selector = tuple[str, tuple[tuple[str, str], ...]]


@cache
def started(component: str, folder: Path) -> tuple[Sample, ...]:
    """The samples of ``component``'s registry just after its start-up."""
    done = subprocess.run(
        [sys.executable, "-m", "tests.started_components", component, str(folder)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return tuple(
        sample
        for family in text_string_to_metric_families(done.stdout)
        for sample in family.samples
    )


@pytest.fixture(scope="module")
def at_start(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[Sample]]:
    """Every counter's sample (``*_total``) and its creation time (``*_created``) of every
    component at start-up, by series name."""
    samples: dict[str, list[Sample]] = defaultdict(list)
    for component in COMPONENTS:
        for sample in started(component, tmp_path_factory.mktemp(component)):
            if sample.name.endswith(("_total", "_created")):
                samples[sample.name].append(sample)
    return samples


def counters_judged_by_increase(expr: str) -> set[Selector]:
    """The counters ``expr`` applies increase() or rate() to, with their label matchers."""
    found: set[Selector] = set()
    calls: list[str] = []

    def enter(node: object) -> None:
        if isinstance(node, promql_parser.Call):
            calls.append(node.func.name)
        elif (
            isinstance(node, promql_parser.VectorSelector)
            and {"increase", "rate", "irate"} & set(calls)
            and node.name is not None
            and node.name.endswith("_total")
        ):
            matchers = tuple(
                sorted((m.name, m.value) for m in node.matchers.matchers if m.name != "__name__")
            )
            found.add((node.name, matchers))

    def leave(node: object) -> None:
        if isinstance(node, promql_parser.Call):
            calls.pop()

    promql_parser.walk(promql_parser.parse(expr), enter, leave)
    return found


JUDGED = sorted(
    {selector for rule in alert_rules() for selector in counters_judged_by_increase(rule["expr"])}
)


@pytest.mark.parametrize("selector", JUDGED, ids=lambda selector: selector[0])
def test_a_counter_an_alert_reads_is_exported_at_zero_at_start_up(
    selector: Selector, at_start: dict[str, list[Sample]]
) -> None:
    name, matchers = selector
    matching = [s for s in at_start[name] if all(s.labels.get(k) == v for k, v in matchers)]
    assert matching, f"{name}{dict(matchers)} has no sample before its first event"
    assert {s.value for s in at_start[name]} == {0.0}


@pytest.mark.parametrize("selector", JUDGED, ids=lambda selector: selector[0])
def test_a_counter_an_alert_reads_says_when_its_process_made_it(
    selector: Selector, at_start: dict[str, list[Sample]]
) -> None:
    """The alerts count a series whole only when Prometheus has not seen its ``X_created``
    value before (the series' identity: a process made it since), or, while Prometheus
    was not watching, when it says its process made it within their window
    (deploy/prometheus/gun-hub-alerts.yml; review stop 39-G, G1, and stop 40): each
    series of ``X_total`` has its ``X_created`` beside it, at the time the process made it
    (not disabled by PROMETHEUS_DISABLE_CREATED_SERIES)."""
    name, _ = selector
    created = at_start[name.removesuffix("_total") + "_created"]
    assert {frozenset(s.labels.items()) for s in created} == {
        frozenset(s.labels.items()) for s in at_start[name]
    }
    assert all(0 < time.time() - s.value < 600 for s in created), created


def label_values(samples: list[Sample], label: str) -> set[str]:
    return {sample.labels[label] for sample in samples}


def test_each_label_value_known_in_advance_is_there_at_zero(
    at_start: dict[str, list[Sample]],
) -> None:
    authorities = set(ROUTING.authorities)
    inputs = {TOPICS.declarations, *TOPICS.all_responses()}
    assert label_values(at_start["gun_hub_inputs_aged_out_total"], "topic") == inputs
    assert inputs < label_values(at_start["gun_hub_records_read_again_total"], "topic")
    assert label_values(at_start["gun_hub_deadlines_passed_total"], "authority") == authorities
    assert label_values(at_start["gun_adapter_requests_aged_out_total"], "authority") == (
        authorities
    )
    # the groups of the topology and the topics each reads, from the worker measuring lag
    # (another topic a group commits on is made at its first loss: the alert counts a
    # new series whole), but those whose own reader names a loss (the hub's inputs, the
    # adapters' requests: counted above)
    groups = watched_groups(TOPICS, HubSettings().app_id, OpsSettings().clearance_group)
    named_by_their_reader = not_counted_here(TOPICS, HubSettings().app_id)
    assert {
        (s.labels["consumergroup"], s.labels["topic"])
        for s in at_start["gun_hub_consumergroup_lost_to_retention_total"]
    } == {(w.group, t) for w in groups for t in w.topics} - named_by_their_reader.keys()
    assert label_values(at_start["gun_hub_timer_failures_total"], "timer") >= {
        "deadline sweep",
        "retention sweep",
        "admission recheck",
    }
    rejections = {kind.value for kind in EnvelopeRejectionKind}
    assert label_values(at_start["gun_hub_envelope_rejections_total"], "kind") == rejections
    assert rejections | {INPUT_AGED_OUT} <= label_values(
        at_start["gun_hub_dead_letters_total"], "kind"
    )
    assert {
        (s.labels["authority"], s.labels["kind"])
        for s in at_start["gun_adapter_envelope_rejections_total"]
    } == {(authority, kind) for authority in authorities for kind in rejections}
    assert {"REQUEST_AGED_OUT_OF_THE_LOG"} <= label_values(
        at_start["gun_adapter_dead_letters_total"], "kind"
    )
    assert {
        (s.labels["channel"], s.labels["result"])
        for s in at_start["gun_hub_gateway_lodgements_total"]
    } >= {("http", "busy"), ("http", "lodged"), ("file", "lodged")}
    assert label_values(at_start["gun_hub_web_auth_failures_total"], "listener") >= {
        "trader",
        "officer",
        "lodging",
    }


def present(samples: tuple[Sample, ...], name: str) -> set[frozenset[tuple[str, str]]]:
    return {frozenset(s.labels.items()) for s in samples if s.name == name}


def test_the_presence_alerts_read_series_only_their_process_exports(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """GunHubWorkersAbsent pages when no series of ``gun_hub_inputs_aged_out_total`` is
    scraped, GunHubAdapterAbsent when an authority has no ``gun_adapter_requests_aged_out_total``
    (review stop 40): each must be there from the start of its process (a worker, an
    adapter replica) and from no other process, or a running view process, gateway or
    another authority's adapter would keep the page from coming."""
    worker_series, adapter_series = (
        "gun_hub_inputs_aged_out_total",
        "gun_adapter_requests_aged_out_total",
    )
    rules = {rule["alert"]: rule["expr"] for rule in alert_rules()}
    assert worker_series in rules["GunHubWorkersAbsent"]
    assert adapter_series in rules["GunHubAdapterAbsent"]
    hub = started("hub", tmp_path_factory.mktemp("hub"))
    assert present(hub, worker_series)
    for other in ("view", "gateway", "adapters"):
        assert not present(started(other, tmp_path_factory.mktemp(other)), worker_series), other
    for authority in ROUTING.authorities:
        replica = started(f"adapter-{authority}", tmp_path_factory.mktemp(authority))
        assert {dict(labels)["authority"] for labels in present(replica, adapter_series)} == {
            authority
        }
        assert not present(replica, worker_series)
    # the routed authorities the adapter alert expects a replica of, from the workers
    assert {
        dict(labels)["authority"] for labels in present(hub, "gun_hub_deadlines_passed_total")
    } == set(ROUTING.authorities)


def test_the_view_absence_alert_reads_a_series_only_the_view_exports(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """GunHubViewAbsent pages when no series of ``gun_hub_partner_heartbeat_age_seconds``
    is scraped (review stop 40-PR, PR3): in the split deployment only ``gun-hub view``
    exports the partners' heartbeats and circuits, so with it gone GunHubAdapterSilent
    and the partner alerts are silent. The view exports one per routed authority from its
    start, heard from or not; a worker running the view itself (GUN_HUB_OPS__VIEW_ENABLED,
    one process as in the k8s manifests) does too; a worker of the split deployment, the
    gateway and the adapters do not, or they would keep the page from coming."""
    view_series = "gun_hub_partner_heartbeat_age_seconds"
    rules = {rule["alert"]: rule["expr"] for rule in alert_rules()}
    assert view_series in rules["GunHubViewAbsent"]
    for component in ("view", "hub"):
        exported = present(started(component, tmp_path_factory.mktemp(component)), view_series)
        assert {dict(labels)["authority"] for labels in exported} == set(ROUTING.authorities)
    for other in ("hub-without-view", "gateway", "adapters"):
        assert not present(started(other, tmp_path_factory.mktemp(other)), view_series), other
