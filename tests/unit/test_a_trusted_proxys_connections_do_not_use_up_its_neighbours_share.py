"""Found by the review of stop 55's per-address bound (gun_hub/web/listeners.py):

a trusted proxy was exempt from the per-address cap only for its own new connections
(``is_trusted`` on the exact peer), but every held connection was counted under its /64
(``ClientAddresses.held_as``), the proxy's included. A client in the proxy's IPv6 /64 (an
IPv6 Kubernetes node gives its pods one /64: the ingress controller and any pod beside it
calling the listener directly) was turned away 503 ``reason="address"`` at its first
connection as soon as the proxy held ``max_connections_per_address`` connections, which
a busy proxy always does. Behind one, every connection is the proxy's: they are no
neighbour's share."""

from __future__ import annotations

from gun_hub.security.client_address import ClientAddresses
from gun_hub.web.listeners import AddressShares

PROXY = "2001:db8:0:1::10"
NEIGHBOUR = "2001:db8:0:1::20"  # the same /64


def test_a_neighbour_of_a_trusted_proxy_gets_its_own_share() -> None:
    shares = AddressShares(32, ClientAddresses.parse(PROXY))
    for _ in range(40):
        assert not shares.opened(object(), PROXY)  # the proxy: never past a share
    assert not shares.opened(object(), NEIGHBOUR), (
        f"the first connection of {NEIGHBOUR} is turned away: the trusted proxy {PROXY}'s "
        "40 connections are counted against the /64 they share"
    )
