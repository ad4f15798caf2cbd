"""The operations view out of the hub workers (issue 12, ADR 0015).

A hub worker run with ``GUN_HUB_OPS__VIEW_ENABLED=false`` decides and serves its probes,
metrics and lag monitor, and keeps no view: it neither reads the status and facts topics
nor opens the trader and officer listeners, even with their ports set. ``gun-hub view``,
a process without faust agents, answers the trader's status lookup and the officers'
statistics and desks for what that worker decided.

Hub, DGAL adapter and simulated TRACES as processes on the real broker; no risk
targeting, so the outcome follows from the partner's answer alone.
"""

from __future__ import annotations

import asyncio
import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from gun_contract.model.verdicts import Outcome
from gun_hub.runtime.view_process import VIEW_FILE
from gun_hub.security.web_auth import LocalAccess
from gun_tools.processes import free_port, start_view
from tests.builders import declaration_xml, document, goods_item
from tests.conftest import KafkaEnv
from tests.e2e.conftest import start_pipeline
from tests.e2e.test_status_and_statistics import Listening, get

pytestmark = [pytest.mark.broker, pytest.mark.e2e]

SALMON = "26FRVIEWPROC000001"  # DGAL knows the certificate: RELEASE
CHED = "CHEDP.FR.2026.0001234"
ANOTHER_TRADER = "DE999999999"


@dataclass
class WithoutView(Listening):
    """A pipeline whose hub worker runs without the view, with the trader and officer
    settings a view process would serve (the worker must leave them alone)."""

    web_env: dict[str, str]
    work: Path

    def hub_probe(self, path: str) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(self.url(self.pipeline.hub_port, path), timeout=10) as r:  # noqa: S310
                return r.status, r.read().decode()
        except urllib.error.HTTPError as err:
            return err.code, err.read().decode()


@pytest.fixture
def hub_without_view(kafka_env: KafkaEnv, samples: Path, tmp_path: Path) -> Iterator[WithoutView]:
    rules = tmp_path / "no-targeting.toml"
    rules.write_text("# outcomes from the partners' answers only\n")
    access = LocalAccess.create(tmp_path / "access")
    trader_port, officer_port = free_port(), free_port()
    web_env = access.env(trader_port, officer_port)
    for pipeline in start_pipeline(
        kafka_env,
        tmp_path,
        samples,
        partners=("dgal",),
        hub_env={
            "GUN_HUB_OPS__VIEW_ENABLED": "false",
            "GUN_HUB_HUB__RISK_RULES": str(rules),
            **web_env,
        },
    ):
        yield WithoutView(pipeline, access, trader_port, officer_port, web_env, tmp_path)


def salmon() -> bytes:
    return declaration_xml(
        reference=SALMON, items=(goods_item(1, (document("N853", CHED, 1, "100", "KGM"),)),)
    )


