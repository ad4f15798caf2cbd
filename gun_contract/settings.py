"""Configuration, read once at start-up from ``GUN_HUB_*`` environment variables.

Nested groups use ``__``: ``GUN_HUB_KAFKA__BOOTSTRAP_SERVERS=host:9092``. Nothing reads the
environment at import time; entry points call :func:`load_settings` and pass the result
down, so tests build their own :class:`Settings` without touching the process environment.
"""

from __future__ import annotations

import difflib
import logging
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import (
    BaseModel,
    Field,
    NonNegativeFloat,
    NonNegativeInt,
    PositiveFloat,
    PositiveInt,
    SecretStr,
)
from pydantic_settings import BaseSettings, SettingsConfigDict

from gun_contract.limits import MAX_DECLARATION_BYTES
from gun_contract.logs import LogFormat
from gun_contract.resources import config_path
from gun_contract.stop_deadline import DEFAULT_STOP_WITHIN_S

DEFAULT_STATE_DIR = Path(".gun-hub")
ENV_PREFIX = "GUN_HUB_"
# What a portal token must grant to lodge over HTTP (the OAuth ``scope`` claim, RFC 8693
# section 4.2); the trader lookup asks for none (ADR 0007, addendum of stop 38).
DEFAULT_LODGING_SCOPE = "gun:lodge"
# The test suite's own variables (GUN_HUB_TEST_BOOTSTRAP), read by tests/conftest.py.
_TEST_SUITE_PREFIX = "GUN_HUB_TEST_"

log = logging.getLogger(__name__)


class KafkaSettings(BaseModel):
    """How every component reaches the cluster."""

    bootstrap_servers: str = Field(
        "127.0.0.1:9092", description="Comma-separated host:port list of the brokers."
    )
    topic_prefix: str = Field(
        "gun", pattern=r"^[A-Za-z0-9_-]+$", description="Prefix of every topic name."
    )
    partitions: PositiveInt = Field(
        4,
        description="Partitions of every keyed topic. The hub's tables need all its input "
        "topics co-partitioned, so one number serves them all.",
    )
    replication_factor: PositiveInt = Field(1, description="Replicas of every topic.")
    security_protocol: Literal["PLAINTEXT", "SASL_SSL"] = Field(
        "PLAINTEXT", description="PLAINTEXT locally; SASL_SSL (SCRAM-SHA-512) when secured."
    )
    sasl_username: str | None = Field(None, description="SCRAM user (the party's principal).")
    sasl_password: SecretStr | None = Field(None, description="SCRAM password.")
    ssl_cafile: Path | None = Field(
        None, description="CA certificate the broker's is checked with."
    )


class BrokerSettings(BaseModel):
    """The embedded broker started by ``gun-hub kafka start``: one node by default, or a
    local KRaft cluster (``--nodes 3``, docs/local-kafka.md)."""

    kafka_version: str = Field("3.9.2", description="Apache Kafka release fetched from Maven.")
    home: Path = Field(
        DEFAULT_STATE_DIR / "kafka",
        description="Folder for the broker's data, logs, configuration and pid file.",
    )
    jars_cache: Path = Field(
        DEFAULT_STATE_DIR / "cache",
        description="Folder where the Kafka jars fetched from Maven Central are kept; "
        "brokers with different homes (tests) share it.",
    )
    host: str = Field("127.0.0.1", description="Address the broker listens on.")
    port: PositiveInt = Field(9092, description="Client (PLAINTEXT) port.")
    controller_port: PositiveInt = Field(9093, description="KRaft controller port.")
    nodes: int = Field(
        1,
        ge=1,
        le=9,
        description="Nodes `gun-hub kafka start` runs: 1, the single broker on port and "
        "controller_port; 3 or more, a local cluster, each node broker and KRaft "
        "controller, replication factor 3, min.insync.replicas 2 (overridden by --nodes).",
    )
    cluster_ports: list[PositiveInt] = Field(
        default_factory=list,
        description="Client ports of a cluster's nodes, node 1 first, as JSON "
        "([29092, 29093, 29094]); empty: 29092, 29093, ... (the Compose cluster's).",
    )
    cluster_controller_ports: list[PositiveInt] = Field(
        default_factory=list,
        description="KRaft controller ports of a cluster's nodes, node 1 first; empty: "
        "29192, 29193, ...",
    )
    heap: str = Field(
        "512m", description="JVM heap (-Xms and -Xmx) of the broker, or of each node."
    )
    start_timeout_s: float = Field(60.0, description="How long `start` waits for readiness.")
    secure: bool = Field(
        False,
        description="Secured profile: SASL_SSL with SCRAM-SHA-512, TLS, ACLs required "
        "(docs/security.md). Credentials are generated under <home>/secure.",
    )


