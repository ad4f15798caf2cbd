"""A component configured for the secured profile (``SASL_SSL``) pointed at a plaintext
listener: the broker answers the TLS handshake by closing the connection, and the start
waited 60 s, then blamed the address, ``GUN_HUB_KAFKA__BOOTSTRAP_SERVERS`` (review stop
39-O, O4). It names the protocol setting instead, within seconds. (The other way round,
and a wrong password, on the secured broker: test_secured_broker.py.)
"""

from __future__ import annotations

import secrets
import time

import pytest
import typer

from gun_contract.settings import KafkaSettings, Settings
from gun_hub.cli.components import prepare_cluster

pytestmark = [pytest.mark.broker]


def test_a_tls_client_at_a_plaintext_listener_names_the_security_protocol(
    kafka_bootstrap: str, capsys: pytest.CaptureFixture[str]
) -> None:
    password = secrets.token_urlsafe(16)
    settings = Settings(
        kafka=KafkaSettings(
            bootstrap_servers=kafka_bootstrap,
            security_protocol="SASL_SSL",
            sasl_username="hub",
            sasl_password=password,
        )
    )
    began = time.monotonic()
    with pytest.raises(typer.Exit) as stopped:
        prepare_cluster(settings, wait_s=60)
    took_s = time.monotonic() - began
    assert stopped.value.exit_code == 2
    [line] = capsys.readouterr().err.strip().splitlines()
    assert line == (
        f"cannot start: Kafka at {kafka_bootstrap} broke off the TLS handshake (a listener "
        "that does not speak SASL_SSL?): check GUN_HUB_KAFKA__SECURITY_PROTOCOL"
    )
    assert password not in line
    assert took_s < 20, "a handshake broken off again and again is not waited out"
