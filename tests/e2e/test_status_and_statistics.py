"""The trader's status lookup and the officers' statistics, over a real run.

Hub, the three adapters and their simulated partner systems as processes on the real
broker; no risk targeting (an empty rules file) so every outcome follows from the
partners' answers alone. The view is eventually consistent (it reads the status and facts
topics), so each check waits until the hub serves the expected state, with a deadline.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from gun_hub.model.verdicts import Outcome
from tests.builders import EORI, declaration_xml, document, goods_item
from tests.conftest import KafkaEnv
from tests.e2e.conftest import Pipeline, start_pipeline

pytestmark = [pytest.mark.broker, pytest.mark.e2e]

SALMON = "26FRSTATUS00000001"  # DGAL and CITES, both valid: RELEASE, then written off
LICENCE = "26FRSTATUS00000002"  # a war-material licence: RELEASE, details confidential
UNKNOWN_CHED = "26FRSTATUS00000003"  # DGAL does not know the certificate: REFUSE
CHED = "CHEDP.FR.2026.0001234"
LICENCE_REFERENCE = "LEMG.FR.2026.0042"


@pytest.fixture
def every_partner_no_targeting(
    kafka_env: KafkaEnv, samples: Path, tmp_path: Path
) -> Iterator[Pipeline]:
    rules = tmp_path / "no-targeting.toml"
    rules.write_text("# outcomes from the partners' answers only\n")
    yield from start_pipeline(
        kafka_env,
        tmp_path,
        samples,
        partners=("dgal", "cites", "dga"),
        hub_env={"GUN_HUB_HUB__RISK_RULES": str(rules)},
    )


def get(pipeline: Pipeline, path: str) -> tuple[int, Any]:
    url = f"http://127.0.0.1:{pipeline.hub_port}{path}"
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as err:
        return err.code, json.load(err)


async def served(
    pipeline: Pipeline, path: str, ready: Callable[[Any], bool], timeout_s: float = 60
) -> Any:
    """The hub's answer at ``path`` once ``ready`` holds for it (fails at the deadline)."""
    deadline = time.monotonic() + timeout_s
    body: Any = None
    while time.monotonic() < deadline:
        pipeline.group.check_alive()
        code, body = get(pipeline, path)
        if code == 200 and ready(body):
            return body
        await asyncio.sleep(0.2)
    pytest.fail(f"{path} never became what was expected; last answer: {body}")


def gun_hub(pipeline: Pipeline, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "gun_hub",
            *args,
            "--hub-url",
            f"http://127.0.0.1:{pipeline.hub_port}",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, **pipeline.group.base_env},
    )