class HubSettings(BaseModel):
    """The faust worker that validates, routes, correlates and decides."""

    app_id: str = Field("gun-hub", description="faust application id (consumer group).")
    store: str = Field(
        "rocksdb://",
        description="faust table store: rocksdb:// in production, memory:// for tests.",
    )
    data_dir: Path = Field(DEFAULT_STATE_DIR / "hub", description="faust data directory.")
    rocksdb_write_buffer_mib: PositiveInt = Field(
        2,
        description="Each RocksDB table partition's write buffer (two per partition). "
        "faust's default, 64 MiB, is never filled at a hub's write rate: nothing was "
        "flushed, and the write-ahead logs and memory grew for the whole run (bench-steady).",
    )
    rocksdb_memory_mib: PositiveInt = Field(
        64,
        description="Memory of all the worker's RocksDB tables together: one read cache "
        "shared by every table partition, their write buffers charged to it (up to half; "
        "runtime/table_store.py). faust's default is a read cache per table partition.",
    )
    gc_freeze_after_start: bool = Field(
        True,
        description="Once the worker has started (tables recovered), move every object it "
        "holds then out of the garbage collector's reach (gc.freeze): a full collection "
        "no longer walks the modules, the runtime and the tables' startup state, and its "
        "pause shrinks (runtime/gc_pauses.py, gun_hub_gc_pause_seconds).",
    )
    web_enabled: bool = Field(True, description="Serve health, metrics and status pages.")
    web_host: str = Field("127.0.0.1", description="Address of the hub's web server.")
    web_port: PositiveInt = Field(6066, description="Port of the hub's web server.")
    max_declaration_bytes: PositiveInt = Field(
        MAX_DECLARATION_BYTES,
        description="Declarations larger than this are refused before parsing (limits.py).",
    )
    routing_table: Path = Field(
        default_factory=lambda: config_path("routing.toml"),
        description="TOML file mapping document codes to authorities.",
    )
    audit_checkpoint_every: PositiveInt = Field(
        100, description="Audit records between two checkpoints signed by the hub."
    )
    audit_checkpoint_within_s: PositiveFloat = Field(
        60.0,
        description="Longest an audit record waits for a checkpoint while the hub runs; "
        "`gun-hub audit verify` allows this plus 300 s.",
    )
    audit_transaction_interval_ms: NonNegativeInt = Field(
        250,
        description="An audit partition's links are appended in one transaction at most "
        "this often (what arrives meanwhile goes into the next); only the settling of "
        "their events waits, not the decisions (runtime/audit_lanes.py).",
    )
    publisher_memory_decisions: PositiveInt = Field(
        20_000,
        description="Decisions the decision publisher remembers per outbox partition (the "
        "latest published), to skip one announced again after a crash; a repeat follows "
        "its original within the records a crash left uncommitted (publisher.py). Each "
        "declaration partition's latest decisions, a quarter of this at most, are kept "
        "besides (published_memory.py).",
    )
    producer_linger_ms: NonNegativeInt = Field(
        0,
        description="How long the worker's producer waits to fill a request before sending it.",
    )
    publisher_transaction_interval_ms: NonNegativeInt = Field(
        50,
        description="An outbox partition's decisions are published in one transaction at "
        "most this often; an idle partition's at once (publisher.py).",
    )
    publisher_stall_s: PositiveFloat = Field(
        60.0,
        description="A decision fetched from the outbox and not published for this long "
        "makes the worker not ready (/readyz names the outbox partitions): its "
        "transactions keep failing, or one never returns (publisher.py).",
    )
    admission_limit: PositiveInt = Field(
        2000,
        description="Declarations a worker may hold opened while their message ids are "
        "claimed (pipeline/admission.py); beyond it the worker takes no more of what it "
        "fetched (left for later, in order) and stops fetching declarations until half "
        "have been admitted, so a backlog is not all held in memory.",
    )
    admission_recheck_s: PositiveFloat = Field(
        1.0,
        description="How often declarations held back for offsets before them are looked "
        "at again, once the consumer may have learnt those offsets hold no record "
        "(pipeline/admission.py).",
    )
    offset_watchdog_s: PositiveFloat = Field(
        2.0,
        description="How often the hub looks for a record faust read but never handed to "
        "an agent (runtime/watchdog.py); such a record is read again within a few of these.",
    )
    session_timeout_s: float = Field(
        10.0,
        description="Consumer-group session timeout: how long a crashed worker holds its "
        "partitions before another (or its restart) takes them over.",
    )
    risk_rules: Path = Field(
        default_factory=lambda: config_path("risk-rules.toml"),
        description="TOML file of risk-targeting rules and sampling rates.",
    )
    extra_routes: dict[str, str] = Field(
        default_factory=dict,
        description='Routes added to the table at run time, as JSON: {"E999": "dga"}. '
        "The way to set the war-material licence code(s) without editing the file.",
    )
    accept_plain_declarations: bool = Field(
        False,
        description="Local development only: also accept declarations as plain XML. "
        "Otherwise a declaration must be sealed by the clearance system (signed, then "
        "encrypted to the hub); a plain one is dead-lettered and never acted on.",
    )
    request_deadline_s: float = Field(
        30.0, description="Time an authority has to answer before degraded mode."
    )
    deadline_sweep_s: float = Field(
        1.0, description="How often the hub looks for cases whose deadline has passed."
    )
    control_report_after_s: float = Field(
        7 * 24 * 3600.0,
        description="A reservation kept for a control with no result (no later version: "
        "RELEASED_AFTER_CONTROL or CANCELLED) after this long is reported to operations.",
    )
    case_retention_s: PositiveFloat = Field(
        3 * 24 * 3600.0,
        description="A decided case whose decisions the broker confirmed and which holds "
        "no reservation leaves the cases table this long after its decision, replaced by "
        "a small marker (pipeline/retention.py); the status view and the audit trail keep "
        "its history.",
    )
    decided_marker_s: PositiveFloat = Field(
        14 * 24 * 3600.0,
        description="How long the marker of a retired case keeps the versions rule (a stale "
        "version or the same record read again decides nothing): twice the declarations "
        "topic's retention, the longest a record can stay readable (pipeline/retention.py).",
    )
    seal_takeover_notices: bool = Field(
        True,
        description="Seal the takeover notices on the deadlines topic with the state key "
        "(pipeline/takeover.py; they name the documents a version quotes, licences "
        "included). A worker of before stop 56 cannot read a sealed one: during a rolling "
        "upgrade from such a version set it to false, then to true once every worker runs "
        "this one (docs/deployment.md). Either way this version reads both.",
    )
    case_sweep_s: PositiveFloat = Field(
        60.0,
        description="How often the hub looks for cases and markers due to leave; a look "
        "spreads what is due over half this period, and after an outage sends what became "
        "due within twice this period of the oldest waiting (runtime/retention_sweep.py).",
    )


