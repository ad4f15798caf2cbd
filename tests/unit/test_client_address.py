"""Whose sign-in it is: the address a listener holds a wrong password against
(security/client_address.py).

Behind a reverse proxy every request comes from the proxy: a wrong password held every
officer's new sign-in, doubling (found by review in stop 31). A proxy named in
``web.trusted_proxies`` is believed about the address it got the request from
(``X-Forwarded-For``, the right-most address it did not append for another trusted
proxy); anyone else's header is ignored, or a guesser would name a new address at each
guess.
"""

from __future__ import annotations

import re

import pytest

from gun_hub.security.client_address import ClientAddresses

PROXY = "10.1.2.3"


def test_without_trusted_proxies_the_peer_is_the_client() -> None:
    addresses = ClientAddresses.parse("")
    assert addresses.client("192.0.2.10", ["198.51.100.7"]) == "192.0.2.10"


def test_a_trusted_proxy_is_believed_about_the_address_it_got_the_request_from() -> None:
    addresses = ClientAddresses.parse(f"{PROXY}, 10.9.0.0/16")
    assert addresses.client(PROXY, ["198.51.100.7"]) == "198.51.100.7"
    # through two trusted proxies, each appending the address it got the request from
    assert addresses.client(PROXY, ["198.51.100.7, 10.9.4.4"]) == "198.51.100.7"


def test_what_the_client_itself_wrote_in_the_header_is_not_believed() -> None:
    """The client may send any X-Forwarded-For; the proxy appends the true address: the
    right-most address not of a trusted proxy is the one a trusted proxy vouches for."""
    addresses = ClientAddresses.parse(PROXY)
    assert addresses.client(PROXY, ["203.0.113.99, 198.51.100.7"]) == "198.51.100.7"
    assert addresses.client(PROXY, ["203.0.113.99", "198.51.100.7"]) == "198.51.100.7"


def test_a_header_a_trusted_proxy_did_not_write_well_is_taken_up_to_what_it_vouched_for() -> None:
    addresses = ClientAddresses.parse(PROXY)
    assert addresses.client(PROXY, ["not-an-address"]) == PROXY
    assert addresses.client(PROXY, []) == PROXY
    assert addresses.client(None, ["198.51.100.7"]) is None


def test_an_unreadable_trusted_proxy_is_refused_at_start_up() -> None:
    with pytest.raises(ValueError, match=re.escape("web.trusted_proxies: 'proxy.local' is not")):
        ClientAddresses.parse("10.0.0.1, proxy.local")


@pytest.mark.parametrize(
    ("address", "held_as"),
    [
        ("192.0.2.10", "192.0.2.10"),
        # one IPv6 network of 64 bits is one customer's: its addresses are one to a guesser
        ("2001:db8:1:2::10", "2001:db8:1:2::/64"),
        ("2001:db8:1:2:ffff:1:2:3", "2001:db8:1:2::/64"),
        ("::ffff:192.0.2.10", "192.0.2.10"),  # an IPv4 client of a dual-stack listener
        ("unix-socket-peer", "unix-socket-peer"),
    ],
)
def test_one_ipv6_network_is_held_as_one_address(address: str, held_as: str) -> None:
    assert ClientAddresses.held_as(address) == held_as
