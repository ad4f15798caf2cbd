"""The alerting rules shipped in ``deploy/prometheus/gun-hub-alerts.yml`` hold what an
operator loads them for: each parses as PromQL, reads series the processes export (an
alert on a series nobody exports never fires) or the file records, judges counters by
their increase (a counter restarts at zero with its process), by their whole value for
a series new to Prometheus (:func:`counted_form`: its first increments, review stop 39-O,
O1, and stop 40; not "no sample W ago", which a failed scrape also gives, review stop
39-G, G1) or by their presence alone (no worker, no adapter scraped), says how urgent it
is and where its runbook is, and docs/operations.md lists exactly these alerts. That they
fire on a first increment, and not when Prometheus lost sight of a series, is promtool's
test (test_alert_rules_fire_on_a_first_increment.py)."""

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


def rules() -> list[dict[str, Any]]:
    loaded = yaml.safe_load(RULES.read_text())
    return [rule for group in loaded["groups"] for rule in group["rules"]]


def alert_rules() -> list[dict[str, Any]]:
    return [rule for rule in rules() if "alert" in rule]


def recorded_series() -> set[str]:
    """The series the file's recording rules write."""
    return {rule["record"] for rule in rules() if "record" in rule}


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


def counted_form(counter: str, window: str) -> str:
    """What the counter selector ``counter`` (``X_total{...}``) counted within ``window``,
    as every event alert reads it (deploy/prometheus/gun-hub-alerts.yml's header):

    - a series whose ``X_created`` value Prometheus has not seen in the 6 hours before the
      window, under any labels (its process made it since: a worker first scraped late,
      a label value first counted, review stop 40), counts whole while Prometheus was
      evaluating these rules before the window (``gun_hub:rules_evaluated``), so a new
      or returning Prometheus does not take old counts for new ones; neither a failed
      scrape (stale markers) nor a changed scrape configuration makes a series new
      (review stop 39-G, G1), and no clock but Prometheus' dates it;
    - while Prometheus was not evaluating before the window, a series its process made
      within the window (its own clock) counts whole (review stop 39-O, O1);
    - the others by their increase."""
    created = re.sub(r"_total\b", "_created", counter, count=1)
    minutes = promql_parser.parse_duration(window).total_seconds() / 60
    guard_offset = f"{int(minutes) + 5}m"
    guard = f"present_over_time(gun_hub:rules_evaluated[5h55m] offset {guard_offset})"
    return (
        f"max without (created) ("
        f"{counter} * ignoring (created) group_left (created)"
        f' count_values without () ("created", {created})'
        f' unless on (created) count_values without () ("created",'
        f" last_over_time({created}[6h] offset {window}))"
        f") and on () {guard}"
        f" or ({counter} and time() - {created} < {int(minutes * 60)})"
        f" unless on () {guard}"
        f" or increase({counter}[{window}])"
    )


def counted_within(node: object) -> promql_parser.VectorSelector | None:
    """``node`` is :func:`counted_form` of some counter ``X_total`` and window: that
    counter's selector, or None."""
    node = unparenthesised(node)
    if not (isinstance(node, promql_parser.BinaryExpr) and str(node.op) == "or"):
        return None
    increase = unparenthesised(node.rhs)
    if not (
        isinstance(increase, promql_parser.Call)
        and increase.func.name == "increase"
        and isinstance(increase.args[0], promql_parser.MatrixSelector)
    ):
        return None
    ranged = increase.args[0]
    counter = ranged.vector_selector
    if not (
        isinstance(counter, promql_parser.VectorSelector)
        and counter.name is not None
        and counter.name.endswith("_total")
    ):
        return None
    window = promql_parser.display_duration(ranged.range)
    canonical = promql_parser.parse(counted_form(counter.prettify(), window))
    return counter if node.prettify() == canonical.prettify() else None


PRESENCE = {"absent", "absent_over_time", "group", "count", "present_over_time"}
"""What reads a series' presence, not its value: a counter may be read bare there."""


