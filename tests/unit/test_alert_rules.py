"""The alerting rules shipped in ``deploy/prometheus/gun-hub-alerts.yml`` hold what an
operator loads them for: each parses as PromQL, reads series the processes export (an
alert on a series nobody exports never fires), judges counters by their increase (a
counter restarts at zero with its process) or, for a series that appeared within the
window, by its whole value (``X unless X offset W``: its first increments, review stop
39-O, O1), says how urgent it is and where its runbook is, and docs/operations.md lists
exactly these alerts. That they fire on a first increment is promtool's test
(test_alert_rules_fire_on_a_first_increment.py)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import promql_parser
import pytest
import yaml

from tests.conftest import REPO
from tests.prometheus_series import exported_metric_names, promql_metric_names

RULES = REPO / "deploy" / "prometheus" / "gun-hub-alerts.yml"
OPERATIONS = REPO / "docs" / "operations.md"
SEVERITIES = {"page", "ticket"}


def alert_rules() -> list[dict[str, Any]]:
    loaded = yaml.safe_load(RULES.read_text())
    return [rule for group in loaded["groups"] for rule in group["rules"]]


def github_anchors(markdown: Path) -> set[str]:
    """The anchors GitHub gives a document's headings."""
    anchors = set()
    for heading in re.findall(r"^#+ (.+)$", markdown.read_text(), re.M):
        slug = re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
        anchors.add(slug)
    return anchors


def appeared_within(node: object) -> bool:
    """``node`` is ``X unless X offset W``: the series of X that were not there W ago."""
    if not (isinstance(node, promql_parser.BinaryExpr) and str(node.op) == "unless"):
        return False
    now, then = node.lhs, node.rhs
    return (
        isinstance(now, promql_parser.VectorSelector)
        and isinstance(then, promql_parser.VectorSelector)
        and now.offset is None
        and then.offset is not None
        and now.prettify() == then.prettify().rsplit(" offset ", 1)[0]
    )


def counters_outside_rate_or_increase(expr: str) -> set[str]:
    """``*_total`` series an expression reads other than through rate() or increase(), or
    as the series that appeared within a window (:func:`appeared_within`)."""
    calls: list[str] = []
    bare: set[str] = set()
    # promql_parser makes a new wrapper of a node at each access: compared by their text
    new_series: set[str] = set()

    def enter(node: object) -> None:
        if isinstance(node, promql_parser.Call):
            calls.append(node.func.name)
        elif appeared_within(node):
            assert isinstance(node, promql_parser.BinaryExpr)
            new_series.update({node.lhs.prettify(), node.rhs.prettify()})
        elif (
            isinstance(node, promql_parser.VectorSelector)
            and node.name.endswith("_total")
            and not {"rate", "increase", "irate"} & set(calls)
            and node.prettify() not in new_series
        ):
            bare.add(node.name)

    def leave(node: object) -> None:
        if isinstance(node, promql_parser.Call):
            calls.pop()

    promql_parser.walk(promql_parser.parse(expr), enter, leave)
    return bare


def test_the_rule_file_has_uniquely_named_alerts_in_named_groups() -> None:
    loaded = yaml.safe_load(RULES.read_text())
    groups = [group["name"] for group in loaded["groups"]]
    assert len(groups) == len(set(groups)) >= 2
    names = [rule["alert"] for rule in alert_rules()]
    assert len(names) == len(set(names)) >= 10
    assert all(re.fullmatch(r"GunHub[A-Z][A-Za-z]+", name) for name in names), names


@pytest.mark.parametrize("rule", alert_rules(), ids=lambda rule: rule["alert"])
def test_an_alert_parses_and_reads_only_exported_series(rule: dict[str, Any]) -> None:
    used = promql_metric_names(rule["expr"])
    assert used, "an alert that reads no series never fires"
    assert sorted(used - exported_metric_names()) == []
    assert counters_outside_rate_or_increase(rule["expr"]) == set()
    if "for" in rule:
        assert promql_parser.parse_duration(rule["for"]).total_seconds() > 0


@pytest.mark.parametrize("rule", alert_rules(), ids=lambda rule: rule["alert"])
def test_an_alert_says_how_urgent_it_is_and_where_its_runbook_is(rule: dict[str, Any]) -> None:
    assert rule["labels"]["severity"] in SEVERITIES
    assert rule["annotations"]["summary"].strip()
    document, _, anchor = rule["annotations"]["runbook"].partition("#")
    assert (REPO / document).is_file(), document
    assert anchor in github_anchors(REPO / document), rule["annotations"]["runbook"]


def test_the_metric_reader_refuses_what_prometheus_would_refuse() -> None:
    with pytest.raises(ValueError, match="parenthesis"):
        promql_metric_names("sum by (kind (gun_hub_dead_letters_total)")
    assert counters_outside_rate_or_increase("gun_hub_decisions_total > 0") == {
        "gun_hub_decisions_total"
    }
    assert counters_outside_rate_or_increase("sum(increase(gun_hub_decisions_total[5m]))") == set()
    assert counters_outside_rate_or_increase("x_total unless x_total offset 5m") == set()
    assert counters_outside_rate_or_increase("x_total unless y_total offset 5m") == {
        "x_total",
        "y_total",
    }
    assert counters_outside_rate_or_increase("x_total unless x_total") == {"x_total"}


def test_the_operations_guide_lists_exactly_the_shipped_alerts() -> None:
    section = OPERATIONS.read_text().split("### Alerts", 1)[1].split("\n## ", 1)[0]
    listed = dict(re.findall(r"^\| `(GunHub\w+)` \| (\w+) \|", section, re.M))
    assert listed == {rule["alert"]: rule["labels"]["severity"] for rule in alert_rules()}