class AdapterSettings(BaseModel):
    """A partner adapter: consumes its authority's requests, answers on its response topic."""

    partner_url: str = Field(
        "http://127.0.0.1:8701", description="Base URL of the partner administration's API."
    )
    partner_timeout_s: float = Field(
        5.0,
        description="Deadline of one partner HTTP call, counted from when it goes out (the "
        "partner's time; its wait for a turn is partner_queue_wait_s).",
    )
    partner_connections: PositiveInt = Field(
        64, description="Partner calls out at once (the adapter's connections to its partner)."
    )
    partner_calls_per_request: PositiveInt = Field(
        48,
        description="Of those, how many one request may have out at once (never more than "
        "partner_connections): a declaration with thousands of documents leaves the rest to "
        "the others, whose calls go in between its own in turn (adapters/base/call_turns.py).",
    )
    partner_queue_wait_s: PositiveFloat = Field(
        20.0,
        description="How long, counted from a request's start, its calls may wait inside the "
        "adapter for their turn at the partner connections. A call whose turn has not come "
        "by then is not sent: its document is answered UNAVAILABLE 'not sent: ...'. Keep it "
        "and partner_timeout_s inside the hub's request deadline (30 s).",
    )
    retry_attempts: PositiveInt = Field(
        3, description="Attempts per partner call (exponential backoff with full jitter)."
    )
    retry_backoff_base_s: float = Field(
        0.25, description="Backoff before the first retry of a partner call; doubles each time."
    )
    retry_backoff_cap_s: float = Field(
        4.0, description="Longest backoff between two attempts of a partner call."
    )
    partner_in_progress_window_s: NonNegativeFloat = Field(
        600.0,
        description="How long after a call's first attempt a 409 to a repeat of its key is "
        "taken for the partner still processing it. Past it, a write-off, deletion or "
        "give-back so answered is a rejection; a reservation stays queued (its follow-ups "
        "behind it) and a warning names it (adapters/base/keys_in_flight.py), as it does a "
        "key the partner still answers 202 (accepted for processing) past it.",
    )
    circuit_failure_threshold: PositiveInt = Field(
        5, description="Consecutive partner failures that open the circuit breaker."
    )
    circuit_reset_s: float = Field(
        5.0,
        description="Pause before a trial call to a partner whose circuit is open; with no "
        "call to make, the adapter makes its own (a read-only lookup) this often.",
    )
    replay_interval_s: float = Field(
        2.0, description="How often write-offs and deletions pending on a down partner retry."
    )
    metrics_port: int = Field(
        0, ge=0, description="Port serving /livez, /readyz and /metrics; 0 turns it off."
    )
    metrics_host: str = Field(
        "127.0.0.1", description="Address of that server (0.0.0.0 in a container)."
    )
    max_in_flight: PositiveInt = Field(
        64, description="Requests handled concurrently (different declarations only)."
    )
    commit_interval_s: NonNegativeFloat = Field(
        0.5,
        description="At most this often the request partitions are committed up to what "
        "is answered; at once when partitions are revoked, when the adapter stops and "
        "after a batch with an answer UNAVAILABLE (ADR 0014). After a "
        "crash the next owner asks the partner again what was answered since (harmless: "
        "idempotency keys). 0: after every poll.",
    )
    replica_id: str = Field(
        "",
        pattern=r"^[A-Za-z0-9_.-]*$",
        max_length=64,
        description="Names this replica's pending queue file when several replicas of an "
        "adapter share a state folder (<prefix>-<authority>-<replica_id>-pending.sqlite); "
        "empty: the only replica's file. Two processes never share one file.",
    )
    pending_limit: PositiveInt = Field(
        10_000,
        description="Write-offs, deletions and give-backs kept for a down partner beyond "
        "which the adapter fetches no request (backpressure, nothing dropped) until replays "
        "bring them down to half; the metric gun_adapter_pending_queue_full says so.",
    )
    redrive_read_limit: PositiveInt = Field(
        50_000,
        description="Records of its partition a redrive may lie after its original: the "
        "adapter reads them all to find a later operation of the declaration, which "
        "supersedes the redriven request. Further: dead-lettered as "
        "REDRIVE_SUPERSESSION_UNKNOWN, never asked (adapters/base/supersession.py).",
    )
    redrive_read_within_s: PositiveFloat = Field(
        30.0,
        description="How long reading those records may take; longer: "
        "REDRIVE_SUPERSESSION_UNKNOWN, never asked.",
    )


