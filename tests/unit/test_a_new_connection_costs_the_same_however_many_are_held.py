"""Found by the review of stop 55's per-address bound (gun_hub/web/listeners.py):

every new connection below the global bound re-read the peer of every connection the
listener held and parsed it again (``ipaddress``, an ``IPv6Network`` per IPv6 peer) to
count its address's: O(held) per connection, on the event loop. At 255 IPv6 connections
held it was some 4.4 ms per new connection (0.7 ms for IPv4): one client of a /64 opening
connections past its share (each turned away only after the scan) at a few hundred a
second kept the listener's loop busy counting, the very starvation the cap is for. The
count per address is now kept as connections open and end (``AddressShares``)."""

from __future__ import annotations

from gun_hub.security.client_address import ClientAddresses
from gun_hub.web.listeners import AddressShares


def test_an_addresss_share_is_counted_as_connections_open_and_end() -> None:
    shares = AddressShares(2, ClientAddresses.parse(""))
    held = [object() for _ in range(200)]
    for n, connection in enumerate(held):
        assert not shares.opened(connection, f"2001:db8:{n:x}::1")
    first, second, third = object(), object(), object()
    assert not shares.opened(first, "2001:db8:ffff::1")
    assert not shares.opened(second, "2001:db8:ffff::2")  # the same /64
    assert shares.opened(third, "2001:db8:ffff::3"), "a third of one /64 is past its share"
    shares.closed(third)  # the turned-away one ends
    shares.closed(first)
    fourth = object()
    assert not shares.opened(fourth, "2001:db8:ffff::4"), "room again once one ended"
    for connection in held:
        shares.closed(connection)
    assert len(shares) == 1  # only the /64 still holding two


def test_a_connection_never_counted_ends_without_a_trace() -> None:
    shares = AddressShares(1, ClientAddresses.parse(""))
    shares.closed(object())  # a unix socket's, a turned-away-full one's
    assert not shares.opened(object(), "192.0.2.1")
    assert len(shares) == 1
