"""Who may see what on the hub's listeners (ADR 0007), each attack performed and refused.

The listeners run for real (aiohttp on free ports) over a view built in memory; keys,
tokens and passwords are generated at test time.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
import secrets
import ssl
import threading
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from gun_contract.settings import WebSettings
from gun_hub.domain.status_events import StatusEvent, StatusKind
from gun_hub.ops.facts import DecisionFact, DocumentUse, fact_bytes
from gun_hub.ops.lag_metrics import OpsState
from gun_hub.ops.view import FeedRecord, FeedTopics, OpsView, ViewQueries
from gun_hub.security.web_auth import (
    AccessConfigError,
    add_officer,
    basic_authorization,
    generate_portal_key,
    issue_trader_token,
    load_portal_key,
)
from gun_hub.web import HubWeb, WebConfigError, build_web
from gun_hub.web.probes import register_probes
from gun_hub.web.queries import ViewBusy
from gun_tools.processes import free_port

TOPICS = FeedTopics(status="s", facts="f", dlq="d", health="h")
TRADER = "FR12345678901234"
OTHER = "DE987654321"
MINE = "26FRWEB00000000001"  # lodged by TRADER, with a war-material licence
THEIRS = "26FRWEB00000000002"  # lodged by OTHER
ALICE_PASSWORD = secrets.token_urlsafe(16)  # made at test time, never committed
NOW = dt.datetime.now(dt.UTC)


class Records:
    def __init__(self) -> None:
        self.offset = 0

    def __call__(self, topic: str, value: bytes) -> FeedRecord:
        self.offset += 1
        return FeedRecord(topic, 0, self.offset, 0, value)


def fill(view: OpsView) -> None:
    record = Records()

    def status(reference: str, kind: StatusKind, **fields: Any) -> FeedRecord:
        event = StatusEvent(reference=reference, version=1, kind=kind, at=NOW, **fields)
        return record(TOPICS.status, event.to_bytes())

    def decided(reference: str, declarant: str, documents: list[DocumentUse]) -> FeedRecord:
        fact = DecisionFact(
            reference=reference,
            version=1,
            declarant_eori=declarant,
            stage="LODGED",
            outcome="RELEASE",
            decided_at=NOW,
            authorities=sorted({d.authority for d in documents if d.authority}),
            documents=documents,
        )
        return record(TOPICS.facts, fact_bytes(fact))

    ched = DocumentUse(
        goods_item=1, code="N853", reference="CHEDP.1", authority="dgal", verdict="VALID"
    )
    licence = DocumentUse(
        goods_item=1, code="LEMG", reference=None, authority="dga", verdict="VALID"
    )
    view.apply(
        [
            status(MINE, StatusKind.RECEIVED),
            status(MINE, StatusKind.REQUESTS_SENT, detail="RESERVE sent to dgal, dga"),
            status(MINE, StatusKind.ANSWER_RECEIVED, detail="VALID", authority="dgal"),
            status(MINE, StatusKind.ANSWER_RECEIVED, detail="VALID", authority="dga"),
            status(MINE, StatusKind.DECIDED, outcome="RELEASE"),
            status(MINE, StatusKind.POST_RELEASE_ALERT, detail="MISMATCH", authority="dga"),
            decided(MINE, TRADER, [ched, licence]),
            status(THEIRS, StatusKind.RECEIVED),
            status(THEIRS, StatusKind.DECIDED, outcome="RELEASE"),
            decided(THEIRS, OTHER, [ched]),
        ]
        + [
            decided(f"26FRWEBPAGE{n:07d}", OTHER, [ched.model_copy(update={"reference": f"C.{n}"})])
            for n in range(25)
        ]
    )


@dataclass
class Hub:
    web: HubWeb
    trader_url: str
    officer_url: str
    portal_key: Any
    officer: str
    settings: WebSettings

    def token(self, eori: str = TRADER, **changes: Any) -> str:
        return "Bearer " + issue_trader_token(
            self.portal_key,
            eori,
            issuer=self.settings.portal_issuer,
            audience=self.settings.token_audience,
            **changes,
        )


@pytest.fixture
def view(tmp_path: Path) -> Iterator[OpsView]:
    found = OpsView(tmp_path / "view.sqlite3", TOPICS)
    fill(found)
    yield found
    found.close()


def settings_for(tmp_path: Path, **changes: Any) -> tuple[WebSettings, Any]:
    private, public = generate_portal_key(tmp_path / "portal")
    officers = tmp_path / "officers"
    add_officer(officers, "alice", ALICE_PASSWORD)
    settings = WebSettings(
        trader_port=free_port(),
        officer_port=free_port(),
        portal_jwks=public,
        officers_file=officers,
        page_size_default=10,
        page_size_max=20,
        stats_max_days=31,
        **changes,
    )
    return settings, load_portal_key(private)


@pytest.fixture
async def hub(tmp_path: Path, view: OpsView) -> AsyncIterator[Hub]:
    settings, key = settings_for(tmp_path)
    web = build_web(settings, view.path, OpsState(), {"dga"})
    assert web is not None
    await web.start()
    try:
        yield Hub(
            web,
            f"http://127.0.0.1:{settings.trader_port}",
            f"http://127.0.0.1:{settings.officer_port}",
            key,
            basic_authorization("alice", ALICE_PASSWORD),
            settings,
        )
    finally:
        await web.stop()


async def get(
    url: str, authorization: str | None = None, forwarded_for: str | None = None
) -> tuple[int, Any, Any]:
    headers = {"Authorization": authorization} if authorization else {}
    if forwarded_for is not None:
        headers["X-Forwarded-For"] = forwarded_for
    async with aiohttp.ClientSession() as session, session.get(url, headers=headers) as response:
        body = await response.read()
        try:
            parsed: Any = await response.json(content_type=None)
        except ValueError:
            parsed = body
        return response.status, parsed, response.headers


# -- the probes port -----------------------------------------------------------------------


def test_the_probe_port_serves_probes_and_metrics_only() -> None:
    """Nothing that names a declaration or a trader is left on faust's web server."""
    registered: list[str] = []

    class FakeFaust:
        def page(self, path: str) -> Any:
            registered.append(path)
            return lambda handler: handler

    register_probes(FakeFaust(), lambda: [])
    assert sorted(registered) == ["/livez", "/metrics", "/readyz"]