class OpsSettings(BaseModel):
    """What operators see: the status/statistics view, the lag monitor, heartbeats."""

    view_enabled: bool = Field(
        True,
        description="Keep the status and statistics view (SQLite in the hub data dir) and "
        "serve the trader and officer listeners on this hub worker; false: the worker "
        "decides and serves its probes only, and `gun-hub view` serves them (ADR 0015).",
    )
    view_data_dir: Path = Field(
        DEFAULT_STATE_DIR / "view",
        description="Folder of `gun-hub view`'s SQLite view (a hub worker keeps its own in "
        "hub.data_dir).",
    )
    view_web_host: str = Field("127.0.0.1", description="Address of `gun-hub view`'s probes.")
    view_web_port: int = Field(
        6070,
        ge=1,
        le=65535,
        description="Port of `gun-hub view`'s /livez, /readyz and /metrics (its trader and "
        "officer listeners are the web.* settings').",
    )
    view_gather_ms: NonNegativeInt = Field(
        200,
        description="How long the view's reader lets the broker gather records before a "
        "fetch returns: what arrived meanwhile is applied in one SQLite transaction, and "
        "the broker answers a few fetches a second instead of one per burst of records. "
        "A status reaches the trader lookup up to this much later; 0: each as it arrives.",
    )
    lag_monitor_enabled: bool = Field(
        True, description="Measure consumer lag, publish it on ops.lag and /metrics."
    )
    lag_interval_s: float = Field(5.0, gt=0, description="Seconds between lag measurements.")
    lag_dating_interval_s: NonNegativeFloat = Field(
        60.0,
        description="A partition a lagging group moves through has its oldest unread "
        "record dated (read from the broker) at most this often; in between, the record "
        "dated earlier stands for it, so the age shown is never less than the real one. "
        "A group that does not move is dated once. 0: at every measurement.",
    )
    lag_growing_samples: PositiveInt = Field(
        3, description="Consecutive rising measurements after which a group's lag is flagged."
    )
    hanging_transaction_s: float = Field(
        120.0,
        gt=0,
        description="A partition whose records have been held behind one open transaction "
        "this long is logged as a hanging transaction (every broker profile here lets no "
        "transaction run longer than a minute: transaction.max.timeout.ms).",
    )
    clearance_group: str = Field(
        "gun-clearance", description="Consumer group of the clearance system (lag watched)."
    )
    heartbeat_s: float = Field(
        5.0, gt=0, description="Seconds between an adapter's heartbeats on ops.health."
    )
    view_retention_days: PositiveFloat = Field(
        30,
        description="The status and statistics view forgets what is older (checked hourly, "
        "or four times within a retention shorter than four hours): "
        "the status, facts and dead-letter topics keep as long, so a view rebuilt from them "
        "holds the same; long-term statistics belong in a warehouse (ADR 0004).",
    )


