"""The alerting rules fire on a counter's first increment however Prometheus first sees
it, run by Prometheus' own rule tester on deploy/prometheus/gun-hub-alerts.test.yml
(review stop 39-O, O1): the series' first sample holding the events (a process that
counted them before its first scrape, however late that scrape came, a label value
nobody knew in advance, a worker whose clock is a day behind: stop 40), the counter
exported at 0 then incremented; and not on counters at 0 across a restart, nor on events
of long ago, nor when Prometheus lost sight of a series a long-running process made long
ago: failed scrapes (stale markers), Prometheus restarted after more than its lookback, a
new Prometheus (review stop 39-G, G1), a changed scrape configuration, a worker whose
clock is a day ahead (stop 40). The absence alerts page when no hub worker or no
adapter replica of an authority is scraped, not when one of two is gone (stop 40).

``promtool`` comes from ``./tasks`` (Debian's prometheus package unpacked into
``.gun-hub/cache``, or one on the PATH). Missing, the test fails: never a skip.
"""

from __future__ import annotations

import shutil
import subprocess
from typing import Any

import yaml

from tests.conftest import REPO
from tests.unit.test_alert_counters_exist_before_their_first_event import (
    counters_judged_by_increase,
)
from tests.unit.test_alert_rules import RULES, alert_rules

RULE_TESTS = RULES.with_name("gun-hub-alerts.test.yml")
CACHED_PROMTOOL = REPO / ".gun-hub" / "cache" / "prometheus" / "usr" / "bin" / "promtool"


def promtool() -> str:
    found = shutil.which("promtool") or (
        str(CACHED_PROMTOOL) if CACHED_PROMTOOL.is_file() else None
    )
    assert found, "promtool missing: `./tasks setup` (or `./tasks unit`) fetches it"
    return found


def test_promtool_passes_the_rule_tests() -> None:
    done = subprocess.run(
        [promtool(), "test", "rules", RULE_TESTS.name],
        cwd=RULE_TESTS.parent,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def fired_in_tests() -> set[str]:
    """The alerts some test case of RULE_TESTS expects to fire."""
    loaded: dict[str, Any] = yaml.safe_load(RULE_TESTS.read_text())
    return {
        case["alertname"]
        for test in loaded["tests"]
        for case in test.get("alert_rule_test", [])
        if case["exp_alerts"]
    }


def test_every_alert_on_a_counter_has_a_rule_test_that_fires_it() -> None:
    on_counters = {
        rule["alert"] for rule in alert_rules() if counters_judged_by_increase(rule["expr"])
    }
    assert on_counters - fired_in_tests() == set()


def silent_after_a_failed_scrape() -> set[str]:
    """The alerts some test case of RULE_TESTS expects silent in a test whose input holds a
    stale marker (a failed scrape)."""
    loaded: dict[str, Any] = yaml.safe_load(RULE_TESTS.read_text())
    return {
        case["alertname"]
        for test in loaded["tests"]
        if any("stale" in str(series["values"]) for series in test["input_series"])
        for case in test.get("alert_rule_test", [])
        if not case["exp_alerts"]
    }


def test_every_alert_on_a_counter_has_a_rule_test_silent_after_a_failed_scrape() -> None:
    on_counters = {
        rule["alert"] for rule in alert_rules() if counters_judged_by_increase(rule["expr"])
    }
    assert on_counters - silent_after_a_failed_scrape() == set()