# -- traders -------------------------------------------------------------------------------


async def test_a_trader_reads_its_own_declaration_with_no_trace_of_the_licence(hub: Hub) -> None:
    code, body, headers = await get(f"{hub.trader_url}/declarations/{MINE}", hub.token())
    assert code == 200
    assert (body["state"], body["outcome"], body["answered_by"]) == ("DECIDED", "RELEASE", ["dgal"])
    assert "post_release_alert" not in body
    assert all(e.get("authority") != "dga" for e in body["history"])
    assert "dga," not in str(body)
    assert "'dga'" not in str(body)
    assert headers["Cache-Control"] == "no-store"


async def test_a_trader_cannot_read_a_declaration_it_did_not_lodge(hub: Hub) -> None:
    """Another trader's reference answers exactly as an unknown one: nothing to probe."""
    theirs = await get(f"{hub.trader_url}/declarations/{THEIRS}", hub.token())
    unknown = await get(f"{hub.trader_url}/declarations/26FRWEBNOSUCH00001", hub.token())
    assert theirs[0] == unknown[0] == 404
    assert theirs[1] == {"error": "unknown declaration", "reference": THEIRS}
    assert unknown[1] == {"error": "unknown declaration", "reference": "26FRWEBNOSUCH00001"}
    # The owner reads it.
    assert (await get(f"{hub.trader_url}/declarations/{THEIRS}", hub.token(OTHER)))[0] == 200