def counters_outside_rate_or_increase(expr: str) -> set[str]:
    """``*_total`` series an expression reads other than through rate() or increase(), as
    what it counted within a window (:func:`counted_within`), or for their presence
    (:data:`PRESENCE`: absent(), group, count)."""
    functions: list[str] = []
    bare: set[str] = set()
    # promql_parser makes a new wrapper of a node at each access: compared by their text
    counted: set[str] = set()

    def function(node: object) -> str | None:
        if isinstance(node, promql_parser.Call):
            return str(node.func.name)
        if isinstance(node, promql_parser.AggregateExpr):
            return str(node.op)
        return None

    def enter(node: object) -> None:
        counter = counted_within(node)
        if counter is not None:
            counted.add(counter.prettify())
        name = function(node)
        if name is not None:
            functions.append(name)
        elif (
            isinstance(node, promql_parser.VectorSelector)
            and node.name is not None
            and node.name.endswith("_total")
            and not ({"rate", "increase", "irate"} | PRESENCE) & set(functions)
            and node.prettify() not in counted
        ):
            bare.add(node.name)

    def leave(node: object) -> None:
        if function(node) is not None:
            functions.pop()

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
    assert sorted(used - exported_metric_names() - recorded_series()) == []
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
    counted = counted_form("x_total{a='b'}", "5m")
    assert counters_outside_rate_or_increase(counted) == set()
    assert counters_outside_rate_or_increase(f"sum by (a) ({counted}) > 0") == set()
    assert counters_outside_rate_or_increase("absent(x_total)") == set()
    assert counters_outside_rate_or_increase("group by (a) (x_total) unless y_total") == {"y_total"}
    guard = "present_over_time(gun_hub:rules_evaluated[5h55m] offset 10m)"
    seen = 'count_values without () ("created", last_over_time(x_created[6h] offset 5m))'
    made = 'count_values without () ("created", x_created)'
    new = (
        "max without (created) (x_total * ignoring (created) group_left (created)"
        f" {made} unless on (created) {seen})"
    )
    young = "(x_total and time() - x_created < 300)"
    not_counted = {
        # a series merely without a sample 5m ago: stale after one failed scrape (G1)
        "x_total unless x_total offset 5m",
        "(x_total unless x_total offset 5m) or increase(x_total[5m])",
        # dated by the worker's clock alone: silent on a first scrape late (stop 40)
        f"{young} or increase(x_total[5m])",
        # new by its labels, not by its process: a changed scrape configuration pages
        "(x_total unless present_over_time(x_total[6h] offset 5m))"
        f" and on () {guard} or increase(x_total[5m])",
        # "never seen" trusted while Prometheus was not looking: a new one pages old counts
        f"{new} or increase(x_total[5m])",
        f"{new} or {young} or increase(x_total[5m])",
        # the window differs between the parts, or another series is read
        counted_form("x_total", "5m").replace("offset 5m", "offset 15m"),
        counted_form("x_total", "5m").replace("[5m]", "[15m]"),
        counted_form("x_total", "5m").replace("< 300", "< 3600"),
        counted_form("x_total", "5m").replace("x_created", "y_created"),
        counted_form("x_total", "5m").replace("increase(x_total", "increase(y_total"),
        counted_form("x_total{a='b'}", "5m").replace("x_created{a='b'}", "x_created", 1),
        # `< bool` keeps every series; `>` the old ones
        counted_form("x_total", "5m").replace("< 300", "< bool 300"),
        counted_form("x_total", "5m").replace("< 300", "> 300"),
        "(x_total and time() - x_created < 300) or x_total",
    }
    for expr in not_counted:
        assert counters_outside_rate_or_increase(expr) >= {"x_total"}, expr


def test_the_operations_guide_lists_exactly_the_shipped_alerts() -> None:
    section = OPERATIONS.read_text().split("### Alerts", 1)[1].split("\n## ", 1)[0]
    listed = dict(re.findall(r"^\| `(GunHub\w+)` \| (\w+) \|", section, re.M))
    assert listed == {rule["alert"]: rule["labels"]["severity"] for rule in alert_rules()}