class WebSettings(BaseModel):
    """The trader and officer listeners beside the probes (ADR 0007, docs/operations.md).

    The hub's web server (``hub.web_port``) serves only ``/livez``, ``/readyz`` and
    ``/metrics``. The trader lookup and the officers' pages each have a listener of their
    own, off (port 0) until configured with the credentials they check.
    """

    trader_port: int = Field(
        0,
        ge=0,
        le=65535,
        description="Port of the trader lookup (GET /declarations/{ref}, a portal token "
        "required); 0 turns it off. Needs portal_jwks.",
    )
    trader_host: str = Field("127.0.0.1", description="Address of the trader listener.")
    officer_port: int = Field(
        0,
        ge=0,
        le=65535,
        description="Port of the officers' statistics, lookup and dashboard (officer "
        "credentials required); 0 turns it off. Needs officers_file.",
    )
    officer_host: str = Field("127.0.0.1", description="Address of the officer listener.")
    connection_idle_s: PositiveFloat = Field(
        15.0,
        description="The trader, officer and lodging listeners close a connection with no "
        "request under way (its first request's head not complete, or idle between two) "
        "after this long.",
    )
    max_connections: PositiveInt = Field(
        256,
        description="Connections each of the trader, officer and lodging listeners holds "
        "at once; past it a new one is answered 503 and closed "
        "(gun_hub_web_connections_turned_away_total).",
    )
    max_connections_per_address: PositiveInt = Field(
        32,
        description="Connections one client address (an IPv6 client by its /64) holds at "
        "once on each of the trader, officer and lodging listeners; past it its new one is "
        "answered 503 and closed (gun_hub_web_connections_turned_away_total, reason "
        "address). Not the trusted_proxies: behind one, every connection is the proxy's.",
    )
    trusted_proxies: str = Field(
        "",
        description="Reverse proxies (addresses or networks, comma-separated) believed "
        "about whose request it is (X-Forwarded-For): a wrong password holds that client's "
        "new sign-ins, not everyone's behind the proxy. Empty: the connection's address.",
    )
    tls_cert: Path | None = Field(
        None, description="PEM certificate chain: both listeners serve HTTPS with it."
    )
    tls_key: Path | None = Field(None, description="PEM private key of tls_cert.")
    portal_jwks: Path | None = Field(
        None,
        description="The clearance portal's public signing keys (JWKS, ES256 on P-256); "
        "read again when the file changes.",
    )
    portal_issuer: str = Field("clearance-portal", description="The iss a trader token must carry.")
    token_audience: str = Field("gun-hub", description="The aud a trader token must carry.")
    token_max_lifetime_s: PositiveInt = Field(
        900, description="Longest exp - iat accepted in a trader token."
    )
    token_clock_skew_s: int = Field(
        60, ge=0, description="Allowed clock difference with the portal, in seconds."
    )
    officers_file: Path | None = Field(
        None,
        description="NAME:scrypt$... lines (gun-hub officers add); read again when it "
        "changes. Never a plain password.",
    )
    dead_letter_operators: str = Field(
        "",
        description="Officers (names in the officers file, comma-separated) who may read "
        "a dead letter's payload and redrive dead letters; empty: nobody. Every officer may "
        "list dead letters and show their metadata.",
    )
    rollout_operators: str = Field(
        "",
        description="Officers (names in the officers file, comma-separated) who may set an "
        "authority's rollout mode (gun-hub rollout set); empty: nobody. Every officer may "
        "show the modes and the pilot report.",
    )
    stats_default_days: PositiveInt = Field(
        31, description="Days /stats covers when no from is given (ending at to, or today)."
    )
    stats_max_days: PositiveInt = Field(366, description="Longest from-to range of /stats.")
    page_size_default: PositiveInt = Field(
        100, description="Rows per page of the list endpoints when no limit is given."
    )
    page_size_max: PositiveInt = Field(
        1000,
        description="Most rows per page of a list endpoint (and most document codes or "
        "dead-letter kinds in /stats).",
    )
    query_threads: PositiveInt = Field(
        2,
        description="Threads answering view questions off the event loop, per listener "
        "(trader, officer: a trader's lookups never wait for the officers' or take theirs).",
    )
    query_max_waiting: PositiveInt = Field(
        8,
        description="Questions running or waiting at once, per listener; more are answered 503.",
    )
    query_timeout_s: float = Field(
        15.0, gt=0, description="A view question running longer is stopped (503)."
    )
    trader_lookups_at_once: PositiveInt = Field(
        2,
        description="Lookups one trader (one EORI) may have running or waiting at once on "
        "the trader listener; more are answered 429: one trader cannot take the listener's "
        "query_max_waiting from the others.",
    )

    def dead_letter_operator_names(self) -> frozenset[str]:
        return _names(self.dead_letter_operators)

    def rollout_operator_names(self) -> frozenset[str]:
        return _names(self.rollout_operators)