async def test_the_lookup_takes_a_token_with_or_without_the_lodging_scope(hub: Hub) -> None:
    """Only lodging asks for ``gun:lodge`` (review stop 37-i, 4): a read-only integration's
    token, and a lodging one, both read the lookup, as many times as they like within
    their lifetime (a bearer token serves many requests: no ``jti`` memory here)."""
    url = f"{hub.trader_url}/declarations/{MINE}"
    lookup, lodging = hub.token(), hub.token(scope="gun:lodge")
    for authorization in (lookup, lookup, lodging, lodging):
        assert (await get(url, authorization))[0] == 200


async def test_without_a_valid_portal_token_the_trader_listener_tells_nothing(
    hub: Hub, tmp_path: Path
) -> None:
    url = f"{hub.trader_url}/declarations/{MINE}"
    impostor_private, _ = generate_portal_key(tmp_path / "impostor")
    impostor = issue_trader_token(
        load_portal_key(impostor_private), TRADER, issuer="clearance-portal", audience="gun-hub"
    )
    for authorization in (
        None,
        "Bearer not-a-token",
        f"Bearer {impostor}",  # the attacker's own "portal"
        hub.token(lifetime_s=3600),  # a lifetime beyond what the hub accepts
        hub.officer,  # officer credentials are not a trader's
    ):
        code, body, headers = await get(url, authorization)
        assert code == 401, authorization
        assert body == {"error": "a valid portal token is required"}
        assert headers["WWW-Authenticate"].startswith("Bearer")
    # Refused before the reference is even looked at.
    assert (await get(f"{hub.trader_url}/declarations/not%20a%20ref"))[0] == 401
    assert (await get(f"{hub.trader_url}/declarations/not%20a%20ref", hub.token()))[0] == 400


async def test_an_expired_portal_token_is_told_it_has_expired_and_nothing_more(
    hub: Hub, tmp_path: Path
) -> None:
    """The tokens of "Credentials for a local run" last 5 minutes: afterwards the trader
    was told "a valid portal token is required", and had to guess why (review stop 39-O,
    O8). A genuine token that has expired is told so: the trader's own token, checked
    signed by the portal before its dates are read; a forged one still hears nothing."""
    url = f"{hub.trader_url}/declarations/{MINE}"
    code, body, headers = await get(url, hub.token(now=NOW.timestamp() - 3600))
    assert code == 401
    assert body == {"error": "the portal token has expired: ask the portal for another"}
    assert headers["WWW-Authenticate"].startswith("Bearer")
    impostor_private, _ = generate_portal_key(tmp_path / "impostor")
    forged_and_expired = issue_trader_token(
        load_portal_key(impostor_private),
        TRADER,
        issuer="clearance-portal",
        audience="gun-hub",
        now=NOW.timestamp() - 3600,
    )
    code, body, _ = await get(url, f"Bearer {forged_and_expired}")
    assert (code, body) == (401, {"error": "a valid portal token is required"})


async def test_statistics_and_the_dashboard_are_not_on_the_trader_listener(hub: Hub) -> None:
    for path in ("/stats", "/dashboard", "/api/dashboard", f"/stats/declarants/{TRADER}/documents"):
        assert (await get(f"{hub.trader_url}{path}", hub.token()))[0] == 404


# -- officers ------------------------------------------------------------------------------


OFFICER_PATHS = (
    "/stats",
    f"/stats/declarants/{OTHER}/documents",
    "/stats/written-off",
    f"/declarations/{MINE}",
    "/dashboard",
    "/dashboard.js",
    "/api/dashboard",
)


