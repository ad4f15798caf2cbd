"""The ports the demo, the tests and the benchmarks give their listeners
(``gun_tools.processes.free_port``) lie below the range the OS takes the local ports of
outgoing connections from.

The OS picked them from that very range: between the pick and the child's bind, any
outgoing connection (a Kafka client of a component starting meanwhile) could take the
port as its own, and the hub refused to start, "the hub's web server cannot bind
127.0.0.1:45439: Address already in use" (clean-clone CI, stop 49).
"""

from __future__ import annotations

from pathlib import Path

from gun_tools.local_broker import CLUSTER_FIRST_CONTROLLER_PORT, CLUSTER_FIRST_PORT
from gun_tools.processes import free_port

EPHEMERAL_RANGE = Path("/proc/sys/net/ipv4/ip_local_port_range")


def test_a_port_handed_out_is_below_the_range_of_outgoing_connections() -> None:
    # Linux's default start where the OS does not say (IANA's is higher still).
    lowest_ephemeral = (
        int(EPHEMERAL_RANGE.read_text().split()[0]) if EPHEMERAL_RANGE.exists() else 32768
    )
    ports = [free_port() for _ in range(50)]
    assert len(set(ports)) == len(ports), "never handed out twice"
    if lowest_ephemeral < 21000:  # no room below it: the OS picks, as before
        return
    assert all(1024 < port < lowest_ephemeral for port in ports), ports


def test_no_port_the_local_cluster_listens_on_is_handed_out() -> None:
    """The demo hands its components' ports out before it starts a three-node cluster on
    its fixed ports (review of stop 49's commits)."""
    cluster = {
        *range(CLUSTER_FIRST_PORT, CLUSTER_FIRST_PORT + 10),
        *range(CLUSTER_FIRST_CONTROLLER_PORT, CLUSTER_FIRST_CONTROLLER_PORT + 10),
    }
    assert not cluster & {free_port() for _ in range(2000)}