def post(url: str, authorization: str, body: dict[str, str]) -> tuple[int, Any]:
    request = urllib.request.Request(  # noqa: S310 - loopback URL
        url,
        data=json.dumps(body).encode(),
        headers={"Authorization": authorization, "Content-Type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
            return response.status, json.load(response)
    except urllib.error.HTTPError as err:
        return err.code, json.load(err)


async def until(ask: Callable[[], tuple[int, Any]], ready: Callable[[Any], bool]) -> Any:
    """The answer once ``ready`` holds for it (the view is eventually consistent; fails
    after a minute)."""
    deadline = time.monotonic() + 60
    body: Any = None
    while time.monotonic() < deadline:
        code, body = ask()
        if code == 200 and ready(body):
            return body
        await asyncio.sleep(0.2)
    pytest.fail(f"never became what was expected; last answer: {body}")


async def test_a_hub_worker_without_the_view_decides_and_serves_its_probes(
    hub_without_view: WithoutView,
) -> None:
    hub = hub_without_view
    await hub.pipeline.submit([salmon()])

    [decided] = await hub.pipeline.decisions(expected=1)
    assert (decided.decision.reference, decided.decision.outcome) == (SALMON, Outcome.RELEASE)

    assert hub.hub_probe("/livez")[0] == 200
    code, ready = hub.hub_probe("/readyz")
    assert (code, json.loads(ready)) == (200, {"status": "ready"})
    metrics = hub.hub_probe("/metrics")[1]
    assert 'gun_hub_decisions_total{outcome="RELEASE"} 1.0' in metrics
    # The lag monitor still measures and publishes on this worker.
    hub_group = hub.pipeline.kafka.env()["GUN_HUB_HUB__APP_ID"]
    await until(
        lambda: (200, hub.hub_probe("/metrics")[1]),
        lambda text: f'kafka_consumergroup_lag_sum{{consumergroup="{hub_group}"' in text,
    )
    # No view: no SQLite file, and the trader and officer ports are not the worker's.
    data_dir = Path(hub.pipeline.hub_env["GUN_HUB_HUB__DATA_DIR"])
    assert not (data_dir / "ops-view.sqlite3").exists()
    assert hub.as_trader(f"/declarations/{SALMON}") == (0, None)
    assert hub.as_officer("/stats") == (0, None)
    assert "served by `gun-hub view`" in hub.pipeline.hub_log()


async def test_a_view_process_answers_for_what_a_worker_without_the_view_decided(
    hub_without_view: WithoutView,
) -> None:
    hub = hub_without_view
    probes = start_view(
        hub.pipeline.group,
        hub.work / "view",
        {**hub.web_env, "GUN_HUB_WEB__ROLLOUT_OPERATORS": hub.access.officer},
    )
    await hub.pipeline.submit([salmon()])
    [decided] = await hub.pipeline.decisions(expected=1)
    assert decided.decision.outcome is Outcome.RELEASE

    # The trader reads its declaration, decided, from the view process...
    status = await until(
        lambda: hub.as_trader(f"/declarations/{SALMON}"),
        lambda body: body.get("state") == "DECIDED",
    )
    assert (status["version"], status["outcome"]) == (1, Outcome.RELEASE.value)
    assert status["answered_by"] == ["dgal"]
    assert [e["kind"] for e in status["history"]][:2] == ["RECEIVED", "REQUESTS_SENT"]
    # ...and another trader cannot tell it from a reference that does not exist.
    assert hub.as_trader(f"/declarations/{SALMON}", ANOTHER_TRADER)[0] == 404

    # The officers' statistics count the decision once; the desks answer there too.
    stats = await until(lambda: hub.as_officer("/stats"), lambda b: b["decisions"]["total"] >= 1)
    assert stats["decisions"]["by_outcome"] == {"RELEASE": 1}
    assert stats["decisions"]["by_authority"] == {"dgal": {"RELEASE": 1}}
    assert hub.as_officer("/dead-letters")[0] == 200
    # The dashboard: the lag the worker's monitor publishes, the adapter's heartbeats.
    hub_group = hub.pipeline.kafka.env()["GUN_HUB_HUB__APP_ID"]
    dashboard = await until(
        lambda: hub.as_officer("/api/dashboard"),
        lambda b: b["lag"] is not None and b["partners"] != [],
    )
    assert hub_group in {g["group"] for g in dashboard["lag"]["groups"]}
    assert [p["authority"] for p in dashboard["partners"]] == ["dgal"]
    code, modes = hub.as_officer("/rollout")
    assert code == 200
    assert modes["authorities"]["dgal"]["mode"] == "enforce"
    # A mode set through the view process (its own producer, the hub's state key) is the
    # one the hub worker decides with.
    code, set_mode = post(
        hub.url(hub.officer_port, "/rollout"),
        hub.access.officer_authorization(),
        {"authority": "dgal", "mode": "shadow", "reason": "pilot"},
    )
    assert code == 200, set_mode
    assert (set_mode["previous"], set_mode["mode"], set_mode["applied"]) == (
        "enforce",
        "shadow",
        True,
    )
    await until(
        lambda: (200, hub.hub_probe("/metrics")[1]),
        lambda text: 'gun_hub_rollout_mode{authority="dgal",mode="shadow",office="*"} 1.0' in text,
    )

    # The view is the view process's file; the worker still keeps none.
    assert (hub.work / "view" / VIEW_FILE).exists()
    assert not (Path(hub.pipeline.hub_env["GUN_HUB_HUB__DATA_DIR"]) / VIEW_FILE).exists()
    assert get(f"http://127.0.0.1:{probes}/readyz") == (200, {"status": "ready"})
    # Stopped as a supervisor stops it (SIGTERM): listeners, readers, producer and view
    # closed, exit 0.
    assert hub.pipeline.group.stop("view") == 0
