"""What the processes expose on ``/metrics`` and what a PromQL expression reads: shared by
the dashboard's tests and the alerting rules' (a query on a series nobody exports shows
an empty panel, and an alert on one never fires)."""

from __future__ import annotations

import re

import promql_parser
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import REGISTRY

import adapters.base.metrics
import gun_hub.gateway.lodging
import gun_hub.metrics
import gun_hub.web.common
import gun_hub.web.queries
from gun_hub.ops.lag_metrics import OpsCollector, OpsState

_SUFFIXES = {
    "counter": ("_total", "_created"),
    "histogram": ("_bucket", "_sum", "_count", "_created"),
    "summary": ("", "_sum", "_count", "_created"),
    "gauge": ("",),
    "info": ("_info",),
}


def exported_metric_names() -> set[str]:
    """Every series name the hub, view, gateway and adapter processes can expose on
    ``/metrics``."""
    # Imported for their registrations on the default registry.
    assert gun_hub.metrics.DECISIONS is not None
    assert adapters.base.metrics.REQUESTS is not None
    assert gun_hub.gateway.lodging.LODGEMENTS is not None
    assert gun_hub.web.common.AUTH_FAILURES is not None
    assert gun_hub.web.queries is not None
    families: list[Metric] = [*REGISTRY.collect(), *OpsCollector(OpsState()).collect()]
    names: set[str] = set()
    for family in families:
        names |= {family.name + suffix for suffix in _SUFFIXES.get(family.type, ("",))}
        names |= {sample.name for sample in family.samples}
    return names


def promql_metric_names(expr: str) -> set[str]:
    """The series a PromQL expression selects, read by a real PromQL parser (a syntax
    error raises ``ValueError``). Grafana's ``$__...`` variables stand for a duration."""
    tree = promql_parser.parse(re.sub(r"\$__\w+", "5m", expr))
    names: set[str] = set()

    def visit(node: object) -> None:
        if isinstance(node, promql_parser.VectorSelector) and node.name:
            names.add(node.name)

    promql_parser.walk(tree, visit)
    return names