async def test_status_lookup_and_statistics_follow_a_real_run(
    every_partner_no_targeting: Pipeline,
) -> None:
    pipeline = every_partner_no_targeting
    await pipeline.submit(
        [
            declaration_xml(
                reference=SALMON,
                items=(
                    goods_item(1, (document("N853", CHED, 1, "100", "KGM"),)),
                    goods_item(
                        2,
                        (document("C638", "CITES.FR.2026.555", 1, "2", "NAR"),),
                        commodity_code="0106190000",
                    ),
                ),
            ),
            declaration_xml(
                reference=LICENCE,
                items=(
                    goods_item(
                        1,
                        (document("LEMG", LICENCE_REFERENCE, 1, "5", "NAR"),),
                        commodity_code="9301100000",
                    ),
                ),
            ),
            declaration_xml(
                reference=UNKNOWN_CHED,
                items=(goods_item(1, (document("N853", "CHEDP.FR.2026.9999999", 1, "1", "KGM"),)),),
            ),
        ]
    )

    # The trader's lookup: released, then the quantities written off, with the history.
    salmon = await served(
        pipeline,
        f"/declarations/{SALMON}",
        lambda body: body.get("quantities") == ["WRITTEN_OFF"],
    )
    assert salmon["state"] == "DECIDED"
    assert salmon["outcome"] == Outcome.RELEASE.value
    assert salmon["answered_by"] == ["cites", "dgal"]
    kinds = [event["kind"] for event in salmon["history"]]
    assert kinds[:2] == ["RECEIVED", "REQUESTS_SENT"]
    assert kinds.index("DECIDED") < kinds.index("FOLLOW_UP_SENT") < kinds.index("WRITTEN_OFF")
    assert all(event["at"] for event in salmon["history"])

    refused = await served(pipeline, f"/declarations/{UNKNOWN_CHED}", lambda b: "outcome" in b)
    assert refused["outcome"] == Outcome.REFUSE.value

    # War material: the verdict is shown, the licence never is.
    licence = await served(
        pipeline, f"/declarations/{LICENCE}", lambda b: b.get("quantities") == ["WRITTEN_OFF"]
    )
    assert licence["outcome"] == Outcome.RELEASE.value
    assert "VALID" in json.dumps(licence)
    assert LICENCE_REFERENCE not in json.dumps(licence)

    code, body = get(pipeline, "/declarations/26FRNOSUCHDECL0001")
    assert (code, body["error"]) == (404, "unknown declaration")
    assert get(pipeline, "/declarations/not%20a%20reference")[0] == 400

    # The statistics count each decision once, by outcome, day, authority and code.
    stats = await served(pipeline, "/stats", lambda b: b["decisions"]["total"] >= 3)
    decisions = stats["decisions"]
    assert decisions["by_outcome"] == {"REFUSE": 1, "RELEASE": 2}
    [(day, per_day)] = decisions["by_day"].items()
    assert per_day == {"REFUSE": 1, "RELEASE": 2}
    assert decisions["by_authority"] == {
        "cites": {"RELEASE": 1},
        "dga": {"RELEASE": 1},
        "dgal": {"REFUSE": 1, "RELEASE": 1},
    }
    assert decisions["by_document_code"]["N853"] == {
        "uses": 2,
        "by_verdict": {"NOT_FOUND": 1, "VALID": 1},
    }
    assert get(pipeline, f"/stats?from={day}&to={day}")[1]["decisions"]["total"] == 3
    assert get(pipeline, "/stats?from=2000-01-01&to=2000-01-02")[1]["decisions"]["total"] == 0
    assert get(pipeline, "/stats?from=yesterday")[0] == 400

    used = get(pipeline, f"/stats/declarants/{EORI}/documents")[1]["documents"]
    assert {(d["code"], d["document"]) for d in used} == {
        ("N853", CHED),
        ("N853", "CHEDP.FR.2026.9999999"),
        ("C638", "CITES.FR.2026.555"),
        ("LEMG", "(confidential)"),
    }

    written = get(pipeline, f"/stats/written-off?document={CHED}")[1]["written_off"]
    assert [(w["document"], w["line"], w["quantity"], w["unit"]) for w in written] == [
        (CHED, 1, "100", "KGM")
    ]
    everything = get(pipeline, "/stats/written-off")[1]["written_off"]
    assert {w["document"] for w in everything} == {CHED, "CITES.FR.2026.555"}

    # The same through the command line.
    shown = gun_hub(pipeline, "status", SALMON)
    assert shown.returncode == 0, shown.stderr
    assert f"{SALMON} version 1: DECIDED RELEASE" in shown.stdout
    assert "WRITTEN_OFF [dgal]" in shown.stdout
    missing = gun_hub(pipeline, "status", "26FRNOSUCHDECL0001")
    assert missing.returncode == 1
    assert "unknown declaration" in missing.stderr
    figures = gun_hub(pipeline, "stats", "--json")
    assert figures.returncode == 0, figures.stderr
    assert json.loads(figures.stdout)["decisions"]["by_outcome"] == {"REFUSE": 1, "RELEASE": 2}
    table = gun_hub(pipeline, "stats", "--written-off", "--document", CHED)
    assert CHED in table.stdout
    assert "100" in table.stdout
