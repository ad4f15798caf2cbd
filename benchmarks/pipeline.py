"""End-to-end throughput: declarations in, signed and encrypted decisions out.

A broker of its own, the simulated TRACES, the DGAL adapter and the hub as processes,
N lodged declarations each quoting one CHED-P line (reserve, decide, write off).
Once every declaration is decided, the decisions topic is read again to its end and
every (reference, version) decided more than once is reported
(``benchmarks/decision_books.py``).

Run: ./tasks bench-pipeline [COUNT]
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, cast

import aiohttp

from benchmarks.common import save
from benchmarks.decision_books import books_of_the_run, summary
from gun_contract.kafka.admin import ensure_topics
from gun_contract.resources import config_path
from gun_contract.security.entitlements import Entitlements, parties
from gun_contract.security.jose_envelope import JoseEnvelope
from gun_contract.security.keystore import KeystoreFolder, PartyKeys
from gun_contract.security.replay import MemoryReplayGuard, NoReplayMemory
from gun_contract.settings import BrokerSettings
from gun_contract.topics import topic_registry
from gun_hub.cli.progress import progress_bar
from gun_hub.domain.routing import load_routing_table
from gun_tools.clearance_stand_in import DecisionReader, submit_declarations
from gun_tools.local_broker import LocalBroker
from gun_tools.processes import (
    ProcessGroup,
    free_port,
    stopping_what_it_started_on_termination,
    wait_http_ok,
)

REPO = Path(__file__).resolve().parent.parent
DOCUMENT = "CHEDP.BENCH.2026.1"


def declaration(reference: str) -> bytes:
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<Declaration xmlns="urn:gun-hub:declaration:v1"><Reference>{reference}</Reference>
<Version>1</Version><Stage>LODGED</Stage><Direction>IMPORT</Direction>
<Procedure>4000</Procedure><LodgedAt>2026-11-22T10:00:00Z</LodgedAt>
<CustomsOffice>FR000690</CustomsOffice><Declarant><Eori>FR12345678901234</Eori>
<Name>Example SARL</Name></Declarant><CountryOfDispatch>NO</CountryOfDispatch>
<CountryOfDestination>FR</CountryOfDestination><GoodsItem><Number>1</Number>
<CommodityCode>0302130000</CommodityCode><Description>Fresh salmon</Description>
<CountryOfOrigin>NO</CountryOfOrigin><NetMass unit="KGM">10</NetMass><Document>
<Code>N853</Code><Reference>{DOCUMENT}</Reference><Line>1</Line>
<Quantity unit="KGM">10</Quantity></Document></GoodsItem></Declaration>""".encode()