def _names(listed: str) -> frozenset[str]:
    return frozenset(n.strip() for n in listed.split(",") if n.strip())


class GatewaySettings(BaseModel):
    """The intake gateway: declarations lodged over HTTP or dropped as files, checked like
    the hub checks them and published on the declarations topic (docs/intake-channels.md).

    Traders authenticate with portal tokens checked as the status lookup checks them (the
    ``GUN_HUB_WEB__PORTAL_*`` and ``__TOKEN_*`` settings) that also grant
    ``lodging_scope``, over the same TLS certificate
    (``GUN_HUB_WEB__TLS_CERT``/``__TLS_KEY``); a declaration's size limit is the hub's
    (``GUN_HUB_HUB__MAX_DECLARATION_BYTES``).
    """

    host: str = Field("127.0.0.1", description="Address of the HTTP lodging listener.")
    port: int = Field(
        6069, ge=1, le=65535, description="Port of the HTTP lodging listener (POST /declarations)."
    )
    probes_host: str = Field("127.0.0.1", description="Address of the probes listener.")
    probes_port: int = Field(
        0,
        ge=0,
        le=65535,
        description="Port serving /livez, /readyz and /metrics of `intake serve` and "
        "`intake watch`; 0 turns it off.",
    )
    max_in_flight: PositiveInt = Field(
        32,
        description="Lodgements checked, sealed or waiting for the broker at once; an HTTP "
        "lodgement beyond this is answered 503 with Retry-After.",
    )
    max_in_flight_per_trader: PositiveInt | None = Field(
        None,
        description="Of those, how many one trader (a token's EORI) may have under way, "
        "bodies being received included; its HTTP lodgement beyond this is answered 429 "
        "with Retry-After, so that one trader cannot take every place. Unset: a quarter "
        "of max_in_flight (at least 1); never more than max_in_flight.",
    )
    lodging_scope: str = Field(
        DEFAULT_LODGING_SCOPE,
        # One scope token (RFC 6749 section 3.3): printable ASCII but space, " and \.
        pattern=r"^[\x21\x23-\x5b\x5d-\x7e]*$",
        description="The scope a portal token must grant (among the space-separated "
        "names of its scope claim) to lodge over HTTP; the trader lookup takes tokens "
        "without it, so a token given to a read-only integration cannot lodge. Empty: any "
        "valid portal token lodges, an opt-out for a portal that does not grant it yet, "
        "warned at every start of `intake serve`.",
    )
    publish_timeout_s: PositiveFloat = Field(
        15.0,
        description="Longest wait for the broker to confirm a lodgement; then HTTP answers "
        "503 and the file drop keeps the file in processing/ to publish it again.",
    )
    status_url: str | None = Field(
        None,
        description="Base URL of the trader status lookup (the hub's trader listener): a "
        "202 answer then carries Location: <status_url>/declarations/<reference>.",
    )
    drop_poll_s: PositiveFloat = Field(
        1.0, description="How often `intake watch` looks for new files when idle."
    )
    drop_settle_s: float = Field(
        1.0,
        ge=0,
        description="A *.xml file is taken once its size and time have not changed for "
        "this long (a writer that cannot rename a .part file into place); 0 takes it at "
        "once.",
    )
    drop_batch: PositiveInt = Field(
        50, description="Files claimed and published together by `intake watch`."
    )


