"""The trader's status lookup and the officers' statistics, over a real run.

Hub, the three adapters and their simulated partner systems as processes on the real
broker; no risk targeting (an empty rules file) so every outcome follows from the
partners' answers alone. The view is eventually consistent (it reads the status and facts
topics), so each check waits until the hub serves the expected state, with a deadline.

Who may see what (issue 11, item 1; ADR 0007): the probes port serves probes and metrics
only; the trader listener answers a trader with a portal token about its own
declarations, with no trace of the war-material authority; the officer listener answers
officers. Keys and passwords are generated at test time.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from gun_contract.model.verdicts import Outcome
from gun_hub.security.web_auth import LocalAccess
from gun_tools.processes import free_port
from tests.builders import EORI, declaration_xml, document, goods_item
from tests.conftest import KafkaEnv
from tests.e2e.conftest import Pipeline, start_pipeline

pytestmark = [pytest.mark.broker, pytest.mark.e2e]

SALMON = "26FRSTATUS00000001"  # DGAL and CITES, both valid: RELEASE, then written off
LICENCE = "26FRSTATUS00000002"  # a war-material licence: RELEASE, details confidential
UNKNOWN_CHED = "26FRSTATUS00000003"  # DGAL does not know the certificate: REFUSE
CHED = "CHEDP.FR.2026.0001234"
LICENCE_REFERENCE = "LEMG.FR.2026.0042"
ANOTHER_TRADER = "DE999999999"
# How long the DGA partner takes to answer while the test looks at a pending licence.
SLOW_PARTNER_S = 8


@dataclass
class Listening:
    """A running pipeline, the hub's three ports and the credentials to use them."""

    pipeline: Pipeline
    access: LocalAccess
    trader_port: int
    officer_port: int

    def url(self, port: int, path: str) -> str:
        return f"http://127.0.0.1:{port}{path}"

    def as_trader(self, path: str, eori: str = EORI) -> tuple[int, Any]:
        return get(self.url(self.trader_port, path), self.access.trader_authorization(eori))

    def as_officer(self, path: str) -> tuple[int, Any]:
        return get(self.url(self.officer_port, path), self.access.officer_authorization())

    def on_probes_port(self, path: str) -> int:
        return get(self.url(self.pipeline.hub_port, path))[0]


def listening(pipeline: Pipeline, access: LocalAccess, ports: tuple[int, int]) -> Listening:
    return Listening(pipeline, access, *ports)


def web_env(work: Path) -> tuple[LocalAccess, tuple[int, int], dict[str, str]]:
    """A portal key and an officer made now, two free ports, and the hub's settings."""
    access = LocalAccess.create(work / "access")
    ports = (free_port(), free_port())
    return access, ports, access.env(*ports)


@pytest.fixture
def every_partner_no_targeting(
    kafka_env: KafkaEnv, samples: Path, tmp_path: Path
) -> Iterator[Listening]:
    rules = tmp_path / "no-targeting.toml"
    rules.write_text("# outcomes from the partners' answers only\n")
    access, ports, env = web_env(tmp_path)
    for pipeline in start_pipeline(
        kafka_env,
        tmp_path,
        samples,
        partners=("dgal", "cites", "dga"),
        hub_env={"GUN_HUB_HUB__RISK_RULES": str(rules), **env},
        # A partner made slow on purpose (below) still answers within one call.
        env={"GUN_HUB_ADAPTER__PARTNER_TIMEOUT_S": str(3 * SLOW_PARTNER_S)},
    ):
        yield listening(pipeline, access, ports)


