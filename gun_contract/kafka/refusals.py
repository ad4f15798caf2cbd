"""Why a client does not get into the cluster when a broker did answer it.

aiokafka's bootstrap reports every failed attempt as ``Unable to bootstrap from [...]``:
the cause (the broker refused the password, the TLS handshake failed) is only in its own
log, which a start-up holds back. A wrong password or the wrong security protocol then
looked like a cluster that does not answer, and the operator was sent to the address
(review stop 39-O, O4). :func:`connection_fault` connects to each bootstrap address as
aiokafka does and names the cause and the setting to check, never the password.

A client the cluster let in may still be refused what its principal's ACLs do not grant
(another party's ``.env``, grants missing): :func:`rights_refusal` finds such a refusal
however faust or aiokafka wrapped it, :func:`refused_resource` names what was refused,
and :func:`check_coordinators` asks for it before a worker starts, where faust would hang
on a consumer group it may not join (stop 40, carried from review stop 39-O, O4).
"""

from __future__ import annotations

import asyncio
import logging
import re
import ssl
from collections.abc import Iterable
from dataclasses import dataclass

from aiokafka.client import AIOKafkaClient, CoordinationType
from aiokafka.conn import create_conn
from aiokafka.errors import (
    ClusterAuthorizationFailedError,
    GroupAuthorizationFailedError,
    KafkaConnectionError,
    KafkaError,
    SaslAuthenticationFailed,
    TopicAuthorizationFailedError,
    TransactionalIdAuthorizationFailed,
)
from aiokafka.errors import for_code as errors_for_code
from aiokafka.protocol.group import HeartbeatRequest

from gun_contract.kafka.client import Connect, client_config, client_options

log = logging.getLogger(__name__)

CREDENTIALS = "GUN_HUB_KAFKA__SASL_USERNAME and GUN_HUB_KAFKA__SASL_PASSWORD"
CA_FILE = "GUN_HUB_KAFKA__SSL_CAFILE"
PROTOCOL = "GUN_HUB_KAFKA__SECURITY_PROTOCOL"
# A consumer group generation no member ever has.
_NO_GENERATION = -1


@dataclass(frozen=True, slots=True)
class ConnectionFault:
    """A broker's answer that lets the client no further: ``reason`` follows "Kafka at
    HOST:PORT"; ``settings`` are those to check; ``final``: waiting will not change it (a
    handshake cut short may also be a broker going down, so it is not)."""

    reason: str
    settings: str
    final: bool

    def __str__(self) -> str:
        return f"{self.reason}: check {self.settings}"


class ClusterRefused(Exception):
    """The cluster answered and refused this client: a fault of the configuration."""

    def __init__(self, bootstrap_servers: str, fault: ConnectionFault) -> None:
        super().__init__(f"Kafka at {bootstrap_servers} {fault}")
        self.fault = fault


def fault_of(err: BaseException, connect: Connect) -> ConnectionFault | None:
    """What ``err``, raised while connecting, says of the configuration; None for the
    network's faults (refused, unreachable, timed out: the address or the cluster)."""
    config = client_config(connect)
    if isinstance(err, SaslAuthenticationFailed):
        return ConnectionFault(
            f"refused the credentials of user {config.username!r} (authentication failed)",
            CREDENTIALS,
            final=True,
        )
    if isinstance(err, ssl.SSLCertVerificationError):
        return ConnectionFault(
            f"presented a certificate this client does not trust ({err.verify_message})",
            CA_FILE,
            final=True,
        )
    cut_short = isinstance(err, ssl.SSLError | ConnectionResetError) or (
        isinstance(err, KafkaConnectionError) and str(err).endswith(" closed")
    )
    if not cut_short:
        return None
    if config.secured:
        return ConnectionFault(
            "broke off the TLS handshake (a listener that does not speak SASL_SSL?)",
            PROTOCOL,
            final=False,
        )
    return ConnectionFault(
        "closed the connection at the first request (a listener that speaks SASL_SSL?)",
        PROTOCOL,
        final=False,
    )


async def connection_fault(connect: Connect, timeout_ms: int = 3000) -> ConnectionFault | None:
    """The fault one connection to each bootstrap address meets, as aiokafka connects:
    the first that is the configuration's, or None (an address let the client in, or
    none answered)."""
    options = client_options(connect)
    servers = str(options.pop("bootstrap_servers"))
    for address in servers.split(","):
        host, _, port = address.strip().rpartition(":")
        try:
            connection = await create_conn(
                host.strip("[]"), int(port), request_timeout_ms=timeout_ms, **options
            )
        except (TimeoutError, OSError, KafkaError) as err:
            fault = fault_of(err, connect)
            if fault is not None:
                return fault
        else:
            connection.close()
            return None
    return None