async def test_every_officer_page_needs_officer_credentials(hub: Hub) -> None:
    for path in OFFICER_PATHS:
        for authorization in (
            None,
            basic_authorization("alice", "wrong"),
            basic_authorization("mallory", ALICE_PASSWORD),
            hub.token(),  # a trader's token is not an officer's
        ):
            code, body, headers = await get(f"{hub.officer_url}{path}", authorization)
            if code == 429:  # this address sent wrong credentials just now: not checked
                assert int(headers["Retry-After"]) >= 1
                continue
            assert code == 401, (path, authorization)
            assert body == {"error": "officer credentials are required"}
            assert headers["WWW-Authenticate"].startswith("Basic")


async def test_wrong_credentials_hold_the_address_s_next_sign_in_for_a_while(hub: Hub) -> None:
    """Answered 429 with the wait, without a check (security/web_auth.py ``OfficerGate``);
    an officer already signed in goes on."""
    assert (await get(f"{hub.officer_url}/stats", hub.officer))[0] == 200
    guess = basic_authorization("alice", "a-guess-at-test-time")
    assert (await get(f"{hub.officer_url}/stats", guess))[0] == 401
    code, body, headers = await get(f"{hub.officer_url}/stats", guess)
    assert code == 429
    assert body == {"error": "wrong credentials just now: try again later"}
    assert int(headers["Retry-After"]) >= 1
    assert (await get(f"{hub.officer_url}/stats", hub.officer))[0] == 200  # remembered


async def test_an_address_a_peer_names_itself_does_not_escape_the_wait(hub: Hub) -> None:
    """Only a proxy in ``web.trusted_proxies`` is believed about whose request it is."""
    guess = basic_authorization("alice", "a-guess-at-test-time")
    assert (await get(f"{hub.officer_url}/stats", guess, "198.51.100.7"))[0] == 401
    assert (await get(f"{hub.officer_url}/stats", guess, "198.51.100.8"))[0] == 429


async def test_behind_a_trusted_proxy_each_client_waits_for_its_own_failures(
    tmp_path: Path, view: OpsView
) -> None:
    settings, _ = settings_for(tmp_path, trusted_proxies="127.0.0.1")
    web = build_web(settings, view.path, OpsState(), {"dga"})
    assert web is not None
    await web.start()
    try:
        url = f"http://127.0.0.1:{settings.officer_port}/stats"
        guess = basic_authorization("alice", "a-guess-at-test-time")
        assert (await get(url, guess, "198.51.100.7"))[0] == 401
        assert (await get(url, guess, "198.51.100.7"))[0] == 429
        officer = basic_authorization("alice", ALICE_PASSWORD)
        assert (await get(url, officer, "198.51.100.8"))[0] == 200  # not held by another's
    finally:
        await web.stop()


async def test_an_officer_reads_figures_the_full_status_and_the_dashboard(hub: Hub) -> None:
    for path in OFFICER_PATHS:
        code, _, _ = await get(f"{hub.officer_url}{path}", hub.officer)
        assert code == 200, path
    _, full, _ = await get(f"{hub.officer_url}/declarations/{MINE}", hub.officer)
    assert full["post_release_alert"] is True  # officers see what they are entitled to
    assert full["answered_by"] == ["dga", "dgal"]
    # Today as the listener answered: a day read before and after it, two days when the
    # request ran across midnight UTC (one read after it alone then named the next day).
    before = dt.datetime.now(dt.UTC).date()
    _, stats, _ = await get(f"{hub.officer_url}/stats", hub.officer)
    after = dt.datetime.now(dt.UTC).date()
    assert stats["decisions"]["total"] == 27
    assert stats["to"] in {before.isoformat(), after.isoformat()}
    _, _, headers = await get(f"{hub.officer_url}/dashboard", hub.officer)
    assert headers["Content-Security-Policy"].startswith("default-src 'self'")
    _, figures, _ = await get(f"{hub.officer_url}/api/dashboard", hub.officer)
    assert figures["decisions_total"] == 27