def get(url: str, authorization: str | None = None) -> tuple[int, Any]:
    """Status and JSON body; 0 while nothing listens yet (the listeners start with the
    hub's services, after its tables are recovered)."""
    request = urllib.request.Request(  # noqa: S310 - loopback URL
        url, headers={"Authorization": authorization} if authorization else {}
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
            return response.status, json.load(response)
    except urllib.error.HTTPError as err:
        try:
            return err.code, json.load(err)
        except ValueError:
            return err.code, None
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return 0, None


async def served(
    hub: Listening, ask: Callable[[], tuple[int, Any]], ready: Callable[[Any], bool]
) -> Any:
    """The hub's answer once ``ready`` holds for it (fails after a minute)."""
    deadline = time.monotonic() + 60
    body: Any = None
    while time.monotonic() < deadline:
        hub.pipeline.group.check_alive()
        code, body = ask()
        if code == 200 and ready(body):
            return body
        await asyncio.sleep(0.2)
    pytest.fail(f"never became what was expected; last answer: {body}")


def gun_hub(pipeline: Pipeline, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gun_hub", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, **pipeline.group.base_env},
    )


def partner_latency(pipeline: Pipeline, authority: str, seconds: float) -> None:
    """Make ``authority``'s simulated partner answer every call after ``seconds``."""
    request = urllib.request.Request(
        f"http://127.0.0.1:{pipeline.partner_ports[authority]}/admin/faults",
        data=json.dumps({"latency_ms": seconds * 1000}).encode(),
        headers={"Content-Type": "application/json"},
        method="PUT",
    )
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
        assert response.status == 200


def names_dga(body: Any) -> bool:
    return re.search(r"\bdga\b", json.dumps(body), re.IGNORECASE) is not None


async def test_status_lookup_and_statistics_follow_a_real_run(
    every_partner_no_targeting: Listening,
) -> None:
    hub = every_partner_no_targeting
    pipeline = hub.pipeline
    # DGA takes its time: the licence stays being checked for a while.
    partner_latency(pipeline, "dga", SLOW_PARTNER_S)
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

    # A declaration is its trader's from the moment the hub received it (issue 11, item
    # 1), not only once decided: the licence reads as received and being checked, nothing
    # more; another trader still cannot tell it from a reference that does not exist.
    pending = await served(
        hub,
        lambda: hub.as_trader(f"/declarations/{LICENCE}"),
        lambda body: body.get("state") == "CHECKING",
    )
    assert [e["kind"] for e in pending["history"]] == ["RECEIVED"]
    assert (pending["version"], pending["answered_by"]) == (1, [])
    assert "outcome" not in pending
    assert not names_dga(pending), pending
    assert LICENCE_REFERENCE not in json.dumps(pending)
    theirs = hub.as_trader(f"/declarations/{LICENCE}", ANOTHER_TRADER)
    unknown = hub.as_trader("/declarations/26FRNOSUCHDECL0001", ANOTHER_TRADER)
    assert theirs[0] == unknown[0] == 404
    assert theirs[1] == {"error": "unknown declaration", "reference": LICENCE}
    assert unknown[1] == {"error": "unknown declaration", "reference": "26FRNOSUCHDECL0001"}
    assert hub.as_trader(f"/declarations/{LICENCE}")[1]["state"] == "CHECKING"  # still
    partner_latency(pipeline, "dga", 0)

    # The trader's lookup: released, then the quantities written off, with the history.
    salmon = await served(
        hub,
        lambda: hub.as_trader(f"/declarations/{SALMON}"),
        lambda body: body.get("quantities") == ["WRITTEN_OFF"],
    )
    assert salmon["state"] == "DECIDED"
    assert salmon["outcome"] == Outcome.RELEASE.value
    assert salmon["answered_by"] == ["cites", "dgal"]
    kinds = [event["kind"] for event in salmon["history"]]
    assert kinds[:2] == ["RECEIVED", "REQUESTS_SENT"]
    assert kinds.index("DECIDED") < kinds.index("FOLLOW_UP_SENT") < kinds.index("WRITTEN_OFF")
    assert all(event["at"] for event in salmon["history"])

    refused = await served(
        hub, lambda: hub.as_trader(f"/declarations/{UNKNOWN_CHED}"), lambda b: "outcome" in b
    )
    assert refused["outcome"] == Outcome.REFUSE.value

    # War material. The officer sees that the licence was written off...
    officer_view = await served(
        hub,
        lambda: hub.as_officer(f"/declarations/{LICENCE}"),
        lambda b: b.get("quantities") == ["WRITTEN_OFF"],
    )
    assert LICENCE_REFERENCE not in json.dumps(officer_view)
    # ...the trader reads a decision after a check, and nothing of who checked.
    code, licence = hub.as_trader(f"/declarations/{LICENCE}")
    assert code == 200
    assert licence["outcome"] == Outcome.RELEASE.value
    assert licence["answered_by"] == []
    assert "post_release_alert" not in licence
    assert "quantities" not in licence  # the licence's write-off is the authority's
    assert not names_dga(licence), licence
    assert LICENCE_REFERENCE not in json.dumps(licence)
    assert [e["kind"] for e in licence["history"]] == ["RECEIVED", "DECIDED"]

    # Another trader cannot tell a declaration it did not lodge from one that does not exist.
    theirs = hub.as_trader(f"/declarations/{SALMON}", ANOTHER_TRADER)
    unknown = hub.as_trader("/declarations/26FRNOSUCHDECL0001")
    assert (theirs[0], theirs[1]["error"]) == (unknown[0], unknown[1]["error"])
    assert theirs[0] == 404
    assert hub.as_trader("/declarations/not%20a%20reference")[0] == 400
    # No token, or an officer's credentials: nothing.
    assert get(hub.url(hub.trader_port, f"/declarations/{SALMON}"))[0] == 401
    officer = hub.access.officer_authorization()
    assert get(hub.url(hub.trader_port, f"/declarations/{SALMON}"), officer)[0] == 401
    # The probes port serves probes and metrics, nothing else.
    for path in (f"/declarations/{SALMON}", "/stats", "/dashboard", "/api/dashboard"):
        assert hub.on_probes_port(path) == 404, path
    assert hub.on_probes_port("/livez") == 200

    # The statistics count each decision once, by outcome, day, authority and code.
    assert get(hub.url(hub.officer_port, "/stats"))[0] == 401
    assert get(hub.url(hub.officer_port, "/stats"), hub.access.trader_authorization(EORI))[0] == 401
    stats = await served(
        hub, lambda: hub.as_officer("/stats"), lambda b: b["decisions"]["total"] >= 3
    )
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
    assert hub.as_officer(f"/stats?from={day}&to={day}")[1]["decisions"]["total"] == 3
    assert hub.as_officer("/stats?from=2000-01-01&to=2000-01-02")[1]["decisions"]["total"] == 0
    assert hub.as_officer("/stats?from=yesterday")[0] == 400
    assert hub.as_officer("/stats?from=2000-01-01&to=2026-12-31")[0] == 400  # too long

    used = hub.as_officer(f"/stats/declarants/{EORI}/documents")[1]["documents"]
    assert {(d["code"], d["document"]) for d in used} == {
        ("N853", CHED),
        ("N853", "CHEDP.FR.2026.9999999"),
        ("C638", "CITES.FR.2026.555"),
        ("LEMG", "(confidential)"),
    }

    written = hub.as_officer(f"/stats/written-off?document={CHED}")[1]["written_off"]
    assert [(w["document"], w["line"], w["quantity"], w["unit"]) for w in written] == [
        (CHED, 1, "100", "KGM")
    ]
    everything = hub.as_officer("/stats/written-off")[1]["written_off"]
    assert {w["document"] for w in everything} == {CHED, "CITES.FR.2026.555"}

    # The same through the command line, each with its credentials.
    trader_url = hub.url(hub.trader_port, "")
    officer_url = hub.url(hub.officer_port, "")
    token = str(hub.access.token_file(EORI))
    credentials = str(hub.access.credentials_file)
    shown = gun_hub(pipeline, "status", SALMON, "--token-file", token, "--hub-url", trader_url)
    assert shown.returncode == 0, shown.stderr
    assert f"{SALMON} version 1: DECIDED RELEASE" in shown.stdout
    assert "WRITTEN_OFF [dgal]" in shown.stdout
    hidden = gun_hub(pipeline, "status", LICENCE, "--token-file", token, "--hub-url", trader_url)
    assert hidden.returncode == 0, hidden.stderr
    assert not re.search(r"\bdga\b", hidden.stdout, re.IGNORECASE), hidden.stdout
    missing = gun_hub(
        pipeline, "status", "26FRNOSUCHDECL0001", "--token-file", token, "--hub-url", trader_url
    )
    assert missing.returncode == 1
    assert "unknown declaration" in missing.stderr
    anonymous = gun_hub(pipeline, "status", SALMON, "--hub-url", trader_url)
    assert anonymous.returncode == 2
    figures = gun_hub(
        pipeline, "stats", "--json", "--credentials-file", credentials, "--hub-url", officer_url
    )
    assert figures.returncode == 0, figures.stderr
    assert json.loads(figures.stdout)["decisions"]["by_outcome"] == {"REFUSE": 1, "RELEASE": 2}
    table = gun_hub(
        pipeline, "stats", "--written-off", "--document", CHED,
        "--credentials-file", credentials, "--hub-url", officer_url,
    )  # fmt: skip
    assert CHED in table.stdout
    assert "100" in table.stdout