async def run(count: int, work: Path, broker: LocalBroker) -> dict[str, object]:
    routing = load_routing_table(config_path("routing.toml"))
    topics = topic_registry("bench", routing.authorities)
    await ensure_topics(broker.bootstrap_servers, topics, 4, 1)
    keys = work / "keys"
    KeystoreFolder(keys).init(parties(topics))
    port = free_port()
    env = {
        "GUN_HUB_KAFKA__BOOTSTRAP_SERVERS": broker.bootstrap_servers,
        "GUN_HUB_KAFKA__TOPIC_PREFIX": "bench",
        "GUN_HUB_SECURITY__KEYS_DIR": str(keys),
        "GUN_HUB_SECURITY__STATE_DIR": str(work / "state"),
        "GUN_HUB_LOG_LEVEL": "WARNING",
    }
    with ProcessGroup(work / "logs", env) as group:
        group.start(
            "partner-sim-dgal",
            [
                "partner-sim",
                "dgal",
                "--documents",
                str(REPO / "samples" / "partners" / "dgal-documents.json"),
                "--port",
                str(port),
                "--db",
                str(work / "ledger.sqlite"),
            ],
        )
        wait_http_ok(f"http://127.0.0.1:{port}/health", 30, group)
        async with aiohttp.ClientSession() as http:
            await http.put(
                f"http://127.0.0.1:{port}/admin/documents",
                json={
                    "documents": [
                        {
                            "reference": DOCUMENT,
                            "type": "N853",
                            "status": "VALIDATED",
                            "lines": [
                                {
                                    "line": 1,
                                    "commodity_code": "0302",
                                    "quantity": "100000000",
                                    "unit": "KGM",
                                }
                            ],
                        }
                    ]
                },
            )
        group.start(
            "adapter-dgal",
            ["adapter", "dgal"],
            {"GUN_HUB_ADAPTER__PARTNER_URL": f"http://127.0.0.1:{port}"},
        )
        hub_port = free_port()
        group.start(
            "hub",
            ["hub"],
            {"GUN_HUB_HUB__DATA_DIR": str(work / "hub"), "GUN_HUB_HUB__WEB_PORT": str(hub_port)},
        )
        wait_http_ok(f"http://127.0.0.1:{hub_port}/livez", 60, group)
        envelope = JoseEnvelope(
            PartyKeys.load(keys, "clearance"),
            Entitlements.from_registry(topics),
            MemoryReplayGuard(),
        )
        reader = DecisionReader(broker.bootstrap_servers, topics.decisions, envelope)
        await reader.start(from_beginning=True)
        # Warm-up: the first declarations pay for group joins and JIT of everything.
        await submit_declarations(
            broker.bootstrap_servers,
            topics.declarations,
            [declaration(f"26FRWARM{n:010d}") for n in range(20)],
            envelope,  # sealed by the clearance system, as in production
        )
        await reader.collect(expected=20, timeout_s=60)
        references = [f"26FRBENCH{n:09d}" for n in range(count)]
        began = time.monotonic()
        submitted = asyncio.create_task(
            submit_declarations(
                broker.bootstrap_servers,
                topics.declarations,
                [declaration(r) for r in references],
                envelope,
            )
        )
        arrivals: list[float] = []
        seen: set[str] = set()  # each declaration timed by its first decision
        with progress_bar("decisions", total=count, unit="declarations") as bar:
            while len(seen) < count and time.monotonic() - began < 600:
                group.check_alive()
                before = len(seen)
                for received in await reader.collect(expected=count, timeout_s=0.5):
                    if received.decision.reference not in seen:
                        seen.add(received.decision.reference)
                        arrivals.append(time.monotonic() - began)
                bar.advance(len(seen) - before)
        await submitted
        await reader.stop()
        # Every decision of the run, the warm-up's included, each copy counted: a
        # duplicate is reported, not dropped (review stop 37, T11).
        books = await books_of_the_run(
            broker.bootstrap_servers,
            topics.decisions,
            JoseEnvelope(
                PartyKeys.load(keys, "clearance"),
                Entitlements.from_registry(topics),
                NoReplayMemory(),
            ),
        )
    elapsed = arrivals[-1] if arrivals else float("nan")
    return {
        "declarations": count,
        "decided": len(seen),
        "seconds": round(elapsed, 2),
        "declarations_per_second": round(len(seen) / elapsed, 1),
        "median_time_to_decision_s": round(statistics.median(arrivals), 2) if arrivals else None,
        "duplicate_decisions": books["duplicate_decisions"],
        "decision_books": books,
    }


def main() -> int:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
    with tempfile.TemporaryDirectory() as folder:
        work = Path(folder)
        broker = LocalBroker(
            BrokerSettings(
                home=work / "kafka",
                jars_cache=REPO / ".gun-hub" / "cache",
                port=free_port(),
                controller_port=free_port(),
            )
        )
        broker.start()
        try:
            result = asyncio.run(run(count, work, broker))
        finally:
            broker.stop()
    print(
        f"{result['decided']} of {count} declarations decided in {result['seconds']} s: "
        f"{result['declarations_per_second']} declarations/s end to end (signed, encrypted)"
    )
    books = cast(dict[str, Any], result["decision_books"])
    print(summary(books))
    print(f"saved {save('pipeline', result)}")
    if result["duplicate_decisions"] or not books["read_to_end"]:
        print("NOT TRUSTWORTHY: decisions doubled or not all read again", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    # A SIGTERM or SIGHUP stops the broker and components it started, as Ctrl-C does.
    with stopping_what_it_started_on_termination():
        sys.exit(main())