class SecuritySettings(BaseModel):
    """Keys and envelope rules (contract section 5, docs/security.md)."""

    keys_dir: Path = Field(
        DEFAULT_STATE_DIR / "keys",
        description="Keystore folder: <party>.jwk private keys (mode 0600) and jwks.json.",
    )
    message_lifetime_s: PositiveInt = Field(
        3600, description="How long a sealed message stays acceptable after it is issued."
    )
    max_clock_skew_s: PositiveInt = Field(
        300, description="Allowed difference between a message's iat and the local clock."
    )
    state_dir: Path = Field(
        DEFAULT_STATE_DIR / "state",
        description="Where adapters and readers keep their replay memory (SQLite).",
    )


class Settings(BaseSettings):
    """Everything configurable, grouped by component."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, env_nested_delimiter="__", extra="ignore"
    )

    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    broker: BrokerSettings = Field(default_factory=BrokerSettings)
    hub: HubSettings = Field(default_factory=HubSettings)
    adapter: AdapterSettings = Field(default_factory=AdapterSettings)
    security: SecuritySettings = Field(default_factory=SecuritySettings)
    ops: OpsSettings = Field(default_factory=OpsSettings)
    web: WebSettings = Field(default_factory=WebSettings)
    gateway: GatewaySettings = Field(default_factory=GatewaySettings)
    log_level: str = Field("INFO", description="Log level of every component.")
    stop_within_s: PositiveFloat = Field(
        DEFAULT_STOP_WITHIN_S,
        description="A component asked to stop (or ending after a crash) ends within this "
        "long: past it, it logs where it waited and exits 1 (gun_contract/stop_deadline.py). "
        "Keep it below the supervisor's grace period (deploy/k8s: 60 s).",
    )
    log_format: LogFormat = Field(
        "auto",
        description="Log lines: json (one object per line, for log shippers; production), "
        "text (readable), or auto: text when stderr is a terminal, json otherwise.",
    )


def load_settings() -> Settings:
    """Read the settings from the environment (called by entry points only), warning of
    every ``GUN_HUB_*`` variable that is no setting (a misspelt one is otherwise ignored
    without a word, its default silently used)."""
    for unknown in unknown_settings(os.environ):
        log.warning("%s", unknown.describe())
    return Settings()


@dataclass(frozen=True)
class UnknownSetting:
    """A ``GUN_HUB_*`` environment variable that names no setting."""

    name: str
    meant: str | None
    """The setting's variable it is closest to, if one is close."""

    def describe(self) -> str:
        guess = f"did you mean {self.meant}? " if self.meant else ""
        return f"{self.name} is not a setting: ignored ({guess}see the README's Configuration)"


