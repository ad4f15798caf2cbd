"""Why a client does not get into the cluster when a broker did answer it.

aiokafka's bootstrap reports every failed attempt as ``Unable to bootstrap from [...]``:
the cause (the broker refused the password, the TLS handshake failed) is only in its own
log, which a start-up holds back. A wrong password or the wrong security protocol then
looked like a cluster that does not answer, and the operator was sent to the address
(review stop 39-O, O4). :func:`connection_fault` connects to each bootstrap address as
aiokafka does and names the cause and the setting to check, never the password.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass

from aiokafka.conn import create_conn
from aiokafka.errors import KafkaConnectionError, KafkaError, SaslAuthenticationFailed

from gun_contract.kafka.client import Connect, client_config, client_options

CREDENTIALS = "GUN_HUB_KAFKA__SASL_USERNAME and GUN_HUB_KAFKA__SASL_PASSWORD"
CA_FILE = "GUN_HUB_KAFKA__SSL_CAFILE"
PROTOCOL = "GUN_HUB_KAFKA__SECURITY_PROTOCOL"


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