async def test_answers_are_bounded_and_paged(hub: Hub) -> None:
    officer = hub.officer
    url = hub.officer_url
    code, body, _ = await get(f"{url}/stats?from=2026-01-01&to=2026-12-31", officer)
    assert (code, body["error"]) == (400, "from-to: at most 31 days at once")
    assert (await get(f"{url}/stats?from=2026-02-02&to=2026-02-01", officer))[0] == 400
    assert (await get(f"{url}/stats?from=yesterday", officer))[0] == 400
    documents = f"{url}/stats/declarants/{OTHER}/documents"
    assert (await get(f"{documents}?limit=100000", officer))[0] == 400
    assert (await get(f"{documents}?limit=-1", officer))[0] == 400
    # A digit that is no ASCII digit ("²" is one to str.isdigit, not to int): a 400
    # saying why, not a 500 (review of stop 55).
    assert (await get(f"{documents}?limit=%C2%B2", officer))[0] == 400
    assert (await get(f"{documents}?offset=%D9%A3", officer))[0] == 400  # Arabic-Indic 3
    seen: list[str] = []
    offset: int | None = 0
    while offset is not None:
        _, body, _ = await get(f"{documents}?offset={offset}", officer)
        assert len(body["documents"]) <= 10  # the default page
        seen += [d["document"] for d in body["documents"]]
        offset = body["next_offset"]
    assert len(seen) == len(set(seen)) == 26


# -- configuration -------------------------------------------------------------------------


def test_a_listener_without_the_credentials_it_checks_stops_the_start(tmp_path: Path) -> None:
    state = OpsState()
    assert build_web(WebSettings(), None, state, set()) is None  # both off by default
    with pytest.raises(WebConfigError, match="PORTAL_JWKS"):
        build_web(WebSettings(trader_port=free_port()), None, state, set())
    with pytest.raises(WebConfigError, match="OFFICERS_FILE"):
        build_web(WebSettings(officer_port=free_port()), None, state, set())
    with pytest.raises(WebConfigError, match="differ"):
        build_web(WebSettings(trader_port=7000, officer_port=7000), None, state, set())
    with pytest.raises(WebConfigError, match="together"):
        build_web(WebSettings(trader_port=7000, tls_cert=tmp_path / "c.pem"), None, state, set())


def self_signed(directory: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=1))
        .not_valid_after(now + dt.timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.touch(mode=0o600)
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604], ids=oct)
def test_a_tls_key_others_can_read_is_refused_naming_it(tmp_path: Path, mode: int) -> None:
    cert, key = self_signed(tmp_path)
    key.chmod(mode)
    settings, _ = settings_for(tmp_path, tls_cert=cert, tls_key=key)
    with pytest.raises(AccessConfigError) as refused:
        build_web(settings, None, OpsState(), set())
    assert str(key) in str(refused.value)
    assert f"mode {mode:o}" in str(refused.value)
    assert "chmod 600" in str(refused.value)


async def test_the_listeners_serve_https_when_given_a_certificate(
    tmp_path: Path, view: OpsView
) -> None:
    cert, key = self_signed(tmp_path)
    settings, portal_key = settings_for(tmp_path, tls_cert=cert, tls_key=key)
    web = build_web(settings, view.path, OpsState(), {"dga"})
    assert web is not None
    await web.start()
    try:
        context = ssl.create_default_context(cafile=str(cert))
        token = issue_trader_token(
            portal_key, TRADER, issuer=settings.portal_issuer, audience=settings.token_audience
        )
        async with aiohttp.ClientSession() as session:
            url = f"https://127.0.0.1:{settings.trader_port}/declarations/{MINE}"
            headers = {"Authorization": f"Bearer {token}"}
            async with session.get(url, headers=headers, ssl=context) as response:
                assert response.status == 200
            with pytest.raises(aiohttp.ClientError):
                await session.get(url.replace("https", "http"), headers=headers)
    finally:
        await web.stop()