# What a principal's rights refuse, by the kind of resource named in the refusal.
_REFUSED_ON: dict[type[KafkaError], str] = {
    TopicAuthorizationFailedError: "topic",
    GroupAuthorizationFailedError: "consumer group",
    TransactionalIdAuthorizationFailed: "transactional id",
    ClusterAuthorizationFailedError: "the cluster",
}
NOT_AUTHORISED = tuple(_REFUSED_ON)
# faust's text when the broker refuses it a topic it creates (its changelogs, its leader
# topic): ``Cannot create topic: gun-hub-cases-changelog (29): Authorization failed.``
_CREATING = re.compile(r"\ACannot create topic: (?P<topic>\S+) \(\d+\)")


def rights_refusal(err: BaseException | None) -> KafkaError | None:
    """The refusal of a principal's rights that ``err`` is or was caused by (aiokafka
    wraps some: "Unexpected error during coordination ..."), or None."""
    seen: set[int] = set()
    while err is not None and id(err) not in seen:
        if isinstance(err, NOT_AUTHORISED):
            return err
        seen.add(id(err))
        err = err.__cause__ or err.__context__
    return None


def refused_resource(err: KafkaError) -> str:
    """What ``err`` refused, by kind and name: ``topic gun.requests.cites``, ``consumer
    group gun-hub``, ``topic gun-hub-cases-changelog (creating it)``; aiokafka names a
    set of topics, faust a topic in a sentence of its own."""
    kind = next(name for cls, name in _REFUSED_ON.items() if isinstance(err, cls))
    names: list[str] = []
    for arg in err.args:
        if isinstance(arg, set | frozenset | list | tuple):
            names += sorted(str(name) for name in arg)
            continue
        creating = _CREATING.match(str(arg))
        names.append(f"{creating['topic']} (creating it)" if creating else str(arg))
    named = ", ".join(name for name in names if name)
    return f"{kind} {named}" if named else kind


async def check_coordinators(
    connect: Connect, groups: Iterable[str] = (), transactional_ids: Iterable[str] = ()
) -> None:
    """Ask the cluster for the coordinator of each consumer group and transactional id a
    worker will use: a principal not granted one is refused here (Describe, which every
    grant of Read or Write on it implies), with its name; one granted Describe on a group
    but not Read, by a heartbeat of no member. faust's consumer never reads the refusal
    of its group, which aiokafka holds for a poll faust does not make: the worker waited
    for an assignment for ever, without a word in its log (stops 40 and 45).

    The broker checks the right before anything else, so any other answer (no
    coordinator yet on a cluster just made, another broker's) says it was granted: the
    clients wait for the coordinator themselves."""
    client = AIOKafkaClient(**client_options(connect))
    await client.bootstrap()
    try:
        asked = [(CoordinationType.GROUP, g, GroupAuthorizationFailedError) for g in groups]
        asked += [
            (CoordinationType.TRANSACTION, t, TransactionalIdAuthorizationFailed)
            for t in transactional_ids
        ]
        for kind, key, refusal in asked:
            try:
                await client.coordinator_lookup(kind, key)
            except refusal as err:
                raise refusal(key) from err
            except KafkaError:
                pass  # granted (the right is checked first); not there yet, perhaps
            if kind is CoordinationType.GROUP:
                await _check_joining(client, key)
    finally:
        await client.close()


_JOIN_CHECKS = 3
"""Heartbeats the Read check sends at most, to a broker picked at random each (stop 46)."""


async def _check_joining(client: AIOKafkaClient, group: str, *, backoff_s: float = 0.5) -> None:
    """Raise the refusal of ``group`` to a principal granted Describe on it but not Read.

    Finding the coordinator needs Describe only, joining needs Read: such a principal got
    past the lookup, and faust then waited for an assignment for ever, silent (stop 45).
    A heartbeat of no member needs Read as a join does and changes nothing in the group:
    any broker checks the right first, then answers that it is not the coordinator or
    knows no such member. Sent to any broker, it needs no coordinator (a cluster just made
    has none until its offsets topic is created: the check was skipped there).

    A heartbeat that cannot be sent (a broker restarting as the worker starts) is sent
    again, to a broker picked at random each time (on a cluster of one, the same one),
    ``backoff_s`` later and twice that the next time; given up on the first, the check
    let such a principal wait as before (stop 46)."""
    failure = ""
    for attempt in range(_JOIN_CHECKS):
        if attempt:
            await asyncio.sleep(backoff_s * 2 ** (attempt - 1))
        node = client.get_random_node()
        try:
            answer = await client.send(node, HeartbeatRequest(group, _NO_GENERATION, ""))
        except KafkaError as err:
            failure = type(err).__name__
            continue
        if errors_for_code(answer.error_code) is GroupAuthorizationFailedError:
            raise GroupAuthorizationFailedError(group)
        return
    log.warning(
        "could not check that this principal may join consumer group %s (%s, %d times): "
        "if it may not, the worker waits for partitions without a word",
        group,
        failure,
        _JOIN_CHECKS,
    )
