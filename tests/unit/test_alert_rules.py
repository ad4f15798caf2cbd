"""The alerting rules shipped in ``deploy/prometheus/gun-hub-alerts.yml`` hold what an
operator loads them for: each parses as PromQL, reads series the processes export (an
alert on a series nobody exports never fires), judges counters by their increase (a
counter restarts at zero with its process) or, for a series its process created within
the window, by its whole value (``X_total and time() - X_created < W``: its first
increments, review stop 39-O, O1; not "no sample W ago", which a failed scrape also
gives, review stop 39-G, G1), says how urgent it is and where its runbook is, and
docs/operations.md lists exactly these alerts. That they fire on a first increment, and
not when Prometheus lost sight of a series, is promtool's test
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


def unparenthesised(node: object) -> object:
    while isinstance(node, promql_parser.ParenExpr):
        node = node.expr
    return node


def label_matchers(selector: promql_parser.VectorSelector) -> set[tuple[str, str, str]]:
    return {
        (m.name, str(m.op), m.value) for m in selector.matchers.matchers if m.name != "__name__"
    }


def created_within(node: object) -> tuple[promql_parser.VectorSelector, float] | None:
    """``node`` is ``X_total and time() - X_created < S``: the series of X their process
    created less than S seconds ago (everything they count happened since): ``X_total``
    and S, or None."""
    node = unparenthesised(node)
    if not (
        isinstance(node, promql_parser.BinaryExpr)
        and str(node.op) == "and"
        and (node.modifier is None or node.modifier.matching is None)  # on every label
    ):
        return None
    counter, young = unparenthesised(node.lhs), unparenthesised(node.rhs)
    if not (
        isinstance(counter, promql_parser.VectorSelector)
        and counter.name.endswith("_total")
        and counter.offset is None
        and isinstance(young, promql_parser.BinaryExpr)
        and str(young.op) == "<"
        and not (young.modifier and young.modifier.return_bool)  # `< bool` keeps all
        and isinstance(young.rhs, promql_parser.NumberLiteral)
    ):
        return None
    age = unparenthesised(young.lhs)
    if not (
        isinstance(age, promql_parser.BinaryExpr)
        and str(age.op) == "-"
        and isinstance(age.lhs, promql_parser.Call)
        and age.lhs.func.name == "time"
        and isinstance(age.rhs, promql_parser.VectorSelector)
    ):
        return None
    created = age.rhs
    same_series = (
        created.name == counter.name.removesuffix("_total") + "_created"
        and created.offset is None
        and label_matchers(created) == label_matchers(counter)
    )
    return (counter, young.rhs.val) if same_series else None


def counted_within(node: object) -> promql_parser.VectorSelector | None:
    """``node`` is ``(X_total and time() - X_created < W) or increase(X_total[W])``: what X
    counted within the window W, a series created within it whole (its first sample may
    hold events, review stop 39-O, O1), the others by their increase. A series merely
    without a sample W ago (``X unless X offset W``) need not be new: a failed scrape or
    a Prometheus outage leaves none there, and its lifetime total would count (review
    stop 39-G, G1). ``X_total``, or None."""
    node = unparenthesised(node)
    if not (isinstance(node, promql_parser.BinaryExpr) and str(node.op) == "or"):
        return None
    young, increase = created_within(node.lhs), unparenthesised(node.rhs)
    if young is None or not (
        isinstance(increase, promql_parser.Call)
        and increase.func.name == "increase"
        and isinstance(increase.args[0], promql_parser.MatrixSelector)
    ):
        return None
    counter, window_s = young
    ranged = increase.args[0]
    same = (
        ranged.vector_selector.prettify() == counter.prettify()
        and ranged.range.total_seconds() == window_s
    )
    return counter if same else None


def counters_outside_rate_or_increase(expr: str) -> set[str]:
    """``*_total`` series an expression reads other than through rate() or increase(), or
    as what it counted within a window (:func:`counted_within`)."""
    calls: list[str] = []
    bare: set[str] = set()
    # promql_parser makes a new wrapper of a node at each access: compared by their text
    counted: set[str] = set()

    def enter(node: object) -> None:
        counter = counted_within(node)
        if counter is not None:
            counted.add(counter.prettify())
        if isinstance(node, promql_parser.Call):
            calls.append(node.func.name)
        elif (
            isinstance(node, promql_parser.VectorSelector)
            and node.name.endswith("_total")
            and not {"rate", "increase", "irate"} & set(calls)
            and node.prettify() not in counted
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
    counted = "(x_total{a='b'} and time() - x_created{a='b'} < 300) or increase(x_total{a='b'}[5m])"
    assert counters_outside_rate_or_increase(counted) == set()
    assert counters_outside_rate_or_increase(f"sum by (a) ({counted}) > 0") == set()
    not_counted = {
        # a series merely without a sample 5m ago: stale after one failed scrape (G1)
        "x_total unless x_total offset 5m",
        "(x_total unless x_total offset 5m) or increase(x_total[5m])",
        # the series' age and its window differ, or it is another series' age
        "(x_total and time() - x_created < 3600) or increase(x_total[5m])",
        "(x_total and time() - y_created < 300) or increase(x_total[5m])",
        "(x_total{a='b'} and time() - x_created < 300) or increase(x_total{a='b'}[5m])",
        "(x_total and time() - x_created < 300) or increase(y_total[5m])",
        # `< bool` keeps every series; `>` the old ones
        "(x_total and time() - x_created < bool 300) or increase(x_total[5m])",
        "(x_total and time() - x_created > 300) or increase(x_total[5m])",
        "(x_total and on () time() - x_created < 300) or increase(x_total[5m])",
        "(x_total and time() - x_created < 300) or x_total",
    }
    for expr in not_counted:
        assert counters_outside_rate_or_increase(expr) == {"x_total"}, expr


def test_the_operations_guide_lists_exactly_the_shipped_alerts() -> None:
    section = OPERATIONS.read_text().split("### Alerts", 1)[1].split("\n## ", 1)[0]
    listed = dict(re.findall(r"^\| `(GunHub\w+)` \| (\w+) \|", section, re.M))
    assert listed == {rule["alert"]: rule["labels"]["severity"] for rule in alert_rules()}