async def test_a_port_already_taken_stops_the_start_naming_the_port(
    tmp_path: Path, view: OpsView
) -> None:
    settings, _ = settings_for(tmp_path)
    first = build_web(settings, view.path, OpsState(), {"dga"})
    second = build_web(settings, view.path, OpsState(), {"dga"})
    assert first is not None
    assert second is not None
    await first.start()
    try:
        with pytest.raises(OSError, match=f"cannot bind 127.0.0.1:{settings.trader_port}"):
            await second.start()
    finally:
        await second.stop()
        await first.stop()


async def test_traders_cannot_take_the_view_readers_of_officers(
    tmp_path: Path, view: OpsView
) -> None:
    """Traders and officers ask the view through readers of their own: a trader keeping
    lookups in flight fills its listener's, never the officers' (stop 30, found by review,
    this test first: one reader served both, and a trader with a valid token could make
    the officers' pages answer 503)."""
    settings, _ = settings_for(tmp_path, query_threads=1, query_max_waiting=2)
    web = build_web(settings, view.path, OpsState(), {"dga"})
    assert web is not None
    trader, officer = web.readers["trader"], web.readers["officer"]
    held = threading.Event()

    def slow(_: object) -> int:
        held.wait(10)
        return 1

    try:
        busy = [asyncio.create_task(trader.ask(slow)) for _ in range(2)]
        await asyncio.sleep(0)  # both taken in (ask counts synchronously, then awaits)
        with pytest.raises(ViewBusy):
            await trader.ask(lambda queries: 0)
        assert await asyncio.wait_for(officer.ask(lambda queries: 2), 5) == 2
        held.set()
        assert await asyncio.gather(*busy) == [1, 1]
    finally:
        held.set()
        await web.stop()


async def test_one_trader_keeping_lookups_in_flight_does_not_shut_the_others_out(
    tmp_path: Path, view: OpsView, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A trader's lookups in flight are bounded by trader (``trader_lookups_at_once``):
    past it that trader alone is answered 429. Found by review (stop 46): the listener's
    reader took eight questions for every trader together, and one token (a read-only
    integration's too) keeping eight in flight had every other trader answered 503."""
    # As many threads as questions: each one let in is held in a thread, where it says so.
    settings, key = settings_for(tmp_path, query_threads=8, query_max_waiting=8)
    web = build_web(settings, view.path, OpsState(), {"dga"})
    assert web is not None
    loop = asyncio.get_running_loop()
    held, released = asyncio.Event(), threading.Event()
    holding: list[str] = []
    answered = ViewQueries.history_of_declarant

    def held_for_other(queries: ViewQueries, reference: str, eori: str) -> Any:
        if eori == OTHER:
            holding.append(reference)
            loop.call_soon_threadsafe(held.set)
            released.wait(10)
        return answered(queries, reference, eori)

    monkeypatch.setattr(ViewQueries, "history_of_declarant", held_for_other)
    hub = Hub(web, f"http://127.0.0.1:{settings.trader_port}", "", key, "", settings)
    flood = settings.query_max_waiting
    await web.start()
    try:
        other = [
            asyncio.create_task(get(f"{hub.trader_url}/declarations/{THEIRS}", hub.token(OTHER)))
            for _ in range(flood)
        ]
        while sum(t.done() for t in other) + len(holding) < flood:
            held.clear()
            waiting = [asyncio.ensure_future(held.wait()), *[t for t in other if not t.done()]]
            await asyncio.wait(waiting, timeout=10, return_when=asyncio.FIRST_COMPLETED)
            waiting[0].cancel()
        code, body, _ = await asyncio.wait_for(
            get(f"{hub.trader_url}/declarations/{MINE}", hub.token(TRADER)), 10
        )
        assert code == 200, body
        released.set()
        codes = sorted(c for c, _, _ in await asyncio.gather(*other))
    finally:
        released.set()
        await web.stop()
    at_once = settings.trader_lookups_at_once
    assert codes == [200] * at_once + [429] * (flood - at_once)