def unknown_settings(environ: Mapping[str, str]) -> list[UnknownSetting]:
    """The ``GUN_HUB_*`` names of ``environ`` that name no setting, each with the one it
    was probably meant to be. Names are compared as pydantic-settings reads them: case
    apart, nested groups joined by ``__``; a group given whole (as JSON) is a setting, and
    a dict or list setting's own keys are not checked."""
    names = _setting_names(Settings, ENV_PREFIX)
    known = names.groups | names.leaves
    unknown: list[UnknownSetting] = []
    for name in sorted(environ):
        upper = name.upper()
        if not upper.startswith(ENV_PREFIX) or upper.startswith(_TEST_SUITE_PREFIX):
            continue
        if upper in known or any(upper.startswith(f"{leaf}__") for leaf in names.open_leaves):
            continue
        if _kubernetes_service_link(upper, environ[name]):
            continue
        close = difflib.get_close_matches(upper, sorted(names.leaves), n=1, cutoff=0.8)
        unknown.append(UnknownSetting(name, close[0] if close else None))
    return unknown


# What the kubelet hands a pod for each Service of its namespace (a Service named
# gun-hub-trader: GUN_HUB_TRADER_SERVICE_HOST, ..._PORT=tcp://..., ..._PORT_6067_TCP_ADDR):
# never a setting (no "__"); the shipped Deployments turn them off (enableServiceLinks).
_SERVICE_LINK = re.compile(
    r"[A-Z0-9_]+_(SERVICE_(HOST|PORT(_[A-Z0-9_]+)?)|PORT(_\d+_(TCP|UDP|SCTP)(_(PROTO|PORT|ADDR))?)?)"
)
_SERVICE_ADDRESS = re.compile(r"(tcp|udp|sctp)://", re.IGNORECASE)


def _kubernetes_service_link(name: str, value: str) -> bool:
    if "__" in name or not _SERVICE_LINK.fullmatch(name):
        return False
    # ``<SERVICE>_PORT`` and ``<SERVICE>_PORT_<n>_<PROTO>`` hold an address: a misspelt
    # setting ending in _PORT (a number) is still named.
    address = (
        "_SERVICE_" not in name
        and not name.endswith(("_TCP_PORT", "_UDP_PORT", "_SCTP_PORT"))
        and re.fullmatch(r"[A-Z0-9_]+?_PORT(_\d+_(TCP|UDP|SCTP))?", name) is not None
    )
    return not address or bool(_SERVICE_ADDRESS.match(value))


@dataclass(frozen=True)
class _SettingNames:
    groups: frozenset[str]
    leaves: frozenset[str]
    open_leaves: frozenset[str]
    """Settings holding a dict or a list, whose items may be given one by one."""


def _setting_names(model: type[BaseModel], prefix: str) -> _SettingNames:
    """The variable names of a settings model: its groups and its settings."""
    groups: set[str] = set()
    leaves: set[str] = set()
    open_leaves: set[str] = set()
    for field_name, field in model.model_fields.items():
        name = f"{prefix}{field_name.upper()}"
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            inner = _setting_names(annotation, f"{name}__")
            groups |= {name, *inner.groups}
            leaves |= inner.leaves
            open_leaves |= inner.open_leaves
        else:
            leaves.add(name)
            if getattr(annotation, "__origin__", None) in (dict, list):
                open_leaves.add(name)
    return _SettingNames(frozenset(groups), frozenset(leaves), frozenset(open_leaves))
